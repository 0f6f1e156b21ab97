#!/usr/bin/env bash
# tests/cli/test_prune.sh — `mopt prune`: exact sparsity counts, overrides, the three modes,
# only Conv/ConvTranspose/Gemm/MatMul weights change (never biases, BatchNorm parameters or a
# tensor also read by another node), filter behaviour, usage errors.
source "$(dirname "$0")/lib.sh"
PY=${PY:-$ROOT/.venv/bin/python}
CC="$PY $ROOT/tests/cli/compress_check.py"
L5=$ROOT/datasets/lenet5.onnx
L300=$ROOT/datasets/lenet300.onnx
$CC tiny "$T/tiny.onnx"

check "prune global sparsity prints per-layer table" 0 'conv2 +Conv +conv2.weight +2400 +0\.00' -- \
    "$MOPT" prune --sparsity 0.9 "$L5" -o "$T/p5.onnx"
assert "global sparsity total is exact" grep -Eq 'total +61470 +0\.00 +90\.00' "$T/err"
assert "pruning leaves biases untouched (lenet5)" $CC untouched "$L5" "$T/p5.onnx"
assert "output passes the ONNX checker" $CC check "$T/p5.onnx"
assert "history records the command" $CC history "$T/p5.onnx" 1

check "prune per-layer" 0 '' -- "$MOPT" prune --sparsity 0.5 --per-layer "$L5" -o "$T/pl.onnx"
assert "per-layer: conv1 gets exactly round(0.5*150) zeros" $CC zeros "$T/pl.onnx" conv1.weight 75
assert "per-layer: fc3 gets exactly 420 zeros" $CC zeros "$T/pl.onnx" fc3.weight 420

check "layer override" 0 '' -- "$MOPT" prune --sparsity 0.5 --layer 'conv1=0.2' --layer 'fc*3=0' "$L5" -o "$T/lo.onnx"
assert "override: conv1 exactly 30 zeros" $CC zeros "$T/lo.onnx" conv1.weight 30
assert "override: fc3 untouched" $CC zeros "$T/lo.onnx" fc3.weight 0

check "tiny model: Conv, Gemm, MatMul weights pruned" 0 'mm +MatMul +mm\.w' -- \
    "$MOPT" prune --sparsity 0.7 "$T/tiny.onnx" -o "$T/tp.onnx"
assert "tiny: BatchNorm, biases, shape and shared tensor unchanged" $CC untouched "$T/tiny.onnx" "$T/tp.onnx"
assert "tiny: a tensor also read by Add is not a weight" $CC zeros "$T/tp.onnx" shared 0
assert "tiny: the report does not list the shared tensor" bash -c "! grep -q shared '$T/err'"

check "threshold mode" 0 '' -- "$MOPT" prune --threshold 0.05 "$L300" -o "$T/th.onnx"
check "quality mode" 0 'threshold' -- "$MOPT" prune --quality 0.5 "$L300" -o "$T/q.onnx"
check "exclude by op type leaves Gemm alone" 0 'no Conv' -- "$MOPT" prune --sparsity 0.9 --exclude Gemm "$L300" -o "$T/ex.onnx"
assert "excluded model keeps fc1 dense" $CC zeros "$T/ex.onnx" fc1.weight 0
check "include by name" 0 '' -- "$MOPT" prune --sparsity 0.5 --per-layer --include fc3 "$L300" -o "$T/in.onnx"
assert "include: fc3 pruned" $CC zeros "$T/in.onnx" fc3.weight 500
assert "include: fc1 not pruned" $CC zeros "$T/in.onnx" fc1.weight 0

check "stdin to stdout" 0 '' -- bash -c "'$MOPT' prune -q --sparsity 0.3 < '$L5' > '$T/pipe.onnx'"
assert "stdin output is a model" $CC check "$T/pipe.onnx"

check "sparsity out of range is a usage error" 2 'sparsity' -- "$MOPT" prune --sparsity 1.5 "$L5"
check "two modes is a usage error" 2 'choose one' -- "$MOPT" prune --sparsity 0.5 --threshold 0.1 "$L5"
check "bad --layer is a usage error" 2 'NAME=VALUE' -- "$MOPT" prune --layer conv1 "$L5"
check "--refine without --data is a usage error" 2 'needs --data' -- "$MOPT" prune --refine data "$L5"
check "missing input fails naming the file" 1 'mopt prune: .*nonexistent' -- "$MOPT" prune "$T/nonexistent.onnx" -o "$T/x.onnx"
assert "no output left on failure" test ! -e "$T/x.onnx"
check "refine data keeps the counts" 0 '' -- "$MOPT" prune --sparsity 0.8 --per-layer --refine data \
    --data fashion-mnist:train --samples $(small 500 50) "$L300" -o "$T/rf.onnx"
assert "refine: fc2 exactly 24000 zeros" $CC zeros "$T/rf.onnx" fc2.weight 24000
assert "refine: only weights and biases change; BatchNorm-free lenet300 biases may move" $CC check "$T/rf.onnx"

# The accuracy gate: exit 3 and nothing written when top-1 falls by more than --max-drop.
check "gate fails at 90% magnitude pruning" 3 'exceeds --max-drop 1\.00; nothing written' -- \
    "$MOPT" prune --sparsity 0.9 --eval "$(fm_test)" --max-drop 1 "$L5" -o "$T/gate.onnx"
assert "gate: no output left" test ! -e "$T/gate.onnx"
check "gate passes at 20%" 0 'top-1 .* points, --max-drop 1\.00' -- \
    "$MOPT" prune --sparsity 0.2 --eval "$(fm_test)" --max-drop 1 "$L5" -o "$T/gate2.onnx"
assert "gate: output written" test -s "$T/gate2.onnx"
check "cluster gate" 3 'mopt cluster: .*exceeds --max-drop' -- \
    "$MOPT" cluster --bits 1 --eval "$(fm_test)" --max-drop 0.1 "$L5" -o "$T/gate3.onnx"
check "--max-drop without --eval is a usage error" 2 'go together' -- "$MOPT" prune --max-drop 1 "$L5"

# mopt sensitivity: one row per layer and sparsity after the baseline; the model is restored
# between rows (the baseline row and the zero-sparsity rows agree).
check "sensitivity writes CSV" 0 'sensitivity' -- "$MOPT" sensitivity --data fashion-mnist:test --limit $(small 300 100) \
    --sparsities 0,0.9 "$L5" -o "$T/sens.csv"
assert "sensitivity: header, baseline and 2 rows per layer" test "$(wc -l < "$T/sens.csv")" -eq 12
assert "sensitivity: sparsity 0 changes nothing" "$PY" -c "
import csv,sys
r=list(csv.DictReader(open('$T/sens.csv')))
base=r[0]['top1']
sys.exit(0 if all(x['top1']==base for x in r if x['sparsity']=='0') and any(float(x['drop'])>0 for x in r) else 1)"
check "sensitivity needs --data" 2 'data' -- "$MOPT" sensitivity "$L5"
# --sparse-initializers: pruned weights stored as ONNX SparseTensorProto where smaller; every
# command reads them (as dense), the executor and ONNX Runtime compute the same outputs, `cat`
# keeps them sparse, and malformed sparse tensors are refused with the tensor's name.
check "sparse initializers: summary" 0 '2 of 3 weights stored as sparse initializers, [0-9]+ bytes smaller' -- \
    "$MOPT" prune --sparsity 0.9 --sparse-initializers "$L300" -o "$T/sp.onnx"
"$MOPT" prune -q --sparsity 0.9 "$L300" -o "$T/dp.onnx"
assert "sparse initializers: file under a third of the dense one" \
    test "$(stat -c %s "$T/sp.onnx")" -lt "$(($(stat -c %s "$T/dp.onnx") / 3))"
assert "sparse initializers: checker passes, ONNX Runtime gives the dense model's outputs" "$PY" -c "
import onnx, onnxruntime as ort, numpy as np, sys
m = onnx.load('$T/sp.onnx'); onnx.checker.check_model(m)
assert sorted(s.values.name for s in m.graph.sparse_initializer) == ['fc1.weight', 'fc2.weight']
assert all(s.indices.data_type == onnx.TensorProto.INT64 for s in m.graph.sparse_initializer)
x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
a = ort.InferenceSession('$T/sp.onnx').run(None, {'input': x})[0]
b = ort.InferenceSession('$T/dp.onnx').run(None, {'input': x})[0]
sys.exit(0 if np.array_equal(a, b) else 1)"
check "sparse initializers: mopt eval agrees with the dense model" 0 '' -- \
    "$MOPT" eval --data fashion-mnist:test --limit $(small 500 100) "$T/dp.onnx" "$T/sp.onnx"
assert "sparse initializers: agreement 1.0000, max_abs 0" grep -Eq "sp\.onnx +$(small 500 100) +"'[0-9.]+ +[0-9.]+ +1\.0000 +0 +0 ' "$T/err"
check "sparse initializers: cat keeps them byte for byte" 0 '' -- "$MOPT" cat "$T/sp.onnx" -o "$T/spcat.onnx"
assert "sparse initializers: cat output identical" cmp -s "$T/sp.onnx" "$T/spcat.onnx"
"$MOPT" cluster -q --bits-fc 4 "$T/sp.onnx" -o "$T/spc.onnx"
"$MOPT" cluster -q --bits-fc 4 "$T/dp.onnx" -o "$T/dpc.onnx"
assert "sparse initializers: cluster reads them as the dense weights" cmp -s \
    <("$MOPT" cat "$T/spc.onnx" | "$PY" -c "import onnx,sys; m=onnx.load(sys.stdin.buffer); del m.metadata_props[:]; sys.stdout.buffer.write(m.SerializeToString())") \
    <("$MOPT" cat "$T/dpc.onnx" | "$PY" -c "import onnx,sys; m=onnx.load(sys.stdin.buffer); del m.metadata_props[:]; sys.stdout.buffer.write(m.SerializeToString())")
"$PY" - "$T/sp.onnx" "$T" <<'PYEOF'
import onnx, sys
src, d = sys.argv[1], sys.argv[2]
m = onnx.load(src)
s = m.graph.sparse_initializer[0]
idx = onnx.numpy_helper.to_array(s.indices).copy()
bad = idx.copy(); bad[-1] = 10**9
s.indices.CopyFrom(onnx.numpy_helper.from_array(bad)); onnx.save(m, d + '/sp_range.onnx')
bad = idx.copy(); bad[[0, 1]] = bad[[1, 0]]
s.indices.CopyFrom(onnx.numpy_helper.from_array(bad)); onnx.save(m, d + '/sp_order.onnx')
m = onnx.load(d + '/dp.onnx'); m.ir_version = 5; onnx.save(m, d + '/ir5.onnx')
PYEOF
check "sparse index out of range is refused" 1 "^mopt run: .*sp_range\.onnx: sparse tensor '(fc1|fc2)\.weight': index [0-9]+ out of range$" -- \
    "$MOPT" run "$T/sp_range.onnx" -o "$T/never.npz"
check "sparse indices out of order are refused" 1 "sparse tensor '(fc1|fc2)\.weight': indices not in increasing order at 1" -- \
    "$MOPT" prune --sparsity 0.5 "$T/sp_order.onnx" -o "$T/never.onnx"
assert "refused: nothing written" test ! -e "$T/never.onnx" -a ! -e "$T/never.npz"
check "--sparse-initializers needs IR 6" 1 'needs IR version 6 or later \(the model has 5\)' -- \
    "$MOPT" prune --sparsity 0.5 --sparse-initializers "$T/ir5.onnx" -o "$T/never.onnx"
finish
