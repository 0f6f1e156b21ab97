/*
 * tests/unit/calib_stats.c — calibration statistics, ranges and tables (calib/stats.c,
 * calib/ranges.c, calib/table.c): the streamed histogram equals one built from all the data at
 * once; its size does not depend on the number of values; every method's range contains 0 and
 * lies inside [min, max]; the methods clip long tails and keep dense ranges; quantization
 * parameters round-trip; the CSV table round-trips and malformed tables are refused by line.
 */
#include "calib/ranges.h"
#include "calib/table.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float gauss(unsigned *s)
{
    float u = (rand_r(s) + 1.0f) / (RAND_MAX + 2.0f), v = (rand_r(s) + 1.0f) / (RAND_MAX + 2.0f);
    return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}

Test(calib_stats, streamed_histogram_equals_the_histogram_of_all_values_at_once)
{
    /* Batches of growing magnitude force range doublings; the counts must still all be there. */
    opt_calib_stats a, b;
    opt_calib_stats_init(&a, true);
    opt_calib_stats_init(&b, true);
    enum { N = 40000 };
    float *x = malloc(N * sizeof *x);
    unsigned s = 7;
    for (int i = 0; i < N; i++) x[i] = gauss(&s) * (1 + i / 4000);
    for (int i = 0; i < N; i += 1000) cr_assert_eq(opt_calib_stats_add_f32(&a, "t", x + i, 1000, NULL), OPT_OK);
    cr_assert_eq(opt_calib_stats_add_f32(&b, "t", x, N, NULL), OPT_OK);
    const opt_calib_acc *pa = opt_calib_stats_find(&a, "t"), *pb = opt_calib_stats_find(&b, "t");
    uint64_t tot = 0;
    for (int i = 0; i < OPT_CALIB_BINS; i++) tot += pa->pos[i] + pa->neg[i];
    cr_assert_eq(tot, N);
    cr_assert_eq(pa->min, pb->min);
    cr_assert_eq(pa->max, pb->max);
    cr_assert(pa->hmax >= pb->hmax && pa->hmax <= 2 * pb->hmax * 16, "hmax %g vs %g", pa->hmax, pb->hmax);
    free(x);
    opt_calib_stats_free(&a);
    opt_calib_stats_free(&b);
}

Test(calib_stats, accumulator_size_does_not_grow_with_the_number_of_values)
{
    opt_calib_stats a;
    opt_calib_stats_init(&a, true);
    float x[256];
    unsigned s = 3;
    for (int r = 0; r < 2000; r++) {
        for (int i = 0; i < 256; i++) x[i] = gauss(&s);
        opt_calib_stats_add_f32(&a, "t", x, 256, NULL);
    }
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.acc[0].count, 2000 * 256);
    opt_calib_stats_free(&a);
}

Test(calib_stats, nonfinite_values_are_counted_not_binned)
{
    opt_calib_stats a;
    opt_calib_stats_init(&a, true);
    float x[4] = {1, NAN, INFINITY, -2};
    opt_calib_stats_add_f32(&a, "t", x, 4, NULL);
    cr_assert_eq(a.acc[0].nonfinite, 2);
    cr_assert_eq(a.acc[0].min, -2);
    cr_assert_eq(a.acc[0].max, 1);
    opt_calib_stats_free(&a);
}

/* Range of `method` over n values from gen. */
static void range_of(opt_calib_method m, const float *x, size_t n, float *lo, float *hi)
{
    opt_calib_stats a;
    opt_calib_stats_init(&a, true);
    cr_assert_eq(opt_calib_stats_add_f32(&a, "t", x, n, NULL), OPT_OK);
    opt_range_opts o = {.method = m};
    cr_assert_eq(opt_calib_range(&a.acc[0], &o, lo, hi, NULL), OPT_OK);
    opt_calib_stats_free(&a);
}

Test(calib_ranges, every_method_contains_zero_and_stays_inside_min_max)
{
    enum { N = 50000 };
    float *x = malloc(N * sizeof *x);
    unsigned s = 11;
    for (int i = 0; i < N; i++) x[i] = 3 + gauss(&s); /* all positive mostly, min > 0 possible */
    for (int m = OPT_CALIB_MINMAX; m <= OPT_CALIB_MSE; m++) {
        float lo, hi, mn = INFINITY, mx = -INFINITY;
        for (int i = 0; i < N; i++) {
            mn = fminf(mn, x[i]);
            mx = fmaxf(mx, x[i]);
        }
        range_of((opt_calib_method)m, x, N, &lo, &hi);
        cr_assert(lo <= 0 && hi >= 0, "%s: [%g, %g] must contain 0", opt_calib_method_name(m), lo, hi);
        cr_assert(lo >= fminf(mn, 0) && hi <= mx, "%s: [%g, %g] outside [%g, %g]", opt_calib_method_name(m), lo, hi, mn, mx);
    }
    free(x);
}

Test(calib_ranges, clipping_methods_cut_a_long_tail_that_minmax_keeps)
{
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x);
    unsigned s = 5;
    for (int i = 0; i < N; i++) x[i] = fabsf(gauss(&s)); /* post-ReLU-like */
    x[17] = 60.0f;                                          /* one outlier */
    float lo, hi;
    range_of(OPT_CALIB_MINMAX, x, N, &lo, &hi);
    cr_assert_eq(hi, 60.0f);
    for (int m = OPT_CALIB_PERCENTILE; m <= OPT_CALIB_ENTROPY; m++) {
        range_of((opt_calib_method)m, x, N, &lo, &hi);
        cr_assert(hi < 10.0f && hi > 2.0f, "%s: hi %g should clip the outlier but keep the bulk", opt_calib_method_name(m), hi);
        cr_assert_eq(lo, 0.0f);
    }
    /* MSE weighs the outlier's clipping error against everyone's rounding error: one value at
     * 60 costs more clipped than 100,000 values lose to a 4x coarser step, so it keeps most of
     * the range; add a dense tail and it clips. */
    range_of(OPT_CALIB_MSE, x, N, &lo, &hi);
    cr_assert(hi <= 60.0f && hi > 40.0f, "mse: hi %g", hi);
    free(x);
}

Test(calib_ranges, mse_clips_where_rounding_error_dominates)
{
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x);
    unsigned s = 9;
    for (int i = 0; i < N; i++) x[i] = gauss(&s);
    x[3] = 40.0f;
    x[4] = -40.0f;
    float lo, hi;
    opt_calib_stats a;
    opt_calib_stats_init(&a, true);
    opt_calib_stats_add_f32(&a, "t", x, N, NULL);
    opt_range_opts o = {.method = OPT_CALIB_MSE, .qdtype = OPT_DT_INT8};
    cr_assert_eq(opt_calib_range(&a.acc[0], &o, &lo, &hi, NULL), OPT_OK);
    cr_assert(hi < 40.0f && lo > -40.0f, "mse int8: [%g, %g]", lo, hi);
    opt_calib_stats_free(&a);
    free(x);
}

Test(calib_ranges, percentile_of_uniform_data_is_that_quantile)
{
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x);
    for (int i = 0; i < N; i++) x[i] = (float)i / N * 10.0f;
    opt_calib_stats a;
    opt_calib_stats_init(&a, true);
    opt_calib_stats_add_f32(&a, "t", x, N, NULL);
    opt_range_opts o = {.method = OPT_CALIB_PERCENTILE, .percentile = 99.0};
    float lo, hi;
    cr_assert_eq(opt_calib_range(&a.acc[0], &o, &lo, &hi, NULL), OPT_OK);
    cr_assert_float_eq(hi, 9.9f, 0.02f);
    opt_calib_stats_free(&a);
    free(x);
}

Test(calib_ranges, percentile_clips_the_largest_magnitudes_not_each_tail_alike)
{
    /* Half the values uniform on [-10, 0], half on [0, 1]: the 1% largest magnitudes are all
     * negative, so P = 99 clips the negative side to -9.8 and keeps the short positive side. */
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x);
    for (int i = 0; i < N / 2; i++) x[i] = -10.0f * (float)i / (N / 2);
    for (int i = N / 2; i < N; i++) x[i] = (float)(i - N / 2) / (N / 2);
    opt_calib_stats a;
    opt_calib_stats_init(&a, true);
    opt_calib_stats_add_f32(&a, "t", x, N, NULL);
    opt_range_opts o = {.method = OPT_CALIB_PERCENTILE, .percentile = 99.0};
    float lo, hi;
    cr_assert_eq(opt_calib_range(&a.acc[0], &o, &lo, &hi, NULL), OPT_OK);
    cr_assert_float_eq(lo, -9.8f, 0.05f);
    cr_assert_eq(hi, (float)a.acc[0].max);
    opt_calib_stats_free(&a);
    free(x);
}

/* TensorRT's KL search written bin by bin, the way its description reads: P = h[0..i) with the
 * outliers folded into bin i - 1, Q = the i bins merged into `levels` groups, each group's mass
 * spread over its non-zero bins, KL(P || Q) normalised, 1e-9 where Q is empty. */
static int reference_kl_bins(const double *h, int levels)
{
    int last = OPT_CALIB_BINS;
    while (last > 0 && h[last - 1] == 0) last--;
    if (last <= levels) return last > 0 ? last : 1;
    double *p = malloc(OPT_CALIB_BINS * sizeof *p), *q = malloc(OPT_CALIB_BINS * sizeof *q);
    double best = INFINITY;
    int best_i = last;
    for (int i = last; i >= levels; i--) {
        double tail = 0, ps = 0, qs = 0;
        for (int j = i; j < OPT_CALIB_BINS; j++) tail += h[j];
        for (int j = 0; j < i; j++) p[j] = h[j];
        p[i - 1] += tail;
        for (int g = 0; g < levels; g++) {
            int a = (int)((long)g * i / levels), b = (int)((long)(g + 1) * i / levels);
            double mass = 0, nz = 0;
            for (int j = a; j < b; j++) {
                mass += h[j];
                nz += h[j] != 0;
            }
            for (int j = a; j < b; j++) q[j] = h[j] != 0 && nz > 0 ? mass / nz : 0;
        }
        for (int j = 0; j < i; j++) {
            ps += p[j];
            qs += q[j];
        }
        double kl = 0;
        for (int j = 0; j < i; j++)
            if (p[j] > 0) kl += p[j] / ps * log((p[j] / ps) / (q[j] > 0 ? q[j] / qs : 1e-9));
        if (i == last || kl < best) {
            best = kl;
            best_i = i;
        }
    }
    free(p);
    free(q);
    return best_i;
}

Test(calib_ranges, entropy_threshold_is_the_bin_by_bin_kl_minimum)
{
    /* Post-ReLU (zeros left out, 256 levels for uint8) and signed (128 levels) tensors with
     * light and heavy tails: the prefix-sum search must pick the threshold the direct sum picks
     * (up to a near-tie between neighbouring bins). */
    enum { N = 60000 };
    float *x = malloc(N * sizeof *x);
    for (int kind = 0; kind < 4; kind++) {
        unsigned s = 100 + kind;
        for (int i = 0; i < N; i++) {
            float g = gauss(&s);
            x[i] = kind == 0 ? fmaxf(g, 0)                              /* ReLU of a normal */
                 : kind == 1 ? (g > 0 ? expf(g) - 1 : 0)                /* ReLU, heavy tail */
                 : kind == 2 ? g * (1 + (i % 97 == 0) * 6)              /* signed, outliers */
                             : g * g * g;                               /* signed, heavy */
        }
        opt_calib_stats a;
        opt_calib_stats_init(&a, true);
        cr_assert_eq(opt_calib_stats_add_f32(&a, "t", x, N, NULL), OPT_OK);
        const opt_calib_acc *c = &a.acc[0];
        double *h = malloc(OPT_CALIB_BINS * sizeof *h);
        for (int i = 0; i < OPT_CALIB_BINS; i++) h[i] = (double)c->pos[i] + (double)c->neg[i];
        bool nonneg = c->min >= 0;
        if (nonneg) h[0] -= (double)c->zeros;
        int levels = nonneg ? 256 : 128;
        double t = reference_kl_bins(h, levels) * (c->hmax / OPT_CALIB_BINS);
        float lo, hi;
        opt_range_opts o = {.method = OPT_CALIB_ENTROPY};
        cr_assert_eq(opt_calib_range(c, &o, &lo, &hi, NULL), OPT_OK);
        double w = c->hmax / OPT_CALIB_BINS;
        cr_assert(fabs(hi - fmin(t, c->max)) <= 1.01 * w, "kind %d: hi %g, bin-by-bin %g (bin %g)", kind, hi,
                  fmin(t, c->max), w);
        if (!nonneg) cr_assert(fabs(-lo - fmin(t, -c->min)) <= 1.01 * w, "kind %d: lo %g, bin-by-bin -%g", kind, lo, t);
        if (kind == 1 || kind == 3) /* the heavy tails are clipped */
            cr_assert(hi < 0.75 * c->max, "kind %d: hi %g should clip the tail (max %g)", kind, hi, c->max);
        free(h);
        opt_calib_stats_free(&a);
    }
    free(x);
}

/* Entropy threshold of a post-ReLU tensor: x[0..n) values, the rest exact zeros. */
static float entropy_hi(const float *x, size_t n, double *full_kl_hi)
{
    opt_calib_stats a;
    opt_calib_stats_init(&a, true);
    cr_assert_eq(opt_calib_stats_add_f32(&a, "t", x, n, NULL), OPT_OK);
    const opt_calib_acc *c = &a.acc[0];
    float lo, hi;
    opt_range_opts o = {.method = OPT_CALIB_ENTROPY};
    cr_assert_eq(opt_calib_range(c, &o, &lo, &hi, NULL), OPT_OK);
    if (full_kl_hi) { /* the plain search over the whole histogram, point masses included */
        double *h = malloc(OPT_CALIB_BINS * sizeof *h);
        for (int i = 0; i < OPT_CALIB_BINS; i++) h[i] = (double)c->pos[i] + (double)c->neg[i];
        h[0] -= (double)c->zeros;
        *full_kl_hi = reference_kl_bins(h, 256) * (c->hmax / OPT_CALIB_BINS);
        free(h);
    }
    opt_calib_stats_free(&a);
    return hi;
}

Test(calib_ranges, entropy_sets_point_masses_aside_like_zeros)
{
    /* A first ReLU over images with a constant background: ReLU(bias) per channel repeats at
     * every background pixel. Those few exact values hold 45% of the non-zero mass; they are
     * quantized to one level each whatever the threshold, so they must not decide it. The
     * plain search over the same histogram clips far lower (it is what this guards against). */
    enum { N = 200000 };
    float *x = malloc(N * sizeof *x);
    unsigned s = 11;
    int n = 0;
    while (n < N) {
        float g = gauss(&s);
        if (g > 0) x[n++] = expf(0.8f * g) - 1; /* continuous, with a tail */
    }
    const float atom[5] = {0.07f, 0.19f, 0.26f, 0.41f, 0.55f};
    for (int i = 0; i < N; i++) /* the same continuous values either way; zeros are left out */
        if (i % 100 < 45) x[i] = 0;
    float plain = entropy_hi(x, N, NULL);
    for (int i = 0; i < N; i++)
        if (i % 100 < 45) x[i] = atom[i % 5];
    double full;
    float hi = entropy_hi(x, N, &full);
    cr_assert(fabsf(hi - plain) <= 0.05f * plain, "with point masses %g, without %g", hi, plain);
    cr_assert(full < 0.7 * plain, "the plain search should clip hard here: %g vs %g", full, plain);

    /* A point mass past the continuous body (2% of the values) is clipped like any outlier would
     * be, with all of its mass: the search keeps it. */
    for (int i = 0; i < N; i++) {
        float g = fabsf(gauss(&s));
        x[i] = i % 50 == 0 ? 9.0f : g;
    }
    hi = entropy_hi(x, N, NULL);
    cr_assert(hi >= 9.0f, "a 2%% point mass at 9 was clipped to %g", hi);
    free(x);
}

Test(calib_ranges, minmax_needs_no_histogram_and_others_say_they_do)
{
    opt_calib_stats a;
    opt_calib_stats_init(&a, false);
    float x[3] = {-1, 0.5f, 2};
    opt_calib_stats_add_f32(&a, "t", x, 3, NULL);
    float lo, hi;
    opt_range_opts o = {.method = OPT_CALIB_MINMAX};
    cr_assert_eq(opt_calib_range(&a.acc[0], &o, &lo, &hi, NULL), OPT_OK);
    cr_assert(lo == -1 && hi == 2);
    o.method = OPT_CALIB_ENTROPY;
    opt_error e = {0};
    cr_assert_neq(opt_calib_range(&a.acc[0], &o, &lo, &hi, &e), OPT_OK);
    cr_assert(strstr(e.msg, "'t'"));
    opt_calib_stats_free(&a);
}

Test(calib_ranges, qparams_make_zero_exact_and_cover_the_range)
{
    float s;
    int32_t z;
    opt_qparams(-1.0f, 3.0f, OPT_DT_UINT8, &s, &z);
    cr_assert_float_eq(s, 4.0f / 255, 1e-7);
    cr_assert_eq(z, 64);
    opt_qparams(0.0f, 6.0f, OPT_DT_UINT8, &s, &z);
    cr_assert_eq(z, 0);
    opt_qparams(-2.0f, 1.0f, OPT_DT_INT8, &s, &z);
    cr_assert_float_eq(s, 2.0f / 127, 1e-7);
    cr_assert_eq(z, 0);
    opt_qparams(0.0f, 0.0f, OPT_DT_UINT8, &s, &z);
    cr_assert_eq(s, 1.0f);
}

Test(calib_table, csv_round_trips_including_names_that_need_quoting)
{
    opt_calib_table t = {0}, u = {0};
    cr_assert_eq(opt_calib_table_add(&t, "plain", "minmax", -1.5f, 2.25f, 0.015f, 100, NULL), OPT_OK);
    cr_assert_eq(opt_calib_table_add(&t, "odd, \"name\"", "entropy", 0, 1e-3f, 3.9e-6f, 0, NULL), OPT_OK);
    char path[] = "/tmp/mopt-calib-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    cr_assert_eq(opt_calib_table_write_csv(&t, f, NULL), OPT_OK);
    fclose(f);
    cr_assert_eq(opt_calib_table_read_csv(path, &u, NULL), OPT_OK);
    cr_assert_eq(u.n, 2);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_str_eq(u.e[i].tensor, t.e[i].tensor);
        cr_assert_str_eq(u.e[i].method, t.e[i].method);
        cr_assert_eq(u.e[i].min, t.e[i].min);
        cr_assert_eq(u.e[i].max, t.e[i].max);
        cr_assert_eq(u.e[i].scale, t.e[i].scale);
        cr_assert_eq(u.e[i].zero_point, t.e[i].zero_point);
    }
    unlink(path);
    opt_calib_table_free(&t);
    opt_calib_table_free(&u);
}

static void refused(const char *text, const char *want)
{
    char path[] = "/tmp/mopt-calib-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    opt_calib_table t = {0};
    opt_error e = {0};
    cr_assert_neq(opt_calib_table_read_csv(path, &t, &e), OPT_OK, "accepted: %s", text);
    cr_assert(strstr(e.msg, want), "message '%s' lacks '%s'", e.msg, want);
    cr_assert_eq(t.n, 0);
    unlink(path);
}

Test(calib_table, malformed_tables_are_refused_naming_the_line)
{
    refused("", "empty file");
    refused("a,b\n", "line 1: not a calibration table");
    refused("tensor,method,min,max,scale,zero_point\n", "no rows");
    refused("tensor,method,min,max,scale,zero_point\nx,minmax,0,1\n", "line 2: 4 fields");
    refused("tensor,method,min,max,scale,zero_point\nx,minmax,nan,1,1,0\n", "line 2");
    refused("tensor,method,min,max,scale,zero_point\nx,minmax,0,1,0,0\n", "scale must be a positive");
    refused("tensor,method,min,max,scale,zero_point\nx,minmax,0,1,1,0.5\n", "zero_point must be an integer");
    refused("tensor,method,min,max,scale,zero_point\nx,m,0,1,1,0\ny,m,0,1,1,0\nx,m,0,1,1,0\n", "line 4: tensor 'x' appears twice");
    refused("tensor,method,min,max,scale,zero_point\n\"x,m,0,1,1,0\n", "malformed CSV");
}

Test(calib_table, tensorrt_cache_holds_the_symmetric_scale_bits)
{
    opt_calib_table t = {0};
    opt_calib_table_add(&t, "input", "minmax", 0, 1, 1.0f / 255, 0, NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(opt_calib_table_write_trt(&t, "EntropyCalibration2", f, NULL), OPT_OK);
    fclose(f);
    cr_assert_str_eq(buf, "TRT-8601-EntropyCalibration2\ninput: 3c010204\n");
    free(buf);
    opt_calib_table_free(&t);
}
