/*
 * libopt/passes/prune.c — magnitude pruning (Han et al., "Learning both Weights and Connections",
 * the first stage of Deep Compression): weights whose magnitude is below a threshold become 0.
 *
 * The threshold comes from a fixed value, from Q x the layer's standard deviation (the paper's
 * rule), or from a target sparsity. For a sparsity the k-th smallest magnitude is found with a
 * quickselect (O(n), not a sort: ResNet-50's 25M weights take a fraction of a second), and ties
 * at the threshold are broken by position so the count of zeros is exact.
 */
#include "libopt/passes/compress.h"
#include "libopt/passes/refine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* k-th smallest (0-based) of a[0..n), reordering a. Hoare-style quickselect with a median of
 * three pivot; deterministic. */
static float select_kth(float *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
}

/* A layer being pruned: its values as float, and what to do with them. */
typedef struct layer {
    opt_weight_ref ref;
    float *w;
    bool own_pool;     /* pruned to its own sparsity (override or per-layer) */
    double sparsity;
    double thr;
    uint64_t ties;     /* how many weights with |w| == thr still become zero */
} layer;

/* Threshold and tie count so that exactly round(s * total) of the magnitudes in mags (reordered)
 * are at or below it, ties counted up to that number. */
static void threshold_for(float *mags, uint64_t total, double s, double *thr, uint64_t *below_ties)
{
    uint64_t k = (uint64_t)llround(s * (double)total);
    if (k == 0 || total == 0) {
        *thr = -1;
        *below_ties = 0;
        return;
    }
    if (k > total) k = total;
    float t = select_kth(mags, total, k - 1);
    uint64_t less = 0;
    for (uint64_t i = 0; i < total; i++) less += mags[i] < t;
    *thr = t;
    *below_ties = k - less; /* that many entries equal to t must go */
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
    float *pool = NULL;
    opt_status s = OPT_OK;
    if (!L || !st) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    uint64_t pool_n = 0;
    for (size_t i = 0; i < n; i++) {
        L[i].ref = refs[i];
        uint64_t cnt;
        if ((s = opt_tensor_to_f32_alloc(refs[i].t, &L[i].w, &cnt, err)) != OPT_OK) goto done;
        const opt_layer_value *ov = opt_layer_value_find(&refs[i], o->layers, o->n_layers);
        if (ov) {
            L[i].own_pool = true;
            L[i].sparsity = ov->value;
        } else if (o->mode == OPT_PRUNE_SPARSITY) {
            L[i].own_pool = o->per_layer;
            L[i].sparsity = o->value;
            if (!o->per_layer) pool_n += refs[i].numel;
        }
        st[i].layer = opt_strdup(refs[i].node->name && *refs[i].node->name ? refs[i].node->name
                                                                             : refs[i].t->name);
        st[i].tensor = opt_strdup(refs[i].t->name);
        st[i].op = refs[i].node->op_type;
        st[i].numel = refs[i].numel;
        for (uint64_t j = 0; j < cnt; j++) st[i].zeros_before += L[i].w[j] == 0.0f;
    }

    /* Thresholds. */
    uint64_t pool_ties = 0;
    double pool_thr = -1;
    if (pool_n) {
        pool = malloc(pool_n * sizeof *pool);
        if (!pool) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory (%llu weights)", (unsigned long long)pool_n);
            goto done;
        }
        uint64_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (!L[i].own_pool && o->mode == OPT_PRUNE_SPARSITY)
                for (uint64_t j = 0; j < L[i].ref.numel; j++) pool[k++] = fabsf(L[i].w[j]);
        threshold_for(pool, pool_n, o->value, &pool_thr, &pool_ties);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t ne = L[i].ref.numel;
        if (L[i].own_pool) {
            float *mags = malloc((ne ? ne : 1) * sizeof *mags);
            if (!mags) {
                s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
                goto done;
            }
            for (uint64_t j = 0; j < ne; j++) mags[j] = fabsf(L[i].w[j]);
            threshold_for(mags, ne, L[i].sparsity, &L[i].thr, &L[i].ties);
            free(mags);
        } else if (o->mode == OPT_PRUNE_THRESHOLD) {
            L[i].thr = o->value;
            L[i].ties = 0;
            /* "below T": |w| < T, and nothing equal to T goes. */
        } else if (o->mode == OPT_PRUNE_QUALITY) {
            double sum = 0, sq = 0;
            for (uint64_t j = 0; j < ne; j++) {
                sum += L[i].w[j];
                sq += (double)L[i].w[j] * L[i].w[j];
            }
            double mean = ne ? sum / (double)ne : 0, var = ne ? sq / (double)ne - mean * mean : 0;
            L[i].thr = o->value * sqrt(var > 0 ? var : 0);
            L[i].ties = 0;
        } else {
            L[i].thr = pool_thr;
        }
    }

    /* Apply, layer by layer in graph order; global ties are spent in that order too. */
    for (size_t i = 0; i < n; i++) {
        uint64_t ne = L[i].ref.numel;
        float thr = (float)L[i].thr;
        uint64_t *ties = (!L[i].own_pool && o->mode == OPT_PRUNE_SPARSITY) ? &pool_ties : &L[i].ties;
        bool changed = false;
        for (uint64_t j = 0; j < ne; j++) {
            float a = fabsf(L[i].w[j]);
            if (L[i].thr < 0) break;
            if (a < thr || (a == thr && *ties > 0)) {
                if (a == thr) --*ties;
                if (L[i].w[j] != 0.0f || signbit(L[i].w[j])) changed = true;
                L[i].w[j] = 0.0f;
            }
        }
        uint64_t z = 0;
        for (uint64_t j = 0; j < ne; j++) z += L[i].w[j] == 0.0f;
        if (opt_refine_has(rf, i)) {
            /* Same count of zeros, chosen and compensated with data. */
            float *w0 = NULL;
            uint64_t cnt;
            if ((s = opt_tensor_to_f32_alloc(L[i].ref.t, &w0, &cnt, err)) != OPT_OK) goto done;
            s = opt_refine_prepare(rf, i, m, err);
            if (s == OPT_OK) s = opt_refine_prune(rf, i, w0, ne - z, &st[i].out_err_before, &st[i].out_err_after, err);
            if (s == OPT_OK) memcpy(L[i].w, w0, ne * sizeof *w0);
            free(w0);
            if (s != OPT_OK) goto done;
            changed = true;
            z = 0;
            for (uint64_t j = 0; j < ne; j++) z += L[i].w[j] == 0.0f;
        }
        st[i].zeros_after = z;
        st[i].threshold = L[i].thr < 0 ? 0 : L[i].thr;
        if (changed &&
            (s = opt_tensor_set_f32(L[i].ref.t, L[i].ref.t->data_type, L[i].w, ne, err)) != OPT_OK)
            goto done;
    }
    *stats = st;
    *n_stats = n;
    st = NULL;
done:
    for (size_t i = 0; L && i < n; i++) free(L[i].w);
    free(L);
    free(pool);
    free(refs);
    opt_refine_free(rf);
    opt_layer_stats_free(st, n);
    return s;
}
