/*
 * tests/unit/ir_graph.c — graphs in libopt/ir/graph.c and ir.c: the index of producers and
 * consumers (subgraph reads count as reads of the node that owns the subgraph), topological
 * order (stable, cycles named), validation messages that name the node and value, nesting bounds,
 * unique names, node and initializer insertion and removal, attributes, and mopt.history.
 */
#include "libopt/ir/ir.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static opt_value_info *vi(const char *name)
{
    opt_value_info *v = opt_value_info_new();
    v->name = opt_strdup(name);
    return v;
}

static void add_input(opt_graph *g, const char *name)
{
    g->inputs = realloc(g->inputs, (g->n_inputs + 1) * sizeof *g->inputs);
    g->inputs[g->n_inputs++] = vi(name);
}

static void add_output(opt_graph *g, const char *name)
{
    g->outputs = realloc(g->outputs, (g->n_outputs + 1) * sizeof *g->outputs);
    g->outputs[g->n_outputs++] = vi(name);
}

/* node(g, "name", "Op", "in1,in2", "out1"): appends a node; "" entries are omitted inputs. */
static opt_node *node(opt_graph *g, const char *name, const char *op, const char *ins, const char *outs)
{
    const char *iv[8], *ov[8];
    char ib[128], ob[128];
    size_t ni = 0, no = 0;
    snprintf(ib, sizeof ib, "%s", ins);
    snprintf(ob, sizeof ob, "%s", outs);
    for (char *p = ib, *q; *ib && p; p = q) {
        q = strchr(p, ',');
        if (q) *q++ = 0;
        iv[ni++] = p;
    }
    for (char *p = ob, *q; *ob && p; p = q) {
        q = strchr(p, ',');
        if (q) *q++ = 0;
        ov[no++] = p;
    }
    opt_node *n = opt_node_make(op, name, iv, ni, ov, no);
    cr_assert_not_null(n);
    cr_assert_eq(opt_graph_insert_node(g, g->n_nodes, n, NULL), OPT_OK);
    return n;
}

static opt_model *model_of(opt_graph *g)
{
    opt_model *m = opt_model_new();
    m->graph = g;
    return m;
}

/* X -> a:Relu -> A ; A,W -> b:Add -> B ; B,A -> c:Mul -> Y */
static opt_graph *chain(void)
{
    opt_graph *g = opt_graph_new();
    g->name = opt_strdup("chain");
    add_input(g, "X");
    opt_tensor *w = opt_tensor_new();
    w->name = opt_strdup("W");
    w->data_type = OPT_DT_FLOAT;
    opt_graph_add_initializer(g, w, NULL);
    node(g, "a", "Relu", "X", "A");
    node(g, "b", "Add", "A,W", "B");
    node(g, "c", "Mul", "B,A", "Y");
    add_output(g, "Y");
    return g;
}

static opt_graph *subgraph_reading(const char *outer, const char *out)
{
    opt_graph *b = opt_graph_new();
    b->name = opt_strdup("body");
    node(b, "inner", "Identity", outer, out);
    add_output(b, out);
    return b;
}

static void set_graph_attr(opt_node *n, const char *name, opt_graph *sub)
{
    n->attrs = realloc(n->attrs, (n->n_attrs + 1) * sizeof *n->attrs);
    memset(&n->attrs[n->n_attrs], 0, sizeof *n->attrs);
    n->attrs[n->n_attrs].name = opt_strdup(name);
    n->attrs[n->n_attrs].has_type = true;
    n->attrs[n->n_attrs].type = OPT_ATTR_GRAPH;
    n->attrs[n->n_attrs].g = sub;
    n->n_attrs++;
}

Test(ir_graph, index_knows_producers_consumers_and_outputs)
{
    opt_graph *g = chain();
    opt_graph_index *ix;
    cr_assert_eq(opt_graph_index_build(g, &ix, NULL), OPT_OK);
    cr_assert_eq(opt_graph_producer(ix, "A"), 0);
    cr_assert_eq(opt_graph_producer(ix, "Y"), 2);
    cr_assert_eq(opt_graph_producer(ix, "X"), -1, "graph inputs have no producer");
    cr_assert_eq(opt_graph_producer(ix, "W"), -1, "initializers have no producer");
    size_t n;
    const size_t *c = opt_graph_consumers(ix, "A", &n);
    cr_assert(n == 2 && c[0] == 1 && c[1] == 2, "A is read by b and c");
    c = opt_graph_consumers(ix, "W", &n);
    cr_assert(n == 1 && c[0] == 1);
    opt_graph_consumers(ix, "Y", &n);
    cr_assert_eq(n, 0);
    opt_graph_consumers(ix, "nothing", &n);
    cr_assert_eq(n, 0);
    cr_assert(opt_graph_is_output(ix, "Y") && !opt_graph_is_output(ix, "B"));
    opt_graph_index_free(ix);
    opt_model_free(model_of(g));
}

Test(ir_graph, a_node_reading_a_value_twice_is_one_consumer)
{
    opt_graph *g = opt_graph_new();
    add_input(g, "X");
    node(g, "sq", "Mul", "X,X", "Y");
    node(g, "opt", "Clip", "Y,,", "Z"); /* omitted optional inputs are not values */
    add_output(g, "Z");
    opt_graph_index *ix;
    cr_assert_eq(opt_graph_index_build(g, &ix, NULL), OPT_OK);
    size_t n;
    const size_t *c = opt_graph_consumers(ix, "X", &n);
    cr_assert(n == 1 && c[0] == 0);
    opt_graph_consumers(ix, "", &n);
    cr_assert_eq(n, 0, "the empty name is nobody's value");
    opt_graph_index_free(ix);
    opt_model *m = model_of(g);
    cr_assert_eq(opt_model_validate(m, NULL), OPT_OK);
    opt_model_free(m);
}

Test(ir_graph, subgraph_reads_are_reads_of_the_owning_node)
{
    opt_graph *g = opt_graph_new();
    add_input(g, "C");
    add_input(g, "X");
    opt_node *iff = node(g, "if", "If", "C", "Y");
    set_graph_attr(iff, "then_branch", subgraph_reading("T", "t_out"));
    set_graph_attr(iff, "else_branch", subgraph_reading("X", "e_out"));
    node(g, "late", "Neg", "X", "T"); /* produces T after the If that reads it */
    add_output(g, "Y");
    opt_graph_index *ix;
    cr_assert_eq(opt_graph_index_build(g, &ix, NULL), OPT_OK);
    size_t n;
    const size_t *c = opt_graph_consumers(ix, "T", &n);
    cr_assert(n == 1 && c[0] == 0, "the If reads T through its then_branch");
    opt_graph_index_free(ix);
    size_t *order;
    cr_assert_eq(opt_graph_topo_order(g, &order, NULL), OPT_OK);
    cr_assert(order[0] == 1 && order[1] == 0, "the producer of T comes before the If");
    free(order);
    opt_model *m = model_of(g);
    cr_assert_eq(opt_model_validate(m, NULL), OPT_OK);
    cr_assert_eq(opt_graph_topo_sort(g, NULL), OPT_OK);
    cr_assert_str_eq(g->nodes[0]->name, "late");
    opt_model_free(m);
}

Test(ir_graph, topological_order_sorts_and_keeps_sorted_graphs)
{
    opt_graph *g = chain();
    size_t *order;
    cr_assert_eq(opt_graph_topo_order(g, &order, NULL), OPT_OK);
    for (size_t i = 0; i < 3; i++) cr_assert_eq(order[i], i, "a sorted graph keeps its order");
    free(order);
    /* Reverse the nodes: sorting restores a, b, c. */
    opt_node *t = g->nodes[0];
    g->nodes[0] = g->nodes[2];
    g->nodes[2] = t;
    cr_assert_eq(opt_graph_topo_sort(g, NULL), OPT_OK);
    cr_assert(!strcmp(g->nodes[0]->name, "a") && !strcmp(g->nodes[1]->name, "b") && !strcmp(g->nodes[2]->name, "c"));
    opt_model_free(model_of(g));
}

Test(ir_graph, a_cycle_is_reported_naming_a_node_on_it)
{
    opt_graph *g = opt_graph_new();
    g->name = opt_strdup("loop");
    add_input(g, "X");
    node(g, "first", "Relu", "X", "A");
    node(g, "p", "Add", "A,R", "P");
    node(g, "q", "Neg", "P", "Q");
    node(g, "r", "Abs", "Q", "R");
    add_output(g, "Q");
    opt_error err = {0};
    size_t *order = (size_t *)1;
    cr_assert_eq(opt_graph_topo_order(g, &order, &err), OPT_ERR_INVALID);
    cr_assert_null(order);
    cr_assert(strstr(err.msg, "graph 'loop' has a cycle through node '"), "%s", err.msg);
    cr_assert(strstr(err.msg, "'p'") || strstr(err.msg, "'q'") || strstr(err.msg, "'r'"), "names a node on the cycle: %s",
              err.msg);
    opt_model *m = model_of(g);
    cr_assert_eq(opt_model_validate(m, &err), OPT_ERR_INVALID);
    cr_assert(strstr(err.msg, "cycle"), "%s", err.msg);
    opt_model_free(m);
}

Test(ir_graph, validation_names_the_node_and_the_value)
{
    opt_error err = {0};
    opt_graph *g = chain();
    free(g->nodes[1]->inputs[1]);
    g->nodes[1]->inputs[1] = opt_strdup("ghost");
    opt_model *m = model_of(g);
    cr_assert_eq(opt_model_validate(m, &err), OPT_ERR_INVALID);
    cr_assert_str_eq(err.msg, "node 'b' (Add): input 'ghost' is not defined by any node, initializer or graph input");
    opt_model_free(m);

    g = chain();
    free(g->nodes[2]->outputs[0]);
    g->nodes[2]->outputs[0] = opt_strdup("A");
    m = model_of(g);
    cr_assert_eq(opt_model_validate(m, &err), OPT_ERR_INVALID);
    cr_assert_str_eq(err.msg, "node 'c' (Mul): value 'A' is assigned more than once");
    opt_model_free(m);

    g = chain();
    add_output(g, "nowhere");
    m = model_of(g);
    cr_assert_eq(opt_model_validate(m, &err), OPT_ERR_INVALID);
    cr_assert_str_eq(err.msg, "graph 'chain': output 'nowhere' is not defined");
    opt_model_free(m);

    g = chain();
    free(g->nodes[0]->op_type);
    g->nodes[0]->op_type = opt_strdup("");
    m = model_of(g);
    cr_assert_eq(opt_model_validate(m, &err), OPT_ERR_INVALID);
    cr_assert(strstr(err.msg, "node 'a' (#0 in graph 'chain') has no op_type"), "%s", err.msg);
    opt_model_free(m);

    m = opt_model_new();
    cr_assert_eq(opt_model_validate(m, &err), OPT_ERR_INVALID, "a model without a graph");
    opt_model_free(m);
}

Test(ir_graph, subgraphs_see_outer_values_but_undefined_ones_are_named)
{
    opt_error err = {0};
    opt_graph *g = opt_graph_new();
    add_input(g, "C");
    add_input(g, "X");
    opt_node *iff = node(g, "if", "If", "C", "Y");
    set_graph_attr(iff, "then_branch", subgraph_reading("X", "t"));
    set_graph_attr(iff, "else_branch", subgraph_reading("missing", "e"));
    add_output(g, "Y");
    opt_model *m = model_of(g);
    cr_assert_eq(opt_model_validate(m, &err), OPT_ERR_INVALID);
    cr_assert_str_eq(err.msg, "node 'inner' (Identity): input 'missing' is not defined by any node, initializer or graph input");
    opt_model_free(m);
}

Test(ir_graph, nesting_deeper_than_64_subgraphs_is_a_limit)
{
    for (int depth = 60; depth <= 70; depth += 10) {
        opt_graph *inner = subgraph_reading("X", "y");
        for (int k = 0; k < depth; k++) {
            opt_graph *outer = opt_graph_new();
            opt_node *n = node(outer, "if", "If", "C", "y");
            set_graph_attr(n, "then_branch", inner);
            add_output(outer, "y");
            inner = outer;
        }
        add_input(inner, "C");
        add_input(inner, "X");
        opt_model *m = model_of(inner);
        opt_error err = {0};
        opt_status s = opt_model_validate(m, &err);
        if (depth == 60)
            cr_assert_eq(s, OPT_OK, "60 levels are fine: %s", err.msg);
        else
            cr_assert(s == OPT_ERR_LIMIT && strstr(err.msg, "nested deeper than 64"), "%d levels: %s", depth, err.msg);
        opt_model_free(m);
    }
}

Test(ir_graph, unique_names_avoid_every_name_in_use)
{
    opt_graph *g = chain();
    char *n = opt_graph_unique_name(g, "fresh");
    cr_assert_str_eq(n, "fresh", "an unused base is kept");
    free(n);
    const char *used[] = {"A", "W", "X", "Y", "a", "c"};
    for (size_t i = 0; i < sizeof used / sizeof used[0]; i++) {
        n = opt_graph_unique_name(g, used[i]);
        char want[16];
        snprintf(want, sizeof want, "%s_1", used[i]);
        cr_assert_str_eq(n, want, "'%s' is taken", used[i]);
        free(n);
    }
    node(g, "d", "Identity", "Y", "A_1");
    n = opt_graph_unique_name(g, "A");
    cr_assert_str_eq(n, "A_2");
    free(n);
    opt_model_free(model_of(g));
}

Test(ir_graph, insertion_and_removal_keep_order_and_free)
{
    opt_graph *g = chain();
    opt_node *first = opt_node_make("Identity", "zero", (const char *[]){"X"}, 1, (const char *[]){"X0"}, 1);
    cr_assert_eq(opt_graph_insert_node(g, 0, first, NULL), OPT_OK);
    opt_node *mid = opt_node_make("Identity", "mid", (const char *[]){"A"}, 1, (const char *[]){"M"}, 1);
    cr_assert_eq(opt_graph_insert_node(g, 2, mid, NULL), OPT_OK);
    opt_node *end = opt_node_make("Identity", "end", (const char *[]){"Y"}, 1, (const char *[]){"E"}, 1);
    cr_assert_eq(opt_graph_insert_node(g, 1000, end, NULL), OPT_OK, "a position past the end appends");
    const char *want[] = {"zero", "a", "mid", "b", "c", "end"};
    cr_assert_eq(g->n_nodes, 6);
    for (size_t i = 0; i < 6; i++) cr_assert_str_eq(g->nodes[i]->name, want[i]);
    opt_graph_remove_node(g, 2);
    opt_graph_remove_node(g, 0);
    opt_graph_remove_node(g, 99); /* out of range: nothing */
    const char *after[] = {"a", "b", "c", "end"};
    cr_assert_eq(g->n_nodes, 4);
    for (size_t i = 0; i < 4; i++) cr_assert_str_eq(g->nodes[i]->name, after[i]);
    cr_assert_not_null(opt_graph_node(g, "end"));
    cr_assert_null(opt_graph_node(g, "mid"));
    cr_assert(opt_graph_remove_initializer(g, "W") && !opt_graph_remove_initializer(g, "W"));
    cr_assert_null(opt_graph_initializer(g, "W"));
    opt_model *m = model_of(g);
    opt_error err = {0};
    cr_assert_eq(opt_model_validate(m, &err), OPT_ERR_INVALID, "b now reads a removed initializer");
    cr_assert(strstr(err.msg, "node 'b' (Add): input 'W'"), "%s", err.msg);
    opt_model_free(m);
}

Test(ir_graph, attributes_are_added_or_replaced)
{
    opt_node *n = opt_node_make("Conv", "conv", NULL, 0, NULL, 0);
    cr_assert_eq(opt_node_attr_int(n, "group", 1), 1, "absent: the default");
    cr_assert_eq(opt_node_set_attr_int(n, "group", 4, NULL), OPT_OK);
    cr_assert_eq(opt_node_set_attr_int(n, "group", 2, NULL), OPT_OK);
    cr_assert_eq(n->n_attrs, 1, "replaced, not added");
    cr_assert_eq(opt_node_attr_int(n, "group", 1), 2);
    const int64_t pads[4] = {1, 1, 2, 2};
    cr_assert_eq(opt_node_set_attr_ints(n, "pads", pads, 4, NULL), OPT_OK);
    const opt_attr *a = opt_node_attr(n, "pads");
    cr_assert(a && a->type == OPT_ATTR_INTS && a->n_ints == 4 && a->ints[3] == 2);
    cr_assert_eq(opt_node_set_attr_string(n, "auto_pad", "SAME_UPPER", NULL), OPT_OK);
    cr_assert_str_eq(opt_node_attr_string(n, "auto_pad", "NOTSET"), "SAME_UPPER");
    cr_assert_eq(opt_node_set_attr_float(n, "alpha", 0.5f, NULL), OPT_OK);
    cr_assert_eq(opt_node_attr_float(n, "alpha", 0), 0.5f);
    cr_assert_eq(opt_node_set_attr_string(n, "group", "x", NULL), OPT_OK);
    cr_assert_eq(opt_node_attr_int(n, "group", 7), 7, "retyped: no int any more");
    cr_assert_eq(n->n_attrs, 4);
    cr_assert(opt_node_is_onnx(n));
    n->domain = opt_strdup("ai.mopt");
    cr_assert(!opt_node_is_onnx(n));
    opt_node_free(n);
}

Test(ir_graph, history_appends_lines_and_metadata_replaces)
{
    opt_model *m = opt_model_new();
    cr_assert_null(opt_model_meta_get(m, "mopt.history"));
    cr_assert_eq(opt_model_history_append(m, "mopt 1: prune", NULL), OPT_OK);
    cr_assert_eq(opt_model_history_append(m, "mopt 1: cluster", NULL), OPT_OK);
    cr_assert_str_eq(opt_model_meta_get(m, "mopt.history"), "mopt 1: prune\nmopt 1: cluster");
    cr_assert_eq(opt_model_meta_set(m, "author", "a", NULL), OPT_OK);
    cr_assert_eq(opt_model_meta_set(m, "author", "b", NULL), OPT_OK);
    cr_assert_str_eq(opt_model_meta_get(m, "author"), "b");
    cr_assert_eq(m->n_metadata_props, 2, "one entry per key");
    opt_model_free(m);
}

Test(ir_graph, opset_lookup)
{
    opt_model *m = opt_model_new();
    m->opset_import = calloc(2, sizeof *m->opset_import);
    m->n_opset_import = 2;
    m->opset_import[0].domain = opt_strdup("");
    m->opset_import[0].has_version = true;
    m->opset_import[0].version = 17;
    m->opset_import[1].domain = opt_strdup("ai.mopt");
    m->opset_import[1].has_version = true;
    m->opset_import[1].version = 1;
    cr_assert_eq(opt_model_opset(m, ""), 17);
    cr_assert_eq(opt_model_opset(m, "ai.onnx"), 17, "ai.onnx is the default domain");
    cr_assert_eq(opt_model_opset(m, "ai.mopt"), 1);
    cr_assert_eq(opt_model_opset(m, "com.microsoft"), -1);
    opt_model_free(m);
}
