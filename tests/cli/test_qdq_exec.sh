#!/usr/bin/env bash
# tests/cli/test_qdq_exec.sh — the executor runs QDQ models on int8 kernels (Conv, Gemm, residual
# Add, depthwise Conv, ReLU6 absorbed): the plan says so, and
# on lenet5, rescnn and dwnet (a MobileNet-like net from make_models.py: depthwise convs at
# strides 1 and 2, Clip(0, 6)) (quantized from 300 training images) every output on 2,000 test images is
# within one output quantization step of the same model simulated in float (MOPT_NO_QDQ_FUSE=1),
# with the same top-1 to 0.2 points, and equal to ONNX Runtime's output on the same file bit for
# bit on a CPU with AVX-512 VNNI (elsewhere within one step; see compare_int8_exec.py). (Under
# tests/valgrind.sh, which hides AVX-512: 30 calibration images, 100 test images, top-1 to one
# image, within one step of ONNX Runtime.)
source "$(dirname "$0")/lib.sh"
PY=${PY:-$ROOT/.venv/bin/python}
"$PY" "$ROOT/tests/precision/make_models.py" "$T/g" || { echo "FAIL make_models.py"; exit 1; }
check "int8 vs simulated float on the bundled CNNs and dwnet" 0 '' -- "$PY" "$ROOT/tests/precision/compare_int8_exec.py" \
    "$MOPT" "$T/x" --cal $(small 300 30) --limit $(small 2000 100) --top1-tol $(small 0.002 0.01) $(small --ort-exact '') \
    "$ROOT/datasets/lenet5.onnx" "$ROOT/datasets/rescnn.onnx" "$T/g/dwnet.onnx"
assert "all three models compared: within one step of the simulation, equal to ONNX Runtime" [ "$(grep -c ' ok$' "$T/out")" -eq 3 ]
check "plan names the int8 islands" 0 'int8 at load: 2 Conv, 0 MatMul, 3 Gemm, 0 Add QDQ islands' -- \
    "$MOPT" bench "$T/x/lenet5.int8.onnx" --iters 1 --warmup 0 --explain -q
check "all three residual Adds run as QLinearAdd" 0 'int8 at load: 9 Conv, 0 MatMul, 1 Gemm, 3 Add QDQ islands' -- \
    "$MOPT" bench "$T/x/rescnn.int8.onnx" --iters 1 --warmup 0 --explain -q
check "dwnet: every conv (depthwise too) and the Add on int8 kernels" 0 \
    'int8 at load: 7 Conv, 0 MatMul, 1 Gemm, 1 Add QDQ islands .* 6 Relu/Clip absorbed \(0 as a clamp' -- \
    "$MOPT" bench "$T/x/dwnet.int8.onnx" --iters 1 --warmup 0 --explain -q
assert "dwnet: the six ReLU6 (Clip) are absorbed by the quantization's saturation" sh -c "! grep -q ' Clip ' '$T/err'"
# the same file with ReLU6's bound lowered to 0.25 (below where the quantization saturates)
"$PY" - "$T/x/dwnet.int8.onnx" "$T/x/dwnet.clip3.onnx" "$T/x/in.npy" <<'PYEOF'
import sys, numpy as np, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
for i, t in enumerate(m.graph.initializer):
    if t.name == "six":
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array(0.25, np.float32), "six"))
onnx.save(m, sys.argv[2])
np.save(sys.argv[3], np.random.default_rng(1).random((20, 1, 28, 28), np.float32))
PYEOF
check "a Clip that the saturation does not imply is absorbed as a clamp of the int8 output" 0 \
    '6 Relu/Clip absorbed \(6 as a clamp of the int8 output\)' -- \
    "$MOPT" bench "$T/x/dwnet.clip3.onnx" --iters 1 --warmup 0 --explain -q
assert "no Clip left in its plan" sh -c "! grep -q ' Clip ' '$T/err'"
check "and the output is ONNX Runtime's and the float simulation's within one step" 0 '' -- "$PY" -c '
import sys, subprocess, numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
m, x, d = sys.argv[1:4]
subprocess.run([sys.argv[4], "run", m, "-i", x, "--format", "npy", "-o", d, "-q"], check=True)
got = np.load(d + "/output_0.npy")
subprocess.run([sys.argv[4], "run", m, "-i", x, "--format", "npy", "-o", d + "s", "-q"], check=True,
               env=dict(__import__("os").environ, MOPT_NO_QDQ_FUSE="1"))
sim = np.load(d + "s/output_0.npy")
want = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"input": np.load(x)})[0]
g = onnx.load(m).graph
dq = [n for n in g.node if n.op_type == "DequantizeLinear" and n.output[0] == "logits"][0]
step = float(numpy_helper.to_array([t for t in g.initializer if t.name == dq.input[1]][0]))
assert np.max(np.abs(got - want)) <= step * 1.001, (np.max(np.abs(got - want)), step)
assert np.max(np.abs(got - sim)) <= step * 1.001, (np.max(np.abs(got - sim)), step)
' "$T/x/dwnet.clip3.onnx" "$T/x/in.npy" "$T/x/clip3out" "$MOPT"
# symmetric int8 activations (--act int8): zero point 0, so Q's saturation does not do a Relu;
# every Relu and ReLU6 is absorbed as a clamp and every island still runs on int8 kernels
check "--act int8: within one step of the simulation and of ONNX Runtime" 0 '' -- "$PY" \
    "$ROOT/tests/precision/compare_int8_exec.py" "$MOPT" "$T/x" --act int8 --cal $(small 300 30) \
    --limit $(small 2000 100) --top1-tol $(small 0.002 0.01) \
    "$ROOT/datasets/lenet5.onnx" "$ROOT/datasets/rescnn.onnx" "$T/g/dwnet.onnx"
assert "all three models compared" [ "$(grep -c ' ok$' "$T/out")" -eq 3 ]
check "--act int8 rescnn: every island on int8 kernels, its 7 Relu as clamps" 0 \
    'int8 at load: 9 Conv, 0 MatMul, 1 Gemm, 3 Add QDQ islands .* 7 Relu/Clip absorbed \(7 as a clamp' -- \
    "$MOPT" bench "$T/x/rescnn.s8.onnx" --iters 1 --warmup 0 --explain -q
check "--act int8 dwnet: all its convs too, its ReLU6 as clamps" 0 \
    'int8 at load: 7 Conv, 0 MatMul, 1 Gemm, 1 Add QDQ islands .* 6 Relu/Clip absorbed \(6 as a clamp' -- \
    "$MOPT" bench "$T/x/dwnet.s8.onnx" --iters 1 --warmup 0 --explain -q
check "MOPT_NO_QDQ_FUSE=1 runs the QDQ nodes as written" 0 '' -- env MOPT_NO_QDQ_FUSE=1 \
    "$MOPT" bench "$T/x/lenet5.int8.onnx" --iters 1 --warmup 0 --explain -q
assert "no int8 line when the rewrite is off" sh -c "! grep -q 'int8 at load' '$T/err'"
finish
