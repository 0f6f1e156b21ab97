/*
 * calib/stats.c — streaming per-tensor statistics (see stats.h).
 *
 * The hot loop runs once per activation value of every calibration batch, so it stays simple:
 * one pass for the batch's extremes, one pass for the histogram, no allocation after the first
 * batch of a tensor.
 */
#include "calib/stats.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void opt_calib_stats_init(opt_calib_stats *s, bool histograms)
{
    memset(s, 0, sizeof *s);
    s->histograms = histograms;
}

void opt_calib_stats_free(opt_calib_stats *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->acc[i].name);
        free(s->acc[i].pos);
        free(s->acc[i].neg);
    }
    free(s->acc);
    opt_strmap_free(&s->index);
    memset(s, 0, sizeof *s);
}

const opt_calib_acc *opt_calib_stats_find(const opt_calib_stats *s, const char *name)
{
    size_t i;
    if (!opt_strmap_get(&s->index, name, &i)) return NULL;
    return &s->acc[i];
}

/* Returns the accumulator for name, creating it. The strmap keys point at acc[i].name, which
 * are separate allocations, so growing the acc array does not invalidate them. */
static opt_calib_acc *acc_get(opt_calib_stats *s, const char *name, opt_error *err)
{
    size_t i;
    if (opt_strmap_get(&s->index, name, &i)) return &s->acc[i];
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        opt_calib_acc *a = realloc(s->acc, cap * sizeof *a);
        if (!a) goto nomem;
        s->acc = a;
        s->cap = cap;
    }
    opt_calib_acc *a = &s->acc[s->n];
    memset(a, 0, sizeof *a);
    a->min = INFINITY;
    a->max = -INFINITY;
    a->name = opt_strdup(name);
    if (!a->name) goto nomem;
    if (s->histograms) {
        a->pos = calloc(OPT_CALIB_BINS, sizeof *a->pos);
        a->neg = calloc(OPT_CALIB_BINS, sizeof *a->neg);
        if (!a->pos || !a->neg) {
            free(a->pos);
            free(a->neg);
            free(a->name);
            goto nomem;
        }
    }
    if (!opt_strmap_put(&s->index, a->name, s->n)) {
        free(a->pos);
        free(a->neg);
        free(a->name);
        goto nomem;
    }
    s->n++;
    return a;
nomem:
    opt_error_set(err, OPT_ERR_NOMEM, "out of memory collecting statistics of tensor '%s'", name);
    return NULL;
}

/* Doubles the histogram range: bins 2i and 2i+1 become bin i. */
static void hist_double(uint64_t *h)
{
    for (int i = 0; i < OPT_CALIB_BINS / 2; i++) h[i] = h[2 * i] + h[2 * i + 1];
    memset(h + OPT_CALIB_BINS / 2, 0, (OPT_CALIB_BINS / 2) * sizeof *h);
}

opt_calib_acc *opt_calib_stats_acc(opt_calib_stats *s, const char *name, opt_error *err)
{
    return acc_get(s, name, err);
}

/* ---- pass 1: extremes and counts ------------------------------------------------------------ */

static const opt_calib_part empty_part = {INFINITY, -INFINITY, 0, 0, 0, 0};

void opt_calib_scan_f32_ref(const float *x, size_t n, opt_calib_part *p)
{
    float mn = INFINITY, mx = -INFINITY;
    uint64_t bad = 0, zeros = 0, flush = 0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (!isfinite(v)) {
            bad++;
            continue;
        }
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        float m = fabsf(v);
        zeros += m == 0.0f;
        flush += m != 0.0f && m < (float)OPT_F16_FLUSH;
    }
    *p = (opt_calib_part){mn, mx, n, bad, zeros, flush};
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define STATS_AVX2 __attribute__((target("avx2,fma")))

/* The widest scan this CPU runs: 2 AVX-512 (F, DQ, POPCNT), 1 AVX2 with FMA, 0 neither. Threads
 * may ask at once (calib/collect.c): an atomic cache of the answer. */
static int cpu_level(void)
{
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        __builtin_cpu_init();
        bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        l = !avx2 ? 0
            : __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                    __builtin_cpu_supports("popcnt")
                ? 2
                : 1;
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return l;
}

static bool have_avx2(void)
{
    return cpu_level() >= 1;
}

/* Eight lanes of the reference scan. A lane's minimum is numeric (min_ps), so on a tie between
 * -0 and +0 the lane may keep either; opt_calib_scan_f32 restores the serial scan's choice. The
 * counters are 32-bit per lane, so blocks stay under 2^31 vectors. */
STATS_AVX2 static size_t scan_avx2(const float *x, size_t n, float *mn, float *mx, uint64_t *bad,
                                   uint64_t *zeros, uint64_t *flush)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 fmax = _mm256_set1_ps(FLT_MAX), pinf = _mm256_set1_ps(INFINITY),
                 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps(),
                 fl = _mm256_set1_ps((float)OPT_F16_FLUSH);
    __m256 vmn = pinf, vmx = ninf;
    size_t i = 0, nv = n & ~(size_t)7;
    while (i < nv) {
        size_t stop = nv - i > ((size_t)1 << 30) ? i + ((size_t)1 << 30) : nv;
        __m256i cfin = _mm256_setzero_si256(), cz = cfin, cf = cfin;
        size_t start = i;
        for (; i < stop; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i), a = _mm256_and_ps(v, absmask);
            __m256 fin = _mm256_cmp_ps(a, fmax, _CMP_LE_OQ);
            vmn = _mm256_min_ps(vmn, _mm256_blendv_ps(pinf, v, fin));
            vmx = _mm256_max_ps(vmx, _mm256_blendv_ps(ninf, v, fin));
            __m256 z = _mm256_cmp_ps(a, zero, _CMP_EQ_OQ);
            __m256 f = _mm256_and_ps(_mm256_cmp_ps(a, zero, _CMP_GT_OQ), _mm256_cmp_ps(a, fl, _CMP_LT_OQ));
            cfin = _mm256_sub_epi32(cfin, _mm256_castps_si256(fin));
            cz = _mm256_sub_epi32(cz, _mm256_castps_si256(z));
            cf = _mm256_sub_epi32(cf, _mm256_castps_si256(f));
        }
        uint32_t lf[8], lz[8], lfl[8];
        _mm256_storeu_si256((__m256i *)lf, cfin);
        _mm256_storeu_si256((__m256i *)lz, cz);
        _mm256_storeu_si256((__m256i *)lfl, cf);
        uint64_t fin = 0;
        for (int l = 0; l < 8; l++) {
            fin += lf[l];
            *zeros += lz[l];
            *flush += lfl[l];
        }
        *bad += (i - start) - fin;
    }
    float lmn[8], lmx[8];
    _mm256_storeu_ps(lmn, vmn);
    _mm256_storeu_ps(lmx, vmx);
    for (int l = 0; l < 8; l++) {
        *mn = lmn[l] < *mn ? lmn[l] : *mn;
        *mx = lmx[l] > *mx ? lmx[l] : *mx;
    }
    return nv;
}
#define STATS_AVX512 __attribute__((target("avx512f,avx512dq,popcnt")))

/* The same scan on 16 lanes, two vectors per step in two pairs of accumulators (a min or max
 * waits for the one before it in its chain: one chain kept scan_avx2 near a vector per three
 * cycles), and the counts as population counts of the compare masks. */
STATS_AVX512 static size_t scan_avx512(const float *x, size_t n, float *mn, float *mx, uint64_t *bad,
                                       uint64_t *zeros, uint64_t *flush)
{
    const __m512 fmax = _mm512_set1_ps(FLT_MAX), zero = _mm512_setzero_ps(),
                 fl = _mm512_set1_ps((float)OPT_F16_FLUSH);
    __m512 mn0 = _mm512_set1_ps(INFINITY), mn1 = mn0, mx0 = _mm512_set1_ps(-INFINITY), mx1 = mx0;
    uint64_t fin = 0, cz = 0, cf = 0;
    size_t nv = n & ~(size_t)31;
    for (size_t i = 0; i < nv; i += 32) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
        __mmask16 f0 = _mm512_cmp_ps_mask(a0, fmax, _CMP_LE_OQ), f1 = _mm512_cmp_ps_mask(a1, fmax, _CMP_LE_OQ);
        mn0 = _mm512_mask_min_ps(mn0, f0, mn0, v0);
        mx0 = _mm512_mask_max_ps(mx0, f0, mx0, v0);
        mn1 = _mm512_mask_min_ps(mn1, f1, mn1, v1);
        mx1 = _mm512_mask_max_ps(mx1, f1, mx1, v1);
        __mmask16 z0 = _mm512_cmp_ps_mask(a0, zero, _CMP_EQ_OQ), z1 = _mm512_cmp_ps_mask(a1, zero, _CMP_EQ_OQ);
        __mmask16 l0 = _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(a0, zero, _CMP_GT_OQ), a0, fl, _CMP_LT_OQ);
        __mmask16 l1 = _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(a1, zero, _CMP_GT_OQ), a1, fl, _CMP_LT_OQ);
        fin += (uint64_t)__builtin_popcount((unsigned)f0 | (unsigned)f1 << 16);
        cz += (uint64_t)__builtin_popcount((unsigned)z0 | (unsigned)z1 << 16);
        cf += (uint64_t)__builtin_popcount((unsigned)l0 | (unsigned)l1 << 16);
    }
    *bad += nv - fin;
    *zeros += cz;
    *flush += cf;
    float lmn[16], lmx[16];
    _mm512_storeu_ps(lmn, _mm512_min_ps(mn0, mn1));
    _mm512_storeu_ps(lmx, _mm512_max_ps(mx0, mx1));
    for (int l = 0; l < 16; l++) {
        *mn = lmn[l] < *mn ? lmn[l] : *mn;
        *mx = lmx[l] > *mx ? lmx[l] : *mx;
    }
    return nv;
}
#else
static bool have_avx2(void) { return false; }
static int cpu_level(void) { return 0; }
static size_t scan_avx512(const float *x, size_t n, float *mn, float *mx, uint64_t *bad, uint64_t *zeros,
                          uint64_t *flush)
{
    (void)x, (void)n, (void)mn, (void)mx, (void)bad, (void)zeros, (void)flush;
    return 0;
}
static size_t scan_avx2(const float *x, size_t n, float *mn, float *mx, uint64_t *bad, uint64_t *zeros,
                        uint64_t *flush)
{
    (void)x, (void)n, (void)mn, (void)mx, (void)bad, (void)zeros, (void)flush;
    return 0;
}
#endif

void opt_calib_scan_f32(const float *x, size_t n, opt_calib_part *p)
{
    opt_calib_scan_f32_level(x, n, p, 2);
}

void opt_calib_scan_f32_level(const float *x, size_t n, opt_calib_part *p, int level)
{
    if (n < 64 || level < 1 || !have_avx2()) {
        opt_calib_scan_f32_ref(x, n, p);
        return;
    }
    float mn = INFINITY, mx = -INFINITY;
    uint64_t bad = 0, zeros = 0, flush = 0;
    size_t i = level >= 2 && cpu_level() >= 2 ? scan_avx512(x, n, &mn, &mx, &bad, &zeros, &flush)
                             : scan_avx2(x, n, &mn, &mx, &bad, &zeros, &flush);
    opt_calib_part tail;
    opt_calib_scan_f32_ref(x + i, n - i, &tail);
    *p = (opt_calib_part){mn, mx, i, bad, zeros, flush};
    opt_calib_part_join(p, &tail);
    /* A zero extreme: the serial scan keeps the first zero it meets, with its sign. */
    if (p->min == 0.0f || p->max == 0.0f) {
        size_t k = 0;
        while (x[k] != 0.0f) k++;
        if (p->min == 0.0f) p->min = x[k];
        if (p->max == 0.0f) p->max = x[k];
    }
}

void opt_calib_part_join(opt_calib_part *acc, const opt_calib_part *next)
{
    if (next->min < acc->min) acc->min = next->min;
    if (next->max > acc->max) acc->max = next->max;
    acc->count += next->count;
    acc->nonfinite += next->nonfinite;
    acc->zeros += next->zeros;
    acc->f16_flush += next->f16_flush;
}

/* Converts values [off, off + k) of a float16/bfloat16/double array to float32. */
static void to_f32(const opt_array *a, uint64_t off, size_t k, float *buf)
{
    for (size_t i = 0; i < k; i++) {
        if (a->dtype == OPT_DT_FLOAT16) buf[i] = opt_f16_to_f32(((const uint16_t *)a->data)[off + i]);
        else if (a->dtype == OPT_DT_BFLOAT16) buf[i] = opt_bf16_to_f32(((const uint16_t *)a->data)[off + i]);
        else buf[i] = (float)((const double *)a->data)[off + i];
    }
}

static bool is_float(int dt)
{
    return dt == OPT_DT_FLOAT || dt == OPT_DT_FLOAT16 || dt == OPT_DT_BFLOAT16 || dt == OPT_DT_DOUBLE;
}

enum { CHUNK = 4096 };

void opt_calib_scan_array(const opt_array *a, opt_calib_part *p)
{
    *p = empty_part;
    if (!is_float(a->dtype)) return;
    uint64_t n = opt_array_numel(a);
    if (a->dtype == OPT_DT_FLOAT) {
        opt_calib_scan_f32(a->data, n, p);
        return;
    }
    /* Convert in chunks so memory stays bounded whatever the tensor size. */
    float buf[CHUNK];
    for (uint64_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? (size_t)(n - off) : CHUNK;
        opt_calib_part c;
        to_f32(a, off, k, buf);
        opt_calib_scan_f32(buf, k, &c);
        opt_calib_part_join(p, &c);
    }
}

/* ---- pass 2: histograms ---------------------------------------------------------------------- */

void opt_calib_hist_fit(double *hmax, uint64_t *pos, uint64_t *neg, double amax)
{
    if (amax > 0 && *hmax == 0) *hmax = amax;
    while (amax > *hmax) {
        hist_double(pos);
        hist_double(neg);
        *hmax *= 2;
    }
}

bool opt_calib_acc_apply(opt_calib_acc *a, const opt_calib_part *p)
{
    a->count += p->count;
    a->nonfinite += p->nonfinite;
    a->zeros += p->zeros;
    a->f16_flush += p->f16_flush;
    if (p->min < a->min) a->min = p->min;
    if (p->max > a->max) a->max = p->max;
    if (!a->pos || p->nonfinite == p->count) return false;
    opt_calib_hist_fit(&a->hmax, a->pos, a->neg, fmax(fabs((double)p->min), fabs((double)p->max)));
    if (a->hmax == 0) { /* all zeros so far: they belong to bin 0 whatever hmax becomes */
        a->pos[0] += p->zeros;
        return false;
    }
    return true;
}

void opt_calib_hist_f32_ref(uint64_t *pos, uint64_t *neg, double hmax, const float *x, size_t n)
{
    const float inv = (float)(OPT_CALIB_BINS / hmax);
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (!isfinite(v)) continue;
        float m = fabsf(v);
        int b = (int)(m * inv);
        if (b >= OPT_CALIB_BINS) b = OPT_CALIB_BINS - 1;
        if (v < 0) neg[b]++;
        else pos[b]++;
    }
}

/* Bin numbers of the extended layout (see stats.h): magnitude bins 0..OPT_CALIB_BINS, negative
 * values offset by OPT_CALIB_BINS + 1, non-finite ones to the spare count OPT_CALIB_XBINS. */
static inline uint32_t xbin_ref(float v, float inv)
{
    if (!isfinite(v)) return OPT_CALIB_XBINS;
    float y = fabsf(v) * inv;
    uint32_t b = y >= OPT_CALIB_BINS || y != y ? OPT_CALIB_BINS : (uint32_t)(int)y;
    return v < 0 ? b + OPT_CALIB_BINS + 1 : b;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* pack[m]: the lanes set in the 8-bit mask m, in order (for _mm256_permutevar8x32_epi32). */
static uint32_t pack[256][8];
static pthread_once_t pack_once = PTHREAD_ONCE_INIT;

static void pack_init(void)
{
    for (int m = 0; m < 256; m++) {
        int k = 0;
        for (int l = 0; l < 8; l++)
            if (m >> l & 1) pack[m][k++] = (uint32_t)l;
        while (k < 8) pack[m][k++] = 0;
    }
}

/* Bin numbers eight at a time, packed into idx without the zeros (after a ReLU half the values
 * are zeros, and counting them one by one into bin 0 makes every increment wait for the
 * previous one), then counted one by one into h (32-bit counts that stay in L1;
 * OPT_CALIB_XBINS + 1 of them); the zeros are added to bin 0 at once. Returns how many values
 * it did (a multiple of 8). */
STATS_AVX2 static size_t xbin_avx2(uint32_t *h, float inv, const float *x, size_t n)
{
    pthread_once(&pack_once, pack_init);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 fmax = _mm256_set1_ps(FLT_MAX), vinv = _mm256_set1_ps(inv), zero = _mm256_setzero_ps();
    const __m256i top = _mm256_set1_epi32(OPT_CALIB_BINS), nb = _mm256_set1_epi32(OPT_CALIB_BINS + 1);
    size_t nv = n & ~(size_t)7;
    uint32_t idx[256 + 8];
    uint64_t zeros = 0;
    /* Activations crowd into a few bins, and each increment of a bin waits for the previous
     * one to it: long inputs count into four histograms in turn (three here, one in h) and add
     * them up at the end. */
    enum { XB = OPT_CALIB_XBINS + 1 };
    uint32_t subs[3 * XB], *sub = NULL;
    if (nv >= 8192) {
        memset(subs, 0, sizeof subs);
        sub = subs;
    }
    for (size_t i = 0; i < nv;) {
        size_t k = nv - i < 256 ? nv - i : 256, m = 0;
        for (size_t j = 0; j < k; j += 8) {
            __m256 v = _mm256_loadu_ps(x + i + j), a = _mm256_and_ps(v, absmask);
            /* Finite and non-zero: 0 < |v| <= FLT_MAX (false for NaN). */
            __m256 keep = _mm256_and_ps(_mm256_cmp_ps(a, fmax, _CMP_LE_OQ), _mm256_cmp_ps(a, zero, _CMP_GT_OQ));
            /* (int) of m * inv; an out-of-range product converts to 0x80000000, which the
             * unsigned minimum sends to the top bin, as xbin_ref does. */
            __m256i b = _mm256_min_epu32(_mm256_cvttps_epi32(_mm256_mul_ps(a, vinv)), top);
            __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
            b = _mm256_add_epi32(b, _mm256_and_si256(neg, nb));
            int mk = _mm256_movemask_ps(keep);
            if (mk != 0xff) { /* some zeros or non-finite values: pack the others */
                b = _mm256_permutevar8x32_epi32(b, _mm256_loadu_si256((const __m256i *)pack[mk]));
                zeros += (uint64_t)__builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a, zero, _CMP_EQ_OQ)));
            }
            _mm256_storeu_si256((__m256i *)(idx + m), b);
            m += (size_t)__builtin_popcount((unsigned)mk);
        }
        if (sub) {
            size_t j = 0;
            for (; j + 4 <= m; j += 4) {
                h[idx[j]]++;
                sub[idx[j + 1]]++;
                sub[XB + idx[j + 2]]++;
                sub[2 * XB + idx[j + 3]]++;
            }
            for (; j < m; j++) h[idx[j]]++;
        } else {
            for (size_t j = 0; j < m; j++) h[idx[j]]++;
        }
        i += k;
    }
    if (sub)
        for (int r = 0; r < 3; r++)
            for (size_t b = 0; b < XB; b++) h[b] += sub[r * XB + b];
    h[0] += (uint32_t)zeros;
    return nv;
}
#else
static size_t xbin_avx2(uint32_t *h, float inv, const float *x, size_t n)
{
    (void)h, (void)inv, (void)x, (void)n;
    return 0;
}
#endif

/* Counts the bins of x[0..n) (n < 2^32) into h (OPT_CALIB_XBINS + 1 32-bit counts, zeroed here). */
static void xbin_u32(uint32_t *h, double hmax, const float *x, size_t n)
{
    const float inv = (float)(OPT_CALIB_BINS / hmax);
    memset(h, 0, (OPT_CALIB_XBINS + 1) * sizeof *h);
    size_t i = have_avx2() ? xbin_avx2(h, inv, x, n) : 0;
    for (; i < n; i++) h[xbin_ref(x[i], inv)]++;
}

/* Slices of at most this many values keep the 32-bit counts from overflowing. */
#define XBIN_SLICE ((size_t)1 << 31)

void opt_calib_hist_f32(uint64_t *pos, uint64_t *neg, double hmax, const float *x, size_t n)
{
    if (n < 256) {
        opt_calib_hist_f32_ref(pos, neg, hmax, x, n);
        return;
    }
    uint32_t h[OPT_CALIB_XBINS + 1];
    for (size_t off = 0; off < n; off += XBIN_SLICE) {
        xbin_u32(h, hmax, x + off, n - off < XBIN_SLICE ? n - off : XBIN_SLICE);
        const uint32_t *hn = h + OPT_CALIB_BINS + 1;
        for (int b = 0; b < OPT_CALIB_BINS; b++) {
            pos[b] += h[b];
            neg[b] += hn[b];
        }
        /* The top bin is where the serial binning clamps: the last one. */
        pos[OPT_CALIB_BINS - 1] += h[OPT_CALIB_BINS];
        neg[OPT_CALIB_BINS - 1] += hn[OPT_CALIB_BINS];
    }
}

void opt_calib_xhist_f32_ref(uint64_t *xh, double hmax, const float *x, size_t n)
{
    const float inv = (float)(OPT_CALIB_BINS / hmax);
    for (size_t i = 0; i < n; i++) {
        uint32_t b = xbin_ref(x[i], inv);
        if (b < OPT_CALIB_XBINS) xh[b]++;
    }
}

void opt_calib_xhist_f32(uint64_t *xh, double hmax, const float *x, size_t n)
{
    if (n < 256) {
        opt_calib_xhist_f32_ref(xh, hmax, x, n);
        return;
    }
    uint32_t h[OPT_CALIB_XBINS + 1];
    for (size_t off = 0; off < n; off += XBIN_SLICE) {
        xbin_u32(h, hmax, x + off, n - off < XBIN_SLICE ? n - off : XBIN_SLICE);
        for (int b = 0; b < OPT_CALIB_XBINS; b++) xh[b] += h[b];
    }
}

void opt_calib_xhist_array(uint64_t *xh, double hmax, const opt_array *a)
{
    if (!is_float(a->dtype)) return;
    uint64_t n = opt_array_numel(a);
    if (a->dtype == OPT_DT_FLOAT) {
        opt_calib_xhist_f32(xh, hmax, a->data, n);
        return;
    }
    float buf[CHUNK];
    for (uint64_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? (size_t)(n - off) : CHUNK;
        to_f32(a, off, k, buf);
        opt_calib_xhist_f32(xh, hmax, buf, k);
    }
}

/* Doubles the range of one sign of an extended histogram: bins 2i and 2i+1 become bin i, and
 * the top bin (2^11) becomes bin 2^10, where its values fall at twice the range. */
static void xdouble(uint64_t *v)
{
    for (int i = 0; i < OPT_CALIB_BINS / 2; i++) v[i] = v[2 * i] + v[2 * i + 1];
    v[OPT_CALIB_BINS / 2] = v[OPT_CALIB_BINS];
    memset(v + OPT_CALIB_BINS / 2 + 1, 0, (OPT_CALIB_BINS / 2) * sizeof *v);
}

void opt_calib_xhist_widen(uint64_t *xh, double h, double h2)
{
    while (h < h2) {
        xdouble(xh);
        xdouble(xh + OPT_CALIB_BINS + 1);
        h *= 2;
    }
    assert(h == h2);
}

void opt_calib_xhist_fold(uint64_t *pos, uint64_t *neg, double hmax, uint64_t *xh, double h)
{
    uint64_t *xp = xh, *xn = xh + OPT_CALIB_BINS + 1;
    while (h < hmax) {
        xdouble(xp);
        xdouble(xn);
        h *= 2;
    }
    assert(h == hmax);
    for (int b = 0; b < OPT_CALIB_BINS; b++) {
        pos[b] += xp[b];
        neg[b] += xn[b];
    }
    pos[OPT_CALIB_BINS - 1] += xp[OPT_CALIB_BINS];
    neg[OPT_CALIB_BINS - 1] += xn[OPT_CALIB_BINS];
    memset(xh, 0, OPT_CALIB_XBINS * sizeof *xh);
}

void opt_calib_hist_array(uint64_t *pos, uint64_t *neg, double hmax, const opt_array *a)
{
    if (!is_float(a->dtype)) return;
    uint64_t n = opt_array_numel(a);
    if (a->dtype == OPT_DT_FLOAT) {
        opt_calib_hist_f32(pos, neg, hmax, a->data, n);
        return;
    }
    float buf[CHUNK];
    for (uint64_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? (size_t)(n - off) : CHUNK;
        to_f32(a, off, k, buf);
        opt_calib_hist_f32(pos, neg, hmax, buf, k);
    }
}

/* ---- one batch at a time ---------------------------------------------------------------------- */

opt_status opt_calib_stats_add_f32(opt_calib_stats *s, const char *name, const float *x, size_t n,
                                   opt_error *err)
{
    opt_calib_acc *a = acc_get(s, name, err);
    if (!a) return err ? err->status : OPT_ERR_NOMEM;
    opt_calib_part p;
    opt_calib_scan_f32(x, n, &p);
    if (opt_calib_acc_apply(a, &p)) opt_calib_hist_f32(a->pos, a->neg, a->hmax, x, n);
    return OPT_OK;
}

opt_status opt_calib_stats_add_array(opt_calib_stats *s, const char *name, const opt_array *a,
                                     opt_error *err)
{
    if (!is_float(a->dtype)) return OPT_OK;
    opt_calib_acc *acc = acc_get(s, name, err);
    if (!acc) return err ? err->status : OPT_ERR_NOMEM;
    opt_calib_part p;
    opt_calib_scan_array(a, &p);
    if (opt_calib_acc_apply(acc, &p)) opt_calib_hist_array(acc->pos, acc->neg, acc->hmax, a);
    return OPT_OK;
}

/* Adds histogram src (range src_hmax) into dst (range dst_hmax >= src_hmax) by bin centre. */
static void hist_add_rebin(uint64_t *dst, double dst_hmax, const uint64_t *src, double src_hmax)
{
    for (int i = 0; i < OPT_CALIB_BINS; i++) {
        if (!src[i]) continue;
        double c = (i + 0.5) * src_hmax / OPT_CALIB_BINS;
        int b = dst_hmax > 0 ? (int)(c * OPT_CALIB_BINS / dst_hmax) : 0;
        if (b >= OPT_CALIB_BINS) b = OPT_CALIB_BINS - 1;
        dst[b] += src[i];
    }
}

opt_status opt_calib_acc_merge(opt_calib_acc *dst, const opt_calib_acc *src, opt_error *err)
{
    if ((dst->pos == NULL) != (src->pos == NULL))
        return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': cannot merge statistics with and without histograms",
                             dst->name);
    dst->count += src->count;
    dst->nonfinite += src->nonfinite;
    dst->zeros += src->zeros;
    dst->f16_flush += src->f16_flush;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    if (!dst->pos) return OPT_OK;
    if (src->hmax > dst->hmax) {
        if (dst->hmax == 0) dst->hmax = src->hmax;
        while (src->hmax > dst->hmax) {
            hist_double(dst->pos);
            hist_double(dst->neg);
            dst->hmax *= 2;
        }
    }
    hist_add_rebin(dst->pos, dst->hmax, src->pos, src->hmax);
    hist_add_rebin(dst->neg, dst->hmax, src->neg, src->hmax);
    return OPT_OK;
}
