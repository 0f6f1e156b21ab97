#!/usr/bin/env python3
"""mopt's executor on QDQ models: integer kernels (the default) against the same model simulated in
float (MOPT_NO_QDQ_FUSE=1), on Fashion-MNIST test images.

usage: compare_int8_exec.py MOPT TMPDIR [--cal N] [--limit N] [--top1-tol F] [--act int8] MODEL...

For each MODEL: `mopt quant --int8 --data fashion-mnist:train --limit CAL [--act int8]`, then `mopt run` on
the first LIMIT test images both ways, and ONNX Runtime (one thread) on the same file. Prints one
line per model and exits 1 unless every output of the int8 run is within one quantization step
(the scale of the last DequantizeLinear) of the simulated run, the two top-1 accuracies differ by
at most --top1-tol (default 0.002: 0.2 points), and the int8 run is within one step of ONNX
Runtime's output too. mopt requantises as ONNX Runtime's MLAS does; with --ort-exact, on a CPU
with AVX-512 VNNI (where mopt's VNNI kernels run and MLAS's uint8 x int8 products are exact too),
the int8 run must equal ONNX Runtime's output bit for bit. The float ops left between the int8
islands (rescnn's GlobalAveragePool) sum in an order that follows the ISA, so on another CPU, or
under valgrind (which hides AVX-512), a rare output may round to the neighbouring step.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "datasets"))
from eval_fmnist import load_split  # noqa: E402


def output_step(path):
    m = onnx.load(path)
    inits = {i.name: i for i in m.graph.initializer}
    out = m.graph.output[0].name
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == out]
    if not dq:
        raise SystemExit(f"{path}: the output is not produced by a DequantizeLinear")
    return float(numpy_helper.to_array(inits[dq[0].input[1]]))


def run(mopt, model, npy, out, fuse):
    env = dict(os.environ, MOPT_NO_QDQ_FUSE="0" if fuse else "1")
    subprocess.run([mopt, "run", model, "-i", npy, "--format", "npy", "-o", out, "--threads", "2"], env=env,
                   check=True, capture_output=True)
    return np.load(os.path.join(out, "output_0.npy"))


def cpu_has_avx512_vnni():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_vnni" in flags


def run_ort(model, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mopt")
    ap.add_argument("tmp")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--cal", type=int, default=300)
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--top1-tol", type=float, default=0.002)
    ap.add_argument("--act", default="uint8", help="mopt quant's --act: uint8 (default) or int8")
    ap.add_argument("--ort-exact", action="store_true",
                    help="on a CPU with AVX-512 VNNI, require outputs equal to ONNX Runtime's bit for bit")
    a = ap.parse_args()
    os.makedirs(a.tmp, exist_ok=True)
    x, y = load_split("t10k")
    x, y = x[:a.limit], y[:a.limit]
    npy = os.path.join(a.tmp, "test.npy")
    np.save(npy, np.ascontiguousarray(x))
    ok = True
    exact = a.ort_exact and cpu_has_avx512_vnni()
    if a.ort_exact and not exact:
        print("this CPU has no AVX-512 VNNI: outputs compared with ONNX Runtime's to one step, not bit for bit")
    for path in a.models:
        name = os.path.splitext(os.path.basename(path))[0]
        q = os.path.join(a.tmp, name + (".int8.onnx" if a.act == "uint8" else ".s8.onnx"))
        subprocess.run([a.mopt, "quant", "--int8", "-q", path, "--data", "fashion-mnist:train", "--limit", str(a.cal),
                        "--act", a.act, "-o", q], check=True)
        fused = run(a.mopt, q, npy, os.path.join(a.tmp, name + ".int8"), True)
        sim = run(a.mopt, q, npy, os.path.join(a.tmp, name + ".sim"), False)
        ref = run_ort(q, x)
        step = output_step(q)
        steps = np.abs(fused - sim) / step
        t_int8, t_sim, t_ort = ((o.argmax(1) == y).mean() for o in (fused, sim, ref))
        same_ort = (fused == ref).mean()
        ort_steps = np.abs(fused - ref) / step
        ort_good = bool(np.array_equal(fused, ref)) if exact else ort_steps.max() <= 1.0 + 1e-4
        ort_good = ort_good and abs(t_int8 - t_ort) <= a.top1_tol + 1e-9
        good = steps.max() <= 1.0 + 1e-4 and abs(t_int8 - t_sim) <= a.top1_tol + 1e-9 and ort_good
        ok &= bool(good)
        print(f"{name} max_steps {steps.max():.3f} exact {(steps < 1e-4).mean():.4f} top1_int8 {t_int8:.4f} "
              f"top1_simulated {t_sim:.4f} equal_to_ort {same_ort:.4f} max_steps_ort {ort_steps.max():.3f} "
              f"top1_ort {t_ort:.4f} "
              f"{'ok' if good else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
