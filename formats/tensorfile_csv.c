/*
 * formats/tensorfile_csv.c — CSV tensors through libcsv: numbers only, one row per record, every
 * row with the same number of fields; a first row that is not all numbers is a header.
 *
 * libcsv calls back per field and per row; errors found inside the callbacks are parked in the
 * context and reported after csv_parse returns, and later callbacks do nothing.
 */
#include "formats/tensorfile_int.h"

#include <csv.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A field longer than this cannot be a number. */
#define CSV_MAX_FIELD 256

struct opt_tf_csv {
    struct csv_parser p;
    opt_tf_csv_row_fn row_fn;
    void *ctx;
    double *row;
    size_t n, cap;
    size_t ncols;     /* fields per data row, 0 until the first */
    size_t rows;      /* rows seen, header included */
    bool header;
    bool bad_field;   /* current row has a non-numeric field */
    size_t bad_col;
    char bad_text[24];
    opt_status status;
    opt_error err;
};

static void on_field(void *s, size_t len, void *data)
{
    opt_tf_csv *c = data;
    if (c->status != OPT_OK) return;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        double *q = realloc(c->row, nc * sizeof *q);
        if (!q) {
            c->status = opt_error_set(&c->err, OPT_ERR_NOMEM, "out of memory");
            return;
        }
        c->row = q;
        c->cap = nc;
    }
    const char *f = s ? s : "";
    char *end = NULL;
    double v = 0;
    bool ok = len > 0 && len < CSV_MAX_FIELD;
    if (ok) {
        v = strtod(f, &end);
        while (end && (*end == ' ' || *end == '\t' || *end == '\r')) end++;
        ok = end && end != f && (size_t)(end - f) == len;
    }
    if (!ok && !c->bad_field) {
        c->bad_field = true;
        c->bad_col = c->n + 1;
        size_t k = len < sizeof c->bad_text - 1 ? len : sizeof c->bad_text - 1;
        for (size_t i = 0; i < k; i++) c->bad_text[i] = (f[i] >= 32 && f[i] < 127) ? f[i] : '?';
        c->bad_text[k] = 0;
    }
    c->row[c->n++] = v;
}

static void on_row(int term, void *data)
{
    opt_tf_csv *c = data;
    (void)term;
    if (c->status != OPT_OK) return;
    c->rows++;
    if (c->bad_field) {
        if (c->rows == 1) {
            c->header = true;
        } else {
            c->status = opt_error_set(&c->err, OPT_ERR_DATA, "CSV row %zu, column %zu: '%s' is not a number",
                                      c->rows, c->bad_col, c->bad_text);
            return;
        }
    } else if (c->ncols == 0) {
        c->ncols = c->n;
    } else if (c->n != c->ncols) {
        c->status = opt_error_set(&c->err, OPT_ERR_DATA, "CSV row %zu has %zu fields, earlier rows have %zu",
                                  c->rows, c->n, c->ncols);
        return;
    }
    if (!c->bad_field && c->row_fn) c->status = c->row_fn(c->ctx, c->row, c->n, &c->err);
    c->n = 0;
    c->bad_field = false;
}

opt_tf_csv *opt_tf_csv_new(opt_tf_csv_row_fn row, void *ctx)
{
    opt_tf_csv *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (csv_init(&c->p, CSV_APPEND_NULL) != 0) {
        free(c);
        return NULL;
    }
    c->row_fn = row;
    c->ctx = ctx;
    return c;
}

void opt_tf_csv_free(opt_tf_csv *c)
{
    if (!c) return;
    csv_free(&c->p);
    free(c->row);
    free(c);
}

static opt_status csv_status(opt_tf_csv *c, opt_error *err)
{
    if (c->status != OPT_OK && err) *err = c->err;
    return c->status;
}

opt_status opt_tf_csv_feed(opt_tf_csv *c, const void *buf, size_t len, opt_error *err)
{
    if (c->status != OPT_OK) return csv_status(c, err);
    if (csv_parse(&c->p, buf, len, on_field, on_row, c) != len && c->status == OPT_OK)
        c->status = opt_error_set(&c->err, OPT_ERR_DATA, "CSV parse error near row %zu: %s", c->rows + 1,
                                  csv_strerror(csv_error(&c->p)));
    return csv_status(c, err);
}

opt_status opt_tf_csv_finish(opt_tf_csv *c, opt_error *err)
{
    if (c->status != OPT_OK) return csv_status(c, err);
    if (csv_fini(&c->p, on_field, on_row, c) != 0 && c->status == OPT_OK)
        c->status = opt_error_set(&c->err, OPT_ERR_DATA, "CSV parse error at the end: %s",
                                  csv_strerror(csv_error(&c->p)));
    return csv_status(c, err);
}

size_t opt_tf_csv_line(const opt_tf_csv *c) { return c->rows + 1; }
bool opt_tf_csv_had_header(const opt_tf_csv *c) { return c->header; }

/* ---- whole tensors ------------------------------------------------------------------------ */

typedef struct csv_acc {
    double *v;
    size_t n, cap, rows, cols;
} csv_acc;

static opt_status acc_row(void *ctx, const double *v, size_t n, opt_error *err)
{
    csv_acc *a = ctx;
    if (a->n + n > a->cap) {
        size_t nc = a->cap ? a->cap : 1024;
        while (nc < a->n + n) nc *= 2;
        double *q = realloc(a->v, nc * sizeof *q);
        if (!q) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        a->v = q;
        a->cap = nc;
    }
    memcpy(a->v + a->n, v, n * sizeof *v);
    a->n += n;
    a->rows++;
    a->cols = n;
    return OPT_OK;
}

opt_status opt_tf_csv_parse(const uint8_t *buf, size_t len, opt_array *a, opt_error *err)
{
    csv_acc acc = {0};
    opt_tf_csv *c = opt_tf_csv_new(acc_row, &acc);
    if (!c) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    opt_status s = opt_tf_csv_feed(c, buf, len, err);
    if (s == OPT_OK) s = opt_tf_csv_finish(c, err);
    opt_tf_csv_free(c);
    if (s == OPT_OK && acc.rows == 0) s = opt_error_set(err, OPT_ERR_DATA, "CSV has no rows of numbers");
    if (s != OPT_OK) {
        free(acc.v);
        return s;
    }
    memset(a, 0, sizeof *a);
    a->dtype = OPT_DT_DOUBLE;
    if (acc.rows == 1) {
        a->ndim = 1;
        a->dims[0] = (int64_t)acc.cols;
    } else {
        a->ndim = 2;
        a->dims[0] = (int64_t)acc.rows;
        a->dims[1] = (int64_t)acc.cols;
    }
    a->nbytes = acc.n * sizeof(double);
    a->data = acc.v;
    return OPT_OK;
}

/* Formats element i of a into buf, shortest form that reads back exactly for its dtype. */
static int fmt_elem(const opt_array *a, uint64_t i, char *buf, size_t len)
{
    const uint8_t *p = a->data;
    switch (a->dtype) {
    case OPT_DT_INT64: { int64_t v; memcpy(&v, p + i * 8, 8); return snprintf(buf, len, "%" PRId64, v); }
    case OPT_DT_UINT64: { uint64_t v; memcpy(&v, p + i * 8, 8); return snprintf(buf, len, "%" PRIu64, v); }
    case OPT_DT_DOUBLE: return snprintf(buf, len, "%.17g", opt_tf_get(a, i));
    case OPT_DT_FLOAT: case OPT_DT_FLOAT16: case OPT_DT_BFLOAT16: case OPT_DT_FLOAT8E4M3FN:
    case OPT_DT_FLOAT8E4M3FNUZ: case OPT_DT_FLOAT8E5M2: case OPT_DT_FLOAT8E5M2FNUZ:
        return snprintf(buf, len, "%.9g", opt_tf_get(a, i));
    default: return snprintf(buf, len, "%.0f", opt_tf_get(a, i));
    }
}

opt_status opt_tf_csv_serialize(const opt_array *a, uint8_t **buf, size_t *len, opt_error *err)
{
    switch (a->dtype) {
    case OPT_DT_STRING: case OPT_DT_COMPLEX64: case OPT_DT_COMPLEX128: case OPT_DT_UINT4:
    case OPT_DT_INT4: case OPT_DT_FLOAT4E2M1: case OPT_DT_UNDEFINED:
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "%s tensors cannot be written as CSV",
                             opt_dtype_name(a->dtype));
    default: break;
    }
    uint64_t n;
    opt_tf_numel(a->ndim, a->dims, &n);
    uint64_t cols = a->ndim <= 1 ? n : 1;
    for (int d = 1; d < a->ndim; d++) cols *= (uint64_t)a->dims[d];
    if (n > SIZE_MAX / 32) return opt_error_set(err, OPT_ERR_LIMIT, "tensor too large for CSV");
    size_t cap = (size_t)n * 26 + 2, o = 0;
    char *b = malloc(cap);
    if (!b) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        int k = fmt_elem(a, i, b + o, cap - o);
        o += (size_t)k;
        b[o++] = (cols == 0 || (i + 1) % cols == 0) ? '\n' : ',';
    }
    if (n == 0) b[o++] = '\n';
    *buf = (uint8_t *)b;
    *len = o;
    return OPT_OK;
}
