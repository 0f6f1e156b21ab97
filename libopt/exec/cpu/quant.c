/*
 * libopt/exec/cpu/quant.c — quantization ops on the CPU: QuantizeLinear, DequantizeLinear,
 * DynamicQuantizeLinear, QLinearConv, QLinearMatMul, MatMulInteger and ConvInteger.
 *
 * The integer ops compute with integers: operands minus their zero points as int16, products
 * accumulated in int32 (nn_igemm), exactly as the ONNX reference does. Requantisation is
 * nn_qrequant (qgemm.h), as ONNX Runtime's MLAS does it: the int32 sum times the float32
 * multiplier (x_scale * w_scale / y_scale) in float32, clamped, rounded half to even, plus the
 * output zero point. Scales and zero points are per tensor or per
 * axis (QuantizeLinear/DequantizeLinear `axis`; per output channel for weights; per row of A and
 * per column of B for the matmuls). Quantized types: uint8, int8, uint16, int16, int32
 * (DequantizeLinear input) and the float8 types.
 */
#include "libopt/exec/cpu/bcast.h"
#include "libopt/exec/cpu/nn.h"
#include "libopt/exec/cpu/qgemm.h"
#include "libopt/exec/qdq_fuse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool qlinear_generic(void);

/* ---- integer GEMM ---------------------------------------------------------------------------- */

void nn_igemm_ref(int64_t M, int64_t N, int64_t K, const int16_t *a, int64_t lda,
                  const int16_t *b, int64_t ldb, int32_t *c, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            int64_t s = 0;
            for (int64_t q = 0; q < K; q++) s += (int64_t)a[i * lda + q] * b[q * ldb + j];
            c[i * ldc + j] = (int32_t)s;
        }
}

NN_VEC void nn_igemm(int64_t M, int64_t N, int64_t K, const int16_t *a, int64_t lda,
                     const int16_t *b, int64_t ldb, int32_t *c, int64_t ldc)
{
    /* Column blocks of 256 keep a strip of c and the rows of b in L1/L2; the inner loop over j
     * is a plain int16 x int16 -> int32 multiply-add that the compiler vectorises. */
    enum { NB = 256 };
    for (int64_t j0 = 0; j0 < N; j0 += NB) {
        int64_t nb = N - j0 < NB ? N - j0 : NB;
        for (int64_t i = 0; i < M; i++) {
            int32_t *restrict ci = c + i * ldc + j0;
            for (int64_t j = 0; j < nb; j++) ci[j] = 0;
            const int16_t *ai = a + i * lda;
            for (int64_t q = 0; q < K; q++) {
                int32_t av = ai[q];
                if (!av) continue;
                const int16_t *restrict bq = b + q * ldb + j0;
                for (int64_t j = 0; j < nb; j++) ci[j] += av * (int32_t)bq[j];
            }
        }
    }
}

/* ---- scalar helpers -------------------------------------------------------------------------- */

static bool is_f8(int dt)
{
    return dt >= OPT_DT_FLOAT8E4M3FN && dt <= OPT_DT_FLOAT8E5M2FNUZ;
}

static bool q_range(int dt, double *lo, double *hi)
{
    switch (dt) {
    case OPT_DT_UINT8: *lo = 0, *hi = 255; return true;
    case OPT_DT_INT8: *lo = -128, *hi = 127; return true;
    case OPT_DT_UINT16: *lo = 0, *hi = 65535; return true;
    case OPT_DT_INT16: *lo = -32768, *hi = 32767; return true;
    case OPT_DT_INT32: *lo = -2147483648.0, *hi = 2147483647.0; return true;
    default: return false;
    }
}

/* The output range of a QLinear op on 8-bit type dt: the type's, narrowed to the clamp of an
 * activation that opt_qdq_fuse absorbed into the node (OPT_QDQ_ATTR_QMIN/QMAX). *on: narrowed. */
static void out_range(const opt_node *n, int dt, bool *on, int32_t *lo, int32_t *hi)
{
    double tlo = 0, thi = 0;
    q_range(dt, &tlo, &thi);
    *lo = (int32_t)tlo;
    *hi = (int32_t)thi;
    *on = false;
    if (!opt_node_attr(n, OPT_QDQ_ATTR_QMIN) || !opt_node_attr(n, OPT_QDQ_ATTR_QMAX)) return;
    int64_t a = opt_node_attr_int(n, OPT_QDQ_ATTR_QMIN, 0), b = opt_node_attr_int(n, OPT_QDQ_ATTR_QMAX, 0);
    if (a > *lo) *lo = a > *hi ? *hi : (int32_t)a;
    if (b < *hi) *hi = b < *lo ? *lo : (int32_t)b;
    *on = true;
}

/* Element i of an integer array (uint8/int8/uint16/int16/int32) as int32. */
static int32_t iget(const opt_array *a, uint64_t i)
{
    switch (a->dtype) {
    case OPT_DT_UINT8: return ((const uint8_t *)a->data)[i];
    case OPT_DT_INT8: return ((const int8_t *)a->data)[i];
    case OPT_DT_UINT16: return ((const uint16_t *)a->data)[i];
    case OPT_DT_INT16: return ((const int16_t *)a->data)[i];
    case OPT_DT_INT32: return ((const int32_t *)a->data)[i];
    default: return (int32_t)opt_array_get(a, i);
    }
}

/* Stores v (already rounded) saturated into element i of a uint8/int8/uint16/int16 array. NaN
 * (a NaN or infinite scale in the model) stores 0, never an out-of-range conversion. */
static void iset(opt_array *a, uint64_t i, double v)
{
    double lo = 0, hi = 0;
    q_range(a->dtype, &lo, &hi);
    v = v != v ? 0 : v < lo ? lo : v > hi ? hi : v;
    switch (a->dtype) {
    case OPT_DT_UINT8: ((uint8_t *)a->data)[i] = (uint8_t)v; break;
    case OPT_DT_INT8: ((int8_t *)a->data)[i] = (int8_t)v; break;
    case OPT_DT_UINT16: ((uint16_t *)a->data)[i] = (uint16_t)v; break;
    case OPT_DT_INT16: ((int16_t *)a->data)[i] = (int16_t)v; break;
    case OPT_DT_INT32: ((int32_t *)a->data)[i] = (int32_t)v; break;
    default: break;
    }
}

/* Scale/zero-point layout: per tensor (1 value) or per `axis` (dims[axis] values). On success
 * *len and *inner describe how element e maps to parameter (e / inner) % len. */
static opt_status qparam_layout(opt_kctx *k, const opt_array *x, const opt_array *scale,
                                int64_t *len, int64_t *inner, opt_error *err)
{
    uint64_t ns = opt_array_numel(scale);
    *len = 1;
    *inner = 1;
    if (ns == 1 && scale->ndim <= 1) return OPT_OK;
    if (opt_node_attr_int(k->node, "block_size", 0) != 0)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "blocked quantization (block_size)");
    int64_t axis = opt_node_attr_int(k->node, "axis", 1);
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim || scale->ndim != 1 || (int64_t)ns != x->dims[axis])
        return opt_kerr(k, err, OPT_ERR_INVALID,
                        "scale has %llu values; per-axis needs one per dim %lld of the input",
                        (unsigned long long)ns, (long long)axis);
    *len = x->dims[axis];
    for (int i = (int)axis + 1; i < x->ndim; i++) *inner *= x->dims[i];
    return OPT_OK;
}

/* ---- QuantizeLinear / DequantizeLinear ------------------------------------------------------- */

static opt_status ql_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                           int *out_dt, size_t n_out, opt_error *err)
{
    int dt = n_in > 2 && in_dt[2] ? in_dt[2] : OPT_DT_UINT8;
    int od = (int)opt_node_attr_int(n, "output_dtype", 0);
    if (od) dt = od;
    double lo, hi;
    if (dt == OPT_DT_INT32 || (!q_range(dt, &lo, &hi) && !is_f8(dt)))
        return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "quantizing to %s", opt_dtype_name(dt));
    out_dt[0] = dt;
    return OPT_OK;
}

/* float32 -> uint8/int8 with one scale and zero point: x / s rounded half to even (the 1.5 * 2^23
 * trick, exact for |v| < 2^22; v is clamped to +-512 first, which changes nothing after
 * saturation), plus the zero point, saturated. NaN gives the zero point. Same bytes as the
 * generic loop below. */
static NN_VEC void quantize_f32_u8(const float *restrict x, uint64_t n, float s, float zp, float lo, float hi,
                                   uint8_t *restrict y, bool is_signed)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    for (uint64_t i = 0; i < n; i++) {
        float v = x[i] / s;
        v = v == v ? v : 0.0f;
        v = v < -512.0f ? -512.0f : v > 512.0f ? 512.0f : v;
        v = (v + magic) - magic + zp;
        v = v < lo ? lo : v > hi ? hi : v;
        y[i] = is_signed ? (uint8_t)(int8_t)(int32_t)v : (uint8_t)(int32_t)v;
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define QUANT_512 1
/* quantize_f32_u8 on 16 values a step with AVX-512F, the same bytes: the division as vdivps, NaN
 * to 0 under an ordered-compare mask, vrndscaleps rounding half to even (exact at any magnitude,
 * so no +-512 clamp), the zero point added, min/max to [lo, hi], then narrowed (vpmovdb) with a
 * masked store for the last values. The compiler's own vectorisation of the loop above spent
 * most of its time moving compare masks between registers (BERT-base int8: 3.6 ms in
 * QuantizeLinear). */
static __attribute__((target("avx512f"))) void quantize_f32_u8_avx512(const float *x, uint64_t n, float s, float zp,
                                                                     float lo, float hi, uint8_t *y)
{
    const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(zp), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    for (uint64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), vs);
        v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
        v = _mm512_add_ps(_mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
        v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
        _mm512_mask_cvtepi32_storeu_epi8(y + i, k, _mm512_cvtps_epi32(v));
    }
}

/* Whether this CPU runs AVX-512F, BW and VL (the QuantizeLinear and QLinearAdd loops), asked once. */
static bool has_avx512(void)
{
    static int has = -1;
    int h = __atomic_load_n(&has, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl");
        __atomic_store_n(&has, h, __ATOMIC_RELAXED);
    }
    return h;
}
#else
#define QUANT_512 0
#endif

static NN_VEC void dequantize_u8_f32(const uint8_t *restrict x, uint64_t n, float s, int32_t zp, bool is_signed,
                                     float *restrict y)
{
    if (is_signed)
        for (uint64_t i = 0; i < n; i++) y[i] = (float)((int32_t)(int8_t)x[i] - zp) * s;
    else
        for (uint64_t i = 0; i < n; i++) y[i] = (float)((int32_t)x[i] - zp) * s;
}

typedef struct qdq_job {
    const void *x;
    void *y;
    float s, zp, lo, hi;
    bool is_signed, quantize;
} qdq_job;

static void qdq_chunk(void *ctx, size_t b, size_t e)
{
    const qdq_job *j = ctx;
#if QUANT_512
    if (j->quantize && has_avx512()) {
        quantize_f32_u8_avx512((const float *)j->x + b, e - b, j->s, j->zp, j->lo, j->hi, (uint8_t *)j->y + b);
        return;
    }
#endif
    if (j->quantize)
        quantize_f32_u8((const float *)j->x + b, e - b, j->s, j->zp, j->lo, j->hi, (uint8_t *)j->y + b, j->is_signed);
    else
        dequantize_u8_f32((const uint8_t *)j->x + b, e - b, j->s, (int32_t)j->zp, j->is_signed, (float *)j->y + b);
}

/* Runs the per-tensor float32 <-> 8-bit conversion over k's threads in blocks of 16K values. */
static void qdq_fast(opt_kctx *k, qdq_job *j, uint64_t n)
{
    enum { BLK = 16384 };
    if (nn_threads(k) > 1 && n >= 2 * BLK)
        opt_parallel_for(k, (size_t)n, qdq_chunk, j);
    else
        qdq_chunk(j, 0, (size_t)n);
}

static opt_status quantize_run(opt_kctx *k, opt_error *err)
{
    {
        const opt_array *X = k->in[0], *S = k->in[1], *Z = opt_kctx_has(k, 2) ? k->in[2] : NULL;
        int od = (int)opt_node_attr_int(k->node, "output_dtype", 0);
        int dt = od ? od : Z ? Z->dtype : OPT_DT_UINT8;
        if (X->dtype == OPT_DT_FLOAT && S->dtype == OPT_DT_FLOAT && opt_array_numel(S) == 1 &&
            (!Z || (opt_array_numel(Z) == 1 && Z->dtype == dt)) && (dt == OPT_DT_UINT8 || dt == OPT_DT_INT8)) {
            OPT_TRY(opt_kctx_output(k, 0, dt, X->ndim, X->dims, err));
            bool sg = dt == OPT_DT_INT8;
            qdq_job j = {.x = X->data, .y = k->out[0].data, .s = *(const float *)S->data,
                         .zp = Z ? (float)iget(Z, 0) : 0.0f, .lo = sg ? -128.0f : 0.0f, .hi = sg ? 127.0f : 255.0f,
                         .is_signed = sg, .quantize = true};
            qdq_fast(k, &j, opt_array_numel(X));
            return OPT_OK;
        }
    }
    const opt_array *X = k->in[0], *S = k->in[1];
    const opt_array *Z = opt_kctx_has(k, 2) ? k->in[2] : NULL;
    int dt = Z ? Z->dtype : OPT_DT_UINT8;
    int od = (int)opt_node_attr_int(k->node, "output_dtype", 0);
    if (od) dt = od;
    int64_t len, inner;
    OPT_TRY(qparam_layout(k, X, S, &len, &inner, err));
    if (Z && opt_array_numel(Z) != opt_array_numel(S))
        return opt_kerr(k, err, OPT_ERR_INVALID, "y_scale and y_zero_point differ in size");
    OPT_TRY(opt_kctx_output(k, 0, dt, X->ndim, X->dims, err));
    float *t[3] = {0};
    const float *x = nn_f32_in(X, &t[0]), *s = nn_f32_in(S, &t[1]);
    const float *zf = Z && is_f8(dt) ? nn_f32_in(Z, &t[2]) : NULL;
    if (!x || !s || (Z && is_f8(dt) && !zf)) {
        for (int i = 0; i < 3; i++) free(t[i]);
        return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    bool saturate = opt_node_attr_int(k->node, "saturate", 1) != 0;
    uint64_t n = opt_array_numel(X);
    for (uint64_t e = 0; e < n; e++) {
        int64_t p = ((int64_t)e / inner) % len;
        if (is_f8(dt)) {
            float v = x[e] / s[p] + (zf ? zf[p] : 0.0f);
            ((uint8_t *)k->out[0].data)[e] = opt_f32_to_f8(v, dt, saturate);
        } else {
            float q = x[e] / s[p];
            /* NaN gives the zero point, as in quantize_f32_u8. */
            double v = (double)nn_round_even(q == q ? q : 0.0f) + (Z ? iget(Z, (uint64_t)p) : 0);
            iset(&k->out[0], e, v);
        }
    }
    for (int i = 0; i < 3; i++) free(t[i]);
    return OPT_OK;
}

static opt_status dql_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                            int *out_dt, size_t n_out, opt_error *err)
{
    double lo, hi;
    if (!q_range(in_dt[0], &lo, &hi) && !is_f8(in_dt[0]))
        return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "dequantizing %s",
                            opt_dtype_name(in_dt[0]));
    if (n_in > 2 && in_dt[2] && in_dt[2] != in_dt[0])
        return opt_node_err(n, err, OPT_ERR_INVALID, "x_zero_point '%s' is %s, x is %s", n->inputs[2],
                            opt_dtype_name(in_dt[2]), opt_dtype_name(in_dt[0]));
    out_dt[0] = opset >= 19 && n_in > 1 && in_dt[1] ? in_dt[1] : OPT_DT_FLOAT;
    int od = (int)opt_node_attr_int(n, "output_dtype", 0);
    if (od) out_dt[0] = od;
    return OPT_OK;
}

static opt_status dequantize_run(opt_kctx *k, opt_error *err)
{
    {
        const opt_array *X = k->in[0], *S = k->in[1], *Z = opt_kctx_has(k, 2) ? k->in[2] : NULL;
        int odt = k->opset >= 19 ? S->dtype : OPT_DT_FLOAT;
        int od = (int)opt_node_attr_int(k->node, "output_dtype", 0);
        if (od) odt = od;
        if ((X->dtype == OPT_DT_UINT8 || X->dtype == OPT_DT_INT8) && S->dtype == OPT_DT_FLOAT &&
            odt == OPT_DT_FLOAT && opt_array_numel(S) == 1 && (!Z || opt_array_numel(Z) == 1)) {
            OPT_TRY(opt_kctx_output(k, 0, OPT_DT_FLOAT, X->ndim, X->dims, err));
            qdq_job j = {.x = X->data, .y = k->out[0].data, .s = *(const float *)S->data,
                         .zp = Z ? (float)iget(Z, 0) : 0.0f, .is_signed = X->dtype == OPT_DT_INT8};
            qdq_fast(k, &j, opt_array_numel(X));
            return OPT_OK;
        }
    }
    const opt_array *X = k->in[0], *S = k->in[1];
    const opt_array *Z = opt_kctx_has(k, 2) ? k->in[2] : NULL;
    int64_t len, inner;
    OPT_TRY(qparam_layout(k, X, S, &len, &inner, err));
    if (Z && opt_array_numel(Z) != opt_array_numel(S))
        return opt_kerr(k, err, OPT_ERR_INVALID, "x_scale and x_zero_point differ in size");
    int odt = k->opset >= 19 ? S->dtype : OPT_DT_FLOAT;
    int od = (int)opt_node_attr_int(k->node, "output_dtype", 0);
    if (od) odt = od;
    OPT_TRY(opt_kctx_output(k, 0, odt, X->ndim, X->dims, err));
    float *ts, *ty;
    const float *s = nn_f32_in(S, &ts);
    float *y = nn_f32_out(&k->out[0], &ty);
    if (!s || !y) {
        free(ts);
        free(ty);
        return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    uint64_t n = opt_array_numel(X);
    bool f8 = is_f8(X->dtype);
    for (uint64_t e = 0; e < n; e++) {
        int64_t p = ((int64_t)e / inner) % len;
        if (f8) {
            float v = opt_f8_to_f32(((const uint8_t *)X->data)[e], X->dtype);
            float z = Z ? opt_f8_to_f32(((const uint8_t *)Z->data)[p], Z->dtype) : 0.0f;
            y[e] = (v - z) * s[p];
        } else {
            int64_t d = (int64_t)iget(X, e) - (Z ? iget(Z, (uint64_t)p) : 0);
            y[e] = (float)d * s[p];
        }
    }
    nn_f32_out_done(&k->out[0], ty);
    free(ts);
    return OPT_OK;
}

/* ---- DynamicQuantizeLinear ------------------------------------------------------------------- */

static opt_status dyn_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                            int *out_dt, size_t n_out, opt_error *err)
{
    int dts[3] = {OPT_DT_UINT8, OPT_DT_FLOAT, OPT_DT_UINT8};
    for (size_t i = 0; i < n_out && i < 3; i++) out_dt[i] = dts[i];
    return OPT_OK;
}

static opt_status dynq_run(opt_kctx *k, opt_error *err)
{
    const opt_array *X = k->in[0];
    int64_t one[1] = {1};
    OPT_TRY(opt_kctx_output(k, 0, OPT_DT_UINT8, X->ndim, X->dims, err));
    OPT_TRY(opt_kctx_output(k, 1, OPT_DT_FLOAT, 0, one, err));
    OPT_TRY(opt_kctx_output(k, 2, OPT_DT_UINT8, 0, one, err));
    float *tx;
    const float *x = nn_f32_in(X, &tx);
    if (!x) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    uint64_t n = opt_array_numel(X);
    float mn = 0, mx = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    float scale = (mx - mn) / 255.0f;
    float zpf = scale != 0 ? nn_round_even(0.0f - mn / scale) : 0.0f;
    uint8_t zp = (uint8_t)(zpf < 0 ? 0 : zpf > 255 ? 255 : zpf);
    uint8_t *y = k->out[0].data;
    for (uint64_t i = 0; i < n; i++) {
        float v = scale != 0 ? nn_round_even(x[i] / scale) + zp : zp;
        y[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    *(float *)k->out[1].data = scale;
    *(uint8_t *)k->out[2].data = zp;
    free(tx);
    return OPT_OK;
}

/* ---- integer operands ------------------------------------------------------------------------ */

/* Copies integer array a minus its zero point into int16 (zp: NULL, one value, or one per `group`
 * of `inner` consecutive elements in blocks: element e uses zp[(e / inner) % nz]). */
static int16_t *to_i16(const opt_array *a, const opt_array *zp, int64_t inner)
{
    uint64_t n = opt_array_numel(a);
    int16_t *o = malloc((n ? n : 1) * sizeof *o);
    if (!o) return NULL;
    int64_t nz = zp ? (int64_t)opt_array_numel(zp) : 0;
    for (uint64_t e = 0; e < n; e++) {
        int32_t z = nz == 0 ? 0 : nz == 1 ? iget(zp, 0) : iget(zp, (e / (uint64_t)inner) % (uint64_t)nz);
        o[e] = (int16_t)(iget(a, e) - z);
    }
    return o;
}

/* int16 operand of a matmul's B minus its per-column zero point (zp: NULL, 1 or N values). */
static int16_t *b_to_i16(const opt_array *b, const opt_array *zp, int64_t N)
{
    uint64_t n = opt_array_numel(b);
    int16_t *o = malloc((n ? n : 1) * sizeof *o);
    if (!o) return NULL;
    int64_t nz = zp ? (int64_t)opt_array_numel(zp) : 0;
    for (uint64_t e = 0; e < n; e++) {
        int32_t z = nz == 0 ? 0 : nz == 1 ? iget(zp, 0) : iget(zp, e % (uint64_t)N);
        o[e] = (int16_t)(iget(b, e) - z);
    }
    return o;
}

/* Integer matmul of A and B (numpy broadcasting) into int32 acc [batch x M x N]. A's zero point
 * is per tensor or per row (M values), B's per tensor or per column (N values). */
static opt_status int_matmul(opt_kctx *k, const opt_array *A, const opt_array *azp,
                             const opt_array *B, const opt_array *bzp, mm_shape *s, int32_t *acc,
                             opt_error *err)
{
    if (azp && opt_array_numel(azp) != 1 && (int64_t)opt_array_numel(azp) != s->M)
        return opt_kerr(k, err, OPT_ERR_INVALID, "A's zero point must have 1 or M values");
    if (bzp && opt_array_numel(bzp) != 1 && (int64_t)opt_array_numel(bzp) != s->N)
        return opt_kerr(k, err, OPT_ERR_INVALID, "B's zero point must have 1 or N values");
    int16_t *a = to_i16(A, azp, s->K), *b = b_to_i16(B, bzp, s->N);
    if (!a || !b) {
        free(a);
        free(b);
        return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    int64_t nbatch = 1;
    for (int i = 0; i < s->nb; i++) nbatch *= s->batch[i];
    int64_t idx[OPT_MAX_DIMS] = {0};
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t ao = 0, bo = 0;
        for (int i = 0; i < s->nb; i++) ao += idx[i] * s->astride[i], bo += idx[i] * s->bstride[i];
        nn_igemm(s->M, s->N, s->K, a + ao, s->K, b + bo, s->N, acc + t * s->M * s->N, s->N);
        for (int i = s->nb - 1; i >= 0; i--) {
            if (++idx[i] < s->batch[i]) break;
            idx[i] = 0;
        }
    }
    free(a);
    free(b);
    return OPT_OK;
}

/* A constant 2-D B (and its zero point) packed for the integer GEMM at load; the state is the
 * nn_qweights itself. */
static opt_status qmm_prepare(const opt_node *n, int opset, const opt_array *const *consts,
                              size_t n_in, void **state, opt_error *err)
{
    bool ql = strcmp(n->op_type, "QLinearMatMul") == 0;
    size_t bi = ql ? 3 : 1, bz = ql ? 5 : 3;
    if (bi >= n_in || !consts[bi] || (bz < n_in && n->inputs[bz][0] && !consts[bz])) return OPT_OK;
    const opt_array *b = consts[bi], *z = bz < n_in ? consts[bz] : NULL;
    if (b->ndim != 2 || !opt_array_numel(b) || (b->dtype != OPT_DT_UINT8 && b->dtype != OPT_DT_INT8)) return OPT_OK;
    if (z && opt_array_numel(z) != 1 && (int64_t)opt_array_numel(z) != b->dims[1]) return OPT_OK;
    *state = nn_qweights_matmul(b, z);
    return *state ? OPT_OK : opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
}

static void qmm_release(void *state)
{
    nn_qweights_free(state);
}

/* A matmul whose B varies along batch dims (attention's Q x K^T and scores x V: both operands
 * activations) on the integer GEMM, one batch's matrices at a time, B packed per batch (K x N
 * bytes, little next to the GEMM). False, with nothing done, when the batch's matrices do not
 * suit the GEMM (nn_qmatmul_ok); *st receives the result otherwise. */
static bool qmm_batched(opt_kctx *k, const nn_qop *o, const mm_shape *s, opt_status *st, opt_error *err)
{
    if (s->nb == 0) return false;
    opt_array a = *o->x, b = *o->w, y = *o->y;
    a.ndim = b.ndim = y.ndim = 2;
    a.dims[0] = s->M, a.dims[1] = s->K;
    b.dims[0] = s->K, b.dims[1] = s->N;
    y.dims[0] = s->M, y.dims[1] = s->N;
    a.nbytes = (size_t)(s->M * s->K), b.nbytes = (size_t)(s->K * s->N);
    size_t ye = (size_t)opt_dtype_bits(y.dtype) / 8;
    y.nbytes = (size_t)(s->M * s->N) * ye;
    nn_qop ot = *o;
    ot.x = &a, ot.w = &b, ot.y = &y;
    if (!nn_qmatmul_ok(&ot)) return false;
    int64_t nbatch = 1, idx[OPT_MAX_DIMS] = {0};
    for (int i = 0; i < s->nb; i++) nbatch *= s->batch[i];
    *st = OPT_OK;
    for (int64_t t = 0; t < nbatch && *st == OPT_OK; t++) {
        int64_t ao = 0, bo = 0;
        for (int i = 0; i < s->nb; i++) ao += idx[i] * s->astride[i], bo += idx[i] * s->bstride[i];
        a.data = (uint8_t *)o->x->data + ao;
        b.data = (uint8_t *)o->w->data + bo;
        y.data = (uint8_t *)o->y->data + (size_t)(t * s->M * s->N) * ye;
        *st = nn_qmatmul(k, &ot, NULL, err);
        for (int i = s->nb - 1; i >= 0; i--) {
            if (++idx[i] < s->batch[i]) break;
            idx[i] = 0;
        }
    }
    return true;
}

static opt_status mmint_run(opt_kctx *k, opt_error *err)
{
    mm_shape s;
    OPT_TRY(nn_matmul_shape(k, k->in[0], k->in[1], &s, err));
    OPT_TRY(opt_kctx_output(k, 0, OPT_DT_INT32, s.ndim, s.dims, err));
    if (!opt_array_numel(&k->out[0]) || !s.K) {
        memset(k->out[0].data, 0, k->out[0].nbytes);
        return OPT_OK;
    }
    nn_qop o = {.x = k->in[0], .w = k->in[1], .xz = opt_kctx_has(k, 2) ? k->in[2] : NULL,
                .wz = opt_kctx_has(k, 3) ? k->in[3] : NULL, .y = &k->out[0]};
    opt_status st;
    if (!qlinear_generic() && nn_qmatmul_ok(&o)) return nn_qmatmul(k, &o, k->state, err);
    if (!qlinear_generic() && !k->state && qmm_batched(k, &o, &s, &st, err)) return st;
    return int_matmul(k, k->in[0], opt_kctx_has(k, 2) ? k->in[2] : NULL, k->in[1],
                      opt_kctx_has(k, 3) ? k->in[3] : NULL, &s, k->out[0].data, err);
}

static opt_status qlmm_run(opt_kctx *k, opt_error *err)
{
    /* a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp */
    for (size_t i = 0; i < 8; i++)
        if (i != 2 && i != 5 && i != 7 && !opt_kctx_has(k, i))
            return opt_kerr(k, err, OPT_ERR_INVALID, "missing input %zu", i);
    mm_shape s;
    OPT_TRY(nn_matmul_shape(k, k->in[0], k->in[3], &s, err));
    const opt_array *yzp = opt_kctx_has(k, 7) ? k->in[7] : NULL;
    int odt = yzp ? yzp->dtype : k->in[0]->dtype;
    OPT_TRY(opt_kctx_output(k, 0, odt, s.ndim, s.dims, err));
    uint64_t total = opt_array_numel(&k->out[0]);
    if (!total) return OPT_OK;
    uint64_t nas = opt_array_numel(k->in[1]), nbs = opt_array_numel(k->in[4]);
    if ((nas != 1 && (int64_t)nas != s.M) || (nbs != 1 && (int64_t)nbs != s.N) ||
        opt_array_numel(k->in[6]) != 1)
        return opt_kerr(k, err, OPT_ERR_INVALID, "scales must be per tensor, per row of A or per "
                                                 "column of B");
    if (s.K) {
        nn_qop o = {.x = k->in[0], .xs = k->in[1], .xz = opt_kctx_has(k, 2) ? k->in[2] : NULL, .w = k->in[3],
                    .ws = k->in[4], .wz = opt_kctx_has(k, 5) ? k->in[5] : NULL, .ys = k->in[6], .yz = yzp,
                    .y = &k->out[0]};
        out_range(k->node, odt, &o.yclamp, &o.ylo, &o.yhi);
        opt_status st;
        if (!qlinear_generic() && nn_qmatmul_ok(&o)) return nn_qmatmul(k, &o, k->state, err);
        if (!qlinear_generic() && !k->state && qmm_batched(k, &o, &s, &st, err)) return st;
    }
    int32_t *acc = malloc(total * sizeof *acc);
    if (!acc) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    if (!s.K) memset(acc, 0, total * sizeof *acc);
    opt_status st = s.K ? int_matmul(k, k->in[0], opt_kctx_has(k, 2) ? k->in[2] : NULL, k->in[3],
                                     opt_kctx_has(k, 5) ? k->in[5] : NULL, &s, acc, err)
                        : OPT_OK;
    if (st == OPT_OK) {
        float ys = (float)opt_array_get(k->in[6], 0);
        int32_t z = yzp ? iget(yzp, 0) : 0, lo, hi;
        bool on;
        out_range(k->node, k->out[0].dtype, &on, &lo, &hi);
        for (uint64_t e = 0; e < total; e++) {
            int64_t i = ((int64_t)e / s.N) % s.M, j = (int64_t)e % s.N;
            float as = (float)opt_array_get(k->in[1], nas == 1 ? 0 : (uint64_t)i);
            float bs = (float)opt_array_get(k->in[4], nbs == 1 ? 0 : (uint64_t)j);
            float m = as * bs / ys;
            iset(&k->out[0], e, nn_qrequant(acc[e], m, z, lo, hi));
        }
    }
    free(acc);
    return st;
}

/* ---- ConvInteger and QLinearConv ------------------------------------------------------------- */

typedef struct qconv_state {
    int16_t *w;      /* W minus its zero point, [M x Cg*ks], for the generic path */
    nn_qweights *pw; /* W for the integer GEMM (qlinear.c), when W is a constant */
} qconv_state;

static void qconv_release(void *state)
{
    qconv_state *s = state;
    if (!s) return;
    free(s->w);
    nn_qweights_free(s->pw);
    free(s);
}

/* MOPT_QLINEAR_GENERIC=1 sends every QLinearConv/QLinearMatMul/ConvInteger/MatMulInteger through
 * the generic int16 loops (for comparisons and benchmarks of the GEMM path). */
static bool qlinear_generic(void)
{
    static int v = -1;
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *e = getenv("MOPT_QLINEAR_GENERIC");
        r = e && *e && strcmp(e, "0") != 0;
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}

/* Which inputs hold x, w and w's zero point for ConvInteger (x, w, x_zp, w_zp) and QLinearConv
 * (x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B). */
static void qconv_slots(const opt_node *n, int *xi, int *xz, int *wi, int *wz)
{
    bool ql = strcmp(n->op_type, "QLinearConv") == 0;
    *xi = 0;
    *xz = ql ? 2 : 2;
    *wi = ql ? 3 : 1;
    *wz = ql ? 5 : 3;
}

static opt_status qconv_prepare(const opt_node *n, int opset, const opt_array *const *consts,
                                size_t n_in, void **state, opt_error *err)
{
    int xi, xz, wi, wz;
    qconv_slots(n, &xi, &xz, &wi, &wz);
    if ((size_t)wi >= n_in || !consts[wi]) return OPT_OK;
    if ((size_t)wz < n_in && n->inputs[wz][0] && !consts[wz]) return OPT_OK;
    const opt_array *w = consts[wi], *z = (size_t)wz < n_in ? consts[wz] : NULL;
    if (w->ndim < 1 || !w->dims[0]) return OPT_OK;
    qconv_state *s = calloc(1, sizeof *s);
    if (!s) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    *state = s;
    if (z && opt_array_numel(z) != 1 && (int64_t)opt_array_numel(z) != w->dims[0])
        return opt_node_err(n, err, OPT_ERR_INVALID, "w_zero_point must have 1 or M values");
    if (w->dtype == OPT_DT_UINT8 || w->dtype == OPT_DT_INT8) {
        s->pw = nn_qweights_conv(w, z);
        if (!s->pw) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
        if (!qlinear_generic()) return OPT_OK; /* the generic path converts W itself if needed */
    }
    s->w = to_i16(w, z, (int64_t)(opt_array_numel(w) / (uint64_t)w->dims[0]));
    if (!s->w) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    return OPT_OK;
}

/* The int32 convolution sums of a quantized conv into acc [N, M, out...]. */
static opt_status qconv_acc(opt_kctx *k, nn_conv_geom *g, int32_t *acc, opt_error *err)
{
    int xi, xz, wi, wz;
    qconv_slots(k->node, &xi, &xz, &wi, &wz);
    const opt_array *X = k->in[xi], *W = k->in[wi];
    const opt_array *XZ = opt_kctx_has(k, (size_t)xz) ? k->in[xz] : NULL;
    const opt_array *WZ = opt_kctx_has(k, (size_t)wz) ? k->in[wz] : NULL;
    if (XZ && opt_array_numel(XZ) != 1)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "x_zero_point must be a scalar");
    if (WZ && opt_array_numel(WZ) != 1 && (int64_t)opt_array_numel(WZ) != g->M)
        return opt_kerr(k, err, OPT_ERR_INVALID, "w_zero_point must have 1 or M values");
    int64_t Cg = g->C / g->group, Mg = g->M / g->group;
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    int64_t K = Cg * ks;
    const qconv_state *s = k->state;
    int16_t *wt = NULL, *colq = NULL;
    float *xf = NULL, *colf = NULL;
    const int16_t *w = s && s->w ? s->w : (wt = to_i16(W, WZ, K));
    int32_t xzp = XZ ? iget(XZ, 0) : 0;
    opt_status st = OPT_OK;
    xf = malloc((size_t)(Cg * insz) * sizeof *xf);
    colf = malloc((size_t)(K * outsz) * sizeof *colf);
    colq = malloc((size_t)(K * outsz) * sizeof *colq);
    if (!w || !xf || !colf || !colq) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t gi = 0; gi < g->group; gi++) {
            /* x - x_zp is exact in float32; unfolding pads it with zeros, i.e. with x_zp. */
            uint64_t base = (uint64_t)((n * g->C + gi * Cg) * insz);
            for (int64_t e = 0; e < Cg * insz; e++) xf[e] = (float)(iget(X, base + (uint64_t)e) - xzp);
            nn_im2col_f32(k, g, xf, Cg, colf);
            for (int64_t e = 0; e < K * outsz; e++) colq[e] = (int16_t)colf[e];
            nn_igemm(Mg, outsz, K, w + gi * Mg * K, K, colq, outsz,
                     acc + (n * g->M + gi * Mg) * outsz, outsz);
        }
done:
    free(wt);
    free(xf);
    free(colf);
    free(colq);
    return st;
}

static opt_status qconv_geom(opt_kctx *k, nn_conv_geom *g, int xi, int wi, opt_error *err)
{
    const opt_array *X = k->in[xi], *W = k->in[wi];
    if (X->ndim < 3 || W->ndim != X->ndim)
        return opt_kerr(k, err, OPT_ERR_INVALID, "x has rank %d and w rank %d", X->ndim, W->ndim);
    OPT_TRY(nn_conv_geom_init(g, k->node, X->ndim - 2, X->dims + 2, W->dims + 2, false, err));
    g->N = X->dims[0];
    g->C = X->dims[1];
    g->M = W->dims[0];
    g->group = opt_node_attr_int(k->node, "group", 1);
    if (g->group < 1 || g->C % g->group || g->M % g->group || W->dims[1] * g->group != g->C)
        return opt_kerr(k, err, OPT_ERR_INVALID, "channels of x and w disagree with group");
    for (int i = 0; i < g->nsp; i++)
        if (g->k[i] != W->dims[2 + i])
            return opt_kerr(k, err, OPT_ERR_INVALID, "kernel_shape disagrees with w's shape");
    return OPT_OK;
}

static opt_status convint_run(opt_kctx *k, opt_error *err)
{
    nn_conv_geom g;
    OPT_TRY(qconv_geom(k, &g, 0, 1, err));
    int64_t dims[OPT_MAX_DIMS] = {g.N, g.M};
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.out[i];
    OPT_TRY(opt_kctx_output(k, 0, OPT_DT_INT32, k->in[0]->ndim, dims, err));
    if (!opt_array_numel(&k->out[0])) return OPT_OK;
    nn_qop o = {.x = k->in[0], .w = k->in[1], .xz = opt_kctx_has(k, 2) ? k->in[2] : NULL,
                .wz = opt_kctx_has(k, 3) ? k->in[3] : NULL, .y = &k->out[0]};
    const qconv_state *s = k->state;
    if (!qlinear_generic() && nn_qconv_ok(&g, &o)) return nn_qconv(k, &g, &o, s ? s->pw : NULL, err);
    return qconv_acc(k, &g, k->out[0].data, err);
}

static opt_status qlconv_run(opt_kctx *k, opt_error *err)
{
    for (size_t i = 0; i < 8; i++)
        if (i != 2 && i != 5 && i != 7 && !opt_kctx_has(k, i))
            return opt_kerr(k, err, OPT_ERR_INVALID, "missing input %zu", i);
    nn_conv_geom g;
    OPT_TRY(qconv_geom(k, &g, 0, 3, err));
    const opt_array *yzp = opt_kctx_has(k, 7) ? k->in[7] : NULL;
    const opt_array *B = opt_kctx_has(k, 8) ? k->in[8] : NULL;
    if (B && (int64_t)opt_array_numel(B) != g.M)
        return opt_kerr(k, err, OPT_ERR_INVALID, "B must have M values");
    uint64_t nws = opt_array_numel(k->in[4]);
    if ((nws != 1 && (int64_t)nws != g.M) || opt_array_numel(k->in[1]) != 1 ||
        opt_array_numel(k->in[6]) != 1)
        return opt_kerr(k, err, OPT_ERR_INVALID, "w_scale must have 1 or M values, x_scale and "
                                                 "y_scale one");
    int64_t dims[OPT_MAX_DIMS] = {g.N, g.M};
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.out[i];
    OPT_TRY(opt_kctx_output(k, 0, yzp ? yzp->dtype : k->in[0]->dtype, k->in[0]->ndim, dims, err));
    uint64_t total = opt_array_numel(&k->out[0]);
    if (!total) return OPT_OK;
    nn_qop o = {.x = k->in[0], .xs = k->in[1], .xz = opt_kctx_has(k, 2) ? k->in[2] : NULL, .w = k->in[3],
                .ws = k->in[4], .wz = opt_kctx_has(k, 5) ? k->in[5] : NULL, .ys = k->in[6], .yz = yzp,
                .b = B, .y = &k->out[0]};
    out_range(k->node, k->out[0].dtype, &o.yclamp, &o.ylo, &o.yhi);
    const qconv_state *qs = k->state;
    if (!qlinear_generic() && nn_qconv_ok(&g, &o)) return nn_qconv(k, &g, &o, qs ? qs->pw : NULL, err);
    int32_t *acc = malloc(total * sizeof *acc);
    if (!acc) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    opt_status st = qconv_acc(k, &g, acc, err);
    if (st == OPT_OK) {
        float xs = (float)opt_array_get(k->in[1], 0), ys = (float)opt_array_get(k->in[6], 0);
        int32_t z = yzp ? iget(yzp, 0) : 0;
        int64_t outsz = nn_geom_out_size(&g);
        for (uint64_t e = 0; e < total; e++) {
            int64_t m = ((int64_t)e / outsz) % g.M;
            float m_ = xs * (float)opt_array_get(k->in[4], nws == 1 ? 0 : (uint64_t)m) / ys;
            int64_t a = (int64_t)acc[e] + (B ? iget(B, (uint64_t)m) : 0);
            iset(&k->out[0], e, nn_qrequant(a, m_, z, o.ylo, o.yhi));
        }
    }
    free(acc);
    return st;
}

/* ---- QLinearAdd (com.microsoft) ---------------------------------------------------------- */

/* C = quantize(dequantize(A) + dequantize(B)) with per-tensor parameters, computed in float32
 * exactly as DequantizeLinear -> Add -> QuantizeLinear compute it (so a QDQ Add island rewritten
 * into this op gives the same bytes). Numpy broadcasting. */
typedef struct qadd_job {
    const uint8_t *a, *b;
    uint8_t *y;
    bool as8, bs8, ys8;
    float as, bs, cs, cz, lo, hi;
    int32_t az, bz;
    const opt_bcast *bc;
    bool vec512; /* qadd_avx512 may run (the CPU has it, the scales allow it) */
} qadd_job;

/* No fused multiply-add here: the products must round as DequantizeLinear's do. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QADD_VEC __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), \
                                optimize("O3", "fp-contract=off")))
#else
#define QADD_VEC
#endif

typedef struct qadd_par {
    float as, bs, cs, cz, lo, hi;
    int32_t az, bz;
    bool ys8;
} qadd_par;

static inline __attribute__((always_inline)) uint8_t qadd_one(const qadd_par p, int32_t ai, int32_t bi)
{
    const float magic = 12582912.0f;
    float v = ((float)(ai - p.az) * p.as + (float)(bi - p.bz) * p.bs) / p.cs;
    v = v < -512.0f ? -512.0f : v > 512.0f ? 512.0f : v;
    v = (v + magic) - magic + p.cz;
    v = v < p.lo ? p.lo : v > p.hi ? p.hi : v;
    return p.ys8 ? (uint8_t)(int8_t)(int32_t)v : (uint8_t)(int32_t)v;
}

/* Contiguous runs (the residual Add of a ResNet) get their own loops so they vectorise; the
 * parameters are copied to locals first, since byte stores could alias the job struct. */
static QADD_VEC void qadd_loop(const qadd_job *j, const uint8_t *restrict a, int64_t sa, const uint8_t *restrict b,
                               int64_t sb, uint8_t *restrict y, uint64_t n)
{
    const qadd_par p = {j->as, j->bs, j->cs, j->cz, j->lo, j->hi, j->az, j->bz, j->ys8};
    const bool as8 = j->as8, bs8 = j->bs8;
    if (sa == 1 && sb == 1 && !as8 && !bs8 && !p.ys8) {
        for (uint64_t i = 0; i < n; i++) y[i] = qadd_one(p, a[i], b[i]);
    } else if (sa == 1 && sb == 1) {
        for (uint64_t i = 0; i < n; i++)
            y[i] = qadd_one(p, as8 ? (int32_t)(int8_t)a[i] : (int32_t)a[i], bs8 ? (int32_t)(int8_t)b[i] : (int32_t)b[i]);
    } else {
        for (uint64_t i = 0; i < n; i++) {
            int32_t ai = as8 ? (int32_t)(int8_t)a[i * sa] : (int32_t)a[i * sa];
            int32_t bi = bs8 ? (int32_t)(int8_t)b[i * sb] : (int32_t)b[i * sb];
            y[i] = qadd_one(p, ai, bi);
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define QADD_512 1
/* qadd_one on 16 elements as int32. The division by cs is done as Markstein's correctly rounded
 * quotient: q = x * (1/cs), r = x - q * cs (exact, by fma), q' = q + r * (1/cs), where 1/cs is
 * the correctly rounded reciprocal. q' is x / cs rounded to nearest, the bits vdivps gives, as
 * long as nothing overflows or underflows: the caller keeps |as|, |bs| and |cs| within
 * [2^-40, 2^40] for that (the unit test qlinear_add/vector_division_equals_division_for_every_pair
 * compares every (a, b) pair with the division). A division costs more than the three
 * multiply-adds. Then min/max clamp exactly as qadd_one's comparisons do (v is never NaN), and
 * adding and subtracting the magic constant rounds as it does (|v| <= 512). */
typedef struct qadd_vec {
    __m512i az, bz;
    __m512 as, bs, cs, rcs, cz, lo, hi, lim, nlim, magic;
} qadd_vec;

static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) __m512i
qadd16(const qadd_vec *c, __m128i va, __m128i vb, bool as8, bool bs8)
{
    __m512i ia = as8 ? _mm512_cvtepi8_epi32(va) : _mm512_cvtepu8_epi32(va);
    __m512i ib = bs8 ? _mm512_cvtepi8_epi32(vb) : _mm512_cvtepu8_epi32(vb);
    __m512 fa = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ia, c->az)), c->as);
    __m512 fb = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ib, c->bz)), c->bs);
    __m512 x = _mm512_add_ps(fa, fb);
    __m512 q = _mm512_mul_ps(x, c->rcs);
    __m512 r = _mm512_fnmadd_ps(q, c->cs, x);
    __m512 v = _mm512_fmadd_ps(r, c->rcs, q);
    v = _mm512_min_ps(_mm512_max_ps(v, c->nlim), c->lim);
    v = _mm512_add_ps(_mm512_sub_ps(_mm512_add_ps(v, c->magic), c->magic), c->cz);
    v = _mm512_min_ps(_mm512_max_ps(v, c->lo), c->hi);
    return _mm512_cvttps_epi32(v);
}

/* Contiguous runs: 64 elements per step (one 64-byte store of the four results packed to bytes;
 * a masked 16-byte narrowing store per 16 elements cost more than the arithmetic), then 16 at a
 * time under a mask. */
static __attribute__((target("avx512f,avx512bw,avx512vl"), optimize("fp-contract=off"))) void
qadd_avx512(const qadd_job *j, const uint8_t *a, const uint8_t *b, uint8_t *y, uint64_t n)
{
    const qadd_vec c = {
        .az = _mm512_set1_epi32(j->az), .bz = _mm512_set1_epi32(j->bz), .as = _mm512_set1_ps(j->as),
        .bs = _mm512_set1_ps(j->bs), .cs = _mm512_set1_ps(j->cs), .rcs = _mm512_set1_ps(1.0f / j->cs),
        .cz = _mm512_set1_ps(j->cz), .lo = _mm512_set1_ps(j->lo), .hi = _mm512_set1_ps(j->hi),
        .lim = _mm512_set1_ps(512.0f), .nlim = _mm512_set1_ps(-512.0f), .magic = _mm512_set1_ps(12582912.0f)};
    const bool as8 = j->as8, bs8 = j->bs8;
    /* packs interleave the four results by 128-bit lane; this puts the dwords back in order */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    uint64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i r[4];
        for (int t = 0; t < 4; t++)
            r[t] = qadd16(&c, _mm_loadu_si128((const __m128i *)(a + i + 16 * t)),
                          _mm_loadu_si128((const __m128i *)(b + i + 16 * t)), as8, bs8);
        __m512i w01 = _mm512_packs_epi32(r[0], r[1]), w23 = _mm512_packs_epi32(r[2], r[3]);
        __m512i bytes = j->ys8 ? _mm512_packs_epi16(w01, w23) : _mm512_packus_epi16(w01, w23);
        _mm512_storeu_si512((void *)(y + i), _mm512_permutexvar_epi32(order, bytes));
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512i v = qadd16(&c, _mm_maskz_loadu_epi8(k, a + i), _mm_maskz_loadu_epi8(k, b + i), as8, bs8);
        _mm512_mask_cvtepi32_storeu_epi8(y + i, k, v);
    }
}
#else
#define QADD_512 0
#endif


static void qadd_run_fn(void *ctx, const int64_t *in, const int64_t *st, uint64_t out, uint64_t len)
{
    const qadd_job *j = ctx;
#if QADD_512
    if (j->vec512 && st[0] == 1 && st[1] == 1) {
        qadd_avx512(j, j->a + in[0], j->b + in[1], j->y + out, len);
        return;
    }
#endif
    qadd_loop(j, j->a + in[0], st[0], j->b + in[1], st[1], j->y + out, len);
}

static void qadd_chunk(void *ctx, size_t b, size_t e)
{
    const qadd_job *j = ctx;
    opt_bcast_walk(j->bc, b, e, qadd_run_fn, ctx);
}

static opt_status qadd_run(opt_kctx *k, opt_error *err)
{
    for (size_t i = 0; i < 7; i++)
        if (i != 2 && i != 5 && !opt_kctx_has(k, i))
            return opt_kerr(k, err, OPT_ERR_INVALID, "missing input %zu", i);
    const opt_array *A = k->in[0], *B = k->in[3], *cz = opt_kctx_has(k, 7) ? k->in[7] : NULL;
    if (B->dtype != OPT_DT_UINT8 && B->dtype != OPT_DT_INT8)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "B must be uint8 or int8");
    for (size_t i = 1; i < 8; i++)
        if (i != 3 && opt_kctx_has(k, i) && opt_array_numel(k->in[i]) != 1)
            return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "scales and zero points must be scalars");
    int ydt = cz ? cz->dtype : A->dtype;
    const opt_array *ab[2] = {A, B};
    opt_bcast bc;
    OPT_TRY(opt_bcast_init(&bc, k, ab, 2, err));
    OPT_TRY(opt_kctx_output(k, 0, ydt, bc.out_ndim, bc.out_dims, err));
    bool ys8 = ydt == OPT_DT_INT8, on;
    int32_t lo, hi;
    out_range(k->node, ydt, &on, &lo, &hi);
    qadd_job j = {.a = A->data, .b = B->data, .y = k->out[0].data, .as8 = A->dtype == OPT_DT_INT8,
                  .bs8 = B->dtype == OPT_DT_INT8, .ys8 = ys8, .as = (float)opt_array_get(k->in[1], 0),
                  .bs = (float)opt_array_get(k->in[4], 0), .cs = (float)opt_array_get(k->in[6], 0),
                  .cz = cz ? (float)iget(cz, 0) : 0.0f, .lo = (float)lo, .hi = (float)hi,
                  .az = opt_kctx_has(k, 2) ? iget(k->in[2], 0) : 0, .bz = opt_kctx_has(k, 5) ? iget(k->in[5], 0) : 0,
                  .bc = &bc};
#if QADD_512
    /* qadd_avx512's division by multiply-adds is exact for scales within [2^-40, 2^40] */
    const float smin = 0x1p-40f, smax = 0x1p40f;
    j.vec512 = fabsf(j.as) >= smin && fabsf(j.as) <= smax && fabsf(j.bs) >= smin && fabsf(j.bs) <= smax &&
               fabsf(j.cs) >= smin && fabsf(j.cs) <= smax && has_avx512();
#endif
    if (nn_threads(k) > 1 && bc.numel >= 32768)
        opt_parallel_for(k, (size_t)bc.numel, qadd_chunk, &j);
    else
        qadd_chunk(&j, 0, (size_t)bc.numel);
    return OPT_OK;
}

/* Checks the dtype of each present input against spec, one letter per input slot: 'q' int8 or
 * uint8, 'f' a float type (a scale), 'i' int32 (QLinearConv's bias). The kernels read data and
 * zero points as integers and scales as floats, so other types are refused before anything runs. */
static opt_status check_slots(const opt_node *n, const int *in_dt, size_t n_in, const char *spec,
                              opt_error *err)
{
    for (size_t i = 0; i < n_in && spec[i]; i++) {
        int dt = in_dt[i];
        if (!dt) continue;
        bool ok = spec[i] == 'q'   ? dt == OPT_DT_UINT8 || dt == OPT_DT_INT8
                  : spec[i] == 'f' ? dt < 32 && (OPT_DTS_FLOATS & OPT_DT_BIT(dt)) != 0
                                   : dt == OPT_DT_INT32;
        if (!ok)
            return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "input %zu '%s' is %s; %s expects %s", i,
                                n->inputs[i], opt_dtype_name(dt), n->op_type,
                                spec[i] == 'q' ? "int8 or uint8" : spec[i] == 'f' ? "a float type" : "int32");
    }
    return OPT_OK;
}

/* MatMulInteger (a, b, a_zero_point, b_zero_point) and ConvInteger (x, w, x_zp, w_zp). */
static opt_status int32_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                              int *out_dt, size_t n_out, opt_error *err)
{
    OPT_TRY(check_slots(n, in_dt, n_in, "qqqq", err));
    out_dt[0] = OPT_DT_INT32;
    return OPT_OK;
}

/* QLinearMatMul, QLinearAdd and QLinearConv: x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp,
 * and QLinearConv's int32 bias. */
static opt_status qlinear_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in,
                                int *out_dt, size_t n_out, opt_error *err)
{
    OPT_TRY(check_slots(n, in_dt, n_in, "qfqqfqfqi", err));
    out_dt[0] = n_in > 7 && in_dt[7] ? in_dt[7] : in_dt[0];
    return OPT_OK;
}

#define Q8 (OPT_DT_BIT(OPT_DT_INT8) | OPT_DT_BIT(OPT_DT_UINT8))
#define QIN (Q8 | OPT_DT_BIT(OPT_DT_INT16) | OPT_DT_BIT(OPT_DT_UINT16) | OPT_DT_BIT(OPT_DT_INT32) | \
             OPT_DT_BIT(OPT_DT_FLOAT8E4M3FN) | OPT_DT_BIT(OPT_DT_FLOAT8E4M3FNUZ) |                \
             OPT_DT_BIT(OPT_DT_FLOAT8E5M2) | OPT_DT_BIT(OPT_DT_FLOAT8E5M2FNUZ))

const opt_kernel opt_kernels_quant[] = {
    {"", "QuantizeLinear", 10, INT_MAX, OPT_DTS_FLOATS | OPT_DT_BIT(OPT_DT_INT32), 0,
     OPT_DEVICE_CPU, ql_infer, NULL, quantize_run, NULL},
    {"", "DequantizeLinear", 10, INT_MAX, QIN, 0, OPT_DEVICE_CPU, dql_infer, NULL, dequantize_run,
     NULL},
    {"", "DynamicQuantizeLinear", 11, INT_MAX, OPT_DT_BIT(OPT_DT_FLOAT), 0, OPT_DEVICE_CPU,
     dyn_infer, NULL, dynq_run, NULL},
    {"", "MatMulInteger", 10, INT_MAX, Q8, 0, OPT_DEVICE_CPU, int32_infer, qmm_prepare, mmint_run,
     qmm_release},
    {"", "ConvInteger", 10, INT_MAX, Q8, 0, OPT_DEVICE_CPU, int32_infer, qconv_prepare,
     convint_run, qconv_release},
    {"", "QLinearMatMul", 10, INT_MAX, Q8, 0, OPT_DEVICE_CPU, qlinear_infer, qmm_prepare, qlmm_run,
     qmm_release},
    {"com.microsoft", "QLinearAdd", 1, INT_MAX, Q8, 0, OPT_DEVICE_CPU, qlinear_infer, NULL, qadd_run, NULL},
    {"", "QLinearConv", 10, INT_MAX, Q8, 0, OPT_DEVICE_CPU, qlinear_infer, qconv_prepare,
     qlconv_run, qconv_release},
    {0},
};
