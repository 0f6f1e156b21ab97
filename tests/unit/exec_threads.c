/*
 * tests/unit/exec_threads.c — the executor's thread pool (libopt/exec/threads.c): every item is
 * run exactly once, in the fixed chunks, whether the workers were spinning for the job or had
 * gone to sleep on the condition variable; jobs issued from inside a worker run serially.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <time.h>

#include "libopt/exec/threads.h"

typedef struct {
    atomic_int *hits;     /* per item */
    atomic_int calls;     /* fn calls */
    opt_tpool *p;         /* for the nested job */
    atomic_int nested;    /* items of the nested job */
} job;

static void count(void *ctx, size_t b, size_t e)
{
    job *j = ctx;
    atomic_fetch_add(&j->calls, 1);
    for (size_t i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
}

static void nested_part(void *ctx, size_t b, size_t e)
{
    job *j = ctx;
    atomic_fetch_add(&j->nested, (int)(e - b));
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

Test(exec_threads, every_item_once_whether_workers_spin_or_sleep)
{
    enum { N = 1000, THREADS = 4 };
    opt_tpool *p = opt_tpool_new(THREADS);
    cr_assert_not_null(p);
    cr_assert_eq(opt_tpool_size(p), THREADS);
    atomic_int hits[N];
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < N; i++) atomic_init(&hits[i], 0);
        job j = {.hits = hits};
        atomic_init(&j.calls, 0);
        size_t n = (size_t)(1 + round * 5 % N);
        opt_tpool_run(p, n, 1, count, &j);
        for (size_t i = 0; i < N; i++)
            cr_assert_eq(atomic_load(&hits[i]), i < n ? 1 : 0, "round %d item %zu", round, i);
        int want = n < THREADS ? (int)n : THREADS;
        cr_assert_eq(atomic_load(&j.calls), want, "round %d: %d chunks for %zu items", round,
                     atomic_load(&j.calls), n);
        /* Every 20th round waits long enough for the workers to stop spinning and sleep. */
        if (round % 20 == 19) sleep_ms(2);
    }
    opt_tpool_free(p);
}

Test(exec_threads, min_chunk_limits_the_parts)
{
    opt_tpool *p = opt_tpool_new(4);
    atomic_int hits[10];
    for (int i = 0; i < 10; i++) atomic_init(&hits[i], 0);
    job j = {.hits = hits};
    atomic_init(&j.calls, 0);
    opt_tpool_run(p, 10, 4, count, &j); /* at most 10 / 4 = 2 parts */
    cr_assert_eq(atomic_load(&j.calls), 2);
    for (int i = 0; i < 10; i++) cr_assert_eq(atomic_load(&hits[i]), 1);
    opt_tpool_free(p);
}

static void worker_issues_job(void *ctx, size_t b, size_t e)
{
    job *j = ctx;
    count(ctx, b, e);
    if (b > 0) opt_tpool_run(j->p, 100, 1, nested_part, j); /* b > 0: a worker's chunk */
}

Test(exec_threads, a_job_issued_from_a_worker_runs_serially)
{
    opt_tpool *p = opt_tpool_new(2);
    atomic_int hits[2];
    atomic_init(&hits[0], 0);
    atomic_init(&hits[1], 0);
    job j = {.hits = hits, .p = p};
    atomic_init(&j.calls, 0);
    atomic_init(&j.nested, 0);
    opt_tpool_run(p, 2, 1, worker_issues_job, &j);
    cr_assert_eq(atomic_load(&j.nested), 100);
    cr_assert_eq(atomic_load(&j.calls), 2);
    opt_tpool_free(p);
}

Test(exec_threads, a_pool_freed_while_its_workers_sleep_or_spin_joins_them)
{
    for (int k = 0; k < 4; k++) {
        opt_tpool *p = opt_tpool_new(3);
        atomic_int hits[3];
        for (int i = 0; i < 3; i++) atomic_init(&hits[i], 0);
        job j = {.hits = hits};
        atomic_init(&j.calls, 0);
        opt_tpool_run(p, 3, 1, count, &j);
        if (k & 1) sleep_ms(2); /* asleep; otherwise still spinning */
        opt_tpool_free(p);
        cr_assert_eq(atomic_load(&j.calls), 3);
    }
}
