/*
 * libopt/exec/cpu/conv.c — Conv and ConvTranspose on the CPU (1-D, 2-D, 3-D and beyond).
 *
 * Conv runs one of three paths, each checked against nn_conv_f32_ref() by the unit tests:
 *   - depthwise (group == C == M, 2-D or 1-D): a direct loop, one output row at a time, whose
 *     inner loop over output columns vectorises when the stride is 1;
 *   - pointwise (1x1 kernel, stride 1, no padding): the image itself is the GEMM operand;
 *   - everything else: im2col into a workspace, then one OpenBLAS sgemm per image and group.
 * ConvTranspose is sgemm (W^T x X) followed by col2im. Weights that are initializers are
 * converted to float32 once at load (prepare); float16/bfloat16/double models compute in float32
 * and round once at the output.
 */
#include "libopt/exec/cpu/nn.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* ---- reference twins ------------------------------------------------------------------------- */

/* Steps the multi-index o over the box dims[0..n) in row-major order; false after the last. */
static bool nd_next(int64_t *o, const int64_t *dims, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        if (++o[i] < dims[i]) return true;
        o[i] = 0;
    }
    return false;
}

void nn_conv_f32_ref(const nn_conv_geom *g, const float *x, const float *w, const float *b,
                     float *y)
{
    int sp = g->nsp;
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t m = 0; m < g->M; m++) {
            int64_t gi = m / Mg;
            float *ym = y + (n * g->M + m) * outsz;
            int64_t o[NN_MAX_SP] = {0};
            int64_t p = 0;
            do {
                double acc = b ? b[m] : 0.0;
                for (int64_t c = 0; c < Cg; c++) {
                    const float *xc = x + (n * g->C + gi * Cg + c) * insz;
                    const float *wc = w + (m * Cg + c) * ks;
                    int64_t kk[NN_MAX_SP] = {0};
                    int64_t q = 0;
                    do {
                        int64_t idx = 0;
                        bool inside = true;
                        for (int i = 0; i < sp; i++) {
                            int64_t pos = o[i] * g->stride[i] - g->pad_b[i] + kk[i] * g->dil[i];
                            if (pos < 0 || pos >= g->in[i]) inside = false;
                            idx = idx * g->in[i] + pos;
                        }
                        if (inside) acc += (double)xc[idx] * wc[q];
                        q++;
                    } while (nd_next(kk, g->k, sp));
                }
                ym[p++] = (float)acc;
            } while (nd_next(o, g->out, sp));
        }
}

void nn_convtr_f32_ref(const nn_conv_geom *g, const float *x, const float *w, const float *b,
                       float *y)
{
    int sp = g->nsp;
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    double *acc = calloc((size_t)outsz, sizeof *acc);
    if (!acc) return;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t m = 0; m < g->M; m++) {
            int64_t gi = m / Mg, mg = m % Mg;
            for (int64_t p = 0; p < outsz; p++) acc[p] = b ? b[m] : 0.0;
            for (int64_t c = 0; c < Cg; c++) {
                const float *xc = x + (n * g->C + gi * Cg + c) * insz;
                const float *wc = w + ((gi * Cg + c) * Mg + mg) * ks;
                int64_t i_[NN_MAX_SP] = {0};
                int64_t ip = 0;
                do {
                    int64_t kk[NN_MAX_SP] = {0};
                    int64_t q = 0;
                    do {
                        int64_t idx = 0;
                        bool inside = true;
                        for (int d = 0; d < sp; d++) {
                            int64_t pos = i_[d] * g->stride[d] - g->pad_b[d] + kk[d] * g->dil[d];
                            if (pos < 0 || pos >= g->out[d]) inside = false;
                            idx = idx * g->out[d] + pos;
                        }
                        if (inside) acc[idx] += (double)xc[ip] * wc[q];
                        q++;
                    } while (nd_next(kk, g->k, sp));
                    ip++;
                } while (nd_next(i_, g->in, sp));
            }
            float *ym = y + (n * g->M + m) * outsz;
            for (int64_t p = 0; p < outsz; p++) ym[p] = (float)acc[p];
        }
    free(acc);
}

/* ---- depthwise ------------------------------------------------------------------------------- */

typedef struct dw_job {
    const nn_conv_geom *g;
    const float *x, *w, *b;
    float *y;
} dw_job;

/* One plane of a direct 2-D depthwise convolution (1-D as height 1): per output row, one
 * multiply-add sweep per kernel tap over the columns whose input lies inside the image. */
static NN_VEC void dw_plane(const nn_conv_geom *g, const float *restrict xp,
                            const float *restrict wp, float bias, float *restrict yp)
{
    int sp = g->nsp;
    int64_t H = sp == 2 ? g->in[0] : 1, W = g->in[sp - 1];
    int64_t OH = sp == 2 ? g->out[0] : 1, OW = g->out[sp - 1];
    int64_t KH = sp == 2 ? g->k[0] : 1, KW = g->k[sp - 1];
    int64_t sh = sp == 2 ? g->stride[0] : 1, sw = g->stride[sp - 1];
    int64_t dh = sp == 2 ? g->dil[0] : 1, dw = g->dil[sp - 1];
    int64_t ph = sp == 2 ? g->pad_b[0] : 0, pw = g->pad_b[sp - 1];
    for (int64_t oh = 0; oh < OH; oh++) {
        float *restrict d = yp + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++) d[ow] = bias;
        for (int64_t kh = 0; kh < KH; kh++) {
            int64_t ih = oh * sh - ph + kh * dh;
            if (ih < 0 || ih >= H) continue;
            const float *xr = xp + ih * W;
            for (int64_t kw = 0; kw < KW; kw++) {
                float wv = wp[kh * KW + kw];
                int64_t woff = kw * dw - pw;
                int64_t ow0 = woff >= 0 ? 0 : (-woff + sw - 1) / sw;
                int64_t ow1 = W - woff <= 0 ? 0 : (W - woff + sw - 1) / sw;
                if (ow1 > OW) ow1 = OW;
                const float *restrict s = xr + woff;
                if (sw == 1)
                    for (int64_t ow = ow0; ow < ow1; ow++) d[ow] += wv * s[ow];
                else if (sw == 2)
                    for (int64_t ow = ow0; ow < ow1; ow++) d[ow] += wv * s[2 * ow];
                else
                    for (int64_t ow = ow0; ow < ow1; ow++) d[ow] += wv * s[ow * sw];
            }
        }
    }
}

/* Planes [begin, end) of N*C. */
static void dw_planes(void *ctx, size_t begin, size_t end)
{
    const dw_job *j = ctx;
    const nn_conv_geom *g = j->g;
    int sp = g->nsp;
    int64_t insz = (sp == 2 ? g->in[0] : 1) * g->in[sp - 1];
    int64_t outsz = (sp == 2 ? g->out[0] : 1) * g->out[sp - 1];
    int64_t ks = (sp == 2 ? g->k[0] : 1) * g->k[sp - 1];
    for (size_t pl = begin; pl < end; pl++) {
        int64_t c = (int64_t)pl % g->C;
        dw_plane(g, j->x + (int64_t)pl * insz, j->w + c * ks, j->b ? j->b[c] : 0.0f,
                 j->y + (int64_t)pl * outsz);
    }
}

/* ---- the fast Conv --------------------------------------------------------------------------- */

typedef struct bias_job {
    const float *b;
    float *y;
    int64_t M, outsz;
} bias_job;

static NN_VEC void add_bias_rows(void *ctx, size_t begin, size_t end)
{
    const bias_job *j = ctx;
    for (size_t r = begin; r < end; r++) {
        float bv = j->b[r % j->M];
        float *restrict d = j->y + (int64_t)r * j->outsz;
        for (int64_t p = 0; p < j->outsz; p++) d[p] += bv;
    }
}

static bool conv_is_pointwise(const nn_conv_geom *g)
{
    for (int i = 0; i < g->nsp; i++)
        if (g->k[i] != 1 || g->stride[i] != 1 || g->pad_b[i] || g->pad_e[i]) return false;
    return true;
}

void nn_conv_f32(opt_kctx *k, const nn_conv_geom *g, const float *x, const float *w,
                 const float *b, float *y)
{
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    if (g->group == g->C && g->M == g->C && g->nsp <= 2) {
        dw_job j = {g, x, w, b, y};
        nn_parallel(k, (size_t)(g->N * g->C), dw_planes, &j);
        return;
    }
    bool pointwise = conv_is_pointwise(g);
    int64_t K = Cg * ks;
    float *col = NULL;
    if (!pointwise) {
        col = malloc((size_t)(K * outsz) * sizeof *col);
        if (!col) { /* out of memory: the slow path needs no workspace */
            nn_conv_f32_ref(g, x, w, b, y);
            return;
        }
    }
    nn_blas_threads(nn_threads(k));
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t gi = 0; gi < g->group; gi++) {
            const float *xg = x + (n * g->C + gi * Cg) * insz;
            const float *op = xg;
            if (!pointwise) {
                nn_im2col_f32(k, g, xg, Cg, col);
                op = col;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Mg, (int)outsz, (int)K,
                        1.0f, w + gi * Mg * K, (int)K, op, (int)outsz, 0.0f,
                        y + (n * g->M + gi * Mg) * outsz, (int)outsz);
        }
    free(col);
    if (b) {
        bias_job j = {b, y, g->M, outsz};
        nn_parallel(g->N * g->M * outsz >= 32768 ? k : NULL, (size_t)(g->N * g->M), add_bias_rows,
                    &j);
    }
}

/* ---- the fast ConvTranspose ------------------------------------------------------------------ */

typedef struct col2im_job {
    const nn_conv_geom *g;
    const float *col; /* [Mg * ks] x insz */
    float *y;         /* Mg output planes */
    int64_t ks, insz, outsz;
} col2im_job;

/* Adds the columns of output channels [begin, end) into their planes. */
static void col2im_channels(void *ctx, size_t begin, size_t end)
{
    const col2im_job *j = ctx;
    const nn_conv_geom *g = j->g;
    int sp = g->nsp;
    for (size_t m = begin; m < end; m++) {
        float *ym = j->y + (int64_t)m * j->outsz;
        for (int64_t kk = 0; kk < j->ks; kk++) {
            const float *src = j->col + ((int64_t)m * j->ks + kk) * j->insz;
            int64_t koff[NN_MAX_SP], t = kk;
            for (int i = sp - 1; i >= 0; i--) {
                koff[i] = (t % g->k[i]) * g->dil[i] - g->pad_b[i];
                t /= g->k[i];
            }
            int64_t o[NN_MAX_SP] = {0};
            int64_t p = 0;
            do {
                int64_t idx = 0;
                bool inside = true;
                for (int i = 0; i < sp; i++) {
                    int64_t q = o[i] * g->stride[i] + koff[i];
                    if (q < 0 || q >= g->out[i]) {
                        inside = false;
                        break;
                    }
                    idx = idx * g->out[i] + q;
                }
                if (inside) ym[idx] += src[p];
                p++;
            } while (nd_next(o, g->in, sp));
        }
    }
}

void nn_convtr_f32(opt_kctx *k, const nn_conv_geom *g, const float *x, const float *w,
                   const float *b, float *y)
{
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    float *col = malloc((size_t)(Mg * ks * insz) * sizeof *col);
    if (!col) {
        nn_convtr_f32_ref(g, x, w, b, y);
        return;
    }
    nn_blas_threads(nn_threads(k));
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t gi = 0; gi < g->group; gi++) {
            float *yg = y + (n * g->M + gi * Mg) * outsz;
            for (int64_t m = 0; m < Mg; m++) {
                float bv = b ? b[gi * Mg + m] : 0.0f;
                for (int64_t p = 0; p < outsz; p++) yg[m * outsz + p] = bv;
            }
            /* col[Mg*ks x insz] = W_g^T, where W_g is [Cg x Mg*ks], times X_g [Cg x insz]. */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(Mg * ks), (int)insz,
                        (int)Cg, 1.0f, w + gi * Cg * Mg * ks, (int)(Mg * ks),
                        x + (n * g->C + gi * Cg) * insz, (int)insz, 0.0f, col, (int)insz);
            col2im_job j = {g, col, yg, ks, insz, outsz};
            nn_parallel(k, (size_t)Mg, col2im_channels, &j);
        }
    free(col);
}

/* ---- kernels --------------------------------------------------------------------------------- */

/* Weights (and bias) converted to float32 at load when they are constants. */
typedef struct conv_state {
    float *w, *b;
} conv_state;

static void conv_release(void *state)
{
    conv_state *s = state;
    if (!s) return;
    free(s->w);
    free(s->b);
    free(s);
}

static opt_status conv_prepare(const opt_node *n, int opset, const opt_array *const *consts,
                               size_t n_in, void **state, opt_error *err)
{
    if (n_in < 2) return opt_node_err(n, err, OPT_ERR_INVALID, "needs inputs X and W");
    conv_state *s = calloc(1, sizeof *s);
    if (!s) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    *state = s;
    for (size_t i = 1; i < 3 && i < n_in; i++) {
        if (!consts[i]) continue;
        float *tmp;
        const float *v = nn_f32_in(consts[i], &tmp);
        if (!v) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
        if (!tmp) {
            uint64_t cnt = opt_array_numel(consts[i]);
            tmp = malloc((cnt ? cnt : 1) * sizeof *tmp);
            if (!tmp) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
            memcpy(tmp, v, cnt * sizeof *tmp);
        }
        if (i == 1) s->w = tmp;
        else s->b = tmp;
    }
    return OPT_OK;
}

/* float32 views of W and B: the prepared ones, or converted now (freed by the caller). */
static opt_status conv_operands(opt_kctx *k, const conv_state *s, const float **w,
                                const float **b, float **tw, float **tb, opt_error *err)
{
    *tw = *tb = NULL;
    *b = NULL;
    *w = s && s->w ? s->w : nn_f32_in(k->in[1], tw);
    if (!*w) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    if (opt_kctx_has(k, 2)) {
        *b = s && s->b ? s->b : nn_f32_in(k->in[2], tb);
        if (!*b) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    return OPT_OK;
}

static opt_status conv_run(opt_kctx *k, opt_error *err)
{
    const opt_array *X = k->in[0], *W = k->in[1];
    if (X->ndim < 3 || W->ndim != X->ndim)
        return opt_kerr(k, err, OPT_ERR_INVALID, "X has rank %d and W rank %d (need equal, >= 3)",
                        X->ndim, W->ndim);
    nn_conv_geom g;
    OPT_TRY(nn_conv_geom_init(&g, k->node, X->ndim - 2, X->dims + 2, W->dims + 2, false, err));
    g.N = X->dims[0];
    g.C = X->dims[1];
    g.M = W->dims[0];
    g.group = opt_node_attr_int(k->node, "group", 1);
    for (int i = 0; i < g.nsp; i++)
        if (g.k[i] != W->dims[2 + i])
            return opt_kerr(k, err, OPT_ERR_INVALID, "kernel_shape disagrees with W's shape");
    if (g.group < 1 || g.C % g.group || g.M % g.group || W->dims[1] * g.group != g.C)
        return opt_kerr(k, err, OPT_ERR_INVALID,
                        "X has %lld channels, W expects %lld x group %lld (M = %lld)",
                        (long long)g.C, (long long)W->dims[1], (long long)g.group,
                        (long long)g.M);
    if (opt_kctx_has(k, 2) && opt_array_numel(k->in[2]) != (uint64_t)g.M)
        return opt_kerr(k, err, OPT_ERR_INVALID, "B has %llu values for %lld output channels",
                        (unsigned long long)opt_array_numel(k->in[2]), (long long)g.M);
    int64_t dims[OPT_MAX_DIMS] = {g.N, g.M};
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.out[i];
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, dims, err));
    if (!opt_array_numel(&k->out[0])) return OPT_OK;

    const float *w, *b;
    float *tw, *tb, *tx, *ty;
    OPT_TRY(conv_operands(k, k->state, &w, &b, &tw, &tb, err));
    const float *x = nn_f32_in(X, &tx);
    float *y = nn_f32_out(&k->out[0], &ty);
    opt_status st = OPT_OK;
    if (!x || !y)
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    else
        nn_conv_f32(k, &g, x, w, b, y);
    if (st == OPT_OK) nn_f32_out_done(&k->out[0], ty);
    else free(ty);
    free(tx);
    free(tw);
    free(tb);
    return st;
}

static int64_t floordiv_(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* ConvTranspose's kernel, strides, dilations, output size and begin pads (ONNX's formula, with
 * Python floor division); g->nsp, g->in must be set, kshape is W's spatial shape. */
static opt_status convtr_geom(opt_kctx *k, nn_conv_geom *g, const int64_t *kshape, opt_error *err)
{
    const opt_node *n = k->node;
    int sp = g->nsp;
    int64_t v[2 * NN_MAX_SP], opad[NN_MAX_SP] = {0}, oshape[NN_MAX_SP];
    int c = nn_attr_ints(n, "kernel_shape", v, NN_MAX_SP);
    if (c >= 0 && c != sp)
        return opt_kerr(k, err, OPT_ERR_INVALID, "kernel_shape has %d values for %d dims", c, sp);
    for (int i = 0; i < sp; i++) {
        g->k[i] = kshape[i];
        if (c >= 0 && v[i] != kshape[i])
            return opt_kerr(k, err, OPT_ERR_INVALID, "kernel_shape disagrees with W's shape");
        g->stride[i] = g->dil[i] = 1;
    }
    c = nn_attr_ints(n, "strides", v, NN_MAX_SP);
    if (c >= 0 && c != sp)
        return opt_kerr(k, err, OPT_ERR_INVALID, "strides has %d values for %d dims", c, sp);
    for (int i = 0; i < c; i++) g->stride[i] = v[i];
    c = nn_attr_ints(n, "dilations", v, NN_MAX_SP);
    if (c >= 0 && c != sp)
        return opt_kerr(k, err, OPT_ERR_INVALID, "dilations has %d values for %d dims", c, sp);
    for (int i = 0; i < c; i++) g->dil[i] = v[i];
    for (int i = 0; i < sp; i++)
        if (g->stride[i] < 1 || g->dil[i] < 1)
            return opt_kerr(k, err, OPT_ERR_INVALID, "strides and dilations must be positive");
    c = nn_attr_ints(n, "output_padding", v, NN_MAX_SP);
    if (c >= 0 && c != sp)
        return opt_kerr(k, err, OPT_ERR_INVALID, "output_padding has %d values for %d dims", c, sp);
    for (int i = 0; i < c; i++) opad[i] = v[i];
    int nos = nn_attr_ints(n, "output_shape", v, 2 * NN_MAX_SP);
    if (nos >= 0) {
        if (nos != sp && nos != sp + 2)
            return opt_kerr(k, err, OPT_ERR_INVALID, "output_shape has %d values", nos);
        for (int i = 0; i < sp; i++) oshape[i] = v[nos - sp + i];
    }
    bool upper = nn_attr_is(n, "auto_pad", "SAME_UPPER", NULL);
    bool lower = nn_attr_is(n, "auto_pad", "SAME_LOWER", NULL);
    bool valid = nn_attr_is(n, "auto_pad", "VALID", NULL);
    bool explicit_pads = !upper && !lower && opt_node_attr(n, "pads");
    if (explicit_pads) {
        c = nn_attr_ints(n, "pads", v, 2 * NN_MAX_SP);
        if (c != 2 * sp)
            return opt_kerr(k, err, OPT_ERR_INVALID, "pads has %d values for %d dims", c, sp);
    }
    for (int i = 0; i < sp; i++) {
        int64_t dk = (g->k[i] - 1) * g->dil[i] + 1;
        int64_t full = g->stride[i] * (g->in[i] - 1) + opad[i] + dk;
        if (explicit_pads && !valid && nos < 0) {
            g->pad_b[i] = v[i];
            g->pad_e[i] = v[i + sp];
            g->out[i] = full - v[i] - v[i + sp];
        } else if (nos >= 0 || upper || lower) {
            int64_t os = nos >= 0 ? oshape[i] : g->in[i] * g->stride[i];
            int64_t total = full - os;
            int64_t half = floordiv_(total, 2);
            g->pad_b[i] = upper ? half : total - half;
            g->pad_e[i] = total - g->pad_b[i];
            g->out[i] = os;
        } else {
            g->pad_b[i] = g->pad_e[i] = 0;
            g->out[i] = full;
        }
        if (g->out[i] < 1)
            return opt_kerr(k, err, OPT_ERR_INVALID, "output size %lld along spatial dim %d",
                            (long long)g->out[i], i);
    }
    return OPT_OK;
}

static opt_status convtr_run(opt_kctx *k, opt_error *err)
{
    const opt_array *X = k->in[0], *W = k->in[1];
    if (X->ndim < 3 || W->ndim != X->ndim)
        return opt_kerr(k, err, OPT_ERR_INVALID, "X has rank %d and W rank %d (need equal, >= 3)",
                        X->ndim, W->ndim);
    nn_conv_geom g = {0};
    g.nsp = X->ndim - 2;
    if (g.nsp > NN_MAX_SP) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "too many dims");
    for (int i = 0; i < g.nsp; i++) g.in[i] = X->dims[2 + i];
    OPT_TRY(convtr_geom(k, &g, W->dims + 2, err));
    g.N = X->dims[0];
    g.C = X->dims[1];
    g.group = opt_node_attr_int(k->node, "group", 1);
    if (g.group < 1 || g.C % g.group || W->dims[0] != g.C)
        return opt_kerr(k, err, OPT_ERR_INVALID, "X has %lld channels, W has %lld (group %lld)",
                        (long long)g.C, (long long)W->dims[0], (long long)g.group);
    g.M = W->dims[1] * g.group;
    if (opt_kctx_has(k, 2) && opt_array_numel(k->in[2]) != (uint64_t)g.M)
        return opt_kerr(k, err, OPT_ERR_INVALID, "B has %llu values for %lld output channels",
                        (unsigned long long)opt_array_numel(k->in[2]), (long long)g.M);
    int64_t dims[OPT_MAX_DIMS] = {g.N, g.M};
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.out[i];
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, dims, err));
    if (!opt_array_numel(&k->out[0])) return OPT_OK;

    const float *w, *b;
    float *tw, *tb, *tx, *ty;
    OPT_TRY(conv_operands(k, k->state, &w, &b, &tw, &tb, err));
    const float *x = nn_f32_in(X, &tx);
    float *y = nn_f32_out(&k->out[0], &ty);
    opt_status st = OPT_OK;
    if (!x || !y)
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    else
        nn_convtr_f32(k, &g, x, w, b, y);
    if (st == OPT_OK) nn_f32_out_done(&k->out[0], ty);
    else free(ty);
    free(tx);
    free(tw);
    free(tb);
    return st;
}

const opt_kernel opt_kernels_conv[] = {
    {"", "Conv", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, conv_prepare, conv_run,
     conv_release},
    {"", "ConvTranspose", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, conv_prepare,
     convtr_run, conv_release},
    {0},
};
