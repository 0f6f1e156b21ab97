#!/usr/bin/env python3
"""tests/fuzz/make_seeds.py — writes seed corpora for the fuzz targets into OUTDIR/TARGET/.

Seeds are small valid inputs (and a few near-misses) from which libFuzzer mutates: ONNX backend
test models under 8 KB (the subgraph and sequence models included), their test_data_set .pb
tensors, .npy/.csv/IDX(.gz) files of each dtype, calibration tables, external-data descriptions.
Deterministic (fixed seed). Needs numpy; onnx only for nothing (the models are copied).

usage: make_seeds.py OUTDIR
"""
import glob
import gzip
import io
import os
import shutil
import struct
import sys

import numpy as np

TESTDATA = "/usr/share/libonnx-testdata/data"
rng = np.random.default_rng(7)


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def npy(a):
    b = io.BytesIO()
    np.save(b, a, allow_pickle=False)
    return b.getvalue()


IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx(a):
    code = IDX_CODES[a.dtype.type]
    head = bytes([0, 0, code, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def main():
    out = sys.argv[1]
    # onnx_load: small real models, chosen to cover subgraphs, sequences, many dtypes.
    models = sorted(glob.glob(TESTDATA + "/*/*/model.onnx"))
    small = [m for m in models if os.path.getsize(m) <= 8192]
    keep = [m for m in small if any(k in m for k in ("_if", "loop", "scan", "sequence", "optional", "cast", "quantize",
                                                       "function", "sparse", "string", "bfloat16", "float8", "int4"))]
    keep += small[:: max(1, len(small) // 80)]
    for m in sorted(set(keep)):
        put(out, "onnx_load", m.split("/")[-2] + ".onnx", open(m, "rb").read())
    # exec_run: the node tests (one op each, small inputs), every fourth.
    for m in sorted(glob.glob(TESTDATA + "/node/*/model.onnx"))[::4]:
        if os.path.getsize(m) <= 16384:
            put(out, "exec_run", m.split("/")[-2] + ".onnx", open(m, "rb").read())
    # tensor_pb: the backend tests' own TensorProto files.
    pbs = [p for p in sorted(glob.glob(TESTDATA + "/node/*/test_data_set_0/*.pb")) if os.path.getsize(p) <= 4096]
    for p in pbs[:: max(1, len(pbs) // 60)]:
        put(out, "tensor_pb", p.split("/")[-3] + "-" + os.path.basename(p), open(p, "rb").read())
    # tensor_npy and tstream (first byte 0 = NPY): every dtype, ranks 0..4, both byte orders.
    arrays = [np.float32(1.5), np.arange(6, dtype=np.int64).reshape(2, 3), rng.standard_normal((3, 2, 2)).astype(np.float16),
              np.array([True, False]), rng.integers(0, 255, (4, 1, 2, 2), dtype=np.uint8),
              rng.standard_normal(5).astype(">f8"), np.zeros((0, 3), np.int32), np.arange(4, dtype=np.int8),
              rng.standard_normal((2, 2)).astype(np.float32).T]  # Fortran order
    for i, a in enumerate(arrays):
        put(out, "tensor_npy", "a%d.npy" % i, npy(a))
        if a.ndim >= 1:
            put(out, "tstream", "npy%d" % i, b"\x00" + npy(a))
    # tensor_idx and tstream (1 = IDX): each IDX type, plain and gzip.
    for i, dt in enumerate(IDX_CODES):
        a = (rng.standard_normal((3, 2, 2)) * 50).astype(dt)
        put(out, "tensor_idx", "i%d.idx" % i, idx(a))
        put(out, "tensor_idx", "i%d.idx.gz" % i, gzip.compress(idx(a), mtime=0))
        put(out, "tstream", "idx%d" % i, b"\x01" + idx(a))
        put(out, "tstream", "idxgz%d" % i, b"\x01" + gzip.compress(idx(a), mtime=0))
    # tensor_csv and tstream (2 = CSV).
    csvs = [b"1,2,3\n4,5,6\n", b"x,y\n0.5,-1e3\n2,nan\n", b"7\n", b"1.0, 2.0 ,3\r\n4,5,6\r\n", b"\"1\",\"2\"\n", b"-inf,inf\n"]
    for i, c in enumerate(csvs):
        put(out, "tensor_csv", "c%d.csv" % i, c)
        put(out, "tstream", "csv%d" % i, b"\x02" + c)
    # calib_table.
    put(out, "calib_table", "t0.csv", b"tensor,method,min,max,scale,zero_point\n"
                                      b"input,minmax,0,1,0.00392157,0\nconv1,percentile,-2.5,3.25,0.02254902,111\n")
    put(out, "calib_table", "t1.csv", b"tensor,method,min,max,scale,zero_point\n\"a,b\",entropy,-1,1,0.0078740157,0\n")
    put(out, "calib_table", "t2.csv", b"tensor,method,min,max,scale,zero_point\n")
    # external_data: location, offset, length, dtype, dims.
    ext = ["w.bin\n0\n16\n1\n4", "w.bin\n8\n\n2\n2,4", "in.lnk", "sub/x.bin\n0\n16\n2\n16", "dir.lnk/x.bin\n0\n16\n2\n16",
           "out.lnk", "../outside.bin", "sub/up.lnk", "/etc/passwd", "abs.lnk", "fifo", "dangling.lnk",
           "w.bin\n60\n16\n1\n4", "w.bin\n18446744073709551615\n16\n1\n4", "empty.bin\n0\n0\n1\n0", "./w.bin\n\n\n3\n64",
           "sub//x.bin\n0\n4\n1\n1", "w.bin\n-1\n16", "w.bin\n0\n16\n22\n32"]
    for i, e in enumerate(ext):
        put(out, "external_data", "e%d" % i, e.encode())
    # huffman: symbol streams of skewed distributions; decode gets a few non-payloads.
    for i, nsym in enumerate((2, 16, 32, 256)):
        sym = np.minimum(rng.geometric(0.3, 300) - 1, nsym - 1).astype(np.uint8)
        put(out, "huffman_round_trip", "s%d" % i, bytes([nsym % 256]) + sym.tobytes())
    put(out, "huffman_decode", "zero", bytes(16))
    put(out, "huffman_decode", "ones", b"\xff" * 16)


if __name__ == "__main__":
    main()
