#!/usr/bin/env python3
"""tests/cli/info_check.py — compares `mopt info --json MODEL` with python onnx's own reading of
MODEL: node count and op histogram (top-level graph), parameters (initializer elements, with the
running mean and variance of BatchNormalization counted apart), bytes per dtype, input and output
names (as strings), and one row per initializer. Prints one line per mismatch; exit 1 on any.

usage: info_check.py MOPT MODEL...
"""
import collections
import json
import subprocess
import sys

import numpy as np
import onnx
from onnx import helper

SHORT = {"float": "float32", "double": "float64"}


def expected(path):
    m = onnx.load(path, load_external_data=False)
    g = m.graph
    ops = collections.Counter((n.domain + "." if n.domain else "") + n.op_type for n in g.node)
    bn = set()
    for n in g.node:
        if n.op_type == "BatchNormalization" and len(n.input) >= 5:
            bn.update(n.input[3:5])
    params = bnstats = 0
    per = collections.Counter()
    for t in g.initializer:
        n = int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1
        if t.name in bn:
            bnstats += n
        else:
            params += n
        name = helper.tensor_dtype_to_np_dtype(t.data_type).name if t.data_type != onnx.TensorProto.STRING else "string"
        per[SHORT.get(name, name)] += n
    for s in g.sparse_initializer:
        n = int(np.prod(s.values.dims, dtype=np.int64))
        params += n
    init_names = {t.name for t in g.initializer}
    return {
        "nodes": len(g.node), "ops": dict(ops), "parameters": params, "batchnorm_statistics": bnstats,
        "dtypes": {k: v for k, v in per.items() if v},
        "inputs": [i.name for i in g.input if i.name not in init_names],
        "outputs": [o.name for o in g.output],
        "initializers": [t.name for t in g.initializer],
        "ir_version": m.ir_version,
    }


def main():
    mopt, models = sys.argv[1], sys.argv[2:]
    bad = 0
    for path in models:
        p = subprocess.run([mopt, "info", "--json", path], capture_output=True, text=True)
        try:
            if p.returncode != 0:
                raise AssertionError("exit %d: %s" % (p.returncode, p.stderr.strip()))
            j = json.loads(p.stdout)
            want = expected(path)
            got = {
                "nodes": j["nodes"], "ops": {o["op_type"]: o["count"] for o in j["ops"]},
                "parameters": j["parameters"], "batchnorm_statistics": j["batchnorm_statistics"],
                "dtypes": {d["dtype"]: d["elements"] for d in j["dtypes"]},
                # str(): names that look like numbers ("0") are a separate test in test_info.sh
                "inputs": [str(i["name"]) for i in j["inputs"]],
                "outputs": [str(o["name"]) for o in j["outputs"]],
                "initializers": [str(t["name"]) for t in j["initializers"]],
                "ir_version": j["ir_version"],
            }
            for k in want:
                if got[k] != want[k]:
                    raise AssertionError("%s: mopt says %r, onnx says %r" % (k, got[k], want[k]))
        except (AssertionError, ValueError, KeyError) as e:
            bad += 1
            print("FAIL info %s: %s" % (path, e))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
