#!/usr/bin/env bash
# tests/cli/test_badinput.sh — the bad-input catalogue: every malformed model (made at test time
# by gen_models.py) is refused with exit 1 and a one-line message naming what is wrong, by both
# `mopt cat` and `mopt info`; no output file and no temporary file is left behind.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/gen.sh"
O=$T/o
mkdir -p "$O"

# bad NAME FILE REGEX: cat and info refuse FILE with a message matching REGEX; nothing written.
bad() {
    local name=$1 file=$2 re=$3
    check "cat $name" 1 "^mopt cat: .*$(basename "$file"): .*($re)" -- "$MOPT" cat "$file" -o "$O/out.onnx"
    assert "cat $name: no output or temporary file" [ -z "$(ls -A "$O")" ]
    assert "cat $name: one-line message" [ "$(wc -l <"$T/err")" -eq 1 ]
    check "info $name" 1 "^mopt info: .*($re)" -- "$MOPT" info "$file"
    assert "info $name: nothing on stdout" [ ! -s "$T/out" ]
}

NOTONNX='not a valid ONNX model|not an ONNX model'
bad empty "$G/bad/empty.onnx" 'empty input'
for f in "$G"/bad/truncated-*.onnx; do
    bad "$(basename "$f" .onnx)" "$f" "$NOTONNX"
done
bad random "$G/bad/random.onnx" "$NOTONNX"
bad "tensor, not a model" "$G/bad/tensor.onnx" "$NOTONNX"
bad "field number 0" "$G/bad/field0.onnx" "a protobuf field number 0"
bad "field number 0 in the graph" "$G/bad/field0-graph.onnx" "a protobuf field number 0"
bad "undefined input" "$G/bad/undefined-input.onnx" "node 'relu' \(Relu\): input 'ghost' is not defined"
bad cycle "$G/bad/cycle.onnx" "cycle through node '(add|relu|neg)'"
bad "double assignment" "$G/bad/double-assignment.onnx" "node 'relu' \(Relu\): value 'S' is assigned more than once"
bad "raw_data length" "$G/bad/rawdata-length.onnx" "tensor 'W': raw_data has 20 bytes, shape and FLOAT need 24"
bad "raw_data length, marked external" "$G/bad/rawdata-length-external.onnx" "tensor 'W': raw_data has 20 bytes, shape and FLOAT need 24"
bad "negative dims" "$G/bad/negative-dims.onnx" "tensor 'W': negative or overflowing dims"
bad "2^62 elements" "$G/bad/huge-dims.onnx" "tensor 'W': 4611686018427387904 elements is more than mopt supports"
bad "dims overflowing 64 bits" "$G/bad/overflow-dims.onnx" "tensor 'W': negative or overflowing dims"
bad "subgraphs nested 70 deep" "$G/nested-70.onnx" "nested deeper than 64 levels"
# (gen_models.py writes the nested part as raw wire bytes, graph after opset_import, so mopt's
# canonical field order differs from the file: the second pass must be byte for byte the same.)
bad "types nested 5000 deep (stack overflow)" "$G/bad/deep-types.onnx" "messages nested deeper than 256 levels"
check "subgraphs nested 60 deep load" 0 '' -- "$MOPT" cat "$G/nested-60.onnx" -o "$O/n60.onnx"
check "nested 60 deep: written back" 0 '' -- "$MOPT" cat "$O/n60.onnx" -o "$O/n60b.onnx"
assert "nested 60 deep: second pass byte for byte" cmp -s "$O/n60.onnx" "$O/n60b.onnx"
assert "nested 60 deep: same size as the input" [ "$(stat -c %s "$O/n60.onnx")" = "$(stat -c %s "$G/nested-60.onnx")" ]
rm -f "$O/n60.onnx" "$O/n60b.onnx"

# External data: locations must stay inside the model's directory; offsets inside the file.
E=$G/ext
check "external data inside the directory loads" 0 '' -- "$MOPT" cat "$E/ok.onnx" -o "$O/ok.onnx"
assert "external data stays external, in OUT.data" [ "$(stat -c %s "$O/ok.onnx.data" 2>/dev/null)" = 24 ]
rm -f "$O/ok.onnx" "$O/ok.onnx.data"
bad "external ../" "$E/dotdot.onnx" "tensor 'W': external data location '\.\./outside\.bin' leaves the model's directory"
bad "external sub/../.." "$E/dotdot-inner.onnx" "leaves the model's directory"
bad "external absolute path" "$E/absolute.onnx" "tensor 'W': external data location '/.*outside\.bin' is an absolute path"
bad "external symlink out" "$E/symlink.onnx" "tensor 'W': external data location 'link\.bin' resolves outside the model's directory"
bad "external past the end" "$E/past-end.onnx" "tensor 'W': external data offset 8 \+ length 24 is past the end of 'w\.bin' \(24 bytes\)"
bad "external offset near 2^64" "$E/huge-offset.onnx" "offset 18446744073709551608 \+ length 24 is past the end"
bad "external length mismatch" "$E/length-mismatch.onnx" "external data length 20 does not match shape and dtype \(24 bytes\)"
bad "external missing file" "$E/missing.onnx" "tensor 'W': external data file 'nothere\.bin': No such file"
bad "external directory" "$E/directory.onnx" "external data 'sub' is not a regular file"
bad "external FIFO (must not hang)" "$E/fifo.onnx" "external data 'fifo\.bin' is not a regular file"

# A model file over 2 GiB (sparse: no disk used) is refused before it is read.
truncate -s 3G "$T/huge.onnx"
bad "3 GiB model file" "$T/huge.onnx" "3221225472 bytes is more than a model file may hold \(2048 MiB"
rm -f "$T/huge.onnx"

# Standard input.
check "empty stdin" 1 '^mopt cat: <stdin>: empty input' -- bash -c '"$0" cat </dev/null' "$MOPT"
assert "empty stdin: nothing on stdout" [ ! -s "$T/out" ]
check "random bytes on stdin" 1 "^mopt info: <stdin>: ($NOTONNX)" -- bash -c '"$0" info <"$1"' "$MOPT" "$G/bad/random.onnx"

# Pipelines: the stage fed something that is not ONNX names itself; the pipeline exits 1.
check "pipeline: first stage fed non-ONNX" 1 '^mopt cat: .*random\.onnx: ' -- \
    bash -c 'set -o pipefail; "$0" cat "$1" | "$0" cat | "$0" info' "$MOPT" "$G/bad/random.onnx"
check "pipeline: middle stage fed a truncated model" 1 '^mopt cat: <stdin>: not a valid ONNX model' -- \
    bash -c 'set -o pipefail; head -c 100 "$1" | "$0" cat | "$0" info >/dev/null' "$MOPT" "$G/good.onnx"
check "pipeline: last stage fed nothing names itself" 1 '^mopt info: <stdin>: empty input' -- \
    bash -c 'set -o pipefail; "$0" cat "$1" 2>/dev/null | "$0" info' "$MOPT" "$G/bad/random.onnx"
check "pipeline of good models" 0 '' -- \
    bash -c 'set -o pipefail; "$0" cat "$1" | "$0" cat - | "$0" info -' "$MOPT" "$G/good.onnx"

# -o naming a bad input: refused, the input untouched.
cp "$G/bad/rawdata-length.onnx" "$O/self.onnx"
check "-o naming a bad input" 1 'raw_data has 20 bytes' -- "$MOPT" cat "$O/self.onnx" -o "$O/self.onnx"
assert "-o naming a bad input: input unchanged" cmp -s "$G/bad/rawdata-length.onnx" "$O/self.onnx"
assert "-o naming a bad input: no temporary file" [ "$(ls -A "$O")" = self.onnx ]
finish
