/*
 * calib/ranges.c — range methods over calib/stats.c accumulators (see ranges.h).
 */
#include "calib/ranges.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[] = {"minmax", "percentile", "entropy", "mse"};

const char *opt_calib_method_name(opt_calib_method m)
{
    return (unsigned)m < 4 ? method_names[m] : "?";
}

bool opt_calib_method_parse(const char *s, opt_calib_method *m)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, method_names[i]) == 0) {
            *m = (opt_calib_method)i;
            return true;
        }
    return false;
}

bool opt_calib_method_needs_hist(opt_calib_method m)
{
    return m != OPT_CALIB_MINMAX;
}

void opt_qparams(float lo, float hi, int qdtype, float *scale, int32_t *zero_point)
{
    if (lo > 0) lo = 0;
    if (hi < 0) hi = 0;
    if (qdtype == OPT_DT_INT8) {
        float amax = fmaxf(-lo, hi);
        *scale = amax > 0 ? amax / 127.0f : 1.0f;
        *zero_point = 0;
        return;
    }
    float s = (hi - lo) / 255.0f;
    if (!(s > 0)) {
        *scale = 1.0f;
        *zero_point = 0;
        return;
    }
    float z = nearbyintf(-lo / s);
    *scale = s;
    *zero_point = z < 0 ? 0 : z > 255 ? 255 : (int32_t)z;
}

#define NB OPT_CALIB_BINS

/* Magnitude at cumulative fraction q of the |x| distribution (pos and neg bins together),
 * interpolated inside the bin. */
static double magnitude_quantile(const opt_calib_acc *a, double q)
{
    double total = 0;
    for (int i = 0; i < NB; i++) total += (double)a->pos[i] + (double)a->neg[i];
    double w = a->hmax / NB, target = q * total, cum = 0;
    for (int i = 0; i < NB; i++) {
        double c = (double)a->pos[i] + (double)a->neg[i];
        if (c > 0 && cum + c >= target) return (i + (target - cum) / c) * w;
        cum += c;
    }
    return a->hmax;
}

/* TensorRT-style KL threshold over histogram h (NB bins of width w) for `levels` levels.
 * Returns the number of bins i whose upper edge is the chosen threshold. */
static int kl_threshold(const double *h, int levels)
{
    int last = NB;
    while (last > 0 && h[last - 1] == 0) last--;
    if (last <= levels) return last > 0 ? last : 1;
    double *p = malloc(NB * sizeof *p), *q = malloc(NB * sizeof *q);
    if (!p || !q) {
        free(p);
        free(q);
        return last;
    }
    double best = INFINITY;
    int best_i = last;
    double tail = 0;
    for (int i = last; i < NB; i++) tail += h[i];
    /* Outliers beyond the candidate threshold fold into its last bin of P; walk i downwards so
     * the tail sum is maintained incrementally. */
    for (int i = last; i >= levels; i--) {
        double psum = 0;
        for (int j = 0; j < i; j++) {
            p[j] = h[j];
            psum += h[j];
        }
        p[i - 1] += tail;
        psum += tail;
        /* Q: merge the i bins into `levels` groups, spread each group's mass evenly over the
         * bins of the group that are non-zero in the (unclipped) histogram. */
        double qsum = 0;
        for (int g = 0; g < levels; g++) {
            int start = (int)((long)g * i / levels), stop = (int)((long)(g + 1) * i / levels);
            double mass = 0;
            int nz = 0;
            for (int j = start; j < stop; j++) {
                mass += h[j];
                nz += h[j] != 0;
            }
            for (int j = start; j < stop; j++) {
                q[j] = h[j] != 0 && nz ? mass / nz : 0;
                qsum += q[j];
            }
        }
        double kl = 0;
        if (qsum > 0 && psum > 0) {
            for (int j = 0; j < i; j++) {
                if (p[j] == 0) continue;
                double pj = p[j] / psum;
                double qj = q[j] / qsum;
                if (qj <= 0) qj = 1e-9; /* smoothing: P has mass where Q has none */
                kl += pj * log(pj / qj);
            }
        }
        if (kl < best) {
            best = kl;
            best_i = i;
        }
        tail += h[i - 1];
    }
    free(p);
    free(q);
    return best_i;
}

/* Expected squared quantization error of the distribution (bin centres, signed) for range
 * [lo, hi] with `levels` steps. Exact zeros cost nothing: zero is representable. */
static double range_mse(const opt_calib_acc *a, double lo, double hi, int levels)
{
    double w = a->hmax / NB, step = (hi - lo) / levels, err = 0;
    double inner = step * step / 12.0;
    for (int i = 0; i < NB; i++) {
        double c = (i + 0.5) * w;
        double np = (double)a->pos[i] - (i == 0 ? (double)a->zeros : 0);
        if (np > 0) err += np * (c > hi ? (c - hi) * (c - hi) : inner);
        double nn = (double)a->neg[i];
        if (nn > 0) err += nn * (-c < lo ? (lo + c) * (lo + c) : inner);
    }
    return err;
}

opt_status opt_calib_range(const opt_calib_acc *a, const opt_range_opts *o, float *lo, float *hi,
                           opt_error *err)
{
    if (a->count == a->nonfinite || !(a->min <= a->max))
        return opt_error_set(err, OPT_ERR_DATA, "tensor '%s': no finite values observed", a->name);
    double mn = fmin(a->min, 0), mx = fmax(a->max, 0);
    int qdt = o->qdtype ? o->qdtype : OPT_DT_UINT8;
    if (o->method != OPT_CALIB_MINMAX && !a->pos)
        return opt_error_set(err, OPT_ERR_USAGE, "tensor '%s': method %s needs histograms", a->name,
                             opt_calib_method_name(o->method));
    if (o->method == OPT_CALIB_MINMAX || a->hmax == 0) {
        *lo = (float)mn;
        *hi = (float)mx;
        return OPT_OK;
    }
    bool nonneg = a->min >= 0;
    double w = a->hmax / NB;
    switch (o->method) {
    case OPT_CALIB_PERCENTILE: {
        double p = o->percentile > 0 ? o->percentile : 99.999;
        double t = magnitude_quantile(a, p / 100.0);
        mn = fmax(mn, -t);
        mx = fmin(mx, t);
        break;
    }
    case OPT_CALIB_ENTROPY: {
        double *h = malloc(NB * sizeof *h);
        if (!h) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        for (int i = 0; i < NB; i++) h[i] = (double)a->pos[i] + (double)a->neg[i];
        if (nonneg) h[0] -= (double)a->zeros; /* zeros are exact whatever the threshold */
        int levels = nonneg && qdt == OPT_DT_UINT8 ? 256 : 128;
        int i = kl_threshold(h, levels);
        free(h);
        double t = i * w;
        if (nonneg) mx = fmin(mx, t);
        else {
            mn = fmax(mn, -t);
            mx = fmin(mx, t);
        }
        break;
    }
    case OPT_CALIB_MSE: {
        int levels = qdt == OPT_DT_INT8 ? 254 : 255;
        double best = INFINITY, blo = mn, bhi = mx;
        if (qdt == OPT_DT_INT8) { /* symmetric range */
            double amax = fmax(-mn, mx);
            mn = -amax;
            mx = amax;
        }
        for (int k = 100; k >= 1; k--) {
            double f = k / 100.0, l = mn * f, u = mx * f;
            double e = range_mse(a, l, u, levels);
            if (e < best) {
                best = e;
                blo = l;
                bhi = u;
            }
        }
        mn = blo;
        mx = bhi;
        break;
    }
    default: break;
    }
    /* Bin interpolation may step past the data: never widen beyond what was seen. */
    mn = fmax(mn, a->min);
    mx = fmin(mx, a->max);
    *lo = (float)fmin(mn, 0);
    *hi = (float)fmax(mx, 0);
    if (*hi <= *lo) *hi = *lo + (float)w;
    return OPT_OK;
}
