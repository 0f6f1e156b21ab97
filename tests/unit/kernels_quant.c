/*
 * tests/unit/kernels_quant.c — the quantization kernels compute with integers: the integer GEMM
 * equals its reference exactly, QLinearConv (int8 weights per output channel, uint8
 * activations, groups, pads) equals an integer reference exactly, and QuantizeLinear rounds half
 * to even and saturates.
 */
#include "libopt/exec/cpu/nn.h"
#include "tests/unit/kernels_util.h"

Test(igemm, blocked_kernel_equals_reference_exactly)
{
    kt_rng r = {99};
    for (int t = 0; t < 20; t++) {
        int64_t M = kt_int(&r, 1, 9), N = kt_int(&r, 1, 600), K = kt_int(&r, 1, 70);
        int16_t *a = malloc((size_t)(M * K) * 2), *b = malloc((size_t)(K * N) * 2);
        int32_t *c = malloc((size_t)(M * N) * 4), *cr = malloc((size_t)(M * N) * 4);
        for (int64_t i = 0; i < M * K; i++) a[i] = (int16_t)kt_int(&r, -255, 255);
        for (int64_t i = 0; i < K * N; i++) b[i] = (int16_t)kt_int(&r, -255, 255);
        nn_igemm(M, N, K, a, K, b, N, c, N);
        nn_igemm_ref(M, N, K, a, K, b, N, cr, N);
        cr_assert_arr_eq(c, cr, (size_t)(M * N) * 4, "trial %d", t);
        free(a), free(b), free(c), free(cr);
    }
}

Test(qlinearconv, int8_per_channel_equals_integer_reference_exactly)
{
    kt_rng r = {2024};
    enum { N = 2, C = 4, H = 7, W = 6, M = 6, G = 2, KH = 3, KW = 2, Cg = C / G, Mg = M / G };
    const int OH = (H + 1 + 1 - KH) / 1 + 1, OW = (W + 0 + 1 - KW) / 2 + 1;
    static uint8_t x[N * C * H * W];
    static int8_t w[M * Cg * KH * KW];
    int8_t wzp[M];
    float wsc[M];
    int32_t bias[M];
    for (size_t i = 0; i < sizeof x; i++) x[i] = (uint8_t)kt_int(&r, 0, 255);
    for (size_t i = 0; i < sizeof w; i++) w[i] = (int8_t)kt_int(&r, -128, 127);
    for (int m = 0; m < M; m++) {
        wzp[m] = 0; /* ONNX allows only zero weight zero points per channel for int8 */
        wsc[m] = 0.001f * (float)(m + 1);
        bias[m] = (int32_t)kt_int(&r, -5000, 5000);
    }
    uint8_t xzp = 131, yzp = 120;
    float xsc = 0.02f, ysc = 0.05f;
    kt_operand in[9] = {
        {"x", OPT_DT_UINT8, 4, {N, C, H, W}, x, false},
        {"xs", OPT_DT_FLOAT, 0, {0}, &xsc, true},
        {"xz", OPT_DT_UINT8, 0, {0}, &xzp, true},
        {"w", OPT_DT_INT8, 4, {M, Cg, KH, KW}, w, true},
        {"ws", OPT_DT_FLOAT, 1, {M}, wsc, true},
        {"wz", OPT_DT_INT8, 1, {M}, wzp, true},
        {"ys", OPT_DT_FLOAT, 0, {0}, &ysc, true},
        {"yz", OPT_DT_UINT8, 0, {0}, &yzp, true},
        {"b", OPT_DT_INT32, 1, {M}, bias, true},
    };
    int odt = OPT_DT_UINT8;
    opt_model *m = kt_model("QLinearConv", 10, in, 9, &odt, 1);
    kt_attr_int(m, "group", G);
    kt_attr_ints(m, "pads", (int64_t[]){1, 0, 1, 1}, 4);
    kt_attr_ints(m, "strides", (int64_t[]){1, 2}, 2);
    opt_array y = {0};
    kt_run(m, 2, in, 9, &y, 1);
    cr_assert_eq(y.dtype, OPT_DT_UINT8);
    cr_assert_eq(opt_array_numel(&y), (uint64_t)(N * M * OH * OW));
    const uint8_t *yv = y.data;
    for (int n = 0; n < N; n++)
        for (int mo = 0; mo < M; mo++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    int g = mo / Mg;
                    int32_t acc = bias[mo];
                    for (int c = 0; c < Cg; c++)
                        for (int kh = 0; kh < KH; kh++)
                            for (int kw = 0; kw < KW; kw++) {
                                int ih = oh - 1 + kh, iw = ow * 2 + kw;
                                int32_t xv = ih < 0 || ih >= H || iw >= W
                                                 ? 0
                                                 : x[((n * C + g * Cg + c) * H + ih) * W + iw] - xzp;
                                acc += xv * (w[((mo * Cg + c) * KH + kh) * KW + kw] - wzp[mo]);
                            }
                    float mult = xsc * wsc[mo] / ysc;
                    double v = nearbyint((double)acc * mult + yzp);
                    uint8_t want = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                    uint8_t got = yv[((n * M + mo) * OH + oh) * OW + ow];
                    cr_assert_eq(got, want, "y[%d,%d,%d,%d] = %d, want %d", n, mo, oh, ow, got, want);
                }
    opt_array_free(&y);
    opt_model_free(m);
}

Test(quantize_linear, rounds_half_to_even_and_saturates_per_axis)
{
    float x[6] = {0.5f, 1.5f, 2.5f, -300.0f, 1000.0f, -0.5f};
    float sc[2] = {1.0f, 2.0f};
    int8_t zp[2] = {0, 1};
    kt_operand in[3] = {
        {"x", OPT_DT_FLOAT, 2, {2, 3}, x, false},
        {"s", OPT_DT_FLOAT, 1, {2}, sc, true},
        {"z", OPT_DT_INT8, 1, {2}, zp, true},
    };
    int odt = OPT_DT_INT8;
    opt_model *m = kt_model("QuantizeLinear", 13, in, 3, &odt, 1);
    kt_attr_int(m, "axis", 0);
    opt_array y = {0};
    kt_run(m, 1, in, 3, &y, 1);
    cr_assert_eq(y.dtype, OPT_DT_INT8);
    const int8_t *v = y.data;
    /* row 0, scale 1: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; row 1, scale 2, zp 1: -150 -> -128 (sat),
     * 500 -> 127 (sat), -0.25 -> -0 + 1 = 1 */
    int8_t want[6] = {0, 2, 2, -128, 127, 1};
    cr_assert_arr_eq(v, want, 6);
    opt_array_free(&y);
    opt_model_free(m);
}

Test(matmul_integer, per_row_and_per_column_zero_points_are_subtracted)
{
    uint8_t a[2 * 3] = {10, 20, 30, 40, 50, 60};
    uint8_t b[3 * 2] = {1, 2, 3, 4, 5, 6};
    uint8_t az[2] = {10, 40}, bz[2] = {1, 2};
    kt_operand in[4] = {
        {"a", OPT_DT_UINT8, 2, {2, 3}, a, false},
        {"b", OPT_DT_UINT8, 2, {3, 2}, b, true},
        {"az", OPT_DT_UINT8, 1, {2}, az, true},
        {"bz", OPT_DT_UINT8, 1, {2}, bz, true},
    };
    int odt = OPT_DT_INT32;
    opt_model *m = kt_model("MatMulInteger", 10, in, 4, &odt, 1);
    opt_array y = {0};
    kt_run(m, 1, in, 4, &y, 1);
    /* A - az = [[0,10,20],[0,10,20]]; B - bz = [[0,0],[2,2],[4,4]] -> [[100,100],[100,100]] */
    int32_t want[4] = {100, 100, 100, 100};
    cr_assert_arr_eq(y.data, want, sizeof want);
    opt_array_free(&y);
    opt_model_free(m);
}
