/*
 * libopt/exec/threads.c — a small persistent thread pool for opt_parallel_for.
 *
 * Work is split into at most `threads` contiguous chunks whose bounds depend only on n and the
 * thread count (chunk i is [n*i/p, n*(i+1)/p)), so a kernel that writes each output from one
 * chunk gives bit-identical results run after run. The calling thread runs chunk 0; workers wait
 * on a condition variable between jobs. A parallel_for issued from inside a worker runs serially.
 */
#include "libopt/exec/threads.h"

#include <pthread.h>
#include <stdlib.h>

struct opt_tpool {
    int n;              /* total parallelism, including the caller */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    unsigned long gen;
    int pending;
    bool stop;
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

static void *worker(void *arg)
{
    warg w = *(warg *)arg;
    free(arg);
    opt_tpool *p = w.p;
    in_worker = true;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->start, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        int parts = p->parts;
        size_t items = p->items;
        void (*fn)(void *, size_t, size_t) = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        if (w.id < parts) {
            size_t b = items * (size_t)w.id / (size_t)parts, e = items * (size_t)(w.id + 1) / (size_t)parts;
            if (b < e) fn(ctx, b, e);
        }
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    p->stop = true;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->items = n;
    p->parts = parts;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    size_t e = n / (size_t)parts;
    fn(ctx, 0, e);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
