/*
 * libopt/exec/cpu/gemm.c — Gemm and MatMul on the CPU through OpenBLAS's cblas_sgemm.
 *
 * Gemm: Y = alpha * op(A) * op(B) + beta * C, C broadcast to [M, N] (scalar, [N], [1, N], [M, 1]
 * or [M, N]). MatMul: numpy matmul semantics (1-D operands promoted and their unit dim removed,
 * batch dims broadcast); when B has no batch dims, the batch of A folds into one tall GEMM.
 * Constant operands of other float dtypes are converted to float32 once at load.
 */
#include "libopt/exec/cpu/nn.h"

#include "libopt/exec/cpu/blas.h"
#include <stdlib.h>
#include <string.h>

/* float32 copies of constant inputs that were not float32 (others are used in place), and a
 * constant B packed for the packed kernel (nn_sgemm_packed) when this CPU runs it. */
typedef struct mm_state {
    float *c[3];
    float *pb;          /* B packed whole: K x N as column panels, or NULL */
    int64_t pb_k, pb_n; /* its K and N */
} mm_state;

static void mm_release(void *state)
{
    mm_state *s = state;
    if (!s) return;
    for (int i = 0; i < 3; i++) free(s->c[i]);
    free(s->pb);
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
    /* A constant 2-D B (weights) is packed once. Gemm's transB decides its layout. An executor
     * with no_prepack packs row-major weights per run instead (a row copy per k); transposed
     * ones, a gather of single floats per run, are still packed here. */
    if (n_in > 1 && consts[1] && consts[1]->ndim == 2 && nn_sgemm_fast()) {
        const float *b = s->c[1] ? s->c[1] : (const float *)consts[1]->data;
        bool gemm = strcmp(n->op_type, "Gemm") == 0;
        bool tb = gemm && opt_node_attr_int(n, "transB", 0) != 0;
        int64_t r = consts[1]->dims[0], c = consts[1]->dims[1];
        int64_t K = tb ? c : r, N = tb ? r : c;
        if (K > 0 && N > 0 && (tb || opt_prepare_packs_weights())) {
            s->pb = aligned_alloc(64, (nn_pack_b_floats(K, N) * sizeof *s->pb + 63) & ~(size_t)63);
            if (!s->pb) return opt_node_err(n, err, OPT_ERR_NOMEM, "out of memory");
            nn_pack_b(b, tb ? 1 : c, tb ? c : 1, K, 0, N, s->pb);
            s->pb_k = K;
            s->pb_n = N;
        }
    }
    return OPT_OK;
}

/* A float32 buffer of n floats from the executor's scratch, or malloc'd into *own. */
static float *mm_scratch(opt_kctx *k, size_t n, float **own)
{
    *own = NULL;
    opt_error e = {0};
    float *p = k->exec ? opt_kctx_scratch(k, n * sizeof(float), &e) : NULL;
    if (!p) p = *own = malloc((n ? n : 1) * sizeof(float));
    return p;
}

/* C [M x N] = A * B (+ epilogue) on the packed kernel: A element (r, k) at a[r * ars + k * acs],
 * B packed in s (when it matches K x N) or element (k, c) at b[k * brs + c * bcs]. False when
 * the packed kernel is not available (nothing written). */
static bool mm_packed(opt_kctx *k, const mm_state *s, int64_t M, int64_t N, int64_t K,
                      const float *a, int64_t ars, int64_t acs, const float *b, int64_t brs,
                      int64_t bcs, float *y, const nn_epilogue *ep)
{
    if (!nn_sgemm_fast() || M <= 0 || N <= 0 || K <= 0) return false;
    float *own;
    float *pa = mm_scratch(k, nn_pack_a_floats(M, K), &own);
    if (!pa) return false;
    nn_pack_a(a, ars, acs, M, K, NULL, pa);
    nn_bview bv = {b, brs, bcs, K};
    bool pre = s && s->pb && s->pb_k == K && s->pb_n == N;
    bool ok = nn_sgemm_packed(k, M, N, K, pa, pre ? NULL : nn_pack_b_strided, pre ? (const void *)s->pb : &bv,
                              y, N, ep);
    free(own);
    return ok;
}

/* Input i as float32: prepared copy, the data itself, or a new copy in *tmp. */
static const float *mm_in(opt_kctx *k, size_t i, float **tmp)
{
    const mm_state *s = k->state;
    *tmp = NULL;
    if (s && i < 3 && s->c[i]) return s->c[i];
    return nn_f32_in_k(k, k->in[i], tmp);
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
    float *y = nn_f32_out_k(k, &k->out[0], &ty);
    opt_status st = OPT_OK;
    if (!a || !b || !y || (C && beta != 0.0f && !c)) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (K > 0 && alpha == 1.0f && (!c || (beta == 1.0f && !(cr == 1 && cc == 1 && N > 1)))) {
        /* C as the epilogue: a row [N] (bias per column), a column [M, 1] or a full [M, N]. */
        nn_epilogue ep = {0};
        if (c && cr == 1) ep.cbias = c;
        else if (c && cc == 1) ep.bias = c;
        else if (c) ep.z = c, ep.ldz = N;
        int64_t lda = A->dims[1], ldb = B->dims[1];
        if (mm_packed(k, k->state, M, N, K, a, ta ? 1 : lda, ta ? lda : 1, b, tb ? 1 : ldb,
                      tb ? ldb : 1, y, &ep))
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
        nn_blas()->sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, alpha, a, (int)A->dims[1], b, (int)B->dims[1],
                    c ? 1.0f : 0.0f, y, (int)N);
    }
done:
    if (st == OPT_OK) nn_f32_out_done_k(k, &k->out[0], y, ty);
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

typedef struct bmm_job {
    const mm_shape *s;
    const float *a, *b;
    float *y;
} bmm_job;

/* Batch items [begin, end) of a broadcast MatMul, each on the packed kernel on this thread
 * (OpenBLAS for an item whose packing buffer cannot be had). */
static void bmm_items(void *ctx, size_t begin, size_t end)
{
    bmm_job *j = ctx;
    const mm_shape *s = j->s;
    for (size_t t = begin; t < end; t++) {
        int64_t ao = 0, bo = 0, rem = (int64_t)t;
        for (int i = s->nb - 1; i >= 0; i--) {
            int64_t ix = rem % s->batch[i];
            rem /= s->batch[i];
            ao += ix * s->astride[i];
            bo += ix * s->bstride[i];
        }
        nn_epilogue ep = {0};
        float *own = NULL, *pa = malloc(nn_pack_a_floats(s->M, s->K) * sizeof *pa);
        own = pa;
        bool ok = pa != NULL;
        if (ok) {
            nn_pack_a(j->a + ao, s->K, 1, s->M, s->K, NULL, pa);
            nn_bview bv = {j->b + bo, s->N, 1, s->K};
            ok = nn_sgemm_packed(NULL, s->M, s->N, s->K, pa, nn_pack_b_strided, &bv,
                                 j->y + (int64_t)t * s->M * s->N, s->N, &ep);
        }
        free(own);
        if (!ok) {
            /* Fall back for this item alone. */
            nn_blas()->sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->M, (int)s->N,
                        (int)s->K, 1.0f, j->a + ao, (int)s->K, j->b + bo, (int)s->N, 0.0f,
                        j->y + (int64_t)t * s->M * s->N, (int)s->N);
        }
    }
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
    float *y = nn_f32_out_k(k, &k->out[0], &ty);
    opt_status st = OPT_OK;
    if (!a || !b || !y) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (s.K == 0) {
        memset(y, 0, total * sizeof *y);
        goto done;
    }
    int64_t nbatch = 1;
    for (int i = 0; i < s.nb; i++) nbatch *= s.batch[i];
    if (s.N > 1 && nn_sgemm_fast()) {
        nn_epilogue ep = {0};
        if (s.b_flat && mm_packed(k, k->state, nbatch * s.M, s.N, s.K, a, s.K, 1, b, s.N, 1, y, &ep))
            goto done;
        if (!s.b_flat) {
            /* Small batched products (attention): one whole product per thread. */
            bmm_job j = {&s, a, b, y};
            nn_parallel(k, (size_t)nbatch, bmm_items, &j);
            goto done;
        }
    }
    nn_blas_threads(nn_threads(k));
    if (s.b_flat) {
        int64_t rows = nbatch * s.M;
        if (s.N == 1)
            nn_blas()->sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)s.K, 1.0f, a, (int)s.K, b, 1,
                        0.0f, y, 1);
        else
            nn_blas()->sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)s.N, (int)s.K,
                        1.0f, a, (int)s.K, b, (int)s.N, 0.0f, y, (int)s.N);
        goto done;
    }
    int64_t idx[OPT_MAX_DIMS] = {0};
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t ao = 0, bo = 0;
        for (int i = 0; i < s.nb; i++) ao += idx[i] * s.astride[i], bo += idx[i] * s.bstride[i];
        nn_blas()->sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s.M, (int)s.N, (int)s.K, 1.0f,
                    a + ao, (int)s.K, b + bo, (int)s.N, 0.0f, y + t * s.M * s.N, (int)s.N);
        for (int i = s.nb - 1; i >= 0; i--) {
            if (++idx[i] < s.batch[i]) break;
            idx[i] = 0;
        }
    }
done:
    if (st == OPT_OK) nn_f32_out_done_k(k, &k->out[0], y, ty);
    else free(ty);
    free(ta_);
    free(tb_);
    return st;
}

const opt_kernel opt_kernels_gemm[] = {
    {"", "Gemm", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, mm_prepare, gemm_run,
     mm_release},
    {"", "MatMul", 1, INT_MAX, OPT_DTS_FLOATS, 0, OPT_DEVICE_CPU, NULL, mm_prepare, matmul_run,
     mm_release},
    {0},
};
