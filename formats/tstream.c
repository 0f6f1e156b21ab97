/*
 * formats/tstream.c — tensor files read record by record (datasets).
 *
 * NPY and IDX go through zlib's gzFile, which reads gzip-compressed and plain files alike, so
 * "train-images-idx3-ubyte.gz" streams without being inflated into memory. For plain files the
 * size is checked against the header at open; for compressed ones a short file shows up as a
 * "truncated" error at the record where it ends. CSV is scanned once at open (row count, field
 * count, numbers only) and then parsed again chunk by chunk as records are read.
 */
#include "formats/tensorfile_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CSV_CHUNK 65536

struct opt_tstream {
    char *path;
    opt_tfmt fmt;
    int dtype, ndim;
    int64_t dims[OPT_MAX_DIMS];
    uint64_t count, pos;
    size_t rec_bytes, elem;
    bool swap; /* data is big-endian (IDX, or '>' numpy) */
    /* NPY, IDX */
    gzFile gz;
    z_off_t data_off;
    int fd;             /* a plain regular file, opened again for opt_tstream_read_at; else -1 */
    /* CSV */
    FILE *f;
    opt_tf_csv *csv;
    double *pend;       /* parsed rows not yet handed out */
    size_t pend_head, pend_rows, pend_cap; /* in rows */
    bool csv_eof;
    uint8_t *chunk;
};

/* Sets err to "PATH: message". */
static opt_status serr(const opt_tstream *s, opt_error *err, opt_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static opt_status serr(const opt_tstream *s, opt_error *err, opt_status st, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return opt_error_set(err, st, "%s: %s", s->path, msg);
}

/* Prefixes an error already in err with the path. */
static opt_status prefix(const opt_tstream *s, opt_error *err, opt_status st)
{
    if (!err) return st;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return opt_error_set(err, st, "%s: %s", s->path, msg);
}

void opt_tstream_close(opt_tstream *s)
{
    if (!s) return;
    if (s->gz) gzclose(s->gz);
    if (s->fd >= 0) close(s->fd);
    if (s->f) fclose(s->f);
    opt_tf_csv_free(s->csv);
    free(s->pend);
    free(s->chunk);
    free(s->path);
    free(s);
}

int opt_tstream_dtype(const opt_tstream *s) { return s->dtype; }
uint64_t opt_tstream_count(const opt_tstream *s) { return s->count; }
opt_tfmt opt_tstream_format(const opt_tstream *s) { return s->fmt; }

int opt_tstream_shape(const opt_tstream *s, int64_t *dims)
{
    for (int i = 0; i < s->ndim; i++) dims[i] = s->dims[i];
    return s->ndim;
}

/* gzread of exactly len bytes; *got receives what was read. */
static opt_status gz_read_all(opt_tstream *s, void *dst, size_t len, size_t *got, opt_error *err)
{
    uint8_t *p = dst;
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        unsigned int k = want > (1u << 30) ? (1u << 30) : (unsigned int)want;
        int r = gzread(s->gz, p + *got, k);
        if (r < 0) {
            int zerr;
            const char *m = gzerror(s->gz, &zerr);
            return serr(s, err, OPT_ERR_DATA, "compressed data is corrupt (%s)", m ? m : "gzread failed");
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    return OPT_OK;
}

static opt_status open_binary(opt_tstream *s, opt_error *err)
{
    s->gz = gzopen(s->path, "rb");
    if (!s->gz) return serr(s, err, OPT_ERR_IO, "cannot open: %s", errno ? strerror(errno) : "gzopen failed");
    gzbuffer(s->gz, 1 << 17);
    uint8_t head[12 + 4 * OPT_MAX_DIMS];
    size_t got;
    OPT_TRY(gz_read_all(s, head, 12, &got, err));
    if (got == 0) return serr(s, err, OPT_ERR_DATA, "file is empty");
    if (s->fmt == OPT_TFMT_AUTO) {
        opt_tfmt f = opt_tfmt_sniff(head, got);
        s->fmt = f == OPT_TFMT_NPY || f == OPT_TFMT_IDX ? f : OPT_TFMT_CSV;
        if (s->fmt == OPT_TFMT_CSV) return OPT_OK; /* caller switches to the CSV path */
    }
    size_t total = 0;
    bool swap = false;
    if (s->fmt == OPT_TFMT_NPY) {
        if (opt_tf_npy_preamble(head, got, &total, err) != OPT_OK) return prefix(s, err, err ? err->status : OPT_ERR_DATA);
        uint8_t *h = malloc(total);
        if (!h) return serr(s, err, OPT_ERR_NOMEM, "out of memory");
        memcpy(h, head, got < total ? got : total);
        size_t more = 0;
        opt_status st = OPT_OK;
        if (total > got) st = gz_read_all(s, h + got, total - got, &more, err);
        if (st == OPT_OK && got + more < total)
            st = serr(s, err, OPT_ERR_DATA, ".npy header is truncated (%zu of %zu bytes)", got + more, total);
        if (st == OPT_OK && total < got) {
            /* A header shorter than 12 bytes cannot be valid (a v1 dict needs more). */
            st = serr(s, err, OPT_ERR_DATA, ".npy header is too short");
        }
        if (st == OPT_OK && opt_tf_npy_header(h, total, &s->dtype, &swap, &s->ndim, s->dims, err) != OPT_OK)
            st = prefix(s, err, err ? err->status : OPT_ERR_DATA);
        free(h);
        OPT_TRY(st);
    } else if (s->fmt == OPT_TFMT_IDX) {
        if (opt_tf_idx_header(head, got, &total, &s->dtype, &s->ndim, s->dims, err) != OPT_OK)
            return prefix(s, err, err ? err->status : OPT_ERR_DATA);
        if (total > got) {
            size_t more;
            OPT_TRY(gz_read_all(s, head + got, total - got, &more, err));
            if (got + more < total) return serr(s, err, OPT_ERR_DATA, "IDX header is truncated");
            got += more;
        }
        if (opt_tf_idx_header(head, got, &total, &s->dtype, &s->ndim, s->dims, err) != OPT_OK)
            return prefix(s, err, err ? err->status : OPT_ERR_DATA);
        swap = true;
    } else {
        return serr(s, err, OPT_ERR_UNSUPPORTED, "%s files cannot be streamed (use .npy, .csv or IDX)",
                    opt_tfmt_name(s->fmt));
    }
    if (s->ndim < 1) return serr(s, err, OPT_ERR_DATA, "a scalar is not a list of samples (rank 0)");
    s->elem = opt_tf_elem_size(s->dtype);
    s->swap = swap && s->elem > 1;
    s->count = (uint64_t)s->dims[0];
    uint64_t per = 1;
    opt_tf_numel(s->ndim - 1, s->dims + 1, &per);
    s->rec_bytes = (size_t)per * s->elem;
    s->data_off = (z_off_t)total;
    /* For an uncompressed file, its size must be what the header says. */
    if (gzdirect(s->gz)) {
        struct stat st;
        if (stat(s->path, &st) == 0 && S_ISREG(st.st_mode)) {
            uint64_t want = (uint64_t)total + s->count * s->rec_bytes;
            if ((uint64_t)st.st_size < want)
                return serr(s, err, OPT_ERR_DATA, "truncated: header says %llu bytes of data, file has %llu",
                            (unsigned long long)(want - total),
                            (unsigned long long)((uint64_t)st.st_size - total));
            if ((uint64_t)st.st_size > want)
                return serr(s, err, OPT_ERR_DATA, "%llu bytes after the data the header describes",
                            (unsigned long long)((uint64_t)st.st_size - want));
            s->fd = open(s->path, O_RDONLY | O_CLOEXEC); /* -1: sequential reads only */
        }
    }
    if (gzseek(s->gz, s->data_off, SEEK_SET) < 0) return serr(s, err, OPT_ERR_IO, "seek failed");
    return OPT_OK;
}

/* ---- CSV ------------------------------------------------------------------------------------ */

typedef struct csv_count {
    uint64_t rows;
    size_t cols;
} csv_count;

static opt_status count_row(void *ctx, const double *v, size_t n, opt_error *err)
{
    csv_count *c = ctx;
    (void)v;
    (void)err;
    c->rows++;
    c->cols = n;
    return OPT_OK;
}

static opt_status pend_row(void *ctx, const double *v, size_t n, opt_error *err)
{
    opt_tstream *s = ctx;
    if (s->pend_head > 0 && s->pend_head == s->pend_rows) s->pend_head = s->pend_rows = 0;
    if (s->pend_rows == s->pend_cap) {
        if (s->pend_head > 0) { /* compact */
            memmove(s->pend, s->pend + s->pend_head * n, (s->pend_rows - s->pend_head) * n * sizeof(double));
            s->pend_rows -= s->pend_head;
            s->pend_head = 0;
        }
        if (s->pend_rows == s->pend_cap) {
            size_t nc = s->pend_cap ? s->pend_cap * 2 : 256;
            double *q = realloc(s->pend, nc * (n ? n : 1) * sizeof(double));
            if (!q) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            s->pend = q;
            s->pend_cap = nc;
        }
    }
    memcpy(s->pend + s->pend_rows * n, v, n * sizeof(double));
    s->pend_rows++;
    return OPT_OK;
}

static opt_status csv_restart(opt_tstream *s, opt_error *err)
{
    opt_tf_csv_free(s->csv);
    s->csv = opt_tf_csv_new(pend_row, s);
    if (!s->csv) return serr(s, err, OPT_ERR_NOMEM, "out of memory");
    if (fseek(s->f, 0, SEEK_SET) != 0) return serr(s, err, OPT_ERR_IO, "seek failed: %s", strerror(errno));
    s->pend_head = s->pend_rows = 0;
    s->csv_eof = false;
    s->pos = 0;
    return OPT_OK;
}

static opt_status open_csv(opt_tstream *s, opt_error *err)
{
    if (s->gz) {
        gzclose(s->gz);
        s->gz = NULL;
    }
    s->f = fopen(s->path, "rb");
    if (!s->f) return serr(s, err, OPT_ERR_IO, "cannot open: %s", strerror(errno));
    s->chunk = malloc(CSV_CHUNK);
    if (!s->chunk) return serr(s, err, OPT_ERR_NOMEM, "out of memory");
    if (fread(s->chunk, 1, 2, s->f) == 2 && s->chunk[0] == 0x1f && s->chunk[1] == 0x8b)
        return serr(s, err, OPT_ERR_UNSUPPORTED, "compressed CSV is not supported (gunzip it first)");
    rewind(s->f);
    csv_count cc = {0};
    opt_tf_csv *c = opt_tf_csv_new(count_row, &cc);
    if (!c) return serr(s, err, OPT_ERR_NOMEM, "out of memory");
    opt_status st = OPT_OK;
    for (;;) {
        size_t k = fread(s->chunk, 1, CSV_CHUNK, s->f);
        if (k == 0) break;
        if ((st = opt_tf_csv_feed(c, s->chunk, k, err)) != OPT_OK) break;
    }
    if (st == OPT_OK && ferror(s->f)) st = opt_error_set(err, OPT_ERR_IO, "read error");
    if (st == OPT_OK) st = opt_tf_csv_finish(c, err);
    opt_tf_csv_free(c);
    if (st != OPT_OK) return prefix(s, err, st);
    s->dtype = OPT_DT_DOUBLE;
    s->elem = sizeof(double);
    s->ndim = 2;
    s->dims[0] = (int64_t)cc.rows;
    s->dims[1] = (int64_t)cc.cols;
    s->count = cc.rows;
    s->rec_bytes = cc.cols * sizeof(double);
    return csv_restart(s, err);
}

static opt_status csv_read(opt_tstream *s, uint64_t n, void *dst, opt_error *err)
{
    size_t cols = (size_t)s->dims[1];
    uint8_t *o = dst;
    while (n > 0) {
        if (s->pend_head < s->pend_rows) {
            size_t k = s->pend_rows - s->pend_head;
            if (k > n) k = (size_t)n;
            memcpy(o, s->pend + s->pend_head * cols, k * cols * sizeof(double));
            o += k * cols * sizeof(double);
            s->pend_head += k;
            n -= k;
            continue;
        }
        if (s->csv_eof) return serr(s, err, OPT_ERR_DATA, "file changed while being read (fewer rows)");
        size_t k = fread(s->chunk, 1, CSV_CHUNK, s->f);
        opt_status st;
        if (k == 0) {
            if (ferror(s->f)) return serr(s, err, OPT_ERR_IO, "read error");
            s->csv_eof = true;
            st = opt_tf_csv_finish(s->csv, err);
        } else {
            st = opt_tf_csv_feed(s->csv, s->chunk, k, err);
        }
        if (st != OPT_OK) return prefix(s, err, st);
    }
    return OPT_OK;
}

/* ---- API ------------------------------------------------------------------------------------ */

opt_status opt_tstream_open(const char *path, opt_tfmt fmt, opt_tstream **out, opt_error *err)
{
    *out = NULL;
    opt_tstream *s = calloc(1, sizeof *s);
    if (s) s->fd = -1;
    if (!s || !(s->path = opt_strdup(path))) {
        free(s);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    struct stat st;
    opt_status r;
    if (stat(path, &st) != 0) {
        r = serr(s, err, OPT_ERR_IO, "cannot open: %s", strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        r = serr(s, err, OPT_ERR_IO, "is a directory");
    } else {
        s->fmt = fmt == OPT_TFMT_AUTO ? opt_tfmt_from_name(path) : fmt;
        if (s->fmt == OPT_TFMT_CSV) {
            r = open_csv(s, err);
        } else {
            errno = 0;
            r = open_binary(s, err);
            if (r == OPT_OK && s->fmt == OPT_TFMT_CSV) r = open_csv(s, err);
        }
    }
    if (r != OPT_OK) {
        opt_tstream_close(s);
        return r;
    }
    *out = s;
    return OPT_OK;
}

opt_status opt_tstream_read(opt_tstream *s, uint64_t n, void *dst, opt_error *err)
{
    if (n > s->count - s->pos)
        return serr(s, err, OPT_ERR_USAGE, "asked for %llu records at %llu of %llu",
                    (unsigned long long)n, (unsigned long long)s->pos, (unsigned long long)s->count);
    if (n == 0) return OPT_OK;
    if (s->fmt == OPT_TFMT_CSV) {
        OPT_TRY(csv_read(s, n, dst, err));
        s->pos += n;
        return OPT_OK;
    }
    size_t len = (size_t)n * s->rec_bytes, got;
    OPT_TRY(gz_read_all(s, dst, len, &got, err));
    if (got < len)
        return serr(s, err, OPT_ERR_DATA, "truncated: data ends in record %llu of %llu",
                    (unsigned long long)(s->pos + got / (s->rec_bytes ? s->rec_bytes : 1) + 1),
                    (unsigned long long)s->count);
    if (s->swap) opt_tf_swap(dst, len / s->elem, s->elem);
    s->pos += n;
    if (s->pos == s->count && !gzdirect(s->gz)) {
        /* At the end of a compressed file: the gzip stream must end here too, trailer included
         * (a plain file's size was checked at open). */
        uint8_t extra;
        int r = gzread(s->gz, &extra, 1);
        int zerr = Z_OK;
        const char *m = gzerror(s->gz, &zerr);
        if (r < 0 || zerr != Z_OK)
            return serr(s, err, OPT_ERR_DATA, "truncated or corrupt compressed data at its end (%s)",
                        m && *m ? m : "gzread failed");
        if (r > 0) return serr(s, err, OPT_ERR_DATA, "more data than the header's %llu records",
                               (unsigned long long)s->count);
    }
    return OPT_OK;
}

bool opt_tstream_random_access(const opt_tstream *s)
{
    return s->fd >= 0;
}

opt_status opt_tstream_read_at(const opt_tstream *s, uint64_t first, uint64_t n, void *dst, opt_error *err)
{
    if (s->fd < 0) return serr(s, err, OPT_ERR_USAGE, "records cannot be read out of order");
    if (first > s->count || n > s->count - first)
        return serr(s, err, OPT_ERR_USAGE, "asked for %llu records at %llu of %llu", (unsigned long long)n,
                    (unsigned long long)first, (unsigned long long)s->count);
    uint8_t *p = dst;
    size_t len = (size_t)n * s->rec_bytes, got = 0;
    off_t off = (off_t)s->data_off + (off_t)(first * s->rec_bytes);
    while (got < len) {
        ssize_t r = pread(s->fd, p + got, len - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return serr(s, err, OPT_ERR_IO, "read failed: %s", strerror(errno));
        if (r == 0) /* the file shrank after it was opened */
            return serr(s, err, OPT_ERR_DATA, "truncated: data ends in record %llu of %llu",
                        (unsigned long long)(first + got / (s->rec_bytes ? s->rec_bytes : 1) + 1),
                        (unsigned long long)s->count);
        got += (size_t)r;
    }
    if (s->swap) opt_tf_swap(dst, len / s->elem, s->elem);
    return OPT_OK;
}

opt_status opt_tstream_rewind(opt_tstream *s, opt_error *err)
{
    if (s->fmt == OPT_TFMT_CSV) return csv_restart(s, err);
    if (gzseek(s->gz, s->data_off, SEEK_SET) < 0) return serr(s, err, OPT_ERR_IO, "seek failed");
    s->pos = 0;
    return OPT_OK;
}
