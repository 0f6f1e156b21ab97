/*
 * tests/unit/calib_scan.c — the fast statistics passes of calib/stats.c against their scalar
 * references: the vector scan gives the serial scan's extremes and counts bit for bit (the sign
 * of a zero extreme included), the vector histogram the same counts, and a batch cut into
 * slices — scans joined in order, each slice binned with its own power-of-two range and folded
 * to the batch's — the same accumulator as the batch added at once (what calib/collect.c's
 * threads rely on).
 */
#include "calib/stats.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float gauss(unsigned *s)
{
    float u = (rand_r(s) + 1.0f) / (RAND_MAX + 2.0f), v = (rand_r(s) + 1.0f) / (RAND_MAX + 2.0f);
    return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}

static void assert_same_part(const opt_calib_part *a, const opt_calib_part *b, const char *what)
{
    cr_assert(memcmp(&a->min, &b->min, sizeof a->min) == 0, "%s: min %g vs %g (bits differ)", what, a->min, b->min);
    cr_assert(memcmp(&a->max, &b->max, sizeof a->max) == 0, "%s: max %g vs %g (bits differ)", what, a->max, b->max);
    cr_assert_eq(a->count, b->count, "%s: count", what);
    cr_assert_eq(a->nonfinite, b->nonfinite, "%s: nonfinite", what);
    cr_assert_eq(a->zeros, b->zeros, "%s: zeros", what);
    cr_assert_eq(a->f16_flush, b->f16_flush, "%s: f16_flush", what);
}

Test(calib_scan, vector_scan_equals_the_serial_scan_bit_for_bit)
{
    enum { N = 5003 };
    float *x = malloc(N * sizeof *x);
    unsigned s = 9;
    for (int trial = 0; trial < 6; trial++) {
        for (int i = 0; i < N; i++) x[i] = gauss(&s);
        if (trial == 1) /* ReLU-like: the minimum is a zero; the first zero seen is -0 */
            for (int i = 0; i < N; i++) x[i] = x[i] < 0 ? (i == 77 ? -0.0f : 0.0f) : x[i];
        if (trial == 2) /* all non-positive, the maximum a +0 after a -0 in another lane */
            for (int i = 0; i < N; i++) x[i] = i == 13 ? -0.0f : i == 40 ? 0.0f : -fabsf(x[i]);
        if (trial == 3) { /* non-finite values and values that flush to zero in float16 */
            x[5] = NAN, x[600] = INFINITY, x[4999] = -INFINITY, x[5001] = NAN;
            x[8] = 1e-9f, x[9] = -2e-8f, x[10] = 3e-8f;
        }
        if (trial == 4) /* everything non-finite */
            for (int i = 0; i < N; i++) x[i] = i % 2 ? NAN : INFINITY;
        if (trial == 5) memset(x, 0, N * sizeof *x);
        for (size_t n = 0; n <= N; n += n < 80 ? 1 : 997)
            for (int level = 1; level <= 2; level++) { /* AVX2, AVX-512 (where the CPU has them) */
                opt_calib_part a, b;
                opt_calib_scan_f32_level(x, n, &a, level);
                opt_calib_scan_f32_ref(x, n, &b);
                char what[64];
                snprintf(what, sizeof what, "trial %d, n %zu, level %d", trial, n, level);
                assert_same_part(&a, &b, what);
            }
    }
    free(x);
}

Test(calib_scan, joined_slice_scans_equal_the_scan_of_the_whole)
{
    enum { N = 4000 };
    float x[N];
    unsigned s = 4;
    for (int i = 0; i < N; i++) x[i] = fmaxf(gauss(&s), 0.0f);
    x[3] = -0.0f; /* a zero extreme whose sign only the first slice knows */
    opt_calib_part whole, all, p;
    opt_calib_scan_f32_ref(x, N, &whole);
    opt_calib_scan_f32(x, 1234, &all);
    opt_calib_scan_f32(x + 1234, 2000, &p);
    opt_calib_part_join(&all, &p);
    opt_calib_scan_f32(x + 3234, N - 3234, &p);
    opt_calib_part_join(&all, &p);
    assert_same_part(&all, &whole, "3 slices");
}

Test(calib_scan, vector_histogram_equals_the_serial_histogram)
{
    enum { N = 30011 };
    float *x = malloc(N * sizeof *x);
    unsigned s = 21;
    for (int i = 0; i < N; i++) x[i] = gauss(&s) * (i % 7 == 0 ? 0.0f : 1.0f);
    x[100] = NAN, x[200] = -INFINITY;
    float mx = 0;
    for (int i = 0; i < N; i++)
        if (isfinite(x[i])) mx = fmaxf(mx, fabsf(x[i]));
    /* hmax at the largest magnitude exactly puts it at the top edge, where binning clamps. */
    double ranges[] = {mx, mx * 1.5, mx * 0.25};
    for (int r = 0; r < 3; r++) {
        uint64_t *p1 = calloc(4 * OPT_CALIB_BINS, sizeof *p1), *n1 = p1 + OPT_CALIB_BINS,
                 *p2 = n1 + OPT_CALIB_BINS, *n2 = p2 + OPT_CALIB_BINS;
        opt_calib_hist_f32(p1, n1, ranges[r], x, N);
        opt_calib_hist_f32_ref(p2, n2, ranges[r], x, N);
        cr_assert(memcmp(p1, p2, 2 * OPT_CALIB_BINS * sizeof *p1) == 0, "range %d: counts differ", r);
        free(p1);
    }
    free(x);
}

/* Adds x as one batch through the public path, or cut into slices the way collect.c's threads
 * do: joined scans, each slice binned with its own range hprev * 2^k, folded to the batch's. */
static void add_sliced(opt_calib_stats *st, const float *x, size_t n, int slices)
{
    opt_calib_acc *acc = opt_calib_stats_acc(st, "t", NULL);
    cr_assert(acc);
    opt_calib_part all = {INFINITY, -INFINITY, 0, 0, 0, 0}, part[8];
    size_t off[9];
    for (int i = 0; i <= slices; i++) off[i] = n * (size_t)i / (size_t)slices;
    for (int i = 0; i < slices; i++) {
        opt_calib_scan_f32(x + off[i], off[i + 1] - off[i], &part[i]);
        opt_calib_part_join(&all, &part[i]);
    }
    double hprev = acc->hmax;
    uint64_t *xh = calloc(OPT_CALIB_XBINS, sizeof *xh);
    double h[8] = {0};
    for (int i = 0; i < slices; i++) {
        double amax = fmax(fabs((double)part[i].min), fabs((double)part[i].max));
        h[i] = hprev > 0 ? hprev : fmax(fabs((double)all.min), fabs((double)all.max));
        while (amax > h[i]) h[i] *= 2;
    }
    if (opt_calib_acc_apply(acc, &all))
        for (int i = 0; i < slices; i++) {
            opt_calib_xhist_f32(xh, h[i], x + off[i], off[i + 1] - off[i]);
            opt_calib_xhist_fold(acc->pos, acc->neg, acc->hmax, xh, h[i]);
        }
    free(xh);
}

Test(calib_scan, batches_cut_into_slices_give_the_accumulator_of_whole_batches)
{
    enum { B = 6000, NB = 12 };
    float *x = malloc(B * NB * sizeof *x);
    unsigned s = 17;
    for (int b = 0; b < NB; b++)
        for (int i = 0; i < B; i++) {
            /* Growing magnitudes force doublings; one slice holds the batch's maximum, so
             * the others are binned with a smaller range and folded. */
            float v = gauss(&s) * (1.0f + (float)b * b);
            x[b * B + i] = i > B / 2 ? v * 0.01f : v;
        }
    /* A batch's largest magnitude again, exactly: values at the top edge of a range. */
    x[3 * B + 4000] = x[3 * B + 10] = 0.0f;
    opt_calib_stats whole, sliced;
    opt_calib_stats_init(&whole, true);
    opt_calib_stats_init(&sliced, true);
    for (int b = 0; b < NB; b++) {
        cr_assert_eq(opt_calib_stats_add_f32(&whole, "t", x + b * B, B, NULL), OPT_OK);
        add_sliced(&sliced, x + b * B, B, 2 + b % 3);
    }
    const opt_calib_acc *a = &whole.acc[0], *c = &sliced.acc[0];
    cr_assert_eq(a->hmax, c->hmax);
    cr_assert_eq(a->min, c->min);
    cr_assert_eq(a->max, c->max);
    cr_assert_eq(a->count, c->count);
    cr_assert_eq(a->zeros, c->zeros);
    cr_assert(memcmp(a->pos, c->pos, OPT_CALIB_BINS * sizeof *a->pos) == 0, "positive bins differ");
    cr_assert(memcmp(a->neg, c->neg, OPT_CALIB_BINS * sizeof *a->neg) == 0, "negative bins differ");
    free(x);
    opt_calib_stats_free(&whole);
    opt_calib_stats_free(&sliced);
}

Test(calib_scan, a_value_at_the_top_of_a_slice_range_lands_where_direct_binning_puts_it)
{
    /* A slice whose largest magnitude is exactly its range h lands in the extended top bin;
     * folded to 2h it must go where binning with 2h puts it (bin 1024), not where the clamp to
     * the last bin would send it after a merge (1023). */
    float x[300];
    for (int i = 0; i < 300; i++) x[i] = (float)i / 299.0f * 3.0f;
    double h = 3.0;
    uint64_t *xh = calloc(OPT_CALIB_XBINS, sizeof *xh), *pos = calloc(2 * OPT_CALIB_BINS, sizeof *pos),
             *neg = pos + OPT_CALIB_BINS;
    uint64_t *rp = calloc(2 * OPT_CALIB_BINS, sizeof *rp), *rn = rp + OPT_CALIB_BINS;
    opt_calib_xhist_f32(xh, h, x, 300);
    opt_calib_xhist_fold(pos, neg, 2 * h, xh, h);
    opt_calib_hist_f32_ref(rp, rn, 2 * h, x, 300);
    cr_assert(memcmp(pos, rp, 2 * OPT_CALIB_BINS * sizeof *pos) == 0, "folded counts differ from direct binning");
    cr_assert_eq(pos[OPT_CALIB_BINS / 2], 1);
    for (int b = 0; b < OPT_CALIB_XBINS; b++) cr_assert_eq(xh[b], 0, "the fold empties xh");
    free(xh);
    free(pos);
    free(rp);
}

Test(calib_scan, runs_gathered_by_widening_equal_binning_the_slice_at_once)
{
    /* One thread runs its slice in pieces: each piece is binned at the smallest power-of-two
     * multiple of the known range that covers it, the histogram widened as pieces need. */
    enum { N = 9000 };
    float *x = malloc(N * sizeof *x);
    unsigned s = 23;
    for (int i = 0; i < N; i++) x[i] = gauss(&s) * (i < 3000 ? 0.3f : i < 6000 ? 1.0f : 5.0f);
    double hprev = 0.5, amax = 0;
    for (int i = 0; i < N; i++) amax = fmax(amax, fabs((double)x[i]));
    double hall = hprev;
    while (amax > hall) hall *= 2;
    uint64_t *xh = calloc(OPT_CALIB_XBINS, sizeof *xh), *ref = calloc(OPT_CALIB_XBINS, sizeof *ref);
    double h = 0;
    for (int piece = 0; piece < 3; piece++) {
        const float *p = x + piece * 3000;
        double pm = 0, hp = h > 0 ? h : hprev;
        for (int i = 0; i < 3000; i++) pm = fmax(pm, fabs((double)p[i]));
        while (pm > hp) hp *= 2;
        if (h > 0 && hp > h) opt_calib_xhist_widen(xh, h, hp);
        opt_calib_xhist_f32(xh, hp, p, 3000);
        h = hp;
    }
    cr_assert_eq(h, hall);
    opt_calib_xhist_f32_ref(ref, hall, x, N);
    cr_assert(memcmp(xh, ref, OPT_CALIB_XBINS * sizeof *xh) == 0, "widened pieces differ from binning at once");
    free(x);
    free(xh);
    free(ref);
}
