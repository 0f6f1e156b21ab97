#!/usr/bin/env bash
# tests/cli/test_eval.sh — `mopt eval`: accuracy of the bundled LeNet-5 on Fashion-MNIST (above
# 85% on the first 1,000 test images), comparison of several models (a model agrees with itself
# exactly), reports in every format, the --min-top1 gate (exit 3), the data specs (npy, csv with
# labels in the last column, IDX), and bad data: missing files, unknown specs, an empty dataset,
# NaN in the data, samples that do not fit the model, label count and range — each a one-line
# error naming the file, exit 1 (2 for usage).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tensors.sh"
L5=$ROOT/datasets/lenet5.onnx            # input [N,1,28,28] float, logits [N,10]
L300=$ROOT/datasets/lenet300.onnx
EV=("$MOPT" eval --batch 50)

check "lenet5 on fashion-mnist:test" 0 'lenet5.onnx +1000 +0\.(8[5-9]|9)' -- "${EV[@]}" --data fashion-mnist:test --limit 1000 "$L5"
check "top-5 >= top-1" 0 '' -- "${EV[@]}" --data fashion-mnist:test --limit 200 "$L5" --report "$T/r.json"
assert "JSON report has top1 and top5" grep -q '"top5"' "$T/r.json"
check "two models and a duplicate" 0 'lenet5.onnx +300 .* 1\.0000 +0 +0 ' -- "${EV[@]}" --data fashion-mnist:test --limit 300 "$L5" "$L300" "$L5"
check "report .csv" 0 '' -- "${EV[@]}" --data fashion-mnist:test --limit 100 "$L5" "$L300" --report "$T/r.csv"
assert "CSV report: header and two rows" [ "$(grep -c . "$T/r.csv")" -ge 3 ]
check "report .md" 0 '' -- "${EV[@]}" --data fashion-mnist:train --limit 100 "$L5" --report "$T/r.md"
assert "Markdown report is a table" grep -q '^| model' "$T/r.md"
check "--min-top1 gate" 3 'below --min-top1' -- "${EV[@]}" --data fashion-mnist:test --limit 100 --min-top1 0.999 "$L5"
check "--min-top1 met" 0 '' -- "${EV[@]}" --data fashion-mnist:test --limit 100 --min-top1 0.5 "$L5"
check "--layout flat reshaped to [N,1,28,28]" 0 'lenet5.onnx +100 ' -- "${EV[@]}" --data fashion-mnist:test --limit 100 --layout flat "$L5"
check "--normalize changes nothing fatal" 0 '' -- "${EV[@]}" --data fashion-mnist:test --limit 50 --normalize 0.5,0.5 "$L5"

# Data specs built here: 3 samples of zeros with labels 0 1 2.
npy "$T/x.npy" '<f4' '3, 1, 28, 28' < <(zeros $((3 * 784 * 4)))
npy "$T/y.npy" '<i8' '3,' < <(printf '\0\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\2\0\0\0\0\0\0\0')
check "npy:INPUTS,LABELS" 0 'lenet5.onnx +3 ' -- "${EV[@]}" --data "npy:$T/x.npy,$T/y.npy" "$L5"
zrow=$(printf '0,%.0s' $(seq 784))
printf '%s3\n%s4\n' "$zrow" "$zrow" >"$T/xy.csv"
check "csv:FILE,last" 0 'lenet5.onnx +2 ' -- "${EV[@]}" --data "csv:$T/xy.csv,last" "$L5"
idx "$T/x.idx" 08 3 28 28 < <(zeros $((3 * 784)))
idx "$T/y.idx" 08 3 < <(printf '\1\2\3')
check "idx:IMAGES,LABELS" 0 'lenet5.onnx +3 ' -- "${EV[@]}" --data "idx:$T/x.idx,$T/y.idx" "$L5"
check "no labels, two models: agreement only" 0 'lenet300.onnx +3 +- +- ' -- "${EV[@]}" --data "npy:$T/x.npy" "$L5" "$L300"

# Bad data.
one_line() { [ "$(wc -l <"$T/err")" -eq 1 ]; }
check "missing data file" 1 "^mopt eval: $T/nothere.npy: cannot open" -- "${EV[@]}" --data "npy:$T/nothere.npy,$T/y.npy" "$L5"
assert "missing data file: one line" one_line
check "missing labels file" 1 "nolabels.npy: cannot open" -- "${EV[@]}" --data "npy:$T/x.npy,$T/nolabels.npy" "$L5"
check "unknown spec" 2 "unknown data spec 'mnist:test'" -- "${EV[@]}" --data mnist:test "$L5"
check "unknown split" 2 "unknown split 'dev'" -- "${EV[@]}" --data fashion-mnist:dev "$L5"
mkdir -p "$T/nofm"
MOPT_FASHION_MNIST=$T/nofm check "fashion-mnist not installed" 1 'install dataset-fashion-mnist' -- "${EV[@]}" --data fashion-mnist:test "$L5"
# Headers only, written in one printf each: IDX uint8 with dims (0,28,28) and (0).
printf '\0\0\x08\x03\0\0\0\0\0\0\0\x1c\0\0\0\x1c' >"$T/empty.idx"
printf '\0\0\x08\x01\0\0\0\0' >"$T/empty-labels.idx"
assert "empty.idx is a 16-byte header" [ "$(stat -c %s "$T/empty.idx")" -eq 16 ]
check "empty dataset" 1 "empty.idx: dataset is empty \(no samples\)" -- "${EV[@]}" --data "idx:$T/empty.idx,$T/empty-labels.idx" "$L5"
assert "empty dataset: one line" one_line
printf 'a,b\n' >"$T/header-only.csv"
check "CSV with only a header" 1 "header-only.csv: dataset is empty" -- "${EV[@]}" --data "csv:$T/header-only.csv,last" "$L5"
npy "$T/nan.npy" '<f4' '3, 784' < <(zeros $((784 * 4 + 40)); printf '\0\0\xc0\x7f'; zeros $((2 * 784 * 4 - 44)))
check "NaN in the data" 1 "nan.npy: sample 1, value 10 is NaN" -- "${EV[@]}" --data "npy:$T/nan.npy,$T/y.npy" "$L5"
assert "NaN: one line" one_line
npy "$T/inf.npy" '<f4' '3, 784' < <(printf '\0\0\x80\x7f'; zeros $((3 * 784 * 4 - 4)))
check "Inf in the data" 1 "inf.npy: sample 0, value 0 is Inf" -- "${EV[@]}" --data "npy:$T/inf.npy,$T/y.npy" "$L5"
npy "$T/small.npy" '<f4' '3, 100' < <(zeros 1200)
check "samples that do not fit the input" 1 "small.npy: samples \[100\] \(100 values\) do not fit input 'input' \[N,1,28,28\]" -- "${EV[@]}" --data "npy:$T/small.npy,$T/y.npy" "$L5"
npy "$T/y2.npy" '<i8' '2,' < <(zeros 16)
check "label count differs" 1 "y2.npy: 2 labels for 3 samples" -- "${EV[@]}" --data "npy:$T/x.npy,$T/y2.npy" "$L5"
npy "$T/y12.npy" '<i8' '3,' < <(printf '\x0c'; zeros 23)
check "label out of range" 1 "label 12 of sample 0 is outside the model's 10 classes" -- "${EV[@]}" --data "npy:$T/x.npy,$T/y12.npy" "$L5"
idx "$T/trunc.idx" 08 10 28 28 < <(zeros 784)
idx "$T/y10.idx" 08 10 < <(zeros 10)
check "truncated IDX" 1 "trunc.idx: truncated: header says 7840 bytes of data, file has 784" -- "${EV[@]}" --data "idx:$T/trunc.idx,$T/y10.idx" "$L5"
idx "$T/x10.idx" 08 10 28 28 < <(head -c 7840 /dev/urandom)
gzip -c "$T/x10.idx" | head -c 4000 >"$T/trunc.idx.gz"
gzip -c "$T/x10.idx" | head -c -4 >"$T/notrailer.idx.gz"
check "truncated IDX.gz" 1 "trunc.idx.gz: (truncated|compressed data is corrupt)" -- "${EV[@]}" --data "idx:$T/trunc.idx.gz,$T/y10.idx" "$L5"
check "IDX.gz without its gzip trailer" 1 "notrailer.idx.gz: truncated or corrupt compressed data" -- "${EV[@]}" --data "idx:$T/notrailer.idx.gz,$T/y10.idx" "$L5"
check "one model without labels" 1 "has no labels" -- "${EV[@]}" --data "npy:$T/x.npy" "$L5"
check "missing model" 1 "nomodel.onnx" -- "${EV[@]}" --data "npy:$T/x.npy,$T/y.npy" "$T/nomodel.onnx"
check "no --data" 2 "--data SPEC is required" -- "$MOPT" eval "$L5"
check "bad --normalize" 2 "normalize" -- "$MOPT" eval --data fashion-mnist:test --normalize 1,0 "$L5"
check "bad --batch" 2 "--batch" -- "$MOPT" eval --data fashion-mnist:test --batch 0 "$L5"
check "--help" 0 '' -- "$MOPT" eval --help
finish
