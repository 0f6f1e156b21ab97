#!/usr/bin/env bash
# test_large.sh — a model over 2 GiB loads through external data (issue 2): a 2.4 GB float32
# initializer in a side file is read, counted and written back to external data; writing it
# inline is refused (protobuf's 2 GiB limit) with a clear message and no output file.
# The side file is sparse (truncate), so the input costs no disk; the copy costs 2.4 GB for
# the duration of the test.
. "$(dirname "$0")/lib.sh"
PY=$(realpath -s "${PY:-$ROOT/.venv/bin/python}")
cd "$T"
"$PY" - <<'PYEOF'
import onnx
from onnx import helper, TensorProto
n = 600_000_000  # 2.4 GB of float32
w = TensorProto()
w.name = "W"; w.data_type = TensorProto.FLOAT; w.dims.extend([n])
w.data_location = TensorProto.EXTERNAL
for k, v in (("location", "big.bin"), ("offset", "0"), ("length", str(4 * n))):
    e = w.external_data.add(); e.key = k; e.value = v
node = helper.make_node("ReduceSum", ["W"], ["Y"], keepdims=0)
g = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [])], [w])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "big.onnx")
PYEOF
truncate -s 2400000000 big.bin

check "info reads a 2.4 GB external tensor" 0 '' -- "$MOPT" info --no-tensors big.onnx
assert "info counts 600,000,000 parameters" grep -q '^parameters: 600,000,000' "$T/out"
check "cat keeps it in external data" 0 '' -- "$MOPT" cat big.onnx -o copy.onnx
assert "the copy's model file is small" test "$(stat -c %s copy.onnx)" -lt 1000
assert "the copy's data file holds the tensor" test "$(stat -c %s copy.onnx.data)" -eq 2400000000
rm -f copy.onnx.data
check "inline over 2 GiB is refused" 1 "over protobuf's 2 GiB limit" -- "$MOPT" cat --inline-data big.onnx -o inline.onnx
assert "no inline file is left" test ! -e inline.onnx
assert "no temporary file is left" test -z "$(ls -A | grep -v -e '^big' -e '^copy.onnx$' -e '^out$' -e '^err$')"
finish
