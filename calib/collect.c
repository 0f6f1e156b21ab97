/*
 * calib/collect.c — statistics of a model's activations over a dataset (see collect.h).
 *
 * Threads split each batch, not the nodes: with W threads, W executors of one thread each run
 * consecutive slices of the batch (tiny per-image kernels do not scale inside one node, and
 * the statistics pass then runs on every thread too). The result must equal a serial run's.
 * Counts, minima and maxima are easy: each slice keeps its own scan (opt_calib_scan_f32) of each
 * tensor, and after the batch the main thread joins them in sample order, the join a serial scan
 * would make. Histograms are harder: a tensor's range for a batch depends on the whole batch's
 * extremes, hprev * 2^d for the smallest d that covers them once the range hprev is set. So a
 * slice is binned with the smallest such range that covers the slice itself, in the extended
 * layout of stats.h, and the merge folds it to the batch's range (opt_calib_xhist_fold): exact,
 * with no waiting between threads. Only while a tensor has no range yet (the first batch, or a
 * tensor all zeros so far) do the threads meet at a barrier at that tensor to join their scans
 * first. After the first batch a slice also runs in pieces small enough that a node's output is
 * still in cache when the next node reads it; a thread gathers its pieces in order, widening
 * its histogram as a piece needs (opt_calib_xhist_widen).
 *
 * Bit for bit, that is, when the kernels compute a sample the same whatever the batch size:
 * mopt's own kernels do; OpenBLAS (Gemm on CPUs without AVX-512) may round a sum differently
 * for 17 rows than for 50, so there a table can move in the last bit with the thread count, as
 * it can with --batch.
 *
 * This assumes the model treats samples independently, as inference graphs do. The first
 * batch is split unevenly and every tensor's size must scale with its slice's sample count; a
 * tensor that does not (a value computed from the batch as a whole, e.g. a reduction over the
 * batch axis), or a slice that fails to run (a Reshape to a fixed batch size), sends the whole
 * collection back to the serial path, from the start.
 */
#include "calib/collect.h"
#include "libopt/exec/threads.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- serial path ------------------------------------------------------------------------------ */

typedef struct obs {
    opt_calib_stats *st;
    opt_strmap only;
    bool filter;
    opt_status status;
    opt_error err;
} obs;

static bool wanted(const opt_strmap *only, bool filter, const char *name, const opt_array *a)
{
    if (a->dtype != OPT_DT_FLOAT && a->dtype != OPT_DT_FLOAT16 && a->dtype != OPT_DT_BFLOAT16 &&
        a->dtype != OPT_DT_DOUBLE)
        return false;
    return !filter || opt_strmap_get(only, name, NULL);
}

static void observe(void *ctx, const char *name, const opt_node *producer, const opt_array *a)
{
    (void)producer;
    obs *o = ctx;
    if (o->status != OPT_OK || !wanted(&o->only, o->filter, name, a)) return;
    o->status = opt_calib_stats_add_array(o->st, name, a, &o->err);
}

/* What both paths need to know about the model input. */
typedef struct input_info {
    const char *name;
    int ndim;
    int64_t dims[OPT_MAX_DIMS];
    size_t n_out;
} input_info;

/* Checks that e has one float input that ds fits, and rewinds ds. */
static opt_status check_input(opt_exec *e, opt_dataset *ds, input_info *in, opt_error *err)
{
    if (opt_exec_n_inputs(e) != 1)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "calibration needs a model with one input (this one has %zu)",
                             opt_exec_n_inputs(e));
    in->name = opt_exec_input_name(e, 0);
    int dt = opt_exec_input_shape(e, 0, &in->ndim, in->dims);
    if (dt != 0 && dt != OPT_DT_FLOAT)
        return opt_error_set(err, OPT_ERR_DATA, "model input '%s' is %s; calibration data are float32", in->name,
                             opt_dtype_short(dt));
    in->n_out = opt_exec_n_outputs(e);
    OPT_TRY(opt_dataset_fit(ds, in->name, dt, in->ndim, in->dims, err));
    return opt_dataset_rewind(ds, err);
}

static opt_status collect_serial(const opt_model *m, opt_dataset *ds, const opt_collect_opts *o, size_t bs,
                                 obs *ob, opt_error *err)
{
    opt_exec_opts eo = {.threads = o->threads, .observe = observe, .observe_ctx = ob};
    opt_exec *e = NULL;
    opt_array *outs = NULL;
    input_info in;
    opt_status s = opt_exec_new(m, &eo, &e, err);
    if (s != OPT_OK) goto done;
    if ((s = check_input(e, ds, &in, err)) != OPT_OK) goto done;
    if (in.ndim > 0 && in.dims[0] > 0) bs = (size_t)in.dims[0];
    size_t total = opt_dataset_count(ds), done_n = 0;
    outs = calloc(in.n_out ? in.n_out : 1, sizeof *outs);
    if (!outs) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        opt_array batch, view;
        size_t got = 0;
        if ((s = opt_dataset_next_batch(ds, bs, &batch, NULL, &got, err)) != OPT_OK || got == 0) break;
        if ((s = opt_batch_fit(&batch, opt_dataset_name(ds), in.name, in.ndim, in.dims, &view, err)) != OPT_OK) break;
        if (wanted(&ob->only, ob->filter, in.name, &view))
            if ((s = opt_calib_stats_add_array(ob->st, in.name, &view, err)) != OPT_OK) break;
        if ((s = opt_exec_run(e, &view, 1, outs, in.n_out, err)) != OPT_OK) break;
        for (size_t i = 0; i < in.n_out; i++) opt_array_free(&outs[i]);
        if (ob->status != OPT_OK) {
            s = ob->status;
            if (err) *err = ob->err;
            break;
        }
        done_n += got;
        if (o->progress) o->progress(o->progress_ctx, done_n, total);
    }
done:
    free(outs);
    opt_exec_free(e);
    return s;
}

/* ---- parallel path ------------------------------------------------------------------------------ */

typedef struct par par;

/* A slice's scan of one tensor, published at a barrier. */
typedef struct slot {
    opt_calib_part part;
    uint64_t numel;
} slot;

/* One observed tensor of one slice, kept until the batch is merged. */
typedef struct rec {
    const char *name;      /* the executor's value name (lives as long as the executor) */
    opt_calib_part part;   /* of the whole slice (its runs joined in order) */
    uint64_t numel;        /* of the whole slice */
    uint64_t numel0;       /* of the slice's first run */
    double h;              /* range xh was binned with; 0: nothing binned */
    uint64_t *xh;          /* OPT_CALIB_XBINS counts (owned, reused batch after batch) */
} rec;

typedef struct worker {
    par *p;
    int id;
    pthread_t th;
    bool started;
    opt_exec *e;
    opt_array *outs;
    opt_array in;          /* this thread's slice of the batch (a view) */
    size_t samples;        /* samples in the slice */
    rec *recs;             /* by observation number within a run of the executor */
    size_t n_recs, cap_recs;
    size_t run;            /* runs of the slice so far in this batch (see run_slice) */
    size_t n_obs;          /* observations in this run */
    size_t samples0;       /* samples of the slice's first run */
    size_t run_samples;    /* samples of this run */
    bool bad;              /* a run observed other tensors than the first, or sizes that do
                              not scale with its samples */
    slot slots[2];         /* by the parity of the observation number (see observe_slice) */
    opt_status status;
    opt_error err;
} worker;

struct par {
    const opt_model *m;    /* threads 1..nw-1 plan their executors from it */
    opt_calib_stats *st;
    const opt_strmap *only;
    bool filter;
    const char *in_name;
    size_t n_out;
    int nw;                /* threads */
    int active;            /* threads with samples in this batch (the barrier's parties) */
    worker *w;
    /* Range of each observed tensor after the batches so far, by observation number (set
     * between batches; n_known = 0 before the first). */
    double *hprev;
    size_t n_known;
    /* After the first batch, a slice runs in pieces of `chunk` samples when every tensor's
     * range is known (`chunked`): the activations of a piece stay in the core's cache from
     * one node to the next. 0: one run per slice. */
    size_t chunk;
    bool chunked;
    /* The barrier, for tensors whose range is not set yet: spins briefly, then sleeps. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int arrived;
    atomic_uint gen;
    atomic_bool abort;
    /* Batch hand-out to threads 1..nw-1: a thread spins for the next batch (and thread 0 for
     * the others' slices) up to OPT_SPIN_NS, then sleeps on go (done). batch_gen's increment
     * publishes the batch's slices. */
    pthread_cond_t go, done;
    _Atomic unsigned long batch_gen;
    atomic_int pending;
    atomic_bool stop;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Waits until p->active threads arrived; false when a thread gave up (p->abort). */
static bool bar_wait(par *p)
{
    unsigned g = atomic_load(&p->gen);
    if (atomic_fetch_add(&p->arrived, 1) + 1 == p->active) {
        atomic_store(&p->arrived, 0);
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->gen, g + 1);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        return !atomic_load(&p->abort);
    }
    for (int i = 0; i < 2000; i++) {
        if (atomic_load(&p->gen) != g || atomic_load(&p->abort)) return !atomic_load(&p->abort);
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->gen) == g && !atomic_load(&p->abort)) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return !atomic_load(&p->abort);
}

static void give_up(worker *w, opt_status s, const opt_error *err)
{
    par *p = w->p;
    if (w->status == OPT_OK) {
        w->status = s;
        if (err) w->err = *err;
    }
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->abort, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static double amax_of(const opt_calib_part *p)
{
    return fmax(fabs((double)p->min), fabs((double)p->max));
}

/* One tensor of one run (the slice, or a piece of it): scan it, and with histograms bin it.
 *
 * A tensor whose range hprev is set (every tensor after the first batch, unless all its values
 * so far were zero) is binned at once with the range this run needs, hprev * 2^d (widened from
 * an earlier piece's); the merge after the batch brings every slice to the batch's range
 * (opt_calib_xhist_fold). A tensor without a range yet needs the batch's extremes first: the
 * threads meet at a barrier, publishing their scans in slots[k & 1] (a thread can only write
 * that slot again two barriers later, when everyone has read it). Every thread observes the
 * same tensors in the same order and sees the same hprev, so they agree on which tensors meet;
 * slices run in one piece then (p->chunked is off). */
static void observe_slice(worker *w, const char *name, const opt_array *a)
{
    par *p = w->p;
    if (atomic_load(&p->abort) || w->bad || !wanted(p->only, p->filter, name, a)) return;
    size_t k = w->n_obs++;
    opt_calib_part cp; /* this run's values */
    opt_calib_scan_array(a, &cp);
    uint64_t numel = opt_array_numel(a);
    rec *r;
    if (w->run == 0) {
        if (k == w->cap_recs) {
            size_t cap = w->cap_recs ? 2 * w->cap_recs : 32;
            rec *nr = realloc(w->recs, cap * sizeof *nr);
            if (!nr) {
                opt_error e = {0};
                give_up(w, opt_error_set(&e, OPT_ERR_NOMEM, "out of memory"), &e);
                return;
            }
            memset(nr + w->cap_recs, 0, (cap - w->cap_recs) * sizeof *nr);
            w->recs = nr;
            w->cap_recs = cap;
        }
        r = &w->recs[k];
        w->n_recs = k + 1;
        r->name = name;
        r->h = 0;
        r->part = cp;
        r->numel = r->numel0 = numel;
    } else {
        /* A later run of the slice: the same tensors, sizes in proportion to the samples. */
        r = k < w->n_recs ? &w->recs[k] : NULL;
        if (!r || strcmp(r->name, name) != 0 || numel * w->samples0 != r->numel0 * w->run_samples) {
            w->bad = true;
            return;
        }
        opt_calib_part_join(&r->part, &cp);
        r->numel += numel;
    }
    if (!p->st->histograms) return;
    double h = k < p->n_known ? p->hprev[k] : 0;
    opt_calib_part all = cp;
    if (!(h >= 0x1p-100)) {
        /* No range yet: the batch's extremes set it (one run per slice then, see run_slice). */
        if (p->chunked) {
            w->bad = true;
            return;
        }
        if (p->active > 1) {
            w->slots[k & 1] = (slot){cp, numel};
            if (!bar_wait(p)) return;
            all = p->w[0].slots[k & 1].part;
            for (int i = 1; i < p->active; i++) opt_calib_part_join(&all, &p->w[i].slots[k & 1].part);
        }
        h = 0;
    } else if (r->h > 0) {
        h = r->h; /* an earlier run of this batch widened it already */
    }
    if (cp.nonfinite == cp.count) return; /* nothing to bin here */
    double amax = amax_of(&all);
    if (h == 0) h = amax; /* as opt_calib_hist_fit from an empty range */
    while (amax > h) h *= 2;
    if (h == 0) return; /* all zeros: the merge counts them */
    if (!r->xh && !(r->xh = calloc(OPT_CALIB_XBINS, sizeof *r->xh))) {
        opt_error e = {0};
        give_up(w, opt_error_set(&e, OPT_ERR_NOMEM, "out of memory"), &e);
        return;
    }
    if (r->h > 0 && h > r->h) opt_calib_xhist_widen(r->xh, r->h, h);
    opt_calib_xhist_array(r->xh, h, a);
    r->h = h;
}

static void observe_par(void *ctx, const char *name, const opt_node *producer, const opt_array *a)
{
    (void)producer;
    observe_slice(ctx, name, a);
}

/* Runs this thread's slice of the current batch: at once, or in pieces of p->chunk samples
 * when p->chunked (observe_slice gathers the pieces' statistics in order, so the slice's come
 * out the same). */
static void run_slice(worker *w)
{
    par *p = w->p;
    w->n_recs = 0;
    w->run = 0;
    w->bad = false;
    if (w->samples == 0 || !w->e) return;
    size_t per = w->samples ? w->in.nbytes / w->samples : 0; /* bytes per sample */
    size_t step = p->chunked && p->chunk ? p->chunk : w->samples;
    for (size_t off = 0; off < w->samples && !w->bad; off += step, w->run++) {
        opt_array v = w->in;
        size_t n = w->samples - off < step ? w->samples - off : step;
        v.dims[0] = (int64_t)n;
        v.data = (char *)w->in.data + off * per;
        v.nbytes = n * per;
        w->n_obs = 0;
        w->run_samples = n;
        if (w->run == 0) w->samples0 = n;
        observe_slice(w, p->in_name, &v);
        opt_error e = {0};
        opt_status s = opt_exec_run(w->e, &v, 1, w->outs, p->n_out, &e);
        for (size_t i = 0; i < p->n_out; i++) opt_array_free(&w->outs[i]);
        if (s != OPT_OK) {
            give_up(w, s, &e);
            return;
        }
        if (w->run > 0 && w->n_obs != w->n_recs) w->bad = true;
    }
}

/* w's executor: one thread, every produced value handed to observe_slice. */
static opt_status plan_worker(const par *p, worker *w, opt_error *err)
{
    opt_exec_opts eo = {.threads = 1, .observe = observe_par, .observe_ctx = w};
    return opt_exec_new(p->m, &eo, &w->e, err);
}

typedef struct batch_seen {
    const par *p;
    unsigned long seen;
} batch_seen;

static bool batch_ready(const void *ctx)
{
    const batch_seen *b = ctx;
    return atomic_load(&b->p->batch_gen) != b->seen || atomic_load(&b->p->stop);
}

static bool slices_done(const void *ctx)
{
    return atomic_load(&((const par *)ctx)->pending) == 0;
}

static void *thread_main(void *arg)
{
    worker *w = arg;
    par *p = w->p;
    unsigned long seen = 0;
    /* This thread's executor is planned here, while thread 0 reads and runs the first batch
     * (planning packs every weight: ~1 ms for lenet300). A failure stops the others. */
    opt_error e = {0};
    opt_status s = plan_worker(p, w, &e);
    if (s != OPT_OK) {
        w->e = NULL;
        give_up(w, s, &e);
    }
    for (;;) {
        batch_seen bs = {p, seen};
        if (!opt_spin_until(batch_ready, &bs, OPT_SPIN_NS)) {
            pthread_mutex_lock(&p->mu);
            while (!atomic_load(&p->stop) && atomic_load(&p->batch_gen) == seen)
                pthread_cond_wait(&p->go, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load(&p->batch_gen);
        run_slice(w);
        /* Thread 0 may be asleep: the last slice wakes it under the mutex. */
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

#define CHUNK_BYTES (512 * 1024)

/* Splits `got` samples of view between the active threads, in order. The first batch is split
 * unevenly (so a tensor whose size does not follow the sample count shows); later ones evenly. */
static void split_batch(par *p, const opt_array *view, size_t got, bool first)
{
    size_t per = 1;
    for (int d = 1; d < view->ndim; d++) per *= (size_t)view->dims[d];
    p->active = got < (size_t)p->nw ? (int)got : p->nw;
    size_t off = 0, na = (size_t)p->active;
    for (int i = 0; i < p->nw; i++) {
        worker *w = &p->w[i];
        size_t n = (size_t)i < na ? got / na + ((size_t)i < got % na) : 0;
        if (first && na > 1 && got % na == 0 && got > na) {
            if (i == 0) n++;
            else if ((size_t)i == na - 1) n--;
        }
        w->samples = n;
        w->in = *view;
        w->in.dims[0] = (int64_t)n;
        w->in.data = (float *)view->data + off * per;
        w->in.nbytes = n * per * sizeof(float);
        off += n;
    }
}

/* Adds the batch's records to st, tensor by tensor in the order a serial run observes them:
 * the slices' scans joined in sample order, then their histograms brought to the batch's
 * range. Sets *mixed when the slices disagree on the tensors or a tensor's size does not
 * scale with the slice's sample count. */
static opt_status merge_batch(par *p, bool *mixed, opt_error *err)
{
    const worker *w0 = &p->w[0];
    size_t n = w0->n_recs;
    for (int i = 0; i < p->active; i++)
        if (p->w[i].bad) goto mixed;
    for (int i = 1; i < p->active; i++) {
        const worker *o = &p->w[i];
        if (o->n_recs != n) goto mixed;
        for (size_t k = 0; k < n; k++)
            if (strcmp(o->recs[k].name, w0->recs[k].name) != 0 ||
                o->recs[k].numel * w0->samples != w0->recs[k].numel * o->samples) /* exact */
                goto mixed;
    }
    if (n > p->n_known) {
        double *hp = realloc(p->hprev, n * sizeof *hp);
        if (!hp) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        p->hprev = hp;
    }
    for (size_t k = 0; k < n; k++) {
        opt_calib_part all = w0->recs[k].part;
        for (int i = 1; i < p->active; i++) opt_calib_part_join(&all, &p->w[i].recs[k].part);
        opt_calib_acc *acc = opt_calib_stats_acc(p->st, w0->recs[k].name, err);
        if (!acc) return err ? err->status : OPT_ERR_NOMEM;
        bool bin = opt_calib_acc_apply(acc, &all);
        for (int i = 0; i < p->active; i++) {
            rec *r = &p->w[i].recs[k];
            if (r->h == 0) continue;
            if (bin) opt_calib_xhist_fold(acc->pos, acc->neg, acc->hmax, r->xh, r->h);
            else memset(r->xh, 0, OPT_CALIB_XBINS * sizeof *r->xh); /* cannot happen */
        }
        p->hprev[k] = acc->hmax;
    }
    p->n_known = n;
    /* Pieces whose largest activation takes about half of a core's L2 cache. */
    uint64_t most = 1;
    for (size_t k = 0; k < n; k++)
        if (w0->recs[k].numel / w0->samples > most) most = w0->recs[k].numel / w0->samples;
    p->chunk = (size_t)(CHUNK_BYTES / (most * sizeof(float)));
    if (p->chunk < 1) p->chunk = 1;
    return OPT_OK;
mixed:
    *mixed = true;
    return OPT_OK;
}

/* Returns OPT_OK with *fallback set when batches cannot be split: the input has a fixed batch
 * dim, the model mixes samples, or a slice of the first batch fails to run (st is then
 * emptied). */
/* ---- reading ahead ---------------------------------------------------------------------------
 * The threads split each batch; reading and decoding the next one (inflating a .gz, converting
 * to float) is serial work, so a reader thread does it while they run the current one: two
 * slots, each holding a copy of one batch until the loop is done with it. */
typedef struct ahead {
    opt_dataset *ds;
    size_t bs;
    pthread_t th;
    bool started, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool full[2];
    opt_array batch[2];
    size_t got[2], cap[2];
    opt_status st[2];
    opt_error err[2];
} ahead;

static void *ahead_main(void *arg)
{
    ahead *r = arg;
    for (int k = 0;; k ^= 1) {
        pthread_mutex_lock(&r->mu);
        while (r->full[k] && !r->stop) pthread_cond_wait(&r->cv, &r->mu);
        bool stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop) break;
        opt_array a;
        size_t got = 0;
        opt_error e = {0};
        opt_status s = opt_dataset_next_batch(r->ds, r->bs, &a, NULL, &got, &e);
        if (s == OPT_OK && got > 0) {
            if (a.nbytes > r->cap[k]) {
                void *d = realloc(r->batch[k].data, a.nbytes);
                if (!d) s = opt_error_set(&e, OPT_ERR_NOMEM, "out of memory for a batch of %zu", got);
                else r->batch[k].data = d, r->cap[k] = a.nbytes;
            }
            if (s == OPT_OK) {
                void *d = r->batch[k].data;
                memcpy(d, a.data, a.nbytes);
                r->batch[k] = a;
                r->batch[k].data = d;
            }
        }
        pthread_mutex_lock(&r->mu);
        r->got[k] = s == OPT_OK ? got : 0;
        r->st[k] = s;
        r->err[k] = e;
        r->full[k] = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        if (s != OPT_OK || got == 0) break;
    }
    return NULL;
}

/* Waits for slot k; its batch stays valid until ahead_release(r, k). */
static opt_status ahead_take(ahead *r, int k, opt_array *batch, size_t *got, opt_error *err)
{
    pthread_mutex_lock(&r->mu);
    while (!r->full[k]) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    *batch = r->batch[k];
    *got = r->got[k];
    if (r->st[k] != OPT_OK && err) *err = r->err[k];
    return r->st[k];
}

static void ahead_release(ahead *r, int k)
{
    pthread_mutex_lock(&r->mu);
    r->full[k] = false;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void ahead_stop(ahead *r)
{
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->th, NULL);
    }
    free(r->batch[0].data);
    free(r->batch[1].data);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

static opt_status collect_par(const opt_model *m, opt_dataset *ds, const opt_collect_opts *o, size_t bs, int nw,
                              obs *ob, bool *fallback, opt_error *err)
{
    par p = {.m = m, .st = ob->st, .only = &ob->only, .filter = ob->filter, .nw = nw};
    opt_status s = OPT_OK;
    input_info in;
    ahead rd = {0};
    int rslot = 0;
    pthread_mutex_init(&rd.mu, NULL);
    pthread_cond_init(&rd.cv, NULL);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_cond_init(&p.go, NULL);
    pthread_cond_init(&p.done, NULL);
    atomic_init(&p.arrived, 0);
    atomic_init(&p.gen, 0);
    atomic_init(&p.abort, false);
    p.w = calloc((size_t)nw, sizeof *p.w);
    if (!p.w) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < nw; i++) {
        worker *w = &p.w[i];
        w->p = &p;
        w->id = i;
        if (i == 0 && (s = plan_worker(&p, w, err)) != OPT_OK) goto done;
        if (i == 0 && (s = check_input(w->e, ds, &in, err)) != OPT_OK) goto done;
        if (i == 0 && (in.ndim == 0 || (in.ndim > 0 && in.dims[0] > 0))) { /* a fixed batch dim */
            *fallback = true;
            goto done;
        }
        w->outs = calloc(in.n_out ? in.n_out : 1, sizeof *w->outs);
        if (!w->outs) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    p.in_name = in.name;
    p.n_out = in.n_out;
    for (int i = 1; i < nw; i++) {
        if (pthread_create(&p.w[i].th, NULL, thread_main, &p.w[i]) != 0) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "cannot start a calibration thread");
            goto done;
        }
        p.w[i].started = true;
    }
    size_t total = opt_dataset_count(ds), done_n = 0;
    rd.ds = ds;
    rd.bs = bs;
    if (pthread_create(&rd.th, NULL, ahead_main, &rd) != 0) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "cannot start the calibration reader thread");
        goto done;
    }
    rd.started = true;
    for (bool first = true;; first = false, ahead_release(&rd, rslot), rslot ^= 1) {
        opt_array batch, view;
        size_t got = 0;
        if ((s = ahead_take(&rd, rslot, &batch, &got, err)) != OPT_OK || got == 0) break;
        if ((s = opt_batch_fit(&batch, opt_dataset_name(ds), in.name, in.ndim, in.dims, &view, err)) != OPT_OK) break;
        split_batch(&p, &view, got, first);
        /* Pieces need every range known: a tensor without one meets the others at a barrier. */
        p.chunked = !first && p.chunk > 0;
        for (size_t k = 0; k < p.n_known && p.chunked && p.st->histograms; k++)
            if (!(p.hprev[k] >= 0x1p-100)) p.chunked = false;
        atomic_store(&p.pending, nw - 1);
        pthread_mutex_lock(&p.mu);
        atomic_fetch_add(&p.batch_gen, 1);
        pthread_cond_broadcast(&p.go);
        pthread_mutex_unlock(&p.mu);
        run_slice(&p.w[0]);
        if (!opt_spin_until(slices_done, &p, OPT_SPIN_NS)) {
            pthread_mutex_lock(&p.mu);
            while (atomic_load(&p.pending) > 0) pthread_cond_wait(&p.done, &p.mu);
            pthread_mutex_unlock(&p.mu);
        }
        for (int i = 0; i < nw && s == OPT_OK; i++)
            if (p.w[i].status != OPT_OK) {
                s = p.w[i].status;
                if (err) *err = p.w[i].err;
            }
        if (s != OPT_OK && first && s != OPT_ERR_NOMEM) {
            /* A slice that fails where the whole batch may not (a Reshape to a fixed batch
             * size, say): the serial run tells, and reports its own error if it has one. */
            s = OPT_OK;
            *fallback = true;
            break;
        }
        if (s != OPT_OK || (s = merge_batch(&p, fallback, err)) != OPT_OK || *fallback) break;
        done_n += got;
        if (o->progress) o->progress(o->progress_ctx, done_n, total);
    }
done:
    ahead_stop(&rd);
    pthread_mutex_lock(&p.mu);
    atomic_store(&p.stop, true);
    pthread_cond_broadcast(&p.go);
    pthread_mutex_unlock(&p.mu);
    for (int i = 1; i < nw && p.w; i++)
        if (p.w[i].started) pthread_join(p.w[i].th, NULL);
    for (int i = 0; i < nw && p.w; i++) {
        opt_exec_free(p.w[i].e);
        free(p.w[i].outs);
        for (size_t k = 0; k < p.w[i].cap_recs; k++) free(p.w[i].recs[k].xh);
        free(p.w[i].recs);
    }
    free(p.w);
    free(p.hprev);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    pthread_cond_destroy(&p.go);
    pthread_cond_destroy(&p.done);
    if (*fallback) {
        bool h = ob->st->histograms;
        opt_calib_stats_free(ob->st);
        opt_calib_stats_init(ob->st, h);
    }
    return s;
}

static int cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

opt_status opt_calib_collect(const opt_model *m, opt_dataset *ds, const opt_collect_opts *o,
                             opt_calib_stats *st, opt_error *err)
{
    static const opt_collect_opts defaults = {0};
    if (!o) o = &defaults;
    obs ob = {.st = st, .status = OPT_OK};
    if (o->only) {
        ob.filter = true;
        for (size_t i = 0; i < o->n_only; i++)
            if (!opt_strmap_put(&ob.only, o->only[i], i)) {
                opt_strmap_free(&ob.only);
                return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            }
    }
    size_t bs = o->batch ? o->batch : 64;
    int nw = o->threads > 0 ? o->threads : cpu_count();
    if ((size_t)nw > bs) nw = (int)bs;
    opt_status s = OPT_OK;
    bool fallback = false;
    /* Threads split batches when there are several and st is empty (the ranges then evolve
     * exactly as in a serial run from nothing). */
    if (nw > 1 && st->n == 0) {
        s = collect_par(m, ds, o, bs, nw, &ob, &fallback, err);
        if (s == OPT_OK && fallback) s = collect_serial(m, ds, o, bs, &ob, err);
    } else {
        s = collect_serial(m, ds, o, bs, &ob, err);
    }
    opt_strmap_free(&ob.only);
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
