/*
 * libopt/exec/fuse.c — Conv chains to FusedConv, as a view of the model (see fuse.h).
 */
#include "libopt/exec/fuse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fz {
    const opt_model *m;
    const opt_graph *g;
    opt_graph_index *ix;
    int opset;      /* of the ONNX domain */
    bool *dead;     /* per original node */
    opt_node **repl; /* per original node: the fused node replacing it, or NULL */
} fz;

static bool is_op(const opt_node *n, const char *op)
{
    return n && opt_node_is_onnx(n) && strcmp(n->op_type, op) == 0;
}

static bool named(const char *s)
{
    return s && s[0];
}

/* A float32, float16 or bfloat16 initializer called name (not external: the executor loads
 * those itself, but the rewrite then cannot look at them; they are still fine as operands). The
 * Conv kernel converts half weights to float32 once at load. */
static const opt_tensor *finit(const fz *f, const char *name)
{
    const opt_tensor *t = named(name) ? opt_graph_initializer(f->g, name) : NULL;
    if (!t) return NULL;
    int dt = t->data_type;
    return dt == OPT_DT_FLOAT || dt == OPT_DT_FLOAT16 || dt == OPT_DT_BFLOAT16 ? t : NULL;
}

/* The single consumer of name, or -1 when it has none, several, or is a graph output. */
static long sole_consumer(const fz *f, const char *name)
{
    size_t n;
    const size_t *c = opt_graph_consumers(f->ix, name, &n);
    if (n != 1 || opt_graph_is_output(f->ix, name) || f->dead[c[0]] || f->repl[c[0]]) return -1;
    return (long)c[0];
}

/* How many of n's input slots read name. */
static size_t reads(const opt_node *n, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < n->n_inputs; i++)
        if (named(n->inputs[i]) && strcmp(n->inputs[i], name) == 0) k++;
    return k;
}

/* Only the first output of a node may be used (BatchNormalization's optional outputs). */
static bool single_output(const opt_node *n)
{
    for (size_t i = 1; i < n->n_outputs; i++)
        if (named(n->outputs[i])) return false;
    return n->n_outputs >= 1 && named(n->outputs[0]);
}

static bool bn_foldable(const fz *f, const opt_node *n)
{
    if (n->n_inputs < 5 || !single_output(n)) return false;
    if (f->opset >= 14 && opt_node_attr_int(n, "training_mode", 0) != 0) return false;
    if (f->opset <= 6 && opt_node_attr(n, "is_test") && opt_node_attr_int(n, "is_test", 0) == 0)
        return false;
    if (opt_node_attr(n, "spatial") && opt_node_attr_int(n, "spatial", 1) == 0) return false;
    for (int i = 1; i < 5; i++)
        if (!finit(f, n->inputs[i])) return false;
    return true;
}

/* Copies n's int, float, ints and string attributes to d. */
static opt_status copy_attrs(const opt_node *n, opt_node *d, opt_error *err)
{
    for (size_t i = 0; i < n->n_attrs; i++) {
        const opt_attr *a = &n->attrs[i];
        if (!a->name) continue;
        if (a->n_ints) {
            OPT_TRY(opt_node_set_attr_ints(d, a->name, a->ints, a->n_ints, err));
        } else if (a->has_s) {
            char *s = malloc(a->s.len + 1);
            if (!s) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            if (a->s.len) memcpy(s, a->s.data, a->s.len);
            s[a->s.len] = 0;
            opt_status st = opt_node_set_attr_string(d, a->name, s, err);
            free(s);
            OPT_TRY(st);
        } else if (a->has_i) {
            OPT_TRY(opt_node_set_attr_int(d, a->name, a->i, err));
        } else if (a->has_f) {
            OPT_TRY(opt_node_set_attr_float(d, a->name, a->f, err));
        }
    }
    return OPT_OK;
}

/* A new node of OPT_FUSE_DOMAIN (op, name, inputs ins[n_in], one output out), owned by v. */
static opt_status own_node(opt_fuse_view *v, const char *op, const char *name, const char *const *ins, size_t n_in,
                           const char *out, opt_node **made, opt_error *err)
{
    opt_node *n = opt_node_make(op, name, ins, n_in, &out, 1);
    if (!n) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    opt_node **p = realloc(v->own_nodes, (v->n_own_nodes + 1) * sizeof *p);
    if (!p) {
        opt_node_free(n);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    v->own_nodes = p;
    p[v->n_own_nodes++] = n;
    *made = n;
    n->domain = opt_strdup(OPT_FUSE_DOMAIN);
    return n->domain ? OPT_OK : opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
}

/* Tries to fuse the chain that starts at Conv node ci; *made receives the fused node or NULL. */
static opt_status fuse_conv(fz *f, opt_fuse_view *v, size_t ci, opt_error *err)
{
    const opt_node *conv = f->g->nodes[ci];
    if (conv->n_inputs < 2 || conv->n_outputs != 1 || !named(conv->outputs[0])) return OPT_OK;
    if (!finit(f, conv->inputs[1])) return OPT_OK;
    bool has_b = conv->n_inputs > 2 && named(conv->inputs[2]);
    if (has_b && !finit(f, conv->inputs[2])) return OPT_OK;
    const char *cur = conv->outputs[0];
    long bn = -1, add = -1, act = -1;
    const char *z = NULL;
    float lo = 0, hi = 0, alpha = 0.01f;
    const char *act_name = NULL;

    long c = sole_consumer(f, cur);
    if (c >= 0 && is_op(f->g->nodes[c], "BatchNormalization") && reads(f->g->nodes[c], cur) == 1 &&
        strcmp(f->g->nodes[c]->inputs[0], cur) == 0 && bn_foldable(f, f->g->nodes[c])) {
        bn = c;
        cur = f->g->nodes[c]->outputs[0];
        c = sole_consumer(f, cur);
    }
    if (c >= 0 && f->opset >= 7 && is_op(f->g->nodes[c], "Add") && f->g->nodes[c]->n_inputs == 2 &&
        reads(f->g->nodes[c], cur) == 1 && single_output(f->g->nodes[c])) {
        const opt_node *a = f->g->nodes[c];
        const char *other = strcmp(a->inputs[0], cur) == 0 ? a->inputs[1] : a->inputs[0];
        if (named(other) && !opt_graph_initializer(f->g, other)) {
            add = c;
            z = other;
            cur = a->outputs[0];
            c = sole_consumer(f, cur);
        }
    }
    if (c >= 0) {
        const opt_node *a = f->g->nodes[c];
        bool one = a->n_inputs >= 1 && named(a->inputs[0]) && strcmp(a->inputs[0], cur) == 0 &&
                   reads(a, cur) == 1 && single_output(a);
        if (one && is_op(a, "Relu")) {
            act = c;
            act_name = "Relu";
        } else if (one && is_op(a, "LeakyRelu")) {
            act = c;
            act_name = "LeakyRelu";
            alpha = opt_node_attr_float(a, "alpha", 0.01f);
        } else if (one && is_op(a, "Clip")) {
            if (opt_clip_bounds(f->g, a, f->opset, &lo, &hi)) {
                act = c;
                act_name = "Clip";
            }
        }
        if (act >= 0) cur = a->outputs[0];
    }
    if (bn < 0 && add < 0 && act < 0) return OPT_OK;

    const opt_node *bnn = bn >= 0 ? f->g->nodes[bn] : NULL;
    const char *ins[8] = {conv->inputs[0], conv->inputs[1], has_b ? conv->inputs[2] : "",
                          bnn ? bnn->inputs[1] : "", bnn ? bnn->inputs[2] : "",
                          bnn ? bnn->inputs[3] : "", bnn ? bnn->inputs[4] : "", z ? z : ""};
    opt_node *n;
    OPT_TRY(own_node(v, "FusedConv", conv->name, ins, z ? 8 : 7, cur, &n, err));
    OPT_TRY(copy_attrs(conv, n, err));
    if (bnn) {
        OPT_TRY(opt_node_set_attr_float(n, "epsilon", opt_node_attr_float(bnn, "epsilon", 1e-5f), err));
        v->n_bn++;
    }
    if (add >= 0) v->n_add++;
    if (act_name) {
        OPT_TRY(opt_node_set_attr_string(n, "activation", act_name, err));
        if (strcmp(act_name, "Clip") == 0) {
            OPT_TRY(opt_node_set_attr_float(n, "min", lo, err));
            OPT_TRY(opt_node_set_attr_float(n, "max", hi, err));
        }
        if (strcmp(act_name, "LeakyRelu") == 0) OPT_TRY(opt_node_set_attr_float(n, "alpha", alpha, err));
        v->n_act++;
    }
    f->repl[ci] = n;
    if (bn >= 0) f->dead[bn] = true;
    if (add >= 0) f->dead[add] = true;
    if (act >= 0) f->dead[act] = true;
    return OPT_OK;
}

/* ---- Gelu ------------------------------------------------------------------------------------ */

/* The value of a one-element float initializer called name, in *v. */
static bool scalar_init(const fz *f, const char *name, double *v)
{
    const opt_tensor *t = finit(f, name);
    uint64_t k;
    float x;
    opt_error e = {0};
    if (!t || opt_tensor_is_external(t) || !opt_tensor_numel(t, &k) || k != 1 || opt_tensor_to_f32(t, &x, &e) != OPT_OK)
        return false;
    *v = x;
    return true;
}

/* n is a binary node of ONNX type op with one operand a one-element initializer within a relative
 * 1e-6 of want (exactly want when want is 0.5 or 1) and the other operand value; when value is
 * NULL the other operand is returned in *other instead. */
static bool binary_with(const fz *f, const opt_node *n, const char *op, double want, const char *value,
                        const char **other)
{
    if (!is_op(n, op) || n->n_inputs != 2 || !single_output(n) || f->opset < 7) return false;
    bool exact = want == 0.5 || want == 1.0;
    for (int side = 0; side < 2; side++) {
        double c;
        if (strcmp(op, "Div") == 0 && side == 0) continue; /* x / c only */
        const char *k = n->inputs[side], *o = n->inputs[1 - side];
        if (!named(o) || !scalar_init(f, k, &c)) continue;
        if (exact ? c != want : fabs(c - want) > 1e-6 * want) continue;
        if (value && strcmp(o, value) != 0) continue;
        if (other) *other = o;
        return true;
    }
    return false;
}

/* n is a Mul of u and w, in either order. */
static bool mul_of(const opt_node *n, const char *u, const char *w)
{
    return is_op(n, "Mul") && n->n_inputs == 2 && single_output(n) && named(n->inputs[0]) && named(n->inputs[1]) &&
           ((strcmp(n->inputs[0], u) == 0 && strcmp(n->inputs[1], w) == 0) ||
            (strcmp(n->inputs[0], w) == 0 && strcmp(n->inputs[1], u) == 0));
}

/* The Gelu of erf as exporters write it, y = 0.5 * x * (1 + erf(x / sqrt(2))):
 *   Div(x, sqrt 2) or Mul(x, 1/sqrt 2) -> Erf -> Add(1) -> a, then y from a, x and 0.5 by two
 *   Muls in any of the three groupings ((a * x) * 0.5, (a * 0.5) * x, a * (x * 0.5)),
 * and, when x is Add(x0, B) with B a float32 vector initializer read by nothing else, that Add
 * too. Starts at node di (the Div or Mul by 1/sqrt 2). */
static opt_status fuse_gelu(fz *f, opt_fuse_view *v, size_t di, opt_error *err)
{
    const opt_node *d = f->g->nodes[di];
    const char *x = NULL;
    if (!binary_with(f, d, "Div", sqrt(2.0), NULL, &x) && !binary_with(f, d, "Mul", sqrt(0.5), NULL, &x))
        return OPT_OK;
    long e = sole_consumer(f, d->outputs[0]);
    if (e < 0 || !is_op(f->g->nodes[e], "Erf") || !single_output(f->g->nodes[e])) return OPT_OK;
    long a = sole_consumer(f, f->g->nodes[e]->outputs[0]);
    if (a < 0 || !binary_with(f, f->g->nodes[a], "Add", 1.0, f->g->nodes[e]->outputs[0], NULL)) return OPT_OK;
    const char *av = f->g->nodes[a]->outputs[0];
    long m1 = sole_consumer(f, av), m2 = -1, h = -1; /* h: Mul(x, 0.5) in the third grouping */
    if (m1 < 0 || !is_op(f->g->nodes[m1], "Mul") || f->g->nodes[m1]->n_inputs != 2 || !single_output(f->g->nodes[m1]) ||
        reads(f->g->nodes[m1], av) != 1)
        return OPT_OK;
    const opt_node *mn = f->g->nodes[m1];
    const char *mo = strcmp(mn->inputs[0], av) == 0 ? mn->inputs[1] : mn->inputs[0]; /* a's partner */
    long xm;                                                                          /* the Mul that reads x */
    if (strcmp(mo, x) == 0) { /* (a * x) * 0.5 */
        m2 = sole_consumer(f, mn->outputs[0]);
        if (m2 < 0 || !binary_with(f, f->g->nodes[m2], "Mul", 0.5, mn->outputs[0], NULL)) return OPT_OK;
        xm = m1;
    } else if (binary_with(f, mn, "Mul", 0.5, av, NULL)) { /* (a * 0.5) * x */
        m2 = sole_consumer(f, mn->outputs[0]);
        if (m2 < 0 || !mul_of(f->g->nodes[m2], mn->outputs[0], x)) return OPT_OK;
        xm = m2;
    } else { /* a * (x * 0.5) */
        h = opt_graph_producer(f->ix, mo);
        if (h < 0 || f->dead[h] || f->repl[h] || !binary_with(f, f->g->nodes[h], "Mul", 0.5, x, NULL) ||
            sole_consumer(f, mo) != m1)
            return OPT_OK;
        xm = h;
    }
    const char *y = f->g->nodes[m2 >= 0 ? m2 : m1]->outputs[0];

    /* x's producer, an Add of a bias vector, when nothing but the chain reads x */
    const char *ins[2] = {x, ""};
    long bias = opt_graph_producer(f->ix, x);
    size_t nx;
    const size_t *cx = opt_graph_consumers(f->ix, x, &nx);
    const opt_node *p = bias >= 0 ? f->g->nodes[bias] : NULL;
    if (!p || f->dead[bias] || f->repl[bias] || opt_graph_is_output(f->ix, x) || nx != 2 ||
        !((cx[0] == di && (long)cx[1] == xm) || ((long)cx[0] == xm && cx[1] == di)) || !is_op(p, "Add") ||
        p->n_inputs != 2 || !single_output(p))
        bias = -1;
    for (int side = 0; bias >= 0 && side < 2; side++) {
        const opt_tensor *b = opt_graph_initializer(f->g, p->inputs[side]);
        size_t nb;
        opt_graph_consumers(f->ix, p->inputs[side], &nb);
        if (b && b->data_type == OPT_DT_FLOAT && !opt_tensor_is_external(b) && b->n_dims == 1 && nb == 1 &&
            named(p->inputs[1 - side]) && !opt_graph_initializer(f->g, p->inputs[1 - side])) {
            ins[0] = p->inputs[1 - side];
            ins[1] = p->inputs[side];
            break;
        }
        if (side == 1) bias = -1;
    }

    opt_node *n;
    OPT_TRY(own_node(v, "Gelu", f->g->nodes[m2 >= 0 ? m2 : m1]->name, ins, bias >= 0 ? 2 : 1, y, &n, err));
    v->n_gelu++;
    if (bias >= 0) v->n_gelu_bias++;
    /* The fused node takes the place of the chain's last node, which every reader of y follows. */
    f->repl[m2 >= 0 ? m2 : m1] = n;
    f->dead[di] = f->dead[e] = f->dead[a] = true;
    if (m2 >= 0) f->dead[m1] = true;
    if (h >= 0) f->dead[h] = true;
    if (bias >= 0) f->dead[bias] = true;
    return OPT_OK;
}

void opt_fuse_view_free(opt_fuse_view *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->n_own_nodes; i++) opt_node_free(v->own_nodes[i]);
    free(v->own_nodes);
    free(v->graph.nodes);
    free(v->opsets);
    free(v);
}

opt_status opt_fuse(const opt_model *m, opt_fuse_view **out, opt_error *err)
{
    *out = NULL;
    const opt_graph *g = m->graph;
    if (!g || !g->n_nodes) return OPT_OK;
    fz f = {.m = m, .g = g};
    int64_t os = opt_model_opset(m, "");
    if (os < 0) os = opt_model_opset(m, "ai.onnx");
    f.opset = os < 0 ? 0 : os > 1000 ? 1000 : (int)os;
    opt_fuse_view *v = calloc(1, sizeof *v);
    f.dead = calloc(g->n_nodes, sizeof *f.dead);
    f.repl = calloc(g->n_nodes, sizeof *f.repl);
    opt_status s = OPT_OK;
    if (!v || !f.dead || !f.repl) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    s = opt_graph_index_build(g, &f.ix, err);
    if (s != OPT_OK) goto done;
    for (size_t i = 0; i < g->n_nodes && s == OPT_OK; i++)
        if (!f.dead[i] && !f.repl[i] && is_op(g->nodes[i], "Conv")) s = fuse_conv(&f, v, i, err);
    v->n_conv = v->n_own_nodes;
    for (size_t i = 0; i < g->n_nodes && s == OPT_OK; i++)
        if (!f.dead[i] && !f.repl[i] && (is_op(g->nodes[i], "Div") || is_op(g->nodes[i], "Mul")))
            s = fuse_gelu(&f, v, i, err);
    if (s != OPT_OK || v->n_own_nodes == 0) goto done;

    v->model = *m;
    v->model.graph = &v->graph;
    v->graph = *g;
    v->graph.nodes = calloc(g->n_nodes + 1, sizeof *v->graph.nodes);
    v->opsets = calloc(m->n_opset_import + 1, sizeof *v->opsets);
    if (!v->graph.nodes || !v->opsets) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        if (!f.dead[i]) v->graph.nodes[k++] = f.repl[i] ? f.repl[i] : g->nodes[i];
    v->graph.n_nodes = k;
    if (m->n_opset_import) memcpy(v->opsets, m->opset_import, m->n_opset_import * sizeof *v->opsets);
    v->opsets[m->n_opset_import] = (opt_opset){.domain = (char *)OPT_FUSE_DOMAIN, .has_version = true,
                                               .version = 1};
    v->model.opset_import = v->opsets;
    v->model.n_opset_import = m->n_opset_import + 1;
    *out = v;
    v = NULL;
done:
    opt_graph_index_free(f.ix);
    free(f.dead);
    free(f.repl);
    opt_fuse_view_free(v);
    return s;
}
