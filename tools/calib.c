/*
 * tools/calib.c — `mopt calib`: activation ranges of a model over calibration data.
 *
 * Runs the model on mopt's executor over the --data stream, collects per-tensor statistics
 * (calib/stats.c: memory independent of the sample count), picks ranges by --method
 * (calib/ranges.c) and writes the CSV calibration table of docs/formats/calibration-table.md,
 * and with --format trt TensorRT's calibration cache as well.
 */
#include "tools/precision.h"
#include "calib/collect.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char help[] =
    "usage: mopt calib [options] [MODEL] --data SPEC [-o TABLE.csv]\n"
    "\n"
    "Runs MODEL on mopt's executor over the calibration data and writes one range per float\n"
    "tensor (the graph input and every activation) as a CSV table: tensor,method,min,max,scale,\n"
    "zero_point (docs/formats/calibration-table.md). `mopt quant --table` reads it.\n"
    "\n"
    "  --data SPEC        calibration data: fashion-mnist:test|train, idx:F[,L], npy:F[,L],\n"
    "                     csv:F[,L], or a path (see mopt-calib(1)); for a model of several\n"
    "                     inputs, once per input as NAME=SPEC (integer inputs take integers)\n"
    "  --method M         minmax (default), percentile, entropy (KL, as TensorRT's entropy\n"
    "                     calibrator) or mse\n"
    "  --percentile P     for --method percentile (default 99.999)\n"
    "  --act T            uint8 (asymmetric, default) or int8 (symmetric): the dtype the\n"
    "                     scale and zero_point columns are computed for\n"
    "  --format F         csv (default), or trt: also write TensorRT's calibration cache\n"
    "  --cache FILE       where --format trt writes the cache (default: TABLE with .cache)\n"
    PREC_DATA_HELP
    "  -o, --output FILE  the table (default: stdout)\n"
    "  --report FILE      also write the summary to FILE (.json, .csv or .md)\n"
    "  -q, --quiet        no summary on stderr\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status: 0 success, 1 bad model or data (nothing is written), 2 usage.\n";

typedef struct trt_ctx {
    const opt_calib_table *t;
    const char *algo;
} trt_ctx;

static opt_status write_csv(void *ctx, FILE *f, opt_error *err)
{
    return opt_calib_table_write_csv(ctx, f, err);
}

static opt_status write_trt(void *ctx, FILE *f, opt_error *err)
{
    trt_ctx *c = ctx;
    return opt_calib_table_write_trt(c->t, c->algo, f, err);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int cmd_calib(int argc, char **argv)
{
    tool_opts t = {.cmd = "calib", .argc = argc, .argv = argv};
    prec_data_opts d = {0};
    const char *format = "csv", *cache = NULL;
    prec_specs data = {0};
    opt_range_opts ro = {.method = OPT_CALIB_MINMAX, .qdtype = OPT_DT_UINT8};
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"method", required_argument, NULL, 'm'},
        {"percentile", required_argument, NULL, 'p'},
        {"act", required_argument, NULL, 'a'},
        {"format", required_argument, NULL, 'f'},
        {"cache", required_argument, NULL, 'c'},
        PREC_DATA_LONGOPTS,
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c, r;
    optind = 1;
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&t, c, optarg, help)) continue;
        if ((r = prec_data_opt(&t, &d, c, optarg)) < 0) return -r;
        if (r) continue;
        switch (c) {
        case 'd':
            if ((r = prec_spec_add(&t, &data, optarg))) return r;
            break;
        case 'm':
            if (!opt_calib_method_parse(optarg, &ro.method))
                return tool_usage(&t, "--method wants minmax, percentile, entropy or mse, not '%s'", optarg);
            break;
        case 'p':
            if (!prec_parse_double(optarg, &ro.percentile) || ro.percentile <= 50 || ro.percentile > 100)
                return tool_usage(&t, "--percentile wants a number in (50, 100], not '%s'", optarg);
            break;
        case 'a':
            if (strcmp(optarg, "uint8") == 0) ro.qdtype = OPT_DT_UINT8;
            else if (strcmp(optarg, "int8") == 0) ro.qdtype = OPT_DT_INT8;
            else return tool_usage(&t, "--act wants uint8 or int8, not '%s'", optarg);
            break;
        case 'f':
            if (strcmp(optarg, "csv") && strcmp(optarg, "trt")) return tool_usage(&t, "--format wants csv or trt, not '%s'", optarg);
            format = optarg;
            break;
        case 'c': cache = optarg; break;
        default: return tool_usage(&t, "bad option");
        }
    }
    if ((r = tool_positional(&t, argc, argv, 1))) return r;
    if (!data.n) return tool_usage(&t, "--data SPEC is required");
    if (ro.percentile && ro.method != OPT_CALIB_PERCENTILE) return tool_usage(&t, "--percentile goes with --method percentile");
    bool trt = strcmp(format, "trt") == 0;
    char *cache_path = NULL;
    if (trt && !cache) {
        if (!t.out || strcmp(t.out, "-") == 0) return tool_usage(&t, "--format trt with the table on stdout needs --cache FILE");
        size_t l = strlen(t.out);
        cache_path = malloc(l + 8);
        if (!cache_path) return EXIT_FAIL;
        memcpy(cache_path, t.out, l + 1);
        if (l > 4 && strcmp(cache_path + l - 4, ".csv") == 0) cache_path[l - 4] = 0;
        strcat(cache_path, ".cache");
        cache = cache_path;
    }

    opt_model *m = NULL;
    opt_feed feed = {0};
    opt_calib_stats st;
    opt_calib_table tab = {0};
    opt_calib_stats_init(&st, opt_calib_method_needs_hist(ro.method));
    opt_error e = {0};
    if ((r = tool_load(&t, NULL, &m))) goto done;
    if ((r = prec_open_feed(&t, m, &data, &d, &feed))) goto done;
    opt_collect_opts co = {.batch = d.batch, .threads = d.threads, .progress = prec_progress, .progress_ctx = &t};
    double t0 = now_s();
    if (opt_calib_collect_feed(m, &feed, &co, &st, &e) != OPT_OK) {
        r = tool_fail(&t, tool_in_name(&t), &e);
        goto done;
    }
    double t1 = now_s();
    ro.threads = d.threads;
    if (opt_calib_table_from_stats(&st, &ro, &tab, &e) != OPT_OK) {
        r = tool_fail(&t, tool_in_name(&t), &e);
        goto done;
    }
    double t2 = now_s();
    if (tab.n == 0) {
        opt_error_set(&e, OPT_ERR_DATA, "no float tensors to calibrate");
        r = tool_fail(&t, tool_in_name(&t), &e);
        goto done;
    }
    if ((r = prec_write_text(&t, t.out, write_csv, &tab))) goto done;
    if (trt) {
        trt_ctx tc = {&tab, ro.method == OPT_CALIB_MINMAX ? "MinMaxCalibration" :
                            ro.method == OPT_CALIB_ENTROPY ? "EntropyCalibration2" : "LegacyCalibration"};
        if ((r = prec_write_text(&t, cache, write_trt, &tc))) goto done;
    }
    size_t samples = opt_dataset_count(feed.ds[0]);
    tool_note(&t, "%zu samples, %zu tensors, method %s: statistics %.3f s (%.0f samples/s), ranges %.3f s",
              samples, tab.n, opt_calib_method_name(ro.method), t1 - t0, samples / (t1 - t0 > 0 ? t1 - t0 : 1e-9),
              t2 - t1);
    if (t.report) {
        static const char *cols[] = {"tensor", "method", "min", "max", "scale", "zero_point"};
        tool_table tb;
        tool_table_init(&tb, "calibration", 6, cols);
        for (size_t i = 0; i < tab.n; i++)
            tool_table_row(&tb, "%s\t%s\t%.9g\t%.9g\t%.9g\t%d", tab.e[i].tensor, tab.e[i].method, tab.e[i].min,
                           tab.e[i].max, tab.e[i].scale, (int)tab.e[i].zero_point);
        r = tool_report_write(&t, &tb, 1);
        tool_table_free(&tb);
    }
done:
    free(cache_path);
    opt_calib_table_free(&tab);
    opt_calib_stats_free(&st);
    opt_feed_free(&feed);
    opt_model_free(m);
    return r;
}
