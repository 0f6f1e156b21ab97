/*
 * libopt/exec/qdq_fuse.c — QDQ islands to integer ops, as a view of the model (see qdq_fuse.h).
 */
#include "libopt/exec/qdq_fuse.h"
#include "libopt/ir/strmap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const passthrough[] = {"MaxPool", "Flatten", "Reshape", "Transpose",
                                          "Squeeze", "Unsqueeze", "Identity"};

typedef struct fz {
    const opt_graph *g;
    opt_graph_index *ix;
    opt_qdq_view *v;
    bool *dead;            /* per original node */
    opt_node ***repl;      /* per original node: nodes to emit in its place (NULL-terminated) */
    opt_error *err;
    int64_t opset;         /* of the ONNX domain */
} fz;

static bool is_op(const opt_node *n, const char *op)
{
    return n && opt_node_is_onnx(n) && strcmp(n->op_type, op) == 0;
}

static const opt_node *producer(const fz *f, const char *name, long *idx)
{
    long p = name && name[0] ? opt_graph_producer(f->ix, name) : -1;
    if (idx) *idx = p;
    return p >= 0 && !f->dead[p] ? f->g->nodes[p] : NULL;
}

/* The single consumer of name (index), or -1 when it has none, several, or is a graph output. */
static long sole_consumer(const fz *f, const char *name)
{
    size_t n;
    const size_t *c = opt_graph_consumers(f->ix, name, &n);
    if (n != 1 || opt_graph_is_output(f->ix, name) || f->dead[c[0]]) return -1;
    return (long)c[0];
}

static const opt_tensor *cinit(const fz *f, const char *name)
{
    return name && name[0] ? opt_graph_initializer(f->g, name) : NULL;
}

static bool numel(const opt_tensor *t, uint64_t *n)
{
    return t && opt_tensor_numel(t, n) && !opt_tensor_is_external(t);
}

/* A DequantizeLinear node with constant scale and zero point (zero point required). */
typedef struct dq {
    const opt_node *n;
    const opt_tensor *s, *z, *q; /* q: the quantized input when it is an initializer */
    uint64_t ns;
    int axis;
} dq;

static bool get_dq(const fz *f, const char *value, dq *d)
{
    memset(d, 0, sizeof *d);
    d->n = producer(f, value, NULL);
    if (!is_op(d->n, "DequantizeLinear") || d->n->n_inputs < 3) return false;
    d->s = cinit(f, d->n->inputs[1]);
    d->z = cinit(f, d->n->inputs[2]);
    d->q = cinit(f, d->n->inputs[0]);
    uint64_t nz;
    if (!numel(d->s, &d->ns) || !numel(d->z, &nz) || nz != d->ns || d->s->data_type != OPT_DT_FLOAT) return false;
    d->axis = (int)opt_node_attr_int(d->n, "axis", 1);
    return true;
}

static bool is_q8(int dt)
{
    return dt == OPT_DT_UINT8 || dt == OPT_DT_INT8;
}

/* The Q at the end of an island: value -> [Relu | Clip ->] QuantizeLinear with scalar constant
 * params. */
typedef struct qout {
    long relu, q;  /* node indices (relu: the Relu or Clip, -1 when absent) */
    const opt_tensor *s, *z;
    bool clamp;    /* the activation needs the clamp [qlo, qhi] (Q's saturation does not do it) */
    int32_t qlo, qhi;
} qout;

/* The QuantizeLinear of o as ONNX defines it: saturate(round_half_even(v / scale) + zero point). */
static double q_of(const qout *o, float v, double lo, double hi)
{
    double q = (double)__builtin_nearbyintf(v / (float)opt_tensor_get(o->s, 0)) + opt_tensor_get(o->z, 0);
    return q < lo ? lo : q > hi ? hi : q;
}

static bool get_qout(const fz *f, const char *y, qout *o)
{
    o->relu = -1;
    o->clamp = false;
    long c = sole_consumer(f, y);
    if (c < 0) return false;
    const opt_node *cn = f->g->nodes[c], *act = NULL;
    if ((is_op(cn, "Relu") || is_op(cn, "Clip")) && cn->n_outputs == 1) {
        act = cn;
        o->relu = c;
        c = sole_consumer(f, cn->outputs[0]);
        if (c < 0) return false;
        cn = f->g->nodes[c];
    }
    if (!is_op(cn, "QuantizeLinear") || cn->n_inputs < 3) return false;
    o->q = c;
    o->s = cinit(f, cn->inputs[1]);
    o->z = cinit(f, cn->inputs[2]);
    uint64_t a, b;
    if (!numel(o->s, &a) || !numel(o->z, &b) || a != 1 || b != 1 || !is_q8(o->z->data_type)) return false;
    if (opt_node_attr_int(cn, "output_dtype", 0) != 0) return false;
    if (act) {
        bool u8 = o->z->data_type == OPT_DT_UINT8;
        double tlo = u8 ? 0 : -128, thi = u8 ? 255 : 127;
        float lo = 0.0f, hi = 3.402823e+38f;
        if (is_op(act, "Clip") && !opt_clip_bounds(f->g, act, f->opset, &lo, &hi)) return false;
        float s = (float)opt_tensor_get(o->s, 0);
        if (isnan(lo) || isnan(hi) || !(s > 0.0f)) return false;
        /* Q is monotone, so Q(Clip(v)) = min(max(Q(v), Q(lo)), Q(hi)) for every v: the integer
         * output clamped to [Q(lo), Q(hi)], exactly; nothing to do when those are Q's extremes
         * (for Relu: the zero point is the type's minimum) */
        double qlo = q_of(o, lo, tlo, thi), qhi = q_of(o, hi, tlo, thi);
        if (qlo > qhi) return false; /* an empty Clip (min > max) stays a node */
        o->clamp = qlo != tlo || qhi != thi;
        o->qlo = (int32_t)qlo;
        o->qhi = (int32_t)qhi;
    }
    return true;
}

static bool push_node(opt_node ***list, opt_node *n)
{
    size_t k = 0;
    while (*list && (*list)[k]) k++;
    opt_node **p = realloc(*list, (k + 2) * sizeof *p);
    if (!p) return false;
    p[k] = n;
    p[k + 1] = NULL;
    *list = p;
    return true;
}

static bool own_node(fz *f, opt_node *n, long at)
{
    opt_node **p = realloc(f->v->own_nodes, (f->v->n_own_nodes + 1) * sizeof *p);
    if (!p) return false;
    f->v->own_nodes = p;
    p[f->v->n_own_nodes++] = n;
    return push_node(&f->repl[at], n);
}

static bool own_init(fz *f, opt_tensor *t)
{
    opt_tensor **p = realloc(f->v->own_inits, (f->v->n_own_inits + 1) * sizeof *p);
    if (!p) return false;
    f->v->own_inits = p;
    p[f->v->n_own_inits++] = t;
    return true;
}

/* Copies the scalar/list attributes of src onto dst. */
static opt_status copy_attrs(opt_node *dst, const opt_node *src, opt_error *err)
{
    for (size_t i = 0; i < src->n_attrs; i++) {
        const opt_attr *a = &src->attrs[i];
        opt_status s = OPT_OK;
        switch (a->type) {
        case OPT_ATTR_INT: s = opt_node_set_attr_int(dst, a->name, a->i, err); break;
        case OPT_ATTR_FLOAT: s = opt_node_set_attr_float(dst, a->name, a->f, err); break;
        case OPT_ATTR_INTS: s = opt_node_set_attr_ints(dst, a->name, a->ints, a->n_ints, err); break;
        case OPT_ATTR_STRING: {
            char *str = malloc(a->s.len + 1);
            if (!str) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            memcpy(str, a->s.data, a->s.len);
            str[a->s.len] = 0;
            s = opt_node_set_attr_string(dst, a->name, str, err);
            free(str);
            break;
        }
        default: return opt_error_set(err, OPT_ERR_UNSUPPORTED, "attribute '%s' not copied", a->name);
        }
        OPT_TRY(s);
    }
    return OPT_OK;
}

static char *mkname(const opt_node *n, long i, const char *what)
{
    char buf[512];
    snprintf(buf, sizeof buf, "mopt.qdq_fuse/%s/%s", n->name && n->name[0] ? n->name : "", what);
    if (!n->name || !n->name[0]) snprintf(buf, sizeof buf, "mopt.qdq_fuse/#%ld/%s", i, what);
    return opt_strdup(buf);
}

/* The clamp of an absorbed activation, when Q's saturation does not do it, as n's attributes. */
static opt_status set_clamp(opt_node *n, const qout *o, opt_error *err)
{
    if (!o->clamp) return OPT_OK;
    OPT_TRY(opt_node_set_attr_int(n, OPT_QDQ_ATTR_QMIN, o->qlo, err));
    return opt_node_set_attr_int(n, OPT_QDQ_ATTR_QMAX, o->qhi, err);
}

/* Checks that the bias DQ holds int32 data with scale x_scale * w_scale[c] and zero point 0. */
static bool bias_ok(const dq *b, const dq *x, const dq *w)
{
    if (!b->q || b->q->data_type != OPT_DT_INT32) return false;
    float xs = (float)opt_tensor_get(x->s, 0);
    for (uint64_t c = 0; c < b->ns; c++) {
        double want = xs * opt_tensor_get(w->s, w->ns == 1 ? 0 : c), got = opt_tensor_get(b->s, c);
        if (fabs(want - got) > 1e-5 * fabs(want) || opt_tensor_get(b->z, c) != 0) return false;
    }
    return b->ns == 1 || b->ns == w->ns;
}

/* Conv, Gemm and MatMul islands. */
static opt_status try_compute(fz *f, long i)
{
    const opt_node *n = f->g->nodes[i];
    bool conv = is_op(n, "Conv"), gemm = is_op(n, "Gemm"), mm = is_op(n, "MatMul");
    if (!conv && !gemm && !mm) return OPT_OK;
    if (n->n_inputs < 2 || n->n_outputs != 1) return OPT_OK;
    dq x, w, b;
    qout o;
    if (!get_dq(f, n->inputs[0], &x) || x.ns != 1 || !get_dq(f, n->inputs[1], &w)) return OPT_OK;
    if (!get_qout(f, n->outputs[0], &o)) return OPT_OK;
    bool has_b = n->n_inputs > 2 && n->inputs[2][0];
    if (mm) {
        if (w.ns != 1 && !(w.q && w.q->n_dims == 2 && w.ns == (uint64_t)w.q->dims[1] && (w.axis == 1 || w.axis == -1)))
            return OPT_OK;
        if (!w.q && w.ns != 1) return OPT_OK;
    } else {
        if (!w.q || !is_q8(w.q->data_type)) return OPT_OK;
        if (has_b && (!get_dq(f, n->inputs[2], &b) || !bias_ok(&b, &x, &w))) return OPT_OK;
    }
    if (conv && w.ns != 1 && !(w.axis == 0 && w.q->n_dims >= 3 && w.ns == (uint64_t)w.q->dims[0])) return OPT_OK;
    if (gemm) {
        if (opt_node_attr_int(n, "transA", 0) || opt_node_attr_float(n, "alpha", 1) != 1.0f ||
            opt_node_attr_float(n, "beta", 1) != 1.0f || w.q->n_dims != 2)
            return OPT_OK;
        bool tb = opt_node_attr_int(n, "transB", 0) != 0;
        int oc_axis = tb ? 0 : 1;
        if (w.ns != 1 && !(w.axis == oc_axis && w.ns == (uint64_t)w.q->dims[oc_axis])) return OPT_OK;
        if (has_b && b.q->n_dims != 1) return OPT_OK;
    }
    const opt_node *q = f->g->nodes[o.q];
    opt_error *err = f->err;
    opt_node *nn = NULL;
    char *name = NULL;
    if (conv || mm) {
        const char *in[9] = {x.n->inputs[0], x.n->inputs[1], x.n->inputs[2], w.n->inputs[0], w.n->inputs[1],
                             w.n->inputs[2], q->inputs[1], q->inputs[2], has_b ? b.n->inputs[0] : ""};
        name = mkname(n, i, conv ? "QLinearConv" : "QLinearMatMul");
        nn = name ? opt_node_make(conv ? "QLinearConv" : "QLinearMatMul", name, in, conv && has_b ? 9 : 8,
                                  (const char *const *)&q->outputs[0], 1)
                  : NULL;
        free(name);
        if (!nn || !own_node(f, nn, o.q)) goto nomem;
        if (conv) OPT_TRY(copy_attrs(nn, n, err));
        OPT_TRY(set_clamp(nn, &o, err));
        if (conv) f->v->n_conv++;
        else f->v->n_matmul++;
    } else {
        /* Gemm as a 1x1 QLinearConv: x [B,K] -> [B,K,1,1]; W -> [N,K,1,1]; y [B,N,1,1] -> [B,N]. */
        bool tb = opt_node_attr_int(n, "transB", 0) != 0;
        int64_t K = tb ? w.q->dims[1] : w.q->dims[0], N = tb ? w.q->dims[0] : w.q->dims[1];
        opt_tensor *w4 = opt_tensor_dup(w.q), *s4 = opt_tensor_new(), *s2 = opt_tensor_new();
        if (!w4 || !s4 || !s2 || !own_init(f, w4) || !own_init(f, s4) || !own_init(f, s2)) {
            opt_tensor_free(w4);
            opt_tensor_free(s4);
            opt_tensor_free(s2);
            goto nomem;
        }
        int64_t d4[4] = {N, K, 1, 1}, sh4[4] = {0, -1, 1, 1}, sh2[2] = {0, -1}, one = 4, two = 2;
        if (!tb) { /* transpose [K,N] into [N,K] */
            size_t len;
            const int8_t *src = opt_tensor_data(w.q, &len);
            int8_t *t = malloc((size_t)(N * K) + 1);
            if (!src || !t || len < (size_t)(N * K)) {
                free(t);
                return opt_error_set(err, OPT_ERR_UNSUPPORTED, "node '%s': weight layout", n->name ? n->name : "");
            }
            for (int64_t k = 0; k < K; k++)
                for (int64_t c = 0; c < N; c++) t[c * K + k] = src[k * N + c];
            opt_status s = opt_tensor_set_raw(w4, w.q->data_type, t, (size_t)(N * K), err);
            free(t);
            OPT_TRY(s);
        }
        free(w4->name);
        free(s4->name);
        free(s2->name);
        w4->name = mkname(n, i, "weight_nk11");
        s4->name = mkname(n, i, "shape4");
        s2->name = mkname(n, i, "shape2");
        if (!w4->name || !s4->name || !s2->name) goto nomem;
        OPT_TRY(opt_tensor_set_dims(w4, d4, 4, err));
        OPT_TRY(opt_tensor_set_dims(s4, &one, 1, err));
        OPT_TRY(opt_tensor_set_dims(s2, &two, 1, err));
        OPT_TRY(opt_tensor_set_raw(s4, OPT_DT_INT64, sh4, sizeof sh4, err));
        OPT_TRY(opt_tensor_set_raw(s2, OPT_DT_INT64, sh2, sizeof sh2, err));
        char *x4 = mkname(n, i, "x_nk11"), *y4 = mkname(n, i, "y_nk11");
        char *n1 = mkname(n, i, "Reshape_in"), *n2 = mkname(n, i, "QLinearConv"), *n3 = mkname(n, i, "Reshape_out");
        opt_node *r1 = NULL, *qc = NULL, *r2 = NULL;
        if (x4 && y4 && n1 && n2 && n3) {
            const char *i1[2] = {x.n->inputs[0], s4->name};
            const char *i2[9] = {x4, x.n->inputs[1], x.n->inputs[2], w4->name, w.n->inputs[1], w.n->inputs[2],
                                 q->inputs[1], q->inputs[2], has_b ? b.n->inputs[0] : ""};
            const char *i3[2] = {y4, s2->name};
            r1 = opt_node_make("Reshape", n1, i1, 2, (const char *const *)&x4, 1);
            qc = opt_node_make("QLinearConv", n2, i2, has_b ? 9 : 8, (const char *const *)&y4, 1);
            r2 = opt_node_make("Reshape", n3, i3, 2, (const char *const *)&q->outputs[0], 1);
        }
        free(x4);
        free(y4);
        free(n1);
        free(n2);
        free(n3);
        if (!r1 || !qc || !r2) {
            opt_node_free(r1);
            opt_node_free(qc);
            opt_node_free(r2);
            goto nomem;
        }
        if (!own_node(f, r1, o.q)) {
            opt_node_free(r1);
            opt_node_free(qc);
            opt_node_free(r2);
            goto nomem;
        }
        if (!own_node(f, qc, o.q)) {
            opt_node_free(qc);
            opt_node_free(r2);
            goto nomem;
        }
        if (!own_node(f, r2, o.q)) {
            opt_node_free(r2);
            goto nomem;
        }
        OPT_TRY(set_clamp(qc, &o, err));
        f->v->n_gemm++;
    }
    f->dead[i] = true;
    f->dead[o.q] = true;
    if (o.relu >= 0) {
        f->dead[o.relu] = true;
        f->v->n_act++;
        f->v->n_clamp += o.clamp;
    }
    return OPT_OK;
nomem:
    return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
}

/* DQ(a), DQ(b) -> Add [-> Relu] -> Q, all per tensor: com.microsoft QLinearAdd, whose kernel
 * computes exactly what the float ops compute (dequantize, add in float32, quantize), in one pass
 * over 8-bit data instead of five over float. */
static opt_status try_add(fz *f, long i)
{
    const opt_node *n = f->g->nodes[i];
    if (!is_op(n, "Add") || n->n_inputs != 2 || n->n_outputs != 1) return OPT_OK;
    dq a, b;
    qout o;
    if (!get_dq(f, n->inputs[0], &a) || a.ns != 1 || !get_dq(f, n->inputs[1], &b) || b.ns != 1) return OPT_OK;
    if (!is_q8(a.z->data_type) || !is_q8(b.z->data_type) || !get_qout(f, n->outputs[0], &o)) return OPT_OK;
    const opt_node *q = f->g->nodes[o.q];
    const char *in[8] = {a.n->inputs[0], a.n->inputs[1], a.n->inputs[2], b.n->inputs[0],
                         b.n->inputs[1], b.n->inputs[2], q->inputs[1], q->inputs[2]};
    char *name = mkname(n, i, "QLinearAdd");
    opt_node *nn = name ? opt_node_make("QLinearAdd", name, in, 8, (const char *const *)&q->outputs[0], 1) : NULL;
    free(name);
    if (nn) {
        free(nn->domain);
        nn->domain = opt_strdup("com.microsoft");
    }
    if (!nn || !nn->domain || !own_node(f, nn, o.q)) {
        opt_node_free(nn);
        return opt_error_set(f->err, OPT_ERR_NOMEM, "out of memory");
    }
    OPT_TRY(set_clamp(nn, &o, f->err));
    f->dead[i] = true;
    f->dead[o.q] = true;
    if (o.relu >= 0) {
        f->dead[o.relu] = true;
        f->v->n_act++;
        f->v->n_clamp += o.clamp;
    }
    f->v->n_add++;
    return OPT_OK;
}

/* DQ -> pass-through op -> Q with the same parameters: the op runs on the int8 data. */
static opt_status try_passthrough(fz *f, long i)
{
    const opt_node *p = f->g->nodes[i];
    bool ok = false;
    for (size_t k = 0; k < sizeof passthrough / sizeof *passthrough; k++) ok |= is_op(p, passthrough[k]);
    if (!ok || p->n_inputs < 1 || p->n_outputs < 1) return OPT_OK;
    for (size_t k = 1; k < p->n_outputs; k++)
        if (p->outputs[k][0]) return OPT_OK;
    dq x;
    if (!get_dq(f, p->inputs[0], &x) || x.ns != 1) return OPT_OK;
    long c = sole_consumer(f, p->outputs[0]);
    if (c < 0) return OPT_OK;
    const opt_node *q = f->g->nodes[c];
    if (!is_op(q, "QuantizeLinear") || q->n_inputs < 3 || opt_node_attr_int(q, "output_dtype", 0)) return OPT_OK;
    const opt_tensor *s = cinit(f, q->inputs[1]), *z = cinit(f, q->inputs[2]);
    uint64_t a, b;
    if (!numel(s, &a) || !numel(z, &b) || a != 1 || b != 1 || z->data_type != x.z->data_type) return OPT_OK;
    if (opt_tensor_get(s, 0) != opt_tensor_get(x.s, 0) || opt_tensor_get(z, 0) != opt_tensor_get(x.z, 0)) return OPT_OK;
    const char **in = malloc(p->n_inputs * sizeof *in);
    if (!in) return opt_error_set(f->err, OPT_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < p->n_inputs; k++) in[k] = p->inputs[k];
    in[0] = x.n->inputs[0];
    char *name = mkname(p, i, p->op_type);
    opt_node *nn = name ? opt_node_make(p->op_type, name, in, p->n_inputs, (const char *const *)&q->outputs[0], 1) : NULL;
    free(name);
    free(in);
    if (!nn || !own_node(f, nn, c)) {
        opt_node_free(nn);
        return opt_error_set(f->err, OPT_ERR_NOMEM, "out of memory");
    }
    OPT_TRY(copy_attrs(nn, p, f->err));
    f->dead[i] = true;
    f->dead[c] = true;
    f->v->n_passthrough++;
    return OPT_OK;
}

void opt_qdq_view_free(opt_qdq_view *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->n_own_nodes; i++) opt_node_free(v->own_nodes[i]);
    for (size_t i = 0; i < v->n_own_inits; i++) opt_tensor_free(v->own_inits[i]);
    free(v->own_nodes);
    free(v->own_inits);
    free(v->graph.nodes);
    free(v->graph.initializers);
    if (v->own_opset) {
        free(v->model.opset_import[v->model.n_opset_import - 1].domain);
        free(v->model.opset_import);
    }
    free(v);
}

opt_status opt_qdq_fuse(const opt_model *m, opt_qdq_view **out, opt_error *err)
{
    *out = NULL;
    const opt_graph *g = m->graph;
    bool any_dq = false;
    for (size_t i = 0; i < g->n_nodes && !any_dq; i++) any_dq = is_op(g->nodes[i], "DequantizeLinear");
    if (!any_dq) return OPT_OK;
    fz f = {.g = g, .err = err, .opset = opt_model_opset(m, "")};
    f.v = calloc(1, sizeof *f.v);
    f.dead = calloc(g->n_nodes + 1, sizeof *f.dead);
    f.repl = calloc(g->n_nodes + 1, sizeof *f.repl);
    opt_status s = OPT_OK;
    if (!f.v || !f.dead || !f.repl) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((s = opt_graph_index_build(g, &f.ix, err)) != OPT_OK) goto done;
    for (size_t i = 0; i < g->n_nodes && s == OPT_OK; i++)
        if (!f.dead[i]) s = try_compute(&f, (long)i);
    for (size_t i = 0; i < g->n_nodes && s == OPT_OK; i++)
        if (!f.dead[i]) s = try_add(&f, (long)i);
    for (size_t i = 0; i < g->n_nodes && s == OPT_OK; i++)
        if (!f.dead[i]) s = try_passthrough(&f, (long)i);
    if (s != OPT_OK) goto done;
    if (f.v->n_own_nodes == 0) goto done;

    /* The view's node list: survivors and replacements, then DQ nodes nobody reads dropped. */
    size_t cap = g->n_nodes + f.v->n_own_nodes + 1, k = 0;
    opt_node **nodes = malloc(cap * sizeof *nodes);
    if (!nodes) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!f.dead[i]) nodes[k++] = g->nodes[i];
        for (size_t j = 0; f.repl[i] && f.repl[i][j]; j++) nodes[k++] = f.repl[i][j];
    }
    opt_strmap used = {0};
    for (size_t i = 0; i < k; i++)
        for (size_t q = 0; q < nodes[i]->n_inputs; q++)
            if (nodes[i]->inputs[q][0]) opt_strmap_put(&used, nodes[i]->inputs[q], 1);
    for (size_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i]->name) opt_strmap_put(&used, g->outputs[i]->name, 1);
    size_t w = 0;
    for (size_t i = 0; i < k; i++)
        if (!(is_op(nodes[i], "DequantizeLinear") && !opt_strmap_get(&used, nodes[i]->outputs[0], NULL)))
            nodes[w++] = nodes[i];
    opt_strmap_free(&used);

    opt_qdq_view *v = f.v;
    v->model = *m;
    v->graph = *g;
    v->model.graph = &v->graph;
    v->graph.nodes = nodes;
    v->graph.n_nodes = w;
    v->graph.initializers = malloc((g->n_initializers + v->n_own_inits + 1) * sizeof *v->graph.initializers);
    if (!v->graph.initializers) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (g->n_initializers) memcpy(v->graph.initializers, g->initializers, g->n_initializers * sizeof *g->initializers);
    if (v->n_own_inits) /* own_inits is NULL when nothing was made (memcpy from NULL is undefined) */
        memcpy(v->graph.initializers + g->n_initializers, v->own_inits, v->n_own_inits * sizeof *v->own_inits);
    v->graph.n_initializers = g->n_initializers + v->n_own_inits;
    if (v->n_add && opt_model_opset(m, "com.microsoft") < 0) { /* QLinearAdd's domain */
        opt_opset *os = calloc(m->n_opset_import + 1, sizeof *os);
        char *dom = opt_strdup("com.microsoft");
        if (!os || !dom) {
            free(os);
            free(dom);
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (m->n_opset_import) memcpy(os, m->opset_import, m->n_opset_import * sizeof *os);
        os[m->n_opset_import].domain = dom;
        os[m->n_opset_import].has_version = true;
        os[m->n_opset_import].version = 1;
        v->model.opset_import = os;
        v->model.n_opset_import = m->n_opset_import + 1;
        v->own_opset = true;
    }
    if ((s = opt_graph_topo_sort(&v->graph, err)) != OPT_OK) goto done;
    *out = v;
    f.v = NULL;
done:
    if (f.v) {
        if (f.v->graph.nodes == NULL) {
            /* nodes array not yet attached */
        }
        opt_qdq_view_free(f.v);
    }
    for (size_t i = 0; f.repl && i < g->n_nodes; i++) free(f.repl[i]);
    free(f.repl);
    free(f.dead);
    opt_graph_index_free(f.ix);
    return s;
}
