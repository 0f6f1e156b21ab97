/*
 * tests/unit/kernels_conv_util.h — the check that a conv path (shifted, stride phases) gives the
 * reference's values and the im2col-into-panels path's bits, shared by kernels_conv.c and
 * kernels_conv_stride.c.
 */
#ifndef TESTS_UNIT_KERNELS_CONV_UTIL_H
#define TESTS_UNIT_KERNELS_CONV_UTIL_H

#include "libopt/exec/cpu/nn.h"
#include "tests/unit/kernels_util.h"

/* act(conv + z) by the reference twin (z may be NULL). */
static inline void kt_conv_ref_epi(const nn_conv_geom *g, const float *x, const float *w, const float *b,
                                   const float *z, const nn_conv_epi *e, float *yr, size_t ny)
{
    nn_conv_f32_ref(g, x, w, b, yr);
    if (z)
        for (size_t i = 0; i < ny; i++) yr[i] += z[i];
    nn_epilogue ep = {NULL, NULL, NULL, 0, e->act, e->lo, e->hi, e->alpha};
    nn_epilogue_rows(&ep, yr, (int64_t)ny, 0, 1, (int64_t)ny, false);
}

/* Case t of geometry g on random data, without and with bias and residual (activation by t and
 * the variant): NN_CONV_SHIFTED within KT_F32_REL of the reference, bit for bit the packed
 * path's output, and the same bits when the residual is the output's own buffer. */
static inline void kt_conv_paths_agree(const nn_conv_geom *g, kt_rng *r, size_t t, const char *label)
{
    int64_t insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g), ks = nn_geom_k_size(g);
    size_t nx = (size_t)(g->N * g->C * insz), nw = (size_t)(g->M * (g->C / g->group) * ks);
    size_t ny = (size_t)(g->N * g->M * outsz);
    float *x = kt_randf(r, nx), *w = kt_randf(r, nw), *b = kt_randf(r, (size_t)g->M);
    float *z = kt_randf(r, ny);
    float *ys = malloc(ny * sizeof *ys), *yp = malloc(ny * sizeof *yp);
    float *ya = malloc(ny * sizeof *ya), *yr = malloc(ny * sizeof *yr);
    for (int v = 0; v < 4; v++) {
        bool bias = v & 1, res = v & 2;
        nn_conv_epi e = {.z = res ? z : NULL, .act = (int)(t + (size_t)v) % 4, .lo = -0.3f,
                         .hi = 0.6f, .alpha = 0.1f, .path = NN_CONV_SHIFTED};
        nn_conv_f32_ex(NULL, g, x, w, bias ? b : NULL, &e, ys);
        kt_conv_ref_epi(g, x, w, bias ? b : NULL, e.z, &e, yr, ny);
        double err = kt_max_rel(ys, yr, ny);
        cr_assert_leq(err, KT_F32_REL, "case %zu variant %d: error %g", t, v, err);
        /* The same sums in the same order as im2col into panels: identical bits. */
        e.path = NN_CONV_PACKED;
        nn_conv_f32_ex(NULL, g, x, w, bias ? b : NULL, &e, yp);
        cr_assert(memcmp(ys, yp, ny * sizeof *ys) == 0, "case %zu variant %d: %s != packed", t, v, label);
        /* The residual may be the output's own buffer (read before written). */
        if (res) {
            memcpy(ya, z, ny * sizeof *ya);
            e.z = ya;
            e.path = NN_CONV_SHIFTED;
            nn_conv_f32_ex(NULL, g, x, w, bias ? b : NULL, &e, ya);
            cr_assert(memcmp(ys, ya, ny * sizeof *ys) == 0, "case %zu variant %d: z == y", t, v);
        }
    }
    free(x), free(w), free(b), free(z), free(ys), free(yp), free(ya), free(yr);
}

#endif
