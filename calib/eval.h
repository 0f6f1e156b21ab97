/*
 * calib/eval.h — accuracy of classifiers on a labelled dataset, and agreement between models.
 *
 * One implementation for every command that needs a number to gate on: `mopt eval`,
 * `mopt sensitivity`, `quant --max-drop`, `prune --max-drop`, the demo. Models run on the same
 * batches from one opt_dataset stream, so comparing k models costs one pass over the data.
 *
 * The classifier output is the model's output `output_index` (default 0), read as [B, C] after
 * flattening every dim past the batch dim; top-k counts a sample correct when its label is among
 * the k largest scores (ties: the lower class index wins, as in argmax). Labels outside [0, C)
 * are an error naming the sample.
 *
 * Relative error (used here and by tests/oracle): for an output pair (a = model, b = baseline)
 *   rel = max_i |a_i - b_i| / max(|b_i|, rms(b))     (rms over the batch's output)
 * so values near zero are judged against the output's own scale, not against themselves.
 */
#ifndef OPT_CALIB_EVAL_H
#define OPT_CALIB_EVAL_H

#include "calib/dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called after each batch with the samples done and the total (for progress bars). */
typedef void (*opt_eval_progress_fn)(void *ctx, size_t done, size_t total);

typedef struct opt_eval_opts {
    size_t batch;          /* samples per batch (0: 32); models with a fixed batch dim get
                              chunks of that size, the last one zero-padded */
    size_t output_index;   /* which model output holds the scores (default 0) */
    bool no_labels;        /* compare models only; do not require labels */
    opt_eval_progress_fn progress;
    void *progress_ctx;
} opt_eval_opts;

typedef struct opt_eval_result {
    size_t samples;        /* samples evaluated */
    size_t classes;        /* C */
    size_t correct1;       /* top-1 hits (0 without labels) */
    size_t correct5;       /* top-min(5,C) hits */
    double top1, top5;     /* fractions in [0,1]; NaN without labels */
    /* Against model 0 (zero for model 0 itself): */
    size_t agree;          /* samples with the same top-1 class as model 0 */
    double agreement;      /* agree / samples */
    double max_abs, max_rel;
    /* Latency of opt_exec_run per batch, milliseconds. */
    double ms_median, ms_min, ms_mean;
    size_t batches;
} opt_eval_result;

/* Runs every model of `models` (n >= 1; each feeds the dataset to its input 0 and must have
 * exactly one input) over the whole dataset from its current position, filling results[i] for
 * model i. The dataset is rewound first. Fails naming the model index and the cause (samples that
 * do not fit the input, output that is not [B, C], label out of range, a kernel error, ...);
 * `names` (may be NULL) names the models in messages. */
opt_status opt_eval_models(opt_exec *const *models, const char *const *names, size_t n,
                           opt_dataset *ds, const opt_eval_opts *opts, opt_eval_result *results,
                           opt_error *err);

/* Convenience: top-1 accuracy in [0,1] of one model on ds (rewound first). */
opt_status opt_eval_top1(opt_exec *model, opt_dataset *ds, const opt_eval_opts *opts,
                         double *top1, opt_error *err);

/* Max abs and relative error of a against b (n floats each) under the definition above;
 * accumulates into *max_abs / *max_rel (initialise them to 0). */
void opt_eval_compare(const float *a, const float *b, size_t n, double *max_abs, double *max_rel);

#ifdef __cplusplus
}
#endif
#endif
