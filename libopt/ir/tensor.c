/*
 * libopt/ir/tensor.c — typed access to tensor data, whatever field the file stored it in.
 *
 * ONNX stores tensor data either as little-endian raw_data or in a typed repeated field whose
 * choice depends on the dtype (int32_data also carries int8/int16/uint8/uint16/bool/float16/
 * bfloat16/float8 values, one per element). These functions hide that so passes can read and
 * write float32.
 */
#include "ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool opt_tensor_numel(const opt_tensor *t, uint64_t *n)
{
    uint64_t k = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0) return false;
        uint64_t d = (uint64_t)t->dims[i];
        if (d != 0 && k > UINT64_MAX / d) return false;
        k *= d;
    }
    *n = k;
    return true;
}

bool opt_tensor_is_external(const opt_tensor *t)
{
    return t->has_data_location && t->data_location == 1;
}

/* The typed field that holds dtype's values when raw_data is not used, and its count. */
static size_t typed_count(const opt_tensor *t, int dtype)
{
    switch (dtype) {
    case OPT_DT_FLOAT: return t->n_float_data;
    case OPT_DT_COMPLEX64: return t->n_float_data / 2;
    case OPT_DT_DOUBLE: return t->n_double_data;
    case OPT_DT_COMPLEX128: return t->n_double_data / 2;
    case OPT_DT_INT64: return t->n_int64_data;
    case OPT_DT_UINT32: case OPT_DT_UINT64: return t->n_uint64_data;
    case OPT_DT_STRING: return t->n_string_data;
    case OPT_DT_UINT4: case OPT_DT_INT4: case OPT_DT_FLOAT4E2M1:
        return t->n_int32_data * 2; /* two 4-bit values packed per int32 entry */
    default: return t->n_int32_data;
    }
}

opt_status opt_tensor_check(const opt_tensor *t, opt_error *err)
{
    const char *nm = t->name ? t->name : "";
    uint64_t n;
    if (!opt_tensor_numel(t, &n))
        return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': negative or overflowing dims", nm);
    if (n > (UINT64_C(1) << 40))
        return opt_error_set(err, OPT_ERR_LIMIT,
                             "tensor '%s': %llu elements is more than mopt supports", nm,
                             (unsigned long long)n);
    int dt = t->data_type;
    if (!opt_dtype_valid(dt))
        return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': unknown data type %d", nm, dt);
    /* External data is checked when it is read; bytes already in raw_data (read from the side
     * file, or carried in the model next to data_location EXTERNAL) must fit the shape. */
    if (opt_tensor_is_external(t) && !t->has_raw_data) return OPT_OK;
    if (t->has_raw_data) {
        uint64_t want;
        if (dt == OPT_DT_STRING)
            return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': string tensor with raw_data", nm);
        if (!opt_dtype_raw_bytes(dt, n, &want) || want != t->raw_data.len)
            return opt_error_set(err, OPT_ERR_INVALID,
                                 "tensor '%s': raw_data has %zu bytes, shape and %s need %llu", nm,
                                 t->raw_data.len, opt_dtype_name(dt), (unsigned long long)want);
        return OPT_OK;
    }
    size_t have = typed_count(t, dt);
    if (dt == OPT_DT_UINT4 || dt == OPT_DT_INT4 || dt == OPT_DT_FLOAT4E2M1) {
        if (have != n + (n & 1))
            goto mismatch;
        return OPT_OK;
    }
    if (have == n) return OPT_OK;
    /* A tensor with no data at all is allowed only when it has no elements. */
mismatch:
    return opt_error_set(err, OPT_ERR_INVALID,
                         "tensor '%s': holds %zu values, shape needs %llu", nm, have,
                         (unsigned long long)n);
}

static int8_t sext4(unsigned v) { return (int8_t)((v & 8u) ? (int)v - 16 : (int)v); }

static double from_f4(unsigned v)
{
    static const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    return (v & 8u) ? -mag[v & 7u] : mag[v & 7u];
}

/* Reads element i from little-endian raw bytes of dtype. */
static double raw_get(const uint8_t *p, int dt, uint64_t i)
{
    switch (dt) {
    case OPT_DT_FLOAT: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case OPT_DT_DOUBLE: { double v; memcpy(&v, p + 8 * i, 8); return v; }
    case OPT_DT_UINT8: return p[i];
    case OPT_DT_INT8: return (int8_t)p[i];
    case OPT_DT_BOOL: return p[i] != 0;
    case OPT_DT_UINT16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case OPT_DT_INT16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case OPT_DT_INT32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case OPT_DT_UINT32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case OPT_DT_INT64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case OPT_DT_UINT64: { uint64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case OPT_DT_FLOAT16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return opt_f16_to_f32(v); }
    case OPT_DT_BFLOAT16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return opt_bf16_to_f32(v); }
    case OPT_DT_FLOAT8E4M3FN: case OPT_DT_FLOAT8E4M3FNUZ:
    case OPT_DT_FLOAT8E5M2: case OPT_DT_FLOAT8E5M2FNUZ: return opt_f8_to_f32(p[i], dt);
    case OPT_DT_UINT4: return (p[i / 2] >> (4 * (i & 1))) & 15u;
    case OPT_DT_INT4: return sext4((p[i / 2] >> (4 * (i & 1))) & 15u);
    case OPT_DT_FLOAT4E2M1: return from_f4((p[i / 2] >> (4 * (i & 1))) & 15u);
    default: return NAN;
    }
}

double opt_tensor_get(const opt_tensor *t, uint64_t i)
{
    int dt = t->data_type;
    if (t->has_raw_data) return raw_get(t->raw_data.data, dt, i);
    switch (dt) {
    case OPT_DT_FLOAT: return t->float_data[i];
    case OPT_DT_DOUBLE: return t->double_data[i];
    case OPT_DT_INT64: return (double)t->int64_data[i];
    case OPT_DT_UINT32: case OPT_DT_UINT64: return (double)t->uint64_data[i];
    case OPT_DT_FLOAT16: return opt_f16_to_f32((uint16_t)t->int32_data[i]);
    case OPT_DT_BFLOAT16: return opt_bf16_to_f32((uint16_t)t->int32_data[i]);
    case OPT_DT_FLOAT8E4M3FN: case OPT_DT_FLOAT8E4M3FNUZ:
    case OPT_DT_FLOAT8E5M2: case OPT_DT_FLOAT8E5M2FNUZ:
        return opt_f8_to_f32((uint8_t)t->int32_data[i], dt);
    case OPT_DT_UINT4: return ((uint32_t)t->int32_data[i / 2] >> (4 * (i & 1))) & 15u;
    case OPT_DT_INT4: return sext4(((uint32_t)t->int32_data[i / 2] >> (4 * (i & 1))) & 15u);
    case OPT_DT_FLOAT4E2M1: return from_f4(((uint32_t)t->int32_data[i / 2] >> (4 * (i & 1))) & 15u);
    case OPT_DT_BOOL: return t->int32_data[i] != 0;
    case OPT_DT_UINT8: return (uint8_t)t->int32_data[i];
    case OPT_DT_INT8: return (int8_t)t->int32_data[i];
    case OPT_DT_UINT16: return (uint16_t)t->int32_data[i];
    case OPT_DT_INT16: return (int16_t)t->int32_data[i];
    case OPT_DT_INT32: return t->int32_data[i];
    default: return NAN;
    }
}

opt_status opt_tensor_to_f32(const opt_tensor *t, float *out, opt_error *err)
{
    const char *nm = t->name ? t->name : "";
    int dt = t->data_type;
    if (dt == OPT_DT_STRING || dt == OPT_DT_COMPLEX64 || dt == OPT_DT_COMPLEX128 ||
        !opt_dtype_valid(dt))
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "tensor '%s': %s has no float value", nm,
                             opt_dtype_name(dt));
    if (opt_tensor_is_external(t) && !t->has_raw_data)
        return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': external data not loaded", nm);
    OPT_TRY(opt_tensor_check(t, err));
    uint64_t n;
    opt_tensor_numel(t, &n);
    if (dt == OPT_DT_FLOAT) {
        size_t len;
        const void *p = opt_tensor_data(t, &len);
        if (p && n) memcpy(out, p, n * 4);
        return OPT_OK;
    }
    for (uint64_t i = 0; i < n; i++) out[i] = (float)opt_tensor_get(t, i);
    return OPT_OK;
}

opt_status opt_tensor_to_f32_alloc(const opt_tensor *t, float **out, uint64_t *n, opt_error *err)
{
    uint64_t k;
    if (!opt_tensor_numel(t, &k) || k > SIZE_MAX / 4)
        return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': bad dims",
                             t->name ? t->name : "");
    float *buf = malloc(k ? k * 4 : 1);
    if (!buf) return opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    opt_status s = opt_tensor_to_f32(t, buf, err);
    if (s != OPT_OK) {
        free(buf);
        return s;
    }
    *out = buf;
    *n = k;
    return OPT_OK;
}

static void clear_data(opt_tensor *t)
{
    free(t->raw_data.data);
    t->raw_data.data = NULL;
    t->raw_data.len = 0;
    t->has_raw_data = false;
    free(t->float_data); t->float_data = NULL; t->n_float_data = 0;
    free(t->int32_data); t->int32_data = NULL; t->n_int32_data = 0;
    free(t->int64_data); t->int64_data = NULL; t->n_int64_data = 0;
    free(t->double_data); t->double_data = NULL; t->n_double_data = 0;
    free(t->uint64_data); t->uint64_data = NULL; t->n_uint64_data = 0;
    for (size_t i = 0; i < t->n_string_data; i++) free(t->string_data[i].data);
    free(t->string_data); t->string_data = NULL; t->n_string_data = 0;
    for (size_t i = 0; i < t->n_external_data; i++) opt_kv_clear(&t->external_data[i]);
    free(t->external_data); t->external_data = NULL; t->n_external_data = 0;
    t->has_data_location = false;
    t->data_location = 0;
}

static int64_t sat_round(float v, double lo, double hi)
{
    if (isnan(v)) return 0;
    double r = nearbyint((double)v);
    if (r < lo) r = lo;
    if (r > hi) r = hi;
    /* 2^63 itself is not an int64: the int64 bounds are passed as +-2^63 and end here. */
    if (r >= 9223372036854775808.0) return INT64_MAX;
    return (int64_t)r;
}

/* uint64 needs its own: its range does not fit sat_round's int64 result. */
static uint64_t sat_round_u64(float v)
{
    if (isnan(v) || v <= 0) return 0;
    double r = nearbyint((double)v);
    return r >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)r;
}

opt_status opt_tensor_set_f32(opt_tensor *t, int dt, const float *src, uint64_t n, opt_error *err)
{
    uint64_t bytes;
    if (!opt_dtype_raw_bytes(dt, n, &bytes) || dt == OPT_DT_COMPLEX64 || dt == OPT_DT_COMPLEX128 ||
        bytes > SIZE_MAX)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "tensor '%s': cannot store float as %s",
                             t->name ? t->name : "", opt_dtype_name(dt));
    uint8_t *p = calloc(1, bytes ? bytes : 1);
    if (!p) return opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    for (uint64_t i = 0; i < n; i++) {
        float v = src[i];
        switch (dt) {
        case OPT_DT_FLOAT: memcpy(p + 4 * i, &v, 4); break;
        case OPT_DT_DOUBLE: { double d = v; memcpy(p + 8 * i, &d, 8); break; }
        case OPT_DT_FLOAT16: { uint16_t h = opt_f32_to_f16(v); memcpy(p + 2 * i, &h, 2); break; }
        case OPT_DT_BFLOAT16: { uint16_t h = opt_f32_to_bf16(v); memcpy(p + 2 * i, &h, 2); break; }
        case OPT_DT_FLOAT8E4M3FN: case OPT_DT_FLOAT8E4M3FNUZ:
        case OPT_DT_FLOAT8E5M2: case OPT_DT_FLOAT8E5M2FNUZ: p[i] = opt_f32_to_f8(v, dt, true); break;
        case OPT_DT_UINT8: p[i] = (uint8_t)sat_round(v, 0, 255); break;
        case OPT_DT_INT8: p[i] = (uint8_t)(int8_t)sat_round(v, -128, 127); break;
        case OPT_DT_BOOL: p[i] = v != 0.0f; break;
        case OPT_DT_UINT16: { uint16_t x = (uint16_t)sat_round(v, 0, 65535); memcpy(p + 2 * i, &x, 2); break; }
        case OPT_DT_INT16: { int16_t x = (int16_t)sat_round(v, -32768, 32767); memcpy(p + 2 * i, &x, 2); break; }
        case OPT_DT_INT32: { int32_t x = (int32_t)sat_round(v, -2147483648.0, 2147483647.0); memcpy(p + 4 * i, &x, 4); break; }
        case OPT_DT_UINT32: { uint32_t x = (uint32_t)sat_round(v, 0, 4294967295.0); memcpy(p + 4 * i, &x, 4); break; }
        case OPT_DT_INT64: { int64_t x = sat_round(v, -9223372036854775808.0, 9223372036854775808.0); memcpy(p + 8 * i, &x, 8); break; }
        case OPT_DT_UINT64: { uint64_t x = sat_round_u64(v); memcpy(p + 8 * i, &x, 8); break; }
        case OPT_DT_UINT4: p[i / 2] |= (uint8_t)((sat_round(v, 0, 15) & 15) << (4 * (i & 1))); break;
        case OPT_DT_INT4: p[i / 2] |= (uint8_t)((sat_round(v, -8, 7) & 15) << (4 * (i & 1))); break;
        default:
            free(p);
            return opt_error_set(err, OPT_ERR_UNSUPPORTED, "tensor '%s': cannot store float as %s",
                                 t->name ? t->name : "", opt_dtype_name(dt));
        }
    }
    clear_data(t);
    t->has_data_type = true;
    t->data_type = dt;
    t->has_raw_data = true;
    t->raw_data.data = p;
    t->raw_data.len = (size_t)bytes;
    return OPT_OK;
}

opt_status opt_tensor_set_raw(opt_tensor *t, int dt, const void *data, size_t len, opt_error *err)
{
    uint8_t *p = malloc(len ? len : 1);
    if (!p) return opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    if (len) memcpy(p, data, len);
    clear_data(t);
    t->has_data_type = true;
    t->data_type = dt;
    t->has_raw_data = true;
    t->raw_data.data = p;
    t->raw_data.len = len;
    return OPT_OK;
}

const void *opt_tensor_data(const opt_tensor *t, size_t *len)
{
    if (t->has_raw_data) {
        *len = t->raw_data.len;
        return t->raw_data.data ? t->raw_data.data : (const void *)"";
    }
    switch (t->data_type) {
    case OPT_DT_FLOAT: *len = t->n_float_data * 4; return t->float_data ? (void *)t->float_data : (void *)"";
    case OPT_DT_INT32: *len = t->n_int32_data * 4; return t->int32_data ? (void *)t->int32_data : (void *)"";
    case OPT_DT_INT64: *len = t->n_int64_data * 8; return t->int64_data ? (void *)t->int64_data : (void *)"";
    case OPT_DT_DOUBLE: *len = t->n_double_data * 8; return t->double_data ? (void *)t->double_data : (void *)"";
    case OPT_DT_UINT64: *len = t->n_uint64_data * 8; return t->uint64_data ? (void *)t->uint64_data : (void *)"";
    default: *len = 0; return NULL;
    }
}

opt_status opt_tensor_set_dims(opt_tensor *t, const int64_t *dims, size_t n, opt_error *err)
{
    int64_t *d = NULL;
    if (n) {
        d = malloc(n * sizeof *d);
        if (!d) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        memcpy(d, dims, n * sizeof *d);
    }
    free(t->dims);
    t->dims = d;
    t->n_dims = n;
    return OPT_OK;
}
