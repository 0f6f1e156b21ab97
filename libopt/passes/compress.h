/*
 * libopt/passes/compress.h — the Deep Compression passes: magnitude pruning, k-means weight
 * sharing, Huffman coding of the shared-weight indices, and unpacking back to standard ONNX.
 *
 * Representations (DESIGN.md): pruned weights are zeros in place; a clustered weight W becomes
 * an index initializer "W.idx" (uint8, W's shape), a float codebook "W.codebook" and the nodes
 * Cast(W.idx -> int32) and Gather(W.codebook, .) whose output keeps W's name, so the consumers
 * of W are untouched and any runtime runs it; a Huffman-coded index initializer X becomes a
 * uint8 payload "X.huf" and a node ai.mopt::HuffmanDecode(X.huf) -> X (docs/formats/huffman.md).
 *
 * Weights are the initializers a Conv, ConvTranspose or Gemm takes as input 1 and a MatMul takes
 * as input 0 or 1, of a floating-point dtype, used by nothing else and not a graph input or
 * output; biases, BatchNorm parameters and every other tensor are never touched.
 *
 * Every pass fills a per-layer report (an array the caller frees with opt_layer_stats_free) and
 * an opt_error naming the tensor at fault. None prints.
 */
#ifndef OPT_PASSES_COMPRESS_H
#define OPT_PASSES_COMPRESS_H

#include "libopt/ir/ir.h"
#include "libopt/exec/exec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- which weights a pass touches ---------------------------------------------------------- */

/* NAME=VALUE overrides from the command line (--layer). NAME is a glob (fnmatch) matched against
 * the node name and the weight tensor's name. */
typedef struct opt_layer_value {
    const char *name;
    double value;
} opt_layer_value;

/* --include / --exclude: globs matched against node name, weight name and op type. With
 * includes, only matching weights are touched; excludes win over includes. */
typedef struct opt_weight_filter {
    const char *const *include;
    size_t n_include;
    const char *const *exclude;
    size_t n_exclude;
} opt_weight_filter;

/* One weight of the graph: the initializer, the (first) node using it and how. */
typedef struct opt_weight_ref {
    opt_tensor *t;
    opt_node *node;
    size_t input;        /* which input of node */
    bool conv;           /* Conv/ConvTranspose (else fully connected: Gemm/MatMul) */
    uint64_t numel;
} opt_weight_ref;

/* Lists the weights of g that pass filter f (NULL: all). *out is malloc'd (caller frees);
 * the pointers in it belong to g. */
opt_status opt_weights_find(opt_graph *g, const opt_weight_filter *f, opt_weight_ref **out,
                            size_t *n, opt_error *err);

/* The override for ref, or NULL. */
const opt_layer_value *opt_layer_value_find(const opt_weight_ref *ref, const opt_layer_value *v,
                                            size_t n);

/* ---- per-layer reports ---------------------------------------------------------------------- */

typedef struct opt_layer_stat {
    char *layer;           /* node name (or weight name when the node has none) */
    char *tensor;          /* weight name */
    const char *op;        /* op type (static) */
    uint64_t numel;
    uint64_t zeros_before, zeros_after;
    double threshold;      /* prune: the magnitude threshold used */
    int bits, k;           /* cluster: bits and centroids for the non-zeros */
    int iterations;        /* cluster: Lloyd iterations run */
    double mse;            /* cluster: mean squared weight error over the non-zeros */
    double out_err_before; /* cluster --refine data: relative output error after k-means */
    double out_err_after;  /*   ... and after the least-squares fit */
    uint64_t bytes_before, bytes_after; /* huffman: index bytes before, payload bytes after */
    double bits_per_weight;/* huffman: payload bits per element */
    double entropy_bits_per_weight; /* huffman: Shannon bound of the coded streams, per element */
    int layout;            /* huffman: OPT_HUF_DENSE or OPT_HUF_SPARSE */
} opt_layer_stat;

void opt_layer_stats_free(opt_layer_stat *s, size_t n);

/* Calibration data for --refine data: n_batches batches, each n_inputs arrays bound to the
 * graph's inputs in order (as opt_exec_run takes them). Owned by the caller. */
typedef struct opt_calib_batches {
    const opt_array *arrays;  /* n_batches * n_inputs */
    size_t n_batches, n_inputs;
    int threads;
    /* Optional: the uncompressed model. With it, refinement is sequential: each layer is fitted
     * on the activations of the model compressed so far, towards the reference's outputs. */
    const opt_model *reference;
} opt_calib_batches;

/* Called after each layer a pass has finished (for progress bars); may be NULL. */
typedef void (*opt_layer_progress_fn)(void *ctx, size_t done, size_t total);

/* ---- prune ---------------------------------------------------------------------------------- */

typedef enum opt_prune_mode {
    OPT_PRUNE_SPARSITY = 0,  /* value = fraction of zeros, global over the weights or per layer */
    OPT_PRUNE_THRESHOLD = 1, /* value = magnitude below which weights become zero */
    OPT_PRUNE_QUALITY = 2,   /* value = Q; threshold = Q x std of the layer's weights */
} opt_prune_mode;

typedef struct opt_prune_opts {
    opt_prune_mode mode;
    double value;
    bool per_layer;                /* sparsity per layer, not one global threshold */
    const opt_layer_value *layers; /* per-layer sparsity overrides */
    size_t n_layers;
    opt_weight_filter filter;
    /* Non-NULL: keep as many weights per layer as the rule above says, but choose them by the
     * Optimal Brain Surgeon saliency on these inputs and refit them by least squares to the
     * layer's output, then correct the bias (libopt/passes/refine.h). */
    const opt_calib_batches *refine;
    opt_layer_progress_fn progress;
    void *progress_ctx;
} opt_prune_opts;

/* Zeroes the smallest-magnitude weights of m in place. Layers with an override get exactly that
 * sparsity; the others share one global magnitude threshold (or each get the sparsity, with
 * per_layer). Counts are exact: with sparsity S a pool of n weights gets round(S n) zeros (ties
 * broken by position). *stats (malloc'd, caller frees with opt_layer_stats_free) gets one entry
 * per weight. */
opt_status opt_prune(opt_model *m, const opt_prune_opts *o, opt_layer_stat **stats, size_t *n,
                     opt_error *err);

/* ---- cluster -------------------------------------------------------------------------------- */

typedef enum opt_cluster_init {
    OPT_INIT_LINEAR = 0,   /* evenly spaced between min and max (the paper's best) */
    OPT_INIT_DENSITY = 1,  /* evenly spaced in the cumulative distribution */
    OPT_INIT_RANDOM = 2,   /* distinct values drawn at random (seeded) */
    OPT_INIT_KMEANSPP = 3, /* k-means++ (seeded) */
} opt_cluster_init;

typedef struct opt_cluster_opts {
    int bits_conv;                 /* 0: 8 */
    int bits_fc;                   /* 0: 5 */
    const opt_layer_value *layers; /* per-layer bits */
    size_t n_layers;
    opt_weight_filter filter;
    opt_cluster_init init;
    int max_iter;                  /* 0: until the assignment stops changing (at most 1000) */
    uint64_t seed;                 /* random and kmeans++ */
    bool inline_values;            /* write centroids back into the float weight */
    bool uint4;                    /* uint4 index tensors for layers of at most 16 codebook
                                      entries (needs IR 10 and opset 21; else an error) */
    const opt_calib_batches *refine; /* non-NULL: least-squares fit to each layer's output */
    opt_layer_progress_fn progress;
    void *progress_ctx;
} opt_cluster_opts;

/* Replaces each selected weight by 2^bits shared values found by 1-D k-means over its non-zero
 * entries (exact zeros stay exactly zero and get their own codebook entry 0; with 8 bits and
 * zeros present, 255 centroids remain for the non-zeros so indices fit uint8). */
opt_status opt_cluster(opt_model *m, const opt_cluster_opts *o, opt_layer_stat **stats, size_t *n,
                       opt_error *err);

/* k-means on sorted values (exposed for tests): v[0..n) ascending; fills centroids c[0..k)
 * ascending (k is lowered to the number of distinct values) and returns the iterations run.
 * Each Lloyd iteration costs O(k log n): cluster boundaries are the midpoints between
 * neighbouring centroids, found by binary search, and cluster sums come from prefix sums. */
int opt_kmeans_sorted(const float *v, size_t n, int *k, float *c, opt_cluster_init init,
                      int max_iter, uint64_t seed, opt_error *err);

/* Sorts n floats ascending (radix sort on their bit patterns; NaN-free input). */
opt_status opt_sort_floats(float *v, size_t n, opt_error *err);

/* ---- huffman and unpack --------------------------------------------------------------------- */

typedef struct opt_huffman_opts {
    int force_layout;              /* -1 (or 0 with auto set): smallest; OPT_HUF_DENSE/SPARSE */
    bool auto_layout;              /* zero-init means: choose the smallest layout */
    opt_weight_filter filter;      /* matched against the index tensor's name */
} opt_huffman_opts;

/* Codes every uint8 index initializer whose consumers are all Cast nodes feeding Gather indices
 * (what `cluster` writes). Adds the opset import ai.mopt version 1. */
opt_status opt_huffman(opt_model *m, const opt_huffman_opts *o, opt_layer_stat **stats, size_t *n,
                       opt_error *err);

/* Decodes every ai.mopt::HuffmanDecode node with a constant input back into a uint8 initializer;
 * with dense, also folds each Cast+Gather codebook lookup into a float initializer named as the
 * weight was. Drops the ai.mopt opset import when nothing uses it any more. *n_decoded (may be
 * NULL) receives the number of tensors restored. */
opt_status opt_unpack(opt_model *m, bool dense, size_t *n_decoded, opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
