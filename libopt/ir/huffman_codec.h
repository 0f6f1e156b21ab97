/*
 * libopt/ir/huffman_codec.h — canonical, length-limited Huffman coding of byte streams, and the
 * compressed-weight payload that the custom op ai.mopt::HuffmanDecode carries.
 *
 * This is the one codec both sides use: the `huffman` pass (libopt/passes/huffman.c) encodes and
 * the executor's kernel (libopt/exec/cpu/mopt_ops.c) decodes. It lives in libopt/ir because that
 * is the only folder both passes and exec may include (DESIGN.md) and it needs nothing but libc.
 * The byte layout is specified in docs/formats/huffman.md; keep the two in step.
 *
 * Codes are limited to OPT_HUF_MAX_BITS bits so that one lookup in a table of 2^maxlen entries
 * decodes a symbol (as zstd's HUF does). Long streams are cut into up to four segments coded
 * independently, so the decoder runs four bit readers in lockstep and hides the lookup latency.
 *
 * Nothing read from a payload is trusted: every decoder checks lengths, counts and code tables
 * and fails with OPT_ERR_DATA naming what is wrong.
 */
#ifndef OPT_IR_HUFFMAN_CODEC_H
#define OPT_IR_HUFFMAN_CODEC_H

#include "ir.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OPT_HUF_MAX_BITS 11   /* longest code */
#define OPT_HUF_MAX_SEGS 4    /* independently coded segments per stream */
#define OPT_HUF_MAX_NDIM 8    /* dims a payload may describe */

/* A growable byte buffer. Zero-initialise; opt_hbuf_free releases. */
typedef struct opt_hbuf {
    uint8_t *data;
    size_t len, cap;
} opt_hbuf;

void opt_hbuf_free(opt_hbuf *b);

/* ---- streams ------------------------------------------------------------------------------ */

/* Computes code lengths (0 for unused symbols, else 1..max_bits) for a histogram of nsym <= 256
 * symbols: optimal Huffman lengths, then limited to max_bits by the Kraft fix-up of zlib/miniz.
 * When only one symbol occurs it gets length 1. */
void opt_huf_lengths(const uint64_t *freq, int nsym, int max_bits, uint8_t *len);

/* Bytes a stream of this histogram would take when coded by opt_huf_stream_encode (exact). */
size_t opt_huf_stream_size(const uint64_t *freq, int nsym, uint64_t n);

/* Shannon bound of a histogram in bits: n times its entropy. */
double opt_huf_entropy_bits(const uint64_t *freq, int nsym);

/* Appends the coded form of sym[0..n) (each < nsym <= 256) to out. n must be < 2^32. */
opt_status opt_huf_stream_encode(const uint8_t *sym, uint64_t n, int nsym, opt_hbuf *out,
                                 opt_error *err);

/* Decodes one stream that starts at buf (len bytes available) into out, which has room for
 * `cap` symbols. *n receives the stream's symbol count (must be <= cap), *used the bytes the
 * stream occupies. Symbols are checked against nsym_max (the caller's alphabet). */
opt_status opt_huf_stream_decode(const uint8_t *buf, size_t len, uint8_t *out, uint64_t cap,
                                 int nsym_max, uint64_t *n, size_t *used, opt_error *err);

/* Reads only the header of the stream at buf: its symbol count. */
opt_status opt_huf_stream_count(const uint8_t *buf, size_t len, uint64_t *n, opt_error *err);

/* ---- compressed weights (the HuffmanDecode payload) ---------------------------------------- */

enum { OPT_HUF_DENSE = 0, OPT_HUF_SPARSE = 1 };

/* What a payload holds, and what it cost (filled by the encoder; the decoder fills the header
 * fields only). */
typedef struct opt_huf_info {
    int layout;                   /* OPT_HUF_DENSE or OPT_HUF_SPARSE */
    int ndim;
    int64_t dims[OPT_HUF_MAX_NDIM];
    uint64_t numel;
    uint8_t fill;                 /* sparse: the index at every position not listed */
    int run_bits;                 /* sparse: position alphabet is 2^run_bits symbols */
    uint64_t nnz;                 /* sparse: positions listed */
    uint64_t n_pos;               /* sparse: position symbols (nnz + filler symbols) */
    size_t bytes;                 /* the whole payload */
    size_t index_bytes, pos_bytes;/* coded stream sizes */
    double index_entropy_bits;    /* Shannon bound of the index stream */
    double pos_entropy_bits;      /* Shannon bound of the position stream */
} opt_huf_info;

/* Encodes an index tensor (numel = product of dims, each idx[i] < nsym <= 256) as a payload in
 * *out (malloc'd; the caller frees out->data). Tries the dense layout and the sparse layout with
 * the most frequent index as fill and every run-length alphabet from 2^1 to 2^8 symbols, and
 * keeps the smallest; force_layout >= 0 forces one layout. info (may be NULL) receives sizes. */
opt_status opt_huf_weight_encode(const uint8_t *idx, const int64_t *dims, int ndim, int nsym,
                                 int force_layout, opt_bytes *out, opt_huf_info *info,
                                 opt_error *err);

/* Parses and checks a payload's header; fills info's header fields (layout, ndim, dims, numel,
 * fill, run_bits). */
opt_status opt_huf_weight_header(const uint8_t *buf, size_t len, opt_huf_info *info,
                                 opt_error *err);

/* Decodes a payload into out (numel bytes, numel from the header). */
opt_status opt_huf_weight_decode(const uint8_t *buf, size_t len, uint8_t *out, uint64_t numel,
                                 opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
