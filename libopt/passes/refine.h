/*
 * libopt/passes/refine.h — data-driven refinement for prune and cluster (--refine data).
 *
 * For a layer y = W x + b, the change of its output caused by replacing W by W' over calibration
 * inputs is sum_o (w_o - w'_o)^T S (w_o - w'_o) + N (mu . (w_o - w'_o))^2, where S is the
 * covariance of the layer's input (its im2col patches for Conv) and mu their mean. Moving the
 * bias by mu . (w_o - w'_o) (bias correction) removes the second term, so both passes minimise
 * the first: prune refits the surviving weights of each output row by least squares (choosing
 * which to drop by the Optimal Brain Surgeon saliency w^2 / [S^-1]_ii), cluster fits the
 * codebook by least squares for the given assignment. Only S and mu per layer are needed, so
 * the calibration data is run through the (unchanged) model once, with the executor's observe
 * callback; or, given a reference model, layer by layer (opt_refine_prepare).
 *
 * Supported: Gemm (any trans flags), MatMul with a 2-D weight as input 1, 2-D Conv (any group,
 * padding, stride, dilation). Other layers are left as they are (reported as NaN errors).
 */
#ifndef OPT_PASSES_REFINE_H
#define OPT_PASSES_REFINE_H

#include "libopt/passes/compress.h"

typedef struct opt_refine opt_refine;

/* Runs the calibration batches through m and collects the input statistics of each weight in
 * refs[0..n) (the refs' node pointers must stay valid while rf is used). */
opt_status opt_refine_new(opt_model *m, const opt_weight_ref *refs, size_t n,
                          const opt_calib_batches *cb, opt_refine **out, opt_error *err);
void opt_refine_free(opt_refine *rf);

/* Sequential mode (cb->reference set): gathers layer i's statistics by running the calibration
 * batches through `cur` — the model with layers before i already compressed — and through the
 * reference model, so the fits of layer i also undo the error that reaches it from earlier
 * layers (minimising |W' xq - W0 xf|^2). Call it for each layer in graph order, after writing
 * the earlier layers into cur. A no-op without a reference. */
opt_status opt_refine_prepare(opt_refine *rf, size_t i, const opt_model *cur, opt_error *err);

/* A malloc'd copy of layer i's weight as it was when rf was made (caller frees). */
opt_status opt_refine_original(const opt_refine *rf, size_t i, float **w, opt_error *err);

/* Whether layer i has statistics (a supported layer). */
bool opt_refine_has(const opt_refine *rf, size_t i);

/* Least-squares codebook: given idx (numel entries into book[0..nbook)), refits book[fixed..nbook)
 * (entries below `fixed`, the zero, stay) to minimise the output error, and reports the relative
 * output error before and after (error energy / output energy). The caller applies bias
 * correction (opt_refine_bias) once the weight is final. */
opt_status opt_refine_centroids(opt_refine *rf, size_t i, const uint8_t *idx, float *book,
                                int nbook, int fixed, double *before, double *after, opt_error *err);

/* Assigns the non-zero weights of layer i to centroids book[fixed..nbook) (ascending) the way
 * GPTQ/OBQ does: row by row, each weight in turn goes to its nearest centroid and its rounding
 * error is spread over the row's weights not yet assigned, through the inverse input
 * covariance, so the row's output error stays small. Zeros keep their index. */
opt_status opt_refine_assign(opt_refine *rf, size_t i, const float *book, int nbook, int fixed,
                             uint8_t *idx, opt_error *err);

/* The factor GPTQ works with (Frantar et al. 2022): H (m x m, row-major, symmetric) is replaced
 * by the upper triangular U with U^T U = H^-1 (zeros below the diagonal), O(m^3) through LAPACK.
 * Returns false when H is not positive definite (A is then garbage). */
bool opt_gptq_factor(double *A, int64_t m);

/* OBQ/GPTQ rounding of nr rows X (nr x m, row-major) given the factor U of opt_gptq_factor:
 * column j of every row goes to the nearest of the ascending values c[0..k) (its index into q,
 * nr x m), and its error e = (x_j - c_q) / U_jj moves the row's later entries, x_r -= e U_jr
 * (r > j) — the same as OBQ's step with H^-1 and eliminating j from it, in O(m^2) per row. X ends
 * with each entry as it was when rounded. Returns OPT_ERR_NOMEM when out of memory. */
opt_status opt_gptq_quantize(const double *U, int64_t m, double *X, int64_t nr, const float *c, int k, int *q);

/* Prune layer i to keep exactly `keep` weights, chosen by OBS saliency, and refit them; w holds
 * the original weights on entry and the pruned, refitted ones on return. Zeros already in w stay
 * zero. Applies bias correction. */
opt_status opt_refine_prune(opt_refine *rf, size_t i, float *w, uint64_t keep, double *before,
                            double *after, opt_error *err);

/* Bias correction alone: moves the bias of layer i by mu . (w0_o - w_o) (scaled for Gemm's alpha
 * and beta) when the layer has a bias initializer of its own. */
opt_status opt_refine_bias(opt_refine *rf, size_t i, const float *w_new, opt_error *err);

#endif
