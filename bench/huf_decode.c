/*
 * bench/huf_decode.c — Huffman decoding speed of mopt's codec (libopt/ir/huffman_codec.c) next to
 * zlib's inflate of the same indices, on one core.
 *
 * usage: huf_decode MODEL.onnx [ROUNDS]
 * MODEL is a clustered model (mopt cluster): every uint8 initializer is taken as an index
 * tensor. Each is coded as a HuffmanDecode payload (dense layout: the index stream alone, and the
 * layout mopt huffman picks) and as a zlib stream (compress2, level 6 and 9); then all of them
 * are decoded ROUNDS times (default 7) and the median round gives MB/s of decoded indices
 * (1 MB = 10^6 bytes). Prints one Markdown table row per coder.
 */
#include "formats/onnx.h"
#include "libopt/ir/huffman_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct item {
    const uint8_t *idx;
    uint64_t n;
    opt_bytes dense, best;
    uint8_t *z6, *z9;
    uLongf z6n, z9n;
} item;

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: huf_decode MODEL.onnx [ROUNDS]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    opt_model *m;
    opt_error e = {0};
    if (opt_onnx_load(argv[1], NULL, &m, &e) != OPT_OK) {
        fprintf(stderr, "huf_decode: %s: %s\n", argv[1], e.msg);
        return 1;
    }
    opt_graph *g = m->graph;
    item *it = calloc(g->n_initializers + 1, sizeof *it);
    size_t ni = 0;
    uint64_t total = 0, bd = 0, bb = 0, b6 = 0, b9 = 0, maxn = 0;
    for (size_t i = 0; i < g->n_initializers; i++) {
        opt_tensor *t = g->initializers[i];
        size_t len;
        const uint8_t *p = t->data_type == OPT_DT_UINT8 ? opt_tensor_data(t, &len) : NULL;
        if (!p || !len) continue;
        item *x = &it[ni++];
        x->idx = p;
        x->n = len;
        int64_t d = (int64_t)len;
        if (opt_huf_weight_encode(p, &d, 1, 256, OPT_HUF_DENSE, &x->dense, NULL, &e) != OPT_OK ||
            opt_huf_weight_encode(p, &d, 1, 256, -1, &x->best, NULL, &e) != OPT_OK) {
            fprintf(stderr, "huf_decode: %s\n", e.msg);
            return 1;
        }
        x->z6n = compressBound(len);
        x->z9n = compressBound(len);
        x->z6 = malloc(x->z6n);
        x->z9 = malloc(x->z9n);
        if (compress2(x->z6, &x->z6n, p, len, 6) != Z_OK || compress2(x->z9, &x->z9n, p, len, 9) != Z_OK) {
            fprintf(stderr, "huf_decode: zlib failed\n");
            return 1;
        }
        total += len;
        bd += x->dense.len;
        bb += x->best.len;
        b6 += x->z6n;
        b9 += x->z9n;
        if (len > maxn) maxn = len;
    }
    if (!ni) {
        fprintf(stderr, "huf_decode: %s has no uint8 initializers (run mopt cluster first)\n", argv[1]);
        return 1;
    }
    uint8_t *out = malloc(maxn);
    double *t = malloc((size_t)rounds * sizeof *t);
    const char *names[4] = {"mopt Huffman, dense layout", "mopt Huffman, layout mopt picks",
                            "zlib inflate (level 6)", "zlib inflate (level 9)"};
    uint64_t bytes[4] = {bd, bb, b6, b9};
    printf("| decoder | indices | coded bytes | bits/index | median s | MB/s of indices |\n");
    printf("|---|---|---|---|---|---|\n");
    for (int c = 0; c < 4; c++) {
        for (int r = 0; r < rounds; r++) {
            double t0 = now();
            for (size_t i = 0; i < ni; i++) {
                item *x = &it[i];
                if (c < 2) {
                    opt_bytes *p = c == 0 ? &x->dense : &x->best;
                    if (opt_huf_weight_decode(p->data, p->len, out, x->n, &e) != OPT_OK) {
                        fprintf(stderr, "huf_decode: %s\n", e.msg);
                        return 1;
                    }
                } else {
                    uLongf n = (uLongf)x->n;
                    if (uncompress(out, &n, c == 2 ? x->z6 : x->z9, c == 2 ? x->z6n : x->z9n) != Z_OK || n != x->n) {
                        fprintf(stderr, "huf_decode: inflate failed\n");
                        return 1;
                    }
                }
                if (memcmp(out, x->idx, x->n) != 0) {
                    fprintf(stderr, "huf_decode: %s decoded wrong bytes\n", names[c]);
                    return 1;
                }
            }
            t[r] = now() - t0;
        }
        qsort(t, (size_t)rounds, sizeof *t, cmp_d);
        double med = t[rounds / 2];
        printf("| %s | %llu | %llu | %.3f | %.4f | %.0f |\n", names[c], (unsigned long long)total,
               (unsigned long long)bytes[c], 8.0 * (double)bytes[c] / (double)total, med,
               (double)total / med / 1e6);
    }
    return 0;
}
