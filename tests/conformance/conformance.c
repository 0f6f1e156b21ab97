/*
 * tests/conformance/conformance.c — runs ONNX backend node tests through mopt's executor.
 *
 * usage: conformance [--known FILE] [--filter SUBSTR] [-v] [LABEL=]DIR...
 *
 * Each DIR holds test directories (DIR/test_x/model.onnx + test_data_set_N/{input,output}_K.pb).
 * A test whose model the executor refuses to load as unsupported (an op, opset or dtype with no
 * kernel) is SKIPPED; otherwise every data set is run and each output is compared with the
 * expected one: same dtype and shape, |got - want| <= atol + rtol * |want| with rtol 1e-3 and
 * atol 1e-7 (ONNX's defaults), NaN equal to NaN, integers and bools exactly.
 *
 * Failures listed in the known-failures file (lines "test_name  reason", or "LABEL:test_name
 * reason" for the data set given as LABEL=DIR; '#' comments) count as
 * XFAIL; a listed test that passes is XPASS and fails the run, so the list stays honest. Prints
 * one line per failing test, then passed/failed/skipped per op and in total. Exit status 0 when
 * every failure is known, 1 otherwise.
 */
#include "formats/onnx.h"
#include "libopt/exec/kernel.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RTOL 1e-3
#define ATOL 1e-7

typedef struct known {
    char *name;
    char *reason;
    bool seen;
} known;

typedef struct opstat {
    char op[64];
    int pass, fail, skip, xfail;
} opstat;

static known *g_known;
static size_t g_nknown;
static opstat *g_ops;
static size_t g_nops;
static int g_verbose;

static opstat *op_stat(const char *op)
{
    for (size_t i = 0; i < g_nops; i++)
        if (strcmp(g_ops[i].op, op) == 0) return &g_ops[i];
    g_ops = realloc(g_ops, (g_nops + 1) * sizeof *g_ops);
    memset(&g_ops[g_nops], 0, sizeof *g_ops);
    snprintf(g_ops[g_nops].op, sizeof g_ops[g_nops].op, "%s", op);
    return &g_ops[g_nops++];
}

static void load_known(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || !*p) continue;
        char *end = p;
        while (*end && *end != ' ' && *end != '\t' && *end != '\n') end++;
        char *reason = end;
        while (*reason == ' ' || *reason == '\t') reason++;
        reason[strcspn(reason, "\n")] = 0;
        *end = 0;
        g_known = realloc(g_known, (g_nknown + 1) * sizeof *g_known);
        g_known[g_nknown++] = (known){strdup(p), strdup(reason), false};
    }
    fclose(f);
}

/* An entry "test_x" applies to every data set; "SET:test_x" only to the set labelled SET. */
static known *find_known(const char *set, const char *name)
{
    size_t ls = strlen(set);
    for (size_t i = 0; i < g_nknown; i++) {
        const char *k = g_known[i].name;
        if (strcmp(k, name) == 0) return &g_known[i];
        if (ls && strncmp(k, set, ls) == 0 && k[ls] == ':' && strcmp(k + ls + 1, name) == 0) return &g_known[i];
    }
    return NULL;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* Reads a serialized TensorProto by wrapping it as ModelProto.graph.initializer[0], so the
 * model reader (which owns all protobuf knowledge) parses it. */
static opt_status read_pb(const char *path, opt_array *a, opt_error *err)
{
    uint8_t *buf;
    size_t len;
    OPT_TRY(opt_read_file(path, &buf, &len, err));
    uint8_t hdr1[16], hdr2[12];
    size_t h2 = 0;
    hdr2[h2++] = 0x2A; /* GraphProto.initializer = 5, length-delimited */
    h2 += put_varint(hdr2 + h2, len);
    size_t h1 = 0;
    hdr1[h1++] = 0x08; /* ModelProto.ir_version = 8 */
    hdr1[h1++] = 8;
    hdr1[h1++] = 0x42; /* opset_import { version: 1 } */
    hdr1[h1++] = 0x02;
    hdr1[h1++] = 0x10;
    hdr1[h1++] = 0x01;
    hdr1[h1++] = 0x3A; /* ModelProto.graph = 7 */
    h1 += put_varint(hdr1 + h1, h2 + len);
    uint8_t *w = malloc(h1 + h2 + len);
    memcpy(w, hdr1, h1);
    /* header = ir_version then graph */
    memcpy(w + h1, hdr2, h2);
    memcpy(w + h1 + h2, buf, len);
    free(buf);
    opt_load_opts lo = {.no_validate = true};
    opt_model *m = NULL;
    opt_status s = opt_onnx_parse(w, h1 + h2 + len, NULL, path, &lo, &m, err);
    free(w);
    if (s != OPT_OK) return s;
    if (!m->graph || m->graph->n_initializers != 1) {
        opt_model_free(m);
        return opt_error_set(err, OPT_ERR_PARSE, "%s: not a TensorProto", path);
    }
    s = opt_array_from_tensor(m->graph->initializers[0], a, err);
    opt_model_free(m);
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir that start with prefix (caller frees). */
static char **list_dir(const char *dir, const char *prefix, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0) continue;
        v = realloc(v, (*n + 1) * sizeof *v);
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

/* Compares got with want; on mismatch writes why into buf. */
static bool compare(const opt_array *got, const opt_array *want, char *why, size_t len)
{
    if (got->dtype != want->dtype) {
        snprintf(why, len, "dtype %s, expected %s", opt_dtype_short(got->dtype), opt_dtype_short(want->dtype));
        return false;
    }
    if (got->ndim != want->ndim || memcmp(got->dims, want->dims, sizeof(int64_t) * (size_t)got->ndim)) {
        int k = snprintf(why, len, "shape [");
        for (int i = 0; i < got->ndim && (size_t)k < len; i++) k += snprintf(why + k, len - (size_t)k, "%s%lld", i ? "," : "", (long long)got->dims[i]);
        if ((size_t)k < len) k += snprintf(why + k, len - (size_t)k, "], expected [");
        for (int i = 0; i < want->ndim && (size_t)k < len; i++) k += snprintf(why + k, len - (size_t)k, "%s%lld", i ? "," : "", (long long)want->dims[i]);
        if ((size_t)k < len) snprintf(why + k, len - (size_t)k, "]");
        return false;
    }
    uint64_t n = opt_array_numel(want);
    /* rtol, but never tighter than one unit in the last place of a 16-bit float output: a
     * reference that rounds its intermediates differently lands one ulp away. */
    double rtol = want->dtype == OPT_DT_BFLOAT16 ? 1.0 / 128 : want->dtype == OPT_DT_FLOAT16 ? 1.0 / 1024 : RTOL;
    if (rtol < RTOL) rtol = RTOL;
    bool exact = !(want->dtype == OPT_DT_FLOAT || want->dtype == OPT_DT_DOUBLE || want->dtype == OPT_DT_FLOAT16 ||
                   want->dtype == OPT_DT_BFLOAT16);
    for (uint64_t i = 0; i < n; i++) {
        if (isnan(opt_array_get(want, i)) && isnan(opt_array_get(got, i))) continue;
        if (exact) {
            if (want->dtype == OPT_DT_INT64 || want->dtype == OPT_DT_UINT64) {
                if (((const int64_t *)got->data)[i] == ((const int64_t *)want->data)[i]) continue;
            } else if (opt_array_get(got, i) == opt_array_get(want, i)) {
                continue;
            }
            snprintf(why, len, "element %llu: got %.17g, expected %.17g", (unsigned long long)i,
                     opt_array_get(got, i), opt_array_get(want, i));
            return false;
        }
        double g = opt_array_get(got, i), w = opt_array_get(want, i);
        if (isnan(w) && isnan(g)) continue;
        if (g == w) continue; /* also equal infinities */
        if (fabs(g - w) <= ATOL + rtol * fabs(w)) continue;
        snprintf(why, len, "element %llu: got %.9g, expected %.9g", (unsigned long long)i, g, w);
        return false;
    }
    return true;
}

/* The op a test is counted under: the model's one op type (Constant nodes aside), else
 * "(composite)". */
static void test_op(const opt_model *m, char *buf, size_t len)
{
    const char *op = NULL;
    bool multi = false;
    for (size_t i = 0; i < m->graph->n_nodes; i++) {
        const char *t = m->graph->nodes[i]->op_type;
        if (strcmp(t, "Constant") == 0 && m->graph->n_nodes > 1) continue;
        if (!op) op = t;
        else if (strcmp(op, t) != 0) multi = true;
    }
    snprintf(buf, len, "%s", !op ? "(empty)" : multi ? "(composite)" : op);
}

enum { R_PASS, R_FAIL, R_SKIP };

/* snprintf into a path buffer; paths that do not fit are cut (and then fail to open). */
static void pathf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}
#define PATHF(buf, ...) pathf(buf, sizeof buf, __VA_ARGS__)

static int run_test(const char *dir, const char *name, char *why, size_t wlen, char *opname, size_t olen)
{
    char path[4096];
    PATHF(path, "%s/%s/model.onnx", dir, name);
    snprintf(opname, olen, "?");
    opt_error err = {0};
    opt_model *m = NULL;
    if (opt_onnx_load(path, NULL, &m, &err) != OPT_OK) {
        snprintf(why, wlen, "load: %s", err.msg);
        return err.status == OPT_ERR_UNSUPPORTED ? R_SKIP : R_FAIL;
    }
    test_op(m, opname, olen);
    opt_exec *e = NULL;
    opt_exec_opts eo = {.threads = 2};
    if (opt_exec_new(m, &eo, &e, &err) != OPT_OK) {
        snprintf(why, wlen, "%s", err.msg);
        opt_model_free(m);
        return err.status == OPT_ERR_UNSUPPORTED ? R_SKIP : R_FAIL;
    }
    char sub[4096];
    PATHF(sub, "%s/%s", dir, name);
    size_t nsets;
    char **sets = list_dir(sub, "test_data_set_", &nsets);
    int result = nsets ? R_PASS : R_FAIL;
    if (!nsets) snprintf(why, wlen, "no test_data_set directories");
    size_t nin = opt_exec_n_inputs(e), nout = opt_exec_n_outputs(e);
    for (size_t s = 0; s < nsets && result == R_PASS; s++) {
        char sd[4096];
        PATHF(sd, "%s/%s", sub, sets[s]);
        size_t nif, nof;
        char **inf = list_dir(sd, "input_", &nif), **outf = list_dir(sd, "output_", &nof);
        opt_array *in = calloc(nif + 1, sizeof *in), *want = calloc(nof + 1, sizeof *want),
                  *got = calloc(nout + 1, sizeof *got);
        /* input_10.pb sorts before input_2.pb: read by index instead. */
        bool ok = true;
        for (size_t i = 0; i < nif && ok; i++) {
            PATHF(path, "%s/input_%zu.pb", sd, i);
            if (read_pb(path, &in[i], &err) != OPT_OK) {
                snprintf(why, wlen, "%s: %s", sets[s], err.msg);
                ok = false;
            }
        }
        for (size_t i = 0; i < nof && ok; i++) {
            PATHF(path, "%s/output_%zu.pb", sd, i);
            if (read_pb(path, &want[i], &err) != OPT_OK) {
                snprintf(why, wlen, "%s: %s", sets[s], err.msg);
                ok = false;
            }
        }
        if (ok && (nif != nin || nof != nout)) {
            snprintf(why, wlen, "%s: %zu inputs/%zu outputs in data, model has %zu/%zu", sets[s], nif,
                     nof, nin, nout);
            ok = false;
        }
        if (ok && opt_exec_run(e, in, nin, got, nout, &err) != OPT_OK) {
            snprintf(why, wlen, "%s: run: %s", sets[s], err.msg);
            ok = false;
        }
        for (size_t i = 0; i < nout && ok; i++) {
            char w[400];
            if (!compare(&got[i], &want[i], w, sizeof w)) {
                snprintf(why, wlen, "%s: output %zu ('%s'): %s", sets[s], i, opt_exec_output_name(e, i), w);
                ok = false;
            }
        }
        if (!ok) result = R_FAIL;
        for (size_t i = 0; i < nif; i++) opt_array_free(&in[i]);
        for (size_t i = 0; i < nof; i++) opt_array_free(&want[i]);
        for (size_t i = 0; i < nout; i++) opt_array_free(&got[i]);
        free(in);
        free(want);
        free(got);
        free_list(inf, nif);
        free_list(outf, nof);
    }
    free_list(sets, nsets);
    opt_exec_free(e);
    opt_model_free(m);
    return result;
}

static int cmp_op(const void *a, const void *b)
{
    return strcmp(((const opstat *)a)->op, ((const opstat *)b)->op);
}

int main(int argc, char **argv)
{
    const char *filter = NULL;
    int first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "--known") == 0 && first + 1 < argc) load_known(argv[++first]);
        else if (strcmp(argv[first], "--filter") == 0 && first + 1 < argc) filter = argv[++first];
        else if (strcmp(argv[first], "-v") == 0) g_verbose++;
        else {
            fprintf(stderr, "usage: conformance [--known FILE] [--filter SUBSTR] [-v] [LABEL=]DIR...\n");
            return 2;
        }
    }
    int tot[4] = {0}, unexpected = 0;
    for (int d = first; d < argc; d++) {
        /* LABEL=DIR names the data set for known-failure entries "LABEL:test_x". */
        char set[64] = "";
        const char *dir = argv[d], *eq = strchr(dir, '=');
        if (eq && eq - dir < (long)sizeof set && !memchr(dir, '/', (size_t)(eq - dir))) {
            memcpy(set, dir, (size_t)(eq - dir));
            set[eq - dir] = 0;
            dir = eq + 1;
        }
        size_t n;
        char **tests = list_dir(dir, "test_", &n);
        if (!tests) {
            fprintf(stderr, "conformance: %s: no tests\n", dir);
            unexpected++;
        }
        for (size_t i = 0; i < n; i++) {
            if (filter && !strstr(tests[i], filter)) continue;
            char why[1024] = "", op[64];
            int r = run_test(dir, tests[i], why, sizeof why, op, sizeof op);
            opstat *st = op_stat(op);
            known *kn = find_known(set, tests[i]);
            if (kn) kn->seen = true;
            if (r == R_PASS && kn) {
                printf("XPASS %s%s%s (listed as known failure: %s)\n", set, set[0] ? ":" : "", tests[i], kn->reason);
                unexpected++;
                st->pass++;
                tot[0]++;
            } else if (r == R_PASS) {
                if (g_verbose) printf("PASS  %s\n", tests[i]);
                st->pass++;
                tot[0]++;
            } else if (r == R_SKIP) {
                if (g_verbose > 1) printf("SKIP  %s: %s\n", tests[i], why);
                st->skip++;
                tot[2]++;
            } else if (kn) {
                if (g_verbose) printf("XFAIL %s: %s [known: %s]\n", tests[i], why, kn->reason);
                st->xfail++;
                tot[3]++;
            } else {
                printf("FAIL  %s%s%s: %s\n", set, set[0] ? ":" : "", tests[i], why);
                st->fail++;
                tot[1]++;
                unexpected++;
            }
        }
        free_list(tests, n);
    }
    qsort(g_ops, g_nops, sizeof *g_ops, cmp_op);
    printf("\n%-28s %6s %6s %6s %6s\n", "op", "passed", "failed", "known", "skipped");
    for (size_t i = 0; i < g_nops; i++) {
        if (g_ops[i].pass + g_ops[i].fail + g_ops[i].xfail == 0 && g_verbose < 2) continue;
        printf("%-28s %6d %6d %6d %6d\n", g_ops[i].op, g_ops[i].pass, g_ops[i].fail, g_ops[i].xfail,
               g_ops[i].skip);
    }
    printf("%-28s %6d %6d %6d %6d\n", "total", tot[0], tot[1], tot[3], tot[2]);
    printf("conformance: %d passed, %d failed, %d known failures, %d skipped (no kernel)\n", tot[0],
           tot[1], tot[3], tot[2]);
    for (size_t i = 0; i < g_nknown; i++) {
        free(g_known[i].name);
        free(g_known[i].reason);
    }
    free(g_known);
    free(g_ops);
    return unexpected ? 1 : 0;
}
