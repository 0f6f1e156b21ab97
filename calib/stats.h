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
 * ignored and return OPT_OK) as one batch: whatever the dtype, the histogram range is fitted to
 * the whole array before its values are binned. */
opt_status opt_calib_stats_add_array(opt_calib_stats *s, const char *name, const opt_array *a,
                                     opt_error *err);

/* ---- the two passes, for callers that split a batch between threads (calib/collect.c) ------
 *
 * opt_calib_stats_add_f32 is: scan the batch (opt_calib_scan_f32), apply the scan to the
 * accumulator (opt_calib_acc_apply: counts, min/max, histogram range), then bin the batch
 * (opt_calib_hist_f32) when apply says so. A batch split into slices gives the same accumulator
 * when the slices' scans are joined in order (opt_calib_part_join) before the apply and every
 * slice is binned with the range that apply chose: bin counts are integers, so summing the
 * slices' histograms is exact. */

/* Statistics of one batch (or one slice of it). min/max are those of a serial scan: the first
 * value equal to the extreme wins, so a zero extreme keeps the sign of the first zero seen. */
typedef struct opt_calib_part {
    float min, max;        /* of finite values; +inf/-inf when there are none */
    uint64_t count, nonfinite, zeros, f16_flush;
} opt_calib_part;

/* Fills p with the statistics of x[0..n). Vectorised (AVX-512 or AVX2) where the CPU has it;
 * the result equals opt_calib_scan_f32_ref's bit for bit. */
void opt_calib_scan_f32(const float *x, size_t n, opt_calib_part *p);
/* The same with the vector width capped: level 2 AVX-512, 1 AVX2, 0 the scalar scan (each
 * where the CPU has it, else the next lower); for tests of every path on one machine. */
void opt_calib_scan_f32_level(const float *x, size_t n, opt_calib_part *p, int level);
/* The plain scalar scan (the reference the tests compare against). */
void opt_calib_scan_f32_ref(const float *x, size_t n, opt_calib_part *p);
/* Statistics of a float32/float16/bfloat16/double array (other dtypes: an empty part). */
void opt_calib_scan_array(const opt_array *a, opt_calib_part *p);
/* Appends `next` (the values after those of *acc) to *acc. An empty part is {+inf, -inf, 0...}. */
void opt_calib_part_join(opt_calib_part *acc, const opt_calib_part *next);

/* Grows a histogram range *hmax so that it covers magnitude amax (the first non-zero amax sets
 * it; then it doubles, merging bins pairwise in pos/neg). Every thread that keeps its own
 * histograms of one tensor calls it with the same amax sequence, so their ranges agree. */
void opt_calib_hist_fit(double *hmax, uint64_t *pos, uint64_t *neg, double amax);

/* Adds a batch's scan to accumulator a: counts, min/max and (with histograms) the range, with
 * the batch's zeros added to bin 0 while the range is still empty. Returns true when the
 * batch's values must then be binned with opt_calib_hist_f32(a->pos, a->neg, a->hmax, ...). */
bool opt_calib_acc_apply(opt_calib_acc *a, const opt_calib_part *p);

/* Adds the finite values of x[0..n) to histograms pos/neg of range hmax > 0 (magnitude m goes
 * to bin (int)(m * (float)(OPT_CALIB_BINS / hmax)), the last bin taking anything beyond; values
 * < 0 to neg, the rest, zeros included, to pos). Vectorised where the CPU allows; the counts
 * equal opt_calib_hist_f32_ref's. */
void opt_calib_hist_f32(uint64_t *pos, uint64_t *neg, double hmax, const float *x, size_t n);
void opt_calib_hist_f32_ref(uint64_t *pos, uint64_t *neg, double hmax, const float *x, size_t n);
/* The same for any float array (converted in chunks; other dtypes are ignored). */
void opt_calib_hist_array(uint64_t *pos, uint64_t *neg, double hmax, const opt_array *a);

/* Extended histograms, for a slice binned before the batch's range is known. When the range
 * hmax of a tensor is already set, a batch's range is hmax * 2^d for the smallest d >= 0 that
 * covers the batch, so a slice binned with its own such range h <= the batch's only needs
 * d' = log2(batch range / h) pairwise merges to count as if binned with the batch's range.
 * That is exact but for the last bin, where the serial binning clamps the few magnitudes that
 * round to the top of the range: the extended layout keeps them apart in bin OPT_CALIB_BINS,
 * so they can land where direct binning would have put them. Layout: OPT_CALIB_XBINS counts,
 * magnitudes of values >= 0 in bins 0..OPT_CALIB_BINS, then those of values < 0. Exact while the
 * ranges stay within [2^-100, 2^129) (the products then stay normal floats). */
#define OPT_CALIB_XBINS (2 * (OPT_CALIB_BINS + 1))

/* Adds the finite values of x[0..n) to the extended histogram xh of range hmax > 0. */
void opt_calib_xhist_f32(uint64_t *xh, double hmax, const float *x, size_t n);
void opt_calib_xhist_f32_ref(uint64_t *xh, double hmax, const float *x, size_t n);
/* The same for any float array (converted in chunks; other dtypes are ignored). */
void opt_calib_xhist_array(uint64_t *xh, double hmax, const opt_array *a);
/* Brings xh from range h to h2 = h * 2^d, d >= 0, keeping the extended layout: the counts then
 * equal those of binning the same values with h2, so more values can be binned into xh with h2
 * (how one thread gathers several runs of a batch). */
void opt_calib_xhist_widen(uint64_t *xh, double h, double h2);
/* Adds xh (binned with range h) to histograms pos/neg of range hmax = h * 2^d, d >= 0, and
 * zeroes xh. The counts equal those of binning the same values with hmax directly. */
void opt_calib_xhist_fold(uint64_t *pos, uint64_t *neg, double hmax, uint64_t *xh, double h);

/* Returns the accumulator for name in s, creating it (empty) on first use; NULL when out of
 * memory (err says so). The pointer is valid until the next call that creates one. */
opt_calib_acc *opt_calib_stats_acc(opt_calib_stats *s, const char *name, opt_error *err);

/* Merges accumulator src into dst (same name), e.g. to combine per-thread statistics. */
opt_status opt_calib_acc_merge(opt_calib_acc *dst, const opt_calib_acc *src, opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
