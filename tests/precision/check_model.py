#!/usr/bin/env python3
"""Checks models mopt wrote: onnx.checker (full_check) passes and ONNX Runtime (CPU) runs them.

usage: check_model.py [--casts] MODEL...

Inputs are seeded random data of the declared shape (symbolic dims = 2; int64 inputs get ones).
With --casts, also checks the Cast placement rules of `mopt amp`: no Cast reads a Cast's output,
no Cast sits between two nodes that both work in the half type, and no value is cast twice to the
same type.  Prints one line per model; exit status 1 on the first failure.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort

HALF = {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def feeds(m):
    rng = np.random.default_rng(0)
    inits = {i.name for i in m.graph.initializer}
    out = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type
        shape = [d.dim_value if d.dim_value > 0 else 2 for d in t.shape.dim]
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        out[vi.name] = (np.ones(shape, dt) if np.issubdtype(dt, np.integer)
                        else rng.random(shape).astype(dt))
    return out


def check_casts(m):
    prod = {o: n for n in m.graph.node for o in n.output}
    seen = set()
    for n in m.graph.node:
        if n.op_type != "Cast":
            continue
        src = n.input[0]
        p = prod.get(src)
        if p is not None and p.op_type == "Cast":
            raise AssertionError(f"Cast '{n.name}' reads the output of Cast '{p.name}'")
        to = next(a.i for a in n.attribute if a.name == "to")
        if (src, to) in seen:
            raise AssertionError(f"value '{src}' is cast to {to} twice")
        seen.add((src, to))
        if to in HALF and p is not None:
            # the producer works in float32 here; a half producer would make this cast useless
            vi = {v.name: v for v in list(m.graph.value_info) + list(m.graph.output)}
            if src in vi and vi[src].type.tensor_type.elem_type in HALF:
                raise AssertionError(f"Cast '{n.name}' converts a value that is already half")


def main(argv):
    casts = "--casts" in argv
    for path in [a for a in argv[1:] if a != "--casts"]:
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        if casts:
            check_casts(m)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        outs = s.run(None, feeds(m))
        if not all(np.all(np.isfinite(o.astype(np.float32))) for o in outs if o.dtype.kind == "f"):
            raise AssertionError(f"{path}: non-finite outputs")
        print(f"{path}: checker ok, onnxruntime ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
