/*
 * tests/unit/exec_vmath.c — the vectorisable exp, erf, tanh and sigmoid (libopt/exec/cpu/vmath.h)
 * against their reference twins (libm's expf, erff, tanhf; sigmoid in double) over the whole
 * float range that matters, and the
 * special values (inf, NaN, overflow, subnormal results).
 */
#include "libopt/exec/cpu/vmath.h"
#include "tests/unit/kernels_util.h"

/* Relative error of the float32 fast forms against libm (a few ulp). */
#define KT_VMATH_REL 4e-7
/* Below this size a result is compared absolutely (subnormal results lose relative precision). */
#define KT_VMATH_TINY 1e-37

static double rel_err(float got, float want)
{
    if (isnan(want)) return isnan(got) ? 0 : INFINITY;
    if (isinf(want)) return got == want ? 0 : INFINITY;
    double d = fabs((double)got - want);
    return fabs(want) < KT_VMATH_TINY ? (d < KT_VMATH_TINY ? 0 : INFINITY) : d / fabs(want);
}

Test(vmath, exp_matches_libm_across_its_range)
{
    double worst = 0;
    float at = 0;
    for (float x = -110.0f; x <= 90.0f; x += 0.000731f) {
        double e = rel_err(nn_expf(x), expf(x));
        if (e > worst) worst = e, at = x;
    }
    cr_assert_leq(worst, KT_VMATH_REL, "worst relative error %g at x = %.9g", worst, at);
    cr_assert_eq(nn_expf(0.0f), 1.0f);
    cr_assert(isinf(nn_expf(INFINITY)) && nn_expf(INFINITY) > 0);
    cr_assert(isinf(nn_expf(89.0f)), "exp(89) overflows");
    cr_assert_eq(nn_expf(-INFINITY), 0.0f);
    cr_assert(isnan(nn_expf(NAN)));
    cr_assert(nn_expf(-100.0f) > 0 && nn_expf(-100.0f) < 1e-38f, "subnormal result kept");
}

/* An odd function f of limit 1 at +inf against its libm twin: over [-hi, hi] in steps of step
 * and over tiny values, odd at every point, and exact at 0, +-inf and NaN. */
static void odd_matches_libm(float (*f)(float), float (*ref)(float), float hi, float step)
{
    double worst = 0;
    float at = 0;
    for (float x = -hi; x <= hi; x += step) {
        double e = rel_err(f(x), ref(x));
        if (e > worst) worst = e, at = x;
        cr_assert_eq(f(-x), -f(x), "odd at %g", x);
    }
    for (float x = 1e-30f; x < 1e-3f; x *= 1.37f) {
        double e = rel_err(f(x), ref(x));
        if (e > worst) worst = e, at = x;
    }
    cr_assert_leq(worst, KT_VMATH_REL, "worst relative error %g at x = %.9g", worst, at);
    cr_assert_eq(f(INFINITY), 1.0f);
    cr_assert_eq(f(-INFINITY), -1.0f);
    cr_assert_eq(f(0.0f), 0.0f);
    cr_assert(isnan(f(NAN)));
}

static float libm_erff(float x)
{
    return erff(x);
}

static float libm_tanhf(float x)
{
    return tanhf(x);
}

Test(vmath, erf_matches_libm_and_is_odd)
{
    odd_matches_libm(nn_erff, libm_erff, 6.0f, 0.0000913f);
}

Test(vmath, tanh_matches_libm_and_is_odd)
{
    odd_matches_libm(nn_tanhf, libm_tanhf, 12.0f, 0.0000917f);
}

Test(vmath, sigmoid_matches_libm_on_both_sides)
{
    double worst = 0;
    float at = 0;
    for (float x = -100.0f; x <= 100.0f; x += 0.000613f) {
        float want = (float)(1.0 / (1.0 + exp(-(double)x)));
        double e = rel_err(nn_sigmoidf(x), want);
        if (e > worst) worst = e, at = x;
    }
    cr_assert_leq(worst, KT_VMATH_REL, "worst relative error %g at x = %.9g", worst, at);
    cr_assert_eq(nn_sigmoidf(INFINITY), 1.0f);
    cr_assert_eq(nn_sigmoidf(-INFINITY), 0.0f);
    cr_assert_eq(nn_sigmoidf(0.0f), 0.5f);
    cr_assert(isnan(nn_sigmoidf(NAN)));
}
