/*
 * tests/unit/tensorfile_readers.c — formats/tensorfile.h, whole tensors: every format writes and
 * reads back every dtype it supports bit for bit; files made by others (ONNX's test data, numpy v2
 * and big-endian headers, typed TensorProto fields, CSV with a header) read correctly; and every
 * malformed file — each strict prefix of a valid one, bad magic, overflowing shapes, random bytes
 * — is refused with a status, never read out of bounds (run under `make SAN=1`).
 */
#include "formats/tensorfile.h"

#include "onnx.pb-c.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* An array of dtype with dims and random bytes (valid bools: 0/1). */
static opt_array random_array(int dtype, int ndim, const int64_t *dims)
{
    opt_array a = {.dtype = dtype, .ndim = ndim};
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        a.dims[i] = dims[i];
        n *= (uint64_t)dims[i];
    }
    cr_assert(opt_tensorfile_nbytes(dtype, n, &a.nbytes));
    a.data = malloc(a.nbytes + 1);
    uint8_t *p = a.data;
    for (size_t i = 0; i < a.nbytes; i++) p[i] = (uint8_t)rnd();
    if (dtype == OPT_DT_BOOL)
        for (size_t i = 0; i < a.nbytes; i++) p[i] &= 1;
    return a;
}

static void assert_same(const opt_array *a, const opt_array *b)
{
    cr_assert_eq(a->dtype, b->dtype, "dtype %d vs %d", a->dtype, b->dtype);
    cr_assert_eq(a->ndim, b->ndim, "rank %d vs %d", a->ndim, b->ndim);
    for (int i = 0; i < a->ndim; i++) cr_assert_eq(a->dims[i], b->dims[i]);
    cr_assert_eq(a->nbytes, b->nbytes);
    cr_assert(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0, "data differs");
}

static void round_trip(opt_tfmt fmt, int dtype, int ndim, const int64_t *dims)
{
    opt_array a = random_array(dtype, ndim, dims), b;
    uint8_t *buf;
    size_t len;
    opt_error e = {0};
    char *name = NULL;
    cr_assert_eq(opt_tensorfile_serialize(&a, fmt, "t", &buf, &len, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_tensorfile_parse(buf, len, fmt, &b, &name, &e), OPT_OK, "%s: %s", opt_tfmt_name(fmt), e.msg);
    assert_same(&a, &b);
    if (fmt == OPT_TFMT_PB) cr_assert_str_eq(name, "t");
    /* The format is also recognised from the bytes alone. */
    opt_array c;
    cr_assert_eq(opt_tensorfile_parse(buf, len, OPT_TFMT_AUTO, &c, NULL, &e), OPT_OK, "sniffing %s: %s",
                 opt_tfmt_name(fmt), e.msg);
    assert_same(&a, &c);
    free(name);
    free(buf);
    free(a.data);
    free(b.data);
    free(c.data);
}

static const int all_npy[] = {OPT_DT_FLOAT, OPT_DT_DOUBLE, OPT_DT_FLOAT16, OPT_DT_INT8, OPT_DT_UINT8,
                              OPT_DT_INT16, OPT_DT_INT32, OPT_DT_INT64, OPT_DT_UINT16, OPT_DT_UINT32,
                              OPT_DT_UINT64, OPT_DT_BOOL};

Test(tensorfile_npy, every_supported_dtype_round_trips_bit_for_bit)
{
    int64_t d3[] = {2, 3, 5}, d1[] = {7}, d0[] = {0};
    for (size_t i = 0; i < sizeof all_npy / sizeof *all_npy; i++) {
        round_trip(OPT_TFMT_NPY, all_npy[i], 3, d3);
        round_trip(OPT_TFMT_NPY, all_npy[i], 1, d1);
        round_trip(OPT_TFMT_NPY, all_npy[i], 0, d0); /* a scalar */
        round_trip(OPT_TFMT_NPY, all_npy[i], 1, d0); /* empty */
    }
}

Test(tensorfile_pb, every_dtype_round_trips_through_raw_data)
{
    int64_t d[] = {3, 4};
    const int dts[] = {OPT_DT_FLOAT, OPT_DT_DOUBLE, OPT_DT_FLOAT16, OPT_DT_BFLOAT16, OPT_DT_INT8,
                       OPT_DT_UINT8, OPT_DT_INT16, OPT_DT_INT32, OPT_DT_INT64, OPT_DT_UINT16,
                       OPT_DT_UINT32, OPT_DT_UINT64, OPT_DT_BOOL, OPT_DT_FLOAT8E4M3FN, OPT_DT_INT4};
    for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) round_trip(OPT_TFMT_PB, dts[i], 2, d);
}

Test(tensorfile_idx, its_six_types_round_trip_with_big_endian_storage)
{
    int64_t d[] = {4, 3, 2};
    const int dts[] = {OPT_DT_UINT8, OPT_DT_INT8, OPT_DT_INT16, OPT_DT_INT32, OPT_DT_FLOAT, OPT_DT_DOUBLE};
    for (size_t i = 0; i < 6; i++) round_trip(OPT_TFMT_IDX, dts[i], 3, d);
    /* The stored bytes are big-endian: int32 1 is 00 00 00 01. */
    int32_t one = 1;
    opt_array a = {.dtype = OPT_DT_INT32, .ndim = 1, .dims = {1}, .data = &one, .nbytes = 4};
    uint8_t *buf;
    size_t len;
    opt_error e;
    cr_assert_eq(opt_tensorfile_serialize(&a, OPT_TFMT_IDX, NULL, &buf, &len, &e), OPT_OK);
    const uint8_t want[] = {0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    cr_assert_eq(len, sizeof want);
    cr_assert(memcmp(buf, want, len) == 0);
    free(buf);
}

Test(tensorfile_csv, floats_round_trip_exactly_through_text)
{
    int64_t d[] = {5, 7};
    opt_array a = random_array(OPT_DT_FLOAT, 2, d), b, c;
    float *f = a.data;
    for (int i = 0; i < 35; i++) f[i] = (float)((double)(int64_t)rnd() / 9.2e18 * 1e3);
    uint8_t *buf;
    size_t len;
    opt_error e;
    cr_assert_eq(opt_tensorfile_serialize(&a, OPT_TFMT_CSV, NULL, &buf, &len, &e), OPT_OK);
    cr_assert_eq(opt_tensorfile_parse(buf, len, OPT_TFMT_CSV, &b, NULL, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(b.dtype, OPT_DT_DOUBLE);
    cr_assert_eq(b.ndim, 2);
    cr_assert_eq(b.dims[0], 5);
    cr_assert_eq(b.dims[1], 7);
    cr_assert_eq(opt_tensorfile_convert(&b, OPT_DT_FLOAT, &c, &e), OPT_OK);
    assert_same(&a, &c);
    free(a.data);
    free(b.data);
    free(c.data);
    free(buf);
}

Test(tensorfile_csv, a_header_row_is_skipped_and_one_row_is_one_dimensional)
{
    const char *s = "a,\"b\",c\r\n1, 2.5 ,\"-3e2\"\r\n";
    opt_array a;
    opt_error e;
    cr_assert_eq(opt_tensorfile_parse((const uint8_t *)s, strlen(s), OPT_TFMT_CSV, &a, NULL, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(a.ndim, 1);
    cr_assert_eq(a.dims[0], 3);
    const double *v = a.data;
    cr_assert_eq(v[0], 1.0);
    cr_assert_eq(v[1], 2.5);
    cr_assert_eq(v[2], -300.0);
    free(a.data);
}

Test(tensorfile_csv, non_numbers_ragged_rows_and_empty_fields_are_refused_naming_the_row)
{
    const struct { const char *text, *msg; } bad[] = {
        {"1,2\n3,x\n", "row 2, column 2: 'x' is not a number"},
        {"1,2\n3\n", "row 2 has 1 fields, earlier rows have 2"},
        {"1,2\n3,\n", "row 2, column 2"},
        {"a,b\n", "no rows of numbers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        opt_array a;
        opt_error e = {0};
        cr_assert_neq(opt_tensorfile_parse((const uint8_t *)bad[i].text, strlen(bad[i].text), OPT_TFMT_CSV, &a, NULL, &e),
                      OPT_OK, "accepted %s", bad[i].text);
        cr_assert(strstr(e.msg, bad[i].msg), "message '%s' lacks '%s'", e.msg, bad[i].msg);
    }
}

Test(tensorfile_pb, onnx_backend_test_data_reads_with_its_name_and_shape)
{
    opt_array a;
    char *name = NULL;
    opt_error e;
    const char *p = "/usr/share/libonnx-testdata/data/node/test_relu/test_data_set_0/input_0.pb";
    cr_assert_eq(opt_tensorfile_read(p, OPT_TFMT_AUTO, &a, &name, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(a.dtype, OPT_DT_FLOAT);
    cr_assert_eq(a.ndim, 3);
    cr_assert_eq(a.dims[0], 3);
    cr_assert_eq(a.dims[1], 4);
    cr_assert_eq(a.dims[2], 5);
    cr_assert_eq(a.nbytes, 240);
    cr_assert_str_eq(name, "x");
    free(name);
    free(a.data);
}

/* Packs a TensorProto with typed fields. */
static uint8_t *pack_typed(int dtype, const int64_t *dims, size_t nd, int32_t *i32, size_t n32,
                           int64_t *i64, size_t n64, size_t *len)
{
    Onnx__TensorProto p;
    onnx__tensor_proto__init(&p);
    p.n_dims = nd;
    p.dims = (int64_t *)dims;
    p.has_data_type = 1;
    p.data_type = dtype;
    p.n_int32_data = n32;
    p.int32_data = i32;
    p.n_int64_data = n64;
    p.int64_data = i64;
    *len = onnx__tensor_proto__get_packed_size(&p);
    uint8_t *b = malloc(*len);
    onnx__tensor_proto__pack(&p, b);
    return b;
}

Test(tensorfile_pb, typed_fields_hold_int8_float16_and_int64_values)
{
    int64_t d[] = {3};
    int32_t v8[] = {-1, 2, -128};
    size_t len;
    opt_array a;
    opt_error e;
    uint8_t *b = pack_typed(OPT_DT_INT8, d, 1, v8, 3, NULL, 0, &len);
    cr_assert_eq(opt_tensorfile_parse(b, len, OPT_TFMT_PB, &a, NULL, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(((int8_t *)a.data)[0], -1);
    cr_assert_eq(((int8_t *)a.data)[2], -128);
    free(a.data);
    free(b);
    int32_t h[] = {0x3C00, 0xC000, 0x7C00}; /* 1, -2, inf */
    b = pack_typed(OPT_DT_FLOAT16, d, 1, h, 3, NULL, 0, &len);
    cr_assert_eq(opt_tensorfile_parse(b, len, OPT_TFMT_PB, &a, NULL, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(((uint16_t *)a.data)[1], 0xC000);
    free(a.data);
    free(b);
    int64_t l[] = {INT64_MIN, 0, INT64_MAX};
    b = pack_typed(OPT_DT_INT64, d, 1, NULL, 0, l, 3, &len);
    cr_assert_eq(opt_tensorfile_parse(b, len, OPT_TFMT_PB, &a, NULL, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(((int64_t *)a.data)[0], INT64_MIN);
    free(a.data);
    free(b);
    /* Too few values for the dims. */
    b = pack_typed(OPT_DT_INT64, d, 1, NULL, 0, l, 2, &len);
    cr_assert_eq(opt_tensorfile_parse(b, len, OPT_TFMT_PB, &a, NULL, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "int64_data holds 2 values, dims call for 3"), "%s", e.msg);
    free(b);
    /* Dims far beyond what the message could hold are refused before allocating. */
    int64_t huge[] = {1ll << 40};
    b = pack_typed(OPT_DT_INT64, huge, 1, NULL, 0, l, 3, &len);
    cr_assert_eq(opt_tensorfile_parse(b, len, OPT_TFMT_PB, &a, NULL, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "dims call for 1099511627776 values"), "%s", e.msg);
    free(b);
}

Test(tensorfile_npy, version_2_and_big_endian_headers_are_read)
{
    /* v2: 4-byte header length; '>i4' data swapped to native order. */
    const char *h = "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }";
    size_t hl = strlen(h) + 1, len = 12 + hl + 8;
    uint8_t *b = malloc(len);
    memcpy(b, "\x93NUMPY\x02\x00", 8);
    b[8] = (uint8_t)hl;
    b[9] = b[10] = b[11] = 0;
    memcpy(b + 12, h, hl - 1);
    b[12 + hl - 1] = '\n';
    const uint8_t data[] = {0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFE};
    memcpy(b + 12 + hl, data, 8);
    opt_array a;
    opt_error e;
    cr_assert_eq(opt_tensorfile_parse(b, len, OPT_TFMT_AUTO, &a, NULL, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(a.dtype, OPT_DT_INT32);
    cr_assert_eq(((int32_t *)a.data)[0], 1);
    cr_assert_eq(((int32_t *)a.data)[1], -2);
    free(a.data);
    free(b);
}

/* Every strict prefix of a valid file must be refused, and nothing may be read past its end. */
static void prefixes_fail(opt_tfmt fmt, int dtype, const char *what)
{
    int64_t d[] = {3, 4, 5};
    opt_array a = random_array(dtype, 3, d), b;
    uint8_t *buf;
    size_t len;
    opt_error e;
    cr_assert_eq(opt_tensorfile_serialize(&a, fmt, "x", &buf, &len, &e), OPT_OK);
    for (size_t k = 0; k < len; k++) {
        uint8_t *cut = malloc(k ? k : 1); /* exact size, so ASan sees any overread */
        memcpy(cut, buf, k);
        opt_status s = opt_tensorfile_parse(cut, k, fmt, &b, NULL, &e);
        cr_assert_neq(s, OPT_OK, "%s: a %zu-byte prefix of %zu bytes was accepted", what, k, len);
        cr_assert(e.msg[0], "%s: empty message", what);
        free(cut);
    }
    free(buf);
    free(a.data);
}

Test(tensorfile_malformed, every_strict_prefix_of_a_valid_file_is_refused)
{
    prefixes_fail(OPT_TFMT_NPY, OPT_DT_FLOAT, "npy");
    prefixes_fail(OPT_TFMT_IDX, OPT_DT_INT16, "idx");
    prefixes_fail(OPT_TFMT_PB, OPT_DT_FLOAT, "pb");
}

static void refused(const void *buf, size_t len, opt_tfmt fmt, const char *msg)
{
    opt_array a;
    opt_error e = {0};
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    cr_assert_neq(opt_tensorfile_parse(copy, len, fmt, &a, NULL, &e), OPT_OK, "accepted: expected '%s'", msg);
    cr_assert(strstr(e.msg, msg), "message '%s' lacks '%s'", e.msg, msg);
    free(copy);
}

/* A v1 .npy with the given header dict and data bytes. */
static uint8_t *npy_with(const char *dict, size_t data, size_t *len)
{
    size_t hl = strlen(dict) + 1;
    *len = 10 + hl + data;
    uint8_t *b = calloc(1, *len);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)(hl & 255);
    b[9] = (uint8_t)(hl >> 8);
    memcpy(b + 10, dict, hl - 1);
    b[10 + hl - 1] = '\n';
    return b;
}

Test(tensorfile_malformed, npy_headers_that_lie_are_refused_with_the_reason)
{
    const struct { const char *dict; size_t data; const char *msg; } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, "header says 24 bytes of float32 data, file has 20"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, "file has 28"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", 0, "shape overflows"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 0, "too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4, "rank is more than 8"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 0, "bad shape entry"},
        {"{'descr': '<f4', 'shape': (1,), }", 4, "lacks 'fortran_order'"},
        {"{'descr': '<U8', 'fortran_order': False, 'shape': (1,), }", 8, "dtype '<U8' is not supported"},
        {"{'descr': 'f4', 'fortran_order': False, 'shape': (1,), }", 4, "dtype 'f4' is not supported"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", 4, "fortran_order=True"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4, "unexpected key 'x'"},
        {"['descr']", 4, "not a dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4, "malformed dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': 1, }", 4, "shape is not a tuple"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len;
        uint8_t *b = npy_with(cases[i].dict, cases[i].data, &len);
        refused(b, len, OPT_TFMT_NPY, cases[i].msg);
        free(b);
    }
    refused("\x93NUMPZ\x01\x00\x00\x00", 10, OPT_TFMT_NPY, "bad magic");
    refused("\x93NUMPY\x04\x00\x00\x00\x00\x00", 12, OPT_TFMT_NPY, "version 4.0 is not supported");
    refused("\x93NUMPY\x01\x00\xff\x00{", 11, OPT_TFMT_NPY, "header says 265 bytes, file has 11");
}

Test(tensorfile_malformed, idx_headers_that_lie_are_refused_with_the_reason)
{
    refused("\x01\x00\x08\x01\x00\x00\x00\x01\x05", 9, OPT_TFMT_IDX, "bad magic");
    refused("\x00\x00\x0a\x01\x00\x00\x00\x01\x05", 9, OPT_TFMT_IDX, "type code 0x0a is unknown");
    refused("\x00\x00\x08\x00", 4, OPT_TFMT_IDX, "rank 0 is not in 1..8");
    refused("\x00\x00\x08\x09", 4, OPT_TFMT_IDX, "rank 9 is not in 1..8");
    refused("\x00\x00\x08\x02\x00\x00\x00\x02", 8, OPT_TFMT_IDX, "header is truncated");
    refused("\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", 10, OPT_TFMT_IDX, "header says 3 bytes of uint8 data, file has 2");
    refused("\x00\x00\x0e\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16, OPT_TFMT_IDX, "IDX dims overflow");
}

Test(tensorfile_malformed, gzip_data_that_is_cut_or_corrupt_is_refused)
{
    int64_t d[] = {50, 20};
    opt_array a = random_array(OPT_DT_UINT8, 2, d), b;
    uint8_t *raw;
    size_t rawlen;
    opt_error e;
    cr_assert_eq(opt_tensorfile_serialize(&a, OPT_TFMT_IDX, NULL, &raw, &rawlen, &e), OPT_OK);
    /* gzip it with zlib (windowBits 31). */
    uLongf cap = compressBound((uLong)rawlen) + 64;
    uint8_t *gz = malloc(cap);
    z_stream z = {0};
    cr_assert_eq(deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = raw;
    z.avail_in = (uInt)rawlen;
    z.next_out = gz;
    z.avail_out = (uInt)cap;
    cr_assert_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t gzlen = z.total_out;
    deflateEnd(&z);
    cr_assert_eq(opt_tensorfile_parse(gz, gzlen, OPT_TFMT_AUTO, &b, NULL, &e), OPT_OK, "%s", e.msg);
    assert_same(&a, &b);
    free(b.data);
    refused(gz, gzlen / 2, OPT_TFMT_AUTO, "gzip data is truncated");
    gz[gzlen / 2] ^= 0x55;
    gz[gzlen / 2 + 1] ^= 0xAA;
    opt_status s = opt_tensorfile_parse(gz, gzlen, OPT_TFMT_AUTO, &b, NULL, &e);
    if (s == OPT_OK) { /* a flip may still inflate; then the CRC check must have failed ... */
        free(b.data);
        cr_assert_fail("corrupted gzip accepted");
    }
    free(gz);
    free(raw);
    free(a.data);
}

Test(tensorfile_malformed, random_bytes_never_crash_any_reader)
{
    const opt_tfmt fmts[] = {OPT_TFMT_AUTO, OPT_TFMT_PB, OPT_TFMT_NPY, OPT_TFMT_CSV, OPT_TFMT_IDX};
    for (int it = 0; it < 3000; it++) {
        size_t len = rnd() % 96;
        uint8_t *b = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) b[i] = (uint8_t)rnd();
        /* Give the binary formats a valid start now and then so their later checks are reached. */
        if (it % 3 == 1 && len >= 4) memcpy(b, "\x00\x00\x08\x02", 4);
        if (it % 3 == 2 && len >= 10) memcpy(b, "\x93NUMPY\x01\x00", 8);
        opt_array a;
        opt_error e;
        if (opt_tensorfile_parse(b, len, fmts[it % 5], &a, NULL, &e) == OPT_OK) {
            uint64_t n = 1;
            for (int d = 0; d < a.ndim; d++) n *= (uint64_t)a.dims[d];
            size_t want;
            cr_assert(opt_tensorfile_nbytes(a.dtype, n, &want) && want == a.nbytes,
                      "accepted tensor whose dims do not match its bytes");
            free(a.data);
        }
        free(b);
    }
}

Test(tensorfile_convert, floats_round_to_nearest_even_and_integers_saturate)
{
    float src[] = {1.0f, 65520.0f, -1e9f, NAN, 300.7f, -0.5f};
    opt_array a = {.dtype = OPT_DT_FLOAT, .ndim = 1, .dims = {6}, .data = src, .nbytes = sizeof src}, b;
    opt_error e;
    cr_assert_eq(opt_tensorfile_convert(&a, OPT_DT_FLOAT16, &b, &e), OPT_OK);
    uint16_t *h = b.data;
    cr_assert_eq(h[0], 0x3C00);
    cr_assert_eq(h[1], 0x7C00, "65520 rounds to +inf in float16");
    free(b.data);
    cr_assert_eq(opt_tensorfile_convert(&a, OPT_DT_INT8, &b, &e), OPT_OK);
    int8_t *i8 = b.data;
    cr_assert_eq(i8[0], 1);
    cr_assert_eq(i8[1], 127);
    cr_assert_eq(i8[2], -128);
    cr_assert_eq(i8[3], 0, "NaN becomes 0");
    cr_assert_eq(i8[4], 127);
    cr_assert_eq(i8[5], 0, "truncation toward zero");
    free(b.data);
    uint64_t big[] = {UINT64_MAX};
    opt_array u = {.dtype = OPT_DT_UINT64, .ndim = 1, .dims = {1}, .data = big, .nbytes = 8};
    cr_assert_eq(opt_tensorfile_convert(&u, OPT_DT_INT64, &b, &e), OPT_OK);
    cr_assert_eq(((int64_t *)b.data)[0], INT64_MAX, "uint64 beyond int64 saturates");
    free(b.data);
    opt_array s = {.dtype = OPT_DT_STRING, .ndim = 1, .dims = {1}};
    cr_assert_eq(opt_tensorfile_convert(&s, OPT_DT_FLOAT, &b, &e), OPT_ERR_UNSUPPORTED);
}

Test(tensorfile_names, formats_are_guessed_from_names_through_gz)
{
    cr_assert_eq(opt_tfmt_from_name("a/b/input_0.pb"), OPT_TFMT_PB);
    cr_assert_eq(opt_tfmt_from_name("x.NPY"), OPT_TFMT_NPY);
    cr_assert_eq(opt_tfmt_from_name("x.csv"), OPT_TFMT_CSV);
    cr_assert_eq(opt_tfmt_from_name("t10k-images-idx3-ubyte.gz"), OPT_TFMT_IDX);
    cr_assert_eq(opt_tfmt_from_name("train-labels-idx1-ubyte"), OPT_TFMT_IDX);
    cr_assert_eq(opt_tfmt_from_name("x.npy.gz"), OPT_TFMT_NPY);
    cr_assert_eq(opt_tfmt_from_name("data.bin"), OPT_TFMT_AUTO);
}
