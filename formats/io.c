/*
 * formats/io.c — reading model files, external data, and atomic saving.
 *
 * External data locations are untrusted: a location must be a relative path that stays inside
 * the model's directory after resolving symlinks, and offset/length must lie inside the file.
 * Saving writes to temporary files in the target directory, fsyncs them and renames them into
 * place, so a failure (a full disk, a signal) leaves the previous file untouched.
 */
#define _GNU_SOURCE
#include "formats/onnx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef bool (*opt_ext_hook_fn)(void *ctx, const opt_tensor *t, void ***kvs, size_t *n);
opt_status opt_onnx__encode_stream(const opt_model *m, ProtobufCBuffer *out, opt_ext_hook_fn hook,
                                   void *hook_ctx, opt_error *err);
void *opt_onnx__make_kv(const char *key, const char *value);
opt_status opt_onnx__parse_mapped(const uint8_t *map, size_t len, const char *dir, const char *what,
                                  const opt_load_opts *opts, opt_model **out, opt_error *err);

static bool is_stdio(const char *path) { return !path || strcmp(path, "-") == 0; }

/* A model file holds at most 2 GiB (protobuf's limit; larger models keep their weights in
 * external data), so the loader stops reading there: `mopt cat /dev/zero` or an endless pipe fails
 * instead of eating all memory. */
#define MODEL_MAX_BYTES ((size_t)2 << 30)

static opt_status read_limited(const char *path, size_t limit, uint8_t **buf, size_t *len,
                               opt_error *err)
{
    int fd = is_stdio(path) ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return opt_error_set(err, OPT_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    size_t cap = 1 << 16;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > limit) {
            if (fd != STDIN_FILENO) close(fd);
            return opt_error_set(err, OPT_ERR_LIMIT,
                                 "%llu bytes is more than a model file may hold (%zu MiB; larger "
                                 "models keep their weights in external data)",
                                 (unsigned long long)st.st_size, limit >> 20);
        }
        cap = (size_t)st.st_size + 1;
    } else if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (fd != STDIN_FILENO) close(fd);
        return opt_error_set(err, OPT_ERR_IO, "is a directory");
    }
    uint8_t *p = malloc(cap);
    size_t n = 0;
    if (!p) {
        if (fd != STDIN_FILENO) close(fd);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory reading input");
    }
    for (;;) {
        if (n > limit) {
            free(p);
            if (fd != STDIN_FILENO) close(fd);
            return opt_error_set(err, OPT_ERR_LIMIT,
                                 "input is more than a model file may hold (%zu MiB; larger models "
                                 "keep their weights in external data)",
                                 limit >> 20);
        }
        if (n == cap) {
            size_t ncap = cap > limit / 2 ? limit + 1 : cap * 2; /* never more than limit + 1 */
            uint8_t *q = realloc(p, ncap);
            if (!q) {
                free(p);
                if (fd != STDIN_FILENO) close(fd);
                return opt_error_set(err, OPT_ERR_NOMEM, "out of memory reading input");
            }
            p = q;
            cap = ncap;
        }
        ssize_t k = read(fd, p + n, cap - n);
        if (k < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(p);
            if (fd != STDIN_FILENO) close(fd);
            return opt_error_set(err, OPT_ERR_IO, "read failed: %s", strerror(e));
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    if (fd != STDIN_FILENO) close(fd);
    *buf = p;
    *len = n;
    return OPT_OK;
}

opt_status opt_read_file(const char *path, uint8_t **buf, size_t *len, opt_error *err)
{
    return read_limited(path, SIZE_MAX - 1, buf, len, err);
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return opt_strdup(".");
    if (slash == path) return opt_strdup("/");
    char *d = malloc((size_t)(slash - path) + 1);
    if (d) {
        memcpy(d, path, (size_t)(slash - path));
        d[slash - path] = 0;
    }
    return d;
}

opt_status opt_onnx_load(const char *path, const opt_load_opts *opts, opt_model **out,
                         opt_error *err)
{
    uint8_t *buf;
    size_t len;
    *out = NULL;
    if (!is_stdio(path)) {
        /* Regular files are mapped, so the parser can release pages it has copied out of. */
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
            if ((uint64_t)st.st_size > MODEL_MAX_BYTES) {
                close(fd);
                return opt_error_set(err, OPT_ERR_LIMIT,
                                     "%llu bytes is more than a model file may hold (%zu MiB; "
                                     "larger models keep their weights in external data)",
                                     (unsigned long long)st.st_size, MODEL_MAX_BYTES >> 20);
            }
            size_t n = (size_t)st.st_size;
            void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
            close(fd);
            if (map != MAP_FAILED) {
                char *dir = dir_of(path);
                opt_status s = dir ? opt_onnx__parse_mapped(map, n, dir, path, opts, out, err)
                                   : opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
                munmap(map, n);
                free(dir);
                return s;
            }
        } else if (fd >= 0) {
            close(fd);
        }
    }
    OPT_TRY(read_limited(path, MODEL_MAX_BYTES, &buf, &len, err));
    char *dir = is_stdio(path) ? opt_strdup(".") : dir_of(path);
    if (!dir) {
        free(buf);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    opt_status s = opt_onnx_parse(buf, len, dir, path, opts, out, err);
    free(buf);
    free(dir);
    return s;
}

/* ---- external data: reading ------------------------------------------------------------- */

int opt_external_open(const char *dir, const char *location, const char *tensor, opt_error *err)
{
    if (!location || !location[0]) {
        opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': external data has no location", tensor);
        return -1;
    }
    if (location[0] == '/') {
        opt_error_set(err, OPT_ERR_INVALID,
                      "tensor '%s': external data location '%s' is an absolute path (refused)",
                      tensor, location);
        return -1;
    }
    /* Refuse any ".." component outright, before touching the file system. */
    for (const char *p = location; *p;) {
        const char *e = strchr(p, '/');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == 2 && p[0] == '.' && p[1] == '.') {
            opt_error_set(err, OPT_ERR_INVALID,
                          "tensor '%s': external data location '%s' leaves the model's directory "
                          "(refused)",
                          tensor, location);
            return -1;
        }
        p += k;
        if (*p == '/') p++;
    }
    char full[PATH_MAX], rdir[PATH_MAX], rfull[PATH_MAX];
    if ((size_t)snprintf(full, sizeof full, "%s/%s", dir ? dir : ".", location) >= sizeof full) {
        opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': external data path too long", tensor);
        return -1;
    }
    if (!realpath(dir ? dir : ".", rdir)) {
        opt_error_set(err, OPT_ERR_IO, "tensor '%s': model directory: %s", tensor, strerror(errno));
        return -1;
    }
    if (!realpath(full, rfull)) {
        opt_error_set(err, OPT_ERR_IO, "tensor '%s': external data file '%s': %s", tensor, location,
                      strerror(errno));
        return -1;
    }
    size_t dl = strlen(rdir);
    bool inside = strncmp(rfull, rdir, dl) == 0 && (rfull[dl] == '/' || (dl == 1 && rdir[0] == '/'));
    if (!inside) {
        opt_error_set(err, OPT_ERR_INVALID,
                      "tensor '%s': external data location '%s' resolves outside the model's "
                      "directory (symlink refused)",
                      tensor, location);
        return -1;
    }
    /* O_NONBLOCK: a FIFO planted in the model's directory must not hang the open; anything but
     * a regular file is refused here (for regular files the flag changes nothing). */
    int fd = open(rfull, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        opt_error_set(err, OPT_ERR_IO, "tensor '%s': external data file '%s': %s", tensor, location,
                      strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': external data '%s' is not a regular file",
                      tensor, location);
        return -1;
    }
    return fd;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-') return false;
    *v = x;
    return true;
}

static opt_status load_one(opt_tensor *t, const char *dir, opt_error *err)
{
    const char *nm = t->name ? t->name : "";
    const char *loc = NULL;
    uint64_t off = 0, len = 0;
    bool has_len = false;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const char *k = t->external_data[i].key ? t->external_data[i].key : "";
        const char *v = t->external_data[i].value;
        if (strcmp(k, "location") == 0) loc = v;
        else if (strcmp(k, "offset") == 0) {
            if (!parse_u64(v, &off))
                return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': bad external data offset '%s'",
                                     nm, v ? v : "");
        } else if (strcmp(k, "length") == 0) {
            if (!parse_u64(v, &len))
                return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': bad external data length '%s'",
                                     nm, v ? v : "");
            has_len = true;
        }
    }
    uint64_t n, want;
    if (!opt_tensor_numel(t, &n) || !opt_dtype_raw_bytes(t->data_type, n, &want))
        return opt_error_set(err, OPT_ERR_INVALID, "tensor '%s': bad dims or dtype for external data", nm);
    int fd = opt_external_open(dir, loc, nm, err);
    if (fd < 0) return err ? err->status : OPT_ERR_IO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return opt_error_set(err, OPT_ERR_IO, "tensor '%s': external data '%s' is not a regular file",
                             nm, loc);
    }
    uint64_t fsize = (uint64_t)st.st_size;
    if (!has_len) len = want;
    if (len != want) {
        close(fd);
        return opt_error_set(err, OPT_ERR_INVALID,
                             "tensor '%s': external data length %llu does not match shape and "
                             "dtype (%llu bytes)",
                             nm, (unsigned long long)len, (unsigned long long)want);
    }
    if (off > fsize || len > fsize - off) {
        close(fd);
        return opt_error_set(err, OPT_ERR_INVALID,
                             "tensor '%s': external data offset %llu + length %llu is past the end "
                             "of '%s' (%llu bytes)",
                             nm, (unsigned long long)off, (unsigned long long)len, loc,
                             (unsigned long long)fsize);
    }
    uint8_t *p = malloc(len ? len : 1);
    if (!p) {
        close(fd);
        return opt_error_set(err, OPT_ERR_NOMEM, "tensor '%s': out of memory for external data", nm);
    }
    uint64_t got = 0;
    while (got < len) {
        ssize_t k = pread(fd, p + got, (size_t)(len - got), (off_t)(off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            free(p);
            close(fd);
            return opt_error_set(err, OPT_ERR_IO, "tensor '%s': reading external data '%s' failed",
                                 nm, loc);
        }
        got += (uint64_t)k;
    }
    close(fd);
    free(t->raw_data.data);
    t->raw_data.data = p;
    t->raw_data.len = (size_t)len;
    t->has_raw_data = true;
    return OPT_OK;
}

static opt_status load_maybe(opt_tensor *t, const char *dir, opt_error *err)
{
    return t && opt_tensor_is_external(t) ? load_one(t, dir, err) : OPT_OK;
}

static opt_status load_sparse(opt_sparse_tensor *s, const char *dir, opt_error *err)
{
    if (!s) return OPT_OK;
    OPT_TRY(load_maybe(s->values, dir, err));
    return load_maybe(s->indices, dir, err);
}

/* Every tensor that can carry external data: initializers, sparse initializers and the tensors of
 * node attributes, recursively through subgraphs (depth is bounded by the reader). */
static opt_status load_graph(opt_graph *g, const char *dir, opt_error *err)
{
    for (size_t i = 0; i < g->n_initializers; i++) OPT_TRY(load_maybe(g->initializers[i], dir, err));
    for (size_t i = 0; i < g->n_sparse_initializers; i++)
        OPT_TRY(load_sparse(g->sparse_initializers[i], dir, err));
    for (size_t i = 0; i < g->n_nodes; i++) {
        opt_node *n = g->nodes[i];
        for (size_t a = 0; a < n->n_attrs; a++) {
            opt_attr *at = &n->attrs[a];
            OPT_TRY(load_maybe(at->t, dir, err));
            for (size_t k = 0; k < at->n_tensors; k++) OPT_TRY(load_maybe(at->tensors[k], dir, err));
            OPT_TRY(load_sparse(at->sparse_tensor, dir, err));
            for (size_t k = 0; k < at->n_sparse_tensors; k++)
                OPT_TRY(load_sparse(at->sparse_tensors[k], dir, err));
            if (at->g) OPT_TRY(load_graph(at->g, dir, err));
            for (size_t k = 0; k < at->n_graphs; k++) OPT_TRY(load_graph(at->graphs[k], dir, err));
        }
    }
    return OPT_OK;
}

opt_status opt_external_load(opt_model *m, const char *dir, opt_error *err)
{
    return m->graph ? load_graph(m->graph, dir, err) : OPT_OK;
}

/* ---- saving ------------------------------------------------------------------------------- */

typedef struct fbuf {
    ProtobufCBuffer base;
    FILE *f;
    bool failed;
} fbuf;

static void fbuf_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    fbuf *fb = (fbuf *)b;
    if (fb->failed) return;
    if (len && fwrite(data, 1, len, fb->f) != len) fb->failed = true;
}

typedef struct save_ctx {
    const opt_save_opts *opts;
    uint64_t threshold;
    FILE *data;          /* side file, opened lazily */
    char *data_tmp;      /* its temporary path */
    const char *data_name;
    const char *dir;
    uint64_t offset;
    bool failed;
    /* Strings and kv messages handed to the encoder, freed after packing. */
    void **owned;
    size_t n_owned, cap_owned;
} save_ctx;

static bool own(save_ctx *c, void *p)
{
    if (!p) return false;
    if (c->n_owned == c->cap_owned) {
        size_t cap = c->cap_owned ? c->cap_owned * 2 : 64;
        void **q = realloc(c->owned, cap * sizeof *q);
        if (!q) {
            free(p);
            return false;
        }
        c->owned = q;
        c->cap_owned = cap;
    }
    c->owned[c->n_owned++] = p;
    return true;
}

static bool tensor_bytes(const opt_tensor *t, const void **p, size_t *len)
{
    if (t->data_type == OPT_DT_STRING) return false;
    *p = opt_tensor_data(t, len);
    return *p != NULL;
}

static bool save_hook(void *vctx, const opt_tensor *t, void ***kvs_out, size_t *n_out)
{
    save_ctx *c = vctx;
    if (c->failed) return false;
    const void *bytes;
    size_t len;
    bool want;
    if (c->opts->external == OPT_EXTERNAL_INLINE) want = false;
    else if (c->opts->external == OPT_EXTERNAL_KEEP) want = opt_tensor_is_external(t) && t->has_raw_data;
    else {
        uint64_t n, rb;
        want = !opt_tensor_is_external(t) || t->has_raw_data;
        want = want && opt_tensor_numel(t, &n) && opt_dtype_raw_bytes(t->data_type, n, &rb) &&
               rb >= c->threshold;
    }
    /* Like onnx.external_data_helper, only raw_data tensors move: inlining restores them exactly. */
    if (!want || !t->has_raw_data || !tensor_bytes(t, &bytes, &len)) return false;
    /* Typed storage whose layout differs from raw (e.g. int8 in int32_data) stays inline. */
    uint64_t n, rb;
    if (!opt_tensor_numel(t, &n) || !opt_dtype_raw_bytes(t->data_type, n, &rb) || rb != len)
        return false;
    if (!c->data) {
        size_t k = strlen(c->dir) + strlen(c->data_name) + 16;
        c->data_tmp = malloc(k);
        if (!c->data_tmp) {
            c->failed = true;
            return false;
        }
        snprintf(c->data_tmp, k, "%s/.%s.XXXXXX", c->dir, c->data_name);
        int fd = mkostemp(c->data_tmp, O_CLOEXEC);
        if (fd < 0 || !(c->data = fdopen(fd, "wb"))) {
            if (fd >= 0) close(fd);
            free(c->data_tmp);
            c->data_tmp = NULL;
            c->failed = true;
            return false;
        }
    }
    if (len && fwrite(bytes, 1, len, c->data) != len) {
        c->failed = true;
        return false;
    }
    char off[32], ln[32];
    snprintf(off, sizeof off, "%llu", (unsigned long long)c->offset);
    snprintf(ln, sizeof ln, "%zu", len);
    c->offset += len;
    char *s_loc = opt_strdup(c->data_name), *s_off = opt_strdup(off), *s_len = opt_strdup(ln);
    void **kvs = malloc(3 * sizeof *kvs);
    bool ok = own(c, s_loc) && own(c, s_off) && own(c, s_len) && own(c, kvs);
    if (ok) {
        kvs[0] = opt_onnx__make_kv("location", s_loc);
        kvs[1] = opt_onnx__make_kv("offset", s_off);
        kvs[2] = opt_onnx__make_kv("length", s_len);
        ok = own(c, kvs[0]) && own(c, kvs[1]) && own(c, kvs[2]);
    }
    if (!ok) {
        c->failed = true;
        return false;
    }
    *kvs_out = kvs;
    *n_out = 3;
    return true;
}

/* Permission bits for a file the save creates: those of the file it replaces, like `cmd > file`
 * keeps them; otherwise 0666 minus the umask, like any newly created file. (mkstemp creates 0600,
 * which would make every rewritten model private to its owner.) */
static mode_t new_file_mode(const char *path)
{
    struct stat st;
    if (path && stat(path, &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 07777;
    mode_t um = umask(0);
    umask(um);
    return 0666 & ~um;
}

static bool flush_sync(FILE *f)
{
    return fflush(f) == 0 && fsync(fileno(f)) == 0;
}

opt_status opt_onnx_save(const opt_model *m, const char *path, const opt_save_opts *opts,
                         opt_error *err)
{
    static const opt_save_opts defaults = {0};
    if (!opts) opts = &defaults;
    if (is_stdio(path)) {
        if (opts->external == OPT_EXTERNAL_MOVE)
            return opt_error_set(err, OPT_ERR_USAGE, "--external-data needs an output file (-o FILE)");
        if (isatty(STDOUT_FILENO))
            return opt_error_set(err, OPT_ERR_USAGE,
                                 "refusing to write a model to a terminal (use -o FILE or a pipe)");
        fbuf fb = {.base = {fbuf_append}, .f = stdout};
        OPT_TRY(opt_onnx__encode_stream(m, &fb.base, NULL, NULL, err));
        if (fb.failed || fflush(stdout) != 0)
            return opt_error_set(err, OPT_ERR_IO, "writing to standard output failed: %s",
                                 strerror(errno));
        return OPT_OK;
    }
    /* An existing target that is not a regular file (/dev/null, a FIFO, a terminal) is written
     * in place: renaming a temporary file over it would replace the device node itself (as root,
     * `-o /dev/null` deleted /dev/null). Directories fall through and fail at the rename. */
    if (opt_path_is_special(path)) {
        if (opts->external == OPT_EXTERNAL_MOVE)
            return opt_error_set(err, OPT_ERR_USAGE,
                                 "--external-data needs a regular output file ('%s' is not one)", path);
        FILE *df = fopen(path, "wb");
        if (!df) return opt_error_set(err, OPT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        fbuf fb = {.base = {fbuf_append}, .f = df};
        opt_status ds = opt_onnx__encode_stream(m, &fb.base, NULL, NULL, err);
        bool bad = fb.failed || fflush(df) != 0;
        int e = errno;
        if (fclose(df) != 0) bad = true;
        if (ds == OPT_OK && bad)
            ds = opt_error_set(err, OPT_ERR_IO, "writing '%s' failed: %s", path, strerror(e));
        return ds;
    }

    opt_status st = OPT_OK;
    char *dir = dir_of(path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char *data_name = NULL, *tmp = NULL, *data_final = NULL;
    FILE *f = NULL;
    save_ctx c = {.opts = opts, .threshold = opts->size_threshold ? opts->size_threshold : 1024,
                  .dir = dir};
    if (!dir || !*base) {
        st = opt_error_set(err, OPT_ERR_USAGE, "bad output path");
        goto done;
    }
    if (opts->data_name) data_name = opt_strdup(opts->data_name);
    else if ((data_name = malloc(strlen(base) + 6))) sprintf(data_name, "%s.data", base);
    if (!data_name) goto oom;
    c.data_name = data_name;
    size_t k = strlen(dir) + strlen(base) + 16;
    if (!(tmp = malloc(k))) goto oom;
    snprintf(tmp, k, "%s/.%s.XXXXXX", dir, base);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        st = opt_error_set(err, OPT_ERR_IO, "cannot create a temporary file in '%s': %s", dir,
                           strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    if (fchmod(fd, new_file_mode(path)) != 0 || !(f = fdopen(fd, "wb"))) {
        close(fd);
        goto ioerr;
    }
    fbuf fb = {.base = {fbuf_append}, .f = f};
    st = opt_onnx__encode_stream(m, &fb.base, save_hook, &c, err);
    if (st != OPT_OK) goto done;
    if (c.failed || fb.failed || !flush_sync(f) || (c.data && !flush_sync(c.data))) goto ioerr;
    if (fclose(f) != 0) {
        f = NULL;
        goto ioerr;
    }
    f = NULL;
    if (c.data) {
        FILE *d = c.data;
        c.data = NULL;
        if (fclose(d) != 0) goto ioerr;
        size_t kk = strlen(dir) + strlen(data_name) + 2;
        if (!(data_final = malloc(kk))) goto oom;
        snprintf(data_final, kk, "%s/%s", dir, data_name);
        if (chmod(c.data_tmp, new_file_mode(data_final)) != 0 || rename(c.data_tmp, data_final) != 0)
            goto ioerr;
        free(c.data_tmp);
        c.data_tmp = NULL;
    }
    if (rename(tmp, path) != 0) goto ioerr;
    free(tmp);
    tmp = NULL;
    {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    goto done;
oom:
    st = opt_error_set(err, OPT_ERR_NOMEM, "out of memory writing model");
    goto done;
ioerr:
    st = opt_error_set(err, OPT_ERR_IO, "writing '%s' failed: %s", path,
                       errno ? strerror(errno) : "I/O error");
done:
    if (f) fclose(f);
    if (c.data) fclose(c.data);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    if (c.data_tmp) {
        unlink(c.data_tmp);
        free(c.data_tmp);
    }
    for (size_t i = 0; i < c.n_owned; i++) free(c.owned[i]);
    free(c.owned);
    free(data_final);
    free(data_name);
    free(dir);
    return st;
}

bool opt_path_is_special(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}
