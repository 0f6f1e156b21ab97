#!/usr/bin/env bash
# bench/exec_vs_ort.sh — mopt's executor vs ONNX Runtime on ResNet-50, MobileNetV2 (batch 1 and 8)
# and the BERT-like encoder (sequence 128), 1 and 2 threads, taking turns (bench/exec_vs_ort.py).
# When the environment sets OPENBLAS_CORETYPE it also times mopt with that variable removed
# (OpenBLAS's own choice of kernels), in a column of its own; mopt never changes it itself.
# Writes the table into docs/benchmarks.md (section "Executor vs ONNX Runtime").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MOPT=${MOPT:-bin/mopt}
extra=()
if [ -n "${OPENBLAS_CORETYPE+set}" ]; then extra+=(--unset-coretype); fi
"$PY" bench/exec_vs_ort.py --mopt "$MOPT" "${extra[@]}" --update-doc docs/benchmarks.md
