/*
 * tests/unit/exec_half.c — float16/bfloat16 on the CPU executor: the array conversions
 * (libopt/exec/cpu/convert.c: F16C and vectorised bfloat16) give the scalar conversions' bits, and
 * `mopt amp` models of Conv chains fuse at load (libopt/exec/fuse.c) and compute what the same
 * chain computes node by node and what the float32 model computes, within half precision.
 */
#include "libopt/exec/cpu/convert.h"
#include "libopt/passes/amp.h"
#include "tests/unit/kernels_util.h"

/* A half model against its float32 original: each rounding to float16 moves a value by at most
 * 2^-11 of itself; over a Conv chain (half input, half weights, half BatchNormalization
 * parameters, half residual) the output moves by a few of those, relative to the output's scale.
 * bfloat16 keeps 8 bits instead of 11. */
#define KT_F16_REL 4e-3
#define KT_BF16_REL 3e-2

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* float32 values that exercise the conversions: every half and every half midpoint (ties), their
 * neighbours, overflow and underflow boundaries, subnormals of both formats, NaNs and random bits. */
static float *probe_floats(size_t *n)
{
    size_t cap = 65536 * 4 + 200000 + 64, k = 0;
    float *v = malloc(cap * sizeof *v);
    cr_assert(v);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = opt_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        v[k++] = f;
        uint32_t u = bits_of(f);
        v[k++] = float_of(u + 0x1000u);          /* half an ulp above: a tie */
        v[k++] = float_of(u + 0x1001u);          /* just above the tie */
        v[k++] = float_of(u + 0x0fffu);          /* just below the tie */
    }
    const uint32_t special[] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u,
                                0x7fa00000u, 0x00000001u, 0x807fffffu, 0x477fe000u, 0x477ff000u,
                                0x477fefffu, 0x47800000u, 0x7f7fffffu, 0x33000000u, 0x33000001u,
                                0x32ffffffu, 0x387fc000u, 0x38800000u, 0x3f7fffffu, 0x3f808000u,
                                0x3f818000u, 0x3f80ffffu};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) v[k++] = float_of(special[i]);
    kt_rng r = {0xf16f16f1};
    for (int i = 0; i < 200000; i++) v[k++] = float_of((uint32_t)kt_next(&r));
    *n = k;
    return v;
}

static void check_f16_arrays(void);
static void check_lengths(void);

Test(half_convert, float16_arrays_give_the_scalar_conversions_bits)
{
    check_f16_arrays(); /* the widest forms this CPU has */
}

/* Criterion runs each test in its own process: the level is read at the first conversion. */
Test(half_convert, the_f16c_fallback_gives_the_same_bits)
{
    setenv("MOPT_CVT_LEVEL", "1", 1);
    check_f16_arrays();
    check_lengths();
}

Test(half_convert, the_scalar_fallback_gives_the_same_bits)
{
    setenv("MOPT_CVT_LEVEL", "0", 1);
    check_f16_arrays();
    check_lengths();
}

static void check_f16_arrays(void)
{
    uint16_t *h = malloc(65536 * sizeof *h);
    float *f = malloc(65536 * sizeof *f);
    cr_assert(h && f);
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    opt_cvt_f16_to_f32(h, f, 65536);
    for (uint32_t i = 0; i < 65536; i++) {
        float want = opt_f16_to_f32((uint16_t)i);
        if (isnan(want))
            cr_assert(isnan(f[i]) && signbit(f[i]) == signbit(want), "half %04x: %08x", i, bits_of(f[i]));
        else
            cr_assert_eq(bits_of(f[i]), bits_of(want), "half %04x: %08x, want %08x", i, bits_of(f[i]),
                         bits_of(want));
    }
    size_t n;
    float *v = probe_floats(&n);
    uint16_t *o = malloc(n * sizeof *o);
    cr_assert(o);
    opt_cvt_f32_to_f16(v, o, n);
    for (size_t i = 0; i < n; i++) {
        uint16_t want = opt_f32_to_f16(v[i]);
        bool snan = isnan(v[i]) && !(bits_of(v[i]) & 0x400000u);
        if (snan) /* made quiet: same sign and payload's top bits, quiet bit set */
            cr_assert_eq(o[i] | 0x200u, want | 0x200u, "float %08x: %04x, want %04x", bits_of(v[i]), o[i], want);
        else
            cr_assert_eq(o[i], want, "float %08x: %04x, want %04x", bits_of(v[i]), o[i], want);
    }
    free(v), free(o), free(h), free(f);
}

Test(half_convert, bfloat16_arrays_give_the_scalar_conversions_bits)
{
    uint16_t *h = malloc(65536 * sizeof *h);
    float *f = malloc(65536 * sizeof *f);
    cr_assert(h && f);
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    opt_cvt_bf16_to_f32(h, f, 65536);
    for (uint32_t i = 0; i < 65536; i++)
        cr_assert_eq(bits_of(f[i]), bits_of(opt_bf16_to_f32((uint16_t)i)), "bf16 %04x", i);
    size_t n;
    float *v = probe_floats(&n);
    uint16_t *o = malloc(n * sizeof *o);
    cr_assert(o);
    opt_cvt_f32_to_bf16(v, o, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(o[i], opt_f32_to_bf16(v[i]), "float %08x: %04x, want %04x", bits_of(v[i]), o[i],
                     opt_f32_to_bf16(v[i]));
    free(v), free(o), free(h), free(f);
}

Test(half_convert, every_length_and_offset_converts_exactly_its_elements)
{
    check_lengths();
}

static void check_lengths(void)
{
    /* The vector loops and their tails: lengths 0..70 at offsets 0..3, with guards after. */
    kt_rng r = {0x7a11};
    float src[80], back[80];
    uint16_t h[80];
    for (int i = 0; i < 80; i++) src[i] = kt_float(&r) * 100.0f;
    for (int dt = 0; dt < 2; dt++)
        for (size_t off = 0; off < 4; off++)
            for (size_t len = 0; len + off <= 74; len++) {
                for (int i = 0; i < 80; i++) h[i] = 0xABCD, back[i] = -7.0f;
                if (dt == 0) opt_cvt_f32_to_f16(src + off, h + off, len);
                else opt_cvt_f32_to_bf16(src + off, h + off, len);
                for (size_t i = 0; i < 80; i++) {
                    bool in = i >= off && i < off + len;
                    uint16_t want = !in ? 0xABCD : dt == 0 ? opt_f32_to_f16(src[i]) : opt_f32_to_bf16(src[i]);
                    cr_assert_eq(h[i], want, "dt %d off %zu len %zu: element %zu", dt, off, len, i);
                }
                if (dt == 0) opt_cvt_f16_to_f32(h + off, back + off, len);
                else opt_cvt_bf16_to_f32(h + off, back + off, len);
                for (size_t i = 0; i < 80; i++) {
                    bool in = i >= off && i < off + len;
                    float want = !in ? -7.0f : dt == 0 ? opt_f16_to_f32(h[i]) : opt_bf16_to_f32(h[i]);
                    cr_assert_eq(bits_of(back[i]), bits_of(want), "back: dt %d off %zu len %zu: %zu", dt,
                                 off, len, i);
                }
            }
}

/* ---- fused half Conv chains ------------------------------------------------------------------ */

typedef struct hchain {
    int64_t N, C, M, group, H, W, k, stride, pad, OH, OW;
    bool bn, add;
    int act; /* 0 none, 1 Relu, 2 Clip */
} hchain;

/* The float32 model x [-> Conv -> BatchNormalization] [-> Add(z)] [-> act] -> y, opset `opset`,
 * with the residual z a graph input; then, when to is not 0, `mopt amp --to TO --keep-io --all`
 * (the graph's inputs and output stay float32, every node becomes half; without --all the cast
 * minimisation keeps this small chain's tail float32, next to its float32 z and y). */
static opt_model *hchain_model(const hchain *c, kt_rng *r, int opset, int to)
{
    opt_model *m = kt_model_empty(opset, 10, "hchain");
    opt_graph *g = m->graph;
    opt_error err = {0};
    int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->M, c->C / c->group, c->k, c->k};
    int64_t zd[4] = {c->N, c->M, c->OH, c->OW};
    size_t wn = (size_t)(c->M * (c->C / c->group) * c->k * c->k);
    g->inputs = calloc(2, sizeof *g->inputs);
    g->inputs[g->n_inputs++] = kt_vi("x", OPT_DT_FLOAT, 4, xd);
    if (c->add) g->inputs[g->n_inputs++] = kt_vi("z", OPT_DT_FLOAT, 4, zd);
    float *w = kt_randf(r, wn), *b = kt_randf(r, (size_t)c->M);
    float scale = 1.0f / sqrtf((float)(wn / (size_t)c->M)); /* keeps the outputs near 1 */
    for (size_t i = 0; i < wn; i++) w[i] *= scale;
    kt_add_init(g, "W", wd, 4, w);
    kt_add_init(g, "B", &c->M, 1, b);
    kt_add_node(g, "Conv", "conv", (const char *[]){"x", "W", "B"}, 3, "c");
    opt_node *conv = g->nodes[g->n_nodes - 1];
    int64_t st[2] = {c->stride, c->stride}, pads[4] = {c->pad, c->pad, c->pad, c->pad};
    cr_assert(opt_node_set_attr_ints(conv, "strides", st, 2, &err) == OPT_OK);
    cr_assert(opt_node_set_attr_ints(conv, "pads", pads, 4, &err) == OPT_OK);
    cr_assert(opt_node_set_attr_int(conv, "group", c->group, &err) == OPT_OK);
    const char *cur = "c";
    if (c->bn) {
        float *s = kt_randf(r, (size_t)c->M), *sh = kt_randf(r, (size_t)c->M);
        float *mu = kt_randf(r, (size_t)c->M), *var = kt_randf(r, (size_t)c->M);
        for (int64_t i = 0; i < c->M; i++) var[i] = fabsf(var[i]) + 0.5f, s[i] += 1.5f;
        kt_add_init(g, "bn_s", &c->M, 1, s);
        kt_add_init(g, "bn_b", &c->M, 1, sh);
        kt_add_init(g, "bn_m", &c->M, 1, mu);
        kt_add_init(g, "bn_v", &c->M, 1, var);
        free(s), free(sh), free(mu), free(var);
        kt_add_node(g, "BatchNormalization", "bn", (const char *[]){cur, "bn_s", "bn_b", "bn_m", "bn_v"},
                 5, "n");
        cur = "n";
    }
    if (c->add) {
        kt_add_node(g, "Add", "add", (const char *[]){cur, "z"}, 2, "a");
        cur = "a";
    }
    if (c->act == 1) {
        kt_add_node(g, "Relu", "act", &cur, 1, "r");
        cur = "r";
    } else if (c->act == 2) {
        float lo = 0.0f, hi = 6.0f * 0.25f;
        kt_add_init(g, "lo", NULL, 0, &lo);
        kt_add_init(g, "hi", NULL, 0, &hi);
        kt_add_node(g, "Clip", "act", (const char *[]){cur, "lo", "hi"}, 3, "r");
        cur = "r";
    }
    g->outputs = calloc(1, sizeof *g->outputs);
    g->outputs[g->n_outputs++] = kt_vi(cur, OPT_DT_FLOAT, 4, zd);
    free(w), free(b);
    if (to) {
        opt_amp_opts o = {.to = to, .keep_io = true, .all = true};
        opt_amp_report rep = {0};
        cr_assert_eq(opt_amp_convert(m, &o, &rep, &err), OPT_OK, "amp: %s", err.msg);
        cr_assert_eq(rep.n_converted, rep.n_nodes, "amp converted %zu of %zu nodes (%s: %s)",
                     rep.n_converted, rep.n_nodes, rep.n_float ? rep.float_nodes[0] : "-",
                     rep.n_float ? rep.float_reasons[0] : "-");
        opt_amp_report_free(&rep);
    }
    return m;
}

/* Runs m on x (and z); out gets the output; explain (when not NULL) the plan. */
static void run_hchain(const opt_model *m, const hchain *c, const float *x, const float *z,
                       int threads, bool no_fuse, opt_array *out, char *explain, size_t elen)
{
    opt_exec_opts o = {.threads = threads, .no_fuse = no_fuse};
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "load: %s", err.msg);
    opt_array in[2] = {{OPT_DT_FLOAT, 4, {c->N, c->C, c->H, c->W}, (void *)x, 0},
                       {OPT_DT_FLOAT, 4, {c->N, c->M, c->OH, c->OW}, (void *)z, 0}};
    in[0].nbytes = (size_t)(c->N * c->C * c->H * c->W) * sizeof(float);
    in[1].nbytes = (size_t)(c->N * c->M * c->OH * c->OW) * sizeof(float);
    cr_assert_eq(opt_exec_run(e, in, c->add ? 2 : 1, out, 1, &err), OPT_OK, "run: %s", err.msg);
    cr_assert_eq(out->dtype, OPT_DT_FLOAT);
    if (explain) opt_exec_explain(e, explain, elen);
    opt_exec_free(e);
}

/* The half model of chain c: fused at load into one node, within tol of the float32 model and of
 * its own unfused run, and bit-identical on 1 and 2 threads. */
static void check_half_chain(const hchain *c, int to, int opset, double tol, const char *what)
{
    kt_rng r = {0x4a1f0000u + (uint64_t)c->M * 131 + (uint64_t)c->C};
    kt_rng r2 = r;
    opt_model *m32 = hchain_model(c, &r, opset, 0);
    opt_model *mh = hchain_model(c, &r2, opset, to);
    size_t xn = (size_t)(c->N * c->C * c->H * c->W), yn = (size_t)(c->N * c->M * c->OH * c->OW);
    float *x = kt_randf(&r, xn), *z = kt_randf(&r, yn);
    opt_array y32 = {0}, yf = {0}, yu = {0}, y2 = {0};
    char ex[4096];
    run_hchain(m32, c, x, z, 1, false, &y32, NULL, 0);
    run_hchain(mh, c, x, z, 1, false, &yf, ex, sizeof ex);
    run_hchain(mh, c, x, z, 1, true, &yu, NULL, 0);
    run_hchain(mh, c, x, z, 2, false, &y2, NULL, 0);
    cr_assert(strstr(ex, "fused at load: 1 Conv chains"), "%s: the half chain was not fused:\n%s", what, ex);
    cr_assert_eq(yf.nbytes, yn * sizeof(float));
    double e32 = kt_max_rel(yf.data, y32.data, yn), eu = kt_max_rel(yf.data, yu.data, yn);
    double eu32 = kt_max_rel(yu.data, y32.data, yn);
    cr_assert_leq(e32, tol, "%s: fused half vs float32 model: %g", what, e32);
    cr_assert_leq(eu, tol, "%s: fused vs unfused half: %g", what, eu);
    /* Fusing rounds once instead of after every node: never much further from float32. */
    cr_assert_leq(e32, eu32 + tol / 4, "%s: fused %g, unfused %g from float32", what, e32, eu32);
    cr_assert(memcmp(yf.data, y2.data, yf.nbytes) == 0, "%s: 1 and 2 threads differ", what);
    /* The output is the half value, widened: every element is exactly representable. */
    const float *yv = yf.data;
    for (size_t i = 0; i < yn; i++) {
        float back = to == OPT_DT_FLOAT16 ? opt_f16_to_f32(opt_f32_to_f16(yv[i]))
                                          : opt_bf16_to_f32(opt_f32_to_bf16(yv[i]));
        cr_assert_eq(bits_of(back), bits_of(yv[i]), "%s: output %zu is not a half value", what, i);
    }
    opt_array_free(&y32), opt_array_free(&yf), opt_array_free(&yu), opt_array_free(&y2);
    free(x), free(z);
    opt_model_free(m32);
    opt_model_free(mh);
}

Test(half_fuse, float16_conv_bn_add_relu_fuses_and_matches_the_float32_model)
{
    /* A ResNet block's second conv (3x3, BatchNormalization, residual, Relu), the packed path. */
    hchain c = {.N = 2, .C = 16, .M = 24, .group = 1, .H = 13, .W = 11, .k = 3, .stride = 1, .pad = 1,
                .OH = 13, .OW = 11, .bn = true, .add = true, .act = 1};
    check_half_chain(&c, OPT_DT_FLOAT16, 17, KT_F16_REL, "3x3 bn add relu");
    /* Strided, no residual, Clip (MobileNet's Relu6 shape). */
    hchain s = {.N = 1, .C = 8, .M = 40, .group = 1, .H = 17, .W = 17, .k = 3, .stride = 2, .pad = 1,
                .OH = 9, .OW = 9, .bn = true, .act = 2};
    check_half_chain(&s, OPT_DT_FLOAT16, 17, KT_F16_REL, "strided bn clip");
    /* Depthwise with BatchNormalization and Clip, and a pointwise projection with a residual. */
    hchain d = {.N = 2, .C = 12, .M = 12, .group = 12, .H = 10, .W = 37, .k = 3, .stride = 1,
                .pad = 1, .OH = 10, .OW = 37, .bn = true, .act = 2};
    check_half_chain(&d, OPT_DT_FLOAT16, 17, KT_F16_REL, "depthwise bn clip");
    hchain p = {.N = 1, .C = 32, .M = 16, .group = 1, .H = 7, .W = 9, .k = 1, .stride = 1, .pad = 0,
                .OH = 7, .OW = 9, .bn = true, .add = true};
    check_half_chain(&p, OPT_DT_FLOAT16, 17, KT_F16_REL, "pointwise bn add");
}

Test(half_fuse, bfloat16_conv_chains_fuse_at_opset_22)
{
    hchain c = {.N = 2, .C = 16, .M = 24, .group = 1, .H = 13, .W = 11, .k = 3, .stride = 1, .pad = 1,
                .OH = 13, .OW = 11, .bn = true, .add = true, .act = 1};
    check_half_chain(&c, OPT_DT_BFLOAT16, 22, KT_BF16_REL, "bf16 3x3 bn add relu");
    hchain d = {.N = 1, .C = 12, .M = 12, .group = 12, .H = 10, .W = 37, .k = 3, .stride = 2,
                .pad = 1, .OH = 5, .OW = 19, .bn = true, .act = 2};
    check_half_chain(&d, OPT_DT_BFLOAT16, 22, KT_BF16_REL, "bf16 depthwise bn clip");
}
