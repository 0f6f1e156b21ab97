#!/usr/bin/env python3
"""Fashion-MNIST helpers: read the IDX files, evaluate ONNX models with ONNX Runtime.

usage: python datasets/eval_fmnist.py [MODEL.onnx ...]

With no arguments it evaluates the bundled models (lenet300.onnx, lenet5.onnx,
rescnn.onnx next to this script) and prints, for each, the top-1 accuracy on
the 10,000 test images, its parameter count and its sha256 as one Markdown
table row.  Needs numpy, onnx and onnxruntime only (the project's .venv).

Preprocessing, the same for every bundled model: pixel = raw_uint8 / 255.0 as
float32, layout [N,1,28,28]; no mean/std normalisation.

The data are Debian's dataset-fashion-mnist files; FMNIST_DIR overrides
where they are looked for.
"""

import gzip
import hashlib
import os
import sys

import numpy as np

FMNIST_DIR = os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist")
HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = ("lenet300", "lenet5", "lenet5caffe", "rescnn")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# IDX type codes (http://yann.lecun.com/exdb/mnist/ "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path):
    """Parse an IDX file (optionally gzip-compressed) into a numpy array.

    Header: two zero bytes, a type code byte, a byte with the number of
    dimensions, then one big-endian uint32 per dimension; the data follow,
    big-endian, row-major.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(dims)) if dims else 1
    offset = 4 + 4 * ndim
    if len(data) != offset + count * dtype.itemsize:
        raise ValueError(f"{path}: size does not match header dims {dims}")
    return np.frombuffer(data, dtype, count=count, offset=offset).reshape(dims)


def load_split(split, data_dir=FMNIST_DIR):
    """Return (images float32 [N,1,28,28] in [0,1], labels int64 [N]) for 'train' or 't10k'."""
    images = load_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    labels = load_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    assert images.shape[0] == labels.shape[0] and images.shape[1:] == (28, 28)
    x = (images.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)
    return x, labels.astype(np.int64)


def accuracy(path, x, y, batch=1000):
    """Top-1 accuracy of the ONNX model at `path` measured with ONNX Runtime."""
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), batch):
        (logits,) = sess.run(["logits"], {name: x[i:i + batch]})
        correct += int((logits.argmax(axis=1) == y[i:i + batch]).sum())
    return correct / len(x)


def param_count(path):
    """Number of float values in the model's initializers (BN running stats included)."""
    import onnx
    m = onnx.load(path)
    return sum(int(np.prod(t.dims)) for t in m.graph.initializer
               if t.data_type == onnx.TensorProto.FLOAT)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv):
    paths = argv[1:] or [os.path.join(HERE, n + ".onnx") for n in BUNDLED]
    if any(p.startswith("-") for p in paths):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    x, y = load_split("t10k")
    print("| model | test top-1 | parameters | sha256 |")
    print("| --- | --- | --- | --- |")
    for p in paths:
        print(f"| {os.path.basename(p)} | {100 * accuracy(p, x, y):.2f}% "
              f"| {param_count(p):,} | `{sha256(p)}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
