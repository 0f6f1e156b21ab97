/*
 * libopt/exec/cpu/bcast.c — numpy broadcasting (see bcast.h).
 */
#include "libopt/exec/cpu/bcast.h"

#include <string.h>

opt_status opt_bcast_init(opt_bcast *b, const opt_kctx *k, const opt_array *const *in, int n,
                          opt_error *err)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    int nd = 0;
    for (int i = 0; i < n; i++)
        if (in[i]->ndim > nd) nd = in[i]->ndim;
    int64_t full[OPT_MAX_DIMS];
    int64_t st[OPT_BCAST_MAX_IN][OPT_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        int64_t dim = 1;
        for (int i = 0; i < n; i++) {
            int off = nd - in[i]->ndim;
            int64_t di = d < off ? 1 : in[i]->dims[d - off];
            if (di == dim || di == 1) continue;
            if (dim == 1) dim = di;
            else
                return opt_kerr(k, err, OPT_ERR_INVALID, "shapes do not broadcast (dim %d: %lld vs %lld)",
                                d, (long long)dim, (long long)di);
        }
        full[d] = dim;
    }
    for (int i = 0; i < n; i++) {
        int off = nd - in[i]->ndim;
        int64_t s = 1;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t di = d < off ? 1 : in[i]->dims[d - off];
            st[i][d] = (di == 1 && full[d] != 1) ? 0 : s;
            if (di == 1) st[i][d] = 0;
            s *= di;
        }
    }
    b->out_ndim = nd;
    memcpy(b->out_dims, full, sizeof(int64_t) * (size_t)nd);
    b->numel = 1;
    for (int d = 0; d < nd; d++) b->numel *= (uint64_t)(full[d] < 0 ? 0 : full[d]);
    /* Merge dim d into d+1 (inner) when, for every input, stride[d] == stride[d+1] * dim[d+1];
     * dims of size 1 are dropped. */
    int m = 0;
    int64_t md[OPT_MAX_DIMS], ms[OPT_BCAST_MAX_IN][OPT_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        if (full[d] == 1) continue;
        if (m > 0) {
            bool ok = true;
            for (int i = 0; i < n && ok; i++) ok = ms[i][m - 1] == st[i][d] * full[d];
            if (ok) {
                md[m - 1] *= full[d];
                for (int i = 0; i < n; i++) ms[i][m - 1] = st[i][d];
                continue;
            }
        }
        md[m] = full[d];
        for (int i = 0; i < n; i++) ms[i][m] = st[i][d];
        m++;
    }
    if (m == 0) {
        md[0] = 1;
        for (int i = 0; i < n; i++) ms[i][0] = 0;
        m = 1;
    }
    b->ndim = m;
    memcpy(b->dims, md, sizeof(int64_t) * (size_t)m);
    for (int i = 0; i < n; i++) memcpy(b->strides[i], ms[i], sizeof(int64_t) * (size_t)m);
    return OPT_OK;
}

void opt_bcast_walk(const opt_bcast *b, uint64_t begin, uint64_t end, opt_bcast_fn fn, void *ctx)
{
    if (begin >= end) return;
    int nd = b->ndim, last = nd - 1;
    int64_t idx[OPT_MAX_DIMS], off[OPT_BCAST_MAX_IN], st[OPT_BCAST_MAX_IN];
    uint64_t r = begin;
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = (int64_t)(r % (uint64_t)b->dims[d]);
        r /= (uint64_t)b->dims[d];
    }
    for (int i = 0; i < b->n; i++) {
        off[i] = 0;
        for (int d = 0; d < nd; d++) off[i] += idx[d] * b->strides[i][d];
        st[i] = b->strides[i][last];
    }
    uint64_t pos = begin;
    while (pos < end) {
        uint64_t len = (uint64_t)(b->dims[last] - idx[last]);
        if (len > end - pos) len = end - pos;
        fn(ctx, off, st, pos, len);
        pos += len;
        if (pos >= end) break;
        /* Advance idx by len along the last dim, carrying. */
        idx[last] += (int64_t)len;
        for (int i = 0; i < b->n; i++) off[i] += (int64_t)len * b->strides[i][last];
        for (int d = last; d > 0 && idx[d] == b->dims[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
            for (int i = 0; i < b->n; i++)
                off[i] += b->strides[i][d - 1] - b->dims[d] * b->strides[i][d];
        }
    }
}
