#!/usr/bin/env python3
"""mopt's executor against ONNX Runtime on the bundled Fashion-MNIST models, 1 and 2 threads.

usage: python bench/threads_vs_ort.py [--mopt PATH] [--mopt-base PATH] [--rounds R]
                                      [--batches 1,100] [--threads 1,2]

For each model (datasets/{rescnn,lenet5,lenet300}.onnx), batch and thread count, every round runs
`mopt bench MODEL --batch B --threads T` (and the same with --mopt-base, a build to compare
with) and 50 timed runs of an ONNX Runtime session made once (CPU provider, intra-op threads T,
random input of the same shape), one after the other, so background load on a shared machine
lands on all of them. Prints the median over the rounds of each p50, in ms.
"""
import argparse
import re
import statistics
import subprocess
import time

import numpy as np
import onnxruntime as ort

MODELS = ["rescnn", "lenet5", "lenet300"]


def ort_p50(model, batch, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    s = ort.InferenceSession(f"datasets/{model}.onnx", o, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    x = np.random.default_rng(0).random((batch, *inp.shape[1:]), dtype=np.float32)
    for _ in range(5):
        s.run(None, {inp.name: x})
    ts = []
    for _ in range(50):
        t0 = time.perf_counter()
        s.run(None, {inp.name: x})
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def mopt_p50(mopt, model, batch, threads):
    out = subprocess.run([mopt, "bench", f"datasets/{model}.onnx", "--batch", str(batch),
                          "--threads", str(threads)], capture_output=True, text=True, check=True)
    return float(re.search(r"p50 ([0-9.]+)", out.stdout).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mopt", default="bin/mopt")
    ap.add_argument("--mopt-base", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="1,100")
    ap.add_argument("--threads", default="1,2")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    runs = [("mopt before", a.mopt_base)] if a.mopt_base else []
    runs.append(("mopt", a.mopt))
    res = {}
    for _ in range(a.rounds):
        for m in MODELS:
            for b in batches:
                for t in threads:
                    for label, path in runs:
                        res.setdefault((m, b, t, label), []).append(mopt_p50(path, m, b, t))
                    res.setdefault((m, b, t, "ORT"), []).append(ort_p50(m, b, t))
    cols = [label for label, _ in runs] + ["ORT"]
    print(f"p50 ms, median of {a.rounds} rounds taken in turns")
    print("| model | batch | threads | " + " | ".join(cols) + " |")
    print("|---|---:|---:|" + "---:|" * len(cols))
    for m in MODELS:
        for b in batches:
            for t in threads:
                vals = " | ".join(f"{statistics.median(res[(m, b, t, c)]):.3f}" for c in cols)
                print(f"| {m} | {b} | {t} | {vals} |")


if __name__ == "__main__":
    main()
