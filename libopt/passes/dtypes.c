/*
 * libopt/passes/dtypes.c — dtype propagation for the precision passes (see dtypes.h).
 */
#include "libopt/passes/dtypes.h"

#include <stdlib.h>
#include <string.h>

void opt_dtypes_free(opt_dtypes *d)
{
    if (d) opt_strmap_free(&d->map);
}

int opt_dtypes_get(const opt_dtypes *d, const char *name)
{
    size_t v;
    return name && opt_strmap_get(&d->map, name, &v) ? (int)v : 0;
}

bool opt_dtypes_set(opt_dtypes *d, const char *name, int dtype)
{
    return opt_strmap_put(&d->map, name, (size_t)dtype);
}

/* Output types fixed by the op, whatever its inputs: op, output index (-1: all), dtype. */
static const struct {
    const char *op;
    int out;
    int dtype;
} fixed[] = {
    {"Shape", -1, OPT_DT_INT64},       {"Size", -1, OPT_DT_INT64},
    {"NonZero", -1, OPT_DT_INT64},     {"ArgMax", -1, OPT_DT_INT64},
    {"ArgMin", -1, OPT_DT_INT64},      {"Equal", -1, OPT_DT_BOOL},
    {"Less", -1, OPT_DT_BOOL},         {"Greater", -1, OPT_DT_BOOL},
    {"LessOrEqual", -1, OPT_DT_BOOL},  {"GreaterOrEqual", -1, OPT_DT_BOOL},
    {"Not", -1, OPT_DT_BOOL},          {"And", -1, OPT_DT_BOOL},
    {"Or", -1, OPT_DT_BOOL},           {"Xor", -1, OPT_DT_BOOL},
    {"IsNaN", -1, OPT_DT_BOOL},        {"IsInf", -1, OPT_DT_BOOL},
    {"TopK", 1, OPT_DT_INT64},         {"MaxPool", 1, OPT_DT_INT64},
    {"Dropout", 1, OPT_DT_BOOL},       {"MatMulInteger", -1, OPT_DT_INT32},
    {"ConvInteger", -1, OPT_DT_INT32}, {"Unique", 1, OPT_DT_INT64},
    {"Unique", 2, OPT_DT_INT64},       {"Unique", 3, OPT_DT_INT64},
    {"DynamicQuantizeLinear", 0, OPT_DT_UINT8}, {"DynamicQuantizeLinear", 1, OPT_DT_FLOAT},
    {"DynamicQuantizeLinear", 2, OPT_DT_UINT8},
};

/* Ops whose outputs take the type of input k instead of input 0. */
static const struct {
    const char *op;
    int in;
} from_input[] = {
    {"Where", 1}, {"DequantizeLinear", 1}, {"CastLike", 1}, {"QLinearConv", 7},
    {"QLinearMatMul", 7}, {"QuantizeLinear", 2},
};

static int node_out_dtype(const opt_node *n, size_t oi, const opt_dtypes *d)
{
    const char *op = n->op_type;
    if (!opt_node_is_onnx(n)) return 0;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (strcmp(op, fixed[i].op) == 0 && (fixed[i].out < 0 || (size_t)fixed[i].out == oi))
            return fixed[i].dtype;
    if (strcmp(op, "Cast") == 0) return (int)opt_node_attr_int(n, "to", 0);
    if (strcmp(op, "Constant") == 0) {
        const opt_attr *a;
        if ((a = opt_node_attr(n, "value")) && a->t) return a->t->data_type;
        if (opt_node_attr(n, "value_float") || opt_node_attr(n, "value_floats")) return OPT_DT_FLOAT;
        if (opt_node_attr(n, "value_int") || opt_node_attr(n, "value_ints")) return OPT_DT_INT64;
        if (opt_node_attr(n, "value_string") || opt_node_attr(n, "value_strings")) return OPT_DT_STRING;
        return 0;
    }
    if (strcmp(op, "ConstantOfShape") == 0) {
        const opt_attr *a = opt_node_attr(n, "value");
        return a && a->t ? a->t->data_type : OPT_DT_FLOAT;
    }
    if (strncmp(op, "Random", 6) == 0 || strcmp(op, "EyeLike") == 0 || strcmp(op, "Bernoulli") == 0) {
        int64_t dt = opt_node_attr_int(n, "dtype", 0);
        if (dt) return (int)dt;
        if (strstr(op, "Like") || strcmp(op, "EyeLike") == 0 || strcmp(op, "Bernoulli") == 0)
            return n->n_inputs ? opt_dtypes_get(d, n->inputs[0]) : 0;
        return OPT_DT_FLOAT;
    }
    if (strcmp(op, "QuantizeLinear") == 0 && (n->n_inputs < 3 || !n->inputs[2][0])) {
        int64_t dt = opt_node_attr_int(n, "output_dtype", 0);
        return dt ? (int)dt : OPT_DT_UINT8;
    }
    for (size_t i = 0; i < sizeof from_input / sizeof *from_input; i++)
        if (strcmp(op, from_input[i].op) == 0)
            return (size_t)from_input[i].in < n->n_inputs ? opt_dtypes_get(d, n->inputs[from_input[i].in]) : 0;
    if (strcmp(op, "If") == 0 || strcmp(op, "Loop") == 0 || strcmp(op, "Scan") == 0) return 0;
    for (size_t i = 0; i < n->n_inputs; i++)
        if (n->inputs[i][0]) return opt_dtypes_get(d, n->inputs[i]);
    return 0;
}

static bool put_vi(opt_dtypes *d, const opt_value_info *v)
{
    if (!v->name || !v->type || v->type->kind != OPT_TYPE_TENSOR || !v->type->has_elem_type) return true;
    return opt_dtypes_set(d, v->name, v->type->elem_type);
}

opt_status opt_dtypes_infer(const opt_graph *g, opt_dtypes *d, opt_error *err)
{
    for (size_t i = 0; i < g->n_inputs; i++)
        if (!put_vi(d, g->inputs[i])) goto nomem;
    for (size_t i = 0; i < g->n_initializers; i++)
        if (g->initializers[i]->name && !opt_dtypes_set(d, g->initializers[i]->name, g->initializers[i]->data_type))
            goto nomem;
    for (size_t i = 0; i < g->n_sparse_initializers; i++) {
        const opt_tensor *v = g->sparse_initializers[i]->values;
        if (v && v->name && !opt_dtypes_set(d, v->name, v->data_type)) goto nomem;
    }
    size_t *order = NULL;
    OPT_TRY(opt_graph_topo_order(g, &order, err));
    for (size_t k = 0; k < g->n_nodes; k++) {
        const opt_node *n = g->nodes[order[k]];
        for (size_t o = 0; o < n->n_outputs; o++) {
            if (!n->outputs[o][0]) continue;
            int dt = node_out_dtype(n, o, d);
            if (!dt) {
                const opt_value_info *v = opt_graph_value_info(g, n->outputs[o]);
                if (v && v->type && v->type->has_elem_type) dt = v->type->elem_type;
            }
            if (!opt_dtypes_set(d, n->outputs[o], dt)) {
                free(order);
                goto nomem;
            }
        }
    }
    free(order);
    /* Declared output types win over inferred ones (they are what the file promises). */
    for (size_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i]->type && g->outputs[i]->type->has_elem_type && g->outputs[i]->type->elem_type &&
            !put_vi(d, g->outputs[i]))
            goto nomem;
    return OPT_OK;
nomem:
    return opt_error_set(err, OPT_ERR_NOMEM, "out of memory inferring dtypes");
}
