/*
 * tests/unit/kernels_qgemm.c — the 8-bit integer GEMM and the ops on it are exact: every kernel
 * this CPU has (AVX-512 VNNI, AVX2, C) gives the same bytes as the three-loop reference for any
 * shape, signedness and epilogue; QLinearConv (int8 activations, uint8 weights with per-channel
 * zero points, strides (2 along the width too), dilations, pads, images smaller than a panel; both
 * unfoldings), a Gemm written as a 1x1
 * QLinearConv, depthwise QLinearConv and ConvInteger (the direct kernel and the GEMM path) and
 * QLinearMatMul (B constant, or batched and broadcast with both operands activations) equal
 * integer references computed here; the per-tensor
 * QuantizeLinear/DequantizeLinear loops equal the ONNX formulas.
 */
#include "libopt/exec/cpu/qgemm.h"
#include "libopt/exec/qdq_fuse.h"
#include "tests/unit/kernels_util.h"

static uint8_t *rand_bytes(kt_rng *r, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)kt_int(r, 0, 255);
    return p;
}

static int32_t *rand_i32(kt_rng *r, size_t n, int32_t lo, int32_t hi)
{
    int32_t *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (int32_t)kt_int(r, lo, hi);
    return p;
}

Test(qgemm, every_kernel_equals_the_reference_exactly)
{
    kt_rng r = {4242};
    const nn_qisa isas[3] = {NN_QISA_C, NN_QISA_AVX2, NN_QISA_VNNI};
    for (int t = 0; t < 60; t++) {
        int64_t M = kt_int(&r, 1, 21), N = kt_int(&r, 1, 150), K = kt_int(&r, 1, 70), Kp = nn_qkp(K);
        /* every third trial: N columns are the pixels of 1-3 images of P pixels, each image's
         * output an M x P block (NCHW), so a panel may end or cross an image */
        int64_t P = N;
        if (t % 3 == 2 - (t / 3) % 3) P = kt_int(&r, 1, 60), N = P * kt_int(&r, 1, 3);
        bool su = t % 2;
        int odts[3] = {OPT_DT_UINT8, OPT_DT_INT8, OPT_DT_INT32};
        nn_qepi ep = {.out_dt = odts[t % 3], .zp = (int32_t)kt_int(&r, -20, 20), .mul = 0.0005f * (float)(t + 1)};
        if (ep.out_dt == OPT_DT_UINT8) ep.zp += 128;
        uint8_t *s = calloc((size_t)(M * Kp), 1), *v = rand_bytes(&r, (size_t)(K * N));
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) s[i * Kp + k] = (uint8_t)kt_int(&r, 0, 255);
        int32_t *rb = rand_i32(&r, (size_t)M, -40000, 40000), *cb = rand_i32(&r, (size_t)N, -40000, 40000);
        int32_t *rf = rand_i32(&r, (size_t)M, -300, 300), *cf = rand_i32(&r, (size_t)N, -300, 300);
        float *rm = malloc((size_t)M * sizeof *rm), *cm = malloc((size_t)N * sizeof *cm);
        for (int64_t i = 0; i < M; i++) rm[i] = 0.0001f * (float)kt_int(&r, 1, 40);
        for (int64_t j = 0; j < N; j++) cm[j] = 0.0001f * (float)kt_int(&r, 1, 40);
        if (t % 4 != 0) ep.rbias = rb;
        if (t % 5 != 0) ep.cbias = cb;
        if (t % 3 == 1) ep.rfac = rf, ep.cfac = cf;
        if (t % 7 < 3) ep.rmul = rm;
        else if (t % 7 < 5) ep.cmul = cm;
        uint8_t *packed = malloc(nn_qpack_bytes(K, N));
        nn_qpack(v, N, K, N, 0, packed);
        size_t es = ep.out_dt == OPT_DT_INT32 ? 4 : 1, ob = (size_t)(M * N) * es;
        uint8_t *want = malloc(ob), *got = malloc(ob);
        nn_qgemm_ref(M, N, K, su, s, Kp, v, N, &ep, want, N);
        for (int q = 0; q < 3; q++) {
            if (!nn_qisa_available(isas[q])) continue;
            memset(got, 0xa5, ob);
            nn_qgemm_args a = {.M = M, .N = N, .K = K, .s_unsigned = su, .s = s, .lds = Kp, .vpacked = packed,
                               .ep = &ep, .out = got, .ldo = P, .P = P, .img_stride = M * P};
            cr_assert(nn_qgemm(NULL, isas[q], &a));
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    size_t g = (size_t)(((j / P) * M + i) * P + j % P) * es, w = (size_t)(i * N + j) * es;
                    cr_assert(memcmp(got + g, want + w, es) == 0,
                              "trial %d (M %lld N %lld P %lld K %lld, %s): element (%lld, %lld) differs", t,
                              (long long)M, (long long)N, (long long)P, (long long)K, nn_qisa_name(isas[q]),
                              (long long)i, (long long)j);
                }
        }
        free(s), free(v), free(rb), free(cb), free(rf), free(cf), free(rm), free(cm);
        free(packed), free(want), free(got);
    }
}

Test(qgemm, requantisation_rounds_half_to_even_and_saturates)
{
    /* 1 x 6 times 6 x 6 identity-like V: sums are S's bytes; mul 0.5 puts them on .5 ties. */
    uint8_t s[8] = {1, 3, 5, 7, 255, 0, 0, 0}; /* as int8: 1 3 5 7 -1 0 */
    uint8_t v[6 * 6] = {0};
    for (int k = 0; k < 6; k++) v[k * 6 + k] = 1;
    v[4 * 6 + 5] = 200; /* column 5 = -1 * 200 = -200 -> -100 -> saturates at 0 */
    uint8_t packed[2 * NN_QNR * 4 * 2];
    nn_qpack(v, 6, 6, 6, 0, packed);
    nn_qepi ep = {.mul = 0.5f, .zp = 0, .out_dt = OPT_DT_UINT8};
    const uint8_t want[6] = {0, 2, 2, 4, 0, 0}; /* 0.5 1.5 2.5 3.5 -0.5 -100 */
    const nn_qisa isas[3] = {NN_QISA_C, NN_QISA_AVX2, NN_QISA_VNNI};
    for (int q = 0; q < 3; q++) {
        if (!nn_qisa_available(isas[q])) continue;
        uint8_t got[6];
        nn_qgemm_args a = {.M = 1, .N = 6, .K = 6, .s = s, .lds = 8, .vpacked = packed, .ep = &ep, .out = got,
                           .ldo = 6, .P = 6};
        cr_assert(nn_qgemm(NULL, isas[q], &a));
        cr_assert_arr_eq(got, want, 6, "%s", nn_qisa_name(isas[q]));
    }
}

/* ONNX Runtime's requantisation (MlasRequantizeOutput), written out here: the product in
 * float32, clamped to the type's range less the zero point, rounded half to even, plus it. */
static int32_t ort_requant(int32_t acc, float mult, int32_t zp, int32_t lo, int32_t hi)
{
    float f = (float)acc * mult;
    if (f < (float)(lo - zp)) f = (float)(lo - zp);
    if (f > (float)(hi - zp)) f = (float)(hi - zp);
    return (int32_t)nearbyintf(f) + zp;
}

/* An activation absorbed at load (qdq_fuse.c) as the node's output clamp [clamp[0], clamp[1]];
 * none when clamp is NULL. The type's range [tlo, thi] otherwise: *lo, *hi for the reference. */
static void kt_clamp(opt_model *m, const int32_t *clamp, int32_t tlo, int32_t thi, int32_t *lo, int32_t *hi)
{
    *lo = clamp ? clamp[0] : tlo;
    *hi = clamp ? clamp[1] : thi;
    if (!clamp) return;
    kt_attr_int(m, OPT_QDQ_ATTR_QMIN, clamp[0]);
    kt_attr_int(m, OPT_QDQ_ATTR_QMAX, clamp[1]);
}

/* Direct QLinearConv reference (2-D, group 1): int32 sums of (x - xz)(w - wz[m]) + b[m], then
 * ort_requant(sum, xs * ws[m] / ys, yz). */
static int32_t conv_ref_sum(const int32_t *x, const int32_t *w, int n, int m, int oh, int ow, int C, int H, int W,
                            int KH, int KW, const int *st, const int *dl, const int *pd, int32_t xz, int32_t wz)
{
    int32_t acc = 0;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                int ih = oh * st[0] - pd[0] + kh * dl[0], iw = ow * st[1] - pd[1] + kw * dl[1];
                int32_t xv = ih < 0 || ih >= H || iw < 0 || iw >= W ? 0 : x[((n * C + c) * H + ih) * W + iw] - xz;
                acc += xv * (w[((m * C + c) * KH + kh) * KW + kw] - wz);
            }
    return acc;
}

/* One QLinearConv case with C input channels (C % 4 == 0 takes the channels-last unfolding) and
 * stride sw along the width. */
static void qlconv_case(int C, int W, int sw, uint64_t seed, const int32_t *clamp)
{
    kt_rng r = {seed};
    enum { N = 3, H = 6, M = 11, KH = 3, KW = 2 };
    const int st[2] = {2, sw}, dl[2] = {1, 2}, pd[4] = {1, 2, 0, 1};
    const int OH = (H + pd[0] + pd[2] - dl[0] * (KH - 1) - 1) / st[0] + 1;
    const int OW = (W + pd[1] + pd[3] - dl[1] * (KW - 1) - 1) / st[1] + 1;
    const size_t nx = (size_t)(N * C * H * W), nw = (size_t)(M * C * KH * KW);
    int8_t *x = malloc(nx);
    uint8_t *w = malloc(nw);
    uint8_t wzp[M];
    float wsc[M];
    int32_t bias[M];
    for (size_t i = 0; i < nx; i++) x[i] = (int8_t)kt_int(&r, -128, 127);
    for (size_t i = 0; i < nw; i++) w[i] = (uint8_t)kt_int(&r, 0, 255);
    for (int m = 0; m < M; m++) {
        wzp[m] = (uint8_t)kt_int(&r, 100, 150);
        wsc[m] = 0.0007f * (float)(m + 1);
        bias[m] = (int32_t)kt_int(&r, -20000, 20000);
    }
    int8_t xzp = -3, yzp = -10;
    float xsc = 0.03f, ysc = 0.4f;
    kt_operand in[9] = {
        {"x", OPT_DT_INT8, 4, {N, C, H, W}, x, false},
        {"xs", OPT_DT_FLOAT, 0, {0}, &xsc, true},
        {"xz", OPT_DT_INT8, 0, {0}, &xzp, true},
        {"w", OPT_DT_UINT8, 4, {M, C, KH, KW}, w, true},
        {"ws", OPT_DT_FLOAT, 1, {M}, wsc, true},
        {"wz", OPT_DT_UINT8, 1, {M}, wzp, true},
        {"ys", OPT_DT_FLOAT, 0, {0}, &ysc, true},
        {"yz", OPT_DT_INT8, 0, {0}, &yzp, true},
        {"b", OPT_DT_INT32, 1, {M}, bias, true},
    };
    int odt = OPT_DT_INT8;
    opt_model *m = kt_model("QLinearConv", 10, in, 9, &odt, 1);
    kt_attr_ints(m, "pads", (const int64_t[]){pd[0], pd[1], pd[2], pd[3]}, 4);
    kt_attr_ints(m, "strides", (const int64_t[]){st[0], st[1]}, 2);
    kt_attr_ints(m, "dilations", (const int64_t[]){dl[0], dl[1]}, 2);
    int32_t lo, hi;
    kt_clamp(m, clamp, -128, 127, &lo, &hi);
    int32_t *xi = malloc(nx * sizeof *xi), *wi = malloc(nw * sizeof *wi);
    for (size_t i = 0; i < nx; i++) xi[i] = x[i];
    for (size_t i = 0; i < nw; i++) wi[i] = w[i];
    for (int threads = 1; threads <= 2; threads++) {
        opt_array y = {0};
        kt_run(m, threads, in, 9, &y, 1);
        cr_assert_eq(y.dtype, OPT_DT_INT8);
        cr_assert_eq(opt_array_numel(&y), (uint64_t)(N * M * OH * OW));
        const int8_t *yv = y.data;
        for (int n = 0; n < N; n++)
            for (int mo = 0; mo < M; mo++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++) {
                        int32_t acc = bias[mo] + conv_ref_sum(xi, wi, n, mo, oh, ow, C, H, W, KH, KW, st, dl, pd,
                                                              xzp, wzp[mo]);
                        int8_t want = (int8_t)ort_requant(acc, xsc * wsc[mo] / ysc, yzp, lo, hi);
                        int8_t got = yv[((n * M + mo) * OH + oh) * OW + ow];
                        cr_assert_eq(got, want, "C %d, %d threads: y[%d,%d,%d,%d] = %d, want %d", C, threads, n, mo,
                                     oh, ow, got, want);
                    }
        opt_array_free(&y);
    }
    opt_model_free(m);    free(x), free(w), free(xi), free(wi);
}

Test(qlinearconv, int8_activations_and_uint8_weights_with_zero_points_equal_the_integer_reference)
{
    qlconv_case(5, 9, 1, 77, NULL);   /* unfolding by row pieces */
    qlconv_case(8, 9, 1, 78, NULL);   /* channels-last unfolding */
    qlconv_case(32, 37, 1, 79, NULL); /* channels-last with the 16x16 byte and 4x4 word transposes */
    qlconv_case(3, 77, 2, 80, NULL);  /* row pieces at stride 2 (ResNet's first conv): 16 bytes of 32 at a time */
    qlconv_case(3, 150, 2, 81, NULL); /* the same over runs of a whole panel */
}

/* A depthwise QLinearConv (group = C, M = mult * C) or ConvInteger (int32 out): 1-D when H == 0.
 * Weights int8 without zero points take the direct kernel (qdwconv.c) on a VNNI CPU; uint8
 * weights with zero points take the GEMM path. Both must equal the integer reference. */
typedef struct dw_spec {
    int N, C, mult, H, W, KH, KW, sh, sw, dh, dw, pt, pl, pb, pr;
    bool s8x, qlinear, wzp;
} dw_spec;

static void dw_case(const dw_spec *sp, uint64_t seed, const int32_t *clamp)
{
    kt_rng r = {seed};
    const bool one = sp->H == 0;
    const int N = sp->N, C = sp->C, M = C * sp->mult, H = one ? 1 : sp->H, W = sp->W;
    const int KH = one ? 1 : sp->KH, KW = sp->KW, sh = one ? 1 : sp->sh, dh = one ? 1 : sp->dh;
    const int pt = one ? 0 : sp->pt, pb = one ? 0 : sp->pb;
    const int OH = (H + pt + pb - dh * (KH - 1) - 1) / sh + 1;
    const int OW = (W + sp->pl + sp->pr - sp->dw * (KW - 1) - 1) / sp->sw + 1;
    const size_t nx = (size_t)(N * C * H * W), nw = (size_t)(M * KH * KW);
    uint8_t *x = malloc(nx), *w = malloc(nw);
    uint8_t wzp[64];
    float wsc[64];
    int32_t bias[64];
    cr_assert(M <= 64);
    for (size_t i = 0; i < nx; i++) x[i] = (uint8_t)kt_int(&r, 0, 255);
    for (size_t i = 0; i < nw; i++) w[i] = (uint8_t)kt_int(&r, 0, 255);
    for (int m = 0; m < M; m++) {
        wzp[m] = sp->wzp ? (uint8_t)kt_int(&r, 100, 150) : 0;
        wsc[m] = 0.0009f * (float)(m % 7 + 1);
        bias[m] = (int32_t)kt_int(&r, -20000, 20000);
    }
    const int xdt = sp->s8x ? OPT_DT_INT8 : OPT_DT_UINT8, wdt = sp->wzp ? OPT_DT_UINT8 : OPT_DT_INT8;
    const uint8_t xzp = sp->s8x ? (uint8_t)(int8_t)-7 : 131, yzp = sp->s8x ? (uint8_t)(int8_t)5 : 120;
    const float xsc = 0.02f, ysc = 0.3f;
    const int64_t xd[4] = {N, C, one ? W : H, W}, wd[4] = {M, 1, one ? KW : KH, KW};
    const int nd = one ? 3 : 4;
    kt_operand qin[9] = {
        {"x", xdt, nd, {xd[0], xd[1], xd[2], xd[3]}, x, false},
        {"xs", OPT_DT_FLOAT, 0, {0}, &xsc, true},
        {"xz", xdt, 0, {0}, &xzp, true},
        {"w", wdt, nd, {wd[0], wd[1], wd[2], wd[3]}, w, true},
        {"ws", OPT_DT_FLOAT, 1, {M}, wsc, true},
        {"wz", wdt, 1, {M}, wzp, true},
        {"ys", OPT_DT_FLOAT, 0, {0}, &ysc, true},
        {"yz", xdt, 0, {0}, &yzp, true},
        {"b", OPT_DT_INT32, 1, {M}, bias, true},
    };
    kt_operand iin[4] = {qin[0], qin[3], qin[2], qin[5]}; /* x, w, x_zero_point, w_zero_point */
    int odt = sp->qlinear ? xdt : OPT_DT_INT32;
    opt_model *m = sp->qlinear ? kt_model("QLinearConv", 10, qin, 9, &odt, 1)
                               : kt_model("ConvInteger", 10, iin, 4, &odt, 1);
    kt_attr_int(m, "group", C);
    if (one) {
        kt_attr_ints(m, "pads", (const int64_t[]){sp->pl, sp->pr}, 2);
        kt_attr_ints(m, "strides", (const int64_t[]){sp->sw}, 1);
        kt_attr_ints(m, "dilations", (const int64_t[]){sp->dw}, 1);
    } else {
        kt_attr_ints(m, "pads", (const int64_t[]){pt, sp->pl, pb, sp->pr}, 4);
        kt_attr_ints(m, "strides", (const int64_t[]){sh, sp->sw}, 2);
        kt_attr_ints(m, "dilations", (const int64_t[]){dh, sp->dw}, 2);
    }
    int32_t lo, hi;
    kt_clamp(m, clamp, sp->s8x ? -128 : 0, sp->s8x ? 127 : 255, &lo, &hi);
    for (int threads = 1; threads <= 2; threads++) {
        opt_array y = {0};
        kt_run(m, threads, sp->qlinear ? qin : iin, sp->qlinear ? 9 : 4, &y, 1);
        cr_assert_eq(opt_array_numel(&y), (uint64_t)(N * M * OH * OW));
        for (int n = 0; n < N; n++)
            for (int mo = 0; mo < M; mo++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++) {
                        int32_t acc = sp->qlinear ? bias[mo] : 0, c = mo / sp->mult;
                        for (int kh = 0; kh < KH; kh++)
                            for (int kw = 0; kw < KW; kw++) {
                                int ih = oh * sh - pt + kh * dh, iw = ow * sp->sw - sp->pl + kw * sp->dw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                uint8_t xb = x[((n * C + c) * H + ih) * W + iw], wb = w[(mo * KH + kh) * KW + kw];
                                int32_t xv = sp->s8x ? (int8_t)xb - (int8_t)xzp : xb - xzp;
                                int32_t wv = sp->wzp ? wb - wzp[mo] : (int8_t)wb;
                                acc += xv * wv;
                            }
                        size_t at = (size_t)(((n * M + mo) * OH + oh) * OW + ow);
                        int32_t got, want = acc;
                        if (!sp->qlinear) got = ((const int32_t *)y.data)[at];
                        else if (sp->s8x) {
                            got = ((const int8_t *)y.data)[at];
                            want = ort_requant(acc, xsc * wsc[mo] / ysc, (int8_t)yzp, lo, hi);
                        } else {
                            got = ((const uint8_t *)y.data)[at];
                            want = ort_requant(acc, xsc * wsc[mo] / ysc, yzp, lo, hi);
                        }
                        cr_assert_eq(got, want, "seed %llu, %d threads: y[%d,%d,%d,%d] = %d, want %d",
                                     (unsigned long long)seed, threads, n, mo, oh, ow, got, want);
                    }
        opt_array_free(&y);
    }
    opt_model_free(m);
    free(x), free(w);
}

Test(qlinearconv, depthwise_convs_equal_the_integer_reference)
{
    /*                  N  C mult H   W KH KW sh sw dh dw pt pl pb pr  s8x   qlinear wzp */
    const dw_spec s[] = {
        {2, 5, 1, 6, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, true, false},  /* a row tail of 5 */
        {1, 3, 1, 9, 20, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, true, true, false},   /* stride 2, pads after only */
        {1, 4, 2, 7, 16, 5, 5, 1, 1, 2, 2, 4, 4, 4, 4, false, true, false},  /* 5x5 dilated, multiplier 2 */
        {3, 2, 1, 0, 50, 0, 7, 0, 3, 0, 1, 0, 2, 0, 3, false, true, false},  /* 1-D, two tap groups, stride 3 */
        {1, 6, 1, 5, 7, 3, 3, 1, 4, 1, 1, 1, 1, 1, 1, true, true, false},    /* stride 4: 4 rows per vector */
        {2, 3, 1, 4, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, false, false}, /* ConvInteger: int32 sums */
        {2, 4, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, true, false},   /* 7x7: 2 rows per vector */
        {1, 3, 1, 14, 14, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, true, true, false}, /* 14x14 -> 7x7, 2 rows */
        {1, 2, 1, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, false, false},  /* int32, 4 rows per vector */
        {1, 4, 1, 5, 21, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1, true, true, true},    /* weight zero points: GEMM */
        {1, 2, 1, 4, 9, 3, 3, 1, 1, 1, 7, 1, 5, 1, 5, false, true, false},   /* dilation 7: GEMM */
    };
    for (size_t i = 0; i < sizeof s / sizeof *s; i++) dw_case(&s[i], 300 + i, NULL);
    /* Which path each kind takes: the direct kernel for the 3x3 case on VNNI (so on a VNNI CPU
     * the cases above test it), the GEMM for C, weight zero points or a lane-crossing dilation */
    nn_conv_geom g = {.nsp = 2, .N = 1, .C = 8, .M = 8, .group = 8, .in = {8, 8}, .out = {8, 8}, .k = {3, 3},
                      .stride = {1, 1}, .dil = {1, 1}, .pad_b = {1, 1}, .pad_e = {1, 1}};
    nn_qweights pw = {.rows = 8, .K = 9, .Kp = 12};
#if defined(__x86_64__) && !defined(__clang__)
    cr_assert(nn_qdw_ok(NN_QISA_VNNI, &g, &pw));
#endif
    cr_assert(!nn_qdw_ok(NN_QISA_C, &g, &pw));
    g.dil[1] = 7;
    cr_assert(!nn_qdw_ok(NN_QISA_VNNI, &g, &pw));
    g.dil[1] = 1;
    pw.any_zp = true;
    cr_assert(!nn_qdw_ok(NN_QISA_VNNI, &g, &pw));
}

Test(qlinearconv, pointwise_panels_inside_and_across_images_equal_the_integer_reference)
{
    kt_rng r = {123};
    enum { N = 3, C = 6, H = 10, W = 10, M = 9 }; /* 100 pixels: panels 0-1 inside image 0, 2 across */
    static int8_t x[N * C * H * W];
    static uint8_t w[M * C];
    uint8_t wzp[M];
    float wsc[M];
    for (size_t i = 0; i < sizeof x; i++) x[i] = (int8_t)kt_int(&r, -128, 127);
    for (size_t i = 0; i < sizeof w; i++) w[i] = (uint8_t)kt_int(&r, 0, 255);
    for (int m = 0; m < M; m++) wzp[m] = (uint8_t)kt_int(&r, 90, 160), wsc[m] = 0.003f + 0.0002f * (float)m;
    int8_t xzp = 9, yzp = 0;
    float xsc = 0.02f, ysc = 0.2f;
    kt_operand in[8] = {
        {"x", OPT_DT_INT8, 4, {N, C, H, W}, x, false},
        {"xs", OPT_DT_FLOAT, 0, {0}, &xsc, true},
        {"xz", OPT_DT_INT8, 0, {0}, &xzp, true},
        {"w", OPT_DT_UINT8, 4, {M, C, 1, 1}, w, true},
        {"ws", OPT_DT_FLOAT, 1, {M}, wsc, true},
        {"wz", OPT_DT_UINT8, 1, {M}, wzp, true},
        {"ys", OPT_DT_FLOAT, 0, {0}, &ysc, true},
        {"yz", OPT_DT_INT8, 0, {0}, &yzp, true},
    };
    int odt = OPT_DT_INT8;
    opt_model *m = kt_model("QLinearConv", 10, in, 8, &odt, 1);
    opt_array y = {0};
    kt_run(m, 2, in, 8, &y, 1);
    const int8_t *yv = y.data;
    for (int n = 0; n < N; n++)
        for (int mo = 0; mo < M; mo++)
            for (int p = 0; p < H * W; p++) {
                int32_t acc = 0;
                for (int c = 0; c < C; c++) acc += (x[(n * C + c) * H * W + p] - xzp) * (w[mo * C + c] - wzp[mo]);
                int8_t want = (int8_t)ort_requant(acc, xsc * wsc[mo] / ysc, yzp, -128, 127);
                cr_assert_eq(yv[(n * M + mo) * H * W + p], want, "y[%d,%d,%d]", n, mo, p);
            }
    opt_array_free(&y);
    opt_model_free(m);
}

/* A Gemm written as a 1x1 QLinearConv over B images of K channels (B < 24: the images become the
 * GEMM's rows), int8 or uint8 activations, weights with or without zero points. */
static void gemm_as_conv_case(int B, bool s8x, bool wzp_on, uint64_t seed, const int32_t *clamp)
{
    kt_rng r = {seed};
    enum { K = 37, M = 19 };
    uint8_t *x = malloc((size_t)(B * K)), *w = malloc(M * K);
    uint8_t wzp[M];
    float wsc[M];
    int32_t bias[M];
    for (int i = 0; i < B * K; i++) x[i] = (uint8_t)kt_int(&r, 0, 255);
    for (int i = 0; i < M * K; i++) w[i] = (uint8_t)kt_int(&r, 0, 255);
    for (int m = 0; m < M; m++) {
        wsc[m] = 0.002f + 0.0001f * (float)m, bias[m] = (int32_t)kt_int(&r, -9000, 9000);
        wzp[m] = wzp_on ? (uint8_t)kt_int(&r, 100, 150) : 0;
    }
    uint8_t xzp = 7, yzp = 0; /* output zero point 0: saturation is the Relu */
    float xsc = 0.01f, ysc = 0.05f;
    int xdt = s8x ? OPT_DT_INT8 : OPT_DT_UINT8, wdt = wzp_on ? OPT_DT_UINT8 : OPT_DT_INT8;
    kt_operand in[9] = {
        {"x", xdt, 4, {B, K, 1, 1}, x, false},
        {"xs", OPT_DT_FLOAT, 0, {0}, &xsc, true},
        {"xz", xdt, 0, {0}, &xzp, true},
        {"w", wdt, 4, {M, K, 1, 1}, w, true},
        {"ws", OPT_DT_FLOAT, 1, {M}, wsc, true},
        {"wz", wdt, 1, {M}, wzp, true},
        {"ys", OPT_DT_FLOAT, 0, {0}, &ysc, true},
        {"yz", OPT_DT_UINT8, 0, {0}, &yzp, true},
        {"b", OPT_DT_INT32, 1, {M}, bias, true},
    };
    int odt = OPT_DT_UINT8;
    opt_model *m = kt_model("QLinearConv", 10, in, 9, &odt, 1);
    int32_t lo, hi;
    kt_clamp(m, clamp, 0, 255, &lo, &hi);
    opt_array y = {0};
    kt_run(m, 2, in, 9, &y, 1);
    const uint8_t *yv = y.data;
    for (int b = 0; b < B; b++)
        for (int mo = 0; mo < M; mo++) {
            int32_t acc = bias[mo];
            for (int k = 0; k < K; k++) {
                int32_t xv = s8x ? (int8_t)x[b * K + k] - (int8_t)xzp : x[b * K + k] - xzp;
                int32_t wv = wzp_on ? w[mo * K + k] - wzp[mo] : (int8_t)w[mo * K + k];
                acc += xv * wv;
            }
            uint8_t want = (uint8_t)ort_requant(acc, xsc * wsc[mo] / ysc, yzp, lo, hi);
            cr_assert_eq(yv[b * M + mo], want, "B %d: y[%d,%d] = %d, want %d", B, b, mo, yv[b * M + mo], want);
        }
    opt_array_free(&y);
    opt_model_free(m);
    free(x), free(w);
}

Test(qlinearconv, a_gemm_as_1x1_conv_equals_the_integer_reference_for_any_batch)
{
    gemm_as_conv_case(61, false, false, 91, NULL); /* images as panel columns */
    gemm_as_conv_case(3, false, false, 92, NULL);  /* images as rows */
    gemm_as_conv_case(1, true, true, 93, NULL);    /* int8 x, uint8 w with zero points: row sums */
    gemm_as_conv_case(30, true, true, 94, NULL);
}

static void qlmm_case(const int32_t *clamp)
{
    kt_rng r = {5};
    enum { D0 = 2, M = 7, K = 13, N = 57 };
    static int8_t a[D0 * M * K];
    static uint8_t b[K * N], bz[N];
    static float bs[N];
    for (size_t i = 0; i < sizeof a; i++) a[i] = (int8_t)kt_int(&r, -128, 127);
    for (size_t i = 0; i < sizeof b; i++) b[i] = (uint8_t)kt_int(&r, 0, 255);
    for (int n = 0; n < N; n++) bz[n] = (uint8_t)kt_int(&r, 110, 140), bs[n] = 0.001f * (float)(1 + n % 9);
    int8_t az = 5;
    uint8_t yz = 128;
    float as = 0.02f, ys = 0.3f;
    kt_operand in[8] = {
        {"a", OPT_DT_INT8, 3, {D0, M, K}, a, false},
        {"as", OPT_DT_FLOAT, 0, {0}, &as, true},
        {"az", OPT_DT_INT8, 0, {0}, &az, true},
        {"b", OPT_DT_UINT8, 2, {K, N}, b, true},
        {"bs", OPT_DT_FLOAT, 1, {N}, bs, true},
        {"bz", OPT_DT_UINT8, 1, {N}, bz, true},
        {"ys", OPT_DT_FLOAT, 0, {0}, &ys, true},
        {"yz", OPT_DT_UINT8, 0, {0}, &yz, true},
    };
    int odt = OPT_DT_UINT8;
    opt_model *m = kt_model("QLinearMatMul", 10, in, 8, &odt, 1);
    int32_t lo, hi;
    kt_clamp(m, clamp, 0, 255, &lo, &hi);
    opt_array y = {0};
    kt_run(m, 2, in, 8, &y, 1);
    cr_assert_eq(opt_array_numel(&y), (uint64_t)(D0 * M * N));
    const uint8_t *yv = y.data;
    for (int i = 0; i < D0 * M; i++)
        for (int n = 0; n < N; n++) {
            int32_t acc = 0;
            for (int k = 0; k < K; k++) acc += (a[i * K + k] - az) * (b[k * N + n] - bz[n]);
            uint8_t want = (uint8_t)ort_requant(acc, as * bs[n] / ys, yz, lo, hi);
            cr_assert_eq(yv[i * N + n], want, "y[%d,%d] = %d, want %d", i, n, yv[i * N + n], want);
        }
    opt_array_free(&y);
    opt_model_free(m);
}

Test(qlinearmatmul, int8_a_and_uint8_b_with_per_column_zero_points_equal_the_integer_reference)
{
    qlmm_case(NULL);
}

/* Both operands activations, B batched and broadcast (attention's Q x K^T): each batch's
 * matrices go through the integer GEMM with B packed at run time. A [2,3,M,K] int8 (copied with
 * the sign flip and padded to 4) or uint8 with K a multiple of 4 (read in place, its row sums
 * taken there), B [1,3,K,N] uint8 (broadcast along the first dim), per-tensor zero points. */
static void qlmm_batched_case(const int32_t *clamp, bool a_u8)
{
    kt_rng r = {17};
    enum { D0 = 2, D1 = 3, M = 9, KMAX = 24, N = 35 };
    const int K = a_u8 ? 24 : 21;
    static uint8_t a[D0 * D1 * M * KMAX];
    static uint8_t b[D1 * KMAX * N];
    for (size_t i = 0; i < sizeof a; i++) a[i] = (uint8_t)kt_int(&r, 0, 255);
    for (size_t i = 0; i < sizeof b; i++) b[i] = (uint8_t)kt_int(&r, 0, 255);
    uint8_t az = a_u8 ? 130 : (uint8_t)(int8_t)-3;
    uint8_t bz = 121, yz = 100;
    float as = 0.02f, bs = 0.004f, ys = 0.25f;
    int adt = a_u8 ? OPT_DT_UINT8 : OPT_DT_INT8;
    kt_operand in[8] = {
        {"a", adt, 4, {D0, D1, M, K}, a, false},
        {"as", OPT_DT_FLOAT, 0, {0}, &as, true},
        {"az", adt, 0, {0}, &az, true},
        {"b", OPT_DT_UINT8, 4, {1, D1, K, N}, b, false},
        {"bs", OPT_DT_FLOAT, 0, {0}, &bs, true},
        {"bz", OPT_DT_UINT8, 0, {0}, &bz, true},
        {"ys", OPT_DT_FLOAT, 0, {0}, &ys, true},
        {"yz", OPT_DT_UINT8, 0, {0}, &yz, true},
    };
    int odt = OPT_DT_UINT8;
    opt_model *m = kt_model("QLinearMatMul", 10, in, 8, &odt, 1);
    int32_t lo, hi;
    kt_clamp(m, clamp, 0, 255, &lo, &hi);
    opt_array y = {0};
    kt_run(m, 2, in, 8, &y, 1);
    cr_assert(y.ndim == 4 && y.dims[0] == D0 && y.dims[1] == D1 && y.dims[2] == M && y.dims[3] == N);
    const uint8_t *yv = y.data;
    int32_t azv = a_u8 ? az : (int8_t)az;
    for (int t = 0; t < D0 * D1; t++)
        for (int i = 0; i < M; i++)
            for (int n = 0; n < N; n++) {
                int32_t acc = 0;
                for (int k = 0; k < K; k++) {
                    uint8_t av = a[(t * M + i) * K + k];
                    acc += ((a_u8 ? av : (int8_t)av) - azv) * (b[((t % D1) * K + k) * N + n] - bz);
                }
                uint8_t want = (uint8_t)ort_requant(acc, as * bs / ys, yz, lo, hi);
                cr_assert_eq(yv[(t * M + i) * N + n], want, "%s A, batch %d: y[%d,%d] = %d, want %d",
                             a_u8 ? "uint8" : "int8", t, i, n, yv[(t * M + i) * N + n], want);
            }
    opt_array_free(&y);
    opt_model_free(m);
}

Test(qlinearmatmul, batched_activation_operands_equal_the_integer_reference)
{
    const int32_t clamp[2] = {90, 200};
    for (int u8 = 0; u8 < 2; u8++) {
        qlmm_batched_case(NULL, u8);
        qlmm_batched_case(clamp, u8);
    }
}

/* Many exact .5 ties, a length that leaves a partial last vector, and NaN (the zero point),
 * infinities, huge, tiny and negative zero values. */
Test(quantize_linear, per_tensor_loop_equals_the_onnx_formula)
{
    enum { n = 40007 };
    static float x[n];
    kt_rng r = {3};
    for (int i = 0; i < n; i++) x[i] = (float)kt_int(&r, -4000, 4000) * 0.0625f;
    const float odd[] = {NAN, INFINITY, -INFINITY, 3e38f, -3e38f, 1e-30f, -1e-30f, -0.0f, 1e9f};
    for (int i = 0; i < (int)(sizeof odd / sizeof odd[0]); i++) x[100 + 37 * i] = x[n - 1 - i] = odd[i];
    float s = 0.125f;
    for (int sg = 0; sg < 2; sg++) {
        uint8_t zu = 100;
        int8_t zs = -7;
        kt_operand in[3] = {
            {"x", OPT_DT_FLOAT, 1, {n}, x, false},
            {"s", OPT_DT_FLOAT, 0, {0}, &s, true},
            {"z", sg ? OPT_DT_INT8 : OPT_DT_UINT8, 0, {0}, sg ? (void *)&zs : (void *)&zu, true},
        };
        int odt = sg ? OPT_DT_INT8 : OPT_DT_UINT8;
        opt_model *m = kt_model("QuantizeLinear", 13, in, 3, &odt, 1);
        opt_array y = {0};
        kt_run(m, 2, in, 3, &y, 1);
        for (int i = 0; i < n; i++) {
            float q = x[i] / s, v = (q == q ? nearbyintf(q) : 0.0f) + (sg ? zs : zu);
            float lo = sg ? -128 : 0, hi = sg ? 127 : 255;
            v = v < lo ? lo : v > hi ? hi : v;
            int got = sg ? ((int8_t *)y.data)[i] : ((uint8_t *)y.data)[i];
            cr_assert_eq(got, (int)v, "x %g: %d, want %d", x[i], got, (int)v);
        }
        opt_array_free(&y);
        /* and back: DequantizeLinear gives (q - z) * s */
        opt_model_free(m);
    }
}

Test(dequantize_linear, per_tensor_loop_equals_the_onnx_formula)
{
    static uint8_t q[300];
    for (int i = 0; i < 300; i++) q[i] = (uint8_t)(i * 7);
    float s = 0.37f;
    int8_t z = -3;
    kt_operand in[3] = {
        {"q", OPT_DT_INT8, 1, {300}, q, false},
        {"s", OPT_DT_FLOAT, 0, {0}, &s, true},
        {"z", OPT_DT_INT8, 0, {0}, &z, true},
    };
    int odt = OPT_DT_FLOAT;
    opt_model *m = kt_model("DequantizeLinear", 13, in, 3, &odt, 1);
    opt_array y = {0};
    kt_run(m, 1, in, 3, &y, 1);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(((float *)y.data)[i], (float)((int8_t)q[i] - z) * s, "element %d", i);
    opt_array_free(&y);
    opt_model_free(m);
}

typedef struct qadd_spec {
    bool s8a, s8b, s8y, bfull; /* int8 instead of uint8; B [R, C] instead of [C] */
    int R, C;
    const uint8_t *a, *b;
    float as, bs, cs;
    uint8_t az, bz, cz;
} qadd_spec;

/* One QLinearAdd of A [R, C] and B ([C], broadcast along rows, or [R, C]) against the formula in
 * float32 (a division by the output scale, as QuantizeLinear does), element by element. */
static void qadd_check(const qadd_spec *q, const int32_t *clamp)
{
    const int R = q->R, C = q->C;
    float as = q->as, bs = q->bs, cs = q->cs;
    uint8_t az = q->az, bz = q->bz, cz = q->cz;
    int ta = q->s8a ? OPT_DT_INT8 : OPT_DT_UINT8, tb = q->s8b ? OPT_DT_INT8 : OPT_DT_UINT8;
    int ty = q->s8y ? OPT_DT_INT8 : OPT_DT_UINT8;
    kt_operand in[8] = {
        {"a", ta, 2, {R, C}, (void *)q->a, false},
        {"as", OPT_DT_FLOAT, 0, {0}, &as, true},
        {"az", ta, 0, {0}, &az, true},
        {"b", tb, q->bfull ? 2 : 1, {q->bfull ? R : C, C}, (void *)q->b, true},
        {"bs", OPT_DT_FLOAT, 0, {0}, &bs, true},
        {"bz", tb, 0, {0}, &bz, true},
        {"cs", OPT_DT_FLOAT, 0, {0}, &cs, true},
        {"cz", ty, 0, {0}, &cz, true},
    };
    int odt = ty;
    opt_model *m = kt_model("QLinearAdd", 13, in, 8, &odt, 1);
    free(m->graph->nodes[0]->domain);
    m->graph->nodes[0]->domain = opt_strdup("com.microsoft");
    m->opset_import = realloc(m->opset_import, 2 * sizeof *m->opset_import);
    memset(&m->opset_import[1], 0, sizeof m->opset_import[1]);
    m->opset_import[1].domain = opt_strdup("com.microsoft");
    m->opset_import[1].has_version = true;
    m->opset_import[1].version = 1;
    m->n_opset_import = 2;
    int32_t ilo, ihi;
    kt_clamp(m, clamp, q->s8y ? -128 : 0, q->s8y ? 127 : 255, &ilo, &ihi);
    opt_array y = {0};
    kt_run(m, 2, in, 8, &y, 1);
    cr_assert_eq(opt_array_numel(&y), (uint64_t)R * (uint64_t)C);
    int azi = q->s8a ? (int8_t)az : az, bzi = q->s8b ? (int8_t)bz : bz, czi = q->s8y ? (int8_t)cz : cz;
    float lo = (float)ilo, hi = (float)ihi;
    for (int i = 0; i < R * C; i++) {
        uint8_t ab = q->a[i], bb = q->bfull ? q->b[i] : q->b[i % C];
        int ai = q->s8a ? (int8_t)ab : ab, bi = q->s8b ? (int8_t)bb : bb;
        volatile float fa = (float)(ai - azi) * as, fb = (float)(bi - bzi) * bs;
        volatile float x = fa + fb;
        volatile float quo = x / cs;
        float v = nearbyintf(quo) + (float)czi;
        v = v < lo ? lo : v > hi ? hi : v;
        uint8_t want = q->s8y ? (uint8_t)(int8_t)v : (uint8_t)v;
        if (((uint8_t *)y.data)[i] != want)
            cr_assert_fail("a %s, b %s%s, y %s, scales %a %a %a, zero points %d %d %d: element %d (a %d, "
                           "b %d): %d, want %d",
                           q->s8a ? "int8" : "uint8", q->s8b ? "int8" : "uint8", q->bfull ? "" : " (broadcast)",
                           q->s8y ? "int8" : "uint8", as, bs, cs, azi, bzi, czi, i, ai, bi,
                           q->s8y ? (int8_t)((uint8_t *)y.data)[i] : ((uint8_t *)y.data)[i],
                           q->s8y ? (int8_t)want : want);
    }
    opt_array_free(&y);
    opt_model_free(m);
}

/* Rows of 45 and R * C = 1665 elements: 16-lane loops with a tail, contiguous runs of both
 * lengths (64-element steps on the full B). */
static void qadd_case(bool s8a, bool s8b, bool s8y, bool bfull, unsigned seed, const int32_t *clamp)
{
    enum { R = 37, C = 45 };
    static uint8_t a[R * C], b[R * C];
    kt_rng r = {seed};
    for (int i = 0; i < R * C; i++) a[i] = (uint8_t)kt_int(&r, 0, 255), b[i] = (uint8_t)kt_int(&r, 0, 255);
    qadd_spec q = {s8a, s8b, s8y, bfull, R, C, a, b, 0.05f, 0.11f, 0.07f,
                   s8a ? (uint8_t)(int8_t)-7 : 120, s8b ? (uint8_t)(int8_t)-4 : 131, s8y ? (uint8_t)(int8_t)-3 : 3};
    qadd_check(&q, clamp);
}

/* Every (a, b) pair, 65,536 elements, under 300 random sets of scales and zero points: the
 * vector path divides by multiply-adds (Markstein's correctly rounded quotient), which must give
 * the division's bytes. Scales log-uniform over [2^-40, 2^40] (the range the vector path takes),
 * and, where the test is sharpest, output scales near the inputs' so most results land inside
 * the output range and many near a rounding tie. */
Test(qlinear_add, vector_division_equals_division_for_every_pair)
{
    static uint8_t a[65536], b[65536];
    for (int i = 0; i < 65536; i++) a[i] = (uint8_t)i, b[i] = (uint8_t)(i >> 8);
    kt_rng r = {99};
    for (int t = 0; t < 300; t++) {
        bool wide = t % 3 == 0;
        float base = ldexpf(1.0f, (int)kt_int(&r, wide ? -40 : -14, wide ? 39 : 4));
        float as = base * (float)(1.0 + kt_int(&r, 0, 1 << 20) / (double)(1 << 20));
        float bs = (wide ? ldexpf(1.0f, (int)kt_int(&r, -40, 39)) : base) * (float)(1.0 + kt_int(&r, 0, 1 << 20) / (double)(1 << 20));
        float cs = (wide ? ldexpf(1.0f, (int)kt_int(&r, -40, 39)) : base * 2) * (float)(1.0 + kt_int(&r, 0, 1 << 20) / (double)(1 << 20));
        qadd_spec q = {t & 1, (t >> 1) & 1, (t >> 2) & 1, true, 256, 256, a, b, as, bs, cs,
                       (uint8_t)kt_int(&r, 0, 255), (uint8_t)kt_int(&r, 0, 255), (uint8_t)kt_int(&r, 0, 255)};
        qadd_check(&q, NULL);
    }
}

Test(qlinear_add, equals_dequantize_add_quantize_in_float_with_broadcasting)
{
    qadd_case(false, true, false, false, 11, NULL);
    qadd_case(true, false, true, true, 12, NULL);
    qadd_case(false, false, false, true, 13, NULL);
    qadd_case(true, true, false, false, 14, NULL);
}

/* A Relu or Clip absorbed into the integer op at load (qdq_fuse.c: symmetric int8 activations,
 * or a Clip tighter than the quantized range) clamps the output to [Q(lo), Q(hi)]: every kernel
 * path applies it (the depthwise kernel on long and short rows, the GEMM's fused-tile and row
 * epilogues, few-image Gemm rows, QLinearMatMul, QLinearAdd's scalar and vector loops). */
Test(qlinear, an_absorbed_activation_clamps_every_kernel_path)
{
    const int32_t s8[2] = {-10, 40}, s8zero[2] = {0, 127}, u8[2] = {125, 200};
    /*                  N  C mult H   W KH KW sh sw dh dw pt pl pb pr  s8x   qlinear wzp */
    const dw_spec dw[] = {
        {2, 5, 1, 6, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, true, false}, /* long rows */
        {2, 4, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true, true, false},   /* 2 rows per vector */
        {1, 4, 1, 5, 21, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1, false, true, true},  /* weight zero points: GEMM */
    };
    const int32_t dwc[2] = {-2, 60};
    dw_case(&dw[0], 400, u8);
    dw_case(&dw[1], 401, dwc);
    dw_case(&dw[2], 402, u8);
    qlconv_case(5, 9, 1, 403, s8);   /* row pieces */
    qlconv_case(8, 9, 1, 404, s8zero); /* channels-last */
    gemm_as_conv_case(61, false, false, 405, u8); /* images as panel columns */
    gemm_as_conv_case(3, true, true, 406, u8);    /* images as rows */
    qlmm_case(u8);
    qadd_case(false, true, false, false, 407, u8);
    qadd_case(true, false, true, true, 408, s8);
}
