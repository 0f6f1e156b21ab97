#!/usr/bin/env bash
# bench/threads_vs_ort.sh — the bundled models on mopt's executor and ONNX Runtime, 1 and 2
# threads, batches 1 and 100 (docs/benchmarks.md, "Threads").
set -euo pipefail
cd "$(dirname "$0")/.."
"${PY:-.venv/bin/python}" bench/threads_vs_ort.py --mopt "${MOPT:-bin/mopt}" --rounds 3
