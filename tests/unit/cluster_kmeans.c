/*
 * tests/unit/cluster_kmeans.c — the k-means of libopt/passes/cluster.c and the exact counts of
 * libopt/passes/prune.c: Lloyd on sorted values converges to clusters that are contiguous runs
 * cut at the midpoints, each centroid the mean of its run; few distinct values are kept exactly;
 * the radix sort sorts; pruning to sparsity S zeroes exactly round(S n) weights even with ties;
 * clustering keeps every pruned zero and gives the non-zeros all 2^B centroids.
 */
#include "libopt/passes/compress.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 0x1234567887654321ull;
static double urand(void)
{
    rs ^= rs >> 12;
    rs ^= rs << 25;
    rs ^= rs >> 27;
    return (double)((rs * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}
static float nrand(void)
{
    return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()));
}

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

Test(cluster, radix_sort_orders_negative_zero_and_positive_values)
{
    size_t n = 100000;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    for (size_t i = 0; i < n; i++) a[i] = i % 17 == 0 ? 0.0f : (i % 23 == 0 ? -0.0f : nrand() * 3);
    memcpy(b, a, n * sizeof *a);
    opt_error e = {0};
    cr_assert_eq(opt_sort_floats(a, n, &e), OPT_OK);
    qsort(b, n, sizeof *b, cmpf);
    for (size_t i = 0; i < n; i++) cr_assert(a[i] == b[i], "element %zu: %g vs %g", i, a[i], b[i]);
    free(a);
    free(b);
}

Test(cluster, lloyd_converges_to_means_of_contiguous_runs_cut_at_midpoints)
{
    for (int init = 0; init < 4; init++) {
        size_t n = 20000;
        float *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) v[i] = nrand() * (i % 2 ? 0.05f : 0.2f);
        opt_error e = {0};
        opt_sort_floats(v, n, &e);
        int k = 16;
        float c[16];
        int it = opt_kmeans_sorted(v, n, &k, c, (opt_cluster_init)init, 0, 7, &e);
        cr_assert_geq(it, 1, "init %d", init);
        cr_assert_eq(k, 16);
        size_t lo = 0;
        for (int j = 0; j < k; j++) {
            if (j) cr_assert_leq(c[j - 1], c[j], "centroids ascending");
            size_t hi = lo;
            double mid = j + 1 < k ? ((double)c[j] + c[j + 1]) / 2 : INFINITY;
            double sum = 0;
            while (hi < n && (double)v[hi] < mid) sum += v[hi++];
            if (hi > lo)
                cr_assert_float_eq(c[j], (float)(sum / (double)(hi - lo)), 1e-5,
                                   "init %d centroid %d is not its run's mean", init, j);
            lo = hi;
        }
        free(v);
    }
}

Test(cluster, fewer_distinct_values_than_centroids_are_kept_exactly)
{
    float v[] = {-1, -1, 0.5f, 0.5f, 0.5f, 2, 3};
    int k = 8;
    float c[8];
    opt_error e = {0};
    cr_assert_eq(opt_kmeans_sorted(v, 7, &k, c, OPT_INIT_LINEAR, 0, 0, &e), 0);
    cr_assert_eq(k, 4);
    cr_assert(c[0] == -1 && c[1] == 0.5f && c[2] == 2 && c[3] == 3);
}

/* A model with one Gemm whose weight is w (rows x cols, transB = 1). */
static opt_model *gemm_model(const float *w, int64_t rows, int64_t cols)
{
    opt_model *m = opt_model_new();
    m->graph = opt_graph_new();
    opt_error e = {0};
    opt_tensor *t = opt_tensor_new(), *b = opt_tensor_new();
    t->name = opt_strdup("W");
    int64_t d[2] = {rows, cols};
    opt_tensor_set_dims(t, d, 2, &e);
    opt_tensor_set_f32(t, OPT_DT_FLOAT, w, (uint64_t)(rows * cols), &e);
    b->name = opt_strdup("B");
    opt_tensor_set_dims(b, &rows, 1, &e);
    float *z = calloc((size_t)rows, sizeof *z);
    for (int64_t i = 0; i < rows; i++) z[i] = 0.01f * (float)i; /* small: a magnitude rule must not reach it */
    opt_tensor_set_f32(b, OPT_DT_FLOAT, z, (uint64_t)rows, &e);
    free(z);
    opt_graph_add_initializer(m->graph, t, &e);
    opt_graph_add_initializer(m->graph, b, &e);
    const char *in[3] = {"x", "W", "B"}, *out[1] = {"y"};
    opt_node *n = opt_node_make("Gemm", "fc", in, 3, out, 1);
    opt_node_set_attr_int(n, "transB", 1, &e);
    opt_graph_insert_node(m->graph, 0, n, &e);
    return m;
}

static uint64_t zeros(const opt_tensor *t)
{
    float *w;
    uint64_t n, z = 0;
    opt_error e = {0};
    opt_tensor_to_f32_alloc(t, &w, &n, &e);
    for (uint64_t i = 0; i < n; i++) z += w[i] == 0.0f;
    free(w);
    return z;
}

Test(prune, sparsity_gives_exact_zero_counts_even_with_ties_and_never_touches_the_bias)
{
    int64_t r = 37, c = 53;
    float *w = malloc((size_t)(r * c) * sizeof *w);
    for (int64_t i = 0; i < r * c; i++) w[i] = (float)((i * 7919) % 101 - 50) / 25.0f; /* many ties */
    for (int si = 0; si <= 20; si++) {
        double s = si / 20.0;
        opt_model *m = gemm_model(w, r, c);
        opt_prune_opts o = {.mode = OPT_PRUNE_SPARSITY, .value = s};
        opt_layer_stat *st;
        size_t n;
        opt_error e = {0};
        cr_assert_eq(opt_prune(m, &o, &st, &n, &e), OPT_OK, "%s", e.msg);
        cr_assert_eq(n, 1);
        uint64_t want = (uint64_t)llround(s * (double)(r * c));
        uint64_t had = 0;
        for (int64_t i = 0; i < r * c; i++) had += w[i] == 0.0f;
        if (want < had) want = had; /* existing zeros stay */
        cr_assert_eq(zeros(opt_graph_initializer(m->graph, "W")), want, "sparsity %g", s);
        cr_assert_eq(zeros(opt_graph_initializer(m->graph, "B")), 1, "the bias was touched");
        opt_layer_stats_free(st, n);
        opt_model_free(m);
    }
    free(w);
}

Test(cluster, pruned_zeros_stay_zero_and_nonzeros_get_all_centroids)
{
    int64_t r = 64, c = 100;
    float *w = malloc((size_t)(r * c) * sizeof *w);
    for (int64_t i = 0; i < r * c; i++) w[i] = urand() < 0.7 ? 0.0f : nrand();
    for (int bits = 1; bits <= 8; bits++) {
        opt_model *m = gemm_model(w, r, c);
        opt_cluster_opts o = {.bits_fc = bits, .inline_values = true};
        opt_layer_stat *st;
        size_t n;
        opt_error e = {0};
        cr_assert_eq(opt_cluster(m, &o, &st, &n, &e), OPT_OK, "%s", e.msg);
        cr_assert_eq(st[0].k, bits == 8 ? 255 : 1 << bits);
        float *q;
        uint64_t ne;
        opt_tensor_to_f32_alloc(opt_graph_initializer(m->graph, "W"), &q, &ne, &e);
        float seen[256];
        int ns = 0;
        for (uint64_t i = 0; i < ne; i++) {
            if (w[i] == 0.0f) cr_assert(q[i] == 0.0f, "a pruned zero moved (bits %d)", bits);
            if (q[i] == 0.0f) continue;
            int j;
            for (j = 0; j < ns && seen[j] != q[i]; j++) {}
            if (j == ns) {
                cr_assert_lt(ns, 256);
                seen[ns++] = q[i];
            }
        }
        cr_assert_leq(ns, st[0].k, "%d distinct values for %d centroids", ns, st[0].k);
        free(q);
        opt_layer_stats_free(st, n);
        opt_model_free(m);
    }
    free(w);
}
