#!/usr/bin/env bash
# tests/roundtrip.sh — `mopt cat` loses nothing: every model.onnx of ONNX's backend test data
# (libonnx-testdata: node, pytorch-converted, pytorch-operator, simple; about 1,070 models) comes
# back byte for byte; through --external-data and --inline-data it comes back equal (fields and
# tensor values); and onnx.checker(full_check=True) accepts mopt's output wherever it accepts the
# input. The work is in tests/roundtrip_check.py (one Python process for all models).
# Env: MOPT (the binary), PY (a Python with onnx and numpy), TESTDATA (default: Debian's path).
set -euo pipefail
: "${MOPT:?MOPT must name the mopt binary}"
PY=${PY:-python3}
TESTDATA=${TESTDATA:-/usr/share/libonnx-testdata/data}
dirs=()
for d in node pytorch-converted pytorch-operator simple; do
    [ -d "$TESTDATA/$d" ] || { echo "roundtrip: $TESTDATA/$d missing (make deps installs libonnx-testdata)"; exit 1; }
    dirs+=("$TESTDATA/$d")
done
exec "$PY" "$(dirname "$0")/roundtrip_check.py" "$MOPT" "${dirs[@]}"
