#!/usr/bin/env python3
"""Checks used by the Deep Compression CLI tests (test_prune.sh, test_cluster.sh,
test_huffman.sh, test_pipeline.sh). Each subcommand exits 0 when the property holds and 1
with a message otherwise.

  tiny OUT.onnx                      write a small model with Conv+BatchNorm, Gemm, MatMul and a
                                     weight-shaped tensor that is also read by an Add (not a weight)
  untouched ORIG NEW                 every initializer of ORIG that is not a Conv/ConvTranspose/Gemm/
                                     MatMul weight is in NEW with the same bytes
  zeros NEW TENSOR COUNT             initializer TENSOR of NEW has exactly COUNT zeros
  zeros-kept PRUNED CLUSTERED BITS   every zero of PRUNED's weights is zero in CLUSTERED (inline),
                                     and each weight has at most 2^BITS distinct non-zero values
  input MODEL OUT.npy [N] [SEED]     random input for the model's first input (batch N)
  ort MODEL IN.npy OUTDIR [TOL]      ONNX Runtime's output 0 on IN equals OUTDIR/output_0.npy
                                     (mopt run --format npy) within TOL (default 1e-5, relative)
  same A.npy B.npy                   two arrays are bitwise equal
  opset MODEL DOMAIN yes|no          the model imports (or does not import) DOMAIN
  history MODEL N                    mopt.history holds N entries
  check MODEL                        onnx.checker.check_model(full_check=True) passes
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto


def fail(msg):
    print("compress_check: " + msg, file=sys.stderr)
    sys.exit(1)


def weights_of(m):
    w = set()
    for n in m.graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        if n.op_type in ("Conv", "ConvTranspose", "Gemm") and len(n.input) > 1:
            w.add(n.input[1])
        if n.op_type == "MatMul":
            w.update(n.input[:2])
    # a tensor also read in another slot is not a weight
    for n in m.graph.node:
        for k, name in enumerate(n.input):
            slot_ok = (n.op_type in ("Conv", "ConvTranspose", "Gemm") and k == 1) or \
                      (n.op_type == "MatMul" and k <= 1)
            if name in w and not slot_ok:
                w.discard(name)
    return w


def tiny(out):
    rng = np.random.default_rng(7)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    inits = [
        numpy_helper.from_array(f(4, 1, 3, 3), "conv.w"),
        numpy_helper.from_array(f(4), "conv.b"),
        numpy_helper.from_array(np.abs(f(4)) + 0.5, "bn.scale"),
        numpy_helper.from_array(f(4), "bn.bias"),
        numpy_helper.from_array(f(4), "bn.mean"),
        numpy_helper.from_array(np.abs(f(4)) + 0.5, "bn.var"),
        numpy_helper.from_array(np.array([1, 144], np.int64), "shape"),
        numpy_helper.from_array(f(16, 144) * 0.1, "fc.w"),
        numpy_helper.from_array(f(16), "fc.b"),
        numpy_helper.from_array(f(16, 10) * 0.3, "mm.w"),
        numpy_helper.from_array(f(10) * 0.1, "shared"),   # read by Add: not a weight
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", pads=[0, 0, 0, 0]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"],
                         ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["fc"], name="fc", transB=1),
        helper.make_node("MatMul", ["fc", "mm.w"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "shared"], ["y"], name="add"),
    ]
    g = helper.make_graph(nodes, "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, out)


def inits(m):
    return {t.name: t for t in m.graph.initializer}


def main(a):
    cmd = a[1]
    if cmd == "tiny":
        tiny(a[2])
    elif cmd == "untouched":
        o, n = onnx.load(a[2]), onnx.load(a[3])
        w, ni = weights_of(o), inits(n)
        for t in o.graph.initializer:
            if t.name in w:
                continue
            if t.name not in ni:
                fail(f"non-weight '{t.name}' is gone")
            if not np.array_equal(numpy_helper.to_array(t), numpy_helper.to_array(ni[t.name])):
                fail(f"non-weight '{t.name}' changed")
    elif cmd == "zeros":
        t = inits(onnx.load(a[2]))[a[3]]
        z = int((numpy_helper.to_array(t) == 0).sum())
        if z != int(a[4]):
            fail(f"'{a[3]}' has {z} zeros, expected {a[4]}")
    elif cmd == "zeros-kept":
        p, c, bits = onnx.load(a[2]), onnx.load(a[3]), int(a[4])
        pi, ci = inits(p), inits(c)
        for name in weights_of(p):
            wp, wc = numpy_helper.to_array(pi[name]), numpy_helper.to_array(ci[name])
            if np.any(wc[wp == 0] != 0):
                fail(f"'{name}': a pruned zero moved")
            nz = np.unique(wc[wc != 0]).size
            if nz > 2 ** bits:
                fail(f"'{name}': {nz} distinct non-zero values for {bits} bits")
            if (wp == 0).sum() and np.any(wc[wp != 0] == 0) and (wc == 0).sum() > (wp == 0).sum() + 0:
                pass  # a centroid may be exactly 0 only by accident; not an error
    elif cmd == "input":
        m = onnx.load(a[2])
        n = int(a[4]) if len(a) > 4 else 4
        seed = int(a[5]) if len(a) > 5 else 0
        x = m.graph.input[0]
        dims = [d.dim_value if d.dim_value > 0 else n for d in x.type.tensor_type.shape.dim]
        np.save(a[3], np.random.default_rng(seed).random(dims, dtype=np.float32))
    elif cmd == "ort":
        import onnxruntime as ort
        s = ort.InferenceSession(a[2], providers=["CPUExecutionProvider"])
        x = np.load(a[3])
        ref = s.run(None, {s.get_inputs()[0].name: x})[0]
        got = np.load(a[4] + "/output_0.npy")
        tol = float(a[5]) if len(a) > 5 else 1e-5
        err = np.abs(ref - got).max() / max(np.abs(ref).max(), 1e-12)
        if ref.shape != got.shape or not err <= tol:
            fail(f"ONNX Runtime and mopt differ: relative error {err:g} (tolerance {tol:g})")
    elif cmd == "same":
        x, y = np.load(a[2]), np.load(a[3])
        if x.shape != y.shape or x.tobytes() != y.tobytes():
            fail(f"{a[2]} and {a[3]} differ (max {np.abs(x - y).max() if x.shape == y.shape else 'shape'})")
    elif cmd == "opset":
        m = onnx.load(a[2])
        has = any(o.domain == a[3] for o in m.opset_import)
        if has != (a[4] == "yes"):
            fail(f"opset import of '{a[3]}': {has}")
    elif cmd == "history":
        m = onnx.load(a[2])
        h = [p.value for p in m.metadata_props if p.key == "mopt.history"]
        n = len(h[0].strip().split("\n")) if h and h[0].strip() else 0
        if n != int(a[3]):
            fail(f"mopt.history has {n} entries, expected {a[3]}: {h}")
    elif cmd == "check":
        onnx.checker.check_model(onnx.load(a[2]), full_check=True)
    else:
        fail("unknown check " + cmd)


if __name__ == "__main__":
    main(sys.argv)
