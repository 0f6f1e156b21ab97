/*
 * libopt/exec/array.c — opt_array basics, tensor -> array conversion and the error helpers that
 * name nodes.
 */
#include "libopt/exec/kernel.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t opt_array_numel(const opt_array *a)
{
    uint64_t n = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->dims[i] <= 0) return 0;
        n *= (uint64_t)a->dims[i];
    }
    return n;
}

bool opt_array_alloc(opt_array *a)
{
    uint64_t n = 1, bytes;
    if (a->ndim < 0 || a->ndim > OPT_MAX_DIMS) return false;
    for (int i = 0; i < a->ndim; i++) {
        if (a->dims[i] < 0) return false;
        uint64_t d = (uint64_t)a->dims[i];
        if (d && n > UINT64_MAX / d) return false;
        n *= d;
    }
    if (!opt_dtype_raw_bytes(a->dtype, n, &bytes) || bytes > SIZE_MAX / 2) return false;
    a->data = calloc(1, bytes ? (size_t)bytes : 1);
    a->nbytes = (size_t)bytes;
    return a->data != NULL;
}

void opt_array_free(opt_array *a)
{
    if (!a) return;
    free(a->data);
    a->data = NULL;
    a->nbytes = 0;
}

/* Checks t and fills a's dtype and dims (no data). */
static opt_status array_head(const opt_tensor *t, opt_array *a, opt_error *err)
{
    const char *nm = t->name ? t->name : "";
    memset(a, 0, sizeof *a);
    OPT_TRY(opt_tensor_check(t, err));
    if (opt_tensor_is_external(t) && !t->has_raw_data)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "tensor '%s': external data not loaded", nm);
    if (t->n_dims > OPT_MAX_DIMS)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "tensor '%s': %zu dims (at most %d)", nm,
                             t->n_dims, OPT_MAX_DIMS);
    int dt = t->data_type;
    if (dt == OPT_DT_STRING || dt == OPT_DT_COMPLEX64 || dt == OPT_DT_COMPLEX128 || !opt_dtype_valid(dt))
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "tensor '%s': dtype %s is not supported", nm,
                             opt_dtype_name(dt));
    a->dtype = dt;
    a->ndim = (int)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) a->dims[i] = t->dims[i];
    return OPT_OK;
}

opt_status opt_array_view_tensor(const opt_tensor *t, opt_array *a, bool *borrowed, opt_error *err)
{
    *borrowed = false;
    OPT_TRY(array_head(t, a, err));
    uint64_t n = opt_array_numel(a), bytes;
    size_t len = 0;
    const void *p = opt_tensor_data(t, &len);
    /* raw_data, or a typed field of the dtype's own width; 16-byte aligned (libc's malloc, which
     * protobuf-c's unpacking uses) so that every kernel may read it as its element type. */
    if (p && len && opt_dtype_raw_bytes(a->dtype, n, &bytes) && bytes == len && (uintptr_t)p % 16 == 0) {
        a->data = (void *)p;
        a->nbytes = len;
        *borrowed = true;
        return OPT_OK;
    }
    return opt_array_from_tensor(t, a, err);
}

opt_status opt_array_from_tensor(const opt_tensor *t, opt_array *a, opt_error *err)
{
    const char *nm = t->name ? t->name : "";
    OPT_TRY(array_head(t, a, err));
    int dt = a->dtype;
    if (!opt_array_alloc(a))
        return opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory", nm);
    uint64_t n = 0;
    opt_tensor_numel(t, &n);
    size_t len = 0;
    const void *p = opt_tensor_data(t, &len);
    if (p) {
        if (len != a->nbytes) {
            opt_array_free(a);
            return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': data size mismatch", nm);
        }
        if (len) memcpy(a->data, p, len);
        return OPT_OK;
    }
    /* Typed fields whose layout differs from raw_data: narrow ints, bool, 16-bit floats carried
     * one per int32; uint32 in uint64_data; 4-bit types packed two per int32 entry. */
    int bits = opt_dtype_bits(dt);
    uint8_t *d = a->data;
    for (uint64_t i = 0; i < n; i++) {
        if (bits == 4) {
            uint32_t v = ((uint32_t)t->int32_data[i / 2] >> (4 * (i & 1))) & 15u;
            d[i / 2] |= (uint8_t)(v << (4 * (i & 1)));
        } else if (dt == OPT_DT_UINT32) {
            ((uint32_t *)d)[i] = (uint32_t)t->uint64_data[i];
        } else if (bits == 8) {
            d[i] = (uint8_t)t->int32_data[i];
        } else if (bits == 16) {
            ((uint16_t *)d)[i] = (uint16_t)t->int32_data[i];
        } else {
            opt_array_free(a);
            return opt_error_set(err, OPT_ERR_UNSUPPORTED, "tensor '%s': unexpected storage", nm);
        }
    }
    return OPT_OK;
}

int64_t opt_array_int(const opt_array *a, uint64_t i)
{
    switch (a->dtype) {
    case OPT_DT_INT64: return ((const int64_t *)a->data)[i];
    case OPT_DT_INT32: return ((const int32_t *)a->data)[i];
    default: {
        double v = opt_array_get(a, i);
        return v != v ? 0 : v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v;
    }
    }
}

double opt_array_get(const opt_array *a, uint64_t i)
{
    const void *p = a->data;
    switch (a->dtype) {
    case OPT_DT_FLOAT: return ((const float *)p)[i];
    case OPT_DT_DOUBLE: return ((const double *)p)[i];
    case OPT_DT_FLOAT16: return opt_f16_to_f32(((const uint16_t *)p)[i]);
    case OPT_DT_BFLOAT16: return opt_bf16_to_f32(((const uint16_t *)p)[i]);
    case OPT_DT_INT8: return ((const int8_t *)p)[i];
    case OPT_DT_UINT8: return ((const uint8_t *)p)[i];
    case OPT_DT_BOOL: return ((const uint8_t *)p)[i] != 0;
    case OPT_DT_INT16: return ((const int16_t *)p)[i];
    case OPT_DT_UINT16: return ((const uint16_t *)p)[i];
    case OPT_DT_INT32: return ((const int32_t *)p)[i];
    case OPT_DT_UINT32: return ((const uint32_t *)p)[i];
    case OPT_DT_INT64: return (double)((const int64_t *)p)[i];
    case OPT_DT_UINT64: return (double)((const uint64_t *)p)[i];
    case OPT_DT_FLOAT8E4M3FN: case OPT_DT_FLOAT8E4M3FNUZ: case OPT_DT_FLOAT8E5M2:
    case OPT_DT_FLOAT8E5M2FNUZ:
        return opt_f8_to_f32(((const uint8_t *)p)[i], a->dtype);
    case OPT_DT_UINT4: return (((const uint8_t *)p)[i / 2] >> (4 * (i & 1))) & 15;
    case OPT_DT_INT4: {
        int v = (((const uint8_t *)p)[i / 2] >> (4 * (i & 1))) & 15;
        return v >= 8 ? v - 16 : v;
    }
    default: return NAN;
    }
}

const char *opt_kattr_str(const opt_node *n, const char *name, const char *def, char *buf, size_t len)
{
    const opt_attr *a = opt_node_attr(n, name);
    if (!a || !a->has_s || !len) return def;
    size_t m = a->s.len < len - 1 ? a->s.len : len - 1;
    if (m) memcpy(buf, a->s.data, m);
    buf[m] = 0;
    return buf;
}

static opt_status vnode_err(const opt_node *n, opt_error *err, opt_status s, const char *fmt,
                            va_list ap)
{
    if (!err) return s;
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return opt_error_set(err, s, "node '%s' (%s): %s", n && n->name ? n->name : "",
                         n && n->op_type ? n->op_type : "?", msg);
}

opt_status opt_node_err(const opt_node *n, opt_error *err, opt_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s = vnode_err(n, err, s, fmt, ap);
    va_end(ap);
    return s;
}

opt_status opt_kerr(const opt_kctx *k, opt_error *err, opt_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s = vnode_err(k ? k->node : NULL, err, s, fmt, ap);
    va_end(ap);
    return s;
}
