#!/usr/bin/env python3
"""Precision benchmarks (issue 5): calibration throughput, int8/fp16/bf16 latency, mopt vs ONNX Runtime.

usage: precision.py [--mopt bin/mopt] [--samples N] [--rounds R] [--threads T] [--quick]
                    [--calib-only] [--calib-models lenet300,lenet5,rescnn]
                    [--latency-only] [--latency-threads 1,2] [--models lenet5,rescnn,resnet50]
                    [--variants float32,int8,int8sim,fp16,bf16] [--batches 1,64]
                    [--mopt-base OLD_MOPT [--mopt-base-label LABEL]] [--stat p50|min]
                    [--update-doc docs/benchmarks.md]

1. Calibration throughput. The same model and the same data (the first N Fashion-MNIST training
   images, N = 10,000 by default) through `mopt calib --method M` and through ONNX Runtime's
   calibrator for M (onnxruntime.quantization.calibrate.create_calibrator, then collect_data over
   batches of 100, then compute_data: what quantize_static does). Wall time of the whole step,
   model loading included, median of R rounds taken in turns (each round runs every model and
   method on each calibrator in turn); samples/s and the ratio ORT/mopt (above 1: mopt is
   faster); CPU seconds (user + system, all threads) beside the wall time; the load average
   before and after. Both calibrators start from the same decoded float32 images: ORT's in
   memory before its clock starts, mopt's from an .npy file of that array written beforehand
   (and, in the column ".gz", from Debian's gzipped IDX files, decoding them as it goes). The
   "ceiling" column is ORT's time over the time the model's Conv/Gemm/MatMul multiply-adds take
   at the machine's float32 GEMM rate (ONNX Runtime's own MatMul, 2048 x 2048, all cores): the
   most any calibrator that runs the float32 forward pass could gain over ORT. Models:
   --calib-models. With --mopt-base, that
   binary runs in the same turns too, and the table says whether its calibration table is byte
   for byte mopt's. --calib-only skips part 2 and, with --update-doc, replaces only the
   calibration part of the block (the latency block stays).
2. Latency. float32, `mopt quant --int8` (minmax, 1000 training images), `mopt amp --to fp16
   --keep-io` and `mopt amp --to bf16 --keep-io` (of the model raised to opset 22, where Conv
   takes bfloat16) files of the same model (--variants picks some), each run by `mopt bench
   --json` (mopt's executor) and by an ONNX Runtime session (CPU provider, the same thread
   count); p50 per batch, median of R rounds taken in turns, and each variant's ratio to float32
   on the same runtime. At batch 1 and a larger batch (--batches), for each thread count of
   --latency-threads; the load average before and after is printed under the table. With
   --mopt-base, a second mopt binary (say, a build before a change) runs the same files in the
   same turns, in a column of its own. --stat min takes each call's fastest run instead of its
   median: on a host shared with other jobs the medians carry their load, the minimum much less. The int8 file also runs on mopt
   with MOPT_NO_QDQ_FUSE=1 (the QDQ nodes as written, simulated in float), to show what the
   integer kernels gain. --latency-only skips part 1 and, with --update-doc, replaces only the
   latency block (between <!-- precision-latency:begin --> and <!-- precision-latency:end -->).

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
import onnx.version_converter
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import create_calibrator

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "datasets"))
from eval_fmnist import load_split  # noqa: E402

# Latency variants: the short name for --variants -> the row label.
VARIANTS = {"float32": "float32", "int8": "int8 (QDQ)", "int8sim": "int8, simulated", "fp16": "fp16",
            "bf16": "bf16"}

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
    c0 = time.process_time()
    c.collect_data(Reader(onnx.load(model).graph.input[0].name, x))
    c.compute_data()
    print(time.perf_counter() - t0, time.process_time() - c0)


def timed(cmd):
    """Wall seconds and CPU seconds (user + system, all threads) as the child reports them (else
    measured for the whole process), and peak RSS in MB of cmd."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *cmd], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    m, u, sy = r.stderr.strip().splitlines()[-1].split()
    rss, cpu = int(m) / 1024, float(u) + float(sy)
    out = r.stdout.strip().splitlines()
    if out:
        try:
            wall, cpu = (float(v) for v in out[-1].split())
        except ValueError:
            pass
    return wall, rss, cpu


def ort_calib(model, n, method, tmp):
    return timed([sys.executable, os.path.abspath(__file__), "--ort-child", model, str(n), method, tmp])


def mopt_calib(mopt, model, n, method, tmp, out="t.csv", data="fashion-mnist:train"):
    return timed([mopt, "calib", model, "--data", data, "--limit", str(n), "--batch", "100",
                  "--method", method, "-q", "-o", os.path.join(tmp, out)])


STAT = "p50"  # or "min" (--stat): per call, the median or the fastest of its timed runs


def mopt_p50(mopt, path, batch, threads, iters, env=None):
    r = subprocess.run([mopt, "bench", path, "--batch", str(batch), "--threads", str(threads), "--iters", str(iters),
                        "--warmup", "2", "--json"], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
    j = json.loads(r.stdout)
    lat = j.get("latency_ms") or j.get("latency") or {}
    if STAT == "min":
        return float(lat["min"]), None
    return float(lat.get("p50", lat.get("median"))), None


def ort_p50(path, batch, threads, iters):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        msg = str(e).splitlines()[0]
        if "NOT_IMPLEMENTED" in msg:
            op = msg.split("for ")[-1].split("(")[0].strip() if "for " in msg else ""
            return None, f"no CPU kernel{' for ' + op if op else ''}"
        return None, msg[:80]
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
    return (min(ts) if STAT == "min" else statistics.median(ts)), None


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
    ap.add_argument("--latency-only", action="store_true", help="skip the calibration benchmark")
    ap.add_argument("--calib-only", action="store_true", help="only the calibration benchmark; with --update-doc, "
                    "replace only its part of the block (before <!-- precision-latency:begin -->)")
    ap.add_argument("--calib-models", default="lenet300,lenet5,rescnn", help="models of the calibration table")
    ap.add_argument("--latency-threads", default=None, help="thread counts for the latency table (default: --threads)")
    ap.add_argument("--models", default=None, help="latency models (default lenet5,rescnn and, unless --quick or "
                    "--no-zoo, mobilenetv2,resnet50)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="latency variants (default all: " + ",".join(VARIANTS) + ")")
    ap.add_argument("--batches", default=None, help="latency batch sizes (default 1 and the model's larger batch)")
    ap.add_argument("--mopt-base", default=None, help="another mopt binary (an older build) timed in the same turns, "
                    "in its own column")
    ap.add_argument("--mopt-base-label", default="before", help="that column's label (default: before)")
    ap.add_argument("--stat", choices=("p50", "min"), default="p50",
                    help="per call: the median (default) or the fastest of its timed runs (on a loaded host)")
    a = ap.parse_args()
    global STAT
    STAT = a.stat
    if a.quick:
        a.samples, a.rounds = 2000, 1
    tmp = tempfile.mkdtemp(prefix="mopt-bench-prec.")
    out = []
    cmd = " ".join(["bench/precision.py"] + sys.argv[1:])
    out.append(f"Measured {datetime.date.today()} on {platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} CPUs, onnxruntime {ort.__version__}; `{cmd}`.\n")
    if a.latency_only:
        out = []
    else:
        calibration(a, out, tmp)
    if not a.calib_only:
        latency(a, out, tmp, cmd)
    finish(a, out)


def model_macs(path):
    """Multiply-adds per sample of the Conv, Gemm and MatMul nodes of the model at path (batch 1)."""
    m = onnx.shape_inference.infer_shapes(onnx.load(path))
    g = m.graph
    shp = {vi.name: [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]
           for vi in list(g.value_info) + list(g.input) + list(g.output)}
    shp.update({i.name: list(i.dims) for i in g.initializer})
    macs = 0
    for n in g.node:
        if n.op_type == "Conv":
            macs += int(np.prod(shp[n.output[0]][1:])) * int(np.prod(shp[n.input[1]][1:]))
        elif n.op_type == "Gemm":
            macs += int(np.prod(shp[n.input[1]]))
        elif n.op_type == "MatMul":
            macs += int(np.prod(shp[n.input[0]][1:])) * shp[n.input[1]][-1]
    return macs


def sgemm_peak():
    """The machine's float32 GEMM rate in FLOP/s as ONNX Runtime's own GEMM (MLAS, which picks its
    kernels from the CPU's features) reaches it: a 2048 x 2048 MatMul on all cores, median of 5
    after a warm-up. (numpy's would do, but its OpenBLAS obeys OPENBLAS_CORETYPE and may run AVX2
    kernels on an AVX-512 machine.)"""
    n = 2048
    g = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["a", "b"], ["y"])], "peak",
        [onnx.helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, [n, n]) for v in ("a", "b")],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [n, n])])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((n, n), dtype=np.float32)
    feed = {"a": x, "b": x}
    sess.run(None, feed)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        sess.run(None, feed)
        ts.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(ts)


def calibration(a, out, tmp):
    models = [m for m in a.calib_models.split(",") if m]
    load0 = os.getloadavg()
    peak = sgemm_peak()
    macs = {name: model_macs(os.path.join(ROOT, "datasets", name + ".onnx")) for name in models}
    # ORT's calibrator gets the images as a float32 array already in memory (decoded before its
    # clock starts); mopt gets the same array as an .npy file, written here before any timing.
    npy = os.path.join(tmp, "cal.npy")
    np.save(npy, np.ascontiguousarray(load_split("train")[0][:a.samples]))
    data = "npy:" + npy
    base = f"mopt {a.mopt_base_label} s | " if a.mopt_base else ""
    out.append(f"**Calibration throughput** ({a.samples} Fashion-MNIST training images, batches of 100; "
               f"wall time of the whole calibration step (ORT: measured inside its process, Python start-up excluded), "
               f"median of {a.rounds} rounds taken in turns (each round runs every model and method on every "
               f"calibrator, so a burst of load from other jobs lands on all of them); CPU: user + system seconds of "
               f"all threads over the same span (mopt: the whole process; on a shared host CPU time moves much less "
               f"with the load than wall time); peak resident memory of the process; mopt: `mopt calib MODEL --data npy:CAL.npy --batch 100 --method M` "
               "(threads: all cores), CAL.npy holding the same float32 images ORT's reader hands out (ORT's clock starts "
               "after they are decoded and in memory; mopt's includes process start-up and reading the file); "
               f"\"mopt s, .gz\": `--data fashion-mnist:train --limit {a.samples}` instead, decoding Debian's gzipped IDX "
               "files on the way; ORT: `create_calibrator(...).collect_data(reader); compute_data()`"
               + (f"; \"mopt {a.mopt_base_label}\": `{a.mopt_base}` in the same turns, and whether its table is byte "
                  "for byte the same" if a.mopt_base else "")
               + f"; ceiling: ORT's time over the time the model's multiply-adds alone take at this machine's "
               f"float32 GEMM rate ({peak / 1e9:.0f} GFLOP/s: a 2048 x 2048 MatMul in ONNX Runtime, all cores, "
               "measured first) — no calibrator that computes the float32 forward pass exactly can beat ORT by more)\n")
    out.append(f"| model | method | {base}mopt s | mopt s, .gz | mopt samples/s | ORT s | ORT samples/s | ORT / mopt | "
               "ceiling | mopt CPU s | ORT CPU s | ORT / mopt, CPU | mopt peak RSS MB | ORT peak RSS MB |"
               + (" same table |" if a.mopt_base else ""))
    out.append("|---|---|" + ("---:|" if a.mopt_base else "") + "---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
               + ("---|" if a.mopt_base else ""))
    runs = [(name, method) for name in models for method in METHODS]
    t = {r: {"mopt": [], "gz": [], "ort": [], "base": [], "rm": [], "ro": [], "cm": [], "co": [], "same": True}
         for r in runs}
    for _ in range(a.rounds):
        for name, method in runs:
            model = os.path.join(ROOT, "datasets", name + ".onnx")
            r = t[(name, method)]
            if a.mopt_base:
                w, _, _ = mopt_calib(a.mopt_base, model, a.samples, method, tmp, "base.csv", data)
                r["base"].append(w)
            w, _, _ = mopt_calib(a.mopt, model, a.samples, method, tmp, "gz.csv")
            r["gz"].append(w)
            w, rss, cpu = mopt_calib(a.mopt, model, a.samples, method, tmp, "t.csv", data)
            r["mopt"].append(w)
            r["rm"].append(rss)
            r["cm"].append(cpu)
            if a.mopt_base:
                r["same"] &= open(os.path.join(tmp, "t.csv")).read() == open(os.path.join(tmp, "base.csv")).read()
            w, rss, cpu = ort_calib(model, a.samples, method, tmp)
            r["ort"].append(w)
            r["ro"].append(rss)
            r["co"].append(cpu)
    for name, method in runs:
        r = t[(name, method)]
        m, o = statistics.median(r["mopt"]), statistics.median(r["ort"])
        cm, co = statistics.median(r["cm"]), statistics.median(r["co"])
        b = f"{statistics.median(r['base']):.2f} | " if a.mopt_base else ""
        same = (" yes |" if r["same"] else " **no** |") if a.mopt_base else ""
        out.append(f"| {name} | {method} | {b}{m:.2f} | {statistics.median(r['gz']):.2f} | {a.samples / m:,.0f} | {o:.2f} | {a.samples / o:,.0f} | "
                   f"**{o / m:.1f}x** | {o / (2 * macs[name] * a.samples / peak):.1f}x | {cm:.2f} | {co:.2f} | {co / cm:.1f}x | {max(r['rm']):.0f} | {max(r['ro']):.0f} |{same}")
        print(out[-1], flush=True)
    load1 = os.getloadavg()
    out.append(f"\nLoad average (1, 5, 15 min) before: {load0[0]:.2f}, {load0[1]:.2f}, {load0[2]:.2f}; "
               f"after: {load1[0]:.2f}, {load1[1]:.2f}, {load1[2]:.2f} ({os.cpu_count()} CPUs).")


def latency(a, out, tmp, cmd):
    zoo = os.path.join(ROOT, "build", "models")
    known = {"lenet5": (os.path.join(ROOT, "datasets/lenet5.onnx"), 64),
             "rescnn": (os.path.join(ROOT, "datasets/rescnn.onnx"), 64),
             "mobilenetv2": (os.path.join(zoo, "mobilenetv2.onnx"), 8),
             "resnet50": (os.path.join(zoo, "resnet50.onnx"), 8)}
    if a.models:
        names = a.models.split(",")
    else:
        names = ["lenet5", "rescnn"]
        if not a.quick and not a.no_zoo and os.path.exists(known["resnet50"][0]):
            names += ["mobilenetv2", "resnet50"]
    threads = [int(t) for t in (a.latency_threads or str(a.threads)).split(",")]
    variants = [v for v in a.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"precision.py: unknown variant '{v}' (known: {', '.join(VARIANTS)})")
    if "float32" not in variants:
        variants.insert(0, "float32")  # the ratios' base
    load0 = os.getloadavg()
    if a.latency_only:
        out.append(f"Measured {datetime.date.today()} on {platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} CPUs, onnxruntime {ort.__version__}; `{cmd}`.\n")
    else:
        out.append("")
    stat = "p50" if a.stat == "p50" else "fastest run"
    out.append(f"**Latency** ({stat} ms per batch, median of {a.rounds} rounds taken in turns; int8: `mopt quant --int8 "
               "--data D --limit 1000` (ResNet-50: 32 random images), fp16: `mopt amp --to fp16 --keep-io`, bf16: the model "
               "raised to opset 22 (onnx.version_converter; Conv takes bfloat16 from opset 22) then `mopt amp --to bf16 "
               "--keep-io`; "
               "\"int8, simulated\": the same int8 file on mopt with `MOPT_NO_QDQ_FUSE=1`, i.e. DequantizeLinear -> "
               "float op -> QuantizeLinear as written; in parentheses: time relative to float32 on the same runtime "
               "and thread count)\n")
    if a.mopt_base:
        out.append(f"| model | batch | threads | variant | mopt {a.mopt_base_label} | mopt executor | ONNX Runtime |")
        out.append("|---|---:|---:|---|---:|---:|---:|")
    else:
        out.append("| model | batch | threads | variant | mopt executor | ONNX Runtime |")
        out.append("|---|---:|---:|---|---:|---:|")
    for name in names:
        path, big = known[name]
        files = {"float32": path}
        if "int8" in variants or "int8sim" in variants:
            q = os.path.join(tmp, name + ".int8.onnx")
            if name in ("lenet5", "rescnn"):
                data = ["--data", "fashion-mnist:train", "--limit", "1000"]
            else:
                npy = os.path.join(tmp, name + ".cal.npy")
                np.save(npy, np.random.default_rng(1).random((32, 3, 224, 224), np.float32))
                data = ["--data", "npy:" + npy]
            subprocess.run([a.mopt, "quant", "--int8", "-q", path, *data, "-o", q], check=True)
            for v in ("int8", "int8sim"):
                if v in variants:
                    files[VARIANTS[v]] = q
        for v in ("fp16", "bf16"):
            if v in variants:
                src = path
                if v == "bf16":
                    # Conv, the pools and others accept bfloat16 from opset 22 on: below that
                    # `mopt amp --to bf16` keeps them float32. Raise the opset first.
                    src = os.path.join(tmp, f"{name}.op22.onnx")
                    onnx.save(onnx.version_converter.convert_version(onnx.load(path), 22), src)
                h = os.path.join(tmp, f"{name}.{v}.onnx")
                subprocess.run([a.mopt, "amp", "--to", v, "--keep-io", "-q", src, "-o", h], check=True)
                files[v] = h
        batches = [int(b) for b in a.batches.split(",")] if a.batches else [1, big]
        for batch in batches:
            for th in threads:
                res = {}
                small = "lenet" in name or "rescnn" in name
                iters = 50 if small and batch == 1 else 20 if small else 10 if batch == 1 else 5
                # Rounds outermost: each round times every variant on every runtime in turn, so a
                # burst of load from other jobs lands on all of them rather than on one variant.
                times = {v: ([], [], []) for v in files}  # mopt, ORT, base: (value or error) per round
                for _ in range(a.rounds):
                    for v, f in files.items():
                        sim = v == "int8, simulated"
                        env = {"MOPT_NO_QDQ_FUSE": "1"} if sim else None
                        if a.mopt_base:
                            times[v][2].append(mopt_p50(a.mopt_base, f, batch, th, iters, env))
                        times[v][0].append(mopt_p50(a.mopt, f, batch, th, iters, env))
                        if not sim:
                            times[v][1].append(ort_p50(f, batch, th, iters))

                def summary(rounds):
                    vals = [t for t, _ in rounds]
                    if not rounds:
                        return "-"
                    return statistics.median(vals) if None not in vals else next(e for t, e in rounds if t is None)
                for v in files:
                    res[v] = (summary(times[v][0]), summary(times[v][1]),
                              summary(times[v][2]) if a.mopt_base else None)
                for v, (m, o, b) in res.items():
                    def cell(val, base):
                        if val == "-":
                            return "-"
                        if not isinstance(val, float):
                            return f"fails: {val}"
                        if v == "float32" or not isinstance(base, float):
                            return f"{val:.2f}"
                        return f"{val:.2f} ({val / base:.2f}x)"
                    base = f" {cell(b, res['float32'][2])} |" if a.mopt_base else ""
                    out.append(f"| {name} | {batch} | {th} | {v} |{base} {cell(m, res['float32'][0])} | "
                               f"{cell(o, res['float32'][1])} |")
                    print(out[-1], flush=True)
    load1 = os.getloadavg()
    out.append(f"\nLoad average (1 min) {load0[0]:.1f} before, {load1[0]:.1f} after the runs.")
    return out


def finish(a, out):
    text = "\n".join(out) + "\n"
    print(text)
    if a.update_doc:
        doc = open(a.update_doc).read()
        lb, le = "<!-- precision-latency:begin -->", "<!-- precision-latency:end -->"
        if a.latency_only:
            block = f"{lb}\n{text}{le}"
            if lb in doc and le in doc:
                doc = doc[:doc.index(lb)] + block + doc[doc.index(le) + len(le):]
            elif "<!-- precision:end -->" in doc:
                k = doc.index("<!-- precision:end -->")
                lat = doc.rfind("**Latency**", 0, k)
                k0 = lat if lat >= 0 else k
                doc = doc[:k0] + block + "\n" + doc[k:]
            else:
                doc = doc.rstrip("\n") + "\n\n" + block + "\n"
            open(a.update_doc, "w").write(doc)
            return
        b, e = "<!-- precision:begin -->", "<!-- precision:end -->"
        if a.calib_only and b in doc and lb in doc:  # the calibration part only: keep the latency block
            doc = doc[:doc.index(b) + len(b)] + "\n" + text + "\n" + doc[doc.index(lb):]
            open(a.update_doc, "w").write(doc)
            return
        text = text.replace("**Latency**", lb + "\n**Latency**", 1) + le + "\n" if "**Latency**" in text else text
        block = f"{b}\n{text}{e}"
        if b in doc and e in doc:
            doc = doc[:doc.index(b)] + block + doc[doc.index(e) + len(e):]
        else:
            doc = doc.rstrip("\n") + "\n\n## Precision: calibration, int8 and fp16 (issue 5)\n\n" + block + "\n"
        open(a.update_doc, "w").write(doc)


if __name__ == "__main__":
    main()
