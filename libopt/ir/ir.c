/*
 * libopt/ir/ir.c — allocation, freeing, copying and model-level helpers of the IR.
 */
#include "ir.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_text[] = {
#define OPT_X_TEXT(name, text) text,
    OPT_STATUS_LIST(OPT_X_TEXT)
#undef OPT_X_TEXT
};
_Static_assert(sizeof status_text / sizeof status_text[0] == OPT_STATUS_COUNT,
               "status table and enum differ in length");

const char *opt_status_str(opt_status s)
{
    return (unsigned)s < OPT_STATUS_COUNT ? status_text[s] : "unknown status";
}

opt_status opt_error_set(opt_error *err, opt_status s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* Messages quote names read from files; a name holding a newline or an escape sequence
         * must not break the one-line message or reach a terminal raw. */
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
        err->status = s;
    }
    return s;
}

char *opt_strdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

opt_model *opt_model_new(void) { return calloc(1, sizeof(opt_model)); }
opt_graph *opt_graph_new(void) { return calloc(1, sizeof(opt_graph)); }
opt_node *opt_node_new(void) { return calloc(1, sizeof(opt_node)); }
opt_tensor *opt_tensor_new(void) { return calloc(1, sizeof(opt_tensor)); }
opt_value_info *opt_value_info_new(void) { return calloc(1, sizeof(opt_value_info)); }
opt_type *opt_type_new(void) { return calloc(1, sizeof(opt_type)); }

void opt_unknown_clear(opt_unknown *u)
{
    if (!u) return;
    for (size_t i = 0; i < u->n; i++) free(u->f[i].data);
    free(u->f);
    u->f = NULL;
    u->n = 0;
}

void opt_kv_clear(opt_kv *kv)
{
    if (!kv) return;
    free(kv->key);
    free(kv->value);
    opt_unknown_clear(&kv->unk);
    memset(kv, 0, sizeof *kv);
}

void opt_opset_clear(opt_opset *o)
{
    if (!o) return;
    free(o->domain);
    opt_unknown_clear(&o->unk);
    memset(o, 0, sizeof *o);
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void free_bytesv(opt_bytes *v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i].data);
    free(v);
}

void opt_tensor_free(opt_tensor *t)
{
    if (!t) return;
    free(t->name);
    free(t->doc_string);
    free(t->dims);
    if (t->segment) free(t->segment->data);
    free(t->segment);
    free(t->raw_data.data);
    free(t->float_data);
    free(t->int32_data);
    free_bytesv(t->string_data, t->n_string_data);
    free(t->int64_data);
    free(t->double_data);
    free(t->uint64_data);
    for (size_t i = 0; i < t->n_external_data; i++) opt_kv_clear(&t->external_data[i]);
    free(t->external_data);
    opt_unknown_clear(&t->unk);
    free(t);
}

void opt_sparse_tensor_free(opt_sparse_tensor *s)
{
    if (!s) return;
    opt_tensor_free(s->values);
    opt_tensor_free(s->indices);
    free(s->dims);
    opt_unknown_clear(&s->unk);
    free(s);
}

static void shape_free(opt_shape *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_dim; i++) {
        free(s->dim[i].param);
        free(s->dim[i].denotation);
        opt_unknown_clear(&s->dim[i].unk);
    }
    free(s->dim);
    opt_unknown_clear(&s->unk);
    free(s);
}

void opt_type_free(opt_type *t)
{
    if (!t) return;
    shape_free(t->shape);
    opt_type_free(t->elem);
    free(t->denotation);
    opt_unknown_clear(&t->inner_unk);
    opt_unknown_clear(&t->unk);
    free(t);
}

void opt_value_info_free(opt_value_info *v)
{
    if (!v) return;
    free(v->name);
    opt_type_free(v->type);
    free(v->doc_string);
    opt_unknown_clear(&v->unk);
    free(v);
}

void opt_attr_clear(opt_attr *a)
{
    if (!a) return;
    free(a->name);
    free(a->ref_attr_name);
    free(a->doc_string);
    free(a->s.data);
    opt_tensor_free(a->t);
    opt_graph_free(a->g);
    opt_sparse_tensor_free(a->sparse_tensor);
    opt_type_free(a->tp);
    free(a->floats);
    free(a->ints);
    free_bytesv(a->strings, a->n_strings);
    for (size_t i = 0; i < a->n_tensors; i++) opt_tensor_free(a->tensors[i]);
    free(a->tensors);
    for (size_t i = 0; i < a->n_graphs; i++) opt_graph_free(a->graphs[i]);
    free(a->graphs);
    for (size_t i = 0; i < a->n_sparse_tensors; i++) opt_sparse_tensor_free(a->sparse_tensors[i]);
    free(a->sparse_tensors);
    for (size_t i = 0; i < a->n_type_protos; i++) opt_type_free(a->type_protos[i]);
    free(a->type_protos);
    opt_unknown_clear(&a->unk);
    memset(a, 0, sizeof *a);
}

void opt_node_free(opt_node *n)
{
    if (!n) return;
    free_strv(n->inputs, n->n_inputs);
    free_strv(n->outputs, n->n_outputs);
    free(n->name);
    free(n->op_type);
    free(n->domain);
    for (size_t i = 0; i < n->n_attrs; i++) opt_attr_clear(&n->attrs[i]);
    free(n->attrs);
    free(n->doc_string);
    opt_unknown_clear(&n->unk);
    free(n);
}

void opt_graph_free(opt_graph *g)
{
    if (!g) return;
    for (size_t i = 0; i < g->n_nodes; i++) opt_node_free(g->nodes[i]);
    free(g->nodes);
    free(g->name);
    for (size_t i = 0; i < g->n_initializers; i++) opt_tensor_free(g->initializers[i]);
    free(g->initializers);
    for (size_t i = 0; i < g->n_sparse_initializers; i++)
        opt_sparse_tensor_free(g->sparse_initializers[i]);
    free(g->sparse_initializers);
    free(g->doc_string);
    for (size_t i = 0; i < g->n_inputs; i++) opt_value_info_free(g->inputs[i]);
    free(g->inputs);
    for (size_t i = 0; i < g->n_outputs; i++) opt_value_info_free(g->outputs[i]);
    free(g->outputs);
    for (size_t i = 0; i < g->n_value_info; i++) opt_value_info_free(g->value_info[i]);
    free(g->value_info);
    free_bytesv(g->quantization_annotation, g->n_quantization_annotation);
    opt_unknown_clear(&g->unk);
    free(g);
}

void opt_function_free(opt_function *f)
{
    if (!f) return;
    free(f->name);
    free_strv(f->inputs, f->n_inputs);
    free_strv(f->outputs, f->n_outputs);
    free_strv(f->attributes, f->n_attributes);
    for (size_t i = 0; i < f->n_nodes; i++) opt_node_free(f->nodes[i]);
    free(f->nodes);
    free(f->doc_string);
    for (size_t i = 0; i < f->n_opset_import; i++) opt_opset_clear(&f->opset_import[i]);
    free(f->opset_import);
    free(f->domain);
    opt_unknown_clear(&f->unk);
    free(f);
}

void opt_model_free(opt_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_opset_import; i++) opt_opset_clear(&m->opset_import[i]);
    free(m->opset_import);
    free(m->producer_name);
    free(m->producer_version);
    free(m->domain);
    free(m->doc_string);
    opt_graph_free(m->graph);
    for (size_t i = 0; i < m->n_metadata_props; i++) opt_kv_clear(&m->metadata_props[i]);
    free(m->metadata_props);
    free_bytesv(m->training_info, m->n_training_info);
    for (size_t i = 0; i < m->n_functions; i++) opt_function_free(m->functions[i]);
    free(m->functions);
    opt_unknown_clear(&m->unk);
    free(m);
}

/* ---- deep copies ------------------------------------------------------------------------- */

static void *memdup(const void *p, size_t n)
{
    if (!p || n == 0) return NULL;
    void *d = malloc(n);
    if (d) memcpy(d, p, n);
    return d;
}

/* Copies an array of n elements of size sz; *ok is cleared on allocation failure. */
static void *arrdup(const void *p, size_t n, size_t sz, bool *ok)
{
    if (!p || n == 0) return NULL;
    void *d = memdup(p, n * sz);
    if (!d) *ok = false;
    return d;
}

static bool bytes_copy(opt_bytes *dst, const opt_bytes *src)
{
    dst->len = src->len;
    dst->data = NULL;
    if (src->data) {
        dst->data = malloc(src->len ? src->len : 1);
        if (!dst->data) return false;
        if (src->len) memcpy(dst->data, src->data, src->len);
    }
    return true;
}

static bool unknown_copy(opt_unknown *dst, const opt_unknown *src)
{
    dst->n = 0;
    dst->f = NULL;
    if (src->n == 0) return true;
    dst->f = calloc(src->n, sizeof *dst->f);
    if (!dst->f) return false;
    dst->n = src->n;
    for (size_t i = 0; i < src->n; i++) {
        dst->f[i] = src->f[i];
        dst->f[i].data = memdup(src->f[i].data, src->f[i].len);
        if (src->f[i].len && !dst->f[i].data) return false;
    }
    return true;
}

static bool str_copy(char **dst, const char *src)
{
    *dst = opt_strdup(src);
    return !src || *dst;
}

opt_tensor *opt_tensor_dup(const opt_tensor *t)
{
    if (!t) return NULL;
    opt_tensor *d = opt_tensor_new();
    if (!d) return NULL;
    bool ok = true;
    *d = *t;
    /* Reset every owned pointer before copying so a failure frees only what was copied. */
    d->name = d->doc_string = NULL;
    d->dims = NULL;
    d->segment = NULL;
    d->raw_data.data = NULL;
    d->float_data = NULL; d->int32_data = NULL; d->string_data = NULL; d->int64_data = NULL;
    d->double_data = NULL; d->uint64_data = NULL; d->external_data = NULL;
    d->n_string_data = d->n_external_data = 0;
    d->unk.f = NULL; d->unk.n = 0;

    ok = ok && str_copy(&d->name, t->name) && str_copy(&d->doc_string, t->doc_string);
    d->dims = arrdup(t->dims, t->n_dims, sizeof *t->dims, &ok);
    if (ok && t->segment) {
        d->segment = calloc(1, sizeof *d->segment);
        ok = d->segment && bytes_copy(d->segment, t->segment);
    }
    if (ok) ok = bytes_copy(&d->raw_data, &t->raw_data);
    d->float_data = arrdup(t->float_data, t->n_float_data, sizeof(float), &ok);
    d->int32_data = arrdup(t->int32_data, t->n_int32_data, sizeof(int32_t), &ok);
    d->int64_data = arrdup(t->int64_data, t->n_int64_data, sizeof(int64_t), &ok);
    d->double_data = arrdup(t->double_data, t->n_double_data, sizeof(double), &ok);
    d->uint64_data = arrdup(t->uint64_data, t->n_uint64_data, sizeof(uint64_t), &ok);
    if (ok && t->n_string_data) {
        d->string_data = calloc(t->n_string_data, sizeof(opt_bytes));
        ok = d->string_data != NULL;
        if (ok) d->n_string_data = t->n_string_data;
        for (size_t i = 0; ok && i < t->n_string_data; i++)
            ok = bytes_copy(&d->string_data[i], &t->string_data[i]);
    }
    if (ok && t->n_external_data) {
        d->external_data = calloc(t->n_external_data, sizeof(opt_kv));
        ok = d->external_data != NULL;
        if (ok) d->n_external_data = t->n_external_data;
        for (size_t i = 0; ok && i < t->n_external_data; i++)
            ok = str_copy(&d->external_data[i].key, t->external_data[i].key) &&
                 str_copy(&d->external_data[i].value, t->external_data[i].value) &&
                 unknown_copy(&d->external_data[i].unk, &t->external_data[i].unk);
    }
    if (ok) ok = unknown_copy(&d->unk, &t->unk);
    if (!ok) {
        opt_tensor_free(d);
        return NULL;
    }
    return d;
}

static opt_shape *shape_dup(const opt_shape *s, bool *ok)
{
    if (!s) return NULL;
    opt_shape *d = calloc(1, sizeof *d);
    if (!d) { *ok = false; return NULL; }
    if (s->n_dim) {
        d->dim = calloc(s->n_dim, sizeof *d->dim);
        if (!d->dim) { *ok = false; return d; }
        d->n_dim = s->n_dim;
        for (size_t i = 0; i < s->n_dim; i++) {
            d->dim[i].kind = s->dim[i].kind;
            d->dim[i].value = s->dim[i].value;
            if (!str_copy(&d->dim[i].param, s->dim[i].param) ||
                !str_copy(&d->dim[i].denotation, s->dim[i].denotation) ||
                !unknown_copy(&d->dim[i].unk, &s->dim[i].unk))
                *ok = false;
        }
    }
    if (!unknown_copy(&d->unk, &s->unk)) *ok = false;
    return d;
}

opt_type *opt_type_dup(const opt_type *t)
{
    if (!t) return NULL;
    opt_type *d = opt_type_new();
    if (!d) return NULL;
    bool ok = true;
    d->kind = t->kind;
    d->has_elem_type = t->has_elem_type;
    d->elem_type = t->elem_type;
    d->has_key_type = t->has_key_type;
    d->key_type = t->key_type;
    d->shape = shape_dup(t->shape, &ok);
    if (t->elem) {
        d->elem = opt_type_dup(t->elem);
        if (!d->elem) ok = false;
    }
    ok = ok && str_copy(&d->denotation, t->denotation) &&
         unknown_copy(&d->inner_unk, &t->inner_unk) && unknown_copy(&d->unk, &t->unk);
    if (!ok) {
        opt_type_free(d);
        return NULL;
    }
    return d;
}

opt_value_info *opt_value_info_dup(const opt_value_info *v)
{
    if (!v) return NULL;
    opt_value_info *d = opt_value_info_new();
    if (!d) return NULL;
    bool ok = str_copy(&d->name, v->name) && str_copy(&d->doc_string, v->doc_string) &&
              unknown_copy(&d->unk, &v->unk);
    if (ok && v->type) {
        d->type = opt_type_dup(v->type);
        ok = d->type != NULL;
    }
    if (!ok) {
        opt_value_info_free(d);
        return NULL;
    }
    return d;
}

/* ---- model helpers --------------------------------------------------------------------------- */

int64_t opt_model_opset(const opt_model *m, const char *domain)
{
    bool want_default = !domain || !*domain || strcmp(domain, "ai.onnx") == 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = m->opset_import[i].domain;
        bool is_default = !d || !*d || strcmp(d, "ai.onnx") == 0;
        if (want_default ? is_default : (d && strcmp(d, domain) == 0))
            return m->opset_import[i].has_version ? m->opset_import[i].version : 1;
    }
    return -1;
}

const char *opt_model_meta_get(const opt_model *m, const char *key)
{
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (m->metadata_props[i].key && strcmp(m->metadata_props[i].key, key) == 0)
            return m->metadata_props[i].value ? m->metadata_props[i].value : "";
    return NULL;
}

opt_status opt_model_meta_set(opt_model *m, const char *key, const char *value, opt_error *err)
{
    char *v = opt_strdup(value);
    if (!v) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_metadata_props; i++) {
        if (m->metadata_props[i].key && strcmp(m->metadata_props[i].key, key) == 0) {
            free(m->metadata_props[i].value);
            m->metadata_props[i].value = v;
            return OPT_OK;
        }
    }
    opt_kv *p = realloc(m->metadata_props, (m->n_metadata_props + 1) * sizeof *p);
    char *k = opt_strdup(key);
    if (!p || !k) {
        if (p) m->metadata_props = p;
        free(v);
        free(k);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    m->metadata_props = p;
    memset(&p[m->n_metadata_props], 0, sizeof *p);
    p[m->n_metadata_props].key = k;
    p[m->n_metadata_props].value = v;
    m->n_metadata_props++;
    return OPT_OK;
}

opt_status opt_model_history_append(opt_model *m, const char *entry, opt_error *err)
{
    const char *old = opt_model_meta_get(m, "mopt.history");
    size_t lo = old ? strlen(old) : 0, le = strlen(entry);
    char *buf = malloc(lo + le + 2);
    if (!buf) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    size_t k = 0;
    if (lo) {
        memcpy(buf, old, lo);
        k = lo;
        buf[k++] = '\n';
    }
    memcpy(buf + k, entry, le);
    buf[k + le] = 0;
    opt_status s = opt_model_meta_set(m, "mopt.history", buf, err);
    free(buf);
    return s;
}
