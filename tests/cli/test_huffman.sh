#!/usr/bin/env bash
# tests/cli/test_huffman.sh — `mopt huffman` and `mopt unpack`: the coded model computes exactly
# what the clustered model computes in mopt's executor; after unpack (Gather form and --dense)
# ONNX Runtime loads it and gives mopt's outputs; a damaged payload is refused naming the node.
source "$(dirname "$0")/lib.sh"
PY=${PY:-$ROOT/.venv/bin/python}
CC="$PY $ROOT/tests/cli/compress_check.py"
L5=$ROOT/datasets/lenet5.onnx
$CC input "$L5" "$T/x.npy" 8 3

check "prune+cluster" 0 '' -- bash -c "'$MOPT' prune -q --sparsity 0.8 '$L5' | '$MOPT' cluster -q -o '$T/c.onnx'"
check "huffman reports bits per weight and the entropy bound" 0 'bits_per_weight +entropy_bound' -- \
    "$MOPT" huffman "$T/c.onnx" -o "$T/h.onnx"
assert "sparse layout chosen for the pruned fc1" grep -Eq 'fc1\.weight +48000 +sparse' "$T/err"
assert "coded model imports ai.mopt" $CC opset "$T/h.onnx" ai.mopt yes
assert "coded model is smaller" test "$(stat -c %s "$T/h.onnx")" -lt "$(stat -c %s "$T/c.onnx")"
check "mopt runs the coded model" 0 '' -- "$MOPT" run -q -i "$T/x.npy" --format npy -o "$T/oh" "$T/h.onnx"
check "mopt runs the clustered model" 0 '' -- "$MOPT" run -q -i "$T/x.npy" --format npy -o "$T/oc" "$T/c.onnx"
assert "coded and clustered outputs are bitwise equal" $CC same "$T/oh/output_0.npy" "$T/oc/output_0.npy"

check "unpack" 0 '5 tensors restored' -- "$MOPT" unpack "$T/h.onnx" -o "$T/u.onnx"
assert "unpacked model drops the ai.mopt opset" $CC opset "$T/u.onnx" ai.mopt no
assert "unpacked model passes the ONNX checker" $CC check "$T/u.onnx"
check "mopt runs the unpacked model" 0 '' -- "$MOPT" run -q -i "$T/x.npy" --format npy -o "$T/ou" "$T/u.onnx"
assert "unpacked outputs equal the coded model's" $CC same "$T/ou/output_0.npy" "$T/oh/output_0.npy"
assert "ONNX Runtime runs the unpacked model with mopt's outputs" $CC ort "$T/u.onnx" "$T/x.npy" "$T/ou"
check "unpack --dense" 0 'restored to dense' -- "$MOPT" unpack --dense "$T/h.onnx" -o "$T/d.onnx"
assert "dense model passes the ONNX checker" $CC check "$T/d.onnx"
check "mopt runs the dense model" 0 '' -- "$MOPT" run -q -i "$T/x.npy" --format npy -o "$T/od" "$T/d.onnx"
assert "ONNX Runtime runs the dense model with mopt's outputs" $CC ort "$T/d.onnx" "$T/x.npy" "$T/od"
assert "dense outputs equal the coded model's within float rounding" $CC ort "$T/d.onnx" "$T/x.npy" "$T/oh" 1e-5

for lay in dense sparse; do
    check "forced $lay layout" 0 "$lay" -- "$MOPT" huffman --layout $lay "$T/c.onnx" -o "$T/f$lay.onnx"
    check "run forced $lay" 0 '' -- "$MOPT" run -q -i "$T/x.npy" --format npy -o "$T/o$lay" "$T/f$lay.onnx"
    assert "forced $lay outputs equal" $CC same "$T/o$lay/output_0.npy" "$T/oc/output_0.npy"
done
check "huffman of an unclustered model changes nothing" 0 'no clustered' -- "$MOPT" huffman "$L5" -o "$T/n.onnx"
assert "unclustered: no ai.mopt import" $CC opset "$T/n.onnx" ai.mopt no

# A damaged payload: flip bytes in the middle of fc1's payload.
"$PY" - "$T/h.onnx" "$T/bad.onnx" <<'PYEOF'
import sys, onnx
m = onnx.load(sys.argv[1])
for t in m.graph.initializer:
    if t.name.startswith("fc1.weight") and t.name.endswith(".huf"):
        b = bytearray(t.raw_data)
        del b[len(b) // 2:]
        t.raw_data = bytes(b)
        t.dims[0] = len(b)
onnx.save(m, sys.argv[2])
PYEOF
check "damaged payload: run fails naming the node" 1 'fc1\.weight\.decode.*huffman' -- "$MOPT" run -q -i "$T/x.npy" "$T/bad.onnx"
check "damaged payload: unpack fails naming the node" 1 'mopt unpack: .*fc1\.weight\.decode' -- "$MOPT" unpack "$T/bad.onnx" -o "$T/bu.onnx"
assert "no output left" test ! -e "$T/bu.onnx"
finish
