/*
 * libopt/exec/cpu/conv.c — Conv and ConvTranspose on the CPU (1-D, 2-D, 3-D and beyond).
 *
 * Conv runs one of these paths, each checked against nn_conv_f32_ref() by the unit tests:
 *   - depthwise (group == C == M, 2-D or 1-D): a direct loop, one output row at a time, whose
 *     inner loop over output columns vectorises when the stride is 1;
 *   - with the AVX-512 kernel (sgemm.c), per image and group:
 *       - 1-D and 2-D convs with dilation 1 other than 1x1 without pads: the image
 *         zero-padded once and split into its stride phases (stride 1: one phase, not copied
 *         without pads), read in place by nn_sgemm_shifted, no im2col at all (conv_shifted;
 *         conv_shift_pays says why 1x1 without pads stays below);
 *       - the others: im2col straight into the kernel's panels, a block of columns at a time
 *         (conv_pack_b; 1x1 without pads copies the image's columns);
 *   - without it: im2col into a workspace (the image itself for 1x1 without pads), then one
 *     OpenBLAS sgemm per image and group.
 * Threads: with at least as many images as threads, the two AVX-512 paths give each thread a
 * run of whole images (its own phase copy or panel workspace, single-threaded products: one
 * dispatch per conv); with fewer, each image's product is split between the threads.
 * ConvTranspose is sgemm (W^T x X) followed by col2im. Weights that are initializers are
 * converted to float32 once at load (prepare); float16/bfloat16/double models compute in float32
 * and round once at the output.
 */
#include "libopt/exec/cpu/bcast.h"
#include "libopt/exec/cpu/convert.h"
#include "libopt/exec/cpu/nn.h"
#include "libopt/exec/fuse.h"

#include "libopt/exec/cpu/blas.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- reference twins ------------------------------------------------------------------------- */

/* Steps the multi-index o over the box dims[0..n) in row-major order; false after the last. */
static bool nd_next(int64_t *o, const int64_t *dims, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        if (++o[i] < dims[i]) return true;
        o[i] = 0;
    }
    return false;
}

void nn_conv_f32_ref(const nn_conv_geom *g, const float *x, const float *w, const float *b,
                     float *y)
{
    int sp = g->nsp;
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t m = 0; m < g->M; m++) {
            int64_t gi = m / Mg;
            float *ym = y + (n * g->M + m) * outsz;
            int64_t o[NN_MAX_SP] = {0};
            int64_t p = 0;
            do {
                double acc = b ? b[m] : 0.0;
                for (int64_t c = 0; c < Cg; c++) {
                    const float *xc = x + (n * g->C + gi * Cg + c) * insz;
                    const float *wc = w + (m * Cg + c) * ks;
                    int64_t kk[NN_MAX_SP] = {0};
                    int64_t q = 0;
                    do {
                        int64_t idx = 0;
                        bool inside = true;
                        for (int i = 0; i < sp; i++) {
                            int64_t pos = o[i] * g->stride[i] - g->pad_b[i] + kk[i] * g->dil[i];
                            if (pos < 0 || pos >= g->in[i]) inside = false;
                            idx = idx * g->in[i] + pos;
                        }
                        if (inside) acc += (double)xc[idx] * wc[q];
                        q++;
                    } while (nd_next(kk, g->k, sp));
                }
                ym[p++] = (float)acc;
            } while (nd_next(o, g->out, sp));
        }
}

void nn_convtr_f32_ref(const nn_conv_geom *g, const float *x, const float *w, const float *b,
                       float *y)
{
    int sp = g->nsp;
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    double *acc = calloc((size_t)outsz, sizeof *acc);
    if (!acc) return;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t m = 0; m < g->M; m++) {
            int64_t gi = m / Mg, mg = m % Mg;
            for (int64_t p = 0; p < outsz; p++) acc[p] = b ? b[m] : 0.0;
            for (int64_t c = 0; c < Cg && insz && ks; c++) { /* (empty input or kernel: bias) */
                const float *xc = x + (n * g->C + gi * Cg + c) * insz;
                const float *wc = w + ((gi * Cg + c) * Mg + mg) * ks;
                int64_t i_[NN_MAX_SP] = {0};
                int64_t ip = 0;
                do {
                    int64_t kk[NN_MAX_SP] = {0};
                    int64_t q = 0;
                    do {
                        int64_t idx = 0;
                        bool inside = true;
                        for (int d = 0; d < sp; d++) {
                            int64_t pos = i_[d] * g->stride[d] - g->pad_b[d] + kk[d] * g->dil[d];
                            if (pos < 0 || pos >= g->out[d]) inside = false;
                            idx = idx * g->out[d] + pos;
                        }
                        if (inside) acc[idx] += (double)xc[ip] * wc[q];
                        q++;
                    } while (nd_next(kk, g->k, sp));
                    ip++;
                } while (nd_next(i_, g->in, sp));
            }
            float *ym = y + (n * g->M + m) * outsz;
            for (int64_t p = 0; p < outsz; p++) ym[p] = (float)acc[p];
        }
    free(acc);
}

/* ---- depthwise ------------------------------------------------------------------------------- */

typedef struct dw_job {
    const nn_conv_geom *g;
    const float *x, *w, *b;
    float *y;
    const nn_conv_epi *epi; /* or NULL */
    bool fast;              /* AVX-512 planes (nn_sgemm_fast) */
} dw_job;

/* One plane of a direct 2-D depthwise convolution (1-D as height 1): per output row, one
 * multiply-add sweep per kernel tap over the columns whose input lies inside the image. */
static NN_VEC void dw_plane(const nn_conv_geom *g, const float *restrict xp,
                            const float *restrict wp, float bias, float *restrict yp)
{
    int sp = g->nsp;
    int64_t H = sp == 2 ? g->in[0] : 1, W = g->in[sp - 1];
    int64_t OH = sp == 2 ? g->out[0] : 1, OW = g->out[sp - 1];
    int64_t KH = sp == 2 ? g->k[0] : 1, KW = g->k[sp - 1];
    int64_t sh = sp == 2 ? g->stride[0] : 1, sw = g->stride[sp - 1];
    int64_t dh = sp == 2 ? g->dil[0] : 1, dw = g->dil[sp - 1];
    int64_t ph = sp == 2 ? g->pad_b[0] : 0, pw = g->pad_b[sp - 1];
    for (int64_t oh = 0; oh < OH; oh++) {
        float *restrict d = yp + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++) d[ow] = bias;
        for (int64_t kh = 0; kh < KH; kh++) {
            int64_t ih = oh * sh - ph + kh * dh;
            if (ih < 0 || ih >= H) continue;
            const float *xr = xp + ih * W;
            for (int64_t kw = 0; kw < KW; kw++) {
                float wv = wp[kh * KW + kw];
                int64_t woff = kw * dw - pw;
                int64_t ow0 = woff >= 0 ? 0 : (-woff + sw - 1) / sw;
                int64_t ow1 = W - woff <= 0 ? 0 : (W - woff + sw - 1) / sw;
                if (ow1 > OW) ow1 = OW;
                const float *restrict s = xr + woff;
                if (sw == 1)
                    for (int64_t ow = ow0; ow < ow1; ow++) d[ow] += wv * s[ow];
                else if (sw == 2)
                    for (int64_t ow = ow0; ow < ow1; ow++) d[ow] += wv * s[2 * ow];
                else
                    for (int64_t ow = ow0; ow < ow1; ow++) d[ow] += wv * s[ow * sw];
            }
        }
    }
}

/* y = act(y + z) over one plane, the same operations as nn_epilogue_rows. */
static NN_VEC void epi_plane(const nn_conv_epi *e, const float *restrict z, float *restrict y,
                             int64_t n)
{
    if (z)
        for (int64_t i = 0; i < n; i++) y[i] += z[i];
    switch (e->act) {
    case NN_ACT_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : 0.0f;
        break;
    case NN_ACT_CLIP: {
        float lo = e->lo, hi = e->hi;
        for (int64_t i = 0; i < n; i++) {
            float v = y[i] < lo ? lo : y[i];
            y[i] = v > hi ? hi : v;
        }
        break;
    }
    case NN_ACT_LEAKY: {
        float a = e->alpha;
        for (int64_t i = 0; i < n; i++) y[i] = y[i] >= 0 ? y[i] : y[i] * a;
        break;
    }
    default: break;
    }
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

#define DW_AVX512 __attribute__((target("avx512f,avx512dq,fma"), optimize("O3")))

/* One output row of a depthwise plane, 16 columns at a time. KH and KW are passed as constants
 * for 3x3 so the tap loops unroll. Interior chunks (every tap inside the row) load without masks;
 * at the edges each tap is a masked load (lanes outside the image read as zero, so padding needs
 * no branches). The taps are summed in dw_plane's order, z and the activation applied before the
 * one store. */
static DW_AVX512 inline __attribute__((always_inline)) void
dw_row_avx512(const float *xp, const float *wp, float bias, const float *zr, int act, __m512 lo,
              __m512 hi, __m512 alpha, float *yr, int64_t oh, int64_t H, int64_t W, int64_t OW,
              int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t ph,
              int64_t pw)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
        int64_t nv = OW - ow0 < 16 ? OW - ow0 : 16;
        __mmask16 om = (__mmask16)lane_bits(0, nv);
        bool interior = nv == 16 && ow0 * sw - pw >= 0 && (ow0 + 15) * sw + (KW - 1) * dw - pw < W;
        __m512 acc = _mm512_set1_ps(bias);
        for (int64_t kh = 0; kh < KH; kh++) {
            int64_t ih = oh * sh - ph + kh * dh;
            if (ih < 0 || ih >= H) continue;
            uintptr_t xr = (uintptr_t)(xp + ih * W);
            for (int64_t kw = 0; kw < KW; kw++) {
                int64_t start = ow0 * sw + kw * dw - pw; /* input column of lane 0 */
                /* Integer address arithmetic: masked-off lanes may lie outside the row. */
                const float *at = (const float *)(xr + (uintptr_t)start * sizeof(float));
                const float *at16 = (const float *)(xr + (uintptr_t)(start + 16) * sizeof(float));
                __m512 v;
                if (interior) {
                    v = sw == 1 ? _mm512_loadu_ps(at)
                                : _mm512_permutex2var_ps(_mm512_loadu_ps(at), even,
                                                         _mm512_maskz_loadu_ps(0x7FFF, at16));
                } else if (sw == 1) {
                    __mmask16 m = (__mmask16)lane_bits(-start, W - start < nv ? W - start : nv);
                    if (!m) continue;
                    v = _mm512_maskz_loadu_ps(m, at);
                } else {
                    int64_t span = 2 * nv - 1;
                    uint32_t m = lane_bits(-start, W - start < span ? W - start : span);
                    if (!m) continue;
                    v = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps((__mmask16)(m & 0xFFFF), at),
                                               even, _mm512_maskz_loadu_ps((__mmask16)(m >> 16), at16));
                }
                acc = _mm512_fmadd_ps(_mm512_set1_ps(wp[kh * KW + kw]), v, acc);
            }
        }
        if (zr) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(om, zr + ow0));
        if (act == NN_ACT_RELU) acc = _mm512_max_ps(acc, zero);
        else if (act == NN_ACT_CLIP) acc = _mm512_min_ps(hi, _mm512_max_ps(lo, acc));
        else if (act == NN_ACT_LEAKY)
            acc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(acc, zero, _CMP_GE_OQ),
                                       _mm512_mul_ps(acc, alpha), acc);
        _mm512_mask_storeu_ps(yr + ow0, om, acc);
    }
}

/* dw_plane and its epilogue for strides 1 and 2 with AVX-512 (dw_row_avx512); false, doing
 * nothing, for other strides. */
static DW_AVX512 bool dw_plane_avx512(const nn_conv_geom *g, const float *xp, const float *wp,
                                      float bias, const float *zp, const nn_conv_epi *epi,
                                      float *yp)
{
    int sp = g->nsp;
    int64_t H = sp == 2 ? g->in[0] : 1, W = g->in[sp - 1];
    int64_t OH = sp == 2 ? g->out[0] : 1, OW = g->out[sp - 1];
    int64_t KH = sp == 2 ? g->k[0] : 1, KW = g->k[sp - 1];
    int64_t sh = sp == 2 ? g->stride[0] : 1, sw = g->stride[sp - 1];
    int64_t dh = sp == 2 ? g->dil[0] : 1, dw = g->dil[sp - 1];
    int64_t ph = sp == 2 ? g->pad_b[0] : 0, pw = g->pad_b[sp - 1];
    if (sw > 2) return false;
    int act = epi ? epi->act : NN_ACT_NONE;
    __m512 lo = _mm512_set1_ps(epi ? epi->lo : 0), hi = _mm512_set1_ps(epi ? epi->hi : 0);
    __m512 alpha = _mm512_set1_ps(epi ? epi->alpha : 0);
    bool k33 = KH == 3 && KW == 3 && dh == 1 && dw == 1;
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *zr = zp ? zp + oh * OW : NULL;
        float *yr = yp + oh * OW;
        if (k33 && sw == 1)
            dw_row_avx512(xp, wp, bias, zr, act, lo, hi, alpha, yr, oh, H, W, OW, 3, 3, sh, 1, 1, 1, ph, pw);
        else if (k33)
            dw_row_avx512(xp, wp, bias, zr, act, lo, hi, alpha, yr, oh, H, W, OW, 3, 3, sh, 2, 1, 1, ph, pw);
        else
            dw_row_avx512(xp, wp, bias, zr, act, lo, hi, alpha, yr, oh, H, W, OW, KH, KW, sh, sw, dh, dw, ph, pw);
    }
    return true;
}
#else
static bool dw_plane_avx512(const nn_conv_geom *g, const float *xp, const float *wp, float bias,
                            const float *zp, const nn_conv_epi *epi, float *yp)
{
    (void)g, (void)xp, (void)wp, (void)bias, (void)zp, (void)epi, (void)yp;
    return false;
}
#endif

/* Plane sizes of a depthwise job: input, output, kernel. */
static void dw_sizes(const nn_conv_geom *g, int64_t *insz, int64_t *outsz, int64_t *ks)
{
    int sp = g->nsp;
    *insz = (sp == 2 ? g->in[0] : 1) * g->in[sp - 1];
    *outsz = (sp == 2 ? g->out[0] : 1) * g->out[sp - 1];
    *ks = (sp == 2 ? g->k[0] : 1) * g->k[sp - 1];
}

/* Plane pl of N*C (channel pl % C): xp -> yp, zp (or NULL) added before the activation. */
static void dw_one(const dw_job *j, size_t pl, const float *xp, const float *zp, float *yp)
{
    const nn_conv_geom *g = j->g;
    int64_t insz, outsz, ks;
    dw_sizes(g, &insz, &outsz, &ks);
    int64_t c = (int64_t)pl % g->C;
    float bias = j->b ? j->b[c] : 0.0f;
    if (j->fast && dw_plane_avx512(g, xp, j->w + c * ks, bias, zp, j->epi, yp)) return;
    dw_plane(g, xp, j->w + c * ks, bias, yp);
    if (j->epi && (zp || j->epi->act)) epi_plane(j->epi, zp, yp, outsz);
}

/* Planes [begin, end) of N*C. */
static void dw_planes(void *ctx, size_t begin, size_t end)
{
    const dw_job *j = ctx;
    int64_t insz, outsz, ks;
    dw_sizes(j->g, &insz, &outsz, &ks);
    for (size_t pl = begin; pl < end; pl++)
        dw_one(j, pl, j->x + (int64_t)pl * insz,
               j->epi && j->epi->z ? j->epi->z + (int64_t)pl * outsz : NULL, j->y + (int64_t)pl * outsz);
}

/* Depthwise on float16/bfloat16 arrays: each plane is converted into a float32 buffer, computed
 * and rounded into the output right away, so the float32 copies never leave the cache. */
typedef struct dw_half_job {
    dw_job d;              /* x, y and epi->z unused */
    const char *x, *z;     /* half arrays (z may be y's buffer: plane pl is read before written) */
    char *y;
    int xdt, ydt;
    size_t es, oes;        /* their element sizes */
    float *bufs;           /* per part: insz + outsz (+ outsz with z) floats */
    size_t per;
    size_t planes, parts;
} dw_half_job;

static void dw_half_parts(void *ctx, size_t begin, size_t end)
{
    const dw_half_job *h = ctx;
    int64_t insz, outsz, ks;
    dw_sizes(h->d.g, &insz, &outsz, &ks);
    for (size_t t = begin; t < end; t++) {
        float *xf = h->bufs + t * h->per, *yf = xf + insz, *zf = h->z ? yf + outsz : NULL;
        size_t p0 = h->planes * t / h->parts, p1 = h->planes * (t + 1) / h->parts;
        for (size_t pl = p0; pl < p1; pl++) {
            opt_cvt_to_f32(h->x + pl * (size_t)insz * h->es, h->xdt, xf, (size_t)insz);
            if (zf) opt_cvt_to_f32(h->z + pl * (size_t)outsz * h->es, h->xdt, zf, (size_t)outsz);
            dw_one(&h->d, pl, xf, zf, yf);
            opt_cvt_from_f32(yf, h->y + pl * (size_t)outsz * h->oes, h->ydt, (size_t)outsz);
        }
    }
}

/* ---- im2col straight into packed panels ------------------------------------------------------ */

typedef struct pack_job {
    const nn_conv_geom *g;
    const float *x;   /* this image's group of input channels */
    int64_t K, ks, insz, outsz;
    bool pointwise;
} pack_job;

/* dst[t] = src[first + t * stride] for t in [0, n), reading source positions outside [0, w) as
 * zero. Inlined into the packer: no divisions for stride 1, the common case. */
static inline void copy_run(float *restrict dst, const float *restrict src, int64_t n,
                            int64_t stride, int64_t first, int64_t w)
{
    int64_t t0, t1;
    if (stride == 1) {
        t0 = first < 0 ? -first : 0;
        t1 = w - first < n ? w - first : n;
    } else {
        t0 = first < 0 ? (-first + stride - 1) / stride : 0;
        t1 = first + (n - 1) * stride < w ? n : w - first <= 0 ? 0 : (w - first + stride - 1) / stride;
    }
    if (t0 > n) t0 = n;
    if (t1 < t0) t1 = t0;
    for (int64_t t = 0; t < t0; t++) dst[t] = 0.0f;
    if (stride == 1) {
        const float *sp = src + first;
        for (int64_t t = t0; t < t1; t++) dst[t] = sp[t];
    } else if (stride == 2) { /* a constant stride vectorises (two loads and a permute) */
        const float *sp = src + first;
        for (int64_t t = t0; t < t1; t++) dst[t] = sp[2 * t];
    } else {
        for (int64_t t = t0; t < t1; t++) dst[t] = src[first + t * stride];
    }
    for (int64_t t = t1; t < n; t++) dst[t] = 0.0f;
}

/* The packer for nn_sgemm_packed: columns [c0, c0 + nc) of the unfolded image, written panel
 * by panel. Positions advance incrementally (no division per run of columns). */
static NN_VEC void conv_pack_b(const void *ctx, int64_t c0, int64_t nc, float *dst)
{
    const pack_job *j = ctx;
    const nn_conv_geom *g = j->g;
    int64_t K = j->K, npan = (nc + NN_NR - 1) / NN_NR, tail = npan * NN_NR - nc;
    if (tail)
        for (int64_t r = 0; r < K; r++)
            memset(dst + (npan - 1) * K * NN_NR + r * NN_NR + (NN_NR - tail), 0,
                   (size_t)tail * sizeof *dst);
    if (j->pointwise) {
        for (int64_t p = 0; p < npan; p++) {
            int64_t n = nc - p * NN_NR < NN_NR ? nc - p * NN_NR : NN_NR;
            const float *src = j->x + c0 + p * NN_NR;
            float *d = dst + p * K * NN_NR;
            if (n == NN_NR) {
                for (int64_t r = 0; r < K; r++)
                    for (int64_t l = 0; l < NN_NR; l++) d[r * NN_NR + l] = src[r * j->insz + l];
            } else {
                for (int64_t r = 0; r < K; r++)
                    for (int64_t l = 0; l < n; l++) d[r * NN_NR + l] = src[r * j->insz + l];
            }
        }
        return;
    }
    int sp = g->nsp;
    if (sp > 2) { /* N-D: one value at a time */
        for (int64_t r = 0; r < K; r++) {
            int64_t c = r / j->ks, kk = r % j->ks, koff[NN_MAX_SP];
            for (int i = sp - 1; i >= 0; i--) {
                koff[i] = (kk % g->k[i]) * g->dil[i] - g->pad_b[i];
                kk /= g->k[i];
            }
            const float *xc = j->x + c * j->insz;
            for (int64_t q = 0; q < nc; q++) {
                int64_t p = c0 + q, idx = 0;
                bool inside = true;
                int64_t rem = p, o[NN_MAX_SP];
                for (int i = sp - 1; i >= 0; i--) {
                    o[i] = rem % g->out[i];
                    rem /= g->out[i];
                }
                for (int i = 0; i < sp; i++) {
                    int64_t pos = o[i] * g->stride[i] + koff[i];
                    if (pos < 0 || pos >= g->in[i]) {
                        inside = false;
                        break;
                    }
                    idx = idx * g->in[i] + pos;
                }
                dst[(q / NN_NR) * K * NN_NR + r * NN_NR + q % NN_NR] = inside ? xc[idx] : 0.0f;
            }
        }
        return;
    }
    int64_t H = sp == 2 ? g->in[0] : 1, W = g->in[sp - 1];
    int64_t OW = g->out[sp - 1];
    int64_t KW = g->k[sp - 1];
    int64_t sh = sp == 2 ? g->stride[0] : 1, sw = g->stride[sp - 1];
    int64_t dh = sp == 2 ? g->dil[0] : 1, dw = g->dil[sp - 1];
    int64_t ph = sp == 2 ? g->pad_b[0] : 0, pw = g->pad_b[sp - 1];
    int64_t oh0 = c0 / OW, ow0 = c0 % OW;
    for (int64_t r = 0; r < K; r++) {
        int64_t c = r / j->ks, kk = r % j->ks, kh = kk / KW, kw = kk % KW;
        const float *xc = j->x + c * j->insz;
        int64_t woff = kw * dw - pw, hoff = kh * dh - ph;
        int64_t q = 0, oh = oh0, ow = ow0, lane = 0;
        float *panel = dst + r * NN_NR;
        while (q < nc) {
            int64_t n = OW - ow;
            if (n > nc - q) n = nc - q;
            if (n > NN_NR - lane) n = NN_NR - lane;
            float *d = panel + lane;
            int64_t ih = oh * sh + hoff;
            if (ih < 0 || ih >= H)
                for (int64_t t = 0; t < n; t++) d[t] = 0.0f;
            else
                copy_run(d, xc + ih * W, n, sw, ow * sw + woff, W);
            q += n;
            ow += n;
            if (ow == OW) ow = 0, oh++;
            lane += n;
            if (lane == NN_NR) lane = 0, panel += K * NN_NR;
        }
    }
}

/* ---- the fast Conv --------------------------------------------------------------------------- */

typedef struct epi_job {
    nn_epilogue ep; /* z not used: already in the output */
    float *y;
    int64_t outsz;
} epi_job;

static void epi_rows(void *ctx, size_t begin, size_t end)
{
    const epi_job *j = ctx;
    nn_epilogue_rows(&j->ep, j->y + (int64_t)begin * j->outsz, j->outsz, (int64_t)begin,
                     (int64_t)(end - begin), j->outsz, true);
}

static bool conv_is_pointwise(const nn_conv_geom *g)
{
    for (int i = 0; i < g->nsp; i++)
        if (g->k[i] != 1 || g->stride[i] != 1 || g->pad_b[i] || g->pad_e[i]) return false;
    return true;
}

size_t nn_conv_packed_floats(int64_t M, int64_t group, int64_t Kg)
{
    return (size_t)group * nn_pack_a_floats(M / group, Kg);
}

void nn_conv_pack_w(const float *w, int64_t M, int64_t group, int64_t Kg, float *dst)
{
    int64_t Mg = M / group;
    size_t per = nn_pack_a_floats(Mg, Kg);
    for (int64_t gi = 0; gi < group; gi++)
        nn_pack_a(w + gi * Mg * Kg, Kg, 1, Mg, Kg, NULL, dst + (size_t)gi * per);
}

/* ---- convolutions without packing (any stride) ----------------------------------------------- */

/* A 1-D or 2-D conv with dilation 1 seen as a 2-D one (1-D: height 1), read through its stride
 * phases. With stride (sh, sw) the zero-padded image splits into sh x sw phases: phase (py, px)
 * holds the padded positions (sh * i + py, sw * j + px). Tap (kh, kw) of output (oh, ow) reads
 * padded position (sh * oh + kh, sw * ow + kw), which is position (oh + kh / sh, ow + kw / sw) of
 * phase (kh % sh, kw % sw): within one phase the taps of a conv are a stride-1 conv's, so the
 * unfolded image is again rows of memory at fixed offsets (nn_bshift) over a Hq x Wq phase, with
 * Hq = OH + (KH - 1) / sh and Wq = OW + (KW - 1) / sw. Only the phases some tap reads are made
 * (min(s, K) per dim: one for a 1x1 kernel, a plain subsampled copy). Stride 1 is the case of
 * one phase: the padded image itself. */
typedef struct shift_geom {
    int64_t H, W, OH, OW, KH, KW, pt, pl; /* pads: top, left */
    int64_t sh, sw;                       /* strides */
    int64_t nph, npw;                     /* phases made per dim */
    int64_t Hq, Wq;                       /* one phase */
    bool padded;                          /* some pad is not 0 */
    bool copy;                            /* false: the image itself is the only phase */
} shift_geom;

/* Fills sg and returns true when g can run on a shifted B (nn_sgemm_shifted). */
static bool shift_geom_init(const nn_conv_geom *g, shift_geom *sg)
{
    if (g->nsp < 1 || g->nsp > 2) return false;
    for (int i = 0; i < g->nsp; i++)
        if (g->stride[i] < 1 || g->dil[i] != 1 || g->pad_b[i] < 0 || g->pad_e[i] < 0)
            return false;
    int h = g->nsp == 2 ? 0 : -1, w = g->nsp - 1;
    sg->H = h < 0 ? 1 : g->in[h];
    sg->OH = h < 0 ? 1 : g->out[h];
    sg->KH = h < 0 ? 1 : g->k[h];
    sg->pt = h < 0 ? 0 : g->pad_b[h];
    sg->sh = h < 0 ? 1 : g->stride[h];
    sg->W = g->in[w], sg->OW = g->out[w], sg->KW = g->k[w];
    sg->pl = g->pad_b[w], sg->sw = g->stride[w];
    int64_t pb = h < 0 ? 0 : g->pad_e[h], pr = g->pad_e[w];
    if (sg->OH < 1 || sg->OW < 1 || sg->KH < 1 || sg->KW < 1) return false;
    /* The last output's taps lie inside the padded image (ONNX's output size guarantees it). */
    if ((sg->OH - 1) * sg->sh + sg->KH > sg->H + sg->pt + pb ||
        (sg->OW - 1) * sg->sw + sg->KW > sg->W + sg->pl + pr)
        return false;
    sg->padded = sg->pt || sg->pl || pb || pr;
    sg->nph = sg->sh < sg->KH ? sg->sh : sg->KH;
    sg->npw = sg->sw < sg->KW ? sg->sw : sg->KW;
    sg->Hq = sg->OH + (sg->KH - 1) / sg->sh;
    sg->Wq = sg->OW + (sg->KW - 1) / sg->sw;
    /* Stride 1 without pads: the phase is the image itself, read in place. */
    sg->copy = sg->padded || sg->sh > 1 || sg->sw > 1 || sg->Hq != sg->H || sg->Wq != sg->W;
    return true;
}

/* Whether the shifted path beats im2col into panels for a conv it can run. Measured on
 * the stride-1 convs of rescnn, lenet5, lenet5caffe and ResNet-50 (docs/benchmarks.md,
 * "Convolutions without im2col packing"): it wins on every kernel larger than 1x1, from
 * 1 input channel on 28x28 to 512 on 7x7 (where the wide grid computes 9/7 of the columns, but
 * 61 columns take as many tiles as 49), by 7-17% at ResNet-50's sizes and 1.7-2.4x at the small
 * models' (16-64 channels). A 1x1 kernel without pads is the one loss (1-9% on 10 of ResNet-50's
 * 12 shapes): its packing is a plain copy paid once for all M rows, while its shifted rows are
 * K image planes far apart, which stay in L1 less well than one packed panel. Strided convs
 * ("Strided convolutions through their phases"): the same, measured on rescnn's, ResNet-50's
 * and MobileNetV2's: 3x3 with stride 2 wins by 8-14% at ResNet-50's widths, 1.2-1.3x on the
 * 3-channel stems (7x7 and 3x3) and 1.6-1.9x at rescnn's, while 1x1 with stride 2 loses 5-15%
 * (its phase is a subsampled copy made for nothing: packing subsamples as it copies). */
static bool conv_shift_pays(const shift_geom *sg)
{
    return sg->KH * sg->KW > 1 || sg->padded;
}

typedef struct phase_job {
    const shift_geom *sg;
    const float *x; /* Cg planes H x W */
    float *xp;      /* Cg blocks of nph * npw phases Hq x Wq */
} phase_job;

/* The rows a few steps ahead of input row r of plane src (W wide): the image is usually not in
 * cache (a batch's activations), and the hardware prefetcher does not follow these short rows.
 * Past the plane it asks for the next channel's; prefetches never fault. */
static inline void phase_prefetch(const float *src, int64_t r, int64_t W)
{
    uintptr_t ahead = (uintptr_t)src + (uintptr_t)((r + 4) * W) * sizeof(float);
    __builtin_prefetch((const void *)ahead, 0, 3);
    __builtin_prefetch((const void *)(ahead + (uintptr_t)W * sizeof(float) - 4), 0, 3);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* One channel's phases (phase_planes) with AVX-512 for strides 1 and 2, 16 values of each phase
 * row per step: masked loads of the 16 * sw input columns (lanes outside the row read as zero,
 * so the pads cost no branches), split into even and odd columns by one permute each for
 * stride 2. False for other strides (nothing done). */
static DW_AVX512 bool phase_plane_avx512(const shift_geom *sg, const float *src, float *d)
{
    int64_t sw = sg->sw, W = sg->W, Wq = sg->Wq, pl = sg->pl, qsz = sg->Hq * Wq;
    if (sw > 2) return false;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 zero = _mm512_setzero_ps();
    uintptr_t base = (uintptr_t)src;
    /* Input rows in order (r = sh * i + py - pt grows by one a step): one stream. */
    for (int64_t i = 0; i < sg->Hq; i++)
        for (int64_t py = 0; py < sg->nph; py++) {
            int64_t r = sg->sh * i + py - sg->pt;
            float *d0 = d + py * sg->npw * qsz + i * Wq, *d1 = sg->npw > 1 ? d0 + qsz : d0;
            phase_prefetch(src, r, W);
            bool in = r >= 0 && r < sg->H;
            uintptr_t row = base + (uintptr_t)(r * W) * sizeof(float);
            for (int64_t j0 = 0; j0 < Wq; j0 += 16) {
                __mmask16 om = (__mmask16)lane_bits(0, Wq - j0);
                if (!in) {
                    _mm512_mask_storeu_ps(d0 + j0, om, zero);
                    if (sg->npw > 1) _mm512_mask_storeu_ps(d1 + j0, om, zero);
                    continue;
                }
                int64_t start = sw * j0 - pl; /* input column of lane 0 */
                /* Integer address arithmetic: masked-off lanes may lie outside the row. */
                const float *at = (const float *)(row + (uintptr_t)start * sizeof(float));
                __m512 lo = _mm512_maskz_loadu_ps((__mmask16)lane_bits(-start, W - start), at);
                if (sw == 1) {
                    _mm512_mask_storeu_ps(d0 + j0, om, lo);
                    continue;
                }
                const float *at16 = (const float *)(row + (uintptr_t)(start + 16) * sizeof(float));
                __m512 hi = _mm512_maskz_loadu_ps((__mmask16)lane_bits(-start - 16, W - start - 16),
                                                  at16);
                _mm512_mask_storeu_ps(d0 + j0, om, _mm512_permutex2var_ps(lo, even, hi));
                if (sg->npw > 1)
                    _mm512_mask_storeu_ps(d1 + j0, om, _mm512_permutex2var_ps(lo, odd, hi));
            }
        }
    return true;
}
#else
static bool phase_plane_avx512(const shift_geom *sg, const float *src, float *d)
{
    (void)sg, (void)src, (void)d;
    return false;
}
#endif

/* Channels [begin, end) of the phase copy: phase (py, px) row i is input row sh * i + py - pt
 * read from column px - pl on with stride sw, zero outside the image. */
static void phase_planes(void *ctx, size_t begin, size_t end)
{
    const phase_job *j = ctx;
    const shift_geom *sg = j->sg;
    int64_t qsz = sg->Hq * sg->Wq, Wq = sg->Wq;
    bool fast = nn_sgemm_fast();
    for (size_t c = begin; c < end; c++) {
        const float *src = j->x + (int64_t)c * sg->H * sg->W;
        float *d = j->xp + (int64_t)c * sg->nph * sg->npw * qsz;
        if (sg->sh == 1 && sg->sw == 1) { /* the zero-padded image: rows copied whole */
            int64_t pt = sg->Hq < sg->pt ? sg->Hq : sg->pt;
            memset(d, 0, (size_t)(pt * Wq) * sizeof *d);
            int64_t i = pt;
            for (; i < sg->Hq && i - sg->pt < sg->H; i++) {
                float *o = d + i * Wq;
                const float *sr = src + (i - sg->pt) * sg->W;
                int64_t pl = sg->pl < Wq ? sg->pl : Wq, n = sg->W < Wq - pl ? sg->W : Wq - pl;
                for (int64_t t = 0; t < pl; t++) o[t] = 0.0f;
                memcpy(o + pl, sr, (size_t)n * sizeof *o);
                for (int64_t t = pl + n; t < Wq; t++) o[t] = 0.0f;
            }
            memset(d + i * Wq, 0, (size_t)((sg->Hq - i) * Wq) * sizeof *d);
            continue;
        }
        if (fast && phase_plane_avx512(sg, src, d)) continue;
        for (int64_t i = 0; i < sg->Hq; i++)
            for (int64_t py = 0; py < sg->nph; py++) {
                int64_t r = sg->sh * i + py - sg->pt;
                phase_prefetch(src, r, sg->W);
                for (int64_t px = 0; px < sg->npw; px++) {
                    float *o = d + (py * sg->npw + px) * qsz + i * Wq;
                    if (r < 0 || r >= sg->H) memset(o, 0, (size_t)Wq * sizeof *o);
                    else copy_run(o, src + r * sg->W, Wq, sg->sw, px - sg->pl, sg->W);
                }
            }
    }
}

/* Whether a conv runs whole images on each thread (single-threaded products) rather than one
 * image after another, each product split between the threads: with as many images as threads,
 * one dispatch per conv instead of one per image, and no product too small to split. Both give
 * the same bits (an output's additions do not depend on the split). */
static bool conv_by_images(const opt_kctx *k, const nn_conv_geom *g)
{
    return nn_threads(k) > 1 && g->N >= nn_threads(k);
}

/* Images [n0, n1) split into `slots` contiguous runs, slot s on one thread. */
typedef struct image_slots {
    int64_t n;
    size_t slots;
    void (*run)(void *ctx, size_t slot, int64_t n0, int64_t n1);
    void *ctx;
} image_slots;

static void image_slot_run(void *ctx, size_t begin, size_t end)
{
    const image_slots *is = ctx;
    for (size_t s = begin; s < end; s++) {
        int64_t n0 = is->n * (int64_t)s / (int64_t)is->slots;
        int64_t n1 = is->n * (int64_t)(s + 1) / (int64_t)is->slots;
        if (n0 < n1) is->run(is->ctx, s, n0, n1);
    }
}

/* What both AVX-512 paths take for a whole conv: weights packed per group in pw (per floats
 * each). */
typedef struct conv_args {
    const nn_conv_geom *g;
    const float *x, *pw;
    size_t per;
    const float *b;
    const nn_conv_epi *epi;
    float *y;
} conv_args;

/* The epilogue of image n, group gi (output rows from (n * M + gi * Mg) * outsz on). */
static nn_epilogue conv_image_epi(const conv_args *a, int64_t n, int64_t gi, int64_t outsz)
{
    const nn_conv_epi *epi = a->epi;
    int64_t Mg = a->g->M / a->g->group, o = (n * a->g->M + gi * Mg) * outsz;
    nn_epilogue ep = {a->b ? a->b + gi * Mg : NULL, NULL, epi && epi->z ? epi->z + o : NULL,
                      outsz, epi ? epi->act : NN_ACT_NONE, epi ? epi->lo : 0,
                      epi ? epi->hi : 0, epi ? epi->alpha : 0};
    return ep;
}

typedef struct shifted_job {
    conv_args a;
    const shift_geom *sg;
    const int64_t *off;
    float *xp;          /* phase copies: slot s at xp + s * slot_floats */
    size_t slot_floats;
} shifted_job;

/* Images [n0, n1) of conv_shifted, products on k's threads (NULL: this thread), phases copied
 * into xp. */
static bool shifted_images(opt_kctx *k, const shifted_job *j, int64_t n0, int64_t n1, float *xp)
{
    const nn_conv_geom *g = j->a.g;
    const shift_geom *sg = j->sg;
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = sg->H * sg->W, outsz = sg->OH * sg->OW, K = Cg * sg->KH * sg->KW;
    int64_t plane = sg->nph * sg->npw * sg->Hq * sg->Wq;
    nn_bshift bs = {NULL, j->off, sg->Wq, sg->OW};
    int64_t N = (sg->OH - 1) * sg->Wq + sg->OW;
    bool ok = true;
    for (int64_t n = n0; n < n1 && ok; n++)
        for (int64_t gi = 0; gi < g->group && ok; gi++) {
            const float *xg = j->a.x + (n * g->C + gi * Cg) * insz;
            if (sg->copy) {
                phase_job pj = {sg, xg, xp};
                /* Threads only where the copy is big enough to pay for waking them. */
                nn_parallel(Cg * plane >= 65536 ? k : NULL, (size_t)Cg, phase_planes, &pj);
                bs.base = xp;
            } else {
                bs.base = xg;
            }
            nn_epilogue ep = conv_image_epi(&j->a, n, gi, outsz);
            ok = nn_sgemm_shifted(k, Mg, N, K, j->a.pw + (size_t)gi * j->a.per, &bs,
                                  j->a.y + (n * g->M + gi * Mg) * outsz, outsz, &ep);
        }
    return ok;
}

static void shifted_slot(void *ctx, size_t slot, int64_t n0, int64_t n1)
{
    const shifted_job *j = ctx;
    shifted_images(NULL, j, n0, n1, j->xp ? j->xp + slot * j->slot_floats : NULL);
}

/* The conv on the wide grid: output position (oh, ow) is column q = oh * Wq + ow of a product
 * whose row k = (c, kh, kw) is phase (kh % sh, kw % sw) of channel c from row kh / sh, column
 * kw / sw on, so each row of the unfolded matrix is a contiguous view of the phase copy and
 * nothing is packed. Columns ow >= OW (the wide grid's Wq - OW extra per row) are computed and
 * dropped by the kernel's compressed stores; the last row stops at OW, so every read stays
 * inside the phase. Stride 1 without pads reads the image itself (no copy). Weights packed per
 * group in pw (per floats each); false (nothing done) when memory runs out. */
static bool conv_shifted(opt_kctx *k, const nn_conv_geom *g, const shift_geom *sg,
                         const float *x, const float *pw, size_t per, const float *b,
                         const nn_conv_epi *epi, float *y)
{
    int64_t Cg = g->C / g->group, K = Cg * sg->KH * sg->KW;
    int64_t qsz = sg->Hq * sg->Wq, plane = sg->nph * sg->npw * qsz;
    /* By images: one slot per thread, each with its own phase copy. */
    bool by_images = conv_by_images(k, g);
    size_t slots = by_images ? (size_t)nn_threads(k) : 1;
    size_t one = sg->copy ? (size_t)(Cg * plane) : 0;
    size_t bytes = (size_t)K * sizeof(int64_t) + slots * one * sizeof(float);
    opt_error e = {0};
    char *mem = k && k->exec ? opt_kctx_scratch(k, bytes, &e) : NULL, *own = NULL;
    if (!mem) mem = own = malloc(bytes);
    if (!mem) return false;
    int64_t *off = (int64_t *)mem; /* first: 8-byte aligned */
    float *xp = sg->copy ? (float *)(mem + (size_t)K * sizeof(int64_t)) : NULL;
    /* Row k = (c, kh, kw): phase (kh % sh, kw % sw) from (kh / sh, kw / sw), stepped without
     * divisions (K may be thousands of rows, per call). */
    for (int64_t c = 0, r = 0; c < Cg; c++)
        for (int64_t kh = 0, py = 0, oy = 0; kh < sg->KH; kh++) {
            for (int64_t kw = 0, px = 0, ox = 0; kw < sg->KW; kw++) {
                off[r++] = c * plane + (py * sg->npw + px) * qsz + oy * sg->Wq + ox;
                if (++px == sg->sw) px = 0, ox++;
            }
            if (++py == sg->sh) py = 0, oy++;
        }
    shifted_job j = {{g, x, pw, per, b, epi, y}, sg, off, xp, one};
    bool ok = true;
    if (by_images) {
        /* Nothing is allocated inside, so no slot fails where the kernel runs. */
        image_slots is = {g->N, slots, shifted_slot, &j};
        nn_parallel(k, slots, image_slot_run, &is);
    } else {
        ok = shifted_images(k, &j, 0, g->N, xp);
    }
    free(own);
    return ok;
}

int nn_conv_path(const nn_conv_geom *g)
{
    if (g->group == g->C && g->M == g->C && g->nsp <= 2) return NN_CONV_AUTO; /* depthwise */
    if (!nn_sgemm_fast()) return NN_CONV_AUTO;
    shift_geom sg;
    return shift_geom_init(g, &sg) && conv_shift_pays(&sg) ? NN_CONV_SHIFTED : NN_CONV_PACKED;
}

typedef struct packed_job {
    conv_args a;
    pack_job pj;        /* x set per image */
    float *work;        /* slot s packs into work + s * slot_floats */
    size_t slot_floats;
} packed_job;

/* Images [n0, n1) of conv_packed on this thread. */
static void packed_slot(void *ctx, size_t slot, int64_t n0, int64_t n1)
{
    const packed_job *j = ctx;
    const nn_conv_geom *g = j->a.g;
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    pack_job pj = j->pj;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t gi = 0; gi < g->group; gi++) {
            pj.x = j->a.x + (n * g->C + gi * Cg) * pj.insz;
            nn_epilogue ep = conv_image_epi(&j->a, n, gi, pj.outsz);
            nn_sgemm_packed_serial(Mg, pj.outsz, pj.K, j->a.pw + (size_t)gi * j->a.per,
                                   conv_pack_b, &pj, j->a.y + (n * g->M + gi * Mg) * pj.outsz,
                                   pj.outsz, &ep, j->work + slot * j->slot_floats);
        }
}

/* The packed kernel for every image and group; false when it is not available (nothing done). */
static bool conv_packed(opt_kctx *k, const nn_conv_geom *g, const float *x, const float *w,
                        const float *b, const nn_conv_epi *epi, float *y)
{
    if (!nn_sgemm_fast()) return false;
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    int64_t K = Cg * ks;
    const float *pw = epi ? epi->packed : NULL;
    float *own = NULL;
    size_t per = nn_pack_a_floats(Mg, K);
    if (!pw) {
        size_t bytes = nn_conv_packed_floats(g->M, g->group, K) * sizeof(float);
        opt_error e = {0};
        float *buf = k && k->exec ? opt_kctx_scratch(k, bytes, &e) : NULL;
        if (!buf) buf = own = malloc(bytes ? bytes : 1);
        if (!buf) return false;
        nn_conv_pack_w(w, g->M, g->group, K, buf);
        pw = buf;
    }
    shift_geom sg;
    int path = epi ? epi->path : NN_CONV_AUTO;
    if (path != NN_CONV_PACKED && shift_geom_init(g, &sg) &&
        (path == NN_CONV_SHIFTED || conv_shift_pays(&sg)) &&
        conv_shifted(k, g, &sg, x, pw, per, b, epi, y)) {
        free(own);
        return true;
    }
    pack_job pj = {g, NULL, K, ks, insz, outsz, conv_is_pointwise(g)};
    bool ok = true;
    if (conv_by_images(k, g)) {
        /* One slot per thread, each packing into its own workspace. */
        size_t slots = (size_t)nn_threads(k), one = nn_sgemm_work_floats(outsz, K);
        size_t bytes = slots * one * sizeof(float);
        opt_error e = {0};
        float *work = k->exec ? opt_kctx_scratch(k, bytes, &e) : NULL, *own_work = NULL;
        if (!work) work = own_work = malloc(bytes);
        if (work) {
            packed_job j = {{g, x, pw, per, b, epi, y}, pj, work, one};
            image_slots is = {g->N, slots, packed_slot, &j};
            nn_parallel(k, slots, image_slot_run, &is);
            free(own_work);
            free(own);
            return true; /* nothing allocated inside: no slot fails where the kernel runs */
        }
    }
    conv_args a = {g, x, pw, per, b, epi, y};
    for (int64_t n = 0; n < g->N && ok; n++)
        for (int64_t gi = 0; gi < g->group && ok; gi++) {
            pj.x = x + (n * g->C + gi * Cg) * insz;
            nn_epilogue ep = conv_image_epi(&a, n, gi, outsz);
            ok = nn_sgemm_packed(k, Mg, outsz, K, pw + (size_t)gi * per, conv_pack_b, &pj,
                                 y + (n * g->M + gi * Mg) * outsz, outsz, &ep);
        }
    free(own);
    /* Only the first call can fail (memory), before anything was written. */
    return ok;
}

void nn_conv_f32_ex(opt_kctx *k, const nn_conv_geom *g, const float *x, const float *w,
                    const float *b, const nn_conv_epi *epi, float *y)
{
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    if (g->group == g->C && g->M == g->C && g->nsp <= 2) {
        dw_job j = {g, x, w, b, y, epi, nn_sgemm_fast()};
        nn_parallel(k, (size_t)(g->N * g->C), dw_planes, &j);
        return;
    }
    if (conv_packed(k, g, x, w, b, epi, y)) return;
    bool pointwise = conv_is_pointwise(g);
    int64_t K = Cg * ks;
    const float *z = epi ? epi->z : NULL;
    float *col = NULL;
    if (!pointwise) {
        col = malloc((size_t)(K * outsz) * sizeof *col);
        if (!col) { /* out of memory: the slow path needs no workspace */
            if (z && z != y) memcpy(y, z, (size_t)(g->N * g->M * outsz) * sizeof *y);
            else if (!z) memset(y, 0, (size_t)(g->N * g->M * outsz) * sizeof *y);
            float *t = malloc((size_t)(g->N * g->M * outsz) * sizeof *t);
            if (t) {
                nn_conv_f32_ref(g, x, w, NULL, t);
                for (int64_t i = 0; i < g->N * g->M * outsz; i++) y[i] += t[i];
                free(t);
            }
            nn_epilogue ep = {b, NULL, NULL, 0, epi ? epi->act : 0, epi ? epi->lo : 0,
                              epi ? epi->hi : 0, epi ? epi->alpha : 0};
            for (int64_t n = 0; n < g->N; n++)
                nn_epilogue_rows(&ep, y + n * g->M * outsz, outsz, 0, g->M, outsz, true);
            return;
        }
    }
    nn_blas_threads(nn_threads(k));
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t gi = 0; gi < g->group; gi++) {
            const float *xg = x + (n * g->C + gi * Cg) * insz;
            const float *op = xg;
            int64_t off = (n * g->M + gi * Mg) * outsz;
            if (!pointwise) {
                nn_im2col_f32(k, g, xg, Cg, col);
                op = col;
            }
            /* The residual goes in first and sgemm adds to it (it may already be there). */
            if (z && z + off != y + off) memcpy(y + off, z + off, (size_t)(Mg * outsz) * sizeof *y);
            nn_blas()->sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Mg, (int)outsz, (int)K,
                        1.0f, w + gi * Mg * K, (int)K, op, (int)outsz, z ? 1.0f : 0.0f, y + off,
                        (int)outsz);
            if (b || (epi && epi->act)) {
                epi_job j = {{b ? b + gi * Mg : NULL, NULL, NULL, 0, epi ? epi->act : 0,
                              epi ? epi->lo : 0, epi ? epi->hi : 0, epi ? epi->alpha : 0},
                             y + off, outsz};
                nn_parallel(Mg * outsz >= 32768 ? k : NULL, (size_t)Mg, epi_rows, &j);
            }
        }
    free(col);
}

void nn_conv_f32(opt_kctx *k, const nn_conv_geom *g, const float *x, const float *w,
                 const float *b, float *y)
{
    nn_conv_f32_ex(k, g, x, w, b, NULL, y);
}

/* ---- the fast ConvTranspose ------------------------------------------------------------------ */

typedef struct col2im_job {
    const nn_conv_geom *g;
    const float *col; /* [Mg * ks] x insz */
    float *y;         /* Mg output planes */
    int64_t ks, insz, outsz;
} col2im_job;

/* Adds the columns of output channels [begin, end) into their planes. */
static void col2im_channels(void *ctx, size_t begin, size_t end)
{
    const col2im_job *j = ctx;
    const nn_conv_geom *g = j->g;
    int sp = g->nsp;
    for (size_t m = begin; m < end; m++) {
        float *ym = j->y + (int64_t)m * j->outsz;
        for (int64_t kk = 0; kk < j->ks; kk++) {
            const float *src = j->col + ((int64_t)m * j->ks + kk) * j->insz;
            int64_t koff[NN_MAX_SP], t = kk;
            for (int i = sp - 1; i >= 0; i--) {
                koff[i] = (t % g->k[i]) * g->dil[i] - g->pad_b[i];
                t /= g->k[i];
            }
            int64_t o[NN_MAX_SP] = {0};
            int64_t p = 0;
            do {
                int64_t idx = 0;
                bool inside = true;
                for (int i = 0; i < sp; i++) {
                    int64_t q = o[i] * g->stride[i] + koff[i];
                    if (q < 0 || q >= g->out[i]) {
                        inside = false;
                        break;
                    }
                    idx = idx * g->out[i] + q;
                }
                if (inside) ym[idx] += src[p];
                p++;
            } while (nd_next(o, g->in, sp));
        }
    }
}

void nn_convtr_f32(opt_kctx *k, const nn_conv_geom *g, const float *x, const float *w,
                   const float *b, float *y)
{
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    if (insz == 0) { /* an empty spatial input adds nothing: each output plane is its bias */
        for (int64_t i = 0; i < g->N * g->M; i++)
            for (int64_t p = 0; p < outsz; p++) y[i * outsz + p] = b ? b[i % g->M] : 0.0f;
        return;
    }
    float *col = malloc((size_t)(Mg * ks * insz) * sizeof *col);
    if (!col) {
        nn_convtr_f32_ref(g, x, w, b, y);
        return;
    }
    nn_blas_threads(nn_threads(k));
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t gi = 0; gi < g->group; gi++) {
            float *yg = y + (n * g->M + gi * Mg) * outsz;
            for (int64_t m = 0; m < Mg; m++) {
                float bv = b ? b[gi * Mg + m] : 0.0f;
                for (int64_t p = 0; p < outsz; p++) yg[m * outsz + p] = bv;
            }
            /* col[Mg*ks x insz] = W_g^T, where W_g is [Cg x Mg*ks], times X_g [Cg x insz]. */
            nn_blas()->sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(Mg * ks), (int)insz,
                        (int)Cg, 1.0f, w + gi * Cg * Mg * ks, (int)(Mg * ks),
                        x + (n * g->C + gi * Cg) * insz, (int)insz, 0.0f, col, (int)insz);
            col2im_job j = {g, col, yg, ks, insz, outsz};
            nn_parallel(k, (size_t)Mg, col2im_channels, &j);
        }
    free(col);
}

/* ---- kernels --------------------------------------------------------------------------------- */

/* Weights (and bias) converted to float32 at load when they are constants; for FusedConv with a
 * BatchNormalization, its scale folded into the weights and its shift into the bias; the weights
 * packed for the packed kernel when this CPU runs it. */
typedef struct conv_state {
    float *w, *b;
    float *packed;
    bool fused;      /* FusedConv */
    bool bn;         /* FusedConv with a BatchNormalization (needs constant W, B and statistics) */
    nn_conv_epi epi; /* activation of FusedConv (z set per run) */
} conv_state;

static void conv_release(void *state)
{
    conv_state *s = state;
    if (!s) return;
    free(s->w);
    free(s->b);
    free(s->packed);
    free(s);
}

/* A float32 copy of constant a (NULL on out-of-memory). */
static float *f32_copy(const opt_array *a)
{
    float *tmp;
    const float *v = nn_f32_in(a, &tmp);
    if (!v) return NULL;
    if (tmp) return tmp;
    uint64_t cnt = opt_array_numel(a);
    tmp = malloc((cnt ? cnt : 1) * sizeof *tmp);
    if (tmp && cnt) memcpy(tmp, v, cnt * sizeof *tmp);
    return tmp;
}

/* Folds BatchNormalization (inputs 3-6 of FusedConv) into s->w [M x Kg] and s->b [M]:
 * a = scale / sqrt(var + eps), w' = w * a, b' = (b - mean) * a + shift, as norm.c's folding. */
static opt_status conv_fold_bn(const opt_node *n, const opt_array *const *consts, conv_state *s,
                               int64_t M, int64_t Kg, opt_error *err)
{
    for (int i = 3; i < 7; i++)
        if (!consts[i] || (int64_t)opt_array_numel(consts[i]) != M)
            return opt_node_err(n, err, OPT_ERR_INVALID,
                                "BatchNormalization input %d must be a constant of %lld values",
                                i - 2, (long long)M);
    float *t[4] = {0};
    const float *v[4];
    opt_status st = OPT_OK;
    for (int i = 0; i < 4; i++) {
        v[i] = nn_f32_in(consts[3 + i], &t[i]);
        if (!v[i]) st = opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    }
    if (!s->b && st == OPT_OK) {
        s->b = calloc((size_t)(M ? M : 1), sizeof *s->b);
        if (!s->b) st = opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    }
    if (st == OPT_OK) {
        float eps = opt_node_attr_float(n, "epsilon", 1e-5f);
        for (int64_t m = 0; m < M; m++) {
            float a = v[0][m] * (1.0f / sqrtf(v[3][m] + eps));
            for (int64_t q = 0; q < Kg; q++) s->w[m * Kg + q] *= a;
            s->b[m] = (s->b[m] - v[2][m]) * a + v[1][m];
        }
    }
    for (int i = 0; i < 4; i++) free(t[i]);
    return st;
}

static opt_status conv_prepare(const opt_node *n, int opset, const opt_array *const *consts,
                               size_t n_in, void **state, opt_error *err)
{
    if (n_in < 2) return opt_node_err(n, err, OPT_ERR_INVALID, "needs inputs X and W");
    conv_state *s = calloc(1, sizeof *s);
    if (!s) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    *state = s;
    s->fused = strcmp(n->op_type, "FusedConv") == 0;
    for (size_t i = 1; i < 3 && i < n_in; i++) {
        if (!consts[i]) continue;
        float *c = f32_copy(consts[i]);
        if (!c) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
        if (i == 1) s->w = c;
        else s->b = c;
    }
    if (!s->fused) {
        /* Plain Conv: pack constant float weights now when the packed kernel will run. */
        if (s->w && consts[1]->ndim >= 3 && nn_sgemm_fast() && strcmp(n->op_type, "Conv") == 0) {
            int64_t M = consts[1]->dims[0], Kg = 1, group = opt_node_attr_int(n, "group", 1);
            for (int i = 1; i < consts[1]->ndim; i++) Kg *= consts[1]->dims[i];
            bool depthwise = consts[1]->dims[1] == 1 && group == M;
            if (group >= 1 && M % group == 0 && M > 0 && Kg > 0 && !depthwise) {
                s->packed = malloc(nn_conv_packed_floats(M, group, Kg) * sizeof *s->packed);
                if (s->packed) nn_conv_pack_w(s->w, M, group, Kg, s->packed);
            }
        }
        return OPT_OK;
    }
    /* FusedConv (libopt/exec/fuse.h): constant weights, BatchNormalization folded in. */
    if (!s->w || consts[1]->ndim < 3)
        return opt_node_err(n, err, OPT_ERR_INVALID, "FusedConv needs constant weights of rank >= 3");
    int64_t M = consts[1]->dims[0], Kg = 1, group = opt_node_attr_int(n, "group", 1);
    for (int i = 1; i < consts[1]->ndim; i++) Kg *= consts[1]->dims[i];
    if (group < 1 || M % group)
        return opt_node_err(n, err, OPT_ERR_INVALID, "%lld output channels, group %lld",
                            (long long)M, (long long)group);
    if (n_in > 2 && consts[2] && (int64_t)opt_array_numel(consts[2]) != M)
        return opt_node_err(n, err, OPT_ERR_INVALID, "B has %llu values for %lld output channels",
                            (unsigned long long)opt_array_numel(consts[2]), (long long)M);
    if (n_in > 2 && !consts[2] && n->n_inputs > 2 && n->inputs[2] && n->inputs[2][0])
        return opt_node_err(n, err, OPT_ERR_INVALID, "FusedConv needs a constant bias");
    s->bn = n_in > 6 && n->inputs[3] && n->inputs[3][0];
    if (s->bn) OPT_TRY(conv_fold_bn(n, consts, s, M, Kg, err));
    char act[16];
    nn_attr_str(n, "activation", "", act, sizeof act);
    if (strcmp(act, "Relu") == 0) s->epi.act = NN_ACT_RELU;
    else if (strcmp(act, "Clip") == 0) s->epi.act = NN_ACT_CLIP;
    else if (strcmp(act, "LeakyRelu") == 0) s->epi.act = NN_ACT_LEAKY;
    else if (act[0]) return opt_node_err(n, err, OPT_ERR_INVALID, "unknown activation '%s'", act);
    s->epi.lo = opt_node_attr_float(n, "min", -3.402823e+38f);
    s->epi.hi = opt_node_attr_float(n, "max", 3.402823e+38f);
    s->epi.alpha = opt_node_attr_float(n, "alpha", 0.01f);
    if (nn_sgemm_fast()) {
        s->packed = malloc(nn_conv_packed_floats(M, group, Kg) * sizeof *s->packed);
        if (!s->packed) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
        nn_conv_pack_w(s->w, M, group, Kg, s->packed);
    }
    return OPT_OK;
}

/* float32 views of W and B: the prepared ones, or converted now (freed by the caller). */
static opt_status conv_operands(opt_kctx *k, const conv_state *s, const float **w,
                                const float **b, float **tw, float **tb, opt_error *err)
{
    *tw = *tb = NULL;
    *b = NULL;
    *w = s && s->w ? s->w : nn_f32_in(k->in[1], tw);
    if (!*w) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    if (s && s->b) {
        *b = s->b;
    } else if (opt_kctx_has(k, 2)) {
        *b = nn_f32_in(k->in[2], tb);
        if (!*b) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    return OPT_OK;
}

/* Residual of FusedConv whose shape is not the conv's: y = act(t + z) with broadcasting. */
typedef struct zb_job {
    opt_bcast bc;
    const float *t, *z;
    float *y;
    const nn_conv_epi *epi;
} zb_job;

static void zb_seg(void *ctx, const int64_t *in, const int64_t *st, uint64_t out, uint64_t len)
{
    const zb_job *j = ctx;
    nn_epilogue ep = {NULL, NULL, NULL, 0, j->epi->act, j->epi->lo, j->epi->hi, j->epi->alpha};
    for (uint64_t i = 0; i < len; i++)
        j->y[out + i] = j->t[in[0] + (int64_t)i * st[0]] + j->z[in[1] + (int64_t)i * st[1]];
    nn_epilogue_rows(&ep, j->y + out, 0, 0, 1, (int64_t)len, false);
}

static void zb_part(void *ctx, size_t b, size_t e)
{
    zb_job *j = ctx;
    opt_bcast_walk(&j->bc, b, e, zb_seg, j);
}

/* Depthwise Conv (group == C == M, 1-D or 2-D) on float16/bfloat16 plane by plane
 * (dw_half_parts): one float32 buffer set per thread from the pool. Z as in conv_half_images. */
static opt_status conv_dw_half(opt_kctx *k, const nn_conv_geom *g, const conv_state *s,
                               const float *w, const float *b, const opt_array *Z, opt_error *err)
{
    int64_t insz, outsz, ks;
    dw_sizes(g, &insz, &outsz, &ks);
    dw_half_job h = {.d = {g, NULL, w, b, NULL, s ? &s->epi : NULL, nn_sgemm_fast()},
                     .x = k->in[0]->data, .z = Z ? Z->data : NULL, .y = k->out[0].data,
                     .xdt = k->in[0]->dtype, .ydt = k->out[0].dtype,
                     .es = (size_t)opt_dtype_bits(k->in[0]->dtype) / 8,
                     .oes = (size_t)opt_dtype_bits(k->out[0].dtype) / 8,
                     .per = (size_t)(insz + outsz * (Z ? 2 : 1)), .planes = (size_t)(g->N * g->C)};
    h.parts = (size_t)nn_threads(k) < h.planes ? (size_t)nn_threads(k) : h.planes;
    h.bufs = opt_kctx_scratch(k, h.parts * h.per * sizeof(float), err);
    if (!h.bufs) return err ? err->status : OPT_ERR_NOMEM;
    nn_parallel(k, h.parts, dw_half_parts, &h);
    return OPT_OK;
}

/* Conv (and FusedConv whose residual has the output's shape) on float16/bfloat16 with more
 * than one image: each image is converted to float32, computed and rounded into the output
 * before the next, so the float32 copies (one image each, pool scratch) stay in cache instead of
 * going through memory for the whole batch. Z, when present, may share the output's buffer: each
 * image of Z is converted before that image of the output is written. */
static opt_status conv_half_images(opt_kctx *k, const nn_conv_geom *g, const conv_state *s,
                                   const float *w, const float *b, const opt_array *Z,
                                   opt_error *err)
{
    const opt_array *X = k->in[0];
    opt_array *Y = &k->out[0];
    int64_t xn = g->C * nn_geom_in_size(g), yn = g->M * nn_geom_out_size(g);
    size_t xs = (size_t)opt_dtype_bits(X->dtype) / 8, ys = (size_t)opt_dtype_bits(Y->dtype) / 8;
    float *xb = opt_kctx_scratch(k, (size_t)(xn ? xn : 1) * sizeof(float), err);
    float *yb = xb ? opt_kctx_scratch(k, (size_t)(yn ? yn : 1) * sizeof(float), err) : NULL;
    float *zb = yb && Z ? opt_kctx_scratch(k, (size_t)(yn ? yn : 1) * sizeof(float), err) : NULL;
    if (!yb || (Z && !zb)) return err ? err->status : OPT_ERR_NOMEM;
    nn_conv_geom g1 = *g;
    g1.N = 1;
    nn_conv_epi epi = {0};
    if (s) epi = s->epi;
    epi.packed = s ? s->packed : NULL;
    epi.z = zb;
    for (int64_t n = 0; n < g->N; n++) {
        nn_cvt_to_f32_k(k, (const char *)X->data + (size_t)(n * xn) * xs, X->dtype, xb, (uint64_t)xn);
        if (Z) nn_cvt_to_f32_k(k, (const char *)Z->data + (size_t)(n * yn) * xs, Z->dtype, zb, (uint64_t)yn);
        nn_conv_f32_ex(k, &g1, xb, w, b, &epi, yb);
        nn_cvt_from_f32_k(k, yb, (char *)Y->data + (size_t)(n * yn) * ys, Y->dtype, (uint64_t)yn);
    }
    return OPT_OK;
}

static opt_status conv_run(opt_kctx *k, opt_error *err)
{
    const opt_array *X = k->in[0], *W = k->in[1];
    const conv_state *s = k->state;
    if (X->ndim < 3 || W->ndim != X->ndim)
        return opt_kerr(k, err, OPT_ERR_INVALID, "X has rank %d and W rank %d (need equal, >= 3)",
                        X->ndim, W->ndim);
    nn_conv_geom g;
    OPT_TRY(nn_conv_geom_init(&g, k->node, X->ndim - 2, X->dims + 2, W->dims + 2, false, err));
    g.N = X->dims[0];
    g.C = X->dims[1];
    g.M = W->dims[0];
    g.group = opt_node_attr_int(k->node, "group", 1);
    for (int i = 0; i < g.nsp; i++)
        if (g.k[i] != W->dims[2 + i])
            return opt_kerr(k, err, OPT_ERR_INVALID, "kernel_shape disagrees with W's shape");
    if (g.group < 1 || g.C % g.group || g.M % g.group || W->dims[1] * g.group != g.C)
        return opt_kerr(k, err, OPT_ERR_INVALID,
                        "X has %lld channels, W expects %lld x group %lld (M = %lld)",
                        (long long)g.C, (long long)W->dims[1], (long long)g.group,
                        (long long)g.M);
    if (opt_kctx_has(k, 2) && opt_array_numel(k->in[2]) != (uint64_t)g.M)
        return opt_kerr(k, err, OPT_ERR_INVALID, "B has %llu values for %lld output channels",
                        (unsigned long long)opt_array_numel(k->in[2]), (long long)g.M);
    int64_t dims[OPT_MAX_DIMS] = {g.N, g.M};
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.out[i];
    bool fused = s && s->fused;
    const opt_array *Z = fused && opt_kctx_has(k, 7) ? k->in[7] : NULL;
    if (fused && X->dtype != OPT_DT_FLOAT && X->dtype != OPT_DT_FLOAT16 && X->dtype != OPT_DT_BFLOAT16)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "FusedConv runs on float32, float16 and bfloat16 only");
    if (Z && Z->dtype != X->dtype)
        return opt_kerr(k, err, OPT_ERR_INVALID, "the added operand is %s, X is %s",
                        opt_dtype_short(Z->dtype), opt_dtype_short(X->dtype));
    bool z_same = Z && Z->ndim == X->ndim && memcmp(Z->dims, dims, sizeof(int64_t) * (size_t)X->ndim) == 0;
    opt_bcast bc;
    if (Z && !z_same) {
        /* The Add broadcasts: its output shape is the broadcast of the conv's and Z's. */
        opt_array co = {OPT_DT_FLOAT, X->ndim, {0}, NULL, 0};
        memcpy(co.dims, dims, sizeof dims);
        const opt_array *pr[2] = {&co, Z};
        OPT_TRY(opt_bcast_init(&bc, k, pr, 2, err));
        OPT_TRY(opt_kctx_output(k, 0, X->dtype, bc.out_ndim, bc.out_dims, err));
    } else if (Z) {
        OPT_TRY(opt_kctx_output_inplace(k, 0, 7, X->dtype, X->ndim, dims, err));
    } else {
        OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, dims, err));
    }
    if (!opt_array_numel(&k->out[0])) return OPT_OK;

    const float *w, *b;
    float *tw, *tb, *tx, *ty, *tz = NULL, *tzc = NULL;
    OPT_TRY(conv_operands(k, s, &w, &b, &tw, &tb, err));
    bool depthwise = g.group == g.C && g.M == g.C && g.nsp <= 2;
    if (X->dtype != OPT_DT_FLOAT && (!Z || z_same) && k->exec && (g.N > 1 || depthwise)) {
        opt_status hs = depthwise ? conv_dw_half(k, &g, s, w, b, Z, err)
                                  : conv_half_images(k, &g, s, w, b, Z, err);
        free(tw);
        free(tb);
        return hs;
    }
    /* float16/bfloat16: X and Z converted to float32 (pool scratch), the chain computed in float32
     * and rounded once into the output. Z is read before the output (which may be Z's buffer)
     * is written. */
    const float *x = nn_f32_in_k(k, X, &tx);
    const float *zf = Z ? nn_f32_in_k(k, Z, &tzc) : NULL;
    float *y = nn_f32_out_k(k, &k->out[0], &ty);
    opt_status st = OPT_OK;
    nn_conv_epi epi = {0};
    if (s) epi = s->epi;
    epi.packed = s ? s->packed : NULL;
    if (!x || !y || (Z && !zf)) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    } else if (Z && !z_same) {
        uint64_t cn = (uint64_t)(g.N * g.M) * (uint64_t)nn_geom_out_size(&g);
        tz = malloc((cn ? cn : 1) * sizeof *tz);
        if (!tz) {
            st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        } else {
            nn_conv_epi plain = {.packed = epi.packed};
            nn_conv_f32_ex(k, &g, x, w, b, &plain, tz);
            zb_job j = {bc, tz, zf, y, &epi};
            nn_parallel(k, (size_t)bc.numel, zb_part, &j);
        }
    } else {
        epi.z = zf;
        nn_conv_f32_ex(k, &g, x, w, b, &epi, y);
    }
    if (st == OPT_OK) nn_f32_out_done_k(k, &k->out[0], y, ty);
    else free(ty);
    free(tx);
    free(tzc);
    free(tw);
    free(tb);
    free(tz);
    return st;
}

static int64_t floordiv_(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* ConvTranspose's kernel, strides, dilations, output size and begin pads (ONNX's formula, with
 * Python floor division); g->nsp, g->in must be set, kshape is W's spatial shape. */
static opt_status convtr_geom(opt_kctx *k, nn_conv_geom *g, const int64_t *kshape, opt_error *err)
{
    const opt_node *n = k->node;
    int sp = g->nsp;
    int64_t v[2 * NN_MAX_SP], opad[NN_MAX_SP] = {0}, oshape[NN_MAX_SP];
    int c = nn_attr_ints(n, "kernel_shape", v, NN_MAX_SP);
    if (c >= 0 && c != sp)
        return opt_kerr(k, err, OPT_ERR_INVALID, "kernel_shape has %d values for %d dims", c, sp);
    for (int i = 0; i < sp; i++) {
        g->k[i] = kshape[i];
        if (c >= 0 && v[i] != kshape[i])
            return opt_kerr(k, err, OPT_ERR_INVALID, "kernel_shape disagrees with W's shape");
        g->stride[i] = g->dil[i] = 1;
    }
    c = nn_attr_ints(n, "strides", v, NN_MAX_SP);
    if (c >= 0 && c != sp)
        return opt_kerr(k, err, OPT_ERR_INVALID, "strides has %d values for %d dims", c, sp);
    for (int i = 0; i < c; i++) g->stride[i] = v[i];
    c = nn_attr_ints(n, "dilations", v, NN_MAX_SP);
    if (c >= 0 && c != sp)
        return opt_kerr(k, err, OPT_ERR_INVALID, "dilations has %d values for %d dims", c, sp);
    for (int i = 0; i < c; i++) g->dil[i] = v[i];
    for (int i = 0; i < sp; i++)
        if (g->stride[i] < 1 || g->dil[i] < 1)
            return opt_kerr(k, err, OPT_ERR_INVALID, "strides and dilations must be positive");
    c = nn_attr_ints(n, "output_padding", v, NN_MAX_SP);
    if (c >= 0 && c != sp)
        return opt_kerr(k, err, OPT_ERR_INVALID, "output_padding has %d values for %d dims", c, sp);
    for (int i = 0; i < c; i++) opad[i] = v[i];
    int nos = nn_attr_ints(n, "output_shape", v, 2 * NN_MAX_SP);
    if (nos >= 0) {
        if (nos != sp && nos != sp + 2)
            return opt_kerr(k, err, OPT_ERR_INVALID, "output_shape has %d values", nos);
        for (int i = 0; i < sp; i++) oshape[i] = v[nos - sp + i];
    }
    bool upper = nn_attr_is(n, "auto_pad", "SAME_UPPER", NULL);
    bool lower = nn_attr_is(n, "auto_pad", "SAME_LOWER", NULL);
    bool valid = nn_attr_is(n, "auto_pad", "VALID", NULL);
    bool explicit_pads = !upper && !lower && opt_node_attr(n, "pads");
    if (explicit_pads) {
        c = nn_attr_ints(n, "pads", v, 2 * NN_MAX_SP);
        if (c != 2 * sp)
            return opt_kerr(k, err, OPT_ERR_INVALID, "pads has %d values for %d dims", c, sp);
    }
    for (int i = 0; i < sp; i++) {
        int64_t dk = (g->k[i] - 1) * g->dil[i] + 1;
        int64_t full = g->stride[i] * (g->in[i] - 1) + opad[i] + dk;
        if (explicit_pads && !valid && nos < 0) {
            g->pad_b[i] = v[i];
            g->pad_e[i] = v[i + sp];
            g->out[i] = full - v[i] - v[i + sp];
        } else if (nos >= 0 || upper || lower) {
            int64_t os = nos >= 0 ? oshape[i] : g->in[i] * g->stride[i];
            int64_t total = full - os;
            int64_t half = floordiv_(total, 2);
            g->pad_b[i] = upper ? half : total - half;
            g->pad_e[i] = total - g->pad_b[i];
            g->out[i] = os;
        } else {
            g->pad_b[i] = g->pad_e[i] = 0;
            g->out[i] = full;
        }
        if (g->out[i] < 1)
            return opt_kerr(k, err, OPT_ERR_INVALID, "output size %lld along spatial dim %d",
                            (long long)g->out[i], i);
    }
    return OPT_OK;
}

static opt_status convtr_run(opt_kctx *k, opt_error *err)
{
    const opt_array *X = k->in[0], *W = k->in[1];
    if (X->ndim < 3 || W->ndim != X->ndim)
        return opt_kerr(k, err, OPT_ERR_INVALID, "X has rank %d and W rank %d (need equal, >= 3)",
                        X->ndim, W->ndim);
    nn_conv_geom g = {0};
    g.nsp = X->ndim - 2;
    if (g.nsp > NN_MAX_SP) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "too many dims");
    for (int i = 0; i < g.nsp; i++) g.in[i] = X->dims[2 + i];
    OPT_TRY(convtr_geom(k, &g, W->dims + 2, err));
    g.N = X->dims[0];
    g.C = X->dims[1];
    g.group = opt_node_attr_int(k->node, "group", 1);
    if (g.group < 1 || g.C % g.group || W->dims[0] != g.C)
        return opt_kerr(k, err, OPT_ERR_INVALID, "X has %lld channels, W has %lld (group %lld)",
                        (long long)g.C, (long long)W->dims[0], (long long)g.group);
    g.M = W->dims[1] * g.group;
    if (opt_kctx_has(k, 2) && opt_array_numel(k->in[2]) != (uint64_t)g.M)
        return opt_kerr(k, err, OPT_ERR_INVALID, "B has %llu values for %lld output channels",
                        (unsigned long long)opt_array_numel(k->in[2]), (long long)g.M);
    int64_t dims[OPT_MAX_DIMS] = {g.N, g.M};
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.out[i];
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, X->ndim, dims, err));
    if (!opt_array_numel(&k->out[0])) return OPT_OK;

    const float *w, *b;
    float *tw, *tb, *tx, *ty;
    OPT_TRY(conv_operands(k, k->state, &w, &b, &tw, &tb, err));
    const float *x = nn_f32_in_k(k, X, &tx);
    float *y = nn_f32_out_k(k, &k->out[0], &ty);
    opt_status st = OPT_OK;
    if (!x || !y)
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    else
        nn_convtr_f32(k, &g, x, w, b, y);
    if (st == OPT_OK) nn_f32_out_done_k(k, &k->out[0], y, ty);
    else free(ty);
    free(tx);
    free(tw);
    free(tb);
    return st;
}

const opt_kernel opt_kernels_conv[] = {
    {"", "Conv", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, conv_prepare, conv_run,
     conv_release},
    {"", "ConvTranspose", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, conv_prepare,
     convtr_run, conv_release},
    /* Conv [+ BatchNormalization] [+ Add] [+ activation], made at load by libopt/exec/fuse.c. */
    {OPT_FUSE_DOMAIN, "FusedConv", 1, INT_MAX,
     OPT_DT_BIT(OPT_DT_FLOAT) | OPT_DT_BIT(OPT_DT_FLOAT16) | OPT_DT_BIT(OPT_DT_BFLOAT16), 0, OPT_DEVICE_CPU, NULL,
     conv_prepare, conv_run, conv_release},
    {0},
};
