/*
 * libopt/exec/exec.c — the planner and the interpreter loop of mopt's reference executor.
 *
 * Planning (opt_exec_new) walks the graph once in topological order. For each node it looks up
 * a kernel by (domain, op_type, opset, dtype of the kernel's type input, device), infers output
 * dtypes, evaluates Constant nodes into constants, and lets the kernel prepare itself with the
 * constant inputs. Every value gets a use count: the number of input slots that read it (+1 for
 * graph outputs). Running hands out activation buffers from a best-fit pool and returns each
 * buffer when the last reader of every value sharing it (aliases hold a reference) is done, so
 * the pool's high-water mark stays near the largest live set instead of the sum of all
 * activations.
 *
 * Devices: every node carries the device its kernel runs on. Only the CPU has kernels today; a
 * CUDA backend adds kernels with device OPT_DEVICE_CUDA, and the planner's lookup falls back to
 * the CPU per node, which is where partition boundaries (and copies) will go.
 */
#include <assert.h>
#include "libopt/exec/exec.h"
#include "libopt/exec/fuse.h"
#include "libopt/exec/kernel.h"
#include "libopt/exec/qdq_fuse.h"
#include "libopt/exec/threads.h"
#include "libopt/ir/strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Input pointer slots kept NULL past each node's inputs (see run_node). */
#define IN_PAD 8

enum { V_UNDEF = 0, V_INPUT, V_CONST, V_ACT };

#define NO_VALUE ((size_t)-1)

typedef struct ebuf {
    void *data;
    size_t cap;
    int refs;
} ebuf;

typedef struct evalue {
    const char *name;
    int kind;
    int dtype;
    opt_array arr;   /* V_CONST: owned data (or the model's, if borrowed); otherwise the
                      * current run's view */
    bool borrowed;   /* V_CONST whose data is the initializer's own bytes (not freed here) */
    ebuf *buf;       /* V_ACT while live */
    int uses;        /* readers (input slots) + 1 per graph output slot */
    int left;        /* uses left in the current run */
} evalue;

typedef struct enode {
    const opt_node *node;
    const opt_kernel *k;
    int opset;
    size_t *in, n_in;
    size_t *out, n_out;
    int *out_dt;
    void *state;
    bool prepared;
    bool borrowed;   /* state is opt_exec_opts.share's (not released here) */
} enode;

struct opt_exec {
    const opt_model *m;        /* what is planned: the user's model or fused's view of it */
    opt_fuse_view *fused;      /* owned; NULL when nothing was fused */
    opt_qdq_view *qdq;         /* owned; QDQ islands as int8 ops (qdq_fuse.h), or NULL */
    opt_exec_opts o;
    int threads;
    opt_tpool *pool;
    evalue *vals;
    size_t n_vals, cap_vals;
    opt_strmap vmap;
    enode *nodes;
    size_t n_nodes;
    size_t n_folded;
    size_t n_inplace;   /* outputs that took over their input's buffer (all runs) */
    size_t *inputs, n_inputs;
    const opt_value_info **input_vi;
    size_t *outputs, n_outputs;
    /* Buffer pool. */
    ebuf **free_bufs;
    size_t n_free, cap_free;
    size_t pool_bytes, peak_bytes;
    /* Per-node state of the node being run. */
    ebuf **cur_bufs;     /* one per output of the current node */
    ebuf **scratch;
    size_t n_scratch, cap_scratch;
    size_t cur_node;
    const opt_array **in_ptrs;
    opt_array *out_arrs;
    size_t max_in, max_out;
    /* Profile. */
    opt_exec_prof *prof;
    char **labels;
};

/* ---- buffer pool ------------------------------------------------------------------------- */

static ebuf *pool_get(opt_exec *e, size_t bytes)
{
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need == 0) need = 64;
    size_t best = SIZE_MAX, largest = SIZE_MAX;
    for (size_t i = 0; i < e->n_free; i++) {
        size_t c = e->free_bufs[i]->cap;
        if (c >= need && (best == SIZE_MAX || c < e->free_bufs[best]->cap)) best = i;
        if (largest == SIZE_MAX || c > e->free_bufs[largest]->cap) largest = i;
    }
    ebuf *b;
    if (best != SIZE_MAX) {
        b = e->free_bufs[best];
        e->free_bufs[best] = e->free_bufs[--e->n_free];
    } else {
        /* Nothing fits: grow the largest free buffer rather than keep it idle beside a new one. */
        if (largest != SIZE_MAX) {
            b = e->free_bufs[largest];
            e->free_bufs[largest] = e->free_bufs[--e->n_free];
            e->pool_bytes -= b->cap;
            free(b->data);
        } else {
            b = calloc(1, sizeof *b);
            if (!b) return NULL;
        }
        b->data = aligned_alloc(64, need);
        if (!b->data) {
            free(b);
            return NULL;
        }
        b->cap = need;
        e->pool_bytes += need;
        if (e->pool_bytes > e->peak_bytes) e->peak_bytes = e->pool_bytes;
    }
    b->refs = 1;
    return b;
}

static void pool_put(opt_exec *e, ebuf *b)
{
    if (!b || --b->refs > 0) return;
    if (e->n_free == e->cap_free) {
        size_t nc = e->cap_free ? 2 * e->cap_free : 16;
        ebuf **nb = realloc(e->free_bufs, nc * sizeof *nb);
        if (!nb) { /* cannot keep it: give it back to libc */
            e->pool_bytes -= b->cap;
            free(b->data);
            free(b);
            return;
        }
        e->free_bufs = nb;
        e->cap_free = nc;
    }
    e->free_bufs[e->n_free++] = b;
}

static void pool_clear(opt_exec *e)
{
    for (size_t i = 0; i < e->n_free; i++) {
        free(e->free_bufs[i]->data);
        free(e->free_bufs[i]);
    }
    e->n_free = 0;
    e->pool_bytes = 0;
}

/* ---- kernel-facing API ------------------------------------------------------------------- */

static bool array_bytes(opt_array *a)
{
    uint64_t n = 1, bytes;
    for (int i = 0; i < a->ndim; i++) {
        if (a->dims[i] < 0) return false;
        uint64_t d = (uint64_t)a->dims[i];
        if (d && n > UINT64_MAX / d) return false;
        n *= d;
    }
    if (!opt_dtype_raw_bytes(a->dtype, n, &bytes) || bytes > ((uint64_t)1 << 46)) return false;
    a->nbytes = (size_t)bytes;
    return true;
}

opt_status opt_kctx_output(opt_kctx *k, size_t i, int dtype, int ndim, const int64_t *dims,
                           opt_error *err)
{
    if (i >= k->n_out) return opt_kerr(k, err, OPT_ERR_INVALID, "output %zu does not exist", i);
    if (ndim < 0 || ndim > OPT_MAX_DIMS)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "output rank %d (at most %d)", ndim, OPT_MAX_DIMS);
    opt_array *o = &k->out[i];
    o->dtype = dtype;
    o->ndim = ndim;
    for (int d = 0; d < ndim; d++) o->dims[d] = dims[d];
    if (!array_bytes(o))
        return opt_kerr(k, err, OPT_ERR_LIMIT, "output %zu: bad or too large shape", i);
    opt_exec *e = k->exec;
    if (!e) { /* outside an executor (unit tests): plain malloc, the caller frees */
        size_t cap = (o->nbytes + 63) & ~(size_t)63;
        free(o->data);
        o->data = aligned_alloc(64, cap ? cap : 64);
        return o->data ? OPT_OK : opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
    }
    if (e->cur_bufs[i]) { /* asked twice: release the first */
        pool_put(e, e->cur_bufs[i]);
        e->cur_bufs[i] = NULL;
    }
    if (e->o.max_output_bytes && o->nbytes > e->o.max_output_bytes)
        return opt_kerr(k, err, OPT_ERR_LIMIT, "output %zu: %zu bytes is over the limit of %zu", i,
                        o->nbytes, e->o.max_output_bytes);
    ebuf *b = pool_get(e, o->nbytes);
    if (!b) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory for output %zu (%zu bytes)", i, o->nbytes);
    e->cur_bufs[i] = b;
    o->data = b->data;
    return OPT_OK;
}

opt_status opt_kctx_output_inplace(opt_kctx *k, size_t i, size_t j, int dtype, int ndim,
                                   const int64_t *dims, opt_error *err)
{
    opt_exec *e = k->exec;
    if (!e || i >= k->n_out || j >= k->n_in || !k->in[j] || ndim < 0 || ndim > OPT_MAX_DIMS)
        return opt_kctx_output(k, i, dtype, ndim, dims, err);
    enode *en = &e->nodes[e->cur_node];
    if (en->in[j] == NO_VALUE) return opt_kctx_output(k, i, dtype, ndim, dims, err);
    evalue *v = &e->vals[en->in[j]];
    /* Readers left: this node's own slots reading v count too, so left == 1 means this is the
     * only remaining read. */
    opt_array o = {.dtype = dtype, .ndim = ndim};
    for (int d = 0; d < ndim; d++) o.dims[d] = dims[d];
    if (v->kind != V_ACT || !v->buf || v->buf->refs != 1 || v->left != 1 || e->cur_bufs[i] ||
        !array_bytes(&o) || o.nbytes != v->arr.nbytes)
        return opt_kctx_output(k, i, dtype, ndim, dims, err);
    o.data = v->arr.data;
    k->out[i] = o;
    v->buf->refs++; /* released with v after this node, then owned by the output alone */
    e->cur_bufs[i] = v->buf;
    e->n_inplace++;
    return OPT_OK;
}

opt_status opt_kctx_output_alias(opt_kctx *k, size_t i, size_t j, int ndim, const int64_t *dims,
                                 opt_error *err)
{
    if (i >= k->n_out || j >= k->n_in || !k->in[j])
        return opt_kerr(k, err, OPT_ERR_INVALID, "bad alias of output %zu to input %zu", i, j);
    if (ndim < 0 || ndim > OPT_MAX_DIMS)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "output rank %d (at most %d)", ndim, OPT_MAX_DIMS);
    const opt_array *src = k->in[j];
    opt_array *o = &k->out[i];
    o->dtype = src->dtype;
    o->ndim = ndim;
    for (int d = 0; d < ndim; d++) o->dims[d] = dims[d];
    if (!array_bytes(o) || o->nbytes != src->nbytes)
        return opt_kerr(k, err, OPT_ERR_INVALID, "output %zu: shape does not match input %zu's size", i, j);
    opt_exec *e = k->exec;
    if (!e) {
        free(o->data);
        o->data = malloc(o->nbytes ? o->nbytes : 1);
        if (!o->data) return opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        if (o->nbytes) memcpy(o->data, src->data, o->nbytes);
        return OPT_OK;
    }
    if (e->cur_bufs[i]) {
        pool_put(e, e->cur_bufs[i]);
        e->cur_bufs[i] = NULL;
    }
    enode *en = &e->nodes[e->cur_node];
    ebuf *b = en->in[j] != NO_VALUE ? e->vals[en->in[j]].buf : NULL;
    if (b) b->refs++;
    e->cur_bufs[i] = b;
    o->data = src->data;
    return OPT_OK;
}

void *opt_kctx_scratch(opt_kctx *k, size_t bytes, opt_error *err)
{
    opt_exec *e = k->exec;
    if (!e) {
        opt_kerr(k, err, OPT_ERR_USAGE, "scratch memory needs an executor");
        return NULL;
    }
    if (e->n_scratch == e->cap_scratch) {
        size_t nc = e->cap_scratch ? 2 * e->cap_scratch : 8;
        ebuf **ns = realloc(e->scratch, nc * sizeof *ns);
        if (!ns) {
            opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
            return NULL;
        }
        e->scratch = ns;
        e->cap_scratch = nc;
    }
    ebuf *b = pool_get(e, bytes);
    if (!b) {
        opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory for %zu bytes of scratch", bytes);
        return NULL;
    }
    e->scratch[e->n_scratch++] = b;
    return b->data;
}

void opt_parallel_for(opt_kctx *k, size_t n, void (*fn)(void *ctx, size_t begin, size_t end),
                      void *ctx)
{
    opt_exec *e = k ? k->exec : NULL;
    opt_tpool_run(e ? e->pool : NULL, n, 1, fn, ctx);
}

/* ---- planning ---------------------------------------------------------------------------- */

static size_t value_of(opt_exec *e, const char *name)
{
    size_t v;
    if (opt_strmap_get(&e->vmap, name, &v)) return v;
    if (e->n_vals == e->cap_vals) {
        /* plan() reserves all slots; growing here would move arrays handed to prepare(). */
        assert(!"value table full");
        size_t nc = e->cap_vals ? 2 * e->cap_vals : 64;
        evalue *nv = realloc(e->vals, nc * sizeof *nv);
        if (!nv) return NO_VALUE;
        e->vals = nv;
        e->cap_vals = nc;
    }
    v = e->n_vals++;
    memset(&e->vals[v], 0, sizeof e->vals[v]);
    e->vals[v].name = name;
    if (!opt_strmap_put(&e->vmap, name, v)) return NO_VALUE;
    return v;
}

static int node_opset(const opt_model *m, const opt_node *n)
{
    const char *d = n->domain ? n->domain : "";
    int64_t v = opt_model_opset(m, d);
    if (v < 0 && (d[0] == 0 || strcmp(d, "ai.onnx") == 0)) v = opt_model_opset(m, "ai.onnx");
    if (v < 0 && d[0] == 0) v = opt_model_opset(m, "");
    return v < 0 ? -1 : v > INT_MAX ? INT_MAX : (int)v;
}

static const char *node_label(const opt_node *n, size_t idx, char *buf, size_t len)
{
    if (n->name && n->name[0]) return n->name;
    snprintf(buf, len, "#%zu", idx);
    return buf;
}

/* Runs node i of the plan: binds inputs, calls the kernel, stores outputs. Shared by Constant
 * folding at load time and opt_exec_run. */
static opt_status run_node(opt_exec *e, size_t i, opt_error *err);

static void release_cur(opt_exec *e, size_t n_out)
{
    for (size_t j = 0; j < n_out; j++) {
        if (e->cur_bufs[j]) pool_put(e, e->cur_bufs[j]);
        e->cur_bufs[j] = NULL;
    }
}

static void release_scratch(opt_exec *e)
{
    for (size_t s = 0; s < e->n_scratch; s++) pool_put(e, e->scratch[s]);
    e->n_scratch = 0;
}

static opt_status run_node(opt_exec *e, size_t i, opt_error *err)
{
    enode *en = &e->nodes[i];
    for (size_t j = 0; j < en->n_in; j++) {
        if (en->in[j] == NO_VALUE) {
            e->in_ptrs[j] = NULL;
            continue;
        }
        e->in_ptrs[j] = &e->vals[en->in[j]].arr;
    }
    /* Defence in depth for crafted models: a kernel that reads in[1] of a node given one input
     * sees NULL (an omitted input it must refuse) instead of a stale pointer (found by the
     * exec_run fuzz target: Mod with one input). */
    for (size_t j = en->n_in; j < en->n_in + IN_PAD - 1; j++) e->in_ptrs[j] = NULL;
    for (size_t j = 0; j < en->n_out; j++) {
        memset(&e->out_arrs[j], 0, sizeof e->out_arrs[j]);
        e->cur_bufs[j] = NULL;
    }
    opt_kctx k = {
        .node = en->node,
        .opset = en->opset,
        .in = e->in_ptrs,
        .n_in = en->n_in,
        .out = e->out_arrs,
        .n_out = en->n_out,
        .state = en->state,
        .threads = e->threads,
        .exec = e,
        .out_dt = en->out_dt,
    };
    e->cur_node = i;
    e->n_scratch = 0;
    struct timespec t0, t1;
    if (e->o.profile) clock_gettime(CLOCK_MONOTONIC, &t0);
    opt_error kerr = {0};
    opt_status s = en->k->run(&k, &kerr);
    if (e->o.profile) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        e->prof[i].total_ms += (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        e->prof[i].calls++;
    }
    release_scratch(e);
    if (s == OPT_OK) {
        for (size_t j = 0; j < en->n_out; j++) {
            if (en->out[j] == NO_VALUE) continue;
            if (!e->out_arrs[j].data) {
                s = opt_node_err(en->node, &kerr, OPT_ERR_INVALID, "kernel produced no output %zu", j);
                break;
            }
            if (e->out_arrs[j].dtype != en->out_dt[j]) {
                s = opt_node_err(en->node, &kerr, OPT_ERR_INVALID,
                                 "kernel produced %s for output %zu, planned %s",
                                 opt_dtype_short(e->out_arrs[j].dtype), j, opt_dtype_short(en->out_dt[j]));
                break;
            }
        }
    }
    if (s != OPT_OK) {
        release_cur(e, en->n_out);
        if (err) *err = kerr;
        if (err && err->msg[0] == 0) opt_node_err(en->node, err, s, "kernel failed");
        return s;
    }
    for (size_t j = 0; j < en->n_out; j++) {
        if (en->out[j] == NO_VALUE) { /* omitted optional output */
            if (e->cur_bufs[j]) pool_put(e, e->cur_bufs[j]);
            e->cur_bufs[j] = NULL;
            continue;
        }
        evalue *v = &e->vals[en->out[j]];
        v->arr = e->out_arrs[j];
        v->buf = e->cur_bufs[j];
        e->cur_bufs[j] = NULL;
    }
    return OPT_OK;
}

/* Drops a constant's data (freed unless it is the model's). */
static void const_free(evalue *v)
{
    if (v->borrowed) memset(&v->arr, 0, sizeof v->arr);
    else opt_array_free(&v->arr);
    v->borrowed = false;
}

/* Turns the outputs of node i (just run at load) into owned constants. */
static opt_status freeze_outputs(opt_exec *e, size_t i, opt_error *err)
{
    enode *en = &e->nodes[i];
    for (size_t j = 0; j < en->n_out; j++) {
        if (en->out[j] == NO_VALUE) continue;
        evalue *v = &e->vals[en->out[j]];
        void *copy = malloc(v->arr.nbytes ? v->arr.nbytes : 1);
        if (!copy) return opt_node_err(en->node, err, OPT_ERR_NOMEM, "out of memory");
        if (v->arr.nbytes) memcpy(copy, v->arr.data, v->arr.nbytes);
        if (v->buf) pool_put(e, v->buf);
        v->buf = NULL;
        v->arr.data = copy;
        v->kind = V_CONST;
        v->borrowed = false;
    }
    return OPT_OK;
}

/* How many leading inputs an op requires: the ONNX operator schemas' min_input, the smallest over
 * the op's versions (so a lower bound for every opset). Every op not listed needs its first input,
 * except Constant (no inputs). Checked at load, so no kernel ever sees a required input missing. */
static size_t required_inputs(const opt_node *n)
{
    static const struct {
        const char *op;
        unsigned char k;
    } req[] = {
        {"Add", 2}, {"And", 2}, {"BitShift", 2}, {"BitwiseAnd", 2}, {"BitwiseOr", 2},
        {"BitwiseXor", 2}, {"CastLike", 2}, {"Conv", 2}, {"ConvInteger", 2}, {"ConvTranspose", 2},
        {"CumSum", 2}, {"DequantizeLinear", 2}, {"Div", 2}, {"Equal", 2}, {"Expand", 2},
        {"Gather", 2}, {"GatherElements", 2}, {"GatherND", 2}, {"Gemm", 2}, {"Greater", 2},
        {"GreaterOrEqual", 2}, {"LayerNormalization", 2}, {"Less", 2}, {"LessOrEqual", 2},
        {"MatMul", 2}, {"MatMulInteger", 2}, {"Mod", 2}, {"Mul", 2}, {"Or", 2}, {"PRelu", 2},
        {"Pow", 2}, {"QuantizeLinear", 2}, {"Sub", 2}, {"Tile", 2}, {"Xor", 2}, {"OneHot", 3},
        {"Range", 3}, {"ScatterElements", 3}, {"ScatterND", 3}, {"Where", 3},
        {"BatchNormalization", 5}, {"QLinearConv", 8}, {"QLinearMatMul", 8},
        {"Optional", 0}, {"OptionalHasElement", 0},
    };
    if (opt_node_is_onnx(n)) {
        if (strcmp(n->op_type, "Constant") == 0) return 0;
        for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
            if (strcmp(n->op_type, req[i].op) == 0) return req[i].k;
    }
    return 1;
}

/* The no_prepack option of the executor whose plan() runs on this thread (prepare() has no
 * handle on the executor). */
static __thread bool planning_no_prepack;

bool opt_prepare_packs_weights(void) { return !planning_no_prepack; }

/* The node of opt_exec_opts.share that the i-th planned node n (kernel k) can take its prepared
 * state from: the same node of the same model, planned with the same kernel; NULL if none. A
 * Constant node is evaluated at load and its state released, so it never borrows. */
static const enode *shared_node(const opt_exec *e, size_t i, const opt_node *n, const opt_kernel *k)
{
    const opt_exec *sh = e->o.share;
    if (!sh || i >= sh->n_nodes || (opt_node_is_onnx(n) && strcmp(n->op_type, "Constant") == 0)) return NULL;
    const enode *se = &sh->nodes[i];
    return se->prepared && se->node == n && se->k == k ? se : NULL;
}

static opt_status plan(opt_exec *e, opt_error *err)
{
    const opt_model *m = e->m;
    const opt_graph *g = m->graph;
    if (!g) return opt_error_set(err, OPT_ERR_INVALID, "model has no graph");

    /* Reserve every value slot up front so e->vals never moves while planning: kernels' prepare()
     * receives pointers to constant arrays in it and may keep them in their state. */
    size_t nv = g->n_initializers + g->n_sparse_initializers + g->n_inputs + 1;
    for (size_t i = 0; i < g->n_nodes; i++) nv += g->nodes[i]->n_outputs;
    e->vals = calloc(nv, sizeof *e->vals);
    if (!e->vals) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    e->cap_vals = nv;

    /* Initializers become constants (converted once). */
    for (size_t i = 0; i < g->n_initializers; i++) {
        const opt_tensor *t = g->initializers[i];
        if (!t->name) continue;
        size_t v = value_of(e, t->name);
        if (v == NO_VALUE) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        evalue *ev = &e->vals[v];
        const_free(ev);
        /* Read in place: the model outlives the executor, and a copy of every weight (BERT-base:
         * 435 MB of fresh pages) cost more than planning the rest. */
        OPT_TRY(opt_array_view_tensor(t, &ev->arr, &ev->borrowed, err));
        ev->kind = V_CONST;
        ev->dtype = t->data_type;
    }
    /* Sparse initializers (`mopt prune --sparse-initializers`) become dense constants. */
    for (size_t i = 0; i < g->n_sparse_initializers; i++) {
        opt_tensor *t;
        OPT_TRY(opt_sparse_to_dense(g->sparse_initializers[i], &t, err));
        size_t v = t->name ? value_of(e, t->name) : NO_VALUE;
        opt_status st = OPT_OK;
        if (v == NO_VALUE)
            st = t->name ? opt_error_set(err, OPT_ERR_NOMEM, "out of memory")
                         : opt_error_set(err, OPT_ERR_INVALID, "sparse initializer without a name");
        else if (e->vals[v].kind == V_CONST)
            st = opt_error_set(err, OPT_ERR_INVALID,
                               "sparse initializer '%s' has the name of another initializer", t->name);
        else {
            evalue *ev = &e->vals[v];
            const_free(ev);
            if (!(st = opt_array_from_tensor(t, &ev->arr, err))) {
                ev->kind = V_CONST;
                ev->dtype = t->data_type;
            }
        }
        opt_tensor_free(t);
        if (st) return st;
    }

    /* Graph inputs that are not initializers. */
    e->inputs = calloc(g->n_inputs + 1, sizeof *e->inputs);
    e->input_vi = calloc(g->n_inputs + 1, sizeof *e->input_vi);
    if (!e->inputs || !e->input_vi) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->n_inputs; i++) {
        const opt_value_info *vi = g->inputs[i];
        if (!vi->name) continue;
        size_t v = value_of(e, vi->name);
        if (v == NO_VALUE) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        if (e->vals[v].kind == V_CONST) continue; /* IR < 4: initializer listed as input */
        if (vi->type && vi->type->kind != OPT_TYPE_TENSOR)
            return opt_error_set(err, OPT_ERR_UNSUPPORTED,
                                 "graph input '%s': only tensor inputs are supported", vi->name);
        e->vals[v].kind = V_INPUT;
        e->vals[v].dtype = vi->type && vi->type->has_elem_type ? vi->type->elem_type : 0;
        e->input_vi[e->n_inputs] = vi;
        e->inputs[e->n_inputs++] = v;
    }

    size_t *order = NULL;
    OPT_TRY(opt_graph_topo_order(g, &order, err));
    e->nodes = calloc(g->n_nodes + 1, sizeof *e->nodes);
    e->prof = calloc(g->n_nodes + 1, sizeof *e->prof);
    e->labels = calloc(g->n_nodes + 1, sizeof *e->labels);
    if (!e->nodes || !e->prof || !e->labels) {
        free(order);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    opt_status s = OPT_OK;
    int in_dt[64];
    const opt_array *consts[64];
    for (size_t oi = 0; oi < g->n_nodes && s == OPT_OK; oi++) {
        const opt_node *n = g->nodes[order[oi]];
        char lb[32];
        const char *label = node_label(n, order[oi], lb, sizeof lb);
        for (size_t a = 0; a < n->n_attrs; a++)
            if (n->attrs[a].g || n->attrs[a].n_graphs) {
                s = opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "ops with subgraphs are not supported");
                break;
            }
        if (s != OPT_OK) break;
        if (n->n_inputs > 64 || n->n_outputs > 64) {
            s = opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "more than 64 inputs or outputs");
            break;
        }
        enode *en = &e->nodes[e->n_nodes];
        en->node = n;
        en->opset = node_opset(m, n);
        if (en->opset < 0) {
            s = opt_node_err(n, err, OPT_ERR_INVALID, "the model imports no opset for domain '%s'",
                             n->domain ? n->domain : "");
            break;
        }
        en->in = calloc(n->n_inputs + 1, sizeof *en->in);
        en->out = calloc(n->n_outputs + 1, sizeof *en->out);
        en->out_dt = calloc(n->n_outputs + 1, sizeof *en->out_dt);
        if (!en->in || !en->out || !en->out_dt) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            break;
        }
        en->n_in = n->n_inputs;
        en->n_out = n->n_outputs;
        e->n_nodes++;
        size_t n_req = required_inputs(n);
        for (size_t j = 0; j < n_req && s == OPT_OK; j++)
            if (j >= n->n_inputs || !n->inputs[j] || !n->inputs[j][0])
                s = opt_error_set(err, OPT_ERR_INVALID, "node '%s' (%s): input %zu is required but missing",
                                  label, n->op_type, j + 1);
        if (s != OPT_OK) break;
        bool all_const = true;
        for (size_t j = 0; j < n->n_inputs; j++) {
            const char *nm = n->inputs[j];
            if (!nm || !nm[0]) {
                en->in[j] = NO_VALUE;
                in_dt[j] = 0;
                continue;
            }
            size_t v;
            if (!opt_strmap_get(&e->vmap, nm, &v) || e->vals[v].kind == V_UNDEF) {
                s = opt_node_err(n, err, OPT_ERR_INVALID, "input '%s' is not defined", nm);
                break;
            }
            en->in[j] = v;
            e->vals[v].uses++;
            in_dt[j] = e->vals[v].dtype;
            if (e->vals[v].kind != V_CONST) all_const = false;
        }
        (void)all_const;
        if (s != OPT_OK) break;
        const char *dom = n->domain ? n->domain : "";
        en->k = opt_kernel_match(dom, n->op_type, en->opset, in_dt, n->n_inputs, e->o.device);
        if (!en->k && e->o.device != OPT_DEVICE_CPU)
            en->k = opt_kernel_match(dom, n->op_type, en->opset, in_dt, n->n_inputs, OPT_DEVICE_CPU);
        if (!en->k) {
            if (!opt_kernel_known(dom, n->op_type, OPT_DEVICE_CPU)) {
                s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "node '%s' (%s%s%s): unsupported op (opset %d)",
                                  label, dom, dom[0] ? "." : "", n->op_type, en->opset);
            } else {
                /* Name the dtype the kernels look at: the first present input's. */
                int dt = 0;
                for (size_t j = 0; j < n->n_inputs && !dt; j++) dt = in_dt[j];
                s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "node '%s' (%s): no kernel for opset %d / dtype %s",
                                  label, n->op_type, en->opset, dt ? opt_dtype_short(dt) : "undefined");
            }
            break;
        }
        /* Output dtypes. */
        if (en->k->infer) {
            opt_error ie = {0};
            s = en->k->infer(n, en->opset, in_dt, n->n_inputs, en->out_dt, n->n_outputs, &ie);
            if (s != OPT_OK) {
                if (err) *err = ie;
                break;
            }
        } else {
            int dt = 0;
            for (size_t j = 0; j < n->n_inputs && !dt; j++) dt = in_dt[j];
            for (size_t j = 0; j < n->n_outputs; j++) en->out_dt[j] = dt;
        }
        for (size_t j = 0; j < n->n_outputs; j++) {
            const char *nm = n->outputs[j];
            if (!nm || !nm[0]) {
                en->out[j] = NO_VALUE;
                continue;
            }
            size_t v = value_of(e, nm);
            if (v == NO_VALUE) {
                s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
                break;
            }
            if (e->vals[v].kind != V_UNDEF) {
                s = opt_node_err(n, err, OPT_ERR_INVALID, "output '%s' is assigned twice", nm);
                break;
            }
            e->vals[v].kind = V_ACT;
            e->vals[v].dtype = en->out_dt[j];
            en->out[j] = v;
        }
        if (s != OPT_OK) break;
        if (n->n_inputs > e->max_in) e->max_in = n->n_inputs;
        if (n->n_outputs > e->max_out) e->max_out = n->n_outputs;
        const enode *se = shared_node(e, e->n_nodes - 1, n, en->k);
        if (se) {
            en->state = se->state;
            en->borrowed = true;
        } else if (en->k->prepare) {
            /* Point at the constants only now: registering the outputs above may have moved
             * e->vals (value_of grows it), which would leave earlier pointers dangling. */
            for (size_t j = 0; j < n->n_inputs; j++)
                consts[j] = en->in[j] != NO_VALUE && e->vals[en->in[j]].kind == V_CONST
                                ? &e->vals[en->in[j]].arr
                                : NULL;
            opt_error pe = {0};
            s = en->k->prepare(n, en->opset, consts, n->n_inputs, &en->state, &pe);
            if (s != OPT_OK) {
                if (err) *err = pe;
                if (err && !err->msg[0]) opt_node_err(n, err, s, "prepare failed");
                break;
            }
        }
        en->prepared = true;
        e->labels[e->n_nodes - 1] = opt_strdup(label);
        e->prof[e->n_nodes - 1] = (opt_exec_prof){e->labels[e->n_nodes - 1], n->op_type, 0, 0};
        /* Constant nodes are evaluated now; their outputs become constants. */
        if (opt_node_is_onnx(n) && strcmp(n->op_type, "Constant") == 0) {
            size_t need = e->max_out + 1, need_in = e->max_in + IN_PAD;
            ebuf **cb = realloc(e->cur_bufs, need * sizeof *cb);
            if (cb) e->cur_bufs = cb;
            opt_array *oa = realloc(e->out_arrs, need * sizeof *oa);
            if (oa) e->out_arrs = oa;
            const opt_array **ip = realloc(e->in_ptrs, need_in * sizeof *ip);
            if (ip) e->in_ptrs = ip;
            if (!cb || !oa || !ip) {
                s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
                break;
            }
            s = run_node(e, e->n_nodes - 1, err);
            if (s == OPT_OK) s = freeze_outputs(e, e->n_nodes - 1, err);
            if (s != OPT_OK) break;
            for (size_t j = 0; j < en->n_in; j++)
                if (en->in[j] != NO_VALUE) e->vals[en->in[j]].uses--;
            if (en->k->release) en->k->release(en->state);
            en->state = NULL;
            free(en->in);
            free(en->out);
            free(en->out_dt);
            free(e->labels[e->n_nodes - 1]);
            e->labels[e->n_nodes - 1] = NULL;
            memset(&e->prof[e->n_nodes - 1], 0, sizeof e->prof[0]);
            memset(en, 0, sizeof *en);
            e->n_nodes--;
            e->n_folded++;
        }
    }
    free(order);
    if (s != OPT_OK) return s;

    /* Graph outputs. */
    e->outputs = calloc(g->n_outputs + 1, sizeof *e->outputs);
    if (!e->outputs) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->n_outputs; i++) {
        const char *nm = g->outputs[i]->name ? g->outputs[i]->name : "";
        size_t v;
        if (!opt_strmap_get(&e->vmap, nm, &v) || e->vals[v].kind == V_UNDEF)
            return opt_error_set(err, OPT_ERR_INVALID, "graph output '%s' is not defined", nm);
        e->vals[v].uses++;
        e->outputs[e->n_outputs++] = v;
    }
    size_t need = e->max_out + 1, need_in = e->max_in + IN_PAD;
    ebuf **cb = realloc(e->cur_bufs, need * sizeof *cb);
    if (cb) e->cur_bufs = cb;
    opt_array *oa = realloc(e->out_arrs, need * sizeof *oa);
    if (oa) e->out_arrs = oa;
    const opt_array **ip = realloc(e->in_ptrs, need_in * sizeof *ip);
    if (ip) e->in_ptrs = ip;
    if (!cb || !oa || !ip) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    memset(e->cur_bufs, 0, need * sizeof *cb);
    pool_clear(e);
    e->peak_bytes = 0;
    return OPT_OK;
}

static int cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

opt_status opt_exec_new(const opt_model *m, const opt_exec_opts *opts, opt_exec **out,
                        opt_error *err)
{
    *out = NULL;
    opt_exec *e = calloc(1, sizeof *e);
    if (!e) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    e->m = m;
    if (opts) e->o = *opts;
    if (e->o.device == OPT_DEVICE_CUDA) {
        char why[128];
        if (!opt_cuda_available(why, sizeof why)) {
            free(e);
            return opt_error_set(err, OPT_ERR_UNSUPPORTED, "CUDA device requested: %s", why);
        }
    }
    e->threads = e->o.threads > 0 ? e->o.threads : cpu_count();
    opt_status s = OPT_OK;
    const char *nq = getenv("MOPT_NO_QDQ_FUSE");
    if (!e->o.no_qdq_fuse && !e->o.observe && !(nq && *nq && strcmp(nq, "0") != 0)) {
        s = opt_qdq_fuse(m, &e->qdq, err);
        if (e->qdq) e->m = &e->qdq->model;
    }
    if (s == OPT_OK && !e->o.no_fuse && !e->o.observe) {
        s = opt_fuse(e->m, &e->fused, err);
        if (e->fused) e->m = &e->fused->model;
    }
    planning_no_prepack = e->o.no_prepack;
    if (s == OPT_OK) s = plan(e, err);
    planning_no_prepack = false;
    if (s == OPT_OK) {
        e->pool = opt_tpool_new(e->threads);
        if (!e->pool) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        else e->threads = opt_tpool_size(e->pool);
        /* OpenBLAS's thread count is process-wide: each kernel that calls it sets it to its
         * context's thread count first (nn_blas_threads), so creating an executor does not wake
         * OpenBLAS's workers for models that never call it. */
    }
    if (s != OPT_OK) {
        opt_exec_free(e);
        return s;
    }
    *out = e;
    return OPT_OK;
}

void opt_exec_free(opt_exec *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->n_nodes; i++) {
        enode *en = &e->nodes[i];
        if (en->prepared && !en->borrowed && en->k && en->k->release) en->k->release(en->state);
        free(en->in);
        free(en->out);
        free(en->out_dt);
    }
    /* A node that failed while planning is counted in n_nodes too (it was added first). */
    for (size_t i = 0; i < e->n_vals; i++) {
        if (e->vals[i].kind == V_CONST) const_free(&e->vals[i]);
        else if (e->vals[i].buf) pool_put(e, e->vals[i].buf);
    }
    pool_clear(e);
    free(e->free_bufs);
    opt_tpool_free(e->pool);
    free(e->vals);
    opt_strmap_free(&e->vmap);
    free(e->nodes);
    free(e->inputs);
    free(e->input_vi);
    free(e->outputs);
    free(e->cur_bufs);
    free(e->scratch);
    free(e->in_ptrs);
    free(e->out_arrs);
    if (e->labels)
        for (size_t i = 0; i < e->n_nodes + e->n_folded + 1; i++) free(e->labels[i]);
    free(e->labels);
    free(e->prof);
    opt_fuse_view_free(e->fused);
    opt_qdq_view_free(e->qdq);
    free(e);
}

/* ---- queries ------------------------------------------------------------------------------ */

size_t opt_exec_n_inputs(const opt_exec *e) { return e->n_inputs; }
size_t opt_exec_n_outputs(const opt_exec *e) { return e->n_outputs; }
const char *opt_exec_input_name(const opt_exec *e, size_t i)
{
    return i < e->n_inputs ? e->vals[e->inputs[i]].name : NULL;
}
const char *opt_exec_output_name(const opt_exec *e, size_t i)
{
    return i < e->n_outputs ? e->vals[e->outputs[i]].name : NULL;
}

int opt_exec_input_shape(const opt_exec *e, size_t i, int *ndim, int64_t *dims)
{
    *ndim = -1;
    if (i >= e->n_inputs) return 0;
    const opt_type *t = e->input_vi[i]->type;
    if (t && t->shape && t->shape->n_dim <= OPT_MAX_DIMS) {
        *ndim = (int)t->shape->n_dim;
        for (size_t d = 0; d < t->shape->n_dim; d++)
            dims[d] = t->shape->dim[d].kind == OPT_DIM_VALUE ? t->shape->dim[d].value : -1;
    }
    return e->vals[e->inputs[i]].dtype;
}

size_t opt_exec_profile(const opt_exec *e, const opt_exec_prof **out)
{
    *out = e->prof;
    return e->n_nodes;
}

void opt_exec_profile_reset(opt_exec *e)
{
    for (size_t i = 0; i < e->n_nodes; i++) {
        e->prof[i].total_ms = 0;
        e->prof[i].calls = 0;
    }
}

size_t opt_exec_peak_bytes(const opt_exec *e) { return e->peak_bytes; }

void opt_exec_explain(const opt_exec *e, char *buf, size_t len)
{
    if (!len) return;
    size_t k = 0;
    buf[0] = 0;
#define EMIT(...)                                                              \
    do {                                                                       \
        if (k < len) {                                                         \
            int w_ = snprintf(buf + k, len - k, __VA_ARGS__);                  \
            if (w_ > 0) k += (size_t)w_;                                       \
        }                                                                      \
    } while (0)
    size_t ncpu = 0, parts = 0;
    opt_device prev = (opt_device)-1;
    for (size_t i = 0; i < e->n_nodes; i++) {
        if (e->nodes[i].k->device == OPT_DEVICE_CPU) ncpu++;
        if (e->nodes[i].k->device != prev) parts++;
        prev = e->nodes[i].k->device;
    }
    EMIT("plan: %zu nodes (%zu constants folded at load), %d thread%s, requested device %s\n",
         e->n_nodes, e->n_folded, e->threads, e->threads == 1 ? "" : "s",
         e->o.device == OPT_DEVICE_CUDA ? "cuda" : "cpu");
    EMIT("partitions: %zu (%zu nodes on cpu, %zu on cuda)\n", parts, ncpu, e->n_nodes - ncpu);
    EMIT("buffers: peak %zu bytes of activations; %zu outputs written in place so far\n",
         e->peak_bytes, e->n_inplace);
    if (e->qdq)
        EMIT("int8 at load: %zu Conv, %zu MatMul, %zu Gemm, %zu Add QDQ islands on integer kernels, %zu ops on int8 "
             "data; %zu Relu/Clip absorbed (%zu as a clamp of the int8 output)\n",
             e->qdq->n_conv, e->qdq->n_matmul, e->qdq->n_gemm, e->qdq->n_add, e->qdq->n_passthrough, e->qdq->n_act,
             e->qdq->n_clamp);
    if (e->fused)
        EMIT("fused at load: %zu Conv chains (%zu BatchNormalization folded, %zu Add, %zu activations), %zu Gelu "
             "(%zu with their bias Add)\n",
             e->fused->n_conv, e->fused->n_bn, e->fused->n_add, e->fused->n_act, e->fused->n_gelu,
             e->fused->n_gelu_bias);
    else
        EMIT("fused at load: nothing%s\n", e->o.no_fuse ? " (fusion off)" : e->o.observe ? " (observed run)" : "");
    prev = (opt_device)-1;
    for (size_t i = 0; i < e->n_nodes; i++) {
        const enode *en = &e->nodes[i];
        if (en->k->device != prev) EMIT("[%s]\n", en->k->device == OPT_DEVICE_CUDA ? "cuda" : "cpu");
        prev = en->k->device;
        EMIT("  %4zu  %-32s %-20s opset %-3d -> %s\n", i, e->prof[i].node, en->node->op_type,
             en->opset, en->n_out && en->out[0] != NO_VALUE ? opt_dtype_short(en->out_dt[0]) : "-");
    }
#undef EMIT
}

bool opt_cuda_available(char *why, size_t len)
{
#ifdef OPT_HAVE_CUDA
    if (why && len) snprintf(why, len, "the CUDA backend is not implemented yet");
    return false;
#else
    if (why && len) snprintf(why, len, "built without CUDA");
    return false;
#endif
}

/* ---- running ------------------------------------------------------------------------------ */

static void release_value(opt_exec *e, evalue *v)
{
    if (v->kind == V_ACT && v->buf) {
        pool_put(e, v->buf);
        v->buf = NULL;
    }
    if (v->kind != V_CONST) memset(&v->arr, 0, sizeof v->arr);
}

static void release_all(opt_exec *e)
{
    for (size_t i = 0; i < e->n_vals; i++)
        if (e->vals[i].kind == V_ACT || e->vals[i].kind == V_INPUT) release_value(e, &e->vals[i]);
}

static opt_status check_input(opt_exec *e, size_t i, const opt_array *a, opt_error *err)
{
    const evalue *v = &e->vals[e->inputs[i]];
    const opt_type *t = e->input_vi[i]->type;
    if (v->dtype && a->dtype != v->dtype)
        return opt_error_set(err, OPT_ERR_DATA, "input '%s': got %s, the model wants %s", v->name,
                             opt_dtype_short(a->dtype), opt_dtype_short(v->dtype));
    if (a->ndim < 0 || a->ndim > OPT_MAX_DIMS)
        return opt_error_set(err, OPT_ERR_DATA, "input '%s': bad rank %d", v->name, a->ndim);
    opt_array c = *a;
    if (!array_bytes(&c) || c.nbytes > a->nbytes || (c.nbytes && !a->data))
        return opt_error_set(err, OPT_ERR_DATA, "input '%s': data is smaller than its shape", v->name);
    if (t && t->shape) {
        if ((size_t)a->ndim != t->shape->n_dim)
            return opt_error_set(err, OPT_ERR_DATA, "input '%s': rank %d, the model wants %zu", v->name,
                                 a->ndim, t->shape->n_dim);
        for (int d = 0; d < a->ndim; d++)
            if (t->shape->dim[d].kind == OPT_DIM_VALUE && t->shape->dim[d].value >= 0 &&
                t->shape->dim[d].value != a->dims[d])
                return opt_error_set(err, OPT_ERR_DATA, "input '%s': dim %d is %lld, the model wants %lld",
                                     v->name, d, (long long)a->dims[d], (long long)t->shape->dim[d].value);
    }
    return OPT_OK;
}

opt_status opt_exec_run(opt_exec *e, const opt_array *inputs, size_t n_in, opt_array *outputs,
                        size_t n_out, opt_error *err)
{
    if (n_in != e->n_inputs)
        return opt_error_set(err, OPT_ERR_USAGE, "the model has %zu inputs, %zu given", e->n_inputs, n_in);
    if (n_out != e->n_outputs)
        return opt_error_set(err, OPT_ERR_USAGE, "the model has %zu outputs, %zu asked", e->n_outputs, n_out);
    for (size_t i = 0; i < n_out; i++) memset(&outputs[i], 0, sizeof outputs[i]);
    for (size_t i = 0; i < n_in; i++) OPT_TRY(check_input(e, i, &inputs[i], err));
    for (size_t i = 0; i < e->n_vals; i++) {
        e->vals[i].left = e->vals[i].uses;
        e->vals[i].buf = NULL;
        if (e->vals[i].kind != V_CONST) memset(&e->vals[i].arr, 0, sizeof e->vals[i].arr);
    }
    for (size_t i = 0; i < n_in; i++) {
        evalue *v = &e->vals[e->inputs[i]];
        v->arr = inputs[i];
        opt_array c = inputs[i];
        array_bytes(&c);
        v->arr.nbytes = c.nbytes;
    }
    opt_status s = OPT_OK;
    for (size_t i = 0; i < e->n_nodes && s == OPT_OK; i++) {
        enode *en = &e->nodes[i];
        s = run_node(e, i, err);
        if (s != OPT_OK) break;
        if (e->o.observe)
            for (size_t j = 0; j < en->n_out; j++)
                if (en->out[j] != NO_VALUE)
                    e->o.observe(e->o.observe_ctx, e->vals[en->out[j]].name, en->node, &e->vals[en->out[j]].arr);
        for (size_t j = 0; j < en->n_in; j++) {
            if (en->in[j] == NO_VALUE) continue;
            evalue *v = &e->vals[en->in[j]];
            if (--v->left == 0) release_value(e, v);
        }
        for (size_t j = 0; j < en->n_out; j++) {
            if (en->out[j] == NO_VALUE) continue;
            evalue *v = &e->vals[en->out[j]];
            if (v->uses == 0) release_value(e, v);
        }
    }
    for (size_t i = 0; i < n_out && s == OPT_OK; i++) {
        const evalue *v = &e->vals[e->outputs[i]];
        opt_array *o = &outputs[i];
        *o = v->arr;
        o->data = malloc(v->arr.nbytes ? v->arr.nbytes : 1);
        if (!o->data) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory for output '%s'", v->name);
            break;
        }
        if (v->arr.nbytes) memcpy(o->data, v->arr.data, v->arr.nbytes);
    }
    if (s != OPT_OK)
        for (size_t i = 0; i < n_out; i++) opt_array_free(&outputs[i]);
    release_all(e);
    return s;
}
