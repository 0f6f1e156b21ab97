/*
 * libopt/exec/cpu/bcast.h — numpy-style (multidirectional) broadcasting for CPU kernels.
 *
 * opt_bcast_init computes the output shape of n inputs and, for each input, element strides
 * over that shape (0 along broadcast dims), then merges adjacent dims that stay contiguous for
 * every input so the inner loop is as long as possible. opt_bcast_walk visits the output
 * elements [begin, end) as runs along the innermost dim, giving each run the element offset of
 * every input and its inner stride (0 or 1 after merging, in practice), so a kernel writes one
 * tight loop per dtype and parallelises over [0, numel).
 */
#ifndef OPT_EXEC_CPU_BCAST_H
#define OPT_EXEC_CPU_BCAST_H

#include "libopt/exec/kernel.h"

#define OPT_BCAST_MAX_IN 4

typedef struct opt_bcast {
    int n;                                       /* inputs */
    int ndim;                                    /* merged output rank (>= 1) */
    int64_t dims[OPT_MAX_DIMS];                  /* merged output dims */
    int64_t strides[OPT_BCAST_MAX_IN][OPT_MAX_DIMS];
    int out_ndim;                                /* the real output rank and dims */
    int64_t out_dims[OPT_MAX_DIMS];
    uint64_t numel;
} opt_bcast;

/* Computes the broadcast of n (<= OPT_BCAST_MAX_IN) shapes. Fails (naming k's node) when the
 * shapes do not broadcast. */
opt_status opt_bcast_init(opt_bcast *b, const opt_kctx *k, const opt_array *const *in, int n,
                          opt_error *err);

/* One run of `len` output elements starting at output offset `out`; in[i] is input i's element
 * offset and st[i] its stride along the run. */
typedef void (*opt_bcast_fn)(void *ctx, const int64_t *in, const int64_t *st, uint64_t out,
                             uint64_t len);

/* Calls fn for the runs that cover output elements [begin, end). */
void opt_bcast_walk(const opt_bcast *b, uint64_t begin, uint64_t end, opt_bcast_fn fn, void *ctx);

#endif
