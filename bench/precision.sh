#!/usr/bin/env bash
# bench/precision.sh — calibration throughput (mopt calib vs ONNX Runtime's calibrators) and int8 /
# fp16 latency against float32 on mopt's executor and on ONNX Runtime (bench/precision.py).
# Writes its tables into docs/benchmarks.md (section "Precision"). PRECISION_ARGS adds options
# (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MOPT=${MOPT:-bin/mopt}
"$PY" bench/precision.py --mopt "$MOPT" ${PRECISION_ARGS:-} --update-doc docs/benchmarks.md
# A model of several integer inputs: BERT-base (build/models, `make models`), calibrated on
# 16 sequences of 128 tokens by mopt and by ONNX Runtime, then its int8 file's latency on both
# (docs/benchmarks.md, "BERT-base: calibration of two int64 inputs, int8 latency").
"$PY" bench/calib_bert.py --mopt "$MOPT" --methods minmax --rounds 3 --latency build/bench-bert
