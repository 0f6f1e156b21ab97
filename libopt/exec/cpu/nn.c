/*
 * libopt/exec/cpu/nn.c — helpers shared by the heavy CPU kernel families: attribute reading,
 * float32 views of other dtypes, threading glue, convolution geometry and im2col.
 */
#include "libopt/exec/cpu/nn.h"
#include "libopt/exec/cpu/convert.h"

#include "libopt/exec/cpu/blas.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int nn_attr_ints(const opt_node *n, const char *name, int64_t *out, int max)
{
    const opt_attr *a = opt_node_attr(n, name);
    if (!a) return -1;
    if (a->n_ints > (size_t)max) return -2;
    for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
    return (int)a->n_ints;
}

bool nn_attr_is(const opt_node *n, const char *name, const char *val, const char *def)
{
    const opt_attr *a = opt_node_attr(n, name);
    if (!a || !a->has_s) return def && strcmp(def, val) == 0;
    size_t len = strlen(val);
    return a->s.len == len && (len == 0 || memcmp(a->s.data, val, len) == 0);
}

void nn_attr_str(const opt_node *n, const char *name, const char *def, char *buf, size_t len)
{
    if (!len) return;
    const opt_attr *a = opt_node_attr(n, name);
    if (!a || !a->has_s) {
        snprintf(buf, len, "%s", def ? def : "");
        return;
    }
    size_t m = a->s.len < len - 1 ? a->s.len : len - 1;
    if (m) memcpy(buf, a->s.data, m);
    buf[m] = 0;
}

/* ---- dtype conversion ------------------------------------------------------------------------ */

const float *nn_f32_in(const opt_array *a, float **tmp)
{
    *tmp = NULL;
    if (a->dtype == OPT_DT_FLOAT) return (const float *)a->data;
    uint64_t n = opt_array_numel(a);
    float *f = malloc((n ? n : 1) * sizeof *f);
    if (!f) return NULL;
    const void *d = a->data;
    switch (a->dtype) {
    case OPT_DT_FLOAT16:
        opt_cvt_f16_to_f32(d, f, (size_t)n);
        break;
    case OPT_DT_BFLOAT16:
        opt_cvt_bf16_to_f32(d, f, (size_t)n);
        break;
    case OPT_DT_DOUBLE:
        for (uint64_t i = 0; i < n; i++) f[i] = (float)((const double *)d)[i];
        break;
    case OPT_DT_UINT8:
        for (uint64_t i = 0; i < n; i++) f[i] = ((const uint8_t *)d)[i];
        break;
    case OPT_DT_INT8:
        for (uint64_t i = 0; i < n; i++) f[i] = ((const int8_t *)d)[i];
        break;
    case OPT_DT_INT32:
        for (uint64_t i = 0; i < n; i++) f[i] = (float)((const int32_t *)d)[i];
        break;
    default:
        for (uint64_t i = 0; i < n; i++) f[i] = (float)opt_array_get(a, i);
        break;
    }
    *tmp = f;
    return f;
}

float *nn_f32_out(opt_array *o, float **tmp)
{
    *tmp = NULL;
    if (o->dtype == OPT_DT_FLOAT) return (float *)o->data;
    uint64_t n = opt_array_numel(o);
    *tmp = malloc((n ? n : 1) * sizeof(float));
    return *tmp;
}

static double sat(double v, double lo, double hi)
{
    if (isnan(v)) return 0;
    return v < lo ? lo : v > hi ? hi : v;
}

void nn_f32_store(int dtype, void *dst, const float *src, uint64_t n)
{
    switch (dtype) {
    case OPT_DT_FLOAT:
        if (dst != (const void *)src) memcpy(dst, src, n * sizeof(float));
        break;
    case OPT_DT_FLOAT16:
        opt_cvt_f32_to_f16(src, dst, (size_t)n);
        break;
    case OPT_DT_BFLOAT16:
        opt_cvt_f32_to_bf16(src, dst, (size_t)n);
        break;
    case OPT_DT_DOUBLE:
        for (uint64_t i = 0; i < n; i++) ((double *)dst)[i] = src[i];
        break;
    case OPT_DT_UINT8:
        for (uint64_t i = 0; i < n; i++)
            ((uint8_t *)dst)[i] = (uint8_t)sat(nearbyint(src[i]), 0, 255);
        break;
    case OPT_DT_INT8:
        for (uint64_t i = 0; i < n; i++)
            ((int8_t *)dst)[i] = (int8_t)sat(nearbyint(src[i]), -128, 127);
        break;
    case OPT_DT_UINT16:
        for (uint64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = (uint16_t)sat(nearbyint(src[i]), 0, 65535);
        break;
    case OPT_DT_INT16:
        for (uint64_t i = 0; i < n; i++)
            ((int16_t *)dst)[i] = (int16_t)sat(nearbyint(src[i]), -32768, 32767);
        break;
    case OPT_DT_INT32:
        for (uint64_t i = 0; i < n; i++)
            ((int32_t *)dst)[i] = (int32_t)sat(nearbyint(src[i]), -2147483648.0, 2147483647.0);
        break;
    case OPT_DT_UINT32:
        for (uint64_t i = 0; i < n; i++)
            ((uint32_t *)dst)[i] = (uint32_t)sat(nearbyint(src[i]), 0, 4294967295.0);
        break;
    case OPT_DT_INT64:
        for (uint64_t i = 0; i < n; i++)
            ((int64_t *)dst)[i] = (int64_t)sat(nearbyint(src[i]), -9.2e18, 9.2e18);
        break;
    case OPT_DT_UINT64:
        for (uint64_t i = 0; i < n; i++)
            ((uint64_t *)dst)[i] = (uint64_t)sat(nearbyint(src[i]), 0, 1.8e19);
        break;
    default:
        break;
    }
}

void nn_f32_out_done(opt_array *o, float *tmp)
{
    if (!tmp) return;
    nn_f32_store(o->dtype, o->data, tmp, opt_array_numel(o));
    free(tmp);
}

/* Conversions of large arrays are split over the executor's threads in blocks of this many
 * values (each a whole number of vectors); smaller ones run on the calling thread. */
#define CVT_BLOCK 16384

typedef struct cvt_job {
    const void *src;
    void *dst;
    int dtype;
    uint64_t n;
    bool to_f32;
} cvt_job;

static void cvt_blocks(void *ctx, size_t begin, size_t end)
{
    const cvt_job *j = ctx;
    size_t es = (size_t)opt_dtype_bits(j->dtype) / 8;
    for (size_t blk = begin; blk < end; blk++) {
        uint64_t i = (uint64_t)blk * CVT_BLOCK, m = j->n - i < CVT_BLOCK ? j->n - i : CVT_BLOCK;
        if (j->to_f32)
            opt_cvt_to_f32((const char *)j->src + i * es, j->dtype, (float *)j->dst + i, (size_t)m);
        else
            nn_f32_store(j->dtype, (char *)j->dst + i * es, (const float *)j->src + i, m);
    }
}

static void cvt_run(opt_kctx *k, cvt_job *j)
{
    size_t nblk = (size_t)((j->n + CVT_BLOCK - 1) / CVT_BLOCK);
    nn_parallel(nblk > 1 ? k : NULL, nblk, cvt_blocks, j);
}

void nn_cvt_to_f32_k(opt_kctx *k, const void *src, int dtype, float *dst, uint64_t n)
{
    cvt_job j = {src, dst, dtype, n, true};
    cvt_run(k, &j);
}

void nn_cvt_from_f32_k(opt_kctx *k, const float *src, void *dst, int dtype, uint64_t n)
{
    cvt_job j = {src, dst, dtype, n, false};
    cvt_run(k, &j);
}

const float *nn_f32_in_k(opt_kctx *k, const opt_array *a, float **tmp)
{
    *tmp = NULL;
    if (a->dtype == OPT_DT_FLOAT) return (const float *)a->data;
    if (!k || !k->exec || !opt_cvt_supported(a->dtype)) return nn_f32_in(a, tmp);
    uint64_t n = opt_array_numel(a);
    opt_error e = {0};
    float *f = opt_kctx_scratch(k, (size_t)(n ? n : 1) * sizeof *f, &e);
    if (!f) return nn_f32_in(a, tmp);
    cvt_job j = {a->data, f, a->dtype, n, true};
    cvt_run(k, &j);
    return f;
}

float *nn_f32_out_k(opt_kctx *k, opt_array *o, float **tmp)
{
    *tmp = NULL;
    if (o->dtype == OPT_DT_FLOAT) return (float *)o->data;
    if (!k || !k->exec) return nn_f32_out(o, tmp);
    uint64_t n = opt_array_numel(o);
    opt_error e = {0};
    float *f = opt_kctx_scratch(k, (size_t)(n ? n : 1) * sizeof *f, &e);
    return f ? f : nn_f32_out(o, tmp);
}

void nn_f32_out_done_k(opt_kctx *k, opt_array *o, const float *y, float *tmp)
{
    if (y && (const void *)y != o->data) {
        cvt_job j = {y, o->data, o->dtype, opt_array_numel(o), false};
        cvt_run(k, &j);
    }
    free(tmp);
}

/* ---- threads --------------------------------------------------------------------------------- */

void nn_parallel(opt_kctx *k, size_t n, void (*fn)(void *ctx, size_t begin, size_t end),
                 void *ctx)
{
    if (!n) return;
    if (k && k->threads > 1 && n > 1)
        opt_parallel_for(k, n, fn, ctx);
    else
        fn(ctx, 0, n);
}

void nn_blas_threads(int threads)
{
    if (threads < 1) threads = 1;
    const nn_blas_fns *b = nn_blas();
    if (b->get_num_threads() != threads) b->set_num_threads(threads);
}

/* ---- convolution geometry -------------------------------------------------------------------- */

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

opt_status nn_conv_geom_init(nn_conv_geom *g, const opt_node *n, int nsp, const int64_t *in,
                             const int64_t *kshape, bool pool, opt_error *err)
{
    if (nsp < 1 || nsp > NN_MAX_SP)
        return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "%d spatial dims (1..%d supported)", nsp,
                            NN_MAX_SP);
    g->nsp = nsp;
    int64_t v[2 * NN_MAX_SP];
    int c = nn_attr_ints(n, "kernel_shape", v, NN_MAX_SP);
    if (c >= 0 && c != nsp)
        return opt_node_err(n, err, OPT_ERR_INVALID, "kernel_shape has %d values for %d spatial dims",
                            c, nsp);
    for (int i = 0; i < nsp; i++) {
        g->in[i] = in[i];
        g->k[i] = c >= 0 ? v[i] : kshape ? kshape[i] : 0;
        if (g->k[i] < 1)
            return opt_node_err(n, err, OPT_ERR_INVALID, "kernel_shape missing or not positive");
        g->stride[i] = g->dil[i] = 1;
        g->pad_b[i] = g->pad_e[i] = 0;
    }
    c = nn_attr_ints(n, "strides", v, NN_MAX_SP);
    if (c >= 0 && c != nsp)
        return opt_node_err(n, err, OPT_ERR_INVALID, "strides has %d values for %d spatial dims", c,
                            nsp);
    for (int i = 0; i < c; i++) g->stride[i] = v[i];
    c = nn_attr_ints(n, "dilations", v, NN_MAX_SP);
    if (c >= 0 && c != nsp)
        return opt_node_err(n, err, OPT_ERR_INVALID, "dilations has %d values for %d spatial dims",
                            c, nsp);
    for (int i = 0; i < c; i++) g->dil[i] = v[i];
    for (int i = 0; i < nsp; i++)
        if (g->stride[i] < 1 || g->dil[i] < 1)
            return opt_node_err(n, err, OPT_ERR_INVALID, "strides and dilations must be positive");
    g->ceil_mode = pool && opt_node_attr_int(n, "ceil_mode", 0) != 0;

    bool upper = nn_attr_is(n, "auto_pad", "SAME_UPPER", NULL);
    bool lower = nn_attr_is(n, "auto_pad", "SAME_LOWER", NULL);
    bool valid = nn_attr_is(n, "auto_pad", "VALID", NULL);
    bool notset = !upper && !lower && !valid;
    if (notset && opt_node_attr(n, "auto_pad") && !nn_attr_is(n, "auto_pad", "NOTSET", NULL))
        return opt_node_err(n, err, OPT_ERR_INVALID, "unknown auto_pad value");
    if (notset) {
        c = nn_attr_ints(n, "pads", v, 2 * NN_MAX_SP);
        if (c >= 0 && c != 2 * nsp)
            return opt_node_err(n, err, OPT_ERR_INVALID, "pads has %d values for %d spatial dims",
                                c, nsp);
        for (int i = 0; i < c / 2; i++) {
            g->pad_b[i] = v[i];
            g->pad_e[i] = v[i + nsp];
            if (v[i] < 0 || v[i + nsp] < 0)
                return opt_node_err(n, err, OPT_ERR_INVALID, "negative pads");
        }
    }
    for (int i = 0; i < nsp; i++) {
        int64_t dk = (g->k[i] - 1) * g->dil[i] + 1;
        if (upper || lower) {
            int64_t o = (in[i] + g->stride[i] - 1) / g->stride[i];
            int64_t total = (o - 1) * g->stride[i] + dk - in[i];
            if (total < 0) total = 0;
            g->pad_b[i] = upper ? total / 2 : total - total / 2;
            g->pad_e[i] = total - g->pad_b[i];
            g->out[i] = o;
            continue;
        }
        int64_t span = in[i] + g->pad_b[i] + g->pad_e[i] - dk;
        if (span < 0)
            return opt_node_err(n, err, OPT_ERR_INVALID,
                                "kernel (%lld with dilation) larger than padded input (%lld)",
                                (long long)dk, (long long)(in[i] + g->pad_b[i] + g->pad_e[i]));
        int64_t o;
        if (g->ceil_mode) {
            o = (span + g->stride[i] - 1) / g->stride[i] + 1;
            /* The last window must start inside the input or its leading padding. */
            if ((o - 1) * g->stride[i] >= in[i] + g->pad_b[i]) o--;
        } else {
            o = floordiv(span, g->stride[i]) + 1;
        }
        g->out[i] = o;
    }
    return OPT_OK;
}

int64_t nn_geom_out_size(const nn_conv_geom *g)
{
    int64_t s = 1;
    for (int i = 0; i < g->nsp; i++) s *= g->out[i];
    return s;
}

int64_t nn_geom_in_size(const nn_conv_geom *g)
{
    int64_t s = 1;
    for (int i = 0; i < g->nsp; i++) s *= g->in[i];
    return s;
}

int64_t nn_geom_k_size(const nn_conv_geom *g)
{
    int64_t s = 1;
    for (int i = 0; i < g->nsp; i++) s *= g->k[i];
    return s;
}

/* ---- im2col ---------------------------------------------------------------------------------- */

typedef struct im2col_job {
    const nn_conv_geom *g;
    const float *x;
    float *col;
    int64_t ksize, insize, outsize;
} im2col_job;

/* One row of col: channel c, kernel offset kk, over all output positions (2-D specialisation;
 * 1-D is 2-D with a height of 1). */
static void im2col_row_2d(const nn_conv_geom *g, const float *xc, int64_t kh, int64_t kw,
                          float *dst)
{
    int sp = g->nsp;
    int64_t H = sp == 2 ? g->in[0] : 1, W = g->in[sp - 1];
    int64_t OH = sp == 2 ? g->out[0] : 1, OW = g->out[sp - 1];
    int64_t sh = sp == 2 ? g->stride[0] : 1, sw = g->stride[sp - 1];
    int64_t dh = sp == 2 ? g->dil[0] : 1, dw = g->dil[sp - 1];
    int64_t ph = sp == 2 ? g->pad_b[0] : 0, pw = g->pad_b[sp - 1];
    int64_t woff = kw * dw - pw;
    /* Output columns whose input column lies inside [0, W): ow in [ow0, ow1). */
    int64_t ow0 = woff >= 0 ? 0 : (-woff + sw - 1) / sw;
    int64_t ow1 = W - woff <= 0 ? 0 : (W - woff + sw - 1) / sw;
    if (ow1 > OW) ow1 = OW;
    if (ow0 > ow1) ow0 = ow1;
    for (int64_t oh = 0; oh < OH; oh++) {
        int64_t ih = oh * sh - ph + kh * dh;
        float *d = dst + oh * OW;
        if (ih < 0 || ih >= H) {
            memset(d, 0, (size_t)OW * sizeof *d);
            continue;
        }
        const float *s = xc + ih * W + woff;
        for (int64_t ow = 0; ow < ow0; ow++) d[ow] = 0;
        if (sw == 1)
            memcpy(d + ow0, s + ow0, (size_t)(ow1 - ow0) * sizeof *d);
        else
            for (int64_t ow = ow0; ow < ow1; ow++) d[ow] = s[ow * sw];
        for (int64_t ow = ow1; ow < OW; ow++) d[ow] = 0;
    }
}

/* Generic N-D row. */
static void im2col_row_nd(const nn_conv_geom *g, const float *xc, int64_t kk, float *dst,
                          int64_t outsize)
{
    int sp = g->nsp;
    int64_t koff[NN_MAX_SP], o[NN_MAX_SP] = {0};
    for (int i = sp - 1; i >= 0; i--) {
        koff[i] = (kk % g->k[i]) * g->dil[i] - g->pad_b[i];
        kk /= g->k[i];
    }
    for (int64_t p = 0; p < outsize; p++) {
        int64_t idx = 0;
        bool inside = true;
        for (int i = 0; i < sp; i++) {
            int64_t q = o[i] * g->stride[i] + koff[i];
            if (q < 0 || q >= g->in[i]) {
                inside = false;
                break;
            }
            idx = idx * g->in[i] + q;
        }
        dst[p] = inside ? xc[idx] : 0.0f;
        for (int i = sp - 1; i >= 0; i--) {
            if (++o[i] < g->out[i]) break;
            o[i] = 0;
        }
    }
}

static void im2col_rows(void *ctx, size_t begin, size_t end)
{
    const im2col_job *j = ctx;
    for (size_t r = begin; r < end; r++) {
        int64_t c = (int64_t)r / j->ksize, kk = (int64_t)r % j->ksize;
        const float *xc = j->x + c * j->insize;
        float *dst = j->col + (int64_t)r * j->outsize;
        if (j->g->nsp <= 2)
            im2col_row_2d(j->g, xc, j->g->nsp == 2 ? kk / j->g->k[1] : 0,
                          j->g->nsp == 2 ? kk % j->g->k[1] : kk, dst);
        else
            im2col_row_nd(j->g, xc, kk, dst, j->outsize);
    }
}

void nn_im2col_f32(opt_kctx *k, const nn_conv_geom *g, const float *x, int64_t cg, float *col)
{
    im2col_job j = {g, x, col, nn_geom_k_size(g), nn_geom_in_size(g), nn_geom_out_size(g)};
    size_t rows = (size_t)(cg * j.ksize);
    /* Small unfoldings are not worth waking threads for. */
    if (rows * (size_t)j.outsize < 32768) k = NULL;
    nn_parallel(k, rows, im2col_rows, &j);
}
