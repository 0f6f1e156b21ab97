/*
 * tests/unit/calib_collect.c — calib/collect.c, the statistics `mopt calib` and `mopt quant
 * --data` build their ranges from, against a reference computed here from every value at once:
 * for each tensor of lenet300 over 437 Fashion-MNIST images in batches of 50, the counts,
 * minimum and maximum are those of a serial scan of all its values, and the histogram is the
 * one of binning all its values directly with the final range, which is the smallest h0 * 2^k
 * (h0: the tensor's largest magnitude in the first batch) that covers them. One, two and three
 * threads give that same result, on an executor each or on one executor with the threads inside
 * (as big models run); so does a batch that runs in pieces (batches of 200).
 */
#include "calib/collect.h"
#include "formats/onnx.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LENET300 "../datasets/lenet300.onnx"

/* Every value each tensor took, in sample order, and how many of them came in the first batch. */
typedef struct values {
    char name[128];
    float *v;
    size_t n, cap, n0;
} values;

typedef struct store {
    values t[32];
    int n;
    bool first;
} store;

static void add(store *s, const char *name, const opt_array *a)
{
    if (a->dtype != OPT_DT_FLOAT) return;
    values *t = NULL;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) t = &s->t[i];
    if (!t) {
        cr_assert_lt(s->n, 32);
        t = &s->t[s->n++];
        snprintf(t->name, sizeof t->name, "%s", name);
    }
    size_t n = opt_array_numel(a);
    if (t->n + n > t->cap) {
        t->cap = 2 * (t->n + n);
        t->v = realloc(t->v, t->cap * sizeof *t->v);
        cr_assert_not_null(t->v);
    }
    memcpy(t->v + t->n, a->data, n * sizeof *t->v);
    t->n += n;
    if (s->first) t->n0 = t->n;
}

static void observe(void *ctx, const char *name, const opt_node *producer, const opt_array *a)
{
    (void)producer;
    add(ctx, name, a);
}

/* The reference: one executor, batch after batch, every value kept. */
static void reference(const opt_model *m, store *s)
{
    opt_error e = {0};
    opt_dataset_opts dso = {.limit = 437};
    opt_dataset *ds;
    cr_assert_eq(opt_dataset_open("fashion-mnist:test", &dso, &ds, &e), OPT_OK, "%s", e.msg);
    opt_exec_opts eo = {.threads = 1, .observe = observe, .observe_ctx = s};
    opt_exec *x;
    cr_assert_eq(opt_exec_new(m, &eo, &x, &e), OPT_OK, "%s", e.msg);
    int nd;
    int64_t dims[OPT_MAX_DIMS];
    opt_exec_input_shape(x, 0, &nd, dims);
    cr_assert_eq(opt_dataset_fit(ds, opt_exec_input_name(x, 0), OPT_DT_FLOAT, nd, dims, &e), OPT_OK, "%s", e.msg);
    opt_array out[4] = {0};
    size_t n_out = opt_exec_n_outputs(x);
    cr_assert_leq(n_out, 4);
    s->first = true;
    for (;;) {
        opt_array batch, view;
        size_t got = 0;
        cr_assert_eq(opt_dataset_next_batch(ds, 50, &batch, NULL, &got, &e), OPT_OK, "%s", e.msg);
        if (got == 0) break;
        cr_assert_eq(opt_batch_fit(&batch, "data", opt_exec_input_name(x, 0), nd, dims, &view, &e), OPT_OK, "%s", e.msg);
        add(s, opt_exec_input_name(x, 0), &view);
        cr_assert_eq(opt_exec_run(x, &view, 1, out, n_out, &e), OPT_OK, "%s", e.msg);
        for (size_t i = 0; i < n_out; i++) opt_array_free(&out[i]);
        s->first = false;
    }
    opt_exec_free(x);
    opt_dataset_free(ds);
}

static void collect_shared(const opt_model *m, int threads, size_t batch, uint64_t shared_above,
                           opt_calib_stats *st)
{
    opt_error e = {0};
    opt_dataset_opts dso = {.limit = 437};
    opt_dataset *ds;
    cr_assert_eq(opt_dataset_open("fashion-mnist:test", &dso, &ds, &e), OPT_OK, "%s", e.msg);
    opt_calib_stats_init(st, true);
    opt_collect_opts co = {.batch = batch, .threads = threads, .shared_above = shared_above};
    cr_assert_eq(opt_calib_collect(m, ds, &co, st, &e), OPT_OK, "%s", e.msg);
    opt_dataset_free(ds);
}

static void collect(const opt_model *m, int threads, size_t batch, opt_calib_stats *st)
{
    collect_shared(m, threads, batch, 0, st);
}

static void same_stats(const opt_calib_stats *a, const opt_calib_stats *b, const char *what)
{
    cr_assert_eq(a->n, b->n, "%s", what);
    for (size_t i = 0; i < a->n; i++) {
        const opt_calib_acc *x = &a->acc[i], *y = &b->acc[i];
        cr_assert_str_eq(x->name, y->name, "%s", what);
        cr_assert(x->count == y->count && x->zeros == y->zeros && x->nonfinite == y->nonfinite, "%s: %s", what, x->name);
        cr_assert(x->min == y->min && x->max == y->max && x->hmax == y->hmax, "%s: %s", what, x->name);
        cr_assert(memcmp(x->pos, y->pos, OPT_CALIB_BINS * sizeof *x->pos) == 0 &&
                      memcmp(x->neg, y->neg, OPT_CALIB_BINS * sizeof *x->neg) == 0,
                  "%s: %s histograms", what, x->name);
    }
}

Test(calib_collect, statistics_equal_direct_binning_of_all_values_whatever_the_threads)
{
    opt_model *m;
    opt_error e = {0};
    cr_assert_eq(opt_onnx_load(LENET300, NULL, &m, &e), OPT_OK, "%s", e.msg);
    static store s;
    reference(m, &s);
    cr_assert_geq(s.n, 5, "the input and the layers' outputs");
    opt_calib_stats st[3];
    for (int t = 0; t < 3; t++) collect(m, t + 1, 50, &st[t]);
    same_stats(&st[0], &st[1], "2 threads against 1");
    same_stats(&st[0], &st[2], "3 threads against 1");
    cr_assert_eq(st[0].n, (size_t)s.n, "one accumulator per float tensor");
    int grown = 0;
    uint64_t *pos = malloc(OPT_CALIB_BINS * sizeof *pos), *neg = malloc(OPT_CALIB_BINS * sizeof *neg);
    for (int i = 0; i < s.n; i++) {
        const values *t = &s.t[i];
        const opt_calib_acc *a = &st[0].acc[i];
        cr_assert_str_eq(a->name, t->name, "tensors in the order the model produces them");
        opt_calib_part p, p0;
        opt_calib_scan_f32_ref(t->v, t->n, &p);
        opt_calib_scan_f32_ref(t->v, t->n0, &p0);
        cr_assert_eq(a->count, t->n, "%s", t->name);
        cr_assert_eq(a->zeros, p.zeros, "%s", t->name);
        cr_assert(a->min == p.min && !signbit(a->min) == !signbit(p.min), "%s: min %g against %g", t->name, a->min, p.min);
        cr_assert(a->max == p.max && !signbit(a->max) == !signbit(p.max), "%s: max %g against %g", t->name, a->max, p.max);
        double h0 = fmax(fabs((double)p0.min), fabs((double)p0.max)), amax = fmax(fabs((double)p.min), fabs((double)p.max));
        cr_assert_gt(h0, 0, "%s", t->name);
        double h = h0;
        while (amax > h) h *= 2;
        grown += h > h0;
        cr_assert_eq(a->hmax, h, "%s: range %g, expected %g (h0 %g)", t->name, a->hmax, h, h0);
        memset(pos, 0, OPT_CALIB_BINS * sizeof *pos);
        memset(neg, 0, OPT_CALIB_BINS * sizeof *neg);
        opt_calib_hist_f32_ref(pos, neg, h, t->v, t->n);
        for (int b = 0; b < OPT_CALIB_BINS; b++) {
            cr_assert_eq(a->pos[b], pos[b], "%s: bin %d of values >= 0: %llu, direct binning %llu", t->name, b,
                         (unsigned long long)a->pos[b], (unsigned long long)pos[b]);
            cr_assert_eq(a->neg[b], neg[b], "%s: bin %d of values < 0", t->name, b);
        }
    }
    cr_assert_gt(grown, 0, "some range doubled after the first batch (else the test shows little)");
    /* Batches of 200 run in pieces (lenet300: 167 samples) after the first: the same counts. */
    opt_calib_stats big[2];
    collect(m, 1, 200, &big[0]);
    collect(m, 2, 200, &big[1]);
    same_stats(&big[0], &big[1], "batches of 200, 2 threads against 1");
    for (size_t i = 0; i < big[0].n; i++) cr_assert_eq(big[0].acc[i].count, st[0].acc[i].count);
    /* As a big model runs: one executor with the threads inside (lenet300's 1 MB of weights
     * over a threshold of 1 byte), whole batches and pieces. */
    opt_calib_stats sh;
    collect_shared(m, 3, 50, 1, &sh);
    same_stats(&st[0], &sh, "one executor of 3 threads against 1 thread");
    opt_calib_stats_free(&sh);
    collect_shared(m, 2, 200, 1, &sh);
    same_stats(&big[0], &sh, "batches of 200, one executor of 2 threads against 1 thread");
    opt_calib_stats_free(&sh);
    for (int t = 0; t < 3; t++) opt_calib_stats_free(&st[t]);
    opt_calib_stats_free(&big[0]);
    opt_calib_stats_free(&big[1]);
    for (int i = 0; i < s.n; i++) free(s.t[i].v);
    free(pos);
    free(neg);
    opt_model_free(m);
}
