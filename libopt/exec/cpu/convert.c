/*
 * libopt/exec/cpu/convert.c — float32/float64 views of numeric arrays (see convert.h).
 */
#include "libopt/exec/cpu/convert.h"

#include <math.h>
#include <string.h>

bool opt_cvt_supported(int dtype)
{
    switch (dtype) {
    case OPT_DT_FLOAT: case OPT_DT_DOUBLE: case OPT_DT_FLOAT16: case OPT_DT_BFLOAT16:
    case OPT_DT_INT8: case OPT_DT_UINT8: case OPT_DT_INT16: case OPT_DT_UINT16:
    case OPT_DT_INT32: case OPT_DT_UINT32: case OPT_DT_INT64: case OPT_DT_UINT64:
    case OPT_DT_BOOL:
        return true;
    default:
        return false;
    }
}

/* Saturating round-to-nearest-even of v into [lo, hi]; NaN gives 0. */
static double sat(double v, double lo, double hi)
{
    if (v != v) return 0;
    v = nearbyint(v);
    return v < lo ? lo : v > hi ? hi : v;
}

#define TO_LOOP(T, EXPR)                                        \
    do {                                                        \
        const T *s = src;                                       \
        for (size_t i = 0; i < n; i++) dst[i] = (EXPR);         \
    } while (0)

void opt_cvt_to_f32(const void *src, int dtype, float *dst, size_t n)
{
    switch (dtype) {
    case OPT_DT_FLOAT: if (dst != src) memmove(dst, src, n * 4); break;
    case OPT_DT_DOUBLE: TO_LOOP(double, (float)s[i]); break;
    case OPT_DT_FLOAT16: TO_LOOP(uint16_t, opt_f16_to_f32(s[i])); break;
    case OPT_DT_BFLOAT16: TO_LOOP(uint16_t, opt_bf16_to_f32(s[i])); break;
    case OPT_DT_INT8: TO_LOOP(int8_t, (float)s[i]); break;
    case OPT_DT_UINT8: TO_LOOP(uint8_t, (float)s[i]); break;
    case OPT_DT_BOOL: TO_LOOP(uint8_t, s[i] ? 1.0f : 0.0f); break;
    case OPT_DT_INT16: TO_LOOP(int16_t, (float)s[i]); break;
    case OPT_DT_UINT16: TO_LOOP(uint16_t, (float)s[i]); break;
    case OPT_DT_INT32: TO_LOOP(int32_t, (float)s[i]); break;
    case OPT_DT_UINT32: TO_LOOP(uint32_t, (float)s[i]); break;
    case OPT_DT_INT64: TO_LOOP(int64_t, (float)s[i]); break;
    case OPT_DT_UINT64: TO_LOOP(uint64_t, (float)s[i]); break;
    default: for (size_t i = 0; i < n; i++) dst[i] = NAN; break;
    }
}

void opt_cvt_to_f64(const void *src, int dtype, double *dst, size_t n)
{
    switch (dtype) {
    case OPT_DT_FLOAT: TO_LOOP(float, (double)s[i]); break;
    case OPT_DT_DOUBLE: if ((const void *)dst != src) memmove(dst, src, n * 8); break;
    case OPT_DT_FLOAT16: TO_LOOP(uint16_t, opt_f16_to_f32(s[i])); break;
    case OPT_DT_BFLOAT16: TO_LOOP(uint16_t, opt_bf16_to_f32(s[i])); break;
    case OPT_DT_INT8: TO_LOOP(int8_t, (double)s[i]); break;
    case OPT_DT_UINT8: TO_LOOP(uint8_t, (double)s[i]); break;
    case OPT_DT_BOOL: TO_LOOP(uint8_t, s[i] ? 1.0 : 0.0); break;
    case OPT_DT_INT16: TO_LOOP(int16_t, (double)s[i]); break;
    case OPT_DT_UINT16: TO_LOOP(uint16_t, (double)s[i]); break;
    case OPT_DT_INT32: TO_LOOP(int32_t, (double)s[i]); break;
    case OPT_DT_UINT32: TO_LOOP(uint32_t, (double)s[i]); break;
    case OPT_DT_INT64: TO_LOOP(int64_t, (double)s[i]); break;
    case OPT_DT_UINT64: TO_LOOP(uint64_t, (double)s[i]); break;
    default: for (size_t i = 0; i < n; i++) dst[i] = NAN; break;
    }
}

#define FROM_LOOP(T, EXPR)                                      \
    do {                                                        \
        T *d = dst;                                             \
        for (size_t i = 0; i < n; i++) d[i] = (EXPR);           \
    } while (0)

void opt_cvt_from_f32(const float *src, void *dst, int dtype, size_t n)
{
    const float *s = src;
    switch (dtype) {
    case OPT_DT_FLOAT: if (dst != (const void *)src) memmove(dst, src, n * 4); break;
    case OPT_DT_DOUBLE: FROM_LOOP(double, s[i]); break;
    case OPT_DT_FLOAT16: FROM_LOOP(uint16_t, opt_f32_to_f16(s[i])); break;
    case OPT_DT_BFLOAT16: FROM_LOOP(uint16_t, opt_f32_to_bf16(s[i])); break;
    case OPT_DT_BOOL: FROM_LOOP(uint8_t, s[i] != 0); break;
    case OPT_DT_INT8: FROM_LOOP(int8_t, (int8_t)sat(s[i], INT8_MIN, INT8_MAX)); break;
    case OPT_DT_UINT8: FROM_LOOP(uint8_t, (uint8_t)sat(s[i], 0, UINT8_MAX)); break;
    case OPT_DT_INT16: FROM_LOOP(int16_t, (int16_t)sat(s[i], INT16_MIN, INT16_MAX)); break;
    case OPT_DT_UINT16: FROM_LOOP(uint16_t, (uint16_t)sat(s[i], 0, UINT16_MAX)); break;
    case OPT_DT_INT32: FROM_LOOP(int32_t, (int32_t)sat(s[i], INT32_MIN, INT32_MAX)); break;
    case OPT_DT_UINT32: FROM_LOOP(uint32_t, (uint32_t)sat(s[i], 0, UINT32_MAX)); break;
    case OPT_DT_INT64: FROM_LOOP(int64_t, (int64_t)sat(s[i], -9223372036854775808.0, 9223372036854774784.0)); break;
    case OPT_DT_UINT64: FROM_LOOP(uint64_t, (uint64_t)sat(s[i], 0, 18446744073709549568.0)); break;
    default: break;
    }
}

void opt_cvt_from_f64(const double *src, void *dst, int dtype, size_t n)
{
    const double *s = src;
    switch (dtype) {
    case OPT_DT_FLOAT: FROM_LOOP(float, (float)s[i]); break;
    case OPT_DT_DOUBLE: if (dst != (const void *)src) memmove(dst, src, n * 8); break;
    case OPT_DT_FLOAT16: FROM_LOOP(uint16_t, opt_f32_to_f16((float)s[i])); break;
    case OPT_DT_BFLOAT16: FROM_LOOP(uint16_t, opt_f32_to_bf16((float)s[i])); break;
    case OPT_DT_BOOL: FROM_LOOP(uint8_t, s[i] != 0); break;
    case OPT_DT_INT8: FROM_LOOP(int8_t, (int8_t)sat(s[i], INT8_MIN, INT8_MAX)); break;
    case OPT_DT_UINT8: FROM_LOOP(uint8_t, (uint8_t)sat(s[i], 0, UINT8_MAX)); break;
    case OPT_DT_INT16: FROM_LOOP(int16_t, (int16_t)sat(s[i], INT16_MIN, INT16_MAX)); break;
    case OPT_DT_UINT16: FROM_LOOP(uint16_t, (uint16_t)sat(s[i], 0, UINT16_MAX)); break;
    case OPT_DT_INT32: FROM_LOOP(int32_t, (int32_t)sat(s[i], INT32_MIN, INT32_MAX)); break;
    case OPT_DT_UINT32: FROM_LOOP(uint32_t, (uint32_t)sat(s[i], 0, UINT32_MAX)); break;
    case OPT_DT_INT64: FROM_LOOP(int64_t, (int64_t)sat(s[i], -9223372036854775808.0, 9223372036854774784.0)); break;
    case OPT_DT_UINT64: FROM_LOOP(uint64_t, (uint64_t)sat(s[i], 0, 18446744073709549568.0)); break;
    default: break;
    }
}

float opt_load_f32(const void *p, int dtype, size_t i)
{
    float v;
    switch (dtype) {
    case OPT_DT_FLOAT: return ((const float *)p)[i];
    case OPT_DT_FLOAT16: return opt_f16_to_f32(((const uint16_t *)p)[i]);
    case OPT_DT_BFLOAT16: return opt_bf16_to_f32(((const uint16_t *)p)[i]);
    default: break;
    }
    size_t w = (size_t)opt_dtype_bits(dtype) / 8;
    opt_cvt_to_f32((const char *)p + i * w, dtype, &v, 1);
    return v;
}

void opt_store_f32(void *p, int dtype, size_t i, float v)
{
    size_t w = (size_t)opt_dtype_bits(dtype) / 8;
    opt_cvt_from_f32(&v, (char *)p + i * w, dtype, 1);
}

opt_status opt_kctx_f32_in(opt_kctx *k, size_t i, const float **x, opt_error *err)
{
    if (!opt_kctx_has(k, i)) return opt_kerr(k, err, OPT_ERR_INVALID, "input %zu is missing", i);
    const opt_array *a = k->in[i];
    if (a->dtype == OPT_DT_FLOAT) {
        *x = a->data;
        return OPT_OK;
    }
    if (!opt_cvt_supported(a->dtype))
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "input %zu: dtype %s is not supported", i,
                        opt_dtype_short(a->dtype));
    uint64_t n = opt_array_numel(a);
    float *t = opt_kctx_scratch(k, (size_t)n * 4, err);
    if (!t) return err ? err->status : OPT_ERR_NOMEM;
    opt_cvt_to_f32(a->data, a->dtype, t, (size_t)n);
    *x = t;
    return OPT_OK;
}

opt_status opt_kctx_f32_out(opt_kctx *k, size_t i, int dtype, int ndim, const int64_t *dims,
                            float **y, opt_error *err)
{
    OPT_TRY(opt_kctx_output(k, i, dtype, ndim, dims, err));
    if (dtype == OPT_DT_FLOAT) {
        *y = k->out[i].data;
        return OPT_OK;
    }
    if (!opt_cvt_supported(dtype))
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "output %zu: dtype %s is not supported", i,
                        opt_dtype_short(dtype));
    uint64_t n = opt_array_numel(&k->out[i]);
    *y = opt_kctx_scratch(k, (size_t)n * 4, err);
    return *y ? OPT_OK : (err ? err->status : OPT_ERR_NOMEM);
}

void opt_kctx_f32_done(opt_kctx *k, size_t i, const float *y)
{
    opt_array *o = &k->out[i];
    if ((const void *)y == o->data) return;
    opt_cvt_from_f32(y, o->data, o->dtype, (size_t)opt_array_numel(o));
}
