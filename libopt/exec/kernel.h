/*
 * libopt/exec/kernel.h — the contract between the executor and its kernels.
 *
 * A kernel is a struct of function pointers registered for (domain, op_type, opset range, dtypes,
 * device). Each op family lives in one file (libopt/exec/cpu/conv.c, ...) that defines a
 * zero-terminated table `const opt_kernel opt_kernels_<family>[]`; libopt/exec/ops.def lists the
 * families, and the registry is generated from that list.
 *
 * Shapes are computed by run() from the actual inputs; run() obtains its output buffers from
 * opt_kctx_output() so the executor can pool and reuse them (opt_kctx_output_inplace lets an
 * elementwise kernel write over a dying input, opt_kctx_output_alias shares an input's data for
 * view ops, opt_kctx_scratch gives temporary memory freed after run()).
 *
 * Shared helpers for CPU kernels:
 *   libopt/exec/cpu/convert.h  float32 views of float16/bfloat16/double/int arrays and rounding
 *                              once at the output (opt_kctx_f32_in / _f32_out / _f32_done)
 *   libopt/exec/cpu/bcast.h    numpy broadcasting: output shape, merged strides, run walker
 * Attribute strings are length-counted: read them with opt_kattr_str.
 */
#ifndef OPT_EXEC_KERNEL_H
#define OPT_EXEC_KERNEL_H

#include "libopt/exec/exec.h"

#include <limits.h>

/* Bit for dtype d in opt_kernel.dtypes. */
#define OPT_DT_BIT(d) (1u << (d))
#define OPT_DTS_FLOATS (OPT_DT_BIT(OPT_DT_FLOAT) | OPT_DT_BIT(OPT_DT_FLOAT16) | OPT_DT_BIT(OPT_DT_BFLOAT16) | OPT_DT_BIT(OPT_DT_DOUBLE))
#define OPT_DTS_INTS (OPT_DT_BIT(OPT_DT_INT8) | OPT_DT_BIT(OPT_DT_UINT8) | OPT_DT_BIT(OPT_DT_INT16) | OPT_DT_BIT(OPT_DT_UINT16) | OPT_DT_BIT(OPT_DT_INT32) | OPT_DT_BIT(OPT_DT_UINT32) | OPT_DT_BIT(OPT_DT_INT64) | OPT_DT_BIT(OPT_DT_UINT64))
#define OPT_DTS_NUMERIC (OPT_DTS_FLOATS | OPT_DTS_INTS)
#define OPT_DTS_ALL 0u /* any dtype */

typedef struct opt_kctx opt_kctx;

typedef struct opt_kernel {
    const char *domain;   /* "" for ai.onnx */
    const char *op_type;
    int since, until;     /* opset versions, inclusive; until = INT_MAX for open-ended */
    uint32_t dtypes;      /* accepted dtypes of input `type_input` (OPT_DTS_ALL: any) */
    int type_input;       /* which input decides the dtype check (usually 0) */
    opt_device device;
    /* Optional: output dtypes from input dtypes (in_dt[i] is 0 for an omitted input). Default:
     * every output takes the dtype of the first present input. */
    opt_status (*infer)(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                        size_t n_out, opt_error *err);
    /* Optional: runs once at load. consts[i] is non-NULL for inputs that are initializers or
     * Constant outputs (their data is final). May validate attributes and pack weights into
     * *state. */
    opt_status (*prepare)(const opt_node *n, int opset, const opt_array *const *consts,
                          size_t n_in, void **state, opt_error *err);
    /* (prepare() may ask opt_prepare_packs_weights() whether to pack weights at load.) run()
     * only reads the state: executors planned with opt_exec_opts.share run one state from
     * several threads at once. */
    opt_status (*run)(opt_kctx *k, opt_error *err);
    void (*release)(void *state);
} opt_kernel;

struct opt_kctx {
    const opt_node *node;
    int opset;
    const opt_array *const *in; /* n_in entries; NULL for omitted optional inputs */
    size_t n_in;
    opt_array *out;             /* n_out entries; filled by opt_kctx_output */
    size_t n_out;
    void *state;                /* from prepare */
    int threads;
    void *exec;                 /* executor internals (NULL when a kernel is run outside one) */
    const int *out_dt;          /* planned dtype of each output (from infer), n_out entries */
};

/* Inside prepare(): false when the executor being planned was asked to leave weights unpacked
 * (opt_exec_opts.no_prepack). */
bool opt_prepare_packs_weights(void);

/* Sets output i to dtype/dims and gives it a buffer (uninitialised, from the pool). */
opt_status opt_kctx_output(opt_kctx *k, size_t i, int dtype, int ndim, const int64_t *dims,
                           opt_error *err);
/* Makes output i share input j's data with new dims (Reshape, Flatten, Squeeze, Identity...). */
opt_status opt_kctx_output_alias(opt_kctx *k, size_t i, size_t j, int ndim, const int64_t *dims,
                                 opt_error *err);

/* Like opt_kctx_output, but output i may take over input j's buffer when that is safe: this
 * node is the last reader of input j (it is not read again, not a graph output, not aliased by
 * another value), input j is an activation (not a constant or graph input) and its byte size
 * equals the output's. The kernel must then be correct when out[i].data == in[j]->data
 * (elementwise loops that read element k before writing element k are). Otherwise a fresh
 * buffer, as opt_kctx_output. */
opt_status opt_kctx_output_inplace(opt_kctx *k, size_t i, size_t j, int dtype, int ndim,
                                   const int64_t *dims, opt_error *err);

/* A scratch buffer of `bytes` bytes (64-byte aligned, uninitialised) that lives until run()
 * returns; it comes from the executor's pool (or malloc outside an executor) and is released
 * automatically. NULL (with err set) when out of memory. */
void *opt_kctx_scratch(opt_kctx *k, size_t bytes, opt_error *err);

/* Runs fn(ctx, begin, end) over [0, n) split across the executor's threads (deterministically:
 * the split depends only on n and the thread count). */
void opt_parallel_for(opt_kctx *k, size_t n, void (*fn)(void *ctx, size_t begin, size_t end),
                      void *ctx);

/* Error helper naming the node: "node 'x' (Op): ..." */
opt_status opt_kerr(const opt_kctx *k, opt_error *err, opt_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
opt_status opt_node_err(const opt_node *n, opt_error *err, opt_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Input i as a float32 scalar/array helper: returns false when absent. */
static inline bool opt_kctx_has(const opt_kctx *k, size_t i)
{
    return i < k->n_in && k->in[i] != NULL;
}

/* String attribute `name` copied NUL-terminated into buf (cut to len-1 bytes), or def when
 * absent. IR strings are length-counted bytes, so use this rather than comparing them raw. */
const char *opt_kattr_str(const opt_node *n, const char *name, const char *def, char *buf, size_t len);

/* Reads integer element i of an int32/int64 array (shape inputs like Reshape's). */
int64_t opt_array_int(const opt_array *a, uint64_t i);
/* Reads element i of any numeric array as double. */
double opt_array_get(const opt_array *a, uint64_t i);

/* ---- the registry (libopt/exec/registry.c) ------------------------------------------------ */

/* The kernel for (domain, op_type, opset, dtype of its type_input, device), or NULL. domain ""
 * and "ai.onnx" are the same. dtype 0 matches only kernels that accept any dtype. */
const opt_kernel *opt_kernel_find(const char *domain, const char *op_type, int opset, int dtype,
                                  opt_device dev);
/* The kernel for a node with these input dtypes (in_dt[i] 0 for an omitted input): the first
 * registered one whose opset range holds opset and that accepts in_dt[k->type_input]. */
const opt_kernel *opt_kernel_match(const char *domain, const char *op_type, int opset,
                                   const int *in_dt, size_t n_in, opt_device dev);
/* Whether any kernel is registered for (domain, op_type) on dev, whatever the opset and dtype. */
bool opt_kernel_known(const char *domain, const char *op_type, opt_device dev);
/* Calls fn for every registered kernel (in ops.def order); for `--list`-style output. */
void opt_kernel_each(void (*fn)(void *ctx, const opt_kernel *k), void *ctx);

#endif
