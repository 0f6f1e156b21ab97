/*
 * tools/eval.c — `mopt eval`: top-1/top-5 accuracy of one or more classifiers on a labelled
 * dataset, their agreement with the first model and the largest output differences, and the
 * latency of each per batch. The numbers come from calib/eval.h, which other commands share.
 */
#include "tools/common.h"

#include "calib/eval.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: mopt eval [options] --data SPEC MODEL...\n"
    "\n"
    "Runs each MODEL on the samples of SPEC and reports top-1 and top-5 accuracy; with several\n"
    "models, how often each agrees with the first on the top-1 class and the largest absolute\n"
    "and relative difference of its outputs from the first's; and the median time per batch.\n"
    "The table goes to stderr; --report writes it as JSON, CSV or Markdown.\n"
    "\n"
    "  --data SPEC          fashion-mnist:test, fashion-mnist:train, idx:IMAGES[,LABELS],\n"
    "                       npy:INPUTS[,LABELS], csv:INPUTS[,LABELS|last], or a file\n"
    "  --batch N            samples per batch (default 32)\n"
    "  --limit N            only the first N samples\n"
    "  --normalize M,S      (x*scale - M) / S; per channel: M1,M2,M3:S1,S2,S3\n"
    "  --scale X            multiply raw values by X first (default 1/255 for uint8 data, else 1)\n"
    "  --layout L           nchw, nhwc or flat: how samples are given to the model\n"
    "                       (default: as stored; IDX images become [1,H,W])\n"
    "  --input-layout L     nchw or nhwc: how rank-3 samples are stored (default: as --layout;\n"
    "                       IDX: nhwc)\n"
    "  --output-index K     which model output holds the class scores (default 0)\n"
    "  --min-top1 X         exit 3 when a model's top-1 accuracy (0..1) is below X\n"
    "  --threads N          CPU threads (default: all cores)\n"
    "  --report FILE        also write the table to FILE (.json, .csv or .md)\n"
    "  -q, --quiet          no table on stderr\n"
    "  -h, --help           this help\n"
    "\n"
    "Relative error: max |a-b| / max(|b|, rms(b)), b the first model's outputs for a batch.\n";

typedef struct prog_ctx {
    const tool_opts *t;
} prog_ctx;

static void on_progress(void *ctx, size_t done, size_t total)
{
    prog_ctx *p = ctx;
    tool_progress(p->t, "eval", done, total);
}

static bool parse_size(const char *s, size_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (!*s || *end || errno || *s == '-' || x == 0) return false;
    *v = (size_t)x;
    return true;
}

int cmd_eval(int argc, char **argv)
{
    tool_opts t = {.cmd = "eval", .argc = argc, .argv = argv};
    opt_dataset_opts dso = {0};
    opt_eval_opts eo = {0};
    const char *spec = NULL;
    int threads = 0;
    double min_top1 = -1;
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"batch", required_argument, NULL, 'b'},
        {"limit", required_argument, NULL, 'l'},
        {"normalize", required_argument, NULL, 'n'},
        {"scale", required_argument, NULL, 's'},
        {"layout", required_argument, NULL, 'L'},
        {"input-layout", required_argument, NULL, 'I'},
        {"output-index", required_argument, NULL, 'k'},
        {"min-top1", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 'j'},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    opt_error err = {0};
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'o') return tool_usage(&t, "eval writes no model; use --report FILE");
        if (tool_common_opt(&t, c, optarg, help)) continue;
        char *end;
        switch (c) {
        case 'd': spec = optarg; break;
        case 'b':
            if (!parse_size(optarg, &eo.batch)) return tool_usage(&t, "--batch: '%s' is not a positive number", optarg);
            break;
        case 'l':
            if (!parse_size(optarg, &dso.limit)) return tool_usage(&t, "--limit: '%s' is not a positive number", optarg);
            break;
        case 'n':
            if (opt_dataset_parse_normalize(optarg, &dso, &err) != OPT_OK) return tool_usage(&t, "%s", err.msg);
            break;
        case 's':
            dso.scale = strtof(optarg, &end);
            if (!*optarg || *end || !isfinite(dso.scale) || dso.scale == 0)
                return tool_usage(&t, "--scale: '%s' is not a non-zero number", optarg);
            break;
        case 'L':
            if (!opt_layout_parse(optarg, &dso.layout)) return tool_usage(&t, "--layout: '%s' is not nchw, nhwc or flat", optarg);
            break;
        case 'I':
            if (!opt_layout_parse(optarg, &dso.src_layout) || dso.src_layout == OPT_LAYOUT_FLAT)
                return tool_usage(&t, "--input-layout: '%s' is not nchw or nhwc", optarg);
            break;
        case 'k': {
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 0) return tool_usage(&t, "--output-index: '%s' is not an index", optarg);
            eo.output_index = (size_t)v;
            break;
        }
        case 'm':
            min_top1 = strtod(optarg, &end);
            if (!*optarg || *end || !(min_top1 >= 0 && min_top1 <= 1))
                return tool_usage(&t, "--min-top1: '%s' is not a fraction in [0,1]", optarg);
            break;
        case 'j': {
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 0 || v > 4096) return tool_usage(&t, "--threads: '%s' is not a thread count", optarg);
            threads = (int)v;
            break;
        }
        default: return tool_usage(&t, "bad option");
        }
    }
    size_t n = (size_t)(argc - optind);
    if (!spec) return tool_usage(&t, "--data SPEC is required");
    if (n == 0) return tool_usage(&t, "no MODEL given");
    char **paths = argv + optind;

    opt_dataset *ds = NULL;
    if (opt_dataset_open(spec, &dso, &ds, &err) != OPT_OK) return tool_fail(&t, NULL, &err);
    opt_model **models = calloc(n, sizeof *models);
    opt_exec **execs = calloc(n, sizeof *execs);
    opt_eval_result *res = calloc(n, sizeof *res);
    int rc = 0;
    if (!models || !execs || !res) {
        opt_error_set(&err, OPT_ERR_NOMEM, "out of memory");
        rc = tool_fail(&t, NULL, &err);
        goto done;
    }
    opt_exec_opts xo = {.threads = threads};
    for (size_t i = 0; i < n && !rc; i++) {
        tool_opts ti = t;
        ti.in = paths[i];
        if ((rc = tool_load(&ti, NULL, &models[i]))) break;
        if (opt_exec_new(models[i], &xo, &execs[i], &err) != OPT_OK) rc = tool_fail(&t, paths[i], &err);
    }
    if (rc) goto done;
    bool labels = opt_dataset_has_labels(ds);
    if (!labels && n == 1) {
        opt_error_set(&err, OPT_ERR_DATA, "%s: the dataset has no labels (give LABELS, or several models to compare)",
                      opt_dataset_name(ds));
        rc = tool_fail(&t, NULL, &err);
        goto done;
    }
    eo.no_labels = !labels;
    prog_ctx pc = {&t};
    eo.progress = on_progress;
    eo.progress_ctx = &pc;
    if (opt_eval_models(execs, (const char *const *)paths, n, ds, &eo, res, &err) != OPT_OK) {
        tool_progress(&t, "eval", 1, 1);
        rc = tool_fail(&t, NULL, &err);
        goto done;
    }
    static const char *cols[] = {"model", "samples", "top1", "top5", "agree", "max_abs", "max_rel", "ms/batch"};
    tool_table tb;
    char title[512];
    snprintf(title, sizeof title, "mopt eval on %s (batch %zu)", opt_dataset_name(ds), eo.batch ? eo.batch : 32);
    tool_table_init(&tb, title, 8, cols);
    for (size_t i = 0; i < n; i++) {
        const opt_eval_result *r = &res[i];
        char t1[32], t5[32], ag[32], ma[32], mr[32];
        if (labels) {
            snprintf(t1, sizeof t1, "%.4f", r->top1);
            snprintf(t5, sizeof t5, "%.4f", r->top5);
        } else {
            snprintf(t1, sizeof t1, "-");
            snprintf(t5, sizeof t5, "-");
        }
        if (i == 0) {
            snprintf(ag, sizeof ag, "baseline");
            snprintf(ma, sizeof ma, "-");
            snprintf(mr, sizeof mr, "-");
        } else {
            snprintf(ag, sizeof ag, "%.4f", r->agreement);
            snprintf(ma, sizeof ma, "%.3g", r->max_abs);
            snprintf(mr, sizeof mr, "%.3g", r->max_rel);
        }
        tool_table_row(&tb, "%s\t%zu\t%s\t%s\t%s\t%s\t%s\t%.3f", paths[i], r->samples, t1, t5, ag, ma, mr,
                       r->ms_median);
        if (labels && min_top1 >= 0 && r->top1 < min_top1) rc = EXIT_GATE;
    }
    if (!t.quiet) tool_table_print(&tb, stderr);
    if (t.report && tool_report_write(&t, &tb, 1)) rc = rc ? rc : EXIT_FAIL;
    if (rc == EXIT_GATE)
        fprintf(stderr, "mopt eval: top-1 accuracy below --min-top1 %.4f\n", min_top1);
    tool_table_free(&tb);
done:
    for (size_t i = 0; i < n; i++) {
        if (execs) opt_exec_free(execs[i]);
        if (models) opt_model_free(models[i]);
    }
    free(execs);
    free(models);
    free(res);
    opt_dataset_free(ds);
    return rc;
}
