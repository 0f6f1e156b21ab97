/*
 * libopt/exec/cpu/blas.h — OpenBLAS, loaded on first use.
 *
 * mopt calls OpenBLAS for float32 GEMMs its own kernels do not cover (im2col convolutions, odd
 * Gemm/MatMul shapes, ConvTranspose) and for the double-precision algebra of `--refine data`
 * (GEMM, SYRK, TRMM, Cholesky). Linking libopenblas costs every process ~3-4 ms before main:
 * mapping it with libgfortran and libquadmath, ~12,000 relocations and starting its worker
 * threads. Most commands (info, cat, prune, huffman, calibration and runs of models whose
 * layers mopt's kernels take) never call it, so the library is opened with dlopen at the first
 * nn_blas() and its functions are called through the table below. The prototypes are cblas.h's
 * and LAPACK's own.
 */
#ifndef MOPT_EXEC_CPU_BLAS_H
#define MOPT_EXEC_CPU_BLAS_H

#include <cblas.h>

typedef struct nn_blas_fns {
    __typeof__(cblas_sgemm) *sgemm;
    __typeof__(cblas_sgemv) *sgemv;
    __typeof__(cblas_ssyrk) *ssyrk;
    __typeof__(cblas_dgemm) *dgemm;
    __typeof__(cblas_dtrmm) *dtrmm;
    int (*get_num_threads)(void);
    void (*set_num_threads)(int);
    /* LAPACK, column-major */
    void (*dpotrf)(const char *uplo, const int *n, double *a, const int *lda, int *info);
    void (*dpotrs)(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda,
                   double *b, const int *ldb, int *info);
    void (*dtrtri)(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);
} nn_blas_fns;

/* The OpenBLAS functions, the library loaded by the first call (thread-safe). Never NULL: when
 * libopenblas.so.0 cannot be loaded, prints why on stderr and exits with status 1, as the
 * dynamic loader did when mopt linked it. */
const nn_blas_fns *nn_blas(void);

#endif
