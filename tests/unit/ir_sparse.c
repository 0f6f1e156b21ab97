/*
 * tests/unit/ir_sparse.c — sparse tensors (libopt/ir/sparse.c): dense -> sparse -> dense is exact,
 * [NNZ, rank] coordinate indices give the same tensor as linear ones, fp16 values kept in
 * int32_data are expanded, and bad indices (out of range, repeated, decreasing) are refused with
 * the tensor's name.
 */
#include "libopt/ir/ir.h"

#include <criterion/criterion.h>
#include <string.h>

static opt_tensor *mk(const char *name, int dt, const int64_t *dims, size_t nd, const void *p, size_t n)
{
    opt_tensor *t = opt_tensor_new();
    if (name) t->name = opt_strdup(name);
    t->has_data_type = true;
    t->data_type = dt;
    cr_assert_eq(opt_tensor_set_dims(t, dims, nd, NULL), OPT_OK);
    if (p) cr_assert_eq(opt_tensor_set_raw(t, dt, p, n, NULL), OPT_OK);
    return t;
}

static opt_sparse_tensor *mk_sparse(const float *v, size_t nnz, const int64_t *idx, size_t rank,
                                    const int64_t *dims, size_t nd)
{
    opt_sparse_tensor *s = calloc(1, sizeof *s);
    int64_t vd = (int64_t)nnz, id[2] = {(int64_t)nnz, (int64_t)rank};
    s->values = mk("w", OPT_DT_FLOAT, &vd, 1, v, nnz * 4);
    s->indices = mk(NULL, OPT_DT_INT64, id, rank ? 2 : 1, idx, nnz * (rank ? rank : 1) * 8);
    s->dims = malloc(nd * sizeof *s->dims);
    memcpy(s->dims, dims, nd * sizeof *dims);
    s->n_dims = nd;
    return s;
}

Test(sparse, dense_to_sparse_to_dense_is_exact)
{
    const float w[6] = {0, 1.5f, 0, -2, 0, 0};
    const int64_t dims[2] = {2, 3};
    opt_tensor *t = mk("w", OPT_DT_FLOAT, dims, 2, w, sizeof w);
    opt_sparse_tensor *s;
    cr_assert_eq(opt_sparse_from_dense(t, &s, NULL), OPT_OK);
    cr_assert_eq(s->values->dims[0], 2);
    size_t len;
    const int64_t *ix = opt_tensor_data(s->indices, &len);
    cr_assert(len == 16 && ix[0] == 1 && ix[1] == 3);
    opt_tensor *d;
    cr_assert_eq(opt_sparse_to_dense(s, &d, NULL), OPT_OK);
    cr_assert_str_eq(d->name, "w");
    cr_assert(d->n_dims == 2 && d->dims[0] == 2 && d->dims[1] == 3);
    cr_assert(d->raw_data.len == sizeof w && memcmp(d->raw_data.data, w, sizeof w) == 0);
    opt_tensor_free(t);
    opt_tensor_free(d);
    opt_sparse_tensor_free(s);
}

Test(sparse, coordinate_indices_equal_linear_ones)
{
    const float v[3] = {1, 2, 3};
    const int64_t dims[2] = {3, 4}, lin[3] = {1, 6, 11}, co[6] = {0, 1, 1, 2, 2, 3};
    opt_sparse_tensor *a = mk_sparse(v, 3, lin, 0, dims, 2), *b = mk_sparse(v, 3, co, 2, dims, 2);
    opt_tensor *da, *db;
    cr_assert_eq(opt_sparse_to_dense(a, &da, NULL), OPT_OK);
    cr_assert_eq(opt_sparse_to_dense(b, &db, NULL), OPT_OK);
    cr_assert(da->raw_data.len == 48 && memcmp(da->raw_data.data, db->raw_data.data, 48) == 0);
    cr_assert_eq(((float *)da->raw_data.data)[11], 3.0f);
    opt_tensor_free(da);
    opt_tensor_free(db);
    opt_sparse_tensor_free(a);
    opt_sparse_tensor_free(b);
}

Test(sparse, half_values_in_int32_data_are_expanded)
{
    const int64_t dims[1] = {4}, one = 1, idx[1] = {2};
    opt_sparse_tensor *s = mk_sparse((const float[]){0}, 1, idx, 0, dims, 1);
    opt_tensor_free(s->values);
    s->values = mk("h", OPT_DT_FLOAT16, &one, 1, NULL, 0);
    s->values->int32_data = malloc(sizeof(int32_t));
    s->values->int32_data[0] = opt_f32_to_f16(-0.5f);
    s->values->n_int32_data = 1;
    opt_tensor *d;
    cr_assert_eq(opt_sparse_to_dense(s, &d, NULL), OPT_OK);
    const uint16_t *h = (const uint16_t *)d->raw_data.data;
    cr_assert(d->raw_data.len == 8 && h[0] == 0 && h[2] == opt_f32_to_f16(-0.5f));
    opt_tensor_free(d);
    opt_sparse_tensor_free(s);
}

static void expect_refused(const int64_t *idx, size_t nnz, const char *what)
{
    const float v[3] = {1, 2, 3};
    const int64_t dims[1] = {5};
    opt_sparse_tensor *s = mk_sparse(v, nnz, idx, 0, dims, 1);
    opt_tensor *d = NULL;
    opt_error e = {0};
    cr_assert_eq(opt_sparse_to_dense(s, &d, &e), OPT_ERR_INVALID);
    cr_assert_null(d);
    cr_assert(strstr(e.msg, "sparse tensor 'w'") && strstr(e.msg, what), "%s", e.msg);
    opt_sparse_tensor_free(s);
}

Test(sparse, bad_indices_are_refused_with_the_tensor_name)
{
    expect_refused((const int64_t[]){0, 5, 1}, 3, "out of range");
    expect_refused((const int64_t[]){-1, 2, 3}, 3, "out of range");
    expect_refused((const int64_t[]){1, 1, 2}, 3, "increasing order");
    expect_refused((const int64_t[]){3, 2, 4}, 3, "increasing order");
}
