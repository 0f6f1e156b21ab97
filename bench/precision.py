#!/usr/bin/env python3
"""Precision benchmarks (issue 5): calibration throughput, int8/fp16 latency, mopt vs ONNX Runtime.

usage: precision.py [--mopt bin/mopt] [--samples N] [--rounds R] [--threads T] [--quick]
                    [--update-doc docs/benchmarks.md]

1. Calibration throughput. The same model and the same data (the first N Fashion-MNIST training
   images, N = 10,000 by default) through `mopt calib --method M` and through ONNX Runtime's
   calibrator for M (onnxruntime.quantization.calibrate.create_calibrator, then collect_data over
   batches of 100, then compute_data: what quantize_static does). Wall time of the whole step,
   model loading included, median of R rounds taken in turns; samples/s and the ratio ORT/mopt
   (above 1: mopt is faster).
2. Latency. float32, `mopt quant --int8` (minmax, 1000 training images) and `mopt amp --to fp16
   --keep-io` files of the same model, each run by `mopt bench --json` (mopt's executor) and by
   an ONNX Runtime session (CPU provider, the same thread count); p50 per batch, median of R
   rounds taken in turns, and each variant's ratio to float32 on the same runtime.

With --update-doc the Markdown replaces the block between <!-- precision:begin --> and
<!-- precision:end --> in that file (appended when the markers are absent).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import create_calibrator

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "datasets"))
from eval_fmnist import load_split  # noqa: E402

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}


class Reader(CalibrationDataReader):
    def __init__(self, name, x, batch=100):
        self.name, self.x, self.batch, self.i = name, x, batch, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        b = self.x[self.i:self.i + self.batch]
        self.i += self.batch
        return {self.name: b}


def ort_calib_child(model, n, method, tmp):
    """Runs in a child process (so its peak RSS is its own): ORT's calibration step."""
    x, _ = load_split("train")
    x = np.ascontiguousarray(x[:n])
    t0 = time.perf_counter()
    c = create_calibrator(model, [], augmented_model_path=os.path.join(tmp, "aug.onnx"),
                          calibrate_method=METHODS[method])
    c.collect_data(Reader(onnx.load(model).graph.input[0].name, x))
    c.compute_data()
    print(time.perf_counter() - t0)


def timed(cmd):
    """Wall seconds (as the child reports it, else measured) and peak RSS in MB of cmd."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    rss = int(r.stderr.strip().splitlines()[-1]) / 1024
    out = r.stdout.strip().splitlines()
    if out:
        try:
            wall = float(out[-1])
        except ValueError:
            pass
    return wall, rss


def ort_calib(model, n, method, tmp):
    return timed([sys.executable, os.path.abspath(__file__), "--ort-child", model, str(n), method, tmp])


def mopt_calib(mopt, model, n, method, tmp):
    return timed([mopt, "calib", model, "--data", "fashion-mnist:train", "--limit", str(n), "--batch", "100",
                  "--method", method, "-q", "-o", os.path.join(tmp, "t.csv")])


def mopt_p50(mopt, path, batch, threads, iters):
    r = subprocess.run([mopt, "bench", path, "--batch", str(batch), "--threads", str(threads), "--iters", str(iters),
                        "--warmup", "2", "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
    j = json.loads(r.stdout)
    lat = j.get("latency_ms") or j.get("latency") or {}
    return float(lat.get("p50", lat.get("median"))), None


def ort_p50(path, batch, threads, iters):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        return None, str(e).splitlines()[0][:80]
    feeds = {}
    rng = np.random.default_rng(0)
    for i in s.get_inputs():
        shape = [batch if not isinstance(d, int) or d <= 0 else d for d in i.shape]
        dt = np.float16 if "float16" in i.type else np.float32
        feeds[i.name] = rng.random(shape).astype(dt)
    for _ in range(2):
        s.run(None, feeds)
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        s.run(None, feeds)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), None


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "--ort-child":
        ort_calib_child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--mopt", default=os.path.join(ROOT, "bin", "mopt"))
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="2,000 samples, one round, small models only")
    ap.add_argument("--no-zoo", action="store_true", help="latency of the bundled models only")
    ap.add_argument("--update-doc", default=None)
    a = ap.parse_args()
    if a.quick:
        a.samples, a.rounds = 2000, 1
    tmp = tempfile.mkdtemp(prefix="mopt-bench-prec.")
    out = []
    cmd = " ".join(["bench/precision.py"] + sys.argv[1:])
    out.append(f"Measured {datetime.date.today()} on {platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} CPUs, onnxruntime {ort.__version__}; `{cmd}`.\n")
    out.append(f"**Calibration throughput** ({a.samples} Fashion-MNIST training images, batches of 100; "
               f"wall time of the whole calibration step (ORT: measured inside its process, Python start-up excluded), "
               f"median of {a.rounds} rounds; peak resident memory of the process; mopt: "
               f"`mopt calib MODEL --data fashion-mnist:train --limit {a.samples} --batch 100 --method M`; "
               "ORT: `create_calibrator(...).collect_data(reader); compute_data()`)\n")
    out.append("| model | method | mopt s | mopt samples/s | ORT s | ORT samples/s | ORT / mopt | mopt peak RSS MB | ORT peak RSS MB |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("lenet5", "rescnn"):
        model = os.path.join(ROOT, "datasets", name + ".onnx")
        for method in METHODS:
            tm, to, rm, ro = [], [], [], []
            for _ in range(a.rounds):
                w, r = mopt_calib(a.mopt, model, a.samples, method, tmp)
                tm.append(w)
                rm.append(r)
                w, r = ort_calib(model, a.samples, method, tmp)
                to.append(w)
                ro.append(r)
            m, o = statistics.median(tm), statistics.median(to)
            out.append(f"| {name} | {method} | {m:.2f} | {a.samples / m:,.0f} | {o:.2f} | {a.samples / o:,.0f} | "
                       f"**{o / m:.1f}x** | {max(rm):.0f} | {max(ro):.0f} |")
            print(out[-1], flush=True)
    # Latency.
    models = [("lenet5", os.path.join(ROOT, "datasets/lenet5.onnx"), 64),
              ("rescnn", os.path.join(ROOT, "datasets/rescnn.onnx"), 64)]
    zoo = os.path.join(ROOT, "build", "models")
    if not a.quick and not a.no_zoo and os.path.exists(os.path.join(zoo, "resnet50.onnx")):
        models += [("mobilenetv2", os.path.join(zoo, "mobilenetv2.onnx"), 8),
                   ("resnet50", os.path.join(zoo, "resnet50.onnx"), 8)]
    out.append("")
    out.append(f"**Latency** (p50 ms per batch, {a.threads} threads, median of {a.rounds} rounds taken in turns; "
               "int8: `mopt quant --int8 --data D --limit 1000`, fp16: `mopt amp --to fp16 --keep-io`; "
               "in parentheses: time relative to float32 on the same runtime)\n")
    out.append("| model | batch | variant | mopt executor | ONNX Runtime |")
    out.append("|---|---:|---|---:|---:|")
    for name, path, batch in models:
        files = {"float32": path}
        q = os.path.join(tmp, name + ".int8.onnx")
        h = os.path.join(tmp, name + ".fp16.onnx")
        if name in ("lenet5", "rescnn"):
            data = ["--data", "fashion-mnist:train", "--limit", "1000"]
        else:
            npy = os.path.join(tmp, name + ".cal.npy")
            np.save(npy, np.random.default_rng(1).random((32, 3, 224, 224), np.float32))
            data = ["--data", "npy:" + npy]
        subprocess.run([a.mopt, "quant", "--int8", "-q", path, *data, "-o", q], check=True)
        subprocess.run([a.mopt, "amp", "--to", "fp16", "--keep-io", "-q", path, "-o", h], check=True)
        files["int8 (QDQ)"], files["fp16"] = q, h
        res = {}
        iters = 20 if batch > 8 or "lenet" in name or "rescnn" in name else 10
        for v, f in files.items():
            pm, po = [], []
            for _ in range(a.rounds):
                m, em = mopt_p50(a.mopt, f, batch, a.threads, iters)
                o, eo = ort_p50(f, batch, a.threads, iters)
                pm.append(m)
                po.append(o)
            res[v] = (statistics.median(pm) if None not in pm else em, statistics.median(po) if None not in po else eo)
        for v, (m, o) in res.items():
            def cell(val, base):
                if not isinstance(val, float):
                    return f"fails: {val}"
                if v == "float32" or not isinstance(base, float):
                    return f"{val:.2f}"
                return f"{val:.2f} ({val / base:.2f}x)"
            out.append(f"| {name} | {batch} | {v} | {cell(m, res['float32'][0])} | {cell(o, res['float32'][1])} |")
            print(out[-1], flush=True)
    text = "\n".join(out) + "\n"
    print(text)
    if a.update_doc:
        doc = open(a.update_doc).read()
        b, e = "<!-- precision:begin -->", "<!-- precision:end -->"
        block = f"{b}\n{text}{e}"
        if b in doc and e in doc:
            doc = doc[:doc.index(b)] + block + doc[doc.index(e) + len(e):]
        else:
            doc = doc.rstrip("\n") + "\n\n## Precision: calibration, int8 and fp16 (issue 5)\n\n" + block + "\n"
        open(a.update_doc, "w").write(doc)


if __name__ == "__main__":
    main()
