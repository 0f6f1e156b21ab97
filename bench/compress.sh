#!/usr/bin/env bash
# bench/compress.sh — Deep Compression at scale (issue 4, section 7): on the generated ResNet-50
# (25.6M weights), prune + cluster + huffman end to end as one shell pipeline on 2 cores (target
# <= 5 s), peak resident memory of each stage (target <= 2x the model's size), and Huffman
# decoding speed of the clustered indices on one core next to zlib's inflate of the same indices
# (target >= 500 MB/s of indices). Prints Markdown tables for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=${MOPT:-bin/mopt}
R=build/models/resnet50.onnx
[ -f "$R" ] || { echo "missing $R (run make models)" >&2; exit 1; }
[ -f lib/libopt.a ] || { echo "missing lib/libopt.a (run make)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CORES=${BENCH_CORES:-0,1}
run2() { taskset -c "$CORES" "$@"; }
size=$(stat -c %s "$R")
echo "model: $R, $size bytes; pipeline: prune --sparsity 0.9 | cluster (8 bits conv, 5 bits fc) | huffman; taskset -c $CORES"

# End to end, as users run it: a shell pipeline through pipes, median of 5.
times=()
for i in 1 2 3 4 5; do
    t0=$(date +%s.%N)
    run2 "$MOPT" prune -q --sparsity 0.9 "$R" | run2 "$MOPT" cluster -q | run2 "$MOPT" huffman -q -o "$out/r.huf.onnx"
    t1=$(date +%s.%N)
    times+=("$(echo "$t1 - $t0" | bc -l)")
done
med=$(printf '%s\n' "${times[@]}" | sort -g | sed -n 3p)
small=$(stat -c %s "$out/r.huf.onnx")
printf '\n| pipeline | runs (s) | median s | output bytes | ratio |\n|---|---|---|---|---|\n'
printf '| prune \\| cluster \\| huffman | %s | %.2f | %d | %.1fx |\n' "$(printf '%.2f ' "${times[@]}")" "$med" "$small" \
    "$(echo "$size / $small" | bc -l)"

# Each stage alone, from files: time and peak RSS.
printf '\n| stage | seconds | peak RSS bytes | RSS / model size |\n|---|---|---|---|\n'
stage() {
    local name=$1
    shift
    local r
    r=$( { /usr/bin/time -f '%e %M' taskset -c "$CORES" "$MOPT" "$@" 2>&1 >/dev/null; } | tail -n 1)
    printf '| %s | %s | %d | %.2f |\n' "$name" "${r% *}" $(( ${r#* } * 1024 )) "$(echo "${r#* } * 1024 / $size" | bc -l)"
}
stage "prune --sparsity 0.9" prune -q --sparsity 0.9 "$R" -o "$out/p.onnx"
stage "cluster" cluster -q "$out/p.onnx" -o "$out/c.onnx"
stage "huffman" huffman -q "$out/c.onnx" -o "$out/h.onnx"
stage "unpack" unpack -q "$out/h.onnx" -o "$out/u.onnx"

# Decoding speed, one core.
gcc -O2 -I. -Ilibopt/ir -Ibuild/gen bench/huf_decode.c lib/libopt.a $(grep -m1 '^Libs.private:' lib/pkgconfig/libopt.pc | cut -d: -f2-) -o "$out/huf_decode"
echo
echo "Decoding the $(basename "$R") cluster indices on one core (taskset -c ${CORES%%,*}):"
taskset -c "${CORES%%,*}" "$out/huf_decode" "$out/c.onnx" 7
