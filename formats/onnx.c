/*
 * formats/onnx.c — conversion between protobuf-c's ONNX messages and the libopt IR.
 *
 * Reading steals: after protobuf-c unpacks a model, strings, arrays and tensor bytes are moved
 * into the IR (the message's pointers are set to NULL before it is freed), so loading holds one
 * copy of the weights, not two. Writing borrows: protobuf-c messages are built in an arena and
 * point at the IR's data, then packed straight to the output; nothing large is copied.
 */
#include "formats/onnx.h"
#include "onnx.pb-c.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

_Static_assert(sizeof(opt_bytes) == sizeof(ProtobufCBinaryData), "opt_bytes layout");
_Static_assert(offsetof(opt_bytes, len) == offsetof(ProtobufCBinaryData, len), "opt_bytes.len");
_Static_assert(offsetof(opt_bytes, data) == offsetof(ProtobufCBinaryData, data), "opt_bytes.data");

#define MAX_DEPTH 64

/* ======================================================================================
 * protobuf-c -> IR
 * ====================================================================================== */

typedef struct rd {
    bool oom;
    int depth;
    bool too_deep;
} rd;

#define STEAL(dst, src) ((dst) = (src), (src) = NULL)
#define STEAL_ARR(dst, ndst, src, nsrc) \
    ((dst) = (src), (ndst) = (nsrc), (src) = NULL, (nsrc) = 0)

static void take_unknown(rd *r, opt_unknown *u, ProtobufCMessage *m)
{
    u->n = 0;
    u->f = NULL;
    if (!m->n_unknown_fields) return;
    u->f = calloc(m->n_unknown_fields, sizeof *u->f);
    if (!u->f) {
        r->oom = true;
        return;
    }
    u->n = m->n_unknown_fields;
    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        ProtobufCMessageUnknownField *f = &m->unknown_fields[i];
        u->f[i].tag = f->tag;
        u->f[i].wire_type = (uint8_t)f->wire_type;
        u->f[i].len = f->len;
        STEAL(u->f[i].data, f->data);
    }
}

static void take_bytes(opt_bytes *dst, ProtobufCBinaryData *src)
{
    dst->len = src->len;
    STEAL(dst->data, src->data);
    src->len = 0;
}

/* Packs a message we keep opaque into a blob. */
static void take_blob(rd *r, opt_blob *dst, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    dst->len = n;
    dst->data = malloc(n ? n : 1);
    if (!dst->data) {
        r->oom = true;
        dst->len = 0;
        return;
    }
    protobuf_c_message_pack(m, dst->data);
}

static void take_kv(rd *r, opt_kv *kv, Onnx__StringStringEntryProto *p)
{
    STEAL(kv->key, p->key);
    STEAL(kv->value, p->value);
    take_unknown(r, &kv->unk, &p->base);
}

static opt_kv *take_kvs(rd *r, Onnx__StringStringEntryProto **v, size_t n)
{
    if (!n) return NULL;
    opt_kv *kv = calloc(n, sizeof *kv);
    if (!kv) {
        r->oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) take_kv(r, &kv[i], v[i]);
    return kv;
}

static opt_opset *take_opsets(rd *r, Onnx__OperatorSetIdProto **v, size_t n)
{
    if (!n) return NULL;
    opt_opset *o = calloc(n, sizeof *o);
    if (!o) {
        r->oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        STEAL(o[i].domain, v[i]->domain);
        o[i].has_version = v[i]->has_version;
        o[i].version = v[i]->version;
        take_unknown(r, &o[i].unk, &v[i]->base);
    }
    return o;
}

static opt_tensor *take_tensor(rd *r, Onnx__TensorProto *p)
{
    if (!p) return NULL;
    opt_tensor *t = opt_tensor_new();
    if (!t) {
        r->oom = true;
        return NULL;
    }
    STEAL(t->name, p->name);
    STEAL(t->doc_string, p->doc_string);
    STEAL_ARR(t->dims, t->n_dims, p->dims, p->n_dims);
    t->has_data_type = p->has_data_type;
    t->data_type = p->data_type;
    if (p->segment) {
        t->segment = calloc(1, sizeof *t->segment);
        if (!t->segment) r->oom = true;
        else take_blob(r, t->segment, &p->segment->base);
    }
    t->has_raw_data = p->has_raw_data;
    take_bytes(&t->raw_data, &p->raw_data);
    STEAL_ARR(t->float_data, t->n_float_data, p->float_data, p->n_float_data);
    STEAL_ARR(t->int32_data, t->n_int32_data, p->int32_data, p->n_int32_data);
    t->string_data = (opt_bytes *)p->string_data;
    t->n_string_data = p->n_string_data;
    p->string_data = NULL;
    p->n_string_data = 0;
    STEAL_ARR(t->int64_data, t->n_int64_data, p->int64_data, p->n_int64_data);
    STEAL_ARR(t->double_data, t->n_double_data, p->double_data, p->n_double_data);
    STEAL_ARR(t->uint64_data, t->n_uint64_data, p->uint64_data, p->n_uint64_data);
    t->external_data = take_kvs(r, p->external_data, p->n_external_data);
    t->n_external_data = t->external_data ? p->n_external_data : 0;
    t->has_data_location = p->has_data_location;
    t->data_location = p->data_location;
    take_unknown(r, &t->unk, &p->base);
    return t;
}

static opt_sparse_tensor *take_sparse(rd *r, Onnx__SparseTensorProto *p)
{
    if (!p) return NULL;
    opt_sparse_tensor *s = calloc(1, sizeof *s);
    if (!s) {
        r->oom = true;
        return NULL;
    }
    s->values = take_tensor(r, p->values);
    s->indices = take_tensor(r, p->indices);
    STEAL_ARR(s->dims, s->n_dims, p->dims, p->n_dims);
    take_unknown(r, &s->unk, &p->base);
    return s;
}

static opt_shape *take_shape(rd *r, Onnx__TensorShapeProto *p)
{
    if (!p) return NULL;
    opt_shape *s = calloc(1, sizeof *s);
    if (!s) {
        r->oom = true;
        return NULL;
    }
    if (p->n_dim) {
        s->dim = calloc(p->n_dim, sizeof *s->dim);
        if (!s->dim) {
            r->oom = true;
            return s;
        }
        s->n_dim = p->n_dim;
        for (size_t i = 0; i < p->n_dim; i++) {
            Onnx__TensorShapeProto__Dimension *d = p->dim[i];
            opt_dim *o = &s->dim[i];
            if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
                o->kind = OPT_DIM_VALUE;
                o->value = d->dim_value;
            } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) {
                o->kind = OPT_DIM_PARAM;
                STEAL(o->param, d->dim_param);
            }
            STEAL(o->denotation, d->denotation);
            take_unknown(r, &o->unk, &d->base);
        }
    }
    take_unknown(r, &s->unk, &p->base);
    return s;
}

static opt_type *take_type(rd *r, Onnx__TypeProto *p)
{
    if (!p) return NULL;
    if (++r->depth > MAX_DEPTH) {
        r->too_deep = true;
        r->depth--;
        return NULL;
    }
    opt_type *t = opt_type_new();
    if (!t) {
        r->oom = true;
        r->depth--;
        return NULL;
    }
    STEAL(t->denotation, p->denotation);
    switch (p->value_case) {
    case ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE:
        t->kind = OPT_TYPE_TENSOR;
        t->has_elem_type = p->tensor_type->has_elem_type;
        t->elem_type = p->tensor_type->elem_type;
        t->shape = take_shape(r, p->tensor_type->shape);
        take_unknown(r, &t->inner_unk, &p->tensor_type->base);
        break;
    case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE:
        t->kind = OPT_TYPE_SPARSE_TENSOR;
        t->has_elem_type = p->sparse_tensor_type->has_elem_type;
        t->elem_type = p->sparse_tensor_type->elem_type;
        t->shape = take_shape(r, p->sparse_tensor_type->shape);
        take_unknown(r, &t->inner_unk, &p->sparse_tensor_type->base);
        break;
    case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE:
        t->kind = OPT_TYPE_SEQUENCE;
        t->elem = take_type(r, p->sequence_type->elem_type);
        take_unknown(r, &t->inner_unk, &p->sequence_type->base);
        break;
    case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE:
        t->kind = OPT_TYPE_OPTIONAL;
        t->elem = take_type(r, p->optional_type->elem_type);
        take_unknown(r, &t->inner_unk, &p->optional_type->base);
        break;
    case ONNX__TYPE_PROTO__VALUE_MAP_TYPE:
        t->kind = OPT_TYPE_MAP;
        t->has_key_type = p->map_type->has_key_type;
        t->key_type = p->map_type->key_type;
        t->elem = take_type(r, p->map_type->value_type);
        take_unknown(r, &t->inner_unk, &p->map_type->base);
        break;
    default:
        t->kind = OPT_TYPE_NONE;
        break;
    }
    take_unknown(r, &t->unk, &p->base);
    r->depth--;
    return t;
}

static opt_value_info *take_vi(rd *r, Onnx__ValueInfoProto *p)
{
    opt_value_info *v = opt_value_info_new();
    if (!v) {
        r->oom = true;
        return NULL;
    }
    STEAL(v->name, p->name);
    v->type = take_type(r, p->type);
    STEAL(v->doc_string, p->doc_string);
    take_unknown(r, &v->unk, &p->base);
    return v;
}

static opt_graph *take_graph(rd *r, Onnx__GraphProto *p);

/* Allocates an array of n pointers; sets r->oom on failure. */
static void *ptr_array(rd *r, size_t n)
{
    if (!n) return NULL;
    void *a = calloc(n, sizeof(void *));
    if (!a) r->oom = true;
    return a;
}

static void take_attr(rd *r, opt_attr *a, Onnx__AttributeProto *p)
{
    STEAL(a->name, p->name);
    STEAL(a->ref_attr_name, p->ref_attr_name);
    STEAL(a->doc_string, p->doc_string);
    a->has_type = p->has_type;
    a->type = p->type;
    a->has_f = p->has_f;
    a->f = p->f;
    a->has_i = p->has_i;
    a->i = p->i;
    a->has_s = p->has_s;
    take_bytes(&a->s, &p->s);
    a->t = take_tensor(r, p->t);
    a->g = p->g ? take_graph(r, p->g) : NULL;
    a->sparse_tensor = take_sparse(r, p->sparse_tensor);
    a->tp = take_type(r, p->tp);
    STEAL_ARR(a->floats, a->n_floats, p->floats, p->n_floats);
    STEAL_ARR(a->ints, a->n_ints, p->ints, p->n_ints);
    a->strings = (opt_bytes *)p->strings;
    a->n_strings = p->n_strings;
    p->strings = NULL;
    p->n_strings = 0;
    if ((a->tensors = ptr_array(r, p->n_tensors))) {
        a->n_tensors = p->n_tensors;
        for (size_t i = 0; i < p->n_tensors; i++) a->tensors[i] = take_tensor(r, p->tensors[i]);
    }
    if ((a->graphs = ptr_array(r, p->n_graphs))) {
        a->n_graphs = p->n_graphs;
        for (size_t i = 0; i < p->n_graphs; i++) a->graphs[i] = take_graph(r, p->graphs[i]);
    }
    if ((a->sparse_tensors = ptr_array(r, p->n_sparse_tensors))) {
        a->n_sparse_tensors = p->n_sparse_tensors;
        for (size_t i = 0; i < p->n_sparse_tensors; i++)
            a->sparse_tensors[i] = take_sparse(r, p->sparse_tensors[i]);
    }
    if ((a->type_protos = ptr_array(r, p->n_type_protos))) {
        a->n_type_protos = p->n_type_protos;
        for (size_t i = 0; i < p->n_type_protos; i++)
            a->type_protos[i] = take_type(r, p->type_protos[i]);
    }
    take_unknown(r, &a->unk, &p->base);
}

/* Replaces NULL entries of a stolen string array with "" so the IR never holds NULL names. */
static void fill_empty(rd *r, char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!v[i] && !(v[i] = opt_strdup(""))) r->oom = true;
}

static opt_node *take_node(rd *r, Onnx__NodeProto *p)
{
    opt_node *n = opt_node_new();
    if (!n) {
        r->oom = true;
        return NULL;
    }
    STEAL_ARR(n->inputs, n->n_inputs, p->input, p->n_input);
    STEAL_ARR(n->outputs, n->n_outputs, p->output, p->n_output);
    fill_empty(r, n->inputs, n->n_inputs);
    fill_empty(r, n->outputs, n->n_outputs);
    STEAL(n->name, p->name);
    STEAL(n->op_type, p->op_type);
    STEAL(n->domain, p->domain);
    if (p->n_attribute) {
        n->attrs = calloc(p->n_attribute, sizeof *n->attrs);
        if (!n->attrs) r->oom = true;
        else {
            n->n_attrs = p->n_attribute;
            for (size_t i = 0; i < p->n_attribute; i++) take_attr(r, &n->attrs[i], p->attribute[i]);
        }
    }
    STEAL(n->doc_string, p->doc_string);
    take_unknown(r, &n->unk, &p->base);
    return n;
}

static opt_graph *take_graph(rd *r, Onnx__GraphProto *p)
{
    if (++r->depth > MAX_DEPTH) {
        r->too_deep = true;
        r->depth--;
        return NULL;
    }
    opt_graph *g = opt_graph_new();
    if (!g) {
        r->oom = true;
        r->depth--;
        return NULL;
    }
    if ((g->nodes = ptr_array(r, p->n_node))) {
        for (size_t i = 0; i < p->n_node; i++) {
            g->nodes[i] = take_node(r, p->node[i]);
            if (g->nodes[i]) g->n_nodes = i + 1;
            else break;
        }
    }
    STEAL(g->name, p->name);
    if ((g->initializers = ptr_array(r, p->n_initializer))) {
        for (size_t i = 0; i < p->n_initializer; i++) {
            g->initializers[i] = take_tensor(r, p->initializer[i]);
            if (g->initializers[i]) g->n_initializers = i + 1;
            else break;
        }
    }
    if ((g->sparse_initializers = ptr_array(r, p->n_sparse_initializer))) {
        for (size_t i = 0; i < p->n_sparse_initializer; i++) {
            g->sparse_initializers[i] = take_sparse(r, p->sparse_initializer[i]);
            if (g->sparse_initializers[i]) g->n_sparse_initializers = i + 1;
            else break;
        }
    }
    STEAL(g->doc_string, p->doc_string);
#define TAKE_VIS(dst, ndst, src, nsrc)                        \
    if (((dst) = ptr_array(r, (nsrc)))) {                     \
        for (size_t i = 0; i < (nsrc); i++) {                 \
            (dst)[i] = take_vi(r, (src)[i]);                  \
            if ((dst)[i]) (ndst) = i + 1;                     \
            else break;                                       \
        }                                                     \
    }
    TAKE_VIS(g->inputs, g->n_inputs, p->input, p->n_input);
    TAKE_VIS(g->outputs, g->n_outputs, p->output, p->n_output);
    TAKE_VIS(g->value_info, g->n_value_info, p->value_info, p->n_value_info);
#undef TAKE_VIS
    if (p->n_quantization_annotation) {
        g->quantization_annotation = calloc(p->n_quantization_annotation, sizeof(opt_blob));
        if (!g->quantization_annotation) r->oom = true;
        else {
            g->n_quantization_annotation = p->n_quantization_annotation;
            for (size_t i = 0; i < p->n_quantization_annotation; i++)
                take_blob(r, &g->quantization_annotation[i], &p->quantization_annotation[i]->base);
        }
    }
    take_unknown(r, &g->unk, &p->base);
    r->depth--;
    return g;
}

static opt_function *take_function(rd *r, Onnx__FunctionProto *p)
{
    opt_function *f = calloc(1, sizeof *f);
    if (!f) {
        r->oom = true;
        return NULL;
    }
    STEAL(f->name, p->name);
    STEAL_ARR(f->inputs, f->n_inputs, p->input, p->n_input);
    STEAL_ARR(f->outputs, f->n_outputs, p->output, p->n_output);
    STEAL_ARR(f->attributes, f->n_attributes, p->attribute, p->n_attribute);
    fill_empty(r, f->inputs, f->n_inputs);
    fill_empty(r, f->outputs, f->n_outputs);
    fill_empty(r, f->attributes, f->n_attributes);
    if ((f->nodes = ptr_array(r, p->n_node))) {
        for (size_t i = 0; i < p->n_node; i++) {
            f->nodes[i] = take_node(r, p->node[i]);
            if (f->nodes[i]) f->n_nodes = i + 1;
            else break;
        }
    }
    STEAL(f->doc_string, p->doc_string);
    f->opset_import = take_opsets(r, p->opset_import, p->n_opset_import);
    f->n_opset_import = f->opset_import ? p->n_opset_import : 0;
    STEAL(f->domain, p->domain);
    take_unknown(r, &f->unk, &p->base);
    return f;
}

static opt_model *take_model(rd *r, Onnx__ModelProto *p)
{
    opt_model *m = opt_model_new();
    if (!m) {
        r->oom = true;
        return NULL;
    }
    m->has_ir_version = p->has_ir_version;
    m->ir_version = p->ir_version;
    m->opset_import = take_opsets(r, p->opset_import, p->n_opset_import);
    m->n_opset_import = m->opset_import ? p->n_opset_import : 0;
    STEAL(m->producer_name, p->producer_name);
    STEAL(m->producer_version, p->producer_version);
    STEAL(m->domain, p->domain);
    m->has_model_version = p->has_model_version;
    m->model_version = p->model_version;
    STEAL(m->doc_string, p->doc_string);
    m->graph = p->graph ? take_graph(r, p->graph) : NULL;
    m->metadata_props = take_kvs(r, p->metadata_props, p->n_metadata_props);
    m->n_metadata_props = m->metadata_props ? p->n_metadata_props : 0;
    if (p->n_training_info) {
        m->training_info = calloc(p->n_training_info, sizeof(opt_blob));
        if (!m->training_info) r->oom = true;
        else {
            m->n_training_info = p->n_training_info;
            for (size_t i = 0; i < p->n_training_info; i++)
                take_blob(r, &m->training_info[i], &p->training_info[i]->base);
        }
    }
    if ((m->functions = ptr_array(r, p->n_functions))) {
        for (size_t i = 0; i < p->n_functions; i++) {
            m->functions[i] = take_function(r, p->functions[i]);
            if (m->functions[i]) m->n_functions = i + 1;
            else break;
        }
    }
    take_unknown(r, &m->unk, &p->base);
    return m;
}

/* ======================================================================================
 * IR -> protobuf-c (borrowing)
 * ====================================================================================== */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
} arena_block;

typedef struct wr {
    arena_block *blocks;
    bool oom;
    int depth;
    bool inline_external; /* write loaded external tensors inline */
    /* Optional hook: decides per initializer whether it goes to external data. */
    bool (*ext_hook)(void *ctx, const opt_tensor *t, Onnx__StringStringEntryProto ***kvs,
                     size_t *n);
    void *ext_ctx;
} wr;

static void *aalloc(wr *w, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!n) n = sizeof(max_align_t);
    arena_block *b = w->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) {
            w->oom = true;
            return NULL;
        }
        b->next = w->blocks;
        b->used = 0;
        b->cap = cap;
        w->blocks = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(wr *w)
{
    while (w->blocks) {
        arena_block *n = w->blocks->next;
        free(w->blocks);
        w->blocks = n;
    }
}

#define ANEW(w, T, INIT)                      \
    ({                                        \
        T *p_ = aalloc((w), sizeof(T));       \
        if (p_) *p_ = (T)INIT;                \
        p_;                                   \
    })

static void put_unknown(wr *w, ProtobufCMessage *m, const opt_unknown *u)
{
    if (!u->n) return;
    ProtobufCMessageUnknownField *f = aalloc(w, u->n * sizeof *f);
    if (!f) return;
    for (size_t i = 0; i < u->n; i++) {
        f[i].tag = u->f[i].tag;
        f[i].wire_type = (ProtobufCWireType)u->f[i].wire_type;
        f[i].len = u->f[i].len;
        f[i].data = u->f[i].data;
    }
    m->n_unknown_fields = (unsigned)u->n;
    m->unknown_fields = f;
}

/* Unpacks an opaque blob into an arena-free message; the caller frees it with
 * protobuf_c_message_free_unpacked after packing. Tracked in a list so it is freed at the end. */
typedef struct blob_msg {
    struct blob_msg *next;
    ProtobufCMessage *m;
} blob_msg;

static blob_msg *g_blob_list; /* per-call list; writes are not concurrent within a process */

static ProtobufCMessage *put_blob(wr *w, const ProtobufCMessageDescriptor *d, const opt_blob *b)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, b->len, b->data);
    blob_msg *node = aalloc(w, sizeof *node);
    if (!m || !node) {
        if (m) protobuf_c_message_free_unpacked(m, NULL);
        w->oom = true;
        return NULL;
    }
    node->m = m;
    node->next = g_blob_list;
    g_blob_list = node;
    return m;
}

static void blobs_free(void)
{
    for (blob_msg *b = g_blob_list; b; b = b->next) protobuf_c_message_free_unpacked(b->m, NULL);
    g_blob_list = NULL;
}

static Onnx__StringStringEntryProto **put_kvs(wr *w, const opt_kv *kv, size_t n)
{
    if (!n) return NULL;
    Onnx__StringStringEntryProto **v = aalloc(w, n * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i] = ANEW(w, Onnx__StringStringEntryProto, ONNX__STRING_STRING_ENTRY_PROTO__INIT);
        if (!v[i]) return NULL;
        v[i]->key = kv[i].key;
        v[i]->value = kv[i].value;
        put_unknown(w, &v[i]->base, &kv[i].unk);
    }
    return v;
}

static Onnx__OperatorSetIdProto **put_opsets(wr *w, const opt_opset *o, size_t n)
{
    if (!n) return NULL;
    Onnx__OperatorSetIdProto **v = aalloc(w, n * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i] = ANEW(w, Onnx__OperatorSetIdProto, ONNX__OPERATOR_SET_ID_PROTO__INIT);
        if (!v[i]) return NULL;
        v[i]->domain = o[i].domain;
        v[i]->has_version = o[i].has_version;
        v[i]->version = o[i].version;
        put_unknown(w, &v[i]->base, &o[i].unk);
    }
    return v;
}

static Onnx__TensorProto *put_tensor(wr *w, const opt_tensor *t, bool initializer)
{
    if (!t) return NULL;
    Onnx__TensorProto *p = ANEW(w, Onnx__TensorProto, ONNX__TENSOR_PROTO__INIT);
    if (!p) return NULL;
    p->name = t->name;
    p->doc_string = t->doc_string;
    p->dims = t->dims;
    p->n_dims = t->n_dims;
    p->has_data_type = t->has_data_type;
    p->data_type = t->data_type;
    if (t->segment)
        p->segment = (Onnx__TensorProto__Segment *)put_blob(
            w, &onnx__tensor_proto__segment__descriptor, t->segment);
    p->has_raw_data = t->has_raw_data;
    p->raw_data.len = t->raw_data.len;
    p->raw_data.data = t->raw_data.data;
    p->float_data = t->float_data;         p->n_float_data = t->n_float_data;
    p->int32_data = t->int32_data;         p->n_int32_data = t->n_int32_data;
    p->string_data = (ProtobufCBinaryData *)t->string_data;
    p->n_string_data = t->n_string_data;
    p->int64_data = t->int64_data;         p->n_int64_data = t->n_int64_data;
    p->double_data = t->double_data;       p->n_double_data = t->n_double_data;
    p->uint64_data = t->uint64_data;       p->n_uint64_data = t->n_uint64_data;
    p->external_data = put_kvs(w, t->external_data, t->n_external_data);
    p->n_external_data = t->n_external_data;
    p->has_data_location = t->has_data_location;
    p->data_location = (Onnx__TensorProto__DataLocation)t->data_location;
    put_unknown(w, &p->base, &t->unk);

    Onnx__StringStringEntryProto **kvs;
    size_t nkv;
    if (initializer && w->ext_hook && w->ext_hook(w->ext_ctx, t, &kvs, &nkv)) {
        /* Moved to external data: drop the inline bytes and point at the side file. */
        p->has_raw_data = 0;
        p->raw_data.len = 0;
        p->raw_data.data = NULL;
        p->n_float_data = p->n_int32_data = p->n_int64_data = p->n_double_data = 0;
        p->n_uint64_data = 0;
        p->external_data = kvs;
        p->n_external_data = nkv;
        p->has_data_location = 1;
        p->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    } else if (opt_tensor_is_external(t) && t->has_raw_data && w->inline_external) {
        p->external_data = NULL;
        p->n_external_data = 0;
        p->has_data_location = 0;
        p->data_location = 0;
    } else if (opt_tensor_is_external(t) && t->has_raw_data) {
        /* Loaded external data that stays external: the hook declined, so write it inline. */
        p->external_data = NULL;
        p->n_external_data = 0;
        p->has_data_location = 0;
        p->data_location = 0;
    }
    return p;
}

static Onnx__SparseTensorProto *put_sparse(wr *w, const opt_sparse_tensor *s)
{
    if (!s) return NULL;
    Onnx__SparseTensorProto *p = ANEW(w, Onnx__SparseTensorProto, ONNX__SPARSE_TENSOR_PROTO__INIT);
    if (!p) return NULL;
    p->values = put_tensor(w, s->values, false);
    p->indices = put_tensor(w, s->indices, false);
    p->dims = s->dims;
    p->n_dims = s->n_dims;
    put_unknown(w, &p->base, &s->unk);
    return p;
}

static Onnx__TensorShapeProto *put_shape(wr *w, const opt_shape *s)
{
    if (!s) return NULL;
    Onnx__TensorShapeProto *p = ANEW(w, Onnx__TensorShapeProto, ONNX__TENSOR_SHAPE_PROTO__INIT);
    if (!p) return NULL;
    if (s->n_dim) {
        p->dim = aalloc(w, s->n_dim * sizeof *p->dim);
        if (!p->dim) return p;
        p->n_dim = s->n_dim;
        for (size_t i = 0; i < s->n_dim; i++) {
            Onnx__TensorShapeProto__Dimension *d = ANEW(
                w, Onnx__TensorShapeProto__Dimension, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT);
            if (!d) return p;
            if (s->dim[i].kind == OPT_DIM_VALUE) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                d->dim_value = s->dim[i].value;
            } else if (s->dim[i].kind == OPT_DIM_PARAM) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = s->dim[i].param;
            }
            d->denotation = s->dim[i].denotation;
            put_unknown(w, &d->base, &s->dim[i].unk);
            p->dim[i] = d;
        }
    }
    put_unknown(w, &p->base, &s->unk);
    return p;
}

static Onnx__TypeProto *put_type(wr *w, const opt_type *t)
{
    if (!t) return NULL;
    Onnx__TypeProto *p = ANEW(w, Onnx__TypeProto, ONNX__TYPE_PROTO__INIT);
    if (!p) return NULL;
    p->denotation = t->denotation;
    switch (t->kind) {
    case OPT_TYPE_TENSOR: {
        Onnx__TypeProto__Tensor *x = ANEW(w, Onnx__TypeProto__Tensor, ONNX__TYPE_PROTO__TENSOR__INIT);
        if (!x) return p;
        x->has_elem_type = t->has_elem_type;
        x->elem_type = t->elem_type;
        x->shape = put_shape(w, t->shape);
        put_unknown(w, &x->base, &t->inner_unk);
        p->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
        p->tensor_type = x;
        break;
    }
    case OPT_TYPE_SPARSE_TENSOR: {
        Onnx__TypeProto__SparseTensor *x =
            ANEW(w, Onnx__TypeProto__SparseTensor, ONNX__TYPE_PROTO__SPARSE_TENSOR__INIT);
        if (!x) return p;
        x->has_elem_type = t->has_elem_type;
        x->elem_type = t->elem_type;
        x->shape = put_shape(w, t->shape);
        put_unknown(w, &x->base, &t->inner_unk);
        p->value_case = ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE;
        p->sparse_tensor_type = x;
        break;
    }
    case OPT_TYPE_SEQUENCE: {
        Onnx__TypeProto__Sequence *x =
            ANEW(w, Onnx__TypeProto__Sequence, ONNX__TYPE_PROTO__SEQUENCE__INIT);
        if (!x) return p;
        x->elem_type = put_type(w, t->elem);
        put_unknown(w, &x->base, &t->inner_unk);
        p->value_case = ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE;
        p->sequence_type = x;
        break;
    }
    case OPT_TYPE_OPTIONAL: {
        Onnx__TypeProto__Optional *x =
            ANEW(w, Onnx__TypeProto__Optional, ONNX__TYPE_PROTO__OPTIONAL__INIT);
        if (!x) return p;
        x->elem_type = put_type(w, t->elem);
        put_unknown(w, &x->base, &t->inner_unk);
        p->value_case = ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE;
        p->optional_type = x;
        break;
    }
    case OPT_TYPE_MAP: {
        Onnx__TypeProto__Map *x = ANEW(w, Onnx__TypeProto__Map, ONNX__TYPE_PROTO__MAP__INIT);
        if (!x) return p;
        x->has_key_type = t->has_key_type;
        x->key_type = t->key_type;
        x->value_type = put_type(w, t->elem);
        put_unknown(w, &x->base, &t->inner_unk);
        p->value_case = ONNX__TYPE_PROTO__VALUE_MAP_TYPE;
        p->map_type = x;
        break;
    }
    default:
        break;
    }
    put_unknown(w, &p->base, &t->unk);
    return p;
}

static Onnx__ValueInfoProto **put_vis(wr *w, opt_value_info *const *v, size_t n)
{
    if (!n) return NULL;
    Onnx__ValueInfoProto **a = aalloc(w, n * sizeof *a);
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++) {
        a[i] = ANEW(w, Onnx__ValueInfoProto, ONNX__VALUE_INFO_PROTO__INIT);
        if (!a[i]) return a;
        a[i]->name = v[i]->name;
        a[i]->type = put_type(w, v[i]->type);
        a[i]->doc_string = v[i]->doc_string;
        put_unknown(w, &a[i]->base, &v[i]->unk);
    }
    return a;
}

static Onnx__GraphProto *put_graph(wr *w, const opt_graph *g);

static Onnx__NodeProto *put_node(wr *w, const opt_node *n)
{
    Onnx__NodeProto *p = ANEW(w, Onnx__NodeProto, ONNX__NODE_PROTO__INIT);
    if (!p) return NULL;
    p->input = n->inputs;
    p->n_input = n->n_inputs;
    p->output = n->outputs;
    p->n_output = n->n_outputs;
    p->name = n->name;
    p->op_type = n->op_type;
    p->domain = n->domain;
    p->doc_string = n->doc_string;
    if (n->n_attrs) {
        p->attribute = aalloc(w, n->n_attrs * sizeof *p->attribute);
        if (!p->attribute) return p;
        p->n_attribute = n->n_attrs;
        for (size_t i = 0; i < n->n_attrs; i++) {
            const opt_attr *a = &n->attrs[i];
            Onnx__AttributeProto *q = ANEW(w, Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT);
            if (!q) return p;
            p->attribute[i] = q;
            q->name = a->name;
            q->ref_attr_name = a->ref_attr_name;
            q->doc_string = a->doc_string;
            q->has_type = a->has_type;
            q->type = (Onnx__AttributeProto__AttributeType)a->type;
            q->has_f = a->has_f;
            q->f = a->f;
            q->has_i = a->has_i;
            q->i = a->i;
            q->has_s = a->has_s;
            q->s.len = a->s.len;
            q->s.data = a->s.data;
            q->t = put_tensor(w, a->t, false);
            q->g = a->g ? put_graph(w, a->g) : NULL;
            q->sparse_tensor = put_sparse(w, a->sparse_tensor);
            q->tp = put_type(w, a->tp);
            q->floats = a->floats;  q->n_floats = a->n_floats;
            q->ints = a->ints;      q->n_ints = a->n_ints;
            q->strings = (ProtobufCBinaryData *)a->strings;
            q->n_strings = a->n_strings;
            if (a->n_tensors && (q->tensors = aalloc(w, a->n_tensors * sizeof(void *)))) {
                q->n_tensors = a->n_tensors;
                for (size_t k = 0; k < a->n_tensors; k++) q->tensors[k] = put_tensor(w, a->tensors[k], false);
            }
            if (a->n_graphs && (q->graphs = aalloc(w, a->n_graphs * sizeof(void *)))) {
                q->n_graphs = a->n_graphs;
                for (size_t k = 0; k < a->n_graphs; k++) q->graphs[k] = put_graph(w, a->graphs[k]);
            }
            if (a->n_sparse_tensors &&
                (q->sparse_tensors = aalloc(w, a->n_sparse_tensors * sizeof(void *)))) {
                q->n_sparse_tensors = a->n_sparse_tensors;
                for (size_t k = 0; k < a->n_sparse_tensors; k++)
                    q->sparse_tensors[k] = put_sparse(w, a->sparse_tensors[k]);
            }
            if (a->n_type_protos && (q->type_protos = aalloc(w, a->n_type_protos * sizeof(void *)))) {
                q->n_type_protos = a->n_type_protos;
                for (size_t k = 0; k < a->n_type_protos; k++)
                    q->type_protos[k] = put_type(w, a->type_protos[k]);
            }
            put_unknown(w, &q->base, &a->unk);
        }
    }
    put_unknown(w, &p->base, &n->unk);
    return p;
}

static Onnx__GraphProto *put_graph(wr *w, const opt_graph *g)
{
    Onnx__GraphProto *p = ANEW(w, Onnx__GraphProto, ONNX__GRAPH_PROTO__INIT);
    if (!p) return NULL;
    bool top = w->depth++ == 0;
    if (g->n_nodes && (p->node = aalloc(w, g->n_nodes * sizeof(void *)))) {
        p->n_node = g->n_nodes;
        for (size_t i = 0; i < g->n_nodes; i++) p->node[i] = put_node(w, g->nodes[i]);
    }
    p->name = g->name;
    if (g->n_initializers && (p->initializer = aalloc(w, g->n_initializers * sizeof(void *)))) {
        p->n_initializer = g->n_initializers;
        for (size_t i = 0; i < g->n_initializers; i++)
            p->initializer[i] = put_tensor(w, g->initializers[i], top);
    }
    if (g->n_sparse_initializers &&
        (p->sparse_initializer = aalloc(w, g->n_sparse_initializers * sizeof(void *)))) {
        p->n_sparse_initializer = g->n_sparse_initializers;
        for (size_t i = 0; i < g->n_sparse_initializers; i++)
            p->sparse_initializer[i] = put_sparse(w, g->sparse_initializers[i]);
    }
    p->doc_string = g->doc_string;
    p->input = put_vis(w, g->inputs, g->n_inputs);
    p->n_input = p->input ? g->n_inputs : 0;
    p->output = put_vis(w, g->outputs, g->n_outputs);
    p->n_output = p->output ? g->n_outputs : 0;
    p->value_info = put_vis(w, g->value_info, g->n_value_info);
    p->n_value_info = p->value_info ? g->n_value_info : 0;
    if (g->n_quantization_annotation &&
        (p->quantization_annotation = aalloc(w, g->n_quantization_annotation * sizeof(void *)))) {
        p->n_quantization_annotation = g->n_quantization_annotation;
        for (size_t i = 0; i < g->n_quantization_annotation; i++)
            p->quantization_annotation[i] = (Onnx__TensorAnnotation *)put_blob(
                w, &onnx__tensor_annotation__descriptor, &g->quantization_annotation[i]);
    }
    put_unknown(w, &p->base, &g->unk);
    w->depth--;
    return p;
}

static Onnx__FunctionProto *put_function(wr *w, const opt_function *f)
{
    Onnx__FunctionProto *p = ANEW(w, Onnx__FunctionProto, ONNX__FUNCTION_PROTO__INIT);
    if (!p) return NULL;
    p->name = f->name;
    p->input = f->inputs;           p->n_input = f->n_inputs;
    p->output = f->outputs;         p->n_output = f->n_outputs;
    p->attribute = f->attributes;   p->n_attribute = f->n_attributes;
    if (f->n_nodes && (p->node = aalloc(w, f->n_nodes * sizeof(void *)))) {
        p->n_node = f->n_nodes;
        for (size_t i = 0; i < f->n_nodes; i++) p->node[i] = put_node(w, f->nodes[i]);
    }
    p->doc_string = f->doc_string;
    p->opset_import = put_opsets(w, f->opset_import, f->n_opset_import);
    p->n_opset_import = f->n_opset_import;
    p->domain = f->domain;
    put_unknown(w, &p->base, &f->unk);
    return p;
}

static Onnx__ModelProto *put_model(wr *w, const opt_model *m)
{
    Onnx__ModelProto *p = ANEW(w, Onnx__ModelProto, ONNX__MODEL_PROTO__INIT);
    if (!p) return NULL;
    p->has_ir_version = m->has_ir_version;
    p->ir_version = m->ir_version;
    p->opset_import = put_opsets(w, m->opset_import, m->n_opset_import);
    p->n_opset_import = m->n_opset_import;
    p->producer_name = m->producer_name;
    p->producer_version = m->producer_version;
    p->domain = m->domain;
    p->has_model_version = m->has_model_version;
    p->model_version = m->model_version;
    p->doc_string = m->doc_string;
    p->graph = m->graph ? put_graph(w, m->graph) : NULL;
    p->metadata_props = put_kvs(w, m->metadata_props, m->n_metadata_props);
    p->n_metadata_props = m->n_metadata_props;
    if (m->n_training_info && (p->training_info = aalloc(w, m->n_training_info * sizeof(void *)))) {
        p->n_training_info = m->n_training_info;
        for (size_t i = 0; i < m->n_training_info; i++)
            p->training_info[i] = (Onnx__TrainingInfoProto *)put_blob(
                w, &onnx__training_info_proto__descriptor, &m->training_info[i]);
    }
    if (m->n_functions && (p->functions = aalloc(w, m->n_functions * sizeof(void *)))) {
        p->n_functions = m->n_functions;
        for (size_t i = 0; i < m->n_functions; i++) p->functions[i] = put_function(w, m->functions[i]);
    }
    put_unknown(w, &p->base, &m->unk);
    return p;
}

/* ======================================================================================
 * structural checks after reading
 * ====================================================================================== */

static opt_status check_tensor_tree(const opt_tensor *t, const char *what, opt_error *err)
{
    if (!t) return OPT_OK;
    opt_status s = opt_tensor_check(t, err);
    if (s != OPT_OK && what && err) {
        char buf[sizeof err->msg];
        snprintf(buf, sizeof buf, "%s", err->msg);
        opt_error_set(err, s, "%s: %s", what, buf);
    }
    return s;
}

static opt_status check_graph(const opt_graph *g, int depth, opt_error *err)
{
    for (size_t i = 0; i < g->n_initializers; i++)
        OPT_TRY(check_tensor_tree(g->initializers[i], NULL, err));
    for (size_t i = 0; i < g->n_sparse_initializers; i++) {
        const opt_sparse_tensor *s = g->sparse_initializers[i];
        if (!s->values || !s->indices)
            return opt_error_set(err, OPT_ERR_INVALID, "sparse initializer #%zu lacks values or indices", i);
        OPT_TRY(check_tensor_tree(s->values, NULL, err));
        OPT_TRY(check_tensor_tree(s->indices, NULL, err));
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        for (size_t a = 0; a < n->n_attrs; a++) {
            const opt_attr *at = &n->attrs[a];
            char what[300];
            snprintf(what, sizeof what, "node '%s' (%s) attribute '%s'", n->name ? n->name : "",
                     n->op_type ? n->op_type : "", at->name ? at->name : "");
            OPT_TRY(check_tensor_tree(at->t, what, err));
            for (size_t k = 0; k < at->n_tensors; k++) OPT_TRY(check_tensor_tree(at->tensors[k], what, err));
            if (at->g) OPT_TRY(check_graph(at->g, depth + 1, err));
            for (size_t k = 0; k < at->n_graphs; k++) OPT_TRY(check_graph(at->graphs[k], depth + 1, err));
        }
    }
    return OPT_OK;
}

/* ======================================================================================
 * nesting limit on the wire
 * ====================================================================================== */

/* protobuf-c unpacks nested messages recursively with no depth limit, so a few hundred KB of
 * nested TypeProto.sequence_type (or Graph -> Node -> Attribute -> Graph) overflow the stack
 * before take_graph/take_type could count levels. This pre-pass walks the wire format with the
 * message descriptors and refuses nesting deeper than MAX_WIRE_DEPTH messages. It only reads
 * what it can: malformed bytes are left for protobuf-c to reject. Recursion is bounded by the
 * limit itself, and every byte is visited once. MAX_DEPTH graph-or-type levels need at most three
 * messages each (Graph -> Node -> Attribute -> Graph) plus a few at the top, so 256 refuses no
 * model that take_model would accept. */
#define MAX_WIRE_DEPTH 256

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* What the pre-pass found: WIRE_OK (malformed bytes included: protobuf-c rejects those),
 * WIRE_DEEP (nesting beyond the limit) or WIRE_FIELD0 (a tag with field number 0, which protobuf
 * forbids; protobuf-c accepts it in a non-minimal varint, keeps it as an unknown field and then
 * writes it in a form that it refuses to read back). */
enum { WIRE_OK, WIRE_DEEP, WIRE_FIELD0 };

static int wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
                          int depth)
{
    while (p < end) {
        uint64_t tag, v;
        if (!wire_varint(&p, end, &tag)) return WIRE_OK;
        if (tag >> 3 == 0) return WIRE_FIELD0;
        switch (tag & 7) {
        case 0:
            if (!wire_varint(&p, end, &v)) return WIRE_OK;
            break;
        case 1:
            if (end - p < 8) return WIRE_OK;
            p += 8;
            break;
        case 5:
            if (end - p < 4) return WIRE_OK;
            p += 4;
            break;
        case 2: {
            if (!wire_varint(&p, end, &v) || v > (uint64_t)(end - p)) return WIRE_OK;
            const ProtobufCFieldDescriptor *f =
                tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3))
                                       : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (depth + 1 > MAX_WIRE_DEPTH) return WIRE_DEEP;
                int r = wire_check(f->descriptor, p, p + v, depth + 1);
                if (r != WIRE_OK) return r;
            }
            p += v;
            break;
        }
        default:
            return WIRE_OK; /* groups or garbage: protobuf-c decides */
        }
    }
    return WIRE_OK;
}

/* ======================================================================================
 * public entry points
 * ====================================================================================== */

static opt_status parse_impl(const uint8_t *buf, size_t len, const char *dir, const char *what,
                             const opt_load_opts *opts, ProtobufCAllocator *alloc, opt_model **out,
                             opt_error *err)
{
    static const opt_load_opts defaults = {0};
    if (!opts) opts = &defaults;
    if (!what) what = "model";
    *out = NULL;
    if (len == 0) return opt_error_set(err, OPT_ERR_PARSE, "empty input: not an ONNX model");
    int wc = wire_check(&onnx__model_proto__descriptor, buf, buf + len, 1);
    if (wc == WIRE_DEEP)
        return opt_error_set(err, OPT_ERR_LIMIT,
                             "messages nested deeper than %d levels (subgraphs or types nested "
                             "too deep; refused)",
                             MAX_WIRE_DEPTH);
    if (wc == WIRE_FIELD0)
        return opt_error_set(err, OPT_ERR_PARSE,
                             "not a valid ONNX model (a protobuf field number 0; corrupt or not ONNX)");
    Onnx__ModelProto *p = onnx__model_proto__unpack(alloc, len, buf);
    if (!p)
        return opt_error_set(err, OPT_ERR_PARSE,
                             "not a valid ONNX model (protobuf parse failed; truncated or not ONNX)");
    rd r = {0};
    opt_model *m = take_model(&r, p);
    onnx__model_proto__free_unpacked(p, alloc);
    if (r.oom || !m) {
        opt_model_free(m);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory reading model");
    }
    if (r.too_deep) {
        opt_model_free(m);
        return opt_error_set(err, OPT_ERR_LIMIT, "subgraphs or types nested deeper than %d levels",
                             MAX_DEPTH);
    }
    opt_status s = OPT_OK;
    if (!m->graph) {
        /* A protobuf that parses as ModelProto but carries no graph is not a model. */
        s = opt_error_set(err, OPT_ERR_PARSE, "not an ONNX model: no graph");
        goto fail;
    }
    if (!m->has_ir_version || m->n_opset_import == 0) {
        s = opt_error_set(err, OPT_ERR_PARSE, "not an ONNX model: %s",
                          !m->has_ir_version ? "no ir_version" : "no opset_import");
        goto fail;
    }
    s = check_graph(m->graph, 0, err);
    if (s != OPT_OK) goto fail;
    if (!opts->skip_external) {
        s = opt_external_load(m, dir, err);
        if (s != OPT_OK) goto fail;
    }
    if (!opts->no_validate) {
        s = opt_model_validate(m, err);
        if (s != OPT_OK) goto fail;
    }
    *out = m;
    return OPT_OK;
fail:
    opt_model_free(m);
    return s;
}

opt_status opt_onnx_parse(const uint8_t *buf, size_t len, const char *dir, const char *what,
                          const opt_load_opts *opts, opt_model **out, opt_error *err)
{
    return parse_impl(buf, len, dir, what, opts, NULL, out, err);
}

/* An allocator that gives back, page by page, the part of a read-only file mapping protobuf-c
 * has already copied out of. protobuf-c parses fields in file order and copies each bytes field
 * right after allocating it, so when a block of 4 KiB or more is requested, the sources of the
 * earlier such blocks lie below the current position, and the mapping below the sum of their
 * sizes is done with (small allocations are not counted, so the estimate stays low). MADV_DONTNEED on a private read-only file mapping only drops pages (a later access would
 * read them again from the file), so a wrong guess costs time, never correctness. This keeps
 * loading near one copy of the weights instead of two. */
typedef struct release_alloc {
    const uint8_t *map;
    size_t len, released, page;
    uint64_t copied;
} release_alloc;

static void *release_alloc_fn(void *ud, size_t size)
{
    release_alloc *r = ud;
    if (size >= 1024) {
        uint64_t upto = r->copied < r->len ? r->copied : r->len;
        size_t lim = (size_t)upto & ~(r->page - 1);
        if (lim > r->released) {
            madvise((void *)(r->map + r->released), lim - r->released, MADV_DONTNEED);
            r->released = lim;
        }
        r->copied += size;
    }
    return malloc(size);
}

static void release_free_fn(void *ud, void *p)
{
    (void)ud;
    free(p);
}

opt_status opt_onnx__parse_mapped(const uint8_t *map, size_t len, const char *dir, const char *what,
                                  const opt_load_opts *opts, opt_model **out, opt_error *err);
opt_status opt_onnx__parse_mapped(const uint8_t *map, size_t len, const char *dir, const char *what,
                                  const opt_load_opts *opts, opt_model **out, opt_error *err)
{
    long pg = sysconf(_SC_PAGESIZE);
    release_alloc r = {.map = map, .len = len, .page = pg > 0 ? (size_t)pg : 4096};
    ProtobufCAllocator a = {release_alloc_fn, release_free_fn, &r};
    return parse_impl(map, len, dir, what, opts, &a, out, err);
}

/* A ProtobufCBuffer that appends into a growing malloc'd buffer. */
typedef struct membuf {
    ProtobufCBuffer base;
    uint8_t *data;
    size_t len, cap;
    bool oom;
} membuf;

static void membuf_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    membuf *m = (membuf *)b;
    if (m->oom) return;
    if (m->len + len > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->len + len) cap *= 2;
        uint8_t *p = realloc(m->data, cap);
        if (!p) {
            m->oom = true;
            return;
        }
        m->data = p;
        m->cap = cap;
    }
    memcpy(m->data + m->len, data, len);
    m->len += len;
}

/* Builds the protobuf-c view of m and packs it with packer(msg, ctx). */
static opt_status encode(const opt_model *m, wr *w, void (*packer)(const ProtobufCMessage *, void *),
                         void *ctx, opt_error *err)
{
    Onnx__ModelProto *p = put_model(w, m);
    opt_status s = OPT_OK;
    size_t size;
    if (w->oom || !p) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory writing model");
    else if ((size = protobuf_c_message_get_packed_size(&p->base)) > (size_t)INT32_MAX)
        /* Protobuf parsers (ONNX Runtime's, onnx's and ours) refuse messages of 2 GiB or more;
         * writing one would produce a file nothing can read. The hook has already moved what it
         * will to external data, so what remains inline is too big. */
        s = opt_error_set(err, OPT_ERR_LIMIT,
                          "the model would be %zu bytes, over protobuf's 2 GiB limit: keep large "
                          "tensors in external data (mopt cat --external-data -o FILE)",
                          size);
    else packer(&p->base, ctx);
    blobs_free();
    arena_free(w);
    return s;
}

static void pack_to_membuf(const ProtobufCMessage *msg, void *ctx)
{
    membuf *mb = ctx;
    size_t need = protobuf_c_message_get_packed_size(msg);
    mb->data = malloc(need ? need : 1);
    if (!mb->data) {
        mb->oom = true;
        return;
    }
    mb->cap = need;
    mb->len = protobuf_c_message_pack(msg, mb->data);
}

opt_status opt_onnx_serialize(const opt_model *m, uint8_t **buf, size_t *len, opt_error *err)
{
    wr w = {.inline_external = true};
    membuf mb = {.base = {membuf_append}};
    OPT_TRY(encode(m, &w, pack_to_membuf, &mb, err));
    if (mb.oom) {
        free(mb.data);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory writing model");
    }
    *buf = mb.data;
    *len = mb.len;
    return OPT_OK;
}

/* Exposed to formats/save.c: pack with an external-data hook, streaming to a ProtobufCBuffer. */
typedef bool (*opt_ext_hook_fn)(void *ctx, const opt_tensor *t, void ***kvs, size_t *n);

struct stream_ctx {
    ProtobufCBuffer *out;
};

static void pack_to_stream(const ProtobufCMessage *msg, void *ctx)
{
    struct stream_ctx *c = ctx;
    protobuf_c_message_pack_to_buffer(msg, c->out);
}

opt_status opt_onnx__encode_stream(const opt_model *m, ProtobufCBuffer *out, opt_ext_hook_fn hook,
                                   void *hook_ctx, opt_error *err);
opt_status opt_onnx__encode_stream(const opt_model *m, ProtobufCBuffer *out, opt_ext_hook_fn hook,
                                   void *hook_ctx, opt_error *err)
{
    wr w = {.inline_external = true};
    w.ext_hook = (bool (*)(void *, const opt_tensor *, Onnx__StringStringEntryProto ***, size_t *))hook;
    w.ext_ctx = hook_ctx;
    struct stream_ctx c = {out};
    return encode(m, &w, pack_to_stream, &c, err);
}

/* Builds StringStringEntryProto entries for external data in the writer's arena-free form:
 * used by save.c through the hook, allocated with malloc and tracked by the caller. */
void *opt_onnx__make_kv(const char *key, const char *value);
void *opt_onnx__make_kv(const char *key, const char *value)
{
    Onnx__StringStringEntryProto *kv = malloc(sizeof *kv);
    if (!kv) return NULL;
    *kv = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
    kv->key = (char *)key;
    kv->value = (char *)value;
    return kv;
}
