/*
 * libopt/exec/cpu/nn.h — helpers shared by the heavy CPU kernel families (conv, gemm, pool, norm,
 * resize, quant), and the math entry points that the unit tests compare with their reference
 * twins.
 *
 * Every "fast" function here has a plain "_ref" twin computing the same thing with the most
 * obvious loops (accumulating in double where that is cheap); tests/unit/kernels_*.c compare them
 * with named tolerances. The fast functions take an optional kernel context only for threading:
 * with k == NULL they run on the calling thread.
 *
 * Internal to libopt/exec/cpu; not installed.
 */
#ifndef OPT_EXEC_CPU_NN_H
#define OPT_EXEC_CPU_NN_H

#include "libopt/exec/kernel.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hot loops are compiled three times (AVX-512, AVX2+FMA, baseline x86-64) at -O3 and picked at
 * load by the CPU's features, so the default -O2 generic build still runs vector code. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NN_VEC __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), \
                              optimize("O3")))
#else
#define NN_VEC
#endif

/* ---- attributes ------------------------------------------------------------------------------ */

/* Copies the ints attribute `name` into out (at most max values); returns the count, -1 when the
 * attribute is absent, -2 when it has more than max values. */
int nn_attr_ints(const opt_node *n, const char *name, int64_t *out, int max);
/* True when string attribute `name` equals val (an absent attribute reads as def, which may be
 * NULL: then absent is never equal). Compares with the attribute's stored length. */
bool nn_attr_is(const opt_node *n, const char *name, const char *val, const char *def);
/* Copies string attribute `name` (or def when absent) into buf, NUL-terminated, truncated. */
void nn_attr_str(const opt_node *n, const char *name, const char *def, char *buf, size_t len);

/* ---- float32 views of arrays of any numeric dtype --------------------------------------------- */

/* Returns a's elements as float32: a->data itself when a is float32, otherwise a malloc'd
 * converted copy that is also stored in *tmp (the caller frees *tmp; it is NULL when no copy was
 * made). Returns NULL on out-of-memory or for a dtype without a numeric value. */
const float *nn_f32_in(const opt_array *a, float **tmp);
/* A float32 buffer to compute output o into: o->data when o is float32, otherwise a malloc'd
 * buffer stored in *tmp. NULL on out-of-memory. Pair with nn_f32_out_done(). */
float *nn_f32_out(opt_array *o, float **tmp);
/* When tmp is not NULL, converts its float32 values into o's dtype (rounding to nearest even;
 * saturating for integer dtypes) and frees tmp. */
void nn_f32_out_done(opt_array *o, float *tmp);
/* Converts n float32 values to dtype (float16/bfloat16/double/integers) at dst. */
void nn_f32_store(int dtype, void *dst, const float *src, uint64_t n);
/* The same three with the kernel context k: the float32 buffers come from the executor's
 * scratch pool (freed after run(); *tmp stays NULL) and large conversions run on k's threads;
 * outside an executor (k NULL or k->exec NULL) or when the pool is out of memory they fall back
 * to the malloc'd buffers above (*tmp set). nn_f32_out_done_k converts y (what nn_f32_out_k
 * returned) into o unless y is o's own data, then frees tmp. */
const float *nn_f32_in_k(opt_kctx *k, const opt_array *a, float **tmp);
float *nn_f32_out_k(opt_kctx *k, opt_array *o, float **tmp);
void nn_f32_out_done_k(opt_kctx *k, opt_array *o, const float *y, float *tmp);
/* n values of dtype at src into float32 at dst / n float32 values into dtype at dst (as
 * opt_cvt_to_f32 / nn_f32_store), split over k's threads when large (k may be NULL). */
void nn_cvt_to_f32_k(opt_kctx *k, const void *src, int dtype, float *dst, uint64_t n);
void nn_cvt_from_f32_k(opt_kctx *k, const float *src, void *dst, int dtype, uint64_t n);

/* ---- threads --------------------------------------------------------------------------------- */

/* opt_parallel_for when k is set and has more than one thread; a direct call otherwise. */
void nn_parallel(opt_kctx *k, size_t n, void (*fn)(void *ctx, size_t begin, size_t end),
                 void *ctx);
/* Tells OpenBLAS to use `threads` threads (only when that changes). */
void nn_blas_threads(int threads);
/* Thread count of k (1 when k is NULL). */
static inline int nn_threads(const opt_kctx *k)
{
    return k && k->threads > 1 ? k->threads : 1;
}

/* ---- convolution geometry (conv.c, pool.c, quant.c) ---------------------------------------- */

#define NN_MAX_SP (OPT_MAX_DIMS - 2)

/* The shape of one N-D convolution or pooling window sweep. */
typedef struct nn_conv_geom {
    int nsp;                                /* spatial dims, 1..NN_MAX_SP */
    int64_t N, C, M, group;                 /* batch, input and output channels, groups */
    int64_t in[NN_MAX_SP], out[NN_MAX_SP];  /* spatial sizes */
    int64_t k[NN_MAX_SP], stride[NN_MAX_SP], dil[NN_MAX_SP];
    int64_t pad_b[NN_MAX_SP], pad_e[NN_MAX_SP];
    bool ceil_mode;                         /* pooling only */
} nn_conv_geom;

/* Reads kernel_shape (or kshape when the attribute is absent; may be NULL), strides, dilations,
 * pads and auto_pad of node n for an input of spatial size in[0..nsp) and computes out[], as Conv,
 * the pools, ConvInteger and QLinearConv define them. `pool` enables ceil_mode. Fails naming the
 * node on inconsistent attributes or an empty output. */
opt_status nn_conv_geom_init(nn_conv_geom *g, const opt_node *n, int nsp, const int64_t *in,
                             const int64_t *kshape, bool pool, opt_error *err);

/* A 1-D or 2-D sweep seen as 2-D (a 1-D one has H = OH = KH = 1 and no vertical stride,
 * dilation or padding): the sizes the per-plane loops index with. */
typedef struct nn_plane2d {
    int64_t H, W, OH, OW, KH, KW, sh, sw, dh, dw, ph, pw;
} nn_plane2d;

static inline nn_plane2d nn_plane2d_of(const nn_conv_geom *g)
{
    int sp = g->nsp, two = sp == 2;
    nn_plane2d p = {two ? g->in[0] : 1,     g->in[sp - 1],  two ? g->out[0] : 1,   g->out[sp - 1],
                    two ? g->k[0] : 1,      g->k[sp - 1],   two ? g->stride[0] : 1, g->stride[sp - 1],
                    two ? g->dil[0] : 1,    g->dil[sp - 1], two ? g->pad_b[0] : 0, g->pad_b[sp - 1]};
    return p;
}

/* Product of g->out (or in/k) spatial sizes. */
int64_t nn_geom_out_size(const nn_conv_geom *g);
int64_t nn_geom_in_size(const nn_conv_geom *g);
int64_t nn_geom_k_size(const nn_conv_geom *g);

/* Unfolds one image's channels [C_g x in...] into col [(C_g * ksize) x outsize] (zero padding).
 * Parallel over rows when k is set. */
void nn_im2col_f32(opt_kctx *k, const nn_conv_geom *g, const float *x, int64_t cg, float *col);

/* ---- float convolution (conv.c) ------------------------------------------------------------- */

/* Conv on float32: x [N, C, in...], w [M, C/group, k...], b [M] or NULL, y [N, M, out...].
 * The fast version picks im2col + sgemm, the 1x1 path or the direct depthwise path. */
void nn_conv_f32(opt_kctx *k, const nn_conv_geom *g, const float *x, const float *w,
                 const float *b, float *y);
void nn_conv_f32_ref(const nn_conv_geom *g, const float *x, const float *w, const float *b,
                     float *y);
/* ConvTranspose on float32: x [N, C, in...], w [C, M/group, k...], y [N, M, out...] where g->out
 * holds the output size and g->pad_b the begin pads (possibly negative). */
void nn_convtr_f32(opt_kctx *k, const nn_conv_geom *g, const float *x, const float *w,
                   const float *b, float *y);
void nn_convtr_f32_ref(const nn_conv_geom *g, const float *x, const float *w, const float *b,
                       float *y);

/* ---- packed SGEMM with a fused epilogue (sgemm.c) ------------------------------------------- */

/* Register tile (rows x columns) and column chunk of the packed kernel. */
#define NN_MR 12
#define NN_NR 32
#define NN_NC 512

/* Activations an epilogue can apply. NN_ACT_RELU gives 0 for NaN, as the Relu kernel does;
 * NN_ACT_CLIP keeps NaN, as Clip does. */
enum { NN_ACT_NONE = 0, NN_ACT_RELU, NN_ACT_CLIP, NN_ACT_LEAKY };

/* What happens to each output value v of row r, column c of a GEMM after the multiply-adds:
 * v += bias[r]; v += z[r * ldz + c]; v = act(v). z may be the output itself (read before it is
 * written). */
typedef struct nn_epilogue {
    const float *bias; /* [rows] or NULL */
    const float *cbias; /* [columns] or NULL: v += cbias[c] (after bias) */
    const float *z;    /* residual or NULL */
    int64_t ldz;
    int act;           /* NN_ACT_* */
    float lo, hi;      /* NN_ACT_CLIP */
    float alpha;       /* NN_ACT_LEAKY */
} nn_epilogue;

/* Whether this CPU runs the packed AVX-512 kernel (otherwise callers use OpenBLAS). */
bool nn_sgemm_fast(void);
/* Floats of A [M x K] packed into row panels of NN_MR (the last one zero-padded), stored block
 * of K after block of K (sgemm.c's layout; only nn_sgemm_packed reads it). */
size_t nn_pack_a_floats(int64_t M, int64_t K);
/* Packs A, element (r, k) at A[r * rs + k * cs], each row r multiplied by row_scale[r] when
 * row_scale is not NULL. */
void nn_pack_a(const float *A, int64_t rs, int64_t cs, int64_t M, int64_t K,
               const float *row_scale, float *dst);
/* Floats of B [K x N] packed whole into column panels of NN_NR. */
size_t nn_pack_b_floats(int64_t K, int64_t N);
/* Packs columns [c0, c0 + nc) of B, element (k, c) at B[k * rs + c * cs], as the panels
 * nn_pack_b_fn describes. Packing all of B (c0 0, nc N) gives what nn_sgemm_packed takes as
 * pre-packed B. */
void nn_pack_b(const float *B, int64_t rs, int64_t cs, int64_t K, int64_t c0, int64_t nc,
               float *dst);
/* A strided B for nn_pack_b_strided (the nn_pack_b_fn for plain matrices). */
typedef struct nn_bview {
    const float *b;
    int64_t rs, cs, K;
} nn_bview;
void nn_pack_b_strided(const void *ctx, int64_t c0, int64_t nc, float *dst);
/* Packs columns [c0, c0 + nc) of B (K rows) into dst as ceil(nc / NN_NR) panels, each K x NN_NR
 * floats (row kk of a panel holds NN_NR consecutive columns; lanes past nc are zero). */
typedef void (*nn_pack_b_fn)(const void *ctx, int64_t c0, int64_t nc, float *dst);
/* C [M x N] (row stride ldc) = A * B with the epilogue, A packed by nn_pack_a and B packed on
 * the fly by pack_b(pb_ctx, ...), or, when pack_b is NULL, pb_ctx is all of B packed by
 * nn_pack_b. Runs on k's threads (k may be NULL). Returns false, doing nothing, when the
 * kernel is not available on this CPU or memory runs out: the caller then uses OpenBLAS. */
bool nn_sgemm_packed(opt_kctx *k, int64_t M, int64_t N, int64_t K, const float *pa,
                     nn_pack_b_fn pack_b, const void *pb_ctx, float *C, int64_t ldc,
                     const nn_epilogue *ep);
/* nn_sgemm_packed with pack_b on the calling thread alone, packing into `work` (at least
 * nn_sgemm_work_floats(N, K) floats): it allocates nothing, so it fails only where the kernel is
 * not available. For callers that split the work between threads themselves. */
bool nn_sgemm_packed_serial(int64_t M, int64_t N, int64_t K, const float *pa, nn_pack_b_fn pack_b,
                            const void *pb_ctx, float *C, int64_t ldc, const nn_epilogue *ep,
                            float *work);
static inline size_t nn_sgemm_work_floats(int64_t N, int64_t K)
{
    int64_t nc = N < NN_NC ? N : NN_NC;
    return (size_t)((nc + NN_NR - 1) / NN_NR * NN_NR) * (size_t)K;
}
/* B for nn_sgemm_shifted: row k is the run of memory at base + off[k] (element (k, q) at
 * base[off[k] + q]), so nothing needs packing. A stride-1 convolution's unfolded image is such a
 * matrix over a zero-padded copy of the image (a strided one's over the copy's stride phases),
 * computed on a "wide" grid whose rows are `wrap` columns long (conv.c). Of the N columns only those with q % wrap < keep are results; they are
 * stored side by side: column q goes to column (q / wrap) * keep + q % wrap of C, and z and
 * cbias are read from the same place. 1 <= keep <= wrap (keep == wrap keeps every column). */
typedef struct nn_bshift {
    const float *base;
    const int64_t *off; /* [K] */
    int64_t wrap, keep;
} nn_bshift;
/* nn_sgemm_packed with a shifted B: reads base[off[k] + q] for q < N only, packs nothing. Same
 * blocking, threads and order of additions as nn_sgemm_packed over the same B, so the values
 * it keeps are bit-identical to that product's. False, doing nothing, when the kernel is not
 * available on this CPU (or keep/wrap are out of range). */
bool nn_sgemm_shifted(opt_kctx *k, int64_t M, int64_t N, int64_t K, const float *pa,
                      const nn_bshift *bs, float *C, int64_t ldc, const nn_epilogue *ep);
/* The epilogue on rows [row0, row0 + rows) of C in plain C (for the OpenBLAS path and tests);
 * add_bias_z false applies only the activation. */
void nn_epilogue_rows(const nn_epilogue *ep, float *c, int64_t ldc, int64_t row0, int64_t rows,
                      int64_t cols, bool add_bias_z);

/* ---- fused convolution (conv.c) ---------------------------------------------------------------- */

/* What nn_conv_f32_ex does beyond Conv: add z ([N, M, out...], may be y itself) and apply an
 * activation, and use weights packed once by nn_conv_pack_w. */
typedef struct nn_conv_epi {
    const float *z;
    int act;
    float lo, hi, alpha;
    const float *packed; /* or NULL */
    int path;            /* NN_CONV_AUTO (0), or a path forced where it applies (tests) */
} nn_conv_epi;

/* nn_conv_epi.path: AUTO lets conv.c choose; PACKED is im2col into panels (nn_sgemm_packed);
 * SHIFTED is the padded image (split into its stride phases when the stride is not 1) read in
 * place (nn_sgemm_shifted), for 1-D and 2-D convs with dilation 1 on CPUs with the AVX-512
 * kernel. Both give the same bits. */
enum { NN_CONV_AUTO = 0, NN_CONV_PACKED, NN_CONV_SHIFTED };
/* The path nn_conv_f32_ex takes for g with path AUTO on this CPU: NN_CONV_SHIFTED or
 * NN_CONV_PACKED, or NN_CONV_AUTO for the others (depthwise, OpenBLAS). For tests. */
int nn_conv_path(const nn_conv_geom *g);

/* Floats of W [M, Kg] (Kg = C/group * kernel size) packed per group for the packed kernel. */
size_t nn_conv_packed_floats(int64_t M, int64_t group, int64_t Kg);
void nn_conv_pack_w(const float *w, int64_t M, int64_t group, int64_t Kg, float *dst);
/* Conv followed by + z and the activation (epi may be NULL: plain nn_conv_f32). */
void nn_conv_f32_ex(opt_kctx *k, const nn_conv_geom *g, const float *x, const float *w,
                    const float *b, const nn_conv_epi *epi, float *y);

/* ---- numpy matmul shapes (gemm.c, quant.c) ------------------------------------------------- */

/* The shapes of a numpy matmul: batch dims broadcast, M, K, N, and whether each operand's
 * unit dim was added (so the output drops it). */
typedef struct mm_shape {
    int nb;                        /* batch rank of the output */
    int64_t batch[OPT_MAX_DIMS];   /* output batch dims */
    int64_t astride[OPT_MAX_DIMS]; /* element stride of A's matrices per batch dim (0: broadcast) */
    int64_t bstride[OPT_MAX_DIMS];
    int64_t M, K, N;
    int ndim;                      /* output rank */
    int64_t dims[OPT_MAX_DIMS];
    bool b_flat;                   /* B has no batch dims that vary: fold A's batch into M */
} mm_shape;

/* Fills s from A's and B's shapes (gemm.c); fails naming the node when they do not broadcast. */
opt_status nn_matmul_shape(opt_kctx *k, const opt_array *A, const opt_array *B, mm_shape *s,
                           opt_error *err);

/* ---- integer GEMM (quant.c) ----------------------------------------------------------------- */

/* c[M x N] = a[M x K] * b[K x N] with int16 operands (already minus their zero points) and int32
 * accumulation; lda/ldb/ldc are row strides. */
void nn_igemm(int64_t M, int64_t N, int64_t K, const int16_t *a, int64_t lda, const int16_t *b,
              int64_t ldb, int32_t *c, int64_t ldc);
void nn_igemm_ref(int64_t M, int64_t N, int64_t K, const int16_t *a, int64_t lda,
                  const int16_t *b, int64_t ldb, int32_t *c, int64_t ldc);

/* Round half to even, as ONNX quantization requires. */
static inline float nn_round_even(float x)
{
    return __builtin_nearbyintf(x);
}

#endif
