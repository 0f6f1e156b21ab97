/*
 * libopt/exec/threads.h — the executor's persistent thread pool (internal to libopt/exec).
 */
#ifndef OPT_EXEC_THREADS_H
#define OPT_EXEC_THREADS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct opt_tpool opt_tpool;

/* A pool running `threads` ways in parallel (the caller counts as one). NULL when out of memory.
 * Free with opt_tpool_free. */
opt_tpool *opt_tpool_new(int threads);
void opt_tpool_free(opt_tpool *p);
int opt_tpool_size(const opt_tpool *p);
/* Runs fn over [0, n) in at most size(p) chunks of at least min_chunk items (deterministic
 * bounds); returns when all are done. p may be NULL (serial). Not reentrant across threads. */
void opt_tpool_run(opt_tpool *p, size_t n, size_t min_chunk,
                   void (*fn)(void *ctx, size_t begin, size_t end), void *ctx);

/* Spins (pausing) until ready(ctx) returns true, and returns true; false once `ns` nanoseconds
 * have passed. For a wait that usually ends within microseconds, before sleeping on a condition
 * variable: waking a sleeping thread costs tens of microseconds on a virtual machine. */
bool opt_spin_until(bool (*ready)(const void *ctx), const void *ctx, long long ns);
/* How long the pool's threads (and the calibration threads) spin before they sleep. */
#define OPT_SPIN_NS 200000

#endif
