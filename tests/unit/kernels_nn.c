/*
 * tests/unit/kernels_nn.c — Gemm/MatMul, pools, normalisations and Resize through the executor,
 * against naive loops written here (KT_F32_REL) or exact expectations.
 */
#include "libopt/exec/cpu/nn.h"
#include "tests/unit/kernels_util.h"

/* MatMul with numpy broadcasting: A [2,1,3,4] x B [3,4,5] -> [2,3,3,5]; also 1-D operands. */
Test(matmul, batch_broadcasting_and_1d_operands_match_naive_loops)
{
    kt_rng r = {11};
    float *a = kt_randf(&r, 2 * 3 * 4), *b = kt_randf(&r, 3 * 4 * 5);
    kt_operand in[2] = {
        {"a", OPT_DT_FLOAT, 4, {2, 1, 3, 4}, a, false},
        {"b", OPT_DT_FLOAT, 3, {3, 4, 5}, b, false},
    };
    int odt = OPT_DT_FLOAT;
    opt_model *m = kt_model("MatMul", 13, in, 2, &odt, 1);
    opt_array y = {0};
    kt_run(m, 2, in, 2, &y, 1);
    cr_assert_eq(y.ndim, 4);
    cr_assert(y.dims[0] == 2 && y.dims[1] == 3 && y.dims[2] == 3 && y.dims[3] == 5);
    float want[2 * 3 * 3 * 5];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int p = 0; p < 3; p++)
                for (int q = 0; q < 5; q++) {
                    double s = 0;
                    for (int t = 0; t < 4; t++) s += (double)a[(i * 3 + p) * 4 + t] * b[(j * 4 + t) * 5 + q];
                    want[((i * 3 + j) * 3 + p) * 5 + q] = (float)s;
                }
    cr_assert_leq(kt_max_rel(y.data, want, sizeof want / 4), KT_F32_REL);
    opt_array_free(&y);
    opt_model_free(m);

    /* [4] x [3, 4, 5] -> [3, 5] */
    kt_operand in1[2] = {
        {"a", OPT_DT_FLOAT, 1, {4}, a, false},
        {"b", OPT_DT_FLOAT, 3, {3, 4, 5}, b, false},
    };
    m = kt_model("MatMul", 13, in1, 2, &odt, 1);
    kt_run(m, 1, in1, 2, &y, 1);
    cr_assert(y.ndim == 2 && y.dims[0] == 3 && y.dims[1] == 5);
    for (int j = 0; j < 3; j++)
        for (int q = 0; q < 5; q++) {
            double s = 0;
            for (int t = 0; t < 4; t++) s += (double)a[t] * b[(j * 4 + t) * 5 + q];
            cr_assert_float_eq(((float *)y.data)[j * 5 + q], (float)s, 1e-5);
        }
    opt_array_free(&y);
    opt_model_free(m);
    free(a), free(b);
}

/* Runs m's one input x with opts o; returns the output. */
static opt_array run_opts(const opt_model *m, opt_exec_opts o, const opt_array *x)
{
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "load: %s", err.msg);
    opt_array y = {0};
    cr_assert_eq(opt_exec_run(e, x, 1, &y, 1, &err), OPT_OK, "run: %s", err.msg);
    opt_exec_free(e);
    return y;
}

/* no_prepack (calibration of big models): constant weights read where the model keeps them and
 * packed in every run give the bits that weights packed at load give, for MatMul and for Gemm
 * with and without transB (transposed weights are still packed at load), on 1 and 2 threads
 * and over several column panels and row blocks. */
Test(matmul, weights_packed_per_run_equal_weights_packed_at_load)
{
    const int64_t M = 45, K = 70, N = 100;
    kt_rng r = {21};
    float *a = kt_randf(&r, M * K), *b = kt_randf(&r, K * N);
    opt_array x = {.dtype = OPT_DT_FLOAT, .ndim = 2, .dims = {M, K}, .data = a, .nbytes = M * K * 4};
    for (int v = 0; v < 3; v++) {
        bool tb = v == 2;
        kt_operand in[2] = {
            {"a", OPT_DT_FLOAT, 2, {M, K}, a, false},
            {"b", OPT_DT_FLOAT, 2, {tb ? N : K, tb ? K : N}, b, true},
        };
        int odt = OPT_DT_FLOAT;
        opt_model *m = kt_model(v == 0 ? "MatMul" : "Gemm", 13, in, 2, &odt, 1);
        if (tb) kt_attr_int(m, "transB", 1);
        opt_array y0 = run_opts(m, (opt_exec_opts){.threads = 1}, &x);
        cr_assert(y0.ndim == 2 && y0.dims[0] == M && y0.dims[1] == N);
        double worst = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t t = 0; t < K; t++) s += (double)a[i * K + t] * b[tb ? j * K + t : t * N + j];
                double d = fabs(((float *)y0.data)[i * N + j] - s) / (fabs(s) + 1);
                if (d > worst) worst = d;
            }
        cr_assert_leq(worst, KT_F32_REL, "variant %d", v);
        for (int th = 1; th <= 2; th++) {
            opt_array y1 = run_opts(m, (opt_exec_opts){.threads = th, .no_prepack = true}, &x);
            cr_assert(y1.nbytes == y0.nbytes && memcmp(y1.data, y0.data, y0.nbytes) == 0,
                      "variant %d, %d threads: packed per run differs from packed at load", v, th);
            opt_array_free(&y1);
        }
        opt_array_free(&y0);
        opt_model_free(m);
    }
    free(a), free(b);
}

Test(gemm, transposes_alpha_beta_and_column_bias_match_naive_loops)
{
    kt_rng r = {12};
    float *a = kt_randf(&r, 4 * 3), *b = kt_randf(&r, 5 * 4), *c = kt_randf(&r, 3);
    /* A stored [K=4, M=3] (transA), B stored [N=5, K=4] (transB), C [M=3, 1]. */
    kt_operand in[3] = {
        {"a", OPT_DT_FLOAT, 2, {4, 3}, a, false},
        {"b", OPT_DT_FLOAT, 2, {5, 4}, b, true},
        {"c", OPT_DT_FLOAT, 2, {3, 1}, c, true},
    };
    int odt = OPT_DT_FLOAT;
    opt_model *m = kt_model("Gemm", 13, in, 3, &odt, 1);
    kt_attr_int(m, "transA", 1);
    kt_attr_int(m, "transB", 1);
    kt_attr_float(m, "alpha", 0.5f);
    kt_attr_float(m, "beta", 2.0f);
    opt_array y = {0};
    kt_run(m, 1, in, 3, &y, 1);
    cr_assert(y.ndim == 2 && y.dims[0] == 3 && y.dims[1] == 5);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) {
            double s = 0;
            for (int t = 0; t < 4; t++) s += (double)a[t * 3 + i] * b[j * 4 + t];
            cr_assert_float_eq(((float *)y.data)[i * 5 + j], (float)(0.5 * s + 2.0 * c[i]), 1e-5);
        }
    opt_array_free(&y);
    opt_model_free(m);
    free(a), free(b), free(c);
}

/* The 2-D pooling loop and the N-D one agree: the same pooling as 2-D and as 3-D with a unit
 * leading spatial dim. */
static void pool_2d_vs_3d(const char *op, bool include_pad)
{
    kt_rng r = {13};
    float *x = kt_randf(&r, 2 * 3 * 9 * 8);
    int odt = OPT_DT_FLOAT;
    kt_operand in2 = {"x", OPT_DT_FLOAT, 4, {2, 3, 9, 8}, x, false};
    kt_operand in3 = {"x", OPT_DT_FLOAT, 5, {2, 3, 1, 9, 8}, x, false};
    opt_model *m2 = kt_model(op, 19, &in2, 1, &odt, 1);
    opt_model *m3 = kt_model(op, 19, &in3, 1, &odt, 1);
    kt_attr_ints(m2, "kernel_shape", (int64_t[]){3, 2}, 2);
    kt_attr_ints(m3, "kernel_shape", (int64_t[]){1, 3, 2}, 3);
    kt_attr_ints(m2, "strides", (int64_t[]){2, 3}, 2);
    kt_attr_ints(m3, "strides", (int64_t[]){1, 2, 3}, 3);
    kt_attr_ints(m2, "pads", (int64_t[]){1, 0, 1, 1}, 4);
    kt_attr_ints(m3, "pads", (int64_t[]){0, 1, 0, 0, 1, 1}, 6);
    kt_attr_ints(m2, "dilations", (int64_t[]){2, 1}, 2);
    kt_attr_ints(m3, "dilations", (int64_t[]){1, 2, 1}, 3);
    kt_attr_int(m2, "ceil_mode", 1);
    kt_attr_int(m3, "ceil_mode", 1);
    if (include_pad) {
        kt_attr_int(m2, "count_include_pad", 1);
        kt_attr_int(m3, "count_include_pad", 1);
    }
    opt_array y2 = {0}, y3 = {0};
    kt_run(m2, 1, &in2, 1, &y2, 1);
    kt_run(m3, 2, &in3, 1, &y3, 1);
    cr_assert_eq(opt_array_numel(&y2), opt_array_numel(&y3));
    cr_assert_eq(y3.dims[2], 1);
    cr_assert_leq(kt_max_rel(y2.data, y3.data, opt_array_numel(&y2)), 1e-6, "%s", op);
    opt_array_free(&y2), opt_array_free(&y3);
    opt_model_free(m2), opt_model_free(m3);
    free(x);
}

/* MaxPool's vector rows (2-D, strides 1 and 2, rows wider than a vector) give exactly what the
 * N-D loop gives: the same pooling as 2-D and as 3-D with a unit leading spatial dim. */
Test(pool, max_pool_vector_rows_are_bit_identical_to_the_n_d_loop)
{
    kt_rng r = {17};
    const int64_t cases[][7] = {/* H, W, k, stride, pad, dil, ceil */
                                {9, 45, 3, 2, 1, 1, 0}, {8, 50, 3, 1, 1, 1, 0}, {7, 37, 2, 2, 0, 1, 1},
                                {6, 40, 3, 2, 1, 2, 1}, {5, 112, 3, 2, 1, 1, 0}, {4, 17, 5, 1, 2, 1, 0}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t H = cases[t][0], W = cases[t][1], k = cases[t][2], st = cases[t][3];
        int64_t pd = cases[t][4], dl = cases[t][5];
        float *x = kt_randf(&r, (size_t)(2 * 3 * H * W));
        int odt = OPT_DT_FLOAT;
        kt_operand in2 = {"x", OPT_DT_FLOAT, 4, {2, 3, H, W}, x, false};
        kt_operand in3 = {"x", OPT_DT_FLOAT, 5, {2, 3, 1, H, W}, x, false};
        opt_model *m2 = kt_model("MaxPool", 12, &in2, 1, &odt, 1);
        opt_model *m3 = kt_model("MaxPool", 12, &in3, 1, &odt, 1);
        kt_attr_ints(m2, "kernel_shape", (int64_t[]){k, k}, 2);
        kt_attr_ints(m3, "kernel_shape", (int64_t[]){1, k, k}, 3);
        kt_attr_ints(m2, "strides", (int64_t[]){st, st}, 2);
        kt_attr_ints(m3, "strides", (int64_t[]){1, st, st}, 3);
        kt_attr_ints(m2, "pads", (int64_t[]){pd, pd, pd, pd}, 4);
        kt_attr_ints(m3, "pads", (int64_t[]){0, pd, pd, 0, pd, pd}, 6);
        kt_attr_ints(m2, "dilations", (int64_t[]){dl, dl}, 2);
        kt_attr_ints(m3, "dilations", (int64_t[]){1, dl, dl}, 3);
        kt_attr_int(m2, "ceil_mode", cases[t][6]);
        kt_attr_int(m3, "ceil_mode", cases[t][6]);
        opt_array y2 = {0}, y3 = {0};
        kt_run(m2, 2, &in2, 1, &y2, 1);
        kt_run(m3, 1, &in3, 1, &y3, 1);
        cr_assert_eq(y2.nbytes, y3.nbytes, "case %zu", t);
        cr_assert_eq(memcmp(y2.data, y3.data, y2.nbytes), 0, "case %zu", t);
        opt_array_free(&y2), opt_array_free(&y3);
        opt_model_free(m2), opt_model_free(m3);
        free(x);
    }
}

/* 2x2 windows with stride 2 and no pads (their own AVX-512 kernel, which runs an even-height
 * batch as one tall plane) give the running maximum m = v > m ? v : m over the taps in row-major
 * order, from m = -inf, bit for bit: NaN taps skipped, the first of +0 and -0 kept, -inf and
 * +inf as values. Even and odd heights and widths (floor mode drops the last row or column),
 * rows of 4 to 40 outputs, 1 and 2 threads (planes split between them). */
Test(pool, max_pool_2x2_stride_2_is_the_running_maximum_bit_for_bit)
{
    kt_rng r = {23};
    const int64_t cases[][2] = {{8, 8}, {24, 24}, {7, 45}, {6, 66}, {5, 9}, {12, 80}};
    const float special[] = {NAN, 0.0f, -0.0f, -INFINITY, INFINITY};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t H = cases[t][0], W = cases[t][1], P = 2 * 3, OH = H / 2, OW = W / 2;
        float *x = kt_randf(&r, (size_t)(P * H * W));
        for (int64_t i = 0; i < P * H * W; i++) {
            int64_t u = kt_int(&r, 0, 15);
            if (u < 5) x[i] = special[u];
            else if (u < 9) x[i] = u % 2 ? 0.0f : -0.0f; /* ties between signed zeros */
        }
        float *want = malloc((size_t)(P * OH * OW) * sizeof *want);
        for (int64_t p = 0; p < P; p++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    float m = -INFINITY;
                    for (int64_t a = 0; a < 2; a++)
                        for (int64_t b = 0; b < 2; b++) {
                            float v = x[(p * H + 2 * oh + a) * W + 2 * ow + b];
                            m = v > m ? v : m;
                        }
                    want[(p * OH + oh) * OW + ow] = m;
                }
        int odt = OPT_DT_FLOAT;
        kt_operand in = {"x", OPT_DT_FLOAT, 4, {2, 3, H, W}, x, false};
        for (int th = 1; th <= 2; th++) {
            opt_model *m = kt_model("MaxPool", 12, &in, 1, &odt, 1);
            kt_attr_ints(m, "kernel_shape", (int64_t[]){2, 2}, 2);
            kt_attr_ints(m, "strides", (int64_t[]){2, 2}, 2);
            opt_array y = {0};
            kt_run(m, th, &in, 1, &y, 1);
            cr_assert_eq(opt_array_numel(&y), P * OH * OW, "case %zu", t);
            cr_assert_eq(memcmp(y.data, want, y.nbytes), 0, "case %zu (%lld x %lld), %d threads", t,
                         (long long)H, (long long)W, th);
            opt_array_free(&y);
            opt_model_free(m);
        }
        free(want);
        free(x);
    }
}

/* int8/uint8 MaxPool (run on the bytes where the CPU has AVX-512 VBMI) gives exactly the float
 * MaxPool of the same values: strides 1 and 2, rows of one, two and three vectors, pads,
 * dilations, ceil_mode, 1-D; byte extremes included. */
Test(pool, max_pool_on_bytes_equals_the_float_pool_of_the_same_values)
{
    kt_rng r = {23};
    const int64_t cases[][7] = {/* H, W, k, stride, pad, dil, ceil; H 0: 1-D */
                                {9, 45, 3, 2, 1, 1, 0},  {8, 130, 3, 1, 1, 1, 0}, {7, 37, 2, 2, 0, 1, 1},
                                {6, 200, 3, 2, 1, 2, 1}, {5, 112, 3, 2, 1, 1, 0}, {4, 17, 5, 1, 2, 1, 0},
                                {0, 150, 3, 2, 1, 1, 1}, {7, 64, 3, 1, 0, 3, 0}};
    for (int sgn = 0; sgn < 2; sgn++)
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
            int64_t H = cases[t][0], W = cases[t][1], k = cases[t][2], st = cases[t][3];
            int64_t pd = cases[t][4], dl = cases[t][5];
            int sp = H ? 2 : 1;
            size_t n = (size_t)(2 * 3 * (H ? H : 1) * W);
            uint8_t *b = malloc(n);
            float *f = malloc(n * sizeof *f);
            for (size_t i = 0; i < n; i++) {
                b[i] = i % 17 == 0 ? (uint8_t)(sgn ? 0x80 : 0) : i % 19 == 0 ? (uint8_t)(sgn ? 0x7f : 0xff)
                                                                      : (uint8_t)kt_int(&r, 0, 255);
                f[i] = sgn ? (float)(int8_t)b[i] : (float)b[i];
            }
            int bdt = sgn ? OPT_DT_INT8 : OPT_DT_UINT8, fdt = OPT_DT_FLOAT;
            kt_operand inb = {"x", bdt, 2 + sp, {2, 3, H, W}, b, false};
            kt_operand inf = {"x", fdt, 2 + sp, {2, 3, H, W}, f, false};
            if (!H) inb.dims[2] = inf.dims[2] = W;
            opt_model *mb = kt_model("MaxPool", 12, &inb, 1, &bdt, 1);
            opt_model *mf = kt_model("MaxPool", 12, &inf, 1, &fdt, 1);
            int64_t kk[2] = {k, k}, ss[2] = {st, st}, pp[4] = {pd, pd, pd, pd}, dd[2] = {dl, dl};
            kt_attr_ints(mb, "kernel_shape", kk, sp), kt_attr_ints(mf, "kernel_shape", kk, sp);
            kt_attr_ints(mb, "strides", ss, sp), kt_attr_ints(mf, "strides", ss, sp);
            kt_attr_ints(mb, "pads", pp, 2 * sp), kt_attr_ints(mf, "pads", pp, 2 * sp);
            kt_attr_ints(mb, "dilations", dd, sp), kt_attr_ints(mf, "dilations", dd, sp);
            kt_attr_int(mb, "ceil_mode", cases[t][6]), kt_attr_int(mf, "ceil_mode", cases[t][6]);
            opt_array yb = {0}, yf = {0};
            kt_run(mb, 1, &inb, 1, &yb, 1);
            kt_run(mf, 1, &inf, 1, &yf, 1);
            cr_assert_eq(yb.dtype, bdt);
            uint64_t no = opt_array_numel(&yf);
            cr_assert_eq(opt_array_numel(&yb), no, "case %zu", t);
            for (uint64_t i = 0; i < no; i++) {
                float got = sgn ? (float)((const int8_t *)yb.data)[i] : (float)((const uint8_t *)yb.data)[i];
                cr_assert_eq(got, ((const float *)yf.data)[i], "%s case %zu, output %llu", sgn ? "int8" : "uint8", t,
                             (unsigned long long)i);
            }
            opt_array_free(&yb), opt_array_free(&yf);
            opt_model_free(mb), opt_model_free(mf);
            free(b), free(f);
        }
}

Test(pool, two_d_and_n_d_loops_agree_with_ceil_mode_dilations_and_pads)
{
    pool_2d_vs_3d("MaxPool", false);
    pool_2d_vs_3d("AveragePool", false);
    pool_2d_vs_3d("AveragePool", true);
}

Test(maxpool, indices_point_at_the_maximum_in_both_storage_orders)
{
    kt_rng r = {14};
    enum { N = 2, C = 2, H = 6, W = 5 };
    float *x = kt_randf(&r, N * C * H * W);
    kt_operand in = {"x", OPT_DT_FLOAT, 4, {N, C, H, W}, x, false};
    int odt[2] = {OPT_DT_FLOAT, OPT_DT_INT64};
    for (int order = 0; order < 2; order++) {
        opt_model *m = kt_model("MaxPool", 12, &in, 1, odt, 2);
        kt_attr_ints(m, "kernel_shape", (int64_t[]){2, 2}, 2);
        kt_attr_ints(m, "pads", (int64_t[]){1, 1, 1, 1}, 4);
        kt_attr_int(m, "storage_order", order);
        opt_array y[2] = {{0}};
        kt_run(m, 1, &in, 1, y, 2);
        cr_assert_eq(y[1].dtype, OPT_DT_INT64);
        const float *yv = y[0].data;
        const int64_t *iv = y[1].data;
        for (uint64_t i = 0; i < opt_array_numel(&y[0]); i++) {
            int64_t idx = iv[i], plane = idx / (H * W), rest = idx % (H * W);
            int64_t h = order ? rest % H : rest / W, w = order ? rest / H : rest % W;
            cr_assert_eq(x[plane * H * W + h * W + w], yv[i], "order %d, output %llu", order,
                         (unsigned long long)i);
        }
        opt_array_free(&y[0]), opt_array_free(&y[1]);
        opt_model_free(m);
    }
    free(x);
}

Test(softmax, opset_13_normalises_one_axis_and_opset_11_the_flattened_tail)
{
    kt_rng r = {15};
    float *x = kt_randf(&r, 2 * 3 * 4);
    kt_operand in = {"x", OPT_DT_FLOAT, 3, {2, 3, 4}, x, false};
    int odt = OPT_DT_FLOAT;
    for (int opset = 11; opset <= 13; opset += 2) {
        opt_model *m = kt_model("Softmax", opset, &in, 1, &odt, 1);
        kt_attr_int(m, "axis", 1);
        opt_array y = {0};
        kt_run(m, 1, &in, 1, &y, 1);
        const float *v = y.data;
        if (opset == 13) /* each (i, :, k) column sums to 1 */
            for (int i = 0; i < 2; i++)
                for (int k = 0; k < 4; k++) {
                    double s = 0;
                    for (int j = 0; j < 3; j++) s += v[(i * 3 + j) * 4 + k];
                    cr_assert_float_eq(s, 1.0, 1e-5);
                }
        else /* each batch row of 12 sums to 1 */
            for (int i = 0; i < 2; i++) {
                double s = 0;
                for (int t = 0; t < 12; t++) s += v[i * 12 + t];
                cr_assert_float_eq(s, 1.0, 1e-5);
            }
        opt_array_free(&y);
        opt_model_free(m);
    }
    free(x);
}

Test(layer_normalization, mean_and_inv_std_outputs_describe_each_row)
{
    kt_rng r = {16};
    float *x = kt_randf(&r, 3 * 8), sc[8], bi[8];
    for (int i = 0; i < 8; i++) sc[i] = 1, bi[i] = 0;
    kt_operand in[3] = {
        {"x", OPT_DT_FLOAT, 2, {3, 8}, x, false},
        {"s", OPT_DT_FLOAT, 1, {8}, sc, true},
        {"b", OPT_DT_FLOAT, 1, {8}, bi, true},
    };
    int odt[3] = {OPT_DT_FLOAT, OPT_DT_FLOAT, OPT_DT_FLOAT};
    opt_model *m = kt_model("LayerNormalization", 17, in, 3, odt, 3);
    opt_array y[3] = {{0}};
    kt_run(m, 1, in, 3, y, 3);
    cr_assert(y[1].ndim == 2 && y[1].dims[0] == 3 && y[1].dims[1] == 1);
    for (int rr = 0; rr < 3; rr++) {
        double mean = 0, var = 0;
        for (int i = 0; i < 8; i++) mean += x[rr * 8 + i] / 8.0;
        for (int i = 0; i < 8; i++) var += (x[rr * 8 + i] - mean) * (x[rr * 8 + i] - mean) / 8.0;
        cr_assert_float_eq(((float *)y[1].data)[rr], mean, 1e-6);
        cr_assert_float_eq(((float *)y[2].data)[rr], 1 / sqrt(var + 1e-5), 1e-4);
        for (int i = 0; i < 8; i++)
            cr_assert_float_eq(((float *)y[0].data)[rr * 8 + i],
                               (x[rr * 8 + i] - mean) / sqrt(var + 1e-5), 1e-4);
    }
    for (int i = 0; i < 3; i++) opt_array_free(&y[i]);
    opt_model_free(m);
    free(x);
}

Test(layer_normalization, scale_and_bias_broadcast_along_any_normalized_axis)
{
    /* X [2,3,4] normalized over its last two axes; Scale [4] repeats along the 3, B [3,1] along
     * the 4 (a B read periodically, b[i % 3], would be wrong); a Scale [2,4] does not fit. */
    kt_rng r = {23};
    float *x = kt_randf(&r, 24), sc[4] = {1, -2, 0.5f, 3}, bi[3] = {10, 20, 30};
    kt_operand in[3] = {
        {"x", OPT_DT_FLOAT, 3, {2, 3, 4}, x, false},
        {"s", OPT_DT_FLOAT, 1, {4}, sc, true},
        {"b", OPT_DT_FLOAT, 2, {3, 1}, bi, true},
    };
    int odt = OPT_DT_FLOAT;
    opt_model *m = kt_model("LayerNormalization", 17, in, 3, &odt, 1);
    kt_attr_int(m, "axis", 1);
    opt_array y = {0};
    kt_run(m, 1, in, 3, &y, 1);
    for (int rr = 0; rr < 2; rr++) {
        double mean = 0, var = 0;
        for (int i = 0; i < 12; i++) mean += x[rr * 12 + i] / 12.0;
        for (int i = 0; i < 12; i++) var += (x[rr * 12 + i] - mean) * (x[rr * 12 + i] - mean) / 12.0;
        for (int i = 0; i < 12; i++)
            cr_assert_float_eq(((float *)y.data)[rr * 12 + i],
                               (x[rr * 12 + i] - mean) / sqrt(var + 1e-5) * sc[i % 4] + bi[i / 4],
                               1e-4, "row %d value %d", rr, i);
    }
    opt_array_free(&y);
    opt_model_free(m);

    float sc2[8] = {0};
    in[1] = (kt_operand){"s", OPT_DT_FLOAT, 2, {2, 4}, sc2, true};
    m = kt_model("LayerNormalization", 17, in, 3, &odt, 1);
    kt_attr_int(m, "axis", 1);
    opt_error err = {0};
    opt_exec *e = NULL;
    opt_exec_opts o = {.threads = 1};
    opt_status st = opt_exec_new(m, &o, &e, &err);
    if (st == OPT_OK) {
        opt_array xa = {.dtype = OPT_DT_FLOAT, .ndim = 3, .dims = {2, 3, 4}, .data = x,
                        .nbytes = 24 * sizeof(float)};
        opt_array out = {0};
        st = opt_exec_run(e, &xa, 1, &out, 1, &err);
        opt_array_free(&out);
    }
    cr_assert_neq(st, OPT_OK, "a Scale of shape [2,4] is refused");
    cr_assert(strstr(err.msg, "broadcast"), "%s", err.msg);
    opt_exec_free(e);
    opt_model_free(m);
    free(x);
}

Test(resize, nearest_asymmetric_upsampling_by_two_repeats_pixels_and_linear_keeps_corners)
{
    float x[6] = {1, 2, 3, 4, 5, 6};
    float sc[4] = {1, 1, 2, 2};
    kt_operand in[3] = {
        {"x", OPT_DT_FLOAT, 4, {1, 1, 2, 3}, x, false},
        {"", 0, 0, {0}, NULL, false},
        {"s", OPT_DT_FLOAT, 1, {4}, sc, true},
    };
    int odt = OPT_DT_FLOAT;
    opt_model *m = kt_model("Resize", 13, in, 3, &odt, 1);
    kt_attr_str(m, "coordinate_transformation_mode", "asymmetric");
    kt_attr_str(m, "nearest_mode", "floor");
    opt_array y = {0};
    kt_run(m, 1, in, 3, &y, 1);
    cr_assert(y.dims[2] == 4 && y.dims[3] == 6);
    for (int h = 0; h < 4; h++)
        for (int w = 0; w < 6; w++)
            cr_assert_eq(((float *)y.data)[h * 6 + w], x[(h / 2) * 3 + w / 2]);
    opt_array_free(&y);
    opt_model_free(m);

    m = kt_model("Resize", 13, in, 3, &odt, 1);
    kt_attr_str(m, "mode", "linear");
    kt_attr_str(m, "coordinate_transformation_mode", "align_corners");
    kt_run(m, 1, in, 3, &y, 1);
    const float *v = y.data;
    cr_assert_float_eq(v[0], 1, 1e-6);
    cr_assert_float_eq(v[5], 3, 1e-6);
    cr_assert_float_eq(v[18], 4, 1e-6);
    cr_assert_float_eq(v[23], 6, 1e-6);
    opt_array_free(&y);
    opt_model_free(m);
}
