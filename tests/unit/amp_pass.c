/*
 * tests/unit/amp_pass.c — the mixed-precision pass (libopt/passes/amp.c): allow ops become half,
 * deny ops stay float32 with one Cast at each boundary; infer ops take whichever precision needs
 * fewer casts; no Cast reads a Cast; weights beyond float16 are clamped and named; keep_io keeps
 * the graph's inputs and outputs float32 under their names.
 */
#include "libopt/passes/amp.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static opt_value_info *vi(const char *name)
{
    opt_value_info *v = opt_value_info_new();
    v->name = strdup(name);
    v->type = opt_type_new();
    v->type->kind = OPT_TYPE_TENSOR;
    v->type->has_elem_type = true;
    v->type->elem_type = OPT_DT_FLOAT;
    return v;
}

/* x -> ops[0] -> ... -> y; "MatMul" nodes get a [4,4] weight holding `wv`. */
static opt_model *chain(const char *const *ops, size_t n, float wv)
{
    opt_model *m = opt_model_new();
    m->opset_import = calloc(1, sizeof *m->opset_import);
    m->n_opset_import = 1;
    m->opset_import[0].domain = strdup("");
    m->opset_import[0].has_version = true;
    m->opset_import[0].version = 17;
    opt_graph *g = m->graph = opt_graph_new();
    char in[32] = "x", out[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(out, sizeof out, i + 1 == n ? "y" : "v%zu", i);
        char wn[32];
        snprintf(wn, sizeof wn, "w%zu", i);
        const char *ins[2] = {in, wn}, *o = out;
        bool mm = strcmp(ops[i], "MatMul") == 0;
        if (mm) {
            opt_tensor *t = opt_tensor_new();
            t->name = strdup(wn);
            int64_t d[2] = {4, 4};
            float v[16];
            for (int k = 0; k < 16; k++) v[k] = wv * (k % 3 - 1);
            opt_tensor_set_dims(t, d, 2, NULL);
            opt_tensor_set_f32(t, OPT_DT_FLOAT, v, 16, NULL);
            opt_graph_add_initializer(g, t, NULL);
        }
        char name[32];
        snprintf(name, sizeof name, "n%zu", i);
        opt_graph_insert_node(g, g->n_nodes, opt_node_make(ops[i], name, ins, mm ? 2 : 1, &o, 1), NULL);
        snprintf(in, sizeof in, "%s", out);
    }
    g->inputs = calloc(1, sizeof *g->inputs);
    g->inputs[0] = vi("x");
    g->n_inputs = 1;
    g->outputs = calloc(1, sizeof *g->outputs);
    g->outputs[0] = vi("y");
    g->n_outputs = 1;
    return m;
}

static size_t count_op(const opt_model *m, const char *op)
{
    size_t k = 0;
    for (size_t i = 0; i < m->graph->n_nodes; i++) k += strcmp(m->graph->nodes[i]->op_type, op) == 0;
    return k;
}

static void no_cast_chains(const opt_model *m)
{
    const opt_graph *g = m->graph;
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (strcmp(g->nodes[i]->op_type, "Cast")) continue;
        for (size_t j = 0; j < g->n_nodes; j++)
            if (strcmp(g->nodes[j]->op_type, "Cast") == 0)
                cr_assert_str_neq(g->nodes[i]->inputs[0], g->nodes[j]->outputs[0], "Cast reads a Cast");
    }
}

Test(amp_pass, deny_ops_stay_float_with_one_cast_at_each_boundary)
{
    const char *ops[] = {"MatMul", "Softmax", "MatMul"};
    opt_model *m = chain(ops, 3, 0.5f);
    opt_amp_opts o = {.keep_io = true};
    opt_amp_report r = {0};
    opt_error e = {0};
    cr_assert_eq(opt_amp_convert(m, &o, &r, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(r.n_nodes, 3);
    cr_assert_eq(r.n_converted, 2);
    cr_assert_eq(r.n_casts, 4); /* x->half, v0->float, v1->half, y->float */
    cr_assert_eq(count_op(m, "Cast"), 4);
    no_cast_chains(m);
    cr_assert_str_eq(m->graph->outputs[0]->name, "y");
    cr_assert_eq(m->graph->outputs[0]->type->elem_type, OPT_DT_FLOAT);
    cr_assert_eq(opt_graph_initializer(m->graph, "w0")->data_type, OPT_DT_FLOAT16);
    cr_assert_eq(opt_model_validate(m, NULL), OPT_OK);
    opt_amp_report_free(&r);
    opt_model_free(m);
}

Test(amp_pass, infer_ops_take_the_precision_that_needs_fewer_casts)
{
    const char *ops[] = {"Relu", "Softmax", "Relu"};
    opt_model *m = chain(ops, 3, 1);
    opt_amp_opts o = {.keep_io = true};
    opt_amp_report r = {0};
    cr_assert_eq(opt_amp_convert(m, &o, &r, NULL), OPT_OK);
    cr_assert_eq(r.n_casts, 0, "Relus next to float32 neighbours stay float32");
    cr_assert_eq(r.n_converted, 0);
    opt_amp_report_free(&r);
    opt_model_free(m);
    const char *ops2[] = {"MatMul", "Relu", "MatMul"};
    m = chain(ops2, 3, 1);
    cr_assert_eq(opt_amp_convert(m, &o, &r, NULL), OPT_OK);
    cr_assert_eq(r.n_casts, 2, "a Relu between two half MatMuls is half: no Cast between them");
    cr_assert_eq(r.n_converted, 3);
    opt_amp_report_free(&r);
    opt_model_free(m);
}

Test(amp_pass, all_converts_deny_ops_and_excluded_nodes_stay_float)
{
    const char *ops[] = {"MatMul", "Softmax", "MatMul"};
    opt_model *m = chain(ops, 3, 0.5f);
    opt_amp_opts o = {.keep_io = true, .all = true};
    opt_amp_report r = {0};
    cr_assert_eq(opt_amp_convert(m, &o, &r, NULL), OPT_OK);
    cr_assert_eq(r.n_converted, 3);
    cr_assert_eq(r.n_casts, 2);
    opt_amp_report_free(&r);
    opt_model_free(m);
    m = chain(ops, 3, 0.5f);
    const char *ex[] = {"n2"};
    opt_amp_opts o2 = {.keep_io = true, .all = true, .exclude = ex, .n_exclude = 1};
    cr_assert_eq(opt_amp_convert(m, &o2, &r, NULL), OPT_OK);
    cr_assert_eq(r.n_converted, 2);
    cr_assert_eq(r.n_float, 1);
    cr_assert_str_eq(r.float_nodes[0], "n2");
    opt_amp_report_free(&r);
    opt_model_free(m);
}

Test(amp_pass, weights_beyond_float16_are_clamped_and_named)
{
    const char *ops[] = {"MatMul"};
    opt_model *m = chain(ops, 1, 1e6f);
    opt_amp_opts o = {0};
    opt_amp_report r = {0};
    cr_assert_eq(opt_amp_convert(m, &o, &r, NULL), OPT_OK);
    cr_assert_eq(r.n_clamped, 1);
    cr_assert_str_eq(r.clamped[0], "w0");
    const opt_tensor *w = opt_graph_initializer(m->graph, "w0");
    cr_assert_eq(opt_tensor_get(w, 0), -65504);
    cr_assert_eq(m->graph->inputs[0]->type->elem_type, OPT_DT_FLOAT16, "without keep_io the input is half");
    opt_amp_report_free(&r);
    opt_model_free(m);
}

Test(amp_pass, values_found_overflowing_keep_their_producer_and_consumers_float)
{
    const char *ops[] = {"MatMul", "Relu", "MatMul"};
    opt_model *m = chain(ops, 3, 1);
    const char *kv[] = {"v0"}, *why[] = {"reaches 1e5"};
    opt_amp_opts o = {.keep_io = true, .keep_values = kv, .keep_reasons = why, .n_keep_values = 1};
    opt_amp_report r = {0};
    cr_assert_eq(opt_amp_convert(m, &o, &r, NULL), OPT_OK);
    cr_assert_eq(r.n_float, 2);
    cr_assert_str_eq(r.float_nodes[0], "n0");
    cr_assert_str_eq(r.float_nodes[1], "n1");
    cr_assert_str_eq(r.float_reasons[0], "reaches 1e5");
    opt_amp_report_free(&r);
    opt_model_free(m);
}
