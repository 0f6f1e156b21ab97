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

/* The Gather fed (through Cast) by index tensor `name`, when every use of it is Cast -> Gather
 * indices; NULL otherwise. *k receives the codebook length (0 when unknown). */
static const opt_node *index_use(const opt_graph *g, const char *name, int64_t *k)
{
    const opt_node *gather = NULL;
    size_t casts = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        for (size_t s = 0; s < n->n_inputs; s++) {
            if (strcmp(n->inputs[s], name) != 0) continue;
            if (!is_op(n, "Cast") || n->n_outputs != 1) return NULL;
            casts++;
            const char *cout = n->outputs[0];
            for (size_t j = 0; j < g->n_nodes; j++) {
                const opt_node *c = g->nodes[j];
                for (size_t t = 0; t < c->n_inputs; t++) {
                    if (strcmp(c->inputs[t], cout) != 0) continue;
                    if (!is_op(c, "Gather") || t != 1) return NULL;
                    gather = c;
                }
            }
        }
    }
    if (!casts || !gather) return NULL;
    const opt_tensor *cb = opt_graph_initializer(g, gather->inputs[0]);
    *k = cb && cb->n_dims == 1 ? cb->dims[0] : 0;
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

opt_status opt_huffman(opt_model *m, const opt_huffman_opts *o, opt_layer_stat **stats, size_t *n_stats,
                       opt_error *err)
{
    opt_graph *g = m->graph;
    *stats = NULL;
    *n_stats = 0;
    opt_layer_stat *st = calloc(g->n_initializers + 1, sizeof *st);
    if (!st) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    size_t ns = 0;
    opt_status s = OPT_OK;
    /* Collect first: the loop below edits g->initializers. */
    size_t cap = g->n_initializers, nt = 0;
    opt_tensor **todo = calloc(cap + 1, sizeof *todo);
    if (!todo) {
        free(st);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < g->n_initializers; i++) {
        opt_tensor *t = g->initializers[i];
        int64_t k = 0;
        if (!t->name || t->data_type != OPT_DT_UINT8) continue;
        const opt_node *gat = index_use(g, t->name, &k);
        if (!gat || !name_match(o ? &o->filter : NULL, t->name, gat->outputs[0])) continue;
        todo[nt++] = t;
    }
    for (size_t i = 0; i < nt && s == OPT_OK; i++) {
        opt_tensor *t = todo[i];
        int64_t k = 0;
        const opt_node *gat = index_use(g, t->name, &k);
        uint64_t ne;
        if ((s = opt_tensor_check(t, err)) != OPT_OK) break;
        opt_tensor_numel(t, &ne);
        uint8_t *idx = malloc(ne ? ne : 1);
        if (!idx) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory", t->name);
            break;
        }
        for (uint64_t j = 0; j < ne; j++) idx[j] = (uint8_t)opt_tensor_get(t, j);
        int nsym = k > 0 && k <= 256 ? (int)k : 256;
        int layout = -1;
        if (o && !o->auto_layout && o->force_layout >= 0) layout = o->force_layout;
        opt_bytes payload = {0};
        opt_huf_info info;
        s = opt_huf_weight_encode(idx, t->dims, (int)t->n_dims, nsym, layout, &payload, &info, err);
        free(idx);
        if (s != OPT_OK) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "tensor '%.200s': %.300s", t->name, err->msg);
            opt_error_set(err, s, "%s", msg);
            break;
        }
        size_t bl = strlen(t->name) + 16;
        char *base = malloc(bl), *bname = NULL, *nname = NULL;
        opt_tensor *bt = opt_tensor_new();
        opt_node *dec = NULL;
        if (base) {
            snprintf(base, bl, "%s.huf", t->name);
            bname = opt_graph_unique_name(g, base);
            snprintf(base, bl, "%s.decode", t->name);
            nname = opt_graph_unique_name(g, base);
        }
        const char *in[1] = {bname}, *out[1] = {t->name};
        if (bname && nname && bt) dec = opt_node_make("HuffmanDecode", nname, in, 1, out, 1);
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
            opt_layer_stat *r = &st[ns++];
            r->layer = opt_strdup(gat->outputs[0]);
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
        }
        if (s == OPT_OK) s = opt_graph_add_initializer(g, bt, err);
        if (s == OPT_OK) {
            bt = NULL;
            s = opt_graph_insert_node(g, 0, dec, err);
        }
        if (s == OPT_OK) {
            dec = NULL;
            opt_graph_remove_initializer(g, t->name);
        }
        opt_tensor_free(bt);
        opt_node_free(dec);
        free(base);
        free(bname);
        free(nname);
    }
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

/* Decodes HuffmanDecode node i (constant input) into an initializer. */
static opt_status unpack_decode(opt_graph *g, size_t i, opt_error *err)
{
    opt_node *n = g->nodes[i];
    const char *nm = n->name ? n->name : "";
    if (n->n_inputs != 1 || n->n_outputs != 1)
        return opt_error_set(err, OPT_ERR_INVALID, "node '%s': HuffmanDecode takes one input and one output", nm);
    opt_tensor *b = opt_graph_initializer(g, n->inputs[0]);
    if (!b)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "node '%s': input '%s' is not an initializer", nm,
                             n->inputs[0]);
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
    if (s != OPT_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "node '%.200s': %.300s", nm, err->msg);
        free(out);
        return opt_error_set(err, s, "%s", msg);
    }
    opt_tensor *t = opt_tensor_new();
    if (!t || !(t->name = opt_strdup(n->outputs[0]))) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    if (s == OPT_OK) s = opt_tensor_set_dims(t, h.dims, (size_t)h.ndim, err);
    if (s == OPT_OK) s = opt_tensor_set_raw(t, OPT_DT_UINT8, out, (size_t)h.numel, err);
    free(out);
    if (s == OPT_OK) s = opt_graph_add_initializer(g, t, err);
    if (s != OPT_OK) {
        opt_tensor_free(t);
        return s;
    }
    char *bname = opt_strdup(b->name);
    opt_graph_remove_node(g, i);
    if (bname && uses(g, bname) == 0) opt_graph_remove_initializer(g, bname);
    free(bname);
    return OPT_OK;
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
    if (!ix || (ix->data_type != OPT_DT_UINT8 && ix->data_type != OPT_DT_INT32 && ix->data_type != OPT_DT_INT64))
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
        OPT_TRY(unpack_decode(g, i, err));
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
