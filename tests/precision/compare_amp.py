#!/usr/bin/env python3
"""mopt amp --to fp16 --keep-io against ONNX Runtime's float16 converter, side by side.

usage: compare_amp.py MOPT OUTDIR MODEL... [--mopt-args "..."] [--md]

For each MODEL: converts it with `mopt amp --to fp16 --keep-io` (plus --mopt-args) and with
onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True); checks both with
onnx.checker (full_check); runs float32, mopt and ORT models in ONNX Runtime (CPU) on the same
inputs (Fashion-MNIST test images for [N,1,28,28] models, seeded random data otherwise) and prints
the Cast nodes each added and the max absolute output error against float32.  Exit status 1 when
mopt's model fails the checker or ONNX Runtime, or needs more casts than ORT's, or has a larger
max error than ORT's (by more than 1e-6 relative to the output scale).
"""
import os
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.transformers import float16

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "datasets"))


def inputs_for(model, n_img=256, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.dim_value > 0 else None for d in tt.shape.dim]
        if tt.elem_type == onnx.TensorProto.FLOAT and dims[1:] == [1, 28, 28]:
            from eval_fmnist import load_split
            x, _ = load_split("t10k")
            feeds[vi.name] = x[:n_img]
            continue
        shape = [d if d is not None else (2 if i == 0 else 128) for i, d in enumerate(dims)]
        if tt.elem_type == onnx.TensorProto.FLOAT:
            feeds[vi.name] = rng.standard_normal(shape).astype(np.float32)
        elif tt.elem_type == onnx.TensorProto.INT64:
            if "mask" in vi.name:
                feeds[vi.name] = np.ones(shape, np.int64)
            elif "type" in vi.name or "segment" in vi.name:
                feeds[vi.name] = np.zeros(shape, np.int64)
            else:
                feeds[vi.name] = rng.integers(0, 1000, shape).astype(np.int64)
        else:
            raise SystemExit(f"unsupported input type for {vi.name}")
    return feeds


def run(path, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return [o.astype(np.float32) for o in s.run(None, feeds)]


def casts(model):
    return sum(1 for n in model.graph.node if n.op_type == "Cast")


def main(argv):
    md = "--md" in argv
    argv = [a for a in argv if a != "--md"]
    extra = []
    if "--mopt-args" in argv:
        i = argv.index("--mopt-args")
        extra = argv[i + 1].split()
        del argv[i:i + 2]
    mopt, outdir, models = argv[1], argv[2], argv[3:]
    os.makedirs(outdir, exist_ok=True)
    bad = 0
    rows = []
    for path in models:
        name = os.path.splitext(os.path.basename(path))[0]
        base = onnx.load(path)
        feeds = inputs_for(base)
        ref = run(path, feeds)
        mo = os.path.join(outdir, name + ".mopt-fp16.onnx")
        t0 = time.time()
        subprocess.run([mopt, "amp", "--to", "fp16", "--keep-io", "-q", *extra, path, "-o", mo], check=True)
        t_m = time.time() - t0
        oo = os.path.join(outdir, name + ".ort-fp16.onnx")
        t0 = time.time()
        conv = float16.convert_float_to_float16(onnx.load(path), keep_io_types=True)
        onnx.save(conv, oo, save_as_external_data=os.path.getsize(path) > 1 << 30)
        t_o = time.time() - t0
        mm = onnx.load(mo)
        try:
            onnx.checker.check_model(mm if mm.ByteSize() < 2**31 - 1 else mo, full_check=True)
            chk = "ok"
        except Exception as e:  # noqa: BLE001
            chk = "FAIL: " + str(e).splitlines()[0][:120]
            bad += 1
        out_m = run(mo, feeds)
        out_o = run(oo, feeds)
        scale = max(float(np.abs(r).max()) for r in ref)
        err_m = max(float(np.abs(a - r).max()) for a, r in zip(out_m, ref))
        err_o = max(float(np.abs(a - r).max()) for a, r in zip(out_o, ref))
        c0 = casts(base)
        cm, co = casts(mm) - c0, casts(conv) - c0
        verdict = "ok"
        if cm > co:
            verdict = "more casts"
        if err_m > err_o + 1e-6 * scale:
            verdict = "larger error" if verdict == "ok" else verdict + ", larger error"
        if verdict != "ok":
            bad += 1
        rows.append((name, cm, co, err_m, err_o, chk, verdict, t_m, t_o))
    if md:
        print("| model | mopt casts | ORT casts | mopt max abs error | ORT max abs error | checker | verdict |")
        print("|---|---:|---:|---:|---:|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.4g} | {r[4]:.4g} | {r[5]} | {r[6]} |")
    else:
        for r in rows:
            print(f"{r[0]:16s} casts mopt {r[1]:3d} ort {r[2]:3d}  max|err| mopt {r[3]:.4g} ort {r[4]:.4g}  "
                  f"checker {r[5]}  {r[6]}  (convert: mopt {r[7]:.2f} s, ort {r[8]:.2f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
