/*
 * libopt/ir/dtype.c — element type facts and scalar conversions between float32 and the
 * half-precision and 8-bit float formats, rounding to nearest even as IEEE 754 requires.
 */
#include "ir.h"

#include <math.h>
#include <string.h>

#define DTYPE_LIST(X)                              \
    X(UNDEFINED, "undefined", 0)                   \
    X(FLOAT, "float32", 32)                        \
    X(UINT8, "uint8", 8)                           \
    X(INT8, "int8", 8)                             \
    X(UINT16, "uint16", 16)                        \
    X(INT16, "int16", 16)                          \
    X(INT32, "int32", 32)                          \
    X(INT64, "int64", 64)                          \
    X(STRING, "string", 0)                         \
    X(BOOL, "bool", 8)                             \
    X(FLOAT16, "float16", 16)                      \
    X(DOUBLE, "float64", 64)                       \
    X(UINT32, "uint32", 32)                        \
    X(UINT64, "uint64", 64)                        \
    X(COMPLEX64, "complex64", 64)                  \
    X(COMPLEX128, "complex128", 128)               \
    X(BFLOAT16, "bfloat16", 16)                    \
    X(FLOAT8E4M3FN, "float8e4m3fn", 8)             \
    X(FLOAT8E4M3FNUZ, "float8e4m3fnuz", 8)         \
    X(FLOAT8E5M2, "float8e5m2", 8)                 \
    X(FLOAT8E5M2FNUZ, "float8e5m2fnuz", 8)         \
    X(UINT4, "uint4", 4)                           \
    X(INT4, "int4", 4)                             \
    X(FLOAT4E2M1, "float4e2m1", 4)

static const struct {
    const char *name, *short_name;
    int bits;
} dtypes[] = {
#define X(n, s, b) {#n, s, b},
    DTYPE_LIST(X)
#undef X
};
_Static_assert(sizeof dtypes / sizeof dtypes[0] == OPT_DT_COUNT, "dtype table and enum differ");

bool opt_dtype_valid(int dtype) { return dtype > 0 && dtype < OPT_DT_COUNT; }

const char *opt_dtype_name(int dtype)
{
    return dtype >= 0 && dtype < OPT_DT_COUNT ? dtypes[dtype].name : "UNKNOWN";
}

const char *opt_dtype_short(int dtype)
{
    return dtype >= 0 && dtype < OPT_DT_COUNT ? dtypes[dtype].short_name : "unknown";
}

int opt_dtype_bits(int dtype) { return dtype >= 0 && dtype < OPT_DT_COUNT ? dtypes[dtype].bits : 0; }

bool opt_dtype_raw_bytes(int dtype, uint64_t n, uint64_t *bytes)
{
    int bits = opt_dtype_bits(dtype);
    if (bits == 0) return false;
    if (bits == 4) {
        *bytes = n / 2 + (n & 1);
        return true;
    }
    uint64_t per = (uint64_t)bits / 8;
    if (n > UINT64_MAX / per) return false;
    *bytes = n * per;
    return true;
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t opt_f32_to_f16(float f)
{
    uint32_t x = f2u(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* subnormal half (or zero): |f| < 2^-14 */
        /* Scale into the subnormal grid with float arithmetic, which rounds to nearest even. */
        float v = u2f(ax) * 16777216.0f; /* 2^24: half subnormal unit is 2^-24 */
        uint32_t m = (uint32_t)lrintf(v);
        return (uint16_t)(sign | m);
    }
    /* Normal: rebias exponent and round the 13 dropped mantissa bits to nearest even. */
    uint32_t h = ((ax - 0x38000000u) >> 13);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float opt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m / 16777216.0f;
        return sign ? -v : v;
    }
    if (e == 31) return u2f(sign | 0x7f800000u | (m << 13));
    return u2f(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t opt_f32_to_bf16(float f)
{
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return (uint16_t)(x >> 16);
}

float opt_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

/* Parameters of the four float8 formats: exponent bits, mantissa bits, bias, whether the
 * format has infinities, whether NaN is the single pattern 0x80 (the "uz" formats). */
typedef struct f8fmt {
    int ebits, mbits, bias;
    bool has_inf, uz;
    float max;
} f8fmt;

static f8fmt f8_format(int dtype)
{
    switch (dtype) {
    case OPT_DT_FLOAT8E4M3FN: return (f8fmt){4, 3, 7, false, false, 448.0f};
    case OPT_DT_FLOAT8E4M3FNUZ: return (f8fmt){4, 3, 8, false, true, 240.0f};
    case OPT_DT_FLOAT8E5M2: return (f8fmt){5, 2, 15, true, false, 57344.0f};
    default: return (f8fmt){5, 2, 16, false, true, 57344.0f};
    }
}

float opt_f8_to_f32(uint8_t v, int dtype)
{
    f8fmt f = f8_format(dtype);
    int sign = v >> 7;
    int e = (v >> f.mbits) & ((1 << f.ebits) - 1);
    int m = v & ((1 << f.mbits) - 1);
    if (f.uz) {
        if (v == 0x80) return NAN;
    } else if (f.has_inf) {
        if (e == (1 << f.ebits) - 1) return m ? NAN : (sign ? -INFINITY : INFINITY);
    } else if (e == 15 && m == 7) {
        return NAN; /* e4m3fn: only S.1111.111 is NaN */
    }
    float val;
    if (e == 0)
        val = ldexpf((float)m, 1 - f.bias - f.mbits);
    else
        val = ldexpf((float)(m | (1 << f.mbits)), e - f.bias - f.mbits);
    return sign ? -val : val;
}

uint8_t opt_f32_to_f8(float x, int dtype, bool saturate)
{
    f8fmt f = f8_format(dtype);
    uint8_t nan = f.uz ? 0x80 : (f.has_inf ? 0x7f : 0x7f);
    if (isnan(x)) return nan;
    uint8_t sign = signbit(x) ? 0x80 : 0;
    float a = fabsf(x);
    if (isinf(a) || a > f.max) {
        if (saturate) {
            /* Largest finite value of the format. */
            for (int v = 0x7f; v >= 0; v--) {
                float fv = opt_f8_to_f32((uint8_t)v, dtype);
                if (!isnan(fv) && !isinf(fv) && fv <= f.max) return (uint8_t)(sign | v);
            }
        }
        if (f.has_inf) return (uint8_t)(sign | 0x7c);
        return nan;
    }
    /* Nearest-even search over the 128 magnitudes: simple and exact for an 8-bit format. */
    int best = 0;
    float bestd = INFINITY;
    for (int v = 0; v < 128; v++) {
        float fv = opt_f8_to_f32((uint8_t)v, dtype);
        if (isnan(fv) || isinf(fv)) continue;
        float d = fabsf(fv - a);
        if (d < bestd || (d == bestd && (v & 1) == 0)) {
            bestd = d;
            best = v;
        }
    }
    if (best == 0 && f.uz) return 0; /* uz formats have no negative zero */
    return (uint8_t)(sign | best);
}
