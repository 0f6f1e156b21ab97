/*
 * libopt/exec/cpu/sgemm.c — mopt's own packed float32 GEMM for convolutions and fully connected
 * layers, with the bias, a residual sum and the activation applied while each output tile is
 * still in registers (see nn.h, "packed SGEMM").
 *
 * Why not only OpenBLAS: Debian's OpenBLAS 0.3.21 runs AVX2 kernels unless OPENBLAS_CORETYPE
 * picks its AVX-512 ones, a conv needs an im2col copy before sgemm, and the bias/BatchNorm/Relu
 * that follow each conv are separate passes over memory. Here the weights are packed once at load
 * (panels of NN_MR rows), the input columns are packed straight from the image (the caller's
 * pack_b callback does im2col into panels of NN_NR columns, a block at a time, so the unfolded
 * image never exists whole), and a 12x32 AVX-512 register tile does the multiply-adds.
 *
 * Stride-1 convolutions skip even that packing (nn_sgemm_shifted): computed on a "wide" grid
 * as long as the zero-padded image's rows, row k of the unfolded image is the padded image
 * itself from offset off[k] on, so the register tile loads B's two vectors for step k straight
 * from there (unaligned, masked past the last column). The grid's extra columns (Wp - OW per
 * row) are computed and dropped at the store: each half of the tile is compressed in a register
 * to its kept lanes and stored side by side into the compact output (and z, cbias and partial
 * sums are read back the same way, expanded), so no wide scratch buffer or compaction pass
 * exists. The blocking, threads and order of additions are the packed path's, so the results
 * are bit-identical to it.
 *
 * Blocking: the columns are cut into chunks of at most NN_NC columns; for each chunk the packed
 * columns (K x chunk) are made once (shifted: nothing to make) and then every row panel of A
 * sweeps over them in blocks of KC values of K, so a KC x NN_NR slice of B stays in L1 while a
 * row panel streams from L2/L3.
 * Threads take whole (chunk, row range) tasks; every output value is computed by one thread with
 * the same order of additions whatever the thread count, so results are bit-identical across
 * thread counts too.
 *
 * On CPUs without AVX-512 (or other compilers) nn_sgemm_fast() is false and callers use
 * OpenBLAS.
 */
#include "libopt/exec/cpu/nn.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NN_HAVE_AVX512 1
#include <immintrin.h>
#endif

#define KC 256 /* values of K per sweep: a KC x NN_NR slice of B is 32 KiB */

bool nn_sgemm_fast(void)
{
#ifdef NN_HAVE_AVX512
    /* Kernels may ask from several threads at once: an atomic cache of the answer. */
    static int have = -1;
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") ? 1 : 0;
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    return h == 1;
#else
    return false;
#endif
}

size_t nn_pack_a_floats(int64_t M, int64_t K)
{
    return (size_t)((M + NN_MR - 1) / NN_MR) * NN_MR * (size_t)K;
}

void nn_pack_a(const float *A, int64_t rs, int64_t cs, int64_t M, int64_t K,
               const float *row_scale, float *dst)
{
    /* Block of K values [k0, k0 + kc) of every row panel, one after another: one sweep of the
     * kernel over all rows then reads memory in order (hardware prefetchers follow it). */
    int64_t mpad = (M + NN_MR - 1) / NN_MR * NN_MR;
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        int64_t kc = K - k0 < KC ? K - k0 : KC;
        for (int64_t p0 = 0; p0 < M; p0 += NN_MR) {
            float *d = dst + k0 * mpad + p0 * kc;
            int64_t mr = M - p0 < NN_MR ? M - p0 : NN_MR;
            if (!row_scale && cs == 1) {
                /* Rows read in order (a matrix's activations: one stream per row), stores
                 * NN_MR apart: three times faster than gathering down a column. */
                for (int64_t i = 0; i < mr; i++) {
                    const float *src = A + (p0 + i) * rs + k0;
                    for (int64_t kk = 0; kk < kc; kk++) d[kk * NN_MR + i] = src[kk];
                }
                for (int64_t i = mr; i < NN_MR; i++)
                    for (int64_t kk = 0; kk < kc; kk++) d[kk * NN_MR + i] = 0.0f;
                continue;
            }
            for (int64_t kk = 0; kk < kc; kk++) {
                for (int64_t i = 0; i < mr; i++) {
                    int64_t r = p0 + i;
                    d[kk * NN_MR + i] = A[r * rs + (k0 + kk) * cs] * (row_scale ? row_scale[r] : 1.0f);
                }
                for (int64_t i = mr; i < NN_MR; i++) d[kk * NN_MR + i] = 0.0f;
            }
        }
    }
}

size_t nn_pack_b_floats(int64_t K, int64_t N)
{
    return (size_t)((N + NN_NR - 1) / NN_NR) * NN_NR * (size_t)K;
}

void nn_pack_b(const float *B, int64_t rs, int64_t cs, int64_t K, int64_t c0, int64_t nc,
               float *dst)
{
    int64_t npan = (nc + NN_NR - 1) / NN_NR;
    for (int64_t p = 0; p < npan; p++) {
        int64_t n = nc - p * NN_NR < NN_NR ? nc - p * NN_NR : NN_NR;
        float *d = dst + p * K * NN_NR;
        const float *src = B + (c0 + p * NN_NR) * cs;
        for (int64_t kk = 0; kk < K; kk++) {
            const float *sr = src + kk * rs;
            float *dr = d + kk * NN_NR;
            if (cs == 1) {
                memcpy(dr, sr, (size_t)n * sizeof *dr);
            } else {
                for (int64_t l = 0; l < n; l++) dr[l] = sr[l * cs];
            }
            for (int64_t l = n; l < NN_NR; l++) dr[l] = 0.0f;
        }
    }
}

void nn_pack_b_strided(const void *ctx, int64_t c0, int64_t nc, float *dst)
{
    const nn_bview *v = ctx;
    nn_pack_b(v->b, v->rs, v->cs, v->K, c0, nc, dst);
}

/* The scalar epilogue, the same operations and order as the vector one. */
static inline float epi_act(const nn_epilogue *ep, float v)
{
    switch (ep->act) {
    case NN_ACT_RELU: return v > 0 ? v : 0.0f;
    case NN_ACT_CLIP:
        v = v < ep->lo ? ep->lo : v;
        return v > ep->hi ? ep->hi : v;
    case NN_ACT_LEAKY: return v >= 0 ? v : v * ep->alpha;
    default: return v;
    }
}

void nn_epilogue_rows(const nn_epilogue *ep, float *c, int64_t ldc, int64_t row0, int64_t rows,
                      int64_t cols, bool add_bias_z)
{
    for (int64_t i = 0; i < rows; i++) {
        float *cr = c + i * ldc;
        float bv = add_bias_z && ep->bias ? ep->bias[row0 + i] : 0.0f;
        const float *zr = add_bias_z && ep->z ? ep->z + (row0 + i) * ep->ldz : NULL;
        for (int64_t j = 0; j < cols; j++) {
            float v = cr[j];
            if (add_bias_z) {
                v += bv;
                if (ep->cbias) v += ep->cbias[j];
                if (zr) v += zr[j];
            }
            cr[j] = epi_act(ep, v);
        }
    }
}

#ifdef NN_HAVE_AVX512

#define AVX512 __attribute__((target("avx512f,avx512dq,fma,popcnt"), optimize("O3")))

static AVX512 inline __m512 vact(const nn_epilogue *ep, __m512 v)
{
    switch (ep->act) {
    case NN_ACT_RELU: return _mm512_max_ps(v, _mm512_setzero_ps());
    case NN_ACT_CLIP:
        return _mm512_min_ps(_mm512_set1_ps(ep->hi), _mm512_max_ps(_mm512_set1_ps(ep->lo), v));
    case NN_ACT_LEAKY: {
        __mmask16 ge = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ);
        return _mm512_mask_blend_ps(ge, _mm512_mul_ps(v, _mm512_set1_ps(ep->alpha)), v);
    }
    default: return v;
    }
}

/* Where the lanes of one register tile go. The tile covers columns [col0, col0 + 32) of B;
 * half h (lanes 16h..16h+15) loads the lanes in l<h> from B, keeps the lanes in k<h> and stores
 * them side by side from column d<h> of its row of C (and reads z and cbias from the same
 * place); s<h> is the first popcount(k<h>) lanes. For a plain product (nn_sgemm_packed) every
 * mask is the lanes < nr and d0, d1 = col0, col0 + 16. */
typedef struct tile_cols {
    int64_t col0, d0, d1;
    __mmask16 l0, l1, k0, k1, s0, s1;
} tile_cols;

/* Kept lanes of half 0 or 1 of v / of a value read back from C, z or cbias at p (shifted: the
 * kept values lie side by side and are spread out to their lanes, the others read as 0). */
static AVX512 inline __attribute__((always_inline)) __m512 tile_load(const float *p, __mmask16 k,
                                                                     __mmask16 s, bool shifted)
{
    return shifted ? _mm512_maskz_expand_ps(k, _mm512_maskz_loadu_ps(s, p))
                   : _mm512_maskz_loadu_ps(k, p);
}

static AVX512 inline __attribute__((always_inline)) void tile_store(float *p, __m512 v,
                                                                    __mmask16 k, __mmask16 s,
                                                                    bool shifted)
{
    /* Compress in a register, then a plain masked store: the compressing store to memory is
     * microcoded and slow on some CPUs (AMD Zen 4). */
    if (shifted) _mm512_mask_storeu_ps(p, s, _mm512_maskz_compress_ps(k, v));
    else _mm512_mask_storeu_ps(p, k, v);
}

/* The register tile, C[mr rows x the tile's columns] (+)= A panel (kc x NN_MR) * B (kc rows of
 * 32 or 16 columns), c pointing at row 0 of C. `first`: the tile starts from bias + cbias + z
 * (each optional) instead of C; `last`: the activation is applied before the store. Rows >= mr
 * of the A panel are zero padding. B is a packed panel (b, rows NN_NR apart) or, `shifted`,
 * rows b + boff[kk] of a shifted view (nn_bshift; b already at the tile's first column), read
 * with masked loads so that no column >= N is touched. Instantiated below with constant `wide`
 * (32 columns, else 16) and `shifted`. */
static AVX512 inline __attribute__((always_inline)) void
ukr_body(int64_t kc, const float *restrict a, const float *restrict b,
         const int64_t *restrict boff, float *restrict c, int64_t ldc, int mr,
         const tile_cols *t, bool first, bool last, const nn_epilogue *ep, int64_t row0,
         const bool wide, const bool shifted, const int rows)
{
    __m512 c0[NN_MR], c1[NN_MR];
    /* The output tile (and the residual) are usually not in cache: ask for them now so they
     * arrive while the multiply-adds run. */
    for (int i = 0; i < mr; i++) {
        __builtin_prefetch(c + i * ldc + t->d0, 1, 3);
        if (wide) __builtin_prefetch(c + i * ldc + t->d1, 1, 3);
        if (first && ep->z) {
            __builtin_prefetch(ep->z + (row0 + i) * ep->ldz + t->d0, 0, 3);
            if (wide) __builtin_prefetch(ep->z + (row0 + i) * ep->ldz + t->d1, 0, 3);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < rows; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    /* The next row panel of A follows this one in memory (nn_pack_a's layout): stream it in. */
    const float *anext = a + kc * NN_MR;
    for (int64_t kk = 0; kk < kc; kk++) {
        __m512 b0, b1 = _mm512_setzero_ps();
        if (shifted) {
            const float *bk = b + boff[kk];
            b0 = _mm512_maskz_loadu_ps(t->l0, bk);
            if (wide) b1 = _mm512_maskz_loadu_ps(t->l1, bk + 16);
        } else {
            b0 = _mm512_loadu_ps(b + kk * NN_NR);
            if (wide) b1 = _mm512_loadu_ps(b + kk * NN_NR + 16);
            /* B too, 16 rows ahead: with few rows (a classifier's one) it streams from memory.
             * (A shifted B is a few image rows, already in cache.) */
            if (wide) {
                __builtin_prefetch(b + (kk + 16) * NN_NR, 0, 3);
                __builtin_prefetch(b + (kk + 16) * NN_NR + 16, 0, 3);
            }
        }
        const float *ak = a + kk * NN_MR;
        __builtin_prefetch(anext + kk * NN_MR, 0, 2);
#pragma GCC unroll 12
        for (int i = 0; i < rows; i++) {
            __m512 ai = _mm512_set1_ps(ak[i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            if (wide) c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < rows; i++) {
        if (i >= mr) break;
        float *cr = c + i * ldc;
        __m512 v0 = c0[i], v1 = c1[i];
        if (first) {
            if (ep->bias) {
                __m512 bv = _mm512_set1_ps(ep->bias[row0 + i]);
                v0 = _mm512_add_ps(v0, bv);
                if (wide) v1 = _mm512_add_ps(v1, bv);
            }
            if (ep->cbias) {
                v0 = _mm512_add_ps(v0, tile_load(ep->cbias + t->d0, t->k0, t->s0, shifted));
                if (wide)
                    v1 = _mm512_add_ps(v1, tile_load(ep->cbias + t->d1, t->k1, t->s1, shifted));
            }
            if (ep->z) {
                const float *zr = ep->z + (row0 + i) * ep->ldz;
                v0 = _mm512_add_ps(v0, tile_load(zr + t->d0, t->k0, t->s0, shifted));
                if (wide) v1 = _mm512_add_ps(v1, tile_load(zr + t->d1, t->k1, t->s1, shifted));
            }
        } else {
            v0 = _mm512_add_ps(tile_load(cr + t->d0, t->k0, t->s0, shifted), v0);
            if (wide) v1 = _mm512_add_ps(tile_load(cr + t->d1, t->k1, t->s1, shifted), v1);
        }
        if (last) {
            v0 = vact(ep, v0);
            if (wide) v1 = vact(ep, v1);
        }
        tile_store(cr + t->d0, v0, t->k0, t->s0, shifted);
        if (wide) tile_store(cr + t->d1, v1, t->k1, t->s1, shifted);
    }
}

/* The tile's instances: 32 or 16 columns (a last panel of at most 16 columns takes half the
 * multiply-adds: P = 196 or 784 leaves 4 or 16 columns there; the panel in memory is still
 * NN_NR wide), packed or shifted B, and 12, 8, 6 or 4 rows: a panel of mr rows runs the
 * smallest that holds them, so M = 16 costs 12 + 4 rows of multiply-adds, not 12 + 12, and
 * LeNet-5's 6 channels 6 rows, not 8 (its first conv 8-15 % faster at batch 100). */
typedef void (*ukr_packed_fn)(int64_t kc, const float *restrict a, const float *restrict b,
                              float *restrict c, int64_t ldc, int mr, const tile_cols *t,
                              bool first, bool last, const nn_epilogue *ep, int64_t row0);
typedef void (*ukr_shifted_fn)(int64_t kc, const float *restrict a, const float *restrict b,
                               const int64_t *restrict boff, float *restrict c, int64_t ldc,
                               int mr, const tile_cols *t, bool first, bool last,
                               const nn_epilogue *ep, int64_t row0);

#define UKR_PACKED(name, wide, rows)                                                              \
    static AVX512 void name(int64_t kc, const float *restrict a, const float *restrict b,        \
                            float *restrict c, int64_t ldc, int mr, const tile_cols *t,          \
                            bool first, bool last, const nn_epilogue *ep, int64_t row0)          \
    {                                                                                             \
        ukr_body(kc, a, b, NULL, c, ldc, mr, t, first, last, ep, row0, wide, false, rows);        \
    }
#define UKR_SHIFTED(name, wide, rows)                                                             \
    static AVX512 void name(int64_t kc, const float *restrict a, const float *restrict b,        \
                            const int64_t *restrict boff, float *restrict c, int64_t ldc, int mr, \
                            const tile_cols *t, bool first, bool last, const nn_epilogue *ep,    \
                            int64_t row0)                                                         \
    {                                                                                             \
        ukr_body(kc, a, b, boff, c, ldc, mr, t, first, last, ep, row0, wide, true, rows);         \
    }
UKR_PACKED(ukr_12x32, true, 12)
UKR_PACKED(ukr_12x16, false, 12)
UKR_PACKED(ukr_8x32, true, 8)
UKR_PACKED(ukr_8x16, false, 8)
UKR_PACKED(ukr_6x32, true, 6)
UKR_PACKED(ukr_6x16, false, 6)
UKR_PACKED(ukr_4x32, true, 4)
UKR_PACKED(ukr_4x16, false, 4)
UKR_SHIFTED(ukr_12x32s, true, 12)
UKR_SHIFTED(ukr_12x16s, false, 12)
UKR_SHIFTED(ukr_8x32s, true, 8)
UKR_SHIFTED(ukr_8x16s, false, 8)
UKR_SHIFTED(ukr_6x32s, true, 6)
UKR_SHIFTED(ukr_6x16s, false, 6)
UKR_SHIFTED(ukr_4x32s, true, 4)
UKR_SHIFTED(ukr_4x16s, false, 4)
#undef UKR_PACKED
#undef UKR_SHIFTED

/* [rows class: 12, 8, 6, 4][wide] */
static const ukr_packed_fn ukr_packed[4][2] = {
    {ukr_12x16, ukr_12x32}, {ukr_8x16, ukr_8x32}, {ukr_6x16, ukr_6x32}, {ukr_4x16, ukr_4x32}};
static const ukr_shifted_fn ukr_shifted[4][2] = {{ukr_12x16s, ukr_12x32s},
                                                 {ukr_8x16s, ukr_8x32s},
                                                 {ukr_6x16s, ukr_6x32s},
                                                 {ukr_4x16s, ukr_4x32s}};

static inline int ukr_rows_class(int mr)
{
    return mr > 8 ? 0 : mr > 6 ? 1 : mr > 4 ? 2 : 3;
}

/* Lanes [0, n) of a half (n clamped to 0..16). */
static inline __mmask16 lanes_below(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* The tile of columns [cc, cc + nr) (nr <= 32) for a plain product, or for a shifted B (bs).
 * Runs once per panel and call (a small conv calls once per image), so the kept lanes are built
 * a row of the wide grid at a time (lanes whose column mod wrap is below keep), not lane by
 * lane. */
static AVX512 void tile_cols_init(tile_cols *t, int64_t cc, int nr, const nn_bshift *bs)
{
    t->col0 = cc;
    t->l0 = lanes_below(nr);
    t->l1 = lanes_below(nr - 16);
    if (!bs) {
        t->k0 = t->s0 = t->l0;
        t->k1 = t->s1 = t->l1;
        t->d0 = cc;
        t->d1 = cc + 16;
        return;
    }
    int64_t row = cc / bs->wrap, r = cc - row * bs->wrap;
    uint64_t kept = 0;
    /* Lane l0 is the start of a grid row (l0 <= 0 for the row lane 0 lies in). */
    for (int64_t l0 = -r; l0 < nr; l0 += bs->wrap) {
        int64_t lo = l0 < 0 ? 0 : l0, hi = l0 + bs->keep < nr ? l0 + bs->keep : nr;
        if (hi > lo) kept |= (((uint64_t)1 << hi) - 1) & ~(((uint64_t)1 << lo) - 1);
    }
    t->k0 = (__mmask16)(kept & 0xFFFF);
    t->k1 = (__mmask16)(kept >> 16);
    int n0 = __builtin_popcount(t->k0);
    t->s0 = lanes_below(n0);
    t->s1 = lanes_below(__builtin_popcount(t->k1));
    t->d0 = row * bs->keep + (r < bs->keep ? r : bs->keep);
    t->d1 = t->d0 + n0;
}

typedef struct gemm_job {
    int64_t M, N, K, nc, nchunks, msplit, ntasks;
    const float *pa;
    nn_pack_b_fn pack_b;
    const void *pb_ctx;
    const nn_bshift *bs; /* a shifted B (nn_sgemm_shifted): nothing packed; or NULL */
    float *C;
    int64_t ldc;
    const nn_epilogue *ep;
    float *bufs;   /* nbuf packed-B buffers of buf_floats each, one per worker slot */
    int64_t nbuf;
    size_t buf_floats;
} gemm_job;

/* One task: columns chunk `ch`, row panels [pr0, pr1). */
static void gemm_task(const gemm_job *j, int64_t ch, int64_t pr0, int64_t pr1, float *bp)
{
    int64_t c0 = ch * j->nc, nc = j->N - c0 < j->nc ? j->N - c0 : j->nc;
    int64_t npan = (nc + NN_NR - 1) / NN_NR;
    int64_t mpad = (j->M + NN_MR - 1) / NN_MR * NN_MR;
    const nn_bshift *bs = j->bs;
    tile_cols tc[NN_NC / NN_NR]; /* chunks are at most NN_NC columns (nn_sgemm_run) */
    for (int64_t pc = 0; pc < npan; pc++) {
        int64_t cc = c0 + pc * NN_NR;
        tile_cols_init(&tc[pc], cc, (int)(j->N - cc < NN_NR ? j->N - cc : NN_NR), bs);
    }
    if (bs) { /* nothing to pack: the kernel reads B's rows where they are */
    } else if (j->pack_b) {
        j->pack_b(j->pb_ctx, c0, nc, bp);
    } else { /* B was packed whole (nn_pack_b); chunks start on panel boundaries */
        bp = (float *)j->pb_ctx + (c0 / NN_NR) * j->K * NN_NR;
    }
    for (int64_t k0 = 0; k0 < j->K; k0 += KC) {
        int64_t kc = j->K - k0 < KC ? j->K - k0 : KC;
        bool first = k0 == 0, last = k0 + kc >= j->K;
        for (int64_t pr = pr0; pr < pr1; pr++) {
            int64_t r0 = pr * NN_MR;
            int mr = (int)(j->M - r0 < NN_MR ? j->M - r0 : NN_MR);
            const float *ap = j->pa + k0 * mpad + r0 * kc;
            float *cr = j->C + r0 * j->ldc;
            int rc = ukr_rows_class(mr);
            for (int64_t pc = 0; pc < npan; pc++) {
                const tile_cols *t = &tc[pc];
                if (bs) {
                    if (t->k1 || t->k0)
                        ukr_shifted[rc][t->k1 != 0](kc, ap, bs->base + t->col0, bs->off + k0, cr,
                                                    j->ldc, mr, t, first, last, j->ep, r0);
                } else {
                    ukr_packed[rc][t->l1 != 0](kc, ap, bp + pc * j->K * NN_NR + k0 * NN_NR, cr,
                                               j->ldc, mr, t, first, last, j->ep, r0);
                }
            }
        }
    }
}

/* Worker slots [begin, end): slot s runs tasks [ntasks*s/nbuf, ntasks*(s+1)/nbuf) with packed-B
 * buffer s. A task is (column chunk, range of row panels). */
static void gemm_slots(void *ctx, size_t begin, size_t end)
{
    const gemm_job *j = ctx;
    int64_t npr = (j->M + NN_MR - 1) / NN_MR;
    for (size_t s = begin; s < end; s++) {
        float *bp = j->bufs ? j->bufs + s * j->buf_floats : NULL;
        int64_t t0 = j->ntasks * (int64_t)s / j->nbuf, t1 = j->ntasks * (int64_t)(s + 1) / j->nbuf;
        for (int64_t t = t0; t < t1; t++) {
            int64_t ch = t / j->msplit, ms = t % j->msplit;
            int64_t pr0 = npr * ms / j->msplit, pr1 = npr * (ms + 1) / j->msplit;
            if (pr0 < pr1) gemm_task(j, ch, pr0, pr1, bp);
        }
    }
}

/* Both entry points: cuts j (M, N, K, operands set) into tasks and runs them on k's threads. */
static bool nn_sgemm_run(opt_kctx *k, gemm_job *j)
{
    int64_t M = j->M, N = j->N, K = j->K;
    int threads = nn_threads(k);
    /* Column chunks: at most NN_NC columns, and at least `threads` chunks when the rows alone
     * cannot keep the threads busy. */
    int64_t npr = (M + NN_MR - 1) / NN_MR;
    j->nc = N < NN_NC ? N : NN_NC;
    j->nchunks = (N + j->nc - 1) / j->nc;
    if (threads > 1 && j->nchunks < threads && N >= (int64_t)threads * 2 * NN_NR) {
        int64_t per = (N + threads - 1) / threads;
        j->nc = (per + NN_NR - 1) / NN_NR * NN_NR;
        j->nchunks = (N + j->nc - 1) / j->nc;
    }
    j->msplit = 1;
    if (j->nchunks < threads) {
        j->msplit = (threads + j->nchunks - 1) / j->nchunks;
        if (j->msplit > npr) j->msplit = npr;
    }
    j->ntasks = j->nchunks * j->msplit;
    size_t nbuf = (size_t)j->ntasks;
    if (nbuf > (size_t)threads) nbuf = (size_t)threads;
    j->nbuf = (int64_t)nbuf;
    float *own = NULL;
    if (!j->bs && j->bufs) { /* the caller's workspace (nn_sgemm_packed_serial): one slot */
        j->buf_floats = (size_t)((j->nc + NN_NR - 1) / NN_NR * NN_NR) * (size_t)K;
    } else if (!j->bs) {
        j->buf_floats = (size_t)((j->nc + NN_NR - 1) / NN_NR * NN_NR) * (size_t)K;
        size_t bytes = j->pack_b ? nbuf * j->buf_floats * sizeof(float) : 64;
        opt_error e = {0};
        float *bufs = k && k->exec ? opt_kctx_scratch(k, bytes, &e) : NULL;
        if (!bufs) {
            own = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
            if (!own) return false;
            bufs = own;
        }
        j->bufs = bufs;
    }
    nn_parallel(k, nbuf, gemm_slots, j);
    free(own);
    return true;
}

bool nn_sgemm_packed(opt_kctx *k, int64_t M, int64_t N, int64_t K, const float *pa,
                     nn_pack_b_fn pack_b, const void *pb_ctx, float *C, int64_t ldc,
                     const nn_epilogue *ep)
{
    if (!nn_sgemm_fast() || M <= 0 || N <= 0 || K <= 0) return false;
    gemm_job j = {.M = M, .N = N, .K = K, .pa = pa, .pack_b = pack_b, .pb_ctx = pb_ctx, .C = C,
                  .ldc = ldc, .ep = ep};
    return nn_sgemm_run(k, &j);
}

bool nn_sgemm_packed_serial(int64_t M, int64_t N, int64_t K, const float *pa, nn_pack_b_fn pack_b,
                            const void *pb_ctx, float *C, int64_t ldc, const nn_epilogue *ep,
                            float *work)
{
    if (!nn_sgemm_fast() || M <= 0 || N <= 0 || K <= 0 || !pack_b || !work) return false;
    gemm_job j = {.M = M, .N = N, .K = K, .pa = pa, .pack_b = pack_b, .pb_ctx = pb_ctx, .C = C,
                  .ldc = ldc, .ep = ep, .bufs = work};
    return nn_sgemm_run(NULL, &j);
}

bool nn_sgemm_shifted(opt_kctx *k, int64_t M, int64_t N, int64_t K, const float *pa,
                      const nn_bshift *bs, float *C, int64_t ldc, const nn_epilogue *ep)
{
    if (!nn_sgemm_fast() || M <= 0 || N <= 0 || K <= 0) return false;
    if (bs->wrap < 1 || bs->keep < 1 || bs->keep > bs->wrap) return false;
    gemm_job j = {.M = M, .N = N, .K = K, .pa = pa, .bs = bs, .C = C, .ldc = ldc, .ep = ep};
    return nn_sgemm_run(k, &j);
}

#else /* no AVX-512 kernel in this build */

bool nn_sgemm_packed_serial(int64_t M, int64_t N, int64_t K, const float *pa, nn_pack_b_fn pack_b,
                            const void *pb_ctx, float *C, int64_t ldc, const nn_epilogue *ep,
                            float *work)
{
    (void)M, (void)N, (void)K, (void)pa, (void)pack_b, (void)pb_ctx, (void)C, (void)ldc, (void)ep,
        (void)work;
    return false;
}

bool nn_sgemm_packed(opt_kctx *k, int64_t M, int64_t N, int64_t K, const float *pa,
                     nn_pack_b_fn pack_b, const void *pb_ctx, float *C, int64_t ldc,
                     const nn_epilogue *ep)
{
    (void)k, (void)M, (void)N, (void)K, (void)pa, (void)pack_b, (void)pb_ctx, (void)C, (void)ldc,
        (void)ep;
    return false;
}

bool nn_sgemm_shifted(opt_kctx *k, int64_t M, int64_t N, int64_t K, const float *pa,
                      const nn_bshift *bs, float *C, int64_t ldc, const nn_epilogue *ep)
{
    (void)k, (void)M, (void)N, (void)K, (void)pa, (void)bs, (void)C, (void)ldc, (void)ep;
    return false;
}

#endif
