/*
 * libopt/exec/cpu/convert.c — float32/float64 views of numeric arrays (see convert.h).
 */
#include "libopt/exec/cpu/convert.h"
#include "libopt/exec/cpu/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- float16 / bfloat16 arrays ------------------------------------------------------------------
 *
 * float16 goes through F16C (vcvtph2ps / vcvtps2ph with round to nearest even, 8 values at a
 * time, or AVX-512F's 16-value forms) when the CPU has it, checked once at run time; otherwise
 * the scalar opt_f16_to_f32 / opt_f32_to_f16 of libopt/ir. Both give the same bits for every finite value, infinity and
 * quiet NaN (F16C also quiets a signalling NaN where the scalar code keeps its payload as is).
 * bfloat16 is integer arithmetic on the bit patterns, written branch-free so that the compiler
 * vectorises it (AVX-512, AVX2 or baseline clones, NN_VEC); it is opt_f32_to_bf16's rounding
 * exactly (round to nearest even on the upper 16 bits, NaN made quiet, subnormals kept). */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define CVT_F16C 1
#define F16C_FN __attribute__((target("avx,f16c"), optimize("O3")))

static F16C_FN void f16_to_f32_f16c(const uint16_t *s, float *d, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i h0 = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i h1 = _mm_loadu_si128((const __m128i *)(s + i + 8));
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(h0));
        _mm256_storeu_ps(d + i + 8, _mm256_cvtph_ps(h1));
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    if (i < n) {
        uint16_t th[8] = {0};
        float tf[8];
        memcpy(th, s + i, (n - i) * sizeof *th);
        _mm256_storeu_ps(tf, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)th)));
        memcpy(d + i, tf, (n - i) * sizeof *tf);
    }
}

static F16C_FN void f32_to_f16_f16c(const float *s, uint16_t *d, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 f0 = _mm256_loadu_ps(s + i), f1 = _mm256_loadu_ps(s + i + 8);
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(f0, _MM_FROUND_TO_NEAREST_INT));
        _mm_storeu_si128((__m128i *)(d + i + 8), _mm256_cvtps_ph(f1, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float tf[8] = {0};
        uint16_t th[8];
        memcpy(tf, s + i, (n - i) * sizeof *tf);
        _mm_storeu_si128((__m128i *)th, _mm256_cvtps_ph(_mm256_loadu_ps(tf), _MM_FROUND_TO_NEAREST_INT));
        memcpy(d + i, th, (n - i) * sizeof *th);
    }
}

#define F16_512_FN __attribute__((target("avx512f"), optimize("O3")))

/* The same with AVX-512F's 16-wide forms (twice the values per instruction; the converted
 * arrays are usually in cache, so the instruction count is what costs). Tails are masked. */
static F16_512_FN void f16_to_f32_avx512(const uint16_t *s, float *d, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i h0 = _mm256_loadu_si256((const __m256i *)(s + i));
        __m256i h1 = _mm256_loadu_si256((const __m256i *)(s + i + 16));
        _mm512_storeu_ps(d + i, _mm512_cvtph_ps(h0));
        _mm512_storeu_ps(d + i + 16, _mm512_cvtph_ps(h1));
    }
    for (; i < n; i += 16) {
        size_t m = n - i < 16 ? n - i : 16;
        uint16_t t[16] = {0};
        memcpy(t, s + i, m * sizeof *t);
        __m512 f = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)t));
        _mm512_mask_storeu_ps(d + i, m == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << m) - 1), f);
    }
}

static F16_512_FN void f32_to_f16_avx512(const float *s, uint16_t *d, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 f0 = _mm512_loadu_ps(s + i), f1 = _mm512_loadu_ps(s + i + 16);
        _mm256_storeu_si256((__m256i *)(d + i), _mm512_cvtps_ph(f0, _MM_FROUND_TO_NEAREST_INT));
        _mm256_storeu_si256((__m256i *)(d + i + 16), _mm512_cvtps_ph(f1, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i += 16) {
        size_t m = n - i < 16 ? n - i : 16;
        __m512 f = _mm512_maskz_loadu_ps(m == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << m) - 1), s + i);
        uint16_t t[16];
        _mm256_storeu_si256((__m256i *)t, _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
        memcpy(d + i, t, m * sizeof *t);
    }
}

/* 0: scalar, 1: F16C, 2: AVX-512F; at most MOPT_CVT_LEVEL when that is set (tests). */
static int f16_level(void)
{
    static int level = -1; /* benign race: every thread computes the same value */
    if (level < 0) {
        __builtin_cpu_init();
        int l = 0;
        if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx"))
            l = __builtin_cpu_supports("avx512f") ? 2 : 1;
        const char *cap = getenv("MOPT_CVT_LEVEL");
        if (cap && cap[0] >= '0' && cap[0] <= '2' && cap[0] - '0' < l) l = cap[0] - '0';
        level = l;
    }
    return level;
}
#else
#define CVT_F16C 0
#endif

void opt_cvt_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
#if CVT_F16C
    int l = f16_level();
    if (l == 2) {
        f16_to_f32_avx512(src, dst, n);
        return;
    }
    if (l == 1) {
        f16_to_f32_f16c(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = opt_f16_to_f32(src[i]);
}

void opt_cvt_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
#if CVT_F16C
    int l = f16_level();
    if (l == 2) {
        f32_to_f16_avx512(src, dst, n);
        return;
    }
    if (l == 1) {
        f32_to_f16_f16c(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = opt_f32_to_f16(src[i]);
}

NN_VEC void opt_cvt_bf16_to_f32(const uint16_t *restrict src, float *restrict dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        dst[i] = f;
    }
}

NN_VEC void opt_cvt_f32_to_bf16(const float *restrict src, uint16_t *restrict dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, &src[i], sizeof x);
        uint32_t r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
        uint32_t q = (x >> 16) | 0x40u;
        dst[i] = (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? q : r);
    }
}

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
    case OPT_DT_FLOAT16: opt_cvt_f16_to_f32(src, dst, n); break;
    case OPT_DT_BFLOAT16: opt_cvt_bf16_to_f32(src, dst, n); break;
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
    case OPT_DT_FLOAT16: opt_cvt_f32_to_f16(src, dst, n); break;
    case OPT_DT_BFLOAT16: opt_cvt_f32_to_bf16(src, dst, n); break;
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
