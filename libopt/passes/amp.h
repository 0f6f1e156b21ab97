/*
 * libopt/passes/amp.h — automatic mixed precision: float32 to float16 or bfloat16.
 *
 * In the manner of TensorFlow's auto-mixed-precision pass, every node that computes on float32
 * data is classed by op type:
 *   allow  (Conv, ConvTranspose, MatMul, Gemm, Einsum): always half;
 *   infer  (element-wise arithmetic, activations, pooling, BatchNormalization, reshape-like and
 *          data-movement ops, Cast, Constant, ...): follow their neighbours;
 *   deny   (Softmax, LogSoftmax, Exp, Log, Pow, sum/mean/product reductions, LayerNormalization,
 *          InstanceNormalization, Resize, CumSum, TopK, Range, ...): float32;
 * op types in no list stay float32. Options move op types between lists, keep named nodes
 * float32, or convert everything that can be (`all`): an op is convertible when its ONNX schema
 * at the model's opset accepts the target type (bfloat16 support is tabled per op and opset).
 *
 * The infer nodes take the precision that needs the fewest Cast nodes: each connected group of
 * infer nodes is tried all-half and all-float, then single nodes are flipped while that removes
 * casts. Casts are then placed so that:
 *   - a value with many consumers that need the other precision gets one shared Cast;
 *   - no Cast sits between two half nodes (they exchange half values directly);
 *   - no Cast feeds a Cast: a value produced by a Cast is re-cast from that Cast's source;
 *   - with keep_io, graph inputs and outputs stay float32 (outputs keep their names: the
 *     producing node writes "<name>_fp16" and a final Cast restores "<name>").
 * Weights (initializers) are converted in place when only half nodes use them, or copied. Values
 * beyond the target's range are clamped, and the report names those initializers.
 */
#ifndef OPT_PASSES_AMP_H
#define OPT_PASSES_AMP_H

#include "libopt/ir/ir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct opt_amp_opts {
    int to;                       /* OPT_DT_FLOAT16 (0 means this) or OPT_DT_BFLOAT16 */
    bool keep_io;                 /* graph inputs and outputs stay float32 */
    bool all;                     /* convert every node that can be converted */
    const char *const *allow;     /* op types added to the allow list */
    size_t n_allow;
    const char *const *deny;      /* op types added to the deny list */
    size_t n_deny;
    const char *const *exclude;   /* node names kept float32 */
    size_t n_exclude;
    const char *const *only;      /* when non-NULL: convert only these nodes (sensitivity runs) */
    size_t n_only;
    /* Values that must stay float32 (found by `amp --data`): their producers and consumers stay
     * float32; keep_reasons[i] says why (copied into the report). */
    const char *const *keep_values;
    const char *const *keep_reasons;
    size_t n_keep_values;
} opt_amp_opts;

typedef struct opt_amp_opcount {
    char *op_type;
    size_t converted, total;
} opt_amp_opcount;

/* What the pass did; everything owned by the report. */
typedef struct opt_amp_report {
    size_t n_nodes;               /* nodes that compute on float32 data (Y) */
    size_t n_converted;           /* of those, now half (X) */
    size_t n_casts;               /* Cast nodes inserted */
    opt_amp_opcount *ops;         /* per op type, by first appearance */
    size_t n_ops;
    char **clamped;               /* initializers with values clamped to the half range */
    size_t n_clamped;
    char **float_nodes;           /* nodes kept float32 for a reason other than their class */
    char **float_reasons;
    size_t n_float;
    char **converted_nodes;       /* names of the converted nodes */
} opt_amp_report;

void opt_amp_report_free(opt_amp_report *r);

/* Converts m in place. On failure (out of memory, a malformed graph) m may be partly changed. */
opt_status opt_amp_convert(opt_model *m, const opt_amp_opts *o, opt_amp_report *rep, opt_error *err);

/* The class of op_type under o's lists: 'a'llow, 'i'nfer, 'd'eny or 'u'nknown. */
char opt_amp_op_class(const char *op_type, const opt_amp_opts *o);

#ifdef __cplusplus
}
#endif
#endif
