/*
 * libopt/exec/cpu/shape.c — ops that move data without arithmetic: Reshape, Flatten, Squeeze,
 * Unsqueeze, Identity, Dropout (inference; aliases of their input), Transpose, Concat, Split,
 * Slice, Gather, Expand, Tile, Pad, Shape, Size, Constant, ConstantOfShape, Range, Cast, CastLike.
 *
 * Every index that comes from the model or an input (axes, starts/ends, gather indices, pads,
 * repeats) is checked or clamped before it is used, so a crafted model cannot make a kernel
 * read or write outside its buffers; it fails naming the node instead.
 */
#include "libopt/exec/cpu/bcast.h"
#include "libopt/exec/cpu/convert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXD OPT_MAX_DIMS

static size_t esize(int dt)
{
    return (size_t)opt_dtype_bits(dt) / 8;
}

/* Normalises axis a for rank r (negative counts from the end); false when out of range. */
static bool norm_axis(int64_t *a, int r)
{
    if (*a < 0) *a += r;
    return *a >= 0 && *a < r;
}

/* Reads a 1-D int tensor (a shape or axes input) into v (at most max values). */
static opt_status read_ints(opt_kctx *k, const opt_array *a, int64_t *v, size_t max, size_t *n,
                            const char *what, opt_error *err)
{
    if (a->dtype != OPT_DT_INT64 && a->dtype != OPT_DT_INT32)
        return opt_kerr(k, err, OPT_ERR_INVALID, "%s must be int64 or int32", what);
    uint64_t m = opt_array_numel(a);
    if (m > max) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "%s has %llu values (at most %zu)", what,
                                 (unsigned long long)m, max);
    for (uint64_t i = 0; i < m; i++) v[i] = opt_array_int(a, i);
    *n = (size_t)m;
    return OPT_OK;
}

/* Axes from the attribute (before `input_since`) or from input `idx` (from then on). */
static opt_status get_axes(opt_kctx *k, int input_since, size_t idx, int64_t *axes, size_t *n,
                           bool *given, opt_error *err)
{
    *n = 0;
    *given = false;
    if (k->opset < input_since) {
        const opt_attr *a = opt_node_attr(k->node, "axes");
        if (!a) return OPT_OK;
        if (a->n_ints > MAXD) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "too many axes");
        for (size_t i = 0; i < a->n_ints; i++) axes[i] = a->ints[i];
        *n = a->n_ints;
        *given = true;
        return OPT_OK;
    }
    if (!opt_kctx_has(k, idx)) return OPT_OK;
    *given = true;
    return read_ints(k, k->in[idx], axes, MAXD, n, "axes", err);
}

/* ==== aliases: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout ===================== */

static opt_status reshape_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int64_t sh[MAXD];
    size_t n;
    if (k->opset < 5) {
        const opt_attr *a = opt_node_attr(k->node, "shape");
        if (!a || a->n_ints > MAXD) return opt_kerr(k, err, OPT_ERR_INVALID, "bad shape attribute");
        n = a->n_ints;
        memcpy(sh, a->ints, n * sizeof *sh);
    } else {
        if (!opt_kctx_has(k, 1)) return opt_kerr(k, err, OPT_ERR_INVALID, "shape input missing");
        OPT_TRY(read_ints(k, k->in[1], sh, MAXD, &n, "shape", err));
    }
    bool allowzero = k->opset >= 14 && opt_node_attr_int(k->node, "allowzero", 0);
    int neg = -1;
    uint64_t known = 1;
    for (size_t i = 0; i < n; i++) {
        if (sh[i] == 0 && !allowzero) {
            if ((int)i >= x->ndim) return opt_kerr(k, err, OPT_ERR_INVALID, "shape[%zu] = 0 copies a missing dim", i);
            sh[i] = x->dims[i];
        }
        if (sh[i] == -1) {
            if (neg >= 0) return opt_kerr(k, err, OPT_ERR_INVALID, "more than one -1 in shape");
            neg = (int)i;
            continue;
        }
        if (sh[i] < 0) return opt_kerr(k, err, OPT_ERR_INVALID, "negative dim %lld in shape", (long long)sh[i]);
        known *= (uint64_t)sh[i];
    }
    uint64_t total = opt_array_numel(x);
    if (neg >= 0) {
        if (known == 0 || total % known)
            return opt_kerr(k, err, OPT_ERR_INVALID, "cannot infer the -1 dim (%llu elements)", (unsigned long long)total);
        sh[neg] = (int64_t)(total / known);
    } else if (known != total) {
        return opt_kerr(k, err, OPT_ERR_INVALID, "shape has %llu elements, input %llu",
                        (unsigned long long)known, (unsigned long long)total);
    }
    return opt_kctx_output_alias(k, 0, 0, (int)n, sh, err);
}

static opt_status flatten_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int64_t axis = opt_node_attr_int(k->node, "axis", 1);
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis > x->ndim) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    int64_t d[2] = {1, 1};
    for (int i = 0; i < x->ndim; i++) d[i < axis ? 0 : 1] *= x->dims[i];
    return opt_kctx_output_alias(k, 0, 0, 2, d, err);
}

static opt_status squeeze_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int64_t axes[MAXD], d[MAXD];
    size_t n;
    bool given;
    OPT_TRY(get_axes(k, 13, 1, axes, &n, &given, err));
    bool drop[MAXD] = {false};
    if (!given || n == 0) {
        for (int i = 0; i < x->ndim; i++) drop[i] = x->dims[i] == 1;
    } else {
        for (size_t i = 0; i < n; i++) {
            if (!norm_axis(&axes[i], x->ndim)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
            if (x->dims[axes[i]] != 1) return opt_kerr(k, err, OPT_ERR_INVALID, "cannot squeeze dim %lld of size %lld",
                                                       (long long)axes[i], (long long)x->dims[axes[i]]);
            drop[axes[i]] = true;
        }
    }
    int r = 0;
    for (int i = 0; i < x->ndim; i++)
        if (!drop[i]) d[r++] = x->dims[i];
    return opt_kctx_output_alias(k, 0, 0, r, d, err);
}

static opt_status unsqueeze_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int64_t axes[MAXD], d[MAXD];
    size_t n;
    bool given;
    OPT_TRY(get_axes(k, 13, 1, axes, &n, &given, err));
    if (!given) return opt_kerr(k, err, OPT_ERR_INVALID, "axes missing");
    int r = x->ndim + (int)n;
    if (r > MAXD) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "rank %d (at most %d)", r, MAXD);
    bool ins[MAXD] = {false};
    for (size_t i = 0; i < n; i++) {
        if (!norm_axis(&axes[i], r) || ins[axes[i]]) return opt_kerr(k, err, OPT_ERR_INVALID, "bad axes");
        ins[axes[i]] = true;
    }
    for (int i = 0, j = 0; i < r; i++) d[i] = ins[i] ? 1 : x->dims[j++];
    return opt_kctx_output_alias(k, 0, 0, r, d, err);
}

static opt_status identity_run(opt_kctx *k, opt_error *err)
{
    return opt_kctx_output_alias(k, 0, 0, k->in[0]->ndim, k->in[0]->dims, err);
}

static opt_status dropout_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    bool training = false;
    float ratio = opt_node_attr_float(k->node, "ratio", 0.5f);
    if (k->opset >= 12) {
        if (opt_kctx_has(k, 2)) training = opt_array_get(k->in[2], 0) != 0;
        ratio = opt_kctx_has(k, 1) ? (float)opt_array_get(k->in[1], 0) : 0.5f;
    } else if (k->opset < 7) {
        training = !opt_node_attr_int(k->node, "is_test", 0);
    }
    if (training && ratio != 0)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "training-mode dropout is not supported (inference only)");
    OPT_TRY(opt_kctx_output_alias(k, 0, 0, x->ndim, x->dims, err));
    if (k->n_out > 1) {
        OPT_TRY(opt_kctx_output(k, 1, k->out_dt[1], x->ndim, x->dims, err));
        uint64_t n = opt_array_numel(x);
        if (k->out_dt[1] == OPT_DT_BOOL) memset(k->out[1].data, 1, (size_t)n);
        else for (uint64_t i = 0; i < n; i++) opt_store_f32(k->out[1].data, k->out_dt[1], i, 1.0f);
    }
    return OPT_OK;
}

static opt_status infer_dropout(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                                int *out_dt, size_t n_out, opt_error *err)
{
    out_dt[0] = in_dt[0];
    if (n_out > 1) out_dt[1] = opset >= 10 ? OPT_DT_BOOL : in_dt[0];
    return OPT_OK;
}

/* ==== Transpose ============================================================================= */

typedef struct tjob {
    const char *x;
    char *y;
    size_t es;
    int nd;
    int64_t odims[MAXD], istr[MAXD]; /* input element strides in output dim order */
} tjob;

static void transpose_part(void *ctx, size_t b, size_t e)
{
    const tjob *j = ctx;
    int nd = j->nd, last = nd - 1;
    int64_t idx[MAXD], off = 0;
    uint64_t r = b;
    for (int d = last; d >= 0; d--) {
        idx[d] = (int64_t)(r % (uint64_t)j->odims[d]);
        r /= (uint64_t)j->odims[d];
        off += idx[d] * j->istr[d];
    }
    size_t es = j->es;
    int64_t s = j->istr[last];
    for (size_t o = b; o < e;) {
        size_t len = (size_t)(j->odims[last] - idx[last]);
        if (len > e - o) len = e - o;
        const char *src = j->x + (size_t)off * es;
        char *dst = j->y + o * es;
        if (s == 1) memcpy(dst, src, len * es);
        else switch (es) {
        case 1: for (size_t i = 0; i < len; i++) ((uint8_t *)dst)[i] = ((const uint8_t *)src)[(int64_t)i * s]; break;
        case 4: for (size_t i = 0; i < len; i++) ((uint32_t *)dst)[i] = ((const uint32_t *)src)[(int64_t)i * s]; break;
        case 8: for (size_t i = 0; i < len; i++) ((uint64_t *)dst)[i] = ((const uint64_t *)src)[(int64_t)i * s]; break;
        case 2: for (size_t i = 0; i < len; i++) ((uint16_t *)dst)[i] = ((const uint16_t *)src)[(int64_t)i * s]; break;
        default: for (size_t i = 0; i < len; i++) memcpy(dst + i * es, src + (int64_t)i * s * (int64_t)es, es);
        }
        o += len;
        idx[last] += (int64_t)len;
        off += (int64_t)len * s;
        for (int d = last; d > 0 && idx[d] == j->odims[d]; d--) {
            off -= idx[d] * j->istr[d];
            idx[d] = 0;
            idx[d - 1]++;
            off += j->istr[d - 1];
        }
    }
}

static opt_status transpose_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int nd = x->ndim;
    int64_t perm[MAXD];
    const opt_attr *pa = opt_node_attr(k->node, "perm");
    if (pa && pa->n_ints) {
        if ((int)pa->n_ints != nd) return opt_kerr(k, err, OPT_ERR_INVALID, "perm has %zu entries for rank %d", pa->n_ints, nd);
        bool seen[MAXD] = {false};
        for (int i = 0; i < nd; i++) {
            perm[i] = pa->ints[i];
            if (!norm_axis(&perm[i], nd) || seen[perm[i]]) return opt_kerr(k, err, OPT_ERR_INVALID, "bad perm");
            seen[perm[i]] = true;
        }
    } else {
        for (int i = 0; i < nd; i++) perm[i] = nd - 1 - i;
    }
    if (x->dtype == OPT_DT_INT4 || x->dtype == OPT_DT_UINT4 || !esize(x->dtype))
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "dtype %s", opt_dtype_short(x->dtype));
    tjob j = {.x = x->data, .es = esize(x->dtype), .nd = nd > 0 ? nd : 1};
    int64_t str[MAXD], s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        str[d] = s;
        s *= x->dims[d];
    }
    for (int i = 0; i < nd; i++) {
        j.odims[i] = x->dims[perm[i]];
        j.istr[i] = str[perm[i]];
    }
    if (nd == 0) {
        j.odims[0] = 1;
        j.istr[0] = 1;
    }
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, nd, j.odims, err));
    j.y = k->out[0].data;
    uint64_t n = opt_array_numel(x);
    if (n == 0) return OPT_OK;
    if (n < 32768) transpose_part(&j, 0, (size_t)n);
    else opt_parallel_for(k, (size_t)n, transpose_part, &j);
    return OPT_OK;
}

/* ==== Concat, Split ========================================================================= */

static opt_status concat_run(opt_kctx *k, opt_error *err)
{
    const opt_array *first = NULL;
    for (size_t i = 0; i < k->n_in && !first; i++) first = k->in[i];
    if (!first) return opt_kerr(k, err, OPT_ERR_INVALID, "no inputs");
    int nd = first->ndim;
    int64_t axis = opt_node_attr_int(k->node, "axis", k->opset < 4 ? 1 : INT64_MIN);
    if (axis == INT64_MIN) return opt_kerr(k, err, OPT_ERR_INVALID, "axis attribute missing");
    if (!norm_axis(&axis, nd)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    int64_t d[MAXD];
    memcpy(d, first->dims, sizeof d);
    d[axis] = 0;
    for (size_t i = 0; i < k->n_in; i++) {
        const opt_array *a = k->in[i];
        if (!a) continue;
        if (a->ndim != nd || a->dtype != first->dtype)
            return opt_kerr(k, err, OPT_ERR_INVALID, "input %zu has a different rank or dtype", i);
        for (int j = 0; j < nd; j++)
            if (j != axis && a->dims[j] != first->dims[j])
                return opt_kerr(k, err, OPT_ERR_INVALID, "input %zu: dim %d is %lld, not %lld", i, j,
                                (long long)a->dims[j], (long long)first->dims[j]);
        d[axis] += a->dims[axis];
    }
    OPT_TRY(opt_kctx_output(k, 0, first->dtype, nd, d, err));
    size_t es = esize(first->dtype);
    uint64_t outer = 1, inner = 1;
    for (int j = 0; j < axis; j++) outer *= (uint64_t)d[j];
    for (int j = (int)axis + 1; j < nd; j++) inner *= (uint64_t)d[j];
    char *y = k->out[0].data;
    size_t orow = (size_t)(d[axis] * (int64_t)inner) * es;
    size_t off = 0;
    for (size_t i = 0; i < k->n_in; i++) {
        const opt_array *a = k->in[i];
        if (!a) continue;
        size_t row = (size_t)((uint64_t)a->dims[axis] * inner) * es;
        for (uint64_t o = 0; o < outer; o++)
            if (row) memcpy(y + o * orow + off, (const char *)a->data + o * row, row);
        off += row;
    }
    return OPT_OK;
}

static opt_status split_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int nd = x->ndim;
    int64_t axis = opt_node_attr_int(k->node, "axis", 0);
    if (!norm_axis(&axis, nd)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    size_t n = k->n_out;
    int64_t *sp = calloc(n + 1, sizeof *sp);
    if (!sp) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    size_t ns = 0;
    opt_status s = OPT_OK;
    if (k->opset < 13) {
        const opt_attr *a = opt_node_attr(k->node, "split");
        if (a && a->n_ints) {
            if (a->n_ints != n) s = opt_kerr(k, err, OPT_ERR_INVALID, "split has %zu entries for %zu outputs", a->n_ints, n);
            else memcpy(sp, a->ints, n * sizeof *sp), ns = n;
        }
    } else if (opt_kctx_has(k, 1)) {
        const opt_array *a = k->in[1];
        if (opt_array_numel(a) != n) s = opt_kerr(k, err, OPT_ERR_INVALID, "split has %llu entries for %zu outputs",
                                                  (unsigned long long)opt_array_numel(a), n);
        else for (size_t i = 0; i < n; i++) sp[i] = opt_array_int(a, i);
        ns = n;
    }
    int64_t dim = x->dims[axis];
    if (s == OPT_OK && ns == 0) {
        /* Equal parts; opset 18's num_outputs allows a smaller last part (ceil division). */
        int64_t part = (dim + (int64_t)n - 1) / (int64_t)n;
        if (k->opset < 18 && dim % (int64_t)n) s = opt_kerr(k, err, OPT_ERR_INVALID, "dim %lld does not split into %zu equal parts", (long long)dim, n);
        for (size_t i = 0; i < n; i++) {
            int64_t left = dim - part * (int64_t)i;
            sp[i] = left < 0 ? 0 : left < part ? left : part;
        }
    }
    int64_t tot = 0;
    for (size_t i = 0; i < n && s == OPT_OK; i++)
        if (sp[i] < 0 || __builtin_add_overflow(tot, sp[i], &tot)) s = opt_kerr(k, err, OPT_ERR_INVALID, "bad split");
    if (s == OPT_OK && tot != dim) s = opt_kerr(k, err, OPT_ERR_INVALID, "splits sum to %lld, dim is %lld", (long long)tot, (long long)dim);
    size_t es = esize(x->dtype);
    uint64_t outer = 1, inner = 1;
    for (int j = 0; j < axis; j++) outer *= (uint64_t)x->dims[j];
    for (int j = (int)axis + 1; j < nd; j++) inner *= (uint64_t)x->dims[j];
    size_t irow = (size_t)((uint64_t)dim * inner) * es, off = 0;
    for (size_t i = 0; i < n && s == OPT_OK; i++) {
        int64_t d[MAXD];
        memcpy(d, x->dims, sizeof d);
        d[axis] = sp[i];
        s = opt_kctx_output(k, i, x->dtype, nd, d, err);
        if (s != OPT_OK) break;
        size_t row = (size_t)((uint64_t)sp[i] * inner) * es;
        for (uint64_t o = 0; o < outer; o++)
            if (row) memcpy((char *)k->out[i].data + o * row, (const char *)x->data + o * irow + off, row);
        off += row;
    }
    free(sp);
    return s;
}

/* ==== Slice ================================================================================= */

static opt_status slice_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int nd = x->ndim;
    int64_t st[MAXD], en[MAXD], ax[MAXD], sp[MAXD];
    size_t ns, ne, na = 0, nsp = 0;
    if (k->opset < 10) {
        const opt_attr *a = opt_node_attr(k->node, "starts"), *b = opt_node_attr(k->node, "ends"),
                       *c = opt_node_attr(k->node, "axes");
        if (!a || !b || a->n_ints > MAXD || b->n_ints != a->n_ints)
            return opt_kerr(k, err, OPT_ERR_INVALID, "starts/ends attributes missing or mismatched");
        ns = ne = a->n_ints;
        memcpy(st, a->ints, ns * sizeof *st);
        memcpy(en, b->ints, ne * sizeof *en);
        if (c) {
            if (c->n_ints != ns) return opt_kerr(k, err, OPT_ERR_INVALID, "axes length mismatch");
            memcpy(ax, c->ints, ns * sizeof *ax);
            na = ns;
        }
    } else {
        if (!opt_kctx_has(k, 1) || !opt_kctx_has(k, 2)) return opt_kerr(k, err, OPT_ERR_INVALID, "starts/ends missing");
        OPT_TRY(read_ints(k, k->in[1], st, MAXD, &ns, "starts", err));
        OPT_TRY(read_ints(k, k->in[2], en, MAXD, &ne, "ends", err));
        if (opt_kctx_has(k, 3)) OPT_TRY(read_ints(k, k->in[3], ax, MAXD, &na, "axes", err));
        if (opt_kctx_has(k, 4)) OPT_TRY(read_ints(k, k->in[4], sp, MAXD, &nsp, "steps", err));
        if (ne != ns || (na && na != ns) || (nsp && nsp != ns))
            return opt_kerr(k, err, OPT_ERR_INVALID, "starts, ends, axes and steps differ in length");
    }
    if (!na) for (size_t i = 0; i < ns; i++) ax[i] = (int64_t)i;
    if (!nsp) for (size_t i = 0; i < ns; i++) sp[i] = 1;
    int64_t b[MAXD], step[MAXD], od[MAXD];
    bool seen[MAXD] = {false};
    for (int d = 0; d < nd; d++) {
        b[d] = 0;
        step[d] = 1;
        od[d] = x->dims[d];
    }
    for (size_t i = 0; i < ns; i++) {
        int64_t a = ax[i];
        if (!norm_axis(&a, nd) || seen[a]) return opt_kerr(k, err, OPT_ERR_INVALID, "bad or repeated axis");
        seen[a] = true;
        int64_t dim = x->dims[a], s = sp[i], lo = st[i], hi = en[i];
        if (s == 0) return opt_kerr(k, err, OPT_ERR_INVALID, "step 0");
        if (lo < 0) lo = lo < -dim ? -dim - 1 : lo + dim; /* no overflow near INT64_MIN */
        if (hi < 0) hi = hi < -dim ? -dim - 1 : hi + dim;
        if (s == INT64_MIN) s = -INT64_MAX; /* so that -s exists */
        if (s > 0) {
            lo = lo < 0 ? 0 : lo > dim ? dim : lo;
            hi = hi < 0 ? 0 : hi > dim ? dim : hi;
            od[a] = hi > lo ? (hi - lo - 1) / s + 1 : 0;
        } else {
            lo = lo < 0 ? -1 : lo > dim - 1 ? dim - 1 : lo;
            hi = hi < -1 ? -1 : hi > dim - 1 ? dim - 1 : hi;
            od[a] = lo > hi ? (lo - hi - 1) / (-s) + 1 : 0;
        }
        b[a] = lo;
        step[a] = s;
    }
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, nd, od, err));
    uint64_t n = opt_array_numel(&k->out[0]);
    if (n == 0) return OPT_OK;
    size_t es = esize(x->dtype);
    int64_t str[MAXD], s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        str[d] = s;
        s *= x->dims[d];
    }
    /* Walk the output; every index stays inside [0, dim) by construction of b/step/od. */
    int64_t idx[MAXD] = {0};
    int last = nd - 1;
    char *y = k->out[0].data;
    const char *xs = x->data;
    for (uint64_t o = 0; o < n;) {
        int64_t off = 0;
        for (int d = 0; d < last; d++) off += (b[d] + idx[d] * step[d]) * str[d];
        int64_t len = nd ? od[last] : 1;
        if (nd && step[last] == 1) {
            memcpy(y + o * es, xs + (size_t)(off + b[last]) * es, (size_t)len * es);
        } else {
            for (int64_t i = 0; i < len; i++) {
                int64_t xi = nd ? off + (b[last] + i * step[last]) * str[last] : 0;
                memcpy(y + (o + (uint64_t)i) * es, xs + (size_t)xi * es, es);
            }
        }
        o += (uint64_t)len;
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < od[d]) break;
            idx[d] = 0;
        }
    }
    return OPT_OK;
}

/* ==== Gather ================================================================================ */

static opt_status gather_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0], *ix = k->in[1];
    if (!ix) return opt_kerr(k, err, OPT_ERR_INVALID, "indices missing");
    if (ix->dtype != OPT_DT_INT64 && ix->dtype != OPT_DT_INT32)
        return opt_kerr(k, err, OPT_ERR_INVALID, "indices must be int32 or int64");
    int64_t axis = opt_node_attr_int(k->node, "axis", 0);
    if (!norm_axis(&axis, x->ndim)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
    int nd = x->ndim - 1 + ix->ndim;
    if (nd > MAXD) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "output rank %d", nd);
    int64_t d[MAXD];
    int r = 0;
    for (int i = 0; i < axis; i++) d[r++] = x->dims[i];
    for (int i = 0; i < ix->ndim; i++) d[r++] = ix->dims[i];
    for (int i = (int)axis + 1; i < x->ndim; i++) d[r++] = x->dims[i];
    uint64_t outer = 1, inner = 1, ni = opt_array_numel(ix);
    for (int i = 0; i < axis; i++) outer *= (uint64_t)x->dims[i];
    for (int i = (int)axis + 1; i < x->ndim; i++) inner *= (uint64_t)x->dims[i];
    int64_t dim = x->dims[axis];
    for (uint64_t i = 0; i < ni; i++) {
        int64_t v = opt_array_int(ix, i);
        if (v < -dim || v >= dim)
            return opt_kerr(k, err, OPT_ERR_DATA, "index %lld out of range [-%lld, %lld)", (long long)v,
                            (long long)dim, (long long)dim);
    }
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, nd, d, err));
    size_t es = esize(x->dtype), row = (size_t)inner * es;
    char *y = k->out[0].data;
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t i = 0; i < ni; i++) {
            int64_t v = opt_array_int(ix, i);
            if (v < 0) v += dim;
            memcpy(y + (o * ni + i) * row, (const char *)x->data + (o * (uint64_t)dim + (uint64_t)v) * row, row);
        }
    return OPT_OK;
}

/* ==== Expand, Tile ========================================================================== */

typedef struct ejob {
    opt_bcast bc;
    const char *x;
    char *y;
    size_t es;
} ejob;

static void expand_seg(void *ctx, const int64_t *in, const int64_t *st, uint64_t out, uint64_t len)
{
    const ejob *j = ctx;
    if (st[0] == 1) {
        memcpy(j->y + out * j->es, j->x + (size_t)in[0] * j->es, (size_t)len * j->es);
        return;
    }
    for (uint64_t i = 0; i < len; i++)
        memcpy(j->y + (out + i) * j->es, j->x + (size_t)(in[0] + (int64_t)i * st[0]) * j->es, j->es);
}

static void expand_part(void *ctx, size_t b, size_t e)
{
    ejob *j = ctx;
    opt_bcast_walk(&j->bc, b, e, expand_seg, j);
}

static opt_status expand_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    if (!opt_kctx_has(k, 1)) return opt_kerr(k, err, OPT_ERR_INVALID, "shape missing");
    opt_array shp = {.dtype = x->dtype};
    size_t n;
    OPT_TRY(read_ints(k, k->in[1], shp.dims, MAXD, &n, "shape", err));
    shp.ndim = (int)n;
    for (size_t i = 0; i < n; i++)
        if (shp.dims[i] < 0) return opt_kerr(k, err, OPT_ERR_INVALID, "negative dim in shape");
    ejob j = {.x = x->data, .es = esize(x->dtype)};
    const opt_array *pr[2] = {x, &shp};
    OPT_TRY(opt_bcast_init(&j.bc, k, pr, 2, err));
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, j.bc.out_ndim, j.bc.out_dims, err));
    j.y = k->out[0].data;
    if (j.bc.numel < 32768) expand_part(&j, 0, (size_t)j.bc.numel);
    else opt_parallel_for(k, (size_t)j.bc.numel, expand_part, &j);
    return OPT_OK;
}

static opt_status tile_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    if (!opt_kctx_has(k, 1)) return opt_kerr(k, err, OPT_ERR_INVALID, "repeats missing");
    int64_t rep[MAXD], d[MAXD];
    size_t n;
    OPT_TRY(read_ints(k, k->in[1], rep, MAXD, &n, "repeats", err));
    if ((int)n != x->ndim) return opt_kerr(k, err, OPT_ERR_INVALID, "repeats has %zu entries for rank %d", n, x->ndim);
    for (int i = 0; i < x->ndim; i++) {
        if (rep[i] < 0 || __builtin_mul_overflow(x->dims[i], rep[i], &d[i]))
            return opt_kerr(k, err, OPT_ERR_INVALID, "bad repeat %lld", (long long)rep[i]);
    }
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, x->ndim, d, err));
    uint64_t total = opt_array_numel(&k->out[0]);
    size_t es = esize(x->dtype);
    int nd = x->ndim;
    int64_t str[MAXD], s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        str[i] = s;
        s *= x->dims[i];
    }
    int64_t idx[MAXD] = {0};
    char *y = k->out[0].data;
    for (uint64_t o = 0; o < total; o++) {
        int64_t off = 0;
        for (int i = 0; i < nd; i++) off += (idx[i] % x->dims[i]) * str[i];
        memcpy(y + o * es, (const char *)x->data + (size_t)off * es, es);
        for (int i = nd - 1; i >= 0; i--) {
            if (++idx[i] < d[i]) break;
            idx[i] = 0;
        }
    }
    return OPT_OK;
}

/* ==== Pad =================================================================================== */

static opt_status pad_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int nd = x->ndim;
    int64_t pads[2 * MAXD] = {0}, raw[2 * MAXD];
    size_t np = 0;
    double value = 0;
    char mbuf[32];
    const char *mode = opt_kattr_str(k->node, "mode", "constant", mbuf, sizeof mbuf);
    if (k->opset < 11) {
        const opt_attr *a = opt_node_attr(k->node, opt_node_attr(k->node, "pads") ? "pads" : "paddings");
        if (!a || a->n_ints != 2 * (size_t)nd) return opt_kerr(k, err, OPT_ERR_INVALID, "pads must have 2*rank entries");
        memcpy(raw, a->ints, a->n_ints * sizeof *raw);
        np = a->n_ints;
        value = opt_node_attr_float(k->node, "value", 0.0f);
    } else {
        if (!opt_kctx_has(k, 1)) return opt_kerr(k, err, OPT_ERR_INVALID, "pads missing");
        OPT_TRY(read_ints(k, k->in[1], raw, 2 * MAXD, &np, "pads", err));
        if (opt_kctx_has(k, 2) && opt_array_numel(k->in[2]) > 0) value = opt_array_get(k->in[2], 0);
    }
    int64_t axes[MAXD];
    size_t na = 0;
    if (k->opset >= 18 && opt_kctx_has(k, 3)) {
        OPT_TRY(read_ints(k, k->in[3], axes, MAXD, &na, "axes", err));
    } else {
        na = (size_t)nd;
        for (int i = 0; i < nd; i++) axes[i] = i;
    }
    if (np != 2 * na) return opt_kerr(k, err, OPT_ERR_INVALID, "pads has %zu entries for %zu axes", np, na);
    for (size_t i = 0; i < na; i++) {
        int64_t a = axes[i];
        if (!norm_axis(&a, nd)) return opt_kerr(k, err, OPT_ERR_INVALID, "axis out of range");
        pads[a] = raw[i];
        pads[a + nd] = raw[i + na];
    }
    int m = strcmp(mode, "constant") == 0 ? 0 : strcmp(mode, "reflect") == 0 ? 1 : strcmp(mode, "edge") == 0 ? 2
          : strcmp(mode, "wrap") == 0 ? 3 : -1;
    if (m < 0) return opt_kerr(k, err, OPT_ERR_INVALID, "unknown mode '%s'", mode);
    int64_t d[MAXD];
    for (int i = 0; i < nd; i++) {
        if (__builtin_add_overflow(x->dims[i], pads[i], &d[i]) || __builtin_add_overflow(d[i], pads[i + nd], &d[i]))
            return opt_kerr(k, err, OPT_ERR_INVALID, "pads overflow dim %d", i);
        if (d[i] < 0) return opt_kerr(k, err, OPT_ERR_INVALID, "pads make dim %d negative", i);
        if (m != 0 && x->dims[i] == 0 && d[i] > 0)
            return opt_kerr(k, err, OPT_ERR_INVALID, "cannot %s-pad an empty dim", mode);
        if (m == 1 && x->dims[i] == 1 && (pads[i] > 0 || pads[i + nd] > 0))
            return opt_kerr(k, err, OPT_ERR_INVALID, "cannot reflect-pad a dim of size 1");
    }
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, nd, d, err));
    uint64_t total = opt_array_numel(&k->out[0]);
    size_t es = esize(x->dtype);
    unsigned char fill[16] = {0};
    {
        double v = value;
        opt_cvt_from_f64(&v, fill, x->dtype, 1);
    }
    int64_t str[MAXD], s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        str[i] = s;
        s *= x->dims[i];
    }
    int64_t idx[MAXD] = {0};
    char *y = k->out[0].data;
    for (uint64_t o = 0; o < total; o++) {
        int64_t off = 0;
        bool in = true;
        for (int i = 0; i < nd && in; i++) {
            int64_t c = idx[i] - pads[i], n = x->dims[i];
            if (c < 0 || c >= n) {
                if (m == 0) in = false;
                else if (m == 2) c = c < 0 ? 0 : n - 1;
                else if (m == 3) c = ((c % n) + n) % n;
                else {
                    /* reflect without repeating the edge, folding as often as needed */
                    int64_t p = 2 * (n - 1);
                    c = ((c % p) + p) % p;
                    if (c >= n) c = p - c;
                }
            }
            off += c * str[i];
        }
        if (in) memcpy(y + o * es, (const char *)x->data + (size_t)off * es, es);
        else memcpy(y + o * es, fill, es);
        for (int i = nd - 1; i >= 0; i--) {
            if (++idx[i] < d[i]) break;
            idx[i] = 0;
        }
    }
    return OPT_OK;
}

/* ==== Shape, Size =========================================================================== */

static opt_status shape_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    int64_t r = x->ndim, b = 0, e = r;
    if (k->opset >= 15) {
        b = opt_node_attr_int(k->node, "start", 0);
        e = opt_node_attr_int(k->node, "end", r);
        if (b < 0) b += r;
        if (e < 0) e += r;
        b = b < 0 ? 0 : b > r ? r : b;
        e = e < 0 ? 0 : e > r ? r : e;
    }
    int64_t n = e > b ? e - b : 0;
    OPT_TRY(opt_kctx_output(k, 0, OPT_DT_INT64, 1, &n, err));
    for (int64_t i = 0; i < n; i++) ((int64_t *)k->out[0].data)[i] = x->dims[b + i];
    return OPT_OK;
}

static opt_status size_run(opt_kctx *k, opt_error *err)
{
    OPT_TRY(opt_kctx_output(k, 0, OPT_DT_INT64, 0, NULL, err));
    *(int64_t *)k->out[0].data = (int64_t)opt_array_numel(k->in[0]);
    return OPT_OK;
}

static opt_status infer_int64(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                              size_t n_out, opt_error *err)
{
    for (size_t i = 0; i < n_out; i++) out_dt[i] = OPT_DT_INT64;
    return OPT_OK;
}

/* ==== Constant, ConstantOfShape ============================================================= */

static opt_status infer_constant(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                                 int *out_dt, size_t n_out, opt_error *err)
{
    const opt_attr *a;
    if ((a = opt_node_attr(n, "value")) && a->t) out_dt[0] = a->t->data_type;
    else if (opt_node_attr(n, "value_float") || opt_node_attr(n, "value_floats")) out_dt[0] = OPT_DT_FLOAT;
    else if (opt_node_attr(n, "value_int") || opt_node_attr(n, "value_ints")) out_dt[0] = OPT_DT_INT64;
    else return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "only tensor, float(s) and int(s) values are supported");
    return OPT_OK;
}

static opt_status constant_run(opt_kctx *k, opt_error *err)
{
    const opt_attr *a;
    if ((a = opt_node_attr(k->node, "value")) && a->t) {
        opt_array t;
        OPT_TRY(opt_array_from_tensor(a->t, &t, err));
        opt_status s = opt_kctx_output(k, 0, t.dtype, t.ndim, t.dims, err);
        if (s == OPT_OK && t.nbytes) memcpy(k->out[0].data, t.data, t.nbytes);
        opt_array_free(&t);
        return s;
    }
    if ((a = opt_node_attr(k->node, "value_float"))) {
        OPT_TRY(opt_kctx_output(k, 0, OPT_DT_FLOAT, 0, NULL, err));
        *(float *)k->out[0].data = a->f;
        return OPT_OK;
    }
    if ((a = opt_node_attr(k->node, "value_int"))) {
        OPT_TRY(opt_kctx_output(k, 0, OPT_DT_INT64, 0, NULL, err));
        *(int64_t *)k->out[0].data = a->i;
        return OPT_OK;
    }
    if ((a = opt_node_attr(k->node, "value_floats"))) {
        int64_t n = (int64_t)a->n_floats;
        OPT_TRY(opt_kctx_output(k, 0, OPT_DT_FLOAT, 1, &n, err));
        if (n) memcpy(k->out[0].data, a->floats, (size_t)n * 4);
        return OPT_OK;
    }
    if ((a = opt_node_attr(k->node, "value_ints"))) {
        int64_t n = (int64_t)a->n_ints;
        OPT_TRY(opt_kctx_output(k, 0, OPT_DT_INT64, 1, &n, err));
        if (n) memcpy(k->out[0].data, a->ints, (size_t)n * 8);
        return OPT_OK;
    }
    return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "no supported value attribute");
}

static opt_status infer_cos(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                            size_t n_out, opt_error *err)
{
    const opt_attr *a = opt_node_attr(n, "value");
    out_dt[0] = a && a->t ? a->t->data_type : OPT_DT_FLOAT;
    return OPT_OK;
}

static opt_status constantofshape_run(opt_kctx *k, opt_error *err)
{
    int64_t d[MAXD];
    size_t n;
    OPT_TRY(read_ints(k, k->in[0], d, MAXD, &n, "shape", err));
    for (size_t i = 0; i < n; i++)
        if (d[i] < 0) return opt_kerr(k, err, OPT_ERR_INVALID, "negative dim in shape");
    const opt_attr *a = opt_node_attr(k->node, "value");
    opt_array v = {0};
    if (a && a->t) {
        OPT_TRY(opt_array_from_tensor(a->t, &v, err));
        if (opt_array_numel(&v) != 1) {
            opt_array_free(&v);
            return opt_kerr(k, err, OPT_ERR_INVALID, "value must have one element");
        }
    }
    int dt = a && a->t ? v.dtype : OPT_DT_FLOAT;
    opt_status s = opt_kctx_output(k, 0, dt, (int)n, d, err);
    if (s == OPT_OK) {
        size_t es = esize(dt);
        uint64_t total = opt_array_numel(&k->out[0]);
        char *y = k->out[0].data;
        if (!v.data) memset(y, 0, (size_t)total * es);
        else for (uint64_t i = 0; i < total; i++) memcpy(y + i * es, v.data, es);
    }
    opt_array_free(&v);
    return s;
}

/* ==== Range ================================================================================= */

static opt_status range_run(opt_kctx *k, opt_error *err)
{
    for (int i = 0; i < 3; i++)
        if (!opt_kctx_has(k, (size_t)i) || opt_array_numel(k->in[i]) != 1)
            return opt_kerr(k, err, OPT_ERR_INVALID, "start, limit and delta must be scalars");
    int dt = k->in[0]->dtype;
    double s = opt_array_get(k->in[0], 0), l = opt_array_get(k->in[1], 0), d = opt_array_get(k->in[2], 0);
    if (d == 0) return opt_kerr(k, err, OPT_ERR_INVALID, "delta is 0");
    double cnt = ceil((l - s) / d);
    if (!(cnt >= 0)) cnt = 0;
    if (cnt > 1e10) return opt_kerr(k, err, OPT_ERR_LIMIT, "range of %.0f elements", cnt);
    int64_t n = (int64_t)cnt;
    OPT_TRY(opt_kctx_output(k, 0, dt, 1, &n, err));
    void *y = k->out[0].data;
    if (dt == OPT_DT_INT64 || dt == OPT_DT_INT32 || dt == OPT_DT_INT16) {
        int64_t si = opt_array_int(k->in[0], 0), di = opt_array_int(k->in[2], 0);
        for (int64_t i = 0; i < n; i++) {
            int64_t v = (int64_t)((uint64_t)si + (uint64_t)i * (uint64_t)di); /* wraps, no UB */
            if (dt == OPT_DT_INT64) ((int64_t *)y)[i] = v;
            else if (dt == OPT_DT_INT32) ((int32_t *)y)[i] = (int32_t)v;
            else ((int16_t *)y)[i] = (int16_t)v;
        }
    } else if (dt == OPT_DT_FLOAT) {
        /* Accumulate like the reference implementation (start + i*delta in float). */
        float sf = (float)s, df = (float)d;
        for (int64_t i = 0; i < n; i++) ((float *)y)[i] = sf + (float)i * df;
    } else {
        for (int64_t i = 0; i < n; i++) {
            double v = s + (double)i * d;
            opt_cvt_from_f64(&v, (char *)y + (size_t)i * esize(dt), dt, 1);
        }
    }
    return OPT_OK;
}

/* ==== Cast, CastLike ======================================================================== */

static bool castable(int dt)
{
    return opt_cvt_supported(dt) || (dt >= OPT_DT_FLOAT8E4M3FN && dt <= OPT_DT_FLOAT8E5M2FNUZ);
}

/* 4-bit integers (packed two per byte) are read, not written: `mopt cluster --uint4` indices. */
static bool is_int4(int dt)
{
    return dt == OPT_DT_UINT4 || dt == OPT_DT_INT4;
}

static opt_status infer_cast(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                             size_t n_out, opt_error *err)
{
    int64_t to = opt_node_attr_int(n, "to", 0);
    if (!castable((int)to) || !(castable(in_dt[0]) || is_int4(in_dt[0])))
        return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "no kernel for opset %d / cast %s to %s", opset,
                            opt_dtype_short(in_dt[0]), opt_dtype_short((int)to));
    out_dt[0] = (int)to;
    return OPT_OK;
}

static opt_status infer_castlike(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                                 size_t n_out, opt_error *err)
{
    if (n_in < 2 || !castable(in_dt[1]) || !(castable(in_dt[0]) || is_int4(in_dt[0])))
        return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "no kernel for opset %d / cast %s to %s", opset,
                            opt_dtype_short(in_dt[0]), opt_dtype_short(n_in > 1 ? in_dt[1] : 0));
    out_dt[0] = in_dt[1];
    return OPT_OK;
}

static bool is_int(int dt)
{
    return dt == OPT_DT_INT8 || dt == OPT_DT_UINT8 || dt == OPT_DT_INT16 || dt == OPT_DT_UINT16 ||
           dt == OPT_DT_INT32 || dt == OPT_DT_UINT32 || dt == OPT_DT_INT64 || dt == OPT_DT_UINT64;
}

static opt_status cast_to(opt_kctx *k, int to, opt_error *err)
{
    const opt_array *x = k->in[0];
    OPT_TRY(opt_kctx_output(k, 0, to, x->ndim, x->dims, err));
    uint64_t n = opt_array_numel(x);
    void *y = k->out[0].data;
    int from = x->dtype;
    if (from == to) {
        memcpy(y, x->data, x->nbytes);
        return OPT_OK;
    }
    bool sat = opt_node_attr_int(k->node, "saturate", 1) != 0;
    if (to >= OPT_DT_FLOAT8E4M3FN && to <= OPT_DT_FLOAT8E5M2FNUZ) {
        for (uint64_t i = 0; i < n; i++) ((uint8_t *)y)[i] = opt_f32_to_f8((float)opt_array_get(x, i), to, sat);
        return OPT_OK;
    }
    if (from >= OPT_DT_FLOAT8E4M3FN && from <= OPT_DT_FLOAT8E5M2FNUZ) {
        for (uint64_t i = 0; i < n; i++) opt_store_f32(y, to, i, (float)opt_array_get(x, i));
        return OPT_OK;
    }
    if ((is_int(from) || is_int4(from)) && is_int(to)) {
        /* Integer to integer: two's-complement wrap, as C (and numpy's astype) do. */
        for (uint64_t i = 0; i < n; i++) {
            int64_t v = from == OPT_DT_UINT64 ? (int64_t)((const uint64_t *)x->data)[i] : opt_array_int(x, i);
            switch (to) {
            case OPT_DT_INT8: ((int8_t *)y)[i] = (int8_t)v; break;
            case OPT_DT_UINT8: ((uint8_t *)y)[i] = (uint8_t)v; break;
            case OPT_DT_INT16: ((int16_t *)y)[i] = (int16_t)v; break;
            case OPT_DT_UINT16: ((uint16_t *)y)[i] = (uint16_t)v; break;
            case OPT_DT_INT32: ((int32_t *)y)[i] = (int32_t)v; break;
            case OPT_DT_UINT32: ((uint32_t *)y)[i] = (uint32_t)v; break;
            case OPT_DT_INT64: ((int64_t *)y)[i] = v; break;
            default: ((uint64_t *)y)[i] = (uint64_t)v; break;
            }
        }
        return OPT_OK;
    }
    if (is_int4(from)) {
        /* 4-bit to bool or a float type: every value in [-8, 15] is exact. */
        for (uint64_t i = 0; i < n; i++) {
            int64_t v = opt_array_int(x, i);
            if (to == OPT_DT_BOOL) ((uint8_t *)y)[i] = v != 0;
            else opt_store_f32(y, to, i, (float)v);
        }
        return OPT_OK;
    }
    if (is_int(to)) {
        /* Float to integer truncates toward zero; out-of-range values saturate (no UB). */
        double buf[256];
        for (uint64_t i = 0; i < n; i += 256) {
            size_t m = n - i < 256 ? (size_t)(n - i) : 256;
            opt_cvt_to_f64((const char *)x->data + (size_t)i * esize(from), from, buf, m);
            for (size_t j = 0; j < m; j++) buf[j] = trunc(buf[j]);
            opt_cvt_from_f64(buf, (char *)y + (size_t)i * esize(to), to, m);
        }
        return OPT_OK;
    }
    if (to == OPT_DT_FLOAT) {
        opt_cvt_to_f32(x->data, from, y, (size_t)n);
        return OPT_OK;
    }
    if (from == OPT_DT_FLOAT) {
        opt_cvt_from_f32(x->data, y, to, (size_t)n);
        return OPT_OK;
    }
    /* Through double: exact for every source here, one rounding at the target. Double ->
     * float16 rounds twice (double -> float -> half), which can differ by an ulp in rare ties. */
    double buf[256];
    for (uint64_t i = 0; i < n; i += 256) {
        size_t m = n - i < 256 ? (size_t)(n - i) : 256;
        opt_cvt_to_f64((const char *)x->data + (size_t)i * esize(from), from, buf, m);
        opt_cvt_from_f64(buf, (char *)y + (size_t)i * esize(to), to, m);
    }
    return OPT_OK;
}

static opt_status cast_run(opt_kctx *k, opt_error *err)
{
    return cast_to(k, (int)opt_node_attr_int(k->node, "to", 0), err);
}

static opt_status castlike_run(opt_kctx *k, opt_error *err)
{
    return cast_to(k, k->in[1]->dtype, err);
}

/* ==== the table ============================================================================= */

#define ANY OPT_DTS_ALL
#define K(OP, SINCE, UNTIL, DTS, INFER, RUN) {"", OP, SINCE, UNTIL, DTS, 0, OPT_DEVICE_CPU, INFER, NULL, RUN, NULL}
#define RANGE_DTS (OPT_DT_BIT(OPT_DT_FLOAT) | OPT_DT_BIT(OPT_DT_DOUBLE) | OPT_DT_BIT(OPT_DT_INT16) | OPT_DT_BIT(OPT_DT_INT32) | OPT_DT_BIT(OPT_DT_INT64))

const opt_kernel opt_kernels_shape[] = {
    K("Reshape", 1, INT_MAX, ANY, NULL, reshape_run),
    K("Flatten", 1, INT_MAX, ANY, NULL, flatten_run),
    K("Squeeze", 1, INT_MAX, ANY, NULL, squeeze_run),
    K("Unsqueeze", 1, INT_MAX, ANY, NULL, unsqueeze_run),
    K("Identity", 1, INT_MAX, ANY, NULL, identity_run),
    K("Dropout", 1, INT_MAX, ANY, infer_dropout, dropout_run),
    K("Transpose", 1, INT_MAX, ANY, NULL, transpose_run),
    K("Concat", 1, INT_MAX, ANY, NULL, concat_run),
    K("Split", 1, INT_MAX, ANY, NULL, split_run),
    K("Slice", 1, INT_MAX, ANY, NULL, slice_run),
    K("Gather", 1, INT_MAX, ANY, NULL, gather_run),
    K("Expand", 8, INT_MAX, ANY, NULL, expand_run),
    K("Tile", 6, INT_MAX, ANY, NULL, tile_run),
    K("Pad", 2, INT_MAX, ANY, NULL, pad_run),
    K("Shape", 1, INT_MAX, ANY, infer_int64, shape_run),
    K("Size", 1, INT_MAX, ANY, infer_int64, size_run),
    K("Constant", 1, INT_MAX, ANY, infer_constant, constant_run),
    K("ConstantOfShape", 9, INT_MAX, OPT_DT_BIT(OPT_DT_INT64), infer_cos, constantofshape_run),
    K("Range", 11, INT_MAX, RANGE_DTS, NULL, range_run),
    K("Cast", 6, INT_MAX, ANY, infer_cast, cast_run),
    K("CastLike", 15, INT_MAX, ANY, infer_castlike, castlike_run),
    {0},
};
