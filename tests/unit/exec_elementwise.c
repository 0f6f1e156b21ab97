/*
 * tests/unit/exec_elementwise.c — the light CPU kernels (libopt/exec/cpu/{elementwise,shape,
 * reduce}.c): numpy broadcasting over random shapes matches a naive reference (the fast paths —
 * merged dims, contiguous and scalar inner loops, thread splits — give the reference's bits);
 * float16 results are the float32 result rounded once; crafted indices are refused.
 */
#include "kernels_util.h"

/* Naive broadcast index: offset of output index `o` (over out dims) in an input of shape in. */
static uint64_t naive_off(uint64_t o, int ond, const int64_t *od, int ind, const int64_t *id)
{
    uint64_t off = 0, stride = 1;
    for (int d = ond - 1, e = ind - 1; d >= 0; d--, e--) {
        uint64_t i = o % (uint64_t)od[d];
        o /= (uint64_t)od[d];
        if (e >= 0) {
            if (id[e] != 1) off += i * stride;
            stride *= (uint64_t)id[e];
        }
    }
    return off;
}

/* A random shape pair that broadcasts: for each of nd dims, either equal, or one side 1, or
 * the dim missing on one side. */
static void random_pair(kt_rng *r, int *na, int64_t *a, int *nb, int64_t *b, int *no, int64_t *o)
{
    int nd = (int)kt_int(r, 0, 5);
    int64_t full[8];
    for (int d = 0; d < nd; d++) full[d] = kt_int(r, 1, 6);
    *no = nd;
    memcpy(o, full, sizeof(int64_t) * (size_t)nd);
    *na = nd - (int)kt_int(r, 0, nd > 0 ? 1 : 0);
    *nb = nd - (int)kt_int(r, 0, nd > 0 ? 2 < nd ? 2 : nd : 0);
    for (int d = 0; d < *na; d++) a[d] = kt_int(r, 0, 2) == 0 ? 1 : full[nd - *na + d];
    for (int d = 0; d < *nb; d++) b[d] = kt_int(r, 0, 2) == 0 ? 1 : full[nd - *nb + d];
    /* The output is the broadcast of a and b, of rank max(na, nb). */
    *no = *na > *nb ? *na : *nb;
    for (int d = 0; d < *no; d++) {
        int ea = d - (*no - *na), eb = d - (*no - *nb);
        int64_t da = ea >= 0 ? a[ea] : 1, db = eb >= 0 ? b[eb] : 1;
        o[d] = da > db ? da : db;
    }
}

static uint64_t numel(int nd, const int64_t *d)
{
    uint64_t n = 1;
    for (int i = 0; i < nd; i++) n *= (uint64_t)d[i];
    return n;
}

Test(exec_broadcast, binary_ops_match_a_naive_reference_on_random_shapes)
{
    kt_rng r = {42};
    const char *ops[] = {"Add", "Sub", "Mul", "Div", "Max", "Min"};
    for (int trial = 0; trial < 120; trial++) {
        int na, nb, no;
        int64_t a[8], b[8], o[8];
        random_pair(&r, &na, a, &nb, b, &no, o);
        uint64_t n_a = numel(na, a), n_b = numel(nb, b), n_o = numel(no, o);
        float *x = kt_randf(&r, n_a), *y = kt_randf(&r, n_b);
        for (uint64_t i = 0; i < n_b; i++) y[i] += y[i] >= 0 ? 0.5f : -0.5f; /* no division by ~0 */
        const char *op = ops[trial % 6];
        kt_operand in[] = {{"a", OPT_DT_FLOAT, na, {0}, x, false}, {"b", OPT_DT_FLOAT, nb, {0}, y, trial % 4 == 0}};
        memcpy(in[0].dims, a, sizeof a);
        memcpy(in[1].dims, b, sizeof b);
        int odt[] = {OPT_DT_FLOAT};
        opt_model *m = kt_model(op, 13, in, 2, odt, 1);
        opt_array out = {0};
        kt_run(m, 1 + trial % 3, in, 2, &out, 1);
        cr_assert_eq(out.ndim, no, "%s: rank", op);
        for (int d = 0; d < no; d++) cr_assert_eq(out.dims[d], o[d], "%s: dim %d", op, d);
        const float *z = out.data;
        for (uint64_t i = 0; i < n_o; i++) {
            float u = x[naive_off(i, no, o, na, a)], v = y[naive_off(i, no, o, nb, b)], w;
            switch (trial % 6) {
            case 0: w = u + v; break;
            case 1: w = u - v; break;
            case 2: w = u * v; break;
            case 3: w = u / v; break;
            case 4: w = u > v ? u : v; break;
            default: w = u < v ? u : v; break;
            }
            cr_assert_eq(z[i], w, "%s trial %d element %llu", op, trial, (unsigned long long)i);
        }
        opt_array_free(&out);
        opt_model_free(m);
        free(x);
        free(y);
    }
}

Test(exec_broadcast, large_broadcast_split_across_threads_equals_one_thread)
{
    /* [64, 1, 3000] + [1, 50, 1]: the reference is one thread, the fast path three. */
    kt_rng r = {5};
    int64_t da[3] = {64, 1, 3000}, db[3] = {1, 50, 1};
    float *x = kt_randf(&r, 64 * 3000), *y = kt_randf(&r, 50);
    kt_operand in[] = {{"a", OPT_DT_FLOAT, 3, {64, 1, 3000}, x, false}, {"b", OPT_DT_FLOAT, 3, {1, 50, 1}, y, false}};
    (void)da;
    (void)db;
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("Mul", 14, in, 2, odt, 1);
    opt_array one = {0}, three = {0};
    kt_run(m, 1, in, 2, &one, 1);
    kt_run(m, 3, in, 2, &three, 1);
    cr_assert_eq(one.nbytes, (size_t)64 * 50 * 3000 * 4);
    cr_assert(memcmp(one.data, three.data, one.nbytes) == 0);
    cr_assert_eq(((float *)one.data)[(5 * 50 + 7) * 3000 + 11], x[5 * 3000 + 11] * y[7]);
    opt_array_free(&one);
    opt_array_free(&three);
    opt_model_free(m);
    free(x);
    free(y);
}

Test(exec_broadcast, where_broadcasts_three_ways)
{
    uint8_t c[2] = {1, 0};              /* [2] */
    float x[3] = {1, 2, 3};             /* [3, 1] */
    float y = -1;                       /* scalar */
    kt_operand in[] = {{"c", OPT_DT_BOOL, 1, {2}, c, false},
                       {"x", OPT_DT_FLOAT, 2, {3, 1}, x, false},
                       {"y", OPT_DT_FLOAT, 0, {0}, &y, false}};
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("Where", 16, in, 3, odt, 1);
    opt_array out = {0};
    kt_run(m, 1, in, 3, &out, 1);
    cr_assert_eq(out.ndim, 2);
    cr_assert_eq(out.dims[0], 3);
    cr_assert_eq(out.dims[1], 2);
    const float want[6] = {1, -1, 2, -1, 3, -1};
    cr_assert(memcmp(out.data, want, sizeof want) == 0);
    opt_array_free(&out);
    opt_model_free(m);
}

Test(exec_broadcast, incompatible_shapes_fail_naming_the_node)
{
    float x[6] = {0}, y[4] = {0};
    kt_operand in[] = {{"a", OPT_DT_FLOAT, 2, {2, 3}, x, false}, {"b", OPT_DT_FLOAT, 1, {4}, y, false}};
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("Add", 13, in, 2, odt, 1);
    opt_exec_opts o = {.threads = 1};
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "%s", err.msg);
    opt_array a[2] = {{.dtype = OPT_DT_FLOAT, .ndim = 2, .dims = {2, 3}, .data = x, .nbytes = 24},
                      {.dtype = OPT_DT_FLOAT, .ndim = 1, .dims = {4}, .data = y, .nbytes = 16}};
    opt_array out = {0};
    cr_assert_eq(opt_exec_run(e, a, 2, &out, 1, &err), OPT_ERR_INVALID);
    cr_assert(strstr(err.msg, "node 'node' (Add)") && strstr(err.msg, "broadcast"), "%s", err.msg);
    opt_exec_free(e);
    opt_model_free(m);
}

Test(exec_float16, results_are_the_float32_result_rounded_once)
{
    kt_rng r = {9};
    enum { N = 4096 };
    uint16_t a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = opt_f32_to_f16(kt_float(&r) * 8);
        b[i] = opt_f32_to_f16(kt_float(&r) * 8);
    }
    const char *ops[] = {"Add", "Mul", "Sigmoid", "Tanh"};
    for (int k = 0; k < 4; k++) {
        bool unary = k >= 2;
        kt_operand in[] = {{"a", OPT_DT_FLOAT16, 1, {N}, a, false}, {"b", OPT_DT_FLOAT16, 1, {N}, b, false}};
        int odt[] = {OPT_DT_FLOAT16};
        opt_model *m = kt_model(ops[k], 14, in, unary ? 1 : 2, odt, 1);
        opt_array out = {0};
        kt_run(m, 2, in, unary ? 1 : 2, &out, 1);
        cr_assert_eq(out.dtype, OPT_DT_FLOAT16);
        const uint16_t *y = out.data;
        for (int i = 0; i < N; i++) {
            float u = opt_f16_to_f32(a[i]), v = opt_f16_to_f32(b[i]), w;
            switch (k) {
            case 0: w = u + v; break;
            case 1: w = u * v; break;
            case 2: w = u >= 0 ? 1 / (1 + expf(-u)) : expf(u) / (1 + expf(u)); break;
            default: w = tanhf(u); break;
            }
            cr_assert_eq(y[i], opt_f32_to_f16(w), "%s element %d", ops[k], i);
        }
        opt_array_free(&out);
        opt_model_free(m);
    }
}

Test(exec_shape, transpose_matches_a_naive_reference)
{
    kt_rng r = {13};
    for (int trial = 0; trial < 40; trial++) {
        int nd = (int)kt_int(&r, 1, 5);
        int64_t d[8], perm[8];
        for (int i = 0; i < nd; i++) {
            d[i] = kt_int(&r, 1, 7);
            perm[i] = i;
        }
        for (int i = nd - 1; i > 0; i--) {
            int j = (int)kt_int(&r, 0, i);
            int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        uint64_t n = numel(nd, d);
        float *x = kt_randf(&r, n);
        kt_operand in[] = {{"x", OPT_DT_FLOAT, nd, {0}, x, false}};
        memcpy(in[0].dims, d, sizeof d);
        int odt[] = {OPT_DT_FLOAT};
        opt_model *m = kt_model("Transpose", 13, in, 1, odt, 1);
        kt_attr_ints(m, "perm", perm, (size_t)nd);
        opt_array out = {0};
        kt_run(m, 2, in, 1, &out, 1);
        int64_t str[8], s = 1;
        for (int i = nd - 1; i >= 0; i--) {
            str[i] = s;
            s *= d[i];
        }
        const float *y = out.data;
        for (uint64_t o = 0; o < n; o++) {
            uint64_t rem = o, off = 0;
            for (int i = nd - 1; i >= 0; i--) {
                uint64_t idx = rem % (uint64_t)d[perm[i]];
                rem /= (uint64_t)d[perm[i]];
                off += idx * (uint64_t)str[perm[i]];
            }
            cr_assert_eq(y[o], x[off], "trial %d element %llu", trial, (unsigned long long)o);
        }
        opt_array_free(&out);
        opt_model_free(m);
        free(x);
    }
}

Test(exec_shape, gather_refuses_out_of_range_indices)
{
    float x[6] = {1, 2, 3, 4, 5, 6};
    int64_t idx[2] = {1, 3};
    kt_operand in[] = {{"x", OPT_DT_FLOAT, 2, {3, 2}, x, false}, {"i", OPT_DT_INT64, 1, {2}, idx, false}};
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("Gather", 13, in, 2, odt, 1);
    opt_exec_opts o = {.threads = 1};
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "%s", err.msg);
    opt_array a[2] = {{.dtype = OPT_DT_FLOAT, .ndim = 2, .dims = {3, 2}, .data = x, .nbytes = 24},
                      {.dtype = OPT_DT_INT64, .ndim = 1, .dims = {2}, .data = idx, .nbytes = 16}};
    opt_array out = {0};
    cr_assert_eq(opt_exec_run(e, a, 2, &out, 1, &err), OPT_ERR_DATA);
    cr_assert(strstr(err.msg, "index 3 out of range"), "%s", err.msg);
    idx[1] = -3; /* negative indices count from the end */
    cr_assert_eq(opt_exec_run(e, a, 2, &out, 1, &err), OPT_OK, "%s", err.msg);
    const float want[4] = {3, 4, 1, 2};
    cr_assert(memcmp(out.data, want, sizeof want) == 0);
    opt_array_free(&out);
    opt_exec_free(e);
    opt_model_free(m);
}

Test(exec_shape, slice_clamps_crafted_bounds)
{
    float x[10];
    for (int i = 0; i < 10; i++) x[i] = (float)i;
    int64_t st[1] = {-1000}, en[1] = {INT64_MAX}, ax[1] = {0}, sp[1] = {3};
    kt_operand in[] = {{"x", OPT_DT_FLOAT, 1, {10}, x, false}, {"s", OPT_DT_INT64, 1, {1}, st, true},
                       {"e", OPT_DT_INT64, 1, {1}, en, true}, {"a", OPT_DT_INT64, 1, {1}, ax, true},
                       {"p", OPT_DT_INT64, 1, {1}, sp, true}};
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("Slice", 13, in, 5, odt, 1);
    opt_array out = {0};
    kt_run(m, 1, in, 5, &out, 1);
    cr_assert_eq(out.dims[0], 4);
    const float want[4] = {0, 3, 6, 9};
    cr_assert(memcmp(out.data, want, sizeof want) == 0);
    opt_array_free(&out);
    opt_model_free(m);
}

Test(exec_reduce, reduce_sum_over_middle_axis_matches_reference)
{
    kt_rng r = {21};
    float *x = kt_randf(&r, 4 * 5 * 6);
    int64_t axes[1] = {1};
    kt_operand in[] = {{"x", OPT_DT_FLOAT, 3, {4, 5, 6}, x, false}, {"axes", OPT_DT_INT64, 1, {1}, axes, true}};
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("ReduceSum", 13, in, 2, odt, 1);
    kt_attr_int(m, "keepdims", 0);
    opt_array out = {0};
    kt_run(m, 1, in, 2, &out, 1);
    cr_assert_eq(out.ndim, 2);
    const float *y = out.data;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 6; k++) {
            double s = 0;
            for (int j = 0; j < 5; j++) s += x[(i * 5 + j) * 6 + k];
            cr_assert_eq(y[i * 6 + k], (float)s);
        }
    opt_array_free(&out);
    opt_model_free(m);
    free(x);
}

Test(exec_shape, extreme_slice_steps_and_tile_repeats_do_not_overflow)
{
    float x[10];
    for (int i = 0; i < 10; i++) x[i] = (float)i;
    int64_t st[1] = {INT64_MAX}, en[1] = {INT64_MIN}, ax[1] = {0}, sp[1] = {INT64_MIN};
    kt_operand in[] = {{"x", OPT_DT_FLOAT, 1, {10}, x, false}, {"s", OPT_DT_INT64, 1, {1}, st, true},
                       {"e", OPT_DT_INT64, 1, {1}, en, true}, {"a", OPT_DT_INT64, 1, {1}, ax, true},
                       {"p", OPT_DT_INT64, 1, {1}, sp, true}};
    int odt[] = {OPT_DT_FLOAT};
    opt_model *m = kt_model("Slice", 13, in, 5, odt, 1);
    opt_array out = {0};
    kt_run(m, 1, in, 5, &out, 1);
    cr_assert_eq(out.dims[0], 1); /* starts at the last element, one giant step back ends it */
    cr_assert_eq(((float *)out.data)[0], 9.0f);
    opt_array_free(&out);
    opt_model_free(m);

    int64_t rep[1] = {INT64_MAX / 2};
    kt_operand tin[] = {{"x", OPT_DT_FLOAT, 1, {10}, x, false}, {"r", OPT_DT_INT64, 1, {1}, rep, true}};
    m = kt_model("Tile", 13, tin, 2, odt, 1);
    opt_exec_opts o = {.threads = 1};
    opt_exec *e = NULL;
    opt_error err = {0};
    cr_assert_eq(opt_exec_new(m, &o, &e, &err), OPT_OK, "%s", err.msg);
    opt_array a = {.dtype = OPT_DT_FLOAT, .ndim = 1, .dims = {10}, .data = x, .nbytes = 40};
    cr_assert_eq(opt_exec_run(e, &a, 1, &out, 1, &err), OPT_ERR_INVALID);
    cr_assert(strstr(err.msg, "node 'node' (Tile)"), "%s", err.msg);
    opt_exec_free(e);
    opt_model_free(m);
}
