/*
 * tests/unit/refine_gptq.c — the GPTQ form of the OBQ assignment in libopt/passes/refine.c: the
 * factor U of opt_gptq_factor satisfies U^T U = H^-1, and rounding with U (x_r -= (x_j - q_j)
 * U_jr / U_jj) picks the same centroids and leaves the same values as OBQ's sequential step on
 * the explicit inverse (dlt = (x_j - q_j) / Hinv_jj, x_r -= dlt Hinv_jr, eliminate j from Hinv)
 * on random positive definite matrices; a matrix that is not positive definite is refused.
 */
#include "libopt/passes/refine.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
    rs ^= rs >> 12;
    rs ^= rs << 25;
    rs ^= rs >> 27;
    return (double)((rs * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand());
}

/* H = A A^T / n + lam I for a random m x n A (a covariance with refine's ridge). */
static double *random_spd(int64_t m, int64_t n)
{
    double *A = malloc((size_t)(m * n) * sizeof *A), *H = calloc((size_t)(m * m), sizeof *H);
    for (int64_t i = 0; i < m * n; i++) A[i] = nrand() * (1 + (double)(i % 7));
    double tr = 0;
    for (int64_t a = 0; a < m; a++)
        for (int64_t b = 0; b < m; b++) {
            double v = 0;
            for (int64_t k = 0; k < n; k++) v += A[a * n + k] * A[b * n + k];
            H[a * m + b] = v / (double)n;
        }
    for (int64_t a = 0; a < m; a++) tr += H[a * m + a];
    for (int64_t a = 0; a < m; a++) H[a * m + a] += 1e-2 * tr / (double)m;
    free(A);
    return H;
}

/* The reference: explicit inverse by Gauss-Jordan, then OBQ's sequential elimination. */
static double *inverse(const double *H, int64_t m)
{
    double *A = malloc((size_t)(m * m) * sizeof *A), *I = calloc((size_t)(m * m), sizeof *I);
    memcpy(A, H, (size_t)(m * m) * sizeof *A);
    for (int64_t a = 0; a < m; a++) I[a * m + a] = 1;
    for (int64_t c = 0; c < m; c++) {
        double p = A[c * m + c];
        for (int64_t k = 0; k < m; k++) {
            A[c * m + k] /= p;
            I[c * m + k] /= p;
        }
        for (int64_t r = 0; r < m; r++) {
            if (r == c) continue;
            double f = A[r * m + c];
            for (int64_t k = 0; k < m; k++) {
                A[r * m + k] -= f * A[c * m + k];
                I[r * m + k] -= f * I[c * m + k];
            }
        }
    }
    free(A);
    return I;
}

static int nearest(const float *c, int k, double x)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (fabs(x - c[j]) < fabs(x - c[best])) best = j;
    return best;
}

static void obq_reference(const double *Hinv0, int64_t m, double *x, const float *c, int k, int *q)
{
    double *Hi = malloc((size_t)(m * m) * sizeof *Hi);
    memcpy(Hi, Hinv0, (size_t)(m * m) * sizeof *Hi);
    for (int64_t j = 0; j < m; j++) {
        q[j] = nearest(c, k, x[j]);
        double hjj = Hi[j * m + j];
        double dlt = (x[j] - c[q[j]]) / hjj;
        for (int64_t r = j + 1; r < m; r++) x[r] -= dlt * Hi[j * m + r];
        for (int64_t r = j + 1; r < m; r++) {
            double f = Hi[r * m + j] / hjj;
            for (int64_t cc = j + 1; cc < m; cc++) Hi[r * m + cc] -= f * Hi[j * m + cc];
        }
    }
    free(Hi);
}

Test(refine, gptq_factor_is_the_upper_cholesky_factor_of_the_inverse)
{
    int64_t sizes[] = {1, 2, 7, 64, 200};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int64_t m = sizes[t];
        double *H = random_spd(m, 2 * m + 3), *U = malloc((size_t)(m * m) * sizeof *U);
        memcpy(U, H, (size_t)(m * m) * sizeof *U);
        cr_assert(opt_gptq_factor(U, m), "m=%ld", (long)m);
        double *Hi = inverse(H, m), worst = 0, scale = 0;
        for (int64_t a = 0; a < m; a++) {
            cr_assert_gt(U[a * m + a], 0, "U_%ld%ld", (long)a, (long)a);
            for (int64_t b = 0; b < a; b++) cr_assert_eq(U[a * m + b], 0.0, "below the diagonal at %ld,%ld", (long)a, (long)b);
        }
        for (int64_t a = 0; a < m; a++)
            for (int64_t b = 0; b < m; b++) {
                double v = 0;
                for (int64_t k = 0; k < m; k++) v += U[k * m + a] * U[k * m + b];
                worst = fmax(worst, fabs(v - Hi[a * m + b]));
                scale = fmax(scale, fabs(Hi[a * m + b]));
            }
        cr_assert_lt(worst, 1e-10 * scale, "m=%ld: |U^T U - H^-1| = %g of %g", (long)m, worst, scale);
        free(H);
        free(U);
        free(Hi);
    }
}

Test(refine, gptq_rounding_through_the_factor_equals_obq_elimination_on_the_inverse)
{
    /* 130 and 300 cross the 128-column blocks of the lazy update. */
    int64_t sizes[] = {1, 5, 33, 130, 300};
    const int k = 16, nr = 4;
    float c[16];
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int64_t m = sizes[t];
        for (int j = 0; j < k; j++) c[j] = (float)(-1.5 + 3.0 * j / (k - 1) + 0.05 * (urand() - 0.5));
        for (int j = 1; j < k; j++) cr_assert_lt(c[j - 1], c[j]);
        double *H = random_spd(m, m + 10), *U = malloc((size_t)(m * m) * sizeof *U);
        memcpy(U, H, (size_t)(m * m) * sizeof *U);
        cr_assert(opt_gptq_factor(U, m));
        double *Hi = inverse(H, m), *X = malloc((size_t)(nr * m) * sizeof *X), *Xr = malloc((size_t)(nr * m) * sizeof *Xr);
        int *q = malloc((size_t)(nr * m) * sizeof *q), *qr = malloc((size_t)(nr * m) * sizeof *qr);
        for (int64_t i = 0; i < nr * m; i++) X[i] = Xr[i] = nrand();
        cr_assert_eq(opt_gptq_quantize(U, m, X, nr, c, k, q), OPT_OK);
        int64_t moved = 0;
        for (int64_t i = 0; i < nr; i++) {
            double x0 = Xr[i * m + m - 1];
            obq_reference(Hi, m, Xr + i * m, c, k, qr + i * m);
            moved += m > 1 && Xr[i * m + m - 1] != x0;
        }
        if (m > 1) cr_assert_gt(moved, 0, "the errors move the later weights");
        for (int64_t i = 0; i < nr * m; i++) {
            cr_assert_eq(q[i], qr[i], "m=%ld, entry %ld: centroid %d, OBQ %d", (long)m, (long)i, q[i], qr[i]);
            cr_assert_lt(fabs(X[i] - Xr[i]), 1e-9 * (1 + fabs(Xr[i])), "m=%ld, entry %ld: %.17g vs OBQ %.17g",
                         (long)m, (long)i, X[i], Xr[i]);
        }
        free(H);
        free(U);
        free(Hi);
        free(X);
        free(Xr);
        free(q);
        free(qr);
    }
}

Test(refine, gptq_factor_refuses_a_matrix_that_is_not_positive_definite)
{
    double A[4] = {1, 2, 2, 1}; /* eigenvalues 3 and -1 */
    cr_assert(!opt_gptq_factor(A, 2));
    double Z[9] = {1, 0, 0, 0, 0, 0, 0, 0, 1}; /* singular */
    cr_assert(!opt_gptq_factor(Z, 3));
    double N[1] = {NAN};
    cr_assert(!opt_gptq_factor(N, 1));
}
