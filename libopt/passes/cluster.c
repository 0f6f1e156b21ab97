/*
 * libopt/passes/cluster.c — k-means weight sharing, the second stage of Deep Compression.
 *
 * Each selected weight's non-zero values are clustered in one dimension. Sorted values make
 * Lloyd's algorithm cheap: in 1-D the clusters are contiguous runs of the sorted values, cut at
 * the midpoints between neighbouring centroids, so an iteration is k binary searches plus k
 * differences of prefix sums, O(k log n), whatever the layer size. Sorting is an LSD radix sort
 * on the float bit patterns, O(n).
 *
 * Exact zeros (pruned weights) are not clustered: they keep codebook entry 0, which is 0.0, and
 * never move; the non-zeros get the full 2^bits centroids (255 when bits is 8, so indices fit
 * uint8). With --refine data the centroids are then fitted by least squares to the layer's
 * output on calibration inputs (libopt/passes/refine.c).
 */
#include "libopt/passes/compress.h"
#include "libopt/passes/refine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t f2key(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

static inline float key2f(uint32_t k)
{
    uint32_t u = (k & 0x80000000u) ? k & 0x7FFFFFFFu : ~k;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

opt_status opt_sort_floats(float *v, size_t n, opt_error *err)
{
    if (n < 2) return OPT_OK;
    uint32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory sorting %zu values", n);
    }
    for (size_t i = 0; i < n; i++) a[i] = f2key(v[i]);
    for (int shift = 0; shift < 32; shift += 11) {
        size_t cnt[2048] = {0};
        for (size_t i = 0; i < n; i++) cnt[(a[i] >> shift) & 2047]++;
        size_t sum = 0;
        for (int i = 0; i < 2048; i++) {
            size_t c = cnt[i];
            cnt[i] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) b[cnt[(a[i] >> shift) & 2047]++] = a[i];
        uint32_t *t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < n; i++) v[i] = key2f(a[i]);
    free(a);
    free(b);
    return OPT_OK;
}

/* First index i in v[lo..hi) with v[i] >= x (hi if none). */
static size_t lower_bound(const float *v, size_t lo, size_t hi, double x)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((double)v[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int opt_kmeans_sorted(const float *v, size_t n, int *kp, float *c, opt_cluster_init init,
                      int max_iter, uint64_t seed, opt_error *err)
{
    int k = *kp;
    if (n == 0) {
        *kp = 0;
        return 0;
    }
    /* Fewer distinct values than centroids: the values themselves are the exact answer. */
    size_t distinct = 1;
    for (size_t i = 1; i < n && distinct <= (size_t)k; i++) distinct += v[i] != v[i - 1];
    if (distinct <= (size_t)k) {
        int j = 0;
        c[j++] = v[0];
        for (size_t i = 1; i < n; i++)
            if (v[i] != v[i - 1]) c[j++] = v[i];
        *kp = j;
        return 0;
    }
    double *P = malloc((n + 1) * sizeof *P);
    size_t *bnd = malloc(((size_t)k + 1) * sizeof *bnd), *nb = malloc(((size_t)k + 1) * sizeof *nb);
    if (!P || !bnd || !nb) {
        free(P);
        free(bnd);
        free(nb);
        opt_error_set(err, OPT_ERR_NOMEM, "out of memory in k-means (%zu values)", n);
        return -1;
    }
    P[0] = 0;
    for (size_t i = 0; i < n; i++) P[i + 1] = P[i] + v[i];

    float lo = v[0], hi = v[n - 1];
    uint64_t s = seed ? seed : 0x5EEDull;
    switch (init) {
    case OPT_INIT_LINEAR:
        for (int j = 0; j < k; j++) c[j] = lo + (hi - lo) * (float)j / (float)(k - 1 > 0 ? k - 1 : 1);
        break;
    case OPT_INIT_DENSITY:
        for (int j = 0; j < k; j++) c[j] = v[(size_t)(((double)j + 0.5) / k * (double)n)];
        break;
    case OPT_INIT_RANDOM:
        for (int j = 0; j < k; j++) c[j] = v[splitmix(&s) % n];
        qsort(c, (size_t)k, sizeof *c, cmp_float);
        break;
    case OPT_INIT_KMEANSPP: {
        /* D^2 sampling; O(n k), which is why it is not the default. */
        double *d = malloc(n * sizeof *d);
        if (!d) {
            free(P);
            free(bnd);
            free(nb);
            opt_error_set(err, OPT_ERR_NOMEM, "out of memory in k-means++");
            return -1;
        }
        c[0] = v[splitmix(&s) % n];
        for (size_t i = 0; i < n; i++) d[i] = ((double)v[i] - c[0]) * ((double)v[i] - c[0]);
        for (int j = 1; j < k; j++) {
            double tot = 0;
            for (size_t i = 0; i < n; i++) tot += d[i];
            double r = (double)(splitmix(&s) >> 11) / 9007199254740992.0 * tot, acc = 0;
            size_t pick = n - 1;
            for (size_t i = 0; i < n; i++) {
                acc += d[i];
                if (acc > r) {
                    pick = i;
                    break;
                }
            }
            c[j] = v[pick];
            for (size_t i = 0; i < n; i++) {
                double e = ((double)v[i] - c[j]) * ((double)v[i] - c[j]);
                if (e < d[i]) d[i] = e;
            }
        }
        free(d);
        qsort(c, (size_t)k, sizeof *c, cmp_float);
        break;
    }
    }

    int it = 0, limit = max_iter > 0 ? max_iter : 1000;
    bnd[0] = 0;
    bnd[k] = n;
    for (int j = 1; j < k; j++) bnd[j] = (size_t)-1;
    for (; it < limit; it++) {
        nb[0] = 0;
        nb[k] = n;
        for (int j = 1; j < k; j++)
            nb[j] = lower_bound(v, nb[j - 1], n, ((double)c[j - 1] + (double)c[j]) / 2);
        bool same = true;
        for (int j = 1; j < k; j++) same &= nb[j] == bnd[j];
        if (same && it > 0) break;
        memcpy(bnd, nb, ((size_t)k + 1) * sizeof *bnd);
        for (int j = 0; j < k; j++)
            if (bnd[j + 1] > bnd[j])
                c[j] = (float)((P[bnd[j + 1]] - P[bnd[j]]) / (double)(bnd[j + 1] - bnd[j]));
        /* An empty cluster keeps its centroid; keeping c sorted keeps the midpoints valid. */
        for (int j = 1; j < k; j++)
            if (c[j] < c[j - 1]) c[j] = c[j - 1];
    }
    free(P);
    free(bnd);
    free(nb);
    return it;
}

/* Index of the nearest centroid among c[0..k) (ascending) for x. */
static inline int nearest(const float *c, int k, float x)
{
    int lo = 0, hi = k - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if ((double)x < ((double)c[mid] + (double)c[mid + 1]) / 2) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* Rewrites weight ref as idx + codebook + Cast + Gather, or inline. */
static opt_status emit(opt_graph *g, const opt_weight_ref *ref, const uint8_t *idx,
                       const float *book, int nbook, const float *w, bool inl, bool packed4,
                       opt_error *err)
{
    opt_tensor *t = ref->t;
    int dt = t->data_type;
    if (inl) return opt_tensor_set_f32(t, dt, w, ref->numel, err);
    opt_status s = OPT_OK;
    size_t bl = strlen(t->name) + 16;
    char *base = malloc(bl), *idx_name = NULL, *cb_name = NULL, *i32 = NULL, *cast_n = NULL,
         *gat_n = NULL;
    opt_tensor *ti = opt_tensor_new(), *tc = opt_tensor_new();
    opt_node *cast = NULL, *gat = NULL;
    if (!base || !ti || !tc) goto nomem;
#define UNIQ(var, suffix)                                   \
    do {                                                    \
        snprintf(base, bl, "%s%s", t->name, suffix);        \
        if (!(var = opt_graph_unique_name(g, base))) goto nomem; \
    } while (0)
    UNIQ(idx_name, ".idx");
    UNIQ(cb_name, ".codebook");
    UNIQ(i32, ".idx_i32");
    UNIQ(cast_n, ".cast");
    UNIQ(gat_n, ".gather");
#undef UNIQ
    ti->name = idx_name;
    idx_name = NULL;
    if ((s = opt_tensor_set_dims(ti, t->dims, t->n_dims, err)) != OPT_OK) goto fail;
    if (packed4 && nbook <= 16) {
        /* uint4, two indices per byte, the first in the low nibble (ONNX's packing). */
        size_t nb = (size_t)(ref->numel + 1) / 2;
        uint8_t *pk = calloc(nb ? nb : 1, 1);
        if (!pk) goto nomem;
        for (uint64_t j = 0; j < ref->numel; j++) pk[j / 2] |= (uint8_t)(idx[j] << (4 * (j & 1)));
        s = opt_tensor_set_raw(ti, OPT_DT_UINT4, pk, nb, err);
        free(pk);
        if (s != OPT_OK) goto fail;
    } else if ((s = opt_tensor_set_raw(ti, OPT_DT_UINT8, idx, (size_t)ref->numel, err)) != OPT_OK) {
        goto fail;
    }
    tc->name = cb_name;
    cb_name = NULL;
    int64_t kd = nbook;
    if ((s = opt_tensor_set_dims(tc, &kd, 1, err)) != OPT_OK) goto fail;
    if ((s = opt_tensor_set_f32(tc, dt, book, (uint64_t)nbook, err)) != OPT_OK) goto fail;
    const char *cin[1] = {ti->name}, *cout[1] = {i32}, *gin[2] = {tc->name, i32},
               *gout[1] = {t->name};
    cast = opt_node_make("Cast", cast_n, cin, 1, cout, 1);
    gat = opt_node_make("Gather", gat_n, gin, 2, gout, 1);
    if (!cast || !gat) goto nomem;
    if ((s = opt_node_set_attr_int(cast, "to", OPT_DT_INT32, err)) != OPT_OK) goto fail;
    if ((s = opt_node_set_attr_int(gat, "axis", 0, err)) != OPT_OK) goto fail;
    if ((s = opt_graph_add_initializer(g, ti, err)) != OPT_OK) goto fail;
    ti = NULL;
    if ((s = opt_graph_add_initializer(g, tc, err)) != OPT_OK) goto fail;
    tc = NULL;
    if ((s = opt_graph_insert_node(g, 0, gat, err)) != OPT_OK) goto fail;
    gat = NULL;
    if ((s = opt_graph_insert_node(g, 0, cast, err)) != OPT_OK) goto fail;
    cast = NULL;
    opt_graph_remove_initializer(g, ref->t->name); /* frees t: ref->t is dangling from here */
    goto out;
nomem:
    s = opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory", t->name);
fail:
out:
    free(base);
    free(idx_name);
    free(cb_name);
    free(i32);
    free(cast_n);
    free(gat_n);
    opt_tensor_free(ti);
    opt_tensor_free(tc);
    opt_node_free(cast);
    opt_node_free(gat);
    return s;
}

opt_status opt_cluster(opt_model *m, const opt_cluster_opts *o, opt_layer_stat **stats,
                       size_t *n_stats, opt_error *err)
{
    *stats = NULL;
    *n_stats = 0;
    int bconv = o->bits_conv ? o->bits_conv : 8, bfc = o->bits_fc ? o->bits_fc : 5;
    if (bconv < 1 || bconv > 8 || bfc < 1 || bfc > 8)
        return opt_error_set(err, OPT_ERR_USAGE, "bits must be 1 to 8");
    for (size_t i = 0; i < o->n_layers; i++)
        if (o->layers[i].value < 1 || o->layers[i].value > 8 || o->layers[i].value != floor(o->layers[i].value))
            return opt_error_set(err, OPT_ERR_USAGE, "layer '%s': bits %g is not 1 to 8",
                                 o->layers[i].name, o->layers[i].value);
    opt_weight_ref *refs;
    size_t n;
    OPT_TRY(opt_weights_find(m->graph, &o->filter, &refs, &n, err));
    opt_layer_stat *st = calloc(n + 1, sizeof *st);
    opt_refine *rf = NULL;
    opt_status s = OPT_OK;
    if (!st) {
        free(refs);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    if (o->refine && n && (s = opt_refine_new(m, refs, n, o->refine, &rf, err)) != OPT_OK) goto done;
    /* uint4 indices need IR 10 (the dtype) and opset 21 (Cast from uint4). */
    bool packed4 = o->uint4;
    if (packed4 && !(m->has_ir_version && m->ir_version >= 10 && opt_model_opset(m, "") >= 21)) {
        s = opt_error_set(err, OPT_ERR_UNSUPPORTED,
                          "uint4 indices need IR version 10 and opset 21 (the model has IR %lld, opset %lld)",
                          (long long)m->ir_version, (long long)opt_model_opset(m, ""));
        goto done;
    }

    for (size_t i = 0; i < n; i++) {
        opt_weight_ref *r = &refs[i];
        const opt_layer_value *ov = opt_layer_value_find(r, o->layers, o->n_layers);
        int bits = ov ? (int)ov->value : r->conv ? bconv : bfc;
        st[i].layer = opt_strdup(r->node->name && *r->node->name ? r->node->name : r->t->name);
        st[i].tensor = opt_strdup(r->t->name);
        st[i].op = r->node->op_type;
        st[i].numel = r->numel;
        st[i].bits = bits;
        float *w = NULL, *nz = NULL;
        uint8_t *idx = NULL;
        uint64_t ne;
        if ((s = opt_tensor_to_f32_alloc(r->t, &w, &ne, err)) != OPT_OK) goto layer_out;
        nz = malloc((ne ? ne : 1) * sizeof *nz);
        idx = malloc(ne ? ne : 1);
        if (!nz || !idx) {
            s = opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory", r->t->name);
            goto layer_out;
        }
        uint64_t nn = 0;
        for (uint64_t j = 0; j < ne; j++) {
            if (!isfinite(w[j])) {
                s = opt_error_set(err, OPT_ERR_DATA, "tensor '%s': non-finite weight at %llu",
                                  r->t->name, (unsigned long long)j);
                goto layer_out;
            }
            if (w[j] != 0.0f) nz[nn++] = w[j];
        }
        bool zeros = nn < ne;
        st[i].zeros_before = ne - nn;
        int k = 1 << bits;
        if (zeros && k > 255) k = 255;
        float book[257];
        if ((s = opt_sort_floats(nz, (size_t)nn, err)) != OPT_OK) goto layer_out;
        int it = opt_kmeans_sorted(nz, (size_t)nn, &k, book + zeros, o->init, o->max_iter,
                                   o->seed + i, err);
        if (it < 0) {
            s = err->status;
            goto layer_out;
        }
        st[i].iterations = it;
        st[i].k = k;
        if (zeros) book[0] = 0.0f;
        int nbook = k + zeros;
        for (uint64_t j = 0; j < ne; j++)
            idx[j] = w[j] == 0.0f ? 0 : (uint8_t)(zeros + nearest(book + zeros, k, w[j]));
        if (rf) {
            if ((s = opt_refine_prepare(rf, i, m, err)) != OPT_OK) goto layer_out;
            /* Alternate GPTQ-style assignment and the least-squares codebook a few rounds; the
             * fit only adopts a codebook that lowers the output error. */
            for (int round = 0; round < 3 && s == OPT_OK; round++) {
                double b4, af;
                if (nbook - zeros > 1) qsort(book + zeros, (size_t)(nbook - zeros), sizeof *book, cmp_float);
                s = opt_refine_assign(rf, i, book, nbook, zeros, idx, err);
                if (s == OPT_OK) s = opt_refine_centroids(rf, i, idx, book, nbook, zeros, &b4, &af, err);
                if (round == 0) st[i].out_err_before = b4;
                st[i].out_err_after = af;
            }
            if (s != OPT_OK) goto layer_out;
        }
        double se = 0;
        for (uint64_t j = 0; j < ne; j++) {
            float q = book[idx[j]];
            if (w[j] != 0.0f) se += ((double)w[j] - q) * ((double)w[j] - q);
            w[j] = q;
        }
        st[i].mse = nn ? se / (double)nn : 0;
        uint64_t z = 0;
        for (uint64_t j = 0; j < ne; j++) z += w[j] == 0.0f;
        st[i].zeros_after = z;
        if (rf && (s = opt_refine_bias(rf, i, w, err)) != OPT_OK) goto layer_out;
        s = emit(m->graph, r, idx, book, nbook, w, o->inline_values, packed4, err);
    layer_out:
        free(w);
        free(nz);
        free(idx);
        if (s != OPT_OK) goto done;
        if (o->progress) o->progress(o->progress_ctx, i + 1, n);
    }
    *stats = st;
    *n_stats = n;
    st = NULL;
done:
    opt_refine_free(rf);
    opt_layer_stats_free(st, n);
    free(refs);
    return s;
}
