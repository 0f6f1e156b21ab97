/*
 * formats/tensorfile_int.h — what tensorfile.c, tensorfile_csv.c and tstream.c share. Not
 * installed; not part of the API.
 */
#ifndef OPT_FORMATS_TENSORFILE_INT_H
#define OPT_FORMATS_TENSORFILE_INT_H

#include "formats/tensorfile.h"

/* Bytes per element of a byte-aligned dtype (0 for 4-bit, string, unknown). */
size_t opt_tf_elem_size(int dtype);

/* Numpy: the fixed preamble is 10 bytes (v1) or 12 (v2, v3). Given at least 12 bytes (or the
 * whole file when shorter), sets *total to the size of magic + header, checking the magic and
 * version. */
opt_status opt_tf_npy_preamble(const uint8_t *buf, size_t len, size_t *total, opt_error *err);
/* Parses the header dict of a numpy file (buf holds `total` bytes from the preamble). Fills
 * dtype, whether the data is big-endian (swap), rank and dims; refuses fortran_order. */
opt_status opt_tf_npy_header(const uint8_t *buf, size_t total, int *dtype, bool *swap, int *ndim,
                             int64_t *dims, opt_error *err);

/* IDX: 4 magic bytes (0, 0, type, rank), then rank big-endian uint32 dims. Given at least 4
 * bytes, *hdr_len receives 4 + 4 * rank; given hdr_len bytes, fills dtype, ndim and dims. */
opt_status opt_tf_idx_header(const uint8_t *buf, size_t len, size_t *hdr_len, int *dtype,
                             int *ndim, int64_t *dims, opt_error *err);

/* Reverses the byte order of n elements of size `size` in place. */
void opt_tf_swap(void *p, uint64_t n, size_t size);

/* Product of dims with overflow and negative checks; false when not representable. */
bool opt_tf_numel(int ndim, const int64_t *dims, uint64_t *n);

/* CSV parsing (libcsv) into rows of doubles. A row callback receives each numeric row; the first
 * row is skipped as a header when any of its fields is not a number. */
typedef struct opt_tf_csv opt_tf_csv;
typedef opt_status (*opt_tf_csv_row_fn)(void *ctx, const double *v, size_t n, opt_error *err);
opt_tf_csv *opt_tf_csv_new(opt_tf_csv_row_fn row, void *ctx);
void opt_tf_csv_free(opt_tf_csv *c);
/* Feeds bytes; rows are delivered through the callback as they complete. */
opt_status opt_tf_csv_feed(opt_tf_csv *c, const void *buf, size_t len, opt_error *err);
/* Ends the input (the last row may lack a newline). */
opt_status opt_tf_csv_finish(opt_tf_csv *c, opt_error *err);
/* Line number (1-based) of the row being parsed, for messages. */
size_t opt_tf_csv_line(const opt_tf_csv *c);
/* Whether the first row was skipped as a header. */
bool opt_tf_csv_had_header(const opt_tf_csv *c);

/* Whole-tensor CSV parse and write (tensorfile_csv.c). */
opt_status opt_tf_csv_parse(const uint8_t *buf, size_t len, opt_array *a, opt_error *err);
opt_status opt_tf_csv_serialize(const opt_array *a, uint8_t **buf, size_t *len, opt_error *err);

/* Element i of a as double (numeric dtypes, bool, float16/bfloat16/float8). */
double opt_tf_get(const opt_array *a, uint64_t i);

#endif
