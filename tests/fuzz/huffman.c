/*
 * tests/fuzz/huffman.c — fuzz targets for libopt/ir/huffman_codec.c, the codec behind
 * ai.mopt::HuffmanDecode. Two targets from this file:
 *   huffman_decode (-DFUZZ_DECODE): any bytes as a stream and as a weight payload; the decoders
 *     fail with a one-line message or fill exactly the count they announce, never writing past
 *     the caller's buffer (ASan) or reading past the input.
 *   huffman_round_trip: any bytes as symbols (the first byte picks the alphabet size); encoding
 *     then decoding gives the symbols back, as a stream and as a dense and a sparse payload.
 */
#include "fuzz_util.h"
#include "libopt/ir/huffman_codec.h"

#ifdef FUZZ_DECODE
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    opt_error err = {0};
    uint64_t n = 0;
    size_t used = 0;
    /* The buffer is exactly as large as the data so ASan sees any over-read. */
    uint8_t *in = malloc(size ? size : 1);
    memcpy(in, data, size);
    if (opt_huf_stream_count(in, size, &n, &err) == OPT_OK && n <= (1u << 20)) {
        uint8_t *out = malloc(n ? n : 1);
        if (opt_huf_stream_decode(in, size, out, n, 256, &n, &used, &err) == OPT_OK)
            FUZZ_REQUIRE(used <= size, "stream used %zu of %zu bytes", used, size);
        else
            FUZZ_REQUIRE_MSG(err);
        free(out);
    } else if (err.status != OPT_OK) {
        FUZZ_REQUIRE_MSG(err);
    }
    opt_huf_info info;
    memset(&info, 0, sizeof info);
    err.msg[0] = 0;
    if (opt_huf_weight_header(in, size, &info, &err) == OPT_OK) {
        FUZZ_REQUIRE(info.ndim >= 0 && info.ndim <= OPT_HUF_MAX_NDIM, "ndim %d", info.ndim);
        if (info.numel <= (1u << 20)) {
            uint8_t *out = malloc(info.numel ? info.numel : 1);
            if (opt_huf_weight_decode(in, size, out, info.numel, &err) != OPT_OK) FUZZ_REQUIRE_MSG(err);
            free(out);
        }
    } else {
        FUZZ_REQUIRE_MSG(err);
    }
    free(in);
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 65536) return 0;
    int nsym = data[0] ? data[0] : 256;
    size_t n = size - 1;
    uint8_t *sym = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n; i++) sym[i] = (uint8_t)(data[1 + i] % nsym);
    opt_error err = {0};
    opt_hbuf hb = {0};
    FUZZ_REQUIRE(opt_huf_stream_encode(sym, n, nsym, &hb, &err) == OPT_OK, "encode: %s", err.msg);
    uint64_t got = 0;
    size_t used = 0;
    FUZZ_REQUIRE(opt_huf_stream_decode(hb.data, hb.len, back, n, nsym, &got, &used, &err) == OPT_OK,
                 "decode: %s", err.msg);
    FUZZ_REQUIRE(got == n && used == hb.len && memcmp(sym, back, n) == 0, "stream round trip");
    opt_hbuf_free(&hb);
    int64_t dims[2] = {1, (int64_t)n};
    for (int layout = 0; layout < 2; layout++) {
        opt_bytes payload = {0};
        if (opt_huf_weight_encode(sym, dims, 2, nsym, layout, &payload, NULL, &err) != OPT_OK) {
            FUZZ_REQUIRE_MSG(err); /* e.g. a layout that cannot hold this alphabet */
            continue;
        }
        memset(back, 0xAA, n);
        FUZZ_REQUIRE(opt_huf_weight_decode(payload.data, payload.len, back, n, &err) == OPT_OK,
                     "weight decode (layout %d): %s", layout, err.msg);
        FUZZ_REQUIRE(memcmp(sym, back, n) == 0, "weight round trip (layout %d)", layout);
        free(payload.data);
    }
    free(sym);
    free(back);
    return 0;
}
#endif
