/*
 * tests/unit/quant_pass.c — the QDQ pass (libopt/passes/quant.c) and the executor-side int8
 * rewrite (libopt/exec/qdq_fuse.c) on a hand-built Gemm: weights become int8 symmetric per
 * output channel with scale absmax/127, the bias int32 at scale x_scale * w_scale, activations
 * get one shared Q/DQ pair; a missing range fails before any edit; excluded nodes stay float;
 * the fused int8 model computes exactly what the QDQ model computes in float.
 */
#include "libopt/exec/exec.h"
#include "libopt/exec/qdq_fuse.h"
#include "libopt/passes/quant.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static opt_tensor *init(const char *name, const int64_t *dims, size_t nd, const float *v, size_t n)
{
    opt_tensor *t = opt_tensor_new();
    t->name = strdup(name);
    opt_tensor_set_dims(t, dims, nd, NULL);
    opt_tensor_set_f32(t, OPT_DT_FLOAT, v, n, NULL);
    return t;
}

static opt_value_info *vi(const char *name, int64_t d0, int64_t d1)
{
    opt_value_info *v = opt_value_info_new();
    v->name = strdup(name);
    v->type = opt_type_new();
    v->type->kind = OPT_TYPE_TENSOR;
    v->type->has_elem_type = true;
    v->type->elem_type = OPT_DT_FLOAT;
    v->type->shape = calloc(1, sizeof *v->type->shape);
    v->type->shape->n_dim = 2;
    v->type->shape->dim = calloc(2, sizeof(opt_dim));
    v->type->shape->dim[0] = (opt_dim){.kind = OPT_DIM_PARAM, .param = strdup("N")};
    v->type->shape->dim[1] = (opt_dim){.kind = OPT_DIM_VALUE, .value = d1};
    (void)d0;
    return v;
}

/* x [N,4] -> fc1 (Gemm, W [3,4], b [3], transB) -> relu -> fc2 (Gemm, W2 [2,3]) -> y [N,2]. */
static opt_model *model(void)
{
    opt_model *m = opt_model_new();
    m->has_ir_version = true;
    m->ir_version = 8;
    m->opset_import = calloc(1, sizeof *m->opset_import);
    m->n_opset_import = 1;
    m->opset_import[0].domain = strdup("");
    m->opset_import[0].has_version = true;
    m->opset_import[0].version = 17;
    opt_graph *g = m->graph = opt_graph_new();
    static const float w[12] = {1, -2, 0.5f, 0.25f, 0, 0, 0, 0.1f, -3, 3, 1, 2};
    static const float b[3] = {0.5f, -0.25f, 1};
    static const float w2[6] = {1, 2, 3, -1, -2, -0.5f};
    int64_t d34[2] = {3, 4}, d3 = 3, d23[2] = {2, 3};
    opt_graph_add_initializer(g, init("W", d34, 2, w, 12), NULL);
    opt_graph_add_initializer(g, init("b", &d3, 1, b, 3), NULL);
    opt_graph_add_initializer(g, init("W2", d23, 2, w2, 6), NULL);
    const char *i1[3] = {"x", "W", "b"}, *o1 = "h", *i2 = "h", *o2 = "r", *i3[2] = {"r", "W2"}, *o3 = "y";
    opt_node *n1 = opt_node_make("Gemm", "fc1", i1, 3, &o1, 1), *n2 = opt_node_make("Relu", "relu", &i2, 1, &o2, 1),
             *n3 = opt_node_make("Gemm", "fc2", i3, 2, &o3, 1);
    opt_node_set_attr_int(n1, "transB", 1, NULL);
    opt_node_set_attr_int(n3, "transB", 1, NULL);
    opt_graph_insert_node(g, 0, n1, NULL);
    opt_graph_insert_node(g, 1, n2, NULL);
    opt_graph_insert_node(g, 2, n3, NULL);
    g->inputs = calloc(1, sizeof *g->inputs);
    g->inputs[0] = vi("x", -1, 4);
    g->n_inputs = 1;
    g->outputs = calloc(1, sizeof *g->outputs);
    g->outputs[0] = vi("y", -1, 2);
    g->n_outputs = 1;
    return m;
}

static bool ranges(void *ctx, const char *t, float *lo, float *hi)
{
    (void)ctx;
    if (strcmp(t, "x") == 0) *lo = -1, *hi = 1;
    else if (strcmp(t, "r") == 0) *lo = 0, *hi = 8;
    else if (strcmp(t, "y") == 0) *lo = -20, *hi = 20;
    else return false;
    return true;
}

static const opt_tensor *find(const opt_model *m, const char *name)
{
    return opt_graph_initializer(m->graph, name);
}

Test(quant_pass, weights_are_int8_per_channel_and_biases_int32_at_the_product_scale)
{
    opt_model *m = model();
    opt_quant_opts o = {.range = ranges};
    opt_quant_report r = {0};
    opt_error e = {0};
    cr_assert_eq(opt_quant_int8(m, &o, &r, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(r.n_quantized, 2);
    cr_assert_eq(r.n_weights, 2);
    cr_assert_eq(r.n_biases, 1);
    cr_assert_eq(r.n_activations, 3); /* x, r (fc1's output after its Relu), y (fc2's output) */
    const opt_tensor *wq = find(m, "W_quantized"), *ws = find(m, "W_scale"), *bq = find(m, "b_quantized");
    cr_assert(wq && ws && bq);
    cr_assert_eq(wq->data_type, OPT_DT_INT8);
    cr_assert_eq(bq->data_type, OPT_DT_INT32);
    float amax[3] = {2, 0.1f, 3};
    for (int c = 0; c < 3; c++) cr_assert_float_eq(opt_tensor_get(ws, c), amax[c] / 127, 1e-7);
    cr_assert_eq(opt_tensor_get(wq, 1), -127); /* -2 is row 0's extreme */
    cr_assert_eq(opt_tensor_get(wq, 7), 127);  /* 0.1 is row 1's */
    float xs = 2.0f / 255;                       /* x in [-1, 1], uint8 */
    cr_assert_eq(opt_tensor_get(bq, 0), nearbyint(0.5 / (xs * (2.0f / 127))));
    cr_assert_null(find(m, "W"), "the float weight is gone");
    cr_assert_eq(opt_model_validate(m, NULL), OPT_OK);
    opt_quant_report_free(&r);
    opt_model_free(m);
}

Test(quant_pass, a_missing_range_fails_before_any_edit)
{
    opt_model *m = model();
    opt_quant_opts o = {.range = NULL};
    opt_error e = {0};
    cr_assert_eq(opt_quant_int8(m, &o, NULL, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "no calibration range for tensor 'x'"), "%s", e.msg);
    cr_assert_eq(m->graph->n_nodes, 3);
    cr_assert_eq(m->graph->n_initializers, 3);
    opt_model_free(m);
}

Test(quant_pass, excluded_nodes_stay_float_with_their_reason)
{
    opt_model *m = model();
    const char *ex[] = {"fc2"};
    opt_quant_opts o = {.range = ranges, .exclude = ex, .n_exclude = 1};
    opt_quant_report r = {0};
    cr_assert_eq(opt_quant_int8(m, &o, &r, NULL), OPT_OK);
    cr_assert_eq(r.n_quantized, 1);
    cr_assert_eq(r.n_float, 1);
    cr_assert_str_eq(r.float_nodes[0], "fc2");
    cr_assert(strstr(r.float_reasons[0], "--exclude"));
    cr_assert_not_null(find(m, "W2"));
    opt_quant_report_free(&r);
    opt_model_free(m);
}

Test(quant_pass, the_int8_rewrite_computes_what_the_qdq_model_computes)
{
    opt_model *m = model();
    /* Outputs are quantized too, so both Gemms are int8 islands. */
    opt_quant_opts o = {.range = ranges};
    cr_assert_eq(opt_quant_int8(m, &o, NULL, NULL), OPT_OK);
    opt_qdq_view *v = NULL;
    opt_error e = {0};
    cr_assert_eq(opt_qdq_fuse(m, &v, &e), OPT_OK, "%s", e.msg);
    cr_assert_not_null(v, "fc1 -> relu -> Q is an int8 island");
    cr_assert_eq(v->n_gemm, 2);
    opt_exec *a = NULL, *b = NULL;
    opt_exec_opts eo = {.threads = 1}, sim = {.threads = 1, .no_qdq_fuse = true};
    cr_assert_eq(opt_exec_new(m, &sim, &a, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_exec_new(&v->model, &eo, &b, &e), OPT_OK, "%s", e.msg);
    opt_array in = {.dtype = OPT_DT_FLOAT, .ndim = 2, .dims = {5, 4}};
    cr_assert(opt_array_alloc(&in));
    float *x = in.data;
    for (int i = 0; i < 20; i++) x[i] = sinf((float)i) * 1.2f;
    opt_array ya, yb;
    cr_assert_eq(opt_exec_run(a, &in, 1, &ya, 1, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_exec_run(b, &in, 1, &yb, 1, &e), OPT_OK, "%s", e.msg);
    for (int i = 0; i < 10; i++)
        cr_assert_float_eq(((float *)ya.data)[i], ((float *)yb.data)[i], 1e-5, "output %d", i);
    opt_array_free(&ya);
    opt_array_free(&yb);
    opt_array_free(&in);
    opt_exec_free(a);
    opt_exec_free(b);
    opt_qdq_view_free(v);
    opt_model_free(m);
}

/* x [N,4] -> fc1 (Gemm, W [4,4]) -> relu -> r; s = Add(r, x) (a residual); fc2 (Gemm, W2 [2,4]) -> y. */
static opt_model *residual_model(void)
{
    opt_model *m = model();
    opt_graph *g = m->graph;
    static const float w[16] = {1, -2, 0.5f, 0.25f, 0, 0, 0, 0.1f, -3, 3, 1, 2, 0.5f, 0.5f, -1, 1};
    static const float w2[8] = {1, 2, 3, -1, -2, -0.5f, 1, 1};
    int64_t d44[2] = {4, 4}, d24[2] = {2, 4};
    opt_tensor_set_dims(opt_graph_initializer(g, "W"), d44, 2, NULL);
    opt_tensor_set_f32(opt_graph_initializer(g, "W"), OPT_DT_FLOAT, w, 16, NULL);
    opt_tensor_set_dims(opt_graph_initializer(g, "W2"), d24, 2, NULL);
    opt_tensor_set_f32(opt_graph_initializer(g, "W2"), OPT_DT_FLOAT, w2, 8, NULL);
    opt_graph_remove_initializer(g, "b");
    g->nodes[0]->n_inputs = 2;
    free(g->nodes[0]->inputs[2]);
    const char *ia[2] = {"r", "x"}, *oa = "s";
    opt_graph_insert_node(g, 2, opt_node_make("Add", "add", ia, 2, &oa, 1), NULL);
    free(g->nodes[3]->inputs[0]);
    g->nodes[3]->inputs[0] = strdup("s");
    return m;
}

static bool residual_ranges(void *ctx, const char *t, float *lo, float *hi)
{
    if (strcmp(t, "s") == 0) {
        *lo = -1, *hi = 9;
        return true;
    }
    return ranges(ctx, t, lo, hi);
}

static bool has_q_of(const opt_model *m, const char *name)
{
    for (size_t i = 0; i < m->graph->n_nodes; i++)
        if (strcmp(m->graph->nodes[i]->op_type, "QuantizeLinear") == 0 && strcmp(m->graph->nodes[i]->inputs[0], name) == 0)
            return true;
    return false;
}

Test(quant_pass, an_add_of_two_quantized_activations_is_quantized_unless_excluded)
{
    for (int ex = 0; ex < 2; ex++) {
        opt_model *m = residual_model();
        const char *exl[] = {"Add"};
        opt_quant_opts o = {.range = residual_ranges, .exclude = exl, .n_exclude = (size_t)ex};
        opt_quant_report r = {0};
        opt_error e = {0};
        cr_assert_eq(opt_quant_int8(m, &o, &r, &e), OPT_OK, "%s", e.msg);
        cr_assert_eq(r.n_quantized, ex ? 2u : 3u);
        bool listed = false;
        for (size_t i = 0; i < r.n_quantized; i++) listed |= strcmp(r.quantized_nodes[i], "add") == 0;
        cr_assert_eq(listed, !ex);
        /* Both Add inputs read DequantizeLinear outputs when the Add is quantized. */
        const opt_node *add = NULL;
        for (size_t i = 0; i < m->graph->n_nodes; i++)
            if (strcmp(m->graph->nodes[i]->op_type, "Add") == 0) add = m->graph->nodes[i];
        cr_assert_not_null(add);
        for (int k = 0; k < 2 && !ex; k++)
            cr_assert(strstr(add->inputs[k], "DequantizeLinear_Output"), "input %d: %s", k, add->inputs[k]);
        cr_assert(has_q_of(m, "s"), "the Add's output feeds fc2, so it is quantized either way");
        opt_quant_report_free(&r);
        opt_model_free(m);
    }
}

Test(quant_pass, an_add_with_a_float_input_stays_float)
{
    opt_model *m = residual_model();
    const char *exl[] = {"fc1"}; /* r is then not quantized */
    opt_quant_opts o = {.range = residual_ranges, .exclude = exl, .n_exclude = 1};
    opt_quant_report r = {0};
    cr_assert_eq(opt_quant_int8(m, &o, &r, NULL), OPT_OK);
    cr_assert_eq(r.n_quantized, 1u);
    cr_assert_str_eq(r.quantized_nodes[0], "fc2");
    cr_assert(!has_q_of(m, "r"));
    opt_quant_report_free(&r);
    opt_model_free(m);
}
