#!/usr/bin/env python3
"""mopt quant --int8 against ONNX Runtime's quantize_static (QDQ), side by side.

usage: compare_quant.py MOPT OUTDIR [--cal N] [--cal-offset K] [--methods minmax,entropy,percentile]
                        [--md] [--eval-limit N] [--tolerance POINTS] MODEL...

Both tools calibrate on the same data (the first N Fashion-MNIST training images, N = 1000 by
default: `--data fashion-mnist:train --limit N` for mopt, a CalibrationDataReader over the same
array for ONNX Runtime; with --cal-offset K, training images K to K+N-1, handed to mopt as an
.npy file), with the same settings: QDQ, uint8 asymmetric activations, int8
symmetric per-channel weights.  Every model is then evaluated in ONNX Runtime on the 10,000
Fashion-MNIST test images; mopt's model is also evaluated on mopt's own executor (`mopt eval`).
mopt's models must pass onnx.checker (full_check).  Exit status 1 when a mopt model fails the
checker, gives top-1 on mopt's executor more than 0.1 point away from its top-1 in ONNX Runtime,
or its top-1 (in ONNX Runtime) is below ONNX Runtime's for the same method (by more than
--tolerance percentage points, 0 by default).
"""
import math
import os
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "datasets"))
from eval_fmnist import load_split  # noqa: E402

ORT_METHOD = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}


class Reader(CalibrationDataReader):
    def __init__(self, name, x, batch=64):
        self.name, self.x, self.batch, self.i = name, x, batch, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        b = self.x[self.i:self.i + self.batch]
        self.i += self.batch
        return {self.name: b}

    def rewind(self):
        self.i = 0


def top1(path, x, y):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    p = np.concatenate([s.run(None, {name: x[i:i + 1000]})[0] for i in range(0, len(x), 1000)])
    return float((p.argmax(1) == y).mean())


def mopt_top1(mopt, path, n):
    r = subprocess.run([mopt, "eval", "--data", "fashion-mnist:test", "--limit", str(n), "--batch", "256", path],
                       capture_output=True, text=True, check=True)
    for line in r.stderr.splitlines():
        f = line.split()
        if f and f[0] == path:
            return float(f[2])
    raise SystemExit("mopt eval: no result\n" + r.stderr)


def main(argv):
    args = argv[1:]
    md = "--md" in args
    args = [a for a in args if a != "--md"]
    opts = {"--cal": "1000", "--methods": "minmax,entropy,percentile", "--eval-limit": "10000", "--tolerance": "0",
            "--cal-offset": "0"}
    for k in list(opts):
        if k in args:
            i = args.index(k)
            opts[k] = args[i + 1]
            del args[i:i + 2]
    mopt, outdir, models = args[0], args[1], args[2:]
    os.makedirs(outdir, exist_ok=True)
    ncal, nev = int(opts["--cal"]), int(opts["--eval-limit"])
    xc, _ = load_split("train")
    off = int(opts["--cal-offset"])
    xc = np.ascontiguousarray(xc[off:off + ncal])
    if off:
        np.save(os.path.join(outdir, "cal.npy"), xc)
        cal_args = ["--data", "npy:" + os.path.join(outdir, "cal.npy")]
    else:
        cal_args = ["--data", "fashion-mnist:train", "--limit", str(ncal)]
    xt, yt = load_split("t10k")
    xt, yt = xt[:nev], yt[:nev]
    bad = 0
    rows = []
    for path in models:
        name = os.path.splitext(os.path.basename(path))[0]
        t_f = top1(path, xt, yt)
        inp = onnx.load(path).graph.input[0].name
        for method in opts["--methods"].split(","):
            mo = os.path.join(outdir, f"{name}.mopt-{method}.onnx")
            t0 = time.time()
            subprocess.run([mopt, "quant", "--int8", "-q"] + cal_args + ["--method", method, path, "-o", mo], check=True)
            t_m = time.time() - t0
            try:
                onnx.checker.check_model(onnx.load(mo), full_check=True)
                chk = "ok"
            except Exception as e:  # noqa: BLE001
                chk = "FAIL " + str(e).splitlines()[0][:100]
                bad += 1
            top_m = top1(mo, xt, yt)
            top_me = mopt_top1(mopt, mo, nev)
            if abs(top_m - top_me) > 0.001 + 1e-9:  # the same file on both runtimes: within 0.1 point
                print(f"{name} {method}: top-1 {100 * top_m:.2f} in ONNX Runtime but {100 * top_me:.2f} on mopt's executor",
                      file=sys.stderr)
                bad += 1
            top_o = None
            t_o = 0
            if method in ORT_METHOD:
                oo = os.path.join(outdir, f"{name}.ort-{method}.onnx")
                t0 = time.time()
                # ORT's histogram collectors need equal batch sizes: use a divisor of N.
                quantize_static(path, oo, Reader(inp, xc, math.gcd(ncal, 100)), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                per_channel=True, calibrate_method=ORT_METHOD[method])
                t_o = time.time() - t0
                top_o = top1(oo, xt, yt)
                if top_m < top_o - float(opts["--tolerance"]) / 100:
                    bad += 1
            rows.append((name, method, t_f, top_m, top_me, top_o, chk, t_m, t_o))
    if md:
        print("| model | method | float32 | mopt (ORT) | mopt (mopt exec) | ORT quantize_static | checker |")
        print("|---|---|---:|---:|---:|---:|---|")
        for r in rows:
            o = f"{100 * r[5]:.2f}" if r[5] is not None else "-"
            print(f"| {r[0]} | {r[1]} | {100 * r[2]:.2f} | {100 * r[3]:.2f} | {100 * r[4]:.2f} | {o} | {r[6]} |")
    else:
        for r in rows:
            o = f"{100 * r[5]:.2f}" if r[5] is not None else "  -  "
            print(f"{r[0]:10s} {r[1]:10s} float {100 * r[2]:.2f}  mopt {100 * r[3]:.2f} (mopt exec {100 * r[4]:.2f})  "
                  f"ort {o}  checker {r[6]}  (quantize: mopt {r[7]:.2f} s, ort {r[8]:.2f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
