#!/usr/bin/env python3
"""tests/roundtrip_check.py — the round-trip property of `mopt cat` over ONNX's backend test models.

For every model.onnx under the libonnx-testdata directories named on the command line:
  1. `mopt cat MODEL -o cat.onnx` gives back the same bytes;
  2. `mopt cat --external-data --size-threshold T MODEL -o ext.onnx` (T = 0 and 64) writes a model
     that python onnx loads, with its external data, to the same tensors as the original, and
     `mopt cat --inline-data ext.onnx -o back.onnx` gives back a model equal to the original:
     byte-identical apart from the mopt.history entry that --inline-data records, every field the
     same and every tensor value identical;
  3. wherever onnx.checker.check_model(full_check=True) accepts the input, it accepts cat.onnx.
One Python process checks every model (loading onnx once is most of the cost); the mopt runs go
through a thread pool. Prints one line per failure and "N passed, N failed" at the end; exits 1 on
any failure.

usage: roundtrip_check.py MOPT DIR...   (env JOBS: parallel mopt runs, default: CPU count)
"""
import concurrent.futures as cf
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

HISTORY = "mopt.history"
THRESHOLDS = (0, 64)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (" ".join(cmd[1:]), p.returncode,
                                                   p.stderr.decode(errors="replace").strip()))
    return p


def tensors(msg, path=""):
    """Yields (path, TensorProto) for every tensor reachable from msg, in a fixed order."""
    if isinstance(msg, onnx.TensorProto):
        yield path, msg
        return
    for field, value in msg.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        items = value if hasattr(value, "__len__") else [value]  # repeated field or one message
        for i, item in enumerate(items):
            yield from tensors(item, "%s/%s[%d]" % (path, field.name, i))


def strip_history(m):
    keep = [p for p in m.metadata_props if p.key != HISTORY]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    return m


def same_values(a, b):
    """Tensor values identical bit for bit (NaNs included), dtype and shape the same."""
    if a.data_type != b.data_type or list(a.dims) != list(b.dims):
        return False
    if a.data_type == onnx.TensorProto.STRING:
        return list(a.string_data) == list(b.string_data)
    x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
    return x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


def check_model(mopt, src, work):
    """Returns a list of failure strings for one model (empty: passed)."""
    fails = []
    orig_bytes = open(src, "rb").read()
    cat = os.path.join(work, "cat.onnx")
    try:
        run([mopt, "cat", src, "-o", cat])
        if open(cat, "rb").read() != orig_bytes:
            fails.append("cat output differs from the input")
    except AssertionError as e:
        fails.append(str(e))
        return fails
    orig = onnx.load_from_string(orig_bytes)
    for thr in THRESHOLDS:
        d = os.path.join(work, "t%d" % thr)
        os.mkdir(d)
        ext, back = os.path.join(d, "ext.onnx"), os.path.join(d, "back.onnx")
        try:
            run([mopt, "cat", "--external-data", "--size-threshold", str(thr), src, "-o", ext])
            run([mopt, "cat", "--inline-data", ext, "-o", back])
        except AssertionError as e:
            fails.append(str(e))
            continue
        # The external form: onnx reads it, and its tensors hold the original values.
        e = onnx.load(ext, load_external_data=True)
        ot, et = list(tensors(orig)), list(tensors(e))
        if len(ot) != len(et):
            fails.append("threshold %d: external model has %d tensors, original %d" % (thr, len(et), len(ot)))
        else:
            for (p, a), (_, b) in zip(ot, et):
                if not same_values(a, b):
                    fails.append("threshold %d: external tensor %s differs" % (thr, p))
                    break
        n_ext = sum(1 for _, t in tensors(onnx.load(ext, load_external_data=False))
                    if t.data_location == onnx.TensorProto.EXTERNAL)
        n_raw = sum(1 for t in orig.graph.initializer if t.HasField("raw_data") and len(t.raw_data) >= max(thr, 1))
        if n_ext < n_raw:
            fails.append("threshold %d: only %d of %d raw initializers went external" % (thr, n_ext, n_raw))
        # Back inline: equal to the original once the history entry is removed.
        b = onnx.load(back, load_external_data=False)
        hist = [p.value for p in b.metadata_props if p.key == HISTORY]
        if not hist or "--inline-data" not in hist[-1]:
            fails.append("threshold %d: --inline-data recorded no mopt.history entry" % thr)
        strip_history(b)
        if b.SerializeToString() != orig.SerializeToString() or b != orig:
            bt = list(tensors(b))
            if len(bt) != len(ot) or any(not same_values(x, y) for (_, x), (_, y) in zip(ot, bt)):
                fails.append("threshold %d: tensor values differ after external and back" % thr)
            else:
                fails.append("threshold %d: model differs after external and back" % thr)
    return fails


def checker_ok(path_or_model):
    try:
        onnx.checker.check_model(path_or_model, full_check=True)
        return True, ""
    except Exception as e:  # checker raises ValidationError, shape inference InferenceError, ...
        return False, str(e).splitlines()[0] if str(e) else type(e).__name__


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    mopt, dirs = os.path.abspath(sys.argv[1]), sys.argv[2:]
    models = sorted(os.path.join(r, "model.onnx") for d in dirs for r, _, fs in os.walk(d) if "model.onnx" in fs)
    if not models:
        sys.exit("roundtrip: no model.onnx under %s" % " ".join(dirs))
    jobs = int(os.environ.get("JOBS") or os.cpu_count() or 2)
    passed = failed = checked = 0
    with tempfile.TemporaryDirectory(prefix="mopt-roundtrip.") as tmp:
        def one(i):
            work = os.path.join(tmp, str(i))
            os.mkdir(work)
            try:
                return check_model(mopt, models[i], work)
            except Exception as e:  # a Python-side surprise is a failure of this model, not a crash
                return ["%s: %s" % (type(e).__name__, e)]

        with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(one, range(len(models))))
        # The checker runs in this thread (it holds the GIL anyway), on each cat output that the
        # input's own check accepts.
        for i, src in enumerate(models):
            fails = results[i]
            cat = os.path.join(tmp, str(i), "cat.onnx")
            if os.path.exists(cat):
                ok_in, _ = checker_ok(src)
                if ok_in:
                    checked += 1
                    ok_out, why = checker_ok(cat)
                    if not ok_out:
                        fails.append("checker accepts the input but not mopt's output: " + why)
            if fails:
                failed += 1
                for f in fails:
                    print("FAIL %s: %s" % (os.path.relpath(src, os.path.dirname(os.path.dirname(os.path.dirname(src)))), f))
            else:
                passed += 1
    print("roundtrip: %d models (%d checked with onnx.checker full_check)" % (len(models), checked))
    print("roundtrip: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
