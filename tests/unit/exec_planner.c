/*
 * tests/unit/exec_planner.c — the executor's planner (libopt/exec/exec.c): buffers return to the
 * pool after their last reader so peak memory stays near the largest live set; an op or dtype
 * without a kernel fails at load naming the node; runs are bit-identical; aliases (Reshape)
 * share buffers safely; Constant nodes are folded at load; CUDA says why it is unavailable; an
 * executor that reads another's prepared weights (opt_exec_opts.share) computes the same bits.
 */
#include "kernels_util.h"

#include "formats/onnx.h"

#include "libopt/exec/kernel.h"

/* A model with input x (float [n]) and a chain of `len` nodes alternating Relu and
 * Add(prev, c) / Reshape, ending in output "y". Every intermediate is n floats. */
static opt_model *chain_model(int64_t n, int len, bool with_reshape)
{
    opt_model *m = opt_model_new();
    m->has_ir_version = true;
    m->ir_version = 8;
    m->opset_import = calloc(1, sizeof *m->opset_import);
    m->n_opset_import = 1;
    m->opset_import[0].domain = opt_strdup("");
    m->opset_import[0].has_version = true;
    m->opset_import[0].version = 13;
    opt_graph *g = m->graph = opt_graph_new();
    g->name = opt_strdup("chain");
    opt_error err = {0};
    g->inputs = calloc(1, sizeof *g->inputs);
    g->inputs[g->n_inputs++] = kt_vi("x", OPT_DT_FLOAT, 1, &n);
    /* c: a constant of ones; shape: [n] for Reshape. */
    float *ones = malloc((size_t)n * sizeof *ones);
    for (int64_t i = 0; i < n; i++) ones[i] = 1.0f;
    opt_tensor *c = opt_tensor_new();
    c->name = opt_strdup("c");
    cr_assert(opt_tensor_set_dims(c, &n, 1, &err) == OPT_OK);
    cr_assert(opt_tensor_set_raw(c, OPT_DT_FLOAT, ones, (size_t)n * 4, &err) == OPT_OK);
    cr_assert(opt_graph_add_initializer(g, c, &err) == OPT_OK);
    free(ones);
    opt_tensor *s = opt_tensor_new();
    s->name = opt_strdup("shape");
    int64_t one = 1;
    cr_assert(opt_tensor_set_dims(s, &one, 1, &err) == OPT_OK);
    cr_assert(opt_tensor_set_raw(s, OPT_DT_INT64, &n, 8, &err) == OPT_OK);
    cr_assert(opt_graph_add_initializer(g, s, &err) == OPT_OK);
    char prev[32] = "x", cur[32], name[32];
    for (int i = 0; i < len; i++) {
        snprintf(cur, sizeof cur, i == len - 1 ? "y" : "v%d", i);
        snprintf(name, sizeof name, "n%d", i);
        opt_node *nd;
        if (i % 3 == 0) {
            const char *in[] = {prev};
            const char *out[] = {cur};
            nd = opt_node_make("Relu", name, in, 1, out, 1);
        } else if (i % 3 == 1 || !with_reshape) {
            const char *in[] = {prev, "c"};
            const char *out[] = {cur};
            nd = opt_node_make("Add", name, in, 2, out, 1);
        } else {
            const char *in[] = {prev, "shape"};
            const char *out[] = {cur};
            nd = opt_node_make("Reshape", name, in, 2, out, 1);
        }
        cr_assert(opt_graph_insert_node(g, g->n_nodes, nd, &err) == OPT_OK);
        snprintf(prev, sizeof prev, "%s", cur);
    }
    g->outputs = calloc(1, sizeof *g->outputs);
    g->outputs[g->n_outputs++] = kt_vi("y", OPT_DT_FLOAT, 1, &n);
    return m;
}

static void run_chain(opt_model *m, int threads, const float *x, int64_t n, opt_array *y, size_t *peak)
{
    opt_exec_opts o = {.threads = threads};
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "load: %s", err.msg);
    opt_array in = {.dtype = OPT_DT_FLOAT, .ndim = 1, .dims = {n}, .data = (void *)x, .nbytes = (size_t)n * 4};
    cr_assert_eq(opt_exec_run(e, &in, 1, y, 1, &err), OPT_OK, "run: %s", err.msg);
    if (peak) *peak = opt_exec_peak_bytes(e);
    opt_exec_free(e);
}

Test(exec_planner, buffer_reuse_keeps_peak_near_the_largest_live_set)
{
    const int64_t n = 100000;
    const int len = 30;
    opt_model *m = chain_model(n, len, false);
    kt_rng r = {7};
    float *x = kt_randf(&r, (size_t)n);
    opt_array y = {0};
    size_t peak = 0;
    run_chain(m, 1, x, n, &y, &peak);
    size_t one = (size_t)n * 4, all = one * (size_t)len;
    /* A chain needs two live buffers at a time (input and output of a node). */
    cr_assert_lt(peak, all / 4, "peak %zu bytes vs %zu for all activations", peak, all);
    cr_assert_leq(peak, 3 * one + 3 * 64, "peak %zu bytes, one activation is %zu", peak, one);
    /* And the result is right: relu then +1 ten times = max(x,0)+10 after the first relu... */
    float *yy = y.data;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        for (int k = 0; k < len; k++) v = k % 3 == 0 ? (v > 0 ? v : 0) : v + 1.0f;
        cr_assert_eq(yy[i], v, "element %lld", (long long)i);
    }
    opt_array_free(&y);
    free(x);
    opt_model_free(m);
}

Test(exec_planner, aliases_share_buffers_and_keep_values_alive)
{
    const int64_t n = 5000;
    opt_model *m = chain_model(n, 12, true);
    kt_rng r = {11};
    float *x = kt_randf(&r, (size_t)n);
    opt_array y = {0};
    size_t peak;
    run_chain(m, 2, x, n, &y, &peak);
    float *yy = y.data;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        for (int k = 0; k < 12; k++) v = k % 3 == 0 ? (v > 0 ? v : 0) : k % 3 == 1 ? v + 1.0f : v;
        cr_assert_eq(yy[i], v);
    }
    cr_assert_leq(peak, 3 * (size_t)n * 4 + 3 * 64);
    opt_array_free(&y);
    free(x);
    opt_model_free(m);
}

Test(exec_planner, two_runs_give_bit_identical_outputs)
{
    const int64_t n = 300000; /* large enough to be split across threads */
    opt_model *m = chain_model(n, 9, true);
    kt_rng r = {3};
    float *x = kt_randf(&r, (size_t)n);
    for (int threads = 1; threads <= 3; threads++) {
        opt_array a = {0}, b = {0};
        run_chain(m, threads, x, n, &a, NULL);
        run_chain(m, threads, x, n, &b, NULL);
        cr_assert_eq(a.nbytes, b.nbytes);
        cr_assert(memcmp(a.data, b.data, a.nbytes) == 0, "threads=%d: runs differ", threads);
        opt_array_free(&a);
        opt_array_free(&b);
    }
    free(x);
    opt_model_free(m);
}

Test(exec_planner, unsupported_op_fails_at_load_naming_the_node)
{
    float x[4] = {0};
    kt_operand in[] = {{"x", OPT_DT_FLOAT, 1, {4}, x, false}};
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("NoSuchOp", 13, in, 1, odt, 1);
    opt_error err = {0};
    cr_assert_eq(kt_load_fails(m, &err), OPT_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "node 'node'") && strstr(err.msg, "NoSuchOp"), "message: %s", err.msg);
    cr_assert(!strchr(err.msg, '\n'), "one line: %s", err.msg);
    opt_model_free(m);
}

Test(exec_planner, unsupported_dtype_fails_at_load_naming_opset_and_dtype)
{
    int32_t x[4] = {0};
    kt_operand in[] = {{"x", OPT_DT_INT32, 1, {4}, x, false}};
    int odt[] = {OPT_DT_INT32};
    opt_model *m = kt_model("Sigmoid", 13, in, 1, odt, 1);
    opt_error err = {0};
    cr_assert_eq(kt_load_fails(m, &err), OPT_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "node 'node' (Sigmoid): no kernel for opset 13 / dtype int32"), "message: %s", err.msg);
    opt_model_free(m);
}

/* Initializers become constants without a copy when the tensor's bytes already have the array's
 * layout and alignment (raw_data, a typed field of the dtype's width); otherwise they are copied:
 * float16 carried one per int32, a misaligned buffer. A wrong size fails either way. */
Test(exec_planner, initializers_are_read_in_place_when_their_layout_allows)
{
    opt_error err = {0};
    float v[15];
    for (int i = 0; i < 15; i++) v[i] = (float)i - 7.5f;
    opt_tensor *t = opt_tensor_new();
    t->name = opt_strdup("w");
    cr_assert_eq(opt_tensor_set_dims(t, (int64_t[]){3, 5}, 2, &err), OPT_OK);
    cr_assert_eq(opt_tensor_set_raw(t, OPT_DT_FLOAT, v, sizeof v, &err), OPT_OK);
    opt_array a;
    bool borrowed;
    cr_assert_eq(opt_array_view_tensor(t, &a, &borrowed, &err), OPT_OK, "%s", err.msg);
    cr_assert(borrowed && a.data == t->raw_data.data && a.nbytes == sizeof v, "raw_data is read in place");
    cr_assert(a.dtype == OPT_DT_FLOAT && a.ndim == 2 && a.dims[0] == 3 && a.dims[1] == 5);

    /* The same bytes one float off a 16-byte boundary: copied, equal. */
    uint8_t *store = malloc(sizeof v + 16), *raw = t->raw_data.data;
    size_t off = (16 - (uintptr_t)store % 16) % 16 + 4;
    memcpy(store + off, v, sizeof v);
    t->raw_data.data = store + off;
    cr_assert_eq(opt_array_view_tensor(t, &a, &borrowed, &err), OPT_OK, "%s", err.msg);
    cr_assert(!borrowed && a.data != store + off && memcmp(a.data, v, sizeof v) == 0, "misaligned: a copy");
    opt_array_free(&a);

    /* A wrong length: the error opt_array_from_tensor gives, nothing allocated. */
    t->raw_data.len -= 4;
    cr_assert_eq(opt_array_view_tensor(t, &a, &borrowed, &err), OPT_ERR_INVALID);
    cr_assert(!borrowed && !a.data && strstr(err.msg, "'w'"), "%s", err.msg);
    t->raw_data.len += 4;
    t->raw_data.data = raw;
    free(store);

    /* float16 in int32_data: converted into a new array. */
    opt_tensor *h = opt_tensor_new();
    h->name = opt_strdup("h");
    cr_assert_eq(opt_tensor_set_dims(h, (int64_t[]){4}, 1, &err), OPT_OK);
    h->has_data_type = true;
    h->data_type = OPT_DT_FLOAT16;
    h->int32_data = malloc(4 * sizeof *h->int32_data);
    h->n_int32_data = 4;
    for (int i = 0; i < 4; i++) h->int32_data[i] = 0x3c00 + i; /* 1.0, then the next halves */
    cr_assert_eq(opt_array_view_tensor(h, &a, &borrowed, &err), OPT_OK, "%s", err.msg);
    cr_assert(!borrowed && a.nbytes == 8);
    for (int i = 0; i < 4; i++) cr_assert_eq(((uint16_t *)a.data)[i], 0x3c00 + i);
    opt_array_free(&a);
    opt_tensor_free(h);
    opt_tensor_free(t);
}

Test(exec_planner, constant_nodes_are_folded_at_load)
{
    /* y = x + Constant(2.5) */
    float x[3] = {1, 2, 3};
    kt_operand in[] = {{"x", OPT_DT_FLOAT, 1, {3}, x, false}, {"k", OPT_DT_FLOAT, 0, {0}, NULL, false}};
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("Add", 13, in, 1, odt, 1);
    opt_node *add = m->graph->nodes[0];
    add->inputs = realloc(add->inputs, 2 * sizeof *add->inputs);
    add->inputs[1] = opt_strdup("k");
    add->n_inputs = 2;
    const char *outs[] = {"k"};
    opt_node *c = opt_node_make("Constant", "const", NULL, 0, outs, 1);
    opt_error err = {0};
    cr_assert(opt_node_set_attr_float(c, "value_float", 2.5f, &err) == OPT_OK);
    cr_assert(opt_graph_insert_node(m->graph, 0, c, &err) == OPT_OK);
    (void)in;
    opt_exec_opts o = {.threads = 1};
    opt_exec *e = NULL;
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "%s", err.msg);
    char buf[2048];
    opt_exec_explain(e, buf, sizeof buf);
    cr_assert(strstr(buf, "1 constants folded"), "explain: %s", buf);
    opt_array a = {.dtype = OPT_DT_FLOAT, .ndim = 1, .dims = {3}, .data = x, .nbytes = 12}, y = {0};
    cr_assert_eq(opt_exec_run(e, &a, 1, &y, 1, &err), OPT_OK, "%s", err.msg);
    cr_assert_eq(((float *)y.data)[2], 5.5f);
    opt_array_free(&y);
    opt_exec_free(e);
    opt_model_free(m);
}

Test(exec_planner, wrong_input_shape_is_refused_at_run)
{
    float x[4] = {0};
    kt_operand in[] = {{"x", OPT_DT_FLOAT, 1, {4}, x, false}};
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("Relu", 13, in, 1, odt, 1);
    opt_exec_opts o = {.threads = 1};
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "%s", err.msg);
    opt_array a = {.dtype = OPT_DT_FLOAT, .ndim = 1, .dims = {3}, .data = x, .nbytes = 12}, y = {0};
    cr_assert_eq(opt_exec_run(e, &a, 1, &y, 1, &err), OPT_ERR_DATA);
    cr_assert(strstr(err.msg, "input 'x'"), "%s", err.msg);
    a.dtype = OPT_DT_DOUBLE;
    a.dims[0] = 4;
    cr_assert_eq(opt_exec_run(e, &a, 1, &y, 1, &err), OPT_ERR_DATA);
    opt_exec_free(e);
    opt_model_free(m);
}

Test(exec_planner, profile_counts_every_node_once_per_run)
{
    const int64_t n = 1000;
    opt_model *m = chain_model(n, 6, false);
    opt_exec_opts o = {.threads = 1, .profile = true};
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "%s", err.msg);
    float *x = calloc((size_t)n, 4);
    opt_array a = {.dtype = OPT_DT_FLOAT, .ndim = 1, .dims = {n}, .data = x, .nbytes = (size_t)n * 4}, y = {0};
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(opt_exec_run(e, &a, 1, &y, 1, &err), OPT_OK, "%s", err.msg);
        opt_array_free(&y);
    }
    const opt_exec_prof *p;
    size_t np = opt_exec_profile(e, &p);
    cr_assert_eq(np, 6);
    for (size_t i = 0; i < np; i++) cr_assert_eq(p[i].calls, 3, "node %s", p[i].node);
    cr_assert_str_eq(p[0].node, "n0");
    cr_assert_str_eq(p[0].op_type, "Relu");
    opt_exec_profile_reset(e);
    np = opt_exec_profile(e, &p);
    cr_assert_eq(p[0].calls, 0);
    free(x);
    opt_exec_free(e);
    opt_model_free(m);
}

Test(exec_planner, cuda_request_without_cuda_says_why)
{
    char why[128] = "";
    cr_assert_not(opt_cuda_available(why, sizeof why));
    cr_assert(why[0], "a reason is given");
}

/* lenet5's Convs and Gemms read executor a's packed weights in b (opt_exec_opts.share, unfused
 * plans as calibration makes them), and c is planned with the share of another model (lenet5
 * again, its weights halved: the same kernels at the same places, but other nodes, so c prepares
 * its own): b and c give a's outputs bit for bit. b is freed before a. */
Test(exec_planner, an_executor_sharing_another_s_weights_gives_the_same_bits)
{
    opt_model *m, *other;
    opt_error e = {0};
    cr_assert_eq(opt_onnx_load("../datasets/lenet5.onnx", NULL, &m, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_onnx_load("../datasets/lenet5.onnx", NULL, &other, &e), OPT_OK, "%s", e.msg);
    for (size_t i = 0; i < other->graph->n_initializers; i++) {
        opt_tensor *t = other->graph->initializers[i];
        float *v;
        uint64_t nv;
        cr_assert_eq(opt_tensor_to_f32_alloc(t, &v, &nv, &e), OPT_OK, "%s", e.msg);
        for (uint64_t j = 0; j < nv; j++) v[j] *= 0.5f;
        cr_assert_eq(opt_tensor_set_f32(t, OPT_DT_FLOAT, v, nv, &e), OPT_OK, "%s", e.msg);
        free(v);
    }
    opt_exec_opts o = {.threads = 1, .no_fuse = true};
    opt_exec *a, *b, *c, *x;
    cr_assert_eq(opt_exec_new(m, &o, &a, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_exec_new(other, &o, &x, &e), OPT_OK, "%s", e.msg);
    opt_exec_opts ob = o, oc = o;
    ob.share = a;
    oc.share = x;
    cr_assert_eq(opt_exec_new(m, &ob, &b, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_exec_new(m, &oc, &c, &e), OPT_OK, "%s", e.msg);
    kt_rng r = {11};
    const size_t n = 7 * 28 * 28;
    float *img = kt_randf(&r, n);
    opt_array in = {.dtype = OPT_DT_FLOAT, .ndim = 4, .dims = {7, 1, 28, 28}, .data = img, .nbytes = n * 4};
    opt_array ya = {0}, yb = {0}, yc = {0};
    cr_assert_eq(opt_exec_run(a, &in, 1, &ya, 1, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_exec_run(b, &in, 1, &yb, 1, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_exec_run(c, &in, 1, &yc, 1, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(ya.nbytes, 7 * 10 * 4);
    cr_assert(memcmp(ya.data, yb.data, ya.nbytes) == 0, "sharing a's weights changed the output");
    cr_assert(memcmp(ya.data, yc.data, ya.nbytes) == 0, "a share from another model changed the output");
    opt_exec_free(b);
    opt_array_free(&yb);
    cr_assert_eq(opt_exec_run(a, &in, 1, &yb, 1, &e), OPT_OK, "%s", e.msg); /* a keeps its state */
    cr_assert(memcmp(ya.data, yb.data, ya.nbytes) == 0);
    opt_array_free(&ya);
    opt_array_free(&yb);
    opt_array_free(&yc);
    opt_exec_free(c);
    opt_exec_free(a);
    opt_exec_free(x);
    opt_model_free(m);
    opt_model_free(other);
    free(img);
}
