/*
 * libopt/exec/fuse.h — operator fusion at load, as a view of the model for the planner.
 *
 * Run literally, a ResNet block is Conv, BatchNormalization, Relu (and an Add for the skip), each
 * one more pass over the activation in memory. This rewrite, done by the executor at load and
 * never written back to the user's model, replaces each chain
 *
 *   Conv [-> BatchNormalization] [-> Add(other)] [-> Relu | Clip | LeakyRelu]
 *
 * by one node FusedConv of the executor's private domain "mopt.exec" (OPT_FUSE_DOMAIN), computed
 * by the Conv kernel (libopt/exec/cpu/conv.c): the BatchNormalization's scale and shift are
 * folded into the weights and bias once at load, the skip tensor is added and the activation
 * applied to each output tile while it is still in registers or cache.
 *
 * FusedConv's inputs: 0 X, 1 W, 2 B (or ""), 3-6 BatchNormalization scale, bias, mean, var (all
 * or none), 7 the Add's other operand Z (or absent). Attributes: Conv's own, and "epsilon" (the
 * BatchNormalization's), "activation" ("Relu", "Clip" or "LeakyRelu"; absent: none), "min" and
 * "max" (Clip), "alpha" (LeakyRelu).
 *
 * The erf Gelu, as exporters write it before opset 20 (Div(x, sqrt 2) or Mul(x, 1/sqrt 2), Erf,
 * Add(1), then times x and 0.5 by two Muls in any grouping), becomes one node Gelu of the same
 * domain, computed by the Gelu kernel (libopt/exec/cpu/elementwise.c) in one pass instead of five;
 * a bias Add that produces x, with a float32 vector initializer read by nothing else, is taken in
 * as Gelu's second input (y = Gelu(x + B)). The constants must be within a relative 1e-6 of
 * sqrt 2 or 1/sqrt 2, and exactly 1 and 0.5; each intermediate value read only by the next node
 * and not a graph output. The Gelu kernel evaluates 0.5 x (1 + erf(x / sqrt 2)) with its own
 * rounding: the result differs from the five nodes' by a few units in the last place.
 *
 * float16 and bfloat16 chains (`mopt amp` models) fuse the same way: the kernel computes the
 * chain in float32 from the half inputs and rounds once at the fused output, where the nodes run
 * one by one round after each. (ONNX Runtime's CPU goes further on the same files: it runs the
 * half nodes on its float32 kernels and removes the Cast pairs between them, so its rescnn fp16
 * computes in float32 from the model input to the last Gemm and rounds nowhere in between.)
 *
 * Conditions (otherwise the nodes are left as they are): the Conv's weights (and bias) are
 * float32, float16 or bfloat16 initializers; the BatchNormalization is in inference mode with initializer statistics;
 * each intermediate value has exactly one consumer and is not a graph output; Clip's bounds are
 * absent or initializers (or attributes before opset 11); the Add's other operand is not an
 * initializer.
 *
 * The view shares the original's nodes, initializers and metadata (nothing big is copied) and
 * owns only the fused nodes and its node and opset arrays. The original must outlive the view
 * and stay unchanged. The executor plans the view unless fusion is switched off
 * (opt_exec_opts.no_fuse) or an observer wants every intermediate value (opt_exec_opts.observe).
 */
#ifndef OPT_EXEC_FUSE_H
#define OPT_EXEC_FUSE_H

#include "libopt/ir/ir.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OPT_FUSE_DOMAIN "mopt.exec"

typedef struct opt_fuse_view {
    opt_model model;      /* shallow copy of the original; model.graph = &graph */
    opt_graph graph;      /* node array owned; nodes mostly borrowed */
    opt_opset *opsets;    /* the original's opset imports plus OPT_FUSE_DOMAIN (array owned) */
    opt_node **own_nodes; /* the fused nodes (owned) */
    size_t n_own_nodes;
    size_t n_conv;             /* FusedConv nodes (the first n_conv of own_nodes) */
    size_t n_bn, n_add, n_act; /* what was folded into them */
    size_t n_gelu, n_gelu_bias; /* Gelu nodes, and how many took their bias Add */
} opt_fuse_view;

/* Fuses m's Conv chains and Gelus. *out receives a view the caller frees with opt_fuse_view_free, or NULL
 * when nothing matched (plan m itself then). m is not modified. */
opt_status opt_fuse(const opt_model *m, opt_fuse_view **out, opt_error *err);

/* Frees what the view owns (never the original's objects); accepts NULL. */
void opt_fuse_view_free(opt_fuse_view *v);

#ifdef __cplusplus
}
#endif
#endif
