/*
 * libopt/ir/huffman_codec.c — canonical length-limited Huffman codes and the HuffmanDecode payload.
 *
 * The layout is docs/formats/huffman.md. Code lengths come from the two-queue Huffman
 * construction and are limited to OPT_HUF_MAX_BITS with the Kraft fix-up of zlib/miniz (close to
 * optimal, and simple). Bits are written most significant first, so a decoder peeks the top
 * maxlen bits of a left-aligned 64-bit buffer and looks them up in one table; the refill is
 * "variant 4" of Fabian Giesen's bit readers ("Reading bits in far too many ways"), which makes
 * one refill good for five 11-bit codes.
 */
#include "huffman_codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void opt_hbuf_free(opt_hbuf *b)
{
    if (!b) return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static bool hbuf_reserve(opt_hbuf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return false;
    b->data = p;
    b->cap = cap;
    return true;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- code lengths ------------------------------------------------------------------------- */

typedef struct symfreq {
    uint64_t f;
    int s;
} symfreq;

static int cmp_symfreq(const void *a, const void *b)
{
    const symfreq *x = a, *y = b;
    if (x->f != y->f) return x->f < y->f ? -1 : 1;
    return x->s - y->s;
}

void opt_huf_lengths(const uint64_t *freq, int nsym, int max_bits, uint8_t *len)
{
    symfreq sf[256];
    int m = 0;
    memset(len, 0, (size_t)nsym);
    for (int s = 0; s < nsym; s++)
        if (freq[s]) sf[m++] = (symfreq){freq[s], s};
    if (m == 0) return;
    if (m == 1) {
        len[sf[0].s] = 1;
        return;
    }
    qsort(sf, (size_t)m, sizeof *sf, cmp_symfreq);

    /* Two queues: the sorted leaves, and internal nodes, which are made in increasing weight. */
    uint64_t w[512];
    int parent[512];
    for (int i = 0; i < m; i++) w[i] = sf[i].f;
    int li = 0, ii = m, next = m;
    while (next < 2 * m - 1) {
        int pick[2];
        for (int k = 0; k < 2; k++) {
            if (li < m && (ii >= next || w[li] <= w[ii])) pick[k] = li++;
            else pick[k] = ii++;
        }
        w[next] = w[pick[0]] + w[pick[1]];
        parent[pick[0]] = parent[pick[1]] = next;
        next++;
    }
    int depth[512];
    depth[2 * m - 2] = 0;
    for (int i = 2 * m - 3; i >= 0; i--) depth[i] = depth[parent[i]] + 1;

    /* Limit to max_bits: count codes per length, fold the too-long ones into max_bits, then
     * lengthen shorter codes until the Kraft sum is exactly 1 again. */
    int num[64] = {0};
    for (int i = 0; i < m; i++) num[depth[i] > max_bits ? max_bits : depth[i]]++;
    uint64_t total = 0;
    for (int l = 1; l <= max_bits; l++) total += (uint64_t)num[l] << (max_bits - l);
    while (total > (UINT64_C(1) << max_bits)) {
        num[max_bits]--;
        for (int l = max_bits - 1; l > 0; l--)
            if (num[l]) {
                num[l]--;
                num[l + 1] += 2;
                break;
            }
        total--;
    }
    /* The shortest codes go to the most frequent symbols (sf is ascending). */
    int k = m - 1;
    for (int l = 1; l <= max_bits; l++)
        for (int c = 0; c < num[l]; c++) len[sf[k--].s] = (uint8_t)l;
}

/* Canonical codes from lengths, in (length, symbol) order as DEFLATE assigns them. */
static void canonical_codes(const uint8_t *len, int nsym, uint32_t *code)
{
    int count[OPT_HUF_MAX_BITS + 2] = {0};
    for (int s = 0; s < nsym; s++) count[len[s]]++;
    count[0] = 0;
    uint32_t next[OPT_HUF_MAX_BITS + 2] = {0}, c = 0;
    for (int l = 1; l <= OPT_HUF_MAX_BITS; l++) {
        c = (c + (uint32_t)count[l - 1]) << 1;
        next[l] = c;
    }
    for (int s = 0; s < nsym; s++)
        if (len[s]) code[s] = next[len[s]]++;
}

double opt_huf_entropy_bits(const uint64_t *freq, int nsym)
{
    uint64_t n = 0;
    for (int s = 0; s < nsym; s++) n += freq[s];
    if (!n) return 0;
    double h = 0;
    for (int s = 0; s < nsym; s++)
        if (freq[s]) h -= (double)freq[s] * log2((double)freq[s] / (double)n);
    return h;
}

/* ---- streams ------------------------------------------------------------------------------ */

enum { MODE_EMPTY = 0, MODE_CONST = 1, MODE_HUF = 2 };

static int n_segments(uint64_t n)
{
    return n >= 4096 ? OPT_HUF_MAX_SEGS : 1;
}

static int used_nsym(const uint64_t *freq, int nsym, int *distinct)
{
    int top = 0, d = 0;
    for (int s = 0; s < nsym; s++)
        if (freq[s]) {
            top = s + 1;
            d++;
        }
    *distinct = d;
    return top;
}

size_t opt_huf_stream_size(const uint64_t *freq, int nsym, uint64_t n)
{
    int distinct;
    int top = used_nsym(freq, nsym, &distinct);
    if (n == 0 || distinct == 0) return 5;
    if (distinct == 1) return 6;
    uint8_t len[256];
    opt_huf_lengths(freq, top, OPT_HUF_MAX_BITS, len);
    uint64_t bits = 0;
    for (int s = 0; s < top; s++) bits += freq[s] * len[s];
    int nseg = n_segments(n);
    /* Segment padding is at most one byte each beyond the first: this is an upper bound that is
     * exact for one segment. */
    return 5 + 1 + (size_t)(top + 1) / 2 + 1 + 4 * (size_t)nseg + (size_t)((bits + 7) / 8) +
           (size_t)(nseg - 1);
}

opt_status opt_huf_stream_encode(const uint8_t *sym, uint64_t n, int nsym, opt_hbuf *out,
                                 opt_error *err)
{
    if (n >= (UINT64_C(1) << 32))
        return opt_error_set(err, OPT_ERR_LIMIT, "huffman: %llu symbols is more than a stream holds",
                             (unsigned long long)n);
    uint64_t freq[256] = {0};
    for (uint64_t i = 0; i < n; i++) freq[sym[i]]++;
    for (int s = nsym; s < 256; s++)
        if (freq[s])
            return opt_error_set(err, OPT_ERR_INVALID, "huffman: symbol %d outside the alphabet of %d",
                                 s, nsym);
    int distinct;
    int top = used_nsym(freq, 256, &distinct);
    if (!hbuf_reserve(out, 16 + 128 + 4 * OPT_HUF_MAX_SEGS))
        return opt_error_set(err, OPT_ERR_NOMEM, "huffman: out of memory");
    uint8_t *h = out->data + out->len;
    put_u32(h + 1, (uint32_t)n);
    if (n == 0) {
        h[0] = MODE_EMPTY;
        out->len += 5;
        return OPT_OK;
    }
    if (distinct == 1) {
        h[0] = MODE_CONST;
        h[5] = (uint8_t)(top - 1);
        out->len += 6;
        return OPT_OK;
    }
    uint8_t len[256];
    uint32_t code[256] = {0};
    opt_huf_lengths(freq, top, OPT_HUF_MAX_BITS, len);
    canonical_codes(len, top, code);
    h[0] = MODE_HUF;
    h[5] = (uint8_t)(top - 1);
    size_t k = 6;
    for (int s = 0; s < top; s += 2)
        h[k++] = (uint8_t)(len[s] | (s + 1 < top ? len[s + 1] << 4 : 0));
    int nseg = n_segments(n);
    h[k++] = (uint8_t)nseg;
    size_t seglen_at = out->len + k;
    out->len += k + 4 * (size_t)nseg;

    uint64_t q = (n + (uint64_t)nseg - 1) / (uint64_t)nseg;
    for (int sg = 0; sg < nseg; sg++) {
        uint64_t b = q * (uint64_t)sg, e = b + q < n ? b + q : n;
        uint64_t bits = 0;
        for (uint64_t i = b; i < e; i++) bits += len[sym[i]];
        size_t bytes = (size_t)((bits + 7) / 8);
        if (!hbuf_reserve(out, bytes + 8))
            return opt_error_set(err, OPT_ERR_NOMEM, "huffman: out of memory");
        uint8_t *p = out->data + out->len;
        uint64_t acc = 0;
        int nb = 0;
        for (uint64_t i = b; i < e; i++) {
            acc = (acc << len[sym[i]]) | code[sym[i]];
            nb += len[sym[i]];
            if (nb >= 32) {
                nb -= 32;
                uint32_t v = (uint32_t)(acc >> nb);
                p[0] = (uint8_t)(v >> 24);
                p[1] = (uint8_t)(v >> 16);
                p[2] = (uint8_t)(v >> 8);
                p[3] = (uint8_t)v;
                p += 4;
            }
        }
        while (nb > 0) {
            *p++ = (uint8_t)(nb >= 8 ? acc >> (nb - 8) : acc << (8 - nb));
            nb -= 8;
        }
        put_u32(out->data + seglen_at + 4 * (size_t)sg, (uint32_t)bytes);
        out->len += bytes;
    }
    return OPT_OK;
}

/* A bit reader over one segment: `buf` holds the next `cnt` bits left-aligned; `pos` is the
 * byte offset of the first byte not yet loaded. Bytes past the end read as zero; the caller
 * checks afterwards that no more bits were consumed than the segment has. */
typedef struct bitrd {
    const uint8_t *base;
    size_t end, pos;
    uint64_t buf;
    unsigned cnt;
} bitrd;

static inline uint64_t load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

static inline void br_refill(bitrd *r)
{
    if (r->pos + 8 <= r->end) {
        r->buf |= load_be64(r->base + r->pos) >> r->cnt;
        r->pos += (63 - r->cnt) >> 3;
        r->cnt |= 56;
    } else {
        while (r->cnt <= 56) {
            uint64_t b = r->pos < r->end ? r->base[r->pos] : 0;
            r->buf |= b << (56 - r->cnt);
            r->pos++;
            r->cnt += 8;
        }
    }
}

#define HUF_DEC1(r, o)                                     \
    do {                                                   \
        unsigned e_ = tab[(r).buf >> shift];               \
        unsigned l_ = e_ & 15;                             \
        *(o)++ = (uint8_t)(e_ >> 4);                       \
        (r).buf <<= l_;                                    \
        (r).cnt -= l_;                                     \
        bad |= (l_ == 0);                                  \
    } while (0)

static opt_status stream_header(const uint8_t *buf, size_t len, int *mode, uint64_t *n,
                                opt_error *err)
{
    if (len < 5) return opt_error_set(err, OPT_ERR_DATA, "huffman: stream header truncated");
    *mode = buf[0];
    *n = get_u32(buf + 1);
    if (*mode > MODE_HUF)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: unknown stream mode %d", *mode);
    if (*mode == MODE_EMPTY && *n != 0)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: empty stream with %llu symbols",
                             (unsigned long long)*n);
    if (*mode != MODE_EMPTY && *n == 0)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: stream mode %d with no symbols", *mode);
    return OPT_OK;
}

opt_status opt_huf_stream_count(const uint8_t *buf, size_t len, uint64_t *n, opt_error *err)
{
    int mode;
    return stream_header(buf, len, &mode, n, err);
}

opt_status opt_huf_stream_decode(const uint8_t *buf, size_t len, uint8_t *out, uint64_t cap,
                                 int nsym_max, uint64_t *n_out, size_t *used, opt_error *err)
{
    int mode;
    uint64_t n;
    OPT_TRY(stream_header(buf, len, &mode, &n, err));
    if (n > cap)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: stream of %llu symbols where %llu fit",
                             (unsigned long long)n, (unsigned long long)cap);
    *n_out = n;
    if (mode == MODE_EMPTY) {
        *used = 5;
        return OPT_OK;
    }
    if (len < 6) return opt_error_set(err, OPT_ERR_DATA, "huffman: stream header truncated");
    int top = buf[5] + 1;
    if (top > nsym_max)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: alphabet of %d symbols, at most %d allowed",
                             top, nsym_max);
    if (mode == MODE_CONST) {
        memset(out, buf[5], (size_t)n);
        *used = 6;
        return OPT_OK;
    }
    size_t k = 6, nl = (size_t)(top + 1) / 2;
    if (len < k + nl + 1) return opt_error_set(err, OPT_ERR_DATA, "huffman: code table truncated");
    uint8_t lens[256];
    int maxlen = 0;
    uint64_t kraft = 0;
    for (int s = 0; s < top; s++) {
        lens[s] = (uint8_t)((buf[k + (size_t)s / 2] >> (4 * (s & 1))) & 15);
        if (lens[s] > OPT_HUF_MAX_BITS)
            return opt_error_set(err, OPT_ERR_DATA, "huffman: code length %d over the limit %d",
                                 lens[s], OPT_HUF_MAX_BITS);
        if (lens[s] > maxlen) maxlen = lens[s];
        if (lens[s]) kraft += UINT64_C(1) << (OPT_HUF_MAX_BITS - lens[s]);
    }
    if (maxlen == 0) return opt_error_set(err, OPT_ERR_DATA, "huffman: code table has no codes");
    if (kraft > (UINT64_C(1) << OPT_HUF_MAX_BITS))
        return opt_error_set(err, OPT_ERR_DATA, "huffman: code lengths are over-subscribed");
    k += nl;
    int nseg = buf[k++];
    if (nseg < 1 || nseg > OPT_HUF_MAX_SEGS)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: %d segments (1 to %d allowed)", nseg,
                             OPT_HUF_MAX_SEGS);
    if (len < k + 4 * (size_t)nseg)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: segment table truncated");
    size_t seg_off[OPT_HUF_MAX_SEGS], seg_len[OPT_HUF_MAX_SEGS], at = k + 4 * (size_t)nseg;
    for (int s = 0; s < nseg; s++) {
        seg_len[s] = get_u32(buf + k + 4 * (size_t)s);
        seg_off[s] = at;
        if (seg_len[s] > len - at)
            return opt_error_set(err, OPT_ERR_DATA, "huffman: segment %d runs past the payload", s);
        at += seg_len[s];
    }

    /* One table entry per maxlen-bit prefix: symbol << 4 | code length (0 = no such code). */
    uint16_t tab[1 << OPT_HUF_MAX_BITS];
    uint32_t code[256] = {0};
    canonical_codes(lens, top, code);
    memset(tab, 0, sizeof(uint16_t) << maxlen);
    for (int s = 0; s < top; s++)
        if (lens[s]) {
            uint32_t b = code[s] << (maxlen - lens[s]), e = (code[s] + 1) << (maxlen - lens[s]);
            for (uint32_t i = b; i < e; i++) tab[i] = (uint16_t)(s << 4 | lens[s]);
        }
    const unsigned shift = 64u - (unsigned)maxlen;

    uint64_t q = (n + (uint64_t)nseg - 1) / (uint64_t)nseg;
    bitrd r[OPT_HUF_MAX_SEGS];
    uint8_t *o[OPT_HUF_MAX_SEGS];
    uint64_t cnt[OPT_HUF_MAX_SEGS];
    for (int s = 0; s < nseg; s++) {
        r[s] = (bitrd){buf + seg_off[s], seg_len[s], 0, 0, 0};
        uint64_t b = q * (uint64_t)s;
        o[s] = out + b;
        cnt[s] = b >= n ? 0 : (b + q < n ? q : n - b);
    }
    unsigned bad = 0;
    uint64_t rem[OPT_HUF_MAX_SEGS];
    for (int s = 0; s < nseg; s++) rem[s] = cnt[s];
    /* Long streams: a second table decodes up to four symbols per lookup of an 11-bit window
     * (entry: the symbols in bits 0-31, their count in 32-39, the bits they take in 40-47, and
     * bit 48 set for a pattern that is no code), which is what makes short codes fast. */
    uint64_t *mtab = n >= 2048 ? malloc(sizeof(uint64_t) << OPT_HUF_MAX_BITS) : NULL;
    if (mtab) {
        const int W = OPT_HUF_MAX_BITS;
        for (uint32_t p = 0; p < (1u << W); p++) {
            uint64_t syms = 0, nk = 0, pos = 0;
            while (nk < 4) {
                uint32_t win = (p << pos) & ((1u << W) - 1);
                unsigned e1 = tab[win >> (W - maxlen)], l1 = e1 & 15;
                if (l1 == 0 || pos + l1 > (unsigned)W) break;
                syms |= (uint64_t)(e1 >> 4) << (8 * nk);
                nk++;
                pos += l1;
            }
            mtab[p] = nk ? syms | nk << 32 | pos << 40 : (UINT64_C(1) << 32) | ((uint64_t)W << 40) | (UINT64_C(1) << 48);
        }
    }
    const unsigned mshift = 64u - OPT_HUF_MAX_BITS;
#define HUF_DECM(rd, op, rm)                                   \
    do {                                                       \
        uint64_t e_ = mtab[(rd).buf >> mshift];                \
        uint32_t sy_ = (uint32_t)e_;                           \
        memcpy((op), &sy_, 4);                                 \
        unsigned k_ = (unsigned)(e_ >> 32) & 0xFF, b_ = (unsigned)(e_ >> 40) & 0xFF; \
        (op) += k_;                                            \
        (rm) -= k_;                                            \
        (rd).buf <<= b_;                                       \
        (rd).cnt -= b_;                                        \
        bad |= (unsigned)(e_ >> 48);                           \
    } while (0)
    if (mtab && nseg == 4) {
        while (rem[0] >= 20 && rem[1] >= 20 && rem[2] >= 20 && rem[3] >= 20) {
            br_refill(&r[0]);
            br_refill(&r[1]);
            br_refill(&r[2]);
            br_refill(&r[3]);
            for (int j = 0; j < 5; j++) {
                HUF_DECM(r[0], o[0], rem[0]);
                HUF_DECM(r[1], o[1], rem[1]);
                HUF_DECM(r[2], o[2], rem[2]);
                HUF_DECM(r[3], o[3], rem[3]);
            }
        }
    } else if (nseg == 4) {
        while (rem[0] >= 5 && rem[1] >= 5 && rem[2] >= 5 && rem[3] >= 5) {
            br_refill(&r[0]);
            br_refill(&r[1]);
            br_refill(&r[2]);
            br_refill(&r[3]);
            for (int j = 0; j < 5; j++) {
                HUF_DEC1(r[0], o[0]);
                HUF_DEC1(r[1], o[1]);
                HUF_DEC1(r[2], o[2]);
                HUF_DEC1(r[3], o[3]);
            }
            rem[0] -= 5;
            rem[1] -= 5;
            rem[2] -= 5;
            rem[3] -= 5;
        }
    }
    for (int s = 0; s < nseg; s++) {
        if (mtab) {
            while (rem[s] >= 20) {
                br_refill(&r[s]);
                for (int j = 0; j < 5; j++) HUF_DECM(r[s], o[s], rem[s]);
            }
            while (rem[s] >= 4) {
                br_refill(&r[s]);
                HUF_DECM(r[s], o[s], rem[s]);
            }
        }
        for (; rem[s] >= 5; rem[s] -= 5) {
            br_refill(&r[s]);
            HUF_DEC1(r[s], o[s]);
            HUF_DEC1(r[s], o[s]);
            HUF_DEC1(r[s], o[s]);
            HUF_DEC1(r[s], o[s]);
            HUF_DEC1(r[s], o[s]);
        }
        for (; rem[s] > 0; rem[s]--) {
            br_refill(&r[s]);
            HUF_DEC1(r[s], o[s]);
        }
        uint64_t consumed = (uint64_t)r[s].pos * 8 - r[s].cnt;
        if (consumed > (uint64_t)seg_len[s] * 8) {
            free(mtab);
            return opt_error_set(err, OPT_ERR_DATA, "huffman: segment %d ends in the middle of a code", s);
        }
    }
#undef HUF_DECM
    free(mtab);
    if (bad) return opt_error_set(err, OPT_ERR_DATA, "huffman: bit pattern that is no code");
    *used = at;
    return OPT_OK;
}

/* ---- compressed weights -------------------------------------------------------------------- */

static const uint8_t MAGIC[4] = {'M', 'H', 'U', 'F'};
enum { PAYLOAD_VERSION = 1 };

/* Position symbols of the sparse layout for run alphabet M = 2^g: before each listed position,
 * its run of fill entries r becomes floor(r / (M-1)) filler symbols M-1 and one symbol r mod (M-1). */
static void pos_histogram(const uint64_t *runs, uint64_t nnz, int g, uint64_t *freq, uint64_t *nsyms)
{
    uint64_t m1 = (UINT64_C(1) << g) - 1, tot = 0;
    memset(freq, 0, sizeof(uint64_t) << g);
    for (uint64_t i = 0; i < nnz; i++) {
        uint64_t fillers = runs[i] / m1;
        freq[m1] += fillers;
        freq[runs[i] % m1]++;
        tot += fillers + 1;
    }
    *nsyms = tot;
}

static size_t header_size(int ndim)
{
    return 8 + 8 * (size_t)ndim;
}

static void write_header(uint8_t *p, int layout, int ndim, const int64_t *dims, uint8_t fill)
{
    memcpy(p, MAGIC, 4);
    p[4] = PAYLOAD_VERSION;
    p[5] = (uint8_t)layout;
    p[6] = (uint8_t)ndim;
    p[7] = fill;
    for (int d = 0; d < ndim; d++)
        for (int b = 0; b < 8; b++) p[8 + 8 * d + b] = (uint8_t)((uint64_t)dims[d] >> (8 * b));
}

opt_status opt_huf_weight_encode(const uint8_t *idx, const int64_t *dims, int ndim, int nsym,
                                 int force_layout, opt_bytes *out, opt_huf_info *info,
                                 opt_error *err)
{
    opt_huf_info inf = {0};
    if (ndim < 0 || ndim > OPT_HUF_MAX_NDIM)
        return opt_error_set(err, OPT_ERR_UNSUPPORTED, "huffman: %d dims (at most %d)", ndim,
                             OPT_HUF_MAX_NDIM);
    if (nsym < 1 || nsym > 256)
        return opt_error_set(err, OPT_ERR_INVALID, "huffman: alphabet of %d symbols", nsym);
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (dims[d] < 0 || (dims[d] && numel > (UINT64_C(1) << 32) / (uint64_t)dims[d]))
            return opt_error_set(err, OPT_ERR_LIMIT, "huffman: tensor too large for one payload");
        numel *= (uint64_t)dims[d];
        inf.dims[d] = dims[d];
    }
    if (numel >= (UINT64_C(1) << 32))
        return opt_error_set(err, OPT_ERR_LIMIT, "huffman: tensor too large for one payload");
    inf.ndim = ndim;
    inf.numel = numel;

    uint64_t freq[256] = {0};
    for (uint64_t i = 0; i < numel; i++) freq[idx[i]]++;
    for (int s = nsym; s < 256; s++)
        if (freq[s]) return opt_error_set(err, OPT_ERR_INVALID, "huffman: index %d outside the codebook of %d", s, nsym);
    size_t dense = header_size(ndim) + opt_huf_stream_size(freq, 256, numel);

    /* Sparse candidate: fill = the most frequent index. */
    int fill = 0;
    for (int s = 1; s < 256; s++)
        if (freq[s] > freq[fill]) fill = s;
    uint64_t nnz = numel - freq[fill];
    uint64_t *runs = NULL;
    int best_g = 0;
    size_t sparse = SIZE_MAX;
    if (force_layout != OPT_HUF_DENSE && numel > 0) {
        runs = malloc((nnz ? nnz : 1) * sizeof *runs);
        if (!runs) return opt_error_set(err, OPT_ERR_NOMEM, "huffman: out of memory");
        uint64_t r = 0, k = 0;
        for (uint64_t i = 0; i < numel; i++) {
            if (idx[i] == fill) r++;
            else {
                runs[k++] = r;
                r = 0;
            }
        }
        uint64_t ifreq[256];
        memcpy(ifreq, freq, sizeof ifreq);
        ifreq[fill] = 0;
        size_t isz = opt_huf_stream_size(ifreq, 256, nnz);
        for (int g = 1; g <= 8; g++) {
            uint64_t pf[256], np;
            pos_histogram(runs, nnz, g, pf, &np);
            size_t sz = header_size(ndim) + 1 + opt_huf_stream_size(pf, 1 << g, np) + isz;
            if (sz < sparse) {
                sparse = sz;
                best_g = g;
            }
        }
    }
    int layout = force_layout >= 0 ? force_layout : (sparse < dense ? OPT_HUF_SPARSE : OPT_HUF_DENSE);
    if (numel == 0) layout = OPT_HUF_DENSE;

    opt_hbuf b = {0};
    opt_status st = OPT_OK;
    if (!hbuf_reserve(&b, header_size(ndim) + 1)) {
        st = opt_error_set(err, OPT_ERR_NOMEM, "huffman: out of memory");
        goto done;
    }
    write_header(b.data, layout, ndim, dims, layout == OPT_HUF_SPARSE ? (uint8_t)fill : 0);
    b.len = header_size(ndim);
    inf.layout = layout;
    if (layout == OPT_HUF_DENSE) {
        st = opt_huf_stream_encode(idx, numel, 256, &b, err);
        inf.index_bytes = b.len - header_size(ndim);
        inf.index_entropy_bits = opt_huf_entropy_bits(freq, 256);
    } else {
        b.data[b.len++] = (uint8_t)best_g;
        uint64_t m1 = (UINT64_C(1) << best_g) - 1, pf[256], np;
        pos_histogram(runs, nnz, best_g, pf, &np);
        uint8_t *ps = malloc(np ? np : 1), *is = malloc(nnz ? nnz : 1);
        if (!ps || !is) {
            free(ps);
            free(is);
            st = opt_error_set(err, OPT_ERR_NOMEM, "huffman: out of memory");
            goto done;
        }
        uint64_t j = 0, k = 0;
        for (uint64_t i = 0; i < numel; i++)
            if (idx[i] != fill) is[k++] = idx[i];
        for (uint64_t i = 0; i < nnz; i++) {
            for (uint64_t f = runs[i] / m1; f; f--) ps[j++] = (uint8_t)m1;
            ps[j++] = (uint8_t)(runs[i] % m1);
        }
        size_t at = b.len;
        st = opt_huf_stream_encode(ps, np, 1 << best_g, &b, err);
        inf.pos_bytes = b.len - at;
        at = b.len;
        if (st == OPT_OK) st = opt_huf_stream_encode(is, nnz, 256, &b, err);
        inf.index_bytes = b.len - at;
        uint64_t ifreq[256];
        memcpy(ifreq, freq, sizeof ifreq);
        ifreq[fill] = 0;
        inf.index_entropy_bits = opt_huf_entropy_bits(ifreq, 256);
        inf.pos_entropy_bits = opt_huf_entropy_bits(pf, 1 << best_g);
        inf.fill = (uint8_t)fill;
        inf.run_bits = best_g;
        inf.nnz = nnz;
        inf.n_pos = np;
        free(ps);
        free(is);
    }
done:
    free(runs);
    if (st != OPT_OK) {
        opt_hbuf_free(&b);
        return st;
    }
    inf.bytes = b.len;
    out->data = b.data;
    out->len = b.len;
    if (info) *info = inf;
    return OPT_OK;
}

opt_status opt_huf_weight_header(const uint8_t *buf, size_t len, opt_huf_info *info, opt_error *err)
{
    memset(info, 0, sizeof *info);
    if (len < 8 || memcmp(buf, MAGIC, 4) != 0)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: payload does not start with 'MHUF'");
    if (buf[4] != PAYLOAD_VERSION)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: payload version %d (this mopt reads %d)",
                             buf[4], PAYLOAD_VERSION);
    if (buf[5] > OPT_HUF_SPARSE)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: unknown layout %d", buf[5]);
    info->layout = buf[5];
    info->ndim = buf[6];
    info->fill = buf[7];
    if (info->ndim > OPT_HUF_MAX_NDIM)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: %d dims (at most %d)", info->ndim,
                             OPT_HUF_MAX_NDIM);
    if (info->layout == OPT_HUF_DENSE && info->fill != 0)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: dense payload with a fill byte");
    if (len < header_size(info->ndim) + (info->layout == OPT_HUF_SPARSE))
        return opt_error_set(err, OPT_ERR_DATA, "huffman: payload header truncated");
    uint64_t numel = 1;
    for (int d = 0; d < info->ndim; d++) {
        uint64_t v = 0;
        for (int b = 0; b < 8; b++) v |= (uint64_t)buf[8 + 8 * d + b] << (8 * b);
        if (v >= (UINT64_C(1) << 32) || (v && numel > ((UINT64_C(1) << 32) - 1) / v))
            return opt_error_set(err, OPT_ERR_DATA, "huffman: dims describe too many elements");
        info->dims[d] = (int64_t)v;
        numel *= v;
    }
    info->numel = numel;
    if (info->layout == OPT_HUF_SPARSE) {
        info->run_bits = buf[header_size(info->ndim)];
        if (info->run_bits < 1 || info->run_bits > 8)
            return opt_error_set(err, OPT_ERR_DATA, "huffman: run alphabet of 2^%d symbols",
                                 info->run_bits);
    }
    return OPT_OK;
}

opt_status opt_huf_weight_decode(const uint8_t *buf, size_t len, uint8_t *out, uint64_t numel,
                                 opt_error *err)
{
    opt_huf_info h;
    OPT_TRY(opt_huf_weight_header(buf, len, &h, err));
    if (h.numel != numel)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: payload holds %llu elements, %llu expected",
                             (unsigned long long)h.numel, (unsigned long long)numel);
    size_t at = header_size(h.ndim), used;
    uint64_t n;
    if (h.layout == OPT_HUF_DENSE) {
        OPT_TRY(opt_huf_stream_decode(buf + at, len - at, out, numel, 256, &n, &used, err));
        if (n != numel)
            return opt_error_set(err, OPT_ERR_DATA, "huffman: %llu indices for %llu elements",
                                 (unsigned long long)n, (unsigned long long)numel);
        at += used;
    } else {
        at += 1;
        uint64_t np, nnz;
        OPT_TRY(opt_huf_stream_count(buf + at, len - at, &np, err));
        /* Each position symbol advances by at least one element, or lists one, so a valid
         * stream has at most numel symbols: bound the scratch by that. */
        if (np > numel)
            return opt_error_set(err, OPT_ERR_DATA, "huffman: %llu position symbols for %llu elements",
                                 (unsigned long long)np, (unsigned long long)numel);
        uint8_t *ps = malloc(np ? np : 1);
        if (!ps) return opt_error_set(err, OPT_ERR_NOMEM, "huffman: out of memory");
        opt_status st = opt_huf_stream_decode(buf + at, len - at, ps, np, 1 << h.run_bits, &np,
                                              &used, err);
        if (st != OPT_OK) {
            free(ps);
            return st;
        }
        at += used;
        /* The listed indices go to their own buffer; out is filled with `fill` once and the
         * listed positions are then scattered in one tight loop. */
        st = opt_huf_stream_count(buf + at, len - at, &nnz, err);
        if (st == OPT_OK && nnz > numel)
            st = opt_error_set(err, OPT_ERR_DATA, "huffman: %llu listed indices for %llu elements",
                               (unsigned long long)nnz, (unsigned long long)numel);
        uint8_t *src = st == OPT_OK ? malloc(nnz ? nnz : 1) : NULL;
        if (st == OPT_OK && !src) st = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        if (st == OPT_OK) st = opt_huf_stream_decode(buf + at, len - at, src, nnz, 256, &nnz, &used, err);
        if (st != OPT_OK) {
            free(ps);
            free(src);
            return st;
        }
        at += used;
        memset(out, h.fill, (size_t)numel);
        uint64_t m1 = (UINT64_C(1) << h.run_bits) - 1, pos = 0, k = 0;
        bool ok = true;
        for (uint64_t i = 0; i < np; i++) {
            uint64_t sy = ps[i];
            if (sy == m1) {
                pos += m1;
                continue;
            }
            pos += sy;
            if (pos >= numel || k >= nnz) {
                ok = false;
                break;
            }
            out[pos++] = src[k++];
        }
        free(src);
        if (!ok || pos > numel) {
            free(ps);
            return opt_error_set(err, OPT_ERR_DATA, "huffman: position stream runs past the tensor");
        }
        free(ps);
        if (k != nnz)
            return opt_error_set(err, OPT_ERR_DATA, "huffman: %llu positions for %llu listed indices",
                                 (unsigned long long)k, (unsigned long long)nnz);
    }
    if (at != len)
        return opt_error_set(err, OPT_ERR_DATA, "huffman: %zu bytes after the last stream", len - at);
    return OPT_OK;
}
