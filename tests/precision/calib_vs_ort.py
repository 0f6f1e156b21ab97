#!/usr/bin/env python3
"""Compare a `mopt calib --method minmax` table with ONNX Runtime's MinMax calibrator.

usage: calib_vs_ort.py MODEL TABLE.csv --batch B NAME=FILE.npy [NAME=FILE.npy ...]

ONNX Runtime's calibrator (onnxruntime.quantization.calibrate, CalibrationMethod.MinMax) runs
MODEL over the same samples in batches of B, one dict of arrays per batch, for every input
named on the command line. Each of its tensors must be in the table with min = min(ORT's
min, 0) and max = max(ORT's max, 0) (mopt's ranges hold zero) to 1e-5 relative; the two must
name the same tensors. Exit 1 otherwise, printing the differences.
"""
import argparse
import csv
import sys
import tempfile

import numpy as np
from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("table")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("feeds", nargs="+")
    a = ap.parse_args()
    data = {}
    for f in a.feeds:
        name, path = f.split("=", 1)
        data[name] = np.load(path)
    n = len(next(iter(data.values())))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= n:
                return None
            b = slice(self.i, self.i + a.batch)
            self.i += a.batch
            return {k: v[b] for k, v in data.items()}

    with tempfile.TemporaryDirectory() as d:
        c = create_calibrator(a.model, None, augmented_model_path=d + "/aug.onnx",
                              calibrate_method=CalibrationMethod.MinMax)
        c.collect_data(Reader())
        ort = {k: (float(np.min(v.range_value[0])), float(np.max(v.range_value[1])))
               for k, v in c.compute_data().data.items()}
    mine = {r["tensor"]: (float(r["min"]), float(r["max"])) for r in csv.DictReader(open(a.table))}
    bad = 0
    for name in sorted(set(ort) | set(mine)):
        if name not in ort or name not in mine:
            print(f"{name}: only in {'ORT' if name in ort else 'mopt'}'s table")
            bad += 1
            continue
        lo, hi = ort[name]
        mlo, mhi = mine[name]
        tol = 1e-5 * max(1.0, abs(lo), abs(hi))
        if abs(min(lo, 0) - mlo) > tol or abs(max(hi, 0) - mhi) > tol:
            print(f"{name}: ORT [{lo:.9g}, {hi:.9g}], mopt [{mlo:.9g}, {mhi:.9g}]")
            bad += 1
    print(f"{len(ort)} tensors in ORT's table, {len(mine)} in mopt's, {bad} differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
