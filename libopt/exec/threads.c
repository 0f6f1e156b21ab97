/*
 * libopt/exec/threads.c — a small persistent thread pool for opt_parallel_for.
 *
 * Work is split into at most `threads` contiguous chunks whose bounds depend only on n and the
 * thread count (chunk i is [n*i/p, n*(i+1)/p)), so a kernel that writes each output from one
 * chunk gives bit-identical results run after run. The calling thread runs chunk 0. A
 * parallel_for issued from inside a worker runs serially.
 *
 * Waking a thread asleep on a condition variable costs tens of microseconds on a virtual
 * machine (the idle vCPU has to be scheduled again), as much as a small kernel's whole work; an
 * inference issues one job per node and more. So between jobs a worker first spins on the job
 * counter for up to SPIN_NS, and only then sleeps on the condition variable; the caller waits
 * for the workers the same way. The spin is bounded in time, so an idle pool gives its cores
 * back within SPIN_NS of its last job.
 */
#include "libopt/exec/threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long a worker looks for the next job (and the caller for the end of this one) before it
 * sleeps (OPT_SPIN_NS, threads.h). */
#define SPIN_NS OPT_SPIN_NS

struct opt_tpool {
    int n;              /* total parallelism, including the caller */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    _Atomic unsigned long gen; /* job counter; its release store publishes the fields below */
    atomic_int pending;        /* workers still on the current job */
    atomic_bool stop;
    void (*fn)(void *, size_t, size_t);
    void *ctx;
    size_t items;
    int parts;
};

static __thread bool in_worker;

typedef struct warg {
    opt_tpool *p;
    int id;
} warg;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

bool opt_spin_until(bool (*ready)(const void *ctx), const void *ctx, long long ns)
{
    long long end = 0;
    for (unsigned i = 0;; i++) {
        if (ready(ctx)) return true;
        cpu_relax();
        if ((i & 63) == 63) {
            long long t = now_ns();
            if (!end) end = t + ns;
            else if (t > end) return false;
        }
    }
}

typedef struct job_seen {
    opt_tpool *p;
    unsigned long seen;
} job_seen;

static bool job_ready(const void *ctx)
{
    const job_seen *j = ctx;
    return atomic_load_explicit(&j->p->gen, memory_order_acquire) != j->seen ||
           atomic_load(&j->p->stop);
}

static bool workers_done(const void *ctx)
{
    const opt_tpool *p = ctx;
    return atomic_load_explicit(&p->pending, memory_order_acquire) == 0;
}

static void *worker(void *arg)
{
    warg w = *(warg *)arg;
    free(arg);
    opt_tpool *p = w.p;
    in_worker = true;
    unsigned long seen = 0;
    for (;;) {
        job_seen js = {p, seen};
        if (!opt_spin_until(job_ready, &js, SPIN_NS)) {
            pthread_mutex_lock(&p->mu);
            while (!atomic_load(&p->stop) && atomic_load(&p->gen) == seen)
                pthread_cond_wait(&p->start, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        int parts = p->parts;
        size_t items = p->items;
        if (w.id < parts) {
            size_t b = items * (size_t)w.id / (size_t)parts, e = items * (size_t)(w.id + 1) / (size_t)parts;
            if (b < e) p->fn(p->ctx, b, e);
        }
        /* The caller may be asleep: the last worker wakes it under the mutex, so the wake-up
         * cannot fall between its check of pending and its wait. */
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

opt_tpool *opt_tpool_new(int threads)
{
    opt_tpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    if (p->n > 1) {
        p->th = calloc((size_t)p->n - 1, sizeof *p->th);
        if (!p->th) {
            p->n = 1;
            return p;
        }
        for (int i = 1; i < p->n; i++) {
            warg *a = malloc(sizeof *a);
            if (!a || (a->p = p, a->id = i, pthread_create(&p->th[i - 1], NULL, worker, a) != 0)) {
                free(a);
                /* Fewer workers than asked: keep the ones that started. */
                p->n = i;
                break;
            }
        }
    }
    return p;
}

void opt_tpool_free(opt_tpool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i - 1], NULL);
    free(p->th);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p);
}

int opt_tpool_size(const opt_tpool *p)
{
    return p ? p->n : 1;
}

void opt_tpool_run(opt_tpool *p, size_t n, size_t min_chunk,
                   void (*fn)(void *ctx, size_t begin, size_t end), void *ctx)
{
    if (n == 0) return;
    int parts = p ? p->n : 1;
    if (min_chunk < 1) min_chunk = 1;
    if ((size_t)parts > n / min_chunk) parts = (int)(n / min_chunk);
    if (parts < 1) parts = 1;
    if (parts == 1 || in_worker) {
        fn(ctx, 0, n);
        return;
    }
    /* Every worker has left the last job (pending reached 0), so none reads these now. */
    p->fn = fn;
    p->ctx = ctx;
    p->items = n;
    p->parts = parts;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    size_t e = n / (size_t)parts;
    fn(ctx, 0, e);
    if (!opt_spin_until(workers_done, p, SPIN_NS)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
