#!/usr/bin/env python3
"""Write mopt's synthetic model zoo: ResNet-50, MobileNetV2 and a BERT-base encoder.

usage: python datasets/make_zoo.py OUTDIR

Each model is built node by node with onnx.helper, with weights drawn from a
numpy generator with a fixed seed, so two runs write byte-identical files.
Nothing is downloaded and no deep-learning framework is needed: only onnx and
numpy.  The models are *untrained*: they exist to exercise mopt's passes and
executor on real architectures at real sizes (structure, shapes and parameter
counts match torchvision / BERT-base exactly), not to classify anything.

  resnet50.onnx      torchvision resnet50 (v1.5: stride on the 3x3 conv),
                     input "input" float [N,3,224,224], output "output" [N,1000]
  mobilenetv2.onnx   torchvision mobilenet_v2 (width 1.0), same input/output
  bert_encoder.onnx  BERT-base encoder (12 layers, hidden 768, 12 heads,
                     FFN 3072, vocab 30522, 512 positions), inputs "input_ids"
                     and "attention_mask" int64 [N,S], output
                     "last_hidden_state" float [N,S,768]

All three use opset 17 and IR version 8, with a symbolic batch dimension "N"
(and "S" for the sequence length of the encoder).  BatchNormalization stays a
node of its own (it is not folded into the convolution), so that mopt's
folding passes have something to do.

Parameter counts (printed by this script, asserted by check_zoo.py) count the
Conv/Gemm/MatMul weights and biases, BN scale and bias, embeddings and
LayerNormalization scale and bias; BN running mean/var are reported apart.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8

# Exact counts of the reference implementations (torchvision.models.resnet50,
# torchvision.models.mobilenet_v2, transformers BertModel without its pooler).
EXPECTED = {
    "resnet50": (25_557_032, 53_120),
    "mobilenetv2": (3_504_872, 34_112),
    "bert_encoder": (108_891_648, 0),
}


class GraphBuilder:
    """Accumulates nodes and initializers; every node gets a readable unique name.

    A node's (single) output tensor has the same name as the node, which keeps
    the graphs easy to read in Netron and in mopt's error messages; `out`
    names it otherwise (the graph outputs), so no Identity node is needed.
    """

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.initializers = []
        self.params = 0      # trainable parameters
        self.bn_stats = 0    # BN running mean + running var values

    # -- initializers -----------------------------------------------------
    def init(self, name, array, trainable=True, stat=False):
        array = np.asarray(array, order="C")  # (ascontiguousarray would make scalars 1-D)
        self.initializers.append(numpy_helper.from_array(array, name))
        if stat:
            self.bn_stats += array.size
        elif trainable:
            self.params += array.size
        return name

    def normal(self, shape, std):
        return (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std))

    def const(self, name, array):
        """A non-trainable constant initializer (shapes, axes, clip bounds ...)."""
        return self.init(name, np.asarray(array), trainable=False)

    # -- nodes ------------------------------------------------------------
    def node(self, op_type, inputs, name, out=None, **attrs):
        out = out or name
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    # -- CNN building blocks ---------------------------------------------
    def conv(self, x, name, cin, cout, k, stride=1, pad=0, groups=1,
             bias=False, gain=1.0):
        """Conv with He (Kaiming normal, fan_in) initialisation times `gain`."""
        fan_in = cin // groups * k * k
        w = self.normal((cout, cin // groups, k, k), gain * np.sqrt(2.0 / fan_in))
        inputs = [x, self.init(name + ".weight", w)]
        if bias:
            inputs.append(self.init(name + ".bias", np.zeros(cout, np.float32)))
        return self.node("Conv", inputs, name, kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4,
                         group=groups, dilations=[1, 1])

    def bn(self, x, name, c):
        """BatchNormalization with gamma near 1, small beta, mean ~0, var ~1."""
        r = self.rng
        gamma = (1.0 + 0.1 * r.standard_normal(c)).astype(np.float32)
        beta = (0.05 * r.standard_normal(c)).astype(np.float32)
        mean = (0.05 * r.standard_normal(c)).astype(np.float32)
        var = r.uniform(0.8, 1.25, c).astype(np.float32)
        return self.node("BatchNormalization", [
            x,
            self.init(name + ".weight", gamma),
            self.init(name + ".bias", beta),
            self.init(name + ".running_mean", mean, stat=True),
            self.init(name + ".running_var", var, stat=True),
        ], name, epsilon=1e-5, momentum=0.9)

    def gemm(self, x, name, cin, cout, out=None):
        """torch.nn.Linear as Gemm(x, W^T) + b, W stored [cout, cin]."""
        bound = 1.0 / np.sqrt(cin)
        w = self.rng.uniform(-bound, bound, (cout, cin)).astype(np.float32)
        b = self.rng.uniform(-bound, bound, cout).astype(np.float32)
        return self.node("Gemm", [x, self.init(name + ".weight", w),
                                  self.init(name + ".bias", b)],
                         name, out=out, alpha=1.0, beta=1.0, transB=1)

    # -- model ------------------------------------------------------------
    def model(self, name, inputs, outputs, doc):
        graph = helper.make_graph(self.nodes, name, inputs, outputs,
                                  initializer=self.initializers)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="mopt-datasets",
                              producer_version="1", doc_string=doc)
        helper.set_model_props(m, {"mopt.params": str(self.params),
                                   "mopt.bn_stats": str(self.bn_stats)})
        return m


def image_io():
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1000])
    return inp, out


# ---------------------------------------------------------------------------
# ResNet-50 (torchvision v1.5)
# ---------------------------------------------------------------------------
def make_resnet50(seed=50):
    g = GraphBuilder(seed)
    x = g.conv("input", "conv1", 3, 64, 7, stride=2, pad=3)
    x = g.bn(x, "bn1", 64)
    x = g.node("Relu", [x], "relu")
    x = g.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1])

    inplanes = 64
    for li, (planes, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
        for bi in range(blocks):
            s = stride if bi == 0 else 1
            p = f"layer{li}.{bi}."
            width, cout = planes, planes * 4
            identity = x
            y = g.conv(x, p + "conv1", inplanes, width, 1)
            y = g.node("Relu", [g.bn(y, p + "bn1", width)], p + "relu1")
            y = g.conv(y, p + "conv2", width, width, 3, stride=s, pad=1)  # v1.5
            y = g.node("Relu", [g.bn(y, p + "bn2", width)], p + "relu2")
            # The last conv of the residual branch is scaled down (Fixup-like)
            # so that 16 residual additions do not blow activations up.
            y = g.conv(y, p + "conv3", width, cout, 1, gain=0.25)
            y = g.bn(y, p + "bn3", cout)
            if bi == 0:  # projection shortcut: 1x1 conv (strided) + BN
                identity = g.conv(x, p + "downsample.0", inplanes, cout, 1, stride=s)
                identity = g.bn(identity, p + "downsample.1", cout)
            y = g.node("Add", [y, identity], p + "add")
            x = g.node("Relu", [y], p + "relu3")
            inplanes = cout

    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    g.gemm(x, "fc", 2048, 1000, out="output")
    inp, out = image_io()
    return g.model("resnet50", [inp], [out],
                   "torchvision ResNet-50 v1.5 structure, seeded random weights"), g


# ---------------------------------------------------------------------------
# MobileNetV2 (torchvision, width_mult 1.0)
# ---------------------------------------------------------------------------
def make_mobilenetv2(seed=2):
    g = GraphBuilder(seed)
    lo = g.const("relu6.min", np.array(0.0, np.float32))
    hi = g.const("relu6.max", np.array(6.0, np.float32))

    def conv_bn(x, name, cin, cout, k, stride=1, groups=1, relu6=True, gain=1.0):
        y = g.conv(x, name + ".0", cin, cout, k, stride=stride, pad=(k - 1) // 2,
                   groups=groups, gain=gain)
        y = g.bn(y, name + ".1", cout)
        if relu6:
            y = g.node("Clip", [y, lo, hi], name + ".2")
        return y

    x = conv_bn("input", "features.0", 3, 32, 3, stride=2)
    cin, idx = 32, 1
    # (expand ratio t, output channels c, repeats n, first stride s)
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            p = f"features.{idx}.conv"
            y, j = x, 0
            if t != 1:
                y = conv_bn(y, f"{p}.{j}", cin, hidden, 1)
                j += 1
            y = conv_bn(y, f"{p}.{j}", hidden, hidden, 3, stride=stride, groups=hidden)
            # linear bottleneck: 1x1 projection + BN, no activation
            residual = stride == 1 and cin == c
            y = g.conv(y, f"{p}.{j + 1}", hidden, c, 1, gain=0.5 if residual else 1.0)
            y = g.bn(y, f"{p}.{j + 2}", c)
            if residual:
                y = g.node("Add", [x, y], f"features.{idx}.add")
            x, cin, idx = y, c, idx + 1

    x = conv_bn(x, f"features.{idx}", cin, 1280, 1)
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    # classifier.0 is Dropout, a no-op at inference
    g.gemm(x, "classifier.1", 1280, 1000, out="output")
    inp, out = image_io()
    return g.model("mobilenetv2", [inp], [out],
                   "torchvision MobileNetV2 structure, seeded random weights"), g


# ---------------------------------------------------------------------------
# BERT-base encoder
# ---------------------------------------------------------------------------
def make_bert_encoder(seed=768, layers=12, hidden=768, heads=12, ffn=3072,
                      vocab=30522, max_pos=512):
    g = GraphBuilder(seed)
    head_dim = hidden // heads
    std = 0.02  # BERT's initializer_range

    def linear(x, name, cin, cout):
        w = g.init(name + ".weight", g.normal((cin, cout), std))  # stored [in, out]
        b = g.init(name + ".bias", g.normal((cout,), std))
        y = g.node("MatMul", [x, w], name + ".matmul")
        return g.node("Add", [y, b], name + ".add")

    def layer_norm(x, name, out=None):
        gamma = (1.0 + 0.05 * g.rng.standard_normal(hidden)).astype(np.float32)
        beta = (0.02 * g.rng.standard_normal(hidden)).astype(np.float32)
        return g.node("LayerNormalization",
                      [x, g.init(name + ".weight", gamma), g.init(name + ".bias", beta)],
                      name, out=out, axis=-1, epsilon=1e-12)

    # Constants shared by all layers.
    split_heads = g.const("shape.split_heads", np.array([0, 0, heads, head_dim], np.int64))
    merge_heads = g.const("shape.merge_heads", np.array([0, 0, hidden], np.int64))
    scale = g.const("attention.scale", np.array(np.sqrt(head_dim), np.float32))
    one = g.const("const.one", np.array(1.0, np.float32))
    half = g.const("const.half", np.array(0.5, np.float32))
    sqrt2 = g.const("const.sqrt2", np.array(np.sqrt(2.0), np.float32))
    neg_big = g.const("const.mask_value", np.array(-10000.0, np.float32))

    # -- embeddings: word + position + token type (all type 0) ----------
    word = g.init("embeddings.word_embeddings.weight", g.normal((vocab, hidden), std))
    pos = g.init("embeddings.position_embeddings.weight", g.normal((max_pos, hidden), std))
    ttype = g.init("embeddings.token_type_embeddings.weight", g.normal((2, hidden), std))
    pos_ids = g.const("embeddings.position_ids", np.arange(max_pos, dtype=np.int64))
    zero_1d = g.const("const.zero_1d", np.array([0], np.int64))
    zero_0d = g.const("const.zero_0d", np.array(0, np.int64))

    e = g.node("Gather", [word, "input_ids"], "embeddings.word", axis=0)       # [N,S,H]
    seq = g.node("Shape", ["input_ids"], "embeddings.seq_len", start=1, end=2)  # [S]
    ids = g.node("Slice", [pos_ids, zero_1d, seq, zero_1d], "embeddings.pos_ids")  # [S]
    p = g.node("Gather", [pos, ids], "embeddings.position", axis=0)            # [S,H]
    t = g.node("Gather", [ttype, zero_0d], "embeddings.token_type", axis=0)    # [H]
    e = g.node("Add", [e, p], "embeddings.add_position")
    e = g.node("Add", [e, t], "embeddings.add_token_type")
    x = layer_norm(e, "embeddings.LayerNorm")

    # -- additive attention mask: (1 - mask) * -10000, shape [N,1,1,S] --
    m = g.node("Cast", ["attention_mask"], "mask.cast", to=TensorProto.FLOAT)
    m = g.node("Sub", [one, m], "mask.invert")
    m = g.node("Mul", [m, neg_big], "mask.scale")
    mask = g.node("Unsqueeze", [m, g.const("mask.axes", np.array([1, 2], np.int64))],
                  "mask.unsqueeze")

    for li in range(layers):
        p = f"encoder.layer.{li}."
        a = p + "attention."

        def heads_of(name, perm):
            y = linear(x, a + "self." + name, hidden, hidden)
            y = g.node("Reshape", [y, split_heads], a + "self." + name + ".reshape")
            return g.node("Transpose", [y], a + "self." + name + ".transpose", perm=perm)

        q = heads_of("query", [0, 2, 1, 3])   # [N,h,S,d]
        k = heads_of("key", [0, 2, 3, 1])     # [N,h,d,S]
        v = heads_of("value", [0, 2, 1, 3])   # [N,h,S,d]
        s = g.node("MatMul", [q, k], a + "self.scores")
        s = g.node("Div", [s, scale], a + "self.scale")
        s = g.node("Add", [s, mask], a + "self.mask")
        s = g.node("Softmax", [s], a + "self.softmax", axis=-1)
        c = g.node("MatMul", [s, v], a + "self.context")
        c = g.node("Transpose", [c], a + "self.context.transpose", perm=[0, 2, 1, 3])
        c = g.node("Reshape", [c, merge_heads], a + "self.context.reshape")
        y = linear(c, a + "output.dense", hidden, hidden)
        y = g.node("Add", [y, x], a + "output.residual")
        x = layer_norm(y, a + "output.LayerNorm")

        # FFN with exact GELU: x * 0.5 * (1 + erf(x / sqrt(2)))
        h = linear(x, p + "intermediate.dense", hidden, ffn)
        gd = g.node("Div", [h, sqrt2], p + "intermediate.gelu.div")
        ge = g.node("Erf", [gd], p + "intermediate.gelu.erf")
        ga = g.node("Add", [ge, one], p + "intermediate.gelu.add")
        gm = g.node("Mul", [h, ga], p + "intermediate.gelu.mul")
        h = g.node("Mul", [gm, half], p + "intermediate.gelu")
        y = linear(h, p + "output.dense", ffn, hidden)
        y = g.node("Add", [y, x], p + "output.residual")
        x = layer_norm(y, p + "output.LayerNorm",
                       out="last_hidden_state" if li == layers - 1 else None)

    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", "S"])
              for n in ("input_ids", "attention_mask")]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                           ["N", "S", hidden])
    return g.model("bert_encoder", inputs, [output],
                   "BERT-base encoder structure (no pooler), seeded random weights"), g


BUILDERS = {
    "resnet50": make_resnet50,
    "mobilenetv2": make_mobilenetv2,
    "bert_encoder": make_bert_encoder,
}


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    for name, build in BUILDERS.items():
        model, g = build()
        want_params, want_stats = EXPECTED[name]
        assert (g.params, g.bn_stats) == (want_params, want_stats), \
            f"{name}: built {g.params} params + {g.bn_stats} BN stats, " \
            f"expected {want_params} + {want_stats}"
        path = os.path.join(outdir, name + ".onnx")
        tmp = path + ".tmp"
        onnx.save_model(model, tmp)
        os.replace(tmp, path)  # never leave a half-written model behind
        print(f"{path}: {g.params:,} parameters + {g.bn_stats:,} BN running "
              f"mean/var values, {len(model.graph.node)} nodes, "
              f"{os.path.getsize(path) / 2**20:.1f} MiB")
        del model, g
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
