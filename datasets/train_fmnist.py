#!/usr/bin/env python3
"""Train the bundled Fashion-MNIST models and write them as ONNX.

usage: python datasets/train_fmnist.py [--out DIR] [--threads N] [--only NAME ...]

Trains, with fixed seeds, on the 60,000 training images of Debian's
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, or $FMNIST_DIR):

  lenet300.onnx  LeNet-300-100: Flatten, Gemm 784-300-100-10 with Relu
  lenet5.onnx    LeNet-5: Conv 1->6 5x5 pad 2, Relu, MaxPool 2, Conv 6->16 5x5,
                 Relu, MaxPool 2, Flatten, Gemm 400-120-84-10 with Relu
  lenet5caffe.onnx  the LeNet-5 of Han, Mao & Dally's Deep Compression paper (Caffe's
                 "LeNet", 431K parameters): Conv 1->20 5x5, MaxPool 2, Conv 20->50
                 5x5, MaxPool 2, Flatten, Gemm 800-500, Relu, Gemm 500-10 (as in
                 Caffe's lenet_train_test.prototxt, no Relu after the convolutions)
  rescnn.onnx    a small residual CNN: Conv 3x3 stem (16 ch) + BN + Relu, three
                 basic residual blocks (16, 32/stride 2, 64/stride 2 channels,
                 Conv+BN+Relu, 1x1 Conv+BN projection shortcuts), GlobalAveragePool,
                 Flatten, Gemm 64-10

Every model takes "input" float [N,1,28,28] with pixels raw/255 (in [0,1], no
mean/std normalisation) and returns "logits" float [N,10].  The ONNX graphs are
built node by node with onnx.helper from the trained weights (opset 17, IR
version 8, batch dimension "N"); BatchNormalization stays a node of its own in
rescnn, with its running statistics.  After export each model is checked with
onnx.checker (full_check), compared against the PyTorch model, and evaluated
with ONNX Runtime on the 10,000 test images.

Needs torch, numpy, onnx and onnxruntime (a venv outside the repository:
  python3 -m venv /work/torchvenv
  /work/torchvenv/bin/pip install torch numpy onnx onnxruntime
  /work/torchvenv/bin/python datasets/train_fmnist.py).
Training runs on the CPU with a fixed thread count (default 2), seeds fixed
and deterministic algorithms on: a rerun with the same torch version and
thread count gives the same weights; other versions or thread counts may
differ in the last bits and so give slightly different models.
"""

import argparse
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_fmnist  # noqa: E402  (IDX parsing, ONNX Runtime evaluation)

OPSET = 17
IR_VERSION = 8


# ---------------------------------------------------------------------------
# Models (PyTorch, for training only)
# ---------------------------------------------------------------------------
class LeNet300(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)   # [N,6,14,14]
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)   # [N,16,5,5]
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5Caffe(nn.Module):
    """Caffe's LeNet (examples/mnist), the network the Deep Compression paper calls LeNet-5."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1, self.fc2 = nn.Linear(800, 500), nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)            # [N,20,12,12]
        x = F.max_pool2d(self.conv2(x), 2)            # [N,50,4,4]
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-Relu-conv3x3-BN (+ shortcut) -Relu."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResCNN(nn.Module):
    WIDTHS = (16, 32, 64)

    def __init__(self):
        super().__init__()
        w = self.WIDTHS
        self.conv1 = nn.Conv2d(1, w[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.layer1 = BasicBlock(w[0], w[0], 1)   # 28x28
        self.layer2 = BasicBlock(w[0], w[1], 2)   # 14x14
        self.layer3 = BasicBlock(w[1], w[2], 2)   # 7x7
        self.fc = nn.Linear(w[2], 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# name: (model class, epochs, optimiser settings, augment training images?)
RECIPES = {
    "lenet300": (LeNet300, 30, dict(lr=1e-3, weight_decay=1e-4), False),
    "lenet5": (LeNet5, 30, dict(lr=2e-3, weight_decay=1e-4), False),
    "lenet5caffe": (LeNet5Caffe, 20, dict(lr=1e-3, weight_decay=1e-4), False),
    "rescnn": (ResCNN, 20, dict(lr=3e-3, weight_decay=5e-4), True),
}


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------
def augment(x, gen):
    """Random horizontal flip and random 28x28 crop of the image padded by 2."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2))
    oy = torch.randint(0, 5, (n,), generator=gen)
    ox = torch.randint(0, 5, (n,), generator=gen)
    ar = torch.arange(28)
    rows = (oy[:, None] + ar)[:, :, None]          # [n,28,1]
    cols = (ox[:, None] + ar)[:, None, :]          # [n,1,28]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def train(name, x_train, y_train, x_test, y_test, seed=0, batch=128):
    cls, epochs, opt_args, aug = RECIPES[name]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = cls()
    opt = torch.optim.AdamW(model.parameters(), **opt_args)
    steps = epochs * ((len(x_train) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt_args["lr"],
                                                total_steps=steps, pct_start=0.15)
    for epoch in range(epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            xb, yb = x_train[idx], y_train[idx]
            if aug:
                xb = augment(xb, gen)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = torch_accuracy(model, x_test, y_test)
        print(f"  {name} epoch {epoch + 1:2d}/{epochs}: loss {total / len(x_train):.4f} "
              f"test {100 * acc:.2f}% ({time.time() - t0:.1f}s)", flush=True)
    model.eval()
    return model


@torch.no_grad()
def torch_logits(model, x, batch=1000):
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def torch_accuracy(model, x, y):
    return (torch_logits(model, x).argmax(1) == y).float().mean().item()


# ---------------------------------------------------------------------------
# ONNX export, node by node
# ---------------------------------------------------------------------------
class OnnxWriter:
    """Builds a graph from a trained model's state_dict.

    A node's output tensor has the node's name, except the last Gemm's, "logits".
    """

    def __init__(self, state):
        self.state = {k: v.detach().cpu().numpy() for k, v in state.items()}
        self.nodes, self.inits = [], []

    def w(self, key):
        self.inits.append(numpy_helper.from_array(
            np.asarray(self.state[key], np.float32, order="C"), key))
        return key

    def node(self, op, inputs, name, out=None, **attrs):
        out = out or name
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x, name, stride=1, pad=0):
        k = self.state[name + ".weight"].shape[-1]
        inputs = [x, self.w(name + ".weight")]
        if name + ".bias" in self.state:
            inputs.append(self.w(name + ".bias"))
        return self.node("Conv", inputs, name, kernel_shape=[k, k], strides=[stride] * 2,
                         pads=[pad] * 4, dilations=[1, 1], group=1)

    def bn(self, x, name):
        return self.node("BatchNormalization",
                         [x] + [self.w(f"{name}.{p}") for p in
                                ("weight", "bias", "running_mean", "running_var")],
                         name, epsilon=1e-5, momentum=0.9)

    def gemm(self, x, name, out=None):
        return self.node("Gemm", [x, self.w(name + ".weight"), self.w(name + ".bias")],
                         name, out=out, alpha=1.0, beta=1.0, transB=1)

    def relu(self, x, name):
        return self.node("Relu", [x], name)

    def maxpool(self, x, name):
        return self.node("MaxPool", [x], name, kernel_shape=[2, 2], strides=[2, 2])

    def model(self, graph_name, doc):
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
        graph = helper.make_graph(self.nodes, graph_name, [inp], [out], initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="mopt-datasets",
                              producer_version="1", doc_string=doc)
        helper.set_model_props(m, {
            "dataset": "Fashion-MNIST",
            "preprocessing": "float32 pixels = raw uint8 / 255.0, layout [N,1,28,28]",
            "labels": ",".join(eval_fmnist.CLASSES),
            "trained_with": f"datasets/train_fmnist.py, torch {torch.__version__}, "
                            f"{torch.get_num_threads()} CPU threads, seed 0",
        })
        return m


def export_lenet300(model):
    g = OnnxWriter(model.state_dict())
    x = g.node("Flatten", ["input"], "flatten", axis=1)
    x = g.relu(g.gemm(x, "fc1"), "relu1")
    x = g.relu(g.gemm(x, "fc2"), "relu2")
    g.gemm(x, "fc3", out="logits")
    return g.model("lenet300", "LeNet-300-100 trained on Fashion-MNIST")


def export_lenet5(model):
    g = OnnxWriter(model.state_dict())
    x = g.maxpool(g.relu(g.conv("input", "conv1", pad=2), "relu1"), "pool1")
    x = g.maxpool(g.relu(g.conv(x, "conv2"), "relu2"), "pool2")
    x = g.node("Flatten", [x], "flatten", axis=1)
    x = g.relu(g.gemm(x, "fc1"), "relu3")
    x = g.relu(g.gemm(x, "fc2"), "relu4")
    g.gemm(x, "fc3", out="logits")
    return g.model("lenet5", "LeNet-5 trained on Fashion-MNIST")


def export_lenet5caffe(model):
    g = OnnxWriter(model.state_dict())
    x = g.maxpool(g.conv("input", "conv1"), "pool1")
    x = g.maxpool(g.conv(x, "conv2"), "pool2")
    x = g.node("Flatten", [x], "flatten", axis=1)
    x = g.relu(g.gemm(x, "fc1"), "relu1")
    g.gemm(x, "fc2", out="logits")
    return g.model("lenet5caffe", "LeNet-5 of the Deep Compression paper (Caffe's LeNet, "
                                  "431K parameters) trained on Fashion-MNIST")


def export_rescnn(model):
    g = OnnxWriter(model.state_dict())
    x = g.relu(g.bn(g.conv("input", "conv1", pad=1), "bn1"), "relu")
    for name, block in (("layer1", model.layer1), ("layer2", model.layer2),
                        ("layer3", model.layer3)):
        stride = block.conv1.stride[0]
        y = g.conv(x, name + ".conv1", stride=stride, pad=1)
        y = g.relu(g.bn(y, name + ".bn1"), name + ".relu1")
        y = g.bn(g.conv(y, name + ".conv2", pad=1), name + ".bn2")
        shortcut = x
        if block.downsample is not None:
            shortcut = g.bn(g.conv(x, name + ".downsample.0", stride=stride),
                            name + ".downsample.1")
        x = g.relu(g.node("Add", [y, shortcut], name + ".add"), name + ".relu2")
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    g.gemm(x, "fc", out="logits")
    return g.model("rescnn", "small residual CNN with BatchNormalization, "
                             "trained on Fashion-MNIST")


EXPORTERS = {"lenet300": export_lenet300, "lenet5": export_lenet5,
             "lenet5caffe": export_lenet5caffe, "rescnn": export_rescnn}


def export_and_check(name, model, out_dir, x_test, y_test):
    path = os.path.join(out_dir, name + ".onnx")
    m = EXPORTERS[name](model)
    onnx.checker.check_model(m, full_check=True)
    tmp = path + ".tmp"
    onnx.save_model(m, tmp)
    os.replace(tmp, path)

    # The ONNX graph must compute what the PyTorch model computes.
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (ort_logits,) = sess.run(["logits"], {"input": x_test[:1000].numpy()})
    ref = torch_logits(model, x_test[:1000]).numpy()
    diff = float(np.abs(ort_logits - ref).max())
    assert diff < 1e-3, f"{name}: ONNX Runtime differs from PyTorch by {diff}"

    acc = eval_fmnist.accuracy(path, x_test.numpy(), y_test.numpy())
    size = os.path.getsize(path)
    assert size < 5 * 2**20, f"{name}: {size} bytes, over 5 MiB"
    print(f"{path}: ONNX Runtime test top-1 {100 * acc:.2f}%, "
          f"{eval_fmnist.param_count(path):,} parameters, {size:,} bytes, "
          f"max |ORT - torch| {diff:.2e}, sha256 {eval_fmnist.sha256(path)}", flush=True)
    return acc


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=eval_fmnist.HERE, help="output directory "
                    "(default: the datasets/ directory this script is in)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ap.add_argument("--only", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    args = ap.parse_args(argv[1:])

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU threads", flush=True)
    torch.use_deterministic_algorithms(True)
    x_train, y_train = map(torch.from_numpy, eval_fmnist.load_split("train"))
    x_test, y_test = map(torch.from_numpy, eval_fmnist.load_split("t10k"))
    os.makedirs(args.out, exist_ok=True)
    for name in args.only:
        t0 = time.time()
        print(f"training {name} ({sum(p.numel() for p in RECIPES[name][0]().parameters()):,} "
              f"trainable parameters)", flush=True)
        model = train(name, x_train, y_train, x_test, y_test)
        export_and_check(name, model, args.out, x_test, y_test)
        print(f"  {name} done in {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
