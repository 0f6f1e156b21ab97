/*
 * libopt/exec/cpu/pool.c — MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool on the CPU.
 *
 * Windows follow ONNX exactly: pads or auto_pad, strides, dilations, ceil_mode (a last window
 * must start inside the input or its leading padding), count_include_pad (padding counts, but
 * not the extra cells ceil_mode adds), MaxPool's optional Indices output in row-major or
 * column-major (storage_order 1) flattening. 1-D and 2-D windows take a loop with precomputed
 * bounds; 3-D and up a generic one. float MaxPool without Indices runs on AVX-512: 2x2 windows
 * with stride 2 and no pads on a kernel of their own, other 1-D/2-D windows with strides 1-2
 * along the last axis on a masked-tap kernel. int8/uint8 MaxPool without Indices, 1-D/2-D with
 * strides 1-2 along the last axis, runs on the bytes (AVX-512 VBMI); other int8/uint8 cases and
 * the float16/bfloat16/double types compute in float32, which is exact for the integers.
 */
#include "libopt/exec/cpu/nn.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct pool_job {
    const nn_conv_geom *g;
    const float *x;
    float *y;
    int64_t *idx;          /* MaxPool Indices or NULL */
    bool max, include_pad, col_major;
    int64_t insz, outsz;
} pool_job;

/* Window bounds along one dim for output o: first/last (exclusive) valid tap, and the number of
 * taps inside the padded input (for count_include_pad). */
static void win(const nn_conv_geom *g, int d, int64_t o, int64_t *j0, int64_t *j1, int64_t *padn)
{
    int64_t start = o * g->stride[d] - g->pad_b[d], dl = g->dil[d], K = g->k[d], in = g->in[d];
    int64_t a = 0, b = K, pn = 0;
    while (a < K && start + a * dl < 0) a++;
    while (b > a && start + (b - 1) * dl >= in) b--;
    for (int64_t j = 0; j < K; j++) {
        int64_t p = start + j * dl;
        if (p >= -g->pad_b[d] && p < in + g->pad_e[d]) pn++;
    }
    *j0 = a;
    *j1 = b;
    *padn = pn;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

/* Bits [lo, hi) of a lane mask (0 <= lo, hi <= 32). */
static inline uint32_t lane_bits(int64_t lo, int64_t hi)
{
    if (lo < 0) lo = 0;
    if (hi > 32) hi = 32;
    if (hi <= lo) return 0;
    return (uint32_t)((((uint64_t)1 << hi) - 1) & ~(((uint64_t)1 << lo) - 1));
}

/* A 1-D/2-D max-pool plane without indices, strides 1 or 2, with AVX-512: 16 outputs at a time,
 * each tap a masked load whose lanes outside the image read as -inf. max_ps keeps the running
 * maximum when the tap is NaN, as the scalar `v > m ? v : m` does, so the results are the same
 * bits. False (nothing done) for other strides. */
__attribute__((target("avx512f"), optimize("O3")))
static bool maxpool_plane_avx512(const nn_conv_geom *g, const float *xp, float *yp)
{
    const nn_plane2d q = nn_plane2d_of(g);
    const int64_t H = q.H, W = q.W, OH = q.OH, OW = q.OW, KH = q.KH, KW = q.KW;
    const int64_t sh = q.sh, sw = q.sw, dh = q.dh, dw = q.dw, ph = q.ph, pw = q.pw;
    if (sw > 2) return false;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
            int64_t nv = OW - ow0 < 16 ? OW - ow0 : 16;
            __m512 m = ninf;
            for (int64_t kh = 0; kh < KH; kh++) {
                int64_t ih = oh * sh - ph + kh * dh;
                if (ih < 0 || ih >= H) continue;
                uintptr_t xr = (uintptr_t)(xp + ih * W);
                for (int64_t kw = 0; kw < KW; kw++) {
                    int64_t start = ow0 * sw + kw * dw - pw;
                    /* Integer address arithmetic: masked-off lanes may lie outside the row. */
                    const float *at = (const float *)(xr + (uintptr_t)start * sizeof(float));
                    __m512 v;
                    if (sw == 1) {
                        __mmask16 k = (__mmask16)lane_bits(-start, W - start < nv ? W - start : nv);
                        if (!k) continue;
                        v = _mm512_mask_loadu_ps(ninf, k, at);
                    } else {
                        int64_t span = 2 * nv - 1;
                        uint32_t k = lane_bits(-start, W - start < span ? W - start : span);
                        if (!k) continue;
                        const float *at16 = (const float *)(xr + (uintptr_t)(start + 16) * sizeof(float));
                        v = _mm512_permutex2var_ps(_mm512_mask_loadu_ps(ninf, (__mmask16)(k & 0xFFFF), at),
                                                   even,
                                                   _mm512_mask_loadu_ps(ninf, (__mmask16)(k >> 16), at16));
                    }
                    m = _mm512_max_ps(v, m);
                }
            }
            _mm512_mask_storeu_ps(yp + oh * OW + ow0, (__mmask16)lane_bits(0, nv), m);
        }
    return true;
}

/* The commonest max-pool, 2x2 windows with stride 2 and no pads (LeNet, VGG, U-Net), every
 * window inside the plane: 16 outputs from two rows of 32 input columns, split into even and odd
 * columns by permutes. The taps are combined as the scalar loop's running maximum would take
 * them (t00, t01 on the first row, t10, t11 on the second: a later tap wins only when greater,
 * so NaN taps are skipped and the first of equal values, +0 or -0, is kept), so the bits are
 * maxpool_plane_avx512's. About 16 instructions per 16 outputs, where the general kernel spends
 * four masked taps with their mask arithmetic; on small planes (8 x 8 in LeNet's second pool)
 * it was a quarter of a batch's forward pass. False (nothing done) for other geometries. */
__attribute__((target("avx512f"), optimize("O3")))
static bool maxpool_2x2s2_avx512(const nn_conv_geom *g, const float *xp, float *yp, int64_t np)
{
    const nn_plane2d q = nn_plane2d_of(g);
    if (g->nsp != 2 || q.KH != 2 || q.KW != 2 || q.sh != 2 || q.sw != 2 || q.dh != 1 ||
        q.dw != 1 || q.ph || q.pw || 2 * q.OH > q.H || 2 * q.OW > q.W)
        return false;
    const int64_t W = q.W, OW = q.OW;
    /* With an even height the planes' row pairs follow each other: one tall plane. */
    int64_t OH = q.OH, planes = np;
    if (q.H == 2 * q.OH) OH *= np, planes = 1;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *r0 = xp + pl * q.H * W + 2 * oh * W, *r1 = r0 + W;
            float *yr = yp + (pl * OH + oh) * OW;
            for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
                int64_t nv = OW - ow0 < 16 ? OW - ow0 : 16;
                __mmask16 k0 = (__mmask16)lane_bits(0, 2 * nv), k1 = (__mmask16)lane_bits(0, 2 * nv - 16);
                const float *a = r0 + 2 * ow0, *b = r1 + 2 * ow0;
                __m512 a0 = _mm512_maskz_loadu_ps(k0, a), a1 = _mm512_maskz_loadu_ps(k1, a + 16);
                __m512 b0 = _mm512_maskz_loadu_ps(k0, b), b1 = _mm512_maskz_loadu_ps(k1, b + 16);
                __m512 m0 = _mm512_max_ps(_mm512_permutex2var_ps(a0, odd, a1),
                                          _mm512_max_ps(_mm512_permutex2var_ps(a0, even, a1), ninf));
                __m512 m1 = _mm512_max_ps(_mm512_permutex2var_ps(b0, odd, b1),
                                          _mm512_max_ps(_mm512_permutex2var_ps(b0, even, b1), ninf));
                _mm512_mask_storeu_ps(yr + ow0, (__mmask16)lane_bits(0, nv), _mm512_max_ps(m1, m0));
            }
        }
    return true;
}

/* Bits [lo, hi) of a 64-lane mask (hi may pass 64; lanes from 64 on are dropped). */
static inline uint64_t lane_bits64(int64_t lo, int64_t hi)
{
    if (lo < 0) lo = 0;
    if (hi > 64) hi = 64;
    if (hi <= lo) return 0;
    uint64_t top = hi == 64 ? ~(uint64_t)0 : ((uint64_t)1 << hi) - 1;
    return top & ~(((uint64_t)1 << lo) - 1);
}

static bool maxpool_bytes_available(void)
{
    static int ok = -1;
    if (ok < 0)
        ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vbmi");
    return ok;
}

/* The byte twin of maxpool_plane_avx512 for int8/uint8 (sgn: int8): 64 outputs at a time, taps
 * outside the image read as the type's minimum. Max commutes with dequantization (scale > 0), so
 * a quantized MaxPool needs no conversion. False for strides above 2. */
__attribute__((target("avx512f,avx512bw,avx512vbmi"), optimize("O3")))
static bool maxpool_plane_bytes(const nn_conv_geom *g, const uint8_t *xp, uint8_t *yp, bool sgn)
{
    const nn_plane2d q = nn_plane2d_of(g);
    const int64_t H = q.H, W = q.W, OH = q.OH, OW = q.OW, KH = q.KH, KW = q.KW;
    const int64_t sh = q.sh, sw = q.sw, dh = q.dh, dw = q.dw, ph = q.ph, pw = q.pw;
    if (sw > 2) return false;
    uint8_t even_b[64];
    for (int i = 0; i < 64; i++) even_b[i] = (uint8_t)(2 * i);
    const __m512i even = _mm512_loadu_si512(even_b);
    const __m512i low = sgn ? _mm512_set1_epi8(INT8_MIN) : _mm512_setzero_si512();
    for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow0 = 0; ow0 < OW; ow0 += 64) {
            int64_t nv = OW - ow0 < 64 ? OW - ow0 : 64;
            __m512i m = low;
            for (int64_t kh = 0; kh < KH; kh++) {
                int64_t ih = oh * sh - ph + kh * dh;
                if (ih < 0 || ih >= H) continue;
                uintptr_t xr = (uintptr_t)(xp + ih * W);
                for (int64_t kw = 0; kw < KW; kw++) {
                    int64_t start = ow0 * sw + kw * dw - pw;
                    /* Integer address arithmetic: masked-off lanes may lie outside the row. */
                    const void *at = (const void *)(xr + (uintptr_t)start);
                    __m512i v;
                    if (sw == 1) {
                        uint64_t k = lane_bits64(-start, W - start < nv ? W - start : nv);
                        if (!k) continue;
                        v = _mm512_mask_loadu_epi8(low, (__mmask64)k, at);
                    } else {
                        int64_t span = 2 * nv - 1, hi = W - start < span ? W - start : span;
                        uint64_t k0 = lane_bits64(-start, hi), k1 = lane_bits64(-start - 64, hi - 64);
                        if (!k0 && !k1) continue;
                        const void *at64 = (const void *)(xr + (uintptr_t)(start + 64));
                        v = _mm512_permutex2var_epi8(_mm512_mask_loadu_epi8(low, (__mmask64)k0, at), even,
                                                     _mm512_mask_loadu_epi8(low, (__mmask64)k1, at64));
                    }
                    m = sgn ? _mm512_max_epi8(v, m) : _mm512_max_epu8(v, m);
                }
            }
            _mm512_mask_storeu_epi8(yp + oh * OW + ow0, (__mmask64)lane_bits64(0, nv), m);
        }
    return true;
}
#else
static bool maxpool_2x2s2_avx512(const nn_conv_geom *g, const float *xp, float *yp, int64_t np)
{
    (void)g, (void)xp, (void)yp, (void)np;
    return false;
}
static bool maxpool_plane_avx512(const nn_conv_geom *g, const float *xp, float *yp)
{
    (void)g, (void)xp, (void)yp;
    return false;
}
static bool maxpool_bytes_available(void)
{
    return false;
}
static bool maxpool_plane_bytes(const nn_conv_geom *g, const uint8_t *xp, uint8_t *yp, bool sgn)
{
    (void)g, (void)xp, (void)yp, (void)sgn;
    return false;
}
#endif

typedef struct bytes_job {
    const nn_conv_geom *g;
    const uint8_t *x;
    uint8_t *y;
    bool sgn;
    int64_t insz, outsz;
} bytes_job;

static void pool_planes_bytes(void *ctx, size_t begin, size_t end)
{
    const bytes_job *j = ctx;
    for (size_t pl = begin; pl < end; pl++)
        maxpool_plane_bytes(j->g, j->x + (int64_t)pl * j->insz, j->y + (int64_t)pl * j->outsz, j->sgn);
}

/* 1-D/2-D planes [begin, end) of N*C. */
static void pool_planes_2d(void *ctx, size_t begin, size_t end)
{
    const pool_job *j = ctx;
    const nn_conv_geom *g = j->g;
    int sp = g->nsp;
    if (j->max && !j->idx && nn_sgemm_fast()) {
        if (maxpool_2x2s2_avx512(g, j->x + (int64_t)begin * j->insz, j->y + (int64_t)begin * j->outsz,
                                 (int64_t)(end - begin)))
            return;
        size_t pl = begin;
        for (; pl < end; pl++)
            if (!maxpool_plane_avx512(g, j->x + (int64_t)pl * j->insz, j->y + (int64_t)pl * j->outsz))
                break;
        if (pl == end) return;
        begin = pl;
    }
    int64_t H = sp == 2 ? g->in[0] : 1, W = g->in[sp - 1];
    int64_t OH = sp == 2 ? g->out[0] : 1, OW = g->out[sp - 1];
    int64_t sh = sp == 2 ? g->stride[0] : 1, dh = sp == 2 ? g->dil[0] : 1;
    int64_t ph = sp == 2 ? g->pad_b[0] : 0;
    int64_t sw = g->stride[sp - 1], dw = g->dil[sp - 1], pw = g->pad_b[sp - 1];
    int64_t *wj0 = malloc((size_t)OW * 3 * sizeof *wj0);
    if (!wj0) return;
    int64_t *wj1 = wj0 + OW, *wpn = wj1 + OW;
    for (int64_t ow = 0; ow < OW; ow++) win(g, sp - 1, ow, &wj0[ow], &wj1[ow], &wpn[ow]);
    for (size_t pl = begin; pl < end; pl++) {
        const float *xp = j->x + (int64_t)pl * H * W;
        float *yp = j->y + (int64_t)pl * OH * OW;
        int64_t *ip = j->idx ? j->idx + (int64_t)pl * OH * OW : NULL;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = 0, h1 = 1, hpn = 1;
            if (sp == 2) win(g, 0, oh, &h0, &h1, &hpn);
            int64_t hs = oh * sh - ph;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws = ow * sw - pw;
                if (j->max && !ip) {
                    /* No indices wanted: a plain running maximum the compiler can schedule. */
                    float m = -INFINITY;
                    int64_t b0 = wj0[ow], b1 = wj1[ow];
                    for (int64_t a = h0; a < h1; a++) {
                        const float *r = xp + (hs + a * dh) * W + ws;
                        for (int64_t b = b0; b < b1; b++) {
                            float v = r[b * dw];
                            m = v > m ? v : m;
                        }
                    }
                    yp[oh * OW + ow] = m;
                } else if (j->max) {
                    float m = -INFINITY;
                    int64_t best = -1;
                    for (int64_t a = h0; a < h1; a++) {
                        const float *r = xp + (hs + a * dh) * W + ws;
                        for (int64_t b = wj0[ow]; b < wj1[ow]; b++)
                            if (r[b * dw] > m || best < 0) {
                                m = r[b * dw];
                                best = (hs + a * dh) * W + ws + b * dw;
                            }
                    }
                    yp[oh * OW + ow] = m;
                    if (ip) {
                        int64_t bh = best / W, bw = best % W;
                        ip[oh * OW + ow] = (int64_t)pl * H * W + (j->col_major ? bw * H + bh : best);
                    }
                } else {
                    float s = 0;
                    for (int64_t a = h0; a < h1; a++) {
                        const float *r = xp + (hs + a * dh) * W + ws;
                        for (int64_t b = wj0[ow]; b < wj1[ow]; b++) s += r[b * dw];
                    }
                    int64_t cnt = j->include_pad ? hpn * wpn[ow] : (h1 - h0) * (wj1[ow] - wj0[ow]);
                    yp[oh * OW + ow] = cnt > 0 ? s / (float)cnt : 0.0f;
                }
            }
        }
    }
    free(wj0);
}

/* N-D planes (any rank; used for 3-D and up). */
static void pool_planes_nd(void *ctx, size_t begin, size_t end)
{
    const pool_job *j = ctx;
    const nn_conv_geom *g = j->g;
    int sp = g->nsp;
    for (size_t pl = begin; pl < end; pl++) {
        const float *xp = j->x + (int64_t)pl * j->insz;
        for (int64_t p = 0; p < j->outsz; p++) {
            int64_t o[NN_MAX_SP], t = p, j0[NN_MAX_SP], j1[NN_MAX_SP], cnt_pad = 1, cnt = 1;
            for (int d = sp - 1; d >= 0; d--) {
                o[d] = t % g->out[d];
                t /= g->out[d];
            }
            bool empty = false;
            for (int d = 0; d < sp; d++) {
                int64_t pn;
                win(g, d, o[d], &j0[d], &j1[d], &pn);
                cnt_pad *= pn;
                cnt *= j1[d] - j0[d];
                if (j1[d] <= j0[d]) empty = true;
            }
            float m = -INFINITY, s = 0;
            int64_t best = -1;
            if (!empty) {
                int64_t kk[NN_MAX_SP];
                memcpy(kk, j0, sizeof kk);
                for (;;) {
                    int64_t idx = 0;
                    for (int d = 0; d < sp; d++)
                        idx = idx * g->in[d] + o[d] * g->stride[d] - g->pad_b[d] + kk[d] * g->dil[d];
                    float v = xp[idx];
                    if (v > m || best < 0) m = v, best = idx;
                    s += v;
                    int d = sp - 1;
                    for (; d >= 0; d--) {
                        if (++kk[d] < j1[d]) break;
                        kk[d] = j0[d];
                    }
                    if (d < 0) break;
                }
            }
            if (j->max) {
                j->y[(int64_t)pl * j->outsz + p] = m;
                if (j->idx) {
                    int64_t v = best < 0 ? 0 : best;
                    if (j->col_major) {
                        int64_t c[NN_MAX_SP], r = v, cm = 0;
                        for (int d = sp - 1; d >= 0; d--) c[d] = r % g->in[d], r /= g->in[d];
                        for (int d = sp - 1; d >= 0; d--) cm = cm * g->in[d] + c[d];
                        v = cm;
                    }
                    j->idx[(int64_t)pl * j->outsz + p] = (int64_t)pl * j->insz + v;
                }
            } else {
                int64_t c = j->include_pad ? cnt_pad : cnt;
                j->y[(int64_t)pl * j->outsz + p] = c > 0 ? s / (float)c : 0.0f;
            }
        }
    }
}

static opt_status pool_run(opt_kctx *k, opt_error *err, bool max)
{
    const opt_array *X = k->in[0];
    if (X->ndim < 3) return opt_kerr(k, err, OPT_ERR_INVALID, "X has rank %d (need >= 3)", X->ndim);
    nn_conv_geom g;
    OPT_TRY(nn_conv_geom_init(&g, k->node, X->ndim - 2, X->dims + 2, NULL, true, err));
    g.N = X->dims[0];
    g.C = g.M = X->dims[1];
    g.group = 1;
    int64_t dims[OPT_MAX_DIMS] = {g.N, g.C};
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.out[i];
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, dims, err));
    bool want_idx = max && k->n_out > 1 && k->node->n_outputs > 1 && k->node->outputs[1] &&
                    k->node->outputs[1][0];
    if (want_idx) OPT_TRY(opt_kctx_output(k, 1, OPT_DT_INT64, X->ndim, dims, err));
    if (!opt_array_numel(&k->out[0])) return OPT_OK;
    if (max && !want_idx && (X->dtype == OPT_DT_UINT8 || X->dtype == OPT_DT_INT8) && g.nsp <= 2 &&
        g.stride[g.nsp - 1] <= 2 && maxpool_bytes_available()) {
        bytes_job bj = {&g, X->data, k->out[0].data, X->dtype == OPT_DT_INT8, nn_geom_in_size(&g), nn_geom_out_size(&g)};
        nn_parallel(k, (size_t)(g.N * g.C), pool_planes_bytes, &bj);
        return OPT_OK;
    }
    float *tx, *ty;
    const float *x = nn_f32_in_k(k, X, &tx);
    float *y = nn_f32_out_k(k, &k->out[0], &ty);
    if (!x || !y) {
        free(tx);
        free(ty);
        return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    pool_job j = {&g, x, y, want_idx ? (int64_t *)k->out[1].data : NULL, max,
                  opt_node_attr_int(k->node, "count_include_pad", 0) != 0,
                  opt_node_attr_int(k->node, "storage_order", 0) == 1, nn_geom_in_size(&g),
                  nn_geom_out_size(&g)};
    nn_parallel(k, (size_t)(g.N * g.C), g.nsp <= 2 ? pool_planes_2d : pool_planes_nd, &j);
    nn_f32_out_done_k(k, &k->out[0], y, ty);
    free(tx);
    return OPT_OK;
}

static opt_status maxpool_run(opt_kctx *k, opt_error *err)
{
    return pool_run(k, err, true);
}

static opt_status avgpool_run(opt_kctx *k, opt_error *err)
{
    return pool_run(k, err, false);
}

static opt_status maxpool_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                                int *out_dt, size_t n_out, opt_error *err)
{
    if (n_out > 0) out_dt[0] = in_dt[0];
    if (n_out > 1) out_dt[1] = OPT_DT_INT64;
    return OPT_OK;
}

/* ---- global pools ---------------------------------------------------------------------------- */

typedef struct gpool_job {
    const float *x;
    float *y;
    int64_t sz;
    bool max;
} gpool_job;

static void gpool_planes(void *ctx, size_t begin, size_t end)
{
    const gpool_job *j = ctx;
    for (size_t pl = begin; pl < end; pl++) {
        const float *p = j->x + (int64_t)pl * j->sz;
        if (j->max) {
            float m = j->sz ? p[0] : -INFINITY;
            for (int64_t i = 1; i < j->sz; i++)
                if (p[i] > m) m = p[i];
            j->y[pl] = m;
        } else {
            /* Four partial sums keep the loop vectorisable and the error small. */
            float s[4] = {0, 0, 0, 0};
            int64_t i = 0;
            for (; i + 4 <= j->sz; i += 4)
                for (int q = 0; q < 4; q++) s[q] += p[i + q];
            for (; i < j->sz; i++) s[0] += p[i];
            j->y[pl] = ((s[0] + s[1]) + (s[2] + s[3])) / (float)j->sz;
        }
    }
}

static opt_status gpool_run(opt_kctx *k, opt_error *err, bool max)
{
    const opt_array *X = k->in[0];
    if (X->ndim < 2) return opt_kerr(k, err, OPT_ERR_INVALID, "X has rank %d (need >= 2)", X->ndim);
    int64_t dims[OPT_MAX_DIMS], sz = 1;
    for (int i = 0; i < X->ndim; i++) dims[i] = i < 2 ? X->dims[i] : 1;
    for (int i = 2; i < X->ndim; i++) sz *= X->dims[i];
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, dims, err));
    if (!opt_array_numel(&k->out[0])) return OPT_OK;
    float *tx, *ty;
    const float *x = nn_f32_in_k(k, X, &tx);
    float *y = nn_f32_out_k(k, &k->out[0], &ty);
    if (!x || !y) {
        free(tx);
        free(ty);
        return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    gpool_job j = {x, y, sz, max};
    nn_parallel(X->dims[0] * X->dims[1] * sz >= 65536 ? k : NULL, (size_t)(X->dims[0] * X->dims[1]),
                gpool_planes, &j);
    nn_f32_out_done_k(k, &k->out[0], y, ty);
    free(tx);
    return OPT_OK;
}

static opt_status gmax_run(opt_kctx *k, opt_error *err)
{
    return gpool_run(k, err, true);
}

static opt_status gavg_run(opt_kctx *k, opt_error *err)
{
    return gpool_run(k, err, false);
}

#define POOL_MAX_DTS (OPT_DTS_FLOATS | OPT_DT_BIT(OPT_DT_INT8) | OPT_DT_BIT(OPT_DT_UINT8))

const opt_kernel opt_kernels_pool[] = {
    {"", "MaxPool", 1, INT_MAX, POOL_MAX_DTS, 0, OPT_DEVICE_CPU, maxpool_infer, NULL,
     maxpool_run, NULL},
    {"", "AveragePool", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, NULL,
     avgpool_run, NULL},
    {"", "GlobalAveragePool", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, NULL, gavg_run,
     NULL},
    {"", "GlobalMaxPool", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, NULL, gmax_run,
     NULL},
    {0},
};
