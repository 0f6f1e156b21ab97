/*
 * libopt/exec/cpu/convert.h — float32 views of any numeric array, for kernels that compute in
 * float32 whatever the model's float type is.
 *
 * The rule for float16/bfloat16 (and double, where a kernel chooses to) models: read the inputs
 * as float32, compute in float32, and round once at the op's output (round to nearest even, NaN
 * kept NaN) — the same result ONNX Runtime's float16 kernels give for most ops.
 *
 * Usage in a kernel's run():
 *
 *     const float *x;
 *     OPT_TRY(opt_kctx_f32_in(k, 0, &x, err));         // no copy when input 0 is float32
 *     float *y;
 *     OPT_TRY(opt_kctx_f32_out(k, 0, k->out_dt[0], ndim, dims, &y, err));
 *     ... compute y from x ...
 *     opt_kctx_f32_done(k, 0, y);                        // rounds into output 0 unless float32
 *
 * Temporary float32 buffers come from opt_kctx_scratch and are freed after run(); nothing here
 * needs freeing by the kernel.
 */
#ifndef OPT_EXEC_CPU_CONVERT_H
#define OPT_EXEC_CPU_CONVERT_H

#include "libopt/exec/kernel.h"

/* True for the dtypes these helpers convert: float, double, float16, bfloat16, the 8/16/32/64-bit
 * integers and bool. */
bool opt_cvt_supported(int dtype);

/* Converts n elements of dtype at src into float32 (exact for float16/bfloat16/small ints). */
void opt_cvt_to_f32(const void *src, int dtype, float *dst, size_t n);
/* Converts n float32 values into dtype at dst: round to nearest even for float16/bfloat16;
 * integers are rounded to nearest even and saturated; bool is x != 0. */
void opt_cvt_from_f32(const float *src, void *dst, int dtype, size_t n);

/* The float16/bfloat16 cases of the pair above, for callers that know the dtype: AVX-512F or
 * F16C when the CPU has them (MOPT_CVT_LEVEL=0 or 1 in the environment caps that at the scalar
 * code or F16C, for tests), vectorised integer code for bfloat16. Same bits as opt_f16_to_f32 / opt_f32_to_f16 / opt_f32_to_bf16 for every
 * value but signalling NaNs (made quiet). The arrays must not overlap. */
void opt_cvt_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void opt_cvt_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void opt_cvt_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void opt_cvt_f32_to_bf16(const float *src, uint16_t *dst, size_t n);

/* Same pair through double, for kernels that keep double precision (and int64 exactly up to
 * 2^53). */
void opt_cvt_to_f64(const void *src, int dtype, double *dst, size_t n);
void opt_cvt_from_f64(const double *src, void *dst, int dtype, size_t n);

/* Element i of any supported array as float / stores v into element i. */
float opt_load_f32(const void *p, int dtype, size_t i);
void opt_store_f32(void *p, int dtype, size_t i, float v);

/* Input i as float32: points *x at the input's data when it is float32, else at a converted
 * scratch copy. Fails when the input is absent or its dtype is not convertible. */
opt_status opt_kctx_f32_in(opt_kctx *k, size_t i, const float **x, opt_error *err);
/* Allocates output i (dtype, dims) and gives a float32 buffer to write: the output itself when
 * dtype is float32, else scratch that opt_kctx_f32_done converts into the output. */
opt_status opt_kctx_f32_out(opt_kctx *k, size_t i, int dtype, int ndim, const int64_t *dims,
                            float **y, opt_error *err);
/* Finishes output i: converts y into it with correct rounding when it is not float32. */
void opt_kctx_f32_done(opt_kctx *k, size_t i, const float *y);

#endif
