/*
 * tools/run.c — `mopt run`: run a model on tensors from files (or random ones) and write its
 * outputs in the ONNX test-data layout; or check the model against an ONNX test_data_set
 * directory, like ONNX Runtime's onnx_test_runner.
 *
 * Input files are .pb (TensorProto), .npy, .csv or IDX(.gz); a file whose shape differs from the
 * declared one but holds the same number of values is reshaped to it, and its dtype is converted
 * to the input's (numpy saves float64 by default).
 */
#include "tools/common.h"

#include "formats/tensorfile.h"
#include "libopt/exec/exec.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char help[] =
    "usage: mopt run [options] MODEL\n"
    "\n"
    "Runs MODEL on the CPU executor. Inputs come from tensor files (.pb TensorProto, .npy,\n"
    ".csv, IDX or IDX.gz); unnamed files bind to the graph inputs in order. Outputs go to DIR\n"
    "as output_0.pb, output_1.pb, ... in graph-output order (the ONNX test-data layout);\n"
    "without -o a summary of each output is printed on stdout.\n"
    "\n"
    "  -i, --input [NAME=]FILE  a tensor file for input NAME (or the next unbound input)\n"
    "      --random             random values for inputs without a file (floats uniform in\n"
    "                           [-1,1), integers in [0,10), bools 0/1; symbolic dims = 1,\n"
    "                           or --batch for the first one)\n"
    "      --seed S             seed for --random (default 0)\n"
    "      --batch N            value of a symbolic first dim for --random (default 1)\n"
    "  -o, --output DIR         write the outputs into DIR (created if missing)\n"
    "      --format FMT         pb (default), npy or csv\n"
    "      --test-data DIR      run an ONNX test_data_set directory (input_*.pb, output_*.pb;\n"
    "                           or a directory of test_data_set_* directories) and compare with\n"
    "                           the expected outputs; exit 1 on a mismatch. MODEL may be left\n"
    "                           out when DIR or its parent holds model.onnx\n"
    "      --rtol X, --atol X   tolerances for --test-data: |a-b| <= atol + rtol*|b|\n"
    "                           (defaults 1e-3 and 1e-7, as ONNX's backend tests)\n"
    "      --threads N          CPU threads (default: all cores)\n"
    "      --report FILE        with --test-data: the comparison table as .json, .csv or .md\n"
    "  -q, --quiet              no summary on stderr\n"
    "  -h, --help               this help\n";

#define MAX_BIND 64

typedef struct run_opts {
    tool_opts t;
    const char *binds[MAX_BIND];
    size_t n_binds;
    bool random;
    unsigned long long seed;
    long long batch;
    opt_tfmt format;
    const char *test_data;
    double rtol, atol;
    int threads;
} run_opts;

/* splitmix64: a small, good generator with a 64-bit seed. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void dims_str(const int64_t *d, int n, char *buf, size_t len)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < n && k < len; i++) {
        if (d[i] < 0) k += (size_t)snprintf(buf + k, len - k, "%s?", i ? "," : "");
        else k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? "," : "", (long long)d[i]);
    }
    if (k < len) snprintf(buf + k, len - k, "]");
}

/* Fills a with random values for input i (dims from the declaration). */
static opt_status make_random(opt_exec *e, size_t i, const run_opts *o, uint64_t *rng, opt_array *a,
                              opt_error *err)
{
    int ndim;
    int64_t dims[OPT_MAX_DIMS];
    int dtype = opt_exec_input_shape(e, i, &ndim, dims);
    if (ndim < 0)
        return opt_error_set(err, OPT_ERR_USAGE, "input '%s' has no declared shape; give it a file with -i",
                             opt_exec_input_name(e, i));
    memset(a, 0, sizeof *a);
    a->ndim = ndim;
    for (int d = 0; d < ndim; d++) a->dims[d] = dims[d] >= 0 ? dims[d] : d == 0 ? o->batch : 1;
    opt_array f = {.dtype = OPT_DT_FLOAT, .ndim = ndim};
    memcpy(f.dims, a->dims, sizeof f.dims);
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (uint64_t)a->dims[d];
    if (n > (1ull << 31)) return opt_error_set(err, OPT_ERR_LIMIT, "input '%s' is too large for --random", opt_exec_input_name(e, i));
    f.nbytes = n * sizeof(float);
    f.data = malloc(f.nbytes ? f.nbytes : 1);
    if (!f.data) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    bool is_float = dtype == OPT_DT_FLOAT || dtype == OPT_DT_DOUBLE || dtype == OPT_DT_FLOAT16 ||
                    dtype == OPT_DT_BFLOAT16;
    float *p = f.data;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t r = next_rand(rng);
        if (is_float) p[k] = (float)((double)(r >> 11) * 0x1.0p-53 * 2.0 - 1.0);
        else if (dtype == OPT_DT_BOOL) p[k] = (float)(r & 1);
        else p[k] = (float)(r % 10);
    }
    opt_status s = opt_tensorfile_convert(&f, dtype ? dtype : OPT_DT_FLOAT, a, err);
    free(f.data);
    return s;
}

/* Makes `a` fit input i: converts the dtype and reshapes when the value counts agree. */
static opt_status fit_input(opt_exec *e, size_t i, opt_array *a, const char *file, opt_error *err)
{
    int ndim;
    int64_t dims[OPT_MAX_DIMS];
    int dtype = opt_exec_input_shape(e, i, &ndim, dims);
    const char *name = opt_exec_input_name(e, i);
    if (dtype && dtype != a->dtype) {
        opt_array c;
        opt_status s = opt_tensorfile_convert(a, dtype, &c, err);
        if (s != OPT_OK)
            return opt_error_set(err, s, "input '%s' is %s; cannot convert the file's %s", name,
                                 opt_dtype_short(dtype), opt_dtype_short(a->dtype));
        free(a->data);
        *a = c;
    }
    if (ndim < 0) return OPT_OK;
    bool same = ndim == a->ndim;
    for (int d = 0; same && d < ndim; d++)
        if (dims[d] >= 0 && dims[d] != a->dims[d]) same = false;
    if (same) return OPT_OK;
    uint64_t have = 1, known = 1;
    int n_unknown = 0;
    for (int d = 0; d < a->ndim; d++) have *= (uint64_t)a->dims[d];
    for (int d = 0; d < ndim; d++) {
        if (dims[d] < 0) n_unknown++;
        else known *= (uint64_t)dims[d];
    }
    char fs[160], ds[160];
    dims_str(a->dims, a->ndim, fs, sizeof fs);
    dims_str(dims, ndim, ds, sizeof ds);
    if ((n_unknown == 0 && known == have) || (n_unknown == 1 && known && have % known == 0)) {
        a->ndim = ndim;
        for (int d = 0; d < ndim; d++) a->dims[d] = dims[d] >= 0 ? dims[d] : (int64_t)(have / known);
        return OPT_OK;
    }
    return opt_error_set(err, OPT_ERR_DATA, "%s: shape %s (%llu values) does not fit input '%s' %s", file, fs,
                         (unsigned long long)have, name, ds);
}

static long find_input(opt_exec *e, const char *name)
{
    for (size_t i = 0; i < opt_exec_n_inputs(e); i++)
        if (strcmp(opt_exec_input_name(e, i), name) == 0) return (long)i;
    return -1;
}

static long find_output(opt_exec *e, const char *name)
{
    for (size_t i = 0; i < opt_exec_n_outputs(e); i++)
        if (strcmp(opt_exec_output_name(e, i), name) == 0) return (long)i;
    return -1;
}

/* Summary of one output on stdout: name, dtype, shape and a few values. */
static void print_output(const char *name, const opt_array *a)
{
    char ds[160];
    dims_str(a->dims, a->ndim, ds, sizeof ds);
    printf("%s %s %s", name, opt_dtype_short(a->dtype), ds);
    opt_array f;
    opt_error e;
    if (opt_tensorfile_convert(a, OPT_DT_DOUBLE, &f, &e) == OPT_OK) {
        uint64_t n = a->nbytes ? f.nbytes / sizeof(double) : 0;
        const double *v = f.data;
        double mn = INFINITY, mx = -INFINITY, sum = 0;
        for (uint64_t k = 0; k < n; k++) {
            if (v[k] < mn) mn = v[k];
            if (v[k] > mx) mx = v[k];
            sum += v[k];
        }
        if (n) printf(" min %.6g max %.6g mean %.6g:", mn, mx, sum / (double)n);
        for (uint64_t k = 0; k < n && k < 8; k++) printf(" %.6g", v[k]);
        if (n > 8) printf(" ...");
        free(f.data);
    }
    printf("\n");
}

/* mkdir -p: creates dir and its missing parents. */
static int mkdir_p(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *q = p + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) return -1;
            *q = '/';
        }
    return mkdir(p, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

static int write_outputs(const run_opts *o, opt_exec *e, opt_array *outs, size_t n_out)
{
    opt_error err = {0};
    if (mkdir_p(o->t.out) != 0) {
        opt_error_set(&err, OPT_ERR_IO, "cannot create directory: %s", strerror(errno));
        return tool_fail(&o->t, o->t.out, &err);
    }
    opt_tfmt f = o->format ? o->format : OPT_TFMT_PB;
    for (size_t i = 0; i < n_out; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/output_%zu.%s", o->t.out, i, opt_tfmt_name(f));
        if (opt_tensorfile_write(path, f, &outs[i], opt_exec_output_name(e, i), &err) != OPT_OK)
            return tool_fail(&o->t, path, &err);
    }
    return 0;
}

/* Loads the model and plans it; prints and returns the exit code on failure. */
static int load_exec(const run_opts *o, const char *path, opt_model **m, opt_exec **e)
{
    tool_opts t = o->t;
    t.in = path;
    int rc = tool_load(&t, NULL, m);
    if (rc) return rc;
    /* One run (or one per test-data set): weights packed at load would be packed for one use,
     * into fresh memory, so each run packs them instead (no_prepack). */
    opt_exec_opts eo = {.threads = o->threads, .no_prepack = true};
    opt_error err = {0};
    if (opt_exec_new(*m, &eo, e, &err) != OPT_OK) {
        opt_model_free(*m);
        *m = NULL;
        return tool_fail(&o->t, path, &err);
    }
    return 0;
}

static void free_arrays(opt_array *a, size_t n)
{
    if (!a) return;
    for (size_t i = 0; i < n; i++) free(a[i].data);
    free(a);
}

/* Plain run: bind files, fill the rest randomly, run, write or print. */
static int run_plain(run_opts *o)
{
    opt_model *m;
    opt_exec *e;
    int rc = load_exec(o, o->t.in, &m, &e);
    if (rc) return rc;
    size_t n_in = opt_exec_n_inputs(e), n_out = opt_exec_n_outputs(e);
    opt_array *ins = calloc(n_in ? n_in : 1, sizeof *ins), *outs = calloc(n_out ? n_out : 1, sizeof *outs);
    bool *bound = calloc(n_in ? n_in : 1, sizeof *bound);
    opt_error err = {0};
    size_t next = 0;
    if (!ins || !outs || !bound) {
        rc = tool_fail(&o->t, NULL, &(opt_error){OPT_ERR_NOMEM, "out of memory"});
        goto done;
    }
    for (size_t b = 0; b < o->n_binds; b++) {
        const char *arg = o->binds[b], *eq = strchr(arg, '='), *file = arg;
        long idx = -1;
        if (eq) {
            char name[512];
            snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
            idx = find_input(e, name);
            struct stat st;
            if (idx >= 0) file = eq + 1;
            else if (stat(arg, &st) != 0) {
                rc = tool_usage(&o->t, "-i %s: the model has no input named '%s'", arg, name);
                goto done;
            }
        }
        if (idx < 0) {
            while (next < n_in && bound[next]) next++;
            if (next >= n_in) {
                rc = tool_usage(&o->t, "-i %s: the model has only %zu inputs", arg, n_in);
                goto done;
            }
            idx = (long)next;
        }
        if (bound[idx]) {
            rc = tool_usage(&o->t, "input '%s' is given twice", opt_exec_input_name(e, (size_t)idx));
            goto done;
        }
        if (opt_tensorfile_read(file, OPT_TFMT_AUTO, &ins[idx], NULL, &err) != OPT_OK) {
            rc = tool_fail(&o->t, file, &err);
            goto done;
        }
        bound[idx] = true;
        if (fit_input(e, (size_t)idx, &ins[idx], file, &err) != OPT_OK) {
            rc = tool_fail(&o->t, NULL, &err);
            goto done;
        }
    }
    uint64_t rng = o->seed;
    bool used_random = false;
    for (size_t i = 0; i < n_in; i++) {
        if (bound[i]) continue;
        if (!o->random) {
            rc = tool_usage(&o->t, "input '%s' has no value (give -i %s=FILE or --random)",
                            opt_exec_input_name(e, i), opt_exec_input_name(e, i));
            goto done;
        }
        if (make_random(e, i, o, &rng, &ins[i], &err) != OPT_OK) {
            rc = tool_fail(&o->t, o->t.in, &err);
            goto done;
        }
        used_random = true;
    }
    if (used_random) tool_note(&o->t, "random inputs, seed %llu", o->seed);
    if (opt_exec_run(e, ins, n_in, outs, n_out, &err) != OPT_OK) {
        rc = tool_fail(&o->t, o->t.in, &err);
        goto done;
    }
    if (o->t.out) {
        rc = write_outputs(o, e, outs, n_out);
        if (!rc) tool_note(&o->t, "wrote %zu output%s to %s", n_out, n_out == 1 ? "" : "s", o->t.out);
    } else {
        for (size_t i = 0; i < n_out; i++) print_output(opt_exec_output_name(e, i), &outs[i]);
    }
done:
    free_arrays(ins, n_in);
    free_arrays(outs, n_out);
    free(bound);
    opt_exec_free(e);
    opt_model_free(m);
    return rc;
}

/* ---- --test-data ------------------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted list of entries of dir whose names start with prefix (numeric order for input_N.pb). */
static char **list_dir(const char *dir, const char *prefix, const char *suffix, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    size_t cap = 0;
    struct dirent *de;
    size_t pl = strlen(prefix), sl = strlen(suffix);
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < pl + sl || strncmp(de->d_name, prefix, pl) != 0 || strcmp(de->d_name + l - sl, suffix) != 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **q = realloc(v, cap * sizeof *q);
            if (!q) break;
            v = q;
        }
        v[(*n)++] = strdup(de->d_name);
    }
    closedir(d);
    if (*n) qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Index N from "input_N.pb"; -1 if the name is not of that form. */
static long file_index(const char *name, const char *prefix)
{
    const char *p = name + strlen(prefix);
    char *end;
    long v = strtol(p, &end, 10);
    return end != p && strcmp(end, ".pb") == 0 && v >= 0 ? v : -1;
}

/* Compares one output with its expected tensor; prints one line; returns whether it passed. */
static bool compare_output(const run_opts *o, const char *set, const char *name, const opt_array *got,
                           const opt_array *want, tool_table *tb)
{
    char gs[160], ws[160];
    dims_str(got->dims, got->ndim, gs, sizeof gs);
    dims_str(want->dims, want->ndim, ws, sizeof ws);
    if (got->dtype != want->dtype) {
        tool_table_row(tb, "%s\t%s\t%s\t-\t-\tFAIL: dtype %s, expected %s", set, name, gs,
                       opt_dtype_short(got->dtype), opt_dtype_short(want->dtype));
        return false;
    }
    if (strcmp(gs, ws) != 0) {
        tool_table_row(tb, "%s\t%s\t%s\t-\t-\tFAIL: shape, expected %s", set, name, gs, ws);
        return false;
    }
    opt_array a, b;
    opt_error e;
    if (opt_tensorfile_convert(got, OPT_DT_DOUBLE, &a, &e) != OPT_OK) {
        bool same = got->nbytes == want->nbytes && memcmp(got->data, want->data, got->nbytes) == 0;
        tool_table_row(tb, "%s\t%s\t%s\t-\t-\t%s", set, name, gs, same ? "ok (bytes)" : "FAIL: bytes differ");
        return same;
    }
    if (opt_tensorfile_convert(want, OPT_DT_DOUBLE, &b, &e) != OPT_OK) {
        free(a.data);
        tool_table_row(tb, "%s\t%s\t%s\t-\t-\tFAIL: %s", set, name, gs, e.msg);
        return false;
    }
    uint64_t n = a.nbytes / sizeof(double), bad = 0, first_bad = 0;
    const double *x = a.data, *y = b.data;
    double max_abs = 0, max_rel = 0;
    for (uint64_t k = 0; k < n; k++) {
        if (isnan(x[k]) && isnan(y[k])) continue;
        double d = fabs(x[k] - y[k]);
        if (x[k] == y[k]) d = 0; /* equal infinities */
        if (isnan(d)) d = INFINITY;
        if (d > max_abs) max_abs = d;
        if (y[k] != 0 && d / fabs(y[k]) > max_rel) max_rel = d / fabs(y[k]);
        if (!(d <= o->atol + o->rtol * fabs(y[k]))) {
            if (!bad) first_bad = k;
            bad++;
        }
    }
    if (bad)
        tool_table_row(tb, "%s\t%s\t%s\t%.3g\t%.3g\tFAIL: %llu of %llu values (first at %llu: %.9g vs %.9g)", set,
                       name, gs, max_abs, max_rel, (unsigned long long)bad, (unsigned long long)n,
                       (unsigned long long)first_bad, x[first_bad], y[first_bad]);
    else
        tool_table_row(tb, "%s\t%s\t%s\t%.3g\t%.3g\tok", set, name, gs, max_abs, max_rel);
    free(a.data);
    free(b.data);
    return bad == 0;
}

/* Runs one test_data_set directory; returns 0 (pass), 1 (mismatch or error, printed). */
static int run_set(const run_opts *o, opt_exec *e, const char *dir, tool_table *tb)
{
    size_t n_in = opt_exec_n_inputs(e), n_out = opt_exec_n_outputs(e), nf_in, nf_out;
    char **fin = list_dir(dir, "input_", ".pb", &nf_in), **fout = list_dir(dir, "output_", ".pb", &nf_out);
    opt_array *ins = calloc(n_in ? n_in : 1, sizeof *ins), *outs = calloc(n_out ? n_out : 1, sizeof *outs);
    opt_array *want = calloc(n_out ? n_out : 1, sizeof *want);
    bool *have_want = calloc(n_out ? n_out : 1, sizeof *have_want), *bound = calloc(n_in ? n_in : 1, sizeof *bound);
    opt_error err = {0};
    int rc = 0;
    const char *set = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    if (!ins || !outs || !want || !have_want || !bound) {
        rc = tool_fail(&o->t, dir, &(opt_error){OPT_ERR_NOMEM, "out of memory"});
        goto done;
    }
    if (nf_out == 0) {
        opt_error_set(&err, OPT_ERR_DATA, "no output_*.pb files (not an ONNX test_data_set directory?)");
        rc = tool_fail(&o->t, dir, &err);
        goto done;
    }
    for (size_t k = 0; k < nf_in; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, fin[k]);
        long pos = file_index(fin[k], "input_");
        opt_array a;
        char *name = NULL;
        if (opt_tensorfile_read(path, OPT_TFMT_PB, &a, &name, &err) != OPT_OK) {
            rc = tool_fail(&o->t, path, &err);
            goto done;
        }
        long idx = name && *name ? find_input(e, name) : -1;
        if (idx < 0) idx = pos;
        free(name);
        if (idx < 0 || (size_t)idx >= n_in || bound[idx]) {
            free(a.data);
            opt_error_set(&err, OPT_ERR_DATA, "matches no unbound model input (the model has %zu)", n_in);
            rc = tool_fail(&o->t, path, &err);
            goto done;
        }
        ins[idx] = a;
        bound[idx] = true;
    }
    for (size_t i = 0; i < n_in; i++)
        if (!bound[i]) {
            opt_error_set(&err, OPT_ERR_DATA, "no input file for model input '%s'", opt_exec_input_name(e, i));
            rc = tool_fail(&o->t, dir, &err);
            goto done;
        }
    for (size_t k = 0; k < nf_out; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, fout[k]);
        long pos = file_index(fout[k], "output_");
        opt_array a;
        char *name = NULL;
        if (opt_tensorfile_read(path, OPT_TFMT_PB, &a, &name, &err) != OPT_OK) {
            rc = tool_fail(&o->t, path, &err);
            goto done;
        }
        long idx = name && *name ? find_output(e, name) : -1;
        if (idx < 0) idx = pos;
        free(name);
        if (idx < 0 || (size_t)idx >= n_out || have_want[idx]) {
            free(a.data);
            opt_error_set(&err, OPT_ERR_DATA, "matches no model output (the model has %zu)", n_out);
            rc = tool_fail(&o->t, path, &err);
            goto done;
        }
        want[idx] = a;
        have_want[idx] = true;
    }
    if (opt_exec_run(e, ins, n_in, outs, n_out, &err) != OPT_OK) {
        tool_table_row(tb, "%s\t-\t-\t-\t-\tFAIL: %s", set, err.msg);
        rc = 1;
        goto done;
    }
    for (size_t i = 0; i < n_out; i++)
        if (have_want[i] && !compare_output(o, set, opt_exec_output_name(e, i), &outs[i], &want[i], tb)) rc = 1;
    if (o->t.out && !rc) {
        rc = write_outputs(o, e, outs, n_out);
    }
done:
    free_arrays(ins, n_in);
    free_arrays(outs, n_out);
    free_arrays(want, n_out);
    free(have_want);
    free(bound);
    free_list(fin, nf_in);
    free_list(fout, nf_out);
    return rc;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int run_test_data(run_opts *o)
{
    const char *dir = o->test_data;
    if (!is_dir(dir)) {
        opt_error err;
        opt_error_set(&err, OPT_ERR_IO, "not a directory");
        return tool_fail(&o->t, dir, &err);
    }
    size_t n_sets;
    char **sets = list_dir(dir, "test_data_set_", "", &n_sets);
    char model_path[4096];
    if (!o->t.in) {
        snprintf(model_path, sizeof model_path, "%s/model.onnx", dir);
        if (access(model_path, R_OK) != 0) snprintf(model_path, sizeof model_path, "%s/../model.onnx", dir);
        if (access(model_path, R_OK) != 0) {
            free_list(sets, n_sets);
            return tool_usage(&o->t, "no MODEL given and no model.onnx in %s or its parent", dir);
        }
        o->t.in = model_path;
    }
    opt_model *m;
    opt_exec *e;
    int rc = load_exec(o, o->t.in, &m, &e);
    if (rc) {
        free_list(sets, n_sets);
        return rc;
    }
    static const char *cols[] = {"set", "output", "shape", "max_abs", "max_rel", "result"};
    tool_table tb;
    tool_table_init(&tb, "mopt run --test-data", 6, cols);
    size_t failed = 0, total = 0;
    if (n_sets == 0) {
        total = 1;
        rc = run_set(o, e, dir, &tb);
        failed += rc != 0;
    } else {
        for (size_t i = 0; i < n_sets; i++) {
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", dir, sets[i]);
            if (!is_dir(sub)) continue;
            total++;
            int r = run_set(o, e, sub, &tb);
            if (r) failed++;
            if (r > rc) rc = r;
        }
    }
    if (!o->t.quiet) tool_table_print(&tb, stderr);
    if (o->t.report && tool_report_write(&o->t, &tb, 1)) rc = rc ? rc : 1;
    tool_table_free(&tb);
    tool_note(&o->t, "%s: %zu of %zu test data sets passed (rtol %g, atol %g)", o->t.in,
              total - failed, total, o->rtol, o->atol);
    free_list(sets, n_sets);
    opt_exec_free(e);
    opt_model_free(m);
    return failed ? EXIT_FAIL : rc;
}

static bool parse_double(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *s && !*end && errno == 0 && *v >= 0 && isfinite(*v);
}

int cmd_run(int argc, char **argv)
{
    run_opts o = {.t = {.cmd = "run", .argc = argc, .argv = argv}, .batch = 1, .rtol = 1e-3, .atol = 1e-7};
    static const struct option longopts[] = {
        {"input", required_argument, NULL, 'i'},
        {"random", no_argument, NULL, 'R'},
        {"seed", required_argument, NULL, 'S'},
        {"batch", required_argument, NULL, 'B'},
        {"format", required_argument, NULL, 'F'},
        {"test-data", required_argument, NULL, 'T'},
        {"rtol", required_argument, NULL, 'r'},
        {"atol", required_argument, NULL, 'a'},
        {"threads", required_argument, NULL, 'j'},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:" TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&o.t, c, optarg, help)) continue;
        char *end;
        switch (c) {
        case 'i':
            if (o.n_binds == MAX_BIND) return tool_usage(&o.t, "at most %d -i options", MAX_BIND);
            o.binds[o.n_binds++] = optarg;
            break;
        case 'R': o.random = true; break;
        case 'S':
            errno = 0;
            o.seed = strtoull(optarg, &end, 0);
            if (!*optarg || *end || errno) return tool_usage(&o.t, "--seed: '%s' is not a number", optarg);
            break;
        case 'B':
            o.batch = strtoll(optarg, &end, 10);
            if (!*optarg || *end || o.batch < 1) return tool_usage(&o.t, "--batch: '%s' is not a positive number", optarg);
            break;
        case 'F':
            if (!opt_tfmt_parse(optarg, &o.format) || o.format == OPT_TFMT_IDX)
                return tool_usage(&o.t, "--format: '%s' is not pb, npy or csv", optarg);
            break;
        case 'T': o.test_data = optarg; break;
        case 'r':
            if (!parse_double(optarg, &o.rtol)) return tool_usage(&o.t, "--rtol: '%s' is not a tolerance", optarg);
            break;
        case 'a':
            if (!parse_double(optarg, &o.atol)) return tool_usage(&o.t, "--atol: '%s' is not a tolerance", optarg);
            break;
        case 'j': {
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 0 || v > 4096) return tool_usage(&o.t, "--threads: '%s' is not a thread count", optarg);
            o.threads = (int)v;
            break;
        }
        default: return tool_usage(&o.t, "bad option");
        }
    }
    int rc = tool_positional(&o.t, argc, argv, 1);
    if (rc) return rc;
    if (o.test_data) {
        if (o.n_binds || o.random) return tool_usage(&o.t, "--test-data takes its inputs from the directory (no -i or --random)");
        return run_test_data(&o);
    }
    if (!o.t.in) return tool_usage(&o.t, "no MODEL given");
    return run_plain(&o);
}
