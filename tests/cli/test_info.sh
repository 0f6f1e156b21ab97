#!/usr/bin/env bash
# tests/cli/test_info.sh — `mopt info`: its op histogram, parameter counts, dtypes, inputs,
# outputs and initializer table agree with python onnx's own reading of the same models (bundled
# Fashion-MNIST models, ONNX's pytorch-converted test models, a generated model with BatchNorm and
# float16); --json is valid JSON whatever the names; --report writes JSON, CSV and Markdown; the
# mopt.history entries show; info writes no model.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/gen.sh"
O=$T/o
mkdir -p "$O"
MIXED=$G/mixed.onnx

models=("$MIXED" "$G/good.onnx" "$G/big.onnx" "$TESTDATA"/pytorch-converted/*/model.onnx)
for m in "$ROOT"/datasets/*.onnx; do [ -f "$m" ] && models+=("$m"); done
check "info --json agrees with python onnx on ${#models[@]} models" 0 '' -- \
    "$PY" "$ROOT/tests/cli/info_check.py" "$MOPT" "${models[@]}"
[ -s "$T/out" ] && head -n 20 "$T/out"

# The generated model, by hand: 7 nodes, BatchNorm statistics apart, two dtypes.
check "info (text)" 0 '' -- "$MOPT" info "$MIXED"
assert "text: node count" grep -q '^ops: 7 nodes$' "$T/out"
assert "text: histogram" grep -Eq '^ +2 Relu$' "$T/out"
# conv 4*3*3*3 + 4, bn scale+bias 8, fc 144*10 + 10, shape 2 = 1572; bn mean+var = 8
assert "text: parameter count" grep -q '^parameters: 1,572 (+8 BatchNorm running statistics)' "$T/out"
assert "text: float16 row" grep -Eq '^ +float16 +1,450 elements, 2,900 bytes$' "$T/out"
assert "text: initializer table with zeros share" grep -Eq '^ +fc\.b +\[10\] +float16 +20 +100\.0%$' "$T/out"
check "info --no-tensors" 0 '' -- "$MOPT" info --no-tensors "$MIXED"
assert "--no-tensors: no initializer table" bash -c '! grep -q "conv.w" "$0"' "$T/out"
check "info reads stdin" 0 '' -- bash -c '"$0" info <"$1"' "$MOPT" "$MIXED"
assert "stdin: named <stdin>" grep -q '^model: <stdin>$' "$T/out"

# --json is JSON, and names stay strings whatever they look like.
check "info --json parses" 0 '' -- bash -c '"$0" info --json "$1" | "$2" -c "import json,sys; json.load(sys.stdin)"' \
    "$MOPT" "$MIXED" "$PY"
"$PY" - "$O/names.onnx" <<'PYEOF'
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
names = ["0", "nan", "0x10", "1e5", "inf", 'quote"back\\slash', "tab\there"]
inits = [numpy_helper.from_array(np.ones(2, np.float32), n) for n in names]
nodes = [helper.make_node("Sum", ["X"] + names, ["Y"], name="sum")]
g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
                      [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name='say "hi"')
m.metadata_props.add(key="mopt.history", value='mopt 0: cat "a\tb"\nmopt 0: cat c')
onnx.save(m, sys.argv[1])
PYEOF
cat >"$T/names_check.py" <<'PYEOF'
import json, sys
j = json.load(sys.stdin)
names = [t["name"] for t in j["initializers"]]
assert names == ["0", "nan", "0x10", "1e5", "inf", 'quote"back\\slash', "tab\there"], names
assert j["producer"].startswith('say "hi"'), j["producer"]
assert len(j["history"]) == 2, j["history"]
PYEOF
check "info --json with odd names parses, names as strings" 0 '' -- \
    bash -c '"$0" info --json "$1" | "$2" "$3"' "$MOPT" "$O/names.onnx" "$PY" "$T/names_check.py"
check "input names that look like numbers stay strings" 0 '' -- bash -c '
"$0" info --json "$1" | "$2" -c "
import json, sys
j = json.load(sys.stdin)
assert j[\"inputs\"][0][\"name\"] == \"0\", j[\"inputs\"]
"' "$MOPT" "$TESTDATA/pytorch-converted/test_AvgPool1d/model.onnx" "$PY"

# --report in three formats.
for ext in json csv md; do
    check "info --report .$ext" 0 '' -- "$MOPT" info --report "$O/r.$ext" "$MIXED"
    assert "report .$ext written" [ -s "$O/r.$ext" ]
done
check "report .json parses" 0 '' -- "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert "ops" in j and len(j["ops"]) == 6, j.keys()' "$O/r.json"
check "report .csv parses" 0 '' -- "$PY" -c 'import csv,sys; rows=list(csv.reader(open(sys.argv[1]))); assert ["count","op_type"] in rows, rows[:5]' "$O/r.csv"
assert "report .md has a table" grep -q '^| count | op_type |$' "$O/r.md"
check "report with an unknown extension" 2 'must end in \.json, \.csv or \.md' -- "$MOPT" info --report "$O/r.txt" "$MIXED"

# History: a command that changes the model records itself; info shows it.
check "cat --external-data records history" 0 '' -- "$MOPT" cat --external-data "$MIXED" -o "$O/h.onnx"
check "info shows mopt.history" 0 '' -- "$MOPT" info "$O/h.onnx"
assert "history entry names the command" grep -Eq 'mopt [0-9.]+: .*cat --external-data' "$T/out"

# Usage.
check "info -o is refused" 2 'writes no model' -- "$MOPT" info "$MIXED" -o "$O/x.onnx"
assert "info -o: nothing written" [ ! -e "$O/x.onnx" ]
check "info --help" 0 '' -- "$MOPT" info --help
assert "info --help: usage on stdout" grep -q '^usage: mopt info' "$T/out"
check "info bad option" 2 '' -- "$MOPT" info --bogus "$MIXED"
finish
