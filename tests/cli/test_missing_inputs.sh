#!/usr/bin/env bash
# test_missing_inputs.sh — a node without an input its op requires is refused when the model is
# loaded for execution, with one line naming the node and the input, never a crash (found by the
# exec_run fuzz target: Gemm, MatMul, QuantizeLinear, Split, Squeeze and Transpose used to read a
# missing input).
. "$(dirname "$0")/lib.sh"
PY=$(realpath -s "${PY:-$ROOT/.venv/bin/python}")
cd "$T"
"$PY" - <<'PYEOF'
import onnx
from onnx import helper, TensorProto
# op, inputs given (each "X"), the first missing input (1-based) the error must name
cases = [("Gemm", 1, 2), ("MatMul", 1, 2), ("QuantizeLinear", 1, 2), ("Conv", 1, 2),
         ("Split", 0, 1), ("Squeeze", 0, 1), ("Transpose", 0, 1), ("Relu", 0, 1),
         ("Where", 2, 3), ("BatchNormalization", 3, 4)]
with open("cases.txt", "w") as f:
    for op, nin, first in cases:
        node = helper.make_node(op, ["X"] * nin, ["Y"], name="n_" + op)
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3, 4, 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), op + ".onnx")
        f.write(f"{op} {first}\n")
PYEOF
while read -r op first; do
    check "$op without input $first is refused at load" 1 \
        "^mopt run: $op.onnx: node 'n_$op' \($op\): input $first is required but missing$" -- \
        "$MOPT" run --random "$op.onnx"
done < cases.txt
finish
