/*
 * tests/unit/huffman_codec.c — the Huffman codec of libopt/ir/huffman_codec.c: every stream and every
 * payload decodes to exactly what was encoded, including the edge cases of the issue (one symbol
 * only, all 2^B symbols, the longest allowed code, an empty tensor), and damaged payloads are
 * refused instead of read out of bounds.
 */
#include "libopt/ir/huffman_codec.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

/* xorshift64*: a fixed-seed generator so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void stream_round_trip(const uint8_t *sym, uint64_t n, int nsym)
{
    opt_hbuf b = {0};
    opt_error e = {0};
    cr_assert_eq(opt_huf_stream_encode(sym, n, nsym, &b, &e), OPT_OK, "%s", e.msg);
    uint8_t *back = malloc(n + 1);
    uint64_t got;
    size_t used;
    cr_assert_eq(opt_huf_stream_decode(b.data, b.len, back, n, nsym, &got, &used, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(got, n);
    cr_assert_eq(used, b.len);
    cr_assert(n == 0 || memcmp(back, sym, n) == 0, "decoded stream differs");
    free(back);
    opt_hbuf_free(&b);
}

static void weight_round_trip(const uint8_t *idx, const int64_t *dims, int ndim, int layout)
{
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (uint64_t)dims[d];
    opt_bytes p = {0};
    opt_huf_info info;
    opt_error e = {0};
    cr_assert_eq(opt_huf_weight_encode(idx, dims, ndim, 256, layout, &p, &info, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(info.bytes, p.len);
    uint8_t *back = malloc(n + 1);
    cr_assert_eq(opt_huf_weight_decode(p.data, p.len, back, n, &e), OPT_OK, "%s", e.msg);
    cr_assert(n == 0 || memcmp(back, idx, n) == 0, "decoded weight differs (layout %d)", info.layout);
    free(back);
    free(p.data);
}

Test(huffman, round_trip_is_exact_for_random_streams)
{
    for (int trial = 0; trial < 40; trial++) {
        uint64_t n = rnd() % 20000;
        int nsym = 1 + (int)(rnd() % 256);
        uint8_t *s = malloc(n + 1);
        /* Skewed: small symbols are much more likely, as cluster indices are. */
        for (uint64_t i = 0; i < n; i++) {
            uint64_t r = rnd();
            s[i] = (uint8_t)((r % (uint64_t)nsym) >> (r >> 60 & 7));
        }
        stream_round_trip(s, n, nsym);
        free(s);
    }
}

Test(huffman, round_trip_with_one_symbol_only)
{
    uint8_t s[5000];
    memset(s, 7, sizeof s);
    stream_round_trip(s, 1, 8);
    stream_round_trip(s, sizeof s, 8);
    int64_t dims[2] = {50, 100};
    weight_round_trip(s, dims, 2, -1);
    weight_round_trip(s, dims, 2, OPT_HUF_DENSE);
    weight_round_trip(s, dims, 2, OPT_HUF_SPARSE);
}

Test(huffman, round_trip_with_all_256_symbols)
{
    uint8_t s[256 * 40];
    for (size_t i = 0; i < sizeof s; i++) s[i] = (uint8_t)(i * 7919 % 256);
    stream_round_trip(s, sizeof s, 256);
    int64_t dims[3] = {16, 20, 32};
    weight_round_trip(s, dims, 3, -1);
    weight_round_trip(s, dims, 3, OPT_HUF_SPARSE);
}

Test(huffman, round_trip_with_the_longest_allowed_code)
{
    /* Fibonacci frequencies make the optimal code as deep as the alphabet, far past the limit. */
    uint64_t f[24];
    f[0] = f[1] = 1;
    for (int i = 2; i < 24; i++) f[i] = f[i - 1] + f[i - 2];
    uint8_t len[24];
    opt_huf_lengths(f, 24, OPT_HUF_MAX_BITS, len);
    int maxl = 0;
    for (int i = 0; i < 24; i++) maxl = len[i] > maxl ? len[i] : maxl;
    cr_assert_eq(maxl, OPT_HUF_MAX_BITS, "longest code is %d bits", maxl);
    uint64_t n = 0;
    for (int i = 0; i < 24; i++) n += f[i];
    uint8_t *s = malloc(n);
    uint64_t k = 0;
    for (int i = 0; i < 24; i++)
        for (uint64_t j = 0; j < f[i]; j++) s[k++] = (uint8_t)i;
    for (uint64_t i = n - 1; i > 0; i--) { /* shuffle */
        uint64_t j = rnd() % (i + 1);
        uint8_t t = s[i];
        s[i] = s[j];
        s[j] = t;
    }
    stream_round_trip(s, n, 24);
    free(s);
}

Test(huffman, code_lengths_satisfy_kraft_with_equality)
{
    for (int trial = 0; trial < 200; trial++) {
        uint64_t f[256];
        int nsym = 2 + (int)(rnd() % 255);
        for (int i = 0; i < nsym; i++) f[i] = rnd() % 3 ? rnd() % (1u << (rnd() % 30)) : 0;
        f[0] = f[1] = 1;
        uint8_t len[256];
        opt_huf_lengths(f, nsym, OPT_HUF_MAX_BITS, len);
        uint64_t kraft = 0;
        for (int i = 0; i < nsym; i++) {
            cr_assert(len[i] <= OPT_HUF_MAX_BITS);
            cr_assert((len[i] == 0) == (f[i] == 0));
            if (len[i]) kraft += 1ull << (OPT_HUF_MAX_BITS - len[i]);
        }
        cr_assert_eq(kraft, 1ull << OPT_HUF_MAX_BITS);
    }
}

Test(huffman, round_trip_of_an_empty_tensor)
{
    stream_round_trip(NULL, 0, 1);
    int64_t dims[2] = {0, 7};
    uint8_t dummy = 0;
    weight_round_trip(&dummy, dims, 2, -1);
    weight_round_trip(&dummy, NULL, 0, -1); /* a scalar: one element */
}

Test(huffman, sparse_layout_round_trips_pruned_weights)
{
    for (int trial = 0; trial < 30; trial++) {
        int64_t dims[2] = {1 + (int64_t)(rnd() % 300), 1 + (int64_t)(rnd() % 800)};
        uint64_t n = (uint64_t)(dims[0] * dims[1]);
        uint8_t *s = malloc(n);
        unsigned density = 1 + (unsigned)(rnd() % 50); /* percent */
        for (uint64_t i = 0; i < n; i++) s[i] = rnd() % 100 < density ? (uint8_t)(1 + rnd() % 31) : 0;
        weight_round_trip(s, dims, 2, OPT_HUF_SPARSE);
        weight_round_trip(s, dims, 2, -1);
        free(s);
    }
}

Test(huffman, sparse_layout_is_chosen_and_smaller_for_sparse_weights)
{
    int64_t dims[2] = {300, 784};
    uint64_t n = 300 * 784;
    uint8_t *s = malloc(n);
    for (uint64_t i = 0; i < n; i++) s[i] = rnd() % 100 < 8 ? (uint8_t)(1 + rnd() % 32) : 0;
    opt_bytes p = {0}, q = {0};
    opt_huf_info a, b;
    opt_error e = {0};
    cr_assert_eq(opt_huf_weight_encode(s, dims, 2, 33, -1, &p, &a, &e), OPT_OK);
    cr_assert_eq(opt_huf_weight_encode(s, dims, 2, 33, OPT_HUF_DENSE, &q, &b, &e), OPT_OK);
    cr_assert_eq(a.layout, OPT_HUF_SPARSE);
    cr_assert_lt(p.len, q.len);
    /* Huffman codes cost less than one bit over the entropy per symbol. */
    cr_assert_leq(a.index_bytes * 8.0, a.index_entropy_bits + a.nnz + 200);
    free(p.data);
    free(q.data);
    free(s);
}

Test(huffman, damaged_payloads_are_refused_not_overrun)
{
    int64_t dims[2] = {64, 100};
    uint64_t n = 6400;
    uint8_t *s = malloc(n), *back = malloc(n);
    for (uint64_t i = 0; i < n; i++) s[i] = rnd() % 100 < 20 ? (uint8_t)(1 + rnd() % 15) : 0;
    for (int layout = 0; layout < 2; layout++) {
        opt_bytes p = {0};
        opt_error e = {0};
        cr_assert_eq(opt_huf_weight_encode(s, dims, 2, 16, layout, &p, NULL, &e), OPT_OK);
        /* Every truncation fails. */
        for (size_t cut = 0; cut < p.len; cut += 1 + cut / 8)
            cr_assert_neq(opt_huf_weight_decode(p.data, cut, back, n, &e), OPT_OK, "cut at %zu", cut);
        /* Random byte flips either fail or decode without touching memory out of bounds
         * (ASan watches); a flip in the header always fails or keeps the size. */
        for (int t = 0; t < 300; t++) {
            uint8_t *c = malloc(p.len);
            memcpy(c, p.data, p.len);
            c[rnd() % p.len] ^= (uint8_t)(1u << (rnd() % 8));
            (void)opt_huf_weight_decode(c, p.len, back, n, &e);
            free(c);
        }
        cr_assert_neq(opt_huf_weight_decode(p.data, p.len, back, n + 1, &e), OPT_OK);
        free(p.data);
    }
    free(s);
    free(back);
}

Test(huffman, payload_matches_the_documented_example)
{
    /* docs/formats/huffman.md, "Example". */
    static const uint8_t want[] = {
        0x4D, 0x48, 0x55, 0x46, 0x01, 0x00, 0x02, 0x00,
        0x02, 0, 0, 0, 0, 0, 0, 0,
        0x03, 0, 0, 0, 0, 0, 0, 0,
        0x02, 0x06, 0, 0, 0,
        0x03, 0x21, 0x20,
        0x01, 0x01, 0, 0, 0,
        0x34,
    };
    const uint8_t idx[6] = {0, 0, 3, 0, 1, 0};
    int64_t dims[2] = {2, 3};
    opt_bytes p = {0};
    opt_error e = {0};
    cr_assert_eq(opt_huf_weight_encode(idx, dims, 2, 4, OPT_HUF_DENSE, &p, NULL, &e), OPT_OK);
    cr_assert_eq(p.len, sizeof want, "payload is %zu bytes", p.len);
    cr_assert(memcmp(p.data, want, sizeof want) == 0, "payload bytes differ from the documentation");
    free(p.data);
}
