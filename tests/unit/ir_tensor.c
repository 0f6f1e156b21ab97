/*
 * tests/unit/ir_tensor.c — typed access to tensor data (libopt/ir/tensor.c): every dtype reads
 * the same values from raw_data and from its typed field (float_data, int32_data, int64_data,
 * double_data, uint64_data, packed 4-bit), opt_tensor_set_f32 rounds and saturates, and
 * opt_tensor_check names the tensor when data and shape disagree or dims are absurd.
 */
#include "libopt/ir/ir.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static opt_tensor *mk(const char *name, int dt, const int64_t *dims, size_t nd)
{
    opt_tensor *t = opt_tensor_new();
    t->name = opt_strdup(name);
    t->has_data_type = true;
    t->data_type = dt;
    cr_assert_eq(opt_tensor_set_dims(t, dims, nd, NULL), OPT_OK);
    return t;
}

static void *dupmem(const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    memcpy(q, p, n);
    return q;
}

static void raw(opt_tensor *t, const void *p, size_t n)
{
    t->has_raw_data = true;
    t->raw_data.data = dupmem(p, n);
    t->raw_data.len = n;
}

static void expect(const opt_tensor *t, const float *want, size_t n)
{
    float *got = NULL;
    uint64_t k = 0;
    opt_error err = {0};
    cr_assert_eq(opt_tensor_to_f32_alloc(t, &got, &k, &err), OPT_OK, "%s: %s", t->name, err.msg);
    cr_assert_eq(k, n, "%s: %llu elements", t->name, (unsigned long long)k);
    for (size_t i = 0; i < n; i++)
        cr_assert(got[i] == want[i] || (isnan(got[i]) && isnan(want[i])), "%s[%zu]: got %g want %g", t->name, i,
                  got[i], want[i]);
    free(got);
}

static const int64_t D4[1] = {4};

Test(ir_tensor, float_from_raw_and_from_float_data)
{
    const float v[4] = {1.5f, -2.0f, 0.0f, 3e38f};
    opt_tensor *a = mk("raw", OPT_DT_FLOAT, D4, 1), *b = mk("typed", OPT_DT_FLOAT, D4, 1);
    raw(a, v, sizeof v);
    b->float_data = dupmem(v, sizeof v);
    b->n_float_data = 4;
    expect(a, v, 4);
    expect(b, v, 4);
    size_t len;
    cr_assert(opt_tensor_data(a, &len) && len == 16);
    cr_assert(opt_tensor_data(b, &len) == b->float_data && len == 16, "typed FLOAT data is contiguous");
    opt_tensor_free(a);
    opt_tensor_free(b);
}

Test(ir_tensor, integers_from_raw_and_from_int32_data)
{
    const float want_s[4] = {-128, -1, 0, 127}, want_u[4] = {0, 1, 200, 255};
    const int8_t i8[4] = {-128, -1, 0, 127};
    const uint8_t u8[4] = {0, 1, 200, 255};
    const int32_t w_s[4] = {-128, -1, 0, 127}, w_u[4] = {0, 1, 200, 255};
    opt_tensor *t;
    t = mk("i8raw", OPT_DT_INT8, D4, 1), raw(t, i8, 4), expect(t, want_s, 4), opt_tensor_free(t);
    t = mk("u8raw", OPT_DT_UINT8, D4, 1), raw(t, u8, 4), expect(t, want_u, 4), opt_tensor_free(t);
    t = mk("i8typed", OPT_DT_INT8, D4, 1);
    t->int32_data = dupmem(w_s, sizeof w_s), t->n_int32_data = 4, expect(t, want_s, 4), opt_tensor_free(t);
    t = mk("u8typed", OPT_DT_UINT8, D4, 1);
    t->int32_data = dupmem(w_u, sizeof w_u), t->n_int32_data = 4, expect(t, want_u, 4), opt_tensor_free(t);

    const int16_t i16[4] = {-32768, -1, 0, 32767};
    const float want16[4] = {-32768, -1, 0, 32767};
    t = mk("i16raw", OPT_DT_INT16, D4, 1), raw(t, i16, 8), expect(t, want16, 4), opt_tensor_free(t);
    const int32_t w16[4] = {-32768, -1, 0, 32767};
    t = mk("i16typed", OPT_DT_INT16, D4, 1);
    t->int32_data = dupmem(w16, sizeof w16), t->n_int32_data = 4, expect(t, want16, 4), opt_tensor_free(t);
    const uint16_t u16[4] = {0, 1, 40000, 65535};
    const float wantu16[4] = {0, 1, 40000, 65535};
    t = mk("u16raw", OPT_DT_UINT16, D4, 1), raw(t, u16, 8), expect(t, wantu16, 4), opt_tensor_free(t);

    const int32_t i32[4] = {-7, 0, 16777216, 2147483647};
    const float want32[4] = {-7, 0, 16777216, 2147483648.0f};
    t = mk("i32raw", OPT_DT_INT32, D4, 1), raw(t, i32, 16), expect(t, want32, 4), opt_tensor_free(t);
    t = mk("i32typed", OPT_DT_INT32, D4, 1);
    t->int32_data = dupmem(i32, sizeof i32), t->n_int32_data = 4, expect(t, want32, 4), opt_tensor_free(t);

    const int32_t bools[4] = {0, 1, 1, 0};
    const uint8_t braw[4] = {0, 1, 1, 0};
    const float wantb[4] = {0, 1, 1, 0};
    t = mk("braw", OPT_DT_BOOL, D4, 1), raw(t, braw, 4), expect(t, wantb, 4), opt_tensor_free(t);
    t = mk("btyped", OPT_DT_BOOL, D4, 1);
    t->int32_data = dupmem(bools, sizeof bools), t->n_int32_data = 4, expect(t, wantb, 4), opt_tensor_free(t);
}

Test(ir_tensor, wide_integers_and_double_from_every_field)
{
    const int64_t i64[4] = {-5, 0, 1LL << 40, INT64_MIN};
    const float want64[4] = {-5, 0, 1099511627776.0f, -9223372036854775808.0f};
    opt_tensor *t = mk("i64raw", OPT_DT_INT64, D4, 1);
    raw(t, i64, 32), expect(t, want64, 4), opt_tensor_free(t);
    t = mk("i64typed", OPT_DT_INT64, D4, 1);
    t->int64_data = dupmem(i64, sizeof i64), t->n_int64_data = 4, expect(t, want64, 4), opt_tensor_free(t);

    const uint64_t u64[4] = {0, 3, 1ULL << 63, UINT64_MAX};
    const float wantu64[4] = {0, 3, 9223372036854775808.0f, 18446744073709551616.0f};
    t = mk("u64raw", OPT_DT_UINT64, D4, 1), raw(t, u64, 32), expect(t, wantu64, 4), opt_tensor_free(t);
    t = mk("u64typed", OPT_DT_UINT64, D4, 1);
    t->uint64_data = dupmem(u64, sizeof u64), t->n_uint64_data = 4, expect(t, wantu64, 4), opt_tensor_free(t);

    const uint32_t u32[4] = {0, 7, 1u << 31, UINT32_MAX};
    const uint64_t u32w[4] = {0, 7, 1u << 31, UINT32_MAX};
    const float wantu32[4] = {0, 7, 2147483648.0f, 4294967296.0f};
    t = mk("u32raw", OPT_DT_UINT32, D4, 1), raw(t, u32, 16), expect(t, wantu32, 4), opt_tensor_free(t);
    t = mk("u32typed", OPT_DT_UINT32, D4, 1);
    t->uint64_data = dupmem(u32w, sizeof u32w), t->n_uint64_data = 4, expect(t, wantu32, 4), opt_tensor_free(t);

    const double d[4] = {0.1, -1e300, 1e-300, NAN};
    const float wantd[4] = {0.1f, -INFINITY, 0.0f, NAN};
    t = mk("draw", OPT_DT_DOUBLE, D4, 1), raw(t, d, 32), expect(t, wantd, 4), opt_tensor_free(t);
    t = mk("dtyped", OPT_DT_DOUBLE, D4, 1);
    t->double_data = dupmem(d, sizeof d), t->n_double_data = 4, expect(t, wantd, 4), opt_tensor_free(t);
}

Test(ir_tensor, half_precision_and_float8_from_raw_and_from_int32_data)
{
    const uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7c00}; /* 1, -2, 2^-24, inf */
    const int32_t hw[4] = {0x3c00, 0xc000, 0x0001, 0x7c00};
    const float wanth[4] = {1, -2, 0x1p-24f, INFINITY};
    opt_tensor *t = mk("f16raw", OPT_DT_FLOAT16, D4, 1);
    raw(t, h, 8), expect(t, wanth, 4), opt_tensor_free(t);
    t = mk("f16typed", OPT_DT_FLOAT16, D4, 1);
    t->int32_data = dupmem(hw, sizeof hw), t->n_int32_data = 4, expect(t, wanth, 4), opt_tensor_free(t);

    const uint16_t b[4] = {0x3f80, 0xc040, 0x0001, 0x7fc0}; /* 1, -3, 2^-133, NaN */
    const int32_t bw[4] = {0x3f80, 0xc040, 0x0001, 0x7fc0};
    const float wantb[4] = {1, -3, 0x1p-133f, NAN};
    t = mk("bf16raw", OPT_DT_BFLOAT16, D4, 1), raw(t, b, 8), expect(t, wantb, 4), opt_tensor_free(t);
    t = mk("bf16typed", OPT_DT_BFLOAT16, D4, 1);
    t->int32_data = dupmem(bw, sizeof bw), t->n_int32_data = 4, expect(t, wantb, 4), opt_tensor_free(t);

    const uint8_t f8[4] = {0x38, 0xb8, 0x7e, 0x01}; /* e4m3fn: 1, -1, 448, 2^-9 */
    const int32_t f8w[4] = {0x38, 0xb8, 0x7e, 0x01};
    const float want8[4] = {1, -1, 448, 0x1p-9f};
    t = mk("f8raw", OPT_DT_FLOAT8E4M3FN, D4, 1), raw(t, f8, 4), expect(t, want8, 4), opt_tensor_free(t);
    t = mk("f8typed", OPT_DT_FLOAT8E4M3FN, D4, 1);
    t->int32_data = dupmem(f8w, sizeof f8w), t->n_int32_data = 4, expect(t, want8, 4), opt_tensor_free(t);
}

Test(ir_tensor, four_bit_types_unpack_low_nibble_first_with_odd_counts)
{
    const int64_t d5[1] = {5};
    const uint8_t packed[3] = {0x21, 0xf8, 0x07}; /* nibbles 1,2,8,15,7 */
    const float want_u[5] = {1, 2, 8, 15, 7}, want_s[5] = {1, 2, -8, -1, 7};
    opt_tensor *t = mk("u4", OPT_DT_UINT4, d5, 1);
    raw(t, packed, 3), expect(t, want_u, 5), opt_tensor_free(t);
    t = mk("i4", OPT_DT_INT4, d5, 1), raw(t, packed, 3), expect(t, want_s, 5), opt_tensor_free(t);
    const int32_t w[3] = {0x21, 0xf8, 0x07};
    t = mk("i4typed", OPT_DT_INT4, d5, 1);
    t->int32_data = dupmem(w, sizeof w), t->n_int32_data = 3, expect(t, want_s, 5), opt_tensor_free(t);
    /* set_f32 packs them back the same way. */
    t = mk("i4set", OPT_DT_INT4, d5, 1);
    cr_assert_eq(opt_tensor_set_f32(t, OPT_DT_INT4, want_s, 5, NULL), OPT_OK);
    cr_assert(t->raw_data.len == 3 && memcmp(t->raw_data.data, packed, 3) == 0, "packed %02x %02x %02x",
              t->raw_data.data[0], t->raw_data.data[1], t->raw_data.data[2]);
    opt_tensor_free(t);
}

Test(ir_tensor, set_f32_rounds_to_nearest_even_and_saturates)
{
    const float src[6] = {2.5f, 3.5f, -2.5f, 300.0f, -300.0f, NAN};
    opt_tensor *t = mk("q", OPT_DT_FLOAT, (int64_t[]){6}, 1);
    cr_assert_eq(opt_tensor_set_f32(t, OPT_DT_UINT8, src, 6, NULL), OPT_OK);
    const uint8_t wu8[6] = {2, 4, 0, 255, 0, 0};
    cr_assert(t->data_type == OPT_DT_UINT8 && memcmp(t->raw_data.data, wu8, 6) == 0);
    cr_assert_eq(opt_tensor_set_f32(t, OPT_DT_INT8, src, 6, NULL), OPT_OK);
    const int8_t wi8[6] = {2, 4, -2, 127, -128, 0};
    cr_assert(memcmp(t->raw_data.data, wi8, 6) == 0);
    cr_assert_eq(opt_tensor_set_f32(t, OPT_DT_FLOAT16, src, 6, NULL), OPT_OK);
    uint16_t h[6];
    memcpy(h, t->raw_data.data, 12);
    cr_assert(h[0] == 0x4100 && h[3] == 0x5cb0 && (h[5] & 0x7c00) == 0x7c00 && (h[5] & 0x3ff));
    const float big[3] = {1e19f, 3e19f, -1.0f};
    cr_assert_eq(opt_tensor_set_f32(t, OPT_DT_UINT64, big, 3, NULL), OPT_OK);
    uint64_t u[3];
    memcpy(u, t->raw_data.data, 24);
    cr_assert_eq(u[0], (uint64_t)1e19f, "uint64 holds 1e19: got %llu", (unsigned long long)u[0]);
    cr_assert_eq(u[1], UINT64_MAX, "beyond 2^64 saturates");
    cr_assert_eq(u[2], 0);
    const float big64[2] = {1e19f, -1e19f};
    cr_assert_eq(opt_tensor_set_f32(t, OPT_DT_INT64, big64, 2, NULL), OPT_OK);
    int64_t s[2];
    memcpy(s, t->raw_data.data, 16);
    cr_assert(s[0] == INT64_MAX && s[1] == INT64_MIN, "int64 saturates: %lld %lld", (long long)s[0], (long long)s[1]);
    opt_error err = {0};
    cr_assert_eq(opt_tensor_set_f32(t, OPT_DT_STRING, src, 1, &err), OPT_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "'q'"), "names the tensor: %s", err.msg);
    opt_tensor_free(t);
}

Test(ir_tensor, set_f32_replaces_every_storage_form)
{
    opt_tensor *t = mk("w", OPT_DT_FLOAT, D4, 1);
    t->float_data = calloc(4, sizeof(float));
    t->n_float_data = 4;
    const float v[4] = {1, 2, 3, 4};
    cr_assert_eq(opt_tensor_set_f32(t, OPT_DT_FLOAT, v, 4, NULL), OPT_OK);
    cr_assert(t->has_raw_data && t->raw_data.len == 16 && t->n_float_data == 0 && !t->float_data);
    expect(t, v, 4);
    opt_tensor_free(t);
}

Test(ir_tensor, check_names_the_tensor_and_what_disagrees)
{
    opt_error err = {0};
    opt_tensor *t = mk("W", OPT_DT_FLOAT, (int64_t[]){2, 3}, 2);
    raw(t, "01234567890123456789", 20);
    cr_assert_eq(opt_tensor_check(t, &err), OPT_ERR_INVALID);
    cr_assert_str_eq(err.msg, "tensor 'W': raw_data has 20 bytes, shape and FLOAT need 24");
    opt_tensor_free(t);

    t = mk("V", OPT_DT_INT64, (int64_t[]){3}, 1);
    t->int64_data = calloc(2, 8), t->n_int64_data = 2;
    cr_assert_eq(opt_tensor_check(t, &err), OPT_ERR_INVALID);
    cr_assert_str_eq(err.msg, "tensor 'V': holds 2 values, shape needs 3");
    opt_tensor_free(t);

    t = mk("N", OPT_DT_FLOAT, (int64_t[]){-1, 3}, 2);
    cr_assert_eq(opt_tensor_check(t, &err), OPT_ERR_INVALID);
    cr_assert(strstr(err.msg, "tensor 'N': negative or overflowing dims"), "%s", err.msg);
    uint64_t n;
    cr_assert(!opt_tensor_numel(t, &n));
    opt_tensor_free(t);

    t = mk("H", OPT_DT_FLOAT, (int64_t[]){1LL << 31, 1LL << 31}, 2);
    cr_assert_eq(opt_tensor_check(t, &err), OPT_ERR_LIMIT, "2^62 elements: a limit, before any allocation");
    cr_assert(strstr(err.msg, "tensor 'H': 4611686018427387904 elements"), "%s", err.msg);
    cr_assert(opt_tensor_numel(t, &n) && n == 1ULL << 62);
    float *p;
    cr_assert_neq(opt_tensor_to_f32_alloc(t, &p, &n, &err), OPT_OK, "no 16 EiB allocation");
    opt_tensor_free(t);

    t = mk("O", OPT_DT_FLOAT, (int64_t[]){1LL << 32, 1LL << 32, 1LL << 32}, 3);
    cr_assert(!opt_tensor_numel(t, &n), "2^96 overflows");
    cr_assert_eq(opt_tensor_check(t, &err), OPT_ERR_INVALID);
    opt_tensor_free(t);

    t = mk("Z", OPT_DT_FLOAT, (int64_t[]){0, 5}, 2);
    cr_assert_eq(opt_tensor_check(t, &err), OPT_OK, "an empty tensor needs no data");
    opt_tensor_free(t);

    t = mk("S", OPT_DT_STRING, D4, 1);
    raw(t, "abcd", 4);
    cr_assert_eq(opt_tensor_check(t, &err), OPT_ERR_INVALID, "string tensors have no raw_data");
    opt_tensor_free(t);

    t = mk("U", 42, D4, 1);
    cr_assert_eq(opt_tensor_check(t, &err), OPT_ERR_INVALID);
    cr_assert(strstr(err.msg, "unknown data type 42"), "%s", err.msg);
    opt_tensor_free(t);
}

Test(ir_tensor, external_and_string_tensors_have_no_float_view)
{
    opt_error err = {0};
    float out[4];
    opt_tensor *t = mk("E", OPT_DT_FLOAT, D4, 1);
    t->has_data_location = true;
    t->data_location = 1;
    cr_assert(opt_tensor_is_external(t));
    cr_assert_eq(opt_tensor_check(t, &err), OPT_OK, "checked when the external data is read");
    cr_assert_neq(opt_tensor_to_f32(t, out, &err), OPT_OK);
    cr_assert(strstr(err.msg, "'E'") && strstr(err.msg, "not loaded"), "%s", err.msg);
    opt_tensor_free(t);
    t = mk("S", OPT_DT_STRING, D4, 1);
    cr_assert_eq(opt_tensor_to_f32(t, out, &err), OPT_ERR_UNSUPPORTED);
    opt_tensor_free(t);
}

Test(ir_tensor, dup_is_deep_and_set_raw_copies)
{
    const float v[4] = {1, 2, 3, 4};
    opt_tensor *t = mk("w", OPT_DT_FLOAT, D4, 1);
    cr_assert_eq(opt_tensor_set_raw(t, OPT_DT_FLOAT, v, sizeof v, NULL), OPT_OK);
    opt_tensor *d = opt_tensor_dup(t);
    cr_assert(d && d->raw_data.data != t->raw_data.data && d->dims != t->dims && d->name != t->name);
    opt_tensor_free(t);
    expect(d, v, 4);
    opt_tensor_free(d);
    opt_tensor_free(NULL);
}
