/*
 * calib/stats.c — streaming per-tensor statistics (see stats.h).
 *
 * The hot loop runs once per activation value of every calibration batch, so it stays simple:
 * one pass for the batch's extremes, one pass for the histogram, no allocation after the first
 * batch of a tensor.
 */
#include "calib/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void opt_calib_stats_init(opt_calib_stats *s, bool histograms)
{
    memset(s, 0, sizeof *s);
    s->histograms = histograms;
}

void opt_calib_stats_free(opt_calib_stats *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->acc[i].name);
        free(s->acc[i].pos);
        free(s->acc[i].neg);
    }
    free(s->acc);
    opt_strmap_free(&s->index);
    memset(s, 0, sizeof *s);
}

const opt_calib_acc *opt_calib_stats_find(const opt_calib_stats *s, const char *name)
{
    size_t i;
    if (!opt_strmap_get(&s->index, name, &i)) return NULL;
    return &s->acc[i];
}

/* Returns the accumulator for name, creating it. The strmap keys point at acc[i].name, which
 * are separate allocations, so growing the acc array does not invalidate them. */
static opt_calib_acc *acc_get(opt_calib_stats *s, const char *name, opt_error *err)
{
    size_t i;
    if (opt_strmap_get(&s->index, name, &i)) return &s->acc[i];
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        opt_calib_acc *a = realloc(s->acc, cap * sizeof *a);
        if (!a) goto nomem;
        s->acc = a;
        s->cap = cap;
    }
    opt_calib_acc *a = &s->acc[s->n];
    memset(a, 0, sizeof *a);
    a->min = INFINITY;
    a->max = -INFINITY;
    a->name = opt_strdup(name);
    if (!a->name) goto nomem;
    if (s->histograms) {
        a->pos = calloc(OPT_CALIB_BINS, sizeof *a->pos);
        a->neg = calloc(OPT_CALIB_BINS, sizeof *a->neg);
        if (!a->pos || !a->neg) {
            free(a->pos);
            free(a->neg);
            free(a->name);
            goto nomem;
        }
    }
    if (!opt_strmap_put(&s->index, a->name, s->n)) {
        free(a->pos);
        free(a->neg);
        free(a->name);
        goto nomem;
    }
    s->n++;
    return a;
nomem:
    opt_error_set(err, OPT_ERR_NOMEM, "out of memory collecting statistics of tensor '%s'", name);
    return NULL;
}

/* Doubles the histogram range: bins 2i and 2i+1 become bin i. */
static void hist_double(uint64_t *h)
{
    for (int i = 0; i < OPT_CALIB_BINS / 2; i++) h[i] = h[2 * i] + h[2 * i + 1];
    memset(h + OPT_CALIB_BINS / 2, 0, (OPT_CALIB_BINS / 2) * sizeof *h);
}

opt_status opt_calib_stats_add_f32(opt_calib_stats *s, const char *name, const float *x, size_t n,
                                   opt_error *err)
{
    opt_calib_acc *a = acc_get(s, name, err);
    if (!a) return err ? err->status : OPT_ERR_NOMEM;
    float mn = INFINITY, mx = -INFINITY;
    uint64_t bad = 0, zeros = 0, flush = 0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (!isfinite(v)) {
            bad++;
            continue;
        }
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        float m = fabsf(v);
        zeros += m == 0.0f;
        flush += m != 0.0f && m < (float)OPT_F16_FLUSH;
    }
    a->count += n;
    a->nonfinite += bad;
    a->zeros += zeros;
    a->f16_flush += flush;
    if (mn < a->min) a->min = mn;
    if (mx > a->max) a->max = mx;
    if (!a->pos || bad == n) return OPT_OK;

    double amax = fmax(fabs((double)mn), fabs((double)mx));
    if (amax > 0 && a->hmax == 0) a->hmax = amax;
    while (amax > a->hmax) {
        hist_double(a->pos);
        hist_double(a->neg);
        a->hmax *= 2;
    }
    if (a->hmax == 0) { /* all zeros so far: they belong to bin 0 whatever hmax becomes */
        a->pos[0] += zeros;
        return OPT_OK;
    }
    const float inv = (float)(OPT_CALIB_BINS / a->hmax);
    uint64_t *pos = a->pos, *neg = a->neg;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (!isfinite(v)) continue;
        float m = fabsf(v);
        int b = (int)(m * inv);
        if (b >= OPT_CALIB_BINS) b = OPT_CALIB_BINS - 1;
        if (v < 0) neg[b]++;
        else pos[b]++;
    }
    return OPT_OK;
}

opt_status opt_calib_stats_add_array(opt_calib_stats *s, const char *name, const opt_array *a,
                                     opt_error *err)
{
    uint64_t n = opt_array_numel(a);
    if (a->dtype == OPT_DT_FLOAT) return opt_calib_stats_add_f32(s, name, a->data, n, err);
    if (a->dtype != OPT_DT_FLOAT16 && a->dtype != OPT_DT_BFLOAT16 && a->dtype != OPT_DT_DOUBLE)
        return OPT_OK;
    /* Convert in chunks so memory stays bounded whatever the tensor size. */
    float buf[4096];
    for (uint64_t off = 0; off < n; off += 4096) {
        size_t k = n - off < 4096 ? (size_t)(n - off) : 4096;
        for (size_t i = 0; i < k; i++) {
            if (a->dtype == OPT_DT_FLOAT16) buf[i] = opt_f16_to_f32(((const uint16_t *)a->data)[off + i]);
            else if (a->dtype == OPT_DT_BFLOAT16) buf[i] = opt_bf16_to_f32(((const uint16_t *)a->data)[off + i]);
            else buf[i] = (float)((const double *)a->data)[off + i];
        }
        OPT_TRY(opt_calib_stats_add_f32(s, name, buf, k, err));
    }
    if (n == 0) return opt_calib_stats_add_f32(s, name, NULL, 0, err);
    return OPT_OK;
}

/* Adds histogram src (range src_hmax) into dst (range dst_hmax >= src_hmax) by bin centre. */
static void hist_add_rebin(uint64_t *dst, double dst_hmax, const uint64_t *src, double src_hmax)
{
    for (int i = 0; i < OPT_CALIB_BINS; i++) {
        if (!src[i]) continue;
        double c = (i + 0.5) * src_hmax / OPT_CALIB_BINS;
        int b = dst_hmax > 0 ? (int)(c * OPT_CALIB_BINS / dst_hmax) : 0;
        if (b >= OPT_CALIB_BINS) b = OPT_CALIB_BINS - 1;
        dst[b] += src[i];
    }
}

opt_status opt_calib_acc_merge(opt_calib_acc *dst, const opt_calib_acc *src, opt_error *err)
{
    if ((dst->pos == NULL) != (src->pos == NULL))
        return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': cannot merge statistics with and without histograms",
                             dst->name);
    dst->count += src->count;
    dst->nonfinite += src->nonfinite;
    dst->zeros += src->zeros;
    dst->f16_flush += src->f16_flush;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    if (!dst->pos) return OPT_OK;
    if (src->hmax > dst->hmax) {
        if (dst->hmax == 0) dst->hmax = src->hmax;
        while (src->hmax > dst->hmax) {
            hist_double(dst->pos);
            hist_double(dst->neg);
            dst->hmax *= 2;
        }
    }
    hist_add_rebin(dst->pos, dst->hmax, src->pos, src->hmax);
    hist_add_rebin(dst->neg, dst->hmax, src->neg, src->hmax);
    return OPT_OK;
}
