/*
 * calib/table.h — calibration tables: mopt's CSV format and TensorRT's calibration cache.
 *
 * CSV (docs/formats/calibration-table.md): a header line "tensor,method,min,max,scale,zero_point"
 * then one row per tensor. Fields are RFC 4180 CSV (libcsv), so tensor names with commas or
 * quotes are quoted. min and max are the calibrated range (what `mopt quant` uses); scale and
 * zero_point are the quantization parameters that range gives in the dtype calibration was run
 * for (uint8 asymmetric unless `mopt calib --act int8`).
 *
 * TensorRT's calibration cache is a text file: a first line "TRT-<version>-<Algorithm>" and one
 * line per tensor, "name: XXXXXXXX", the hex of the IEEE-754 bits of the symmetric int8 scale
 * max(|min|,|max|)/127 (big-endian hex digits, as TensorRT writes them).
 */
#ifndef OPT_CALIB_TABLE_H
#define OPT_CALIB_TABLE_H

#include "libopt/ir/ir.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct opt_calib_entry {
    char *tensor;      /* owned */
    char method[16];
    float min, max;
    float scale;
    int32_t zero_point;
} opt_calib_entry;

typedef struct opt_calib_table {
    opt_calib_entry *e;
    size_t n, cap;
} opt_calib_table;

/* Frees the entries (accepts a zeroed table) and zeroes it. */
void opt_calib_table_free(opt_calib_table *t);
/* Appends an entry (tensor copied). */
opt_status opt_calib_table_add(opt_calib_table *t, const char *tensor, const char *method,
                               float min, float max, float scale, int32_t zero_point,
                               opt_error *err);
/* Index of the entry for tensor, or -1. Linear search. */
long opt_calib_table_find(const opt_calib_table *t, const char *tensor);

/* Writes the CSV form to f. */
opt_status opt_calib_table_write_csv(const opt_calib_table *t, FILE *f, opt_error *err);
/* Reads a CSV table from path (what names it in messages). Checks the header, the number of
 * fields, that min <= max are finite numbers, scale > 0, zero_point an integer, and that no
 * tensor appears twice; errors give the line number. *t must be zeroed; on failure it is left
 * empty. */
opt_status opt_calib_table_read_csv(const char *path, opt_calib_table *t, opt_error *err);

/* Writes TensorRT's calibration cache for the table. `algorithm` names the calibrator in the
 * header ("EntropyCalibration2", "MinMaxCalibration", ...). */
opt_status opt_calib_table_write_trt(const opt_calib_table *t, const char *algorithm, FILE *f,
                                     opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
