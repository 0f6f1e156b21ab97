/*
 * tests/fuzz/tstream.c — fuzz target: the record streams datasets read (formats/tstream.c), for
 * NPY, IDX (plain or gzip) and CSV files. The first input byte picks the format; the rest is the
 * file. Properties: open fails with a one-line message or gives a shape whose records can all be
 * read, in two uneven batches, then again after a rewind with the same bytes, and (a plain NPY
 * or IDX file) once more at their positions with opt_tstream_read_at; reading past the end fails
 * cleanly; no descriptor leaks.
 */
#include "fuzz_util.h"
#include "formats/tensorfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const opt_tfmt fmts[4] = {OPT_TFMT_NPY, OPT_TFMT_IDX, OPT_TFMT_CSV, OPT_TFMT_AUTO};
    opt_tfmt fmt = fmts[data[0] & 3];
    char path[64];
    int fd;
    if (fuzz_memfile(data + 1, size - 1, path, sizeof path, &fd) != 0) return 0;
    int fd0 = fuzz_lowest_fd();
    opt_tstream *s = NULL;
    opt_error err = {0};
    if (opt_tstream_open(path, fmt, &s, &err) != OPT_OK) {
        FUZZ_REQUIRE(s == NULL, "no stream on failure");
        FUZZ_REQUIRE_MSG(err);
    } else {
        int64_t dims[OPT_MAX_DIMS];
        int nd = opt_tstream_shape(s, dims);
        uint64_t count = opt_tstream_count(s);
        FUZZ_REQUIRE(nd >= 1 && nd <= OPT_MAX_DIMS && dims[0] >= 0 && (uint64_t)dims[0] == count,
                     "shape rank %d, count %llu", nd, (unsigned long long)count);
        uint64_t per = 1;
        bool ok = true;
        for (int i = 1; i < nd; i++) {
            if (dims[i] < 0 || (dims[i] && per > (1u << 24) / (uint64_t)dims[i])) ok = false;
            else per *= (uint64_t)dims[i];
        }
        size_t rec;
        if (ok && count <= 4096 && opt_tensorfile_nbytes(opt_tstream_dtype(s), per, &rec) &&
            rec * count <= (1u << 24)) {
            uint8_t *a = malloc(rec * count + 1), *b = malloc(rec * count + 1);
            uint64_t first = count / 3;
            opt_status s1 = opt_tstream_read(s, first, a, &err);
            opt_status s2 = s1 == OPT_OK ? opt_tstream_read(s, count - first, a + rec * first, &err) : s1;
            if (s2 == OPT_OK) {
                FUZZ_REQUIRE(opt_tstream_read(s, 1, b, &err) != OPT_OK, "read past the end succeeded");
                FUZZ_REQUIRE_MSG(err);
                FUZZ_REQUIRE(opt_tstream_rewind(s, &err) == OPT_OK, "rewind: %s", err.msg);
                FUZZ_REQUIRE(opt_tstream_read(s, count, b, &err) == OPT_OK, "second read: %s", err.msg);
                FUZZ_REQUIRE(rec * count == 0 || memcmp(a, b, rec * count) == 0, "reread differs");
                if (opt_tstream_random_access(s)) { /* the two parts again, last first, with pread */
                    FUZZ_REQUIRE(opt_tstream_read_at(s, first, count - first, b + rec * first, &err) == OPT_OK &&
                                     opt_tstream_read_at(s, 0, first, b, &err) == OPT_OK,
                                 "read_at: %s", err.msg);
                    FUZZ_REQUIRE(rec * count == 0 || memcmp(a, b, rec * count) == 0, "read_at differs");
                    FUZZ_REQUIRE(opt_tstream_read_at(s, count, 1, b, &err) != OPT_OK, "read_at past the end succeeded");
                    FUZZ_REQUIRE_MSG(err);
                }
            } else {
                FUZZ_REQUIRE_MSG(err); /* a truncated file is found while reading */
            }
            free(a);
            free(b);
        }
        opt_tstream_close(s);
    }
    FUZZ_REQUIRE(fuzz_lowest_fd() == fd0, "descriptor leaked");
    close(fd);
    return 0;
}
