/*
 * calib/stats.h — streaming activation statistics for calibration.
 *
 * One accumulator per tensor name keeps the minimum and maximum of the finite values seen, the
 * number of values, of zeros and of non-finite values, the number of non-zero values whose
 * magnitude would flush to zero in float16 (used by `mopt amp --data`), and — when histograms
 * are on — two histograms of magnitudes over [0, hmax]: one for values >= 0, one for values < 0,
 * OPT_CALIB_BINS bins each. The histograms let ranges.c pick entropy (KL), percentile and MSE
 * ranges for signed or unsigned quantization.
 *
 * Memory does not grow with the number of samples: each accumulator has a fixed size. When a
 * batch holds a magnitude beyond hmax, hmax doubles and adjacent bins merge pairwise, which is
 * exact (no re-interpolation), so the histogram always spans at least half of its bins over the
 * data seen.
 */
#ifndef OPT_CALIB_STATS_H
#define OPT_CALIB_STATS_H

#include "libopt/exec/exec.h"
#include "libopt/ir/strmap.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OPT_CALIB_BINS 2048

/* Magnitudes below this become 0 in float16 (half of the smallest subnormal, 2^-25). */
#define OPT_F16_FLUSH 2.98023223876953125e-08
#define OPT_F16_MAX 65504.0

typedef struct opt_calib_acc {
    char *name;            /* owned */
    uint64_t count;        /* values seen (finite or not) */
    uint64_t nonfinite;    /* NaN and +-Inf, not in min/max/histograms */
    uint64_t zeros;        /* exact zeros (also counted in pos[0]) */
    uint64_t f16_flush;    /* non-zero finite values with |x| < OPT_F16_FLUSH */
    double min, max;       /* of finite values; +inf/-inf before any */
    double hmax;           /* histograms cover magnitudes [0, hmax]; 0 before any non-zero */
    uint64_t *pos, *neg;   /* OPT_CALIB_BINS each (owned), NULL when histograms are off */
} opt_calib_acc;

/* A set of accumulators keyed by tensor name. Zero-initialise, then opt_calib_stats_init. */
typedef struct opt_calib_stats {
    opt_calib_acc *acc;
    size_t n, cap;
    opt_strmap index;      /* name -> position in acc (keys are acc[i].name) */
    bool histograms;
} opt_calib_stats;

/* Starts an empty set; histograms says whether accumulators keep histograms (needed by the
 * entropy, percentile and mse methods; minmax does without and is faster). */
void opt_calib_stats_init(opt_calib_stats *s, bool histograms);
/* Frees everything the set owns; accepts a zeroed set. */
void opt_calib_stats_free(opt_calib_stats *s);

/* Finds the accumulator for name, or NULL. The pointer is valid until the next add. */
const opt_calib_acc *opt_calib_stats_find(const opt_calib_stats *s, const char *name);

/* Adds n float32 values to the accumulator of `name` (created on first use; name is copied). */
opt_status opt_calib_stats_add_f32(opt_calib_stats *s, const char *name, const float *x, size_t n,
                                   opt_error *err);

/* Adds the values of a float array (float32, float16, bfloat16 or double; other dtypes are
 * ignored and return OPT_OK). */
opt_status opt_calib_stats_add_array(opt_calib_stats *s, const char *name, const opt_array *a,
                                     opt_error *err);

/* Merges accumulator src into dst (same name), e.g. to combine per-thread statistics. */
opt_status opt_calib_acc_merge(opt_calib_acc *dst, const opt_calib_acc *src, opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
