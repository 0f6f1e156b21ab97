/*
 * libopt/exec/cpu/vmath.h — exp, erf and tanh for float32 written so that gcc vectorises the loops
 * that call them (libm's expf/erff/tanhf are opaque calls, one value at a time).
 *
 * No branches, no float-to-int conversions (NaN stays NaN without undefined behaviour), no
 * tables: each is a handful of multiply-adds, so a loop over an array compiles to AVX-512 or
 * AVX2 under NN_VEC. The reference twins are libm's expf, erff and tanhf; tests/unit/exec_vmath.c
 * checks the whole float range against them within KT_VMATH_REL.
 *
 * Internal to libopt/exec/cpu; not installed.
 */
#ifndef OPT_EXEC_CPU_VMATH_H
#define OPT_EXEC_CPU_VMATH_H

#include <stdint.h>
#include <string.h>

static inline float nn_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t nn_bits_of_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* e^r * 2^n for the reduced argument of nn_expf: cephes' polynomial (|r| <= ln 2 / 2). */
static inline float nn_exp_poly(float r)
{
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    return p * r * r + r + 1.0f;
}

/* e^x for x in [-87, 88] only (no clamps; 2^n in one factor), as nn_expf there: for callers
 * whose argument is bounded by construction. */
static inline float nn_expf_normal(float x)
{
    float t = x * 1.44269504088896341f;
    float nm = t + 12582912.0f; /* 1.5 * 2^23: rounds t to an integer in the low bits */
    float n = nm - 12582912.0f;
    int32_t ni = (int32_t)(nn_bits_of_f32(nm) - 0x4B400000u);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    return nn_exp_poly(r) * nn_f32_from_bits((uint32_t)(ni + 127) << 23);
}

/* e^x within about 1 ulp (cephes' expf polynomial after a Cody-Waite reduction by ln 2); +inf
 * above 88.72, 0 (through the subnormals) below -103.9, NaN for NaN. */
static inline float nn_expf(float x)
{
    x = x > 89.0f ? 89.0f : x;
    x = x < -104.0f ? -104.0f : x;
    float t = x * 1.44269504088896341f;
    float nm = t + 12582912.0f; /* 1.5 * 2^23: rounds t to an integer in the low bits */
    float n = nm - 12582912.0f;
    int32_t ni = (int32_t)(nn_bits_of_f32(nm) - 0x4B400000u);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = nn_exp_poly(r);
    /* 2^n in two halves so that n in [-150, 128] neither overflows nor flushes too early. */
    int32_t h = ni >> 1;
    float s1 = nn_f32_from_bits((uint32_t)(h + 127) << 23);
    float s2 = nn_f32_from_bits((uint32_t)(ni - h + 127) << 23);
    return p * s1 * s2;
}

/* erf(x) within about 2e-7 relative: x * P(x^2) for |x| < 0.921875 and 1 - e^Q(|x|) above, P and
 * Q of degree 5 fitted here (weighted least squares on Chebyshev nodes of erf(x)/x and of
 * log erfc(x), in double), |x| clamped at 3.925 where erf is 1 in float32; odd; NaN for NaN.
 * No division: about 30 operations a value with both branches evaluated. */
static inline float nn_erff(float x)
{
    float a = x < 0 ? -x : x;
    float z = x * x;
    float p = -6.02464366e-4f;
    p = p * z + 5.00090327e-3f;
    p = p * z - 2.67729629e-2f;
    p = p * z + 1.12820394e-1f;
    p = p * z - 3.76125246e-1f;
    p = p * z + 1.12837911f;
    float small = x * p;
    float ac = a > 3.925f ? 3.925f : a;
    float q = -1.23376807e-3f;
    q = q * ac + 1.54373767e-2f;
    q = q * ac - 9.06713977e-2f;
    q = q * ac - 6.51412427e-1f;
    q = q * ac - 1.11971092f;
    q = q * ac - 2.01423257e-3f;
    float big = 1.0f - nn_expf_normal(q); /* q in [-18.6, -1.6] */
    big = x < 0 ? -big : big;
    return a < 0.921875f ? small : (x != x ? x : big);
}

/* tanh(x) within a few ulp: cephes' odd polynomial for |x| < 0.625, 1 - 2 / (e^2|x| + 1) above
 * (|x| clamped at 10, where tanh is 1 in float32); odd; NaN for NaN. */
static inline float nn_tanhf(float x)
{
    float a = x < 0 ? -x : x;
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    float ac = a > 10.0f ? 10.0f : a;
    float big = 1.0f - 2.0f / (nn_expf_normal(2.0f * ac) + 1.0f); /* 2ac in [0, 20] */
    big = x < 0 ? -big : big;
    return a < 0.625f ? small : (x != x ? x : big);
}

/* 1 / (1 + e^-x) with one exponential: e^-|x| never overflows, and for x < 0 the result is
 * e^x / (1 + e^x) = e^-|x| / (1 + e^-|x|). NaN for NaN. */
static inline float nn_sigmoidf(float x)
{
    float a = x < 0 ? -x : x;
    float e = nn_expf(-a);
    float r = 1.0f / (1.0f + e);
    return x < 0 ? e * r : (x != x ? x : r);
}

#endif
