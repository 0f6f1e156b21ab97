/*
 * libopt/passes/amp.c — automatic mixed precision (see amp.h).
 *
 * Three steps: class every node (fixed half, fixed float, free, or precision-neutral); choose
 * the free nodes' precision to minimise the number of Cast nodes (a value costs one Cast when
 * some consumer needs the other precision than its producer gives); then rewrite: weights,
 * Constant/Cast attributes, one shared Cast per value that needs one, value_info types.
 */
#include "libopt/passes/amp.h"
#include "libopt/passes/dtypes.h"
#include "libopt/ir/strmap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- op lists -------------------------------------------------------------------------------- */

static const char *const allow_ops[] = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum"};
static const char *const infer_ops[] = {
    "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid",
    "HardSigmoid", "HardSwish", "Tanh", "Clip", "Abs", "Neg", "Max", "Min", "Sum", "Mean", "MaxPool",
    "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Reshape", "Flatten",
    "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements",
    "GatherND", "Pad", "Identity", "Dropout", "Expand", "Tile", "Where", "Cast", "Constant",
    "ConstantOfShape", "Erf", "Gelu", "Sqrt", "Reciprocal", "Softplus", "Softsign", "Floor", "Ceil",
    "Round", "Sign", "DepthToSpace", "SpaceToDepth", "Equal", "Less", "Greater", "LessOrEqual",
    "GreaterOrEqual", "Mish", "ThresholdedRelu", "Shrink", "Trilu", "ReduceMax", "ReduceMin",
    "ArgMax", "ArgMin", "Mod"};
static const char *const deny_ops[] = {
    "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "ReduceSum", "ReduceMean", "ReduceProd",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "LpNormalization",
    "Resize", "Upsample", "CumSum", "TopK", "Range", "NonMaxSuppression", "RoiAlign"};
/* Ops whose ONNX schemas have no float16 at any opset. */
static const char *const no_f16_ops[] = {"Range", "NonMaxSuppression"};
/* First opset whose schema accepts bfloat16 (ops not listed: never). */
static const struct {
    const char *op;
    int since;
} bf16_since[] = {
    {"Add", 13}, {"Sub", 13}, {"Mul", 13}, {"Div", 13}, {"MatMul", 13}, {"Gemm", 13},
    {"Relu", 14}, {"LeakyRelu", 16}, {"PRelu", 16}, {"Sigmoid", 13}, {"Tanh", 13}, {"Softmax", 13},
    {"LogSoftmax", 13}, {"Exp", 13}, {"Log", 13}, {"Sqrt", 13}, {"Reciprocal", 13}, {"Pow", 15},
    {"Neg", 13}, {"Abs", 13}, {"Ceil", 13}, {"Floor", 13}, {"Erf", 13}, {"Max", 13}, {"Min", 13},
    {"Sum", 13}, {"Mean", 13}, {"Clip", 13}, {"Identity", 13}, {"Reshape", 13}, {"Flatten", 13},
    {"Squeeze", 13}, {"Unsqueeze", 13}, {"Transpose", 13}, {"Concat", 13}, {"Split", 13},
    {"Slice", 13}, {"Gather", 13}, {"GatherElements", 13}, {"GatherND", 13}, {"Expand", 13},
    {"Tile", 13}, {"Pad", 13}, {"Cast", 13}, {"Where", 16}, {"Equal", 13}, {"Less", 13},
    {"Greater", 13}, {"LessOrEqual", 16}, {"GreaterOrEqual", 16}, {"ReduceMean", 13},
    {"ReduceSum", 13}, {"ReduceMax", 13}, {"ReduceMin", 13}, {"ReduceProd", 13},
    {"BatchNormalization", 15}, {"LayerNormalization", 17}, {"Dropout", 13}, {"Constant", 13},
    {"Sign", 13}, {"Gelu", 20}, {"ArgMax", 13}, {"ArgMin", 13}, {"Einsum", 22}, {"Conv", 22},
    {"ConvTranspose", 22}, {"MaxPool", 22}, {"AveragePool", 22}, {"GlobalAveragePool", 22},
    {"GlobalMaxPool", 22}, {"Elu", 22}, {"Selu", 22}, {"HardSigmoid", 22}, {"HardSwish", 22},
    {"Softplus", 22}, {"Softsign", 22}, {"InstanceNormalization", 22}, {"DepthToSpace", 13},
    {"SpaceToDepth", 13}, {"Round", 22}, {"Mish", 22}, {"Trilu", 14}, {"ConstantOfShape", 20},
};
/* Float inputs outside the op's main type T (they stay float32): op, input index. */
static const struct {
    const char *op;
    int in;
} non_t[] = {{"Resize", 1}, {"Resize", 2}, {"Upsample", 1}, {"Dropout", 1}, {"Pow", 1}};

#define N_OF(a) (sizeof(a) / sizeof *(a))

static bool in_list(const char *s, const char *const *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, l[i]) == 0) return true;
    return false;
}

char opt_amp_op_class(const char *op, const opt_amp_opts *o)
{
    if (o && in_list(op, o->deny, o->n_deny)) return 'd';
    if (o && in_list(op, o->allow, o->n_allow)) return 'a';
    if (in_list(op, allow_ops, N_OF(allow_ops))) return 'a';
    if (in_list(op, infer_ops, N_OF(infer_ops))) return 'i';
    if (in_list(op, deny_ops, N_OF(deny_ops))) return 'd';
    return 'u';
}

static bool supported(const opt_node *n, int64_t opset, int to)
{
    if (!opt_node_is_onnx(n)) return false;
    for (size_t a = 0; a < n->n_attrs; a++)
        if (n->attrs[a].g || n->attrs[a].n_graphs) return false;
    if (to == OPT_DT_FLOAT16) return !in_list(n->op_type, no_f16_ops, N_OF(no_f16_ops));
    for (size_t i = 0; i < N_OF(bf16_since); i++)
        if (strcmp(n->op_type, bf16_since[i].op) == 0) return opset >= bf16_since[i].since;
    return false;
}

static bool is_t_input(const opt_node *n, size_t k)
{
    for (size_t i = 0; i < N_OF(non_t); i++)
        if ((size_t)non_t[i].in == k && strcmp(n->op_type, non_t[i].op) == 0) return false;
    return true;
}

void opt_amp_report_free(opt_amp_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_ops; i++) free(r->ops[i].op_type);
    for (size_t i = 0; i < r->n_clamped; i++) free(r->clamped[i]);
    for (size_t i = 0; i < r->n_float; i++) {
        free(r->float_nodes[i]);
        free(r->float_reasons[i]);
    }
    for (size_t i = 0; i < r->n_converted; i++) free(r->converted_nodes ? r->converted_nodes[i] : NULL);
    free(r->ops);
    free(r->clamped);
    free(r->float_nodes);
    free(r->float_reasons);
    free(r->converted_nodes);
    memset(r, 0, sizeof *r);
}

/* ---- the precision problem --------------------------------------------------------------------- */

enum { K_IRREL = 0, K_FIXED, K_FREE, K_NEUTRAL };
enum { P_F = 0, P_H = 1 };

typedef struct use {
    size_t node;  /* consumer node index */
    size_t k;     /* input position */
} use;

/* A float32 activation (not an initializer). */
typedef struct aval {
    const char *name;
    long prod;       /* producer: node index; n_nodes + j for graph input j; -1: none */
    use *uses;
    size_t n_uses;
    bool out;        /* a graph output */
    bool subref;     /* used inside a subgraph (must stay float32) */
} aval;

typedef struct amp {
    opt_graph *g;
    const opt_amp_opts *o;
    size_t nn, ni;   /* nodes, graph inputs */
    int *kind;       /* nn + ni */
    int *prec;       /* nn + ni */
    aval *v;
    size_t n_v;
    size_t *comp;    /* union-find parents over nn + ni */
} amp;

/* Precision a consumer needs for input k: P_F, P_H, or -1 (either). */
static int req(const amp *a, size_t c, size_t k)
{
    const opt_node *n = a->g->nodes[c];
    if (a->kind[c] == K_NEUTRAL) return -1;
    if (strcmp(n->op_type, "Cast") == 0 && a->kind[c] == K_FREE) return -1;
    if (a->kind[c] == K_IRREL || !is_t_input(n, k)) return P_F;
    return a->prec[c];
}

static int prod_prec(const amp *a, const aval *v)
{
    return v->prod < 0 ? P_F : a->prec[v->prod];
}

/* Casts value v needs under the current assignment (0 or 1). */
static int value_cost(const amp *a, const aval *v)
{
    int p = prod_prec(a, v);
    if ((v->out && a->o->keep_io && p == P_H) || (v->subref && p == P_H)) return 1;
    for (size_t u = 0; u < v->n_uses; u++) {
        int r = req(a, v->uses[u].node, v->uses[u].k);
        if (r >= 0 && r != p) return 1;
    }
    return 0;
}

static size_t total_cost(const amp *a)
{
    size_t c = 0;
    for (size_t i = 0; i < a->n_v; i++) c += (size_t)value_cost(a, &a->v[i]);
    return c;
}

static size_t uf_find(size_t *p, size_t x)
{
    while (p[x] != x) x = p[x] = p[p[x]];
    return x;
}

static void optimise(amp *a)
{
    size_t N = a->nn + a->ni;
    for (size_t i = 0; i < N; i++) a->comp[i] = i;
    for (size_t i = 0; i < a->n_v; i++) {
        const aval *v = &a->v[i];
        if (v->prod < 0 || a->kind[v->prod] != K_FREE) continue;
        for (size_t u = 0; u < v->n_uses; u++) {
            size_t c = v->uses[u].node;
            if (a->kind[c] != K_FREE || req(a, c, v->uses[u].k) < 0) continue;
            size_t x = uf_find(a->comp, (size_t)v->prod), y = uf_find(a->comp, c);
            if (x != y) a->comp[x] = y;
        }
    }
    /* Whole groups first: all half or all float, whichever needs fewer casts (ties: half). */
    for (size_t r = 0; r < N; r++) {
        if (a->kind[r] != K_FREE || uf_find(a->comp, r) != r) continue;
        for (size_t i = 0; i < N; i++)
            if (a->kind[i] == K_FREE && uf_find(a->comp, i) == r) a->prec[i] = P_H;
        size_t ch = total_cost(a);
        for (size_t i = 0; i < N; i++)
            if (a->kind[i] == K_FREE && uf_find(a->comp, i) == r) a->prec[i] = P_F;
        size_t cf = total_cost(a);
        if (ch <= cf)
            for (size_t i = 0; i < N; i++)
                if (a->kind[i] == K_FREE && uf_find(a->comp, i) == r) a->prec[i] = P_H;
    }
    /* Then single flips while they remove casts. */
    size_t best = total_cost(a);
    for (int sweep = 0; sweep < 8; sweep++) {
        bool changed = false;
        for (size_t i = 0; i < N; i++) {
            if (a->kind[i] != K_FREE) continue;
            a->prec[i] ^= 1;
            size_t c = total_cost(a);
            if (c < best) {
                best = c;
                changed = true;
            } else {
                a->prec[i] ^= 1;
            }
        }
        if (!changed) break;
    }
}

/* ---- rewriting ----------------------------------------------------------------------------------- */

static opt_status nomem(opt_error *err)
{
    return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
}

static bool push_str(char ***arr, size_t *n, const char *s)
{
    char **p = realloc(*arr, (*n + 1) * sizeof *p);
    if (!p) return false;
    *arr = p;
    p[*n] = opt_strdup(s);
    if (!p[*n]) return false;
    (*n)++;
    return true;
}

/* Converts float32 values to the target type with clamping; *clamped says whether any was. */
static opt_status convert_tensor(opt_tensor *t, int to, bool *clamped, opt_error *err)
{
    float *x;
    uint64_t n;
    OPT_TRY(opt_tensor_to_f32_alloc(t, &x, &n, err));
    float lim = to == OPT_DT_FLOAT16 ? 65504.0f : 3.3895313892515355e38f;
    *clamped = false;
    for (uint64_t i = 0; i < n; i++) {
        if (x[i] > lim) {
            x[i] = lim;
            *clamped = true;
        } else if (x[i] < -lim) {
            x[i] = -lim;
            *clamped = true;
        }
    }
    opt_status s = opt_tensor_set_f32(t, to, x, n, err);
    free(x);
    return s;
}

static void set_elem_type(opt_value_info *vi, int dt)
{
    if (vi && vi->type && vi->type->kind == OPT_TYPE_TENSOR) {
        vi->type->has_elem_type = true;
        vi->type->elem_type = dt;
    }
}

static opt_value_info *graph_input(opt_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_inputs; i++)
        if (g->inputs[i]->name && strcmp(g->inputs[i]->name, name) == 0) return g->inputs[i];
    return NULL;
}

static opt_value_info *graph_output(opt_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i]->name && strcmp(g->outputs[i]->name, name) == 0) return g->outputs[i];
    return NULL;
}

static opt_status set_str(char **slot, const char *s, opt_error *err)
{
    char *c = opt_strdup(s);
    if (!c) return nomem(err);
    free(*slot);
    *slot = c;
    return OPT_OK;
}

/* Removes attribute `name` from n if present. */
static void drop_attr(opt_node *n, const char *name)
{
    for (size_t a = 0; a < n->n_attrs; a++)
        if (n->attrs[a].name && strcmp(n->attrs[a].name, name) == 0) {
            opt_attr_clear(&n->attrs[a]);
            memmove(&n->attrs[a], &n->attrs[a + 1], (n->n_attrs - a - 1) * sizeof *n->attrs);
            n->n_attrs--;
            return;
        }
}

/* Names referenced inside any subgraph of g (recursively) into map. */
static bool collect_subrefs(const opt_graph *g, opt_strmap *map, bool inside)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        if (inside)
            for (size_t k = 0; k < n->n_inputs; k++)
                if (n->inputs[k][0] && !opt_strmap_put(map, n->inputs[k], 1)) return false;
        for (size_t a = 0; a < n->n_attrs; a++) {
            if (n->attrs[a].g && !collect_subrefs(n->attrs[a].g, map, true)) return false;
            for (size_t s = 0; s < n->attrs[a].n_graphs; s++)
                if (!collect_subrefs(n->attrs[a].graphs[s], map, true)) return false;
        }
    }
    if (inside)
        for (size_t i = 0; i < g->n_outputs; i++)
            if (g->outputs[i]->name && !opt_strmap_put(map, g->outputs[i]->name, 1)) return false;
    return true;
}

typedef struct placed {
    opt_node *node;
    long after; /* original node index, -1: at the start */
} placed;

/* Adds Cast(src -> to) named after base; returns the node (appended to g) or NULL. */
static opt_node *add_cast(opt_graph *g, const char *src, const char *base, const char *suffix, int to,
                          opt_error *err)
{
    size_t l = strlen(base) + strlen(suffix) + 8;
    char *ob = malloc(l), *nb = malloc(l);
    if (!ob || !nb) {
        free(ob);
        free(nb);
        nomem(err);
        return NULL;
    }
    snprintf(ob, l, "%s%s", base, suffix);
    snprintf(nb, l, "%s%s_cast", base, suffix);
    char *out = opt_graph_unique_name(g, ob), *name = opt_graph_unique_name(g, nb);
    free(ob);
    free(nb);
    opt_node *n = out && name ? opt_node_make("Cast", name, &src, 1, (const char *const *)&out, 1) : NULL;
    free(out);
    free(name);
    if (!n || opt_node_set_attr_int(n, "to", to, err) != OPT_OK || opt_graph_insert_node(g, g->n_nodes, n, err) != OPT_OK) {
        opt_node_free(n);
        nomem(err);
        return NULL;
    }
    return n;
}

static opt_status report_op(opt_amp_report *r, const char *op, bool conv)
{
    for (size_t i = 0; i < r->n_ops; i++)
        if (strcmp(r->ops[i].op_type, op) == 0) {
            r->ops[i].total++;
            r->ops[i].converted += conv;
            return OPT_OK;
        }
    opt_amp_opcount *p = realloc(r->ops, (r->n_ops + 1) * sizeof *p);
    if (!p) return OPT_ERR_NOMEM;
    r->ops = p;
    p[r->n_ops] = (opt_amp_opcount){opt_strdup(op), conv, 1};
    if (!p[r->n_ops].op_type) return OPT_ERR_NOMEM;
    r->n_ops++;
    return OPT_OK;
}

opt_status opt_amp_convert(opt_model *m, const opt_amp_opts *o, opt_amp_report *rep, opt_error *err)
{
    opt_graph *g = m->graph;
    int to = o->to == OPT_DT_BFLOAT16 ? OPT_DT_BFLOAT16 : OPT_DT_FLOAT16;
    const char *sfx = to == OPT_DT_FLOAT16 ? "_fp16" : "_bf16";
    int64_t opset = opt_model_opset(m, "");
    amp a = {.g = g, .o = o, .nn = g->n_nodes, .ni = g->n_inputs};
    opt_graph_index *ix = NULL;
    opt_dtypes dt = {0};
    opt_strmap vmap = {0}, subrefs = {0}, keepv = {0};
    placed *pl = NULL;
    size_t n_pl = 0;
    opt_node **orig = NULL;
    opt_amp_report local = {0};
    if (!rep) rep = &local;
    opt_status s = opt_graph_index_build(g, &ix, err);
    if (s == OPT_OK) s = opt_dtypes_infer(g, &dt, err);
    if (s != OPT_OK) goto done;
    size_t N = a.nn + a.ni;
    a.kind = calloc(N + 1, sizeof *a.kind);
    a.prec = calloc(N + 1, sizeof *a.prec);
    a.comp = calloc(N + 1, sizeof *a.comp);
    a.v = calloc(N * 4 + g->n_inputs + 1, sizeof *a.v);
    orig = malloc((a.nn + 1) * sizeof *orig);
    if (!a.kind || !a.prec || !a.comp || !a.v || !orig || !collect_subrefs(g, &subrefs, false)) {
        s = nomem(err);
        goto done;
    }
    memcpy(orig, g->nodes, a.nn * sizeof *orig);
    for (size_t i = 0; i < o->n_keep_values; i++)
        if (!opt_strmap_put(&keepv, o->keep_values[i], i)) {
            s = nomem(err);
            goto done;
        }

    /* Float activations and their uses. */
    size_t cap_v = N * 4 + g->n_inputs + 1;
    for (size_t j = 0; j < a.ni; j++) {
        const char *nm = g->inputs[j]->name;
        if (!nm || opt_graph_initializer(g, nm) || opt_dtypes_get(&dt, nm) != OPT_DT_FLOAT) continue;
        a.v[a.n_v] = (aval){.name = nm, .prod = (long)(a.nn + j)};
        if (!opt_strmap_put(&vmap, nm, a.n_v++)) goto oom;
    }
    for (size_t i = 0; i < a.nn; i++)
        for (size_t k = 0; k < g->nodes[i]->n_outputs; k++) {
            const char *nm = g->nodes[i]->outputs[k];
            if (!nm[0] || opt_dtypes_get(&dt, nm) != OPT_DT_FLOAT) continue;
            if (a.n_v == cap_v) {
                aval *p = realloc(a.v, 2 * cap_v * sizeof *p);
                if (!p) goto oom;
                a.v = p;
                cap_v *= 2;
            }
            a.v[a.n_v] = (aval){.name = nm, .prod = (long)i};
            if (!opt_strmap_put(&vmap, nm, a.n_v++)) goto oom;
        }
    for (size_t i = 0; i < a.nn; i++) {
        const opt_node *n = g->nodes[i];
        for (size_t k = 0; k < n->n_inputs; k++) {
            size_t vi;
            if (!n->inputs[k][0] || !opt_strmap_get(&vmap, n->inputs[k], &vi)) continue;
            aval *v = &a.v[vi];
            use *u = realloc(v->uses, (v->n_uses + 1) * sizeof *u);
            if (!u) goto oom;
            v->uses = u;
            u[v->n_uses++] = (use){i, k};
        }
    }
    for (size_t i = 0; i < a.n_v; i++) {
        a.v[i].out = opt_graph_is_output(ix, a.v[i].name);
        a.v[i].subref = opt_strmap_get(&subrefs, a.v[i].name, NULL);
    }

    /* Classes. */
    for (size_t i = 0; i < a.nn; i++) {
        const opt_node *n = g->nodes[i];
        bool f_in = false, f_out = false;
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k][0] && is_t_input(n, k) && opt_dtypes_get(&dt, n->inputs[k]) == OPT_DT_FLOAT) f_in = true;
        for (size_t k = 0; k < n->n_outputs; k++)
            if (n->outputs[k][0] && opt_dtypes_get(&dt, n->outputs[k]) == OPT_DT_FLOAT) f_out = true;
        if (!f_in && !f_out) continue;
        bool onnx = opt_node_is_onnx(n);
        if (onnx && (strcmp(n->op_type, "Shape") == 0 || strcmp(n->op_type, "Size") == 0 ||
                     (strcmp(n->op_type, "Cast") == 0 && !f_out))) {
            a.kind[i] = K_NEUTRAL;
            continue;
        }
        const char *nm = n->name ? n->name : "";
        const char *why = NULL;
        size_t kv;
        for (size_t k = 0; k < n->n_outputs && !why; k++)
            if (n->outputs[k][0] && opt_strmap_get(&keepv, n->outputs[k], &kv)) why = o->keep_reasons[kv];
        for (size_t k = 0; k < n->n_inputs && !why; k++)
            if (n->inputs[k][0] && opt_strmap_get(&keepv, n->inputs[k], &kv)) why = o->keep_reasons[kv];
        char cls = onnx ? opt_amp_op_class(n->op_type, o) : 'u';
        bool conv = supported(n, opset, to);
        a.kind[i] = K_FIXED;
        a.prec[i] = P_F;
        bool sub = false;
        for (size_t k = 0; k < n->n_outputs; k++)
            if (n->outputs[k][0] && opt_strmap_get(&subrefs, n->outputs[k], NULL)) sub = true;
        if (in_list(nm, o->exclude, o->n_exclude)) {
            why = "--exclude-node";
        } else if (sub) {
            why = "its output is used inside a subgraph";
        } else if (why) {
            /* kept by the data */
        } else if (o->only) {
            a.prec[i] = conv && in_list(nm, o->only, o->n_only) ? P_H : P_F;
        } else if (!conv) {
            if (cls == 'a' || cls == 'i' || o->all)
                why = to == OPT_DT_FLOAT16 ? "no float16 in its ONNX schema" : "no bfloat16 in its ONNX schema at this opset";
        } else if (o->all || cls == 'a') {
            a.prec[i] = P_H;
        } else if (cls == 'i') {
            a.kind[i] = K_FREE;
            a.prec[i] = P_H;
        }
        if (why) {
            size_t k2 = rep->n_float;
            if (!push_str(&rep->float_nodes, &k2, nm[0] ? nm : n->op_type)) goto oom;
            k2 = rep->n_float;
            if (!push_str(&rep->float_reasons, &k2, why)) goto oom;
            rep->n_float = k2;
        }
    }
    for (size_t j = 0; j < a.ni; j++) {
        a.kind[a.nn + j] = o->keep_io || o->only ? K_FIXED : K_FREE;
        a.prec[a.nn + j] = o->keep_io || o->only ? P_F : P_H;
    }
    optimise(&a);

    /* Casts. */
    pl = malloc((a.n_v + 1) * sizeof *pl);
    if (!pl) goto oom;
    for (size_t i = 0; i < a.n_v; i++) {
        aval *v = &a.v[i];
        int p = prod_prec(&a, v);
        bool need_other = value_cost(&a, v) > 0;
        long anchor = v->prod >= 0 && (size_t)v->prod < a.nn ? v->prod : -1;
        if (v->prod >= (long)a.nn && p == P_H) set_elem_type(graph_input(g, v->name), to);
        if (v->out && !o->keep_io && p == P_H) set_elem_type(graph_output(g, v->name), to);
        if (p == P_H && !(v->out && o->keep_io)) set_elem_type(opt_graph_value_info(g, v->name), to);
        if (!need_other) continue;
        /* A value made by a Cast is re-cast from that Cast's source (no Cast -> Cast chain). */
        const char *src = v->name;
        opt_node *pn = v->prod >= 0 && (size_t)v->prod < a.nn ? g->nodes[v->prod] : NULL;
        if (pn && opt_node_is_onnx(pn) && strcmp(pn->op_type, "Cast") == 0) src = pn->inputs[0];
        if (p == P_H && v->out && o->keep_io) {
            /* Keep the output's name: the producer writes name_fp16, a final Cast restores it.
             * The producer's old output string (which v->name points to) is replaced below, so
             * work from a copy. */
            char *vn = opt_strdup(v->name), *hn = vn ? malloc(strlen(vn) + 8) : NULL;
            if (!hn) {
                free(vn);
                goto oom;
            }
            sprintf(hn, "%s%s", vn, sfx);
            char *hu = opt_graph_unique_name(g, hn);
            free(hn);
            if (!hu) {
                free(vn);
                goto oom;
            }
            v->name = vn;
            for (size_t k = 0; k < pn->n_outputs; k++)
                if (strcmp(pn->outputs[k], vn) == 0 && (s = set_str(&pn->outputs[k], hu, err)) != OPT_OK) {
                    free(hu);
                    free(vn);
                    goto done;
                }
            for (size_t u = 0; u < v->n_uses; u++) {
                int r = req(&a, v->uses[u].node, v->uses[u].k);
                if (r != P_F && (s = set_str(&orig[v->uses[u].node]->inputs[v->uses[u].k], hu, err)) != OPT_OK) {
                    free(hu);
                    free(vn);
                    goto done;
                }
            }
            opt_node *c = opt_node_make("Cast", NULL, (const char *const *)&hu, 1, (const char *const *)&vn, 1);
            char *cb = malloc(strlen(vn) + 16);
            if (cb) sprintf(cb, "%s_cast_fp32", vn);
            char *cn = cb ? opt_graph_unique_name(g, cb) : NULL;
            free(cb);
            free(hu);
            free(vn);
            if (!c || !cn || opt_node_set_attr_int(c, "to", OPT_DT_FLOAT, err) != OPT_OK ||
                opt_graph_insert_node(g, g->n_nodes, c, err) != OPT_OK) {
                free(cn);
                opt_node_free(c);
                goto oom;
            }
            c->name = cn;
            pl[n_pl++] = (placed){c, anchor};
            rep->n_casts++;
            v->name = c->outputs[0];
            continue;
        }
        int want = p == P_H ? P_F : P_H;
        opt_node *c = add_cast(g, src, v->name, want == P_H ? sfx : "_fp32", want == P_H ? to : OPT_DT_FLOAT, err);
        if (!c) goto oom;
        pl[n_pl++] = (placed){c, src == v->name ? anchor : (pn ? opt_graph_producer(ix, src) : anchor)};
        rep->n_casts++;
        for (size_t u = 0; u < v->n_uses; u++)
            if (req(&a, v->uses[u].node, v->uses[u].k) == want &&
                (s = set_str(&orig[v->uses[u].node]->inputs[v->uses[u].k], c->outputs[0], err)) != OPT_OK)
                goto done;
    }

    /* Half nodes: their weights, Constant values and Cast targets. */
    for (size_t i = 0; i < a.nn; i++) {
        opt_node *n = orig[i];
        if (a.kind[i] != K_FIXED && a.kind[i] != K_FREE) continue;
        if (a.prec[i] != P_H) continue;
        if (strcmp(n->op_type, "Cast") == 0) {
            if ((s = opt_node_set_attr_int(n, "to", to, err)) != OPT_OK) goto done;
            continue;
        }
        if (strcmp(n->op_type, "Constant") == 0 || strcmp(n->op_type, "ConstantOfShape") == 0) {
            const opt_attr *va = opt_node_attr(n, "value");
            opt_tensor *t = NULL;
            if (va && va->t) {
                t = opt_tensor_dup(va->t);
            } else if (strcmp(n->op_type, "ConstantOfShape") == 0 || opt_node_attr(n, "value_float") ||
                       opt_node_attr(n, "value_floats")) {
                const opt_attr *fa = opt_node_attr(n, "value_floats");
                float one = opt_node_attr_float(n, "value_float", 0.0f);
                size_t cnt = fa ? fa->n_floats : 1;
                t = opt_tensor_new();
                int64_t d = (int64_t)cnt;
                if (t && (opt_tensor_set_dims(t, &d, fa || strcmp(n->op_type, "ConstantOfShape") == 0 ? 1 : 0, err) != OPT_OK ||
                          opt_tensor_set_f32(t, OPT_DT_FLOAT, fa ? fa->floats : &one, cnt, err) != OPT_OK)) {
                    opt_tensor_free(t);
                    t = NULL;
                }
            }
            if (!t) continue;
            if (t->data_type != OPT_DT_FLOAT) {
                opt_tensor_free(t);
                continue;
            }
            bool cl;
            if ((s = convert_tensor(t, to, &cl, err)) != OPT_OK) {
                opt_tensor_free(t);
                goto done;
            }
            drop_attr(n, "value_float");
            drop_attr(n, "value_floats");
            if ((s = opt_node_set_attr_tensor(n, "value", t, err)) != OPT_OK) goto done;
            if (cl && !push_str(&rep->clamped, &rep->n_clamped, n->name ? n->name : "Constant")) goto oom;
            continue;
        }
        for (size_t k = 0; k < n->n_inputs; k++) {
            if (!n->inputs[k][0] || !is_t_input(n, k)) continue;
            opt_tensor *w = opt_graph_initializer(g, n->inputs[k]);
            if (!w || w->data_type != OPT_DT_FLOAT) continue;
            /* In place when every use is a T input of a half node and nothing else sees it. */
            bool only_half = !graph_input(g, w->name) && !graph_output(g, w->name) &&
                             !opt_strmap_get(&subrefs, w->name, NULL);
            for (size_t j = 0; j < a.nn && only_half; j++)
                for (size_t q = 0; q < orig[j]->n_inputs; q++)
                    if (strcmp(orig[j]->inputs[q], w->name) == 0 &&
                        !((a.kind[j] == K_FIXED || a.kind[j] == K_FREE) && a.prec[j] == P_H && is_t_input(orig[j], q) &&
                          strcmp(orig[j]->op_type, "Cast") != 0))
                        only_half = false;
            bool cl = false;
            if (only_half) {
                if ((s = convert_tensor(w, to, &cl, err)) != OPT_OK) goto done;
                if (cl && !push_str(&rep->clamped, &rep->n_clamped, w->name)) goto oom;
                continue;
            }
            char *hn = malloc(strlen(w->name) + 8);
            if (!hn) goto oom;
            sprintf(hn, "%s%s", w->name, sfx);
            opt_tensor *h = opt_graph_initializer(g, hn);
            if (!h) {
                h = opt_tensor_dup(w);
                if (!h) {
                    free(hn);
                    goto oom;
                }
                free(h->name);
                h->name = hn;
                hn = NULL;
                if ((s = convert_tensor(h, to, &cl, err)) != OPT_OK || (s = opt_graph_add_initializer(g, h, err)) != OPT_OK) {
                    opt_tensor_free(h);
                    goto done;
                }
                if (cl && !push_str(&rep->clamped, &rep->n_clamped, w->name)) goto oom;
            }
            free(hn);
            if ((s = set_str(&n->inputs[k], h->name, err)) != OPT_OK) goto done;
        }
    }

    /* Report. */
    rep->converted_nodes = calloc(a.nn + 1, sizeof *rep->converted_nodes);
    if (!rep->converted_nodes) goto oom;
    for (size_t i = 0; i < a.nn; i++) {
        if (a.kind[i] != K_FIXED && a.kind[i] != K_FREE) continue;
        bool h = a.prec[i] == P_H;
        rep->n_nodes++;
        if (h) {
            rep->converted_nodes[rep->n_converted] = opt_strdup(orig[i]->name ? orig[i]->name : orig[i]->op_type);
            rep->n_converted++;
        }
        if (report_op(rep, orig[i]->op_type, h) != OPT_OK) goto oom;
    }

    /* Order: each Cast right after the node that produces its source. */
    {
        opt_node **nn = malloc((g->n_nodes + 1) * sizeof *nn);
        if (!nn) goto oom;
        size_t k = 0;
        for (long x = -1; x < (long)a.nn; x++) {
            if (x >= 0) nn[k++] = orig[x];
            for (size_t j = 0; j < n_pl; j++)
                if (pl[j].after == x) nn[k++] = pl[j].node;
        }
        if (k != g->n_nodes) {
            free(nn);
            s = opt_error_set(err, OPT_ERR_INVALID, "internal error placing Cast nodes");
            goto done;
        }
        free(g->nodes);
        g->nodes = nn;
    }
    s = opt_graph_topo_sort(g, err);
    goto done;
oom:
    s = nomem(err);
done:
    for (size_t i = 0; a.v && i < a.n_v; i++) free(a.v[i].uses);
    free(a.v);
    free(a.kind);
    free(a.prec);
    free(a.comp);
    free(pl);
    free(orig);
    opt_strmap_free(&vmap);
    opt_strmap_free(&subrefs);
    opt_strmap_free(&keepv);
    opt_dtypes_free(&dt);
    opt_graph_index_free(ix);
    opt_amp_report_free(&local);
    return s;
}
