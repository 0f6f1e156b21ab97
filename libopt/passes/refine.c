/*
 * libopt/passes/refine.c — input statistics of layers and the least-squares fits of refine.h.
 */
#include "libopt/passes/refine.h"
#include "libopt/exec/exec.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { K_GEMM = 1, K_CONV = 2 };

typedef struct rlayer {
    int kind;              /* 0: unsupported */
    const opt_node *node;
    char *in_name;         /* the activation input */
    int64_t O, D, G;       /* output rows, row length (per group), groups */
    bool row_major;        /* element (o, d) at o*D + d, else at d*O + o */
    bool trans_a;          /* Gemm: A is [D, N] */
    int64_t kh, kw, sh, sw, dh, dw, pads[4]; /* Conv; pads t, l, b, r */
    const char *auto_pad;
    double *S;             /* G blocks of D x D: sum of x x^T, then the covariance */
    double *mu;            /* G blocks of D: sum of x, then the mean */
    double cnt;            /* rows accumulated (per group) */
    float *w0;             /* the weight as it was */
    uint64_t numel;
    opt_tensor *bias;      /* own bias initializer, or NULL */
    double bias_scale;     /* alpha / beta for Gemm, 1 for Conv */
    bool centered;
} rlayer;

struct opt_refine {
    size_t n;
    rlayer *L;
    opt_status st;
    opt_error *err;
};

static inline uint64_t widx(const rlayer *l, int64_t o, int64_t d)
{
    return l->row_major ? (uint64_t)(o * l->D + d) : (uint64_t)(d * l->O + o);
}

/* Adds the rows of X [rows, D] (float, row-major) to block g's sums. */
static void add_rows(rlayer *l, int64_t g, const float *X, int64_t rows)
{
    int64_t D = l->D;
    float *tmp = calloc((size_t)(D * D), sizeof *tmp);
    if (!tmp) return;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)D, (int)rows, 1.0f, X, (int)D, 0.0f, tmp, (int)D);
    double *S = l->S + g * D * D, *mu = l->mu + g * D;
    for (int64_t a = 0; a < D; a++)
        for (int64_t b = a; b < D; b++) S[a * D + b] += tmp[a * D + b];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t a = 0; a < D; a++) mu[a] += X[r * D + a];
    if (g == 0) l->cnt += (double)rows;
    free(tmp);
}

static void accumulate(opt_refine *rf, rlayer *l, const opt_array *a)
{
    if (a->dtype != OPT_DT_FLOAT) return;
    const float *x = a->data;
    if (l->kind == K_GEMM) {
        uint64_t n = opt_array_numel(a);
        if (!l->D || n % (uint64_t)l->D) return;
        int64_t rows = (int64_t)(n / (uint64_t)l->D);
        if (!l->trans_a) {
            add_rows(l, 0, x, rows);
            return;
        }
        float *t = malloc(n * sizeof *t);
        if (!t) return;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t d = 0; d < l->D; d++) t[r * l->D + d] = x[d * rows + r];
        add_rows(l, 0, t, rows);
        free(t);
        return;
    }
    /* Conv: im2col of each image and group. */
    if (a->ndim != 4) return;
    int64_t N = a->dims[0], C = a->dims[1], H = a->dims[2], W = a->dims[3];
    int64_t cg = C / l->G;
    if (cg * l->kh * l->kw != l->D) return;
    int64_t pt = l->pads[0], pl = l->pads[1], pb = l->pads[2], pr = l->pads[3];
    if (l->auto_pad && (strcmp(l->auto_pad, "SAME_UPPER") == 0 || strcmp(l->auto_pad, "SAME_LOWER") == 0)) {
        int64_t oh = (H + l->sh - 1) / l->sh, ow = (W + l->sw - 1) / l->sw;
        int64_t th = (oh - 1) * l->sh + l->dh * (l->kh - 1) + 1 - H, tw = (ow - 1) * l->sw + l->dw * (l->kw - 1) + 1 - W;
        th = th > 0 ? th : 0;
        tw = tw > 0 ? tw : 0;
        bool up = strcmp(l->auto_pad, "SAME_UPPER") == 0;
        pt = up ? th / 2 : th - th / 2;
        pb = th - pt;
        pl = up ? tw / 2 : tw - tw / 2;
        pr = tw - pl;
    } else if (l->auto_pad && strcmp(l->auto_pad, "VALID") == 0) {
        pt = pl = pb = pr = 0;
    }
    int64_t OH = (H + pt + pb - l->dh * (l->kh - 1) - 1) / l->sh + 1;
    int64_t OW = (W + pl + pr - l->dw * (l->kw - 1) - 1) / l->sw + 1;
    if (OH <= 0 || OW <= 0) return;
    float *P = malloc((size_t)(OH * OW * l->D) * sizeof *P);
    if (!P) return;
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < l->G; g++) {
            int64_t r = 0;
            for (int64_t oy = 0; oy < OH; oy++)
                for (int64_t ox = 0; ox < OW; ox++, r++) {
                    float *row = P + r * l->D;
                    int64_t d = 0;
                    for (int64_t c = 0; c < cg; c++) {
                        const float *img = x + ((n * C) + g * cg + c) * H * W;
                        for (int64_t ky = 0; ky < l->kh; ky++) {
                            int64_t iy = oy * l->sh - pt + ky * l->dh;
                            for (int64_t kx = 0; kx < l->kw; kx++, d++) {
                                int64_t ix = ox * l->sw - pl + kx * l->dw;
                                row[d] = iy >= 0 && iy < H && ix >= 0 && ix < W ? img[iy * W + ix] : 0.0f;
                            }
                        }
                    }
                }
            add_rows(l, g, P, OH * OW);
        }
    free(P);
    (void)rf;
}

static void observe(void *ctx, const char *name, const opt_node *producer, const opt_array *a)
{
    opt_refine *rf = ctx;
    (void)producer;
    for (size_t i = 0; i < rf->n; i++)
        if (rf->L[i].kind && strcmp(rf->L[i].in_name, name) == 0) accumulate(rf, &rf->L[i], a);
}

static opt_status setup_layer(opt_model *m, const opt_weight_ref *r, rlayer *l, opt_error *err)
{
    const opt_node *nd = r->node;
    const opt_tensor *t = r->t;
    l->node = nd;
    l->numel = r->numel;
    uint64_t ne;
    OPT_TRY(opt_tensor_to_f32_alloc(t, &l->w0, &ne, err));
    l->bias_scale = 1;
    const char *op = nd->op_type;
    if (strcmp(op, "Gemm") == 0 && t->n_dims == 2) {
        l->kind = K_GEMM;
        bool tb = opt_node_attr_int(nd, "transB", 0) != 0;
        l->trans_a = opt_node_attr_int(nd, "transA", 0) != 0;
        l->O = tb ? t->dims[0] : t->dims[1];
        l->D = tb ? t->dims[1] : t->dims[0];
        l->row_major = tb;
        l->G = 1;
        float alpha = opt_node_attr_float(nd, "alpha", 1), beta = opt_node_attr_float(nd, "beta", 1);
        l->bias_scale = beta != 0 ? alpha / beta : 0;
        if (beta != 0 && nd->n_inputs >= 3) l->bias = opt_graph_initializer(m->graph, nd->inputs[2]);
        /* Only a bias of shape [O] is corrected. */
        if (l->bias && !(l->bias->n_dims == 1 && l->bias->dims[0] == l->O)) l->bias = NULL;
    } else if (strcmp(op, "MatMul") == 0 && r->input == 1 && t->n_dims == 2) {
        l->kind = K_GEMM;
        l->O = t->dims[1];
        l->D = t->dims[0];
        l->row_major = false;
        l->G = 1;
    } else if (strcmp(op, "Conv") == 0 && t->n_dims == 4) {
        l->kind = K_CONV;
        l->G = opt_node_attr_int(nd, "group", 1);
        l->O = t->dims[0];
        l->kh = t->dims[2];
        l->kw = t->dims[3];
        l->D = t->dims[1] * l->kh * l->kw;
        l->row_major = true;
        const opt_attr *a;
        l->sh = l->sw = l->dh = l->dw = 1;
        if ((a = opt_node_attr(nd, "strides")) && a->n_ints == 2) {
            l->sh = a->ints[0];
            l->sw = a->ints[1];
        }
        if ((a = opt_node_attr(nd, "dilations")) && a->n_ints == 2) {
            l->dh = a->ints[0];
            l->dw = a->ints[1];
        }
        if ((a = opt_node_attr(nd, "pads")) && a->n_ints == 4) {
            l->pads[0] = a->ints[0];
            l->pads[1] = a->ints[1];
            l->pads[2] = a->ints[2];
            l->pads[3] = a->ints[3];
        }
        const opt_attr *ap = opt_node_attr(nd, "auto_pad");
        l->auto_pad = ap && ap->has_s ? (const char *)ap->s.data : NULL;
        if (l->auto_pad && ap->s.len == 0) l->auto_pad = NULL;
        if (nd->n_inputs >= 3 && *nd->inputs[2]) l->bias = opt_graph_initializer(m->graph, nd->inputs[2]);
        if (l->bias && !(l->bias->n_dims == 1 && l->bias->dims[0] == l->O)) l->bias = NULL;
        if (l->G < 1 || l->O % l->G || l->sh < 1 || l->sw < 1 || l->dh < 1 || l->dw < 1) l->kind = 0;
    }
    if (!l->kind) return OPT_OK;
    /* A bias shared with another node is not ours to move. */
    if (l->bias) {
        size_t uses = 0;
        for (size_t i = 0; i < m->graph->n_nodes; i++)
            for (size_t k = 0; k < m->graph->nodes[i]->n_inputs; k++)
                uses += strcmp(m->graph->nodes[i]->inputs[k], l->bias->name) == 0;
        if (uses != 1 || (l->bias->data_type != OPT_DT_FLOAT && l->bias->data_type != OPT_DT_DOUBLE &&
                          l->bias->data_type != OPT_DT_FLOAT16))
            l->bias = NULL;
    }
    l->in_name = opt_strdup(nd->inputs[r->input == 1 ? 0 : 1]);
    if (!l->D || l->D > 20000) {
        l->kind = 0; /* a D x D matrix would not fit */
        return OPT_OK;
    }
    l->S = calloc((size_t)(l->G * l->D * l->D), sizeof *l->S);
    l->mu = calloc((size_t)(l->G * l->D), sizeof *l->mu);
    if (!l->in_name || !l->S || !l->mu)
        return opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory for input statistics", t->name);
    return OPT_OK;
}

opt_status opt_refine_new(opt_model *m, const opt_weight_ref *refs, size_t n,
                          const opt_calib_batches *cb, opt_refine **out, opt_error *err)
{
    opt_refine *rf = calloc(1, sizeof *rf);
    if (!rf || !(rf->L = calloc(n + 1, sizeof *rf->L))) {
        free(rf);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    rf->n = n;
    opt_status s = OPT_OK;
    for (size_t i = 0; i < n && s == OPT_OK; i++) s = setup_layer(m, &refs[i], &rf->L[i], err);
    opt_exec *e = NULL;
    opt_exec_opts eo = {.threads = cb->threads, .observe = observe, .observe_ctx = rf};
    if (s == OPT_OK) s = opt_exec_new(m, &eo, &e, err);
    size_t nout = e ? opt_exec_n_outputs(e) : 0;
    opt_array *outs = calloc(nout + 1, sizeof *outs);
    if (s == OPT_OK && !outs) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    for (size_t b = 0; b < cb->n_batches && s == OPT_OK; b++) {
        const opt_array *in = cb->arrays + b * cb->n_inputs;
        /* Layers reading a graph input directly are not observed: feed them the batch. */
        for (size_t i = 0; i < cb->n_inputs && i < opt_exec_n_inputs(e); i++)
            observe(rf, opt_exec_input_name(e, i), NULL, &in[i]);
        s = opt_exec_run(e, in, cb->n_inputs, outs, nout, err);
        for (size_t k = 0; k < nout; k++) opt_array_free(&outs[k]);
    }
    free(outs);
    opt_exec_free(e);
    /* Means and covariances. */
    for (size_t i = 0; i < n && s == OPT_OK; i++) {
        rlayer *l = &rf->L[i];
        if (!l->kind) continue;
        if (l->cnt == 0) {
            l->kind = 0;
            continue;
        }
        l->centered = l->bias != NULL;
        int64_t D = l->D;
        for (int64_t g = 0; g < l->G; g++) {
            double *S = l->S + g * D * D, *mu = l->mu + g * D;
            for (int64_t a = 0; a < D; a++) mu[a] /= l->cnt;
            for (int64_t a = 0; a < D; a++)
                for (int64_t b = a; b < D; b++) {
                    double v = S[a * D + b] / l->cnt - (l->centered ? mu[a] * mu[b] : 0);
                    S[a * D + b] = S[b * D + a] = v;
                }
        }
    }
    if (s != OPT_OK) {
        opt_refine_free(rf);
        return s;
    }
    *out = rf;
    return OPT_OK;
}

void opt_refine_free(opt_refine *rf)
{
    if (!rf) return;
    for (size_t i = 0; i < rf->n; i++) {
        free(rf->L[i].in_name);
        free(rf->L[i].S);
        free(rf->L[i].mu);
        free(rf->L[i].w0);
    }
    free(rf->L);
    free(rf);
}

bool opt_refine_has(const opt_refine *rf, size_t i)
{
    return rf && i < rf->n && rf->L[i].kind != 0;
}

/* Output error energy sum_o e_o^T S e_o of replacing w0 by w (both in the weight's layout), and
 * the output energy sum_o w0_o^T S w0_o. */
static void out_error(const rlayer *l, const float *w, double *e_out, double *energy)
{
    int64_t D = l->D, per = l->O / l->G;
    double *e = malloc((size_t)D * sizeof *e), *f = malloc((size_t)D * sizeof *f);
    double se = 0, sf = 0;
    for (int64_t o = 0; e && f && o < l->O; o++) {
        const double *S = l->S + (o / per) * D * D;
        for (int64_t d = 0; d < D; d++) {
            uint64_t k = widx(l, o, d);
            f[d] = l->w0[k];
            e[d] = (double)l->w0[k] - (w ? w[k] : 0);
        }
        for (int64_t a = 0; a < D; a++) {
            double ea = 0, fa = 0;
            for (int64_t b = 0; b < D; b++) {
                ea += S[a * D + b] * e[b];
                fa += S[a * D + b] * f[b];
            }
            se += e[a] * ea;
            sf += f[a] * fa;
        }
    }
    free(e);
    free(f);
    *e_out = se;
    *energy = sf;
}

/* Solves A x = b for symmetric positive definite A (n x n, overwritten) by Cholesky, with a
 * ridge added when a pivot is not positive. Returns false if it still fails. */
static bool spd_solve(double *A, double *b, int n)
{
    for (int j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return false;
        d = sqrt(d);
        A[j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double v = A[i * n + j];
            for (int k = 0; k < j; k++) v -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = v / d;
        }
    }
    for (int i = 0; i < n; i++) {
        double v = b[i];
        for (int k = 0; k < i; k++) v -= A[i * n + k] * b[k];
        b[i] = v / A[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        double v = b[i];
        for (int k = i + 1; k < n; k++) v -= A[k * n + i] * b[k];
        b[i] = v / A[i * n + i];
    }
    return true;
}

opt_status opt_refine_bias(opt_refine *rf, size_t i, const float *w, opt_error *err)
{
    rlayer *l = &rf->L[i];
    if (!l->kind || !l->bias || l->bias_scale == 0) return OPT_OK;
    float *b;
    uint64_t nb;
    OPT_TRY(opt_tensor_to_f32_alloc(l->bias, &b, &nb, err));
    int64_t D = l->D, per = l->O / l->G;
    for (int64_t o = 0; o < l->O && (uint64_t)o < nb; o++) {
        const double *mu = l->mu + (o / per) * D;
        double d = 0;
        for (int64_t a = 0; a < D; a++) {
            uint64_t k = widx(l, o, a);
            d += mu[a] * ((double)l->w0[k] - w[k]);
        }
        b[o] = (float)(b[o] + l->bias_scale * d);
    }
    opt_status s = opt_tensor_set_f32(l->bias, l->bias->data_type, b, nb, err);
    free(b);
    return s;
}

opt_status opt_refine_centroids(opt_refine *rf, size_t i, const uint8_t *idx, float *book,
                                int nbook, int fixed, double *before, double *after, opt_error *err)
{
    rlayer *l = &rf->L[i];
    *before = *after = NAN;
    if (!l->kind || nbook - fixed < 1) return OPT_OK;
    int K = nbook - fixed;
    int64_t D = l->D, per = l->O / l->G;
    float *w = malloc(l->numel * sizeof *w);
    double *G = calloc((size_t)K * (size_t)K, sizeof *G), *bv = calloc((size_t)K, sizeof *bv),
           *u = malloc((size_t)D * sizeof *u);
    int *ix = malloc((size_t)D * sizeof *ix);
    opt_status s = OPT_OK;
    if (!w || !G || !bv || !u || !ix) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    double en;
    for (uint64_t k = 0; k < l->numel; k++) w[k] = book[idx[k]];
    out_error(l, w, before, &en);
    for (int64_t o = 0; o < l->O; o++) {
        const double *S = l->S + (o / per) * D * D;
        for (int64_t d = 0; d < D; d++) ix[d] = (int)idx[widx(l, o, d)] - fixed;
        for (int64_t a = 0; a < D; a++) {
            if (ix[a] < 0) continue;
            double ua = 0;
            const double *Sa = S + a * D;
            double *Gj = G + (size_t)ix[a] * (size_t)K;
            for (int64_t b = 0; b < D; b++) {
                ua += Sa[b] * l->w0[widx(l, o, b)];
                if (ix[b] >= 0) Gj[ix[b]] += Sa[b];
            }
            bv[ix[a]] += ua;
        }
    }
    /* A small ridge towards the k-means centroids keeps empty or collinear clusters put. */
    double tr = 0;
    for (int j = 0; j < K; j++) tr += G[j * K + j];
    double lam = 1e-9 * (tr > 0 ? tr / K : 1) + 1e-30;
    for (int j = 0; j < K; j++) {
        G[j * K + j] += lam;
        bv[j] += lam * book[fixed + j];
    }
    if (spd_solve(G, bv, K)) {
        float *nb = malloc((size_t)K * sizeof *nb);
        if (!nb) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (int j = 0; j < K; j++) nb[j] = (float)bv[j];
        for (uint64_t k = 0; k < l->numel; k++) w[k] = idx[k] >= fixed ? nb[idx[k] - fixed] : book[idx[k]];
        double e2;
        out_error(l, w, &e2, &en);
        if (e2 <= *before) memcpy(book + fixed, nb, (size_t)K * sizeof *nb);
        free(nb);
    }
    for (uint64_t k = 0; k < l->numel; k++) w[k] = book[idx[k]];
    out_error(l, w, after, &en);
    if (en > 0) {
        *before /= en;
        *after /= en;
    }
out:
    free(w);
    free(G);
    free(bv);
    free(u);
    free(ix);
    return s;
}

typedef struct salient {
    double s;
    uint64_t k;
} salient;

static int cmp_salient(const void *a, const void *b)
{
    const salient *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

opt_status opt_refine_prune(opt_refine *rf, size_t i, float *w, uint64_t keep, double *before,
                            double *after, opt_error *err)
{
    rlayer *l = &rf->L[i];
    *before = *after = NAN;
    if (!l->kind) return OPT_OK;
    int64_t D = l->D, per = l->O / l->G;
    opt_status s = OPT_OK;
    /* Diagonal of each group's inverse covariance (ridge-regularised), for the OBS saliency. */
    double *hinv = malloc((size_t)(l->G * D) * sizeof *hinv), *A = malloc((size_t)(D * D) * sizeof *A),
           *rhs = malloc((size_t)D * sizeof *rhs);
    salient *sal = malloc(l->numel * sizeof *sal);
    int64_t *sup = malloc((size_t)D * sizeof *sup);
    if (!hinv || !A || !rhs || !sal || !sup) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int64_t g = 0; g < l->G; g++) {
        const double *S = l->S + g * D * D;
        double tr = 0;
        for (int64_t a = 0; a < D; a++) tr += S[a * D + a];
        double lam = 1e-2 * (tr > 0 ? tr / (double)D : 1);
        memcpy(A, S, (size_t)(D * D) * sizeof *A);
        for (int64_t a = 0; a < D; a++) A[a * D + a] += lam;
        /* Cholesky once, then one forward/back solve per unit vector. */
        bool ok = true;
        for (int64_t j = 0; j < D && ok; j++) {
            double d = A[j * D + j];
            for (int64_t k = 0; k < j; k++) d -= A[j * D + k] * A[j * D + k];
            if (!(d > 0)) ok = false;
            else {
                d = sqrt(d);
                A[j * D + j] = d;
                for (int64_t r = j + 1; r < D; r++) {
                    double v = A[r * D + j];
                    for (int64_t k = 0; k < j; k++) v -= A[r * D + k] * A[j * D + k];
                    A[r * D + j] = v / d;
                }
            }
        }
        for (int64_t a = 0; a < D; a++) {
            if (!ok) {
                hinv[g * D + a] = 1;
                continue;
            }
            /* [A^-1]_aa = || L^-1 e_a ||^2 */
            memset(rhs, 0, (size_t)D * sizeof *rhs);
            rhs[a] = 1;
            double nrm = 0;
            for (int64_t r = a; r < D; r++) {
                double v = rhs[r];
                for (int64_t k = a; k < r; k++) v -= A[r * D + k] * rhs[k];
                rhs[r] = v / A[r * D + r];
                nrm += rhs[r] * rhs[r];
            }
            hinv[g * D + a] = nrm;
        }
    }
    uint64_t nnz = 0;
    for (int64_t o = 0; o < l->O; o++)
        for (int64_t d = 0; d < D; d++) {
            uint64_t k = widx(l, o, d);
            double h = hinv[(o / per) * D + d];
            sal[k] = (salient){w[k] == 0.0f ? -1 : (double)w[k] * w[k] / (h > 0 ? h : 1e-30), k};
            nnz += w[k] != 0.0f;
        }
    if (keep > nnz) keep = nnz;
    qsort(sal, l->numel, sizeof *sal, cmp_salient);
    uint8_t *mask = calloc(l->numel, 1);
    if (!mask) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (uint64_t j = 0; j < keep; j++) mask[sal[j].k] = 1;
    /* Refit each row on its support: S_SS w_S = (S w0)_S. */
    for (int64_t o = 0; o < l->O; o++) {
        const double *S = l->S + (o / per) * D * D;
        int64_t m = 0;
        for (int64_t d = 0; d < D; d++)
            if (mask[widx(l, o, d)]) sup[m++] = d;
        for (int64_t d = 0; d < D; d++) w[widx(l, o, d)] = 0.0f;
        if (!m) continue;
        double *As = malloc((size_t)(m * m) * sizeof *As), *bs = malloc((size_t)m * sizeof *bs);
        if (!As || !bs) {
            free(As);
            free(bs);
            free(mask);
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            goto out;
        }
        double tr = 0;
        for (int64_t a = 0; a < m; a++) {
            double v = 0;
            for (int64_t b = 0; b < D; b++) v += S[sup[a] * D + b] * l->w0[widx(l, o, b)];
            bs[a] = v;
            for (int64_t b = 0; b < m; b++) As[a * m + b] = S[sup[a] * D + sup[b]];
            tr += As[a * m + a];
        }
        double lam = 1e-6 * (tr > 0 ? tr / (double)m : 1) + 1e-30;
        for (int64_t a = 0; a < m; a++) {
            As[a * m + a] += lam;
            bs[a] += lam * l->w0[widx(l, o, sup[a])];
        }
        bool ok = spd_solve(As, bs, (int)m);
        for (int64_t a = 0; a < m; a++) {
            float v = ok ? (float)bs[a] : l->w0[widx(l, o, sup[a])];
            w[widx(l, o, sup[a])] = v != 0.0f ? v : 1e-30f; /* kept weights stay non-zero */
        }
        free(As);
        free(bs);
    }
    free(mask);
    double en;
    out_error(l, w, after, &en);
    if (en > 0) *after /= en;
    s = opt_refine_bias(rf, i, w, err);
out:
    free(hinv);
    free(A);
    free(rhs);
    free(sal);
    free(sup);
    return s;
}
