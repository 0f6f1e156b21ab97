/*
 * libopt/exec/qdq_fuse.h — run QDQ models on real int8 arithmetic.
 *
 * A QDQ model (what `mopt quant --int8` and ONNX Runtime's quantize_static write) describes int8
 * computation as float ops between DequantizeLinear and QuantizeLinear nodes. Executed literally,
 * every quantized Conv or MatMul would run in float on dequantized values. This rewrite, for the
 * planner, replaces each such island by the integer op that computes the same thing:
 *
 *   DQ(x) , DQ(w) [, DQ(b int32)] -> Conv [-> Act] -> Q       =>  QLinearConv
 *   DQ(a) , DQ(b)                 -> MatMul [-> Act] -> Q     =>  QLinearMatMul
 *   DQ(x) , DQ(w) [, DQ(b int32)] -> Gemm [-> Act] -> Q       =>  Reshape -> QLinearConv (1x1)
 *                                                                  -> Reshape
 *   DQ(a) , DQ(b) -> Add [-> Act] -> Q (per tensor)              =>  com.microsoft QLinearAdd
 *                                                                  (computed as the float ops do)
 *   DQ(x) -> MaxPool|Flatten|Reshape|Transpose|Squeeze|Unsqueeze|Identity -> Q (same scale and
 *   zero point)                                                   =>  the same op on the int8 data
 *
 * Conditions (otherwise the nodes are left as they are and run in float): scales and zero points
 * are constant initializers, activation scales are scalars, weights are constant int8/uint8
 * (per tensor, or per output channel), the bias is int32 with scale x_scale * w_scale and zero
 * point 0, every intermediate value has exactly one consumer and is not a graph output, Gemm has
 * transA = 0 and alpha = beta = 1. An activation Act (Relu, or Clip with constant bounds, as
 * ReLU6) is absorbed as a clamp of the integer output to [Q(lo), Q(hi)]: Q is monotone, so
 * Q(Act(v)) = min(max(Q(v), Q(lo)), Q(hi)) for every v, exactly. When Q(lo) and Q(hi) are the
 * type's extremes (for Relu: the output zero point is the type's minimum, as with uint8) Q's
 * saturation already does it; otherwise (symmetric int8, zero point 0; a Clip tighter than the
 * range) the node gets OPT_QDQ_ATTR_QMIN/QMAX. DequantizeLinear nodes left without consumers are
 * dropped.
 *
 * The result is a view: a model that shares the original's nodes, initializers and metadata
 * (nothing is deep-copied, so a 100 MB model is not duplicated) and owns only what the rewrite
 * made. The original must outlive the view and stay unchanged.
 *
 * For the planner (libopt/exec/exec.c): in opt_exec_new, call opt_qdq_fuse(m, &view, err); when
 * *view is non-NULL, plan &view->model instead of m and free the view in opt_exec_free.
 */
#ifndef OPT_EXEC_QDQ_FUSE_H
#define OPT_EXEC_QDQ_FUSE_H

#include "libopt/ir/ir.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Int attributes of a QLinearConv, QLinearMatMul or QLinearAdd the rewrite made: its output is
 * clamped to [min, max] (within the type's range) instead of the type's range: Q(lo), Q(hi) of an
 * absorbed Relu or Clip whose saturation Q does not already give. The CPU kernels read them. */
#define OPT_QDQ_ATTR_QMIN "mopt.exec.qmin"
#define OPT_QDQ_ATTR_QMAX "mopt.exec.qmax"

typedef struct opt_qdq_view {
    opt_model model;      /* shallow copy of the original; model.graph = &graph */
    opt_graph graph;      /* node and initializer arrays owned; elements mostly borrowed */
    opt_node **own_nodes; /* nodes the rewrite made (owned) */
    size_t n_own_nodes;
    opt_tensor **own_inits; /* initializers the rewrite made (owned) */
    size_t n_own_inits;
    size_t n_conv, n_matmul, n_gemm, n_passthrough; /* islands rewritten, by kind */
    size_t n_add;         /* Add islands (QLinearAdd) */
    size_t n_act, n_clamp; /* Relu/Clip absorbed; of them, as a clamp (OPT_QDQ_ATTR_QMIN/QMAX) */
    bool own_opset;       /* model.opset_import is the view's (com.microsoft added, last) */
} opt_qdq_view;

/* Rewrites m's QDQ islands into integer ops. *out receives a view the caller frees with
 * opt_qdq_view_free, or NULL when nothing matched (plan m itself then). m is not modified. */
opt_status opt_qdq_fuse(const opt_model *m, opt_qdq_view **out, opt_error *err);

/* Frees what the view owns (never the original's objects); accepts NULL. */
void opt_qdq_view_free(opt_qdq_view *v);

#ifdef __cplusplus
}
#endif
#endif
