#!/usr/bin/env python3
"""Small models and data files for the amp/calib/quant CLI tests (fixed seeds).

usage: make_models.py OUTDIR

  attn.onnx       a tiny attention block: int64 mask -> Cast -> Sub/Mul, MatMul, Softmax,
                  LayerNormalization, a value with several consumers (cast minimisation cases)
  bigweight.onnx  Gemm whose weight holds 1e6 (beyond float16) -> amp clamps and names it
  overflow.onnx   [N,1,28,28] -> Flatten -> MatMul by 1e3 -> ...: activations beyond 65504
  wrongshape.npy  [8,3,32,32] float32;  nan.npy: [8,1,28,28] with a NaN;  empty.npy: [0,1,28,28]
  intinput.onnx   a model whose input is int64
  dwnet.onnx      a MobileNet-like [N,1,28,28] net (random He weights): depthwise 3x3 convs at
                  strides 1 and 2 (28x28 to 7x7), ReLU6 as Clip(0, 6), a residual Add, pointwise
                  convs, GlobalAveragePool, Gemm
  tinybert.onnx   datasets/make_zoo.py's BERT encoder at 2 layers, hidden 64, 4 heads, FFN 128,
                  vocabulary 200, 32 positions: inputs input_ids and attention_mask, int64 [N,S]
  ids.npy, mask.npy  64 sequences of 16 tokens for it (int64; padded ends masked), mask32.npy
                  the mask as int32, idsf.npy the ids as float32, idshalf.npy with a 0.5 in
                  sample 3, ids60.npy the first 60 sequences
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(m, path):
    m = helper.make_model(m, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(5)
    f = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.1  # noqa: E731
    # attention block
    S, H = 8, 16
    inits = [numpy_helper.from_array(f(H, H), n) for n in ("wq", "wk", "wv", "wo")]
    inits += [numpy_helper.from_array(np.ones(H, np.float32), "ln_s"),
              numpy_helper.from_array(np.zeros(H, np.float32), "ln_b"),
              numpy_helper.from_array(np.array(1.0, np.float32), "one"),
              numpy_helper.from_array(np.array(-1e4, np.float32), "neg"),
              numpy_helper.from_array(np.array(0.25, np.float32), "scale")]
    nodes = [
        helper.make_node("Cast", ["mask"], ["maskf"], name="mask_cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "maskf"], ["inv"], name="inv"),
        helper.make_node("Mul", ["inv", "neg"], ["bias"], name="bias"),
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="s"),
        helper.make_node("Mul", ["s", "scale"], ["ss"], name="ss"),
        helper.make_node("Add", ["ss", "bias"], ["sb"], name="sb"),
        helper.make_node("Softmax", ["sb"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["ctx"], name="ctx"),
        helper.make_node("MatMul", ["ctx", "wo"], ["o"], name="o"),
        helper.make_node("Add", ["o", "x"], ["res"], name="res"),
        helper.make_node("LayerNormalization", ["res", "ln_s", "ln_b"], ["y"], name="ln", axis=-1),
        helper.make_node("Relu", ["y"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "wo"], ["out"], name="out_proj"),
    ]
    g = helper.make_graph(nodes, "attn", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", S, H]),
        helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 1, S])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", S, H]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", S, H])], inits)
    save(g, os.path.join(out, "attn.onnx"))
    # big weight
    w = f(10, 784)
    w[3, 7] = 1e6
    w[4, 9] = -7e4
    g = helper.make_graph([
        helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "big.weight"], ["logits"], name="fc", transB=1)],
        "big", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w, "big.weight")])
    save(g, os.path.join(out, "bigweight.onnx"))
    # activations beyond float16
    g = helper.make_graph([
        helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "w1"], ["h"], name="huge"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("MatMul", ["hr", "w2"], ["logits"], name="fc")],
        "overflow", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(np.full((784, 32), 1000.0, np.float32), "w1"),
         numpy_helper.from_array(f(32, 10) * 1e-4, "w2")])
    save(g, os.path.join(out, "overflow.onnx"))
    # an int64-input model
    g = helper.make_graph([helper.make_node("Cast", ["ids"], ["f"], name="c", to=TensorProto.FLOAT),
                           helper.make_node("Relu", ["f"], ["y"], name="r")], "ints",
                          [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 784])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 784])])
    save(g, os.path.join(out, "intinput.onnx"))
    np.save(os.path.join(out, "wrongshape.npy"), rng.random((8, 3, 32, 32), np.float32))
    a = rng.random((8, 1, 28, 28), np.float32)
    a[5, 0, 3, 4] = np.nan
    np.save(os.path.join(out, "nan.npy"), a)
    np.save(os.path.join(out, "empty.npy"), np.zeros((0, 1, 28, 28), np.float32))
    np.save(os.path.join(out, "good.npy"), rng.random((16, 1, 28, 28), np.float32))
    dwnet(out)
    tinybert(out)


def tinybert(out):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "datasets"))
    import make_zoo
    m, _ = make_zoo.make_bert_encoder(seed=3, layers=2, hidden=64, heads=4, ffn=128, vocab=200, max_pos=32)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, os.path.join(out, "tinybert.onnx"))
    rng = np.random.default_rng(11)
    ids = rng.integers(1, 200, (64, 16)).astype(np.int64)
    mask = np.ones((64, 16), np.int64)
    for i in range(64):
        n = rng.integers(4, 17)
        mask[i, n:] = 0
        ids[i, n:] = 0
    put = lambda name, a: np.save(os.path.join(out, name), a)  # noqa: E731
    put("ids.npy", ids)
    put("mask.npy", mask)
    put("mask32.npy", mask.astype(np.int32))
    put("idsf.npy", ids.astype(np.float32))
    half = ids.astype(np.float32)
    half[3, 2] = 0.5
    put("idshalf.npy", half)
    put("ids60.npy", ids[:60])


def dwnet(out):
    rng = np.random.default_rng(7)
    inits, nodes = [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                    numpy_helper.from_array(np.array(6.0, np.float32), "six")], []

    def conv(x, y, cin, cout, stride=1, group=1, k=3, relu6=True):
        w = (rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / (cin // group * k * k))).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32) * 0.1
        inits.extend([numpy_helper.from_array(w, y + ".w"), numpy_helper.from_array(b, y + ".b")])
        nodes.append(helper.make_node("Conv", [x, y + ".w", y + ".b"], [y + ".c" if relu6 else y], name=y, group=group,
                                      strides=[stride, stride], pads=[k // 2] * 4, kernel_shape=[k, k]))
        if relu6:
            nodes.append(helper.make_node("Clip", [y + ".c", "zero", "six"], [y], name=y + ".relu6"))
        return y

    h = conv("input", "stem", 1, 16)                               # 28x28
    h = conv(h, "dw1", 16, 16, 2, 16)                              # 14x14, depthwise stride 2
    h = conv(h, "pw1", 16, 24, k=1)
    d = conv(h, "dw2", 24, 24, 1, 24)                              # 14x14, depthwise stride 1
    d = conv(d, "pw2", 24, 24, k=1, relu6=False)
    nodes.append(helper.make_node("Add", [h, d], ["res"], name="res"))
    h = conv("res", "dw3", 24, 24, 2, 24)                          # 7x7 (rows packed two per vector)
    h = conv(h, "pw3", 24, 32, k=1)
    nodes.append(helper.make_node("GlobalAveragePool", [h], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flat"))
    inits.append(numpy_helper.from_array(rng.standard_normal((10, 32)).astype(np.float32) * 0.25, "fc.w"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w"], ["logits"], name="fc", transB=1))
    g = helper.make_graph(nodes, "dwnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    save(g, os.path.join(out, "dwnet.onnx"))


if __name__ == "__main__":
    main(sys.argv[1])
