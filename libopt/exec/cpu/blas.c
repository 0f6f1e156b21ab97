/*
 * libopt/exec/cpu/blas.c — loads OpenBLAS on first use (see blas.h).
 */
#include "libopt/exec/cpu/blas.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static nn_blas_fns fns;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void *need(void *h, const char *lib, const char *name)
{
    void *p = dlsym(h, name);
    if (!p) {
        fprintf(stderr, "mopt: %s has no %s; is it OpenBLAS?\n", lib, name);
        exit(1);
    }
    return p;
}

static void load(void)
{
    static const char *const libs[] = {"libopenblas.so.0", "libopenblas.so"};
    void *h = NULL;
    const char *lib = libs[0];
    for (size_t i = 0; i < sizeof libs / sizeof *libs && !h; i++)
        if ((h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL))) lib = libs[i];
    if (!h) {
        fprintf(stderr, "mopt: cannot load OpenBLAS: %s (install libopenblas0)\n", dlerror());
        exit(1);
    }
    /* POSIX's idiom for a function pointer from dlsym: assign through a void **. */
#define NEED(field, name) (*(void **)&fns.field = need(h, lib, name))
    NEED(sgemm, "cblas_sgemm");
    NEED(sgemv, "cblas_sgemv");
    NEED(ssyrk, "cblas_ssyrk");
    NEED(dgemm, "cblas_dgemm");
    NEED(dtrmm, "cblas_dtrmm");
    NEED(get_num_threads, "openblas_get_num_threads");
    NEED(set_num_threads, "openblas_set_num_threads");
    NEED(dpotrf, "dpotrf_");
    NEED(dpotrs, "dpotrs_");
    NEED(dtrtri, "dtrtri_");
#undef NEED
    /* The pthreads build starts its workers as it loads, and an idle worker spins on
     * sched_yield for about 2^28 cycles before it sleeps: on a short command that is most of a
     * core taken from mopt's own threads. Its fork handler's shutdown stops them; OpenBLAS
     * starts them again at its next multithreaded call. Absent in other builds: nothing to do. */
    void (*shutdown)(void);
    *(void **)&shutdown = dlsym(h, "blas_thread_shutdown_");
    if (shutdown) shutdown();
}

const nn_blas_fns *nn_blas(void)
{
    pthread_once(&once, load);
    return &fns;
}
