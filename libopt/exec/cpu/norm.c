/*
 * libopt/exec/cpu/norm.c — normalisations on the CPU: BatchNormalization (inference, and the
 * training_mode=1 form of opset 14+ that also returns updated running statistics),
 * LayerNormalization (with its optional Mean and InvStdDev outputs), LRN, Softmax and LogSoftmax.
 *
 * Softmax and LogSoftmax before opset 13 coerce the input to 2-D at `axis` (default 1) and
 * normalise each row of the flattened [prod(dims[:axis]), prod(dims[axis:])] matrix; from opset
 * 13 they normalise along the one dim `axis` (default -1). BatchNormalization with constant
 * statistics folds them into one scale and shift per channel at load.
 */
#include "libopt/exec/cpu/bcast.h"
#include "libopt/exec/cpu/nn.h"
#include "libopt/exec/cpu/vmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- BatchNormalization ----------------------------------------------------------------------- */

typedef struct bn_state {
    float *a, *b; /* y = x * a[c] + b[c] when scale, bias, mean and var are constants */
    int64_t C;
} bn_state;

static void bn_release(void *state)
{
    bn_state *s = state;
    if (!s) return;
    free(s->a);
    free(s);
}

static bool bn_training(const opt_node *n, int opset)
{
    if (opset >= 14) return opt_node_attr_int(n, "training_mode", 0) != 0;
    if (opset <= 6) return opt_node_attr(n, "is_test") && opt_node_attr_int(n, "is_test", 0) == 0;
    return false;
}

/* Folds scale/sqrt(var + eps) and bias - mean * that into a and b (C values each). */
static bool bn_fold(const opt_array *const *in, float eps, float *a, float *b, int64_t C)
{
    float *t[4] = {0};
    const float *v[4];
    bool ok = true;
    for (int i = 0; i < 4; i++) {
        v[i] = nn_f32_in(in[i + 1], &t[i]);
        if (!v[i]) ok = false;
    }
    if (ok)
        for (int64_t c = 0; c < C; c++) {
            float inv = 1.0f / sqrtf(v[3][c] + eps);
            a[c] = v[0][c] * inv;
            b[c] = v[1][c] - v[2][c] * a[c];
        }
    for (int i = 0; i < 4; i++) free(t[i]);
    return ok;
}

static opt_status bn_prepare(const opt_node *n, int opset, const opt_array *const *consts,
                             size_t n_in, void **state, opt_error *err)
{
    if (n_in < 5) return opt_node_err(n, err, OPT_ERR_INVALID, "needs 5 inputs");
    if (bn_training(n, opset)) return OPT_OK;
    for (int i = 1; i < 5; i++)
        if (!consts[i]) return OPT_OK;
    int64_t C = (int64_t)opt_array_numel(consts[1]);
    for (int i = 2; i < 5; i++)
        if ((int64_t)opt_array_numel(consts[i]) != C)
            return opt_node_err(n, err, OPT_ERR_INVALID, "scale, B, mean and var differ in size");
    bn_state *s = calloc(1, sizeof *s);
    if (!s) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    *state = s;
    s->C = C;
    s->a = malloc((size_t)(2 * C + 1) * sizeof *s->a);
    if (!s->a) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    s->b = s->a + C;
    if (!bn_fold(consts, opt_node_attr_float(n, "epsilon", 1e-5f), s->a, s->b, C))
        return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    return OPT_OK;
}

typedef struct affine_job {
    const float *x, *a, *b;
    float *y;
    int64_t C, sz;
} affine_job;

static NN_VEC void affine_planes(void *ctx, size_t begin, size_t end)
{
    const affine_job *j = ctx;
    for (size_t pl = begin; pl < end; pl++) {
        int64_t c = (int64_t)pl % j->C;
        float a = j->a[c], b = j->b[c];
        const float *restrict x = j->x + (int64_t)pl * j->sz;
        float *restrict y = j->y + (int64_t)pl * j->sz;
        for (int64_t i = 0; i < j->sz; i++) y[i] = x[i] * a + b;
    }
}

static opt_status bn_run(opt_kctx *k, opt_error *err)
{
    const opt_array *X = k->in[0];
    if (X->ndim < 1) return opt_kerr(k, err, OPT_ERR_INVALID, "X is a scalar");
    int64_t N = X->dims[0], C = X->ndim > 1 ? X->dims[1] : 1, sz = 1;
    for (int i = 2; i < X->ndim; i++) sz *= X->dims[i];
    for (int i = 1; i < 5; i++)
        if (!opt_kctx_has(k, (size_t)i) || (int64_t)opt_array_numel(k->in[i]) != C)
            return opt_kerr(k, err, OPT_ERR_INVALID, "input %d must have %lld values", i,
                            (long long)C);
    bool training = bn_training(k->node, k->opset);
    float eps = opt_node_attr_float(k->node, "epsilon", 1e-5f);
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, X->dims, err));
    int64_t cdims[1] = {C};
    size_t nstat = 0;
    if (training)
        for (size_t i = 1; i < k->n_out && i < 3; i++)
            if (k->node->n_outputs > i && k->node->outputs[i][0]) {
                OPT_TRY(opt_kctx_output(k, i, k->in[3]->dtype, 1, cdims, err));
                nstat = i;
            }
    const bn_state *s = k->state;
    float *tx, *ty, *ab = NULL;
    const float *x = nn_f32_in_k(k, X, &tx);
    float *y = nn_f32_out_k(k, &k->out[0], &ty);
    opt_status st = OPT_OK;
    if (!x || !y || !(ab = malloc((size_t)(2 * C + 1) * sizeof *ab))) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (training) {
        /* Batch statistics (biased variance), used for Y; running stats updated by momentum. */
        float *t[4] = {0};
        const float *v[4];
        for (int i = 0; i < 4; i++) v[i] = nn_f32_in(k->in[i + 1], &t[i]);
        float mom = opt_node_attr_float(k->node, "momentum", 0.9f);
        for (int i = 0; i < 4 && st == OPT_OK; i++)
            if (!v[i]) st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        for (int64_t c = 0; c < C && st == OPT_OK; c++) {
            double sum = 0, sq = 0, cnt = (double)(N * sz);
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < sz; i++) sum += x[(n * C + c) * sz + i];
            double mean = cnt > 0 ? sum / cnt : 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < sz; i++) {
                    double d = x[(n * C + c) * sz + i] - mean;
                    sq += d * d;
                }
            double var = cnt > 0 ? sq / cnt : 0;
            ab[c] = (float)(v[0][c] / sqrt(var + eps));
            ab[C + c] = (float)(v[1][c] - mean * ab[c]);
            float rm = (float)(v[2][c] * mom + mean * (1 - mom));
            float rv = (float)(v[3][c] * mom + var * (1 - mom));
            if (nstat >= 1) nn_f32_store(k->out[1].dtype, (char *)k->out[1].data +
                                         c * (opt_dtype_bits(k->out[1].dtype) / 8), &rm, 1);
            if (nstat >= 2) nn_f32_store(k->out[2].dtype, (char *)k->out[2].data +
                                         c * (opt_dtype_bits(k->out[2].dtype) / 8), &rv, 1);
        }
        for (int i = 0; i < 4; i++) free(t[i]);
    } else if (s && s->C == C) {
        memcpy(ab, s->a, (size_t)(2 * C) * sizeof *ab);
    } else if (!bn_fold(k->in, eps, ab, ab + C, C)) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    if (st == OPT_OK) {
        affine_job j = {x, ab, ab + C, y, C, sz};
        nn_parallel(N * C * sz >= 32768 ? k : NULL, (size_t)(N * C), affine_planes, &j);
    }
done:
    if (st == OPT_OK) nn_f32_out_done_k(k, &k->out[0], y, ty);
    else free(ty);
    free(tx);
    free(ab);
    return st;
}

/* ---- LayerNormalization ---------------------------------------------------------------------- */

typedef struct ln_job {
    const float *x, *w, *b;
    float *y, *mean, *inv;
    int64_t cols;
    float eps;
} ln_job;

/* Scale or B (a) against the normalized shape X[axis:] (nshape, cols values), through the
 * shared broadcasting (bcast.h): *b is set when a broadcasts one way to it (leading 1s allowed). */
static opt_status ln_bcast(opt_kctx *k, const opt_array *a, const opt_array *nshape, int64_t cols,
                           opt_bcast *b, opt_error *err)
{
    const opt_array *in[2] = {nshape, a};
    OPT_TRY(opt_bcast_init(b, k, in, 2, err));
    if (b->numel != (uint64_t)cols) /* a has a dim where the normalized shape has none, or 1 */
        return opt_kerr(k, err, OPT_ERR_INVALID, "Scale/B do not broadcast to the normalized shape");
    return OPT_OK;
}

typedef struct ln_fill {
    const float *src;
    float *dst;
} ln_fill;

static void ln_fill_run(void *ctx, const int64_t *in, const int64_t *st, uint64_t out, uint64_t len)
{
    const ln_fill *f = ctx;
    for (uint64_t i = 0; i < len; i++) f->dst[out + i] = f->src[in[1] + (int64_t)i * st[1]];
}

/* p (the values of a, with broadcast b from ln_bcast) in full over the cols normalized values,
 * or p itself when a already has that many. */
static const float *ln_expand(const opt_array *a, const float *p, const opt_bcast *b, int64_t cols,
                              float **tmp)
{
    *tmp = NULL;
    if ((int64_t)opt_array_numel(a) == cols) return p;
    float *e = malloc((size_t)cols * sizeof *e);
    if (!e) return NULL;
    ln_fill f = {p, e};
    opt_bcast_walk(b, 0, (uint64_t)cols, ln_fill_run, &f);
    *tmp = e;
    return e;
}

/* Sums in double over 8 lanes, so that the loop vectorises and a row of a few thousand values
 * still sums to float32's precision. */
static inline double ln_sum(const float *x, int64_t n)
{
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l];
    double s = 0;
    for (; i < n; i++) s += (double)x[i];
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

static inline double ln_sumsq(const float *x, int64_t n, float mean)
{
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            double d = (double)(x[i + l] - mean);
            acc[l] += d * d;
        }
    double s = 0;
    for (; i < n; i++) {
        double d = (double)(x[i] - mean);
        s += d * d;
    }
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

static NN_VEC void ln_rows(void *ctx, size_t begin, size_t end)
{
    const ln_job *j = ctx;
    int64_t cols = j->cols;
    for (size_t r = begin; r < end; r++) {
        const float *x = j->x + (int64_t)r * cols;
        float *y = j->y + (int64_t)r * cols;
        float mean = (float)(ln_sum(x, cols) / (double)cols);
        float inv = (float)(1.0 / sqrt(ln_sumsq(x, cols, mean) / (double)cols + j->eps));
        const float *w = j->w, *bb = j->b;
        if (bb)
            for (int64_t i = 0; i < cols; i++) y[i] = (x[i] - mean) * inv * w[i] + bb[i];
        else
            for (int64_t i = 0; i < cols; i++) y[i] = (x[i] - mean) * inv * w[i];
        if (j->mean) j->mean[r] = mean;
        if (j->inv) j->inv[r] = inv;
    }
}

static opt_status ln_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                           int *out_dt, size_t n_out, opt_error *err)
{
    int64_t stash = opt_node_attr_int(n, "stash_type", 1);
    for (size_t i = 0; i < n_out; i++)
        out_dt[i] = i == 0 ? in_dt[0] : stash == 1 ? OPT_DT_FLOAT : in_dt[0];
    return OPT_OK;
}

static opt_status ln_run(opt_kctx *k, opt_error *err)
{
    const opt_array *X = k->in[0];
    if (!opt_kctx_has(k, 1)) return opt_kerr(k, err, OPT_ERR_INVALID, "missing Scale");
    int64_t axis = opt_node_attr_int(k->node, "axis", -1);
    if (axis < 0) axis += X->ndim;
    if (axis < 0 || axis >= X->ndim)
        return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range for rank %d", X->ndim);
    int64_t rows = 1, cols = 1;
    for (int i = 0; i < X->ndim; i++) {
        if (i < axis) rows *= X->dims[i];
        else cols *= X->dims[i];
    }
    opt_array nshape = {.dtype = X->dtype, .ndim = X->ndim - (int)axis};
    memcpy(nshape.dims, X->dims + axis, sizeof *nshape.dims * (size_t)nshape.ndim);
    opt_bcast wb, bb;
    OPT_TRY(ln_bcast(k, k->in[1], &nshape, cols, &wb, err));
    if (opt_kctx_has(k, 2)) OPT_TRY(ln_bcast(k, k->in[2], &nshape, cols, &bb, err));
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, X->dims, err));
    int64_t rdims[OPT_MAX_DIMS];
    for (int i = 0; i < X->ndim; i++) rdims[i] = i < axis ? X->dims[i] : 1;
    bool has_out[3] = {true, false, false};
    for (size_t i = 1; i < 3 && i < k->n_out; i++)
        if (k->node->n_outputs > i && k->node->outputs[i][0]) {
            int64_t stash = opt_node_attr_int(k->node, "stash_type", 1);
            OPT_TRY(opt_kctx_output(k, i, stash == 1 ? OPT_DT_FLOAT : X->dtype, X->ndim, rdims,
                                    err));
            has_out[i] = true;
        }
    float *t[8] = {0};
    const float *x = nn_f32_in(X, &t[0]), *w = nn_f32_in(k->in[1], &t[1]);
    const float *b = opt_kctx_has(k, 2) ? nn_f32_in(k->in[2], &t[2]) : NULL;
    if (w) w = ln_expand(k->in[1], w, &wb, cols, &t[6]);
    if (b) b = ln_expand(k->in[2], b, &bb, cols, &t[7]);
    float *y = nn_f32_out(&k->out[0], &t[3]);
    float *mean = has_out[1] ? nn_f32_out(&k->out[1], &t[4]) : NULL;
    float *inv = has_out[2] ? nn_f32_out(&k->out[2], &t[5]) : NULL;
    if (!x || !w || (opt_kctx_has(k, 2) && !b) || !y || (has_out[1] && !mean) ||
        (has_out[2] && !inv)) {
        for (int i = 0; i < 8; i++) free(t[i]);
        return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    ln_job j = {x, w, b, y, mean, inv, cols, opt_node_attr_float(k->node, "epsilon", 1e-5f)};
    nn_parallel(rows * cols >= 16384 ? k : NULL, (size_t)rows, ln_rows, &j);
    nn_f32_out_done(&k->out[0], t[3]);
    if (has_out[1]) nn_f32_out_done(&k->out[1], t[4]);
    if (has_out[2]) nn_f32_out_done(&k->out[2], t[5]);
    for (int i = 0; i < 3; i++) free(t[i]);
    free(t[6]);
    free(t[7]);
    return OPT_OK;
}

/* ---- LRN ------------------------------------------------------------------------------------- */

static opt_status lrn_run(opt_kctx *k, opt_error *err)
{
    const opt_array *X = k->in[0];
    if (X->ndim < 2) return opt_kerr(k, err, OPT_ERR_INVALID, "X has rank %d", X->ndim);
    int64_t size = opt_node_attr_int(k->node, "size", 0);
    if (size < 1) return opt_kerr(k, err, OPT_ERR_INVALID, "size must be positive");
    float alpha = opt_node_attr_float(k->node, "alpha", 1e-4f);
    float beta = opt_node_attr_float(k->node, "beta", 0.75f);
    float bias = opt_node_attr_float(k->node, "bias", 1.0f);
    int64_t N = X->dims[0], C = X->dims[1], sz = 1;
    for (int i = 2; i < X->ndim; i++) sz *= X->dims[i];
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, X->dims, err));
    float *tx, *ty;
    const float *x = nn_f32_in_k(k, X, &tx);
    float *y = nn_f32_out_k(k, &k->out[0], &ty);
    if (!x || !y) {
        free(tx);
        free(ty);
        return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    int64_t lo = (size - 1) / 2, hi = size - 1 - lo;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            int64_t c0 = c - lo < 0 ? 0 : c - lo, c1 = c + hi >= C ? C - 1 : c + hi;
            for (int64_t i = 0; i < sz; i++) {
                float s = 0;
                for (int64_t q = c0; q <= c1; q++) {
                    float v = x[(n * C + q) * sz + i];
                    s += v * v;
                }
                float v = x[(n * C + c) * sz + i];
                y[(n * C + c) * sz + i] = v / powf(bias + alpha / (float)size * s, beta);
            }
        }
    nn_f32_out_done_k(k, &k->out[0], y, ty);
    free(tx);
    return OPT_OK;
}

/* ---- Softmax and LogSoftmax ------------------------------------------------------------------ */

typedef struct sm_job {
    const float *x;
    float *y;
    int64_t len, inner;
    bool log;
} sm_job;

/* One contiguous row: the same steps as the strided loop below, with nn_expf so the loop
 * vectorises, and the maximum and sum kept in 16 lanes (a fixed order: deterministic). */
static NN_VEC void sm_row(const float *restrict x, float *restrict y, int64_t n, bool lg)
{
    float mx[16];
    for (int l = 0; l < 16; l++) mx[l] = -INFINITY;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) mx[l] = x[i + l] > mx[l] ? x[i + l] : mx[l];
    float m = -INFINITY;
    for (int l = 0; l < 16; l++) m = mx[l] > m ? mx[l] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    if (m == -INFINITY) m = 0;
    for (i = 0; i < n; i++) y[i] = nn_expf(x[i] - m);
    double sl[16] = {0}, s = 0;
    for (i = 0; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) sl[l] += y[i + l];
    for (int l = 0; l < 16; l++) s += sl[l];
    for (; i < n; i++) s += y[i];
    if (lg) {
        float ls = (float)log(s);
        for (i = 0; i < n; i++) y[i] = x[i] - m - ls;
    } else {
        float inv = (float)(1.0 / s);
        for (i = 0; i < n; i++) y[i] *= inv;
    }
}

static void sm_rows(void *ctx, size_t begin, size_t end)
{
    const sm_job *j = ctx;
    if (j->inner == 1 && j->x != j->y) {
        for (size_t r = begin; r < end; r++)
            sm_row(j->x + (int64_t)r * j->len, j->y + (int64_t)r * j->len, j->len, j->log);
        return;
    }
    for (size_t r = begin; r < end; r++) {
        int64_t o = (int64_t)r / j->inner, in = (int64_t)r % j->inner;
        const float *x = j->x + o * j->len * j->inner + in;
        float *y = j->y + o * j->len * j->inner + in;
        int64_t st = j->inner;
        float m = -INFINITY;
        for (int64_t i = 0; i < j->len; i++)
            if (x[i * st] > m) m = x[i * st];
        if (m == -INFINITY) m = 0; /* all -inf: keep exp finite (result NaN-free 0/0 avoided) */
        double s = 0;
        if (j->log) {
            for (int64_t i = 0; i < j->len; i++) s += expf(x[i * st] - m);
            float ls = (float)log(s);
            for (int64_t i = 0; i < j->len; i++) y[i * st] = x[i * st] - m - ls;
        } else {
            for (int64_t i = 0; i < j->len; i++) {
                float e = expf(x[i * st] - m);
                y[i * st] = e;
                s += e;
            }
            float inv = (float)(1.0 / s);
            for (int64_t i = 0; i < j->len; i++) y[i * st] *= inv;
        }
    }
}

static opt_status softmax_common(opt_kctx *k, opt_error *err, bool log)
{
    const opt_array *X = k->in[0];
    int r = X->ndim;
    int64_t axis = opt_node_attr_int(k->node, "axis", k->opset >= 13 ? -1 : 1);
    if (r == 0) {
        if (axis != 0 && axis != -1) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    } else {
        if (axis < 0) axis += r;
        if (axis < 0 || axis >= r)
            return opt_kerr(k, err, OPT_ERR_INVALID, "axis %lld out of range for rank %d",
                            (long long)opt_node_attr_int(k->node, "axis", 0), r);
    }
    int64_t outer = 1, len = 1, inner = 1;
    for (int i = 0; i < r; i++) {
        if (i < axis) outer *= X->dims[i];
        else if (i == axis || k->opset < 13) len *= X->dims[i];
        else inner *= X->dims[i];
    }
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, X->dims, err));
    if (!opt_array_numel(X)) return OPT_OK;
    float *tx, *ty;
    const float *x = nn_f32_in_k(k, X, &tx);
    float *y = nn_f32_out_k(k, &k->out[0], &ty);
    if (!x || !y) {
        free(tx);
        free(ty);
        return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    sm_job j = {x, y, len, inner, log};
    nn_parallel(outer * len * inner >= 16384 ? k : NULL, (size_t)(outer * inner), sm_rows, &j);
    nn_f32_out_done_k(k, &k->out[0], y, ty);
    free(tx);
    return OPT_OK;
}

static opt_status softmax_run(opt_kctx *k, opt_error *err)
{
    return softmax_common(k, err, false);
}

static opt_status logsoftmax_run(opt_kctx *k, opt_error *err)
{
    return softmax_common(k, err, true);
}

static opt_status bn_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                           int *out_dt, size_t n_out, opt_error *err)
{
    for (size_t i = 0; i < n_out; i++) out_dt[i] = i == 0 ? in_dt[0] : in_dt[n_in > 3 ? 3 : 0];
    return OPT_OK;
}

const opt_kernel opt_kernels_norm[] = {
    {"", "BatchNormalization", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, bn_infer,
     bn_prepare, bn_run, bn_release},
    {"", "LayerNormalization", 17, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, ln_infer, NULL,
     ln_run, NULL},
    {"", "LRN", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, NULL, lrn_run, NULL},
    {"", "Softmax", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, NULL, softmax_run, NULL},
    {"", "LogSoftmax", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, NULL, logsoftmax_run,
     NULL},
    {0},
};
