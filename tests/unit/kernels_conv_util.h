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

/* Conv -> Add(z) -> Relu of geometry g (case t) through the executor on random data: 1 and 3
 * threads give the same bits, those of the direct nn_conv_f32_ex call on NN_CONV_SHIFTED (and,
 * with with_packed, of the packed path), within KT_F32_REL of the reference. */
static inline void kt_conv_chain_agrees(const nn_conv_geom *g, kt_rng *r, size_t t, bool with_packed)
{
    int64_t Cg = g->C / g->group, insz = nn_geom_in_size(g), outsz = nn_geom_out_size(g);
    size_t nx = (size_t)(g->N * g->C * insz), nw = (size_t)(g->M * Cg * g->k[0] * g->k[1]);
    size_t ny = (size_t)(g->N * g->M * outsz);
    float *x = kt_randf(r, nx), *w = kt_randf(r, nw), *b = kt_randf(r, (size_t)g->M);
    float *z = kt_randf(r, ny);
    int64_t xd[4] = {g->N, g->C, g->in[0], g->in[1]}, yd[4] = {g->N, g->M, g->out[0], g->out[1]};
    kt_operand in[3] = {
        {"x", OPT_DT_FLOAT, 4, {xd[0], xd[1], xd[2], xd[3]}, x, false},
        {"w", OPT_DT_FLOAT, 4, {g->M, Cg, g->k[0], g->k[1]}, w, true},
        {"b", OPT_DT_FLOAT, 1, {g->M}, b, true},
    };
    int odt = OPT_DT_FLOAT;
    opt_model *m = kt_model("Conv", 17, in, 3, &odt, 1);
    kt_attr_ints(m, "pads", (int64_t[]){g->pad_b[0], g->pad_b[1], g->pad_e[0], g->pad_e[1]}, 4);
    kt_attr_ints(m, "strides", (int64_t[]){g->stride[0], g->stride[1]}, 2);
    kt_attr_int(m, "group", g->group);
    /* Conv's output y0 goes on through Add(z) and Relu into the graph output. */
    opt_graph *gr = m->graph;
    opt_error err = {0};
    const char *ain[2] = {"y0", "z"}, *aout = "a", *rin = "a", *rout = "r";
    opt_node *add = opt_node_make("Add", "add", ain, 2, &aout, 1);
    opt_node *relu = opt_node_make("Relu", "relu", &rin, 1, &rout, 1);
    cr_assert(opt_graph_insert_node(gr, 1, add, &err) == OPT_OK);
    cr_assert(opt_graph_insert_node(gr, 2, relu, &err) == OPT_OK);
    gr->inputs = realloc(gr->inputs, (gr->n_inputs + 1) * sizeof *gr->inputs);
    gr->inputs[gr->n_inputs++] = kt_vi("z", OPT_DT_FLOAT, 4, yd);
    opt_value_info_free(gr->outputs[0]);
    gr->outputs[0] = kt_vi("r", OPT_DT_FLOAT, -1, NULL);
    kt_operand ins[4] = {in[0], in[1], in[2], {"z", OPT_DT_FLOAT, 4, {yd[0], yd[1], yd[2], yd[3]}, z, false}};
    /* With 2 threads and N >= 2 a conv runs whole images on each thread; with 3 threads and
     * N < 3 it splits each image's product between them. */
    opt_array y1 = {0}, y2 = {0}, y3 = {0};
    kt_run(m, 1, ins, 4, &y1, 1);
    kt_run(m, 2, ins, 4, &y2, 1);
    kt_run(m, 3, ins, 4, &y3, 1);
    cr_assert_eq(opt_array_numel(&y1), ny);
    cr_assert_eq(opt_array_numel(&y2), ny);
    cr_assert_eq(opt_array_numel(&y3), ny);
    cr_assert(memcmp(y1.data, y2.data, ny * sizeof(float)) == 0, "case %zu: 1 and 2 threads differ", t);
    cr_assert(memcmp(y1.data, y3.data, ny * sizeof(float)) == 0, "case %zu: 1 and 3 threads differ", t);
    nn_conv_epi e = {.z = z, .act = NN_ACT_RELU, .path = NN_CONV_SHIFTED};
    float *yd1 = malloc(ny * sizeof *yd1), *yr = malloc(ny * sizeof *yr);
    nn_conv_f32_ex(NULL, g, x, w, b, &e, yd1);
    cr_assert(memcmp(y1.data, yd1, ny * sizeof(float)) == 0, "case %zu: executor != direct call", t);
    if (with_packed) {
        e.path = NN_CONV_PACKED;
        nn_conv_f32_ex(NULL, g, x, w, b, &e, yd1);
        cr_assert(memcmp(y3.data, yd1, ny * sizeof(float)) == 0, "case %zu: executor != packed", t);
    }
    kt_conv_ref_epi(g, x, w, b, z, &e, yr, ny);
    double d = kt_max_rel(y3.data, yr, ny);
    cr_assert_leq(d, KT_F32_REL, "case %zu: error %g", t, d);
    opt_array_free(&y1);
    opt_array_free(&y2);
    opt_array_free(&y3);
    opt_model_free(m);
    free(x), free(w), free(b), free(z), free(yd1), free(yr);
}

#endif
