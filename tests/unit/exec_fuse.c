/*
 * tests/unit/exec_fuse.c — load-time fusion (libopt/exec/fuse.c) and the packed SGEMM behind it
 * (libopt/exec/cpu/sgemm.c): a fused Conv chain computes what the same nodes compute one by one
 * (opt_exec_opts.no_fuse), within KT_FUSE_REL; values that others read are never fused away;
 * results are bit-identical run after run and across thread counts; the erf Gelu written out as
 * five nodes (and its bias Add) becomes one node that computes what they compute.
 */
#include "libopt/exec/cpu/nn.h"
#include "tests/unit/kernels_util.h"

/* Fused vs unfused: the folded BatchNormalization rounds the weights once more, and the
 * residual and bias are added in another order. Relative to the output's scale. */
#define KT_FUSE_REL 1e-5

typedef struct chain {
    int nsp;
    int64_t N, C, M, group, in[3], k[3], stride[3], pad[3], dil[3], out[3];
    bool bias, bn, add, add_first, z_bcast;
    int act; /* 0 none, 1 Relu, 2 Clip, 3 LeakyRelu */
} chain;

/* Conv [-> BatchNormalization] [-> Add(z)] [-> act] as a model (opset 17); y is the output. With
 * conv_out_too, the Conv's output is also a graph output. */
static opt_model *chain_model(const chain *c, kt_rng *r, bool conv_out_too)
{
    opt_model *m = kt_model_empty(17, 8, "chain");
    opt_graph *g = m->graph;
    opt_error err = {0};
    int64_t xd[5] = {c->N, c->C}, wd[5] = {c->M, c->C / c->group}, zd[5] = {c->N, c->M};
    size_t wn = (size_t)(c->M * (c->C / c->group));
    for (int i = 0; i < c->nsp; i++) {
        xd[2 + i] = c->in[i];
        wd[2 + i] = c->k[i];
        zd[2 + i] = c->z_bcast ? 1 : c->out[i];
        wn *= (size_t)c->k[i];
    }
    g->inputs = calloc(2, sizeof *g->inputs);
    g->inputs[g->n_inputs++] = kt_vi("x", OPT_DT_FLOAT, 2 + c->nsp, xd);
    if (c->add) g->inputs[g->n_inputs++] = kt_vi("z", OPT_DT_FLOAT, 2 + c->nsp, zd);
    float *w = kt_randf(r, wn), *b = kt_randf(r, (size_t)c->M);
    kt_add_init(g, "W", wd, 2 + c->nsp, w);
    kt_add_init(g, "B", &c->M, 1, b);
    const char *cin[3] = {"x", "W", "B"};
    kt_add_node(g, "Conv", "conv", cin, c->bias ? 3 : 2, "c");
    opt_node *conv = g->nodes[g->n_nodes - 1];
    int64_t pads[6];
    for (int i = 0; i < c->nsp; i++) pads[i] = pads[i + c->nsp] = c->pad[i];
    cr_assert(opt_node_set_attr_ints(conv, "strides", c->stride, (size_t)c->nsp, &err) == OPT_OK);
    cr_assert(opt_node_set_attr_ints(conv, "dilations", c->dil, (size_t)c->nsp, &err) == OPT_OK);
    cr_assert(opt_node_set_attr_ints(conv, "pads", pads, 2 * (size_t)c->nsp, &err) == OPT_OK);
    cr_assert(opt_node_set_attr_int(conv, "group", c->group, &err) == OPT_OK);
    const char *cur = "c";
    if (c->bn) {
        float *s = kt_randf(r, (size_t)c->M), *sh = kt_randf(r, (size_t)c->M);
        float *mu = kt_randf(r, (size_t)c->M), *var = kt_randf(r, (size_t)c->M);
        for (int64_t i = 0; i < c->M; i++) var[i] = fabsf(var[i]) + 0.1f;
        kt_add_init(g, "bn_s", &c->M, 1, s);
        kt_add_init(g, "bn_b", &c->M, 1, sh);
        kt_add_init(g, "bn_m", &c->M, 1, mu);
        kt_add_init(g, "bn_v", &c->M, 1, var);
        free(s), free(sh), free(mu), free(var);
        kt_add_node(g, "BatchNormalization", "bn", (const char *[]){cur, "bn_s", "bn_b", "bn_m", "bn_v"},
                 5, "n");
        cr_assert(opt_node_set_attr_float(g->nodes[g->n_nodes - 1], "epsilon", 1e-3f, &err) == OPT_OK);
        cur = "n";
    }
    if (c->add) {
        const char *ain[2] = {c->add_first ? "z" : cur, c->add_first ? cur : "z"};
        kt_add_node(g, "Add", "add", ain, 2, "a");
        cur = "a";
    }
    if (c->act == 1) {
        kt_add_node(g, "Relu", "act", &cur, 1, "r");
        cur = "r";
    } else if (c->act == 2) {
        float lo = -0.25f, hi = 0.5f;
        kt_add_init(g, "lo", NULL, 0, &lo);
        kt_add_init(g, "hi", NULL, 0, &hi);
        kt_add_node(g, "Clip", "act", (const char *[]){cur, "lo", "hi"}, 3, "r");
        cur = "r";
    } else if (c->act == 3) {
        kt_add_node(g, "LeakyRelu", "act", &cur, 1, "r");
        cr_assert(opt_node_set_attr_float(g->nodes[g->n_nodes - 1], "alpha", 0.2f, &err) == OPT_OK);
        cur = "r";
    }
    g->outputs = calloc(2, sizeof *g->outputs);
    g->outputs[g->n_outputs++] = kt_vi(cur, OPT_DT_FLOAT, -1, NULL);
    if (conv_out_too) g->outputs[g->n_outputs++] = kt_vi("c", OPT_DT_FLOAT, -1, NULL);
    free(w), free(b);
    return m;
}

/* Runs m on x (and z) with the options; out gets the first output; explain (when not NULL) the
 * plan's description. */
static void run_chain(const opt_model *m, const chain *c, const float *x, const float *z,
                      int threads, bool no_fuse, opt_array *out, char *explain, size_t elen)
{
    opt_exec_opts o = {.threads = threads, .no_fuse = no_fuse};
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "load: %s", err.msg);
    opt_array in[2] = {{OPT_DT_FLOAT, 2 + c->nsp, {c->N, c->C}, (void *)x, 0},
                       {OPT_DT_FLOAT, 2 + c->nsp, {c->N, c->M}, (void *)z, 0}};
    size_t xn = (size_t)(c->N * c->C), zn = (size_t)(c->N * c->M);
    for (int i = 0; i < c->nsp; i++) {
        in[0].dims[2 + i] = c->in[i];
        in[1].dims[2 + i] = c->z_bcast ? 1 : c->out[i];
        xn *= (size_t)c->in[i];
        zn *= (size_t)in[1].dims[2 + i];
    }
    in[0].nbytes = xn * sizeof(float);
    in[1].nbytes = zn * sizeof(float);
    opt_array outs[2] = {{0}};
    size_t n_out = opt_exec_n_outputs(e);
    cr_assert_eq(opt_exec_run(e, in, c->add ? 2 : 1, outs, n_out, &err), OPT_OK, "run: %s", err.msg);
    *out = outs[0];
    if (n_out > 1) opt_array_free(&outs[1]);
    if (explain) opt_exec_explain(e, explain, elen);
    opt_exec_free(e);
}

static void rand_chain(kt_rng *r, chain *c, int kind)
{
    memset(c, 0, sizeof *c);
    c->nsp = (int)kt_int(r, 1, 3);
    c->N = kt_int(r, 1, 2);
    if (kind == 1) { /* depthwise */
        c->nsp = (int)kt_int(r, 1, 2);
        c->group = c->C = c->M = kt_int(r, 1, 8);
    } else {
        c->group = kt_int(r, 1, 2);
        c->C = c->group * kt_int(r, 1, 5);
        c->M = c->group * kt_int(r, 1, 15);
    }
    for (int i = 0; i < c->nsp; i++) {
        for (;;) {
            c->in[i] = kt_int(r, 1, c->nsp == 3 ? 6 : 13);
            c->k[i] = kind == 2 ? 1 : kt_int(r, 1, 3);
            c->stride[i] = kind == 2 ? 1 : kt_int(r, 1, 2);
            c->dil[i] = kind == 2 ? 1 : kt_int(r, 1, 2);
            c->pad[i] = kind == 2 ? 0 : kt_int(r, 0, 1);
            int64_t span = c->in[i] + 2 * c->pad[i] - ((c->k[i] - 1) * c->dil[i] + 1);
            if (span >= 0) {
                c->out[i] = span / c->stride[i] + 1;
                break;
            }
        }
    }
    c->bias = kt_int(r, 0, 1);
    c->bn = kt_int(r, 0, 1);
    c->add = kt_int(r, 0, 1);
    c->add_first = kt_int(r, 0, 1);
    c->act = (int)kt_int(r, 0, 3);
    if (!c->bn && !c->add && !c->act) c->act = 1;
}

static size_t out_numel(const chain *c)
{
    size_t n = (size_t)(c->N * c->M);
    for (int i = 0; i < c->nsp; i++) n *= (size_t)c->out[i];
    return n;
}

/* Fused and unfused runs of chain c agree within KT_FUSE_REL, and the fused plan has one node. */
static void check_chain(const chain *c, kt_rng *r, int threads, const char *what, int trial)
{
    opt_model *m = chain_model(c, r, false);
    size_t xn = (size_t)(c->N * c->C);
    for (int i = 0; i < c->nsp; i++) xn *= (size_t)c->in[i];
    float *x = kt_randf(r, xn), *z = kt_randf(r, out_numel(c));
    opt_array yf = {0}, yu = {0};
    char ex[4096];
    run_chain(m, c, x, z, threads, false, &yf, ex, sizeof ex);
    run_chain(m, c, x, z, threads, true, &yu, NULL, 0);
    cr_assert(strstr(ex, "fused at load: 1 Conv chains"), "%s trial %d: not fused:\n%s", what, trial, ex);
    cr_assert_eq(yf.nbytes, yu.nbytes);
    double e = kt_max_rel(yf.data, yu.data, yf.nbytes / sizeof(float));
    cr_assert_leq(e, KT_FUSE_REL,
                  "%s trial %d (nsp %d, group %lld, C %lld, M %lld, bn %d, add %d, act %d): error %g",
                  what, trial, c->nsp, (long long)c->group, (long long)c->C, (long long)c->M, c->bn,
                  c->add, c->act, e);
    opt_array_free(&yf);
    opt_array_free(&yu);
    free(x), free(z);
    opt_model_free(m);
}

Test(fuse, conv_chains_compute_what_their_nodes_compute)
{
    kt_rng r = {0x5eed0001};
    for (int t = 0; t < 60; t++) {
        chain c;
        rand_chain(&r, &c, t % 3);
        check_chain(&c, &r, 1 + t % 2, t % 3 == 1 ? "depthwise" : t % 3 == 2 ? "pointwise" : "any", t);
    }
}

Test(fuse, large_layers_cross_the_blocking_boundaries)
{
    /* K = 64 * 9 = 576 (three K blocks), 41 x 41 = 1681 output columns (four chunks), M = 50 (a
     * partial row panel), two images; then a pointwise one with K = 300, a strided grouped one
     * and a depthwise one with rows wider than a vector. */
    kt_rng r = {0x5eed0002};
    chain c = {.nsp = 2, .N = 2, .C = 64, .M = 50, .group = 1, .in = {41, 41}, .k = {3, 3},
               .stride = {1, 1}, .pad = {1, 1}, .dil = {1, 1}, .out = {41, 41}, .bias = true,
               .bn = true, .add = true, .act = 1};
    check_chain(&c, &r, 1, "3x3", 0);
    check_chain(&c, &r, 2, "3x3 threaded", 0);
    chain p = {.nsp = 2, .N = 1, .C = 300, .M = 37, .group = 1, .in = {23, 29}, .k = {1, 1},
               .stride = {1, 1}, .pad = {0, 0}, .dil = {1, 1}, .out = {23, 29}, .bn = true, .act = 2};
    check_chain(&p, &r, 2, "pointwise", 1);
    chain s = {.nsp = 2, .N = 1, .C = 24, .M = 70, .group = 2, .in = {30, 31}, .k = {3, 3},
               .stride = {2, 2}, .pad = {1, 1}, .dil = {1, 1}, .out = {15, 16}, .bias = true,
               .add = true, .add_first = true, .act = 3};
    check_chain(&s, &r, 2, "strided grouped", 2);
    chain d = {.nsp = 2, .N = 2, .C = 6, .M = 6, .group = 6, .in = {9, 47}, .k = {3, 3},
               .stride = {2, 2}, .pad = {1, 1}, .dil = {1, 1}, .out = {5, 24}, .bias = true,
               .bn = true, .add = true, .act = 2};
    check_chain(&d, &r, 2, "wide depthwise", 3);
}

Test(fuse, a_residual_that_broadcasts_is_added_correctly)
{
    kt_rng r = {0x5eed0003};
    chain c = {.nsp = 2, .N = 1, .C = 5, .M = 7, .group = 1, .in = {9, 8}, .k = {3, 3},
               .stride = {1, 1}, .pad = {1, 1}, .dil = {1, 1}, .out = {9, 8}, .bias = true,
               .bn = true, .add = true, .z_bcast = true, .act = 1};
    check_chain(&c, &r, 1, "bcast", 0);
}

Test(fuse, values_read_elsewhere_are_not_fused_away)
{
    kt_rng r = {0x5eed0004};
    chain c = {.nsp = 2, .N = 1, .C = 3, .M = 4, .group = 1, .in = {6, 6}, .k = {3, 3},
               .stride = {1, 1}, .pad = {1, 1}, .dil = {1, 1}, .out = {6, 6}, .bn = true, .act = 1};
    opt_model *m = chain_model(&c, &r, true); /* the Conv's output is a graph output too */
    float *x = kt_randf(&r, 36 * 3);
    opt_array yf = {0}, yu = {0};
    char ex[4096];
    run_chain(m, &c, x, NULL, 1, false, &yf, ex, sizeof ex);
    run_chain(m, &c, x, NULL, 1, true, &yu, NULL, 0);
    cr_assert(strstr(ex, "fused at load: nothing"), "plan:\n%s", ex);
    cr_assert_eq(memcmp(yf.data, yu.data, yf.nbytes), 0);
    opt_array_free(&yf);
    opt_array_free(&yu);
    free(x);
    opt_model_free(m);
}

Test(fuse, results_are_bit_identical_across_runs_and_thread_counts)
{
    kt_rng r = {0x5eed0005};
    chain c = {.nsp = 2, .N = 1, .C = 40, .M = 64, .group = 1, .in = {28, 28}, .k = {3, 3},
               .stride = {1, 1}, .pad = {1, 1}, .dil = {1, 1}, .out = {28, 28}, .bias = true,
               .bn = true, .add = true, .act = 1};
    opt_model *m = chain_model(&c, &r, false);
    float *x = kt_randf(&r, 40 * 28 * 28), *z = kt_randf(&r, out_numel(&c));
    opt_array a = {0}, b = {0}, t2 = {0};
    run_chain(m, &c, x, z, 1, false, &a, NULL, 0);
    run_chain(m, &c, x, z, 1, false, &b, NULL, 0);
    run_chain(m, &c, x, z, 2, false, &t2, NULL, 0);
    cr_assert_eq(memcmp(a.data, b.data, a.nbytes), 0, "two runs differ");
    cr_assert_eq(memcmp(a.data, t2.data, a.nbytes), 0, "1 and 2 threads differ");
    opt_array_free(&a), opt_array_free(&b), opt_array_free(&t2);
    free(x), free(z);
    opt_model_free(m);
}

/* ---- Gelu ------------------------------------------------------------------------------------ */

typedef struct gelu_case {
    int group;        /* 0: (a * x) * 0.5, 1: (a * 0.5) * x, 2: a * (x * 0.5) */
    bool mul_form;    /* Mul(x, 1/sqrt 2) instead of Div(x, sqrt 2) */
    bool bias;        /* x = Add(x0, B) */
    int64_t blen;     /* B's length (rows' length or 1) */
    float sqrt2;      /* the constant written for sqrt 2 (or its inverse in the Mul form) */
    bool erf_out;     /* the Erf's output is also a graph output */
    bool x_out;       /* x (the bias Add's output) is also a graph output */
    int64_t last;     /* x0's last dim (131, or 1 to broadcast it against B) */
} gelu_case;

/* x0 [3, 97, last] (-> Add(B) -> x) -> the erf Gelu written out -> y. Rows of 131 values and more
 * than 32K of them, so two threads split the work inside a row. */
static opt_model *gelu_model(const gelu_case *c, kt_rng *r)
{
    opt_model *m = kt_model_empty(17, 8, "gelu");
    opt_graph *g = m->graph;
    int64_t xd[3] = {3, 97, c->last};
    g->inputs = calloc(1, sizeof *g->inputs);
    g->inputs[g->n_inputs++] = kt_vi("x0", OPT_DT_FLOAT, 3, xd);
    float k = c->sqrt2, one = 1.0f, half = 0.5f;
    kt_add_init(g, "k", NULL, 0, &k);
    kt_add_init(g, "one", NULL, 0, &one);
    kt_add_init(g, "half", NULL, 0, &half);
    const char *x = "x0";
    if (c->bias) {
        float *b = kt_randf(r, (size_t)c->blen);
        kt_add_init(g, "B", &c->blen, 1, b);
        free(b);
        kt_add_node(g, "Add", "bias", (const char *[]){"B", "x0"}, 2, "x");
        x = "x";
    }
    kt_add_node(g, c->mul_form ? "Mul" : "Div", "scale", (const char *[]){x, "k"}, 2, "d");
    kt_add_node(g, "Erf", "erf", (const char *[]){"d"}, 1, "e");
    kt_add_node(g, "Add", "plus1", (const char *[]){"one", "e"}, 2, "a");
    if (c->group == 0) {
        kt_add_node(g, "Mul", "times_x", (const char *[]){x, "a"}, 2, "m");
        kt_add_node(g, "Mul", "gelu", (const char *[]){"m", "half"}, 2, "y");
    } else if (c->group == 1) {
        kt_add_node(g, "Mul", "times_half", (const char *[]){"a", "half"}, 2, "m");
        kt_add_node(g, "Mul", "gelu", (const char *[]){x, "m"}, 2, "y");
    } else {
        kt_add_node(g, "Mul", "half_x", (const char *[]){"half", x}, 2, "h");
        kt_add_node(g, "Mul", "gelu", (const char *[]){"a", "h"}, 2, "y");
    }
    g->outputs = calloc(3, sizeof *g->outputs);
    g->outputs[g->n_outputs++] = kt_vi("y", OPT_DT_FLOAT, -1, NULL);
    if (c->erf_out) g->outputs[g->n_outputs++] = kt_vi("e", OPT_DT_FLOAT, -1, NULL);
    if (c->x_out) g->outputs[g->n_outputs++] = kt_vi("x", OPT_DT_FLOAT, -1, NULL);
    return m;
}

/* Runs m on x0 with fusion on or off; y receives the first output, ex the plan. */
static void run_gelu(const opt_model *m, const float *x0, int64_t last, bool no_fuse, int threads, opt_array *y,
                     char *ex, size_t elen)
{
    opt_exec_opts o = {.threads = threads, .no_fuse = no_fuse};
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "load: %s", err.msg);
    opt_array in = {OPT_DT_FLOAT, 3, {3, 97, last}, (void *)x0, (size_t)(3 * 97 * last) * sizeof(float)};
    opt_array outs[3] = {{0}};
    size_t n_out = opt_exec_n_outputs(e);
    cr_assert_eq(opt_exec_run(e, &in, 1, outs, n_out, &err), OPT_OK, "run: %s", err.msg);
    *y = outs[0];
    for (size_t i = 1; i < n_out; i++) opt_array_free(&outs[i]);
    if (ex) opt_exec_explain(e, ex, elen);
    opt_exec_free(e);
}

/* Fused (when want_gelu; two threads) and unfused runs agree within 4e-7 of the output's scale; the plan
 * reports want_gelu Gelus, want_bias of them with their bias (or nothing fused). */
static void check_gelu(const gelu_case *c, int want_gelu, int want_bias, const char *what)
{
    kt_rng r = {0x5eed0100};
    opt_model *m = gelu_model(c, &r);
    size_t n = (size_t)(3 * 97 * c->last);
    float *x0 = kt_randf(&r, n);
    for (size_t i = 0; i < n; i++) x0[i] *= 4.0f; /* erf's whole range, both branches */
    opt_array yf = {0}, yu = {0};
    char ex[4096], want[96];
    run_gelu(m, x0, c->last, false, 2, &yf, ex, sizeof ex);
    run_gelu(m, x0, c->last, true, 1, &yu, NULL, 0);
    if (want_gelu) snprintf(want, sizeof want, "%d Gelu (%d with their bias Add)", want_gelu, want_bias);
    else snprintf(want, sizeof want, "fused at load: nothing");
    cr_assert(strstr(ex, want), "%s: want '%s' in the plan:\n%s", what, want, ex);
    cr_assert_eq(yf.nbytes, yu.nbytes, "%s", what);
    double e = kt_max_rel(yf.data, yu.data, yf.nbytes / sizeof(float));
    cr_assert_leq(e, 4e-7, "%s: fused and unfused differ by %g", what, e);
    opt_array_free(&yf), opt_array_free(&yu);
    free(x0);
    opt_model_free(m);
}

Test(fuse, the_erf_gelu_written_out_becomes_one_node_in_every_form)
{
    const float s2 = 1.41421353816986083984375f, r2 = 0.707106769084930419921875f;
    for (int grp = 0; grp < 3; grp++)
        for (int mul = 0; mul < 2; mul++)
            for (int bias = 0; bias < 2; bias++) {
                gelu_case c = {.group = grp, .mul_form = mul, .bias = bias, .blen = 131, .sqrt2 = mul ? r2 : s2,
                               .last = 131};
                char what[64];
                snprintf(what, sizeof what, "grouping %d, %s, bias %d", grp, mul ? "Mul" : "Div", bias);
                check_gelu(&c, 1, bias, what);
            }
    gelu_case one = {.group = 0, .bias = true, .blen = 1, .sqrt2 = s2, .last = 131};
    check_gelu(&one, 1, 1, "a bias of one value");
    gelu_case wide = {.group = 1, .bias = true, .blen = 131, .sqrt2 = s2, .last = 1};
    check_gelu(&wide, 1, 1, "x0's last dim of 1 broadcast against the bias");
}

Test(fuse, a_gelu_is_left_alone_when_a_constant_is_off_or_a_value_is_read_elsewhere)
{
    const float s2 = 1.41421353816986083984375f;
    gelu_case off = {.group = 0, .sqrt2 = 1.4142f, .last = 131};
    check_gelu(&off, 0, 0, "sqrt 2 written as 1.4142");
    gelu_case seen = {.group = 1, .sqrt2 = s2, .erf_out = true, .last = 131};
    check_gelu(&seen, 0, 0, "the Erf's output is a graph output");
    gelu_case xo = {.group = 2, .bias = true, .blen = 131, .sqrt2 = s2, .x_out = true, .last = 131};
    check_gelu(&xo, 1, 0, "x is a graph output: the Gelu fuses, its bias Add stays");
}

/* ---- the packed SGEMM on its own ------------------------------------------------------------- */

typedef struct rowmajor {
    const float *b;
    int64_t ldb, K;
} rowmajor;

static void pack_rowmajor(const void *ctx, int64_t c0, int64_t nc, float *dst)
{
    const rowmajor *j = ctx;
    int64_t npan = (nc + NN_NR - 1) / NN_NR;
    for (int64_t p = 0; p < npan; p++)
        for (int64_t kk = 0; kk < j->K; kk++)
            for (int64_t l = 0; l < NN_NR; l++) {
                int64_t col = p * NN_NR + l;
                dst[(p * j->K + kk) * NN_NR + l] = col < nc ? j->b[kk * j->ldb + c0 + col] : 0.0f;
            }
}

Test(sgemm, packed_kernel_matches_a_plain_product_with_its_epilogue)
{
    if (!nn_sgemm_fast()) { /* the caller must fall back to OpenBLAS: it says so */
        float a = 1, c = 0;
        nn_epilogue ep = {0};
        cr_assert(!nn_sgemm_packed(NULL, 1, 1, 1, &a, pack_rowmajor, NULL, &c, 1, &ep));
        return;
    }
    kt_rng r = {0x5eed0006};
    /* M covers every last row panel the kernels take: 12 rows, 8 (5..8 left) and 4 (1..4). */
    const int64_t shapes[][3] = {{1, 1, 1},     {12, 32, 256}, {13, 33, 257}, {50, 600, 700},
                                 {5, 1100, 3},  {100, 17, 40}, {16, 48, 300}, {20, 40, 60},
                                 {8, 70, 9},    {28, 530, 20}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int64_t M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
        float *A = kt_randf(&r, (size_t)(M * K)), *B = kt_randf(&r, (size_t)(K * N));
        float *bias = kt_randf(&r, (size_t)M), *z = kt_randf(&r, (size_t)(M * N));
        float *C = calloc((size_t)(M * N), sizeof *C), *R = calloc((size_t)(M * N), sizeof *R);
        float *pa = malloc(nn_pack_a_floats(M, K) * sizeof *pa);
        nn_pack_a(A, K, 1, M, K, NULL, pa);
        rowmajor rm = {B, N, K};
        nn_epilogue ep = {bias, NULL, z, N, (int)(t % 4), -0.5f, 0.75f, 0.1f};
        cr_assert(nn_sgemm_packed(NULL, M, N, K, pa, pack_rowmajor, &rm, C, N, &ep));
        /* The serial entry with the caller's workspace gives the same bits. */
        float *C2 = calloc((size_t)(M * N), sizeof *C2);
        float *work = malloc(nn_sgemm_work_floats(N, K) * sizeof *work);
        cr_assert(nn_sgemm_packed_serial(M, N, K, pa, pack_rowmajor, &rm, C2, N, &ep, work));
        cr_assert(memcmp(C, C2, (size_t)(M * N) * sizeof *C) == 0, "M %lld: serial differs",
                  (long long)M);
        free(C2), free(work);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t kk = 0; kk < K; kk++) s += (double)A[i * K + kk] * B[kk * N + j];
                R[i * N + j] = (float)(s + bias[i] + z[i * N + j]);
            }
        nn_epilogue act = ep;
        nn_epilogue_rows(&act, R, N, 0, M, N, false);
        double e = kt_max_rel(C, R, (size_t)(M * N));
        cr_assert_leq(e, KT_F32_REL, "M %lld N %lld K %lld: error %g", (long long)M, (long long)N,
                      (long long)K, e);
        free(A), free(B), free(bias), free(z), free(C), free(R), free(pa);
    }
}
