#!/usr/bin/env python3
"""Check the models written by make_zoo.py.

usage: python datasets/check_zoo.py OUTDIR

For each of resnet50.onnx, mobilenetv2.onnx and bert_encoder.onnx in OUTDIR:
  - onnx.checker.check_model(full_check=True) (which runs strict shape inference),
  - opset 17 / IR version 8 and the symbolic batch dimension "N" on the inputs,
  - the parameter count, recounted here from the graph (not from the metadata
    the generator wrote): weights and biases of Conv/Gemm/MatMul, BN scale and
    bias, embeddings, LayerNormalization scale and bias; BN running mean/var
    apart.  They must equal torchvision's / BERT-base's exact counts,
  - an ONNX Runtime run on seeded random inputs with batch 1 and 4 (sequence
    length 128 for the encoder): outputs finite, not all zero, and with the
    declared shape, and a batch-4 run agreeing with the batch-1 run on its
    first sample.
Exits 0 when every check passes, 1 otherwise.
"""

import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

EXPECTED = {  # name: (parameters, BN running mean/var values)
    "resnet50": (25_557_032, 53_120),
    "mobilenetv2": (3_504_872, 34_112),
    "bert_encoder": (108_891_648, 0),
}

# Which inputs of which ops are trainable parameters when they are initializers.
PARAM_INPUTS = {
    "Conv": (1, 2),
    "Gemm": (1, 2),
    "BatchNormalization": (1, 2),
    "LayerNormalization": (1, 2),
    "MatMul": (0, 1),
    "Add": (0, 1),      # biases (scalar constants are excluded below)
    "Gather": (0,),     # embedding tables
}


def count_params(model):
    """Return (trainable parameters, BN running mean/var values) of a model."""
    inits = {t.name: t for t in model.graph.initializer}
    params, stats = set(), set()
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            stats.update(n for n in node.input[3:5] if n in inits)
        for i in PARAM_INPUTS.get(node.op_type, ()):
            if i < len(node.input) and node.input[i] in inits:
                t = inits[node.input[i]]
                if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 1:
                    params.add(t.name)
    size = lambda names: sum(int(np.prod(inits[n].dims)) for n in names)
    return size(params), size(stats)


def run(sess, feeds):
    (out,) = sess.run(None, feeds)
    return out


def image_feeds(rng, batch):
    return {"input": rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)}


def bert_feeds(rng, batch, seq=128):
    ids = rng.integers(0, 30522, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    if batch > 1:
        mask[1:, seq * 3 // 4:] = 0  # padding on all but the first sample
    return {"input_ids": ids, "attention_mask": mask}


def check(path, name):
    print(f"{path}:")
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    assert model.ir_version == 8, f"IR version {model.ir_version}, want 8"
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets == {"": 17}, f"opset imports {opsets}, want ai.onnx 17"
    for vi in model.graph.input:
        dim0 = vi.type.tensor_type.shape.dim[0]
        assert dim0.dim_param == "N", f"input {vi.name}: batch dim is not 'N'"

    params, stats = count_params(model)
    want = EXPECTED[name]
    print(f"  parameters {params:,} + BN stats {stats:,} (want {want[0]:,} + {want[1]:,})")
    assert (params, stats) == want, "parameter count mismatch"

    out_shape = [d.dim_value or d.dim_param for d in
                 model.graph.output[0].type.tensor_type.shape.dim]
    del model
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feeds_of = bert_feeds if name == "bert_encoder" else image_feeds

    results = {}
    for batch in (1, 4):
        feeds = feeds_of(np.random.default_rng(1234), batch)
        out = run(sess, feeds)
        assert np.isfinite(out).all(), f"batch {batch}: non-finite output"
        assert np.abs(out).max() > 0, f"batch {batch}: output is all zero"
        assert out.shape[0] == batch and list(out.shape[2:]) == out_shape[2:] \
            and out.shape[-1] == out_shape[-1], f"output shape {out.shape} vs {out_shape}"
        results[batch] = out
        print(f"  batch {batch}: output {list(out.shape)} mean {out.mean():+.4f} "
              f"std {out.std():.4f} max|x| {np.abs(out).max():.4f}")
    # Same seed => sample 0 is identical in both feeds; it must give the same result.
    err = np.abs(results[4][0] - results[1][0]).max()
    scale = np.abs(results[1][0]).max()
    assert err <= 1e-3 * max(scale, 1.0), f"batch-4 sample 0 differs by {err}"

    if name == "bert_encoder":  # the sequence length is symbolic too
        out = run(sess, bert_feeds(np.random.default_rng(7), 2, seq=7))
        assert out.shape == (2, 7, 768) and np.isfinite(out).all()
        print(f"  batch 2, seq 7: output {list(out.shape)} ok")
    print("  ok")


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        print("usage: python datasets/check_zoo.py OUTDIR", file=sys.stderr)
        return 2
    failed = 0
    for name in EXPECTED:
        path = os.path.join(argv[1], name + ".onnx")
        try:
            check(path, name)
        except Exception as e:  # report every model, then fail
            print(f"check_zoo: {path}: {type(e).__name__}: {e}", file=sys.stderr)
            failed += 1
    print(f"{len(EXPECTED) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
