/*
 * calib/collect.h — run a model over a dataset and collect activation statistics.
 *
 * Used by `mopt calib`, `mopt quant --data` and `mopt amp --data`. The model runs on mopt's own
 * executor; its observe callback hands every value each node produces to calib/stats.c, and the
 * graph input is added from the batch itself.
 *
 * Threads take whole batches, each on an executor of its own, and the statistics come out the
 * same for any thread count (calib/collect.c: counts add up, extremes come from the earliest
 * batch that holds them, and histograms are binned on a power-of-two lattice of ranges fixed by
 * the first batch and folded exactly to the final range). st must be empty at the call. One
 * batch per thread is in memory at a time.
 */
#ifndef OPT_CALIB_COLLECT_H
#define OPT_CALIB_COLLECT_H

#include "calib/dataset.h"
#include "calib/ranges.h"
#include "calib/stats.h"
#include "calib/table.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*opt_collect_progress_fn)(void *ctx, size_t done, size_t total);

typedef struct opt_collect_opts {
    size_t batch;                 /* samples per batch (0: 64) */
    int threads;                  /* threads (0: all cores); each runs whole batches on an
                                     executor of its own (collect.c says why the result does
                                     not depend on the count), except for big models: */
    uint64_t shared_above;        /* a model with at least this many bytes of initializers
                                     runs one executor with all the threads inside it, instead
                                     of a packed copy of its weights per thread (0: 64 MiB) */
    const char *const *only;      /* when non-NULL, collect only these tensors */
    size_t n_only;
    opt_collect_progress_fn progress;
    void *progress_ctx;
} opt_collect_opts;

/* Runs model m over the feed f from its start and adds the statistics of the float graph
 * inputs and of every float value the nodes produce to st (histograms per st). Each input of m
 * takes the part of f that names it (an unnamed part feeds a model of one input); float32
 * inputs take float32 batches, integer and bool inputs the stored integers
 * (opt_dataset_set_dtype). Fails with a one-line message on an input with no data, samples
 * that do not fit their input, an input of another type (float16), NaN/Inf in the data (from
 * the dataset), or a kernel error. */
opt_status opt_calib_collect_feed(const opt_model *m, const opt_feed *f, const opt_collect_opts *o,
                                  opt_calib_stats *st, opt_error *err);
/* The same for a model of one input, fed by ds. */
opt_status opt_calib_collect(const opt_model *m, opt_dataset *ds, const opt_collect_opts *o,
                             opt_calib_stats *st, opt_error *err);

/* Builds a table (appended to t) with one entry per accumulator of st, in st's order, by the
 * range options ro (scale and zero point for ro->qdtype). Tensors that saw no finite value are
 * left out. The entropy and mse searches run on ro->threads threads (0: all cores); the table
 * does not depend on the count. */
opt_status opt_calib_table_from_stats(const opt_calib_stats *st, const opt_range_opts *ro,
                                      opt_calib_table *t, opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
