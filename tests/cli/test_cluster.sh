#!/usr/bin/env bash
# tests/cli/test_cluster.sh — `mopt cluster`: the Gather form runs everywhere and computes exactly
# what its --inline twin computes; pruned zeros never move; at most 2^B values per weight;
# --refine data; usage errors.
source "$(dirname "$0")/lib.sh"
PY=${PY:-$ROOT/.venv/bin/python}
CC="$PY $ROOT/tests/cli/compress_check.py"
L5=$ROOT/datasets/lenet5.onnx
L300=$ROOT/datasets/lenet300.onnx
$CC tiny "$T/tiny.onnx"
$CC input "$L5" "$T/x5.npy" 8 1

check "prune" 0 '' -- "$MOPT" prune -q --sparsity 0.7 "$L5" -o "$T/p.onnx"
check "cluster (Gather form) prints per-layer table" 0 'conv2 +Conv +2400 +8 +255' -- \
    "$MOPT" cluster "$T/p.onnx" -o "$T/c.onnx"
assert "fc layers get 5 bits by default" grep -Eq 'fc1 +Gemm +48000 +5 +32' "$T/err"
assert "clustered model passes the ONNX checker" $CC check "$T/c.onnx"
check "cluster --inline" 0 '' -- "$MOPT" cluster --inline "$T/p.onnx" -o "$T/ci.onnx"
check "run clustered" 0 '' -- "$MOPT" run -q -i "$T/x5.npy" --format npy -o "$T/oc" "$T/c.onnx"
check "run inline twin" 0 '' -- "$MOPT" run -q -i "$T/x5.npy" --format npy -o "$T/oi" "$T/ci.onnx"
assert "clustered outputs equal the --inline twin's bit for bit" $CC same "$T/oc/output_0.npy" "$T/oi/output_0.npy"
assert "ONNX Runtime runs the Gather form with mopt's outputs" $CC ort "$T/c.onnx" "$T/x5.npy" "$T/oc"
assert "clustering never moves a pruned zero (5 bits fc, 8 conv)" $CC zeros-kept "$T/p.onnx" "$T/ci.onnx" 8

check "cluster --bits 2 --inline" 0 '' -- "$MOPT" cluster --bits 2 --inline "$T/p.onnx" -o "$T/c2.onnx"
assert "2 bits: at most 4 non-zero values per weight, zeros kept" $CC zeros-kept "$T/p.onnx" "$T/c2.onnx" 2
check "cluster 8 bits with zeros keeps 255 centroids" 0 '8 +255' -- "$MOPT" cluster --bits 8 "$T/p.onnx" -o "$T/c8.onnx"
for init in linear density random kmeans++; do
    check "init $init" 0 '' -- "$MOPT" cluster --init $init --bits 3 --inline "$T/p.onnx" -o "$T/i.onnx"
    assert "init $init keeps zeros" $CC zeros-kept "$T/p.onnx" "$T/i.onnx" 3
done
check "tiny model" 0 '' -- "$MOPT" cluster --bits 3 "$T/tiny.onnx" -o "$T/tc.onnx"
assert "tiny: non-weights untouched" $CC untouched "$T/tiny.onnx" "$T/tc.onnx"
check "per-layer bits" 0 'conv1 +Conv +150 +2 +4' -- "$MOPT" cluster --layer conv1=2 "$T/p.onnx" -o "$T/lb.onnx"
check "refine data" 0 'out_err_refined' -- "$MOPT" cluster --bits 3 --refine data --data fashion-mnist:train \
    --samples $(small 300 40) "$T/p.onnx" --report "$T/r.csv" -o "$T/cr.onnx"
assert "refined output error is below k-means' for every layer" "$PY" -c "
import csv,sys
rows=list(csv.DictReader(open('$T/r.csv')))
sys.exit(0 if rows and all(float(r['out_err_refined'])<=float(r['out_err_kmeans'])+1e-12 for r in rows) else 1)"
check "refine towards the unpruned model" 0 'out_err_refined' -- "$MOPT" cluster --bits 3 --refine data \
    --data fashion-mnist:train --samples $(small 300 40) --reference "$L5" "$T/p.onnx" -o "$T/crr.onnx"
assert "refine with a reference keeps the pruned zeros" bash -c "'$MOPT' unpack -q --dense '$T/crr.onnx' -o '$T/crrd.onnx' && $CC zeros-kept '$T/p.onnx' '$T/crrd.onnx' 3"
check "--reference without --refine is a usage error" 2 'reference' -- "$MOPT" cluster --reference "$L5" "$T/p.onnx"
check "refined model runs in mopt" 0 '' -- "$MOPT" run -q -i "$T/x5.npy" --format npy -o "$T/or" "$T/cr.onnx"
assert "refined model runs in ONNX Runtime alike" $CC ort "$T/cr.onnx" "$T/x5.npy" "$T/or"
check "clustering a clustered model changes nothing" 0 'no Conv' -- "$MOPT" cluster "$T/c.onnx" -o "$T/cc.onnx"
# uint4 indices: only where IR 10 / opset 21 allow them; ONNX Runtime runs them, and the Huffman
# stage (which mopt's executor runs) gives the same outputs.
check "--uint4 on an IR 8 model fails naming the requirement" 1 'IR version 10 and opset 21' -- \
    "$MOPT" cluster --uint4 "$T/p.onnx" -o "$T/u4bad.onnx"
assert "no output left (uint4)" test ! -e "$T/u4bad.onnx"
"$PY" -c "
import onnx,sys
m=onnx.load('$T/p.onnx'); m.ir_version=10
for o in m.opset_import:
    if o.domain in ('','ai.onnx'): o.version=21
onnx.save(m,'$T/p21.onnx')"
check "--uint4 on an IR 10 / opset 21 model" 0 '' -- "$MOPT" cluster --bits 3 --uint4 "$T/p21.onnx" -o "$T/u4.onnx"
assert "uint4 model passes the ONNX checker" $CC check "$T/u4.onnx"
assert "index tensors are uint4" bash -c "'$MOPT' info '$T/u4.onnx' 2>&1 | grep -Eq 'fc1\.weight\.idx +\[120,400\] +uint4'"
check "huffman of the uint4 model" 0 '' -- "$MOPT" huffman "$T/u4.onnx" -o "$T/u4h.onnx"
check "mopt runs it" 0 '' -- "$MOPT" run -q -i "$T/x5.npy" --format npy -o "$T/ou4" "$T/u4h.onnx"
assert "ONNX Runtime's uint4 Gather form gives mopt's outputs" $CC ort "$T/u4.onnx" "$T/x5.npy" "$T/ou4"
check "mopt runs the uint4 Gather form itself (Cast from uint4)" 0 '' -- \
    "$MOPT" run -q -i "$T/x5.npy" --format npy -o "$T/ou4g" "$T/u4.onnx"
assert "uint4 Gather form: ONNX Runtime agrees" $CC ort "$T/u4.onnx" "$T/x5.npy" "$T/ou4g"
"$MOPT" cluster -q --bits 3 "$T/p21.onnx" -o "$T/u8.onnx"
check "uint4 and uint8 indices give the same outputs" 0 '' -- \
    "$MOPT" eval --data fashion-mnist:test --limit 300 "$T/u8.onnx" "$T/u4.onnx"
assert "uint4 vs uint8: agreement 1.0000, max_abs 0" grep -Eq 'u4\.onnx +300 +[0-9.]+ +[0-9.]+ +1\.0000 +0 +0 ' "$T/err"
check "bits 9 is a usage error" 2 'bits' -- "$MOPT" cluster --bits 9 "$L5"
check "unknown init is a usage error" 2 'init' -- "$MOPT" cluster --init foo "$L5"
check "refine without data is a usage error" 2 'needs --data' -- "$MOPT" cluster --refine data "$L5"
check "bad data spec fails and writes nothing" 1 'mopt cluster: ' -- "$MOPT" cluster --refine data --data idx:/nonexistent "$L5" -o "$T/bad.onnx"
assert "no output left" test ! -e "$T/bad.onnx"
finish
