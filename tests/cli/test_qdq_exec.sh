#!/usr/bin/env bash
# tests/cli/test_qdq_exec.sh — the executor runs QDQ models on int8 kernels (Conv, Gemm, residual
# Add): the plan says so, and
# on lenet5 and rescnn (quantized from 300 training images) every output on 2,000 test images is
# within one output quantization step of the same model simulated in float (MOPT_NO_QDQ_FUSE=1),
# with the same top-1 to 0.2 points, and equal to ONNX Runtime's output on the same file bit for
# bit on a CPU with AVX-512 VNNI (elsewhere within one step; see compare_int8_exec.py). (Under
# tests/valgrind.sh, which hides AVX-512: 30 calibration images, 100 test images, top-1 to one
# image, within one step of ONNX Runtime.)
source "$(dirname "$0")/lib.sh"
PY=${PY:-$ROOT/.venv/bin/python}
check "int8 vs simulated float on the bundled CNNs" 0 '' -- "$PY" "$ROOT/tests/precision/compare_int8_exec.py" \
    "$MOPT" "$T/x" --cal $(small 300 30) --limit $(small 2000 100) --top1-tol $(small 0.002 0.01) $(small --ort-exact '') \
    "$ROOT/datasets/lenet5.onnx" "$ROOT/datasets/rescnn.onnx"
assert "both models compared: within one step of the simulation, equal to ONNX Runtime" [ "$(grep -c ' ok$' "$T/out")" -eq 2 ]
check "plan names the int8 islands" 0 'int8 at load: 2 Conv, 0 MatMul, 3 Gemm, 0 Add QDQ islands' -- \
    "$MOPT" bench "$T/x/lenet5.int8.onnx" --iters 1 --warmup 0 --explain -q
check "all three residual Adds run as QLinearAdd" 0 'int8 at load: 9 Conv, 0 MatMul, 1 Gemm, 3 Add QDQ islands' -- \
    "$MOPT" bench "$T/x/rescnn.int8.onnx" --iters 1 --warmup 0 --explain -q
check "MOPT_NO_QDQ_FUSE=1 runs the QDQ nodes as written" 0 '' -- env MOPT_NO_QDQ_FUSE=1 \
    "$MOPT" bench "$T/x/lenet5.int8.onnx" --iters 1 --warmup 0 --explain -q
assert "no int8 line when the rewrite is off" sh -c "! grep -q 'int8 at load' '$T/err'"
finish
