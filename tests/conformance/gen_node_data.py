#!/usr/bin/env python3
"""Writes the ONNX backend *node* tests of the installed onnx package to OUT/node/.

PyPI's onnx wheel ships the test-case generators (onnx/backend/test/case/node/*.py) but not
the generated node data, and `backend-test-tools generate-data` only writes the model tests.
This writes the same layout as ONNX's own data directory (and Debian's libonnx-testdata):
OUT/node/test_x/model.onnx and test_data_set_N/{input,output}_K.pb. Deterministic: the
generators seed numpy themselves.

usage: gen_node_data.py OUT
"""
import os
import shutil
import sys
import warnings

import numpy as np
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import node


def write(out: str) -> int:
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    cases = node.collect_testcases(None)
    root = os.path.join(out, "node")
    if os.path.exists(root):
        shutil.rmtree(root)
    n = 0
    for case in cases:
        d = os.path.join(root, case.name)
        os.makedirs(d)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets or []):
            sd = os.path.join(d, f"test_data_set_{i}")
            os.makedirs(sd)
            for kind, vals, decl in (("input", inputs, case.model.graph.input),
                                     ("output", outputs, case.model.graph.output)):
                for j, v in enumerate(vals):
                    t = decl[j].type if j < len(decl) else None
                    if t is not None and not t.HasField("tensor_type"):
                        continue  # sequences, maps, optionals: the executor has no such values
                    if not isinstance(v, TensorProto):
                        v = numpy_helper.from_array(np.asarray(v), decl[j].name if j < len(decl) else "")
                    with open(os.path.join(sd, f"{kind}_{j}.pb"), "wb") as f:
                        f.write(v.SerializeToString())
        n += 1
    return n


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"gen_node_data: {write(sys.argv[1])} node tests in {sys.argv[1]}/node", file=sys.stderr)
