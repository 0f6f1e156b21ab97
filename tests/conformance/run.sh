#!/bin/bash
# tests/conformance/run.sh — ONNX backend node tests through mopt's executor (`make conformance`).
#
# Runs every node test whose ops are registered (the executor refusing a model as unsupported
# means skipped) from two data sets: Debian's libonnx-testdata ("debian") and the node tests of
# the venv's newer onnx package ("pypi"), generated once into build/onnx-node-data by
# gen_node_data.py (PyPI's wheel ships the generators, not the data). Outputs are compared with
# rtol 1e-3 / atol 1e-7; the run fails unless every failure is listed with its reason in
# tests/conformance/known-failures.txt.
# Env: CONF (the driver, built by `make conformance`), PY (the venv's python; without it only
# the Debian set runs), CONF_ARGS (extra driver options, e.g. "-v" or "--filter test_add").
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CONF=${CONF:-build/release/bin/conformance}
sets=()
[ -d /usr/share/libonnx-testdata/data/node ] && sets+=(debian=/usr/share/libonnx-testdata/data/node)
if [ -n "${PY:-}" ] && [ -x "${PY}" ]; then
    ver=$("$PY" -c 'import onnx; print(onnx.__version__)' 2>/dev/null)
    out="$root/build/onnx-node-data"
    if [ -n "$ver" ]; then
        if [ ! -f "$out/.stamp-$ver" ]; then
            rm -rf "$out" && mkdir -p "$out" &&
                "$PY" "$here/gen_node_data.py" "$out" && touch "$out/.stamp-$ver"
        fi
        [ -f "$out/.stamp-$ver" ] && sets+=(pypi="$out/node")
    fi
fi
if [ ${#sets[@]} -eq 0 ]; then
    echo "conformance: no ONNX backend test data (install libonnx-testdata: make deps)" >&2
    exit 1
fi
echo "conformance: ${sets[*]}"
exec "$CONF" --known "$here/known-failures.txt" ${CONF_ARGS:-} "${sets[@]}"
