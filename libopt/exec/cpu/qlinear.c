/*
 * libopt/exec/cpu/qlinear.c — QLinearConv, ConvInteger, QLinearMatMul and MatMulInteger on the
 * 8-bit integer GEMM (qgemm.h): weights brought to int8 rows or panels once, activations
 * unfolded (im2col) straight into uint8 panels, zero points folded into integer corrections, and
 * requantisation in the GEMM's epilogue. quant.c calls these when nn_qconv_ok / nn_qmatmul_ok
 * hold and keeps its generic int16 loops for everything else.
 *
 * The algebra: with x' = x (uint8) or x + 128 (int8 activations) and w' = w (int8) or w - 128
 * (uint8 weights), and their zero points moved the same way,
 *   sum_k (x_k - xz)(w_k - wz) = sum x'w' - xz' * sum_k w' - wz' * sum_k x' + K * xz' * wz'
 * The first term is the GEMM; sum_k w' is known at load; sum_k x' (only needed when wz' != 0) is
 * taken while packing. Integer arithmetic wraps modulo 2^32, so the result is exact whenever the
 * true sum fits in int32, as it does in the reference.
 */
#include "libopt/exec/cpu/nn.h"
#include "libopt/exec/cpu/qgemm.h"

#include <emmintrin.h>
#include <stdlib.h>
#include <string.h>

static bool is8(const opt_array *a)
{
    return a && (a->dtype == OPT_DT_UINT8 || a->dtype == OPT_DT_INT8);
}

static int32_t ival(const opt_array *a, uint64_t i)
{
    if (!a) return 0;
    switch (a->dtype) {
    case OPT_DT_UINT8: return ((const uint8_t *)a->data)[i];
    case OPT_DT_INT8: return ((const int8_t *)a->data)[i];
    case OPT_DT_INT32: return ((const int32_t *)a->data)[i];
    default: return (int32_t)opt_array_get(a, i);
    }
}

static float fval(const opt_array *a, uint64_t i)
{
    return a->dtype == OPT_DT_FLOAT ? ((const float *)a->data)[i] : (float)opt_array_get(a, i);
}

static bool numel_is(const opt_array *a, uint64_t n1, uint64_t n2)
{
    uint64_t n = opt_array_numel(a);
    return n == n1 || n == n2;
}

/* ---- weights --------------------------------------------------------------------------------- */

void nn_qweights_free(nn_qweights *w)
{
    if (!w) return;
    free(w->w);
    free(w->vt);
    free(w->dw);
    free(w->sum);
    free(w->zp);
    free(w);
}

static nn_qweights *qw_new(int64_t rows, int64_t K, size_t wbytes)
{
    nn_qweights *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->rows = rows;
    q->K = K;
    q->Kp = nn_qkp(K);
    q->w = aligned_alloc(64, (wbytes + 63) & ~(size_t)63);
    q->sum = calloc((size_t)rows + 1, sizeof *q->sum);
    q->zp = calloc((size_t)rows + 1, sizeof *q->zp);
    if (!q->w || !q->sum || !q->zp) {
        nn_qweights_free(q);
        return NULL;
    }
    return q;
}

/* Zero point of row r in the int8 domain (uint8 weights and their zero points move by -128). */
static void qw_zp(nn_qweights *q, const opt_array *w, const opt_array *wz)
{
    uint64_t nz = wz ? opt_array_numel(wz) : 0;
    int32_t shift = w->dtype == OPT_DT_UINT8 ? 128 : 0;
    for (int64_t r = 0; r < q->rows; r++) {
        q->zp[r] = (nz ? ival(wz, nz == 1 ? 0 : (uint64_t)r) : 0) - shift;
        q->any_zp |= q->zp[r] != 0;
    }
}

nn_qweights *nn_qweights_conv(const opt_array *w, const opt_array *wz)
{
    if (!is8(w) || w->ndim < 1 || w->dims[0] < 1) return NULL;
    int64_t M = w->dims[0], K = (int64_t)(opt_array_numel(w) / (uint64_t)M);
    if (K < 1) return NULL;
    nn_qweights *q = qw_new(M, K, (size_t)(M * nn_qkp(K)));
    if (!q) return NULL;
    uint8_t flip = w->dtype == OPT_DT_UINT8 ? 0x80 : 0;
    const uint8_t *src = w->data;
    int64_t Cg = w->ndim >= 2 ? w->dims[1] : K, ks = Cg > 0 ? K / Cg : 1;
    q->hwc = w->ndim >= 3 && Cg % 4 == 0 && ks > 1 && Cg * ks == K;
    for (int64_t m = 0; m < M; m++) {
        uint8_t *d = q->w + m * q->Kp;
        int32_t s = 0;
        for (int64_t k = 0; k < K; k++) {
            /* hwc: position k = sp * Cg + ci holds w[m][ci][sp] */
            int64_t from = q->hwc ? (k % Cg) * ks + k / Cg : k;
            d[k] = src[m * K + from] ^ flip;
            s += (int8_t)d[k];
        }
        memset(d + K, 0, (size_t)(q->Kp - K));
        q->sum[m] = s;
    }
    qw_zp(q, w, wz);
    if (Cg == 1 && (w->ndim == 3 || w->ndim == 4)) {
        q->dw_kw = w->dims[w->ndim - 1];
        q->dw = nn_qdw_words(q, w->ndim == 4 ? w->dims[2] : 1, q->dw_kw);
        if (!q->dw) {
            nn_qweights_free(q);
            return NULL;
        }
    }
    if (ks == 1 && M * K <= (16 << 20)) {
        /* V panels of W^T: panel p, group qq, column c holds row p*NR + c's bytes 4qq..4qq+3. */
        size_t pb = (size_t)q->Kp * NN_QNR;
        q->vt = aligned_alloc(64, (nn_qpack_bytes(K, M) + 63) & ~(size_t)63);
        if (!q->vt) {
            nn_qweights_free(q);
            return NULL;
        }
        for (int64_t p0 = 0, pi = 0; p0 < M; p0 += NN_QNR, pi++)
            for (int64_t qq = 0; qq < q->Kp / 4; qq++) {
                uint8_t *o = q->vt + (size_t)pi * pb + (size_t)qq * NN_QNR * 4;
                for (int64_t c = 0; c < NN_QNR; c++) {
                    if (p0 + c < M) memcpy(o + c * 4, q->w + (p0 + c) * q->Kp + 4 * qq, 4);
                    else memset(o + c * 4, 0, 4);
                }
            }
    }
    return q;
}

/* sum[n] += the int8 value of (src[k][n] ^ flip) over K rows of N bytes (B's column sums). */
static NN_VEC void colsum_i8(const uint8_t *restrict src, int64_t K, int64_t N, uint8_t flip, int32_t *restrict sum)
{
    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++) sum[n] += (int8_t)(src[k * N + n] ^ flip);
}

/* The sum of n bytes as unsigned values. */
static NN_VEC int32_t bytesum_u8(const uint8_t *restrict s, int64_t n)
{
    int32_t t = 0;
    for (int64_t i = 0; i < n; i++) t += s[i];
    return t;
}

/* d[i] = s[i] ^ flip for i < n. */
static NN_VEC void copy_xor(const uint8_t *restrict s, uint8_t *restrict d, int64_t n, uint8_t flip)
{
    for (int64_t i = 0; i < n; i++) d[i] = s[i] ^ flip;
}

/* The GEMM's S from rows of K bytes at x: into xs (rows of Kp bytes, each byte ^ flip, zero
 * padded) when xs is set, and the row sums of what S holds into rsum when that is set. */
static void s_rows(const uint8_t *x, int64_t rows, int64_t K, int64_t Kp, uint8_t flip, uint8_t *xs, int32_t *rsum)
{
    for (int64_t i = 0; i < rows && (xs || rsum); i++) {
        const uint8_t *r = x + i * K;
        if (xs) {
            copy_xor(r, xs + i * Kp, K, flip);
            memset(xs + i * Kp + K, 0, (size_t)(Kp - K));
            r = xs + i * Kp;
        }
        if (rsum) rsum[i] = bytesum_u8(r, K);
    }
}

nn_qweights *nn_qweights_matmul(const opt_array *b, const opt_array *bz)
{
    if (!is8(b) || b->ndim != 2 || b->dims[0] < 1 || b->dims[1] < 1) return NULL;
    int64_t K = b->dims[0], N = b->dims[1];
    nn_qweights *q = qw_new(N, K, nn_qpack_bytes(K, N));
    if (!q) return NULL;
    uint8_t flip = b->dtype == OPT_DT_UINT8 ? 0x80 : 0;
    nn_qpack(b->data, N, K, N, flip, q->w);
    colsum_i8(b->data, K, N, flip, q->sum);
    qw_zp(q, b, bz);
    return q;
}

/* ---- conv ------------------------------------------------------------------------------------ */

bool nn_qconv_ok(const nn_conv_geom *g, const nn_qop *o)
{
    if (g->nsp > 2 || !is8(o->x) || !is8(o->w)) return false;
    if (o->xz && (opt_array_numel(o->xz) != 1 || o->xz->dtype != o->x->dtype)) return false;
    if (o->wz && (!numel_is(o->wz, 1, (uint64_t)g->M) || o->wz->dtype != o->w->dtype)) return false;
    if (o->ys) {
        if (!is8(o->y) || opt_array_numel(o->xs) != 1 || opt_array_numel(o->ys) != 1 ||
            !numel_is(o->ws, 1, (uint64_t)g->M))
            return false;
        if (o->yz && (opt_array_numel(o->yz) != 1 || o->yz->dtype != o->y->dtype)) return false;
        if (o->b && (o->b->dtype != OPT_DT_INT32 || opt_array_numel(o->b) != (uint64_t)g->M)) return false;
    } else if (o->y->dtype != OPT_DT_INT32) {
        return false;
    }
    return true;
}

typedef struct qcol {
    const uint8_t *x;   /* first channel of the group, image 0 */
    int64_t img_stride; /* bytes per image (C * H * W) */
    int64_t H, W, OW, P, KH, KW, sh, sw, dh, dw, ph, pw, Kg;
    const int32_t *ktab; /* per k: channel offset (ci * H * W), ky, kx */
    const uint8_t *x_end; /* end of x's data (copies never read past it) */
    uint8_t flip, fill;
} qcol;

/* Row stride of the unfolding buffer: a panel's columns plus 16 bytes, so row pieces can be
 * copied and filled 16 bytes at a time, spilling into columns that a later piece rewrites. */
#define QT (NN_QNR + 16)

static inline void fill16(uint8_t *d, int64_t n, __m128i v)
{
    for (int64_t l = 0; l < n; l += 16) _mm_storeu_si128((__m128i *)(d + l), v);
}

/* Copies n bytes in 16-byte steps (may write up to 15 bytes past n); reads past n only when that
 * stays before end. */
static inline void copy16(uint8_t *d, const uint8_t *s, int64_t n, const uint8_t *end)
{
    int64_t l = 0;
    if (s + ((n + 15) & ~(int64_t)15) <= end) {
        for (; l < n; l += 16) _mm_storeu_si128((__m128i *)(d + l), _mm_loadu_si128((const __m128i *)(s + l)));
        return;
    }
    for (; l + 16 <= n; l += 16) _mm_storeu_si128((__m128i *)(d + l), _mm_loadu_si128((const __m128i *)(s + l)));
    for (; l < n; l++) d[l] = s[l];
}

/* Every other byte of s: d[l] = s[2 l] for l < n, 16 at a time (the low bytes of 16-bit lanes,
 * packed), writing up to 15 bytes past n like copy16; reads stay before end. */
static inline void copy16_s2(uint8_t *d, const uint8_t *s, int64_t n, const uint8_t *end)
{
    const __m128i lo = _mm_set1_epi16(0x00ff);
    int64_t l = 0;
    for (; l < n && s + 2 * l + 32 <= end; l += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(s + 2 * l));
        __m128i b = _mm_loadu_si128((const __m128i *)(s + 2 * l + 16));
        _mm_storeu_si128((__m128i *)(d + l), _mm_packus_epi16(_mm_and_si128(a, lo), _mm_and_si128(b, lo)));
    }
    for (; l < n; l++) d[l] = s[2 * l];
}

/* Unfolds columns [j0, j0 + nc) into tmp (K rows of QT bytes), then interleaves them into the
 * panel. The columns fall into runs along output rows; per k each run is one row piece of x.
 * Pieces are short (an output row at most), so they move 16 bytes at a time inline rather than
 * through memcpy/memset calls, which cost more than the copies here; runs whose window never
 * touches padding (the common case) skip the bound arithmetic. */
static void qcol_pack(const void *ctx, int64_t j0, int64_t nc, uint8_t *panel, uint8_t *tmp, int32_t *colsum)
{
    const qcol *q = ctx;
    const __m128i fv = _mm_set1_epi8((char)q->fill);
    struct run {
        int32_t c, L, hb, wb;
        const uint8_t *x;
        bool inside;
    } runs[NN_QNR];
    int nr = 0;
    for (int64_t c = 0; c < nc; nr++) {
        int64_t j = j0 + c, img = j / q->P, pix = j % q->P, oh = pix / q->OW, ow = pix % q->OW;
        int64_t L = nc - c < q->OW - ow ? nc - c : q->OW - ow;
        struct run *r = &runs[nr];
        r->c = (int32_t)c, r->L = (int32_t)L;
        r->hb = (int32_t)(oh * q->sh - q->ph), r->wb = (int32_t)(ow * q->sw - q->pw);
        r->x = q->x + img * q->img_stride;
        r->inside = r->hb >= 0 && r->hb + (q->KH - 1) * q->dh < q->H && r->wb >= 0 &&
                    r->wb + (L - 1) * q->sw + (q->KW - 1) * q->dw < q->W;
        c += L;
    }
    for (int64_t k = 0; k < q->Kg; k++) {
        const int32_t *kt = q->ktab + 3 * k;
        int64_t kh = kt[1] * q->dh, kw = kt[2] * q->dw;
        uint8_t *dk = tmp + k * QT;
        for (int ri = 0; ri < nr; ri++) {
            const struct run *r = &runs[ri];
            uint8_t *d = dk + r->c;
            int64_t L = r->L, ih = r->hb + kh, iw0 = r->wb + kw;
            const uint8_t *row = r->x + kt[0] + ih * q->W;
            if (r->inside && q->sw == 1) {
                copy16(d, row + iw0, L, q->x_end);
                continue;
            }
            if (r->inside && q->sw == 2) {
                copy16_s2(d, row + iw0, L, q->x_end);
                continue;
            }
            if (ih < 0 || ih >= q->H) {
                fill16(d, L, fv);
                continue;
            }
            if (q->sw == 1) {
                int64_t a = iw0 < 0 ? -iw0 : 0, b = q->W - iw0;
                if (a > L) a = L;
                if (b > L) b = L;
                if (b < a) b = a;
                if (a) fill16(d, a, fv);
                copy16(d + a, row + iw0 + a, b - a, q->x_end);
                if (b < L) fill16(d + b, L - b, fv);
            } else {
                for (int64_t l = 0; l < L; l++) {
                    int64_t iw = iw0 + l * q->sw;
                    d[l] = iw >= 0 && iw < q->W ? row[iw] : q->fill;
                }
            }
        }
    }
    if (colsum) {
        for (int64_t c = 0; c < nc; c++) colsum[c] = 0;
        for (int64_t k = 0; k < q->Kg; k++)
            for (int64_t c = 0; c < nc; c++) colsum[c] += (uint8_t)(tmp[k * QT + c] ^ q->flip);
    }
    nn_qpack_panel(tmp, QT, q->Kg, 0, nc, q->flip, panel);
}

/* Column sums of a packed panel (for weights with nonzero zero points). */
static void panel_colsum(const uint8_t *panel, int64_t kq, int64_t nc, int32_t *colsum)
{
    for (int64_t c = 0; c < nc; c++) {
        int32_t s = 0;
        for (int64_t q = 0; q < kq; q++) {
            const uint8_t *b = panel + (q * NN_QNR + c) * 4;
            s += b[0] + b[1] + b[2] + b[3];
        }
        colsum[c] = s;
    }
}

/* 1x1 kernel, stride 1, no padding: channel rows of x are the rows of V, so a panel inside one
 * image is interleaved straight from x (no unfolding copy). */
static void qcol_pack_1x1(const void *ctx, int64_t j0, int64_t nc, uint8_t *panel, uint8_t *tmp, int32_t *colsum)
{
    const qcol *q = ctx;
    int64_t img = j0 / q->P, pix = j0 % q->P;
    if (pix + nc > q->P) { /* the panel spans two images */
        qcol_pack(ctx, j0, nc, panel, tmp, colsum);
        return;
    }
    nn_qpack_panel(q->x + img * q->img_stride + pix, q->P, q->Kg, 0, nc, q->flip, panel);
    if (colsum) panel_colsum(panel, nn_qkp(q->Kg) / 4, nc, colsum);
}

/* 1x1 kernel over a 1x1 input (a Gemm written as a conv): column j is image j's channel vector. */
static void qcol_pack_vec(const void *ctx, int64_t j0, int64_t nc, uint8_t *panel, uint8_t *tmp, int32_t *colsum)
{
    (void)tmp;
    const qcol *q = ctx;
    int64_t K = q->Kg, kq = nn_qkp(K) / 4;
    uint32_t fx = q->flip * 0x01010101u;
    for (int64_t c = 0; c < nc; c++) {
        const uint8_t *src = q->x + (j0 + c) * q->img_stride;
        int32_t s = 0;
        for (int64_t qq = 0; qq < kq; qq++) {
            uint8_t *o = panel + (qq * NN_QNR + c) * 4;
            if (4 * qq + 3 < K) {
                uint32_t v;
                memcpy(&v, src + 4 * qq, 4);
                v ^= fx;
                memcpy(o, &v, 4);
            } else {
                for (int t = 0; t < 4; t++) o[t] = 4 * qq + t < K ? (uint8_t)(src[4 * qq + t] ^ q->flip) : 0;
            }
            if (colsum)
                for (int t = 0; t < 4; t++) s += 4 * qq + t < K ? o[t] : 0;
        }
        if (colsum) colsum[c] = s;
    }
    if (nc < NN_QNR)
        for (int64_t qq = 0; qq < kq; qq++) memset(panel + (qq * NN_QNR + nc) * 4, 0, (size_t)(NN_QNR - nc) * 4);
}

/* Channels-last unfolding. The group's channels of x are first laid out as xt [N][Hp][Wp][Cg]
 * (spatially padded with the zero point, sign-flipped where needed), so the 4 channels of one
 * k-group at one pixel are one aligned 32-bit word: a panel row is then one word per column,
 * instead of four bytes from four rows interleaved. */
typedef struct qhwc {
    const uint8_t *xt;
    int64_t Hp, Wp, Cg, OW, P, sh, sw, dh, dw, KW, ks;
    bool colsum_needed;
} qhwc;

static void qhwc_pack(const void *ctx, int64_t j0, int64_t nc, uint8_t *panel, uint8_t *tmp, int32_t *colsum)
{
    (void)tmp;
    const qhwc *q = ctx;
    const uint8_t *cb[NN_QNR];
    for (int64_t c = 0; c < nc; c++) {
        int64_t j = j0 + c, img = j / q->P, pix = j % q->P, oh = pix / q->OW, ow = pix % q->OW;
        cb[c] = q->xt + ((img * q->Hp + oh * q->sh) * q->Wp + ow * q->sw) * q->Cg;
    }
    int64_t g4 = q->Cg / 4;
    for (int64_t sp = 0; sp < q->ks; sp++) {
        int64_t off = ((sp / q->KW) * q->dh * q->Wp + (sp % q->KW) * q->dw) * q->Cg;
        int64_t c4 = 0;
        /* 4 columns x 4 channel groups at a time: a 4x4 transpose of 32-bit words */
        for (; c4 + 4 <= g4; c4 += 4) {
            uint8_t *o0 = panel + (sp * g4 + c4) * NN_QNR * 4;
            int64_t at = off + c4 * 4, c = 0;
            for (; c + 4 <= nc; c += 4) {
                __m128i r0 = _mm_loadu_si128((const __m128i *)(cb[c] + at));
                __m128i r1 = _mm_loadu_si128((const __m128i *)(cb[c + 1] + at));
                __m128i r2 = _mm_loadu_si128((const __m128i *)(cb[c + 2] + at));
                __m128i r3 = _mm_loadu_si128((const __m128i *)(cb[c + 3] + at));
                __m128i t0 = _mm_unpacklo_epi32(r0, r1), t1 = _mm_unpacklo_epi32(r2, r3);
                __m128i t2 = _mm_unpackhi_epi32(r0, r1), t3 = _mm_unpackhi_epi32(r2, r3);
                _mm_storeu_si128((__m128i *)(o0 + c * 4), _mm_unpacklo_epi64(t0, t1));
                _mm_storeu_si128((__m128i *)(o0 + NN_QNR * 4 + c * 4), _mm_unpackhi_epi64(t0, t1));
                _mm_storeu_si128((__m128i *)(o0 + 2 * NN_QNR * 4 + c * 4), _mm_unpacklo_epi64(t2, t3));
                _mm_storeu_si128((__m128i *)(o0 + 3 * NN_QNR * 4 + c * 4), _mm_unpackhi_epi64(t2, t3));
            }
            for (int t = 0; t < 4; t++) {
                uint32_t *o = (uint32_t *)(o0 + t * NN_QNR * 4);
                for (int64_t cc = c; cc < nc; cc++) memcpy(&o[cc], cb[cc] + at + 4 * t, 4);
                for (int64_t cc = nc; cc < NN_QNR; cc++) o[cc] = 0;
            }
        }
        for (; c4 < g4; c4++) {
            uint32_t *o = (uint32_t *)(panel + (sp * g4 + c4) * NN_QNR * 4);
            int64_t at = off + c4 * 4;
            for (int64_t c = 0; c < nc; c++) memcpy(&o[c], cb[c] + at, 4);
            for (int64_t c = nc; c < NN_QNR; c++) o[c] = 0;
        }
    }
    if (colsum) {
        int64_t kq = q->ks * g4;
        for (int64_t c = 0; c < nc; c++) {
            int32_t s = 0;
            for (int64_t qq = 0; qq < kq; qq++) {
                const uint8_t *b = panel + (qq * NN_QNR + c) * 4;
                s += b[0] + b[1] + b[2] + b[3];
            }
            colsum[c] = s;
        }
    }
}

typedef struct qhwc_tr {
    const uint8_t *x;     /* group's first channel, image 0 */
    uint8_t *xt;
    int64_t C, H, W, Hp, Wp, Cg, pt, pl; /* C: channels of x (image stride C*H*W) */
    uint8_t flip, fill;
} qhwc_tr;

/* Transposes 16 rows of 16 bytes in place (r[i] byte j becomes r[j] byte i). */
static inline void tr16x16(__m128i r[16])
{
    __m128i b[16], c[16];
    for (int k = 0; k < 8; k++) {
        b[k] = _mm_unpacklo_epi8(r[2 * k], r[2 * k + 1]);
        b[k + 8] = _mm_unpackhi_epi8(r[2 * k], r[2 * k + 1]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int k = 0; k < 4; k++) {
            c[h + k] = _mm_unpacklo_epi16(b[h + 2 * k], b[h + 2 * k + 1]);
            c[h + 4 + k] = _mm_unpackhi_epi16(b[h + 2 * k], b[h + 2 * k + 1]);
        }
    for (int q = 0; q < 4; q++) {
        __m128i lo01 = _mm_unpacklo_epi32(c[4 * q], c[4 * q + 1]), hi01 = _mm_unpackhi_epi32(c[4 * q], c[4 * q + 1]);
        __m128i lo23 = _mm_unpacklo_epi32(c[4 * q + 2], c[4 * q + 3]), hi23 = _mm_unpackhi_epi32(c[4 * q + 2], c[4 * q + 3]);
        r[4 * q] = _mm_unpacklo_epi64(lo01, lo23);
        r[4 * q + 1] = _mm_unpackhi_epi64(lo01, lo23);
        r[4 * q + 2] = _mm_unpacklo_epi64(hi01, hi23);
        r[4 * q + 3] = _mm_unpackhi_epi64(hi01, hi23);
    }
}

static void qhwc_transpose(void *ctx, size_t b, size_t e)
{
    const qhwc_tr *t = ctx;
    const int64_t Cg = t->Cg, H = t->H, W = t->W, HW = H * W, Wp = t->Wp, pt = t->pt, pl = t->pl;
    const uint8_t flip = t->flip;
    const __m128i fx = _mm_set1_epi8((char)flip);
    for (size_t n = b; n < e; n++) {
        uint8_t *dst = t->xt + (int64_t)n * t->Hp * Wp * Cg;
        memset(dst, t->fill, (size_t)(t->Hp * Wp * Cg));
        const uint8_t *xn = t->x + (int64_t)n * t->C * HW;
        int64_t ci = 0;
        /* 16 channels x 16 pixels at a time through a byte transpose */
        for (; ci + 16 <= Cg; ci += 16)
            for (int64_t h = 0; h < H; h++) {
                uint8_t *drow = dst + ((h + pt) * Wp + pl) * Cg + ci;
                const uint8_t *srow = xn + ci * HW + h * W;
                /* Blocks of 16 (or 8) pixels; the last block overlaps the one before instead of
                 * leaving a scalar tail (rows of 28, 14 or 56 pixels are common). */
                int64_t w = 0, step = W >= 16 ? 16 : W >= 8 ? 8 : 0;
                while (step && w < W) {
                    if (w + step > W) w = W - step;
                    __m128i r[16];
                    for (int k = 0; k < 16; k++) {
                        const uint8_t *p = srow + k * HW + w;
                        r[k] = _mm_xor_si128(step == 16 ? _mm_loadu_si128((const __m128i *)p)
                                                        : _mm_loadl_epi64((const __m128i *)p), fx);
                    }
                    tr16x16(r);
                    for (int k = 0; k < step; k++) _mm_storeu_si128((__m128i *)(drow + (w + k) * Cg), r[k]);
                    w += step;
                }
                for (; w < W; w++)
                    for (int k = 0; k < 16; k++) drow[w * Cg + k] = srow[k * HW + w] ^ flip;
            }
        for (; ci < Cg; ci++) {
            const uint8_t *src = xn + ci * HW;
            for (int64_t h = 0; h < H; h++) {
                uint8_t *d = dst + ((h + pt) * Wp + pl) * Cg + ci;
                const uint8_t *s = src + h * W;
                for (int64_t w = 0; w < W; w++) d[w * Cg] = s[w] ^ flip;
            }
        }
    }
}

/* The few-images Gemm-as-conv: y[n][m] over S = x's image rows (copied when they need the
 * sign flip or padding to 4 bytes; row sums read in place) and V = pw->vt. */
static opt_status qconv_rows(opt_kctx *k, const nn_qop *o, const nn_qweights *pw, int64_t K, int64_t M,
                             uint8_t flip, const int32_t *rbias, const int32_t *negzp, const float *rmul,
                             opt_error *err)
{
    int64_t N = o->x->dims[0], Kp = pw->Kp;
    bool copy = flip || Kp != K;
    uint8_t *xs = copy ? malloc((size_t)(N * Kp) + 1) : NULL;
    int32_t *rsum = pw->any_zp ? malloc((size_t)N * sizeof *rsum + 1) : NULL;
    if ((copy && !xs) || (pw->any_zp && !rsum)) {
        free(xs);
        free(rsum);
        return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    const uint8_t *x = o->x->data;
    s_rows(x, N, K, Kp, flip, xs, rsum);
    nn_qepi ep = {.cbias = rbias, .rfac = rsum, .cfac = rsum ? negzp : NULL, .cmul = o->ys ? rmul : NULL,
                  .zp = ival(o->yz, 0), .out_dt = o->y->dtype, .clamp = o->yclamp, .lo = o->ylo, .hi = o->yhi};
    nn_qgemm_args a = {.M = N, .N = M, .K = K, .s_unsigned = true, .s = copy ? xs : x, .lds = copy ? Kp : K,
                       .vpacked = pw->vt, .ep = &ep, .out = o->y->data, .ldo = M, .P = M, .img_stride = 0};
    bool ok = nn_qgemm(k, nn_qisa_best(), &a);
    free(xs);
    free(rsum);
    return ok ? OPT_OK : opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
}

opt_status nn_qconv(opt_kctx *k, const nn_conv_geom *g, const nn_qop *o, const nn_qweights *pw, opt_error *err)
{
    int64_t G = g->group, Mg = g->M / G, Cg = g->C / G, ks = nn_geom_k_size(g), Kg = Cg * ks;
    int64_t insz = nn_geom_in_size(g), P = nn_geom_out_size(g), M = g->M;
    nn_qweights *own = NULL;
    if (!pw) pw = own = nn_qweights_conv(o->w, o->wz);
    if (!pw) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    if (pw->rows != M || pw->K != Kg) {
        nn_qweights_free(own);
        return opt_kerr(k, err, OPT_ERR_INVALID, "w's shape changed since load");
    }
    uint8_t flip = o->x->dtype == OPT_DT_INT8 ? 0x80 : 0;
    int32_t xz = ival(o->xz, 0) + (flip ? 128 : 0);
    int32_t *rbias = malloc((size_t)M * sizeof *rbias), *rfac = malloc((size_t)M * sizeof *rfac);
    int32_t *ktab = malloc((size_t)(3 * Kg) * sizeof *ktab);
    float *rmul = malloc((size_t)M * sizeof *rmul);
    uint8_t *xt = NULL;
    opt_status st = OPT_OK;
    if (!rbias || !rfac || !rmul || !ktab) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    const bool ws1 = o->ys && opt_array_numel(o->ws) == 1;
    const float xs = o->ys ? fval(o->xs, 0) : 0.0f, ys = o->ys ? fval(o->ys, 0) : 1.0f;
    for (int64_t m = 0; m < M; m++) {
        uint32_t v = (uint32_t)(o->b ? ival(o->b, (uint64_t)m) : 0);
        v -= (uint32_t)xz * (uint32_t)pw->sum[m];
        v += (uint32_t)Kg * (uint32_t)xz * (uint32_t)pw->zp[m];
        rbias[m] = (int32_t)v;
        rfac[m] = (int32_t)(0u - (uint32_t)pw->zp[m]);
        if (o->ys) rmul[m] = xs * fval(o->ws, ws1 ? 0 : (uint64_t)m) / ys;
    }
    int64_t KH = g->nsp == 2 ? g->k[0] : 1, KW = g->k[g->nsp - 1];
    int64_t H = g->nsp == 2 ? g->in[0] : 1, W = g->in[g->nsp - 1];
    for (int64_t q = 0; q < Kg; q++) {
        int64_t ci = q / (KH * KW), r = q % (KH * KW);
        ktab[3 * q] = (int32_t)(ci * H * W);
        ktab[3 * q + 1] = (int32_t)(r / KW);
        ktab[3 * q + 2] = (int32_t)(r % KW);
    }
    int two = g->nsp == 2;
    qcol qc = {
        .img_stride = g->C * insz, .H = H, .W = W, .OW = g->out[g->nsp - 1], .P = P, .KH = KH, .KW = KW,
        .sh = two ? g->stride[0] : 1, .sw = g->stride[g->nsp - 1], .dh = two ? g->dil[0] : 1,
        .dw = g->dil[g->nsp - 1], .ph = two ? g->pad_b[0] : 0, .pw = g->pad_b[g->nsp - 1], .Kg = Kg,
        .ktab = ktab, .flip = flip, .fill = (uint8_t)ival(o->xz, 0),
        .x_end = (const uint8_t *)o->x->data + opt_array_numel(o->x),
    };
    if (nn_qdw_ok(nn_qisa_best(), g, pw)) {
        int32_t lo, hi;
        nn_qrange(o->y->dtype, o->yclamp, o->ylo, o->yhi, &lo, &hi);
        if (!nn_qdw(k, g, pw, o->x->data, flip, (uint8_t)(qc.fill ^ flip), rbias, o->ys ? rmul : NULL, ival(o->yz, 0),
                    o->y->dtype, lo, hi, o->y->data))
            st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    bool vec = ks == 1 && insz == 1 && P == 1;
    if (vec && G == 1 && pw->vt && g->N < NN_QNR / 2) {
        /* A Gemm on a few images: the images are S rows (a panel of images would be mostly
         * padding) and the weights the prepacked V panels; same corrections, transposed. */
        st = qconv_rows(k, o, pw, Kg, M, flip, rbias, rfac, rmul, err);
        goto done;
    }
    bool pointwise = ks == 1 && insz == P && qc.sh == 1 && qc.sw == 1 && qc.ph == 0 && qc.pw == 0;
    size_t es = o->y->dtype == OPT_DT_INT32 ? 4 : 1;
    int64_t pt = two ? g->pad_b[0] : 0, pl = g->pad_b[g->nsp - 1];
    int64_t Hp = H + pt + (two ? g->pad_e[0] : 0), Wp = W + pl + g->pad_e[g->nsp - 1];
    qhwc hc = {.Hp = Hp, .Wp = Wp, .Cg = Cg, .OW = qc.OW, .P = P, .sh = qc.sh, .sw = qc.sw, .dh = qc.dh,
               .dw = qc.dw, .KW = KW, .ks = ks};
    if (pw->hwc) {
        xt = malloc((size_t)(g->N * Hp * Wp * Cg) + 64);
        if (!xt) {
            st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
            goto done;
        }
        hc.xt = xt;
    }
    for (int64_t gi = 0; gi < G && st == OPT_OK; gi++) {
        qc.x = (const uint8_t *)o->x->data + gi * Cg * insz;
        if (pw->hwc) {
            qhwc_tr tr = {.x = qc.x, .xt = xt, .C = g->C, .H = H, .W = W, .Hp = Hp, .Wp = Wp, .Cg = Cg, .pt = pt,
                          .pl = pl, .flip = flip, .fill = (uint8_t)(qc.fill ^ flip)};
            nn_parallel(k, (size_t)g->N, qhwc_transpose, &tr);
        }
        nn_qepi ep = {.rbias = rbias + gi * Mg, .rfac = pw->any_zp ? rfac + gi * Mg : NULL,
                      .rmul = o->ys ? rmul + gi * Mg : NULL, .zp = ival(o->yz, 0), .out_dt = o->y->dtype,
                      .clamp = o->yclamp, .lo = o->ylo, .hi = o->yhi};
        nn_qgemm_args a = {
            .M = Mg, .N = g->N * P, .K = Kg, .s_unsigned = false, .s = pw->w + gi * Mg * pw->Kp, .lds = pw->Kp,
            .pack_v = pw->hwc ? qhwc_pack : vec ? qcol_pack_vec : pointwise ? qcol_pack_1x1 : qcol_pack,
            .pack_ctx = pw->hwc ? (const void *)&hc : (const void *)&qc,
            .pack_tmp = vec || pw->hwc ? 0 : (size_t)Kg * QT,
            .pack_colsum = pw->any_zp, .ep = &ep, .out = (char *)o->y->data + (size_t)(gi * Mg * P) * es,
            .ldo = P, .P = P, .img_stride = M * P,
        };
        if (!nn_qgemm(k, nn_qisa_best(), &a)) st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
done:
    free(xt);
    free(rbias);
    free(rfac);
    free(rmul);
    free(ktab);
    nn_qweights_free(own);
    return st;
}

/* ---- matmul ---------------------------------------------------------------------------------- */

bool nn_qmatmul_ok(const nn_qop *o)
{
    const opt_array *A = o->x, *B = o->w;
    if (!is8(A) || !is8(B) || B->ndim != 2 || A->ndim < 2 || A->dims[A->ndim - 1] != B->dims[0]) return false;
    uint64_t N = (uint64_t)B->dims[1];
    if (o->xz && (opt_array_numel(o->xz) != 1 || o->xz->dtype != A->dtype)) return false;
    if (o->wz && (!numel_is(o->wz, 1, N) || o->wz->dtype != B->dtype)) return false;
    if (o->ys) {
        if (!is8(o->y) || opt_array_numel(o->xs) != 1 || opt_array_numel(o->ys) != 1 || !numel_is(o->ws, 1, N))
            return false;
        if (o->yz && (opt_array_numel(o->yz) != 1 || o->yz->dtype != o->y->dtype)) return false;
    } else if (o->y->dtype != OPT_DT_INT32) {
        return false;
    }
    return true;
}

opt_status nn_qmatmul(opt_kctx *k, const nn_qop *o, const nn_qweights *pw, opt_error *err)
{
    const opt_array *A = o->x, *B = o->w;
    int64_t K = B->dims[0], N = B->dims[1], rows = (int64_t)(opt_array_numel(A) / (uint64_t)K);
    nn_qweights *own = NULL;
    if (!pw) pw = own = nn_qweights_matmul(B, o->wz);
    if (!pw) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    if (pw->rows != N || pw->K != K) {
        nn_qweights_free(own);
        return opt_kerr(k, err, OPT_ERR_INVALID, "B's shape changed since load");
    }
    uint8_t flip = A->dtype == OPT_DT_INT8 ? 0x80 : 0;
    int32_t az = ival(o->xz, 0) + (flip ? 128 : 0);
    int64_t Kp = pw->Kp;
    bool copy = flip || Kp != K;
    uint8_t *as = copy ? malloc((size_t)(rows * Kp) + 1) : NULL;
    int32_t *rsum = pw->any_zp ? malloc((size_t)rows * sizeof *rsum + 1) : NULL;
    int32_t *cbias = malloc((size_t)N * sizeof *cbias), *cfac = malloc((size_t)N * sizeof *cfac);
    float *cmul = malloc((size_t)N * sizeof *cmul);
    opt_status st = OPT_OK;
    if ((copy && !as) || (pw->any_zp && !rsum) || !cbias || !cfac || !cmul) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    const uint8_t *a = A->data;
    s_rows(a, rows, K, Kp, flip, as, rsum);
    for (int64_t n = 0; n < N; n++) {
        uint32_t v = 0u - (uint32_t)az * (uint32_t)pw->sum[n];
        v += (uint32_t)K * (uint32_t)az * (uint32_t)pw->zp[n];
        cbias[n] = (int32_t)v;
        cfac[n] = (int32_t)(0u - (uint32_t)pw->zp[n]);
        if (o->ys) cmul[n] = fval(o->xs, 0) * fval(o->ws, opt_array_numel(o->ws) == 1 ? 0 : (uint64_t)n) / fval(o->ys, 0);
    }
    nn_qepi ep = {.cbias = cbias, .rfac = rsum, .cfac = rsum ? cfac : NULL, .cmul = o->ys ? cmul : NULL,
                  .zp = ival(o->yz, 0), .out_dt = o->y->dtype, .clamp = o->yclamp, .lo = o->ylo, .hi = o->yhi};
    nn_qgemm_args ga = {.M = rows, .N = N, .K = K, .s_unsigned = true, .s = copy ? as : a, .lds = copy ? Kp : K,
                        .vpacked = pw->w, .ep = &ep, .out = o->y->data, .ldo = N, .P = N, .img_stride = 0};
    if (!nn_qgemm(k, nn_qisa_best(), &ga)) st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
done:
    free(as);
    free(rsum);
    free(cbias);
    free(cfac);
    free(cmul);
    nn_qweights_free(own);
    return st;
}
