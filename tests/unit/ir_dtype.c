/*
 * tests/unit/ir_dtype.c — scalar conversions of libopt/ir/dtype.c: float16 and bfloat16 from and
 * to float32 round to nearest even (subnormals, overflow to infinity, NaN kept NaN), checked
 * exhaustively over all 65536 half values and at every rounding boundary, against a reference
 * that rounds in double arithmetic (and, where the compiler has _Float16, against the compiler);
 * float8 formats; dtype facts.
 */
#include "libopt/ir/ir.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* float32 -> the nearest value of a binary format with `mant` stored mantissa bits, minimum
 * normal exponent emin and largest finite value fmax, rounding ties to even, in double arithmetic
 * (exact: every step scales by a power of two or rounds once). Overflow gives infinity. */
static double ref_round(float f, int mant, int emin, double fmax, double inf_at)
{
    double x = f;
    if (isnan(x) || isinf(x) || x == 0) return x;
    int e;
    frexp(fabs(x), &e); /* |x| = m * 2^e, 0.5 <= m < 1: exponent of the leading bit is e - 1 */
    int lead = e - 1 < emin ? emin : e - 1;
    double q = ldexp(1.0, lead - mant);
    double r = nearbyint(x / q) * q;
    if (fabs(r) >= inf_at || fabs(r) > fmax) return copysign(INFINITY, x);
    return r;
}

static double ref_f16(float f) { return ref_round(f, 10, -14, 65504.0, 65536.0); }
static double ref_bf16(float f) { return ref_round(f, 7, -126, 3.3895313892515355e38, INFINITY); }

/* The float value a half-precision bit pattern stands for, computed without opt_f16_to_f32. */
static double half_value(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

Test(ir_dtype, f16_to_f32_is_exact_for_all_65536_halves)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = opt_f16_to_f32((uint16_t)h);
        double want = half_value((uint16_t)h);
        if (isnan(want)) {
            cr_assert(isnan(f), "half 0x%04x is NaN, got %g", h, f);
            cr_assert_eq(signbit(f) != 0, (h >> 15) != 0, "half 0x%04x: NaN sign", h);
        } else {
            cr_assert(f == want && !signbit(f) == !signbit(want), "half 0x%04x: got %.9g want %.9g", h, f,
                      want);
        }
#ifdef __FLT16_MAX__
        _Float16 c;
        uint16_t hb = (uint16_t)h;
        memcpy(&c, &hb, 2);
        cr_assert(isnan(f) ? isnan((float)c) : f == (float)c, "half 0x%04x: compiler says %g", h, (float)c);
#endif
    }
}

Test(ir_dtype, f16_round_trip_is_the_identity_except_nan_payloads)
{
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t back = opt_f32_to_f16(opt_f16_to_f32((uint16_t)h));
        bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan)
            cr_assert((back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000),
                      "NaN 0x%04x came back as 0x%04x", h, back);
        else
            cr_assert_eq(back, h, "half 0x%04x came back as 0x%04x", h, back);
    }
}

/* For every pair of neighbouring halves, the float exactly between them rounds to the even one,
 * and the floats one ulp either side round to the nearer one: every rounding boundary, the
 * subnormal ones included. */
Test(ir_dtype, f32_to_f16_rounds_to_nearest_even_at_every_boundary)
{
    for (uint32_t h = 0; h < 0x7bff; h++) { /* positive finite halves below the largest; next is h + 1 */
        double lo = half_value((uint16_t)h), hi = half_value((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2); /* exact: halves have 11 significant bits */
        cr_assert_eq((double)mid, (lo + hi) / 2);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        cr_assert_eq(opt_f32_to_f16(mid), even, "tie between 0x%04x and 0x%04x", h, h + 1);
        cr_assert_eq(opt_f32_to_f16(-mid), even | 0x8000, "negative tie at 0x%04x", h);
        cr_assert_eq(opt_f32_to_f16(from_bits(bits(mid) - 1)), h, "just below the tie at 0x%04x", h);
        cr_assert_eq(opt_f32_to_f16(from_bits(bits(mid) + 1)), (uint16_t)(h + 1), "just above the tie at 0x%04x", h);
    }
}

Test(ir_dtype, f32_to_f16_matches_the_reference_on_random_floats)
{
    uint64_t s = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 2000000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        /* Exponents spread over the half range and beyond. */
        uint32_t u = (uint32_t)s & 0x807fffffu;
        u |= (uint32_t)(96 + (s >> 40) % 64) << 23;
        float f = from_bits(u);
        double want = ref_f16(f);
        float got = opt_f16_to_f32(opt_f32_to_f16(f));
        cr_assert(got == want && !signbit(got) == !signbit(want), "f32 %a (0x%08x): got %a want %a", f, u,
                  got, want);
#ifdef __FLT16_MAX__
        cr_assert(got == (float)(_Float16)f, "f32 %a: compiler says %a", f, (float)(_Float16)f);
#endif
    }
}

Test(ir_dtype, f32_to_f16_overflow_subnormals_zero_and_nan)
{
    cr_assert_eq(opt_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(opt_f32_to_f16(65519.996f), 0x7bff, "below the halfway point to 65536 stays finite");
    cr_assert_eq(opt_f32_to_f16(65520.0f), 0x7c00, "the halfway point rounds to even: infinity");
    cr_assert_eq(opt_f32_to_f16(1e10f), 0x7c00);
    cr_assert_eq(opt_f32_to_f16(-1e10f), 0xfc00);
    cr_assert_eq(opt_f32_to_f16(INFINITY), 0x7c00);
    cr_assert_eq(opt_f32_to_f16(-INFINITY), 0xfc00);
    cr_assert_eq(opt_f32_to_f16(0x1p-24f), 0x0001, "smallest subnormal");
    cr_assert_eq(opt_f32_to_f16(0x1p-25f), 0x0000, "half the smallest subnormal ties to even zero");
    cr_assert_eq(opt_f32_to_f16(0x1.8p-24f), 0x0002, "1.5 units ties to even 2");
    cr_assert_eq(opt_f32_to_f16(0x1.fffffcp-15f), 0x0400, "largest subnormal rounding up to the smallest normal");
    cr_assert_eq(opt_f32_to_f16(1e-30f), 0x0000);
    cr_assert_eq(opt_f32_to_f16(-1e-30f), 0x8000, "negative underflow keeps the sign");
    cr_assert_eq(opt_f32_to_f16(-0.0f), 0x8000);
    uint16_t n = opt_f32_to_f16(NAN);
    cr_assert((n & 0x7c00) == 0x7c00 && (n & 0x3ff), "NaN stays NaN: 0x%04x", n);
    n = opt_f32_to_f16(from_bits(0x7f800001u)); /* signalling NaN with a low payload */
    cr_assert((n & 0x7c00) == 0x7c00 && (n & 0x3ff), "a NaN whose payload is in the low bits stays NaN: 0x%04x", n);
}

Test(ir_dtype, bf16_to_f32_is_exact_for_all_65536_values)
{
    for (uint32_t h = 0; h < 65536; h++)
        cr_assert_eq(bits(opt_bf16_to_f32((uint16_t)h)), h << 16, "bf16 0x%04x", h);
}

Test(ir_dtype, f32_to_bf16_rounds_to_nearest_even_at_every_boundary)
{
    for (uint32_t h = 0; h < 0x7f80; h++) { /* positive finite bfloat16 values */
        uint32_t mid = (h << 16) | 0x8000u; /* exactly between h and h + 1 */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        cr_assert_eq(opt_f32_to_bf16(from_bits(mid)), even, "tie above 0x%04x", h);
        cr_assert_eq(opt_f32_to_bf16(from_bits(mid | 0x80000000u)), even | 0x8000, "negative tie above 0x%04x", h);
        cr_assert_eq(opt_f32_to_bf16(from_bits(mid - 1)), h, "below the tie above 0x%04x", h);
        cr_assert_eq(opt_f32_to_bf16(from_bits(mid + 1)), (uint16_t)(h + 1), "above the tie above 0x%04x", h);
        cr_assert_eq(opt_f32_to_bf16(from_bits(h << 16)), h, "exact value 0x%04x", h);
    }
    cr_assert_eq(opt_f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80, "FLT_MAX rounds to infinity");
    cr_assert_eq(opt_f32_to_bf16(INFINITY), 0x7f80);
    cr_assert_eq(opt_f32_to_bf16(-INFINITY), 0xff80);
    uint16_t n = opt_f32_to_bf16(from_bits(0x7f800001u));
    cr_assert((n & 0x7f80) == 0x7f80 && (n & 0x7f), "NaN with a low payload stays NaN: 0x%04x", n);
    n = opt_f32_to_bf16(from_bits(0xffffffffu));
    cr_assert((n & 0x7f80) == 0x7f80 && (n & 0x7f) && (n & 0x8000), "negative NaN: 0x%04x", n);
    for (int i = 0; i < 100000; i++) {
        float f = from_bits(0x3f800000u + (uint32_t)i * 977u);
        cr_assert_eq(opt_bf16_to_f32(opt_f32_to_bf16(f)), (float)ref_bf16(f), "f32 %a", f);
    }
}

Test(ir_dtype, float8_round_trips_every_value_and_saturates)
{
    static const int fmts[] = {OPT_DT_FLOAT8E4M3FN, OPT_DT_FLOAT8E4M3FNUZ, OPT_DT_FLOAT8E5M2, OPT_DT_FLOAT8E5M2FNUZ};
    for (int k = 0; k < 4; k++) {
        int dt = fmts[k];
        for (int v = 0; v < 256; v++) {
            float f = opt_f8_to_f32((uint8_t)v, dt);
            if (isnan(f) || isinf(f)) continue;
            uint8_t back = opt_f32_to_f8(f, dt, true);
            if (f == 0 && v == 0x80) continue; /* -0 in the formats that have one */
            cr_assert_eq(back, v, "%s 0x%02x (%g) came back as 0x%02x", opt_dtype_name(dt), v, f, back);
        }
    }
    cr_assert_eq(opt_f8_to_f32(0x7e, OPT_DT_FLOAT8E4M3FN), 448.0f);
    cr_assert(isnan(opt_f8_to_f32(0x7f, OPT_DT_FLOAT8E4M3FN)));
    cr_assert_eq(opt_f32_to_f8(1e6f, OPT_DT_FLOAT8E4M3FN, true), 0x7e, "saturates at 448");
    cr_assert_eq(opt_f32_to_f8(-1e6f, OPT_DT_FLOAT8E4M3FN, true), 0xfe);
    cr_assert_eq(opt_f8_to_f32(0x7b, OPT_DT_FLOAT8E5M2), 57344.0f);
    cr_assert(isinf(opt_f8_to_f32(0x7c, OPT_DT_FLOAT8E5M2)));
    cr_assert(isnan(opt_f8_to_f32(0x80, OPT_DT_FLOAT8E4M3FNUZ)), "0x80 is the uz formats' NaN");
    cr_assert_eq(opt_f32_to_f8(-0.0f, OPT_DT_FLOAT8E4M3FNUZ, true), 0x00, "no negative zero in uz formats");
    cr_assert_eq(opt_f32_to_f8(0x1p-9f, OPT_DT_FLOAT8E4M3FN, true), 0x01, "smallest e4m3fn subnormal");
    cr_assert_eq(opt_f32_to_f8(0x1p-10f, OPT_DT_FLOAT8E4M3FN, true), 0x00, "half of it ties to even zero");
}

Test(ir_dtype, sizes_names_and_overflow)
{
    uint64_t b;
    cr_assert(opt_dtype_raw_bytes(OPT_DT_FLOAT, 6, &b) && b == 24);
    cr_assert(opt_dtype_raw_bytes(OPT_DT_INT4, 5, &b) && b == 3, "4-bit types pack two per byte");
    cr_assert(opt_dtype_raw_bytes(OPT_DT_COMPLEX128, 2, &b) && b == 32);
    cr_assert(!opt_dtype_raw_bytes(OPT_DT_STRING, 1, &b), "strings have no raw size");
    cr_assert(!opt_dtype_raw_bytes(OPT_DT_DOUBLE, UINT64_MAX / 4, &b), "overflow is refused");
    cr_assert(!opt_dtype_raw_bytes(99, 1, &b));
    cr_assert_str_eq(opt_dtype_name(OPT_DT_BFLOAT16), "BFLOAT16");
    cr_assert_str_eq(opt_dtype_short(OPT_DT_DOUBLE), "float64");
    cr_assert_str_eq(opt_dtype_name(-1), "UNKNOWN");
    cr_assert_str_eq(opt_dtype_name(OPT_DT_COUNT), "UNKNOWN");
    cr_assert(!opt_dtype_valid(0) && opt_dtype_valid(1) && opt_dtype_valid(OPT_DT_COUNT - 1) &&
              !opt_dtype_valid(OPT_DT_COUNT));
    cr_assert_eq(opt_dtype_bits(OPT_DT_UINT4), 4);
}
