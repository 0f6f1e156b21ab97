/*
 * libopt/exec/cpu/index.c — ops driven by index tensors or positions: GatherElements,
 * ScatterElements, GatherND, ScatterND, OneHot, Trilu, CumSum, DepthToSpace, SpaceToDepth,
 * EyeLike, NonZero.
 *
 * Every index read from an input is range-checked (negative ones wrap once, as ONNX allows)
 * before it addresses memory; an index out of range fails naming the node.
 */
#include "libopt/exec/cpu/convert.h"

#include <string.h>

#define MAXD OPT_MAX_DIMS

static size_t esize(int dt)
{
    return (size_t)opt_dtype_bits(dt) / 8;
}

static bool norm_axis(int64_t *a, int r)
{
    if (*a < 0) *a += r;
    return *a >= 0 && *a < r;
}

static bool is_index(const opt_array *a)
{
    return a->dtype == OPT_DT_INT64 || a->dtype == OPT_DT_INT32;
}

static void strides_of(const opt_array *a, int64_t *s)
{
    int64_t m = 1;
    for (int d = a->ndim - 1; d >= 0; d--) {
        s[d] = m;
        m *= a->dims[d];
    }
}

/* ==== GatherElements / ScatterElements ===================================================== */

static opt_status check_index(opt_kctx *k, int64_t *v, int64_t dim, opt_error *err)
{
    if (*v < -dim || *v >= dim)
        return opt_kerr(k, err, OPT_ERR_DATA, "index %lld out of range [-%lld, %lld)", (long long)*v,
                        (long long)dim, (long long)dim);
    if (*v < 0) *v += dim;
    return OPT_OK;
}

static opt_status gather_elements_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0], *ix = k->in[1];
    if (!ix || !is_index(ix)) return opt_kerr(k, err, OPT_ERR_INVALID, "indices must be int32/int64");
    if (ix->ndim != x->ndim) return opt_kerr(k, err, OPT_ERR_INVALID, "indices rank differs from data rank");
    int64_t axis = opt_node_attr_int(k->node, "axis", 0);
    if (!norm_axis(&axis, x->ndim)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    for (int d = 0; d < x->ndim; d++)
        if (d != axis && ix->dims[d] > x->dims[d]) return opt_kerr(k, err, OPT_ERR_INVALID, "indices dim %d exceeds data", d);
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, ix->ndim, ix->dims, err));
    int64_t xs[MAXD];
    strides_of(x, xs);
    uint64_t n = opt_array_numel(ix);
    size_t es = esize(x->dtype);
    int64_t idx[MAXD] = {0};
    for (uint64_t o = 0; o < n; o++) {
        int64_t v = opt_array_int(ix, o), off = 0;
        OPT_TRY(check_index(k, &v, x->dims[axis], err));
        for (int d = 0; d < x->ndim; d++) off += (d == axis ? v : idx[d]) * xs[d];
        memcpy((char *)k->out[0].data + o * es, (const char *)x->data + (size_t)off * es, es);
        for (int d = ix->ndim - 1; d >= 0; d--) {
            if (++idx[d] < ix->dims[d]) break;
            idx[d] = 0;
        }
    }
    return OPT_OK;
}

/* Combines dst with src under reduction r ("none", "add", "mul", "max", "min"). */
static void combine(void *dst, const void *src, int dt, int r)
{
    if (r == 0) {
        memcpy(dst, src, esize(dt));
        return;
    }
    double a = 0, b = 0, c;
    opt_array da = {.dtype = dt, .data = dst}, sa = {.dtype = dt, .data = (void *)src};
    a = opt_array_get(&da, 0);
    b = opt_array_get(&sa, 0);
    c = r == 1 ? a + b : r == 2 ? a * b : r == 3 ? (a > b ? a : b) : (a < b ? a : b);
    if (dt == OPT_DT_INT64) *(int64_t *)dst = r == 1 ? *(int64_t *)dst + *(const int64_t *)src
                                            : r == 2 ? *(int64_t *)dst * *(const int64_t *)src : (int64_t)c;
    else opt_cvt_from_f64(&c, dst, dt, 1);
}

static int reduction_of(opt_kctx *k)
{
    char b[16];
    const char *r = opt_kattr_str(k->node, "reduction", "none", b, sizeof b);
    return strcmp(r, "add") == 0 ? 1 : strcmp(r, "mul") == 0 ? 2 : strcmp(r, "max") == 0 ? 3
         : strcmp(r, "min") == 0 ? 4 : strcmp(r, "none") == 0 ? 0 : -1;
}

static opt_status scatter_elements_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0], *ix = k->in[1], *up = k->in[2];
    if (!ix || !up || !is_index(ix)) return opt_kerr(k, err, OPT_ERR_INVALID, "needs int indices and updates");
    if (ix->ndim != x->ndim || up->ndim != ix->ndim || memcmp(ix->dims, up->dims, sizeof(int64_t) * (size_t)ix->ndim))
        return opt_kerr(k, err, OPT_ERR_INVALID, "indices and updates must have data's rank and one shape");
    if (up->dtype != x->dtype) return opt_kerr(k, err, OPT_ERR_INVALID, "updates dtype differs from data");
    int red = reduction_of(k);
    if (red < 0) return opt_kerr(k, err, OPT_ERR_INVALID, "unknown reduction");
    int64_t axis = opt_node_attr_int(k->node, "axis", 0);
    if (!norm_axis(&axis, x->ndim)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    for (int d = 0; d < x->ndim; d++)
        if (d != axis && ix->dims[d] > x->dims[d]) return opt_kerr(k, err, OPT_ERR_INVALID, "indices dim %d exceeds data", d);
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, x->ndim, x->dims, err));
    memcpy(k->out[0].data, x->data, x->nbytes);
    int64_t xs[MAXD];
    strides_of(x, xs);
    uint64_t n = opt_array_numel(ix);
    size_t es = esize(x->dtype);
    int64_t idx[MAXD] = {0};
    for (uint64_t o = 0; o < n; o++) {
        int64_t v = opt_array_int(ix, o), off = 0;
        OPT_TRY(check_index(k, &v, x->dims[axis], err));
        for (int d = 0; d < x->ndim; d++) off += (d == axis ? v : idx[d]) * xs[d];
        combine((char *)k->out[0].data + (size_t)off * es, (const char *)up->data + o * es, x->dtype, red);
        for (int d = ix->ndim - 1; d >= 0; d--) {
            if (++idx[d] < ix->dims[d]) break;
            idx[d] = 0;
        }
    }
    return OPT_OK;
}

/* ==== GatherND / ScatterND ================================================================= */

/* Offset (in elements of data) of the slice addressed by index tuple t (length q). */
static opt_status nd_offset(opt_kctx *k, const opt_array *x, const opt_array *ix, uint64_t t, int q,
                            int b, const int64_t *xs, int64_t base, int64_t *off, opt_error *err)
{
    int64_t o = base;
    for (int j = 0; j < q; j++) {
        int64_t v = opt_array_int(ix, t * (uint64_t)q + (uint64_t)j);
        OPT_TRY(check_index(k, &v, x->dims[b + j], err));
        o += v * xs[b + j];
    }
    *off = o;
    return OPT_OK;
}

static opt_status gather_nd_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0], *ix = k->in[1];
    if (!ix || !is_index(ix) || ix->ndim < 1) return opt_kerr(k, err, OPT_ERR_INVALID, "indices must be int, rank >= 1");
    int b = (int)opt_node_attr_int(k->node, "batch_dims", 0);
    int q = (int)ix->dims[ix->ndim - 1];
    if (b < 0 || b >= ix->ndim || b >= x->ndim || q < 1 || b + q > x->ndim)
        return opt_kerr(k, err, OPT_ERR_INVALID, "bad batch_dims or index tuple length");
    for (int d = 0; d < b; d++)
        if (ix->dims[d] != x->dims[d]) return opt_kerr(k, err, OPT_ERR_INVALID, "batch dims differ");
    int64_t od[MAXD];
    int on = 0;
    for (int d = 0; d < ix->ndim - 1; d++) od[on++] = ix->dims[d];
    if (on + x->ndim - b - q > MAXD) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "output rank too large");
    for (int d = b + q; d < x->ndim; d++) od[on++] = x->dims[d];
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, on, od, err));
    int64_t xs[MAXD];
    strides_of(x, xs);
    uint64_t slice = 1, batch = 1, per = 1;
    for (int d = b + q; d < x->ndim; d++) slice *= (uint64_t)x->dims[d];
    for (int d = 0; d < b; d++) batch *= (uint64_t)x->dims[d];
    for (int d = b; d < ix->ndim - 1; d++) per *= (uint64_t)ix->dims[d];
    size_t es = esize(x->dtype);
    char *y = k->out[0].data;
    for (uint64_t bi = 0; bi < batch; bi++)
        for (uint64_t t = 0; t < per; t++) {
            int64_t off;
            OPT_TRY(nd_offset(k, x, ix, bi * per + t, q, b, xs, (int64_t)bi * (b ? xs[b - 1] : 0), &off, err));
            memcpy(y + ((bi * per + t) * slice) * es, (const char *)x->data + (size_t)off * es, (size_t)slice * es);
        }
    return OPT_OK;
}

static opt_status scatter_nd_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0], *ix = k->in[1], *up = k->in[2];
    if (!ix || !up || !is_index(ix) || ix->ndim < 1) return opt_kerr(k, err, OPT_ERR_INVALID, "needs int indices and updates");
    if (up->dtype != x->dtype) return opt_kerr(k, err, OPT_ERR_INVALID, "updates dtype differs from data");
    int red = reduction_of(k);
    if (red < 0) return opt_kerr(k, err, OPT_ERR_INVALID, "unknown reduction");
    int q = (int)ix->dims[ix->ndim - 1];
    if (q < 1 || q > x->ndim) return opt_kerr(k, err, OPT_ERR_INVALID, "bad index tuple length");
    /* updates.shape == indices.shape[:-1] + data.shape[q:] */
    if (up->ndim != ix->ndim - 1 + x->ndim - q) return opt_kerr(k, err, OPT_ERR_INVALID, "updates has the wrong rank");
    for (int d = 0; d < ix->ndim - 1; d++)
        if (up->dims[d] != ix->dims[d]) return opt_kerr(k, err, OPT_ERR_INVALID, "updates shape mismatch");
    for (int d = q; d < x->ndim; d++)
        if (up->dims[ix->ndim - 1 + d - q] != x->dims[d]) return opt_kerr(k, err, OPT_ERR_INVALID, "updates shape mismatch");
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, x->ndim, x->dims, err));
    memcpy(k->out[0].data, x->data, x->nbytes);
    int64_t xs[MAXD];
    strides_of(x, xs);
    uint64_t slice = 1, tuples = opt_array_numel(ix) / (uint64_t)q;
    for (int d = q; d < x->ndim; d++) slice *= (uint64_t)x->dims[d];
    size_t es = esize(x->dtype);
    for (uint64_t t = 0; t < tuples; t++) {
        int64_t off;
        OPT_TRY(nd_offset(k, x, ix, t, q, 0, xs, 0, &off, err));
        for (uint64_t s = 0; s < slice; s++)
            combine((char *)k->out[0].data + ((size_t)off + s) * es, (const char *)up->data + (t * slice + s) * es,
                    x->dtype, red);
    }
    return OPT_OK;
}

/* ==== OneHot =============================================================================== */

static opt_status infer_onehot(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                               size_t n_out, opt_error *err)
{
    if (n_in < 3) return opt_node_err(n, err, OPT_ERR_INVALID, "needs indices, depth and values");
    out_dt[0] = in_dt[2];
    return OPT_OK;
}

static opt_status onehot_run(opt_kctx *k, opt_error *err)
{
    const opt_array *ix = k->in[0], *dp = k->in[1], *vals = k->in[2];
    if (!dp || !vals || opt_array_numel(dp) != 1 || opt_array_numel(vals) != 2)
        return opt_kerr(k, err, OPT_ERR_INVALID, "depth must be a scalar and values have 2 elements");
    double dd = opt_array_get(dp, 0);
    if (!(dd >= 1 && dd < 1e9)) return opt_kerr(k, err, OPT_ERR_INVALID, "bad depth");
    int64_t depth = (int64_t)dd;
    int r = ix->ndim + 1;
    if (r > MAXD) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "output rank too large");
    int64_t axis = opt_node_attr_int(k->node, "axis", -1);
    if (!norm_axis(&axis, r)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    int64_t od[MAXD];
    for (int d = 0, j = 0; d < r; d++) od[d] = d == axis ? depth : ix->dims[j++];
    OPT_TRY(opt_kctx_output(k, 0, vals->dtype, r, od, err));
    uint64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++) outer *= (uint64_t)od[d];
    for (int d = (int)axis + 1; d < r; d++) inner *= (uint64_t)od[d];
    size_t es = esize(vals->dtype);
    const char *off = vals->data, *on = (const char *)vals->data + es;
    char *y = k->out[0].data;
    for (uint64_t o = 0; o < outer; o++)
        for (int64_t c = 0; c < depth; c++)
            for (uint64_t i = 0; i < inner; i++) {
                double v = opt_array_get(ix, o * inner + i);
                /* Outside [-depth, depth) (or NaN) matches no class; converting a float index
                 * beyond int64's range would be undefined. */
                int64_t iv = v > -(double)depth - 1 && v < (double)depth ? (int64_t)v : depth;
                if (iv < 0) iv += depth;
                memcpy(y + ((o * (uint64_t)depth + (uint64_t)c) * inner + i) * es, iv == c ? on : off, es);
            }
    return OPT_OK;
}

/* ==== Trilu ================================================================================ */

static opt_status trilu_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    if (x->ndim < 2) return opt_kerr(k, err, OPT_ERR_INVALID, "input rank must be >= 2");
    int64_t kk = opt_kctx_has(k, 1) ? opt_array_int(k->in[1], 0) : 0;
    bool upper = opt_node_attr_int(k->node, "upper", 1) != 0;
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, x->ndim, x->dims, err));
    int64_t rows = x->dims[x->ndim - 2], cols = x->dims[x->ndim - 1];
    int64_t area = rows * cols;
    uint64_t mats = area > 0 ? opt_array_numel(x) / (uint64_t)area : 0;
    size_t es = esize(x->dtype);
    char *y = k->out[0].data;
    const char *xs = x->data;
    for (uint64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                size_t p = (size_t)((int64_t)m * rows * cols + i * cols + j) * es;
                bool keep = upper ? j - i >= kk : j - i <= kk;
                if (keep) memcpy(y + p, xs + p, es);
                else memset(y + p, 0, es);
            }
    return OPT_OK;
}

/* ==== CumSum =============================================================================== */

static opt_status cumsum_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    if (!opt_kctx_has(k, 1) || opt_array_numel(k->in[1]) != 1) return opt_kerr(k, err, OPT_ERR_INVALID, "axis must be a scalar");
    int64_t axis = opt_array_int(k->in[1], 0);
    if (!norm_axis(&axis, x->ndim)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    bool excl = opt_node_attr_int(k->node, "exclusive", 0) != 0, rev = opt_node_attr_int(k->node, "reverse", 0) != 0;
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, x->ndim, x->dims, err));
    uint64_t outer = 1, inner = 1;
    int64_t dim = x->dims[axis];
    for (int d = 0; d < axis; d++) outer *= (uint64_t)x->dims[d];
    for (int d = (int)axis + 1; d < x->ndim; d++) inner *= (uint64_t)x->dims[d];
    bool i64 = x->dtype == OPT_DT_INT64;
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t i = 0; i < inner; i++) {
            double acc = 0;
            int64_t iacc = 0;
            for (int64_t c0 = 0; c0 < dim; c0++) {
                int64_t c = rev ? dim - 1 - c0 : c0;
                uint64_t p = (o * (uint64_t)dim + (uint64_t)c) * inner + i;
                double v = opt_array_get(x, p);
                int64_t iv = i64 ? ((const int64_t *)x->data)[p] : 0;
                if (excl) {
                    if (i64) ((int64_t *)k->out[0].data)[p] = iacc;
                    else opt_cvt_from_f64(&acc, (char *)k->out[0].data + p * esize(x->dtype), x->dtype, 1);
                }
                acc += v;
                iacc = (int64_t)((uint64_t)iacc + (uint64_t)iv);
                if (!excl) {
                    if (i64) ((int64_t *)k->out[0].data)[p] = iacc;
                    else opt_cvt_from_f64(&acc, (char *)k->out[0].data + p * esize(x->dtype), x->dtype, 1);
                }
            }
        }
    return OPT_OK;
}

/* ==== DepthToSpace / SpaceToDepth ========================================================== */

static opt_status d2s_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    bool to_space = strcmp(k->node->op_type, "DepthToSpace") == 0;
    int64_t bs = opt_node_attr_int(k->node, "blocksize", 0);
    if (x->ndim != 4 || bs < 1) return opt_kerr(k, err, OPT_ERR_INVALID, "needs a 4-D input and blocksize >= 1");
    char mb[8];
    bool crd = strcmp(opt_kattr_str(k->node, "mode", "DCR", mb, sizeof mb), "CRD") == 0;
    int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3], od[4];
    if (to_space) {
        if (C % (bs * bs)) return opt_kerr(k, err, OPT_ERR_INVALID, "channels not divisible by blocksize^2");
        od[0] = N; od[1] = C / (bs * bs); od[2] = H * bs; od[3] = W * bs;
    } else {
        if (H % bs || W % bs) return opt_kerr(k, err, OPT_ERR_INVALID, "spatial dims not divisible by blocksize");
        od[0] = N; od[1] = C * bs * bs; od[2] = H / bs; od[3] = W / bs;
    }
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, 4, od, err));
    size_t es = esize(x->dtype);
    char *y = k->out[0].data;
    const char *xs = x->data;
    /* Walk the output; compute the source element. */
    int64_t oc = od[1], oh = od[2], ow = od[3];
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < oc; c++)
            for (int64_t h = 0; h < oh; h++)
                for (int64_t w = 0; w < ow; w++) {
                    int64_t sc, sh, sw;
                    if (to_space) {
                        int64_t bh = h % bs, bw = w % bs;
                        sh = h / bs;
                        sw = w / bs;
                        sc = crd ? c * bs * bs + bh * bs + bw : (bh * bs + bw) * oc + c;
                    } else {
                        int64_t cc = crd ? c / (bs * bs) : c % C, blk = crd ? c % (bs * bs) : c / C;
                        sc = cc;
                        sh = h * bs + blk / bs;
                        sw = w * bs + blk % bs;
                    }
                    size_t so = (size_t)(((n * C + sc) * H + sh) * W + sw) * es;
                    size_t oo = (size_t)(((n * oc + c) * oh + h) * ow + w) * es;
                    memcpy(y + oo, xs + so, es);
                }
    return OPT_OK;
}

/* ==== EyeLike, NonZero ===================================================================== */

static opt_status infer_eyelike(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                                size_t n_out, opt_error *err)
{
    out_dt[0] = (int)opt_node_attr_int(n, "dtype", in_dt[0]);
    if (!opt_cvt_supported(out_dt[0])) return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "dtype %d", out_dt[0]);
    return OPT_OK;
}

static opt_status eyelike_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    if (x->ndim != 2) return opt_kerr(k, err, OPT_ERR_INVALID, "input must be 2-D");
    int dt = k->out_dt[0];
    int64_t kk = opt_node_attr_int(k->node, "k", 0);
    OPT_TRY(opt_kctx_output(k, 0, dt, 2, x->dims, err));
    memset(k->out[0].data, 0, k->out[0].nbytes);
    for (int64_t i = 0; i < x->dims[0]; i++) {
        int64_t j = i + kk;
        if (j >= 0 && j < x->dims[1]) opt_store_f32(k->out[0].data, dt, (size_t)(i * x->dims[1] + j), 1.0f);
    }
    return OPT_OK;
}

static opt_status infer_i64(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                            size_t n_out, opt_error *err)
{
    out_dt[0] = OPT_DT_INT64;
    return OPT_OK;
}

static opt_status nonzero_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    uint64_t n = opt_array_numel(x), nz = 0;
    for (uint64_t i = 0; i < n; i++) nz += opt_array_get(x, i) != 0;
    int r = x->ndim ? x->ndim : 1;
    int64_t od[2] = {r, (int64_t)nz};
    OPT_TRY(opt_kctx_output(k, 0, OPT_DT_INT64, 2, od, err));
    int64_t *y = k->out[0].data;
    uint64_t col = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (opt_array_get(x, i) == 0) continue;
        uint64_t rem = i;
        for (int d = x->ndim - 1; d >= 0; d--) {
            y[(uint64_t)d * nz + col] = (int64_t)(rem % (uint64_t)x->dims[d]);
            rem /= (uint64_t)x->dims[d];
        }
        if (!x->ndim) y[col] = 0;
        col++;
    }
    return OPT_OK;
}

/* ==== the table ============================================================================= */

#define ANY OPT_DTS_ALL
#define K(OP, SINCE, DTS, TI, INFER, RUN) {"", OP, SINCE, INT_MAX, DTS, TI, OPT_DEVICE_CPU, INFER, NULL, RUN, NULL}

const opt_kernel opt_kernels_index[] = {
    K("GatherElements", 11, ANY, 0, NULL, gather_elements_run),
    K("ScatterElements", 11, OPT_DTS_NUMERIC | OPT_DT_BIT(OPT_DT_BOOL), 0, NULL, scatter_elements_run),
    K("GatherND", 11, ANY, 0, NULL, gather_nd_run),
    K("ScatterND", 11, OPT_DTS_NUMERIC | OPT_DT_BIT(OPT_DT_BOOL), 0, NULL, scatter_nd_run),
    K("OneHot", 9, ANY, 0, infer_onehot, onehot_run),
    K("Trilu", 14, ANY, 0, NULL, trilu_run),
    K("CumSum", 11, OPT_DTS_NUMERIC, 0, NULL, cumsum_run),
    K("DepthToSpace", 1, ANY, 0, NULL, d2s_run),
    K("SpaceToDepth", 1, ANY, 0, NULL, d2s_run),
    K("EyeLike", 9, ANY, 0, infer_eyelike, eyelike_run),
    K("NonZero", 9, OPT_DTS_NUMERIC | OPT_DT_BIT(OPT_DT_BOOL), 0, infer_i64, nonzero_run),
    {0},
};
