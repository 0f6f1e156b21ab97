/*
 * tests/unit/kernels_conv_stride.c — strided Conv on the shifted path (the padded image split
 * into its stride phases, read in place by nn_sgemm_shifted): within KT_F32_REL of the
 * reference twin and bit-identical to im2col into panels, whatever the epilogue, the thread
 * count, or whether the residual is the output's own buffer.
 */
#include "libopt/exec/cpu/nn.h"
#include "tests/unit/kernels_conv_util.h"

/* A dilation-1 conv: spatial dims (1-D: H 1), strides, pads top, left, bottom, right. */
typedef struct stride_case {
    int nsp;
    int64_t N, C, M, group, H, W, KH, KW, sh, sw, pt, pl, pb, pr;
} stride_case;

static const stride_case stride_cases[] = {
    {2, 2, 16, 32, 1, 28, 28, 3, 3, 2, 2, 1, 1, 1, 1},  /* rescnn layer2.conv1: 4 phases */
    {2, 1, 32, 64, 1, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1},  /* rescnn layer3.conv1: M 64 */
    {2, 1, 3, 8, 1, 30, 30, 7, 7, 2, 2, 3, 3, 3, 3},    /* ResNet-50's stem, smaller: 7x7 */
    {2, 2, 3, 5, 1, 15, 17, 3, 3, 2, 2, 1, 1, 1, 1},    /* odd sizes: the last phase column */
    {2, 1, 64, 13, 1, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1},    /* K 576: three blocks of K */
    {2, 2, 5, 7, 1, 12, 12, 1, 1, 2, 2, 0, 0, 0, 0},    /* 1x1 stride 2: one phase, no pads */
    {2, 1, 4, 6, 1, 11, 10, 1, 1, 2, 2, 1, 0, 0, 1},    /* 1x1 stride 2 with pads */
    {2, 1, 4, 6, 1, 13, 16, 3, 3, 3, 3, 1, 1, 1, 1},    /* stride 3: 3 x 3 phases (no AVX row) */
    {2, 1, 3, 4, 1, 10, 19, 2, 2, 3, 3, 0, 1, 1, 0},    /* kernel smaller than the stride */
    {2, 1, 4, 9, 1, 14, 14, 4, 4, 2, 2, 1, 1, 1, 1},    /* even kernel: 2 taps a phase */
    {2, 2, 3, 4, 1, 9, 70, 3, 3, 2, 2, 1, 1, 1, 1},     /* phase rows longer than 16 values */
    {2, 1, 6, 5, 1, 12, 11, 3, 3, 2, 1, 0, 2, 1, 0},    /* stride (2, 1), asymmetric pads */
    {2, 1, 6, 5, 1, 11, 12, 3, 5, 1, 2, 2, 0, 0, 2},    /* stride (1, 2) */
    {1, 2, 3, 4, 1, 1, 50, 1, 3, 1, 2, 0, 1, 0, 1},     /* 1-D stride 2 */
    {2, 3, 6, 10, 2, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1},     /* 2 groups, batch 3 */
    {2, 1, 2, 3, 1, 5, 1, 3, 1, 2, 2, 1, 0, 1, 0},      /* width 1 */
    {2, 1, 3, 4, 1, 8, 8, 3, 3, 2, 2, 0, 0, 0, 0},      /* 3x3 stride 2 without pads */
    {2, 1, 2, 3, 1, 9, 9, 3, 3, 4, 4, 2, 2, 2, 2},      /* stride 4: more phases than taps */
};

static void stride_geom_of(const stride_case *c, nn_conv_geom *g)
{
    memset(g, 0, sizeof *g);
    g->nsp = c->nsp;
    g->N = c->N, g->C = c->C, g->M = c->M, g->group = c->group;
    int64_t in[2] = {c->H, c->W}, k[2] = {c->KH, c->KW}, st[2] = {c->sh, c->sw};
    int64_t pb[2] = {c->pt, c->pl}, pe[2] = {c->pb, c->pr};
    int o = c->nsp == 2 ? 0 : 1; /* 1-D: the width only */
    for (int i = 0; i < c->nsp; i++) {
        g->in[i] = in[o + i], g->k[i] = k[o + i], g->pad_b[i] = pb[o + i], g->pad_e[i] = pe[o + i];
        g->stride[i] = st[o + i];
        g->dil[i] = 1;
        g->out[i] = (g->in[i] + g->pad_b[i] + g->pad_e[i] - g->k[i]) / g->stride[i] + 1;
    }
}

Test(conv_stride, phase_path_matches_reference_and_packed_path_bit_for_bit)
{
    kt_rng r = {0x57a1de};
    for (size_t t = 0; t < sizeof stride_cases / sizeof stride_cases[0]; t++) {
        nn_conv_geom g;
        stride_geom_of(&stride_cases[t], &g);
        kt_conv_paths_agree(&g, &r, t, "phases");
    }
}

Test(conv_stride, strided_convs_of_the_models_take_the_phase_path_except_1x1_without_pads)
{
    nn_conv_geom g;
    if (!nn_sgemm_fast()) { /* no AVX-512 kernel: im2col + OpenBLAS, as before */
        stride_geom_of(&stride_cases[0], &g);
        cr_assert_eq(nn_conv_path(&g), NN_CONV_AUTO);
        return;
    }
    /* rescnn's strided 3x3 convs, ResNet-50's (stem 7x7 and the 3x3 of each stage's first
     * block), MobileNetV2's stem. */
    const stride_case models[] = {
        {2, 1, 16, 32, 1, 28, 28, 3, 3, 2, 2, 1, 1, 1, 1},
        {2, 1, 32, 64, 1, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1},
        {2, 1, 3, 64, 1, 224, 224, 7, 7, 2, 2, 3, 3, 3, 3},
        {2, 1, 128, 128, 1, 56, 56, 3, 3, 2, 2, 1, 1, 1, 1},
        {2, 1, 256, 256, 1, 28, 28, 3, 3, 2, 2, 1, 1, 1, 1},
        {2, 1, 512, 512, 1, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1},
        {2, 1, 3, 32, 1, 224, 224, 3, 3, 2, 2, 1, 1, 1, 1},
    };
    for (size_t t = 0; t < sizeof models / sizeof models[0]; t++) {
        stride_geom_of(&models[t], &g);
        cr_assert_eq(nn_conv_path(&g), NN_CONV_SHIFTED, "shape %zu", t);
    }
    /* The strided 1x1 downsampling convs keep packing (it subsamples as it copies). */
    const stride_case ds[] = {
        {2, 1, 16, 32, 1, 28, 28, 1, 1, 2, 2, 0, 0, 0, 0},
        {2, 1, 256, 512, 1, 56, 56, 1, 1, 2, 2, 0, 0, 0, 0},
    };
    for (size_t t = 0; t < sizeof ds / sizeof ds[0]; t++) {
        stride_geom_of(&ds[t], &g);
        cr_assert_eq(nn_conv_path(&g), NN_CONV_PACKED, "1x1 shape %zu", t);
    }
    /* Dilated strided convs keep packing; strided depthwise ones their own loop. */
    stride_geom_of(&models[0], &g);
    g.dil[1] = 2;
    g.out[1] = 13;
    cr_assert_eq(nn_conv_path(&g), NN_CONV_PACKED);
    stride_geom_of(&models[1], &g);
    g.M = g.group = 32;
    cr_assert_eq(nn_conv_path(&g), NN_CONV_AUTO);
}

/* Conv -> Add(z) -> Relu through the executor (fused into one FusedConv at load, weights
 * prepared once) on the phase path: 1 and 3 threads give the same bits, which are those of the
 * direct call, within KT_F32_REL of the reference. */
Test(conv_stride, phase_path_threads_give_identical_bits_through_the_executor)
{
    kt_rng r = {0x3c0ffe};
    const stride_case cases[] = {
        {2, 2, 16, 32, 1, 28, 28, 3, 3, 2, 2, 1, 1, 1, 1}, /* rescnn's layer2.conv1 */
        {2, 2, 3, 16, 1, 40, 40, 7, 7, 2, 2, 3, 3, 3, 3},  /* a 7x7 stem: 4 x 3 x 400 floats a copy */
        {2, 3, 40, 24, 2, 13, 23, 3, 3, 2, 2, 1, 2, 0, 1}, /* 2 groups, K 180, asymmetric pads */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        nn_conv_geom g;
        stride_geom_of(&cases[t], &g);
        if (nn_sgemm_fast()) cr_assert_eq(nn_conv_path(&g), NN_CONV_SHIFTED, "case %zu", t);
        kt_conv_chain_agrees(&g, &r, t, true);
    }
}
