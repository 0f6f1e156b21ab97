#!/usr/bin/env bash
# tests/cli/test_amp.sh — `mopt amp`: fp16/bf16 models that pass onnx.checker and run in ONNX
# Runtime; the summary line and per-op counts; --keep-io; the op lists and their options; Cast
# placement (no Cast -> Cast chain, one Cast per value, none between half nodes); clamped weights
# named in a warning; --data keeping overflowing nodes float32; the --max-drop gate.
source "$(dirname "$0")/lib.sh"
PY=${PY:-$ROOT/.venv/bin/python}
L5=$ROOT/datasets/lenet5.onnx
L3=$ROOT/datasets/lenet300.onnx
G=$T/g
"$PY" "$ROOT/tests/precision/make_models.py" "$G" || { echo "FAIL make_models.py"; exit 1; }
iotype() { "$PY" -c "import onnx,sys; m=onnx.load(sys.argv[1]); print(m.graph.input[0].type.tensor_type.elem_type, m.graph.output[0].type.tensor_type.elem_type)" "$1"; }
ncasts() { "$PY" -c "import onnx,sys; print(sum(n.op_type=='Cast' for n in onnx.load(sys.argv[1]).graph.node))" "$1"; }

check "lenet5 fp16 --keep-io" 0 'converted 1[0-9]/1[0-9] nodes to float16 using 2 casts' -- \
    "$MOPT" amp --to fp16 --keep-io "$L5" -o "$T/h.onnx"
assert "per-op counts" grep -Eq '^  Conv +2/2$' "$T/err"
assert "--keep-io: input and output float32" [ "$(iotype "$T/h.onnx")" = "1 1" ]
assert "fp16 lenet5: checker, ONNX Runtime, cast rules" "$PY" "$ROOT/tests/precision/check_model.py" --casts "$T/h.onnx"
check "without --keep-io" 0 'using 0 casts' -- "$MOPT" amp "$L3" -o "$T/h3.onnx"
assert "without --keep-io: input and output float16" [ "$(iotype "$T/h3.onnx")" = "10 10" ]
assert "fp16 lenet300: checker, ONNX Runtime" "$PY" "$ROOT/tests/precision/check_model.py" "$T/h3.onnx"
check "fp16 top-1 reported" 0 "top-1 on $(small 2000 200) samples:"' float32 [0-9.]+%, float16 [0-9.]+% \(drop -?0\.[0-9]+ points' -- \
    "$MOPT" amp --keep-io "$L5" --eval fashion-mnist:test --eval-limit $(small 2000 200) -o "$T/he.onnx"

# The attention block: Softmax and LayerNormalization are deny ops and stay float32.
check "attention block" 0 'converted 15/17 nodes to float16 using 6 casts' -- "$MOPT" amp --keep-io "$G/attn.onnx" -o "$T/attn.onnx"
assert "Softmax float32" grep -Eq '^  Softmax +0/1$' "$T/err"
assert "LayerNormalization float32" grep -Eq '^  LayerNormalization +0/1$' "$T/err"
assert "the int64 mask's Cast becomes the float16 Cast (no new Cast after it)" grep -Eq '^  Cast +1/1$' "$T/err"
assert "attention: checker, ONNX Runtime, cast rules" "$PY" "$ROOT/tests/precision/check_model.py" --casts "$T/attn.onnx"
check "--all converts the deny ops too" 0 'converted 17/17 nodes to float16 using 3 casts' -- "$MOPT" amp --keep-io --all "$G/attn.onnx" -o "$T/attn-all.onnx"
assert "--all: checker, ONNX Runtime, cast rules" "$PY" "$ROOT/tests/precision/check_model.py" --casts "$T/attn-all.onnx"
check "--allow Softmax" 0 '' -- "$MOPT" amp --keep-io --allow Softmax "$G/attn.onnx" -o "$T/attn-a.onnx"
assert "--allow: Softmax half" grep -Eq '^  Softmax +1/1$' "$T/err"
check "--deny Relu --exclude-node conv2" 0 '' -- "$MOPT" amp --keep-io --deny Relu --exclude-node conv2 "$L5" -o "$T/hd.onnx"
assert "--deny: Relu float32" grep -Eq '^  Relu +0/[0-9]$' "$T/err"
assert "--exclude-node named with its reason" grep -q 'float32: conv2 (--exclude-node)' "$T/err"
assert "--deny/--exclude-node: checker, ONNX Runtime, cast rules" "$PY" "$ROOT/tests/precision/check_model.py" --casts "$T/hd.onnx"
assert "more boundaries, more casts" [ "$(ncasts "$T/hd.onnx")" -gt 2 ]

check "bf16" 0 'nodes to bfloat16' -- "$MOPT" amp --to bf16 --keep-io "$L5" -o "$T/b.onnx"
assert "bf16: Conv has no bfloat16 at opset 17 and says so" grep -q 'no bfloat16 in its ONNX schema at this opset' "$T/err"
assert "bf16 passes the checker" "$PY" -c "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)" "$T/b.onnx"

check "weights beyond float16 clamped, with a warning naming them" 0 'warning: values beyond float16.s range were clamped in: big.weight' -- \
    "$MOPT" amp --keep-io "$G/bigweight.onnx" -o "$T/big.onnx"
assert "clamped to 65504" "$PY" -c "
import onnx,sys; from onnx import numpy_helper as nh
w=[nh.to_array(i) for i in onnx.load(sys.argv[1]).graph.initializer][0]
assert w.dtype.name=='float16' and w.max()==65504 and w.min()==-65504" "$T/big.onnx"
check "--data keeps overflowing nodes float32" 0 "float32: huge \(activation 'h' reaches .*beyond float16's 65504\)" -- \
    "$MOPT" amp --keep-io "$G/overflow.onnx" --data fashion-mnist:test --limit 64 -o "$T/ov.onnx"
assert "--data: the consumer of the overflowing value too" grep -q "float32: fc (activation 'hr'" "$T/err"
check "without --data the same model converts" 0 'converted 4/4' -- "$MOPT" amp --keep-io "$G/overflow.onnx" -o "$T/ov2.onnx"

check "gate met" 0 'top-1: float32 [0-9.]+%, float16 [0-9.]+%' -- \
    "$MOPT" amp --keep-io "$L5" --data fashion-mnist:train --limit $(small 256 64) --eval fashion-mnist:test --eval-limit $(small 2000 200) --max-drop 0.5 -o "$T/gate.onnx"
check "--data for a model of two int64 inputs (tinybert)" 0 'converted 66/78 nodes to float16' -- \
    "$MOPT" amp --keep-io "$G/tinybert.onnx" --data "input_ids=npy:$G/ids.npy" --data "attention_mask=npy:$G/mask.npy" -o "$T/tb.onnx"
assert "tinybert fp16: checker, ONNX Runtime, cast rules" "$PY" "$ROOT/tests/precision/check_model.py" --casts "$T/tb.onnx"
check "bad data" 1 'do not fit input' -- "$MOPT" amp "$L5" --data "npy:$G/wrongshape.npy" -o "$T/bad.onnx"
assert "bad data: nothing written" [ ! -e "$T/bad.onnx" ]
check "--to fp8" 2 'fp16 or bf16' -- "$MOPT" amp --to fp8 "$L5"
check "--max-drop without --eval" 2 'needs --data CAL and --eval EVAL' -- "$MOPT" amp "$L5" --max-drop 1
finish
