/*
 * calib/dataset.c — datasets as streams of float32 batches (see dataset.h for the SPEC syntax).
 *
 * A dataset is one or two record streams (formats/tensorfile.h): samples, and labels either in a
 * second file or in the last CSV column. Each batch is read, converted to float32, transposed
 * when the source layout differs from the target one, scaled, normalised and checked for NaN/Inf
 * in buffers owned by the dataset, sized for the largest batch asked so far.
 */
#include "calib/dataset.h"

#include "formats/tensorfile.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

struct opt_dataset {
    char *name;
    opt_dataset_opts o;
    opt_tstream *x, *y;
    char *xpath, *ypath;
    bool label_last;          /* labels are the last CSV column of x */
    int src_dtype;
    int src_rank;             /* rank of one stored sample */
    int64_t src_dims[OPT_MAX_DIMS];
    size_t rec_vals;          /* values per stored record (features + 1 with label_last) */
    size_t per;               /* values per delivered sample */
    int ndim;                 /* delivered sample rank */
    int64_t dims[OPT_MAX_DIMS];
    int transpose;            /* 0 none, 1 HWC->CHW, 2 CHW->HWC */
    int64_t th, tw, tc;       /* spatial dims and channels for the transpose */
    int ch_axis;              /* channel axis of the delivered sample, -1 none */
    size_t count, pos;
    float scale;
    int out_dtype;            /* dtype of the batches: float32, or an integer type (set_dtype) */
    char *input;              /* the model input an integer dataset feeds (messages) */
    opt_dataset_buf own;      /* opt_dataset_next_batch's batch */
    void *lraw; size_t lraw_cap;
};

bool opt_layout_parse(const char *s, opt_layout *out)
{
    static const char *names[] = {"auto", "nchw", "nhwc", "flat"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0) {
            *out = (opt_layout)i;
            return true;
        }
    return false;
}

const char *opt_layout_name(opt_layout l)
{
    switch (l) {
    case OPT_LAYOUT_NCHW: return "nchw";
    case OPT_LAYOUT_NHWC: return "nhwc";
    case OPT_LAYOUT_FLAT: return "flat";
    default: return "auto";
    }
}

/* Parses a list of floats separated by ',' or '/' into v (at most cap); returns the count or -1. */
static int parse_floats(const char *s, const char *seps, float *v, int cap)
{
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        while (*p == ' ') p++;
        double d = strtod(p, &end);
        if (end == p || n >= cap || !isfinite(d)) return -1;
        v[n++] = (float)d;
        p = end;
        while (*p == ' ') p++;
        if (*p == 0) return n;
        if (!strchr(seps, *p)) return -1;
        p++;
    }
}

opt_status opt_dataset_parse_normalize(const char *s, opt_dataset_opts *o, opt_error *err)
{
    float m[OPT_DATASET_MAX_CHANNELS], d[OPT_DATASET_MAX_CHANNELS];
    int nm = -1, nd = -1;
    const char *colon = strchr(s, ':');
    char a[256], b[256];
    if (colon) {
        snprintf(a, sizeof a, "%.*s", (int)(colon - s), s);
        snprintf(b, sizeof b, "%s", colon + 1);
        nm = parse_floats(a, ",", m, OPT_DATASET_MAX_CHANNELS);
        nd = parse_floats(b, ",", d, OPT_DATASET_MAX_CHANNELS);
    } else if (strchr(s, '/')) {
        const char *comma = strchr(s, ',');
        if (comma) {
            snprintf(a, sizeof a, "%.*s", (int)(comma - s), s);
            snprintf(b, sizeof b, "%s", comma + 1);
            nm = parse_floats(a, "/", m, OPT_DATASET_MAX_CHANNELS);
            nd = parse_floats(b, "/", d, OPT_DATASET_MAX_CHANNELS);
        }
    } else {
        float v[3];
        if (parse_floats(s, ",", v, 3) == 2) {
            m[0] = v[0];
            d[0] = v[1];
            nm = nd = 1;
        }
    }
    if (nm < 1 || nm != nd)
        return opt_error_set(err, OPT_ERR_USAGE,
                             "--normalize '%s': expected MEAN,STD or M1,M2,M3:S1,S2,S3 (same count, at most %d)",
                             s, OPT_DATASET_MAX_CHANNELS);
    for (int i = 0; i < nd; i++)
        if (d[i] == 0) return opt_error_set(err, OPT_ERR_USAGE, "--normalize '%s': std must not be 0", s);
    o->n_norm = (size_t)nm;
    memcpy(o->mean, m, sizeof(float) * (size_t)nm);
    memcpy(o->std, d, sizeof(float) * (size_t)nm);
    return OPT_OK;
}

void opt_dataset_free(opt_dataset *ds)
{
    if (!ds) return;
    opt_tstream_close(ds->x);
    opt_tstream_close(ds->y);
    free(ds->name);
    free(ds->xpath);
    free(ds->ypath);
    opt_dataset_buf_free(&ds->own);
    free(ds->lraw);
    free(ds->input);
    free(ds);
}

size_t opt_dataset_count(const opt_dataset *ds) { return ds->count; }
bool opt_dataset_has_labels(const opt_dataset *ds) { return ds->y || ds->label_last; }
const char *opt_dataset_name(const opt_dataset *ds) { return ds->name; }
size_t opt_dataset_pos(const opt_dataset *ds) { return ds->pos; }

int opt_dataset_sample_shape(const opt_dataset *ds, int64_t *dims)
{
    for (int i = 0; i < ds->ndim; i++) dims[i] = ds->dims[i];
    return ds->ndim;
}

static void shape_str(const int64_t *d, int n, char *buf, size_t len)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < n && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? "," : "", (long long)d[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

/* Declared shape with symbolic dims as "N" (batch) or "?". */
static void decl_str(const int64_t *d, int n, char *buf, size_t len)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < n && k < len; i++) {
        if (d[i] < 0) k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? "," : "", i ? "?" : "N");
        else k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? "," : "", (long long)d[i]);
    }
    if (k < len) snprintf(buf + k, len - k, "]");
}

/* Splits "A,B" into owned strings; b NULL when there is no comma. */
static bool split2(const char *s, char **a, char **b)
{
    const char *c = strchr(s, ',');
    *a = c ? strndup(s, (size_t)(c - s)) : strdup(s);
    *b = c ? strdup(c + 1) : NULL;
    return *a && (!c || *b);
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Resolves the spec into paths and a format. */
static opt_status resolve(opt_dataset *ds, const char *spec, opt_tfmt *fmt, opt_error *err)
{
    *fmt = OPT_TFMT_AUTO;
    if (strncmp(spec, "fashion-mnist:", 14) == 0) {
        const char *split = spec + 14, *pre;
        if (strcmp(split, "test") == 0) pre = "t10k";
        else if (strcmp(split, "train") == 0) pre = "train";
        else return opt_error_set(err, OPT_ERR_USAGE, "%s: unknown split '%s' (use fashion-mnist:test or fashion-mnist:train)", spec, split);
        const char *dir = getenv("MOPT_FASHION_MNIST");
        if (!dir || !*dir) dir = FMNIST_DIR;
        char x[4096], y[4096];
        snprintf(x, sizeof x, "%s/%s-images-idx3-ubyte.gz", dir, pre);
        snprintf(y, sizeof y, "%s/%s-labels-idx1-ubyte.gz", dir, pre);
        if (!file_exists(x)) { /* an unpacked copy works too */
            char x2[4096], y2[4096];
            snprintf(x2, sizeof x2, "%s/%s-images-idx3-ubyte", dir, pre);
            snprintf(y2, sizeof y2, "%s/%s-labels-idx1-ubyte", dir, pre);
            if (file_exists(x2)) {
                memcpy(x, x2, sizeof x);
                memcpy(y, y2, sizeof y);
            } else {
                return opt_error_set(err, OPT_ERR_IO, "%s: cannot open (install dataset-fashion-mnist or set MOPT_FASHION_MNIST)", x);
            }
        }
        ds->xpath = strdup(x);
        ds->ypath = strdup(y);
        *fmt = OPT_TFMT_IDX;
        if (!ds->xpath || !ds->ypath) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        char nm[4200];
        snprintf(nm, sizeof nm, "%s", spec);
        ds->name = strdup(nm);
        return ds->name ? OPT_OK : opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    static const struct { const char *prefix; opt_tfmt f; } kinds[] = {
        {"idx:", OPT_TFMT_IDX}, {"npy:", OPT_TFMT_NPY}, {"csv:", OPT_TFMT_CSV}};
    const char *rest = NULL;
    for (size_t i = 0; i < 3; i++)
        if (strncmp(spec, kinds[i].prefix, 4) == 0) {
            rest = spec + 4;
            *fmt = kinds[i].f;
        }
    if (!rest) {
        const char *colon = strchr(spec, ':');
        if (colon && !file_exists(spec) && !strchr(spec, '/') && !strchr(spec, ','))
            return opt_error_set(err, OPT_ERR_USAGE,
                                 "unknown data spec '%s' (use fashion-mnist:test|train, idx:FILE[,LABELS], npy:FILE[,LABELS], csv:FILE[,LABELS|last] or a file)",
                                 spec);
        rest = spec;
    }
    if (!*rest) return opt_error_set(err, OPT_ERR_USAGE, "data spec '%s' names no file", spec);
    if (!split2(rest, &ds->xpath, &ds->ypath)) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    if (ds->ypath && strcmp(ds->ypath, "last") == 0) {
        if (*fmt != OPT_TFMT_CSV && opt_tfmt_from_name(ds->xpath) != OPT_TFMT_CSV)
            return opt_error_set(err, OPT_ERR_USAGE, "data spec '%s': ',last' (labels in the last column) is for CSV", spec);
        free(ds->ypath);
        ds->ypath = NULL;
        ds->label_last = true;
    }
    ds->name = strdup(ds->xpath);
    return ds->name ? OPT_OK : opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
}

/* Decides the delivered sample shape, transposes and channel axis from the stored one. */
static opt_status plan_layout(opt_dataset *ds, bool idx_src, opt_error *err)
{
    int r = ds->src_rank;
    const int64_t *s = ds->src_dims;
    opt_layout L = ds->o.layout, S = ds->o.src_layout;
    char sh[128];
    shape_str(s, r, sh, sizeof sh);
    if (S == OPT_LAYOUT_FLAT)
        return opt_error_set(err, OPT_ERR_USAGE, "the source layout cannot be 'flat' (use nchw or nhwc)");
    if (S == OPT_LAYOUT_AUTO) S = idx_src ? OPT_LAYOUT_NHWC : OPT_LAYOUT_AUTO;
    ds->ch_axis = -1;
    ds->transpose = 0;
    if (L == OPT_LAYOUT_FLAT) {
        ds->ndim = 1;
        ds->dims[0] = (int64_t)ds->per;
        return OPT_OK;
    }
    if (r == 2 && (L != OPT_LAYOUT_AUTO || idx_src)) {
        /* [H,W]: one channel, no data movement. */
        if (L == OPT_LAYOUT_NHWC) {
            ds->ndim = 3, ds->dims[0] = s[0], ds->dims[1] = s[1], ds->dims[2] = 1, ds->ch_axis = 2;
        } else {
            ds->ndim = 3, ds->dims[0] = 1, ds->dims[1] = s[0], ds->dims[2] = s[1], ds->ch_axis = 0;
        }
        return OPT_OK;
    }
    if (r == 3) {
        if (L == OPT_LAYOUT_AUTO) L = S == OPT_LAYOUT_AUTO ? OPT_LAYOUT_NCHW : S;
        if (S == OPT_LAYOUT_AUTO) S = L;
        ds->ndim = 3;
        if (L == S) {
            memcpy(ds->dims, s, 3 * sizeof *s);
        } else if (S == OPT_LAYOUT_NHWC) { /* HWC -> CHW */
            ds->transpose = 1, ds->th = s[0], ds->tw = s[1], ds->tc = s[2];
            ds->dims[0] = s[2], ds->dims[1] = s[0], ds->dims[2] = s[1];
        } else { /* CHW -> HWC */
            ds->transpose = 2, ds->tc = s[0], ds->th = s[1], ds->tw = s[2];
            ds->dims[0] = s[1], ds->dims[1] = s[2], ds->dims[2] = s[0];
        }
        ds->ch_axis = L == OPT_LAYOUT_NHWC ? 2 : 0;
        return OPT_OK;
    }
    if (L != OPT_LAYOUT_AUTO)
        return opt_error_set(err, OPT_ERR_USAGE, "%s: layout %s needs samples of rank 2 or 3, they are %s",
                             ds->xpath, opt_layout_name(L), sh);
    ds->ndim = r;
    memcpy(ds->dims, s, (size_t)r * sizeof *s);
    return OPT_OK;
}

static bool int_dtype(int d)
{
    return d == OPT_DT_BOOL || d == OPT_DT_UINT8 || d == OPT_DT_INT8 || d == OPT_DT_UINT16 ||
           d == OPT_DT_INT16 || d == OPT_DT_UINT32 || d == OPT_DT_INT32 || d == OPT_DT_UINT64 ||
           d == OPT_DT_INT64;
}

static bool float_dtype(int d)
{
    return d == OPT_DT_FLOAT || d == OPT_DT_DOUBLE || d == OPT_DT_FLOAT16 || d == OPT_DT_BFLOAT16;
}

opt_status opt_dataset_open(const char *spec, const opt_dataset_opts *opts, opt_dataset **out,
                            opt_error *err)
{
    *out = NULL;
    opt_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    if (opts) ds->o = *opts;
    opt_tfmt fmt;
    opt_status s = resolve(ds, spec, &fmt, err);
    if (s == OPT_OK) s = opt_tstream_open(ds->xpath, fmt, &ds->x, err);
    if (s == OPT_OK && ds->ypath) s = opt_tstream_open(ds->ypath, fmt, &ds->y, err);
    if (s != OPT_OK) goto fail;

    int64_t xd[OPT_MAX_DIMS];
    int xr = opt_tstream_shape(ds->x, xd);
    ds->src_dtype = opt_tstream_dtype(ds->x);
    if (ds->src_dtype == OPT_DT_BOOL || ds->src_dtype == 0) {
        s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "%s: %s samples are not numbers", ds->xpath,
                          opt_dtype_name(ds->src_dtype));
        goto fail;
    }
    ds->src_rank = xr - 1;
    memcpy(ds->src_dims, xd + 1, (size_t)ds->src_rank * sizeof *xd);
    uint64_t per = 1;
    for (int i = 0; i < ds->src_rank; i++) per *= (uint64_t)ds->src_dims[i];
    ds->rec_vals = (size_t)per;
    if (opt_tstream_count(ds->x) == 0) {
        s = opt_error_set(err, OPT_ERR_DATA, "%s: dataset is empty (no samples)", ds->xpath);
        goto fail;
    }
    if (ds->label_last) {
        if (per < 2) {
            s = opt_error_set(err, OPT_ERR_DATA, "%s: labels in the last column need at least 2 columns, the file has %llu",
                              ds->xpath, (unsigned long long)per);
            goto fail;
        }
        per -= 1;
        ds->src_dims[0] = (int64_t)per;
    }
    ds->per = (size_t)per;
    ds->count = (size_t)opt_tstream_count(ds->x);
    if (ds->count == 0 || ds->per == 0) {
        s = opt_error_set(err, OPT_ERR_DATA, "%s: dataset is empty (%s)", ds->xpath,
                          ds->count == 0 ? "no samples" : "samples have no values");
        goto fail;
    }
    if (ds->y) {
        int64_t yd[OPT_MAX_DIMS];
        int yr = opt_tstream_shape(ds->y, yd);
        uint64_t yper = 1;
        for (int i = 1; i < yr; i++) yper *= (uint64_t)yd[i];
        int ydt = opt_tstream_dtype(ds->y);
        if (yper != 1) {
            s = opt_error_set(err, OPT_ERR_DATA, "%s: labels must be one value per sample, records have %llu",
                              ds->ypath, (unsigned long long)yper);
            goto fail;
        }
        if (ydt == OPT_DT_BOOL || ydt == OPT_DT_FLOAT16 || ydt == OPT_DT_BFLOAT16) {
            s = opt_error_set(err, OPT_ERR_DATA, "%s: labels must be integers, not %s", ds->ypath,
                              opt_dtype_short(ydt));
            goto fail;
        }
        if (opt_tstream_count(ds->y) != ds->count) {
            s = opt_error_set(err, OPT_ERR_DATA, "%s: %llu labels for %zu samples in %s", ds->ypath,
                              (unsigned long long)opt_tstream_count(ds->y), ds->count, ds->xpath);
            goto fail;
        }
    }
    if (ds->o.limit && ds->o.limit < ds->count) ds->count = ds->o.limit;
    bool idx_src = opt_tstream_format(ds->x) == OPT_TFMT_IDX;
    if ((s = plan_layout(ds, idx_src, err)) != OPT_OK) goto fail;
    if (ds->o.n_norm > 1) {
        int64_t C = ds->ch_axis >= 0 ? ds->dims[ds->ch_axis] : 1;
        if ((int64_t)ds->o.n_norm != C) {
            char sh[128];
            shape_str(ds->dims, ds->ndim, sh, sizeof sh);
            s = opt_error_set(err, OPT_ERR_USAGE, "%s: --normalize has %zu channels, samples %s (%s) have %lld",
                              ds->xpath, ds->o.n_norm, sh, opt_layout_name(ds->o.layout), (long long)C);
            goto fail;
        }
    }
    ds->scale = ds->o.scale != 0 ? ds->o.scale : ds->src_dtype == OPT_DT_UINT8 ? 1.0f / 255.0f : 1.0f;
    ds->out_dtype = OPT_DT_FLOAT;
    *out = ds;
    return OPT_OK;
fail:
    opt_dataset_free(ds);
    return s;
}

opt_status opt_dataset_set_dtype(opt_dataset *ds, const char *input_name, int dtype, opt_error *err)
{
    if (dtype == 0 || dtype == OPT_DT_FLOAT) {
        ds->out_dtype = OPT_DT_FLOAT;
        return OPT_OK;
    }
    if (!int_dtype(dtype))
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "%s: input '%s' is %s; datasets feed float32 and integer inputs",
                             ds->name, input_name, opt_dtype_short(dtype));
    if (ds->transpose)
        return opt_error_set(err, OPT_ERR_USAGE, "%s: input '%s' is %s; --layout %s transposes float inputs only",
                             ds->name, input_name, opt_dtype_short(dtype), opt_layout_name(ds->o.layout));
    free(ds->input);
    if (!(ds->input = strdup(input_name))) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    ds->out_dtype = dtype;
    return OPT_OK;
}

static bool grow(void **p, size_t *cap, size_t need)
{
    if (need <= *cap) return true;
    void *q = realloc(*p, need);
    if (!q) return false;
    *p = q;
    *cap = need;
    return true;
}

/* Element at p of a raw little-endian dtype as double (0 for dtypes datasets do not read). */
static double raw_get(int dtype, const uint8_t *p)
{
    switch (dtype) {
    case OPT_DT_UINT8: return p[0];
    case OPT_DT_INT8: return (int8_t)p[0];
    case OPT_DT_INT16: { int16_t t; memcpy(&t, p, 2); return t; }
    case OPT_DT_UINT16: { uint16_t t; memcpy(&t, p, 2); return t; }
    case OPT_DT_INT32: { int32_t t; memcpy(&t, p, 4); return t; }
    case OPT_DT_UINT32: { uint32_t t; memcpy(&t, p, 4); return t; }
    case OPT_DT_INT64: { int64_t t; memcpy(&t, p, 8); return (double)t; }
    case OPT_DT_UINT64: { uint64_t t; memcpy(&t, p, 8); return (double)t; }
    case OPT_DT_FLOAT: { float t; memcpy(&t, p, 4); return t; }
    case OPT_DT_DOUBLE: { double t; memcpy(&t, p, 8); return t; }
    case OPT_DT_FLOAT16: { uint16_t t; memcpy(&t, p, 2); return opt_f16_to_f32(t); }
    case OPT_DT_BFLOAT16: { uint16_t t; memcpy(&t, p, 2); return opt_bf16_to_f32(t); }
    default: return 0;
    }
}

/* Raw records -> float32, sample by sample (dropping the label column when label_last). */
static void to_float(const opt_dataset *ds, const void *raw, size_t b, float *dst)
{
    size_t rv = ds->rec_vals, per = ds->per;
    if (ds->src_dtype == OPT_DT_UINT8) {
        const uint8_t *p = raw;
        for (size_t i = 0; i < b; i++)
            for (size_t j = 0; j < per; j++) dst[i * per + j] = p[i * rv + j];
        return;
    }
    if (ds->src_dtype == OPT_DT_FLOAT) {
        const float *p = raw;
        for (size_t i = 0; i < b; i++) memcpy(dst + i * per, p + i * rv, per * sizeof(float));
        return;
    }
    size_t es = (size_t)opt_dtype_bits(ds->src_dtype) / 8;
    const uint8_t *base = raw;
    for (size_t i = 0; i < b; i++)
        for (size_t j = 0; j < per; j++)
            dst[i * per + j] = (float)raw_get(ds->src_dtype, base + (i * rv + j) * es);
}

/* Value at p of a raw little-endian dtype as an exact int64; false when it is not an integer
 * (a float with a fraction, NaN, Inf) or lies outside int64. */
static bool raw_get_i64(int dtype, const uint8_t *p, int64_t *out)
{
    switch (dtype) {
    case OPT_DT_BOOL: *out = p[0] != 0; return true;
    case OPT_DT_INT64: memcpy(out, p, 8); return true;
    case OPT_DT_UINT64: {
        uint64_t t;
        memcpy(&t, p, 8);
        *out = (int64_t)t;
        return t <= (uint64_t)INT64_MAX;
    }
    default: {
        double v = raw_get(dtype, p);
        if (!(v >= -0x1p63 && v < 0x1p63) || v != floor(v)) return false;
        *out = (int64_t)v;
        return true;
    }
    }
}

/* The range of an integer dtype (bool: 0..1). */
static void int_range(int dtype, int64_t *lo, int64_t *hi)
{
    switch (dtype) {
    case OPT_DT_BOOL: *lo = 0, *hi = 1; break;
    case OPT_DT_UINT8: *lo = 0, *hi = UINT8_MAX; break;
    case OPT_DT_INT8: *lo = INT8_MIN, *hi = INT8_MAX; break;
    case OPT_DT_UINT16: *lo = 0, *hi = UINT16_MAX; break;
    case OPT_DT_INT16: *lo = INT16_MIN, *hi = INT16_MAX; break;
    case OPT_DT_UINT32: *lo = 0, *hi = UINT32_MAX; break;
    case OPT_DT_INT32: *lo = INT32_MIN, *hi = INT32_MAX; break;
    case OPT_DT_UINT64: *lo = 0, *hi = INT64_MAX; break;
    default: *lo = INT64_MIN, *hi = INT64_MAX; break;
    }
}

/* Raw records -> ds->out_dtype, exactly: every value must be an integer in the type's range. */
static opt_status to_int(const opt_dataset *ds, const void *raw, size_t first, size_t b, void *dst, opt_error *err)
{
    size_t rv = ds->rec_vals, per = ds->per;
    size_t es = (size_t)opt_dtype_bits(ds->src_dtype) / 8, os = (size_t)opt_dtype_bits(ds->out_dtype) / 8;
    int64_t lo, hi;
    int_range(ds->out_dtype, &lo, &hi);
    const uint8_t *base = raw;
    uint8_t *out = dst;
    for (size_t i = 0; i < b; i++)
        for (size_t j = 0; j < per; j++) {
            const uint8_t *p = base + (i * rv + j) * es;
            int64_t v;
            bool whole = raw_get_i64(ds->src_dtype, p, &v);
            if (!whole || v < lo || v > hi) {
                char num[32];
                if (whole) snprintf(num, sizeof num, "%lld", (long long)v);
                else snprintf(num, sizeof num, "%.9g", raw_get(ds->src_dtype, p));
                return opt_error_set(err, OPT_ERR_DATA, "%s: sample %zu, value %zu is %s, not %s (input '%s' is %s)",
                                     ds->xpath, first + i, j, num,
                                     whole || floor(raw_get(ds->src_dtype, p)) == raw_get(ds->src_dtype, p)
                                         ? "in the type's range" : "a whole number",
                                     ds->input ? ds->input : "?", opt_dtype_short(ds->out_dtype));
            }
            uint8_t *q = out + (i * per + j) * os;
            switch (os) {
            case 1: { uint8_t t = (uint8_t)v; memcpy(q, &t, 1); break; }
            case 2: { uint16_t t = (uint16_t)v; memcpy(q, &t, 2); break; }
            case 4: { uint32_t t = (uint32_t)v; memcpy(q, &t, 4); break; }
            default: memcpy(q, &v, 8); break;
            }
        }
    return OPT_OK;
}

/* Reads label k of the raw label records as an integer; false when not an integer in int32. */
static bool label_at(int dtype, const void *raw, size_t k, size_t stride, int32_t *out)
{
    double v = raw_get(dtype, (const uint8_t *)raw + k * stride);
    if (!(v >= -2147483648.0 && v <= 2147483647.0) || v != floor(v)) return false;
    *out = (int32_t)v;
    return true;
}

/* Two loops -O2 leaves scalar (gcc 12 vectorises them at -O3). */
#define VEC_FN __attribute__((optimize("O3")))

static VEC_FN void scale_all(float *x, size_t n, float sc)
{
    for (size_t j = 0; j < n; j++) x[j] *= sc;
}

/* True when no value of x has an all-ones exponent (NaN or Inf). */
static VEC_FN bool all_finite(const float *x, size_t n)
{
    uint32_t bad = 0;
    for (size_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, x + j, sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

void opt_dataset_buf_free(opt_dataset_buf *b)
{
    if (!b) return;
    free(b->raw);
    free(b->tmp);
    free(b->out);
    memset(b, 0, sizeof *b);
}

bool opt_dataset_random_access(const opt_dataset *ds)
{
    return opt_tstream_random_access(ds->x);
}

/* Records of the delivered dtype that need no column dropped nor transposed are read straight
 * into the batch. */
static bool direct_read(const opt_dataset *ds)
{
    return ds->src_dtype == ds->out_dtype && ds->rec_vals == ds->per && !ds->transpose;
}

/* Sizes b's buffers for n samples (no raw records where they are read into the batch). */
static opt_status buf_grow(const opt_dataset *ds, opt_dataset_buf *b, size_t n, opt_error *err)
{
    size_t es = (size_t)opt_dtype_bits(ds->src_dtype) / 8, os = (size_t)opt_dtype_bits(ds->out_dtype) / 8;
    if ((!direct_read(ds) && !grow(&b->raw, &b->raw_cap, n * ds->rec_vals * es)) ||
        !grow(&b->out, &b->out_cap, n * ds->per * os) ||
        (ds->transpose && !grow((void **)&b->tmp, &b->tmp_cap, n * ds->per * sizeof(float))))
        return opt_error_set(err, OPT_ERR_NOMEM, "%s: out of memory for a batch of %zu", ds->name, n);
    return OPT_OK;
}

opt_status opt_dataset_take(opt_dataset *ds, size_t max, opt_dataset_buf *b, size_t *got, opt_error *err)
{
    *got = 0;
    b->first = ds->pos;
    b->n = 0;
    if (max == 0) return opt_error_set(err, OPT_ERR_USAGE, "batch size must be at least 1");
    size_t n = ds->count - ds->pos < max ? ds->count - ds->pos : max;
    if (n == 0) return OPT_OK;
    if (!opt_tstream_random_access(ds->x)) {
        OPT_TRY(buf_grow(ds, b, n, err));
        OPT_TRY(opt_tstream_read(ds->x, n, direct_read(ds) ? b->out : b->raw, err));
    }
    b->n = n;
    ds->pos += n;
    *got = n;
    return OPT_OK;
}

opt_status opt_dataset_fill(const opt_dataset *ds, opt_dataset_buf *bf, opt_array *inputs, opt_error *err)
{
    size_t b = bf->n, first = bf->first;
    memset(inputs, 0, sizeof *inputs);
    inputs->dtype = ds->out_dtype;
    inputs->ndim = ds->ndim + 1;
    inputs->dims[0] = (int64_t)b;
    for (int i = 0; i < ds->ndim; i++) inputs->dims[i + 1] = ds->dims[i];
    if (b == 0) return OPT_OK;
    size_t per = ds->per, os = (size_t)opt_dtype_bits(ds->out_dtype) / 8;
    bool direct = direct_read(ds);
    if (opt_tstream_random_access(ds->x)) {
        if (first > ds->count || b > ds->count - first)
            return opt_error_set(err, OPT_ERR_USAGE, "%s: samples %zu to %zu of %zu asked for", ds->name, first,
                                 first + b, ds->count);
        OPT_TRY(buf_grow(ds, bf, b, err));
        OPT_TRY(opt_tstream_read_at(ds->x, first, b, direct ? bf->out : bf->raw, err));
    }
    void *dst = bf->out;
    if (ds->out_dtype != OPT_DT_FLOAT) {
        /* integer inputs: the values as stored, no scaling (set_dtype refused the rest) */
        if (!direct) OPT_TRY(to_int(ds, bf->raw, first, b, dst, err));
        goto done;
    }
    if (!direct) to_float(ds, bf->raw, b, ds->transpose ? bf->tmp : dst);
    if (ds->transpose) {
        size_t H = (size_t)ds->th, W = (size_t)ds->tw, C = (size_t)ds->tc;
        for (size_t i = 0; i < b; i++) {
            const float *s = bf->tmp + i * per;
            float *d = (float *)dst + i * per;
            for (size_t h = 0; h < H; h++)
                for (size_t w = 0; w < W; w++)
                    for (size_t c = 0; c < C; c++) {
                        if (ds->transpose == 1) d[(c * H + h) * W + w] = s[(h * W + w) * C + c];
                        else d[(h * W + w) * C + c] = s[(c * H + h) * W + w];
                    }
        }
    }
    /* Scale and normalise: channel index per value from the channel axis. */
    size_t C = 1, inner = 1;
    if (ds->o.n_norm > 1 && ds->ch_axis >= 0) {
        C = (size_t)ds->dims[ds->ch_axis];
        for (int i = ds->ch_axis + 1; i < ds->ndim; i++) inner *= (size_t)ds->dims[i];
    }
    float sc = ds->scale;
    bool integral = ds->src_dtype == OPT_DT_UINT8 || ds->src_dtype == OPT_DT_INT8 ||
                    ds->src_dtype == OPT_DT_UINT16 || ds->src_dtype == OPT_DT_INT16;
    size_t nscale = b;
    if (!ds->o.n_norm && fabsf(sc) <= 1e30f && integral) { /* |x| < 2^16: no overflow */
        /* Finite for sure: one vectorised pass. */
        scale_all(dst, b * per, sc);
        nscale = 0;
    } else if (!ds->o.n_norm && sc == 1.0f && !ds->o.allow_nonfinite) {
        /* Nothing to scale: one vectorised test for an all-ones exponent (NaN or Inf); the
         * per-value loop below runs only to name the culprit. */
        if (all_finite(dst, b * per)) nscale = 0;
    }
    for (size_t i = 0; i < nscale; i++) {
        float *d = (float *)dst + i * per;
        for (size_t j = 0; j < per; j++) {
            float v = d[j] * sc;
            if (ds->o.n_norm) {
                size_t c = C > 1 ? (j / inner) % C : 0;
                v = (v - ds->o.mean[c]) / ds->o.std[c];
            }
            if (!ds->o.allow_nonfinite && !isfinite(v))
                return opt_error_set(err, OPT_ERR_DATA, "%s: sample %zu, value %zu is %s%s", ds->xpath,
                                     first + i, j, isnan(v) ? "NaN" : "Inf",
                                     isfinite(d[j]) ? " after scaling/normalisation" : "");
            d[j] = v;
        }
    }
done:
    inputs->data = dst;
    inputs->nbytes = b * per * os;
    return OPT_OK;
}

opt_status opt_dataset_next_batch(opt_dataset *ds, size_t max, opt_array *inputs,
                                  int32_t *labels, size_t *got, opt_error *err)
{
    *got = 0;
    memset(inputs, 0, sizeof *inputs);
    size_t b;
    OPT_TRY(opt_dataset_take(ds, max, &ds->own, &b, err));
    OPT_TRY(opt_dataset_fill(ds, &ds->own, inputs, err));
    if (b == 0) return OPT_OK;
    size_t per = ds->per, first = ds->own.first, es = (size_t)opt_dtype_bits(ds->src_dtype) / 8;
    if (labels) {
        if (ds->label_last) {
            for (size_t i = 0; i < b; i++)
                if (!label_at(ds->src_dtype, ds->own.raw, i * ds->rec_vals + per, es, &labels[i]))
                    return opt_error_set(err, OPT_ERR_DATA, "%s: label of sample %zu (last column) is not an integer",
                                         ds->xpath, first + i);
        } else if (ds->y) {
            int ydt = opt_tstream_dtype(ds->y);
            size_t yes = (size_t)opt_dtype_bits(ydt) / 8;
            if (!grow(&ds->lraw, &ds->lraw_cap, b * yes))
                return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            OPT_TRY(opt_tstream_read(ds->y, b, ds->lraw, err));
            for (size_t i = 0; i < b; i++)
                if (!label_at(ydt, ds->lraw, i, yes, &labels[i]))
                    return opt_error_set(err, OPT_ERR_DATA, "%s: label of sample %zu is not an integer in int32 range",
                                         ds->ypath, first + i);
        } else {
            for (size_t i = 0; i < b; i++) labels[i] = -1;
        }
    } else if (ds->y) {
        /* Keep the label stream in step even when the caller ignores labels. */
        int ydt = opt_tstream_dtype(ds->y);
        size_t yes = (size_t)opt_dtype_bits(ydt) / 8;
        if (!grow(&ds->lraw, &ds->lraw_cap, b * yes)) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        OPT_TRY(opt_tstream_read(ds->y, b, ds->lraw, err));
    }
    *got = b;
    return OPT_OK;
}

opt_status opt_dataset_rewind(opt_dataset *ds, opt_error *err)
{
    OPT_TRY(opt_tstream_rewind(ds->x, err));
    if (ds->y) OPT_TRY(opt_tstream_rewind(ds->y, err));
    ds->pos = 0;
    return OPT_OK;
}

/* ---- fitting to a model input --------------------------------------------------------------- */

/* Works out the sample dims for a declared input shape (batch dim excluded) given a sample of
 * `per` values and shape sd[sr]. Fills out (rank nd - 1); false when they cannot fit. */
static bool fit_dims(const int64_t *sd, int sr, size_t per, int nd, const int64_t *dd, int64_t *out)
{
    int r = nd - 1, unknown = -1, n_unknown = 0;
    uint64_t known = 1;
    for (int i = 0; i < r; i++) {
        if (dd[i + 1] < 0) {
            unknown = i;
            n_unknown++;
        } else {
            known *= (uint64_t)dd[i + 1];
        }
        out[i] = dd[i + 1];
    }
    if (n_unknown == 0) return known == per;
    if (r == sr) { /* same rank: symbolic dims take the sample's */
        for (int i = 0; i < r; i++) {
            if (dd[i + 1] >= 0 && dd[i + 1] != sd[i]) return false;
            out[i] = sd[i];
        }
        return true;
    }
    if (n_unknown == 1 && known > 0 && per % known == 0) {
        out[unknown] = (int64_t)(per / known);
        return true;
    }
    return false;
}

static opt_status fit_error(const char *what, const int64_t *sd, int sr, size_t per,
                            const char *input, int nd, const int64_t *dd, opt_error *err)
{
    char a[160], b[160];
    shape_str(sd, sr, a, sizeof a);
    decl_str(dd, nd, b, sizeof b);
    uint64_t want = 1;
    bool sym = false;
    for (int i = 1; i < nd; i++) {
        if (dd[i] < 0) sym = true;
        else want *= (uint64_t)dd[i];
    }
    if (sym)
        return opt_error_set(err, OPT_ERR_DATA, "%s: samples %s (%zu values) do not fit input '%s' %s",
                             what, a, per, input, b);
    return opt_error_set(err, OPT_ERR_DATA, "%s: samples %s (%zu values) do not fit input '%s' %s (%llu values per sample)",
                         what, a, per, input, b, (unsigned long long)want);
}

opt_status opt_dataset_fit(const opt_dataset *ds, const char *input_name, int dtype, int ndim,
                           const int64_t *dims, opt_error *err)
{
    if (dtype != 0 && !float_dtype(dtype) && dtype != ds->out_dtype)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "%s: input '%s' is %s; datasets feed float inputs",
                             ds->name, input_name, opt_dtype_short(dtype));
    if (ndim < 0) return OPT_OK;
    if (ndim == 0)
        return opt_error_set(err, OPT_ERR_DATA, "%s: input '%s' is a scalar; it cannot take a batch of samples",
                             ds->name, input_name);
    int64_t tmp[OPT_MAX_DIMS];
    if (!fit_dims(ds->dims, ds->ndim, ds->per, ndim, dims, tmp))
        return fit_error(ds->name, ds->dims, ds->ndim, ds->per, input_name, ndim, dims, err);
    return OPT_OK;
}

opt_status opt_batch_fit(const opt_array *batch, const char *what, const char *input_name,
                         int ndim, const int64_t *dims, opt_array *view, opt_error *err)
{
    *view = *batch;
    if (ndim < 0) return OPT_OK;
    if (batch->ndim < 1)
        return opt_error_set(err, OPT_ERR_DATA, "%s: a batch needs a leading batch dim", what);
    int64_t B = batch->dims[0];
    uint64_t per = 1;
    for (int i = 1; i < batch->ndim; i++) per *= (uint64_t)batch->dims[i];
    if (ndim == 0 || ndim > OPT_MAX_DIMS)
        return opt_error_set(err, OPT_ERR_DATA, "%s: input '%s' of rank %d cannot take a batch of samples",
                             what, input_name, ndim);
    if (dims[0] >= 0 && dims[0] != B)
        return opt_error_set(err, OPT_ERR_DATA, "%s: input '%s' has a fixed batch size of %lld; the batch has %lld samples (use --batch %lld)",
                             what, input_name, (long long)dims[0], (long long)B, (long long)dims[0]);
    int64_t out[OPT_MAX_DIMS];
    if (!fit_dims(batch->dims + 1, batch->ndim - 1, (size_t)per, ndim, dims, out))
        return fit_error(what, batch->dims + 1, batch->ndim - 1, (size_t)per, input_name, ndim, dims, err);
    view->ndim = ndim;
    view->dims[0] = B;
    for (int i = 1; i < ndim; i++) view->dims[i] = out[i - 1];
    return OPT_OK;
}

/* ---- several inputs ------------------------------------------------------------------------- */

void opt_feed_free(opt_feed *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) {
        opt_dataset_free(f->ds[i]);
        free(f->input[i]);
    }
    free(f->ds);
    free(f->input);
    free(f->name);
    memset(f, 0, sizeof *f);
}

/* The input spec names ("NAME=..."), or NULL when it is a plain spec. */
static const char *spec_input(const char *spec, const char *const *inputs, size_t n_inputs)
{
    const char *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < n_inputs; i++) {
        size_t l = strlen(inputs[i]);
        if (l > best_len && strncmp(spec, inputs[i], l) == 0 && spec[l] == '=') best = inputs[i], best_len = l;
    }
    return best;
}

static void list_inputs(const char *const *inputs, size_t n, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", inputs[i]);
}

opt_status opt_feed_open(const char *const *specs, size_t n_specs, const char *const *inputs,
                         size_t n_inputs, const opt_dataset_opts *opts, opt_feed *f, opt_error *err)
{
    memset(f, 0, sizeof *f);
    if (n_specs == 0) return opt_error_set(err, OPT_ERR_USAGE, "no data given");
    f->ds = calloc(n_specs, sizeof *f->ds);
    f->input = calloc(n_specs, sizeof *f->input);
    const char **bound = calloc(n_specs, sizeof *bound);
    if (!f->ds || !f->input || !bound) {
        free(bound);
        opt_feed_free(f);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    char names[512];
    list_inputs(inputs, n_inputs, names, sizeof names);
    opt_status s = OPT_OK;
    /* NAME=SPEC first, then plain specs take the inputs left, in graph order (as `mopt run -i`). */
    for (size_t i = 0; i < n_specs && s == OPT_OK; i++) {
        bound[i] = spec_input(specs[i], inputs, n_inputs);
        for (size_t j = 0; bound[i] && j < i; j++)
            if (bound[j] && strcmp(bound[j], bound[i]) == 0)
                s = opt_error_set(err, OPT_ERR_USAGE, "data '%s': input '%s' is fed twice", specs[i], bound[i]);
    }
    size_t next = 0;
    for (size_t i = 0; i < n_specs && s == OPT_OK; i++) {
        if (bound[i]) continue;
        for (; next < n_inputs; next++) {
            bool taken = false;
            for (size_t j = 0; j < n_specs; j++) taken |= bound[j] && strcmp(bound[j], inputs[next]) == 0;
            if (!taken) break;
        }
        if (next < n_inputs) bound[i] = inputs[next++];
        else if (n_specs > 1 || n_inputs > 0)
            s = opt_error_set(err, OPT_ERR_USAGE, "data '%s': every input of the model (%s) has its data already",
                              specs[i], n_inputs ? names : "none");
    }
    for (size_t i = 0; i < n_specs && s == OPT_OK; i++) {
        const char *spec = specs[i];
        if (bound[i] && strncmp(spec, bound[i], strlen(bound[i])) == 0 && spec[strlen(bound[i])] == '=')
            spec += strlen(bound[i]) + 1;
        s = opt_dataset_open(spec, opts, &f->ds[i], err);
        if (s != OPT_OK) break;
        f->n++;
        if (bound[i] && !(f->input[i] = strdup(bound[i]))) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            break;
        }
        if (i > 0 && opt_dataset_count(f->ds[i]) != opt_dataset_count(f->ds[0]))
            s = opt_error_set(err, OPT_ERR_DATA, "%s: %zu samples for input '%s', but %s has %zu for '%s'",
                              opt_dataset_name(f->ds[i]), opt_dataset_count(f->ds[i]), f->input[i],
                              opt_dataset_name(f->ds[0]), opt_dataset_count(f->ds[0]), f->input[0]);
    }
    free(bound);
    size_t name_len = 1;
    for (size_t i = 0; i < f->n; i++)
        name_len += (f->input[i] ? strlen(f->input[i]) + 1 : 0) + strlen(opt_dataset_name(f->ds[i])) + 2;
    if (s == OPT_OK && !(f->name = malloc(name_len))) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    if (s != OPT_OK) {
        opt_feed_free(f);
        return s;
    }
    if (f->n == 1) {
        strcpy(f->name, opt_dataset_name(f->ds[0]));
        return OPT_OK;
    }
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++)
        k += (size_t)sprintf(f->name + k, "%s%s=%s", i ? ", " : "", f->input[i], opt_dataset_name(f->ds[i]));
    return OPT_OK;
}
