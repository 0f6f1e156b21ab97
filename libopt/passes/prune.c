/*
 * libopt/passes/prune.c — magnitude pruning (Han et al., "Learning both Weights and Connections",
 * the first stage of Deep Compression): weights whose magnitude is below a threshold become 0.
 *
 * The threshold comes from a fixed value, from Q x the layer's standard deviation (the paper's
 * rule), or from a target sparsity. For a sparsity the k-th smallest magnitude is found by a
 * two-pass radix select over the bit patterns of |w| (non-negative floats order like their bits),
 * reading each layer in place: no copy of the weights is made, so ResNet-50's 25M weights are
 * pruned in well under a second at about 1x the model's memory. Ties at the threshold are broken
 * by position, so the count of zeros is exact.
 */
#include "libopt/passes/compress.h"
#include "libopt/passes/refine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A weight's values as float32: a pointer into the tensor when it stores aligned float32
 * raw_data (writable in place), else a converted copy (owned). */
typedef struct fview {
    float *w;
    uint64_t n;
    bool owned;
} fview;

static opt_status view_open(opt_tensor *t, fview *v, opt_error *err)
{
    uint64_t n;
    if (!opt_tensor_numel(t, &n)) return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': bad dims", t->name);
    if (t->data_type == OPT_DT_FLOAT && t->has_raw_data && t->raw_data.len == n * 4 &&
        ((uintptr_t)t->raw_data.data % sizeof(float)) == 0 && !opt_tensor_is_external(t)) {
        *v = (fview){(float *)(void *)t->raw_data.data, n, false};
        return OPT_OK;
    }
    v->owned = true;
    return opt_tensor_to_f32_alloc(t, &v->w, &v->n, err);
}

/* Writes v back into t when it was a copy; frees it. */
static opt_status view_close(opt_tensor *t, fview *v, bool write, opt_error *err)
{
    opt_status s = OPT_OK;
    if (v->owned) {
        if (write) s = opt_tensor_set_f32(t, t->data_type, v->w, v->n, err);
        free(v->w);
    }
    memset(v, 0, sizeof *v);
    return s;
}

static inline uint32_t mag_key(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u & 0x7FFFFFFFu;
}

static inline float key_mag(uint32_t k)
{
    float f;
    memcpy(&f, &k, 4);
    return f;
}

/* A layer being pruned and what to do with it. */
typedef struct layer {
    opt_weight_ref ref;
    bool own;          /* pruned to its own sparsity (override or --per-layer) */
    bool pooled;       /* shares the global sparsity threshold */
    double sparsity;
    float thr;         /* |w| < thr goes, and |w| == thr while ties remain */
    bool none;         /* nothing to prune */
    uint64_t ties;
} layer;

/* Radix select over the magnitudes of the layers in L[] selected by `pick` (or the one layer
 * `only`): the magnitude of rank k-1 (0-based) and how many equal to it are within the first k. */
static opt_status select_rank(layer *L, size_t n, long only, uint64_t k, float *thr, uint64_t *ties,
                              opt_error *err)
{
    uint64_t *hist = calloc(65536, sizeof *hist);
    if (!hist) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    opt_status s = OPT_OK;
    for (int pass = 0; pass < 2 && s == OPT_OK; pass++) {
        static uint32_t hi;
        if (pass == 1) memset(hist, 0, 65536 * sizeof *hist);
        for (size_t i = 0; i < n && s == OPT_OK; i++) {
            if (only >= 0 ? (long)i != only : !L[i].pooled) continue;
            fview v;
            if ((s = view_open(L[i].ref.t, &v, err)) != OPT_OK) break;
            if (pass == 0)
                for (uint64_t j = 0; j < v.n; j++) hist[mag_key(v.w[j]) >> 16]++;
            else
                for (uint64_t j = 0; j < v.n; j++) {
                    uint32_t key = mag_key(v.w[j]);
                    if ((key >> 16) == hi) hist[key & 0xFFFF]++;
                }
            view_close(L[i].ref.t, &v, false, err);
        }
        if (s != OPT_OK) break;
        /* Find the bucket holding rank k-1; keep k relative to it. */
        uint64_t below = 0;
        uint32_t b = 0;
        for (b = 0; b < 65536; b++) {
            if (below + hist[b] >= k) break;
            below += hist[b];
        }
        k -= below;
        if (pass == 0) {
            hi = b;
        } else {
            *thr = key_mag(hi << 16 | b);
            *ties = k;
        }
    }
    free(hist);
    return s;
}

opt_status opt_prune(opt_model *m, const opt_prune_opts *o, opt_layer_stat **stats, size_t *n_stats,
                     opt_error *err)
{
    *stats = NULL;
    *n_stats = 0;
    if (o->mode == OPT_PRUNE_SPARSITY && (o->value < 0 || o->value > 1))
        return opt_error_set(err, OPT_ERR_USAGE, "sparsity %g is not in [0, 1]", o->value);
    for (size_t i = 0; i < o->n_layers; i++)
        if (o->layers[i].value < 0 || o->layers[i].value > 1)
            return opt_error_set(err, OPT_ERR_USAGE, "layer '%s': sparsity %g is not in [0, 1]",
                                 o->layers[i].name, o->layers[i].value);
    opt_weight_ref *refs;
    size_t n;
    OPT_TRY(opt_weights_find(m->graph, &o->filter, &refs, &n, err));
    opt_refine *rf = NULL;
    if (o->refine && n) {
        opt_status rs = opt_refine_new(m, refs, n, o->refine, &rf, err);
        if (rs != OPT_OK) {
            free(refs);
            return rs;
        }
    }
    layer *L = calloc(n + 1, sizeof *L);
    opt_layer_stat *st = calloc(n + 1, sizeof *st);
    opt_status s = OPT_OK;
    if (!L || !st) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    uint64_t pool_n = 0;
    for (size_t i = 0; i < n; i++) {
        L[i].ref = refs[i];
        const opt_layer_value *ov = opt_layer_value_find(&refs[i], o->layers, o->n_layers);
        if (ov) {
            L[i].own = true;
            L[i].sparsity = ov->value;
        } else if (o->mode == OPT_PRUNE_SPARSITY) {
            L[i].own = o->per_layer;
            L[i].pooled = !o->per_layer;
            L[i].sparsity = o->value;
            if (L[i].pooled) pool_n += refs[i].numel;
        }
        st[i].layer = opt_strdup(refs[i].node->name && *refs[i].node->name ? refs[i].node->name
                                                                             : refs[i].t->name);
        st[i].tensor = opt_strdup(refs[i].t->name);
        st[i].op = refs[i].node->op_type;
        st[i].numel = refs[i].numel;
        fview v;
        if ((s = view_open(refs[i].t, &v, err)) != OPT_OK) goto done;
        double sum = 0, sq = 0;
        for (uint64_t j = 0; j < v.n; j++) {
            st[i].zeros_before += v.w[j] == 0.0f;
            sum += v.w[j];
            sq += (double)v.w[j] * v.w[j];
        }
        view_close(refs[i].t, &v, false, err);
        /* Thresholds of the modes that need no ranking. */
        if (!L[i].own && o->mode == OPT_PRUNE_THRESHOLD) {
            L[i].thr = (float)o->value;
        } else if (!L[i].own && o->mode == OPT_PRUNE_QUALITY) {
            double ne = (double)refs[i].numel, mean = ne ? sum / ne : 0, var = ne ? sq / ne - mean * mean : 0;
            L[i].thr = (float)(o->value * sqrt(var > 0 ? var : 0));
        } else if (L[i].own) {
            uint64_t k = (uint64_t)llround(L[i].sparsity * (double)refs[i].numel);
            if (k == 0) L[i].none = true;
            else if ((s = select_rank(L, n, (long)i, k, &L[i].thr, &L[i].ties, err)) != OPT_OK) goto done;
        }
    }
    uint64_t pool_ties = 0;
    float pool_thr = 0;
    bool pool_none = true;
    if (pool_n) {
        uint64_t k = (uint64_t)llround(o->value * (double)pool_n);
        pool_none = k == 0;
        if (k && (s = select_rank(L, n, -1, k, &pool_thr, &pool_ties, err)) != OPT_OK) goto done;
    }

    /* Apply, layer by layer in graph order; global ties are spent in that order too. */
    for (size_t i = 0; i < n; i++) {
        uint64_t *ties = L[i].pooled ? &pool_ties : &L[i].ties;
        float thr = L[i].pooled ? pool_thr : L[i].thr;
        bool none = L[i].pooled ? pool_none : L[i].none;
        fview v;
        if ((s = view_open(L[i].ref.t, &v, err)) != OPT_OK) goto done;
        bool changed = false;
        uint64_t z = 0;
        for (uint64_t j = 0; j < v.n && !none; j++) {
            float a = fabsf(v.w[j]);
            if (a < thr || (a == thr && *ties > 0)) {
                if (a == thr) --*ties;
                if (v.w[j] != 0.0f || signbit(v.w[j])) changed = true;
                v.w[j] = 0.0f;
            }
        }
        for (uint64_t j = 0; j < v.n; j++) z += v.w[j] == 0.0f;
        if (opt_refine_has(rf, i)) {
            /* Same count of zeros, chosen and compensated with data. The refit reads the
             * original values: take them before this layer's zeros are written. */
            float *w0 = NULL;
            uint64_t cnt;
            if ((s = opt_tensor_to_f32_alloc(L[i].ref.t, &w0, &cnt, err)) == OPT_OK && !v.owned) {
                /* v aliases the tensor, already pruned: rebuild from the refine copy instead. */
                free(w0);
                w0 = NULL;
                s = opt_refine_original(rf, i, &w0, err);
            }
            if (s == OPT_OK) s = opt_refine_prepare(rf, i, m, err);
            if (s == OPT_OK)
                s = opt_refine_prune(rf, i, w0, v.n - z, &st[i].out_err_before, &st[i].out_err_after, err);
            if (s == OPT_OK) memcpy(v.w, w0, v.n * sizeof *w0);
            free(w0);
            if (s != OPT_OK) {
                view_close(L[i].ref.t, &v, false, err);
                goto done;
            }
            changed = true;
            z = 0;
            for (uint64_t j = 0; j < v.n; j++) z += v.w[j] == 0.0f;
        }
        st[i].zeros_after = z;
        st[i].threshold = none ? 0 : thr;
        if ((s = view_close(L[i].ref.t, &v, changed, err)) != OPT_OK) goto done;
        if (o->progress) o->progress(o->progress_ctx, i + 1, n);
    }
    *stats = st;
    *n_stats = n;
    st = NULL;
done:
    free(L);
    free(refs);
    opt_refine_free(rf);
    opt_layer_stats_free(st, n);
    return s;
}
