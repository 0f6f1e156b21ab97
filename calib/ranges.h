/*
 * calib/ranges.h — from activation statistics to quantization ranges.
 *
 * Methods (names as on the command line):
 *   minmax      [min, max] of everything seen.
 *   percentile  T, the P-th percentile of |x| (P = 99.999 by default), and the range
 *               [max(min, -T), min(max, T)]: the (100 - P) percent of values with the largest
 *               magnitudes are clipped, whichever side they are on (as ONNX Runtime's and
 *               TensorRT's percentile calibrators do; cutting each tail alike clipped the short
 *               side of a skewed tensor hard).
 *   entropy     TensorRT's entropy calibrator: the threshold T over the magnitude histogram
 *               that minimises KL(P || Q), P the clipped reference distribution and Q its
 *               quantization to the number of levels the target dtype gives the range (128
 *               for signed tensors, 256 for non-negative ones quantized to uint8).
 *   mse         the scaling of [min, max] (in 1% steps down to 1%) that minimises the expected
 *               squared quantization error (rounding inside, clipping outside) over the
 *               histogram.
 * Every range is widened to include 0, so zero stays exactly representable.
 */
#ifndef OPT_CALIB_RANGES_H
#define OPT_CALIB_RANGES_H

#include "calib/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum opt_calib_method {
    OPT_CALIB_MINMAX = 0,
    OPT_CALIB_PERCENTILE,
    OPT_CALIB_ENTROPY,
    OPT_CALIB_MSE,
} opt_calib_method;

/* "minmax", "percentile", "entropy", "mse". */
const char *opt_calib_method_name(opt_calib_method m);
/* Parses a method name; false when unknown. */
bool opt_calib_method_parse(const char *s, opt_calib_method *m);
/* Whether the method needs histograms (all but minmax). */
bool opt_calib_method_needs_hist(opt_calib_method m);

typedef struct opt_range_opts {
    opt_calib_method method;
    double percentile;  /* for percentile; 0 means 99.999 */
    int qdtype;         /* OPT_DT_UINT8 (asymmetric, default when 0) or OPT_DT_INT8 (symmetric) */
    int threads;        /* opt_calib_table_from_stats: threads for the entropy and mse searches
                           (0: all cores) */
} opt_range_opts;

/* Computes the range [*lo, *hi] (lo <= 0 <= hi) of accumulator a by o's method. Fails naming the
 * tensor when it saw no finite value, or when a histogram method is asked of an accumulator
 * without histograms. */
opt_status opt_calib_range(const opt_calib_acc *a, const opt_range_opts *o, float *lo, float *hi,
                           opt_error *err);

/* Scale and zero point for [lo, hi] in qdtype: uint8 asymmetric (scale (hi-lo)/255, zero point
 * round(-lo/scale)), or int8 symmetric (scale max(|lo|,|hi|)/127, zero point 0). A zero-width
 * range gets scale 1. */
void opt_qparams(float lo, float hi, int qdtype, float *scale, int32_t *zero_point);

#ifdef __cplusplus
}
#endif
#endif
