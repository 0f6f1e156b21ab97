#!/usr/bin/env bash
# bench/load_memory.sh — peak resident memory of loading a model, as a multiple of its size
# (issue: loading costs at most 1.5x the model's size). Loads with `mopt info --no-tensors`
# (load + validate + a parameter count, no per-tensor scan) under /usr/bin/time.
set -euo pipefail
MOPT=${MOPT:-bin/mopt}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The process's own footprint (binary, libc, OpenBLAS) measured on a tiny model, reported apart.
base=$(/usr/bin/time -f %M "$MOPT" info --no-tensors /usr/share/libonnx-testdata/data/node/test_abs/model.onnx 2>&1 >/dev/null | tail -n 1)
echo "process baseline (tiny model): $((base * 1024)) bytes"
printf '| model | file bytes | peak RSS bytes | RSS / size | (RSS - baseline) / size |\n|---|---|---|---|---|\n'
row() { printf '| %s | %d | %d | %.2f | %.2f |\n' "$1" "$2" $(($3 * 1024)) "$(echo "$3*1024/$2" | bc -l)" "$(echo "($3-$base)*1024/$2" | bc -l)"; }
for m in build/models/resnet50.onnx build/models/mobilenetv2.onnx build/models/bert_encoder.onnx; do
    [ -f "$m" ] || { echo "missing $m (run make models)" >&2; exit 1; }
    size=$(stat -c %s "$m")
    kb=$(/usr/bin/time -f %M "$MOPT" info --no-tensors "$m" 2>&1 >/dev/null | tail -n 1)
    row "$(basename "$m")" "$size" "$kb"
done
# The same ResNet-50 with its weights in external data.
"$MOPT" cat --external-data build/models/resnet50.onnx -o "$out/r.onnx"
size=$(( $(stat -c %s "$out/r.onnx") + $(stat -c %s "$out/r.onnx.data") ))
kb=$(/usr/bin/time -f %M "$MOPT" info --no-tensors "$out/r.onnx" 2>&1 >/dev/null | tail -n 1)
row "resnet50 (external data)" "$size" "$kb"
