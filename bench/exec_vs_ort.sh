#!/usr/bin/env bash
# bench/exec_vs_ort.sh — mopt's executor vs ONNX Runtime on ResNet-50, MobileNetV2 (batch 1 and 8)
# and the BERT-like encoder (sequence 128), 1 and 2 threads, taking turns (bench/exec_vs_ort.py).
# On CPUs with AVX-512 it also times mopt with OpenBLAS's AVX-512 kernels (OPENBLAS_CORETYPE).
# Writes the table into docs/benchmarks.md (section "Executor vs ONNX Runtime").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MOPT=${MOPT:-bin/mopt}
extra=()
if grep -q avx512f /proc/cpuinfo 2>/dev/null; then extra+=(--coretype SkylakeX); fi
"$PY" bench/exec_vs_ort.py --mopt "$MOPT" "${extra[@]}" --update-doc docs/benchmarks.md
