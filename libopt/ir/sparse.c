/* sparse.c — ONNX SparseTensorProto <-> dense TensorProto.
 *
 * A sparse tensor (ONNX IR, "Sparse tensors") stores the non-default values in `values` (1-D,
 * [NNZ]) and their positions in `indices` (INT64, either [NNZ] linearized row-major positions or
 * [NNZ, rank] coordinates), with the dense shape in `dims`; every other element is zero. The
 * indices must be in strictly increasing row-major order (the ONNX checker's rule), which also
 * rules out duplicates. mopt writes the linearized form. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

static const char *sp_name(const opt_sparse_tensor *s)
{
    return s && s->values && s->values->name ? s->values->name : "?";
}

/* Element i of v as bytes of width esize, for tensors whose storage is not native raw layout
 * (small types kept in int32_data): every such value is exact as a double. */
static void put_elem(uint8_t *dst, int dt, double v)
{
    switch (dt) {
    case OPT_DT_FLOAT: { float f = (float)v; memcpy(dst, &f, 4); break; }
    case OPT_DT_DOUBLE: memcpy(dst, &v, 8); break;
    case OPT_DT_FLOAT16: { uint16_t h = opt_f32_to_f16((float)v); memcpy(dst, &h, 2); break; }
    case OPT_DT_BFLOAT16: { uint16_t h = opt_f32_to_bf16((float)v); memcpy(dst, &h, 2); break; }
    case OPT_DT_INT8: case OPT_DT_UINT8: case OPT_DT_BOOL: { uint8_t b = (uint8_t)(int64_t)v; *dst = b; break; }
    case OPT_DT_INT16: case OPT_DT_UINT16: { uint16_t h = (uint16_t)(int64_t)v; memcpy(dst, &h, 2); break; }
    case OPT_DT_INT32: case OPT_DT_UINT32: { uint32_t w = (uint32_t)(int64_t)v; memcpy(dst, &w, 4); break; }
    default: { int64_t q = (int64_t)v; memcpy(dst, &q, 8); break; }
    }
}

opt_status opt_sparse_to_dense(const opt_sparse_tensor *s, opt_tensor **out, opt_error *err)
{
    *out = NULL;
    const opt_tensor *v = s->values, *ix = s->indices;
    const char *nm = sp_name(s);
    if (!v || !ix)
        return opt_error_set(err, OPT_ERR_INVALID, "sparse tensor '%s': values or indices missing", nm);
    int dt = v->data_type;
    int bits = opt_dtype_bits(dt);
    if (bits < 8 || bits % 8)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "sparse tensor '%s': values of type %s",
                             nm, opt_dtype_name(dt));
    size_t esize = (size_t)bits / 8;
    OPT_TRY(opt_tensor_check(v, err));
    OPT_TRY(opt_tensor_check(ix, err));
    if (opt_tensor_is_external(v) || opt_tensor_is_external(ix))
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "sparse tensor '%s': external data", nm);

    uint64_t numel = 1;
    for (size_t d = 0; d < s->n_dims; d++) {
        if (s->dims[d] < 0 || (s->dims[d] && numel > UINT64_MAX / (uint64_t)s->dims[d]))
            return opt_error_set(err, OPT_ERR_INVALID, "sparse tensor '%s': bad dims", nm);
        numel *= (uint64_t)s->dims[d];
    }
    uint64_t nnz;
    if (v->n_dims != 1 || !opt_tensor_numel(v, &nnz))
        return opt_error_set(err, OPT_ERR_INVALID, "sparse tensor '%s': values must be 1-D", nm);
    if (ix->data_type != OPT_DT_INT64)
        return opt_error_set(err, OPT_ERR_INVALID, "sparse tensor '%s': indices must be INT64", nm);
    bool coords = ix->n_dims == 2;
    if (!(ix->n_dims == 1 || coords) || ix->dims[0] != (int64_t)nnz ||
        (coords && ix->dims[1] != (int64_t)s->n_dims))
        return opt_error_set(err, OPT_ERR_INVALID,
                             "sparse tensor '%s': indices must be [NNZ] or [NNZ, rank] with NNZ %llu",
                             nm, (unsigned long long)nnz);
    if (nnz > numel)
        return opt_error_set(err, OPT_ERR_INVALID, "sparse tensor '%s': more values than elements", nm);
    uint64_t bytes;
    if (!opt_dtype_raw_bytes(dt, numel, &bytes) || bytes > (uint64_t)SIZE_MAX)
        return opt_error_set(err, OPT_ERR_LIMIT, "sparse tensor '%s': too large", nm);

    size_t vlen = 0, ilen = 0;
    const uint8_t *vdata = opt_tensor_data(v, &vlen);
    if (vdata && vlen < nnz * esize) vdata = NULL;
    const int64_t *idata = opt_tensor_data(ix, &ilen);
    int64_t *icopy = NULL;
    if (!idata || ilen < nnz * (coords ? s->n_dims : 1) * 8) {
        /* Not native layout: read element by element. */
        uint64_t n = nnz * (coords ? s->n_dims : 1);
        icopy = malloc((size_t)(n ? n : 1) * sizeof *icopy);
        if (!icopy) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        for (uint64_t i = 0; i < n; i++) icopy[i] = (int64_t)opt_tensor_get(ix, i);
        idata = icopy;
    }

    opt_tensor *t = opt_tensor_new();
    uint8_t *dense = calloc((size_t)(bytes ? bytes : 1), 1);
    opt_status st = OPT_OK;
    if (t && v->name) t->name = opt_strdup(v->name);
    if (!t || !dense || (v->name && !t->name)) {
        st = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    uint64_t prev = 0;
    for (uint64_t i = 0; i < nnz; i++) {
        uint64_t pos = 0;
        if (coords) {
            for (size_t d = 0; d < s->n_dims; d++) {
                int64_t c = idata[i * s->n_dims + d];
                if (c < 0 || c >= s->dims[d]) { pos = UINT64_MAX; break; }
                pos = pos * (uint64_t)s->dims[d] + (uint64_t)c;
            }
        } else {
            int64_t c = idata[i];
            pos = c < 0 ? UINT64_MAX : (uint64_t)c;
        }
        if (pos >= numel) {
            st = opt_error_set(err, OPT_ERR_INVALID, "sparse tensor '%s': index %llu out of range",
                               nm, (unsigned long long)i);
            goto fail;
        }
        if (i > 0 && pos <= prev) {
            st = opt_error_set(err, OPT_ERR_INVALID,
                               "sparse tensor '%s': indices not in increasing order at %llu",
                               nm, (unsigned long long)i);
            goto fail;
        }
        prev = pos;
        if (vdata) memcpy(dense + pos * esize, vdata + i * esize, esize);
        else put_elem(dense + pos * esize, dt, opt_tensor_get(v, i));
    }
    if ((st = opt_tensor_set_dims(t, s->dims, s->n_dims, err))) goto fail;
    t->has_data_type = true;
    t->data_type = dt;
    t->has_raw_data = true;
    t->raw_data.data = dense;
    t->raw_data.len = (size_t)bytes;
    dense = NULL;
    free(icopy);
    *out = t;
    return OPT_OK;
fail:
    free(icopy);
    free(dense);
    opt_tensor_free(t);
    return st;
}

opt_status opt_sparse_from_dense(const opt_tensor *t, opt_sparse_tensor **out, opt_error *err)
{
    *out = NULL;
    const char *nm = t->name ? t->name : "?";
    int dt = t->data_type, bits = opt_dtype_bits(dt);
    if (bits < 8 || bits % 8)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "tensor '%s': cannot store %s as sparse",
                             nm, opt_dtype_name(dt));
    size_t esize = (size_t)bits / 8, len = 0;
    uint64_t numel;
    if (!opt_tensor_numel(t, &numel))
        return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': bad dims", nm);
    const uint8_t *data = opt_tensor_data(t, &len);
    if (!data || len < numel * esize)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "tensor '%s': data not in raw layout", nm);
    static const uint8_t zero[16];
    uint64_t nnz = 0;
    for (uint64_t i = 0; i < numel; i++) nnz += memcmp(data + i * esize, zero, esize) != 0;

    opt_sparse_tensor *s = calloc(1, sizeof *s);
    uint8_t *vals = malloc((size_t)(nnz ? nnz : 1) * esize);
    int64_t *idx = malloc((size_t)(nnz ? nnz : 1) * sizeof *idx);
    opt_status st = OPT_OK;
    if (!s || !vals || !idx || !(s->values = opt_tensor_new()) || !(s->indices = opt_tensor_new()) ||
        (t->name && !(s->values->name = opt_strdup(t->name)))) {
        st = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    uint64_t k = 0;
    for (uint64_t i = 0; i < numel; i++)
        if (memcmp(data + i * esize, zero, esize) != 0) {
            memcpy(vals + k * esize, data + i * esize, esize);
            idx[k++] = (int64_t)i;
        }
    int64_t d1 = (int64_t)nnz;
    if ((st = opt_tensor_set_dims(s->values, &d1, 1, err)) ||
        (st = opt_tensor_set_dims(s->indices, &d1, 1, err)) ||
        (st = opt_tensor_set_raw(s->values, dt, vals, (size_t)nnz * esize, err)) ||
        (st = opt_tensor_set_raw(s->indices, OPT_DT_INT64, idx, (size_t)nnz * sizeof *idx, err)))
        goto fail;
    if (t->n_dims) {
        if (!(s->dims = malloc(t->n_dims * sizeof *s->dims))) {
            st = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(s->dims, t->dims, t->n_dims * sizeof *s->dims);
        s->n_dims = t->n_dims;
    }
    free(vals);
    free(idx);
    *out = s;
    return OPT_OK;
fail:
    free(vals);
    free(idx);
    if (s) opt_sparse_tensor_free(s);
    return st;
}

opt_status opt_graph_densify(opt_graph *g, opt_error *err)
{
    while (g->n_sparse_initializers) {
        size_t last = g->n_sparse_initializers - 1;
        opt_sparse_tensor *s = g->sparse_initializers[last];
        opt_tensor *t;
        OPT_TRY(opt_sparse_to_dense(s, &t, err));
        if (t->name && opt_graph_initializer(g, t->name)) {
            opt_tensor_free(t);
            return opt_error_set(err, OPT_ERR_INVALID,
                                 "sparse initializer '%s' has the name of a dense initializer",
                                 sp_name(s));
        }
        opt_status st = opt_graph_add_initializer(g, t, err);
        if (st) { opt_tensor_free(t); return st; }
        opt_sparse_tensor_free(s);
        g->n_sparse_initializers = last;
    }
    free(g->sparse_initializers);
    g->sparse_initializers = NULL;
    return OPT_OK;
}

opt_status opt_graph_sparsify(opt_graph *g, const char *name, size_t *saved, opt_error *err)
{
    if (saved) *saved = 0;
    opt_tensor *t = opt_graph_initializer(g, name);
    if (!t) return opt_error_set(err, OPT_ERR_INVALID, "no initializer '%s'", name);
    opt_sparse_tensor *s;
    OPT_TRY(opt_sparse_from_dense(t, &s, err));
    size_t dense_bytes = t->raw_data.len, len = 0;
    if (!t->has_raw_data) opt_tensor_data(t, &len), dense_bytes = len;
    size_t sparse_bytes = s->values->raw_data.len + s->indices->raw_data.len;
    if (sparse_bytes >= dense_bytes) { opt_sparse_tensor_free(s); return OPT_OK; }
    opt_sparse_tensor **a = realloc(g->sparse_initializers,
                                    (g->n_sparse_initializers + 1) * sizeof *a);
    if (!a) { opt_sparse_tensor_free(s); return opt_error_set(err, OPT_ERR_NOMEM, "out of memory"); }
    g->sparse_initializers = a;
    a[g->n_sparse_initializers++] = s;
    opt_graph_remove_initializer(g, name);
    if (saved) *saved = dense_bytes - sparse_bytes;
    return OPT_OK;
}
