/*
 * tests/fuzz/external_data.c — fuzz target: resolution of external data locations.
 *
 * The input is up to five lines: location, offset, length, data type, dims (comma separated);
 * a missing line leaves that key out. They describe one external initializer of a model whose
 * directory (made once, in LLVMFuzzerInitialize) holds regular files, a subdirectory, symlinks
 * that stay inside and symlinks that lead out, and a FIFO. Properties: loading never reads a file
 * outside the model's directory (whatever resolves must lie under it after following symlinks),
 * the bytes loaded are the bytes at offset in that file, no descriptor leaks, and a failure
 * carries a one-line message. A hang (on the FIFO) shows as a libFuzzer timeout.
 */
#include "fuzz_util.h"
#include "formats/onnx.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>

static char g_root[PATH_MAX], g_dir[PATH_MAX], g_rdir[PATH_MAX];

static void put(const char *rel, size_t n, int seed)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", g_root, rel);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    for (size_t i = 0; i < n; i++) fputc((int)((i * 7 + (size_t)seed) & 255), f);
    fclose(f);
}

static void link_(const char *target, const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", g_root, rel);
    if (symlink(target, p) != 0) abort();
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p) != 0;
}

static void cleanup(void) { nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_root, sizeof g_root, "%s/mopt-fuzz-ext.XXXXXX", tmp);
    if (!mkdtemp(g_root)) abort();
    snprintf(g_dir, sizeof g_dir, "%s/model", g_root);
    char p[PATH_MAX];
    mkdir(g_dir, 0755);
    snprintf(p, sizeof p, "%s/sub", g_dir);
    mkdir(p, 0755);
    put("outside.bin", 64, 1);
    put("model/w.bin", 64, 2);
    put("model/sub/x.bin", 16, 3);
    put("model/empty.bin", 0, 0);
    link_("w.bin", "model/in.lnk");
    link_("../outside.bin", "model/out.lnk");
    link_("sub", "model/dir.lnk");
    link_("../../outside.bin", "model/sub/up.lnk");
    link_("/etc/passwd", "model/abs.lnk");
    link_("nothere", "model/dangling.lnk");
    snprintf(p, sizeof p, "%s/fifo", g_dir);
    mkfifo(p, 0644);
    if (!realpath(g_dir, g_rdir)) abort();
    atexit(cleanup);
    return 0;
}

/* Splits the input into at most 5 NUL-terminated lines (NULL for missing ones). */
static void lines(const uint8_t *data, size_t size, char *buf, char *line[5])
{
    memcpy(buf, data, size);
    buf[size] = 0;
    char *p = buf;
    for (int i = 0; i < 5; i++) {
        if (!p) {
            line[i] = NULL;
            continue;
        }
        line[i] = p;
        char *nl = i < 4 ? memchr(p, '\n', (size_t)(buf + size - p)) : NULL;
        if (nl) {
            *nl = 0;
            p = nl + 1;
        } else {
            p = NULL;
        }
    }
}

static bool has_dotdot(const char *s)
{
    for (const char *p = s; *p;) {
        size_t k = strcspn(p, "/");
        if (k == 2 && p[0] == '.' && p[1] == '.') return true;
        p += k;
        if (*p) p++;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *buf = malloc(size + 1), *line[5];
    lines(data, size, buf, line);
    static const char *keys[3] = {"location", "offset", "length"};

    opt_model *m = opt_model_new();
    m->graph = opt_graph_new();
    opt_tensor *t = opt_tensor_new();
    t->name = opt_strdup("W");
    t->has_data_type = true;
    t->data_type = line[3] ? atoi(line[3]) : OPT_DT_FLOAT;
    int64_t dims[4];
    size_t nd = 0;
    if (line[4]) {
        for (char *s = line[4]; *s && nd < 4;) {
            dims[nd++] = strtoll(s, &s, 10);
            if (*s != ',') break;
            s++;
        }
    } else {
        dims[nd++] = 4;
    }
    opt_tensor_set_dims(t, dims, nd, NULL);
    t->has_data_location = true;
    t->data_location = 1;
    t->external_data = calloc(3, sizeof *t->external_data);
    for (int i = 0; i < 3; i++)
        if (line[i]) {
            t->external_data[t->n_external_data].key = opt_strdup(keys[i]);
            t->external_data[t->n_external_data].value = opt_strdup(line[i]);
            t->n_external_data++;
        }
    opt_graph_add_initializer(m->graph, t, NULL);

    int fd0 = fuzz_lowest_fd();
    opt_error err = {0};
    opt_status s = opt_external_load(m, g_dir, &err);
    FUZZ_REQUIRE(fuzz_lowest_fd() == fd0, "descriptor leaked (status %d)", s);
    if (s != OPT_OK) {
        FUZZ_REQUIRE_MSG(err);
    } else {
        const char *loc = line[0];
        FUZZ_REQUIRE(loc && loc[0] != '/' && !has_dotdot(loc), "accepted location '%s'", loc ? loc : "(none)");
        char full[PATH_MAX * 2], real[PATH_MAX];
        snprintf(full, sizeof full, "%s/%s", g_dir, loc);
        FUZZ_REQUIRE(realpath(full, real) != NULL, "accepted location '%s' does not resolve", loc);
        size_t dl = strlen(g_rdir);
        FUZZ_REQUIRE(strncmp(real, g_rdir, dl) == 0 && real[dl] == '/',
                     "location '%s' resolved to '%s', outside '%s'", loc, real, g_rdir);
        uint64_t off = line[1] ? strtoull(line[1], NULL, 10) : 0;
        int fd = open(real, O_RDONLY);
        FUZZ_REQUIRE(fd >= 0, "reopen '%s'", real);
        uint8_t *want = malloc(t->raw_data.len + 1);
        ssize_t k = pread(fd, want, t->raw_data.len, (off_t)off);
        close(fd);
        FUZZ_REQUIRE(k >= 0 && (size_t)k == t->raw_data.len && memcmp(want, t->raw_data.data, (size_t)k) == 0,
                     "bytes loaded for '%s' differ from the file at offset %llu", loc,
                     (unsigned long long)off);
        free(want);
    }
    opt_model_free(m);
    free(buf);
    return 0;
}
