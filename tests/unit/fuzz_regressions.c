/*
 * tests/unit/fuzz_regressions.c — every input that ever crashed a fuzz target
 * (tests/fuzz/regress/TARGET/ files) goes through the same reader in the ordinary test build, so
 * `make test` (and `make test SAN=1`, where ASan and UBSan watch) keeps them fixed without clang's
 * fuzzing runtime. Each reader must refuse these inputs with a one-line message, or accept them
 * and round-trip, as the fuzz target's property says. Runs from tests/ (make test does).
 */
#define _GNU_SOURCE
#include "calib/table.h"
#include "formats/onnx.h"
#include "formats/tensorfile.h"
#include "libopt/ir/huffman_codec.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The exec_run harness itself (LLVMFuzzerTestOneInput: plan and run a crafted model on the CPU,
 * outputs capped at 32 MiB), so a replay here is exactly what the fuzzer ran. */
#include "tests/fuzz/exec_run.c"

typedef void (*check_fn)(const char *path, const uint8_t *data, size_t size);

static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return p;
}

/* Runs fn on every file of fuzz/regress/target; returns how many. */
static int each(const char *target, check_fn fn)
{
    char dir[256];
    snprintf(dir, sizeof dir, "fuzz/regress/%s", target);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s (run the unit tests from tests/)", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t size;
        uint8_t *data = slurp(path, &size);
        fn(path, data, size);
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

static void one_line(const char *path, const opt_error *err)
{
    cr_assert(err->msg[0] && !strchr(err->msg, '\n'), "%s: message '%s'", path, err->msg);
    for (const char *p = err->msg; *p; p++)
        cr_assert((unsigned char)*p >= 0x20 && *p != 0x7f, "%s: control character in '%s'", path, err->msg);
}

static void onnx_check(const char *path, const uint8_t *data, size_t size)
{
    opt_load_opts lo = {.skip_external = true};
    opt_error err = {0};
    opt_model *m = NULL;
    if (opt_onnx_parse(data, size, NULL, path, &lo, &m, &err) != OPT_OK) {
        one_line(path, &err);
        return;
    }
    uint8_t *b;
    size_t n;
    cr_assert_eq(opt_onnx_serialize(m, &b, &n, &err), OPT_OK, "%s: %s", path, err.msg);
    free(b);
    opt_model_free(m);
}

Test(fuzz_regressions, onnx_load_inputs_are_refused_cleanly)
{
    cr_assert_geq(each("onnx_load", onnx_check), 2);
}

static void pb_check(const char *path, const uint8_t *data, size_t size)
{
    opt_array a = {0};
    opt_error err = {0};
    if (opt_tensorfile_parse(data, size, OPT_TFMT_PB, &a, NULL, &err) != OPT_OK) one_line(path, &err);
    opt_array_free(&a);
}

static void npy_check(const char *path, const uint8_t *data, size_t size)
{
    opt_array a = {0};
    opt_error err = {0};
    if (opt_tensorfile_parse(data, size, OPT_TFMT_NPY, &a, NULL, &err) != OPT_OK) one_line(path, &err);
    opt_array_free(&a);
}

Test(fuzz_regressions, tensor_file_inputs_are_refused_cleanly)
{
    cr_assert_geq(each("tensor_pb", pb_check), 1);
    cr_assert_geq(each("tensor_npy", npy_check), 1);
}

/* Writes data to an in-memory file and returns its /proc path. */
static int memfile(const uint8_t *data, size_t size, char *path, size_t cap)
{
    int fd = memfd_create("regress", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, size), (ssize_t)size);
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

static void tstream_check(const char *path, const uint8_t *data, size_t size)
{
    static const opt_tfmt fmts[4] = {OPT_TFMT_NPY, OPT_TFMT_IDX, OPT_TFMT_CSV, OPT_TFMT_AUTO};
    if (!size) return;
    char p[64];
    int fd = memfile(data + 1, size - 1, p, sizeof p);
    opt_tstream *s = NULL;
    opt_error err = {0};
    if (opt_tstream_open(p, fmts[data[0] & 3], &s, &err) != OPT_OK) one_line(path, &err);
    opt_tstream_close(s);
    close(fd);
}

Test(fuzz_regressions, tstream_inputs_are_refused_cleanly)
{
    cr_assert_geq(each("tstream", tstream_check), 1);
}

static void huffman_check(const char *path, const uint8_t *data, size_t size)
{
    opt_huf_info info;
    memset(&info, 0, sizeof info);
    opt_error err = {0};
    if (opt_huf_weight_header(data, size, &info, &err) != OPT_OK) {
        one_line(path, &err);
        return;
    }
    cr_assert_leq(info.numel, 1u << 20, "%s: a small payload", path);
    uint8_t *out = malloc(info.numel ? info.numel : 1);
    if (opt_huf_weight_decode(data, size, out, info.numel, &err) != OPT_OK) one_line(path, &err);
    free(out);
}

Test(fuzz_regressions, huffman_payloads_are_refused_cleanly)
{
    cr_assert_geq(each("huffman_decode", huffman_check), 1);
}

static void calib_check(const char *path, const uint8_t *data, size_t size)
{
    char p[64];
    int fd = memfile(data, size, p, sizeof p);
    opt_calib_table t = {0};
    opt_error err = {0};
    /* Every kept calibration table is malformed (a 10-field row, a NUL in a name). */
    cr_assert_neq(opt_calib_table_read_csv(p, &t, &err), OPT_OK, "%s: accepted", path);
    cr_assert_eq(t.n, 0, "%s: the table is left empty", path);
    one_line(path, &err);
    close(fd);
}

Test(fuzz_regressions, broken_calibration_tables_are_refused)
{
    cr_assert_geq(each("calib_table", calib_check), 2);
}

static void exec_check(const char *path, const uint8_t *data, size_t size)
{
    (void)path;
    /* Aborts (a crash here) when a refusal has no one-line message; ASan and UBSan watch the
     * kernels under make test SAN=1. */
    LLVMFuzzerTestOneInput(data, size);
}

Test(fuzz_regressions, crafted_models_run_or_are_refused_cleanly)
{
    cr_assert_geq(each("exec_run", exec_check), 5);
}
