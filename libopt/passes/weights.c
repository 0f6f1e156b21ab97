/*
 * libopt/passes/weights.c — what the compression passes share: finding the weights of a graph
 * (and only the weights), matching --layer/--include/--exclude names, freeing reports.
 */
#include "libopt/passes/compress.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

static bool is_float_dtype(int dt)
{
    return dt == OPT_DT_FLOAT || dt == OPT_DT_FLOAT16 || dt == OPT_DT_BFLOAT16 || dt == OPT_DT_DOUBLE;
}

/* Whether input `slot` of node n is a weight slot: input 1 of Conv/ConvTranspose/Gemm, input 0
 * or 1 of MatMul. *conv tells the family. */
static bool weight_slot(const opt_node *n, size_t slot, bool *conv)
{
    if (!opt_node_is_onnx(n) || !n->op_type) return false;
    const char *op = n->op_type;
    *conv = strcmp(op, "Conv") == 0 || strcmp(op, "ConvTranspose") == 0;
    if (*conv || strcmp(op, "Gemm") == 0) return slot == 1;
    if (strcmp(op, "MatMul") == 0) return slot <= 1;
    return false;
}

static bool glob_any(const char *const *pat, size_t n, const char *a, const char *b, const char *c)
{
    for (size_t i = 0; i < n; i++) {
        if (a && fnmatch(pat[i], a, 0) == 0) return true;
        if (b && fnmatch(pat[i], b, 0) == 0) return true;
        if (c && fnmatch(pat[i], c, 0) == 0) return true;
    }
    return false;
}

opt_status opt_weights_find(opt_graph *g, const opt_weight_filter *f, opt_weight_ref **out,
                            size_t *n_out, opt_error *err)
{
    opt_graph_index *ix = NULL;
    OPT_TRY(opt_graph_index_build(g, &ix, err));
    opt_weight_ref *refs = calloc(g->n_initializers + 1, sizeof *refs);
    if (!refs) {
        opt_graph_index_free(ix);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < g->n_initializers; i++) {
        opt_tensor *t = g->initializers[i];
        if (!t->name || !is_float_dtype(t->data_type) || opt_graph_is_output(ix, t->name)) continue;
        /* An initializer that is also a graph input is a default the caller may override: not
         * ours to rewrite (cluster would define the name twice). */
        bool is_input = false;
        for (size_t q = 0; q < g->n_inputs && !is_input; q++)
            is_input = g->inputs[q]->name && strcmp(g->inputs[q]->name, t->name) == 0;
        if (is_input) continue;
        size_t nc;
        const size_t *cons = opt_graph_consumers(ix, t->name, &nc);
        if (nc == 0) continue;
        /* Every use must be a weight slot: an initializer also read as a bias, a BatchNorm
         * parameter or a shape is not a weight. */
        bool all = true, conv = false;
        opt_node *first = NULL;
        size_t first_slot = 0;
        for (size_t c = 0; c < nc && all; c++) {
            opt_node *nd = g->nodes[cons[c]];
            for (size_t s = 0; s < nd->n_inputs && all; s++) {
                if (strcmp(nd->inputs[s], t->name) != 0) continue;
                bool cv;
                if (!weight_slot(nd, s, &cv)) all = false;
                else if (!first) {
                    first = nd;
                    first_slot = s;
                    conv = cv;
                }
            }
        }
        if (!all || !first) continue;
        if (f) {
            const char *node = first->name, *op = first->op_type;
            if (f->n_include && !glob_any(f->include, f->n_include, node, t->name, op)) continue;
            if (glob_any(f->exclude, f->n_exclude, node, t->name, op)) continue;
        }
        uint64_t ne;
        if (!opt_tensor_numel(t, &ne)) continue;
        refs[k++] = (opt_weight_ref){t, first, first_slot, conv, ne};
    }
    opt_graph_index_free(ix);
    /* Graph order (nodes are topologically sorted), so sequential refinement sees each layer's
     * producers compressed before it. Insertion sort: a few hundred weights at most. */
    size_t *pos = calloc(k + 1, sizeof *pos);
    for (size_t i = 0; pos && i < k; i++)
        for (size_t j = 0; j < g->n_nodes; j++)
            if (g->nodes[j] == refs[i].node) {
                pos[i] = j;
                break;
            }
    for (size_t i = 1; pos && i < k; i++)
        for (size_t j = i; j > 0 && pos[j - 1] > pos[j]; j--) {
            opt_weight_ref tr = refs[j];
            refs[j] = refs[j - 1];
            refs[j - 1] = tr;
            size_t tp = pos[j];
            pos[j] = pos[j - 1];
            pos[j - 1] = tp;
        }
    free(pos);
    *out = refs;
    *n_out = k;
    return OPT_OK;
}

const opt_layer_value *opt_layer_value_find(const opt_weight_ref *ref, const opt_layer_value *v,
                                            size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ref->node->name && fnmatch(v[i].name, ref->node->name, 0) == 0) return &v[i];
        if (fnmatch(v[i].name, ref->t->name, 0) == 0) return &v[i];
    }
    return NULL;
}

void opt_layer_stats_free(opt_layer_stat *s, size_t n)
{
    if (!s) return;
    for (size_t i = 0; i < n; i++) {
        free(s[i].layer);
        free(s[i].tensor);
    }
    free(s);
}
