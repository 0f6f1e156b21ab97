/*
 * libopt/passes/quant.h — post-training INT8 quantization into QDQ form.
 *
 * The pass rewrites a float32 model into the QuantizeLinear/DequantizeLinear ("QDQ") form that
 * ONNX Runtime and TensorRT consume:
 *
 *  - Ops that gain from int8 arithmetic — Conv, ConvTranspose, MatMul, Gemm — are quantized;
 *    every other op stays float32 ("gains nothing").
 *  - Weights (initializers feeding those ops) become int8, symmetric ([-127, 127], zero point 0),
 *    per output channel (axis 0 for Conv and for Gemm with transB=1, axis 1 for ConvTranspose,
 *    MatMul and Gemm with transB=0), or per tensor with per_tensor. A DequantizeLinear node
 *    rebuilds the float weight.
 *  - Biases (Conv input 2; Gemm input C when 1-D and alpha = beta = 1) become int32 with scale
 *    activation_scale * weight_scale[c] and zero point 0, so int8 kernels add them exactly.
 *  - Activations feeding a quantized op get one QuantizeLinear -> DequantizeLinear pair right
 *    after their producer, shared by all quantized consumers: uint8 asymmetric by default, int8
 *    symmetric with act_dtype = OPT_DT_INT8. The pair is also placed before pass-through ops
 *    (MaxPool, Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Identity) that feed a quantized
 *    activation, with the same scale and zero point, so a runtime can run the whole chain
 *    Conv -> Relu -> MaxPool -> Conv in int8 (the values are identical either way). When the
 *    pass-through's input is itself quantized, its output takes the input's parameters (the
 *    values are rounded once, on one grid), as in ONNX Runtime's QDQ form.
 *  - An Add whose two inputs are both quantized activations (a residual connection) is quantized
 *    too: its output (after a Relu that is its only consumer) gets a QDQ pair, so DQ, DQ -> Add
 *    [-> Relu] -> Q runs as one 8-bit QLinearAdd on mopt's executor. `--exclude Add` keeps it
 *    float.
 *  - Ranges come from the caller (a calibration table) through a lookup callback.
 *
 * Models whose opset is below 13 get per-tensor weights (per-axis QDQ needs opset 13); below 10
 * the pass fails (no QuantizeLinear).
 */
#ifndef OPT_PASSES_QUANT_H
#define OPT_PASSES_QUANT_H

#include "libopt/ir/ir.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns whether tensor has a calibrated range and stores it in [*lo, *hi]. */
typedef bool (*opt_quant_range_fn)(void *ctx, const char *tensor, float *lo, float *hi);

typedef struct opt_quant_opts {
    int act_dtype;               /* OPT_DT_UINT8 (asymmetric; 0 means this) or OPT_DT_INT8 */
    bool per_tensor;             /* weights per tensor instead of per channel */
    bool weights_only;           /* only weights (and no biases, no activations) */
    const char *const *exclude;  /* node names or op types left float */
    size_t n_exclude;
    const char *const *only;     /* when non-NULL: quantize only these nodes (sensitivity runs) */
    size_t n_only;
    opt_quant_range_fn range;    /* required unless weights_only */
    void *range_ctx;
} opt_quant_opts;

/* What the pass did. Names are copies owned by the report. */
typedef struct opt_quant_report {
    size_t n_candidates;      /* nodes of the quantizable op types */
    size_t n_quantized;       /* nodes quantized */
    size_t n_activations;     /* QDQ pairs inserted on activations */
    size_t n_weights;         /* weights quantized */
    size_t n_biases;          /* biases quantized to int32 */
    size_t n_float;           /* candidates left float, with the reason */
    char **float_nodes;
    char **float_reasons;
    char **quantized_nodes;   /* n_quantized names, in graph order */
} opt_quant_report;

void opt_quant_report_free(opt_quant_report *r);

/* True for the op types the pass quantizes (Conv, ConvTranspose, MatMul, Gemm). */
bool opt_quant_op_gains(const char *op_type);

/* Names of the activation tensors opt_quant_int8 with these options, or with some of the nodes
 * kept float, would need ranges for, as a malloc'd array of strings borrowed from m (free only
 * the array). */
opt_status opt_quant_needed(const opt_model *m, const opt_quant_opts *o, const char ***names,
                            size_t *n, opt_error *err);

/* Quantizes m in place as described above. On failure (a missing range names the tensor;
 * an unsupported opset) the model may be partly rewritten: callers keep a copy or discard it. */
opt_status opt_quant_int8(opt_model *m, const opt_quant_opts *o, opt_quant_report *rep,
                          opt_error *err);

/* Folds each inference-mode BatchNormalization that is the only consumer of a Conv's output
 * into that Conv (W' = W * s, b' = (b - mean) * s + beta, s = scale / sqrt(var + epsilon), per
 * output channel), as quantizers do before int8 so that the per-channel weight scales absorb
 * the normalization. The Conv takes over the BatchNormalization's output name. Only constant
 * parameters are folded, and only weights no other node uses. *n receives the count. */
opt_status opt_quant_fold_bn(opt_model *m, size_t *n, opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
