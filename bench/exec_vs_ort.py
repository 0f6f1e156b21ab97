#!/usr/bin/env python3
"""mopt's executor vs ONNX Runtime on the zoo models (issue 3, section 6).

usage: python bench/exec_vs_ort.py [--mopt PATH] [--models DIR] [--threads 1,2]
                                   [--rounds R] [--iters N] [--coretype NAME] [--unset-coretype]
                                   [--only SUBSTR] [--update-doc docs/benchmarks.md]

For each model and batch (ResNet-50 and MobileNetV2 at batch 1 and 8, the BERT-like encoder at
batch 1, sequence 128) and each thread count, the two runtimes take turns for R rounds: one
`mopt bench --json` call (N timed runs after three warm-up runs in that process) and N timed ONNX Runtime runs of a
session created once (CPU provider, intra-op threads = the same count, inter-op 1, sequential
execution, same input shapes). Each round yields a p50 per runtime; the table reports the
median of the round p50s and their ratio (mopt / ORT; below 1 means mopt is faster), and the
ratio of the two fastest runs. Taking turns keeps both runtimes exposed to the same background
load on a shared machine.

The first mopt column runs mopt in the environment as given (the table says what
OPENBLAS_CORETYPE was). --unset-coretype adds a column for mopt with OPENBLAS_CORETYPE removed
from its environment, i.e. the kernels OpenBLAS picks by itself; --coretype NAME instead adds one
with OPENBLAS_CORETYPE=NAME. OpenBLAS reads the variable once, when the library loads, and mopt
never changes it; mopt's own packed kernels (libopt/exec/cpu/sgemm.c) do not depend on it.

With --update-doc the Markdown table replaces the block between the markers
<!-- exec_vs_ort:begin --> and <!-- exec_vs_ort:end --> in that file.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

CONFIGS = [
    ("resnet50", 1),
    ("resnet50", 8),
    ("mobilenetv2", 1),
    ("mobilenetv2", 8),
    ("bert_encoder", 1),
]
SEQ = 128


def ort_session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_feeds(sess, batch, rng):
    feeds = {}
    for i in sess.get_inputs():
        shape = []
        for j, d in enumerate(i.shape):
            if isinstance(d, int):
                shape.append(d)
            else:
                shape.append(batch if j == 0 else SEQ)
        if "float" in i.type:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
        elif "mask" in i.name:
            feeds[i.name] = np.ones(shape, np.int64)
        else:
            feeds[i.name] = rng.integers(0, 1000, shape).astype(np.int64)
    return feeds


def ort_round(sess, feeds, iters):
    """(p50, min) of `iters` timed runs, in ms."""
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def mopt_round(mopt, path, batch, threads, iters, coretype=None):
    """coretype None: the environment as given; "": OPENBLAS_CORETYPE removed; else set."""
    cmd = [mopt, "bench", path, "--batch", str(batch), "--threads", str(threads),
           "--warmup", "3", "--iters", str(iters), "--dim", f"S={SEQ}", "--json", "-q"]
    env = dict(os.environ)
    if coretype == "":
        env.pop("OPENBLAS_CORETYPE", None)
    elif coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    lat = json.loads(out)["latency_ms"]
    return lat["p50"], lat["min"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mopt", default=os.environ.get("MOPT", "bin/mopt"))
    ap.add_argument("--models", default="build/models")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--coretype", default=None)
    ap.add_argument("--unset-coretype", action="store_true")
    ap.add_argument("--only", default=None)
    ap.add_argument("--update-doc", default=None)
    a = ap.parse_args()
    load0 = os.getloadavg()[0]
    if a.unset_coretype:
        a.coretype = ""
    given = os.environ.get("OPENBLAS_CORETYPE")
    given_txt = f"OPENBLAS_CORETYPE={given}" if given is not None else "OPENBLAS_CORETYPE unset"
    alt_txt = ("OPENBLAS_CORETYPE unset (OpenBLAS's own choice)" if a.coretype == ""
               else f"OPENBLAS_CORETYPE={a.coretype}")

    rng = np.random.default_rng(0)
    rows = []
    for model, batch in CONFIGS:
        path = os.path.join(a.models, model + ".onnx")
        label = f"{model} b{batch}" + (f" s{SEQ}" if model == "bert_encoder" else "")
        if a.only and a.only not in label:
            continue
        if not os.path.exists(path):
            sys.exit(f"exec_vs_ort: {path} missing (run `make models`)")
        for threads in [int(t) for t in a.threads.split(",")]:
            iters = max(2, a.iters // (2 if batch > 1 or model == "bert_encoder" else 1))
            sess = ort_session(path, threads)
            feeds = ort_feeds(sess, batch, rng)
            sess.run(None, feeds)  # warm-up
            m, o, c = [], [], []
            for _ in range(a.rounds):
                m.append(mopt_round(a.mopt, path, batch, threads, iters))
                o.append(ort_round(sess, feeds, iters))
                if a.coretype is not None:
                    c.append(mopt_round(a.mopt, path, batch, threads, iters, a.coretype))
            row = {"model": label, "threads": threads,
                   "mopt": statistics.median(x[0] for x in m),
                   "ort": statistics.median(x[0] for x in o),
                   "min_ratio": min(x[1] for x in m) / min(x[1] for x in o)}
            if a.coretype is not None:
                row["mopt_ct"] = statistics.median(x[0] for x in c)
            rows.append(row)
            extra = f"  mopt[{alt_txt}] {row['mopt_ct']:.1f} ms" if a.coretype is not None else ""
            print(f"{label:<22} t{threads}  mopt {row['mopt']:.1f} ms  ort {row['ort']:.1f} ms  "
                  f"ratio {row['mopt'] / row['ort']:.2f} (of minima {row['min_ratio']:.2f}){extra}",
                  flush=True)
            del sess

    cmdline = "python bench/exec_vs_ort.py " + " ".join(sys.argv[1:])
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, onnxruntime {ort.__version__}; "
        f"{a.rounds} alternating rounds of {a.iters} runs (half for batch 8 and BERT); "
        f"median of the round p50s, in ms; \"min / min\" is the ratio of the fastest runs "
        f"(less sensitive to background load). mopt's environment as given: {given_txt}; "
        f"load average at the start {load0:.1f}.",
        "",
        f"Command: `{cmdline.strip()}`",
        "",
    ]
    head = f"| model | threads | mopt p50 ({given_txt}) | ORT p50 | mopt / ORT | min / min |"
    sep = "|---|---|---|---|---|---|"
    if a.coretype is not None:
        head += f" mopt p50, {alt_txt} | ratio |"
        sep += "---|---|"
    lines += [head, sep]
    for r in rows:
        line = (f"| {r['model']} | {r['threads']} | {r['mopt']:.1f} | {r['ort']:.1f} | "
                f"{r['mopt'] / r['ort']:.2f} | {r['min_ratio']:.2f} |")
        if a.coretype is not None:
            line += f" {r['mopt_ct']:.1f} | {r['mopt_ct'] / r['ort']:.2f} |"
        lines.append(line)
    table = "\n".join(lines)
    print()
    print(table)
    if a.update_doc:
        with open(a.update_doc) as f:
            doc = f.read()
        b, e = "<!-- exec_vs_ort:begin -->", "<!-- exec_vs_ort:end -->"
        if b in doc and e in doc:
            doc = doc[: doc.index(b) + len(b)] + "\n" + table + "\n" + doc[doc.index(e):]
            with open(a.update_doc, "w") as f:
                f.write(doc)
        else:
            print(f"exec_vs_ort: markers not found in {a.update_doc}; table not written",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
