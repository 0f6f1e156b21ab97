/*
 * libopt/ir/graph.c — producers and consumers, topological order, validation and edits.
 */
#include "ir.h"
#include "strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPT_MAX_GRAPH_DEPTH 64

struct opt_graph_index {
    opt_strmap producer;  /* value name -> node index */
    opt_strmap cons_slot; /* value name -> slot in cons_start */
    size_t *cons_start;   /* per slot: first entry in cons */
    size_t *cons_count;   /* per slot: count */
    size_t *cons;         /* node indices */
    opt_strmap outputs;   /* graph output names */
};

static const char *nz(const char *s) { return s ? s : ""; }

/* Calls fn(name, ctx) for every value a subgraph of node n reads from enclosing scopes: names
 * used by nodes inside its graph attributes and not defined inside them. */
typedef void (*name_fn)(const char *name, void *ctx);

static void graph_outer_refs(const opt_graph *g, name_fn fn, void *ctx, int depth);

static void node_outer_refs(const opt_node *n, name_fn fn, void *ctx, int depth)
{
    if (depth > OPT_MAX_GRAPH_DEPTH) return;
    for (size_t a = 0; a < n->n_attrs; a++) {
        const opt_attr *at = &n->attrs[a];
        if (at->g) graph_outer_refs(at->g, fn, ctx, depth + 1);
        for (size_t k = 0; k < at->n_graphs; k++) graph_outer_refs(at->graphs[k], fn, ctx, depth + 1);
    }
}

struct outer_ctx {
    const opt_strmap *local;
    name_fn fn;
    void *ctx;
};

static void outer_filter(const char *name, void *vctx)
{
    struct outer_ctx *c = vctx;
    if (!opt_strmap_get(c->local, name, NULL)) c->fn(name, c->ctx);
}

static void graph_outer_refs(const opt_graph *g, name_fn fn, void *ctx, int depth)
{
    opt_strmap local = {0};
    for (size_t i = 0; i < g->n_inputs; i++) opt_strmap_put(&local, nz(g->inputs[i]->name), 0);
    for (size_t i = 0; i < g->n_initializers; i++)
        opt_strmap_put(&local, nz(g->initializers[i]->name), 0);
    for (size_t i = 0; i < g->n_sparse_initializers; i++)
        if (g->sparse_initializers[i]->values)
            opt_strmap_put(&local, nz(g->sparse_initializers[i]->values->name), 0);
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t o = 0; o < g->nodes[i]->n_outputs; o++)
            opt_strmap_put(&local, g->nodes[i]->outputs[o], 0);
    struct outer_ctx oc = {&local, fn, ctx};
    for (size_t i = 0; i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k][0] && !opt_strmap_get(&local, n->inputs[k], NULL)) fn(n->inputs[k], ctx);
        node_outer_refs(n, outer_filter, &oc, depth);
    }
    for (size_t i = 0; i < g->n_outputs; i++) {
        const char *nm = nz(g->outputs[i]->name);
        if (!opt_strmap_get(&local, nm, NULL)) fn(nm, ctx);
    }
    opt_strmap_free(&local);
}

/* ---- index ------------------------------------------------------------------------------------ */

struct count_ctx {
    opt_graph_index *ix;
    size_t node;
    size_t *counts;
    size_t nslots;
    bool fill;
    bool oom;
    size_t *pos;
};

static void add_consumer(const char *name, void *vctx)
{
    struct count_ctx *c = vctx;
    size_t slot;
    if (!opt_strmap_get(&c->ix->cons_slot, name, &slot)) {
        if (c->fill) return;
        slot = c->nslots++;
        if (!opt_strmap_put(&c->ix->cons_slot, name, slot)) {
            c->oom = true;
            return;
        }
        size_t *cc = realloc(c->counts, c->nslots * sizeof *cc);
        if (!cc) {
            c->oom = true;
            return;
        }
        c->counts = cc;
        cc[slot] = 0;
    }
    if (!c->fill) {
        /* Count a node once per value even if it reads the value twice. */
        c->counts[slot]++;
        return;
    }
    size_t start = c->ix->cons_start[slot];
    size_t k = c->pos[slot];
    if (k > 0 && c->ix->cons[start + k - 1] == c->node) return;
    c->ix->cons[start + k] = c->node;
    c->pos[slot]++;
}

opt_status opt_graph_index_build(const opt_graph *g, opt_graph_index **out, opt_error *err)
{
    opt_graph_index *ix = calloc(1, sizeof *ix);
    if (!ix) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    struct count_ctx c = {.ix = ix};
    for (size_t i = 0; i < g->n_nodes && !c.oom; i++) {
        const opt_node *n = g->nodes[i];
        for (size_t o = 0; o < n->n_outputs; o++)
            if (n->outputs[o][0] && !opt_strmap_put(&ix->producer, n->outputs[o], i)) c.oom = true;
    }
    /* Pass 1 counts reads per value (an upper bound: a node reading a value twice counts twice);
     * pass 2 fills the flat array, skipping repeats, which are adjacent because one node's reads
     * are visited together. */
    for (int pass = 0; pass < 2 && !c.oom; pass++) {
        if (pass == 1) {
            size_t total = 0;
            ix->cons_start = calloc(c.nslots + 1, sizeof(size_t));
            ix->cons_count = calloc(c.nslots + 1, sizeof(size_t));
            c.pos = calloc(c.nslots + 1, sizeof(size_t));
            if (!ix->cons_start || !ix->cons_count || !c.pos) {
                c.oom = true;
                break;
            }
            for (size_t s = 0; s < c.nslots; s++) {
                ix->cons_start[s] = total;
                total += c.counts[s];
            }
            ix->cons = malloc((total ? total : 1) * sizeof(size_t));
            if (!ix->cons) {
                c.oom = true;
                break;
            }
            c.fill = true;
        }
        for (size_t i = 0; i < g->n_nodes && !c.oom; i++) {
            c.node = i;
            const opt_node *n = g->nodes[i];
            for (size_t k = 0; k < n->n_inputs && !c.oom; k++)
                if (n->inputs[k][0]) add_consumer(n->inputs[k], &c);
            node_outer_refs(n, add_consumer, &c, 0);
        }
    }
    if (!c.oom)
        for (size_t s = 0; s < c.nslots; s++) ix->cons_count[s] = c.pos[s];
    for (size_t i = 0; i < g->n_outputs && !c.oom; i++)
        if (!opt_strmap_put(&ix->outputs, nz(g->outputs[i]->name), i)) c.oom = true;
    free(c.counts);
    free(c.pos);
    if (c.oom) {
        opt_graph_index_free(ix);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory indexing graph");
    }
    *out = ix;
    return OPT_OK;
}

void opt_graph_index_free(opt_graph_index *ix)
{
    if (!ix) return;
    opt_strmap_free(&ix->producer);
    opt_strmap_free(&ix->cons_slot);
    opt_strmap_free(&ix->outputs);
    free(ix->cons_start);
    free(ix->cons_count);
    free(ix->cons);
    free(ix);
}

long opt_graph_producer(const opt_graph_index *ix, const char *name)
{
    size_t v;
    return opt_strmap_get(&ix->producer, name, &v) ? (long)v : -1;
}

const size_t *opt_graph_consumers(const opt_graph_index *ix, const char *name, size_t *n)
{
    size_t slot;
    if (!opt_strmap_get(&ix->cons_slot, name, &slot)) {
        *n = 0;
        return NULL;
    }
    *n = ix->cons_count[slot];
    return ix->cons + ix->cons_start[slot];
}

bool opt_graph_is_output(const opt_graph_index *ix, const char *name)
{
    return opt_strmap_get(&ix->outputs, name, NULL);
}

/* ---- lookups ------------------------------------------------------------------------------------ */

opt_tensor *opt_graph_initializer(const opt_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializers; i++)
        if (g->initializers[i]->name && strcmp(g->initializers[i]->name, name) == 0)
            return g->initializers[i];
    return NULL;
}

bool opt_clip_bounds(const opt_graph *g, const opt_node *n, int64_t opset, float *lo, float *hi)
{
    *lo = -3.402823e+38f;
    *hi = 3.402823e+38f;
    if (opset < 11) {
        *lo = opt_node_attr_float(n, "min", *lo);
        *hi = opt_node_attr_float(n, "max", *hi);
        return true;
    }
    for (size_t i = 1; i < 3 && i < n->n_inputs; i++) {
        if (!n->inputs[i] || !n->inputs[i][0]) continue;
        const opt_tensor *t = opt_graph_initializer(g, n->inputs[i]);
        uint64_t k;
        if (!t || !opt_tensor_numel(t, &k) || k != 1 || opt_tensor_is_external(t)) return false;
        if (t->data_type != OPT_DT_FLOAT && t->data_type != OPT_DT_FLOAT16 && t->data_type != OPT_DT_BFLOAT16)
            return false;
        opt_error e = {0};
        if (opt_tensor_to_f32(t, i == 1 ? lo : hi, &e) != OPT_OK) return false;
    }
    return true;
}

opt_node *opt_graph_node(const opt_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
    return NULL;
}

opt_value_info *opt_graph_value_info(const opt_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_value_info; i++)
        if (g->value_info[i]->name && strcmp(g->value_info[i]->name, name) == 0)
            return g->value_info[i];
    return NULL;
}

/* ---- topological order ---------------------------------------------------------------------- */

struct dep_ctx {
    const opt_strmap *producer;
    size_t node;
    size_t **adj;   /* per producer node: list of consumer nodes */
    size_t *adj_n;
    size_t *adj_cap;
    size_t *indeg;
    bool oom;
};

static void add_dep(const char *name, void *vctx)
{
    struct dep_ctx *c = vctx;
    size_t p;
    if (!opt_strmap_get(c->producer, name, &p)) return;
    if (c->adj_n[p] == c->adj_cap[p]) {
        size_t cap = c->adj_cap[p] ? c->adj_cap[p] * 2 : 4;
        size_t *a = realloc(c->adj[p], cap * sizeof *a);
        if (!a) {
            c->oom = true;
            return;
        }
        c->adj[p] = a;
        c->adj_cap[p] = cap;
    }
    c->adj[p][c->adj_n[p]++] = c->node;
    c->indeg[c->node]++;
}

opt_status opt_graph_topo_order(const opt_graph *g, size_t **order_out, opt_error *err)
{
    size_t n = g->n_nodes;
    opt_status st = OPT_OK;
    opt_strmap producer = {0};
    struct dep_ctx c = {0};
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    size_t *queue = malloc((n ? n : 1) * sizeof *queue);
    c.adj = calloc(n ? n : 1, sizeof *c.adj);
    c.adj_n = calloc(n ? n : 1, sizeof *c.adj_n);
    c.adj_cap = calloc(n ? n : 1, sizeof *c.adj_cap);
    c.indeg = calloc(n ? n : 1, sizeof *c.indeg);
    c.producer = &producer;
    if (!order || !queue || !c.adj || !c.adj_n || !c.adj_cap || !c.indeg) goto oom;
    for (size_t i = 0; i < n; i++)
        for (size_t o = 0; o < g->nodes[i]->n_outputs; o++)
            if (g->nodes[i]->outputs[o][0] && !opt_strmap_put(&producer, g->nodes[i]->outputs[o], i))
                goto oom;
    for (size_t i = 0; i < n && !c.oom; i++) {
        c.node = i;
        const opt_node *nd = g->nodes[i];
        for (size_t k = 0; k < nd->n_inputs; k++)
            if (nd->inputs[k][0]) add_dep(nd->inputs[k], &c);
        node_outer_refs(nd, add_dep, &c, 0);
    }
    if (c.oom) goto oom;
    /* Kahn's algorithm with a FIFO seeded in file order keeps sorted graphs unchanged. To keep it
     * stable we release ready nodes in index order using a min-heap-free trick: process the queue
     * in order and append newly ready nodes; for a graph already sorted that is the identity. */
    size_t qh = 0, qt = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        if (c.indeg[i] == 0) queue[qt++] = i;
    while (qh < qt) {
        size_t u = queue[qh++];
        order[k++] = u;
        for (size_t j = 0; j < c.adj_n[u]; j++)
            if (--c.indeg[c.adj[u][j]] == 0) queue[qt++] = c.adj[u][j];
    }
    if (k != n) {
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            if (c.indeg[i]) {
                bad = i;
                break;
            }
        st = opt_error_set(err, OPT_ERR_INVALID, "graph '%s' has a cycle through node '%s' (%s)",
                           nz(g->name), nz(g->nodes[bad]->name), nz(g->nodes[bad]->op_type));
        free(order);
        order = NULL;
    }
    goto done;
oom:
    st = opt_error_set(err, OPT_ERR_NOMEM, "out of memory sorting graph");
    free(order);
    order = NULL;
done:
    if (c.adj)
        for (size_t i = 0; i < n; i++) free(c.adj[i]);
    free(c.adj);
    free(c.adj_n);
    free(c.adj_cap);
    free(c.indeg);
    free(queue);
    opt_strmap_free(&producer);
    *order_out = order;
    return st;
}

opt_status opt_graph_topo_sort(opt_graph *g, opt_error *err)
{
    size_t *order;
    OPT_TRY(opt_graph_topo_order(g, &order, err));
    opt_node **nodes = malloc((g->n_nodes ? g->n_nodes : 1) * sizeof *nodes);
    if (!nodes) {
        free(order);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < g->n_nodes; i++) nodes[i] = g->nodes[order[i]];
    memcpy(g->nodes, nodes, g->n_nodes * sizeof *nodes);
    free(nodes);
    free(order);
    return OPT_OK;
}

/* ---- validation ------------------------------------------------------------------------------ */

typedef struct scope {
    const struct scope *parent;
    opt_strmap names;
} scope;

static bool scope_has(const scope *s, const char *name)
{
    for (; s; s = s->parent)
        if (opt_strmap_get(&s->names, name, NULL)) return true;
    return false;
}

static opt_status validate_graph(const opt_graph *g, const scope *parent, int depth, opt_error *err);

static opt_status validate_node_subgraphs(const opt_node *n, const scope *sc, int depth,
                                          opt_error *err)
{
    for (size_t a = 0; a < n->n_attrs; a++) {
        const opt_attr *at = &n->attrs[a];
        if (at->g) OPT_TRY(validate_graph(at->g, sc, depth + 1, err));
        for (size_t k = 0; k < at->n_graphs; k++)
            OPT_TRY(validate_graph(at->graphs[k], sc, depth + 1, err));
    }
    return OPT_OK;
}

static opt_status validate_graph(const opt_graph *g, const scope *parent, int depth, opt_error *err)
{
    if (depth > OPT_MAX_GRAPH_DEPTH)
        return opt_error_set(err, OPT_ERR_LIMIT, "subgraphs nested deeper than %d levels",
                             OPT_MAX_GRAPH_DEPTH);
    opt_status st = OPT_OK;
    scope sc = {parent, {0}};
    const char *gname = nz(g->name);
    for (size_t i = 0; i < g->n_inputs; i++)
        if (!opt_strmap_put(&sc.names, nz(g->inputs[i]->name), 0)) goto oom;
    for (size_t i = 0; i < g->n_initializers; i++)
        if (!opt_strmap_put(&sc.names, nz(g->initializers[i]->name), 0)) goto oom;
    for (size_t i = 0; i < g->n_sparse_initializers; i++)
        if (g->sparse_initializers[i]->values &&
            !opt_strmap_put(&sc.names, nz(g->sparse_initializers[i]->values->name), 0))
            goto oom;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        if (!n->op_type || !n->op_type[0]) {
            st = opt_error_set(err, OPT_ERR_INVALID, "node '%s' (#%zu in graph '%s') has no op_type",
                               nz(n->name), i, gname);
            goto done;
        }
        for (size_t o = 0; o < n->n_outputs; o++) {
            const char *nm = n->outputs[o];
            if (!nm[0]) continue;
            if (opt_strmap_get(&sc.names, nm, NULL)) {
                st = opt_error_set(err, OPT_ERR_INVALID,
                                   "node '%s' (%s): value '%s' is assigned more than once",
                                   nz(n->name), n->op_type, nm);
                goto done;
            }
            if (!opt_strmap_put(&sc.names, nm, 0)) goto oom;
        }
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        for (size_t k = 0; k < n->n_inputs; k++) {
            const char *nm = n->inputs[k];
            if (nm[0] && !scope_has(&sc, nm)) {
                st = opt_error_set(err, OPT_ERR_INVALID,
                                   "node '%s' (%s): input '%s' is not defined by any node, "
                                   "initializer or graph input",
                                   nz(n->name), n->op_type, nm);
                goto done;
            }
        }
        st = validate_node_subgraphs(n, &sc, depth, err);
        if (st != OPT_OK) goto done;
    }
    for (size_t i = 0; i < g->n_outputs; i++) {
        const char *nm = nz(g->outputs[i]->name);
        if (!scope_has(&sc, nm)) {
            st = opt_error_set(err, OPT_ERR_INVALID, "graph '%s': output '%s' is not defined",
                               gname, nm);
            goto done;
        }
    }
    {
        size_t *order;
        st = opt_graph_topo_order(g, &order, err);
        if (st == OPT_OK) free(order);
    }
    goto done;
oom:
    st = opt_error_set(err, OPT_ERR_NOMEM, "out of memory validating graph");
done:
    opt_strmap_free(&sc.names);
    return st;
}

opt_status opt_model_validate(const opt_model *m, opt_error *err)
{
    if (!m->graph) return opt_error_set(err, OPT_ERR_INVALID, "model has no graph");
    return validate_graph(m->graph, NULL, 0, err);
}

/* ---- edits ---------------------------------------------------------------------------------- */

static bool name_used(const opt_graph *g, const char *nm)
{
    for (size_t i = 0; i < g->n_inputs; i++)
        if (strcmp(nz(g->inputs[i]->name), nm) == 0) return true;
    for (size_t i = 0; i < g->n_outputs; i++)
        if (strcmp(nz(g->outputs[i]->name), nm) == 0) return true;
    for (size_t i = 0; i < g->n_initializers; i++)
        if (strcmp(nz(g->initializers[i]->name), nm) == 0) return true;
    for (size_t i = 0; i < g->n_value_info; i++)
        if (strcmp(nz(g->value_info[i]->name), nm) == 0) return true;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        if (n->name && strcmp(n->name, nm) == 0) return true;
        for (size_t k = 0; k < n->n_outputs; k++)
            if (strcmp(n->outputs[k], nm) == 0) return true;
        for (size_t k = 0; k < n->n_inputs; k++)
            if (strcmp(n->inputs[k], nm) == 0) return true;
    }
    return false;
}

char *opt_graph_unique_name(const opt_graph *g, const char *base)
{
    size_t len = strlen(base) + 24;
    char *buf = malloc(len);
    if (!buf) return NULL;
    snprintf(buf, len, "%s", base);
    for (unsigned long k = 1; name_used(g, buf); k++) snprintf(buf, len, "%s_%lu", base, k);
    return buf;
}

opt_status opt_graph_insert_node(opt_graph *g, size_t at, opt_node *n, opt_error *err)
{
    if (at > g->n_nodes) at = g->n_nodes;
    opt_node **p = realloc(g->nodes, (g->n_nodes + 1) * sizeof *p);
    if (!p) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    memmove(p + at + 1, p + at, (g->n_nodes - at) * sizeof *p);
    p[at] = n;
    g->nodes = p;
    g->n_nodes++;
    return OPT_OK;
}

void opt_graph_remove_node(opt_graph *g, size_t i)
{
    if (i >= g->n_nodes) return;
    opt_node_free(g->nodes[i]);
    memmove(g->nodes + i, g->nodes + i + 1, (g->n_nodes - i - 1) * sizeof *g->nodes);
    g->n_nodes--;
}

opt_status opt_graph_add_initializer(opt_graph *g, opt_tensor *t, opt_error *err)
{
    opt_tensor **p = realloc(g->initializers, (g->n_initializers + 1) * sizeof *p);
    if (!p) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    p[g->n_initializers++] = t;
    g->initializers = p;
    return OPT_OK;
}

bool opt_graph_remove_initializer(opt_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializers; i++) {
        if (g->initializers[i]->name && strcmp(g->initializers[i]->name, name) == 0) {
            opt_tensor_free(g->initializers[i]);
            memmove(g->initializers + i, g->initializers + i + 1,
                    (g->n_initializers - i - 1) * sizeof *g->initializers);
            g->n_initializers--;
            return true;
        }
    }
    return false;
}

/* ---- nodes ------------------------------------------------------------------------------------ */

static char **strv_dup(const char *const *v, size_t n, bool *ok)
{
    if (!n) return NULL;
    char **d = calloc(n, sizeof *d);
    if (!d) {
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        d[i] = opt_strdup(v[i] ? v[i] : "");
        if (!d[i]) *ok = false;
    }
    return d;
}

opt_node *opt_node_make(const char *op_type, const char *name, const char *const *inputs,
                        size_t n_inputs, const char *const *outputs, size_t n_outputs)
{
    opt_node *n = opt_node_new();
    if (!n) return NULL;
    bool ok = true;
    n->op_type = opt_strdup(op_type);
    n->name = opt_strdup(name);
    n->inputs = strv_dup(inputs, n_inputs, &ok);
    n->n_inputs = n->inputs ? n_inputs : 0;
    n->outputs = strv_dup(outputs, n_outputs, &ok);
    n->n_outputs = n->outputs ? n_outputs : 0;
    if (!ok || !n->op_type || (name && !n->name)) {
        opt_node_free(n);
        return NULL;
    }
    return n;
}

const opt_attr *opt_node_attr(const opt_node *n, const char *name)
{
    for (size_t i = 0; i < n->n_attrs; i++)
        if (n->attrs[i].name && strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

int64_t opt_node_attr_int(const opt_node *n, const char *name, int64_t def)
{
    const opt_attr *a = opt_node_attr(n, name);
    return a && a->has_i ? a->i : def;
}

float opt_node_attr_float(const opt_node *n, const char *name, float def)
{
    const opt_attr *a = opt_node_attr(n, name);
    return a && a->has_f ? a->f : def;
}

const char *opt_node_attr_string(const opt_node *n, const char *name, const char *def)
{
    const opt_attr *a = opt_node_attr(n, name);
    return a && a->has_s && a->s.data ? (const char *)a->s.data : def;
}

/* Returns a cleared attribute slot named name (replacing an existing one), or NULL on OOM. */
static opt_attr *attr_slot(opt_node *n, const char *name)
{
    for (size_t i = 0; i < n->n_attrs; i++) {
        if (n->attrs[i].name && strcmp(n->attrs[i].name, name) == 0) {
            char *nm = n->attrs[i].name;
            n->attrs[i].name = NULL;
            opt_attr_clear(&n->attrs[i]);
            n->attrs[i].name = nm;
            return &n->attrs[i];
        }
    }
    opt_attr *p = realloc(n->attrs, (n->n_attrs + 1) * sizeof *p);
    if (!p) return NULL;
    n->attrs = p;
    opt_attr *a = &p[n->n_attrs];
    memset(a, 0, sizeof *a);
    a->name = opt_strdup(name);
    if (!a->name) return NULL;
    n->n_attrs++;
    return a;
}

opt_status opt_node_set_attr_int(opt_node *n, const char *name, int64_t v, opt_error *err)
{
    opt_attr *a = attr_slot(n, name);
    if (!a) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    a->has_type = true;
    a->type = OPT_ATTR_INT;
    a->has_i = true;
    a->i = v;
    return OPT_OK;
}

opt_status opt_node_set_attr_float(opt_node *n, const char *name, float v, opt_error *err)
{
    opt_attr *a = attr_slot(n, name);
    if (!a) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    a->has_type = true;
    a->type = OPT_ATTR_FLOAT;
    a->has_f = true;
    a->f = v;
    return OPT_OK;
}

opt_status opt_node_set_attr_ints(opt_node *n, const char *name, const int64_t *v, size_t k,
                                  opt_error *err)
{
    int64_t *copy = NULL;
    if (k) {
        copy = malloc(k * sizeof *copy);
        if (!copy) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        memcpy(copy, v, k * sizeof *copy);
    }
    opt_attr *a = attr_slot(n, name);
    if (!a) {
        free(copy);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    a->has_type = true;
    a->type = OPT_ATTR_INTS;
    a->ints = copy;
    a->n_ints = k;
    return OPT_OK;
}

opt_status opt_node_set_attr_string(opt_node *n, const char *name, const char *v, opt_error *err)
{
    size_t len = strlen(v);
    uint8_t *copy = malloc(len + 1);
    if (!copy) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    memcpy(copy, v, len + 1);
    opt_attr *a = attr_slot(n, name);
    if (!a) {
        free(copy);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    a->has_type = true;
    a->type = OPT_ATTR_STRING;
    a->has_s = true;
    a->s.data = copy;
    a->s.len = len;
    return OPT_OK;
}

opt_status opt_node_set_attr_tensor(opt_node *n, const char *name, opt_tensor *t, opt_error *err)
{
    opt_attr *a = attr_slot(n, name);
    if (!a) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    a->has_type = true;
    a->type = OPT_ATTR_TENSOR;
    a->t = t;
    return OPT_OK;
}

bool opt_node_is_onnx(const opt_node *n)
{
    return !n->domain || !n->domain[0] || strcmp(n->domain, "ai.onnx") == 0;
}
