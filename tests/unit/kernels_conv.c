/*
 * tests/unit/kernels_conv.c — Conv and ConvTranspose: every fast path (im2col + sgemm, 1x1,
 * depthwise, threaded, float16) agrees with the plain reference twin within KT_F32_REL.
 */
#include "libopt/exec/cpu/nn.h"
#include "tests/unit/kernels_conv_util.h"

/* A random convolution geometry; `kind` 0: any, 1: depthwise, 2: pointwise. */
static void rand_geom(kt_rng *r, nn_conv_geom *g, int kind, bool transpose)
{
    memset(g, 0, sizeof *g);
    g->nsp = kind ? (int)kt_int(r, 1, 2) : (int)kt_int(r, 1, 3);
    g->N = kt_int(r, 1, 2);
    if (kind == 1) {
        g->group = g->C = g->M = kt_int(r, 1, 6);
    } else {
        g->group = kt_int(r, 1, 3);
        g->C = g->group * kt_int(r, 1, 4);
        g->M = g->group * kt_int(r, 1, 4);
    }
    for (int i = 0; i < g->nsp; i++) {
        int64_t maxin = g->nsp == 3 ? 6 : 11;
        for (;;) {
            g->in[i] = kt_int(r, 1, maxin);
            g->k[i] = kind == 2 ? 1 : kt_int(r, 1, 3);
            g->stride[i] = kind == 2 ? 1 : kt_int(r, 1, 3);
            g->dil[i] = kind == 2 ? 1 : kt_int(r, 1, 2);
            g->pad_b[i] = kind == 2 ? 0 : kt_int(r, 0, 2);
            g->pad_e[i] = kind == 2 ? 0 : kt_int(r, 0, 2);
            int64_t dk = (g->k[i] - 1) * g->dil[i] + 1;
            if (transpose) {
                g->out[i] = g->stride[i] * (g->in[i] - 1) + dk - g->pad_b[i] - g->pad_e[i];
                if (g->out[i] >= 1) break;
            } else {
                int64_t span = g->in[i] + g->pad_b[i] + g->pad_e[i] - dk;
                if (span >= 0) {
                    g->out[i] = span / g->stride[i] + 1;
                    break;
                }
            }
        }
    }
}

static void check_conv(const nn_conv_geom *g, kt_rng *r, const char *what, int trial)
{
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    size_t nx = (size_t)(g->N * g->C * insz), nw = (size_t)(g->M * (g->C / g->group) * ks);
    size_t ny = (size_t)(g->N * g->M * outsz);
    float *x = kt_randf(r, nx), *w = kt_randf(r, nw), *b = kt_randf(r, (size_t)g->M);
    float *y = calloc(ny, sizeof *y), *yr = calloc(ny, sizeof *yr);
    bool with_bias = trial % 2 == 0;
    nn_conv_f32(NULL, g, x, w, with_bias ? b : NULL, y);
    nn_conv_f32_ref(g, x, w, with_bias ? b : NULL, yr);
    double e = kt_max_rel(y, yr, ny);
    cr_assert_leq(e, KT_F32_REL, "%s trial %d (nsp %d, group %lld, C %lld, M %lld): error %g", what,
                  trial, g->nsp, (long long)g->group, (long long)g->C, (long long)g->M, e);
    free(x), free(w), free(b), free(y), free(yr);
}

Test(conv, fast_path_matches_reference_on_random_shapes_with_groups_dilations_and_pads)
{
    kt_rng r = {0x1234567};
    for (int t = 0; t < 60; t++) {
        nn_conv_geom g;
        rand_geom(&r, &g, 0, false);
        check_conv(&g, &r, "im2col", t);
    }
}

Test(conv, depthwise_path_matches_reference)
{
    kt_rng r = {0xdead};
    for (int t = 0; t < 40; t++) {
        nn_conv_geom g;
        rand_geom(&r, &g, 1, false);
        check_conv(&g, &r, "depthwise", t);
    }
}

Test(conv, pointwise_path_matches_reference)
{
    kt_rng r = {0xbeef};
    for (int t = 0; t < 20; t++) {
        nn_conv_geom g;
        rand_geom(&r, &g, 2, false);
        check_conv(&g, &r, "1x1", t);
    }
}

Test(conv_transpose, fast_path_matches_reference_on_random_shapes)
{
    kt_rng r = {0x5eed};
    for (int t = 0; t < 40; t++) {
        nn_conv_geom g;
        rand_geom(&r, &g, 0, true);
        int64_t insz = nn_geom_in_size(&g), outsz = nn_geom_out_size(&g), ks = nn_geom_k_size(&g);
        size_t nx = (size_t)(g.N * g.C * insz), nw = (size_t)(g.C * (g.M / g.group) * ks);
        size_t ny = (size_t)(g.N * g.M * outsz);
        float *x = kt_randf(&r, nx), *w = kt_randf(&r, nw), *b = kt_randf(&r, (size_t)g.M);
        float *y = calloc(ny, sizeof *y), *yr = calloc(ny, sizeof *yr);
        nn_convtr_f32(NULL, &g, x, w, b, y);
        nn_convtr_f32_ref(&g, x, w, b, yr);
        double e = kt_max_rel(y, yr, ny);
        cr_assert_leq(e, KT_F32_REL, "trial %d: error %g", t, e);
        free(x), free(w), free(b), free(y), free(yr);
    }
}

/* Conv through the executor: W as an initializer (prepared once), 2 threads, asymmetric pads,
 * strides and dilations; compared with the reference. */
Test(conv, threaded_executor_with_prepared_weights_matches_reference)
{
    kt_rng r = {42};
    nn_conv_geom g = {.nsp = 2, .N = 2, .C = 8, .M = 12, .group = 2,
                      .in = {23, 17}, .k = {3, 3}, .stride = {2, 1}, .dil = {1, 2},
                      .pad_b = {1, 0}, .pad_e = {2, 1}};
    for (int i = 0; i < 2; i++)
        g.out[i] = (g.in[i] + g.pad_b[i] + g.pad_e[i] - ((g.k[i] - 1) * g.dil[i] + 1)) /
                       g.stride[i] + 1;
    size_t nx = (size_t)(2 * 8 * 23 * 17), nw = 12 * 4 * 9;
    float *x = kt_randf(&r, nx), *w = kt_randf(&r, nw), *b = kt_randf(&r, 12);
    kt_operand in[3] = {
        {"x", OPT_DT_FLOAT, 4, {2, 8, 23, 17}, x, false},
        {"w", OPT_DT_FLOAT, 4, {12, 4, 3, 3}, w, true},
        {"b", OPT_DT_FLOAT, 1, {12}, b, true},
    };
    int odt = OPT_DT_FLOAT;
    opt_model *m = kt_model("Conv", 17, in, 3, &odt, 1);
    kt_attr_ints(m, "strides", (int64_t[]){2, 1}, 2);
    kt_attr_ints(m, "dilations", (int64_t[]){1, 2}, 2);
    kt_attr_ints(m, "pads", (int64_t[]){1, 0, 2, 1}, 4);
    kt_attr_int(m, "group", 2);
    opt_array y = {0};
    kt_run(m, 2, in, 3, &y, 1);
    size_t ny = (size_t)(2 * 12 * g.out[0] * g.out[1]);
    cr_assert_eq(opt_array_numel(&y), ny);
    cr_assert_eq(y.dims[2], g.out[0]);
    cr_assert_eq(y.dims[3], g.out[1]);
    float *yr = calloc(ny, sizeof *yr);
    nn_conv_f32_ref(&g, x, w, b, yr);
    double e = kt_max_rel(y.data, yr, ny);
    cr_assert_leq(e, KT_F32_REL, "error %g", e);
    opt_array_free(&y);
    opt_model_free(m);
    free(x), free(w), free(b), free(yr);
}

/* float16 Conv computes in float32 and rounds once: each output is the float16 nearest to the
 * reference computed on the same (float16) values, or its neighbour when the float32 sum lands
 * within rounding of a tie. */
Test(conv, float16_model_rounds_once_at_the_output)
{
    kt_rng r = {7};
    size_t nx = 1 * 3 * 9 * 9, nw = 4 * 3 * 3 * 3;
    uint16_t *xh = malloc(nx * 2), *wh = malloc(nw * 2);
    float *x = malloc(nx * 4), *w = malloc(nw * 4);
    for (size_t i = 0; i < nx; i++) x[i] = opt_f16_to_f32(xh[i] = opt_f32_to_f16(kt_float(&r)));
    for (size_t i = 0; i < nw; i++) w[i] = opt_f16_to_f32(wh[i] = opt_f32_to_f16(kt_float(&r)));
    kt_operand in[2] = {
        {"x", OPT_DT_FLOAT16, 4, {1, 3, 9, 9}, xh, false},
        {"w", OPT_DT_FLOAT16, 4, {4, 3, 3, 3}, wh, true},
    };
    int odt = OPT_DT_FLOAT16;
    opt_model *m = kt_model("Conv", 17, in, 2, &odt, 1);
    kt_attr_ints(m, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    opt_array y = {0};
    kt_run(m, 1, in, 2, &y, 1);
    cr_assert_eq(y.dtype, OPT_DT_FLOAT16);
    nn_conv_geom g = {.nsp = 2, .N = 1, .C = 3, .M = 4, .group = 1, .in = {9, 9}, .out = {9, 9},
                      .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pad_b = {1, 1},
                      .pad_e = {1, 1}};
    size_t ny = 4 * 81;
    float *yr = malloc(ny * 4);
    nn_conv_f32_ref(&g, x, w, NULL, yr);
    const uint16_t *yh = y.data;
    for (size_t i = 0; i < ny; i++) {
        uint16_t want = opt_f32_to_f16(yr[i]);
        int d = (int)yh[i] - (int)want;
        cr_assert(d >= -1 && d <= 1, "output %zu: got %04x want %04x", i, yh[i], want);
    }
    opt_array_free(&y);
    opt_model_free(m);
    free(xh), free(wh), free(x), free(w), free(yr);
}

Test(conv, channel_mismatch_fails_naming_the_node)
{
    float x[2 * 5 * 5] = {0}, w[3 * 3 * 3 * 3] = {0};
    kt_operand in[2] = {
        {"x", OPT_DT_FLOAT, 4, {1, 2, 5, 5}, x, false},
        {"w", OPT_DT_FLOAT, 4, {3, 3, 3, 3}, w, true},
    };
    int odt = OPT_DT_FLOAT;
    opt_model *m = kt_model("Conv", 17, in, 2, &odt, 1);
    opt_exec_opts o = {0};
    opt_exec *e = NULL;
    opt_error err = {0};
    opt_status st = opt_exec_new(m, &o, &e, &err);
    if (st == OPT_OK) {
        opt_array xa = {OPT_DT_FLOAT, 4, {1, 2, 5, 5}, x, sizeof x};
        opt_array y = {0};
        st = opt_exec_run(e, &xa, 1, &y, 1, &err);
        opt_array_free(&y);
    }
    cr_assert_neq(st, OPT_OK);
    cr_assert(strstr(err.msg, "node") && strstr(err.msg, "channels"), "message: %s", err.msg);
    opt_exec_free(e);
    opt_model_free(m);
}

Test(conv, wide_depthwise_rows_match_the_reference)
{
    /* Rows of 16 columns and more reach the vector kernel's unmasked interior; strides 1 and 2,
     * 3x3 and 5x5, padded and not, dilated, odd widths. */
    kt_rng r = {0xd3b7};
    const int64_t cases[][6] = {/* H, W, k, stride, pad, dil */
                                {9, 45, 3, 1, 1, 1}, {8, 50, 3, 2, 1, 1}, {7, 67, 5, 2, 2, 1},
                                {6, 33, 3, 1, 0, 1}, {5, 40, 3, 2, 0, 2}, {4, 112, 3, 2, 1, 1},
                                {3, 17, 1, 1, 0, 1}, {5, 64, 7, 1, 3, 1}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        nn_conv_geom g = {0};
        g.nsp = 2;
        g.N = 2;
        g.group = g.C = g.M = 3;
        g.in[0] = cases[t][0];
        g.in[1] = cases[t][1];
        for (int i = 0; i < 2; i++) {
            g.k[i] = cases[t][2];
            g.stride[i] = cases[t][3];
            g.pad_b[i] = g.pad_e[i] = cases[t][4];
            g.dil[i] = cases[t][5];
            g.out[i] = (g.in[i] + 2 * g.pad_b[i] - (g.k[i] - 1) * g.dil[i] - 1) / g.stride[i] + 1;
        }
        check_conv(&g, &r, "wide depthwise", (int)t);
    }
}

/* ---- stride-1 convolutions on a shifted B (no im2col packing) -------------------------------- */

/* A stride-1, dilation-1 conv: spatial dims (1-D: H 1), pads top, left, bottom, right. */
typedef struct shift_case {
    int nsp;
    int64_t N, C, M, group, H, W, KH, KW, pt, pl, pb, pr;
} shift_case;

static const shift_case shift_cases[] = {
    {2, 2, 5, 7, 1, 9, 11, 1, 1, 1, 1, 1, 1},      /* 1x1 with pads 1 */
    {2, 1, 16, 16, 1, 28, 28, 3, 3, 1, 1, 1, 1},   /* rescnn: 27 x 30 + 28 wide columns */
    {2, 2, 64, 13, 1, 7, 7, 3, 3, 1, 1, 1, 1},     /* K 576: three blocks of K; M 13 */
    {2, 3, 6, 16, 1, 14, 14, 5, 5, 0, 0, 0, 0},    /* lenet5 conv2: 5x5, no pads (no copy) */
    {2, 1, 1, 6, 1, 28, 28, 5, 5, 2, 2, 2, 2},     /* lenet5 conv1: K 25 */
    {2, 2, 3, 5, 1, 10, 13, 3, 3, 0, 2, 1, 0},     /* asymmetric pads */
    {2, 1, 4, 25, 1, 6, 37, 3, 3, 0, 0, 0, 0},     /* rows longer than a tile, M 25 */
    {1, 2, 3, 4, 1, 1, 50, 1, 3, 0, 2, 0, 0},      /* 1-D, left pad only */
    {2, 3, 6, 10, 2, 9, 9, 3, 3, 1, 1, 1, 1},      /* 2 groups, batch 3 */
    {2, 1, 2, 3, 1, 5, 1, 3, 1, 1, 0, 1, 0},       /* width 1 */
    {2, 1, 3, 4, 1, 4, 80, 1, 75, 0, 0, 0, 0},     /* 74 dropped columns a row: empty tiles */
    {2, 2, 64, 24, 1, 7, 7, 1, 1, 0, 0, 0, 0},     /* 1x1 without pads: every column kept */
    {2, 1, 30, 15, 3, 12, 9, 2, 4, 1, 0, 0, 3},    /* 3 groups, even kernel, asymmetric pads */
};

static void shift_geom_of(const shift_case *c, nn_conv_geom *g)
{
    memset(g, 0, sizeof *g);
    g->nsp = c->nsp;
    g->N = c->N, g->C = c->C, g->M = c->M, g->group = c->group;
    int64_t in[2] = {c->H, c->W}, k[2] = {c->KH, c->KW};
    int64_t pb[2] = {c->pt, c->pl}, pe[2] = {c->pb, c->pr};
    int o = c->nsp == 2 ? 0 : 1; /* 1-D: the width only */
    for (int i = 0; i < c->nsp; i++) {
        g->in[i] = in[o + i], g->k[i] = k[o + i], g->pad_b[i] = pb[o + i], g->pad_e[i] = pe[o + i];
        g->stride[i] = g->dil[i] = 1;
        g->out[i] = g->in[i] + g->pad_b[i] + g->pad_e[i] - g->k[i] + 1;
    }
}

Test(conv, shifted_path_matches_reference_and_packed_path_bit_for_bit)
{
    kt_rng r = {0x5f1f7};
    for (size_t t = 0; t < sizeof shift_cases / sizeof shift_cases[0]; t++) {
        nn_conv_geom g;
        shift_geom_of(&shift_cases[t], &g);
        kt_conv_paths_agree(&g, &r, t, "shifted");
    }
}

Test(conv, stride1_convs_of_the_bundled_models_take_the_shifted_path)
{
    if (!nn_sgemm_fast()) { /* no AVX-512 kernel: im2col + OpenBLAS, as before */
        nn_conv_geom g;
        shift_geom_of(&shift_cases[1], &g);
        cr_assert_eq(nn_conv_path(&g), NN_CONV_AUTO);
        return;
    }
    /* rescnn's 3x3 convs (28x28 .. 7x7), lenet5's and lenet5caffe's 5x5 ones. */
    const shift_case models[] = {
        {2, 1, 1, 16, 1, 28, 28, 3, 3, 1, 1, 1, 1},  {2, 1, 16, 16, 1, 28, 28, 3, 3, 1, 1, 1, 1},
        {2, 1, 32, 32, 1, 14, 14, 3, 3, 1, 1, 1, 1}, {2, 1, 64, 64, 1, 7, 7, 3, 3, 1, 1, 1, 1},
        {2, 1, 1, 6, 1, 28, 28, 5, 5, 2, 2, 2, 2},   {2, 1, 6, 16, 1, 14, 14, 5, 5, 0, 0, 0, 0},
        {2, 1, 1, 20, 1, 28, 28, 5, 5, 0, 0, 0, 0},  {2, 1, 20, 50, 1, 12, 12, 5, 5, 0, 0, 0, 0},
    };
    for (size_t t = 0; t < sizeof models / sizeof models[0]; t++) {
        nn_conv_geom g;
        shift_geom_of(&models[t], &g);
        cr_assert_eq(nn_conv_path(&g), NN_CONV_SHIFTED, "shape %zu", t);
    }
    /* Strided convs take it through their phases (kernels_conv_stride.c); dilated ones keep
     * im2col into panels; depthwise its own loop. */
    nn_conv_geom g;
    shift_geom_of(&shift_cases[1], &g);
    g.stride[0] = g.stride[1] = 2;
    g.out[0] = g.out[1] = 14;
    cr_assert_eq(nn_conv_path(&g), NN_CONV_SHIFTED);
    shift_geom_of(&shift_cases[1], &g);
    g.dil[1] = 2;
    g.out[1] = 26;
    cr_assert_eq(nn_conv_path(&g), NN_CONV_PACKED);
    shift_geom_of(&shift_cases[1], &g);
    g.group = 16;
    cr_assert_eq(nn_conv_path(&g), NN_CONV_AUTO);
}

/* Conv -> Add(z) -> Relu through the executor (fused into one FusedConv at load, weights
 * prepared once) on the shifted path: 1 and 3 threads give the same bits, which are those of the
 * direct call, within KT_F32_REL of the reference. */
Test(conv, shifted_path_threads_give_identical_bits_through_the_executor)
{
    kt_rng r = {0x7e4d5};
    const shift_case cases[] = {
        {2, 2, 16, 16, 1, 28, 28, 3, 3, 1, 1, 1, 1}, /* rescnn's layer1: 27 tiles per image */
        {2, 3, 6, 13, 1, 14, 14, 5, 5, 0, 0, 0, 0},  /* 5x5, M 13 */
        {2, 2, 40, 24, 2, 11, 23, 3, 3, 1, 2, 0, 1}, /* 2 groups, K 180, asymmetric pads */
        {2, 5, 16, 16, 1, 28, 28, 3, 3, 1, 1, 1, 1}, /* 5 images: 3 + 2 and 2 + 2 + 1 per thread */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        nn_conv_geom g;
        shift_geom_of(&cases[t], &g);
        if (nn_sgemm_fast()) cr_assert_eq(nn_conv_path(&g), NN_CONV_SHIFTED, "case %zu", t);
        kt_conv_chain_agrees(&g, &r, t, false);
    }
}

/* The same on the packed path (1x1 without pads: im2col into panels), where each thread packs
 * into its own workspace when it runs whole images. */
Test(conv, packed_path_threads_give_identical_bits_through_the_executor)
{
    kt_rng r = {0x9a0c1};
    const shift_case cases[] = {
        {2, 2, 32, 24, 1, 14, 14, 1, 1, 0, 0, 0, 0},   /* N 2: one image per thread with 2 */
        {2, 5, 20, 40, 2, 9, 30, 1, 1, 0, 0, 0, 0},    /* 5 images, 2 groups, 270 columns */
        {2, 3, 8, 16, 1, 40, 40, 1, 1, 0, 0, 0, 0},    /* 1600 columns: 4 chunks of NN_NC */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        nn_conv_geom g;
        shift_geom_of(&cases[t], &g);
        if (nn_sgemm_fast()) cr_assert_eq(nn_conv_path(&g), NN_CONV_PACKED, "case %zu", t);
        kt_conv_chain_agrees(&g, &r, t, false);
    }
}
