/*
 * libopt/exec/cpu/qdwconv.c — depthwise QLinearConv / ConvInteger (one input channel per group,
 * any channel multiplier) straight on AVX-512 VNNI, without the GEMM (qgemm.h).
 *
 * Why: as a GEMM, a depthwise conv is one [1 x k*k] by [k*k x pixels] product per channel. The
 * pixels are unfolded and packed for 9 multiply-adds each and 7 of the tile's 8 rows are idle,
 * so MobileNetV2's int8 depthwise convs took about 20 of its 26 ms on one thread (4x the whole
 * float32 model).
 *
 * How: 16 outputs of a row at a time. For each kernel row and each group of 4 taps, one 64-byte
 * load of the input row, vpermd + vpshufb put the 4 input bytes each output reads
 * (x'[o*sw + t*dw], t < 4) in its 32-bit lane, and one vpdpbusd adds their 4 products with the
 * taps' weights (exact: no saturation). Bytes are xor'ed with flip as the GEMM path does
 * (x' = x + 128 for int8 activations), and the padding reads as the input zero point, so a padded
 * tap adds (xz - xz) * w = 0 as the GEMM path's fill does: rows are read in place, with masked
 * loads at their ends supplying it (a kernel row outside the plane reads a row of it). Rows of 8
 * outputs or fewer (7x7 maps) go two or four to a vector from a padded copy of the plane. The sums
 * get the GEMM path's row bias (b - xz' * sum w') and its epilogue (nn_qrequant16, or raw int32
 * for ConvInteger), so the bytes are the GEMM path's, and ONNX Runtime's.
 *
 * Applies when the weights have no zero point (symmetric int8 weights, as mopt quant and ONNX
 * Runtime write them) and stride and dilation keep a group's bytes inside a 16-byte lane.
 */
#include "libopt/exec/cpu/qgemm.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DW_X86 1
#define DW_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
#else
#define DW_X86 0
#endif

#define DW_MAX_WORDS 64 /* kernel rows x 4-tap groups (and kernel rows): up to 8 x 8, say, or 16 x 4 */

static int64_t tap_groups(int64_t KW)
{
    return (KW + 3) / 4;
}

bool nn_qdw_ok(nn_qisa isa, const nn_conv_geom *g, const nn_qweights *pw)
{
    if (!DW_X86 || isa != NN_QISA_VNNI || g->nsp < 1 || g->nsp > 2) return false;
    if (g->group != g->C || g->M % g->group != 0 || pw->any_zp || pw->hwc) return false;
    nn_plane2d p = nn_plane2d_of(g);
    int64_t taps = p.KW < 4 ? p.KW : 4;
    /* vpermd gives 128-bit lane L the dwords L*sw .. L*sw+3 of the load; vpshufb then picks byte
     * o*sw + t*dw of them for output o (0..3) and tap t: both must stay inside the lane. */
    if (p.sw > 4 || 3 * p.sw + (taps - 1) * p.dw > 15) return false;
    return p.KH * tap_groups(p.KW) <= DW_MAX_WORDS && p.KH * p.KW == pw->K;
}

#if DW_X86
typedef struct dwctx {
    nn_plane2d p;
    int64_t N, C, Mg, Hp, Wp, pt, pb, pl, pr, kg, nw;
    int rows;         /* output rows per vector: 1, or 2 or 4 when a row takes 2 or 1 lanes */
    int lpr;          /* 128-bit lanes per output row within a vector (4 when rows == 1) */
    int32_t pidx[16]; /* vpermd: lane L takes the dwords its 4 outputs read */
    uint8_t sidx[64]; /* vpshufb: output o, tap t of a lane reads its byte o*sw + t*dw */
    const int32_t *wv; /* per output channel, nw words: 4 taps of a kernel row each */
    const uint8_t *x, *x_end; /* the input's bytes */
    const uint8_t *fillrow;   /* rows == 1: a row of fill ^ flip, readable 64 bytes before, W + 64 after */
    uint8_t flip, fill;
    const int32_t *rbias;
    const float *rmul;
    int32_t zp, lo, hi; /* lo, hi: the clamp of 8-bit outputs */
    int out_dt;
    void *y;
    int failed; /* set (atomically) by a chunk that ran out of memory */
} dwctx;

/* n bytes of v at dst, 64 at a time (no call: the pads are a few bytes each). */
static inline __attribute__((always_inline)) DW_VNNI void dw_fill(uint8_t *dst, int64_t n, __m512i v)
{
    for (int64_t i = 0; i < n; i += 64)
        _mm512_mask_storeu_epi8(dst + i, n - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n - i)) - 1), v);
}

/* The plane of image n, channel c into buf (Hp rows of Wp bytes, Wp a multiple of 4, then 64
 * bytes of slack that loads past the last row may touch), flipped, padding = fill. */
static DW_VNNI void dw_pad_plane(const dwctx *d, int64_t n, int64_t c, uint8_t *buf)
{
    const int64_t H = d->p.H, W = d->p.W, Wp = d->Wp;
    const uint8_t *src = d->x + (n * d->C + c) * H * W;
    const __m512i fx = _mm512_set1_epi8((char)d->flip), fv = _mm512_set1_epi8((char)d->fill);
    dw_fill(buf, d->pt * Wp, fv);
    if (Wp <= 64 && W < 64) { /* a row in one masked load (fill around the W bytes) and one 64-byte store */
        const __mmask64 k = (((__mmask64)1 << W) - 1) << d->pl;
        const __m512i fill_raw = _mm512_set1_epi8((char)(d->fill ^ d->flip));
        for (int64_t h = 0; h < H; h++) {
            /* masked-off bytes are not read: the address may lie before the plane */
            const uint8_t *a = (const uint8_t *)((uintptr_t)(src + h * W) - (uintptr_t)d->pl);
            _mm512_storeu_si512(buf + (d->pt + h) * Wp, _mm512_xor_si512(_mm512_mask_loadu_epi8(fill_raw, k, a), fx));
        }
        dw_fill(buf + (d->pt + H) * Wp, d->pb * Wp + 64, fv);
        return;
    }
    for (int64_t h = 0; h < H; h++) {
        uint8_t *row = buf + (d->pt + h) * Wp;
        const uint8_t *s = src + h * W;
        dw_fill(row, d->pl, fv);
        for (int64_t w = 0; w < W; w += 64) {
            __mmask64 k = W - w >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (W - w)) - 1);
            _mm512_mask_storeu_epi8(row + d->pl + w, k, _mm512_xor_si512(_mm512_maskz_loadu_epi8(k, s + w), fx));
        }
        dw_fill(row + d->pl + W, d->pr, fv);
    }
    dw_fill(buf + (d->pt + H) * Wp, d->pb * Wp + 64, fv);
}

/* The sums of 16 outputs starting at r (rows == 1: 16 of one row; else `rows` rows of 4 * lpr). */
static inline __attribute__((always_inline)) DW_VNNI __m512i
dw_sums(const dwctx *d, const uint8_t *r, const int32_t *wv, __m512i acc, __m512i vp, __m512i vs)
{
    const nn_plane2d p = d->p;
    for (int64_t kh = 0; kh < p.KH; kh++, r += p.dh * d->Wp)
        for (int64_t q = 0; q < d->kg; q++) {
            __m512i v = _mm512_loadu_si512(r + 4 * q * p.dw);
            v = _mm512_shuffle_epi8(_mm512_permutexvar_epi32(vp, v), vs);
            acc = _mm512_dpbusd_epi32(acc, v, _mm512_set1_epi32(wv[kh * d->kg + q]));
        }
    return acc;
}

/* Long rows (rows == 1), read in place from the input plane x (H x W). A kernel row above or
 * below the plane reads d->fillrow instead (fill bytes, 64 before it and W + 64 after). Loads
 * take the bytes of columns [0, W): a plain load inside the row, a masked one (fill for the
 * padding) at its ends. Inlined with constant KH, KG and flip for the common 3x3 kernel, so the
 * loops unroll and the weights stay in registers. */
static inline __attribute__((always_inline)) DW_VNNI void
dw_rows_direct(const dwctx *d, const int KH, const int KG, const bool flip, const uint8_t *x, const int32_t *wv,
               __m512i rb, __m512i vp, __m512i vs, __m512 mul, __m512 flo, __m512 fhi, __m512i zp, char *y)
{
    const nn_plane2d p = d->p;
    const int64_t W = p.W, OW = p.OW, sw = p.sw, pl = d->pl, tail = (p.KW - 1) * p.dw;
    const bool i32 = d->out_dt == OPT_DT_INT32;
    const int64_t es = i32 ? 4 : 1;
    const __m512i fx = _mm512_set1_epi8((char)d->flip), fill_raw = _mm512_set1_epi8((char)(d->fill ^ d->flip));
    __m512i w[DW_MAX_WORDS];
    for (int i = 0; i < KH * KG; i++) w[i] = _mm512_set1_epi32(wv[i]);
    for (int64_t oh = 0; oh < p.OH; oh++) {
        const uint8_t *r[DW_MAX_WORDS];
        int64_t lim = W + 64; /* bytes every row pointer may be read at, from its start */
        for (int kh = 0; kh < KH; kh++) {
            int64_t ih = oh * p.sh - d->pt + kh * p.dh;
            r[kh] = ih >= 0 && ih < p.H ? x + ih * W : d->fillrow;
            if (r[kh] != d->fillrow && d->x_end - r[kh] < lim) lim = d->x_end - r[kh];
        }
        char *yr = y + oh * OW * es;
        for (int64_t ow = 0; ow < OW; ow += 16) {
            const int64_t cs0 = ow * sw - pl, sel = (ow + 15 < OW ? ow + 15 : OW - 1) * sw - pl + tail;
            const bool plain = cs0 >= 0 && sel < W && cs0 + 4 * (KG - 1) * p.dw + 64 <= lim;
            __m512i acc = rb;
            for (int q = 0; q < KG; q++) {
                const int64_t cs = cs0 + 4 * q * p.dw;
                __mmask64 km = ~(__mmask64)0;
                if (!plain) {
                    int64_t lo = cs < 0 ? -cs : 0, hi = W - cs > 64 ? 64 : W - cs;
                    km = hi <= lo ? 0
                                  : (hi == 64 ? ~(__mmask64)0 : (((__mmask64)1 << hi) - 1)) & ~(((__mmask64)1 << lo) - 1);
                }
                for (int kh = 0; kh < KH; kh++) {
                    /* masked-off bytes are not read: the address may lie outside the row */
                    const uint8_t *a = (const uint8_t *)((uintptr_t)r[kh] + (uintptr_t)cs);
                    __m512i v = plain ? _mm512_loadu_si512(a) : _mm512_mask_loadu_epi8(fill_raw, km, a);
                    if (flip) v = _mm512_xor_si512(v, fx);
                    v = _mm512_shuffle_epi8(_mm512_permutexvar_epi32(vp, v), vs);
                    acc = _mm512_dpbusd_epi32(acc, v, w[kh * KG + q]);
                }
            }
            int64_t left = OW - ow;
            __mmask16 k = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            if (i32) _mm512_mask_storeu_epi32((int32_t *)yr + ow, k, acc);
            else _mm512_mask_cvtepi32_storeu_epi8(yr + ow, k, nn_qrequant16(acc, mul, flo, fhi, zp));
        }
    }
}

/* dw_rows_direct for a 3x3 kernel (one tap group per row), written out. */
static inline __attribute__((always_inline)) DW_VNNI void
dw_rows_3x3(const dwctx *d, const bool flip, const uint8_t *x, const int32_t *wv, __m512i rb, __m512i vp, __m512i vs,
            __m512 mul, __m512 flo, __m512 fhi, __m512i zp, char *y)
{
    const nn_plane2d p = d->p;
    const int64_t W = p.W, OW = p.OW, sw = p.sw, pl = d->pl, tail = 2 * p.dw;
    const __m512i fx = _mm512_set1_epi8((char)d->flip), fill_raw = _mm512_set1_epi8((char)(d->fill ^ d->flip));
    const __m512i w0 = _mm512_set1_epi32(wv[0]), w1 = _mm512_set1_epi32(wv[1]), w2 = _mm512_set1_epi32(wv[2]);
    for (int64_t oh = 0; oh < p.OH; oh++) {
        const int64_t ih = oh * p.sh - d->pt;
        const uint8_t *r0 = ih >= 0 && ih < p.H ? x + ih * W : d->fillrow;
        const uint8_t *r1 = ih + p.dh >= 0 && ih + p.dh < p.H ? x + (ih + p.dh) * W : d->fillrow;
        const uint8_t *r2 = ih + 2 * p.dh >= 0 && ih + 2 * p.dh < p.H ? x + (ih + 2 * p.dh) * W : d->fillrow;
        const uint8_t *rl = r2 != d->fillrow ? r2 : r1 != d->fillrow ? r1 : r0; /* the last real row */
        const int64_t lim = rl != d->fillrow && d->x_end - rl < W + 64 ? d->x_end - rl : W + 64;
        char *yr = y + oh * OW;
        for (int64_t ow = 0; ow < OW; ow += 16) {
            const int64_t cs = ow * sw - pl, sel = (ow + 15 < OW ? ow + 15 : OW - 1) * sw - pl + tail;
            __m512i v0, v1, v2;
            if (cs >= 0 && sel < W && cs + 64 <= lim) {
                v0 = _mm512_loadu_si512(r0 + cs);
                v1 = _mm512_loadu_si512(r1 + cs);
                v2 = _mm512_loadu_si512(r2 + cs);
            } else {
                int64_t lo = cs < 0 ? -cs : 0, hi = W - cs > 64 ? 64 : W - cs;
                __mmask64 km = hi <= lo ? 0
                                        : (hi == 64 ? ~(__mmask64)0 : (((__mmask64)1 << hi) - 1)) &
                                              ~(((__mmask64)1 << lo) - 1);
                /* masked-off bytes are not read: the address may lie outside the row */
                v0 = _mm512_mask_loadu_epi8(fill_raw, km, (const uint8_t *)((uintptr_t)r0 + (uintptr_t)cs));
                v1 = _mm512_mask_loadu_epi8(fill_raw, km, (const uint8_t *)((uintptr_t)r1 + (uintptr_t)cs));
                v2 = _mm512_mask_loadu_epi8(fill_raw, km, (const uint8_t *)((uintptr_t)r2 + (uintptr_t)cs));
            }
            if (flip) {
                v0 = _mm512_xor_si512(v0, fx);
                v1 = _mm512_xor_si512(v1, fx);
                v2 = _mm512_xor_si512(v2, fx);
            }
            __m512i acc = _mm512_dpbusd_epi32(rb, _mm512_shuffle_epi8(_mm512_permutexvar_epi32(vp, v0), vs), w0);
            acc = _mm512_dpbusd_epi32(acc, _mm512_shuffle_epi8(_mm512_permutexvar_epi32(vp, v1), vs), w1);
            acc = _mm512_dpbusd_epi32(acc, _mm512_shuffle_epi8(_mm512_permutexvar_epi32(vp, v2), vs), w2);
            int64_t left = OW - ow;
            __mmask16 k = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            _mm512_mask_cvtepi32_storeu_epi8(yr + ow, k, nn_qrequant16(acc, mul, flo, fhi, zp));
        }
    }
}

/* Output channel m (input plane buf), all its rows. */
static DW_VNNI void dw_channel(const dwctx *d, const uint8_t *buf, int64_t n, int64_t m)
{
    const nn_plane2d p = d->p;
    const int32_t *wv = d->wv + m * d->nw;
    const __m512i vp = _mm512_loadu_si512(d->pidx), vs = _mm512_loadu_si512(d->sidx);
    const __m512i rb = _mm512_set1_epi32(d->rbias[m]);
    const bool i32 = d->out_dt == OPT_DT_INT32;
    const __m512 mul = _mm512_set1_ps(d->rmul ? d->rmul[m] : 0.0f);
    const __m512 flo = _mm512_set1_ps((float)(d->lo - d->zp)), fhi = _mm512_set1_ps((float)(d->hi - d->zp));
    const __m512i zp = _mm512_set1_epi32(d->zp);
    const int64_t OW = p.OW, es = i32 ? 4 : 1;
    char *y = (char *)d->y + (size_t)((n * d->C * d->Mg + m) * p.OH * OW * es);
    if (d->rows == 1) {
        if (p.KH == 3 && d->kg == 1 && !i32) {
            if (d->flip) dw_rows_3x3(d, true, buf, wv, rb, vp, vs, mul, flo, fhi, zp, y);
            else dw_rows_3x3(d, false, buf, wv, rb, vp, vs, mul, flo, fhi, zp, y);
        } else {
            dw_rows_direct(d, (int)p.KH, (int)d->kg, d->flip != 0, buf, wv, rb, vp, vs, mul, flo, fhi, zp, y);
        }
        return;
    }
    /* Short rows: `rows` output rows per vector, row j in dwords [4*lpr*j, 4*lpr*j + OW) */
    const __mmask16 k = (__mmask16)((1u << OW) - 1);
    for (int64_t oh = 0; oh < p.OH; oh += d->rows) {
        __m512i acc = dw_sums(d, buf + oh * p.sh * d->Wp, wv, rb, vp, vs);
        int64_t nr = p.OH - oh < d->rows ? p.OH - oh : d->rows;
        if (i32) {
            for (int64_t j = 0; j < nr; j++) {
                _mm512_mask_storeu_epi32((int32_t *)y + (oh + j) * OW, k, acc);
                acc = d->lpr == 1 ? _mm512_alignr_epi32(acc, acc, 4) : _mm512_alignr_epi32(acc, acc, 8);
            }
        } else {
            __m128i b = _mm512_cvtepi32_epi8(nn_qrequant16(acc, mul, flo, fhi, zp));
            for (int64_t j = 0; j < nr; j++) {
                _mm_mask_storeu_epi8(y + (oh + j) * OW, k, b);
                b = d->lpr == 1 ? _mm_bsrli_si128(b, 4) : _mm_bsrli_si128(b, 8);
            }
        }
    }
}

static void dw_run(void *ctx, size_t b, size_t e)
{
    dwctx *d = ctx;
    const size_t bytes = (size_t)(d->Hp * d->Wp) + 64;
    uint8_t *buf = d->rows > 1 ? malloc(2 * bytes) : NULL;
    if (d->rows > 1 && !buf) {
        __atomic_store_n(&d->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    /* Padded planes (short rows) are built one plane ahead, in two buffers taking turns: read
     * right after they are written, the 64-byte loads would wait for the small stores that make
     * them (no store-to-load forwarding across several stores), about 3x the plane's time. */
    if (buf && b < e) dw_pad_plane(d, (int64_t)b / d->C, (int64_t)b % d->C, buf);
    for (size_t u = b; u < e; u++) {
        int64_t n = (int64_t)u / d->C, c = (int64_t)u % d->C;
        const uint8_t *src = d->x + (n * d->C + c) * d->p.H * d->p.W;
        if (buf) {
            src = buf + (u - b) % 2 * bytes;
            if (u + 1 < e) dw_pad_plane(d, (int64_t)(u + 1) / d->C, (int64_t)(u + 1) % d->C, buf + (u + 1 - b) % 2 * bytes);
        }
        for (int64_t j = 0; j < d->Mg; j++) dw_channel(d, src, n, c * d->Mg + j);
    }
    free(buf);
}

/* Lanes, rows per vector and the two shuffles' indices for d's geometry. */
static void dw_layout(dwctx *d)
{
    const nn_plane2d p = d->p;
    d->rows = 1;
    d->lpr = 4;
    int64_t lpr = (p.OW + 3) / 4, rstep = p.sh * d->Wp / 4; /* dwords between output rows' inputs */
    if (lpr <= 2 && p.OH > 1) {
        int rows = (int)(4 / lpr);
        if ((rows - 1) * rstep + (lpr - 1) * p.sw + 3 <= 15) d->rows = rows, d->lpr = (int)lpr;
    }
    for (int l = 0; l < 4; l++)
        for (int j = 0; j < 4; j++)
            d->pidx[4 * l + j] = (int32_t)((l / d->lpr) * rstep + (l % d->lpr) * p.sw + j);
    for (int l = 0; l < 4; l++)
        for (int o = 0; o < 4; o++)
            for (int t = 0; t < 4; t++) {
                int64_t at = o * p.sw + t * p.dw; /* taps past KW have weight 0: any byte will do */
                d->sidx[16 * l + 4 * o + t] = (uint8_t)(at < 16 ? at : 0x80);
            }
}
#endif

int32_t *nn_qdw_words(const nn_qweights *pw, int64_t KH, int64_t KW)
{
    const int64_t kg = tap_groups(KW), nw = KH * kg;
    int32_t *wv = malloc((size_t)(pw->rows * nw) * sizeof *wv + 1);
    if (!wv) return NULL;
    for (int64_t m = 0; m < pw->rows; m++) {
        const uint8_t *wr = pw->w + m * pw->Kp; /* int8 taps, kh * KW + kw */
        for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t q = 0; q < kg; q++) {
                uint8_t b[4] = {0, 0, 0, 0};
                for (int64_t t = 0; t < 4 && 4 * q + t < KW; t++) b[t] = wr[kh * KW + 4 * q + t];
                memcpy(&wv[m * nw + kh * kg + q], b, 4);
            }
    }
    return wv;
}

bool nn_qdw(opt_kctx *k, const nn_conv_geom *g, const nn_qweights *pw, const uint8_t *x, uint8_t flip,
            uint8_t fill, const int32_t *rbias, const float *rmul, int32_t zp, int out_dt, int32_t lo,
            int32_t hi, void *y)
{
#if DW_X86
    nn_plane2d p = nn_plane2d_of(g);
    int two = g->nsp == 2;
    dwctx d = {.p = p, .N = g->N, .C = g->C, .Mg = g->M / g->C, .pt = two ? g->pad_b[0] : 0,
               .pb = two ? g->pad_e[0] : 0, .pl = g->pad_b[g->nsp - 1], .kg = tap_groups(p.KW), .x = x,
               .flip = flip, .fill = fill, .rbias = rbias, .rmul = rmul, .zp = zp, .lo = lo, .hi = hi, .out_dt = out_dt,
               .y = y};
    d.nw = p.KH * d.kg;
    d.x_end = x + g->N * g->C * p.H * p.W;
    d.Hp = p.H + d.pt + d.pb;
    d.Wp = (p.W + d.pl + g->pad_e[g->nsp - 1] + 3) & ~(int64_t)3; /* rows start on dwords */
    d.pr = d.Wp - p.W - d.pl;
    dw_layout(&d);
    bool have = pw->dw && pw->dw_kw == p.KW;
    int32_t *own = have ? NULL : nn_qdw_words(pw, p.KH, p.KW);
    const int32_t *wv = have ? pw->dw : own;
    if (!wv) return false;
    d.wv = wv;
    uint8_t *fr = NULL;
    if (d.rows == 1) {
        fr = malloc((size_t)p.W + 128);
        if (!fr) {
            free(own);
            return false;
        }
        memset(fr, fill ^ flip, (size_t)p.W + 128);
        d.fillrow = fr + 64;
    }
    nn_parallel(k, (size_t)(g->N * g->C), dw_run, &d);
    free(own);
    free(fr);
    return !d.failed;
#else
    (void)k, (void)g, (void)pw, (void)x, (void)flip, (void)fill, (void)rbias, (void)rmul, (void)zp, (void)out_dt,
        (void)lo, (void)hi, (void)y;
    return false;
#endif
}
