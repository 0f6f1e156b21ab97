#!/usr/bin/env bash
# tests/demo.sh — `make demo`: Deep Compression (Han, Mao & Dally, ICLR 2016) on the bundled
# Fashion-MNIST models, post-training and without retraining: prune, cluster, Huffman-code, and
# print a table of the stages with the bytes of each .onnx file (the whole file), the ratio to the
# original and top-1 accuracy on the 10,000 test images measured by mopt's own executor
# (`mopt eval`), with the paper's LeNet rows (MNIST, with retraining) beside it.
#
# Environment: MOPT (default bin/mopt), DEMO_DIR (default build/demo), DEMO_SAMPLES (calibration
# samples from fashion-mnist:train for --refine data, default 20000), DEMO_MODELS (default
# "lenet300 lenet5 rescnn", those present).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MOPT=${MOPT:-$ROOT/bin/mopt}
DIR=${DEMO_DIR:-$ROOT/build/demo}
N=${DEMO_SAMPLES:-20000}
MODELS=${DEMO_MODELS:-lenet300 lenet5 rescnn}
mkdir -p "$DIR"
CAL=(--refine data --data fashion-mnist:train --samples "$N")

# Per-model settings, chosen with `mopt sensitivity` and the sweeps recorded in
# docs/benchmarks.md. Sparsity is global over the layers without a --layer override.
declare -A PRUNE CLUSTER TITLE
TITLE[lenet300]="LeNet-300-100"
PRUNE[lenet300]="--sparsity 0.88 --layer fc2=0.7 --layer fc3=0.3"
CLUSTER[lenet300]="--bits-fc 3"
TITLE[lenet5]="LeNet-5"
PRUNE[lenet5]="--sparsity 0.9 --layer conv1=0 --layer conv2=0.5 --layer fc2=0.8 --layer fc3=0.5"
CLUSTER[lenet5]="--bits-conv 4 --bits-fc 3"
TITLE[rescnn]="ResCNN (BatchNorm)"
PRUNE[rescnn]="--sparsity 0.8 --per-layer"
CLUSTER[rescnn]="--bits-conv 4 --bits-fc 4"

top1() { # MODEL -> top-1 in percent, from mopt eval's table
    "$MOPT" eval --data fashion-mnist:test --batch 1000 "$1" 2>&1 >/dev/null |
        awk -v f="$1" '$1 == f { printf "%.2f", 100 * $3 }'
}
bytes() { stat -c %s "$1"; }

rows=()
for m in $MODELS; do
    src=$ROOT/datasets/$m.onnx
    [ -f "$src" ] || { echo "demo: $src missing, skipped" >&2; continue; }
    echo "demo: $m: prune ${PRUNE[$m]} (--refine data), cluster ${CLUSTER[$m]} (--refine data), huffman" >&2
    # shellcheck disable=SC2086
    "$MOPT" prune -q ${PRUNE[$m]} "${CAL[@]}" "$src" -o "$DIR/$m.pruned.onnx"
    # shellcheck disable=SC2086
    "$MOPT" cluster -q ${CLUSTER[$m]} "${CAL[@]}" "$DIR/$m.pruned.onnx" -o "$DIR/$m.clustered.onnx"
    "$MOPT" huffman -q "$DIR/$m.clustered.onnx" -o "$DIR/$m.huffman.onnx"
    o=$(bytes "$src")
    base=$(top1 "$src")
    for st in original pruned clustered huffman; do
        f=$DIR/$m.$st.onnx
        [ $st = original ] && f=$src
        b=$(bytes "$f")
        a=$([ $st = original ] && echo "$base" || top1 "$f")
        label=$st
        [ $st = huffman ] && label="Huffman-coded"
        rows+=("$(printf '%-20s %-14s %10s %8s %8s %8s' "${TITLE[$m]}" "$label" "$b" \
            "$(awk -v o="$o" -v b="$b" 'BEGIN { printf "%.1fx", o / b }')" "$a%" \
            "$(awk -v a="$a" -v z="$base" 'BEGIN { printf "%+.2f", a - z }')")")
    done
done

echo
echo "Deep Compression on Fashion-MNIST, post-training (no retraining); bytes = whole .onnx file;"
echo "top-1 on the 10,000 test images by mopt's executor"
printf '%-20s %-14s %10s %8s %8s %8s\n' model stage bytes ratio top-1 change
for r in "${rows[@]}"; do echo "$r"; done
echo
echo "Han, Mao & Dally 2016, Table 1 (MNIST, with retraining between stages), for reference:"
printf '%-20s %-14s %10s %8s %8s\n' model stage bytes ratio "top-1"
printf '%-20s %-14s %10s %8s %8s\n' "LeNet-300-100" original "1070 KB" "1x" "98.36%"
printf '%-20s %-14s %10s %8s %8s\n' "LeNet-300-100" compressed "27 KB" "40x" "98.42%"
printf '%-20s %-14s %10s %8s %8s\n' "LeNet-5" original "1720 KB" "1x" "99.20%"
printf '%-20s %-14s %10s %8s %8s\n' "LeNet-5" compressed "44 KB" "39x" "99.26%"
