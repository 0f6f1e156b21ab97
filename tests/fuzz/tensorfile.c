/*
 * tests/fuzz/tensorfile.c — fuzz targets: the whole-tensor readers of formats/tensorfile.c.
 * Built once per format with -DFUZZ_FMT=OPT_TFMT_{PB,NPY,CSV,IDX} (targets tensor_pb, tensor_npy,
 * tensor_csv, tensor_idx; IDX input may be gzip-compressed, which the reader inflates).
 *
 * Properties: a failure carries a one-line message; a success gives an array whose byte count
 * matches its dtype and dims; and for PB, NPY and IDX, writing the array back and reading it
 * again gives the same dtype, dims and bytes.
 */
#include "fuzz_util.h"
#include "formats/tensorfile.h"

#ifndef FUZZ_FMT
#define FUZZ_FMT OPT_TFMT_AUTO
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    opt_array a = {0};
    char *name = NULL;
    opt_error err = {0};
    if (opt_tensorfile_parse(data, size, FUZZ_FMT, &a, &name, &err) != OPT_OK) {
        FUZZ_REQUIRE_MSG(err);
        free(name);
        return 0;
    }
    size_t want;
    FUZZ_REQUIRE(a.ndim >= 0 && a.ndim <= OPT_MAX_DIMS, "rank %d", a.ndim);
    FUZZ_REQUIRE(opt_tensorfile_nbytes(a.dtype, opt_array_numel(&a), &want) && want == a.nbytes,
                 "nbytes %zu for dtype %d and %llu elements", a.nbytes, a.dtype,
                 (unsigned long long)opt_array_numel(&a));
    if (FUZZ_FMT != OPT_TFMT_CSV) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (opt_tensorfile_serialize(&a, FUZZ_FMT, name, &buf, &len, &err) == OPT_OK) {
            opt_array b = {0};
            FUZZ_REQUIRE(opt_tensorfile_parse(buf, len, FUZZ_FMT, &b, NULL, &err) == OPT_OK,
                         "what was written reads back: %s", err.msg);
            FUZZ_REQUIRE(b.dtype == a.dtype && b.ndim == a.ndim && b.nbytes == a.nbytes &&
                             memcmp(b.dims, a.dims, (size_t)a.ndim * sizeof a.dims[0]) == 0 &&
                             (a.nbytes == 0 || memcmp(a.data, b.data, a.nbytes) == 0),
                         "round trip changed the tensor");
            opt_array_free(&b);
            free(buf);
        } else {
            FUZZ_REQUIRE_MSG(err);
        }
    }
    opt_array_free(&a);
    free(name);
    return 0;
}
