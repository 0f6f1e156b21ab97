#!/usr/bin/env python3
"""Latency of model files on one or more mopt builds and on ONNX Runtime, taken in turns.

usage: turns.py ROUNDS LABEL=MOPT [LABEL=MOPT ...] -- FILE:BATCH [FILE:BATCH ...]

Each round runs every FILE:BATCH on every mopt build (`mopt bench FILE --threads 1 -q --batch B
--seconds 2`, its p50) and then on ONNX Runtime (one thread, standard-normal inputs, p50 over
2 s), so a burst of load from other jobs lands on all of them. Prints, per file, the median over
the rounds of each, and every round's value. Used for the before/after tables in
docs/benchmarks.md.
"""
import re
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort


def ort_p50(path, batch):
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else batch for d in i.shape])
    x = x.astype(np.float32)
    for _ in range(3):
        s.run(None, {i.name: x})
    t, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < 2 or len(t) < 5:
        a = time.perf_counter()
        s.run(None, {i.name: x})
        t.append(time.perf_counter() - a)
    return float(np.median(t) * 1e3)


def main(argv):
    rounds, cut = int(argv[0]), argv.index("--")
    builds = [a.split("=", 1) for a in argv[1:cut]]
    files = argv[cut + 1:]
    res = {}
    for _ in range(rounds):
        for f in files:
            path, b = f.rsplit(":", 1)
            for label, exe in builds:
                out = subprocess.run([exe, "bench", path, "--threads", "1", "-q", "--batch", b, "--seconds", "2"],
                                     capture_output=True, text=True, check=True).stdout
                res.setdefault((f, label), []).append(float(re.search(r"p50 ([0-9.]+)", out).group(1)))
            res.setdefault((f, "ORT"), []).append(ort_p50(path, int(b)))
    labels = [lab for lab, _ in builds] + ["ORT"]
    for f in files:
        print(f, "|", " | ".join("%s %.2f" % (lab, np.median(res[(f, lab)])) for lab in labels),
              " rounds:", {lab: res[(f, lab)] for lab in labels})


if __name__ == "__main__":
    main(sys.argv[1:])
