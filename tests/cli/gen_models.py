#!/usr/bin/env python3
"""tests/cli/gen_models.py — writes the small models the command-line tests use into OUTDIR.

Good models (good.onnx: X + W -> Relu -> Y with a 2x3 float initializer; mixed.onnx: several ops,
dtypes and a BatchNormalization, for `mopt info`; big.onnx: a 256 KB MatMul; nested-N.onnx: If
nodes nested N levels deep)
and the bad-input catalogue of the foundation issue: each bad model breaks exactly one rule.
The external-data cases get their side files (and a symlink pointing out of the directory) in
OUTDIR/ext/. Deterministic: numpy's generator has a fixed seed, so every run writes the same bytes.

usage: gen_models.py OUTDIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(20240601)


def model(nodes, inits=(), inputs=None, outputs=None, opset=13, name="g", **kw):
    if inputs is None:
        inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3])]
    if outputs is None:
        outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3])]
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="gen_models", **kw)
    m.ir_version = 8
    return m


def good():
    w = numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float32), "W")
    return model([helper.make_node("Add", ["X", "W"], ["S"], name="add"),
                  helper.make_node("Relu", ["S"], ["Y"], name="relu")], [w])


def mixed():
    """Several op types, dtypes and a BatchNormalization whose running statistics are inputs 3-4."""
    f = lambda shape, name, dt=np.float32: numpy_helper.from_array(rng.standard_normal(shape).astype(dt), name)
    inits = [
        f((4, 3, 3, 3), "conv.w"), f((4,), "conv.b"),
        f((4,), "bn.scale"), f((4,), "bn.bias"), f((4,), "bn.mean"),
        numpy_helper.from_array(np.abs(rng.standard_normal(4)).astype(np.float32) + 0.5, "bn.var"),
        f((4 * 6 * 6, 10), "fc.w", np.float16),
        numpy_helper.from_array(np.zeros(10, np.float16), "fc.b"),
        numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["X", "conv.w", "conv.b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["r"], name="relu1"),
        helper.make_node("Reshape", ["r", "shape"], ["flat"], name="flatten"),
        helper.make_node("Cast", ["flat"], ["flat16"], name="cast", to=TensorProto.FLOAT16),
        helper.make_node("Gemm", ["flat16", "fc.w", "fc.b"], ["g"], name="fc"),
        helper.make_node("Relu", ["g"], ["Y"], name="relu2"),
    ]
    return model(nodes, inits,
                 [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 6, 6])],
                 [helper.make_tensor_value_info("Y", TensorProto.FLOAT16, [1, 10])])


def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field, payload):
    """One length-delimited protobuf field."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def nested(depth):
    """depth levels of If: each then_branch holds the next If, each else_branch an Identity; the
    innermost reads X from the outermost scope. Python's protobuf refuses to build messages nested
    this deep, so the nested part is concatenated as wire bytes: a node's then_branch attribute
    (NodeProto field 5 = AttributeProto{name=1, g=6, type=20}) is appended to its serialized bytes."""
    out = lambda k: helper.make_tensor_value_info("y%d" % k, TensorProto.FLOAT, [2, 3])
    leaf = lambda k: helper.make_graph([helper.make_node("Identity", ["X"], ["y%d" % k], name="id%d" % k)],
                                       "e%d" % k, [], [out(k)])

    def if_node(k, then_bytes, y):
        n = helper.make_node("If", ["C"], [y], name="if%d" % k, else_branch=leaf(k))
        attr = _ld(1, b"then_branch") + _ld(6, then_bytes) + _varint(20 << 3) + _varint(5)
        return n.SerializeToString() + _ld(5, attr)

    body = leaf(depth).SerializeToString()
    for k in range(depth - 1, 0, -1):
        shell = helper.make_graph([], "b%d" % k, [], [out(k)]).SerializeToString()
        body = _ld(1, if_node(k, body, "y%d" % k)) + shell
    m = model([], (), [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3]),
                       helper.make_tensor_value_info("C", TensorProto.BOOL, [])])
    m.graph.ClearField("node")
    graph = _ld(1, if_node(0, body, "Y")) + m.graph.SerializeToString()
    m.ClearField("graph")
    return m.SerializeToString() + _ld(7, graph)


def deep_types(levels):
    """A graph input whose type is a sequence of a sequence of ... (levels deep) of float tensors,
    as wire bytes: a 69 KB file of 5,000 levels overflowed protobuf-c's recursive unpacker."""
    core = bytes([0x0A, 0x02, 0x08, 0x01])  # TypeProto{tensor_type{elem_type: FLOAT}}
    heads, n = [], len(core)
    for _ in range(levels):
        for field in (1, 4):  # Sequence.elem_type, then TypeProto.sequence_type
            h = _varint(field << 3 | 2) + _varint(n)
            heads.append(h)
            n += len(h)
    typ = b"".join(reversed(heads)) + core
    value = _ld(1, b"x") + _ld(2, typ)
    graph = _ld(11, value) + _ld(12, value)
    return bytes([0x08, 0x08]) + _ld(7, graph) + _ld(8, bytes([0x10, 0x0D]))


def ext_model(location, offset=None, length=None, name="W"):
    """good.onnx with W's 24 bytes stored externally at location."""
    m = good()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    return m


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.SerializeToString())


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    g = good()
    write(os.path.join(out, "good.onnx"), g)
    write(os.path.join(out, "mixed.onnx"), mixed())
    big = numpy_helper.from_array(rng.standard_normal((256, 256)).astype(np.float32), "W")
    write(os.path.join(out, "big.onnx"),  # 256 KB, for the full-disk tests
          model([helper.make_node("MatMul", ["X", "W"], ["Y"], name="mm")], [big],
                [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 256])],
                [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 256])]))
    for d in (8, 60, 70):
        write(os.path.join(out, "nested-%d.onnx" % d), nested(d))

    # --- the bad-input catalogue -----------------------------------------------------------
    bad = os.path.join(out, "bad")
    os.makedirs(bad, exist_ok=True)
    write(os.path.join(bad, "empty.onnx"), b"")
    write(os.path.join(bad, "deep-types.onnx"), deep_types(5000))
    raw = g.SerializeToString()
    for off in (1, 5, len(raw) // 3, len(raw) // 2, len(raw) - 1):
        write(os.path.join(bad, "truncated-%d.onnx" % off), raw[:off])
    write(os.path.join(bad, "random.onnx"), rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    # A protobuf that is not a model: a TensorProto, like a test_data_set input_0.pb.
    write(os.path.join(bad, "tensor.onnx"), numpy_helper.from_array(np.ones((2, 3), np.float32), "X"))
    # Field number 0 in a non-minimal tag (0x80 0x00): protobuf-c reads it as an unknown field but
    # cannot read back what it writes for it (found by the onnx_load fuzzer). At the top level and
    # inside the graph (a second graph field merges into the first).
    write(os.path.join(bad, "field0.onnx"), raw + bytes([0x80, 0x00, 0x01]))
    write(os.path.join(bad, "field0-graph.onnx"), raw + _ld(7, bytes([0x80, 0x00, 0x01])))

    m = good()
    m.graph.node[1].input[0] = "ghost"
    write(os.path.join(bad, "undefined-input.onnx"), m)

    m = good()  # add reads Y2, which neg computes from relu's output, which reads add's: a cycle
    m.graph.node[0].input[0] = "Y2"
    m.graph.node.append(helper.make_node("Neg", ["Y"], ["Y2"], name="neg"))
    write(os.path.join(bad, "cycle.onnx"), m)

    m = good()
    m.graph.node[1].output[0] = "S"  # relu writes S again
    write(os.path.join(bad, "double-assignment.onnx"), m)

    m = good()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:20]
    write(os.path.join(bad, "rawdata-length.onnx"), m)
    # The same bytes in a tensor also marked external (found by the onnx_load fuzzer: accepted,
    # then written inline and refused on reading back).
    m.graph.initializer[0].data_location = TensorProto.EXTERNAL
    write(os.path.join(bad, "rawdata-length-external.onnx"), m)

    m = good()
    m.graph.initializer[0].dims[:] = [-2, -3]
    write(os.path.join(bad, "negative-dims.onnx"), m)

    m = good()
    m.graph.initializer[0].dims[:] = [1 << 31, 1 << 31]  # 2^62 elements
    write(os.path.join(bad, "huge-dims.onnx"), m)

    m = good()
    m.graph.initializer[0].dims[:] = [1 << 32, 1 << 32, 1 << 32]  # 2^96: overflows uint64
    write(os.path.join(bad, "overflow-dims.onnx"), m)

    # --- external data ----------------------------------------------------------------------
    ext = os.path.join(out, "ext")
    os.makedirs(os.path.join(ext, "sub"), exist_ok=True)
    w = numpy_helper.to_array(g.graph.initializer[0]).tobytes()
    write(os.path.join(ext, "w.bin"), w)
    write(os.path.join(out, "outside.bin"), w)
    link = os.path.join(ext, "link.bin")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink("../outside.bin", link)
    write(os.path.join(ext, "ok.onnx"), ext_model("w.bin"))
    write(os.path.join(ext, "dotdot.onnx"), ext_model("../outside.bin"))
    write(os.path.join(ext, "dotdot-inner.onnx"), ext_model("sub/../../outside.bin"))
    write(os.path.join(ext, "absolute.onnx"), ext_model(os.path.abspath(os.path.join(out, "outside.bin"))))
    write(os.path.join(ext, "symlink.onnx"), ext_model("link.bin"))
    write(os.path.join(ext, "past-end.onnx"), ext_model("w.bin", offset=8, length=24))
    write(os.path.join(ext, "huge-offset.onnx"), ext_model("w.bin", offset=(1 << 64) - 8, length=24))
    write(os.path.join(ext, "missing.onnx"), ext_model("nothere.bin"))
    write(os.path.join(ext, "length-mismatch.onnx"), ext_model("w.bin", offset=0, length=20))
    write(os.path.join(ext, "directory.onnx"), ext_model("sub"))
    fifo = os.path.join(ext, "fifo.bin")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    write(os.path.join(ext, "fifo.onnx"), ext_model("fifo.bin"))


if __name__ == "__main__":
    main()
