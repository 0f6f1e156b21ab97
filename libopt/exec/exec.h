/*
 * libopt/exec/exec.h — mopt's reference executor: plan a model once, run it many times.
 *
 * Loading (opt_exec_new) checks that every node has a registered kernel for its domain, op type,
 * opset and input dtype on the chosen device and fails naming the node otherwise; it infers dtypes,
 * orders the nodes, counts the uses of each value (so buffers return to a pool after their last
 * use) and lets each kernel prepare its constant weights once. Running computes shapes from the
 * actual inputs, so symbolic batch and sequence dims just work.
 *
 * Results are deterministic for a given input and thread count.
 */
#ifndef OPT_EXEC_H
#define OPT_EXEC_H

#include "libopt/ir/ir.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OPT_MAX_DIMS 8

typedef enum opt_device {
    OPT_DEVICE_CPU = 0,
    OPT_DEVICE_CUDA = 1,
} opt_device;

/* A dense tensor at run time: row-major, native (little-endian) layout, 4-bit types packed two per
 * byte. `data` points at nbytes bytes. Who owns data is said by the function that fills it. */
typedef struct opt_array {
    int dtype;
    int ndim;
    int64_t dims[OPT_MAX_DIMS];
    void *data;
    size_t nbytes;
} opt_array;

/* Number of elements of a (1 for a scalar); 0 if any dim is 0. */
uint64_t opt_array_numel(const opt_array *a);
/* Allocates a->data for a's dtype and dims (zeroed); false on overflow or out-of-memory. The
 * caller owns a->data (free()). */
bool opt_array_alloc(opt_array *a);
/* Frees a->data and clears it. */
void opt_array_free(opt_array *a);
/* Copies a tensor's data into a new array (caller frees with opt_array_free). */
opt_status opt_array_from_tensor(const opt_tensor *t, opt_array *a, opt_error *err);
/* Like opt_array_from_tensor, but points a->data at t's own bytes when they already have the
 * array's layout and alignment (*borrowed true: t must outlive a, which must not be written or
 * freed); copies otherwise (*borrowed false). */
opt_status opt_array_view_tensor(const opt_tensor *t, opt_array *a, bool *borrowed, opt_error *err);

/* Called after each node with every value it produced, in execution order. `a` is only valid
 * during the call. Used by calibration and by passes that look at activations. */
typedef void (*opt_observe_fn)(void *ctx, const char *name, const opt_node *producer,
                               const opt_array *a);

typedef struct opt_exec_opts {
    int threads;               /* 0: all cores */
    opt_device device;         /* OPT_DEVICE_CPU (default) or OPT_DEVICE_CUDA (with CPU fallback) */
    bool profile;              /* time every node */
    bool no_fuse;              /* run every node as written: no Conv+BatchNormalization+Add+Relu
                                * fusion at load (libopt/exec/fuse.h); also implied by observe */
    bool no_qdq_fuse;          /* run QDQ models as written (DequantizeLinear -> float op ->
                                * QuantizeLinear, simulated in float) instead of as int8 ops
                                * (libopt/exec/qdq_fuse.h); also env MOPT_NO_QDQ_FUSE=1 and
                                * implied by observe */
    opt_observe_fn observe;    /* optional; sees every node's outputs, so nothing is fused */
    void *observe_ctx;
    size_t max_output_bytes;   /* 0: no limit; otherwise a node output larger than this fails
                                * with OPT_ERR_LIMIT instead of being allocated (fuzzing) */
    bool no_prepack;           /* read float32 MatMul/Gemm weights where they are and pack them
                                * in every run, as activations are, instead of packing a copy at
                                * load: saves start-up time and memory for a few runs of large
                                * batches (calibration of big models), costs small runs time */
    const struct opt_exec *share; /* optional: an executor planned from the same model with the
                                * same options, whose kernels' prepared state (packed weights)
                                * this one reads instead of preparing its own: several
                                * executors, one copy. It must outlive this executor. Kernels only
                                * read their state in run(), so both may run at once. Only an
                                * unfused plan shares (observe or no_fuse): each executor fuses
                                * a view of its own, whose nodes another's states do not match. */
} opt_exec_opts;

typedef struct opt_exec opt_exec;

/* Plans m, which must outlive the executor and keep its initializers unchanged while it exists
 * (they are read in place, not copied). On failure err names the node that cannot run. */
opt_status opt_exec_new(const opt_model *m, const opt_exec_opts *opts, opt_exec **out,
                        opt_error *err);
void opt_exec_free(opt_exec *e);

/* Graph inputs (initializers excluded) and outputs, in graph order. dims of -1 are symbolic. */
size_t opt_exec_n_inputs(const opt_exec *e);
size_t opt_exec_n_outputs(const opt_exec *e);
const char *opt_exec_input_name(const opt_exec *e, size_t i);
const char *opt_exec_output_name(const opt_exec *e, size_t i);
/* Declared dtype and shape of input i (ndim -1 when unknown); returns the dtype. */
int opt_exec_input_shape(const opt_exec *e, size_t i, int *ndim, int64_t *dims);

/* Runs the model. inputs[i] binds graph input i (see opt_exec_input_name); their data is only
 * read. outputs receives n_out arrays whose data the caller owns (opt_array_free). */
opt_status opt_exec_run(opt_exec *e, const opt_array *inputs, size_t n_in, opt_array *outputs,
                        size_t n_out, opt_error *err);

/* Per-node times of all runs since opt_exec_new (profile must be on). */
typedef struct opt_exec_prof {
    const char *node;   /* node name (or "#index" when unnamed) */
    const char *op_type;
    double total_ms;
    uint64_t calls;
} opt_exec_prof;
size_t opt_exec_profile(const opt_exec *e, const opt_exec_prof **out);
/* Zeroes the profile (e.g. after warm-up runs). */
void opt_exec_profile_reset(opt_exec *e);

/* Peak bytes held in activation buffers during runs so far. */
size_t opt_exec_peak_bytes(const opt_exec *e);

/* Writes a description of the plan (device per node, partitions) to buf. */
void opt_exec_explain(const opt_exec *e, char *buf, size_t len);

/* Whether a CUDA device is usable in this build and machine (and why not, in buf). */
bool opt_cuda_available(char *why, size_t len);

#ifdef __cplusplus
}
#endif
#endif
