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

/* Point masses. Values that repeat exactly many times (a conv's output over a constant image
 * region, e.g. the black background of Fashion-MNIST: ReLU(bias) for every background pixel, per
 * channel) put a spike into one bin. Quantization maps such a value to one level whatever the
 * threshold, within half a step, as it does a zero; KL's Q instead spreads a group's mass evenly
 * over its non-zero bins, so a spike costs about mass * log(group width) and drives the search
 * towards narrow groups, i.e. towards clipping the continuous tail that later layers use. On
 * rescnn's first ReLU, 11 such values hold 46% of the non-zero mass.
 *
 * A bin is a spike when it holds more than ATOM_RATIO times m, the larger of the medians of its
 * ATOM_REACH neighbours on the left and on the right, and by more than ATOM_SIGMAS * sqrt(m + 1);
 * the excess over m moves from h to atoms[]. A continuous density changes little from one bin
 * to the next, and bin 0 is never a spike (a density may pile up at 0: the magnitudes of a cube
 * of normals do, with no left side to compare). Spikes next to each other raise each other's
 * medians, so the test repeats (at most ATOM_PASSES times) until a pass finds none. */
#define ATOM_REACH 8
#define ATOM_RATIO 4.0
#define ATOM_PASSES 4
#define ATOM_SIGMAS 8.0

/* Median of h[a..b) (b - a <= ATOM_REACH). */
static double median_of(const double *h, int a, int b)
{
    double v[ATOM_REACH];
    int n = 0;
    for (int k = a; k < b; k++) {
        double x = h[k];
        int i = n++;
        while (i > 0 && v[i - 1] > x) {
            v[i] = v[i - 1];
            i--;
        }
        v[i] = x;
    }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void split_atoms(double *h, double *atoms)
{
    double base[NB];
    for (int j = 0; j < NB; j++) atoms[j] = 0;
    for (int pass = 0; pass < ATOM_PASSES; pass++) {
        int found = 0;
        for (int j = 0; j < NB; j++) {
            base[j] = -1;
            /* bin 0 has no left side: a density that peaks at 0 is not a point mass */
            if (j == 0 || h[j] <= ATOM_RATIO) continue;
            int a = j - ATOM_REACH > 0 ? j - ATOM_REACH : 0, b = j + 1 + ATOM_REACH < NB ? j + 1 + ATOM_REACH : NB;
            /* the medians are at least the smallest neighbour: most bins stop here */
            double lo = INFINITY;
            for (int k = a; k < b; k++)
                if (k != j && h[k] < lo) lo = h[k];
            if (h[j] <= ATOM_RATIO * lo) continue;
            double ml = median_of(h, a, j), mr = j + 1 < b ? median_of(h, j + 1, b) : ml;
            double m = fmax(ml, mr);
            /* above both sides, and far beyond counting noise (sparse tails: 5 against 1 is not) */
            if (h[j] > ATOM_RATIO * fmax(m, 1.0) && h[j] - m > ATOM_SIGMAS * sqrt(m + 1)) base[j] = m;
        }
        for (int j = 0; j < NB; j++)
            if (base[j] >= 0) {
                atoms[j] += h[j] - base[j];
                h[j] = base[j];
                found++;
            }
        if (!found) break;
    }
}

/* TensorRT-style KL threshold over histogram h (NB bins of width w) for `levels` levels.
 * Returns the number of bins i whose upper edge is the chosen threshold.
 *
 * For each candidate i, P is h[0..i) with the outliers h[i..NB) folded into its last bin, and Q
 * merges the i bins into `levels` groups and spreads each group's mass evenly over the group's
 * non-zero bins; KL(P || Q) of the normalised pair, a bin where P has mass and Q none costing as
 * if Q were 1e-9 there. Written out, with T = sum h (P's total for every i) and S = sum h[0..i)
 * (Q's total):
 *   KL(i) = (sum_j p_j log p_j - sum_j p_j log q_j) / T - log T,  q_j = mass_g / (nz_g S)
 * and inside a group every non-zero p_j has the same q_j, so the second sum is one term per
 * group: mass_g log(mass_g / nz_g) - mass_g log S. With prefix sums of h, of the non-zero count
 * and of h log h, a candidate costs O(levels) instead of O(i). Group g of candidate i spans bins
 * [g i / levels, (g + 1) i / levels), so its width is i / levels rounded down or up: the term
 * mass_g log(mass_g / nz_g) depends only on (start, width), at most NB * (NB / levels + 1)
 * pairs against (NB - levels) * levels group visits, and is computed once per pair (memo).
 * The last group is the exception (it holds bin i - 1, which carries the outliers).
 *
 * atoms (may be NULL) holds, per bin, mass that sits on single values (see split_atoms): it is
 * in neither P's body nor Q, as the zeros are not, except past the candidate threshold, where
 * it is clipped like any outlier and folds into P's last bin. P's total T then depends on i. */
static int kl_threshold(const double *h, const double *atoms, int levels)
{
    int last = NB;
    while (last > 0 && h[last - 1] == 0 && (!atoms || atoms[last - 1] == 0)) last--;
    if (last <= levels) return last > 0 ? last : 1;
    int wn = (last + levels - 1) / levels; /* widest group of any candidate */
    bool pow2 = (levels & (levels - 1)) == 0; /* 128 and 256: a shift instead of a division */
    int shift = 0;
    while ((1 << shift) < levels) shift++;
    size_t nmemo = (size_t)last * (size_t)(wn + 1);
    double *S = malloc((5 * (NB + 1)) * sizeof *S + nmemo * sizeof(double));
    if (!S) return last;
    double *Z = S + NB + 1, *L = Z + NB + 1, *A = L + NB + 1, *lognz = A + NB + 1, *memo = lognz + NB + 1;
    S[0] = Z[0] = L[0] = A[0] = 0;
    for (int j = 0; j < NB; j++) {
        S[j + 1] = S[j] + h[j];
        Z[j + 1] = Z[j] + (h[j] != 0);
        L[j + 1] = L[j] + (h[j] > 0 ? h[j] * log(h[j]) : 0);
        A[j + 1] = A[j] + (atoms ? atoms[j] : 0);
    }
    for (int j = 0; j <= NB; j++) lognz[j] = j > 0 ? log((double)j) : 0;
    /* memo[start * (wn + 1) + width] = mass log(mass / nz) of bins [start, start + width) */
    for (int st = 0; st < last; st++)
        for (int wd = 0; wd <= wn; wd++) {
            int sp = st + wd < last ? st + wd : last;
            double mass = S[sp] - S[st], nz = Z[sp] - Z[st];
            memo[(size_t)st * (size_t)(wn + 1) + (size_t)wd] =
                nz > 0 && mass > 0 ? mass * (log(mass) - lognz[(int)nz]) : 0;
        }
    double best = INFINITY;
    int best_i = last;
    for (int i = last; i >= levels; i--) {
        double tail = (S[NB] - S[i]) + (A[NB] - A[i]), T = S[i] + tail, logT = T > 0 ? log(T) : 0;
        double qsum = S[i], plast = h[i - 1] + tail;
        double kl = 0;
        if (qsum > 0 && T > 0) {
            double logq = log(qsum);
            double plogp = L[i - 1] + (plast > 0 ? plast * log(plast) : 0);
            /* groups 0 .. levels - 2 from the memo, in four interleaved sums */
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t acc = 0; /* g * i: a group's bounds need no multiplication */
            int start = 0, g = 0;
            const size_t ws = (size_t)(wn + 1);
#define KL_STEP(sum)                                                                           \
    do {                                                                                       \
        acc += i;                                                                              \
        int stop = (int)(pow2 ? acc >> shift : acc / levels);                                  \
        sum += memo[(size_t)start * ws + (size_t)(stop - start)];                              \
        start = stop;                                                                          \
    } while (0)
            for (; g + 4 <= levels - 1; g += 4) {
                KL_STEP(s0);
                KL_STEP(s1);
                KL_STEP(s2);
                KL_STEP(s3);
            }
            for (; g < levels - 1; g++) KL_STEP(s0);
#undef KL_STEP
            double mlogm = (s0 + s1) + (s2 + s3);
            /* Q's mass in those groups: all of S[0..start) (a group without non-zero bins has
             * none); h holds integer counts, so the prefix sums are exact */
            double qmass = S[start];
            /* the last group [start, i) holds bin i - 1, which carries the outliers */
            double mass = S[i] - S[start], nz = Z[i] - Z[start];
            double lq = nz > 0 && mass > 0 ? log(mass) - lognz[(int)nz] - logq : 0;
            double plogq = mlogm - qmass * logq + (S[i - 1] - S[start]) * lq;
            if (plast > 0) plogq += plast * (h[i - 1] != 0 ? lq : log(1e-9));
            kl = (plogp - plogq) / T - logT;
        }
        if (kl < best) {
            best = kl;
            best_i = i;
        }
    }
    free(S);
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
        double *h = malloc(2 * NB * sizeof *h);
        if (!h) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        for (int i = 0; i < NB; i++) h[i] = (double)a->pos[i] + (double)a->neg[i];
        if (nonneg) h[0] -= (double)a->zeros; /* zeros are exact whatever the threshold */
        double *atoms = h + NB;
        split_atoms(h, atoms);
        int levels = nonneg && qdt == OPT_DT_UINT8 ? 256 : 128;
        int i = kl_threshold(h, atoms, levels);
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
