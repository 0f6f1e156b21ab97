/*
 * libopt/passes/huffman.c — Huffman coding of clustered weights (the third stage of Deep
 * Compression) and its inverse, unpack.
 *
 * What `cluster` writes, W.idx (uint8) -> Cast -> Gather(W.codebook, .) -> W, becomes
 * W.idx.huf (uint8 payload) -> ai.mopt::HuffmanDecode -> W.idx -> Cast -> Gather -> W: only the
 * index tensor changes form, so `unpack` gives back exactly the Gather form. The payload layout
 * (dense, or the sparse layout of relative positions) is docs/formats/huffman.md; the codec is
 * libopt/ir/huffman_codec.c, shared with the executor's decoder.
 */
#include "libopt/passes/compress.h"
#include "libopt/ir/huffman_codec.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOPT_DOMAIN "ai.mopt"

static bool is_op(const opt_node *n, const char *op)
{
    return opt_node_is_onnx(n) && n->op_type && strcmp(n->op_type, op) == 0;
}

static bool is_huffman_decode(const opt_node *n)
{
    return n->domain && strcmp(n->domain, MOPT_DOMAIN) == 0 && n->op_type &&
           strcmp(n->op_type, "HuffmanDecode") == 0;
}

/* Number of node inputs in g that read `name`. */
static size_t uses(const opt_graph *g, const char *name)
{
    size_t u = 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i]->n_inputs; k++) u += strcmp(g->nodes[i]->inputs[k], name) == 0;
    for (size_t i = 0; i < g->n_outputs; i++) u += g->outputs[i]->name && strcmp(g->outputs[i]->name, name) == 0;
    return u;
}

static long node_index(const opt_graph *g, const opt_node *n)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i] == n) return (long)i;
    return -1;
}

static opt_status add_opset(opt_model *m, opt_error *err)
{
    if (opt_model_opset(m, MOPT_DOMAIN) >= 1) return OPT_OK;
    opt_opset *p = realloc(m->opset_import, (m->n_opset_import + 1) * sizeof *p);
    if (!p) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    m->opset_import = p;
    memset(&p[m->n_opset_import], 0, sizeof *p);
    p[m->n_opset_import].domain = opt_strdup(MOPT_DOMAIN);
    p[m->n_opset_import].has_version = true;
    p[m->n_opset_import].version = 1;
    if (!p[m->n_opset_import].domain) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    m->n_opset_import++;
    return OPT_OK;
}

static void drop_opset_if_unused(opt_model *m)
{
    for (size_t i = 0; i < m->graph->n_nodes; i++)
        if (m->graph->nodes[i]->domain && strcmp(m->graph->nodes[i]->domain, MOPT_DOMAIN) == 0) return;
    for (size_t i = 0; i < m->n_opset_import; i++)
        if (m->opset_import[i].domain && strcmp(m->opset_import[i].domain, MOPT_DOMAIN) == 0) {
            opt_opset_clear(&m->opset_import[i]);
            memmove(m->opset_import + i, m->opset_import + i + 1,
                    (m->n_opset_import - i - 1) * sizeof *m->opset_import);
            m->n_opset_import--;
            return;
        }
}

/* The clustered weight that index tensor `name` rebuilds: when its only use is one Cast whose
 * only use is the indices of one Gather (axis 0) of a 1-D float codebook initializer, returns
 * that Gather and the Cast; NULL otherwise. */
static opt_node *clustered_use(const opt_graph *g, const char *name, opt_node **cast_out)
{
    opt_node *cast = NULL, *gather = NULL;
    size_t uses_idx = 0, uses_cast = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        opt_node *n = g->nodes[i];
        for (size_t s = 0; s < n->n_inputs; s++)
            if (strcmp(n->inputs[s], name) == 0) {
                uses_idx++;
                cast = n;
            }
    }
    if (uses_idx != 1 || !is_op(cast, "Cast") || cast->n_outputs != 1 || cast->n_inputs != 1) return NULL;
    for (size_t i = 0; i < g->n_nodes; i++) {
        opt_node *n = g->nodes[i];
        for (size_t s = 0; s < n->n_inputs; s++)
            if (strcmp(n->inputs[s], cast->outputs[0]) == 0) {
                uses_cast++;
                gather = s == 1 ? n : NULL;
            }
    }
    for (size_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i]->name && strcmp(g->outputs[i]->name, cast->outputs[0]) == 0) return NULL;
    if (uses_cast != 1 || !gather || !is_op(gather, "Gather") || gather->n_inputs != 2 ||
        gather->n_outputs != 1 || opt_node_attr_int(gather, "axis", 0) != 0)
        return NULL;
    const opt_tensor *cb = opt_graph_initializer(g, gather->inputs[0]);
    if (!cb || cb->n_dims != 1 || cb->dims[0] < 1 || cb->dims[0] > 256 ||
        (cb->data_type != OPT_DT_FLOAT && cb->data_type != OPT_DT_FLOAT16 &&
         cb->data_type != OPT_DT_BFLOAT16 && cb->data_type != OPT_DT_DOUBLE))
        return NULL;
    *cast_out = cast;
    return gather;
}

static bool name_match(const opt_weight_filter *f, const char *a, const char *b)
{
    if (!f) return true;
    bool inc = f->n_include == 0;
    for (size_t i = 0; i < f->n_include && !inc; i++)
        inc = fnmatch(f->include[i], a, 0) == 0 || (b && fnmatch(f->include[i], b, 0) == 0);
    for (size_t i = 0; i < f->n_exclude && inc; i++)
        if (fnmatch(f->exclude[i], a, 0) == 0 || (b && fnmatch(f->exclude[i], b, 0) == 0)) inc = false;
    return inc;
}

/* Makes "<base><suffix>" unique in g (malloc'd). */
static char *uniq(const opt_graph *g, const char *base, const char *suffix)
{
    size_t n = strlen(base) + strlen(suffix) + 1;
    char *b = malloc(n);
    if (!b) return NULL;
    snprintf(b, n, "%s%s", base, suffix);
    char *u = opt_graph_unique_name(g, b);
    free(b);
    return u;
}

/* Codes clustered index tensor t: Cast + Gather(codebook) + t become one node
 * HuffmanDecode(W.huf, codebook) -> W. */
static opt_status code_one(opt_model *m, opt_tensor *t, opt_node *cast, opt_node *gat,
                           const opt_huffman_opts *o, opt_layer_stat *r, opt_error *err)
{
    opt_graph *g = m->graph;
    const opt_tensor *cb = opt_graph_initializer(g, gat->inputs[0]);
    uint64_t ne;
    OPT_TRY(opt_tensor_check(t, err));
    opt_tensor_numel(t, &ne);
    uint8_t *idx = malloc(ne ? ne : 1);
    if (!idx) return opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    for (uint64_t j = 0; j < ne; j++) idx[j] = (uint8_t)opt_tensor_get(t, j);
    int nsym = (int)cb->dims[0];
    int layout = o && !o->auto_layout && o->force_layout >= 0 ? o->force_layout : -1;
    opt_bytes payload = {0};
    opt_huf_info info;
    opt_status s = opt_huf_weight_encode(idx, t->dims, (int)t->n_dims, nsym, layout, &payload, &info, err);
    free(idx);
    if (s != OPT_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "tensor '%.200s': %.300s", t->name, err->msg);
        return opt_error_set(err, s, "%s", msg);
    }
    const char *w = gat->outputs[0];
    char *bname = uniq(g, w, ".huf"), *nname = uniq(g, w, ".decode");
    opt_tensor *bt = opt_tensor_new();
    opt_node *dec = NULL;
    if (bname && nname && bt) {
        const char *in[2] = {bname, gat->inputs[0]}, *out[1] = {w};
        dec = opt_node_make("HuffmanDecode", nname, in, 2, out, 1);
    }
    if (!dec || !(dec->domain = opt_strdup(MOPT_DOMAIN))) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    } else {
        int64_t len = (int64_t)payload.len;
        bt->name = bname;
        bname = NULL;
        s = opt_tensor_set_dims(bt, &len, 1, err);
        if (s == OPT_OK) s = opt_tensor_set_raw(bt, OPT_DT_UINT8, payload.data, payload.len, err);
    }
    free(payload.data);
    if (s == OPT_OK) {
        r->layer = opt_strdup(w);
        r->tensor = opt_strdup(t->name);
        r->op = "HuffmanDecode";
        r->numel = ne;
        r->bytes_before = ne;
        r->bytes_after = info.bytes;
        r->bits_per_weight = ne ? 8.0 * (double)info.bytes / (double)ne : 0;
        r->entropy_bits_per_weight = ne ? (info.index_entropy_bits + info.pos_entropy_bits) / (double)ne : 0;
        r->layout = info.layout;
        r->zeros_after = info.layout == OPT_HUF_SPARSE ? ne - info.nnz : 0;
        r->k = nsym;
        s = opt_graph_add_initializer(g, bt, err);
    }
    if (s == OPT_OK) {
        bt = NULL;
        long at = node_index(g, cast);
        s = opt_graph_insert_node(g, at < 0 ? 0 : (size_t)at, dec, err);
    }
    if (s == OPT_OK) {
        dec = NULL;
        opt_graph_remove_node(g, (size_t)node_index(g, gat));
        opt_graph_remove_node(g, (size_t)node_index(g, cast));
        opt_graph_remove_initializer(g, t->name);
    }
    opt_tensor_free(bt);
    opt_node_free(dec);
    free(bname);
    free(nname);
    return s;
}

opt_status opt_huffman(opt_model *m, const opt_huffman_opts *o, opt_layer_stat **stats, size_t *n_stats,
                       opt_error *err)
{
    opt_graph *g = m->graph;
    *stats = NULL;
    *n_stats = 0;
    /* Collect first: coding edits g->initializers and g->nodes. */
    size_t nt = 0;
    char **todo = calloc(g->n_initializers + 1, sizeof *todo);
    opt_layer_stat *st = calloc(g->n_initializers + 1, sizeof *st);
    if (!todo || !st) {
        free(todo);
        free(st);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < g->n_initializers; i++) {
        opt_tensor *t = g->initializers[i];
        opt_node *cast;
        if (!t->name || (t->data_type != OPT_DT_UINT8 && t->data_type != OPT_DT_UINT4)) continue;
        opt_node *gat = clustered_use(g, t->name, &cast);
        if (!gat || !name_match(o ? &o->filter : NULL, t->name, gat->outputs[0])) continue;
        todo[nt++] = opt_strdup(t->name);
    }
    size_t ns = 0;
    opt_status s = OPT_OK;
    for (size_t i = 0; i < nt && s == OPT_OK; i++) {
        opt_tensor *t = opt_graph_initializer(g, todo[i]);
        opt_node *cast, *gat = t ? clustered_use(g, t->name, &cast) : NULL;
        if (gat) s = code_one(m, t, cast, gat, o, &st[ns++], err);
    }
    for (size_t i = 0; i < nt; i++) free(todo[i]);
    free(todo);
    if (s == OPT_OK && ns) s = add_opset(m, err);
    if (s != OPT_OK) {
        opt_layer_stats_free(st, ns);
        return s;
    }
    *stats = st;
    *n_stats = ns;
    return OPT_OK;
}

/* Decodes HuffmanDecode node i (constant payload) back into standard ONNX: with one input, the
 * uint8 index initializer it codes; with a codebook, the Gather form `cluster` writes (index
 * initializer, Cast, Gather), or with dense a float initializer of the codebook's dtype. */
static opt_status unpack_decode(opt_graph *g, size_t i, bool dense, opt_error *err)
{
    opt_node *n = g->nodes[i];
    const char *nm = n->name ? n->name : "";
    if (n->n_inputs < 1 || n->n_inputs > 2 || n->n_outputs != 1)
        return opt_error_set(err, OPT_ERR_INVALID, "node '%s': HuffmanDecode takes one or two inputs and one output", nm);
    opt_tensor *b = opt_graph_initializer(g, n->inputs[0]);
    if (!b)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "node '%s': input '%s' is not an initializer", nm,
                             n->inputs[0]);
    opt_tensor *cb = n->n_inputs == 2 ? opt_graph_initializer(g, n->inputs[1]) : NULL;
    if (n->n_inputs == 2 && (!cb || cb->n_dims != 1))
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "node '%s': codebook '%s' is not a 1-D initializer", nm,
                             n->inputs[1]);
    size_t len;
    const uint8_t *p = b->data_type == OPT_DT_UINT8 ? opt_tensor_data(b, &len) : NULL;
    if (!p)
        return opt_error_set(err, OPT_ERR_INVALID, "node '%s': payload '%s' is not uint8 raw data", nm, b->name);
    opt_huf_info h;
    opt_status s = opt_huf_weight_header(p, len, &h, err);
    uint8_t *out = NULL;
    if (s == OPT_OK && !(out = malloc(h.numel ? h.numel : 1)))
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    if (s == OPT_OK) s = opt_huf_weight_decode(p, len, out, h.numel, err);
    if (s == OPT_OK && cb)
        for (uint64_t j = 0; j < h.numel; j++)
            if ((int64_t)out[j] >= cb->dims[0]) {
                s = opt_error_set(err, OPT_ERR_DATA, "index %d outside the codebook of %lld", out[j],
                                  (long long)cb->dims[0]);
                break;
            }
    if (s != OPT_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "node '%.200s': %.300s", nm, err->msg);
        free(out);
        return opt_error_set(err, s, "%s", msg);
    }
    const char *w = n->outputs[0];
    opt_tensor *t = opt_tensor_new();
    opt_node *cast = NULL, *gat = NULL;
    char *iname = NULL, *i32 = NULL, *cn = NULL, *gn = NULL;
    if (!t) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    if (s == OPT_OK) s = opt_tensor_set_dims(t, h.dims, (size_t)h.ndim, err);
    if (s == OPT_OK && cb && dense) {
        float *book = NULL, *v = malloc((h.numel ? h.numel : 1) * sizeof *v);
        uint64_t k;
        if (!v) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        if (s == OPT_OK) s = opt_tensor_to_f32_alloc(cb, &book, &k, err);
        for (uint64_t j = 0; s == OPT_OK && j < h.numel; j++) v[j] = book[out[j]];
        if (s == OPT_OK && !(t->name = opt_strdup(w))) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        if (s == OPT_OK) s = opt_tensor_set_f32(t, cb->data_type, v, h.numel, err);
        free(book);
        free(v);
    } else if (s == OPT_OK && cb) {
        iname = uniq(g, w, ".idx");
        i32 = uniq(g, w, ".idx_i32");
        cn = uniq(g, w, ".cast");
        gn = uniq(g, w, ".gather");
        if (iname && i32 && cn && gn) {
            const char *ci[1] = {iname}, *co[1] = {i32}, *gi[2] = {cb->name, i32}, *go[1] = {w};
            cast = opt_node_make("Cast", cn, ci, 1, co, 1);
            gat = opt_node_make("Gather", gn, gi, 2, go, 1);
        }
        if (!cast || !gat) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        if (s == OPT_OK) s = opt_node_set_attr_int(cast, "to", OPT_DT_INT32, err);
        if (s == OPT_OK) s = opt_node_set_attr_int(gat, "axis", 0, err);
        if (s == OPT_OK) {
            t->name = iname;
            iname = NULL;
            s = opt_tensor_set_raw(t, OPT_DT_UINT8, out, (size_t)h.numel, err);
        }
    } else if (s == OPT_OK) {
        if (!(t->name = opt_strdup(w))) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        else s = opt_tensor_set_raw(t, OPT_DT_UINT8, out, (size_t)h.numel, err);
    }
    free(out);
    if (s == OPT_OK) s = opt_graph_add_initializer(g, t, err);
    if (s == OPT_OK) t = NULL;
    char *bname = opt_strdup(b->name), *cbname = cb ? opt_strdup(cb->name) : NULL;
    if (s == OPT_OK) {
        opt_graph_remove_node(g, i);
        if (gat && (s = opt_graph_insert_node(g, i, gat, err)) == OPT_OK) gat = NULL;
        if (cast && s == OPT_OK && (s = opt_graph_insert_node(g, i, cast, err)) == OPT_OK) cast = NULL;
        if (bname && uses(g, bname) == 0) opt_graph_remove_initializer(g, bname);
        if (cbname && uses(g, cbname) == 0) opt_graph_remove_initializer(g, cbname);
    }
    free(bname);
    free(cbname);
    free(iname);
    free(i32);
    free(cn);
    free(gn);
    opt_tensor_free(t);
    opt_node_free(cast);
    opt_node_free(gat);
    return s;
}

/* Folds Gather node i (codebook initializer, indices from Cast of an initializer or an integer
 * initializer) into a dense initializer. Returns OPT_OK and sets *done when it applied. */
static opt_status unpack_dense(opt_graph *g, size_t i, bool *done, opt_error *err)
{
    *done = false;
    opt_node *n = g->nodes[i];
    if (!is_op(n, "Gather") || n->n_inputs != 2 || n->n_outputs != 1) return OPT_OK;
    if (opt_node_attr_int(n, "axis", 0) != 0) return OPT_OK;
    opt_tensor *cb = opt_graph_initializer(g, n->inputs[0]);
    if (!cb || cb->n_dims != 1) return OPT_OK;
    opt_tensor *ix = opt_graph_initializer(g, n->inputs[1]);
    opt_node *cast = NULL;
    if (!ix)
        for (size_t j = 0; j < g->n_nodes; j++)
            if (is_op(g->nodes[j], "Cast") && g->nodes[j]->n_outputs == 1 &&
                strcmp(g->nodes[j]->outputs[0], n->inputs[1]) == 0 && g->nodes[j]->n_inputs == 1) {
                cast = g->nodes[j];
                ix = opt_graph_initializer(g, cast->inputs[0]);
            }
    if (!ix || (ix->data_type != OPT_DT_UINT8 && ix->data_type != OPT_DT_UINT4 && ix->data_type != OPT_DT_INT32 &&
                ix->data_type != OPT_DT_INT64))
        return OPT_OK;
    uint64_t ne, k;
    OPT_TRY(opt_tensor_check(ix, err));
    OPT_TRY(opt_tensor_check(cb, err));
    opt_tensor_numel(ix, &ne);
    float *book, *w = malloc((ne ? ne : 1) * sizeof *w);
    if (!w) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    opt_status s = opt_tensor_to_f32_alloc(cb, &book, &k, err);
    for (uint64_t j = 0; j < ne && s == OPT_OK; j++) {
        double v = opt_tensor_get(ix, j);
        if (v < 0) v += (double)k;
        if (v < 0 || v >= (double)k)
            s = opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': index %g outside codebook '%s' of %llu",
                              ix->name, v, cb->name, (unsigned long long)k);
        else w[j] = book[(size_t)v];
    }
    opt_tensor *t = s == OPT_OK ? opt_tensor_new() : NULL;
    if (s == OPT_OK && (!t || !(t->name = opt_strdup(n->outputs[0])))) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    if (s == OPT_OK) s = opt_tensor_set_dims(t, ix->dims, ix->n_dims, err);
    if (s == OPT_OK) s = opt_tensor_set_f32(t, cb->data_type, w, ne, err);
    if (s == OPT_OK) s = opt_graph_add_initializer(g, t, err);
    free(w);
    if (s == OPT_OK) free(book);
    if (s != OPT_OK) {
        opt_tensor_free(t);
        return s;
    }
    char *cbn = opt_strdup(cb->name), *ixn = opt_strdup(ix->name), *mid = opt_strdup(n->inputs[1]);
    opt_graph_remove_node(g, i);
    if (cast && mid && uses(g, mid) == 0) {
        long ci = node_index(g, cast);
        if (ci >= 0) opt_graph_remove_node(g, (size_t)ci);
    }
    if (cbn && uses(g, cbn) == 0) opt_graph_remove_initializer(g, cbn);
    if (ixn && uses(g, ixn) == 0) opt_graph_remove_initializer(g, ixn);
    free(cbn);
    free(ixn);
    free(mid);
    *done = true;
    return OPT_OK;
}

opt_status opt_unpack(opt_model *m, bool dense, size_t *n_decoded, opt_error *err)
{
    opt_graph *g = m->graph;
    size_t nd = 0;
    for (size_t i = g->n_nodes; i-- > 0;) {
        if (!is_huffman_decode(g->nodes[i])) continue;
        OPT_TRY(unpack_decode(g, i, dense, err));
        nd++;
    }
    if (dense) {
        for (size_t i = g->n_nodes; i-- > 0;) {
            if (i >= g->n_nodes) continue; /* a Cast before i was removed */
            bool done;
            OPT_TRY(unpack_dense(g, i, &done, err));
            nd += done;
        }
    }
    drop_opset_if_unused(m);
    if (n_decoded) *n_decoded = nd;
    return OPT_OK;
}
