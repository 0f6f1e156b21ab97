/*
 * tools/bench.c — `mopt bench`: latency, throughput and memory of a model on mopt's executor.
 *
 * Inputs are random with a fixed seed (floats uniform in [-1, 1), integers in [0, 10), bools
 * 0/1), shaped from the model's declarations: a symbolic first dim takes --batch, other symbolic
 * dims take --dim NAME=V or 128 (a typical sequence length). After --warmup runs, each run is
 * timed on its own; the report gives min/p50/p90/p99/max/mean latency, throughput in samples per
 * second (batch / mean latency), the process's peak resident memory (getrusage) and the
 * executor's peak activation bytes. --profile times every node and adds the op-type and node
 * tables, sorted by total time, like the torch profiler's.
 */
#include "libopt/exec/exec.h"
#include "tools/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char help[] =
    "usage: mopt bench [options] MODEL\n"
    "\n"
    "Times MODEL on mopt's executor with random inputs (fixed seed) and reports latency\n"
    "(min, p50, p90, p99, max, mean), throughput, peak resident memory and the executor's\n"
    "peak activation memory.\n"
    "\n"
    "  --batch N          value of a symbolic first input dim (default 1)\n"
    "  --dim NAME=V       value of the symbolic dim NAME (repeatable; others default to 128)\n"
    "  --threads N        executor and BLAS threads (default 0: all cores)\n"
    "  --warmup N         untimed runs first (default 3)\n"
    "  --iters N          timed runs (default: as many as fit in --seconds)\n"
    "  --seconds S        time budget for the timed runs when --iters is not given (default 3;\n"
    "                     at least 5 runs)\n"
    "  --seed S           seed of the random inputs (default 0)\n"
    "  --profile          time every node; add per-op-type and per-node tables\n"
    "  --top N            rows of the per-node table (default 25; 0 for all)\n"
    "  --explain          print the executor's plan (device per node, partitions, buffers) on\n"
    "                     stderr after the runs\n"
    "  --no-fuse          run every node as written (no Conv+BatchNormalization+Add+activation\n"
    "                     fusion at load), e.g. to time or profile the unfused graph\n"
    "  --json             machine-readable report on stdout\n"
    "  --report FILE      also write the tables to FILE (.json, .csv or .md)\n"
    "  -q, --quiet        no notes on stderr\n"
    "  -h, --help         this help\n";

typedef struct dimset {
    char *name;
    long long v;
} dimset;

typedef struct bench_opts {
    long long batch, warmup, iters, top;
    double seconds;
    int threads;
    unsigned long long seed;
    bool profile, json, explain, no_fuse;
    dimset dims[32];
    size_t n_dims;
} bench_opts;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Percentile by nearest rank on sorted v. */
static double pct(const double *v, size_t n, double p)
{
    if (!n) return 0;
    size_t r = (size_t)ceil(p / 100.0 * (double)n);
    if (r < 1) r = 1;
    if (r > n) r = n;
    return v[r - 1];
}

static const opt_value_info *find_input(const opt_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_inputs; i++)
        if (g->inputs[i]->name && strcmp(g->inputs[i]->name, name) == 0) return g->inputs[i];
    return NULL;
}

/* Shapes and fills input i. Returns 0 or prints and returns an exit code. */
static int make_input(const tool_opts *t, const bench_opts *o, const opt_graph *g, opt_exec *e,
                      size_t i, uint64_t *rng, opt_array *a)
{
    const char *name = opt_exec_input_name(e, i);
    const opt_value_info *vi = find_input(g, name);
    int ndim;
    int64_t dims[OPT_MAX_DIMS];
    int dtype = opt_exec_input_shape(e, i, &ndim, dims);
    opt_error err = {0};
    if (ndim < 0 || !dtype) {
        opt_error_set(&err, OPT_ERR_UNSUPPORTED, "input '%s' has no declared shape or dtype", name);
        return tool_fail(t, tool_in_name(t), &err);
    }
    memset(a, 0, sizeof *a);
    a->dtype = dtype;
    a->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        if (dims[d] >= 0) {
            a->dims[d] = dims[d];
            continue;
        }
        const opt_dim *od = vi && vi->type && vi->type->shape ? &vi->type->shape->dim[d] : NULL;
        const char *pn = od && od->kind == OPT_DIM_PARAM ? od->param : NULL;
        long long v = -1;
        for (size_t k = 0; pn && k < o->n_dims; k++)
            if (strcmp(o->dims[k].name, pn) == 0) v = o->dims[k].v;
        if (v < 0 && d == 0) v = o->batch;
        if (v < 0) {
            v = 128;
            tool_note(t, "input '%s' dim %d ('%s') = 128 (set it with --dim NAME=V)", name, d,
                      pn ? pn : "?");
        }
        a->dims[d] = v;
    }
    if (!opt_array_alloc(a)) {
        opt_error_set(&err, OPT_ERR_NOMEM, "input '%s': cannot allocate its shape", name);
        return tool_fail(t, tool_in_name(t), &err);
    }
    uint64_t n = opt_array_numel(a);
    for (uint64_t k = 0; k < n; k++) {
        uint64_t r = splitmix(rng);
        double u = (double)(r >> 11) / 9007199254740992.0;
        switch (dtype) {
        case OPT_DT_FLOAT: ((float *)a->data)[k] = (float)(2 * u - 1); break;
        case OPT_DT_DOUBLE: ((double *)a->data)[k] = 2 * u - 1; break;
        case OPT_DT_FLOAT16: ((uint16_t *)a->data)[k] = opt_f32_to_f16((float)(2 * u - 1)); break;
        case OPT_DT_BFLOAT16: ((uint16_t *)a->data)[k] = opt_f32_to_bf16((float)(2 * u - 1)); break;
        case OPT_DT_BOOL: ((uint8_t *)a->data)[k] = r & 1; break;
        case OPT_DT_INT8: case OPT_DT_UINT8: ((uint8_t *)a->data)[k] = (uint8_t)(r % 10); break;
        case OPT_DT_INT16: case OPT_DT_UINT16: ((uint16_t *)a->data)[k] = (uint16_t)(r % 10); break;
        case OPT_DT_INT32: case OPT_DT_UINT32: ((uint32_t *)a->data)[k] = (uint32_t)(r % 10); break;
        case OPT_DT_INT64: case OPT_DT_UINT64: ((uint64_t *)a->data)[k] = r % 10; break;
        default:
            opt_array_free(a);
            opt_error_set(&err, OPT_ERR_UNSUPPORTED, "input '%s': cannot make random %s values", name,
                          opt_dtype_short(dtype));
            return tool_fail(t, tool_in_name(t), &err);
        }
    }
    return 0;
}

typedef struct opagg {
    const char *op;
    double ms;
    unsigned long long calls;
    size_t nodes;
} opagg;

static int cmp_agg(const void *a, const void *b)
{
    const opagg *x = a, *y = b;
    return x->ms < y->ms ? 1 : x->ms > y->ms ? -1 : strcmp(x->op, y->op);
}

static int cmp_prof(const void *a, const void *b)
{
    const opt_exec_prof *x = *(const opt_exec_prof *const *)a, *y = *(const opt_exec_prof *const *)b;
    return x->total_ms < y->total_ms ? 1 : x->total_ms > y->total_ms ? -1 : strcmp(x->node, y->node);
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s >= 0x20) putchar(*s);
    }
    putchar('"');
}

static bool parse_ll(const char *s, long long lo, long long *v)
{
    char *end;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || x < lo) return false;
    *v = x;
    return true;
}

int cmd_bench(int argc, char **argv)
{
    tool_opts t = {.cmd = "bench", .argc = argc, .argv = argv};
    bench_opts o = {.batch = 1, .warmup = 3, .iters = -1, .seconds = 3, .top = 25};
    static const struct option longopts[] = {
        {"batch", required_argument, NULL, 'b'},
        {"dim", required_argument, NULL, 'D'},
        {"threads", required_argument, NULL, 't'},
        {"warmup", required_argument, NULL, 'w'},
        {"iters", required_argument, NULL, 'n'},
        {"seconds", required_argument, NULL, 's'},
        {"seed", required_argument, NULL, 'S'},
        {"profile", no_argument, NULL, 'p'},
        {"top", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'J'},
        {"explain", no_argument, NULL, 'E'},
        {"no-fuse", no_argument, NULL, 'F'},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    long long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&t, c, optarg, help)) continue;
        switch (c) {
        case 'b':
            if (!parse_ll(optarg, 1, &o.batch)) return tool_usage(&t, "--batch wants a positive integer");
            break;
        case 'D': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !parse_ll(eq + 1, 0, &v) || o.n_dims == 32)
                return tool_usage(&t, "--dim wants NAME=V with V >= 0");
            o.dims[o.n_dims].name = strndup(optarg, (size_t)(eq - optarg));
            o.dims[o.n_dims++].v = v;
            break;
        }
        case 't':
            if (!parse_ll(optarg, 0, &v) || v > 1024) return tool_usage(&t, "--threads wants 0..1024");
            o.threads = (int)v;
            break;
        case 'w':
            if (!parse_ll(optarg, 0, &o.warmup)) return tool_usage(&t, "--warmup wants an integer >= 0");
            break;
        case 'n':
            if (!parse_ll(optarg, 1, &o.iters)) return tool_usage(&t, "--iters wants a positive integer");
            break;
        case 's': {
            char *end;
            o.seconds = strtod(optarg, &end);
            if (*end || !(o.seconds > 0)) return tool_usage(&t, "--seconds wants a positive number");
            break;
        }
        case 'S': {
            char *end;
            o.seed = strtoull(optarg, &end, 10);
            if (*end || !*optarg) return tool_usage(&t, "--seed wants an integer");
            break;
        }
        case 'p': o.profile = true; break;
        case 'T':
            if (!parse_ll(optarg, 0, &o.top)) return tool_usage(&t, "--top wants an integer >= 0");
            break;
        case 'J': o.json = true; break;
        case 'E': o.explain = true; break;
        case 'F': o.no_fuse = true; break;
        default: return tool_usage(&t, "bad option");
        }
    }
    int rc = tool_positional(&t, argc, argv, 1);
    if (rc) return rc;
    if (t.out) return tool_usage(&t, "bench writes no model; -o is not accepted");
    opt_model *m;
    if ((rc = tool_load(&t, NULL, &m))) return rc;

    opt_exec_opts eo = {.threads = o.threads, .profile = o.profile, .no_fuse = o.no_fuse};
    opt_exec *e = NULL;
    opt_error err = {0};
    double t0 = now_ms();
    if (opt_exec_new(m, &eo, &e, &err) != OPT_OK) {
        rc = tool_fail(&t, tool_in_name(&t), &err);
        opt_model_free(m);
        return rc;
    }
    double load_ms = now_ms() - t0;
    size_t nin = opt_exec_n_inputs(e), nout = opt_exec_n_outputs(e);
    opt_array *in = calloc(nin + 1, sizeof *in), *out = calloc(nout + 1, sizeof *out);
    double *lat = NULL;
    size_t nlat = 0, caplat = 0;
    uint64_t rng = o.seed;
    for (size_t i = 0; i < nin && !rc; i++) rc = make_input(&t, &o, m->graph, e, i, &rng, &in[i]);
    /* Warm-up, then timed runs. */
    for (long long w = 0; w < o.warmup && !rc; w++) {
        if (opt_exec_run(e, in, nin, out, nout, &err) != OPT_OK) rc = tool_fail(&t, tool_in_name(&t), &err);
        for (size_t i = 0; i < nout; i++) opt_array_free(&out[i]);
    }
    opt_exec_profile_reset(e); /* profile only the timed runs */
    double start = now_ms(), total = 0;
    while (!rc) {
        if (o.iters > 0 ? (long long)nlat >= o.iters : (nlat >= 5 && now_ms() - start >= o.seconds * 1e3)) break;
        double a = now_ms();
        if (opt_exec_run(e, in, nin, out, nout, &err) != OPT_OK) {
            rc = tool_fail(&t, tool_in_name(&t), &err);
            break;
        }
        double b = now_ms();
        for (size_t i = 0; i < nout; i++) opt_array_free(&out[i]);
        if (nlat == caplat) {
            caplat = caplat ? 2 * caplat : 256;
            lat = realloc(lat, caplat * sizeof *lat);
            if (!lat) {
                opt_error_set(&err, OPT_ERR_NOMEM, "out of memory");
                rc = tool_fail(&t, tool_in_name(&t), &err);
                break;
            }
        }
        lat[nlat++] = b - a;
        total += b - a;
    }
    if (!rc && o.explain) {
        size_t cap = 256 + 160 * (m->graph->n_nodes + 1);
        char *buf = malloc(cap);
        if (buf) {
            opt_exec_explain(e, buf, cap);
            fputs(buf, stderr);
            free(buf);
        }
    }
    if (!rc) {
        qsort(lat, nlat, sizeof *lat, cmp_double);
        double mean = total / (double)nlat;
        double thr = mean > 0 ? (double)o.batch * 1e3 / mean : 0;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double rss_mb = (double)ru.ru_maxrss / 1024.0;
        double act_mb = (double)opt_exec_peak_bytes(e) / (1024.0 * 1024.0);
        char thr_s[32];
        snprintf(thr_s, sizeof thr_s, "%d", o.threads ? o.threads : 0);

        tool_table tl, tops, tnodes;
        static const char *lcols[] = {"metric", "value"};
        static const char *ocols[] = {"op_type", "total_ms", "percent", "calls", "avg_us", "nodes"};
        static const char *ncols[] = {"node", "op_type", "total_ms", "percent", "avg_us"};
        tool_table_init(&tl, "latency (ms)", 2, lcols);
        tool_table_init(&tops, "time per op type", 6, ocols);
        tool_table_init(&tnodes, "time per node", 5, ncols);
        tool_table_row(&tl, "min\t%.3f", lat[0]);
        tool_table_row(&tl, "p50\t%.3f", pct(lat, nlat, 50));
        tool_table_row(&tl, "p90\t%.3f", pct(lat, nlat, 90));
        tool_table_row(&tl, "p99\t%.3f", pct(lat, nlat, 99));
        tool_table_row(&tl, "max\t%.3f", lat[nlat - 1]);
        tool_table_row(&tl, "mean\t%.3f", mean);

        const opt_exec_prof *prof = NULL;
        size_t np = o.profile ? opt_exec_profile(e, &prof) : 0;
        opagg *agg = calloc(np + 1, sizeof *agg);
        const opt_exec_prof **byt = calloc(np + 1, sizeof *byt);
        size_t nagg = 0;
        double ptotal = 0;
        unsigned long long runs = (unsigned long long)nlat;
        for (size_t i = 0; i < np; i++) {
            ptotal += prof[i].total_ms;
            byt[i] = &prof[i];
            size_t k;
            for (k = 0; k < nagg; k++)
                if (strcmp(agg[k].op, prof[i].op_type) == 0) break;
            if (k == nagg) agg[nagg++] = (opagg){prof[i].op_type, 0, 0, 0};
            agg[k].ms += prof[i].total_ms;
            agg[k].calls += prof[i].calls;
            agg[k].nodes++;
        }
        if (np) {
            qsort(agg, nagg, sizeof *agg, cmp_agg);
            qsort(byt, np, sizeof *byt, cmp_prof);
            for (size_t k = 0; k < nagg; k++)
                tool_table_row(&tops, "%s\t%.3f\t%.1f\t%llu\t%.1f\t%zu", agg[k].op, agg[k].ms / (double)runs,
                               100.0 * agg[k].ms / (ptotal > 0 ? ptotal : 1), agg[k].calls / (runs ? runs : 1),
                               agg[k].calls ? 1e3 * agg[k].ms / (double)agg[k].calls : 0, agg[k].nodes);
            size_t lim = o.top && (size_t)o.top < np ? (size_t)o.top : np;
            for (size_t i = 0; i < lim; i++)
                tool_table_row(&tnodes, "%s\t%s\t%.3f\t%.1f\t%.1f", byt[i]->node, byt[i]->op_type,
                               byt[i]->total_ms / (double)runs, 100.0 * byt[i]->total_ms / (ptotal > 0 ? ptotal : 1),
                               byt[i]->calls ? 1e3 * byt[i]->total_ms / (double)byt[i]->calls : 0);
        }
        if (o.json) {
            printf("{\n  \"model\": ");
            json_str(tool_in_name(&t));
            printf(",\n  \"batch\": %lld,\n  \"threads\": %d,\n  \"warmup\": %lld,\n  \"iters\": %zu,\n", o.batch,
                   o.threads, o.warmup, nlat);
            printf("  \"load_ms\": %.3f,\n", load_ms);
            printf("  \"latency_ms\": {\"min\": %.4f, \"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, \"max\": %.4f, \"mean\": %.4f},\n",
                   lat[0], pct(lat, nlat, 50), pct(lat, nlat, 90), pct(lat, nlat, 99), lat[nlat - 1], mean);
            printf("  \"throughput_per_s\": %.3f,\n  \"peak_rss_mb\": %.1f,\n  \"peak_activation_bytes\": %zu",
                   thr, rss_mb, opt_exec_peak_bytes(e));
            if (np) {
                printf(",\n  \"profile_runs\": %llu,\n  \"op_types\": [", runs);
                for (size_t k = 0; k < nagg; k++) {
                    printf("%s\n    {\"op_type\": ", k ? "," : "");
                    json_str(agg[k].op);
                    printf(", \"total_ms\": %.4f, \"calls\": %llu, \"nodes\": %zu}", agg[k].ms, agg[k].calls, agg[k].nodes);
                }
                printf("\n  ],\n  \"nodes\": [");
                for (size_t i = 0; i < np; i++) {
                    printf("%s\n    {\"node\": ", i ? "," : "");
                    json_str(byt[i]->node);
                    printf(", \"op_type\": ");
                    json_str(byt[i]->op_type);
                    printf(", \"total_ms\": %.4f, \"calls\": %llu}", byt[i]->total_ms, (unsigned long long)byt[i]->calls);
                }
                printf("\n  ]");
            }
            printf("\n}\n");
        } else {
            printf("model: %s\n", tool_in_name(&t));
            printf("inputs:");
            for (size_t i = 0; i < nin; i++) {
                printf(" %s %s[", opt_exec_input_name(e, i), opt_dtype_short(in[i].dtype));
                for (int d = 0; d < in[i].ndim; d++) printf("%s%lld", d ? "," : "", (long long)in[i].dims[d]);
                printf("]");
            }
            printf("\nthreads: %s  warmup: %lld  iters: %zu  load: %.1f ms\n", o.threads ? thr_s : "all",
                   o.warmup, nlat, load_ms);
            printf("latency ms: min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f\n", lat[0],
                   pct(lat, nlat, 50), pct(lat, nlat, 90), pct(lat, nlat, 99), lat[nlat - 1], mean);
            printf("throughput: %.2f samples/s (batch %lld)\n", thr, o.batch);
            printf("peak memory: %.1f MiB resident, %.1f MiB activations\n", rss_mb, act_mb);
            if (np) {
                printf("\n(profile over %llu runs; times are per run)\n", runs);
                tool_table_print(&tops, stdout);
                printf("\n");
                tool_table_print(&tnodes, stdout);
            }
        }
        if (t.report) {
            tool_table tabs[3] = {tl, tops, tnodes};
            if (tool_report_write(&t, tabs, np ? 3 : 1)) rc = EXIT_FAIL;
        }
        tool_table_free(&tl);
        tool_table_free(&tops);
        tool_table_free(&tnodes);
        free(agg);
        free(byt);
    }
    for (size_t i = 0; i < nin; i++) opt_array_free(&in[i]);
    for (size_t i = 0; i < o.n_dims; i++) free(o.dims[i].name);
    free(in);
    free(out);
    free(lat);
    opt_exec_free(e);
    opt_model_free(m);
    return rc;
}
