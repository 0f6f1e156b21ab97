/*
 * libopt/exec/cpu/reduce.c — reductions (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
 * ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp), ArgMax/ArgMin and TopK.
 *
 * Axes come from the attribute before the opset that moved them to an input (13 for ReduceSum,
 * 18 for the others). Reductions accumulate in double, in index order, so the result does not
 * depend on the thread count; output elements are split across threads.
 */
#include "libopt/exec/cpu/convert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXD OPT_MAX_DIMS

enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_SUMSQ, R_LOGSUM, R_LOGSUMEXP };

typedef struct rop {
    const char *op;
    int kind;
    int axes_input_since;
} rop;

static const rop rops[] = {
    {"ReduceSum", R_SUM, 13}, {"ReduceMean", R_MEAN, 18}, {"ReduceMax", R_MAX, 18},
    {"ReduceMin", R_MIN, 18}, {"ReduceProd", R_PROD, 18}, {"ReduceL1", R_L1, 18},
    {"ReduceL2", R_L2, 18}, {"ReduceSumSquare", R_SUMSQ, 18}, {"ReduceLogSum", R_LOGSUM, 18},
    {"ReduceLogSumExp", R_LOGSUMEXP, 18},
};

typedef struct rjob {
    int kind;
    const opt_array *x;
    opt_array *y;
    int nk, nr;                 /* kept and reduced dims */
    int64_t kd[MAXD], ks[MAXD]; /* kept dims and their input strides */
    int64_t rd[MAXD], rs[MAXD]; /* reduced dims and strides */
    uint64_t rcount;
} rjob;

static double load(const opt_array *x, int64_t i)
{
    switch (x->dtype) {
    case OPT_DT_FLOAT: return ((const float *)x->data)[i];
    case OPT_DT_DOUBLE: return ((const double *)x->data)[i];
    default: return opt_array_get(x, (uint64_t)i);
    }
}

static void reduce_part(void *ctx, size_t b, size_t e)
{
    const rjob *j = ctx;
    for (size_t o = b; o < e; o++) {
        int64_t base = 0;
        uint64_t r = o;
        for (int d = j->nk - 1; d >= 0; d--) {
            base += (int64_t)(r % (uint64_t)j->kd[d]) * j->ks[d];
            r /= (uint64_t)j->kd[d];
        }
        double acc, mx = -INFINITY;
        switch (j->kind) {
        case R_MAX: acc = -INFINITY; break;
        case R_MIN: acc = INFINITY; break;
        case R_PROD: acc = 1; break;
        default: acc = 0;
        }
        if (j->kind == R_LOGSUMEXP) { /* max first, for a stable log-sum-exp */
            int64_t idx[MAXD] = {0}, off = base;
            for (uint64_t c = 0; c < j->rcount; c++) {
                double v = load(j->x, off);
                if (v > mx) mx = v;
                for (int d = j->nr - 1; d >= 0; d--) {
                    off += j->rs[d];
                    if (++idx[d] < j->rd[d]) break;
                    off -= idx[d] * j->rs[d];
                    idx[d] = 0;
                }
            }
            if (isinf(mx)) mx = 0;
        }
        int64_t idx[MAXD] = {0}, off = base;
        bool nan = false;
        for (uint64_t c = 0; c < j->rcount; c++) {
            double v = load(j->x, off);
            switch (j->kind) {
            case R_SUM: case R_MEAN: case R_LOGSUM: acc += v; break;
            case R_MAX: if (v > acc) acc = v; if (v != v) nan = true; break;
            case R_MIN: if (v < acc) acc = v; if (v != v) nan = true; break;
            case R_PROD: acc *= v; break;
            case R_L1: acc += fabs(v); break;
            case R_L2: case R_SUMSQ: acc += v * v; break;
            case R_LOGSUMEXP: acc += exp(v - mx); break;
            }
            for (int d = j->nr - 1; d >= 0; d--) {
                off += j->rs[d];
                if (++idx[d] < j->rd[d]) break;
                off -= idx[d] * j->rs[d];
                idx[d] = 0;
            }
        }
        if (nan) acc = NAN;
        switch (j->kind) {
        case R_MEAN: acc = j->rcount ? acc / (double)j->rcount : NAN; break;
        case R_L2: acc = sqrt(acc); break;
        case R_LOGSUM: acc = log(acc); break;
        case R_LOGSUMEXP: acc = log(acc) + mx; break;
        default: break;
        }
        opt_cvt_from_f64(&acc, (char *)j->y->data + o * (size_t)(opt_dtype_bits(j->y->dtype) / 8), j->y->dtype, 1);
    }
}

static bool norm_axis(int64_t *a, int r)
{
    if (*a < 0) *a += r;
    return *a >= 0 && *a < r;
}

static opt_status reduce_run(opt_kctx *k, opt_error *err)
{
    const rop *op = NULL;
    for (size_t i = 0; i < sizeof rops / sizeof rops[0]; i++)
        if (strcmp(rops[i].op, k->node->op_type) == 0) op = &rops[i];
    const opt_array *x = k->in[0];
    int nd = x->ndim;
    int64_t axes[MAXD];
    size_t na = 0;
    bool given = false;
    if (k->opset < op->axes_input_since) {
        const opt_attr *a = opt_node_attr(k->node, "axes");
        if (a && a->n_ints) { /* an empty list has no array: no memcpy from NULL */
            if (a->n_ints > MAXD) return opt_kerr(k, err, OPT_ERR_INVALID, "too many axes");
            memcpy(axes, a->ints, a->n_ints * sizeof *axes);
            na = a->n_ints;
            given = na > 0;
        }
    } else if (opt_kctx_has(k, 1)) {
        const opt_array *a = k->in[1];
        uint64_t m = opt_array_numel(a);
        if (m > MAXD || (a->dtype != OPT_DT_INT64 && a->dtype != OPT_DT_INT32))
            return opt_kerr(k, err, OPT_ERR_INVALID, "axes must be at most %d int64 values", MAXD);
        for (uint64_t i = 0; i < m; i++) axes[i] = opt_array_int(a, i);
        na = (size_t)m;
        given = na > 0;
    }
    bool keep = opt_node_attr_int(k->node, "keepdims", 1) != 0;
    bool noop = opt_node_attr_int(k->node, "noop_with_empty_axes", 0) != 0;
    bool red[MAXD] = {false};
    if (!given) {
        if (noop && k->opset >= op->axes_input_since) {
            /* No reduction at all: the input, as is. */
            OPT_TRY(opt_kctx_output(k, 0, x->dtype, nd, x->dims, err));
            memcpy(k->out[0].data, x->data, x->nbytes);
            return OPT_OK;
        }
        for (int i = 0; i < nd; i++) red[i] = true;
    }
    for (size_t i = 0; i < na; i++) {
        if (!norm_axis(&axes[i], nd)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
        red[axes[i]] = true;
    }
    rjob j = {.kind = op->kind, .x = x, .rcount = 1};
    int64_t od[MAXD], s = 1, str[MAXD];
    int on = 0;
    for (int d = nd - 1; d >= 0; d--) {
        str[d] = s;
        s *= x->dims[d];
    }
    for (int d = 0; d < nd; d++) {
        if (red[d]) {
            j.rd[j.nr] = x->dims[d];
            j.rs[j.nr++] = str[d];
            j.rcount *= (uint64_t)(x->dims[d] < 0 ? 0 : x->dims[d]);
            if (keep) od[on++] = 1;
        } else {
            j.kd[j.nk] = x->dims[d];
            j.ks[j.nk++] = str[d];
            od[on++] = x->dims[d];
        }
    }
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, on, od, err));
    j.y = &k->out[0];
    uint64_t n = opt_array_numel(j.y);
    if (n * j.rcount < 65536) reduce_part(&j, 0, (size_t)n);
    else opt_parallel_for(k, (size_t)n, reduce_part, &j);
    return OPT_OK;
}

/* ==== ArgMax / ArgMin ====================================================================== */

static opt_status infer_int64(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                              size_t n_out, opt_error *err)
{
    for (size_t i = 0; i < n_out; i++) out_dt[i] = OPT_DT_INT64;
    return OPT_OK;
}

static opt_status arg_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    bool is_max = strcmp(k->node->op_type, "ArgMax") == 0;
    int64_t axis = opt_node_attr_int(k->node, "axis", 0);
    bool keep = opt_node_attr_int(k->node, "keepdims", 1) != 0;
    bool last = opt_node_attr_int(k->node, "select_last_index", 0) != 0;
    if (!norm_axis(&axis, x->ndim)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    int64_t od[MAXD];
    int on = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != axis) od[on++] = x->dims[d];
        else if (keep) od[on++] = 1;
    OPT_TRY(opt_kctx_output(k, 0, OPT_DT_INT64, on, od, err));
    uint64_t outer = 1, inner = 1;
    int64_t dim = x->dims[axis];
    for (int d = 0; d < axis; d++) outer *= (uint64_t)x->dims[d];
    for (int d = (int)axis + 1; d < x->ndim; d++) inner *= (uint64_t)x->dims[d];
    int64_t *y = k->out[0].data;
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t i = 0; i < inner; i++) {
            int64_t best = 0;
            double bv = 0;
            for (int64_t c = 0; c < dim; c++) {
                double v = load(x, (int64_t)((o * (uint64_t)dim + (uint64_t)c) * inner + i));
                bool better = c == 0 || (is_max ? (last ? v >= bv : v > bv) : (last ? v <= bv : v < bv));
                if (better) {
                    best = c;
                    bv = v;
                }
            }
            y[o * inner + i] = best;
        }
    return OPT_OK;
}

/* ==== TopK ================================================================================= */

typedef struct kv {
    double v;
    int64_t i;
} kv;

static int cmp_large(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int cmp_small(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static opt_status infer_topk(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                             size_t n_out, opt_error *err)
{
    out_dt[0] = in_dt[0];
    if (n_out > 1) out_dt[1] = OPT_DT_INT64;
    return OPT_OK;
}

static opt_status topk_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int64_t axis = opt_node_attr_int(k->node, "axis", -1);
    if (!norm_axis(&axis, x->ndim)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    int64_t kk;
    if (k->opset < 10) kk = opt_node_attr_int(k->node, "k", -1);
    else {
        if (!opt_kctx_has(k, 1) || opt_array_numel(k->in[1]) != 1)
            return opt_kerr(k, err, OPT_ERR_INVALID, "K must be a 1-element tensor");
        kk = opt_array_int(k->in[1], 0);
    }
    int64_t dim = x->dims[axis];
    if (kk < 0 || kk > dim) return opt_kerr(k, err, OPT_ERR_INVALID, "K=%lld outside [0, %lld]", (long long)kk, (long long)dim);
    bool largest = opt_node_attr_int(k->node, "largest", 1) != 0;
    int64_t od[MAXD];
    memcpy(od, x->dims, sizeof od);
    od[axis] = kk;
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, x->ndim, od, err));
    if (k->n_out > 1) OPT_TRY(opt_kctx_output(k, 1, OPT_DT_INT64, x->ndim, od, err));
    uint64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++) outer *= (uint64_t)x->dims[d];
    for (int d = (int)axis + 1; d < x->ndim; d++) inner *= (uint64_t)x->dims[d];
    kv *buf = opt_kctx_scratch(k, (size_t)(dim ? dim : 1) * sizeof *buf, err);
    if (!buf) return err ? err->status : OPT_ERR_NOMEM;
    size_t es = (size_t)opt_dtype_bits(x->dtype) / 8;
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t i = 0; i < inner; i++) {
            for (int64_t c = 0; c < dim; c++) {
                buf[c].v = load(x, (int64_t)((o * (uint64_t)dim + (uint64_t)c) * inner + i));
                buf[c].i = c;
            }
            /* Ties keep the lower index first, as the spec asks; the sort is then total. */
            qsort(buf, (size_t)dim, sizeof *buf, largest ? cmp_large : cmp_small);
            for (int64_t c = 0; c < kk; c++) {
                uint64_t oi = (o * (uint64_t)kk + (uint64_t)c) * inner + i;
                uint64_t xi = (o * (uint64_t)dim + (uint64_t)buf[c].i) * inner + i;
                memcpy((char *)k->out[0].data + oi * es, (const char *)x->data + xi * es, es);
                if (k->n_out > 1) ((int64_t *)k->out[1].data)[oi] = buf[c].i;
            }
        }
    return OPT_OK;
}

/* ==== the table ============================================================================= */

#define NUM OPT_DTS_NUMERIC
#define K(OP, SINCE, INFER, RUN) {"", OP, SINCE, INT_MAX, NUM, 0, OPT_DEVICE_CPU, INFER, NULL, RUN, NULL}

const opt_kernel opt_kernels_reduce[] = {
    K("ReduceSum", 1, NULL, reduce_run),
    K("ReduceMean", 1, NULL, reduce_run),
    K("ReduceMax", 1, NULL, reduce_run),
    K("ReduceMin", 1, NULL, reduce_run),
    K("ReduceProd", 1, NULL, reduce_run),
    K("ReduceL1", 1, NULL, reduce_run),
    K("ReduceL2", 1, NULL, reduce_run),
    K("ReduceSumSquare", 1, NULL, reduce_run),
    K("ReduceLogSum", 1, NULL, reduce_run),
    K("ReduceLogSumExp", 1, NULL, reduce_run),
    K("ArgMax", 1, infer_int64, arg_run),
    K("ArgMin", 1, infer_int64, arg_run),
    K("TopK", 1, infer_topk, topk_run),
    {0},
};
