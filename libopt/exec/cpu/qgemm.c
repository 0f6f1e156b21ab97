/*
 * libopt/exec/cpu/qgemm.c — 8-bit integer GEMM: packing, the AVX-512 VNNI / AVX2 / C tile
 * kernels, the requantising epilogue, the threaded driver and the reference twin (qgemm.h).
 *
 * Why these choices: vpdpbusd adds four uint8 x int8 products into each int32 lane without
 * intermediate saturation, so it is exact; vpmaddubsw (the usual AVX2 route) saturates pairs to
 * int16 (255 * 127 * 2 > 32767), so the AVX2 kernel widens to int16 and uses vpmaddwd instead.
 * The epilogue requantises as ONNX Runtime's MLAS does (nn_qrequant: float32 product, clamp,
 * round half to even), so every kernel gives the same bytes, and ONNX Runtime's.
 */
#include "libopt/exec/cpu/qgemm.h"

#include <emmintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QG_X86 1
#include <immintrin.h>
#define QG_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
#define QG_AVX2 __attribute__((target("avx2")))
#define QG_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"), optimize("fp-contract=off")))
#else
#define QG_X86 0
#endif

/* ---- ISA choice ------------------------------------------------------------------------------ */

bool nn_qisa_available(nn_qisa isa)
{
#if QG_X86
    __builtin_cpu_init();
    switch (isa) {
    case NN_QISA_C: return true;
    case NN_QISA_AVX2: return __builtin_cpu_supports("avx2");
    case NN_QISA_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vnni");
    }
    return false;
#else
    return isa == NN_QISA_C;
#endif
}

const char *nn_qisa_name(nn_qisa isa)
{
    return isa == NN_QISA_VNNI ? "avx512-vnni" : isa == NN_QISA_AVX2 ? "avx2" : "c";
}

nn_qisa nn_qisa_best(void)
{
    static int best = -1;
    int b = __atomic_load_n(&best, __ATOMIC_RELAXED);
    if (b >= 0) return (nn_qisa)b;
    b = nn_qisa_available(NN_QISA_VNNI) ? NN_QISA_VNNI : nn_qisa_available(NN_QISA_AVX2) ? NN_QISA_AVX2 : NN_QISA_C;
    const char *env = getenv("MOPT_QGEMM_ISA");
    if (env) {
        nn_qisa want = strcmp(env, "c") == 0 ? NN_QISA_C : strcmp(env, "avx2") == 0 ? NN_QISA_AVX2 : NN_QISA_VNNI;
        if (nn_qisa_available(want)) b = want;
    }
    __atomic_store_n(&best, b, __ATOMIC_RELAXED);
    return (nn_qisa)b;
}

/* ---- packing --------------------------------------------------------------------------------- */

void nn_qpack_panel(const uint8_t *b, int64_t ldb, int64_t K, int64_t j0, int64_t nc, uint8_t flip,
                    uint8_t *panel)
{
    static const uint8_t zero[NN_QNR];
    int64_t kq = nn_qkp(K) / 4;
    const __m128i fx = _mm_set1_epi8((char)flip);
    for (int64_t q = 0; q < kq; q++) {
        const uint8_t *r[4];
        bool real[4];
        for (int t = 0; t < 4; t++) {
            real[t] = 4 * q + t < K;
            r[t] = real[t] ? b + (4 * q + t) * ldb + j0 : zero;
        }
        uint8_t *o = panel + q * NN_QNR * 4;
        int64_t c = 0;
        if (real[3]) /* all four rows real: SSE2 byte interleave, 16 columns at a time */
            for (; c + 16 <= nc; c += 16) {
                __m128i a0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r[0] + c)), fx);
                __m128i a1 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r[1] + c)), fx);
                __m128i a2 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r[2] + c)), fx);
                __m128i a3 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r[3] + c)), fx);
                __m128i l01 = _mm_unpacklo_epi8(a0, a1), h01 = _mm_unpackhi_epi8(a0, a1);
                __m128i l23 = _mm_unpacklo_epi8(a2, a3), h23 = _mm_unpackhi_epi8(a2, a3);
                _mm_storeu_si128((__m128i *)(o + c * 4), _mm_unpacklo_epi16(l01, l23));
                _mm_storeu_si128((__m128i *)(o + c * 4 + 16), _mm_unpackhi_epi16(l01, l23));
                _mm_storeu_si128((__m128i *)(o + c * 4 + 32), _mm_unpacklo_epi16(h01, h23));
                _mm_storeu_si128((__m128i *)(o + c * 4 + 48), _mm_unpackhi_epi16(h01, h23));
            }
        for (; c < nc; c++)
            for (int t = 0; t < 4; t++) o[c * 4 + t] = real[t] ? (uint8_t)(r[t][c] ^ flip) : 0;
        memset(o + nc * 4, 0, (size_t)(NN_QNR - nc) * 4);
    }
}

void nn_qpack(const uint8_t *b, int64_t ldb, int64_t K, int64_t N, uint8_t flip, uint8_t *dst)
{
    size_t pb = (size_t)nn_qkp(K) * NN_QNR;
    for (int64_t j0 = 0, p = 0; j0 < N; j0 += NN_QNR, p++)
        nn_qpack_panel(b, ldb, K, j0, N - j0 < NN_QNR ? N - j0 : NN_QNR, flip, dst + (size_t)p * pb);
}

/* ---- tile kernels ---------------------------------------------------------------------------- */

static inline int32_t ld4(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void tile_c(bool su, int mr, int nc, const uint8_t *const *s, const uint8_t *panel, int64_t kq,
                   int32_t *tile)
{
    for (int r = 0; r < mr; r++) {
        int32_t *t = tile + r * NN_QNR;
        for (int c = 0; c < nc; c++) t[c] = 0;
        for (int64_t q = 0; q < kq; q++) {
            const uint8_t *sp = s[r] + 4 * q, *v = panel + q * NN_QNR * 4;
            int32_t s0, s1, s2, s3;
            if (su) s0 = sp[0], s1 = sp[1], s2 = sp[2], s3 = sp[3];
            else s0 = (int8_t)sp[0], s1 = (int8_t)sp[1], s2 = (int8_t)sp[2], s3 = (int8_t)sp[3];
            for (int c = 0; c < nc; c++) {
                const uint8_t *vc = v + c * 4;
                if (su)
                    t[c] += s0 * (int8_t)vc[0] + s1 * (int8_t)vc[1] + s2 * (int8_t)vc[2] + s3 * (int8_t)vc[3];
                else
                    t[c] += s0 * vc[0] + s1 * vc[1] + s2 * vc[2] + s3 * vc[3];
            }
        }
    }
}

#if QG_X86
/* The epilogue of a tile written straight from its accumulators (8-bit output, the tile's
 * columns inside one image): row r goes to dst + r * ldo. Row arrays start at the tile's first
 * row, column arrays at its first column; NULL: the term is absent. */
typedef struct qg_fuse {
    const int32_t *rbias, *cbias;
    const int32_t *rfac, *cfac; /* both or neither */
    const float *rmul, *cmul;   /* at most one; neither: mul */
    float mul;
    int32_t zp, lo, hi;
    uint8_t *dst;
    int64_t ldo;
} qg_fuse;

/* mr rows x 16*nv columns (nv = 1..3) in nv*mr zmm accumulators; inlined per constant mr and nv
 * so they stay in registers. A panel's last columns may be few (a 7x7 image has 49 pixels: 48 +
 * 1): nv follows them, so a 1-column remainder costs one zmm per row, not three. With fz the
 * sums are requantised (nn_qrequant) and nc columns stored as bytes; else all go to tile. */
static inline __attribute__((always_inline)) QG_VNNI void
tile_vnni_mr(const int mr, const int nv, const bool su, const uint8_t *const *s, const uint8_t *panel, int64_t kq,
             int32_t *tile, const qg_fuse *fz, int nc)
{
    __m512i acc[NN_QMR][3];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_si512();
    for (int64_t q = 0; q < kq; q++) {
        const uint8_t *vp = panel + q * NN_QNR * 4;
        __m512i v[3];
#pragma GCC unroll 3
        for (int c = 0; c < nv; c++) v[c] = _mm512_loadu_si512(vp + 64 * c);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512i b = _mm512_set1_epi32(ld4(s[r] + 4 * q));
#pragma GCC unroll 3
            for (int c = 0; c < nv; c++)
                acc[r][c] = su ? _mm512_dpbusd_epi32(acc[r][c], b, v[c]) : _mm512_dpbusd_epi32(acc[r][c], v[c], b);
        }
    }
    if (!fz) {
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++)
#pragma GCC unroll 3
            for (int c = 0; c < nv; c++) _mm512_storeu_si512(tile + r * NN_QNR + 16 * c, acc[r][c]);
        return;
    }
    const __m512 flo = _mm512_set1_ps((float)(fz->lo - fz->zp)), fhi = _mm512_set1_ps((float)(fz->hi - fz->zp));
    const __m512i zp = _mm512_set1_epi32(fz->zp);
    int rest = nc - 16 * (nv - 1);
    __mmask16 last = rest >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rest) - 1);
    /* the same sum and requantisation as epi_row_avx512, column vector by column vector */
#pragma GCC unroll 3
    for (int c = 0; c < nv; c++) {
        __mmask16 k = c == nv - 1 ? last : (__mmask16)0xffff;
        __m512i cb = fz->cbias ? _mm512_maskz_loadu_epi32(k, fz->cbias + 16 * c) : _mm512_setzero_si512();
        __m512i cf = fz->cfac ? _mm512_maskz_loadu_epi32(k, fz->cfac + 16 * c) : _mm512_setzero_si512();
        __m512 cm = fz->cmul ? _mm512_maskz_loadu_ps(k, fz->cmul + 16 * c) : _mm512_set1_ps(fz->mul);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512i v = _mm512_add_epi32(acc[r][c], cb);
            if (fz->rbias) v = _mm512_add_epi32(v, _mm512_set1_epi32(fz->rbias[r]));
            if (fz->cfac) v = _mm512_add_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(fz->rfac[r]), cf));
            __m512 m = fz->rmul ? _mm512_set1_ps(fz->rmul[r]) : cm;
            _mm512_mask_cvtepi32_storeu_epi8(fz->dst + r * fz->ldo + 16 * c, k, nn_qrequant16(v, m, flo, fhi, zp));
        }
    }
}

#define QG_CASES(F, nv, su)                                                                      \
    switch (mr) {                                                                                \
    case 1: F(1, nv, su, s, panel, kq, tile, fz, nc); break;                                     \
    case 2: F(2, nv, su, s, panel, kq, tile, fz, nc); break;                                     \
    case 3: F(3, nv, su, s, panel, kq, tile, fz, nc); break;                                     \
    case 4: F(4, nv, su, s, panel, kq, tile, fz, nc); break;                                     \
    case 5: F(5, nv, su, s, panel, kq, tile, fz, nc); break;                                     \
    case 6: F(6, nv, su, s, panel, kq, tile, fz, nc); break;                                     \
    case 7: F(7, nv, su, s, panel, kq, tile, fz, nc); break;                                     \
    default: F(8, nv, su, s, panel, kq, tile, fz, nc); break;                                    \
    }

#define QG_TILE_VNNI(name, nv, su)                                                               \
    static QG_VNNI void name(int mr, const uint8_t *const *s, const uint8_t *panel, int64_t kq, \
                             int32_t *tile, const qg_fuse *fz, int nc)                           \
    {                                                                                            \
        QG_CASES(tile_vnni_mr, nv, su)                                                           \
    }
QG_TILE_VNNI(tile_vnni_su1, 1, true)
QG_TILE_VNNI(tile_vnni_su2, 2, true)
QG_TILE_VNNI(tile_vnni_su3, 3, true)
QG_TILE_VNNI(tile_vnni_ss1, 1, false)
QG_TILE_VNNI(tile_vnni_ss2, 2, false)
QG_TILE_VNNI(tile_vnni_ss3, 3, false)

typedef void (*qg_vnni_fn)(int, const uint8_t *const *, const uint8_t *, int64_t, int32_t *, const qg_fuse *, int);

static qg_vnni_fn tile_vnni_pick(bool su, int nc)
{
    static const qg_vnni_fn fns[2][3] = {{tile_vnni_ss1, tile_vnni_ss2, tile_vnni_ss3},
                                          {tile_vnni_su1, tile_vnni_su2, tile_vnni_su3}};
    return fns[su][nc <= 16 ? 0 : nc <= 32 ? 1 : 2];
}

/* AVX2: bytes widened to int16 (even and odd k of each 4-byte group), vpmaddwd into int32. Rows
 * in blocks of 4, columns in blocks of 16 (two ymm), re-reading the panel per block. */
static inline __attribute__((always_inline)) QG_AVX2 void
tile_avx2_blk(const bool su, const int nr, const uint8_t *const *s, const uint8_t *panel, int64_t kq, int32_t *tile, int cb)
{
    const __m256i lo8 = _mm256_set1_epi16(0x00ff);
    __m256i acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t q = 0; q < kq; q++) {
        const uint8_t *v = panel + q * NN_QNR * 4 + cb * 64;
        __m256i w0 = _mm256_loadu_si256((const __m256i *)v), w1 = _mm256_loadu_si256((const __m256i *)(v + 32));
        __m256i e0, o0, e1, o1;
        if (su) { /* V signed */
            e0 = _mm256_srai_epi16(_mm256_slli_epi16(w0, 8), 8), o0 = _mm256_srai_epi16(w0, 8);
            e1 = _mm256_srai_epi16(_mm256_slli_epi16(w1, 8), 8), o1 = _mm256_srai_epi16(w1, 8);
        } else {
            e0 = _mm256_and_si256(w0, lo8), o0 = _mm256_srli_epi16(w0, 8);
            e1 = _mm256_and_si256(w1, lo8), o1 = _mm256_srli_epi16(w1, 8);
        }
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            __m256i b = _mm256_set1_epi32(ld4(s[r] + 4 * q)), be, bo;
            if (su) be = _mm256_and_si256(b, lo8), bo = _mm256_srli_epi16(b, 8);
            else be = _mm256_srai_epi16(_mm256_slli_epi16(b, 8), 8), bo = _mm256_srai_epi16(b, 8);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_add_epi32(_mm256_madd_epi16(e0, be), _mm256_madd_epi16(o0, bo)));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_add_epi32(_mm256_madd_epi16(e1, be), _mm256_madd_epi16(o1, bo)));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++) {
        _mm256_storeu_si256((__m256i *)(tile + r * NN_QNR + cb * 16), acc[r][0]);
        _mm256_storeu_si256((__m256i *)(tile + r * NN_QNR + cb * 16 + 8), acc[r][1]);
    }
}

static QG_AVX2 void tile_avx2(bool su, int mr, int nc, const uint8_t *const *s, const uint8_t *panel, int64_t kq,
                              int32_t *tile)
{
    for (int r0 = 0; r0 < mr; r0 += 4) {
        int nr = mr - r0 < 4 ? mr - r0 : 4;
        for (int cb = 0; cb < (nc + 15) / 16; cb++) {
            if (nr == 4) {
                if (su) tile_avx2_blk(true, 4, s + r0, panel, kq, tile + r0 * NN_QNR, cb);
                else tile_avx2_blk(false, 4, s + r0, panel, kq, tile + r0 * NN_QNR, cb);
            } else {
                for (int r = 0; r < nr; r++) {
                    if (su) tile_avx2_blk(true, 1, s + r0 + r, panel, kq, tile + (r0 + r) * NN_QNR, cb);
                    else tile_avx2_blk(false, 1, s + r0 + r, panel, kq, tile + (r0 + r) * NN_QNR, cb);
                }
            }
        }
    }
}
#endif

void nn_qtile(nn_qisa isa, bool s_unsigned, int mr, int nc, const uint8_t *const *s, const uint8_t *panel,
              int64_t kq, int32_t *tile)
{
#if QG_X86
    if (isa == NN_QISA_VNNI) {
        tile_vnni_pick(s_unsigned, nc)(mr, s, panel, kq, tile, NULL, nc);
        return;
    }
    if (isa == NN_QISA_AVX2) {
        tile_avx2(s_unsigned, mr, nc, s, panel, kq, tile);
        return;
    }
#endif
    tile_c(s_unsigned, mr, nc, s, panel, kq, tile);
}

/* ---- epilogue -------------------------------------------------------------------------------- */

static inline int32_t epi_sum(const nn_qepi *ep, int32_t t, int64_t i, int64_t j, const int32_t *cfac, int64_t jc)
{
    uint32_t v = (uint32_t)t;
    if (ep->rbias) v += (uint32_t)ep->rbias[i];
    if (ep->cbias) v += (uint32_t)ep->cbias[j];
    if (ep->rfac) v += (uint32_t)ep->rfac[i] * (uint32_t)cfac[jc];
    return (int32_t)v;
}

static inline int32_t epi_requant(const nn_qepi *ep, int32_t v, int64_t i, int64_t j)
{
    float m = ep->rmul ? ep->rmul[i] : ep->cmul ? ep->cmul[j] : ep->mul;
    int32_t lo, hi;
    nn_qrange(ep->out_dt, ep->clamp, ep->lo, ep->hi, &lo, &hi);
    return nn_qrequant(v, m, ep->zp, lo, hi);
}

static void epi_row_c(const nn_qepi *ep, const int32_t *t, int64_t i, int64_t j, int64_t n, const int32_t *cfac_local,
                      void *dst)
{
    const int32_t *cf = cfac_local ? cfac_local : ep->cfac;
    int64_t jc0 = cfac_local ? 0 : j;
    for (int64_t c = 0; c < n; c++) {
        int32_t v = epi_sum(ep, t[c], i, j + c, cf, jc0 + c);
        if (ep->out_dt == OPT_DT_INT32) ((int32_t *)dst)[c] = v;
        else if (ep->out_dt == OPT_DT_UINT8) ((uint8_t *)dst)[c] = (uint8_t)epi_requant(ep, v, i, j + c);
        else ((int8_t *)dst)[c] = (int8_t)epi_requant(ep, v, i, j + c);
    }
}

#if QG_X86
static QG_AVX512 void epi_row_avx512(const nn_qepi *ep, const int32_t *t, int64_t i, int64_t j, int64_t n,
                                     const int32_t *cfac_local, void *dst)
{
    const int32_t *cf = cfac_local ? cfac_local : ep->cfac ? ep->cfac + j : NULL;
    __m512i rb = _mm512_set1_epi32(ep->rbias ? ep->rbias[i] : 0), rf = _mm512_set1_epi32(ep->rfac ? ep->rfac[i] : 0);
    int32_t lo, hi;
    nn_qrange(ep->out_dt, ep->clamp, ep->lo, ep->hi, &lo, &hi);
    const __m512 flo = _mm512_set1_ps((float)(lo - ep->zp)), fhi = _mm512_set1_ps((float)(hi - ep->zp));
    const __m512i zp = _mm512_set1_epi32(ep->zp);
    __m512 m = _mm512_set1_ps(ep->rmul ? ep->rmul[i] : ep->mul);
    for (int64_t c = 0; c < n; c += 16) {
        __mmask16 k = n - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - c)) - 1);
        __m512i v = _mm512_add_epi32(_mm512_maskz_loadu_epi32(k, t + c), rb);
        if (ep->cbias) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(k, ep->cbias + j + c));
        if (cf) v = _mm512_add_epi32(v, _mm512_mullo_epi32(rf, _mm512_maskz_loadu_epi32(k, cf + c)));
        if (ep->out_dt == OPT_DT_INT32) {
            _mm512_mask_storeu_epi32((int32_t *)dst + c, k, v);
            continue;
        }
        if (ep->cmul) m = _mm512_maskz_loadu_ps(k, ep->cmul + j + c);
        _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)dst + c, k, nn_qrequant16(v, m, flo, fhi, zp));
    }
}
#endif

void nn_qepi_row(nn_qisa isa, const nn_qepi *ep, const int32_t *t, int64_t i, int64_t j, int64_t n,
                 const int32_t *cfac_local, void *dst)
{
#if QG_X86
    if (isa == NN_QISA_VNNI) {
        epi_row_avx512(ep, t, i, j, n, cfac_local, dst);
        return;
    }
#endif
    (void)isa;
    epi_row_c(ep, t, i, j, n, cfac_local, dst);
}

/* ---- driver ---------------------------------------------------------------------------------- */

typedef struct qg_job {
    const nn_qgemm_args *a;
    nn_qisa isa;
    int64_t n_panels, n_rb, rchunks, rb_per_chunk;
    bool failed;
} qg_job;

static void qg_store(const qg_job *jb, const int32_t *tile, int mr, int64_t i0, int64_t j0, int64_t nc,
                     const int32_t *colsum)
{
    const nn_qgemm_args *a = jb->a;
    size_t es = a->ep->out_dt == OPT_DT_INT32 ? 4 : 1;
    for (int r = 0; r < mr; r++) {
        int64_t i = i0 + r;
        for (int64_t c = 0; c < nc;) {
            int64_t j = j0 + c, img = j / a->P, pix = j % a->P;
            int64_t run = a->P - pix < nc - c ? a->P - pix : nc - c;
            char *dst = (char *)a->out + (size_t)(img * a->img_stride + i * a->ldo + pix) * es;
            nn_qepi_row(jb->isa, a->ep, tile + r * NN_QNR + c, i, j, run, colsum ? colsum + c : NULL, dst);
            c += run;
        }
    }
}

static void qg_chunk(void *ctx, size_t begin, size_t end)
{
    qg_job *jb = ctx;
    const nn_qgemm_args *a = jb->a;
    int64_t Kp = nn_qkp(a->K), kq = Kp / 4;
    size_t pbytes = (size_t)Kp * NN_QNR;
    uint8_t *buf = NULL, *tmp = NULL;
    int32_t *tile = aligned_alloc(64, NN_QMR * NN_QNR * sizeof *tile + NN_QNR * sizeof(int32_t));
    int32_t *colsum = tile ? tile + NN_QMR * NN_QNR : NULL;
    if (!a->vpacked) {
        buf = aligned_alloc(64, (pbytes + 63) & ~(size_t)63);
        tmp = a->pack_tmp ? aligned_alloc(64, (a->pack_tmp + 63) & ~(size_t)63) : NULL;
    }
    if (!tile || (!a->vpacked && (!buf || (a->pack_tmp && !tmp)))) {
        __atomic_store_n(&jb->failed, true, __ATOMIC_RELAXED);
        goto done;
    }
    int64_t cur = -1;
    for (size_t t = begin; t < end; t++) {
        int64_t p = (int64_t)t / jb->rchunks, rc = (int64_t)t % jb->rchunks;
        int64_t j0 = p * NN_QNR, nc = a->N - j0 < NN_QNR ? a->N - j0 : NN_QNR;
        const uint8_t *panel;
        if (a->vpacked) {
            panel = a->vpacked + (size_t)p * pbytes;
        } else {
            if (cur != p) a->pack_v(a->pack_ctx, j0, nc, buf, tmp, a->pack_colsum ? colsum : NULL);
            cur = p;
            panel = buf;
        }
        int64_t rb0 = rc * jb->rb_per_chunk, rb1 = rb0 + jb->rb_per_chunk < jb->n_rb ? rb0 + jb->rb_per_chunk : jb->n_rb;
#if QG_X86
        /* the epilogue inside the tile kernel when it can be (qg_fuse) */
        const nn_qepi *ep = a->ep;
        bool fuse = jb->isa == NN_QISA_VNNI && ep->out_dt != OPT_DT_INT32 && j0 / a->P == (j0 + nc - 1) / a->P;
        qg_vnni_fn fn = fuse ? tile_vnni_pick(a->s_unsigned, (int)nc) : NULL;
        const int32_t *cfac = a->pack_colsum ? colsum : ep->cfac ? ep->cfac + j0 : NULL;
        qg_fuse fz = {.cbias = ep->cbias ? ep->cbias + j0 : NULL, .cfac = ep->rfac ? cfac : NULL,
                      .cmul = ep->cmul ? ep->cmul + j0 : NULL, .mul = ep->mul, .zp = ep->zp, .ldo = a->ldo};
        nn_qrange(ep->out_dt, ep->clamp, ep->lo, ep->hi, &fz.lo, &fz.hi);
#endif
        for (int64_t rb = rb0; rb < rb1; rb++) {
            int64_t i0 = rb * NN_QMR;
            int mr = (int)(a->M - i0 < NN_QMR ? a->M - i0 : NN_QMR);
            const uint8_t *s[NN_QMR];
            for (int r = 0; r < mr; r++) s[r] = a->s + (i0 + r) * a->lds;
#if QG_X86
            if (fuse) {
                fz.rbias = ep->rbias ? ep->rbias + i0 : NULL;
                fz.rfac = fz.cfac ? ep->rfac + i0 : NULL;
                fz.rmul = ep->rmul ? ep->rmul + i0 : NULL;
                fz.dst = (uint8_t *)a->out + (j0 / a->P) * a->img_stride + i0 * a->ldo + j0 % a->P;
                fn(mr, s, panel, kq, tile, &fz, (int)nc);
                continue;
            }
#endif
            nn_qtile(jb->isa, a->s_unsigned, mr, (int)nc, s, panel, kq, tile);
            qg_store(jb, tile, mr, i0, j0, nc, a->pack_colsum ? colsum : NULL);
        }
    }
done:
    free(tile);
    free(buf);
    free(tmp);
}

bool nn_qgemm(opt_kctx *k, nn_qisa isa, const nn_qgemm_args *a)
{
    if (a->M <= 0 || a->N <= 0) return true;
    qg_job jb = {.a = a, .isa = isa};
    jb.n_panels = (a->N + NN_QNR - 1) / NN_QNR;
    jb.n_rb = (a->M + NN_QMR - 1) / NN_QMR;
    int threads = k && k->threads > 1 ? k->threads : 1;
    /* Enough tasks for every thread: split the rows of each panel when panels are few. */
    jb.rchunks = 1;
    if (jb.n_panels < 2 * threads) {
        jb.rchunks = (2 * threads + jb.n_panels - 1) / jb.n_panels;
        if (jb.rchunks > jb.n_rb) jb.rchunks = jb.n_rb;
    }
    jb.rb_per_chunk = (jb.n_rb + jb.rchunks - 1) / jb.rchunks;
    jb.rchunks = (jb.n_rb + jb.rb_per_chunk - 1) / jb.rb_per_chunk;
    size_t tasks = (size_t)(jb.n_panels * jb.rchunks);
    if (threads > 1 && tasks > 1) opt_parallel_for(k, tasks, qg_chunk, &jb);
    else qg_chunk(&jb, 0, tasks);
    return !jb.failed;
}

/* ---- reference ------------------------------------------------------------------------------- */

void nn_qgemm_ref(int64_t M, int64_t N, int64_t K, bool s_unsigned, const uint8_t *s, int64_t lds,
                  const uint8_t *v, int64_t ldv, const nn_qepi *ep, void *out, int64_t ldo)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            int64_t acc = 0;
            for (int64_t q = 0; q < K; q++) {
                int32_t a = s_unsigned ? (int32_t)s[i * lds + q] : (int32_t)(int8_t)s[i * lds + q];
                int32_t b = s_unsigned ? (int32_t)(int8_t)v[q * ldv + j] : (int32_t)v[q * ldv + j];
                acc += (int64_t)a * b;
            }
            epi_row_c(ep, (const int32_t[]){(int32_t)(uint32_t)(uint64_t)acc}, i, j, 1, NULL,
                      (char *)out + (size_t)(i * ldo + j) * (ep->out_dt == OPT_DT_INT32 ? 4 : 1));
        }
}
