/*
 * libopt/exec/cpu/qgemm.h — the 8-bit integer GEMM under QLinearConv, QLinearMatMul, ConvInteger
 * and MatMulInteger (libopt/exec/cpu/quant.c).
 *
 * C[i][j] = sum_k S[i][k] * V[k][j] over 8-bit operands with exact int32 accumulation, then an
 * epilogue per output: integer corrections for the zero points and the bias, and requantisation
 * (nn_qrequant: int32 -> times a float multiplier, in float32 -> clamp -> round half to even ->
 * plus the output zero point, as uint8/int8), or the raw int32 sum for the *Integer ops.
 *
 * One operand is unsigned and the other signed, as the int8 dot-product instructions want them:
 * S is signed and V unsigned ("weights x activations", conv), or S unsigned and V signed
 * ("activations x weights", matmul). Callers bring any 8-bit type to that form exactly: an int8
 * operand that must be unsigned becomes x ^ 0x80 = x + 128 (its zero point + 128), a uint8 one
 * that must be signed becomes x ^ 0x80 = x - 128 (zero point - 128); the differences x - zp, and
 * so the results, do not change.
 *
 * Layouts. S: rows of Kp = round_up(K, 4) bytes, each reachable through a row pointer. V:
 * panels of NN_QNR columns; panel p holds columns [p*NR, p*NR + NR) as Kp/4 groups of NR
 * columns x 4 consecutive k (byte (q*NR + c)*4 + t is V[4q + t][p*NR + c]), zero past K and past
 * the last column. Both zero-padded, so padding never adds to a sum.
 *
 * Kernels: AVX-512 VNNI (vpdpbusd, 8 rows x 48 columns in 24 accumulators), AVX2 (bytes widened
 * to int16, vpmaddwd: exact, no vpmaddubsw saturation) and plain C; nn_qisa_best picks one at
 * load (MOPT_QGEMM_ISA=c|avx2|vnni forces one). nn_qgemm_ref is the reference twin: unpacked
 * operands, three plain loops, the same epilogue in scalar C; tests require bit-exact equality.
 *
 * Internal to libopt/exec/cpu; not installed.
 */
#ifndef OPT_EXEC_CPU_QGEMM_H
#define OPT_EXEC_CPU_QGEMM_H

#include "libopt/exec/cpu/nn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NN_QMR 8  /* rows per tile */
#define NN_QNR 48 /* columns per tile and per packed panel */

typedef enum nn_qisa { NN_QISA_C = 0, NN_QISA_AVX2, NN_QISA_VNNI } nn_qisa;

/* The fastest kernel this CPU runs (or the one MOPT_QGEMM_ISA names, when the CPU has it). */
nn_qisa nn_qisa_best(void);
/* Whether this CPU runs isa. */
bool nn_qisa_available(nn_qisa isa);
const char *nn_qisa_name(nn_qisa isa);

static inline int64_t nn_qkp(int64_t K)
{
    return (K + 3) & ~(int64_t)3;
}
/* Bytes of V [K x N] packed whole. */
static inline size_t nn_qpack_bytes(int64_t K, int64_t N)
{
    return (size_t)((N + NN_QNR - 1) / NN_QNR) * (size_t)nn_qkp(K) * NN_QNR;
}

/* Packs columns [j0, j0 + nc) (nc <= NN_QNR) of the row-major byte matrix b (K rows, row stride
 * ldb) into one panel, each byte xor'ed with flip (0 or 0x80); zero padding past K and nc. */
void nn_qpack_panel(const uint8_t *b, int64_t ldb, int64_t K, int64_t j0, int64_t nc, uint8_t flip,
                    uint8_t *panel);
/* Packs all of b [K x N] (row stride ldb) into nn_qpack_bytes(K, N) bytes at dst. */
void nn_qpack(const uint8_t *b, int64_t ldb, int64_t K, int64_t N, uint8_t flip, uint8_t *dst);

/* What happens to each sum v of row i, column j:
 *   v += rbias[i] + cbias[j] + rfac[i] * cfac[j]      (each term when its array is set; int32,
 *                                                      wrapping like the hardware)
 *   out_dt INT32: store v.
 *   otherwise:    store nn_qrequant(v, mul_ij, zp, lo, hi) as uint8/int8, [lo, hi] from nn_qrange, where
 *                 mul_ij is rmul[i], cmul[j] or mul (float). */
/* Requantisation as ONNX Runtime's MLAS does it (MlasRequantizeOutput): the product v x m in
 * float32, clamped to [lo - zp, hi - zp] (a NaN product to lo - zp), rounded half to even, plus
 * zp. Every kernel and the reference use it, so they agree bit for bit, and with ONNX Runtime. */
static inline int32_t nn_qrequant(int64_t v, float m, int32_t zp, int32_t lo, int32_t hi)
{
    float f = (float)v * m, flo = (float)(lo - zp), fhi = (float)(hi - zp);
    f = f > flo ? f : flo;
    f = f < fhi ? f : fhi;
    return (int32_t)__builtin_nearbyintf(f) + zp;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
/* nn_qrequant on 16 sums (m, flo, fhi, zp broadcast): max/min return their second operand for
 * a NaN, as its comparisons do. For the AVX-512 kernels (qgemm.c, qdwconv.c). */
static inline __attribute__((always_inline, target("avx512f"))) __m512i
nn_qrequant16(__m512i v, __m512 m, __m512 flo, __m512 fhi, __m512i zp)
{
    __m512 f = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v), m), flo), fhi);
    return _mm512_add_epi32(_mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp);
}
#endif

typedef struct nn_qepi {
    const int32_t *rbias, *cbias;
    const int32_t *rfac, *cfac; /* both or neither */
    const float *rmul, *cmul;   /* at most one */
    float mul;
    int32_t zp;
    int out_dt;                 /* OPT_DT_UINT8, OPT_DT_INT8 or OPT_DT_INT32 */
    bool clamp;                 /* outputs clamped to [lo, hi] instead of out_dt's range: an */
    int32_t lo, hi;             /* absorbed Relu or Clip (nn_qop's yclamp) */
} nn_qepi;

/* The range an 8-bit output is clamped to: [lo, hi] when clamp is set, else the type's. */
static inline void nn_qrange(int out_dt, bool clamp, int32_t lo, int32_t hi, int32_t *qlo, int32_t *qhi)
{
    bool u8 = out_dt == OPT_DT_UINT8;
    *qlo = clamp ? lo : u8 ? 0 : -128;
    *qhi = clamp ? hi : u8 ? 255 : 127;
}

/* The epilogue on n sums t[0..n) of row i, columns j..j+n, into dst (n consecutive elements of
 * out_dt). cfac_local, when not NULL, replaces ep->cfac and is indexed from 0 (t's columns). */
void nn_qepi_row(nn_qisa isa, const nn_qepi *ep, const int32_t *t, int64_t i, int64_t j, int64_t n,
                 const int32_t *cfac_local, void *dst);

/* tile[r * NN_QNR + c] = sum over k < 4*kq of S[r][k] * V[k][c] for r < mr (1..NN_QMR) and at
 * least c < nc (1..NN_QNR; columns past nc may be left unwritten); S row r at s[r], V one packed
 * panel. s_unsigned: S uint8 and V int8 (else S int8 and V uint8). */
void nn_qtile(nn_qisa isa, bool s_unsigned, int mr, int nc, const uint8_t *const *s, const uint8_t *panel,
              int64_t kq, int32_t *tile);

/* Packs columns [j0, j0 + nc) of V into panel (Kp x NN_QNR layout above) using tmp (pack_tmp
 * bytes); when colsum is not NULL also stores the column sums of V (as unsigned bytes, over the
 * K real rows) in colsum[0..nc). */
typedef void (*nn_qpack_fn)(const void *ctx, int64_t j0, int64_t nc, uint8_t *panel, uint8_t *tmp,
                            int32_t *colsum);

/* One integer GEMM: S [M x K] (row i at s + i * lds) times V [K x N] into out, element (i, j) at
 * out + ((j / P) * img_stride + i * ldo + j % P) elements of ep->out_dt (P = N, img_stride 0 for
 * a plain matrix; conv batches several images' pixels as columns). V is vpacked (all panels) or
 * packed panel by panel by pack_v; with pack_colsum the packer's column sums are the epilogue's
 * cfac. Runs on k's threads (k may be NULL), deterministically. false when out of memory. */
typedef struct nn_qgemm_args {
    int64_t M, N, K;
    bool s_unsigned;
    const uint8_t *s;
    int64_t lds;
    const uint8_t *vpacked;
    nn_qpack_fn pack_v;
    const void *pack_ctx;
    size_t pack_tmp;
    bool pack_colsum;
    const nn_qepi *ep;
    void *out;
    int64_t ldo, P, img_stride;
} nn_qgemm_args;
bool nn_qgemm(opt_kctx *k, nn_qisa isa, const nn_qgemm_args *a);

/* Reference: S [M x K] (row stride lds) and V [K x N] (row stride ldv) unpacked, with the same
 * signedness convention, epilogue as nn_qepi (cfac global), out row-major [M x N] (stride ldo). */
void nn_qgemm_ref(int64_t M, int64_t N, int64_t K, bool s_unsigned, const uint8_t *s, int64_t lds,
                  const uint8_t *v, int64_t ldv, const nn_qepi *ep, void *out, int64_t ldo);

/* ---- the quantized ops on the GEMM (qlinear.c) ------------------------------------------- */

/* 8-bit weights [M x Kg] (Kg = C/group * kernel size for conv; for matmul B, stored transposed
 * as panels) brought to the kernel's form once: conv rows as int8 with Kp bytes each; matmul B
 * packed into int8 panels. sum[r] is each row's (conv) or column's (matmul) sum of the int8
 * values over the real K, zp[r] the zero point in the same domain. */
typedef struct nn_qweights {
    int64_t rows, K, Kp;
    uint8_t *w;
    int32_t *sum, *zp;
    bool any_zp;
    bool hwc; /* conv rows in (kernel position, channel) order, for channels-last unfolding:
               * chosen when C/group is a multiple of 4 and the kernel is larger than 1x1 */
    uint8_t *vt; /* 1x1 conv weights also packed as V panels (K x rows), for a Gemm written as a
                  * conv run on a few images: then the images are the rows (NULL otherwise) */
    int32_t *dw; /* depthwise conv weights (C/group == 1) as nn_qdw's words: per row, per kernel
                  * row, 4 taps at a time (zero past the kernel's width); NULL otherwise */
    int64_t dw_kw; /* the kernel width dw was made for */
} nn_qweights;

/* Conv weights W [M, C/group, k...] (uint8 or int8) and zero point wz (NULL, 1 or M values).
 * NULL when out of memory or not 8-bit. Caller frees with nn_qweights_free. */
nn_qweights *nn_qweights_conv(const opt_array *w, const opt_array *wz);
/* MatMul B [K, N] (uint8 or int8) and zero point bz (NULL, 1 or N values). */
nn_qweights *nn_qweights_matmul(const opt_array *b, const opt_array *bz);
void nn_qweights_free(nn_qweights *w);

/* Operands of QLinearConv / QLinearMatMul (every field) or ConvInteger / MatMulInteger (x, xz,
 * w, wz only; y int32). For matmul, x is A and w is B. */
typedef struct nn_qop {
    const opt_array *x, *xs, *xz, *w, *ws, *wz, *ys, *yz, *b;
    opt_array *y;  /* output, already shaped and allocated */
    bool yclamp;   /* y clamped to [ylo, yhi] (within its type's range) instead of the type's */
    int32_t ylo, yhi; /* range: a Relu or Clip absorbed at load (qdq_fuse.c) */
} nn_qop;

/* Whether nn_qconv / nn_qmatmul handle these operands (8-bit x and w, scalar x zero point and
 * scales where per-tensor is required, 1-D/2-D conv, 2-D B). Otherwise use the generic path. */
bool nn_qconv_ok(const nn_conv_geom *g, const nn_qop *o);
bool nn_qmatmul_ok(const nn_qop *o);
/* Runs them; pw: weights prepared at load, or NULL to prepare them now. */
opt_status nn_qconv(opt_kctx *k, const nn_conv_geom *g, const nn_qop *o, const nn_qweights *pw,
                    opt_error *err);
opt_status nn_qmatmul(opt_kctx *k, const nn_qop *o, const nn_qweights *pw, opt_error *err);

/* Depthwise conv (C/group == 1, any channel multiplier M/group) straight on AVX-512 VNNI
 * (qdwconv.c) when nn_qdw_ok: isa is VNNI, 1 or 2 spatial dims, weights pw without zero points,
 * along the width stride <= 4 and 3 * stride + (min(KW, 4) - 1) * dilation <= 15. x: the input bytes, flipped
 * with flip as for the GEMM; padding reads as fill (the flipped zero point). Each sum plus
 * rbias[m], then requantised with rmul[m] and zp to out_dt (uint8/int8) clamped to [lo, hi], or
 * stored as int32 (out_dt INT32): the GEMM path's bytes. false when out of memory. */
bool nn_qdw_ok(nn_qisa isa, const nn_conv_geom *g, const nn_qweights *pw);
/* pw's rows as nn_qdw's weight words for a KH x KW kernel (KH 1 for 1-D): row m, kernel row kh,
 * group q holds taps 4q..4q+3 (0 past KW) as one 32-bit word. malloc'd; NULL when out of memory. */
int32_t *nn_qdw_words(const nn_qweights *pw, int64_t KH, int64_t KW);
bool nn_qdw(opt_kctx *k, const nn_conv_geom *g, const nn_qweights *pw, const uint8_t *x, uint8_t flip,
            uint8_t fill, const int32_t *rbias, const float *rmul, int32_t zp, int out_dt, int32_t lo,
            int32_t hi, void *y);

#endif
