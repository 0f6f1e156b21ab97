/*
 * calib/fallback.h — accuracy-aware fallback for `mopt quant --max-drop` and `mopt amp --max-drop`.
 *
 * Given a way to build the converted model with some nodes kept float32 (a callback into the
 * amp or quant pass), the fallback:
 *   1. measures the float model's top-1 on EVAL and the fully converted model's;
 *   2. if the drop exceeds the gate, measures each candidate node's effect on the output: the
 *      model with only that node converted runs on the first samples of CAL beside the float
 *      model, and the mean squared difference of their outputs is the node's harm;
 *   3. returns the most harmful nodes to float one at a time, re-measuring top-1 on EVAL after
 *      each, until the drop is at most the gate (or every candidate is float: the gate failed).
 * Every model runs on mopt's executor.
 */
#ifndef OPT_CALIB_FALLBACK_H
#define OPT_CALIB_FALLBACK_H

#include "calib/dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds the converted model from the caller's float model: nodes named in keep_float stay
 * float32; when only is non-NULL, only the nodes named there are converted. *out receives a new
 * model the fallback frees. */
typedef opt_status (*opt_fallback_build_fn)(void *ctx, const char *const *keep_float, size_t n_keep,
                                            const char *const *only, size_t n_only, opt_model **out,
                                            opt_error *err);
typedef void (*opt_fallback_log_fn)(void *ctx, const char *line);

typedef struct opt_fallback_opts {
    double max_drop;           /* allowed top-1 drop, in percentage points */
    size_t sens_samples;       /* CAL samples per sensitivity run (0: 512) */
    int threads;
    opt_fallback_log_fn log;   /* progress lines (may be NULL) */
    void *log_ctx;
} opt_fallback_opts;

typedef struct opt_fallback_result {
    double top1_float, top1_full, top1_final; /* fractions in [0, 1] */
    size_t n_float;            /* nodes returned to float, most harmful first */
    char **float_nodes;        /* owned */
    double *harm;              /* their measured output MSE */
    char **why;                /* one line each (owned) */
    bool met;                  /* the gate holds for the final model */
    opt_model *model;          /* the final converted model (owned by the caller) */
} opt_fallback_result;

void opt_fallback_result_free(opt_fallback_result *r);

/* Runs the fallback over `candidates` (node names). float_model is not modified. When the gate
 * cannot be met with at least one candidate still converted, r->met is false, r->model is the
 * last model tried and OPT_OK is returned: the caller decides the exit code. */
opt_status opt_fallback_run(const opt_model *float_model, const char *const *candidates, size_t n_cand,
                            opt_fallback_build_fn build, void *build_ctx, opt_dataset *cal,
                            opt_dataset *eval, const opt_fallback_opts *o, opt_fallback_result *r,
                            opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
