/*
 * libopt/passes/quant.c — post-training INT8 quantization into QDQ form (see quant.h).
 *
 * The pass plans first (which nodes, which activations, which ranges) and edits only when the
 * plan is complete, so a missing range fails before the model is touched.
 */
#include "libopt/passes/quant.h"
#include "libopt/passes/dtypes.h"
#include "libopt/ir/strmap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const gain_ops[] = {"Conv", "ConvTranspose", "MatMul", "Gemm"};
/* Ops through which quantization commutes exactly (same scale in and out). */
static const char *const passthrough_ops[] = {"MaxPool", "Flatten", "Reshape", "Transpose",
                                              "Squeeze", "Unsqueeze", "Identity"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}

bool opt_quant_op_gains(const char *op_type)
{
    return in_list(op_type, gain_ops, sizeof gain_ops / sizeof *gain_ops);
}

void opt_quant_report_free(opt_quant_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_float; i++) {
        free(r->float_nodes[i]);
        free(r->float_reasons[i]);
    }
    for (size_t i = 0; i < r->n_quantized; i++) free(r->quantized_nodes[i]);
    free(r->float_nodes);
    free(r->float_reasons);
    free(r->quantized_nodes);
    memset(r, 0, sizeof *r);
}

/* An activation that gets a QDQ pair. */
typedef struct qact {
    const char *name;      /* the float value (borrowed from the graph) */
    const char *range_of;  /* whose calibrated range it uses (itself, or a pass-through output) */
    float scale;
    int32_t zp;
    char *dq_out;          /* name of the DequantizeLinear output (owned) */
    long producer;         /* node index or -1 */
    bool all;              /* every consumer reads the DQ output (outputs of quantized ops) */
    char *old_name;        /* a renamed graph output's old string, kept alive for the maps (owned) */
} qact;

typedef struct plan {
    opt_graph_index *ix;
    opt_dtypes dt;
    bool *quantize;        /* per node */
    qact *acts;
    size_t n_acts, cap_acts;
    opt_strmap act_ix;     /* name -> index into acts */
    bool per_tensor;
} plan;

static void plan_free(plan *p)
{
    opt_graph_index_free(p->ix);
    opt_dtypes_free(&p->dt);
    free(p->quantize);
    for (size_t i = 0; i < p->n_acts; i++) {
        free(p->acts[i].dq_out);
        free(p->acts[i].old_name);
    }
    free(p->acts);
    opt_strmap_free(&p->act_ix);
}

static bool is_init(const opt_graph *g, const char *name)
{
    return name[0] && opt_graph_initializer(g, name) != NULL;
}

/* Index of the weight input of a quantizable node, or -1 (MatMul of two activations). */
static int weight_input(const opt_graph *g, const opt_node *n)
{
    if (n->n_inputs < 2) return -1;
    return is_init(g, n->inputs[1]) ? 1 : -1;
}

/* The graph's own string for value `name`: its producer's output or the graph input. Node
 * inputs are rewired (freed) during the edit, so keys and names must not point at them. */
static const char *canon(const opt_graph *g, long producer, const char *name)
{
    if (producer >= 0) {
        const opt_node *n = g->nodes[producer];
        for (size_t k = 0; k < n->n_outputs; k++)
            if (strcmp(n->outputs[k], name) == 0) return n->outputs[k];
    }
    for (size_t i = 0; i < g->n_inputs; i++)
        if (g->inputs[i]->name && strcmp(g->inputs[i]->name, name) == 0) return g->inputs[i]->name;
    return name;
}

static opt_status add_act(plan *p, const opt_graph *g, const char *name, const char *range_of, long producer,
                          bool *added, opt_error *err)
{
    size_t k;
    *added = false;
    name = canon(g, producer, name);
    if (opt_strmap_get(&p->act_ix, name, &k)) return OPT_OK;
    if (p->n_acts == p->cap_acts) {
        size_t cap = p->cap_acts ? 2 * p->cap_acts : 32;
        qact *a = realloc(p->acts, cap * sizeof *a);
        if (!a) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        p->acts = a;
        p->cap_acts = cap;
    }
    p->acts[p->n_acts] = (qact){.name = name, .range_of = range_of, .producer = producer};
    if (!opt_strmap_put(&p->act_ix, name, p->n_acts))
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    p->n_acts++;
    *added = true;
    return OPT_OK;
}

/* Why node n (a quantizable op type) stays float, or NULL when it is quantized. */
static const char *float_reason(const opt_graph *g, const opt_node *n, const opt_quant_opts *o,
                                const opt_dtypes *dt)
{
    if (in_list(n->name ? n->name : "", o->exclude, o->n_exclude)) return "excluded by name (--exclude)";
    if (in_list(n->op_type, o->exclude, o->n_exclude)) return "excluded by op type (--exclude)";
    if (o->only && !in_list(n->name ? n->name : "", o->only, o->n_only)) return "not selected";
    if (n->n_inputs < 2 || opt_dtypes_get(dt, n->inputs[0]) != OPT_DT_FLOAT) return "input is not float32";
    bool mm = strcmp(n->op_type, "MatMul") == 0;
    if (!mm && weight_input(g, n) < 0) return "weight is not a constant initializer";
    if (!mm && opt_dtypes_get(dt, n->inputs[1]) != OPT_DT_FLOAT) return "weight is not float32";
    if (mm && weight_input(g, n) < 0 && o->weights_only) return "no constant weight (--weights-only)";
    if (mm && weight_input(g, n) >= 0 && opt_dtypes_get(dt, n->inputs[1]) != OPT_DT_FLOAT)
        return "weight is not float32";
    return NULL;
}

static opt_status report_float(opt_quant_report *r, const opt_node *n, const char *why, opt_error *err)
{
    if (!r) return OPT_OK;
    char **a = realloc(r->float_nodes, (r->n_float + 1) * sizeof *a);
    if (a) r->float_nodes = a;
    char **b = realloc(r->float_reasons, (r->n_float + 1) * sizeof *b);
    if (b) r->float_reasons = b;
    if (!a || !b) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    r->float_nodes[r->n_float] = opt_strdup(n->name ? n->name : n->op_type);
    r->float_reasons[r->n_float] = opt_strdup(why);
    r->n_float++;
    return OPT_OK;
}

/* Gives the output of quantized node i a QDQ pair (after a Relu or Clip that is its only
 * consumer), so the op runs on integers from end to end, as in ONNX Runtime's QDQ form: every
 * consumer reads the DQ output. The activation's output is rounded once (ONNX Runtime drops the
 * Relu or Clip and gives the op's output the activation's range; mopt's executor and ONNX
 * Runtime's ClipQuantFusion drop it at load when the quantization's saturation does what it
 * does). */
static opt_status add_output_act(plan *p, const opt_graph *g, const opt_quant_opts *o, size_t i, opt_error *err)
{
    const opt_node *n = g->nodes[i];
    const char *y = n->outputs[0];
    long yp = (long)i;
    size_t nc;
    const size_t *cs = opt_graph_consumers(p->ix, y, &nc);
    if (nc == 1 && !opt_graph_is_output(p->ix, y) && opt_node_is_onnx(g->nodes[cs[0]]) &&
        (strcmp(g->nodes[cs[0]]->op_type, "Relu") == 0 || strcmp(g->nodes[cs[0]]->op_type, "Clip") == 0) &&
        g->nodes[cs[0]]->n_outputs == 1 &&
        !in_list(g->nodes[cs[0]]->name ? g->nodes[cs[0]]->name : "", o->exclude, o->n_exclude)) {
        yp = (long)cs[0];
        y = g->nodes[cs[0]]->outputs[0];
    }
    if (y[0] && opt_dtypes_get(&p->dt, y) == OPT_DT_FLOAT) {
        bool added;
        size_t ai;
        OPT_TRY(add_act(p, g, y, canon(g, yp, y), yp, &added, err));
        if (opt_strmap_get(&p->act_ix, canon(g, yp, y), &ai)) p->acts[ai].all = true;
    }
    return OPT_OK;
}

/* Whether n is an Add whose two inputs are float32 activations that already get QDQ pairs (inputs
 * or outputs of quantized ops), and which --exclude / `only` leave alone. Then the Add costs no
 * new rounding of its inputs, and its int8 form saves the float round trip. */
static bool join_ok(const opt_graph *g, const opt_node *n, const opt_quant_opts *o, const plan *p)
{
    if (!opt_node_is_onnx(n) || strcmp(n->op_type, "Add") != 0 || n->n_inputs != 2 || n->n_outputs != 1) return false;
    if (in_list(n->name ? n->name : "", o->exclude, o->n_exclude) || in_list(n->op_type, o->exclude, o->n_exclude))
        return false;
    if (o->only && !in_list(n->name ? n->name : "", o->only, o->n_only)) return false;
    if (!n->outputs[0][0] || opt_dtypes_get(&p->dt, n->outputs[0]) != OPT_DT_FLOAT) return false;
    for (int k = 0; k < 2; k++) {
        size_t ai;
        const char *x = n->inputs[k];
        if (!x[0] || is_init(g, x) || opt_dtypes_get(&p->dt, x) != OPT_DT_FLOAT) return false;
        if (!opt_strmap_get(&p->act_ix, x, &ai)) return false;
    }
    return true;
}

/* Whether n is a pass-through op (see passthrough_ops) on an activation, not excluded. */
static bool passthrough_ok(const opt_graph *g, const opt_node *n, const opt_quant_opts *o)
{
    if (!opt_node_is_onnx(n) || !in_list(n->op_type, passthrough_ops, sizeof passthrough_ops / sizeof *passthrough_ops))
        return false;
    if (n->n_inputs < 1 || !n->inputs[0][0] || is_init(g, n->inputs[0])) return false;
    return !in_list(n->name ? n->name : "", o->exclude, o->n_exclude) && !in_list(n->op_type, o->exclude, o->n_exclude);
}

/* Decides which nodes to quantize and which activations need QDQ pairs (no ranges yet). */
static opt_status make_plan(const opt_model *m, const opt_quant_opts *o, plan *p, opt_quant_report *rep,
                            opt_error *err)
{
    const opt_graph *g = m->graph;
    int64_t opset = opt_model_opset(m, "");
    if (opset < 10)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "opset %lld has no QuantizeLinear (need 10 or later)",
                             (long long)opset);
    p->per_tensor = o->per_tensor || opset < 13;
    OPT_TRY(opt_graph_index_build(g, &p->ix, err));
    OPT_TRY(opt_dtypes_infer(g, &p->dt, err));
    p->quantize = calloc(g->n_nodes + 1, sizeof *p->quantize);
    if (!p->quantize) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        if (!opt_node_is_onnx(n) || !opt_quant_op_gains(n->op_type)) continue;
        if (rep) rep->n_candidates++;
        const char *why = float_reason(g, n, o, &p->dt);
        if (why) {
            OPT_TRY(report_float(rep, n, why, err));
            continue;
        }
        p->quantize[i] = true;
        if (o->weights_only) continue;
        /* Activation inputs: Conv/ConvTranspose/Gemm input 0; MatMul inputs that are not weights. */
        int nin = strcmp(n->op_type, "MatMul") == 0 ? 2 : 1;
        for (int k = 0; k < nin; k++) {
            if (is_init(g, n->inputs[k])) continue;
            bool added;
            long pr = opt_graph_producer(p->ix, n->inputs[k]);
            OPT_TRY(add_act(p, g, n->inputs[k], canon(g, pr, n->inputs[k]), pr, &added, err));
        }
        OPT_TRY(add_output_act(p, g, o, i, err));
    }
    /* Add of two quantized activations (a residual connection): quantized too, as ONNX Runtime
     * does in QDQ form, so DQ, DQ -> Add [-> Relu] -> Q runs on 8-bit data. Repeated until
     * nothing changes, since a quantized Add's output can feed another Add. */
    for (bool more = !o->weights_only; more;) {
        more = false;
        for (size_t i = 0; i < g->n_nodes; i++) {
            const opt_node *n = g->nodes[i];
            if (p->quantize[i] || !join_ok(g, n, o, p)) continue;
            p->quantize[i] = true;
            more = true;
            if (rep) rep->n_candidates++;
            OPT_TRY(add_output_act(p, g, o, i, err));
        }
    }
    /* Extend QDQ backwards through pass-through ops, reusing the output's range. */
    for (size_t k = 0; k < p->n_acts; k++) {
        long pi = p->acts[k].producer;
        if (pi < 0) continue;
        const opt_node *pn = g->nodes[pi];
        if (!passthrough_ok(g, pn, o) || opt_dtypes_get(&p->dt, pn->inputs[0]) != OPT_DT_FLOAT) continue;
        bool added;
        const char *u = pn->inputs[0];
        OPT_TRY(add_act(p, g, u, p->acts[k].range_of, opt_graph_producer(p->ix, u), &added, err));
    }
    /* A pass-through op between two quantized values gets its input's parameters on both sides
     * (as ONNX Runtime does): the values are rounded once, not twice on two grids, and the op runs
     * on the 8-bit data. Propagated forward along chains (Relu -> MaxPool -> Flatten). */
    for (bool more = true; more;) {
        more = false;
        for (size_t k = 0; k < p->n_acts; k++) {
            size_t j;
            long pi = p->acts[k].producer;
            if (pi < 0 || !passthrough_ok(g, g->nodes[pi], o)) continue;
            if (!opt_strmap_get(&p->act_ix, g->nodes[pi]->inputs[0], &j) || j == k) continue;
            if (strcmp(p->acts[k].range_of, p->acts[j].range_of) == 0) continue;
            p->acts[k].range_of = p->acts[j].range_of;
            more = true;
        }
    }
    return OPT_OK;
}

opt_status opt_quant_needed(const opt_model *m, const opt_quant_opts *o, const char ***names, size_t *n,
                            opt_error *err)
{
    plan p = {0};
    opt_status s = make_plan(m, o, &p, NULL, err);
    *names = NULL;
    *n = 0;
    if (s == OPT_OK && p.n_acts) {
        /* Each activation's own name as well as the range it borrows: a run that keeps some
         * nodes float (the fallback) may break a pass-through chain and need either. */
        opt_strmap seen = {0};
        *names = malloc(2 * p.n_acts * sizeof **names);
        if (!*names) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; *names && i < 2 * p.n_acts; i++) {
            const char *nm = i % 2 ? p.acts[i / 2].name : p.acts[i / 2].range_of;
            if (opt_strmap_get(&seen, nm, NULL)) continue;
            if (!opt_strmap_put(&seen, nm, 1)) {
                s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
                break;
            }
            (*names)[(*n)++] = nm;
        }
        opt_strmap_free(&seen);
        if (s != OPT_OK) {
            free(*names);
            *names = NULL;
            *n = 0;
        }
    }
    plan_free(&p);
    return s;
}

/* ---- building blocks ----------------------------------------------------------------------- */

/* New initializer named (unique) base with dims and raw data of dtype; returns its name. */
static const char *add_init(opt_graph *g, const char *base, int dtype, const int64_t *dims, size_t nd,
                            const void *data, size_t bytes, opt_error *err)
{
    opt_tensor *t = opt_tensor_new();
    if (!t) goto nomem;
    t->name = opt_graph_unique_name(g, base);
    if (!t->name || opt_tensor_set_dims(t, dims, nd, err) != OPT_OK ||
        opt_tensor_set_raw(t, dtype, data, bytes, err) != OPT_OK || opt_graph_add_initializer(g, t, err) != OPT_OK) {
        opt_tensor_free(t);
        goto nomem;
    }
    return t->name;
nomem:
    opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    return NULL;
}

/* A new node appended to g; its output name is unique, based on out_base. */
static opt_node *add_node(opt_graph *g, const char *op, const char *name_base, const char *const *in,
                          size_t nin, const char *out_base, opt_error *err)
{
    char *name = opt_graph_unique_name(g, name_base);
    char *out = opt_graph_unique_name(g, out_base);
    opt_node *n = name && out ? opt_node_make(op, name, in, nin, (const char *const *)&out, 1) : NULL;
    free(name);
    free(out);
    if (!n || opt_graph_insert_node(g, g->n_nodes, n, err) != OPT_OK) {
        opt_node_free(n);
        opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return n;
}

static char *cat2(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

static opt_status set_input(opt_node *n, size_t i, const char *name, opt_error *err)
{
    char *s = opt_strdup(name);
    if (!s) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    free(n->inputs[i]);
    n->inputs[i] = s;
    return OPT_OK;
}

/* A quantized weight: its int8 data was written; dq_out is the float value to use. */
typedef struct qweight {
    const char *src;     /* original initializer name (borrowed; alive until removal at the end) */
    int axis;            /* -1 per tensor */
    size_t channels;
    float *scales;       /* channels entries (1 when per tensor) */
    char *dq_out;
} qweight;

/* Quantizes initializer w symmetric int8 along axis (-1: per tensor) and adds the DQ node. */
static opt_status quant_weight(opt_graph *g, const opt_tensor *w, int axis, qweight *q, opt_error *err)
{
    uint64_t n;
    float *x = NULL;
    int8_t *v = NULL;
    opt_status s = OPT_OK;
    OPT_TRY(opt_tensor_to_f32_alloc(w, &x, &n, err));
    if (axis >= (int)w->n_dims) axis = -1;
    size_t C = axis < 0 ? 1 : (size_t)w->dims[axis], inner = 1;
    for (size_t d = (size_t)axis + 1; axis >= 0 && d < w->n_dims; d++) inner *= (size_t)w->dims[d];
    q->axis = axis;
    q->channels = C;
    q->scales = calloc(C ? C : 1, sizeof *q->scales);
    v = malloc(n ? n : 1);
    int8_t *zps = calloc(C ? C : 1, 1);
    if (!q->scales || !v || !zps) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        size_t c = axis < 0 ? 0 : (size_t)((i / inner) % C);
        float a = fabsf(x[i]);
        if (a > q->scales[c]) q->scales[c] = a;
    }
    for (size_t c = 0; c < C; c++) q->scales[c] = q->scales[c] > 0 ? q->scales[c] / 127.0f : 1.0f;
    for (uint64_t i = 0; i < n; i++) {
        size_t c = axis < 0 ? 0 : (size_t)((i / inner) % C);
        float r = nearbyintf(x[i] / q->scales[c]);
        v[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
    }
    char *b1 = cat2(w->name, "_quantized"), *b2 = cat2(w->name, "_scale"), *b3 = cat2(w->name, "_zero_point"),
         *b4 = cat2(w->name, "_DequantizeLinear"), *b5 = cat2(w->name, "_DequantizeLinear_Output");
    const char *in[3] = {0};
    int64_t cd = (int64_t)C;
    opt_node *dq = NULL;
    if (b1 && b2 && b3 && b4 && b5 &&
        (in[0] = add_init(g, b1, OPT_DT_INT8, w->dims, w->n_dims, v, n, err)) &&
        (in[1] = add_init(g, b2, OPT_DT_FLOAT, &cd, axis < 0 ? 0 : 1, q->scales, C * 4, err)) &&
        (in[2] = add_init(g, b3, OPT_DT_INT8, &cd, axis < 0 ? 0 : 1, zps, C, err)) &&
        (dq = add_node(g, "DequantizeLinear", b4, in, 3, b5, err))) {
        if (axis >= 0) s = opt_node_set_attr_int(dq, "axis", axis, err);
        q->dq_out = opt_strdup(dq->outputs[0]);
        if (s == OPT_OK && !q->dq_out) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    } else {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    free(b1);
    free(b2);
    free(b3);
    free(b4);
    free(b5);
done:
    free(x);
    free(v);
    free(zps);
    return s;
}

/* Quantizes bias b to int32 with scale x_scale * w->scales[c] and adds the DQ node; *out gets the
 * DQ output name (owned). */
static opt_status quant_bias(opt_graph *g, const opt_tensor *b, float x_scale, const qweight *w, char **out,
                             opt_error *err)
{
    uint64_t n;
    float *x = NULL;
    OPT_TRY(opt_tensor_to_f32_alloc(b, &x, &n, err));
    bool per_ch = w->axis >= 0 && w->channels == n && n > 1;
    size_t C = per_ch ? n : 1;
    float *sc = malloc(C * sizeof *sc);
    int32_t *v = malloc((n ? n : 1) * sizeof *v), *zps = calloc(C, sizeof *zps);
    opt_status s = OPT_OK;
    if (!sc || !v || !zps) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!per_ch && w->channels != 1) { /* per-channel weight, bias of another shape: per tensor */
        float mx = 0;
        for (size_t c = 0; c < w->channels; c++) mx = fmaxf(mx, w->scales[c]);
        sc[0] = x_scale * mx;
    } else {
        for (size_t c = 0; c < C; c++) sc[c] = x_scale * w->scales[c];
    }
    for (size_t c = 0; c < C; c++)
        if (!(sc[c] > 0)) sc[c] = 1.0f;
    for (uint64_t i = 0; i < n; i++) {
        double r = nearbyint((double)x[i] / sc[per_ch ? i : 0]);
        v[i] = (int32_t)(r > 2147483647.0 ? 2147483647.0 : r < -2147483647.0 ? -2147483647.0 : r);
    }
    char *b1 = cat2(b->name, "_quantized"), *b2 = cat2(b->name, "_scale"), *b3 = cat2(b->name, "_zero_point"),
         *b4 = cat2(b->name, "_DequantizeLinear"), *b5 = cat2(b->name, "_DequantizeLinear_Output");
    const char *in[3] = {0};
    int64_t cd = (int64_t)C;
    opt_node *dq = NULL;
    if (b1 && b2 && b3 && b4 && b5 &&
        (in[0] = add_init(g, b1, OPT_DT_INT32, b->dims, b->n_dims, v, n * 4, err)) &&
        (in[1] = add_init(g, b2, OPT_DT_FLOAT, &cd, per_ch ? 1 : 0, sc, C * 4, err)) &&
        (in[2] = add_init(g, b3, OPT_DT_INT32, &cd, per_ch ? 1 : 0, zps, C * 4, err)) &&
        (dq = add_node(g, "DequantizeLinear", b4, in, 3, b5, err))) {
        if (per_ch) s = opt_node_set_attr_int(dq, "axis", 0, err);
        *out = opt_strdup(dq->outputs[0]);
        if (s == OPT_OK && !*out) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    } else {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    free(b1);
    free(b2);
    free(b3);
    free(b4);
    free(b5);
done:
    free(x);
    free(sc);
    free(v);
    free(zps);
    return s;
}

/* Weight axis holding output channels, or -1 for per tensor. */
static int weight_axis(const opt_node *n, const opt_tensor *w, bool per_tensor)
{
    if (per_tensor) return -1;
    if (strcmp(n->op_type, "Conv") == 0) return w->n_dims >= 2 ? 0 : -1;
    if (strcmp(n->op_type, "ConvTranspose") == 0)
        return w->n_dims >= 2 && opt_node_attr_int(n, "group", 1) == 1 ? 1 : -1;
    if (strcmp(n->op_type, "Gemm") == 0) return w->n_dims == 2 ? (opt_node_attr_int(n, "transB", 0) ? 0 : 1) : -1;
    if (strcmp(n->op_type, "MatMul") == 0) return w->n_dims == 2 ? 1 : -1;
    return -1;
}

/* Whether value name is still used by a node input or graph output. */
static bool still_used(const opt_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i]->n_inputs; k++)
            if (strcmp(g->nodes[i]->inputs[k], name) == 0) return true;
    for (size_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i]->name && strcmp(g->outputs[i]->name, name) == 0) return true;
    for (size_t i = 0; i < g->n_inputs; i++)
        if (g->inputs[i]->name && strcmp(g->inputs[i]->name, name) == 0) return true;
    return false;
}

/* Node placement: new nodes go right after their anchor (an original node index; -1 = start). */
typedef struct placed {
    opt_node *node;
    long after;
} placed;

opt_status opt_quant_int8(opt_model *m, const opt_quant_opts *o, opt_quant_report *rep, opt_error *err)
{
    opt_graph *g = m->graph;
    plan p = {0};
    qweight *qw = NULL;
    size_t n_qw = 0;
    placed *pl = NULL;
    size_t n_pl = 0;
    char **orig_names = NULL;
    size_t n_orig = g->n_nodes;
    opt_node **orig = NULL;
    opt_status s = make_plan(m, o, &p, rep, err);
    if (s != OPT_OK) goto done;
    int adt = o->act_dtype == OPT_DT_INT8 ? OPT_DT_INT8 : OPT_DT_UINT8;

    /* Ranges, checked before any edit. */
    for (size_t k = 0; k < p.n_acts; k++) {
        float lo, hi;
        if (!o->range || !o->range(o->range_ctx, p.acts[k].range_of, &lo, &hi)) {
            s = opt_error_set(err, OPT_ERR_DATA, "no calibration range for tensor '%s'", p.acts[k].range_of);
            goto done;
        }
        if (lo > 0) lo = 0;
        if (hi < 0) hi = 0;
        if (adt == OPT_DT_INT8) {
            float amax = fmaxf(-lo, hi);
            p.acts[k].scale = amax > 0 ? amax / 127.0f : 1.0f;
            p.acts[k].zp = 0;
        } else {
            float sc = (hi - lo) / 255.0f;
            if (!(sc > 0)) sc = 1.0f;
            float z = nearbyintf(-lo / sc);
            p.acts[k].scale = sc;
            p.acts[k].zp = z < 0 ? 0 : z > 255 ? 255 : (int32_t)z;
        }
    }

    orig = malloc((n_orig + 1) * sizeof *orig);
    pl = malloc((3 * p.n_acts + 4 * n_orig + 1) * sizeof *pl);
    qw = calloc(n_orig + 1, sizeof *qw);
    if (!orig || !pl || !qw) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(orig, g->nodes, n_orig * sizeof *orig);

    /* Activation QDQ pairs. */
    for (size_t k = 0; k < p.n_acts; k++) {
        qact *a = &p.acts[k];
        uint8_t zb = adt == OPT_DT_INT8 ? (uint8_t)(int8_t)a->zp : (uint8_t)a->zp;
        if (a->all && a->producer >= 0 && opt_graph_is_output(p.ix, a->name)) {
            /* A graph output keeps its name: the producer writes NAME_QuantizeLinear_Input and
             * the DequantizeLinear gives back NAME. */
            char *orig_name = opt_strdup(a->name), *b0 = cat2(a->name, "_QuantizeLinear_Input");
            char *qin = b0 ? opt_graph_unique_name(g, b0) : NULL;
            free(b0);
            opt_node *pn = g->nodes[a->producer];
            if (!orig_name || !qin) {
                free(orig_name);
                free(qin);
                s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
                goto done;
            }
            for (size_t q = 0; q < pn->n_outputs; q++)
                if (pn->outputs[q] == a->name) {
                    a->old_name = pn->outputs[q]; /* the plan's maps still point at it */
                    pn->outputs[q] = qin;
                    qin = NULL;
                    break;
                }
            free(qin);
            for (size_t q = 0; q < pn->n_outputs; q++)
                if (strncmp(pn->outputs[q], orig_name, strlen(orig_name)) == 0 && strcmp(pn->outputs[q], orig_name) != 0)
                    a->name = pn->outputs[q];
            a->dq_out = orig_name; /* marks: DQ output is the original name */
        }
        const char *base = a->dq_out ? a->dq_out : a->name;
        char *b1 = cat2(base, "_scale"), *b2 = cat2(base, "_zero_point"),
             *b3 = cat2(base, "_QuantizeLinear"), *b4 = cat2(base, "_QuantizeLinear_Output"),
             *b5 = cat2(base, "_DequantizeLinear"), *b6 = cat2(base, "_DequantizeLinear_Output");
        const char *in[3] = {a->name, NULL, NULL};
        opt_node *q = NULL, *dq = NULL;
        if (b1 && b2 && b3 && b4 && b5 && b6 && (in[1] = add_init(g, b1, OPT_DT_FLOAT, NULL, 0, &a->scale, 4, err)) &&
            (in[2] = add_init(g, b2, adt, NULL, 0, &zb, 1, err)) && (q = add_node(g, "QuantizeLinear", b3, in, 3, b4, err))) {
            const char *din[3] = {q->outputs[0], in[1], in[2]};
            if (a->dq_out) { /* a graph output: the DQ output takes the original name */
                char *nm = opt_graph_unique_name(g, b5);
                dq = nm ? opt_node_make("DequantizeLinear", nm, din, 3, (const char *const *)&a->dq_out, 1) : NULL;
                free(nm);
                if (dq && opt_graph_insert_node(g, g->n_nodes, dq, err) != OPT_OK) {
                    opt_node_free(dq);
                    dq = NULL;
                }
            } else {
                dq = add_node(g, "DequantizeLinear", b5, din, 3, b6, err);
            }
        }
        free(b1);
        free(b2);
        free(b3);
        free(b4);
        free(b5);
        free(b6);
        if (!q || !dq || (!a->dq_out && !(a->dq_out = opt_strdup(dq->outputs[0])))) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto done;
        }
        pl[n_pl++] = (placed){q, a->producer};
        pl[n_pl++] = (placed){dq, a->producer};
        if (rep) rep->n_activations++;
    }

    /* Rewire consumers: quantized nodes' activation inputs and pass-through ops that feed a
     * quantized activation. */
    for (size_t i = 0; i < n_orig; i++) {
        opt_node *n = orig[i];
        for (size_t k = 0; k < n->n_inputs; k++) {
            size_t ai;
            if (n->inputs[k][0] && opt_strmap_get(&p.act_ix, n->inputs[k], &ai) && p.acts[ai].all &&
                strcmp(p.acts[ai].dq_out, n->inputs[k]) != 0 && (s = set_input(n, k, p.acts[ai].dq_out, err)) != OPT_OK)
                goto done;
        }
        bool pass = false;
        if (!p.quantize[i]) {
            size_t k;
            for (size_t oo = 0; oo < n->n_outputs && !pass; oo++)
                pass = opt_strmap_get(&p.act_ix, n->outputs[oo], &k) && n->n_inputs &&
                       opt_strmap_get(&p.act_ix, n->inputs[0], NULL) &&
                       in_list(n->op_type, passthrough_ops, sizeof passthrough_ops / sizeof *passthrough_ops);
            if (!pass) continue;
            size_t ai;
            opt_strmap_get(&p.act_ix, n->inputs[0], &ai);
            if ((s = set_input(n, 0, p.acts[ai].dq_out, err)) != OPT_OK) goto done;
            continue;
        }
        bool two = strcmp(n->op_type, "MatMul") == 0 || strcmp(n->op_type, "Add") == 0;
        for (size_t k = 0; k < (two ? 2u : 1u) && k < n->n_inputs; k++) {
            size_t ai;
            if (opt_strmap_get(&p.act_ix, n->inputs[k], &ai) && (s = set_input(n, k, p.acts[ai].dq_out, err)) != OPT_OK)
                goto done;
        }
    }

    /* Weights and biases. */
    for (size_t i = 0; i < n_orig; i++) {
        if (!p.quantize[i]) continue;
        opt_node *n = orig[i];
        int wi = weight_input(g, n);
        if (wi < 0) {
            if (rep) rep->n_quantized++;
            continue;
        }
        const opt_tensor *w = opt_graph_initializer(g, n->inputs[wi]);
        int axis = weight_axis(n, w, p.per_tensor);
        qweight *q = NULL;
        for (size_t k = 0; k < n_qw; k++)
            if (strcmp(qw[k].src, w->name) == 0 && qw[k].axis == axis) q = &qw[k];
        if (!q) {
            q = &qw[n_qw++];
            q->src = w->name;
            if ((s = quant_weight(g, w, axis, q, err)) != OPT_OK) goto done;
            pl[n_pl++] = (placed){g->nodes[g->n_nodes - 1], (long)i - 1};
            if (rep) rep->n_weights++;
        }
        char *wname = opt_strdup(n->inputs[wi]);
        if (!wname || (s = set_input(n, (size_t)wi, q->dq_out, err)) != OPT_OK) {
            free(wname);
            if (s == OPT_OK) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto done;
        }
        /* Bias: Conv input 2, Gemm C (1-D, alpha = beta = 1), when the activation is quantized. */
        bool conv = strcmp(n->op_type, "Conv") == 0, gemm = strcmp(n->op_type, "Gemm") == 0;
        size_t ai;
        const opt_tensor *b = n->n_inputs > 2 && n->inputs[2][0] ? opt_graph_initializer(g, n->inputs[2]) : NULL;
        bool bias_ok = b && (conv || (gemm && opt_node_attr_float(n, "alpha", 1.0f) == 1.0f &&
                                      opt_node_attr_float(n, "beta", 1.0f) == 1.0f && b->n_dims == 1)) &&
                       b->data_type == OPT_DT_FLOAT && !o->weights_only;
        const char *xin = n->inputs[0];
        bool xq = false;
        for (size_t k = 0; k < p.n_acts && !xq; k++)
            if (strcmp(p.acts[k].dq_out, xin) == 0) {
                xq = true;
                ai = k;
            }
        if (bias_ok && xq) {
            char *bout = NULL;
            if ((s = quant_bias(g, b, p.acts[ai].scale, q, &bout, err)) != OPT_OK) {
                free(wname);
                goto done;
            }
            pl[n_pl++] = (placed){g->nodes[g->n_nodes - 1], (long)i - 1};
            char *bname = opt_strdup(b->name);
            s = set_input(n, 2, bout, err);
            free(bout);
            if (s == OPT_OK && bname && !still_used(g, bname)) opt_graph_remove_initializer(g, bname);
            free(bname);
            if (s != OPT_OK) {
                free(wname);
                goto done;
            }
            if (rep) rep->n_biases++;
        }
        if (!still_used(g, wname)) {
            /* other qweights may point at this name as src: only compare before removal */
            for (size_t k = 0; k < n_qw; k++)
                if (qw[k].src == w->name) qw[k].src = "";
            opt_graph_remove_initializer(g, wname);
        }
        free(wname);
        if (rep) rep->n_quantized++;
    }
    if (rep) {
        rep->quantized_nodes = calloc(rep->n_quantized + 1, sizeof *rep->quantized_nodes);
        size_t k = 0;
        for (size_t i = 0; rep->quantized_nodes && i < n_orig; i++)
            if (p.quantize[i] && k < rep->n_quantized)
                rep->quantized_nodes[k++] = opt_strdup(orig[i]->name ? orig[i]->name : orig[i]->op_type);
    }

    /* Order: each new node right after its anchor (weights/bias DQ right before their consumer,
     * activation QDQ right after their producer). */
    {
        opt_node **nn = malloc((g->n_nodes + 1) * sizeof *nn);
        if (!nn) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto done;
        }
        size_t k = 0;
        for (long a = -1; a < (long)n_orig; a++) {
            if (a >= 0) nn[k++] = orig[a];
            for (size_t j = 0; j < n_pl; j++)
                if (pl[j].after == a) nn[k++] = pl[j].node;
        }
        if (k != g->n_nodes) { /* cannot happen: every new node was placed */
            free(nn);
            s = opt_error_set(err, OPT_ERR_INVALID, "internal error placing quantization nodes");
            goto done;
        }
        free(g->nodes);
        g->nodes = nn;
    }
    s = opt_graph_topo_sort(g, err);
done:
    for (size_t k = 0; k < n_qw; k++) {
        free(qw[k].scales);
        free(qw[k].dq_out);
    }
    free(qw);
    free(pl);
    free(orig);
    free(orig_names);
    plan_free(&p);
    return s;
}

/* ---- BatchNormalization folding ------------------------------------------------------------ */

/* Number of node inputs (and graph outputs) that read name. */
static size_t uses_of(const opt_graph *g, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t q = 0; q < g->nodes[i]->n_inputs; q++) k += strcmp(g->nodes[i]->inputs[q], name) == 0;
    for (size_t i = 0; i < g->n_outputs; i++) k += g->outputs[i]->name && strcmp(g->outputs[i]->name, name) == 0;
    for (size_t i = 0; i < g->n_inputs; i++) k += g->inputs[i]->name && strcmp(g->inputs[i]->name, name) == 0;
    return k;
}

/* Folds BN node bi into Conv node ci when everything is constant and private; false to skip. */
static opt_status fold_one(opt_graph *g, size_t ci, size_t bi, bool *done, opt_error *err)
{
    opt_node *c = g->nodes[ci], *bn = g->nodes[bi];
    *done = false;
    if (bn->n_inputs < 5 || opt_node_attr_int(bn, "training_mode", 0) != 0) return OPT_OK;
    for (size_t k = 1; k < bn->n_outputs; k++)
        if (bn->outputs[k][0]) return OPT_OK;
    const opt_tensor *w = opt_graph_initializer(g, c->inputs[1]);
    const opt_tensor *b = c->n_inputs > 2 && c->inputs[2][0] ? opt_graph_initializer(g, c->inputs[2]) : NULL;
    if (!w || w->data_type != OPT_DT_FLOAT || w->n_dims < 3 || uses_of(g, w->name) != 1) return OPT_OK;
    if (c->n_inputs > 2 && c->inputs[2][0] && (!b || b->data_type != OPT_DT_FLOAT || uses_of(g, b->name) != 1))
        return OPT_OK;
    int64_t M = w->dims[0];
    float *p[4] = {0}, *wv = NULL, *bv = NULL;
    uint64_t n, nw;
    opt_status s = OPT_OK;
    for (int k = 0; k < 4; k++) {
        const opt_tensor *t = opt_graph_initializer(g, bn->inputs[k + 1]);
        if (!t || t->data_type != OPT_DT_FLOAT || opt_tensor_is_external(t) || !opt_tensor_numel(t, &n) ||
            n != (uint64_t)M)
            goto out;
        if ((s = opt_tensor_to_f32_alloc(t, &p[k], &n, err)) != OPT_OK) goto out;
    }
    if ((s = opt_tensor_to_f32_alloc(w, &wv, &nw, err)) != OPT_OK) goto out;
    bv = calloc((size_t)M, sizeof *bv);
    if (!bv) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (b) {
        float *tmp;
        if ((s = opt_tensor_to_f32_alloc(b, &tmp, &n, err)) != OPT_OK) goto out;
        if (n != (uint64_t)M) {
            free(tmp);
            goto out;
        }
        memcpy(bv, tmp, (size_t)M * sizeof *bv);
        free(tmp);
    }
    float eps = opt_node_attr_float(bn, "epsilon", 1e-5f);
    uint64_t inner = nw / (uint64_t)M;
    for (int64_t o = 0; o < M; o++) {
        double sc = p[0][o] / sqrt((double)p[3][o] + eps);
        for (uint64_t i = 0; i < inner; i++) wv[(uint64_t)o * inner + i] = (float)(wv[(uint64_t)o * inner + i] * sc);
        bv[o] = (float)(((double)bv[o] - p[2][o]) * sc + p[1][o]);
    }
    opt_tensor *wt = opt_graph_initializer(g, c->inputs[1]);
    if ((s = opt_tensor_set_f32(wt, OPT_DT_FLOAT, wv, nw, err)) != OPT_OK) goto out;
    if (b) {
        s = opt_tensor_set_f32(opt_graph_initializer(g, c->inputs[2]), OPT_DT_FLOAT, bv, (uint64_t)M, err);
    } else {
        char *base = cat2(bn->name && bn->name[0] ? bn->name : c->outputs[0], "_folded_bias");
        const char *bn_name = base ? add_init(g, base, OPT_DT_FLOAT, &M, 1, bv, (size_t)M * 4, err) : NULL;
        free(base);
        if (!bn_name) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto out;
        }
        char **ins = realloc(c->inputs, 3 * sizeof *ins);
        if (!ins) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto out;
        }
        c->inputs = ins;
        if (c->n_inputs < 3) ins[2] = NULL;
        free(ins[2]);
        ins[2] = opt_strdup(bn_name);
        c->n_inputs = 3;
        if (!ins[2]) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    if (s != OPT_OK) goto out;
    /* The Conv now writes the BatchNormalization's output. */
    char *old = c->outputs[0];
    c->outputs[0] = bn->outputs[0];
    bn->outputs[0] = old;
    *done = true;
out:
    for (int k = 0; k < 4; k++) free(p[k]);
    free(wv);
    free(bv);
    return s;
}

opt_status opt_quant_fold_bn(opt_model *m, size_t *n_folded, opt_error *err)
{
    opt_graph *g = m->graph;
    *n_folded = 0;
    for (size_t bi = 0; bi < g->n_nodes; bi++) {
        opt_node *bn = g->nodes[bi];
        if (!opt_node_is_onnx(bn) || strcmp(bn->op_type, "BatchNormalization") != 0 || bn->n_inputs < 1) continue;
        size_t ci = g->n_nodes;
        for (size_t i = 0; i < g->n_nodes; i++)
            for (size_t k = 0; k < g->nodes[i]->n_outputs; k++)
                if (strcmp(g->nodes[i]->outputs[k], bn->inputs[0]) == 0) ci = i;
        if (ci == g->n_nodes || !opt_node_is_onnx(g->nodes[ci]) || strcmp(g->nodes[ci]->op_type, "Conv") != 0) continue;
        if (uses_of(g, bn->inputs[0]) != 1 || g->nodes[ci]->n_inputs < 2) continue;
        bool done;
        OPT_TRY(fold_one(g, ci, bi, &done, err));
        if (!done) continue;
        /* Drop the BatchNormalization (its output name now belongs to the Conv) and the
         * parameters nothing else reads; value_info of the vanished value goes too. */
        char *gone = opt_strdup(bn->outputs[0]);
        char *params[4];
        for (int k = 0; k < 4; k++) params[k] = opt_strdup(bn->inputs[k + 1]);
        opt_graph_remove_node(g, bi);
        for (int k = 0; k < 4; k++) {
            if (params[k] && uses_of(g, params[k]) == 0) opt_graph_remove_initializer(g, params[k]);
            free(params[k]);
        }
        for (size_t v = 0; gone && v < g->n_value_info; v++)
            if (g->value_info[v]->name && strcmp(g->value_info[v]->name, gone) == 0) {
                opt_value_info_free(g->value_info[v]);
                memmove(&g->value_info[v], &g->value_info[v + 1], (g->n_value_info - v - 1) * sizeof *g->value_info);
                g->n_value_info--;
                break;
            }
        free(gone);
        (*n_folded)++;
        bi--;
    }
    return OPT_OK;
}
