#!/usr/bin/env python3
"""Oracle tests: mopt's executor against ONNX Runtime on fresh random inputs.

usage: oracle.py --mopt PATH [--seed S] [--threads N] [--only SUBSTRING] [--list]

Cases (issue 3, section 5):
  zoo/<model>/b1, zoo/<model>/b4   ResNet-50, MobileNetV2, BERT-like encoder from build/models
                                   (made by `make models`), batch 1 and 4 (sequence 32 for BERT)
  fmnist/<model>                   the bundled Fashion-MNIST models, datasets/*.onnx, batch 4
  pytorch-converted/<test>         every model in libonnx-testdata's pytorch-converted/, with the
                                   shapes and dtypes of its test_data_set_0 inputs

Each run draws new inputs from a seed printed at the start (--seed S repeats a run). mopt runs
the model through `mopt run -i NAME=FILE.npy ... -o DIR --format npy`; ONNX Runtime (CPU, same
thread count) runs the same inputs. ONNX Runtime no longer has kernels for some opset-6 ops that
the pytorch-converted models use; for those it runs the model converted to opset 13 by
onnx.version_converter (said in the case's line), while mopt runs the original; when ONNX Runtime
refuses even that (opset-6 PRelu with a per-channel slope), onnx.reference.ReferenceEvaluator runs
the original model instead, and the line says so.

Pass criterion, per output tensor (float32):
    rel = max_i |a_i - b_i| / max(|b_i|, rms(b))        a = mopt, b = ONNX Runtime
    pass when rel <= 1e-4 (and shapes and dtypes agree; NaN must meet NaN)
rms(b) is the root mean square of the whole output tensor, so an element near zero is judged
against the scale of the output it belongs to rather than against its own tiny magnitude.
Integer and bool outputs must match exactly.

A case that cannot run (mopt fails, the model is missing) is a failure with its reason, unless it
is listed in tests/oracle/known-failures.txt ("NAME  reason", '#' comments) — then it is reported
as a known failure. Listed cases that pass are reported as XPASS so the list can shrink.
Exit status: 0 when every case passed or is a known failure, 1 otherwise.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = "/usr/share/libonnx-testdata/data/pytorch-converted"
RTOL = 1e-4
ORT_OPSET = 13
BERT_SEQ = 32
BERT_VOCAB = 30522

ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def rel_error(a, b):
    """The relative error defined in the module docstring (float arrays of the same shape)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.size == 0:
        return 0.0
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return float("inf")
    keep = ~nan_b
    a, b = a[keep], b[keep]
    if a.size == 0:
        return 0.0
    inf = np.isinf(b) | np.isinf(a)
    if (a[inf] != b[inf]).any():
        return float("inf")
    a, b = a[~inf], b[~inf]
    if a.size == 0:
        return 0.0
    rms = float(np.sqrt(np.mean(b * b)))
    den = np.maximum(np.abs(b), rms if rms > 0 else 1e-30)
    return float(np.max(np.abs(a - b) / den))


def load_known(path):
    known = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    name, _, reason = line.partition(" ")
                    known[name] = reason.strip() or "(no reason given)"
    return known


def fill_dims(shape, values):
    """Concrete dims from an ORT input shape: symbolic names looked up in `values`."""
    out = []
    for d in shape:
        if isinstance(d, int) and d >= 0:
            out.append(d)
        elif d in values:
            out.append(values[d])
        else:
            out.append(values.get("*", 1))
    return out


def zoo_inputs(sess, rng, batch):
    feeds = {}
    for i in sess.get_inputs():
        shape = fill_dims(i.shape, {"N": batch, "S": BERT_SEQ, "*": batch})
        if i.name == "input_ids":
            feeds[i.name] = rng.integers(0, BERT_VOCAB, size=shape, dtype=np.int64)
        elif i.name == "attention_mask":
            m = np.ones(shape, dtype=np.int64)
            for r in range(shape[0]):  # a random padded tail per sequence
                m[r, rng.integers(shape[1] // 2, shape[1] + 1):] = 0
            feeds[i.name] = m
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(ORT_TYPES[i.type])
    return feeds


def fmnist_inputs(sess, rng, batch):
    feeds = {}
    for i in sess.get_inputs():
        shape = fill_dims(i.shape, {"*": batch})
        feeds[i.name] = rng.random(shape).astype(ORT_TYPES[i.type])  # pixels/255 in [0,1)
    return feeds


def like_inputs(model_dir, rng):
    """Fresh values with the shapes/dtypes (and value range) of test_data_set_0's inputs."""
    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    files = sorted(glob.glob(os.path.join(model_dir, "test_data_set_0", "input_*.pb")),
                   key=lambda p: int(os.path.basename(p)[6:-3]))
    feeds = {}
    for k, path in enumerate(files):
        t = onnx.TensorProto()
        with open(path, "rb") as f:
            t.ParseFromString(f.read())
        orig = numpy_helper.to_array(t)
        name = t.name if t.name in names else names[k]
        if orig.dtype.kind == "f":
            if orig.size and orig.min() >= 0:
                hi = float(orig.max()) or 1.0
                v = rng.uniform(0, hi, size=orig.shape)
            else:
                v = rng.standard_normal(orig.shape)
            feeds[name] = v.astype(orig.dtype)
        elif orig.dtype == np.bool_:
            feeds[name] = rng.integers(0, 2, size=orig.shape).astype(np.bool_)
        else:
            lo, hi = (int(orig.min()), int(orig.max())) if orig.size else (0, 1)
            feeds[name] = rng.integers(lo, hi + 1, size=orig.shape).astype(orig.dtype)
    return feeds


def run_mopt(mopt, model_path, feeds, threads, tmp):
    args = [mopt, "run", "-q", model_path, "--threads", str(threads), "-o", tmp, "--format", "npy"]
    for k, (name, v) in enumerate(feeds.items()):
        p = os.path.join(tmp, "in_%d.npy" % k)
        np.save(p, v)
        args += ["-i", "%s=%s" % (name, p)]
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
        raise RuntimeError("mopt run failed (exit %d): %s" % (r.returncode, msg))
    outs = []
    k = 0
    while os.path.exists(os.path.join(tmp, "output_%d.npy" % k)):
        outs.append(np.load(os.path.join(tmp, "output_%d.npy" % k)))
        k += 1
    return outs, dt


def check_case(name, model_path, make_feeds, rng, args):
    """Returns (ok, detail)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 4
    note = ""
    try:
        sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        # ONNX Runtime dropped kernels for the oldest opsets (the pytorch-converted models use
        # opset 6); the reference then runs on the model converted by onnx's version converter,
        # while mopt runs the original file.
        if "NOT_IMPLEMENTED" not in str(e):
            raise
        conv = onnx.version_converter.convert_version(onnx.load(model_path), ORT_OPSET)
        sess = ort.InferenceSession(conv.SerializeToString(), so, providers=["CPUExecutionProvider"])
        note = " (ONNX Runtime ran the model converted to opset %d)" % ORT_OPSET
    feeds = make_feeds(sess, rng)
    t0 = time.perf_counter()
    try:
        want = sess.run(None, feeds)
    except Exception as e:
        if not note:
            raise
        # The converted model still needs a legacy broadcast ONNX Runtime refuses (opset-6
        # PRelu with a per-channel slope): onnx's own reference evaluator runs the original.
        from onnx.reference import ReferenceEvaluator
        want = ReferenceEvaluator(onnx.load(model_path)).run(None, feeds)
        note = " (reference: onnx.reference on the original; ONNX Runtime refused the opset-%d conversion: %s)" % (
            ORT_OPSET, str(e).strip().splitlines()[0][-90:])
    t_ort = time.perf_counter() - t0
    out_names = [o.name for o in sess.get_outputs()]
    with tempfile.TemporaryDirectory(prefix="mopt-oracle-") as tmp:
        got, t_mopt = run_mopt(args.mopt, model_path, feeds, args.threads, tmp)
    if len(got) != len(want):
        return False, "mopt wrote %d outputs, ONNX Runtime gives %d" % (len(got), len(want))
    worst, parts = 0.0, []
    for oname, a, b in zip(out_names, got, want):
        b = np.asarray(b)
        if a.shape != b.shape:
            return False, "output '%s': shape %s, ONNX Runtime %s" % (oname, a.shape, b.shape)
        if a.dtype != b.dtype:
            return False, "output '%s': dtype %s, ONNX Runtime %s" % (oname, a.dtype, b.dtype)
        if b.dtype.kind in "iub":
            bad = int(np.sum(a != b))
            if bad:
                return False, "output '%s': %d of %d integer values differ" % (oname, bad, b.size)
            parts.append("%s exact" % oname)
            continue
        r = rel_error(a, b)
        worst = max(worst, r)
        if np.isfinite(r):
            parts.append("%s rel %.2g" % (oname, r))
        else:
            parts.append("%s: mopt has %d NaN and %d Inf, ONNX Runtime %d NaN and %d Inf of %d values" % (
                oname, np.isnan(a).sum(), np.isinf(a).sum(), np.isnan(b).sum(), np.isinf(b).sum(), b.size))
    detail = "%s [mopt %.2fs, ort %.2fs]%s" % (", ".join(parts), t_mopt, t_ort, note)
    if worst > RTOL:
        return False, "max rel error %.3g > %g: %s" % (worst, RTOL, detail)
    return True, detail


def cases(args):
    zoo = os.path.join(ROOT, "build", "models")
    for m in ("resnet50", "mobilenetv2", "bert_encoder"):
        for b in (1, 4):
            yield ("zoo/%s/b%d" % (m, b), os.path.join(zoo, m + ".onnx"),
                   lambda s, r, b=b: zoo_inputs(s, r, b))
    for p in sorted(glob.glob(os.path.join(ROOT, "datasets", "*.onnx"))):
        yield ("fmnist/%s" % os.path.basename(p)[:-5], p, lambda s, r: fmnist_inputs(s, r, 4))
    for d in sorted(glob.glob(os.path.join(TESTDATA, "test_*"))):
        yield ("pytorch-converted/%s" % os.path.basename(d), os.path.join(d, "model.onnx"),
               lambda s, r, d=d: like_inputs(d, r))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mopt", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="run the cases whose name contains this")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    known = load_known(os.path.join(os.path.dirname(os.path.abspath(__file__)), "known-failures.txt"))
    all_cases = [c for c in cases(args) if not args.only or args.only in c[0]]
    if args.list:
        for c in all_cases:
            print(c[0])
        return 0
    print("oracle: %d cases, seed %d (repeat with: tests/oracle/oracle.py --seed %d), rel tol %g"
          % (len(all_cases), seed, seed, RTOL), flush=True)
    ort.set_default_logger_severity(4)
    n_pass = n_fail = n_known = n_xpass = 0
    t_start = time.perf_counter()
    for i, (name, path, make) in enumerate(all_cases):
        rng = np.random.default_rng([seed, i])
        try:
            if not os.path.exists(path):
                raise RuntimeError("%s does not exist%s" % (path, " (run `make models`)" if "zoo/" in name else ""))
            ok, detail = check_case(name, path, make, rng, args)
        except Exception as e:  # a case that cannot run is a failure with its reason
            ok, detail = False, "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
        if ok and name in known:
            n_xpass += 1
            print("XPASS %s: %s (listed in known-failures.txt: remove it)" % (name, detail), flush=True)
        elif ok:
            n_pass += 1
            print("PASS  %s: %s" % (name, detail), flush=True)
        elif name in known:
            n_known += 1
            print("KNOWN %s: %s (known failure: %s)" % (name, detail, known[name]), flush=True)
        else:
            n_fail += 1
            print("FAIL  %s: %s" % (name, detail), flush=True)
    print("oracle: %d passed, %d failed, %d known failures, %d unexpectedly passed (%.0fs, seed %d)"
          % (n_pass, n_fail, n_known, n_xpass, time.perf_counter() - t_start, seed))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
