/*
 * libopt/exec/cpu/gemm.c — Gemm and MatMul on the CPU through OpenBLAS's cblas_sgemm.
 *
 * Gemm: Y = alpha * op(A) * op(B) + beta * C, C broadcast to [M, N] (scalar, [N], [1, N], [M, 1]
 * or [M, N]). MatMul: numpy matmul semantics (1-D operands promoted and their unit dim removed,
 * batch dims broadcast); when B has no batch dims, the batch of A folds into one tall GEMM.
 * Constant operands of other float dtypes are converted to float32 once at load.
 */
#include "libopt/exec/cpu/nn.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* float32 copies of constant inputs that were not float32 (others are used in place). */
typedef struct mm_state {
    float *c[3];
} mm_state;

static void mm_release(void *state)
{
    mm_state *s = state;
    if (!s) return;
    for (int i = 0; i < 3; i++) free(s->c[i]);
    free(s);
}

static opt_status mm_prepare(const opt_node *n, int opset, const opt_array *const *consts,
                             size_t n_in, void **state, opt_error *err)
{
    mm_state *s = calloc(1, sizeof *s);
    if (!s) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    *state = s;
    for (size_t i = 0; i < n_in && i < 3; i++) {
        if (!consts[i] || consts[i]->dtype == OPT_DT_FLOAT) continue;
        const float *v = nn_f32_in(consts[i], &s->c[i]);
        if (!v) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
    }
    return OPT_OK;
}

/* Input i as float32: prepared copy, the data itself, or a new copy in *tmp. */
static const float *mm_in(opt_kctx *k, size_t i, float **tmp)
{
    const mm_state *s = k->state;
    *tmp = NULL;
    if (s && i < 3 && s->c[i]) return s->c[i];
    return nn_f32_in(k->in[i], tmp);
}

/* ---- Gemm ------------------------------------------------------------------------------------ */

static opt_status gemm_run(opt_kctx *k, opt_error *err)
{
    const opt_array *A = k->in[0], *B = k->in[1];
    const opt_array *C = opt_kctx_has(k, 2) ? k->in[2] : NULL;
    if (A->ndim != 2 || B->ndim != 2)
        return opt_kerr(k, err, OPT_ERR_INVALID, "A and B must be 2-D (ranks %d, %d)", A->ndim,
                        B->ndim);
    bool ta = opt_node_attr_int(k->node, "transA", 0) != 0;
    bool tb = opt_node_attr_int(k->node, "transB", 0) != 0;
    float alpha = opt_node_attr_float(k->node, "alpha", 1.0f);
    float beta = opt_node_attr_float(k->node, "beta", 1.0f);
    int64_t M = ta ? A->dims[1] : A->dims[0], K = ta ? A->dims[0] : A->dims[1];
    int64_t K2 = tb ? B->dims[1] : B->dims[0], N = tb ? B->dims[0] : B->dims[1];
    if (K != K2)
        return opt_kerr(k, err, OPT_ERR_INVALID, "inner dims differ: %lld vs %lld", (long long)K,
                        (long long)K2);
    /* C's broadcast: rows/cols of C are either 1 or M/N. */
    int64_t cr = 1, cc = 1;
    if (C) {
        if (C->ndim > 2)
            return opt_kerr(k, err, OPT_ERR_INVALID, "C has rank %d", C->ndim);
        if (C->ndim == 2) cr = C->dims[0], cc = C->dims[1];
        if (C->ndim == 1) cc = C->dims[0];
        if ((cr != 1 && cr != M) || (cc != 1 && cc != N))
            return opt_kerr(k, err, OPT_ERR_INVALID, "C does not broadcast to [%lld, %lld]",
                            (long long)M, (long long)N);
    }
    int64_t dims[2] = {M, N};
    OPT_TRY(opt_kctx_output(k, 0, A->dtype, 2, dims, err));
    if (!M || !N) return OPT_OK;

    float *ta_, *tb_, *tc_ = NULL, *ty;
    const float *a = mm_in(k, 0, &ta_), *b = mm_in(k, 1, &tb_), *c = NULL;
    if (C && beta != 0.0f) c = mm_in(k, 2, &tc_);
    float *y = nn_f32_out(&k->out[0], &ty);
    opt_status st = OPT_OK;
    if (!a || !b || !y || (C && beta != 0.0f && !c)) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (c) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                y[i * N + j] = beta * c[(cr == 1 ? 0 : i) * cc + (cc == 1 ? 0 : j)];
    }
    if (K == 0) {
        if (!c) memset(y, 0, (size_t)(M * N) * sizeof *y);
    } else {
        nn_blas_threads(nn_threads(k));
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, alpha, a, (int)A->dims[1], b, (int)B->dims[1],
                    c ? 1.0f : 0.0f, y, (int)N);
    }
done:
    if (st == OPT_OK) nn_f32_out_done(&k->out[0], ty);
    else free(ty);
    free(ta_);
    free(tb_);
    free(tc_);
    return st;
}

/* ---- MatMul ---------------------------------------------------------------------------------- */

opt_status nn_matmul_shape(opt_kctx *k, const opt_array *A, const opt_array *B, mm_shape *s,
                           opt_error *err)
{
    if (A->ndim < 1 || B->ndim < 1)
        return opt_kerr(k, err, OPT_ERR_INVALID, "MatMul operands must have rank >= 1");
    int64_t ad[OPT_MAX_DIMS + 1], bd[OPT_MAX_DIMS + 1];
    int an = A->ndim, bn = B->ndim;
    memcpy(ad, A->dims, (size_t)an * sizeof *ad);
    memcpy(bd, B->dims, (size_t)bn * sizeof *bd);
    bool a1 = an == 1, b1 = bn == 1;
    if (a1) ad[1] = ad[0], ad[0] = 1, an = 2;
    if (b1) bd[1] = 1, bn = 2;
    s->M = ad[an - 2];
    s->K = ad[an - 1];
    s->N = bd[bn - 1];
    if (bd[bn - 2] != s->K)
        return opt_kerr(k, err, OPT_ERR_INVALID, "inner dims differ: %lld vs %lld",
                        (long long)s->K, (long long)bd[bn - 2]);
    int abn = an - 2, bbn = bn - 2;
    s->nb = abn > bbn ? abn : bbn;
    if (s->nb + 2 > OPT_MAX_DIMS)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "rank over %d", OPT_MAX_DIMS);
    int64_t as = s->M * s->K, bs = s->K * s->N;
    bool b_varies = false;
    for (int i = s->nb - 1; i >= 0; i--) {
        int ai = i - (s->nb - abn), bi = i - (s->nb - bbn);
        int64_t da = ai >= 0 ? ad[ai] : 1, db = bi >= 0 ? bd[bi] : 1;
        if (da != db && da != 1 && db != 1)
            return opt_kerr(k, err, OPT_ERR_INVALID, "batch dims %lld and %lld do not broadcast",
                            (long long)da, (long long)db);
        s->batch[i] = da > db ? da : db;
        if (da == 0 || db == 0) s->batch[i] = 0;
        s->astride[i] = da == 1 ? 0 : as;
        s->bstride[i] = db == 1 ? 0 : bs;
        if (db != 1) b_varies = true;
        as *= da;
        bs *= db;
    }
    /* A's batch folds into M when B is shared and A's matrices are laid out back to back. */
    bool a_full = true;
    for (int i = 0; i < s->nb; i++)
        if (s->astride[i] == 0 && s->batch[i] != 1) a_full = false;
    s->b_flat = !b_varies && a_full;
    s->ndim = 0;
    for (int i = 0; i < s->nb; i++) s->dims[s->ndim++] = s->batch[i];
    if (!a1) s->dims[s->ndim++] = s->M;
    if (!b1) s->dims[s->ndim++] = s->N;
    return OPT_OK;
}

static opt_status matmul_run(opt_kctx *k, opt_error *err)
{
    const opt_array *A = k->in[0], *B = k->in[1];
    mm_shape s;
    OPT_TRY(nn_matmul_shape(k, A, B, &s, err));
    OPT_TRY(opt_kctx_output(k, 0, A->dtype, s.ndim, s.dims, err));
    uint64_t total = opt_array_numel(&k->out[0]);
    if (!total) return OPT_OK;
    float *ta_, *tb_, *ty;
    const float *a = mm_in(k, 0, &ta_), *b = mm_in(k, 1, &tb_);
    float *y = nn_f32_out(&k->out[0], &ty);
    opt_status st = OPT_OK;
    if (!a || !b || !y) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (s.K == 0) {
        memset(y, 0, total * sizeof *y);
        goto done;
    }
    nn_blas_threads(nn_threads(k));
    int64_t nbatch = 1;
    for (int i = 0; i < s.nb; i++) nbatch *= s.batch[i];
    if (s.b_flat) {
        int64_t rows = nbatch * s.M;
        if (s.N == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)s.K, 1.0f, a, (int)s.K, b, 1,
                        0.0f, y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)s.N, (int)s.K,
                        1.0f, a, (int)s.K, b, (int)s.N, 0.0f, y, (int)s.N);
        goto done;
    }
    int64_t idx[OPT_MAX_DIMS] = {0};
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t ao = 0, bo = 0;
        for (int i = 0; i < s.nb; i++) ao += idx[i] * s.astride[i], bo += idx[i] * s.bstride[i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s.M, (int)s.N, (int)s.K, 1.0f,
                    a + ao, (int)s.K, b + bo, (int)s.N, 0.0f, y + t * s.M * s.N, (int)s.N);
        for (int i = s.nb - 1; i >= 0; i--) {
            if (++idx[i] < s.batch[i]) break;
            idx[i] = 0;
        }
    }
done:
    if (st == OPT_OK) nn_f32_out_done(&k->out[0], ty);
    else free(ty);
    free(ta_);
    free(tb_);
    return st;
}

const opt_kernel opt_kernels_gemm[] = {
    {"", "Gemm", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, mm_prepare, gemm_run,
     mm_release},
    /* MatMul converts non-float32 constants at each run for now: its prepare is left out until
     * the planner's const pointers stay valid across prepare (see docs/benchmarks.md). */
    {"", "MatMul", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, NULL, matmul_run,
     mm_release},
    {0},
};
