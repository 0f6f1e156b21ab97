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
 * Blocking: the columns are cut into chunks of at most NN_NC columns; for each chunk the packed
 * columns (K x chunk) are made once and then every row panel of A sweeps over them in blocks of
 * KC values of K, so a KC x NN_NR slice of B stays in L1 while a row panel streams from L2/L3.
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

#define AVX512 __attribute__((target("avx512f,avx512dq,fma"), optimize("O3")))

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

/* C[mr x nr] (+)= A panel (kc x NN_MR) * B panel (kc x NN_NR). `first`: the tile starts from
 * bias + residual (both optional) instead of C; `last`: the activation is applied before the
 * store. Rows >= mr of the A panel are zero padding; columns >= nr are masked off. */
static AVX512 void ukr_12x32(int64_t kc, const float *restrict a, const float *restrict b,
                             float *restrict c, int64_t ldc, int mr, int nr, bool first,
                             bool last, const nn_epilogue *ep, int64_t row0, int64_t col0)
{
    __m512 c0[NN_MR], c1[NN_MR];
    /* The output tile (and the residual) are usually not in cache: ask for them now so they
     * arrive while the multiply-adds run. */
    for (int i = 0; i < mr; i++) {
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + 16, 1, 3);
        if (first && ep->z) {
            __builtin_prefetch(ep->z + (row0 + i) * ep->ldz + col0, 0, 3);
            __builtin_prefetch(ep->z + (row0 + i) * ep->ldz + col0 + 16, 0, 3);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < NN_MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    /* The next row panel of A follows this one in memory (nn_pack_a's layout): stream it in. */
    const float *anext = a + kc * NN_MR;
    for (int64_t kk = 0; kk < kc; kk++) {
        __m512 b0 = _mm512_loadu_ps(b + kk * NN_NR), b1 = _mm512_loadu_ps(b + kk * NN_NR + 16);
        const float *ak = a + kk * NN_MR;
        __builtin_prefetch(anext + kk * NN_MR, 0, 2);
        /* B too, 16 rows ahead: with few rows (a classifier's one) it streams from memory. */
        __builtin_prefetch(b + (kk + 16) * NN_NR, 0, 3);
        __builtin_prefetch(b + (kk + 16) * NN_NR + 16, 0, 3);
#pragma GCC unroll 12
        for (int i = 0; i < NN_MR; i++) {
            __m512 ai = _mm512_set1_ps(ak[i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF
                 : nr > 16  ? (__mmask16)((1u << (nr - 16)) - 1)
                            : (__mmask16)0;
#pragma GCC unroll 12
    for (int i = 0; i < NN_MR; i++) {
        if (i >= mr) break;
        float *cr = c + i * ldc;
        __m512 v0 = c0[i], v1 = c1[i];
        if (first) {
            if (ep->bias) {
                __m512 bv = _mm512_set1_ps(ep->bias[row0 + i]);
                v0 = _mm512_add_ps(v0, bv);
                v1 = _mm512_add_ps(v1, bv);
            }
            if (ep->cbias) {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ep->cbias + col0));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ep->cbias + col0 + 16));
            }
            if (ep->z) {
                const float *zr = ep->z + (row0 + i) * ep->ldz + col0;
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, zr));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, zr + 16));
            }
        } else {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), v1);
        }
        if (last) {
            v0 = vact(ep, v0);
            v1 = vact(ep, v1);
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

/* ukr_12x32 for a last panel of at most 16 columns: half the multiply-adds (P = 196 or 784
 * leaves 4 or 16 columns there). The panel in memory is still NN_NR wide. */
static AVX512 void ukr_12x16(int64_t kc, const float *restrict a, const float *restrict b,
                             float *restrict c, int64_t ldc, int mr, int nr, bool first,
                             bool last, const nn_epilogue *ep, int64_t row0, int64_t col0)
{
    __m512 c0[NN_MR];
    for (int i = 0; i < mr; i++) {
        __builtin_prefetch(c + i * ldc, 1, 3);
        if (first && ep->z) __builtin_prefetch(ep->z + (row0 + i) * ep->ldz + col0, 0, 3);
    }
#pragma GCC unroll 12
    for (int i = 0; i < NN_MR; i++) c0[i] = _mm512_setzero_ps();
    const float *anext = a + kc * NN_MR;
    for (int64_t kk = 0; kk < kc; kk++) {
        __m512 b0 = _mm512_loadu_ps(b + kk * NN_NR);
        const float *ak = a + kk * NN_MR;
        __builtin_prefetch(anext + kk * NN_MR, 0, 2);
#pragma GCC unroll 12
        for (int i = 0; i < NN_MR; i++) c0[i] = _mm512_fmadd_ps(_mm512_set1_ps(ak[i]), b0, c0[i]);
    }
    __mmask16 m0 = (__mmask16)((1u << nr) - 1);
#pragma GCC unroll 12
    for (int i = 0; i < NN_MR; i++) {
        if (i >= mr) break;
        float *cr = c + i * ldc;
        __m512 v0 = c0[i];
        if (first) {
            if (ep->bias) v0 = _mm512_add_ps(v0, _mm512_set1_ps(ep->bias[row0 + i]));
            if (ep->cbias) v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ep->cbias + col0));
            if (ep->z)
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ep->z + (row0 + i) * ep->ldz + col0));
        } else {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), v0);
        }
        if (last) v0 = vact(ep, v0);
        _mm512_mask_storeu_ps(cr, m0, v0);
    }
}

typedef struct gemm_job {
    int64_t M, N, K, nc, nchunks, msplit, ntasks;
    const float *pa;
    nn_pack_b_fn pack_b;
    const void *pb_ctx;
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
    if (j->pack_b)
        j->pack_b(j->pb_ctx, c0, nc, bp);
    else /* B was packed whole (nn_pack_b); chunks start on panel boundaries */
        bp = (float *)j->pb_ctx + (c0 / NN_NR) * j->K * NN_NR;
    for (int64_t k0 = 0; k0 < j->K; k0 += KC) {
        int64_t kc = j->K - k0 < KC ? j->K - k0 : KC;
        bool first = k0 == 0, last = k0 + kc >= j->K;
        for (int64_t pr = pr0; pr < pr1; pr++) {
            int64_t r0 = pr * NN_MR;
            int mr = (int)(j->M - r0 < NN_MR ? j->M - r0 : NN_MR);
            const float *ap = j->pa + k0 * mpad + r0 * kc;
            for (int64_t pc = 0; pc < npan; pc++) {
                int64_t cc = c0 + pc * NN_NR;
                int nr = (int)(j->N - cc < NN_NR ? j->N - cc : NN_NR);
                (nr <= 16 ? ukr_12x16 : ukr_12x32)(kc, ap, bp + pc * j->K * NN_NR + k0 * NN_NR,
                                                   j->C + r0 * j->ldc + cc, j->ldc, mr, nr, first,
                                                   last, j->ep, r0, cc);
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
        float *bp = j->bufs + s * j->buf_floats;
        int64_t t0 = j->ntasks * (int64_t)s / j->nbuf, t1 = j->ntasks * (int64_t)(s + 1) / j->nbuf;
        for (int64_t t = t0; t < t1; t++) {
            int64_t ch = t / j->msplit, ms = t % j->msplit;
            int64_t pr0 = npr * ms / j->msplit, pr1 = npr * (ms + 1) / j->msplit;
            if (pr0 < pr1) gemm_task(j, ch, pr0, pr1, bp);
        }
    }
}

bool nn_sgemm_packed(opt_kctx *k, int64_t M, int64_t N, int64_t K, const float *pa,
                     nn_pack_b_fn pack_b, const void *pb_ctx, float *C, int64_t ldc,
                     const nn_epilogue *ep)
{
    if (!nn_sgemm_fast() || M <= 0 || N <= 0 || K <= 0) return false;
    gemm_job j = {.M = M, .N = N, .K = K, .pa = pa, .pack_b = pack_b, .pb_ctx = pb_ctx, .C = C,
                  .ldc = ldc, .ep = ep};
    int threads = nn_threads(k);
    /* Column chunks: at most NN_NC columns, and at least `threads` chunks when the rows alone
     * cannot keep the threads busy. */
    int64_t npr = (M + NN_MR - 1) / NN_MR;
    j.nc = N < NN_NC ? N : NN_NC;
    j.nchunks = (N + j.nc - 1) / j.nc;
    if (threads > 1 && j.nchunks < threads && N >= (int64_t)threads * 2 * NN_NR) {
        int64_t per = (N + threads - 1) / threads;
        j.nc = (per + NN_NR - 1) / NN_NR * NN_NR;
        j.nchunks = (N + j.nc - 1) / j.nc;
    }
    j.msplit = 1;
    if (j.nchunks < threads) {
        j.msplit = (threads + j.nchunks - 1) / j.nchunks;
        if (j.msplit > npr) j.msplit = npr;
    }
    j.ntasks = j.nchunks * j.msplit;
    j.buf_floats = (size_t)((j.nc + NN_NR - 1) / NN_NR * NN_NR) * (size_t)K;
    size_t nbuf = (size_t)j.ntasks;
    if (nbuf > (size_t)threads) nbuf = (size_t)threads;
    size_t bytes = j.pack_b ? nbuf * j.buf_floats * sizeof(float) : 64;
    opt_error e = {0};
    float *bufs = k && k->exec ? opt_kctx_scratch(k, bytes, &e) : NULL;
    float *own = NULL;
    if (!bufs) {
        own = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!own) return false;
        bufs = own;
    }
    j.bufs = bufs;
    j.nbuf = (int64_t)nbuf;
    nn_parallel(k, nbuf, gemm_slots, &j);
    free(own);
    return true;
}

#else /* no AVX-512 kernel in this build */

bool nn_sgemm_packed(opt_kctx *k, int64_t M, int64_t N, int64_t K, const float *pa,
                     nn_pack_b_fn pack_b, const void *pb_ctx, float *C, int64_t ldc,
                     const nn_epilogue *ep)
{
    (void)k, (void)M, (void)N, (void)K, (void)pa, (void)pack_b, (void)pb_ctx, (void)C, (void)ldc,
        (void)ep;
    return false;
}

#endif
