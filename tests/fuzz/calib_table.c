/*
 * tests/fuzz/calib_table.c — fuzz target: the calibration-table CSV reader (calib/table.c).
 * Properties: a failure carries a one-line message and leaves the table empty; a success gives
 * entries with finite min <= max, scale > 0 and distinct tensor names, which write back as CSV
 * and read again to the same entries. No descriptor leaks.
 */
#include "fuzz_util.h"
#include "calib/table.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd;
    if (fuzz_memfile(data, size, path, sizeof path, &fd) != 0) return 0;
    int fd0 = fuzz_lowest_fd();
    opt_calib_table t = {0};
    opt_error err = {0};
    if (opt_calib_table_read_csv(path, &t, &err) != OPT_OK) {
        FUZZ_REQUIRE_MSG(err);
        FUZZ_REQUIRE(t.n == 0, "table left with %zu entries after a failure", t.n);
    } else {
        for (size_t i = 0; i < t.n; i++) {
            const opt_calib_entry *e = &t.e[i];
            FUZZ_REQUIRE(isfinite(e->min) && isfinite(e->max) && e->min <= e->max && e->scale > 0,
                         "entry %zu: min %g max %g scale %g", i, e->min, e->max, e->scale);
            for (size_t j = 0; j < i; j++)
                FUZZ_REQUIRE(strcmp(t.e[j].tensor, e->tensor) != 0, "tensor '%s' twice", e->tensor);
        }
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        FUZZ_REQUIRE(opt_calib_table_write_csv(&t, f, &err) == OPT_OK, "write: %s", err.msg);
        fclose(f);
        char p2[64];
        int fd2;
        if (fuzz_memfile((const uint8_t *)out, len, p2, sizeof p2, &fd2) == 0) {
            opt_calib_table u = {0};
            FUZZ_REQUIRE(opt_calib_table_read_csv(p2, &u, &err) == OPT_OK, "written table reads back: %s",
                         err.msg);
            FUZZ_REQUIRE(u.n == t.n, "entry count %zu vs %zu", u.n, t.n);
            for (size_t i = 0; i < t.n; i++)
                FUZZ_REQUIRE(strcmp(u.e[i].tensor, t.e[i].tensor) == 0 && u.e[i].min == t.e[i].min &&
                                 u.e[i].max == t.e[i].max && u.e[i].zero_point == t.e[i].zero_point,
                             "entry %zu changed on the way back", i);
            opt_calib_table_free(&u);
            close(fd2);
        }
        free(out);
        opt_calib_table_free(&t);
    }
    FUZZ_REQUIRE(fuzz_lowest_fd() == fd0, "descriptor leaked");
    close(fd);
    return 0;
}
