/*
 * formats/tensorfile.h — tensors in files: .pb (ONNX TensorProto), .npy, .csv, IDX (and .gz).
 *
 * Two ways in:
 *   - whole tensors (opt_tensorfile_read / _parse / _write), for `mopt run` inputs and outputs
 *     and the ONNX test-data layout (input_0.pb, output_0.pb, ...);
 *   - record streams (opt_tstream_*), for datasets: the header is read once, then records
 *     (slices along the first axis) are read on demand, so memory does not grow with the file.
 *
 * What each reader accepts is written in docs/formats/tensor-files.md. Every length read from a
 * file is checked before it is used; malformed files fail with a specific one-line message
 * ("bad magic", "header says 784 values, file has 700", ...). Messages do not repeat the path:
 * callers prefix it (tools print "mopt CMD: FILE: message"), except the opt_tstream functions,
 * whose messages start with the path because datasets involve several files.
 *
 * Arrays filled here own their data (malloc); free them with free(a->data) or opt_array_free.
 * This module uses only the opt_array struct from libopt/exec/exec.h, no executor code.
 */
#ifndef OPT_FORMATS_TENSORFILE_H
#define OPT_FORMATS_TENSORFILE_H

#include "libopt/exec/exec.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum opt_tfmt {
    OPT_TFMT_AUTO = 0, /* guess from the extension, then from the first bytes */
    OPT_TFMT_PB = 1,   /* ONNX TensorProto */
    OPT_TFMT_NPY = 2,  /* NumPy .npy v1/v2/v3 */
    OPT_TFMT_CSV = 3,  /* comma-separated numbers, 1-D or 2-D */
    OPT_TFMT_IDX = 4,  /* IDX (MNIST), optionally gzip-compressed */
} opt_tfmt;

/* "pb", "npy", "csv", "idx". */
const char *opt_tfmt_name(opt_tfmt f);
/* Parses a format name ("pb", "npy", "csv", "idx"); false if unknown. */
bool opt_tfmt_parse(const char *s, opt_tfmt *out);
/* Format from the file name: .pb, .npy, .csv, .idx, *-ubyte, *idx1/3*, with an optional .gz
 * (the .gz is looked through). OPT_TFMT_AUTO when the name says nothing. */
opt_tfmt opt_tfmt_from_name(const char *path);
/* Format from the first bytes of the (uncompressed) content: NumPy magic, IDX magic (two zero
 * bytes, a known type code, a rank 1..8), else PB if it parses, else CSV if it is text. */
opt_tfmt opt_tfmt_sniff(const uint8_t *buf, size_t len);

/* ---- whole tensors ------------------------------------------------------------------------ */

/* Parses a tensor from memory (already decompressed for IDX; gzip data is recognised by its
 * magic and inflated). fmt AUTO sniffs. *a receives the tensor in its stored dtype (CSV gives
 * DOUBLE; NPY/PB/IDX their own), caller owns a->data. *name (may be NULL) receives a malloc'd
 * TensorProto name or NULL. Errors are specific and do not include a path. */
opt_status opt_tensorfile_parse(const uint8_t *buf, size_t len, opt_tfmt fmt, opt_array *a,
                                char **name, opt_error *err);

/* Reads a file (fmt AUTO: from its name, then its content). Same ownership as _parse. */
opt_status opt_tensorfile_read(const char *path, opt_tfmt fmt, opt_array *a, char **name,
                               opt_error *err);

/* Serializes a into a malloc'd buffer (*buf, *len; caller frees). name is used by PB only
 * (NULL: no name). CSV writes a 0-D or 1-D tensor as one row, a 2-D tensor as rows, and higher
 * ranks as [d0, d1*d2*...] rows; IDX accepts uint8, int8, int16, int32, float32, float64. */
opt_status opt_tensorfile_serialize(const opt_array *a, opt_tfmt fmt, const char *name,
                                    uint8_t **buf, size_t *len, opt_error *err);

/* Writes a to path atomically (temporary file in the same directory, then rename). fmt AUTO:
 * from the name (default PB). */
opt_status opt_tensorfile_write(const char *path, opt_tfmt fmt, const opt_array *a,
                                const char *name, opt_error *err);

/* Converts a into dtype (numeric dtypes, bool; float16/bfloat16 with round-to-nearest-even;
 * integers from floats by truncation toward zero and saturation). *out owns new data, also when
 * dtype equals a->dtype (a copy). */
opt_status opt_tensorfile_convert(const opt_array *a, int dtype, opt_array *out, opt_error *err);

/* Bytes of n elements of dtype (4-bit types packed); false on overflow or unsupported dtype. */
bool opt_tensorfile_nbytes(int dtype, uint64_t n, size_t *out);

/* ---- record streams ----------------------------------------------------------------------- */

/* A file read record by record along its first axis. NPY and IDX (plain or .gz) are read through
 * zlib's gzread (plain files pass through); CSV row by row through libcsv. */
typedef struct opt_tstream opt_tstream;

/* Opens path and reads its header. fmt AUTO guesses from the name, then the content. PB files
 * are refused (a TensorProto is not streamable; use opt_tensorfile_read). For CSV the whole
 * file is scanned once here to count the rows and check they all have the same number of
 * numeric fields (a first row that is not numeric is taken as a header and skipped). Messages
 * start with the path. The caller frees the stream with opt_tstream_close. */
opt_status opt_tstream_open(const char *path, opt_tfmt fmt, opt_tstream **out, opt_error *err);
void opt_tstream_close(opt_tstream *s);

/* Stored dtype (CSV: DOUBLE), rank and dims of the whole file (dims[0] = number of records). */
int opt_tstream_dtype(const opt_tstream *s);
int opt_tstream_shape(const opt_tstream *s, int64_t *dims);
uint64_t opt_tstream_count(const opt_tstream *s);
/* Format the stream was opened as. */
opt_tfmt opt_tstream_format(const opt_tstream *s);

/* Reads the next n records into dst (n * record size bytes, native little-endian layout of the
 * stored dtype). Fails with "PATH: truncated: ..." when the file ends early; reading past the
 * count is an error too. */
opt_status opt_tstream_read(opt_tstream *s, uint64_t n, void *dst, opt_error *err);
/* Whether opt_tstream_read_at works: a plain (uncompressed) NPY or IDX regular file. */
bool opt_tstream_random_access(const opt_tstream *s);
/* Reads records [first, first + n) into dst as opt_tstream_read does, with pread on a
 * descriptor of its own: it leaves the stream's position alone, and several threads may call it
 * at once. OPT_ERR_USAGE where !opt_tstream_random_access(s). */
opt_status opt_tstream_read_at(const opt_tstream *s, uint64_t first, uint64_t n, void *dst, opt_error *err);
/* Goes back to the first record. */
opt_status opt_tstream_rewind(opt_tstream *s, opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
