#!/usr/bin/env bash
# tests/cli/test_run.sh — `mopt run`: ONNX test-data directories pass and a tampered one fails;
# outputs are written in the test-data layout (.pb, --format npy/csv) and read back as inputs;
# .pb/.npy/.csv/IDX inputs bind by name and by position and are reshaped and converted to the
# declared input; --random is deterministic for a seed; bad inputs (missing file, wrong shape,
# truncated or malformed files, unknown input names) fail with one line naming the file; integer
# Pow equals ONNX Runtime's and saturates out of range.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tensors.sh"
RELU=$TESTDATA/node/test_relu            # y = Relu(x), x float [3,4,5]
ADD=$TESTDATA/node/test_add              # sum = Add(x, y), float [3,4,5] each
O=$T/o

# --test-data: ONNX's own expected outputs.
check "test-data relu passes" 0 '1 of 1 test data sets passed' -- "$MOPT" run --test-data "$RELU"
check "test-data: model found in the directory" 0 'passed' -- "$MOPT" run --test-data "$RELU/test_data_set_0"
check "test-data with explicit model" 0 'ok' -- "$MOPT" run "$RELU/model.onnx" --test-data "$RELU"
check "test-data two inputs" 0 '1 of 1' -- "$MOPT" run --test-data "$ADD"
mkdir -p "$T/bad/test_data_set_0"
cp "$RELU/model.onnx" "$T/bad/"
cp "$RELU/test_data_set_0/input_0.pb" "$T/bad/test_data_set_0/"
cp "$RELU/test_data_set_0/input_0.pb" "$T/bad/test_data_set_0/output_0.pb"   # x instead of relu(x)
check "tampered expected output fails" 1 'FAIL: [0-9]+ of 60 values' -- "$MOPT" run --test-data "$T/bad"
check "tampered: summary says 0 of 1" 1 '0 of 1 test data sets passed' -- "$MOPT" run --test-data "$T/bad"
rm "$T/bad/test_data_set_0/output_0.pb"
check "test-data without outputs" 1 'no output_\*\.pb files' -- "$MOPT" run --test-data "$T/bad"
check "test-data not a directory" 1 'nonexistent: not a directory' -- "$MOPT" run --test-data "$T/nonexistent"
check "test-data excludes -i" 2 'no -i or --random' -- "$MOPT" run --test-data "$RELU" -i x.npy

# Integer Pow against ONNX Runtime's outputs: an int32 base with float and int32 exponents
# truncates toward zero as ORT's cast does (7^0.5 -> 2, 2^2.5 -> 5, 3^-1 -> 0); an infinite or
# out-of-range result (0^-1, 2^40) saturates instead of converting out of range (UB; a fuzz find).
PY=$(realpath -s "${PY:-$ROOT/.venv/bin/python}")
"$PY" - "$T/pow" <<'PYEOF'
import os, sys
import numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, numpy_helper as nh, TensorProto as T
x = np.array([2, 3, 5, 7, -3, 2, 4, 1], dtype=np.int32)
for name, ydt, y in [("f", np.float32, [1.5, -1, 2, 0.5, 3, 2.5, -2, 0]),
                     ("i", np.int32, [1, -1, 2, 3, 3, 0, -2, 7])]:
    d = os.path.join(sys.argv[1], name)
    os.makedirs(d + "/test_data_set_0")
    g = h.make_graph([h.make_node("Pow", ["X", "Y"], ["Z"])], "pow",
                     [h.make_tensor_value_info("X", T.INT32, [8])],
                     [h.make_tensor_value_info("Z", T.INT32, [8])],
                     [nh.from_array(np.array(y, dtype=ydt), "Y")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 15)])
    m.ir_version = 8
    onnx.save(m, d + "/model.onnx")
    z = ort.InferenceSession(d + "/model.onnx").run(None, {"X": x})[0]
    for f, a in [("input_0", x), ("output_0", z)]:
        open("%s/test_data_set_0/%s.pb" % (d, f), "wb").write(nh.from_array(a).SerializeToString())
# Results out of int32's range: no ORT oracle (its cast is undefined there); saturated by mopt.
d = os.path.join(sys.argv[1], "sat")
g = h.make_graph([h.make_node("Pow", ["X", "Y"], ["Z"])], "pow",
                 [h.make_tensor_value_info("X", T.INT32, [3])],
                 [h.make_tensor_value_info("Z", T.INT32, [3])],
                 [nh.from_array(np.array([-1, 40, 41], dtype=np.float32), "Y")])
m = h.make_model(g, opset_imports=[h.make_opsetid("", 15)])
m.ir_version = 8
os.makedirs(d)
onnx.save(m, d + "/model.onnx")
np.save(d + "/x.npy", np.array([0, 2, -2], dtype=np.int32))
PYEOF
check "int32 Pow, float exponent: equals ORT" 0 '1 of 1 test data sets passed' -- "$MOPT" run --test-data "$T/pow/f"
check "int32 Pow, int32 exponent: equals ORT" 0 '1 of 1 test data sets passed' -- "$MOPT" run --test-data "$T/pow/i"
check "int32 Pow out of range" 0 'wrote 1 output' -- "$MOPT" run "$T/pow/sat/model.onnx" -i "$T/pow/sat/x.npy" -o "$T/pow/sat/o" --format csv
assert "int32 Pow saturates: 0^-1, 2^40, (-2)^41" [ "$(tr -d ' \r\n' <"$T/pow/sat/o/output_0.csv")" = "2147483647,2147483647,-2147483648" ]

# OpenBLAS is opened when a kernel first needs it (libopt/exec/cpu/blas.c): a Relu never loads
# it, a ConvTranspose (im2col + sgemm) does and still matches ONNX's outputs. (The dynamic
# loader's own log; not under valgrind, whose wrapper would log its own loading.)
if [ -z "${VG_SCRIPT:-}" ]; then
    check "relu runs" 0 'passed' -- env LD_DEBUG=files "$MOPT" run --test-data "$RELU"
    assert "relu: OpenBLAS not loaded" bash -c '! grep -q libopenblas "$0"' "$T/err"
    check "convtranspose runs" 0 '1 of 1 test data sets passed' -- env LD_DEBUG=files "$MOPT" run --test-data "$TESTDATA/node/test_convtranspose"
    assert "convtranspose: OpenBLAS loaded on use" grep -q 'file=libopenblas.*dynamically loaded' "$T/err"
fi

# Outputs in the test-data layout, then fed back.
check "run -i FILE -o DIR" 0 'wrote 1 output' -- "$MOPT" run "$RELU/model.onnx" -i "$RELU/test_data_set_0/input_0.pb" -o "$O/pb"
assert "output_0.pb written" [ -s "$O/pb/output_0.pb" ]
mkdir -p "$T/rt/test_data_set_0"
cp "$RELU/model.onnx" "$T/rt/"
cp "$RELU/test_data_set_0/input_0.pb" "$T/rt/test_data_set_0/"
cp "$O/pb/output_0.pb" "$T/rt/test_data_set_0/"
check "our output_0.pb is a valid expected output" 0 '1 of 1' -- "$MOPT" run --test-data "$T/rt"
assert "our output equals ONNX's expected output" cmp -s "$O/pb/output_0.pb" "$RELU/test_data_set_0/output_0.pb"
check "--format npy" 0 '' -- "$MOPT" run "$RELU/model.onnx" -i "x=$RELU/test_data_set_0/input_0.pb" -o "$O/npy" --format npy
assert "output_0.npy starts with the NumPy magic" [ "$(head -c 6 "$O/npy/output_0.npy" | tail -c 5)" = "NUMPY" ]
check "--format csv" 0 '' -- "$MOPT" run "$RELU/model.onnx" -i "$RELU/test_data_set_0/input_0.pb" -o "$O/csv" --format csv
assert "output_0.csv has 3 rows" [ "$(wc -l <"$O/csv/output_0.csv")" -eq 3 ]
check "npy output as input (relu is idempotent)" 0 '' -- "$MOPT" run "$RELU/model.onnx" -i "$O/npy/output_0.npy" -o "$O/npy2"
assert "relu(relu(x)) == relu(x) through .npy" cmp -s "$O/npy2/output_0.pb" "$O/pb/output_0.pb"
check "csv [3,20] input reshaped to [3,4,5]" 0 '' -- "$MOPT" run "$RELU/model.onnx" -i "$O/csv/output_0.csv" -o "$O/csv2"
assert "relu(relu(x)) == relu(x) through .csv (%.9g round-trips float32)" cmp -s "$O/csv2/output_0.pb" "$O/pb/output_0.pb"
check "-o DIR without -i on a model with inputs" 2 "input 'x' has no value" -- "$MOPT" run "$RELU/model.onnx" -o "$O/x"
check "named inputs in any order" 0 '' -- "$MOPT" run "$ADD/model.onnx" -i "y=$ADD/test_data_set_0/input_1.pb" -i "x=$ADD/test_data_set_0/input_0.pb" -o "$O/add"
assert "add: same as ONNX's expected output" cmp -s "$O/add/output_0.pb" "$ADD/test_data_set_0/output_0.pb"

# IDX (uint8 converted to float) and float64 .npy (numpy's default) inputs.
idx "$T/x.idx" 08 3 4 5 < <(head -c 60 /dev/urandom)
check "IDX uint8 input" 0 '' -- "$MOPT" run "$RELU/model.onnx" -i "$T/x.idx"
assert "IDX: summary on stdout names the output" grep -q '^y float32 \[3,4,5\]' "$T/out"
gzip -c "$T/x.idx" >"$T/x.idx.gz"
check "IDX.gz input" 0 '' -- "$MOPT" run "$RELU/model.onnx" -i "$T/x.idx.gz"
npy "$T/f8.npy" '<f8' '3, 4, 5' < <(zeros 480)
check "float64 .npy converted to float32" 0 '' -- "$MOPT" run "$RELU/model.onnx" -i "$T/f8.npy"
assert "float64 .npy: zeros in, zeros out" grep -q 'max 0 mean 0' "$T/out"

# --random
check "--random" 0 'random inputs, seed 7' -- "$MOPT" run "$RELU/model.onnx" --random --seed 7
cp "$T/out" "$T/r1"
check "--random again" 0 '' -- "$MOPT" run "$RELU/model.onnx" --random --seed 7
assert "--random is deterministic for a seed" cmp -s "$T/out" "$T/r1"
check "--random other seed" 0 '' -- "$MOPT" run "$RELU/model.onnx" --random --seed 8
differ() { ! cmp -s "$1" "$2"; }
assert "--random differs between seeds" differ "$T/out" "$T/r1"

# Bad inputs: one line, naming the file; exit 1 for data, 2 for usage.
check "missing input file" 1 "^mopt run: $T/nonexistent.npy: cannot open" -- "$MOPT" run "$RELU/model.onnx" -i "$T/nonexistent.npy"
assert "missing input file: one line" [ "$(wc -l <"$T/err")" -eq 1 ]
npy "$T/wrong.npy" '<f4' '2, 3' < <(zeros 24)
check "wrong shape" 1 "wrong.npy: shape \[2,3\] \(6 values\) does not fit input 'x' \[3,4,5\]" -- "$MOPT" run "$RELU/model.onnx" -i "$T/wrong.npy"
npy "$T/short.npy" '<f4' '3, 4, 5' < <(zeros 200)
check "truncated .npy" 1 'short.npy: .npy header says 240 bytes of float32 data, file has 200' -- "$MOPT" run "$RELU/model.onnx" -i "$T/short.npy"
npy "$T/fortran.npy" '<f4' '3, 4, 5' < <(zeros 240)
sed -i 's/False/True /' "$T/fortran.npy"
check "fortran-order .npy" 1 'fortran.npy: .npy fortran_order=True is not supported' -- "$MOPT" run "$RELU/model.onnx" -i "$T/fortran.npy"
npy "$T/c16.npy" '<c16' '3, 4, 5' < <(zeros 960)
check "unsupported .npy dtype" 1 "c16.npy: .npy dtype '<c16' is not supported" -- "$MOPT" run "$RELU/model.onnx" -i "$T/c16.npy"
idx "$T/short.idx" 08 3 4 5 < <(zeros 59)
check "truncated IDX" 1 'short.idx: IDX header says 60 bytes of uint8 data, file has 59' -- "$MOPT" run "$RELU/model.onnx" -i "$T/short.idx"
idx "$T/badtype.idx" 07 60 < <(zeros 60)
check "IDX unknown type code" 1 'badtype.idx: IDX type code 0x07 is unknown' -- "$MOPT" run "$RELU/model.onnx" -i "$T/badtype.idx"
head -c 100 "$RELU/test_data_set_0/input_0.pb" >"$T/trunc.pb"
check "truncated .pb" 1 'trunc.pb: (not an ONNX TensorProto|TensorProto .*raw_data has)' -- "$MOPT" run "$RELU/model.onnx" -i "$T/trunc.pb"
printf '1,2,3\n4,x,6\n' >"$T/bad.csv"
check "CSV with a non-number" 1 "bad.csv: CSV row 2, column 2: 'x' is not a number" -- "$MOPT" run "$RELU/model.onnx" -i "$T/bad.csv"
printf '1,2,3\n4,5\n' >"$T/ragged.csv"
check "ragged CSV" 1 'ragged.csv: CSV row 2 has 2 fields, earlier rows have 3' -- "$MOPT" run "$RELU/model.onnx" -i "$T/ragged.csv"
: >"$T/empty.npy"
check "empty file" 1 'empty.npy: file is empty' -- "$MOPT" run "$RELU/model.onnx" -i "$T/empty.npy"
check "unknown input name" 2 "no input named 'nope'" -- "$MOPT" run "$RELU/model.onnx" -i "nope=$T/f8.npy"
check "too many inputs" 2 'has only 1 inputs' -- "$MOPT" run "$RELU/model.onnx" -i "$T/f8.npy" -i "$T/f8.npy"
check "input given twice" 2 "input 'x' is given twice" -- "$MOPT" run "$RELU/model.onnx" -i "x=$T/f8.npy" -i "x=$T/f8.npy"
check "--format idx refused" 2 "not pb, npy or csv" -- "$MOPT" run "$RELU/model.onnx" --random --format idx -o "$O/i"
check "missing model" 1 'nonexistent.onnx' -- "$MOPT" run "$T/nonexistent.onnx" --random
check "no model" 2 'no MODEL given' -- "$MOPT" run --random
check "--help" 0 '' -- "$MOPT" run --help
assert "--help on stdout" grep -q 'usage: mopt run' "$T/out"
finish
