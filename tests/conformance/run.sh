#!/bin/bash
# tests/conformance/run.sh — ONNX backend node tests through mopt's executor (`make conformance`).
#
# Runs every node test whose ops are registered (the executor refusing a model as unsupported
# means skipped) from Debian's libonnx-testdata and, when present, the copy inside the venv's
# onnx package; compares outputs with rtol 1e-3 / atol 1e-7; fails unless every failure is
# listed with its reason in tests/conformance/known-failures.txt.
# Env: CONF (the driver, built by `make conformance`), PY (the venv's python, optional),
# CONF_ARGS (extra driver options, e.g. "-v" or "--filter test_add").
set -u
here=$(cd "$(dirname "$0")" && pwd)
CONF=${CONF:-build/release/bin/conformance}
dirs=()
[ -d /usr/share/libonnx-testdata/data/node ] && dirs+=(/usr/share/libonnx-testdata/data/node)
if [ -n "${PY:-}" ] && [ -x "${PY}" ]; then
    pipdir=$("$PY" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/node"))' 2>/dev/null)
    [ -n "$pipdir" ] && [ -d "$pipdir" ] && dirs+=("$pipdir")
fi
if [ ${#dirs[@]} -eq 0 ]; then
    echo "conformance: no ONNX backend test data (install libonnx-testdata: make deps)" >&2
    exit 1
fi
echo "conformance: ${dirs[*]}"
exec "$CONF" --known "$here/known-failures.txt" ${CONF_ARGS:-} "${dirs[@]}"
