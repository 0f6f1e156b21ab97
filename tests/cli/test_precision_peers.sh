#!/usr/bin/env bash
# tests/cli/test_precision_peers.sh — quick side-by-side runs against ONNX Runtime (the full
# tables are in docs/precision.md): mopt quant's top-1 within 0.3 points of quantize_static's on
# lenet5 (200 calibration images, 2,000 test images; under tests/valgrind.sh 50 and 300, within
# 1.5 points), and mopt amp --keep-io with no more casts and
# no larger error than onnxruntime.transformers.float16 on lenet5, rescnn and the attention block.
source "$(dirname "$0")/lib.sh"
PY=${PY:-$ROOT/.venv/bin/python}
"$PY" "$ROOT/tests/precision/make_models.py" "$T/g" || { echo "FAIL make_models.py"; exit 1; }
check "quant vs quantize_static (minmax, entropy)" 0 '' -- "$PY" "$ROOT/tests/precision/compare_quant.py" "$MOPT" "$T/q" \
    --cal $(small 200 50) --eval-limit $(small 2000 300) --methods minmax,entropy --tolerance $(small 0.3 1.5) "$ROOT/datasets/lenet5.onnx"
assert "quant: both methods reported" [ "$(grep -c '^lenet5' "$T/out")" -eq 2 ]
check "amp vs float16 converter" 0 '' -- "$PY" "$ROOT/tests/precision/compare_amp.py" "$MOPT" "$T/a" \
    "$ROOT/datasets/lenet5.onnx" "$ROOT/datasets/rescnn.onnx"
assert "amp: casts equal on the CNNs" [ "$(grep -c 'casts mopt   2 ort   2' "$T/out")" -eq 2 ]
check "amp --all vs float16 converter on the attention block" 0 '' -- "$PY" "$ROOT/tests/precision/compare_amp.py" \
    "$MOPT" "$T/b" --mopt-args --all "$T/g/attn.onnx"
finish
