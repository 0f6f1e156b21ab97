#!/usr/bin/env bash
# tests/cli/test_pipeline.sh — the whole Deep Compression pipeline as one shell pipeline through
# standard input and output, and a pipeline whose middle stage fails: the pipeline fails, the
# failing stage names itself on stderr, and no output file is left.
source "$(dirname "$0")/lib.sh"
set -o pipefail
PY=${PY:-$ROOT/.venv/bin/python}
CC="$PY $ROOT/tests/cli/compress_check.py"
L300=$ROOT/datasets/lenet300.onnx
$CC input "$L300" "$T/x.npy" 16 5

check "prune | cluster | huffman through stdin/stdout" 0 'bits_per_weight' -- bash -c \
    "set -o pipefail; cat '$L300' | '$MOPT' prune --sparsity 0.9 | '$MOPT' cluster --bits 4 | '$MOPT' huffman > '$T/small.onnx'"
assert "every stage reported on stderr" grep -q 'sparsity_after' "$T/err"
assert "the result is at least 20x smaller" test $(( $(stat -c %s "$L300") / $(stat -c %s "$T/small.onnx") )) -ge 20
assert "three stages recorded in mopt.history" $CC history "$T/small.onnx" 3
check "the same pipeline into a file with -o" 0 '' -- bash -c \
    "set -o pipefail; '$MOPT' prune -q --sparsity 0.9 '$L300' | '$MOPT' cluster -q --bits 4 | '$MOPT' huffman -q -o '$T/small2.onnx'"
assert "the -o output is a model of the same size class" test "$(stat -c %s "$T/small2.onnx")" -lt "$(( $(stat -c %s "$T/small.onnx") + 256 ))"
check "unpack in the pipeline" 0 '' -- bash -c "set -o pipefail; '$MOPT' unpack -q < '$T/small.onnx' > '$T/std.onnx'"
check "mopt runs it" 0 '' -- "$MOPT" run -q -i "$T/x.npy" --format npy -o "$T/o" "$T/std.onnx"
assert "ONNX Runtime runs the unpacked pipeline output with mopt's outputs" $CC ort "$T/std.onnx" "$T/x.npy" "$T/o"
check "mopt runs the coded output" 0 '' -- "$MOPT" run -q -i "$T/x.npy" --format npy -o "$T/oh" "$T/small.onnx"
assert "coded and unpacked outputs equal" $CC same "$T/o/output_0.npy" "$T/oh/output_0.npy"

# With pipefail the pipeline's status is the last failing stage's: huffman, which got no model.
check "a failing middle stage fails the pipeline" 1 'mopt cluster: --bits' -- bash -c \
    "set -o pipefail; '$MOPT' prune -q --sparsity 0.9 '$L300' | '$MOPT' cluster -q --bits 12 | '$MOPT' huffman -q -o '$T/never.onnx'"
assert "no output file is left" test ! -e "$T/never.onnx"
assert "no temporary file is left" bash -c "! ls '$T' | grep -q 'never'"
check "a middle stage failing on its data fails the pipeline" 1 'mopt cluster: ' -- bash -c \
    "set -o pipefail; '$MOPT' prune -q --sparsity 0.9 '$L300' | '$MOPT' cluster -q --refine data --data idx:/nonexistent | '$MOPT' huffman -q -o '$T/never2.onnx'"
assert "no output file is left (data failure)" test ! -e "$T/never2.onnx"
check "garbage into the pipeline" 1 'mopt prune: <stdin>' -- bash -c \
    "set -o pipefail; echo garbage | '$MOPT' prune -q | '$MOPT' cluster -q | '$MOPT' huffman -q -o '$T/never3.onnx'"
assert "no output file is left (garbage)" test ! -e "$T/never3.onnx"
finish
