#!/usr/bin/env bash
# tests/oracle/run.sh — mopt's executor against ONNX Runtime (issue 3, section 5).
#
# Called by `make oracle` with MOPT (the mopt binary) and PY (the venv's python). Makes the zoo
# models first (`make models`: ResNet-50, MobileNetV2, BERT-like encoder in build/models), then
# runs tests/oracle/oracle.py, which prints its seed, one line per case and a summary, and exits 1
# when a case outside tests/oracle/known-failures.txt fails. Extra arguments go to oracle.py
# (e.g. --seed S, --only resnet50).
set -euo pipefail
cd "$(dirname "$0")/../.."
MOPT=${MOPT:-bin/mopt}
PY=${PY:-.venv/bin/python}
if [ ! -x "$MOPT" ]; then echo "oracle: $MOPT is not built" >&2; exit 1; fi
if [ ! -x "$PY" ]; then echo "oracle: $PY missing (make venv)" >&2; exit 1; fi
make --no-print-directory -s models
exec "$PY" tests/oracle/oracle.py --mopt "$MOPT" "$@"
