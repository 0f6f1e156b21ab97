#!/usr/bin/env python3
"""Calibration and int8 latency of a model of several integer inputs: mopt against ONNX Runtime.

usage: calib_bert.py [--mopt BIN] [--model bert_encoder.onnx] [--n 16] [--seq 128] [--vocab 30522] [--batch 4]
                     [--rounds 3] [--methods minmax,entropy] [--latency] OUTDIR

The model is datasets/make_zoo.py's BERT-base encoder (inputs input_ids and attention_mask,
int64 [N,S]); the data are N seeded sequences of S token ids (each 50-100 % real tokens, the rest
padding, masked). Each round, in turns:

- mopt: `mopt calib MODEL --data input_ids=npy:ids.npy --data attention_mask=npy:mask.npy
  --batch B --method M` (threads: all cores), wall time of the process;
- ONNX Runtime: create_calibrator(MODEL, [], method M) with collect_data over a reader of the same
  batches (dicts of both arrays), then compute_data(), timed inside a child process (Python
  start-up excluded), its threads at ORT's default (all cores).

Peak RSS of each process. The minmax tables are compared tensor by tensor (range to 1e-4 of its
magnitude). With --latency the minmax table makes `mopt quant --int8 --table`, and float32 and
int8 run on one thread, batch 1, S tokens, on mopt (`mopt bench --dim S=...`, p50) and ONNX
Runtime (p50 over 2 s), in turns; int8's error against float32 on 4 of the sequences on both.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from precision import timed  # noqa: E402  (wall, RSS and CPU of a command, as the calibration table)


def make_data(out, n, seq, vocab):
    rng = np.random.default_rng(0)
    ids = rng.integers(min(1000, vocab // 2), vocab, (n, seq)).astype(np.int64)
    mask = np.ones((n, seq), np.int64)
    for i in range(n):
        k = int(rng.integers(seq // 2, seq + 1))
        ids[i, k:] = 0
        mask[i, k:] = 0
    np.save(os.path.join(out, "ids.npy"), ids)
    np.save(os.path.join(out, "mask.npy"), mask)
    return ids, mask


def ort_child(model, out, method, batch):
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator
    ids, mask = np.load(os.path.join(out, "ids.npy")), np.load(os.path.join(out, "mask.npy"))

    class Reader(CalibrationDataReader):
        i = 0

        def get_next(self):
            if self.i >= len(ids):
                return None
            b = slice(self.i, self.i + batch)
            self.i += batch
            return {"input_ids": ids[b], "attention_mask": mask[b]}

    meth = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]
    t0, c0 = time.perf_counter(), time.process_time()
    c = create_calibrator(model, [], augmented_model_path=os.path.join(out, "aug.onnx"), calibrate_method=meth)
    c.collect_data(Reader())
    d = c.compute_data()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ranges = {k: [float(np.min(v.range_value[0])), float(np.max(v.range_value[1]))] for k, v in d.data.items()}
    json.dump(ranges, open(os.path.join(out, f"ort-{method}.json"), "w"))
    print(wall, cpu)


def compare(out, method):
    import csv
    ort = json.load(open(os.path.join(out, f"ort-{method}.json")))
    mine = {r["tensor"]: (float(r["min"]), float(r["max"])) for r in csv.DictReader(open(os.path.join(out, f"mopt-{method}.csv")))}
    common = set(ort) & set(mine)
    bad = 0
    for k in common:
        lo, hi = ort[k]
        tol = 1e-4 * max(1.0, abs(lo), abs(hi))
        if abs(min(lo, 0) - mine[k][0]) > tol or abs(max(hi, 0) - mine[k][1]) > tol:
            bad += 1
    return len(ort), len(mine), len(common), bad


def ort_p50(path, seq, feed):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(2):
        s.run(None, feed)
    t, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < 2 or len(t) < 5:
        a = time.perf_counter()
        s.run(None, feed)
        t.append(time.perf_counter() - a)
    return float(np.median(t) * 1e3)


def mopt_p50(mopt, path, seq):
    r = subprocess.run([mopt, "bench", path, "--threads", "1", "-q", "--dim", f"S={seq}", "--seconds", "2"],
                       capture_output=True, text=True, check=True)
    return float(re.search(r"p50 ([0-9.]+)", r.stdout).group(1))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--ort-child":
        ort_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--mopt", default=os.path.join(ROOT, "bin", "mopt"))
    ap.add_argument("--model", default=os.path.join(ROOT, "build", "models", "bert_encoder.onnx"))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=30522, help="token ids are drawn below this")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", default="minmax,entropy")
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("out")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ids, mask = make_data(a.out, a.n, a.seq, a.vocab)
    res = {}
    for _ in range(a.rounds):
        for m in a.methods.split(","):
            res.setdefault(("mopt", m), []).append(timed([
                a.mopt, "calib", a.model, "--data", "input_ids=npy:" + os.path.join(a.out, "ids.npy"),
                "--data", "attention_mask=npy:" + os.path.join(a.out, "mask.npy"), "--batch", str(a.batch),
                "--method", m, "-q", "-o", os.path.join(a.out, f"mopt-{m}.csv")]))
            res.setdefault(("ORT", m), []).append(timed([sys.executable, os.path.abspath(__file__), "--ort-child",
                                                         a.model, a.out, m, str(a.batch)]))
    print(f"{os.path.basename(a.model)}: {a.n} sequences of {a.seq} tokens, batches of {a.batch}, "
          f"median of {a.rounds} rounds in turns")
    print("| method | mopt s | ORT s | ORT / mopt | mopt CPU s | ORT CPU s | mopt peak RSS MB | ORT peak RSS MB | tensors (ORT, mopt) | ranges differ |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for m in a.methods.split(","):
        mo, ot = np.median(res[("mopt", m)], axis=0), np.median(res[("ORT", m)], axis=0)
        no, nm, nc, bad = compare(a.out, m)
        print(f"| {m} | {mo[0]:.2f} | {ot[0]:.2f} | **{ot[0] / mo[0]:.1f}x** | {mo[2]:.2f} | {ot[2]:.2f} | "
              f"{mo[1]:.0f} | {ot[1]:.0f} | {no}, {nm} | {bad if m == 'minmax' else '-'} |")
    print("rounds:", {f"{k[0]} {k[1]}": [round(v[0], 2) for v in r] for k, r in res.items()})
    if not a.latency:
        return
    q = os.path.join(a.out, "bert.int8.onnx")
    subprocess.run([a.mopt, "quant", "--int8", a.model, "--table", os.path.join(a.out, "mopt-minmax.csv"), "-q", "-o", q],
                   check=True)
    rng = np.random.default_rng(1)
    feed = {"input_ids": rng.integers(0, 10, (1, a.seq)).astype(np.int64),
            "attention_mask": rng.integers(0, 10, (1, a.seq)).astype(np.int64)}
    lat = {}
    for _ in range(a.rounds):
        for label, path in (("float32", a.model), ("int8", q)):
            lat.setdefault((label, "mopt"), []).append(mopt_p50(a.mopt, path, a.seq))
            lat.setdefault((label, "ORT"), []).append(ort_p50(path, a.seq, feed))
    print("\n| file | mopt p50 ms | ORT p50 ms | mopt / ORT |")
    print("|---|---:|---:|---:|")
    for label in ("float32", "int8"):
        mo, ot = np.median(lat[(label, "mopt")]), np.median(lat[(label, "ORT")])
        print(f"| {label} | {mo:.1f} | {ot:.1f} | {mo / ot:.2f} |")
    print("rounds:", {f"{k[0]} {k[1]}": [round(v, 1) for v in r] for k, r in lat.items()})
    # Accuracy of the int8 file on 4 calibration sequences, on both executors.
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    f4 = {"input_ids": ids[:4], "attention_mask": mask[:4]}
    yf = ort.InferenceSession(a.model, so).run(None, f4)[0]
    yq = ort.InferenceSession(q, so).run(None, f4)[0]
    np.save(os.path.join(a.out, "i4.npy"), ids[:4])
    np.save(os.path.join(a.out, "m4.npy"), mask[:4])
    subprocess.run([a.mopt, "run", q, "-i", "input_ids=" + os.path.join(a.out, "i4.npy"), "-i",
                    "attention_mask=" + os.path.join(a.out, "m4.npy"), "--format", "npy", "-o",
                    os.path.join(a.out, "run"), "-q"], check=True)
    ym = np.load(os.path.join(a.out, "run", "output_0.npy"))
    w = mask[:4].astype(bool)
    rel = lambda y: float(np.abs(y - yf)[w].max() / np.abs(yf[w]).max())  # noqa: E731
    print(f"\nint8 vs float32 (ORT float32), max abs error over real tokens / max |float32|: ORT {rel(yq):.4f}, "
          f"mopt {rel(ym):.4f}; mopt vs ORT on the int8 file: {float(np.abs(ym - yq).max()):.2e}")


if __name__ == "__main__":
    main()
