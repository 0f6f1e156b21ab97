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
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    /* 2^n in two halves so that n in [-150, 128] neither overflows nor flushes too early. */
    int32_t h = ni >> 1;
    float s1 = nn_f32_from_bits((uint32_t)(h + 127) << 23);
    float s2 = nn_f32_from_bits((uint32_t)(ni - h + 127) << 23);
    return p * s1 * s2;
}

/* erf(x) within about 3e-7 relative: a Taylor series for |x| < 0.75 and 1 - erfc (Numerical
 * Recipes' Chebyshev fit, fractional error below 1.2e-7) above; odd; NaN for NaN. */
static inline float nn_erff(float x)
{
    float a = x < 0 ? -x : x;
    /* |x| < 0.75: 2/sqrt(pi) * (x - x^3/3 + x^5/10 - ... - x^15/75600) */
    float z2 = x * x;
    float s = 1.0f / 75600.0f;
    s = s * -z2 + 1.0f / 9360.0f;
    s = s * -z2 + 1.0f / 1320.0f;
    s = s * -z2 + 1.0f / 216.0f;
    s = s * -z2 + 1.0f / 42.0f;
    s = s * -z2 + 1.0f / 10.0f;
    s = s * -z2 + 1.0f / 3.0f;
    s = s * -z2 + 1.0f;
    float small = x * s * 1.12837916709551257f;
    /* |x| >= 0.75: 1 - t * exp(-a^2 - 1.26551223 + t * P(t)), t = 1 / (1 + a / 2). */
    float ac = a > 10.0f ? 10.0f : a;
    float t = 1.0f / (1.0f + 0.5f * ac);
    float q = 0.17087277f;
    q = q * t - 0.82215223f;
    q = q * t + 1.48851587f;
    q = q * t - 1.13520398f;
    q = q * t + 0.27886807f;
    q = q * t - 0.18628806f;
    q = q * t + 0.09678418f;
    q = q * t + 0.37409196f;
    q = q * t + 1.00002368f;
    q = q * t - 1.26551223f;
    float erfc = t * nn_expf(-ac * ac + q);
    float big = 1.0f - erfc;
    big = x < 0 ? -big : big;
    return a < 0.75f ? small : (x != x ? x : big);
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
    float big = 1.0f - 2.0f / (nn_expf(2.0f * ac) + 1.0f);
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
