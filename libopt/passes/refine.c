/*
 * libopt/passes/refine.c — input statistics of layers and the least-squares fits of refine.h.
 */
#include "libopt/passes/refine.h"
#include "libopt/exec/exec.h"

#include "libopt/exec/cpu/blas.h"
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
    double *S;             /* G blocks of D x D: sum of xq xq^T, then the covariance */
    double *C;             /* sequential only: sum of xq xf^T, then the cross-covariance */
    double *F;             /* sequential only: sum of xf xf^T (for the reported error) */
    double *mu;            /* G blocks of D: sum of xq, then the mean */
    double *muf;           /* sequential only: the same for xf */
    double cnt;            /* rows accumulated (per group) */
    float *w0;             /* the target weight: the reference model's (or the input's) */
    float *wcur;           /* the weight in the model being compressed (its zeros stay) */
    float *b0;             /* the reference model's bias when it differs from ours, or NULL */
    uint64_t numel;
    opt_tensor *bias;      /* own bias initializer, or NULL */
    double bias_scale;     /* alpha / beta for Gemm, 1 for Conv */
    bool centered;
} rlayer;

struct opt_refine {
    size_t n;
    rlayer *L;
    const opt_calib_batches *cb;
    opt_exec *ref;         /* sequential: the reference model's executor */
    /* capture of one activation during a run (sequential mode) */
    const char *want;
    float *cap;
    int64_t cap_dims[OPT_MAX_DIMS];
    int cap_ndim;
    size_t cap_len;
    bool cap_ok;
};

/* x here: xq is the layer's input in the model being compressed, xf in the reference (float)
 * model. Without a reference they are the same activations, and C, F, muf alias S and mu. */
static inline const double *Cm(const rlayer *l) { return l->C ? l->C : l->S; }
static inline const double *Ff(const rlayer *l) { return l->F ? l->F : l->S; }
static inline const double *MuF(const rlayer *l) { return l->muf ? l->muf : l->mu; }

static inline uint64_t widx(const rlayer *l, int64_t o, int64_t d)
{
    return l->row_major ? (uint64_t)(o * l->D + d) : (uint64_t)(d * l->O + o);
}

/* Adds the rows of Xq [rows, D] (float, row-major) to block g's sums; with Xf (the reference
 * model's rows, same shape), also the cross and reference sums. */
static void add_rows(rlayer *l, int64_t g, const float *X, const float *Xf, int64_t rows)
{
    int64_t D = l->D;
    float *tmp = calloc((size_t)(D * D), sizeof *tmp);
    if (!tmp) return;
    nn_blas()->ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)D, (int)rows, 1.0f, X, (int)D, 0.0f, tmp, (int)D);
    double *S = l->S + g * D * D, *mu = l->mu + g * D;
    for (int64_t a = 0; a < D; a++)
        for (int64_t b = a; b < D; b++) S[a * D + b] += tmp[a * D + b];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t a = 0; a < D; a++) mu[a] += X[r * D + a];
    if (Xf && l->C) {
        nn_blas()->sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)D, (int)D, (int)rows, 1.0f, X, (int)D,
                    Xf, (int)D, 0.0f, tmp, (int)D);
        double *C = l->C + g * D * D, *F = l->F + g * D * D, *mf = l->muf + g * D;
        for (int64_t a = 0; a < D * D; a++) C[a] += tmp[a];
        nn_blas()->ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)D, (int)rows, 1.0f, Xf, (int)D, 0.0f, tmp, (int)D);
        for (int64_t a = 0; a < D; a++)
            for (int64_t b = a; b < D; b++) F[a * D + b] += tmp[a * D + b];
        for (int64_t r = 0; r < rows; r++)
            for (int64_t a = 0; a < D; a++) mf[a] += Xf[r * D + a];
    }
    if (g == 0) l->cnt += (double)rows;
    free(tmp);
}

/* Rows of layer l's input patches for activation x (dims/ndim), group g of image n: fills P
 * (rows x D) and returns rows, or -1 when the activation does not fit the layer. For Gemm there
 * is one "image" holding the whole batch. */
static int64_t patch_rows(const rlayer *l, const float *x, int ndim, const int64_t *dims, int64_t n,
                          int64_t g, float *P)
{
    if (l->kind == K_GEMM) {
        uint64_t ne = 1;
        for (int d = 0; d < ndim; d++) ne *= (uint64_t)dims[d];
        if (!l->D || ne % (uint64_t)l->D) return -1;
        int64_t rows = (int64_t)(ne / (uint64_t)l->D);
        if (P) {
            if (!l->trans_a) memcpy(P, x, ne * sizeof *P);
            else
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t d = 0; d < l->D; d++) P[r * l->D + d] = x[d * rows + r];
        }
        return rows;
    }
    if (ndim != 4) return -1;
    int64_t C = dims[1], H = dims[2], W = dims[3];
    int64_t cg = C / l->G;
    if (cg * l->kh * l->kw != l->D) return -1;
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
    if (OH <= 0 || OW <= 0) return -1;
    if (!P) return OH * OW;
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
    return OH * OW;
}

/* Accumulates activation xq (and xf, same shape, or NULL) into layer l. */
static void accumulate2(rlayer *l, const float *xq, const float *xf, int ndim, const int64_t *dims)
{
    int64_t rows = patch_rows(l, xq, ndim, dims, 0, 0, NULL);
    if (rows <= 0) return;
    int64_t images = l->kind == K_GEMM ? 1 : dims[0], groups = l->kind == K_GEMM ? 1 : l->G;
    /* Several images' patches per BLAS call: small calls waste most of the time. */
    int64_t chunk = rows >= 4096 ? 1 : 4096 / rows;
    if (chunk > images) chunk = images;
    size_t cap = (size_t)(chunk * rows * l->D);
    float *P = malloc(cap * sizeof *P), *Pf = xf ? malloc(cap * sizeof *Pf) : NULL;
    if (!P || (xf && !Pf)) {
        free(P);
        free(Pf);
        return;
    }
    for (int64_t g = 0; g < groups; g++)
        for (int64_t n0 = 0; n0 < images; n0 += chunk) {
            int64_t n1 = n0 + chunk < images ? n0 + chunk : images;
            for (int64_t n = n0; n < n1; n++) {
                patch_rows(l, xq, ndim, dims, n, g, P + (n - n0) * rows * l->D);
                if (xf) patch_rows(l, xf, ndim, dims, n, g, Pf + (n - n0) * rows * l->D);
            }
            add_rows(l, g, P, Pf, rows * (n1 - n0));
        }
    free(P);
    free(Pf);
}

static void accumulate(opt_refine *rf, rlayer *l, const opt_array *a)
{
    (void)rf;
    if (a->dtype != OPT_DT_FLOAT) return;
    accumulate2(l, a->data, NULL, a->ndim, a->dims);
}

static void observe(void *ctx, const char *name, const opt_node *producer, const opt_array *a)
{
    opt_refine *rf = ctx;
    (void)producer;
    for (size_t i = 0; i < rf->n; i++)
        if (rf->L[i].kind && strcmp(rf->L[i].in_name, name) == 0) accumulate(rf, &rf->L[i], a);
}

static opt_status setup_layer(opt_model *m, const opt_model *ref, const opt_weight_ref *r, rlayer *l,
                               opt_error *err)
{
    const opt_node *nd = r->node;
    const opt_tensor *t = r->t;
    l->node = nd;
    l->numel = r->numel;
    uint64_t ne;
    OPT_TRY(opt_tensor_to_f32_alloc(t, &l->wcur, &ne, err));
    /* The target is the reference model's weight of the same name when there is one (the
     * uncompressed original, so later stages also undo earlier stages' error). */
    const opt_tensor *rt = ref ? opt_graph_initializer(ref->graph, t->name) : NULL;
    uint64_t rn = 0;
    if (rt && opt_tensor_numel(rt, &rn) && rn == ne && rt->n_dims == t->n_dims &&
        opt_tensor_to_f32_alloc(rt, &l->w0, &rn, err) == OPT_OK) {
    } else {
        if (!(l->w0 = malloc((ne ? ne : 1) * sizeof *l->w0)))
            return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        memcpy(l->w0, l->wcur, ne * sizeof *l->w0);
    }
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
    if (l->bias && ref) {
        const opt_tensor *rb = opt_graph_initializer(ref->graph, l->bias->name);
        uint64_t bn = 0, cn = 0;
        if (rb && opt_tensor_numel(rb, &bn) && opt_tensor_numel(l->bias, &cn) && bn == cn &&
            opt_tensor_to_f32_alloc(rb, &l->b0, &bn, err) != OPT_OK)
            l->b0 = NULL;
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

/* Divides the sums of layer l by the row count and centres them when the layer has a bias to
 * absorb the mean. */
static void finalize(rlayer *l)
{
    if (l->cnt == 0) {
        l->kind = 0;
        return;
    }
    l->centered = l->bias != NULL;
    int64_t D = l->D;
    for (int64_t g = 0; g < l->G; g++) {
        double *S = l->S + g * D * D, *mu = l->mu + g * D;
        double *C = l->C ? l->C + g * D * D : NULL, *F = l->F ? l->F + g * D * D : NULL,
               *mf = l->muf ? l->muf + g * D : NULL;
        for (int64_t a = 0; a < D; a++) {
            mu[a] /= l->cnt;
            if (mf) mf[a] /= l->cnt;
        }
        for (int64_t a = 0; a < D; a++)
            for (int64_t b = a; b < D; b++) {
                double v = S[a * D + b] / l->cnt - (l->centered ? mu[a] * mu[b] : 0);
                S[a * D + b] = S[b * D + a] = v;
                if (F) {
                    v = F[a * D + b] / l->cnt - (l->centered ? mf[a] * mf[b] : 0);
                    F[a * D + b] = F[b * D + a] = v;
                }
            }
        if (C)
            for (int64_t a = 0; a < D; a++)
                for (int64_t b = 0; b < D; b++) C[a * D + b] = C[a * D + b] / l->cnt - (l->centered ? mu[a] * mf[b] : 0);
    }
}

/* Runs e over every calibration batch; outs are freed. */
static opt_status run_all(opt_refine *rf, opt_exec *e, size_t b, opt_error *err)
{
    const opt_calib_batches *cb = rf->cb;
    size_t nout = opt_exec_n_outputs(e);
    opt_array *outs = calloc(nout + 1, sizeof *outs);
    if (!outs) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    opt_status s = opt_exec_run(e, cb->arrays + b * cb->n_inputs, cb->n_inputs, outs, nout, err);
    for (size_t k = 0; k < nout; k++) opt_array_free(&outs[k]);
    free(outs);
    return s;
}

/* Observer that copies the activation named rf->want. */
static void capture(void *ctx, const char *name, const opt_node *producer, const opt_array *a)
{
    opt_refine *rf = ctx;
    (void)producer;
    if (rf->cap_ok || strcmp(name, rf->want) != 0 || a->dtype != OPT_DT_FLOAT) return;
    size_t n = (size_t)opt_array_numel(a);
    float *p = rf->cap_len >= n ? rf->cap : realloc(rf->cap, (n ? n : 1) * sizeof *p);
    if (!p) return;
    rf->cap = p;
    rf->cap_len = rf->cap_len >= n ? rf->cap_len : n;
    memcpy(p, a->data, n * sizeof *p);
    rf->cap_ndim = a->ndim;
    memcpy(rf->cap_dims, a->dims, sizeof rf->cap_dims);
    rf->cap_ok = true;
}

/* The activation `name` of batch b in executor e (a graph input comes from the batch itself):
 * a malloc'd copy in *x with its shape. */
static opt_status activation(opt_refine *rf, opt_exec *e, size_t b, const char *name, float **x,
                             int *ndim, int64_t *dims, opt_error *err)
{
    const opt_calib_batches *cb = rf->cb;
    for (size_t i = 0; i < cb->n_inputs && i < opt_exec_n_inputs(e); i++)
        if (strcmp(opt_exec_input_name(e, i), name) == 0) {
            const opt_array *a = &cb->arrays[b * cb->n_inputs + i];
            size_t n = (size_t)opt_array_numel(a);
            if (a->dtype != OPT_DT_FLOAT || !(*x = malloc((n ? n : 1) * sizeof **x)))
                return opt_error_set(err, OPT_ERR_UNSUPPORTED, "calibration input '%s' is not float", name);
            memcpy(*x, a->data, n * sizeof **x);
            *ndim = a->ndim;
            memcpy(dims, a->dims, sizeof(int64_t) * OPT_MAX_DIMS);
            return OPT_OK;
        }
    rf->want = name;
    rf->cap_ok = false;
    OPT_TRY(run_all(rf, e, b, err));
    if (!rf->cap_ok) return opt_error_set(err, OPT_ERR_INVALID, "value '%s' was not computed", name);
    size_t n = 1;
    for (int d = 0; d < rf->cap_ndim; d++) n *= (size_t)rf->cap_dims[d];
    if (!(*x = malloc((n ? n : 1) * sizeof **x))) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    memcpy(*x, rf->cap, n * sizeof **x);
    *ndim = rf->cap_ndim;
    memcpy(dims, rf->cap_dims, sizeof rf->cap_dims);
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
    rf->cb = cb;
    opt_status s = OPT_OK;
    for (size_t i = 0; i < n && s == OPT_OK; i++) s = setup_layer(m, cb->reference, &refs[i], &rf->L[i], err);
    opt_exec_opts eo = {.threads = cb->threads, .observe = cb->reference ? capture : observe,
                        .observe_ctx = rf};
    if (s == OPT_OK && cb->reference) {
        /* Sequential: statistics are gathered layer by layer (opt_refine_prepare), pairing the
         * activations of the model as compressed so far with the reference model's. */
        s = opt_exec_new(cb->reference, &eo, &rf->ref, err);
        for (size_t i = 0; i < n && s == OPT_OK; i++) {
            rlayer *l = &rf->L[i];
            if (!l->kind) continue;
            size_t dd = (size_t)(l->G * l->D * l->D);
            if (!(l->C = calloc(dd, sizeof *l->C)) || !(l->F = calloc(dd, sizeof *l->F)) ||
                !(l->muf = calloc((size_t)(l->G * l->D), sizeof *l->muf)))
                s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory for input statistics");
        }
    } else if (s == OPT_OK) {
        opt_exec *e = NULL;
        s = opt_exec_new(m, &eo, &e, err);
        for (size_t b = 0; b < cb->n_batches && s == OPT_OK; b++) {
            const opt_array *in = cb->arrays + b * cb->n_inputs;
            /* Layers reading a graph input directly are not observed: feed them the batch. */
            for (size_t i = 0; i < cb->n_inputs && i < opt_exec_n_inputs(e); i++)
                observe(rf, opt_exec_input_name(e, i), NULL, &in[i]);
            s = run_all(rf, e, b, err);
        }
        opt_exec_free(e);
        for (size_t i = 0; i < n && s == OPT_OK; i++)
            if (rf->L[i].kind) finalize(&rf->L[i]);
    }
    if (s != OPT_OK) {
        opt_refine_free(rf);
        return s;
    }
    *out = rf;
    return OPT_OK;
}

opt_status opt_refine_prepare(opt_refine *rf, size_t i, const opt_model *cur, opt_error *err)
{
    if (!rf || !rf->ref || i >= rf->n || !rf->L[i].kind) return OPT_OK;
    rlayer *l = &rf->L[i];
    opt_exec_opts eo = {.threads = rf->cb->threads, .observe = capture, .observe_ctx = rf};
    opt_exec *e = NULL;
    OPT_TRY(opt_exec_new(cur, &eo, &e, err));
    opt_status s = OPT_OK;
    for (size_t b = 0; b < rf->cb->n_batches && s == OPT_OK; b++) {
        float *xq = NULL, *xf = NULL;
        int nq, nf;
        int64_t dq[OPT_MAX_DIMS], df[OPT_MAX_DIMS];
        s = activation(rf, e, b, l->in_name, &xq, &nq, dq, err);
        if (s == OPT_OK) s = activation(rf, rf->ref, b, l->in_name, &xf, &nf, df, err);
        if (s == OPT_OK && (nq != nf || memcmp(dq, df, sizeof(int64_t) * (size_t)nq) != 0))
            s = opt_error_set(err, OPT_ERR_INVALID, "value '%s' has different shapes in the two models", l->in_name);
        if (s == OPT_OK) accumulate2(l, xq, xf, nq, dq);
        free(xq);
        free(xf);
    }
    opt_exec_free(e);
    if (s == OPT_OK) finalize(l);
    return s;
}

void opt_refine_free(opt_refine *rf)
{
    if (!rf) return;
    for (size_t i = 0; i < rf->n; i++) {
        free(rf->L[i].in_name);
        free(rf->L[i].S);
        free(rf->L[i].C);
        free(rf->L[i].F);
        free(rf->L[i].mu);
        free(rf->L[i].muf);
        free(rf->L[i].w0);
        free(rf->L[i].wcur);
        free(rf->L[i].b0);
    }
    opt_exec_free(rf->ref);
    free(rf->cap);
    free(rf->L);
    free(rf);
}

opt_status opt_refine_original(const opt_refine *rf, size_t i, float **w, opt_error *err)
{
    const rlayer *l = &rf->L[i];
    if (!l->w0 || !(*w = malloc((l->numel ? l->numel : 1) * sizeof **w)))
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    memcpy(*w, l->w0, l->numel * sizeof **w);
    return OPT_OK;
}

bool opt_refine_has(const opt_refine *rf, size_t i)
{
    return rf && i < rf->n && rf->L[i].kind != 0;
}

/* Rows per block of the products below: up to 256, fewer where a block would pass 2^20 entries. */
static int64_t row_block(int64_t D, int64_t per)
{
    int64_t bl = D > 0 ? ((int64_t)1 << 20) / D : 256;
    bl = bl < 1 ? 1 : bl > 256 ? 256 : bl;
    return per < bl ? per : bl;
}

/* Output error energy of the layer with weight w (the weight's layout) against the reference:
 * sum_o w_o^T S w_o - 2 w_o^T C w0_o + w0_o^T F w0_o, and the output energy sum_o w0_o^T F w0_o. */
static void out_error(const rlayer *l, const float *w, double *e_out, double *energy)
{
    int64_t D = l->D, per = l->O / l->G, bl = row_block(D, per);
    size_t n = (size_t)(bl * D);
    bool same = Ff(l) == Cm(l); /* no reference: C = F = S */
    double *q = malloc(n * sizeof *q), *f = malloc(n * sizeof *f), *sq = malloc(n * sizeof *sq),
           *cf = malloc(n * sizeof *cf), *ff = same ? cf : malloc(n * sizeof *ff);
    double se = 0, sf = 0;
    /* Blocks of rows: S q, C f and F f as matrix products. */
    for (int64_t g = 0; q && f && sq && cf && ff && g < l->G; g++) {
        size_t off = (size_t)(g * D * D);
        const double *S = l->S + off, *C = Cm(l) + off, *F = Ff(l) + off;
        for (int64_t r0 = 0; r0 < per; r0 += bl) {
            int64_t nb = per - r0 < bl ? per - r0 : bl;
            for (int64_t r = 0; r < nb; r++)
                for (int64_t d = 0; d < D; d++) {
                    uint64_t k = widx(l, g * per + r0 + r, d);
                    f[r * D + d] = l->w0[k];
                    q[r * D + d] = w[k];
                }
            nn_blas()->dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)D, (int)D, 1.0, q, (int)D, S, (int)D,
                        0.0, sq, (int)D);
            nn_blas()->dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)D, (int)D, 1.0, f, (int)D, C, (int)D,
                        0.0, cf, (int)D);
            if (!same)
                nn_blas()->dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)D, (int)D, 1.0, f, (int)D, F,
                            (int)D, 0.0, ff, (int)D);
            for (int64_t k = 0; k < nb * D; k++) {
                se += q[k] * sq[k] - 2 * q[k] * cf[k] + f[k] * ff[k];
                sf += f[k] * ff[k];
            }
        }
    }
    free(q);
    free(f);
    free(sq);
    free(cf);
    if (!same) free(ff);
    *e_out = se > 0 ? se : 0;
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
        const double *mu = l->mu + (o / per) * D, *mf = MuF(l) + (o / per) * D;
        double d = 0;
        for (int64_t a = 0; a < D; a++) {
            uint64_t k = widx(l, o, a);
            d += mf[a] * (double)l->w0[k] - mu[a] * (double)w[k];
        }
        b[o] = (float)((l->b0 ? l->b0[o] : b[o]) + l->bias_scale * d);
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
    int64_t D = l->D, per = l->O / l->G, bl = row_block(D, per);
    float *w = malloc(l->numel * sizeof *w);
    double *G = calloc((size_t)K * (size_t)K, sizeof *G), *bv = calloc((size_t)K, sizeof *bv),
           *W0 = malloc((size_t)(bl * D) * sizeof *W0), *CW = malloc((size_t)(bl * D) * sizeof *CW);
    int *ix = malloc((size_t)D * sizeof *ix), *p = malloc((size_t)D * sizeof *p), *st = malloc((size_t)(K + 1) * sizeof *st);
    opt_status s = OPT_OK;
    if (!w || !G || !bv || !W0 || !CW || !ix || !p || !st) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    double en;
    for (uint64_t k = 0; k < l->numel; k++) w[k] = book[idx[k]];
    out_error(l, w, before, &en);
    /* G = sum_o P_o^T S P_o and bv = sum_o P_o^T C w0_o, P_o the one-hot assignment of row o. */
    for (int64_t g = 0; g < l->G; g++) {
        const double *S = l->S + g * D * D, *C = Cm(l) + g * D * D;
        for (int64_t r0 = 0; r0 < per; r0 += bl) {
            int64_t nb = per - r0 < bl ? per - r0 : bl;
            for (int64_t r = 0; r < nb; r++)
                for (int64_t d = 0; d < D; d++) W0[r * D + d] = l->w0[widx(l, g * per + r0 + r, d)];
            nn_blas()->dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)D, (int)D, 1.0, W0, (int)D, C, (int)D,
                        0.0, CW, (int)D);
            for (int64_t r = 0; r < nb; r++) {
                int64_t o = g * per + r0 + r;
                /* The row's assigned positions sorted by centroid (p), centroid j's run st[j]..st[j+1]. */
                memset(st, 0, (size_t)(K + 1) * sizeof *st);
                for (int64_t d = 0; d < D; d++) {
                    ix[d] = (int)idx[widx(l, o, d)] - fixed;
                    if (ix[d] >= 0) st[ix[d] + 1]++;
                }
                for (int j = 0; j < K; j++) st[j + 1] += st[j];
                for (int64_t d = 0; d < D; d++)
                    if (ix[d] >= 0) p[st[ix[d]]++] = (int)d;
                for (int j = K; j > 0; j--) st[j] = st[j - 1];
                st[0] = 0;
                for (int t = 0; t < st[K]; t++) {
                    int64_t a = p[t];
                    const double *Sa = S + a * D;
                    double *Gj = G + (size_t)ix[a] * (size_t)K;
                    for (int k = 0; k < K; k++) {
                        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                        int u = st[k], e = st[k + 1];
                        for (; u + 4 <= e; u += 4) {
                            s0 += Sa[p[u]];
                            s1 += Sa[p[u + 1]];
                            s2 += Sa[p[u + 2]];
                            s3 += Sa[p[u + 3]];
                        }
                        for (; u < e; u++) s0 += Sa[p[u]];
                        Gj[k] += (s0 + s1) + (s2 + s3);
                    }
                    bv[ix[a]] += CW[r * D + a];
                }
            }
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
    free(W0);
    free(CW);
    free(ix);
    free(p);
    free(st);
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

/* Reverses the n entries of a in place. */
static void reverse_flat(double *a, size_t n)
{
    for (size_t i = 0, j = n ? n - 1 : 0; i < j; i++, j--) {
        double t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

bool opt_gptq_factor(double *A, int64_t m)
{
    if (m < 1) return true;
    if (m > 1000000) return false; /* LAPACK takes int sizes; refine's D is at most 20000 */
    /* With J the reversal, J H J = R^T R (R upper) gives H = V V^T with V = J R^T J upper, so
     * H^-1 = V^-T V^-1 and U = V^-1 = J R^-T J. Read column-major, the flat reversal of a
     * row-major matrix is J (.)^T J: the flat reversal of H is J H J (H is symmetric), and that of
     * R^-1 (column-major) is U row-major. */
    size_t mm = (size_t)m * (size_t)m;
    int n = (int)m, info = 0;
    reverse_flat(A, mm);
    nn_blas()->dpotrf("U", &n, A, &n, &info);
    if (info != 0) return false;
    nn_blas()->dtrtri("U", "N", &n, A, &n, &info);
    if (info != 0) return false;
    reverse_flat(A, mm);
    for (int64_t r = 1; r < m; r++) memset(A + r * m, 0, (size_t)r * sizeof *A);
    for (int64_t j = 0; j < m; j++)
        if (!(A[j * m + j] > 0) || !isfinite(A[j * m + j])) return false;
    return true;
}

/* A row of a group and its support (the indices d of its non-zero weights). */
typedef struct rowsup {
    int64_t o, m;
    uint64_t h;
    const int32_t *sup;
} rowsup;

static int cmp_rowsup(const void *a, const void *b)
{
    const rowsup *x = a, *y = b;
    if (x->m != y->m) return x->m < y->m ? -1 : 1;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    int c = memcmp(x->sup, y->sup, (size_t)x->m * sizeof *x->sup);
    if (c) return c;
    return x->o < y->o ? -1 : x->o > y->o;
}

/* A = S_TT + lam I for the support sp[0..m) of S (D x D), lam = frac times the mean diagonal
 * of S_TT (frac alone when that is 0; never exactly 0). Returns lam. */
static double support_system(const double *S, int64_t D, const int32_t *sp, int64_t m, double frac, double *A)
{
    double tr = 0;
    for (int64_t a = 0; a < m; a++) {
        for (int64_t b = 0; b < m; b++) A[a * m + b] = S[sp[a] * D + sp[b]];
        tr += A[a * m + a];
    }
    double lam = frac * (tr > 0 ? tr / (double)m : 1) + 1e-30;
    for (int64_t a = 0; a < m; a++) A[a * m + a] += lam;
    return lam;
}

static bool same_support(const rowsup *x, const rowsup *y)
{
    return x->m == y->m && x->h == y->h && memcmp(x->sup, y->sup, (size_t)x->m * sizeof *x->sup) == 0;
}

/* The supports of group g's rows: where the row's weight is non-zero (wf) or, with wf NULL, where
 * mk is set. sups holds per x D indices; rows[0..per) come back sorted so that rows with the same
 * support are adjacent. */
static void group_supports(const rlayer *l, int64_t g, const float *wf, const uint8_t *mk, int32_t *sups,
                           rowsup *rows)
{
    int64_t D = l->D, per = l->O / l->G;
    for (int64_t r = 0; r < per; r++) {
        int32_t *sp = sups + r * D;
        int64_t m = 0;
        uint64_t h = 1469598103934665603ull;
        for (int64_t d = 0; d < D; d++) {
            uint64_t k = widx(l, g * per + r, d);
            if (wf ? wf[k] != 0.0f : mk[k] != 0) {
                sp[m++] = (int32_t)d;
                h = (h ^ (uint64_t)d) * 1099511628211ull;
            }
        }
        rows[r] = (rowsup){r, m, h, sp};
    }
    qsort(rows, (size_t)per, sizeof *rows, cmp_rowsup);
}

/* SparseGPT's mask selection (Frantar & Alistarh, 2023) on one layer: columns are visited in
 * blocks of 64; in each block the weights with the smallest w^2 / U_ii^2 (U the upper Cholesky
 * factor of H^-1, H = S + lam I, given per group in Uf, row-major) are dropped, so many that
 * the layer ends with exactly numel - keep zeros, and every column's error (dropped weights) is
 * pushed onto the columns not yet visited through U, as OBS does. Zeros of w stay dropped. Fills
 * mask (1 = kept); the kept values are refitted afterwards. start holds each row's starting
 * weights (o * D + d). */
static opt_status sparsegpt_mask(const rlayer *l, const double *Uf, const double *start, const float *w,
                                 uint64_t keep, uint8_t *mask)
{
    int64_t D = l->D, per = l->O / l->G;
    const int64_t B = 64;
    double *W = malloc((size_t)(per * D) * sizeof *W);
    salient *sb = malloc((size_t)(per * B) * sizeof *sb);
    opt_status s = OPT_OK;
    if (!W || !sb) {
        s = OPT_ERR_NOMEM;
        goto out;
    }
    uint64_t to_prune = l->numel - keep;
    for (int64_t g = 0; g < l->G && s == OPT_OK; g++) {
        const double *U = Uf + g * D * D;
#define UU(i, j) U[(i) * D + (j)]
        for (int64_t r = 0; r < per; r++)
            for (int64_t d = 0; d < D; d++) W[r * D + d] = start[(g * per + r) * D + d];
        uint64_t target = l->G == 1 ? to_prune : (uint64_t)llround((double)to_prune / (double)l->G);
        uint64_t pruned = 0;
        for (int64_t b0 = 0; b0 < D; b0 += B) {
            int64_t b1 = b0 + B < D ? b0 + B : D, nb = 0;
            uint64_t cum = (uint64_t)llround((double)target * (double)b1 / (double)D);
            uint64_t forced = 0;
            for (int64_t r = 0; r < per; r++)
                for (int64_t i = b0; i < b1; i++) {
                    uint64_t k = widx(l, g * per + r, i);
                    double u = UU(i, i);
                    bool z = w[k] == 0.0f;
                    forced += z;
                    sb[nb++] = (salient){z ? -1 : W[r * D + i] * W[r * D + i] / (u * u), k};
                }
            uint64_t quota = cum > pruned ? cum - pruned : 0;
            if (quota < forced) quota = forced;
            if (quota > (uint64_t)nb) quota = (uint64_t)nb;
            /* Descending saliency: the last `quota` go. */
            qsort(sb, (size_t)nb, sizeof *sb, cmp_salient);
            for (int64_t j = 0; j < nb; j++) mask[sb[j].k] = (uint64_t)(nb - 1 - j) >= quota;
            pruned += quota;
            for (int64_t i = b0; i < b1; i++) {
                double u = UU(i, i);
                for (int64_t r = 0; r < per; r++) {
                    double *Wr = W + r * D;
                    if (mask[widx(l, g * per + r, i)]) continue;
                    double e = Wr[i] / u;
                    Wr[i] = 0;
                    for (int64_t j = i + 1; j < D; j++) Wr[j] -= e * UU(i, j);
                }
            }
        }
#undef UU
    }
out:
    free(W);
    free(sb);
    return s;
}

opt_status opt_refine_prune(opt_refine *rf, size_t i, float *w, uint64_t keep, double *before,
                            double *after, opt_error *err)
{
    rlayer *l = &rf->L[i];
    *before = *after = NAN;
    if (!l->kind) return OPT_OK;
    int64_t D = l->D, per = l->O / l->G;
    opt_status s = OPT_OK;
    /* Per group: U with U^T U = (S + lam I)^-1, the diagonal of that inverse (OBS saliency
     * denominator). */
    size_t pd = per * D > 0 ? (size_t)(per * D) : 1;
    double *Uf = malloc((size_t)(l->G * D * D) * sizeof *Uf), *hinv = malloc((size_t)(l->G * D) * sizeof *hinv),
           *tgt = malloc((size_t)(l->O * D) * sizeof *tgt), *cw = malloc((size_t)(l->O * D) * sizeof *cw);
    bool *okg = calloc((size_t)l->G, sizeof *okg);
    salient *sal = malloc(l->numel * sizeof *sal);
    int32_t *sups = malloc(pd * sizeof *sups);
    rowsup *rows = malloc((size_t)(per > 0 ? per : 1) * sizeof *rows);
    uint8_t *mask = calloc(l->numel ? l->numel : 1, 1);
    if (!Uf || !hinv || !tgt || !cw || !okg || !sal || !sups || !rows || !mask) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int64_t g = 0; g < l->G; g++) {
        const double *S = l->S + g * D * D, *C = Cm(l) + g * D * D;
        double *A = Uf + g * D * D, tr = 0;
        for (int64_t a = 0; a < D; a++) tr += S[a * D + a];
        double lam = 1e-2 * (tr > 0 ? tr / (double)D : 1);
        memcpy(A, S, (size_t)(D * D) * sizeof *A);
        for (int64_t a = 0; a < D; a++) A[a * D + a] += lam;
        okg[g] = opt_gptq_factor(A, D);
        for (int64_t a = 0; a < D; a++) {
            double nrm = 0; /* [H^-1]_aa = sum_k U_ka^2 */
            for (int64_t k = 0; okg[g] && k <= a; k++) nrm += A[k * D + a] * A[k * D + a];
            hinv[g * D + a] = okg[g] ? nrm : 1;
        }
        /* Per row: c = C w0 (what the refit matches) and the unconstrained optimum H^-1 c, whose
         * entries the saliency weighs (w0 itself when there is no reference model). */
        double *tg = tgt + g * per * D, *cg = cw + g * per * D;
        for (int64_t r = 0; r < per; r++)
            for (int64_t d = 0; d < D; d++) tg[r * D + d] = l->w0[widx(l, g * per + r, d)];
        nn_blas()->dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)per, (int)D, (int)D, 1.0, tg, (int)D, C, (int)D,
                    0.0, cg, (int)D);
        if (l->C && okg[g]) {
            memcpy(tg, cg, (size_t)(per * D) * sizeof *tg);
            nn_blas()->dtrmm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, (int)per, (int)D, 1.0, A,
                        (int)D, tg, (int)D);
            nn_blas()->dtrmm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, (int)per, (int)D, 1.0, A,
                        (int)D, tg, (int)D);
        }
    }
    uint64_t nnz = 0;
    for (int64_t o = 0; o < l->O; o++)
        for (int64_t d = 0; d < D; d++) {
            uint64_t k = widx(l, o, d);
            double h = hinv[(o / per) * D + d], t = tgt[o * D + d];
            sal[k] = (salient){w[k] == 0.0f ? -1 : t * t / (h > 0 ? h : 1e-30), k};
            nnz += w[k] != 0.0f;
        }
    if (keep > nnz) keep = nnz;
    bool all_ok = true;
    for (int64_t g = 0; g < l->G; g++) all_ok &= okg[g];
    if (!all_ok || sparsegpt_mask(l, Uf, tgt, w, keep, mask) != OPT_OK) {
        /* One shot: the most salient weights of the whole layer. */
        memset(mask, 0, l->numel);
        qsort(sal, l->numel, sizeof *sal, cmp_salient);
        for (uint64_t j = 0; j < keep; j++) mask[sal[j].k] = 1;
    }
    /* Refit each row on its support: S_TT w_T = (C w0)_T, with a small ridge towards w0; rows with
     * the same support share the factor (Uf's first group is reused as its room). */
    for (uint64_t k = 0; k < l->numel; k++) w[k] = 0.0f;
    for (int64_t g = 0; g < l->G; g++) {
        const double *S = l->S + g * D * D;
        double *As = Uf, *X = tgt;
        group_supports(l, g, NULL, mask, sups, rows);
        for (int64_t r0 = 0, r1; r0 < per; r0 = r1) {
            const rowsup *R = rows + r0;
            int64_t m = R->m;
            for (r1 = r0 + 1; r1 < per && same_support(R, &rows[r1]); r1++) {
            }
            if (!m) continue;
            const int32_t *sp = R->sup;
            int n = (int)m, nr = (int)(r1 - r0), info = 0;
            double lam = support_system(S, D, sp, m, 1e-6, As);
            for (int64_t k = r0; k < r1; k++) {
                int64_t o = g * per + rows[k].o;
                for (int64_t a = 0; a < m; a++) X[(k - r0) * m + a] = cw[o * D + sp[a]] + lam * l->w0[widx(l, o, sp[a])];
            }
            nn_blas()->dpotrf("L", &n, As, &n, &info);
            bool ok = info == 0;
            if (ok) {
                nn_blas()->dpotrs("L", &n, &nr, As, &n, X, &n, &info);
                ok = info == 0;
            }
            for (int64_t k = r0; k < r1; k++) {
                int64_t o = g * per + rows[k].o;
                for (int64_t a = 0; a < m; a++) {
                    float v = ok ? (float)X[(k - r0) * m + a] : l->w0[widx(l, o, sp[a])];
                    w[widx(l, o, sp[a])] = v != 0.0f ? v : 1e-30f; /* kept weights stay non-zero */
                }
            }
        }
    }
    double en;
    out_error(l, w, after, &en);
    if (en > 0) *after /= en;
    s = opt_refine_bias(rf, i, w, err);
out:
    free(Uf);
    free(hinv);
    free(tgt);
    free(cw);
    free(okg);
    free(sal);
    free(sups);
    free(rows);
    free(mask);
    return s;
}

/* Nearest of the ascending centroids c[0..k) to x. */
static int nearest_c(const float *c, int k, double x)
{
    int lo = 0, hi = k - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (x < ((double)c[mid] + (double)c[mid + 1]) / 2) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

opt_status opt_gptq_quantize(const double *U, int64_t m, double *X, int64_t nr, const float *c, int k, int *q)
{
    /* GPTQ's lazy batch: inside a block of columns the errors go to the block's later columns
     * right away; the rest of the row gets all of the block's errors in one product. */
    const int64_t B = 128;
    if (m < 1 || nr < 1) return OPT_OK;
    int64_t bw = m < B ? m : B;
    double *E = malloc((size_t)(nr * bw) * sizeof *E);
    if (!E) return OPT_ERR_NOMEM;
    for (int64_t b0 = 0; b0 < m; b0 += B) {
        int64_t b1 = b0 + B < m ? b0 + B : m, nb = b1 - b0;
        for (int64_t i = 0; i < nr; i++) {
            double *x = X + i * m, *e = E + i * nb;
            for (int64_t j = b0; j < b1; j++) {
                int qq = nearest_c(c, k, x[j]);
                q[i * m + j] = qq;
                const double *Uj = U + j * m;
                double d = (x[j] - (double)c[qq]) / Uj[j];
                e[j - b0] = d;
                for (int64_t r = j + 1; r < b1; r++) x[r] -= d * Uj[r];
            }
        }
        if (b1 < m)
            nn_blas()->dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)(m - b1), (int)nb, -1.0, E,
                        (int)nb, U + b0 * m + b1, (int)m, 1.0, X + b1, (int)m);
    }
    free(E);
    return OPT_OK;
}

opt_status opt_refine_assign(opt_refine *rf, size_t i, const float *book, int nbook, int fixed,
                             uint8_t *idx, opt_error *err)
{
    rlayer *l = &rf->L[i];
    if (!l->kind || nbook - fixed < 1) return OPT_OK;
    int64_t D = l->D, per = l->O / l->G;
    int K = nbook - fixed;
    size_t pd = per * D > 0 ? (size_t)(per * D) : 1;
    int32_t *sups = malloc(pd * sizeof *sups);
    rowsup *rows = malloc((size_t)(per > 0 ? per : 1) * sizeof *rows);
    double *W0 = malloc(pd * sizeof *W0), *CW = malloc(pd * sizeof *CW), *X = malloc(pd * sizeof *X),
           *H = malloc((size_t)(D * D) * sizeof *H);
    int *q = malloc(pd * sizeof *q);
    opt_status s = OPT_OK;
    if (!sups || !rows || !W0 || !CW || !X || !H || !q) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int64_t g = 0; g < l->G; g++) {
        const double *S = l->S + g * D * D, *C = Cm(l) + g * D * D;
        /* c_o = C w0_o for every row of the group: one product. */
        for (int64_t r = 0; r < per; r++)
            for (int64_t d = 0; d < D; d++) W0[r * D + d] = l->w0[widx(l, g * per + r, d)];
        nn_blas()->dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)per, (int)D, (int)D, 1.0, W0, (int)D, C, (int)D,
                    0.0, CW, (int)D);
        /* Rows with the same support share S_TT, so its factor: sort them next to each other. */
        group_supports(l, g, l->wcur, NULL, sups, rows);
        for (int64_t r0 = 0, r1; r0 < per; r0 = r1) {
            const rowsup *R = rows + r0;
            int64_t m = R->m;
            for (r1 = r0 + 1; r1 < per && same_support(R, &rows[r1]); r1++) {
            }
            if (!m) continue;
            int64_t nr = r1 - r0;
            const int32_t *sp = R->sup;
            /* The best weights on the support: x = (S_TT + lam I)^-1 ((C w0)_T + lam w0_T). */
            double lam = support_system(S, D, sp, m, 1e-2, H);
            if (!opt_gptq_factor(H, m)) {
                for (int64_t k = r0; k < r1; k++)
                    for (int64_t a = 0; a < m; a++) {
                        uint64_t wk = widx(l, g * per + rows[k].o, sp[a]);
                        idx[wk] = (uint8_t)(fixed + nearest_c(book + fixed, K, l->wcur[wk]));
                    }
                continue;
            }
            /* H now holds U (upper) with U^T U = (S_TT + lam I)^-1. */
            for (int64_t k = r0; k < r1; k++) {
                const double *cw = CW + rows[k].o * D, *w0 = W0 + rows[k].o * D;
                double *x = X + (k - r0) * m;
                for (int64_t a = 0; a < m; a++) x[a] = cw[sp[a]] + lam * w0[sp[a]];
            }
            nn_blas()->dtrmm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, (int)nr, (int)m, 1.0, H,
                        (int)m, X, (int)m);
            nn_blas()->dtrmm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, (int)nr, (int)m, 1.0, H,
                        (int)m, X, (int)m);
            /* OBQ/GPTQ: each weight in turn to its nearest centroid, its error onto the row's weights
             * not yet assigned (Frantar et al. 2022: x_r -= (x_j - q_j) U_jr / U_jj, r > j). */
            if ((s = opt_gptq_quantize(H, m, X, nr, book + fixed, K, q)) != OPT_OK) {
                s = opt_error_set(err, s, "out of memory");
                goto out;
            }
            for (int64_t k = r0; k < r1; k++)
                for (int64_t a = 0; a < m; a++)
                    idx[widx(l, g * per + rows[k].o, sp[a])] = (uint8_t)(fixed + q[(k - r0) * m + a]);
        }
    }
out:
    free(sups);
    free(rows);
    free(W0);
    free(CW);
    free(X);
    free(H);
    free(q);
    return s;
}
