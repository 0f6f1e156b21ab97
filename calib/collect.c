/*
 * calib/collect.c — statistics of a model's activations over a dataset (see collect.h).
 *
 * Threads take whole batches: with W threads, W executors of one thread each run the batches
 * as they come (a model with big weights runs one executor of W threads instead, see
 * BIG_WEIGHTS; the observer then still sees one node's outputs at a time, in graph order). A
 * thread takes its next batch and reads it itself, into buffers of its own (take() below: from
 * a plain .npy or IDX file with no lock at all), and nothing waits for anything else until the
 * end, when thread 0 merges what each thread gathered. The executors share thread 0's packed
 * weights. (This file used to split every batch between the threads, which then met twice a
 * batch; on lenet300, whose batches of 100 take a tenth of a millisecond, the meetings and the
 * reader thread cost about what the second thread gave.) The result does not depend on the
 * thread count or on which thread ran which batch:
 *
 * - Counts add up. A minimum (maximum) is the part's of the lowest-numbered batch that holds
 *   it, which is what a serial scan keeps (it matters for the sign of a zero).
 * - Histograms: a tensor's range lives on a lattice fixed before the threads start, h0 * 2^k
 *   for k >= 0, where h0 is the tensor's largest magnitude in batch 0 (which thread 0 runs
 *   alone, while the others plan their executors), or 2^k for any k for a tensor that batch 0
 *   gave no range (all zeros there, or first seen later). A thread bins its values with the
 *   smallest lattice point that covers what it has seen, in the extended layout of stats.h,
 *   widening as it goes (opt_calib_xhist_widen); the merge folds every thread's histogram to the
 *   largest of them (opt_calib_xhist_fold), the smallest lattice point that covers all the data.
 *   Pairwise folding between power-of-two ranges is exact, so every value lands in the bin that
 *   binning it with the final range gives. (opt_calib_stats_add_array, which adds one batch at
 *   a time to an accumulator, clamps a value that rounds to the top of the range into the last
 *   bin, where it stays when a later batch doubles the range; here it lands where direct
 *   binning puts it. Only such values can differ between the two.)
 *
 * After batch 0 a batch runs in pieces of `chunk` samples (the same pieces whatever the thread
 * count), small enough that a node's output is still in the core's cache when the next node
 * reads it. (Not for big models: their executor reads the weights in place and packs them per
 * run, opt_exec_opts.no_prepack, which each piece would repeat. Packing BERT-base's weights at
 * load filled 340 MB of fresh pages, which took longer than 16 sequences' forward passes on 2
 * cores.) Pieces assume the model treats samples independently, as inference graphs do: a
 * tensor whose size does not follow a piece's sample count (a value computed from the batch as
 * a whole, e.g. a mean over the batch axis), or a piece that fails to run (a Reshape to a fixed
 * batch size), starts the collection again from the start with whole batches.
 */
#include "calib/collect.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool wanted(const opt_strmap *only, bool filter, const char *name, const opt_array *a)
{
    if (a->dtype != OPT_DT_FLOAT && a->dtype != OPT_DT_FLOAT16 && a->dtype != OPT_DT_BFLOAT16 &&
        a->dtype != OPT_DT_DOUBLE)
        return false;
    return !filter || opt_strmap_get(only, name, NULL);
}

/* Model inputs a calibration feeds at most. */
#define MAX_INPUTS 16

/* What the collection needs to know about a model input. */
typedef struct input_info {
    const char *name;
    opt_dataset *ds;       /* the feed's part for it */
    int ndim;
    int64_t dims[OPT_MAX_DIMS];
} input_info;

/* Binds every input of e to its part of f (by name; an unnamed part feeds the only input),
 * checks that the part fits it (float32 inputs take float32 batches, integer inputs the stored
 * integers) and rewinds the part. */
static opt_status check_inputs(opt_exec *e, const opt_feed *f, input_info *in, size_t *n_in, opt_error *err)
{
    size_t n = opt_exec_n_inputs(e);
    char names[512] = "";
    for (size_t i = 0, k = 0; i < n && k < sizeof names; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", opt_exec_input_name(e, i));
    if (n == 0) return opt_error_set(err, OPT_ERR_UNSUPPORTED, "the model has no input to feed the data to");
    if (n > MAX_INPUTS)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "calibration feeds at most %d inputs, the model has %zu",
                             MAX_INPUTS, n);
    if (f->n == 1 && !f->input[0] && n > 1)
        return opt_error_set(err, OPT_ERR_DATA, "%s: the model has %zu inputs (%s): give one data spec NAME=SPEC for each",
                             f->name, n, names);
    for (size_t i = 0; i < n; i++) {
        input_info *x = &in[i];
        x->name = opt_exec_input_name(e, i);
        x->ds = NULL;
        for (size_t j = 0; j < f->n && !x->ds; j++)
            if (!f->input[j] || strcmp(f->input[j], x->name) == 0) x->ds = f->ds[j];
        if (!x->ds)
            return opt_error_set(err, OPT_ERR_DATA, "no data for input '%s' (the model's inputs: %s; one data spec each, in order or as NAME=SPEC)",
                                 x->name, names);
        int dt = opt_exec_input_shape(e, i, &x->ndim, x->dims);
        OPT_TRY(opt_dataset_set_dtype(x->ds, x->name, dt, err));
        OPT_TRY(opt_dataset_fit(x->ds, x->name, dt, x->ndim, x->dims, err));
        OPT_TRY(opt_dataset_rewind(x->ds, err));
    }
    *n_in = n;
    return OPT_OK;
}

/* A batch number after every real one. */
#define NO_BATCH SIZE_MAX
/* Ranges below this have no lattice of their own (stats.h: the extended histograms are exact
 * for ranges in [2^-100, 2^129)). */
#define MIN_RANGE 0x1p-100
/* Models with this many bytes of weights (default of opt_collect_opts.shared_above) run on one
 * executor with all the threads inside it: an executor per thread would hold a packed copy of
 * the weights each (BERT-base: 435 MB, of 1.99 GB peak at 2 threads; 1.21 GB shared). That
 * executor packs no copy at all (no_prepack) and runs whole batches. */
#define BIG_WEIGHTS (64u << 20)
/* Pieces whose largest activation takes about half of a core's L2 cache. */
#define CHUNK_BYTES (512 * 1024)

/* One tensor as one thread saw it. */
typedef struct rec {
    const char *name;      /* the executor's value name (lives as long as the executor) */
    size_t first_b, first_seq; /* batch, and observation number within it, of the first sight */
    opt_calib_part part;   /* this thread's values, its batches joined in order */
    size_t min_b, max_b;   /* batch where part.min (part.max) was first seen */
    uint64_t numel;        /* values in the last observation (batch 0: the whole batch's) */
    uint64_t zeros;        /* zeros seen before this thread had a range for the tensor */
    double base;           /* h0 of the range lattice; 0: powers of two */
    double h;              /* range xh is binned with; 0: nothing binned yet */
    uint64_t *xh;          /* OPT_CALIB_XBINS counts (owned) */
} rec;

/* What batch 0 tells every thread about a tensor (read-only once the threads start). */
typedef struct ref {
    const char *name;
    uint64_t numel0;       /* values in batch 0 */
    double base;
} ref;

typedef struct par par;

typedef struct worker {
    par *p;
    pthread_t th;
    bool started;
    opt_exec *e;
    opt_array *outs;
    opt_dataset_buf dbuf[MAX_INPUTS]; /* this thread's batch, per input */
    opt_array view[MAX_INPUTS]; /* the batch, fitted to each input */
    size_t b, samples;     /* its number and samples */
    size_t pieces;         /* pieces it runs in */
    size_t run_samples;    /* samples of the running piece */
    size_t n_obs;          /* observations in the running piece */
    size_t seq;            /* observations in the batch so far */
    rec *recs;
    size_t n_recs, cap_recs;
    bool bad;              /* a piece did not behave as a slice of its batch */
} worker;

struct par {
    const opt_model *m;
    const opt_feed *f;
    opt_calib_stats *st;
    const opt_strmap *only;
    bool filter;
    const opt_collect_opts *o;
    input_info in[MAX_INPUTS];
    size_t n_in, n_out;
    size_t bs;
    int nw;                /* workers, each an executor running whole batches */
    int intra;             /* threads inside each executor (1, or all of them for one worker) */
    bool big;              /* at least shared_above bytes of weights */
    worker *w;
    ref *refs;             /* thread 0's tensors after batch 0 */
    size_t n_refs;
    size_t samples0;       /* samples in batch 0 */
    size_t chunk;          /* samples per piece after batch 0; 0: whole batches */
    /* Under mu: the hand-out of batches, batch 0's end (cv), and the earliest failure. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;            /* batch 0 is done: refs and chunk are set */
    size_t next_b, done_n, total;
    bool random;           /* every input reads in any order: batches are handed out by next_ab */
    atomic_size_t next_ab;
    bool eof;
    bool restart;          /* a piece misbehaved: collect again with whole batches */
    atomic_bool abort;     /* stop taking batches (and observing) */
    opt_status status;
    size_t err_b;          /* batch of the failure kept in status/err: the lowest wins */
    opt_error err;
};

static void fail_locked(par *p, size_t b, opt_status s, const opt_error *e)
{
    if (p->status == OPT_OK || b < p->err_b) {
        p->status = s;
        p->err_b = b;
        if (e) p->err = *e;
    }
    atomic_store(&p->abort, true);
    pthread_cond_broadcast(&p->cv);
}

static void fail(par *p, size_t b, opt_status s, const opt_error *e)
{
    pthread_mutex_lock(&p->mu);
    fail_locked(p, b, s, e);
    pthread_mutex_unlock(&p->mu);
}

/* Joins part q, whose extremes were first seen in batches qmin_b and qmax_b, into r's. */
static void join_part(rec *r, const opt_calib_part *q, size_t qmin_b, size_t qmax_b)
{
    r->part.count += q->count;
    r->part.nonfinite += q->nonfinite;
    r->part.zeros += q->zeros;
    r->part.f16_flush += q->f16_flush;
    if (q->min < r->part.min || (q->min == r->part.min && qmin_b < r->min_b)) {
        r->part.min = q->min;
        r->min_b = qmin_b;
    }
    if (q->max > r->part.max || (q->max == r->part.max && qmax_b < r->max_b)) {
        r->part.max = q->max;
        r->max_b = qmax_b;
    }
}

/* The smallest point of the lattice of base (0: powers of two) that covers magnitude amax. */
static double lattice_cover(double base, double amax)
{
    double h = base;
    if (!(h > 0)) {
        int ex;
        double f = frexp(amax, &ex);
        h = ldexp(1.0, f == 0.5 ? ex - 1 : ex);
        if (h < MIN_RANGE) h = MIN_RANGE;
    }
    while (amax > h) h *= 2;
    return h;
}

/* Batch 0's entry for the tensor observed k-th in a piece, or by name; NULL if none. */
static const ref *ref_find(const par *p, size_t k, const char *name)
{
    if (k < p->n_refs && strcmp(p->refs[k].name, name) == 0) return &p->refs[k];
    for (size_t i = 0; i < p->n_refs; i++)
        if (strcmp(p->refs[i].name, name) == 0) return &p->refs[i];
    return NULL;
}

/* No values yet: extremes that any value replaces, from no batch. */
static void part_clear(rec *r)
{
    r->part = (opt_calib_part){INFINITY, -INFINITY, 0, 0, 0, 0};
    r->min_b = r->max_b = NO_BATCH;
}

static rec *rec_find(worker *w, size_t k, const char *name)
{
    if (k < w->n_recs && (w->recs[k].name == name || strcmp(w->recs[k].name, name) == 0)) return &w->recs[k];
    for (size_t i = 0; i < w->n_recs; i++)
        if (strcmp(w->recs[i].name, name) == 0) return &w->recs[i];
    return NULL;
}

static rec *rec_new(worker *w, size_t k, const char *name)
{
    if (w->n_recs == w->cap_recs) {
        size_t cap = w->cap_recs ? 2 * w->cap_recs : 32;
        rec *nr = realloc(w->recs, cap * sizeof *nr);
        if (!nr) return NULL;
        w->recs = nr;
        w->cap_recs = cap;
    }
    rec *r = &w->recs[w->n_recs++];
    memset(r, 0, sizeof *r);
    r->name = name;
    r->first_b = w->b;
    r->first_seq = w->seq;
    part_clear(r);
    const ref *f = w->b > 0 ? ref_find(w->p, k, name) : NULL;
    r->base = f ? f->base : 0; /* batch 0 sets its own below */
    return r;
}

/* One tensor of one piece: scan it and, with histograms, bin it. */
static void observe_rec(worker *w, const char *name, const opt_array *a)
{
    par *p = w->p;
    if (w->bad || atomic_load_explicit(&p->abort, memory_order_relaxed) || !wanted(p->only, p->filter, name, a))
        return;
    size_t k = w->n_obs++;
    w->seq++;
    uint64_t numel = opt_array_numel(a);
    if (w->pieces > 1) {
        /* A piece must look like a slice of a batch: batch 0's tensors, in proportion. */
        const ref *f = ref_find(p, k, name);
        if (!f || numel * p->samples0 != f->numel0 * w->run_samples) {
            w->bad = true;
            return;
        }
    }
    rec *r = rec_find(w, k, name);
    if (!r && !(r = rec_new(w, k, name))) {
        opt_error e = {0};
        fail(p, w->b, opt_error_set(&e, OPT_ERR_NOMEM, "out of memory"), &e);
        return;
    }
    r->numel = numel;
    opt_calib_part cp;
    opt_calib_scan_array(a, &cp);
    join_part(r, &cp, w->b, w->b);
    if (!p->st->histograms || cp.nonfinite == cp.count) return;
    double amax = fmax(fabs((double)cp.min), fabs((double)cp.max));
    if (r->h == 0) {
        if (amax == 0) { /* zeros go to bin 0 whatever the range becomes */
            r->zeros += cp.zeros;
            return;
        }
        if (w->b == 0 && amax >= MIN_RANGE) r->base = amax;
    }
    double h = lattice_cover(r->h > 0 ? r->h : r->base, amax);
    if (!r->xh && !(r->xh = calloc(OPT_CALIB_XBINS, sizeof *r->xh))) {
        opt_error e = {0};
        fail(p, w->b, opt_error_set(&e, OPT_ERR_NOMEM, "out of memory"), &e);
        return;
    }
    if (r->h > 0 && h > r->h) opt_calib_xhist_widen(r->xh, r->h, h);
    opt_calib_xhist_array(r->xh, h, a);
    r->h = h;
}

static void observe_cb(void *ctx, const char *name, const opt_node *producer, const opt_array *a)
{
    (void)producer;
    observe_rec(ctx, name, a);
}

/* Under p->mu: hands out the next batch from the inputs' streams (a .gz or CSV source reads
 * its records here) into w's buffers; false at the end of the data or after a failure. */
static bool take_locked(worker *w, size_t *got_out, opt_error *e)
{
    par *p = w->p;
    if (p->eof || atomic_load(&p->abort)) return false;
    size_t got = 0;
    opt_status s = OPT_OK;
    /* Every part holds the same number of samples (opt_feed_open), so each gives `got`. */
    for (size_t k = 0; k < p->n_in && s == OPT_OK; k++) {
        size_t g = 0;
        s = opt_dataset_take(p->in[k].ds, p->bs, &w->dbuf[k], &g, e);
        if (s == OPT_OK && k > 0 && g != got)
            s = opt_error_set(e, OPT_ERR_DATA, "%s: ran out of samples before the other inputs' data",
                              opt_dataset_name(p->in[k].ds));
        got = g;
    }
    if (s != OPT_OK) {
        fail_locked(p, p->next_b, s, e);
        return false;
    }
    if (got == 0) {
        p->eof = true;
        return false;
    }
    w->b = p->next_b++;
    w->samples = got;
    p->done_n += got;
    if (p->o->progress) p->o->progress(p->o->progress_ctx, p->done_n, p->total);
    *got_out = got;
    return true;
}

/* Takes the next batch and makes it in w's buffers; false at the end of the data or after a
 * failure. From random-access files (plain .npy and IDX: opt_dataset_random_access) batch b is
 * samples [b * bs, (b + 1) * bs), handed out by an atomic counter, and each thread reads and
 * converts its own. A .gz or CSV stream hands out its batches under the lock, where its records
 * are read (in order: the stream is sequential), and the thread converts them after it. The
 * lowest-numbered batch's failure is the one kept: every batch below a failing one was handed out
 * before it, and its thread goes on to make it. */
static bool take(worker *w)
{
    par *p = w->p;
    bool ok = false;
    size_t got = 0;
    opt_error e = {0};
    opt_status s = OPT_OK;
    if (p->random) { /* batch b is samples [b * bs, (b + 1) * bs): no lock */
        size_t b = atomic_fetch_add(&p->next_ab, 1), first = b * p->bs;
        if (first >= p->total) return false;
        got = p->total - first < p->bs ? p->total - first : p->bs;
        for (size_t k = 0; k < p->n_in; k++) w->dbuf[k].first = first, w->dbuf[k].n = got;
        w->b = b;
        w->samples = got;
        ok = true;
        if (p->o->progress) {
            pthread_mutex_lock(&p->mu);
            p->done_n += got;
            p->o->progress(p->o->progress_ctx, p->done_n, p->total);
            pthread_mutex_unlock(&p->mu);
        }
    } else {
        pthread_mutex_lock(&p->mu);
        ok = take_locked(w, &got, &e);
        pthread_mutex_unlock(&p->mu);
    }
    for (size_t k = 0; k < p->n_in && ok; k++) {
        const input_info *in = &p->in[k];
        opt_array batch;
        s = opt_dataset_fill(in->ds, &w->dbuf[k], &batch, &e);
        if (s == OPT_OK) s = opt_batch_fit(&batch, opt_dataset_name(in->ds), in->name, in->ndim, in->dims, &w->view[k], &e);
        if (s != OPT_OK) {
            fail(p, w->b, s, &e);
            ok = false;
        }
    }
    return ok && !atomic_load(&p->abort);
}

/* Runs w's batch: whole, or in pieces of p->chunk samples after batch 0. */
static void run_batch(worker *w)
{
    par *p = w->p;
    size_t step = w->b > 0 && p->chunk ? p->chunk : w->samples;
    w->pieces = (w->samples + step - 1) / step;
    w->seq = 0;
    for (size_t off = 0; off < w->samples; off += step) {
        opt_array v[MAX_INPUTS];
        size_t n = w->samples - off < step ? w->samples - off : step;
        w->n_obs = 0;
        w->run_samples = n;
        for (size_t k = 0; k < p->n_in; k++) {
            size_t per = w->view[k].nbytes / w->samples; /* bytes per sample */
            v[k] = w->view[k];
            v[k].dims[0] = (int64_t)n;
            v[k].data = (char *)w->view[k].data + off * per;
            v[k].nbytes = n * per;
            observe_rec(w, p->in[k].name, &v[k]);
        }
        opt_error e = {0};
        opt_status s = opt_exec_run(w->e, v, p->n_in, w->outs, p->n_out, &e);
        for (size_t i = 0; i < p->n_out; i++) opt_array_free(&w->outs[i]);
        if (s != OPT_OK && w->pieces > 1) w->bad = true; /* the whole batch may run: try it */
        else if (s != OPT_OK) fail(p, w->b, s, &e);
        if (s != OPT_OK || w->bad) break;
    }
    if (w->bad) {
        pthread_mutex_lock(&p->mu);
        p->restart = true;
        atomic_store(&p->abort, true);
        pthread_mutex_unlock(&p->mu);
    }
}

/* w's executor: p->intra threads, every produced value handed to observe_rec (by the thread
 * that runs the graph, one node after another). Thread 0's executor packs the weights; the
 * others read its packed copy (opt_exec_opts.share): on 16 cores, 15 more copies of lenet300's
 * packed weights, each a megabyte of fresh pages, took as long to plan as two batches, and slowed
 * batch 0, which thread 0 runs meanwhile, from 1 to 3.6 ms. */
static opt_status plan_worker(par *p, worker *w, opt_error *err)
{
    opt_exec_opts eo = {.threads = p->intra, .observe = observe_cb, .observe_ctx = w,
                        .no_prepack = p->big, .share = w == &p->w[0] ? NULL : p->w[0].e};
    return opt_exec_new(p->m, &eo, &w->e, err);
}

static opt_status alloc_outs(const par *p, worker *w, opt_error *err)
{
    w->outs = calloc(p->n_out ? p->n_out : 1, sizeof *w->outs);
    return w->outs ? OPT_OK : opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
}

static void *thread_main(void *arg)
{
    worker *w = arg;
    par *p = w->p;
    /* Planning packs every weight (~1 ms for lenet300): done while thread 0 runs batch 0. */
    opt_error e = {0};
    opt_status s = plan_worker(p, w, &e);
    if (s == OPT_OK) s = alloc_outs(p, w, &e);
    if (s != OPT_OK) {
        fail(p, 0, s, &e);
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    while (!p->ready && !atomic_load(&p->abort)) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    while (take(w)) run_batch(w);
    return NULL;
}

/* Batch 0 is done: record what it says about each tensor, and the piece size. */
static opt_status publish_batch0(par *p, bool chunking, opt_error *err)
{
    const worker *w0 = &p->w[0];
    p->samples0 = w0->samples;
    p->n_refs = w0->n_recs;
    p->refs = calloc(p->n_refs ? p->n_refs : 1, sizeof *p->refs);
    if (!p->refs) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    uint64_t most = 1;
    for (size_t k = 0; k < p->n_refs; k++) {
        const rec *r = &w0->recs[k];
        p->refs[k] = (ref){r->name, r->numel, r->base};
        if (p->samples0 && r->numel / p->samples0 > most) most = r->numel / p->samples0;
    }
    p->chunk = chunking ? (size_t)(CHUNK_BYTES / (most * sizeof(float))) : 0;
    if (chunking && p->chunk < 1) p->chunk = 1;
    return OPT_OK;
}

static int cmp_first(const void *a, const void *b)
{
    const rec *x = *(const rec *const *)a, *y = *(const rec *const *)b;
    if (x->first_b != y->first_b) return x->first_b < y->first_b ? -1 : 1;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

/* Adds every thread's records to st: tensors in the order a serial run first observes them,
 * each thread's histogram folded to the largest range any thread reached. */
static opt_status merge(par *p, opt_error *err)
{
    size_t n = 0;
    for (int i = 0; i < p->nw; i++) n += p->w[i].n_recs;
    rec **all = malloc((n ? n : 1) * sizeof *all);
    rec *tie = calloc(n ? n : 1, sizeof *tie); /* per accumulator: the joined part and its batches */
    double *hfin = calloc(n ? n : 1, sizeof *hfin);
    opt_status s = OPT_OK;
    if (!all || !tie || !hfin) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    n = 0;
    for (int i = 0; i < p->nw; i++)
        for (size_t k = 0; k < p->w[i].n_recs; k++) all[n++] = &p->w[i].recs[k];
    qsort(all, n, sizeof *all, cmp_first);
    for (size_t j = 0; j < n; j++) {
        const rec *r = all[j];
        opt_calib_acc *acc = opt_calib_stats_acc(p->st, r->name, err);
        if (!acc) {
            s = err ? err->status : OPT_ERR_NOMEM;
            goto done;
        }
        size_t i = (size_t)(acc - p->st->acc); /* st started empty */
        if (!tie[i].name) {
            tie[i].name = r->name;
            part_clear(&tie[i]);
        }
        join_part(&tie[i], &r->part, r->min_b, r->max_b);
        tie[i].zeros += r->zeros;
        if (r->h > hfin[i]) hfin[i] = r->h;
    }
    for (size_t i = 0; i < p->st->n; i++) {
        opt_calib_acc *acc = &p->st->acc[i];
        const opt_calib_part *q = &tie[i].part;
        acc->count = q->count;
        acc->nonfinite = q->nonfinite;
        acc->zeros = q->zeros;
        acc->f16_flush = q->f16_flush;
        acc->min = q->min;
        acc->max = q->max;
        if (acc->pos) {
            acc->hmax = hfin[i];
            acc->pos[0] += tie[i].zeros;
        }
    }
    for (size_t j = 0; j < n; j++) {
        rec *r = all[j];
        if (r->h == 0 || !r->xh) continue;
        opt_calib_acc *acc = (opt_calib_acc *)opt_calib_stats_find(p->st, r->name);
        opt_calib_xhist_fold(acc->pos, acc->neg, acc->hmax, r->xh, r->h);
    }
done:
    free(all);
    free(tie);
    free(hfin);
    return s;
}

static int cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* Bytes of m's initializers (what each executor packs a copy of). */
static uint64_t weight_bytes(const opt_model *m)
{
    uint64_t total = 0;
    const opt_graph *g = m->graph;
    for (size_t i = 0; g && i < g->n_initializers; i++) {
        const opt_tensor *t = g->initializers[i];
        uint64_t n;
        int bits = t->has_data_type ? opt_dtype_bits(t->data_type) : 0;
        if (opt_tensor_numel(t, &n) && bits > 0) total += n * (uint64_t)bits / 8;
    }
    return total;
}

/* One pass over the data. Sets *restart (st then holds nothing) when a piece misbehaved. */
static opt_status collect_pass(par *p, bool chunking, bool *restart, opt_error *err)
{
    opt_status s = OPT_OK;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->abort, false);
    p->w = calloc((size_t)p->nw, sizeof *p->w);
    if (!p->w) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < p->nw; i++) p->w[i].p = p;
    worker *w0 = &p->w[0];
    if ((s = plan_worker(p, w0, err)) != OPT_OK || (s = check_inputs(w0->e, p->f, p->in, &p->n_in, err)) != OPT_OK)
        goto done;
    p->n_out = opt_exec_n_outputs(w0->e);
    if ((s = alloc_outs(p, w0, err)) != OPT_OK) goto done;
    for (size_t k = 0; k < p->n_in; k++) {
        const input_info *in = &p->in[k];
        if (in->ndim == 0 || in->dims[0] > 0) chunking = false; /* no batch dim, or a fixed one */
        if (in->ndim > 0 && in->dims[0] > 0) p->bs = (size_t)in->dims[0];
    }
    p->total = opt_dataset_count(p->in[0].ds);
    p->random = p->total > 0;
    for (size_t k = 0; k < p->n_in; k++) p->random &= opt_dataset_random_access(p->in[k].ds);
    atomic_init(&p->next_ab, 0);
    if (p->total > 0) { /* no more threads than batches */
        size_t batches = (p->total + p->bs - 1) / p->bs;
        if ((size_t)p->nw > batches) p->nw = (int)batches;
    }
    for (int i = 1; i < p->nw; i++) {
        if (pthread_create(&p->w[i].th, NULL, thread_main, &p->w[i]) != 0) {
            fail(p, 0, opt_error_set(err, OPT_ERR_NOMEM, "cannot start a calibration thread"), err);
            break;
        }
        p->w[i].started = true;
    }
    if (take(w0)) run_batch(w0);
    opt_error e = {0};
    opt_status ps = publish_batch0(p, chunking, &e);
    pthread_mutex_lock(&p->mu);
    if (ps != OPT_OK) fail_locked(p, 0, ps, &e);
    p->ready = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    while (take(w0)) run_batch(w0);
    for (int i = 1; i < p->nw; i++)
        if (p->w[i].started) pthread_join(p->w[i].th, NULL);
    if (p->restart) {
        *restart = true;
        goto done;
    }
    if (p->status != OPT_OK) {
        s = p->status;
        if (err) *err = p->err;
        goto done;
    }
    s = merge(p, err);
done:
    for (int i = p->nw - 1; i >= 0 && p->w; i--) { /* thread 0's executor last: the others read it */
        worker *w = &p->w[i];
        for (size_t k = 0; k < w->n_recs; k++) free(w->recs[k].xh);
        free(w->recs);
        for (size_t k = 0; k < MAX_INPUTS; k++) opt_dataset_buf_free(&w->dbuf[k]);
        free(w->outs);
        opt_exec_free(w->e);
    }
    free(p->w);
    free(p->refs);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    return s;
}

opt_status opt_calib_collect(const opt_model *m, opt_dataset *ds, const opt_collect_opts *o,
                             opt_calib_stats *st, opt_error *err)
{
    char *input = NULL;
    opt_feed f = {.n = 1, .input = &input, .ds = &ds, .name = (char *)opt_dataset_name(ds)};
    return opt_calib_collect_feed(m, &f, o, st, err);
}

opt_status opt_calib_collect_feed(const opt_model *m, const opt_feed *f, const opt_collect_opts *o,
                                  opt_calib_stats *st, opt_error *err)
{
    static const opt_collect_opts defaults = {0};
    if (!o) o = &defaults;
    if (st->n != 0) return opt_error_set(err, OPT_ERR_USAGE, "calibration statistics must start empty");
    opt_strmap only = {0};
    bool filter = false;
    if (o->only) {
        filter = true;
        for (size_t i = 0; i < o->n_only; i++)
            if (!opt_strmap_put(&only, o->only[i], i)) {
                opt_strmap_free(&only);
                return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            }
    }
    size_t bs = o->batch ? o->batch : 64;
    int nw = o->threads > 0 ? o->threads : cpu_count(), intra = 1;
    bool big = weight_bytes(m) >= (o->shared_above ? o->shared_above : BIG_WEIGHTS);
    if (nw > 1 && big) intra = nw, nw = 1;
    opt_status s = OPT_OK;
    /* A big model's batches run whole: its executor packs the weights in every run (no_prepack),
     * and each piece would pack them again. */
    for (int attempt = big ? 1 : 0; attempt < 2; attempt++) {
        par p = {.m = m, .f = f, .st = st, .only = &only, .filter = filter, .o = o, .bs = bs,
                 .nw = nw, .intra = intra, .big = big};
        bool restart = false;
        s = collect_pass(&p, attempt == 0, &restart, err);
        if (s != OPT_OK || !restart) break;
        bool h = st->histograms; /* again, from the start, with whole batches */
        opt_calib_stats_free(st);
        opt_calib_stats_init(st, h);
    }
    opt_strmap_free(&only);
    return s;
}

/* The ranges of tensors next, next+1, ... (shared counter) until all are taken: one thread of
 * opt_calib_table_from_stats. */
typedef struct range_job {
    const opt_calib_stats *st;
    const opt_range_opts *ro;
    float *lo, *hi;
    opt_status *s;
    opt_error *e;
    atomic_size_t next;
} range_job;

static void *range_main(void *arg)
{
    range_job *j = arg;
    for (size_t i; (i = atomic_fetch_add(&j->next, 1)) < j->st->n;) {
        const opt_calib_acc *a = &j->st->acc[i];
        if (a->count != a->nonfinite) j->s[i] = opt_calib_range(a, j->ro, &j->lo[i], &j->hi[i], &j->e[i]);
    }
    return NULL;
}

opt_status opt_calib_table_from_stats(const opt_calib_stats *st, const opt_range_opts *ro,
                                      opt_calib_table *t, opt_error *err)
{
    size_t n = st->n;
    range_job j = {.st = st, .ro = ro};
    atomic_init(&j.next, 0);
    j.lo = malloc((n ? n : 1) * sizeof *j.lo);
    j.hi = malloc((n ? n : 1) * sizeof *j.hi);
    j.s = calloc(n ? n : 1, sizeof *j.s);
    j.e = calloc(n ? n : 1, sizeof *j.e);
    opt_status s = OPT_OK;
    if (!j.lo || !j.hi || !j.s || !j.e) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* The KL and MSE searches take ~0.5 ms a tensor (lenet300's seven: a tenth of its whole
     * calibration), so they spread over the cores; minmax and percentile are a lookup. Each
     * range depends only on its own tensor, and the table is filled in order afterwards: the
     * same table, and the same first error, as one thread gives. */
    pthread_t th[63];
    int nt = 0;
    if (ro->method == OPT_CALIB_ENTROPY || ro->method == OPT_CALIB_MSE) {
        int want = (ro->threads > 0 ? ro->threads : cpu_count()) - 1;
        if ((size_t)want > n / 2) want = (int)(n / 2);
        while (nt < want && nt < 63 && pthread_create(&th[nt], NULL, range_main, &j) == 0) nt++;
    }
    range_main(&j);
    for (int i = 0; i < nt; i++) pthread_join(th[i], NULL);
    for (size_t i = 0; i < n && s == OPT_OK; i++) {
        const opt_calib_acc *a = &st->acc[i];
        if (a->count == a->nonfinite) continue;
        if (j.s[i] != OPT_OK) {
            if (err) *err = j.e[i];
            s = j.s[i];
            break;
        }
        float scale;
        int32_t zp;
        opt_qparams(j.lo[i], j.hi[i], ro->qdtype ? ro->qdtype : OPT_DT_UINT8, &scale, &zp);
        s = opt_calib_table_add(t, a->name, opt_calib_method_name(ro->method), j.lo[i], j.hi[i], scale, zp, err);
    }
done:
    free(j.lo);
    free(j.hi);
    free(j.s);
    free(j.e);
    return s;
}
