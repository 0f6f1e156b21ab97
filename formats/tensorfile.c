/*
 * formats/tensorfile.c — whole tensors in .pb, .npy and IDX files; format guessing; dtype
 * conversion; atomic writes. CSV lives in tensorfile_csv.c, record streams in tstream.c.
 *
 * Every length comes from the file, so each is checked against what is actually there before
 * anything is allocated or copied: these readers are fuzzed (tests/fuzz/).
 */
#include "formats/tensorfile_int.h"
#include "formats/onnx.h"

#include "onnx.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Refuse to inflate more than this from a gzip buffer (a bomb guard for whole-tensor reads). */
#define TF_MAX_INFLATE ((size_t)4 << 30)

/* ---- names and guessing ------------------------------------------------------------------- */

const char *opt_tfmt_name(opt_tfmt f)
{
    switch (f) {
    case OPT_TFMT_PB: return "pb";
    case OPT_TFMT_NPY: return "npy";
    case OPT_TFMT_CSV: return "csv";
    case OPT_TFMT_IDX: return "idx";
    default: return "auto";
    }
}

bool opt_tfmt_parse(const char *s, opt_tfmt *out)
{
    static const opt_tfmt all[] = {OPT_TFMT_PB, OPT_TFMT_NPY, OPT_TFMT_CSV, OPT_TFMT_IDX};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (strcasecmp(s, opt_tfmt_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    return false;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && strncasecmp(s + n - k, suffix, k) == 0;
}

opt_tfmt opt_tfmt_from_name(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (ends_with(base, n, ".gz")) n -= 3;
    if (ends_with(base, n, ".pb")) return OPT_TFMT_PB;
    if (ends_with(base, n, ".npy")) return OPT_TFMT_NPY;
    if (ends_with(base, n, ".csv")) return OPT_TFMT_CSV;
    if (ends_with(base, n, ".idx") || ends_with(base, n, "-ubyte") || ends_with(base, n, ".ubyte"))
        return OPT_TFMT_IDX;
    for (size_t i = 0; i + 4 <= n; i++)
        if (strncasecmp(base + i, "idx", 3) == 0 && base[i + 3] >= '1' && base[i + 3] <= '8')
            return OPT_TFMT_IDX;
    return OPT_TFMT_AUTO;
}

static bool idx_type(uint8_t code, int *dtype)
{
    switch (code) {
    case 0x08: *dtype = OPT_DT_UINT8; return true;
    case 0x09: *dtype = OPT_DT_INT8; return true;
    case 0x0B: *dtype = OPT_DT_INT16; return true;
    case 0x0C: *dtype = OPT_DT_INT32; return true;
    case 0x0D: *dtype = OPT_DT_FLOAT; return true;
    case 0x0E: *dtype = OPT_DT_DOUBLE; return true;
    default: return false;
    }
}

opt_tfmt opt_tfmt_sniff(const uint8_t *buf, size_t len)
{
    int dt;
    if (len >= 6 && memcmp(buf, "\x93NUMPY", 6) == 0) return OPT_TFMT_NPY;
    if (len >= 4 && buf[0] == 0 && buf[1] == 0 && idx_type(buf[2], &dt) && buf[3] >= 1 &&
        buf[3] <= OPT_MAX_DIMS)
        return OPT_TFMT_IDX;
    /* Text made of digits, separators and number characters is CSV; anything else is tried as
     * a TensorProto (whose first byte is a field tag, rarely printable). */
    size_t k = len < 4096 ? len : 4096, text = 0;
    for (size_t i = 0; i < k; i++)
        if (isprint(buf[i]) || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t') text++;
    if (k > 0 && text == k) return OPT_TFMT_CSV;
    return OPT_TFMT_PB;
}

/* ---- dtype helpers ------------------------------------------------------------------------ */

size_t opt_tf_elem_size(int dtype)
{
    if (dtype == OPT_DT_STRING) return 0;
    int bits = opt_dtype_bits(dtype);
    return bits >= 8 ? (size_t)bits / 8 : 0;
}

bool opt_tensorfile_nbytes(int dtype, uint64_t n, size_t *out)
{
    uint64_t b;
    if (dtype == OPT_DT_STRING || !opt_dtype_raw_bytes(dtype, n, &b) || b > SIZE_MAX) return false;
    *out = (size_t)b;
    return true;
}

bool opt_tf_numel(int ndim, const int64_t *dims, uint64_t *n)
{
    uint64_t k = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0) return false;
        uint64_t d = (uint64_t)dims[i];
        if (d != 0 && k > UINT64_MAX / d) return false;
        k *= d;
    }
    *n = k;
    return true;
}

void opt_tf_swap(void *p, uint64_t n, size_t size)
{
    uint8_t *b = p;
    if (size < 2) return;
    for (uint64_t i = 0; i < n; i++, b += size)
        for (size_t j = 0; j < size / 2; j++) {
            uint8_t t = b[j];
            b[j] = b[size - 1 - j];
            b[size - 1 - j] = t;
        }
}

/* Fills a's dtype, dims and nbytes (checking for overflow) without allocating, so that callers can
 * compare the size with what the file holds before trusting it. */
static opt_status array_shape(opt_array *a, int dtype, int ndim, const int64_t *dims, opt_error *err)
{
    memset(a, 0, sizeof *a);
    uint64_t n;
    size_t bytes;
    if (ndim < 0 || ndim > OPT_MAX_DIMS)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "rank %d is more than %d", ndim, OPT_MAX_DIMS);
    if (!opt_tf_numel(ndim, dims, &n) || !opt_tensorfile_nbytes(dtype, n, &bytes))
        return opt_error_set(err, OPT_ERR_DATA, "tensor size overflows (dtype %s)",
                             opt_dtype_name(dtype));
    a->dtype = dtype;
    a->ndim = ndim;
    for (int i = 0; i < ndim; i++) a->dims[i] = dims[i];
    a->nbytes = bytes;
    return OPT_OK;
}

/* Allocates a->nbytes (zeroed). */
static opt_status array_data(opt_array *a, opt_error *err)
{
    a->data = calloc(1, a->nbytes ? a->nbytes : 1);
    if (!a->data) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory (%zu bytes)", a->nbytes);
    return OPT_OK;
}

static opt_status array_make(opt_array *a, int dtype, int ndim, const int64_t *dims, opt_error *err)
{
    OPT_TRY(array_shape(a, dtype, ndim, dims, err));
    return array_data(a, err);
}

double opt_tf_get(const opt_array *a, uint64_t i)
{
    const uint8_t *p = a->data;
    switch (a->dtype) {
    case OPT_DT_FLOAT: { float v; memcpy(&v, p + i * 4, 4); return v; }
    case OPT_DT_DOUBLE: { double v; memcpy(&v, p + i * 8, 8); return v; }
    case OPT_DT_FLOAT16: { uint16_t v; memcpy(&v, p + i * 2, 2); return opt_f16_to_f32(v); }
    case OPT_DT_BFLOAT16: { uint16_t v; memcpy(&v, p + i * 2, 2); return opt_bf16_to_f32(v); }
    case OPT_DT_FLOAT8E4M3FN: case OPT_DT_FLOAT8E4M3FNUZ: case OPT_DT_FLOAT8E5M2:
    case OPT_DT_FLOAT8E5M2FNUZ: return opt_f8_to_f32(p[i], a->dtype);
    case OPT_DT_UINT8: return p[i];
    case OPT_DT_BOOL: return p[i] != 0;
    case OPT_DT_INT8: return (int8_t)p[i];
    case OPT_DT_UINT16: { uint16_t v; memcpy(&v, p + i * 2, 2); return v; }
    case OPT_DT_INT16: { int16_t v; memcpy(&v, p + i * 2, 2); return v; }
    case OPT_DT_UINT32: { uint32_t v; memcpy(&v, p + i * 4, 4); return v; }
    case OPT_DT_INT32: { int32_t v; memcpy(&v, p + i * 4, 4); return v; }
    case OPT_DT_UINT64: { uint64_t v; memcpy(&v, p + i * 8, 8); return (double)v; }
    case OPT_DT_INT64: { int64_t v; memcpy(&v, p + i * 8, 8); return (double)v; }
    default: return 0;
    }
}

static bool is_int_dtype(int d)
{
    return d == OPT_DT_UINT8 || d == OPT_DT_INT8 || d == OPT_DT_UINT16 || d == OPT_DT_INT16 ||
           d == OPT_DT_UINT32 || d == OPT_DT_INT32 || d == OPT_DT_UINT64 || d == OPT_DT_INT64 ||
           d == OPT_DT_BOOL;
}

static bool convertible(int d)
{
    return is_int_dtype(d) || d == OPT_DT_FLOAT || d == OPT_DT_DOUBLE || d == OPT_DT_FLOAT16 ||
           d == OPT_DT_BFLOAT16 || (d >= OPT_DT_FLOAT8E4M3FN && d <= OPT_DT_FLOAT8E5M2FNUZ);
}

static int64_t get_i64(const opt_array *a, uint64_t i, bool *neg_big)
{
    const uint8_t *p = a->data;
    *neg_big = false;
    if (a->dtype == OPT_DT_UINT64) {
        uint64_t v;
        memcpy(&v, p + i * 8, 8);
        if (v > (uint64_t)INT64_MAX) { *neg_big = true; return INT64_MAX; }
        return (int64_t)v;
    }
    if (a->dtype == OPT_DT_INT64) { int64_t v; memcpy(&v, p + i * 8, 8); return v; }
    return (int64_t)opt_tf_get(a, i);
}

static int64_t sat(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Float to integer: truncation toward zero, saturating, NaN -> 0. */
static int64_t f2i(double v, int64_t lo, int64_t hi)
{
    if (v != v) return 0;
    if (v <= (double)lo) return lo;
    if (v >= (double)hi) return hi;
    return (int64_t)v;
}

static void put_int(uint8_t *p, int dtype, uint64_t i, int64_t v, uint64_t uv, bool use_u)
{
    switch (dtype) {
    case OPT_DT_UINT8: p[i] = (uint8_t)sat(v, 0, 255); break;
    case OPT_DT_INT8: p[i] = (uint8_t)(int8_t)sat(v, -128, 127); break;
    case OPT_DT_BOOL: p[i] = (use_u ? uv : (uint64_t)v) != 0; break;
    case OPT_DT_UINT16: { uint16_t x = (uint16_t)sat(v, 0, 65535); memcpy(p + i * 2, &x, 2); break; }
    case OPT_DT_INT16: { int16_t x = (int16_t)sat(v, -32768, 32767); memcpy(p + i * 2, &x, 2); break; }
    case OPT_DT_UINT32: { uint32_t x = (uint32_t)sat(v, 0, UINT32_MAX); memcpy(p + i * 4, &x, 4); break; }
    case OPT_DT_INT32: { int32_t x = (int32_t)sat(v, INT32_MIN, INT32_MAX); memcpy(p + i * 4, &x, 4); break; }
    case OPT_DT_UINT64: { uint64_t x = use_u ? uv : v < 0 ? 0 : (uint64_t)v; memcpy(p + i * 8, &x, 8); break; }
    case OPT_DT_INT64: memcpy(p + i * 8, &v, 8); break;
    default: break;
    }
}

opt_status opt_tensorfile_convert(const opt_array *a, int dtype, opt_array *out, opt_error *err)
{
    if (!convertible(a->dtype) || !convertible(dtype))
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "cannot convert %s to %s",
                             opt_dtype_name(a->dtype), opt_dtype_name(dtype));
    OPT_TRY(array_make(out, dtype, a->ndim, a->dims, err));
    uint64_t n;
    opt_tf_numel(a->ndim, a->dims, &n);
    if (dtype == a->dtype) {
        if (out->nbytes) memcpy(out->data, a->data, out->nbytes);
        return OPT_OK;
    }
    uint8_t *p = out->data;
    bool src_int = is_int_dtype(a->dtype), dst_int = is_int_dtype(dtype);
    for (uint64_t i = 0; i < n; i++) {
        if (dst_int && src_int) {
            bool big;
            int64_t v = get_i64(a, i, &big);
            uint64_t uv = 0;
            if (big) memcpy(&uv, (const uint8_t *)a->data + i * 8, 8);
            put_int(p, dtype, i, v, uv, big);
            continue;
        }
        double v = opt_tf_get(a, i);
        if (dst_int) {
            if (dtype == OPT_DT_BOOL) p[i] = v != 0;
            else if (dtype == OPT_DT_UINT64) {
                uint64_t x = v != v || v <= 0 ? 0 : v >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)v;
                memcpy(p + i * 8, &x, 8);
            } else put_int(p, dtype, i, f2i(v, INT64_MIN, INT64_MAX), 0, false);
            continue;
        }
        switch (dtype) {
        case OPT_DT_FLOAT: { float f = (float)v; memcpy(p + i * 4, &f, 4); break; }
        case OPT_DT_DOUBLE: memcpy(p + i * 8, &v, 8); break;
        case OPT_DT_FLOAT16: { uint16_t h = opt_f32_to_f16((float)v); memcpy(p + i * 2, &h, 2); break; }
        case OPT_DT_BFLOAT16: { uint16_t h = opt_f32_to_bf16((float)v); memcpy(p + i * 2, &h, 2); break; }
        default: p[i] = opt_f32_to_f8((float)v, dtype, true); break;
        }
    }
    return OPT_OK;
}

/* ---- ONNX TensorProto ----------------------------------------------------------------------- */

/* Copies typed-field values into a's buffer: `count` values that must equal what dims call for. */
static opt_status pb_typed(const Onnx__TensorProto *p, opt_array *a, uint64_t n, opt_error *err)
{
    int d = a->dtype;
    uint8_t *o = a->data;
    size_t have;
    const char *field;
    uint64_t want = n;
    switch (d) {
    case OPT_DT_FLOAT: case OPT_DT_COMPLEX64:
        field = "float_data"; have = p->n_float_data;
        if (d == OPT_DT_COMPLEX64) want = n * 2;
        if (have != want) break;
        if (have) memcpy(o, p->float_data, have * 4);
        return OPT_OK;
    case OPT_DT_DOUBLE: case OPT_DT_COMPLEX128:
        field = "double_data"; have = p->n_double_data;
        if (d == OPT_DT_COMPLEX128) want = n * 2;
        if (have != want) break;
        if (have) memcpy(o, p->double_data, have * 8);
        return OPT_OK;
    case OPT_DT_INT64:
        field = "int64_data"; have = p->n_int64_data;
        if (have != want) break;
        if (have) memcpy(o, p->int64_data, have * 8);
        return OPT_OK;
    case OPT_DT_UINT32: case OPT_DT_UINT64:
        field = "uint64_data"; have = p->n_uint64_data;
        if (have != want) break;
        for (size_t i = 0; i < have; i++) {
            if (d == OPT_DT_UINT32) { uint32_t v = (uint32_t)p->uint64_data[i]; memcpy(o + i * 4, &v, 4); }
            else memcpy(o + i * 8, &p->uint64_data[i], 8);
        }
        return OPT_OK;
    case OPT_DT_UINT4: case OPT_DT_INT4: case OPT_DT_FLOAT4E2M1:
        field = "int32_data"; have = p->n_int32_data;
        want = n / 2 + (n & 1);
        if (have != want) break;
        for (size_t i = 0; i < have; i++) o[i] = (uint8_t)p->int32_data[i];
        return OPT_OK;
    case OPT_DT_STRING:
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "string tensors are not supported");
    default: {
        field = "int32_data"; have = p->n_int32_data;
        if (have != want) break;
        size_t es = opt_tf_elem_size(d);
        for (size_t i = 0; i < have; i++) {
            int32_t v = p->int32_data[i];
            if (es == 1) o[i] = (uint8_t)v;
            else if (es == 2) { uint16_t x = (uint16_t)v; memcpy(o + i * 2, &x, 2); }
            else memcpy(o + i * 4, &v, 4);
        }
        return OPT_OK;
    }
    }
    return opt_error_set(err, OPT_ERR_DATA, "TensorProto%s%s%s: %s holds %zu values, dims call for %llu",
                         p->name ? " '" : "", p->name ? p->name : "", p->name ? "'" : "", field,
                         have, (unsigned long long)want);
}

static opt_status pb_parse(const uint8_t *buf, size_t len, opt_array *a, char **name, opt_error *err)
{
    Onnx__TensorProto *p = onnx__tensor_proto__unpack(NULL, len, buf);
    if (!p) return opt_error_set(err, OPT_ERR_PARSE, "not an ONNX TensorProto (protobuf parse failed)");
    opt_status s = OPT_OK;
    const char *nm = p->name ? p->name : "";
    if (!p->has_data_type || !opt_dtype_valid(p->data_type) || p->data_type == OPT_DT_UNDEFINED) {
        s = opt_error_set(err, OPT_ERR_DATA, "TensorProto '%s': missing or unknown data_type %d", nm,
                          p->has_data_type ? p->data_type : 0);
        goto done;
    }
    if (p->data_type == OPT_DT_STRING) {
        s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "TensorProto '%s': string tensors are not supported", nm);
        goto done;
    }
    if (p->n_dims > OPT_MAX_DIMS) {
        s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "TensorProto '%s': rank %zu is more than %d", nm,
                          p->n_dims, OPT_MAX_DIMS);
        goto done;
    }
    for (size_t i = 0; i < p->n_dims; i++)
        if (p->dims[i] < 0) {
            s = opt_error_set(err, OPT_ERR_DATA, "TensorProto '%s': negative dim %lld", nm,
                              (long long)p->dims[i]);
            goto done;
        }
    if (p->segment) {
        s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "TensorProto '%s': segmented tensors are not supported", nm);
        goto done;
    }
    if ((p->has_data_location && p->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
        p->n_external_data) {
        s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "TensorProto '%s': external data is not supported here", nm);
        goto done;
    }
    int64_t dims[OPT_MAX_DIMS];
    for (size_t i = 0; i < p->n_dims; i++) dims[i] = p->dims[i];
    if ((s = array_shape(a, p->data_type, (int)p->n_dims, dims, err)) != OPT_OK) goto done;
    uint64_t n;
    opt_tf_numel(a->ndim, a->dims, &n);
    /* A typed field spends at least one byte per value (two 4-bit values share one), so dims
     * calling for more values than that are a lie: refuse them before allocating. */
    if (!p->has_raw_data && n > 2 * (uint64_t)len + 2) {
        s = opt_error_set(err, OPT_ERR_DATA, "TensorProto '%s': dims call for %llu values, the message has %zu bytes",
                          nm, (unsigned long long)n, len);
        memset(a, 0, sizeof *a);
        goto done;
    }
    if (p->has_raw_data && p->raw_data.len != a->nbytes) {
        s = opt_error_set(err, OPT_ERR_DATA, "TensorProto '%s': raw_data has %zu bytes, %s dims call for %zu",
                          nm, p->raw_data.len, opt_dtype_short(a->dtype), a->nbytes);
        memset(a, 0, sizeof *a);
        goto done;
    }
    if ((s = array_data(a, err)) != OPT_OK) goto done;
    if (p->has_raw_data) {
        if (a->nbytes) memcpy(a->data, p->raw_data.data, a->nbytes);
    } else {
        s = pb_typed(p, a, n, err);
    }
    if (s != OPT_OK) {
        free(a->data);
        memset(a, 0, sizeof *a);
        goto done;
    }
    if (name) {
        *name = p->name ? opt_strdup(p->name) : NULL;
        if (p->name && !*name) {
            free(a->data);
            memset(a, 0, sizeof *a);
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        }
    }
done:
    onnx__tensor_proto__free_unpacked(p, NULL);
    return s;
}

static opt_status pb_serialize(const opt_array *a, const char *name, uint8_t **buf, size_t *len,
                               opt_error *err)
{
    Onnx__TensorProto p;
    onnx__tensor_proto__init(&p);
    p.n_dims = (size_t)a->ndim;
    p.dims = (int64_t *)a->dims;
    p.has_data_type = 1;
    p.data_type = a->dtype;
    p.name = (char *)name;
    p.has_raw_data = 1;
    p.raw_data.len = a->nbytes;
    p.raw_data.data = a->data;
    size_t n = onnx__tensor_proto__get_packed_size(&p);
    *buf = malloc(n ? n : 1);
    if (!*buf) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    *len = onnx__tensor_proto__pack(&p, *buf);
    return OPT_OK;
}

/* ---- NumPy -------------------------------------------------------------------------------- */

opt_status opt_tf_npy_preamble(const uint8_t *buf, size_t len, size_t *total, opt_error *err)
{
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return opt_error_set(err, OPT_ERR_DATA, "not a .npy file (bad magic)");
    uint8_t major = buf[6];
    if (major == 1) {
        *total = 10 + (size_t)(buf[8] | buf[9] << 8);
    } else if (major == 2 || major == 3) {
        if (len < 12) return opt_error_set(err, OPT_ERR_DATA, ".npy header is truncated");
        uint32_t h = (uint32_t)buf[8] | (uint32_t)buf[9] << 8 | (uint32_t)buf[10] << 16 |
                     (uint32_t)buf[11] << 24;
        if (h > (1u << 24))
            return opt_error_set(err, OPT_ERR_DATA, ".npy header length %u is implausible", h);
        *total = 12 + (size_t)h;
    } else {
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, ".npy format version %u.%u is not supported",
                             major, buf[7]);
    }
    return OPT_OK;
}

typedef struct npy_lex {
    const char *p, *end;
} npy_lex;

static void lex_ws(npy_lex *l)
{
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}

static bool lex_char(npy_lex *l, char c)
{
    lex_ws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return true;
    }
    return false;
}

/* A quoted Python string into out (at most cap-1 chars). */
static bool lex_str(npy_lex *l, char *out, size_t cap)
{
    lex_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return false;
    char q = *l->p++;
    size_t k = 0;
    while (l->p < l->end && *l->p != q) {
        if (k + 1 >= cap) return false;
        out[k++] = *l->p++;
    }
    if (l->p >= l->end) return false;
    l->p++;
    out[k] = 0;
    return true;
}

static bool npy_descr(const char *d, int *dtype, bool *swap)
{
    char order = d[0];
    if (order != '<' && order != '>' && order != '|' && order != '=') return false;
    *swap = order == '>';
    static const struct { const char *code; int dt; } map[] = {
        {"f4", OPT_DT_FLOAT}, {"f8", OPT_DT_DOUBLE}, {"f2", OPT_DT_FLOAT16}, {"i1", OPT_DT_INT8},
        {"u1", OPT_DT_UINT8}, {"i2", OPT_DT_INT16}, {"i4", OPT_DT_INT32},    {"i8", OPT_DT_INT64},
        {"u2", OPT_DT_UINT16}, {"u4", OPT_DT_UINT32}, {"u8", OPT_DT_UINT64}, {"b1", OPT_DT_BOOL},
        {"?", OPT_DT_BOOL},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(d + 1, map[i].code) == 0) {
            *dtype = map[i].dt;
            if (opt_tf_elem_size(*dtype) == 1) *swap = false;
            return true;
        }
    return false;
}

opt_status opt_tf_npy_header(const uint8_t *buf, size_t total, int *dtype, bool *swap, int *ndim,
                             int64_t *dims, opt_error *err)
{
    size_t start = buf[6] == 1 ? 10 : 12;
    npy_lex l = {(const char *)buf + start, (const char *)buf + total};
    bool got_descr = false, got_order = false, got_shape = false;
    if (!lex_char(&l, '{')) return opt_error_set(err, OPT_ERR_DATA, ".npy header is not a dict");
    for (;;) {
        if (lex_char(&l, '}')) break;
        char key[32];
        if (!lex_str(&l, key, sizeof key) || !lex_char(&l, ':'))
            return opt_error_set(err, OPT_ERR_DATA, ".npy header: malformed dict");
        if (strcmp(key, "descr") == 0) {
            char d[32];
            if (!lex_str(&l, d, sizeof d))
                return opt_error_set(err, OPT_ERR_DATA, ".npy header: descr is not a string");
            if (!npy_descr(d, dtype, swap))
                return opt_error_set(err, OPT_ERR_UNSUPPORTED,
                                     ".npy dtype '%s' is not supported (f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)", d);
            got_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            lex_ws(&l);
            if ((size_t)(l.end - l.p) >= 5 && memcmp(l.p, "False", 5) == 0) l.p += 5;
            else if ((size_t)(l.end - l.p) >= 4 && memcmp(l.p, "True", 4) == 0)
                return opt_error_set(err, OPT_ERR_UNSUPPORTED,
                                     ".npy fortran_order=True is not supported (save C-ordered: np.ascontiguousarray)");
            else return opt_error_set(err, OPT_ERR_DATA, ".npy header: fortran_order is not a bool");
            got_order = true;
        } else if (strcmp(key, "shape") == 0) {
            if (!lex_char(&l, '('))
                return opt_error_set(err, OPT_ERR_DATA, ".npy header: shape is not a tuple");
            int k = 0;
            for (;;) {
                if (lex_char(&l, ')')) break;
                lex_ws(&l);
                if (l.p >= l.end || !isdigit((unsigned char)*l.p))
                    return opt_error_set(err, OPT_ERR_DATA, ".npy header: bad shape entry");
                int64_t v = 0;
                while (l.p < l.end && isdigit((unsigned char)*l.p)) {
                    if (v > (INT64_MAX - 9) / 10)
                        return opt_error_set(err, OPT_ERR_DATA, ".npy header: shape value too large");
                    v = v * 10 + (*l.p++ - '0');
                }
                if (l.p < l.end && *l.p == 'L') l.p++;
                if (k >= OPT_MAX_DIMS)
                    return opt_error_set(err, OPT_ERR_UNSUPPORTED, ".npy rank is more than %d", OPT_MAX_DIMS);
                dims[k++] = v;
                if (!lex_char(&l, ',')) {
                    if (!lex_char(&l, ')'))
                        return opt_error_set(err, OPT_ERR_DATA, ".npy header: malformed shape");
                    break;
                }
            }
            *ndim = k;
            got_shape = true;
        } else {
            return opt_error_set(err, OPT_ERR_DATA, ".npy header: unexpected key '%s'", key);
        }
        if (!lex_char(&l, ',')) {
            if (!lex_char(&l, '}')) return opt_error_set(err, OPT_ERR_DATA, ".npy header: malformed dict");
            break;
        }
    }
    if (!got_descr || !got_order || !got_shape)
        return opt_error_set(err, OPT_ERR_DATA, ".npy header lacks %s",
                             !got_descr ? "'descr'" : !got_order ? "'fortran_order'" : "'shape'");
    uint64_t n;
    size_t b;
    if (!opt_tf_numel(*ndim, dims, &n) || !opt_tensorfile_nbytes(*dtype, n, &b))
        return opt_error_set(err, OPT_ERR_DATA, ".npy shape overflows");
    return OPT_OK;
}

static opt_status npy_parse(const uint8_t *buf, size_t len, opt_array *a, opt_error *err)
{
    size_t total;
    int dtype = 0, ndim = 0;
    bool swap = false;
    int64_t dims[OPT_MAX_DIMS];
    OPT_TRY(opt_tf_npy_preamble(buf, len, &total, err));
    if (total > len)
        return opt_error_set(err, OPT_ERR_DATA, ".npy header says %zu bytes, file has %zu", total, len);
    OPT_TRY(opt_tf_npy_header(buf, total, &dtype, &swap, &ndim, dims, err));
    OPT_TRY(array_shape(a, dtype, ndim, dims, err));
    if (len - total != a->nbytes) {
        opt_error_set(err, OPT_ERR_DATA, ".npy header says %zu bytes of %s data, file has %zu",
                      a->nbytes, opt_dtype_short(dtype), len - total);
        memset(a, 0, sizeof *a);
        return OPT_ERR_DATA;
    }
    OPT_TRY(array_data(a, err));
    if (a->nbytes) memcpy(a->data, buf + total, a->nbytes);
    if (swap) {
        uint64_t n;
        opt_tf_numel(ndim, dims, &n);
        opt_tf_swap(a->data, n, opt_tf_elem_size(dtype));
    }
    return OPT_OK;
}

static const char *npy_code(int dtype)
{
    switch (dtype) {
    case OPT_DT_FLOAT: return "<f4";
    case OPT_DT_DOUBLE: return "<f8";
    case OPT_DT_FLOAT16: return "<f2";
    case OPT_DT_INT8: return "|i1";
    case OPT_DT_UINT8: return "|u1";
    case OPT_DT_INT16: return "<i2";
    case OPT_DT_INT32: return "<i4";
    case OPT_DT_INT64: return "<i8";
    case OPT_DT_UINT16: return "<u2";
    case OPT_DT_UINT32: return "<u4";
    case OPT_DT_UINT64: return "<u8";
    case OPT_DT_BOOL: return "|b1";
    default: return NULL;
    }
}

static opt_status npy_serialize(const opt_array *a, uint8_t **buf, size_t *len, opt_error *err)
{
    const char *code = npy_code(a->dtype);
    if (!code)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "%s has no .npy dtype (use --format pb)",
                             opt_dtype_name(a->dtype));
    char h[256];
    int k = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (", code);
    for (int i = 0; i < a->ndim; i++)
        k += snprintf(h + k, sizeof h - (size_t)k, "%lld,%s", (long long)a->dims[i],
                      i + 1 < a->ndim ? " " : "");
    if (a->ndim > 1) k--; /* numpy writes (3,) for rank 1 but (2, 3) otherwise */
    k += snprintf(h + k, sizeof h - (size_t)k, "), }");
    /* Pad with spaces so that the data starts at a multiple of 64, ending with '\n'. */
    size_t hl = (size_t)k + 1, total = 10 + hl;
    total = (total + 63) / 64 * 64;
    hl = total - 10;
    *len = total + a->nbytes;
    *buf = malloc(*len);
    if (!*buf) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    memcpy(*buf, "\x93NUMPY\x01\x00", 8);
    (*buf)[8] = (uint8_t)(hl & 0xff);
    (*buf)[9] = (uint8_t)(hl >> 8);
    memset(*buf + 10, ' ', hl);
    memcpy(*buf + 10, h, (size_t)k);
    (*buf)[total - 1] = '\n';
    if (a->nbytes) memcpy(*buf + total, a->data, a->nbytes);
    return OPT_OK;
}

/* ---- IDX ------------------------------------------------------------------------------------ */

opt_status opt_tf_idx_header(const uint8_t *buf, size_t len, size_t *hdr_len, int *dtype,
                             int *ndim, int64_t *dims, opt_error *err)
{
    if (len < 4 || buf[0] != 0 || buf[1] != 0)
        return opt_error_set(err, OPT_ERR_DATA, "not an IDX file (bad magic)");
    if (!idx_type(buf[2], dtype))
        return opt_error_set(err, OPT_ERR_DATA, "IDX type code 0x%02x is unknown", buf[2]);
    if (buf[3] < 1 || buf[3] > OPT_MAX_DIMS)
        return opt_error_set(err, OPT_ERR_DATA, "IDX rank %u is not in 1..%d", buf[3], OPT_MAX_DIMS);
    *ndim = buf[3];
    *hdr_len = 4 + 4 * (size_t)buf[3];
    if (len < *hdr_len) return OPT_OK; /* caller reads the rest and calls again */
    for (int i = 0; i < *ndim; i++) {
        const uint8_t *q = buf + 4 + 4 * i;
        dims[i] = (int64_t)((uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3]);
    }
    uint64_t n;
    size_t b;
    if (!opt_tf_numel(*ndim, dims, &n) || !opt_tensorfile_nbytes(*dtype, n, &b))
        return opt_error_set(err, OPT_ERR_DATA, "IDX dims overflow");
    return OPT_OK;
}

static opt_status idx_parse(const uint8_t *buf, size_t len, opt_array *a, opt_error *err)
{
    size_t hl;
    int dtype, ndim;
    int64_t dims[OPT_MAX_DIMS];
    OPT_TRY(opt_tf_idx_header(buf, len, &hl, &dtype, &ndim, dims, err));
    if (len < hl) return opt_error_set(err, OPT_ERR_DATA, "IDX header is truncated");
    OPT_TRY(opt_tf_idx_header(buf, len, &hl, &dtype, &ndim, dims, err));
    OPT_TRY(array_shape(a, dtype, ndim, dims, err));
    if (len - hl != a->nbytes) {
        opt_error_set(err, OPT_ERR_DATA, "IDX header says %zu bytes of %s data, file has %zu",
                      a->nbytes, opt_dtype_short(dtype), len - hl);
        memset(a, 0, sizeof *a);
        return OPT_ERR_DATA;
    }
    OPT_TRY(array_data(a, err));
    if (a->nbytes) memcpy(a->data, buf + hl, a->nbytes);
    uint64_t n;
    opt_tf_numel(ndim, dims, &n);
    opt_tf_swap(a->data, n, opt_tf_elem_size(dtype));
    return OPT_OK;
}

static opt_status idx_serialize(const opt_array *a, uint8_t **buf, size_t *len, opt_error *err)
{
    uint8_t code;
    switch (a->dtype) {
    case OPT_DT_UINT8: code = 0x08; break;
    case OPT_DT_INT8: code = 0x09; break;
    case OPT_DT_INT16: code = 0x0B; break;
    case OPT_DT_INT32: code = 0x0C; break;
    case OPT_DT_FLOAT: code = 0x0D; break;
    case OPT_DT_DOUBLE: code = 0x0E; break;
    default:
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "%s has no IDX type", opt_dtype_name(a->dtype));
    }
    if (a->ndim < 1) return opt_error_set(err, OPT_ERR_UNSUPPORTED, "IDX cannot hold a scalar");
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] > (int64_t)UINT32_MAX)
            return opt_error_set(err, OPT_ERR_UNSUPPORTED, "dim %lld is too large for IDX",
                                 (long long)a->dims[i]);
    size_t hl = 4 + 4 * (size_t)a->ndim;
    *len = hl + a->nbytes;
    *buf = malloc(*len);
    if (!*buf) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    uint8_t *b = *buf;
    b[0] = b[1] = 0;
    b[2] = code;
    b[3] = (uint8_t)a->ndim;
    for (int i = 0; i < a->ndim; i++) {
        uint32_t d = (uint32_t)a->dims[i];
        b[4 + 4 * i] = (uint8_t)(d >> 24);
        b[5 + 4 * i] = (uint8_t)(d >> 16);
        b[6 + 4 * i] = (uint8_t)(d >> 8);
        b[7 + 4 * i] = (uint8_t)d;
    }
    if (a->nbytes) memcpy(b + hl, a->data, a->nbytes);
    uint64_t n;
    opt_tf_numel(a->ndim, a->dims, &n);
    opt_tf_swap(b + hl, n, opt_tf_elem_size(a->dtype));
    return OPT_OK;
}

/* ---- gzip ----------------------------------------------------------------------------------- */

static bool is_gzip(const uint8_t *buf, size_t len)
{
    return len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
}

/* Inflates gzip data (all members) into a malloc'd buffer. */
static opt_status gunzip(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len, opt_error *err)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) return opt_error_set(err, OPT_ERR_NOMEM, "zlib init failed");
    size_t cap = len * 4 + 1024, n = 0;
    uint8_t *b = malloc(cap);
    opt_status s = OPT_OK;
    if (!b) {
        inflateEnd(&z);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    const uint8_t *p = in;
    size_t left = len;
    for (;;) {
        if (n == cap) {
            if (cap >= TF_MAX_INFLATE) {
                s = opt_error_set(err, OPT_ERR_LIMIT, "gzip data inflates to more than %zu bytes", TF_MAX_INFLATE);
                break;
            }
            size_t nc = cap * 2;
            uint8_t *q = realloc(b, nc);
            if (!q) { s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory"); break; }
            b = q;
            cap = nc;
        }
        unsigned int in_chunk = left > UINT_MAX ? UINT_MAX : (unsigned int)left;
        size_t room = cap - n;
        z.next_in = (Bytef *)p;
        z.avail_in = in_chunk;
        z.next_out = b + n;
        z.avail_out = room > UINT_MAX ? UINT_MAX : (unsigned int)room;
        unsigned int out_before = z.avail_out;
        int r = inflate(&z, Z_NO_FLUSH);
        size_t used = in_chunk - z.avail_in;
        p += used;
        left -= used;
        n += out_before - z.avail_out;
        if (r == Z_STREAM_END) {
            /* Another gzip member may follow (as gzip -c a b makes). */
            if (left >= 2 && is_gzip(p, left)) {
                inflateReset(&z);
                continue;
            }
            break;
        }
        if (r == Z_BUF_ERROR && left == 0) {
            s = opt_error_set(err, OPT_ERR_DATA, "gzip data is truncated");
            break;
        }
        if (r != Z_OK && r != Z_BUF_ERROR) {
            s = opt_error_set(err, OPT_ERR_DATA, "gzip data is corrupt (%s)", z.msg ? z.msg : "inflate failed");
            break;
        }
    }
    inflateEnd(&z);
    if (s != OPT_OK) {
        free(b);
        return s;
    }
    *out = b;
    *out_len = n;
    return OPT_OK;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

opt_status opt_tensorfile_parse(const uint8_t *buf, size_t len, opt_tfmt fmt, opt_array *a,
                                char **name, opt_error *err)
{
    memset(a, 0, sizeof *a);
    if (name) *name = NULL;
    if (is_gzip(buf, len)) {
        uint8_t *raw = NULL;
        size_t n = 0;
        OPT_TRY(gunzip(buf, len, &raw, &n, err));
        opt_status s = is_gzip(raw, n)
                           ? opt_error_set(err, OPT_ERR_DATA, "nested gzip data is not supported")
                           : opt_tensorfile_parse(raw, n, fmt, a, name, err);
        free(raw);
        return s;
    }
    if (len == 0) return opt_error_set(err, OPT_ERR_DATA, "file is empty");
    if (fmt == OPT_TFMT_AUTO) fmt = opt_tfmt_sniff(buf, len);
    switch (fmt) {
    case OPT_TFMT_PB: return pb_parse(buf, len, a, name, err);
    case OPT_TFMT_NPY: return npy_parse(buf, len, a, err);
    case OPT_TFMT_IDX: return idx_parse(buf, len, a, err);
    case OPT_TFMT_CSV: return opt_tf_csv_parse(buf, len, a, err);
    default: return opt_error_set(err, OPT_ERR_USAGE, "unknown tensor file format");
    }
}

/* Reads a whole file; refuses directories with a clear message. */
static opt_status slurp(const char *path, uint8_t **buf, size_t *len, opt_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return opt_error_set(err, OPT_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return opt_error_set(err, OPT_ERR_IO, "is a directory");
    }
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 65536, n = 0;
    uint8_t *b = malloc(cap);
    if (!b) {
        fclose(f);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    for (;;) {
        if (n == cap) {
            uint8_t *q = realloc(b, cap * 2);
            if (!q) {
                free(b);
                fclose(f);
                return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            }
            b = q;
            cap *= 2;
        }
        size_t k = fread(b + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return opt_error_set(err, OPT_ERR_IO, "read error");
    }
    *buf = b;
    *len = n;
    return OPT_OK;
}

opt_status opt_tensorfile_read(const char *path, opt_tfmt fmt, opt_array *a, char **name,
                               opt_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    memset(a, 0, sizeof *a);
    if (name) *name = NULL;
    OPT_TRY(slurp(path, &buf, &len, err));
    if (fmt == OPT_TFMT_AUTO) fmt = opt_tfmt_from_name(path);
    opt_status s = opt_tensorfile_parse(buf, len, fmt, a, name, err);
    free(buf);
    return s;
}

opt_status opt_tensorfile_serialize(const opt_array *a, opt_tfmt fmt, const char *name,
                                    uint8_t **buf, size_t *len, opt_error *err)
{
    size_t want;
    uint64_t n;
    if (a->ndim < 0 || a->ndim > OPT_MAX_DIMS || !opt_tf_numel(a->ndim, a->dims, &n) ||
        !opt_tensorfile_nbytes(a->dtype, n, &want) || want != a->nbytes)
        return opt_error_set(err, OPT_ERR_INVALID, "array dims and dtype do not match its %zu bytes", a->nbytes);
    switch (fmt) {
    case OPT_TFMT_AUTO:
    case OPT_TFMT_PB: return pb_serialize(a, name, buf, len, err);
    case OPT_TFMT_NPY: return npy_serialize(a, buf, len, err);
    case OPT_TFMT_IDX: return idx_serialize(a, buf, len, err);
    case OPT_TFMT_CSV: return opt_tf_csv_serialize(a, buf, len, err);
    }
    return opt_error_set(err, OPT_ERR_USAGE, "unknown tensor file format");
}

opt_status opt_tensorfile_write(const char *path, opt_tfmt fmt, const opt_array *a,
                                const char *name, opt_error *err)
{
    if (fmt == OPT_TFMT_AUTO) fmt = opt_tfmt_from_name(path);
    uint8_t *buf;
    size_t len;
    OPT_TRY(opt_tensorfile_serialize(a, fmt, name, &buf, &len, err));
    /* An existing target that is not a regular file (/dev/null, a FIFO) is written in place:
     * renaming over it would replace the device node itself. */
    if (opt_path_is_special(path)) {
        opt_status ds = OPT_OK;
        int dfd = open(path, O_WRONLY | O_CLOEXEC);
        if (dfd < 0) ds = opt_error_set(err, OPT_ERR_IO, "cannot open: %s", strerror(errno));
        for (size_t off = 0; ds == OPT_OK && off < len;) {
            ssize_t k = write(dfd, buf + off, len - off);
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) ds = opt_error_set(err, OPT_ERR_IO, "write failed: %s", strerror(errno));
            else off += (size_t)k;
        }
        if (dfd >= 0 && close(dfd) != 0 && ds == OPT_OK)
            ds = opt_error_set(err, OPT_ERR_IO, "close failed: %s", strerror(errno));
        free(buf);
        return ds;
    }
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) {
        free(buf);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    snprintf(tmp, pl + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    opt_status s = OPT_OK;
    if (fd < 0) {
        s = opt_error_set(err, OPT_ERR_IO, "cannot create: %s", strerror(errno));
    } else {
        size_t off = 0;
        while (off < len) {
            ssize_t k = write(fd, buf + off, len - off);
            if (k < 0) {
                if (errno == EINTR) continue;
                s = opt_error_set(err, OPT_ERR_IO, "write failed: %s", strerror(errno));
                break;
            }
            off += (size_t)k;
        }
        if (s == OPT_OK) (void)fchmod(fd, 0644); /* mkstemp makes 0600 */
        if (close(fd) != 0 && s == OPT_OK) s = opt_error_set(err, OPT_ERR_IO, "close failed: %s", strerror(errno));
        if (s == OPT_OK && rename(tmp, path) != 0)
            s = opt_error_set(err, OPT_ERR_IO, "cannot rename into place: %s", strerror(errno));
        if (s != OPT_OK) unlink(tmp);
    }
    free(tmp);
    free(buf);
    return s;
}
