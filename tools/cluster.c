/*
 * tools/cluster.c — `mopt cluster`: k-means weight sharing, the second stage of Deep
 * Compression. A thin filter over opt_cluster().
 */
#include "tools/compress_opts.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: mopt cluster [options] [IN] [-o OUT]\n"
    "\n"
    "Replaces each Conv, ConvTranspose, Gemm and MatMul weight by 2^B shared values found by\n"
    "1-D k-means over its non-zero entries. Pruned zeros stay exactly zero and take no centroid.\n"
    "The weight becomes a uint8 index tensor W.idx, a codebook W.codebook and the standard nodes\n"
    "Cast(W.idx) and Gather(W.codebook, .) -> W, which every ONNX runtime runs; --inline writes\n"
    "the shared values back into the float weight instead.\n"
    "\n"
    "  --bits B               bits for every layer (sets --bits-conv and --bits-fc)\n"
    "  --bits-conv B          bits for Conv/ConvTranspose weights (default 8)\n"
    "  --bits-fc B            bits for Gemm/MatMul weights (default 5)\n"
    "  --layer NAME=B         bits for this layer (node or weight name, glob); repeatable\n"
    "  --include PAT[,PAT]    only layers whose node name, weight name or op type matches\n"
    "  --exclude PAT[,PAT]    leave these layers alone\n"
    "  --init METHOD          linear (default), density, random or kmeans++\n"
    "  --max-iter N           Lloyd iterations at most (default: until the clusters stop\n"
    "                         changing, at most 1000)\n"
    "  --seed N               seed for random and kmeans++ (default 0)\n"
    "  --refine data          then fit the centroids by least squares to each layer's output on\n"
    "                         the --data inputs, and correct the bias for the mean shift\n"
    "  --data SPEC            calibration data (see mopt-eval(1)), e.g. fashion-mnist:train\n"
    "  --samples N            calibration samples to use (default 1000)\n"
    "  --reference FILE       with --refine: fit towards this model's layer outputs (e.g. the\n"
    "                         model before pruning) instead of the input's\n"
    "  --threads N            executor threads for --refine (default: all cores)\n"
    "  --inline               write the centroid values into the float weights\n"
    "  --uint4                packed 4-bit index tensors where the codebook has at most 16\n"
    "                         entries (the model must have IR version 10 and opset 21)\n"
    "  --eval SPEC            labelled data for --max-drop, e.g. fashion-mnist:test\n"
    "  --max-drop P           exit 3 and write nothing when top-1 on --eval falls by more\n"
    "                         than P points (mopt's executor)\n"
    "  -o, --output OUT       output path (default: standard output)\n"
    "  --report FILE          also write the per-layer table to FILE (.json, .csv or .md)\n"
    "  -q, --quiet            no summary on stderr\n"
    "  -h, --help             this help\n";

static int parse_bits(const tool_opts *t, const char *opt, const char *arg, int *out)
{
    double v;
    int rc = copt_number(t, opt, arg, 1, 8, &v);
    if (rc) return rc;
    if (v != (int)v) return tool_usage(t, "%s: bits must be a whole number", opt);
    *out = (int)v;
    return 0;
}

static void progress(void *ctx, size_t done, size_t total)
{
    tool_progress(ctx, "cluster", done, total);
}

int cmd_cluster(int argc, char **argv)
{
    tool_opts t = {.cmd = "cluster", .argc = argc, .argv = argv};
    opt_cluster_opts co = {0};
    copt_lists l = {0};
    const char *data = NULL, *refine = NULL, *eval_spec = NULL, *reference = NULL;
    double samples = 1000, threads = 0, v, max_drop = -1, base = 0;
    int rc = 0;
    static const struct option longopts[] = {
        {"bits", required_argument, NULL, 'B'},
        {"bits-conv", required_argument, NULL, 'C'},
        {"bits-fc", required_argument, NULL, 'F'},
        {"layer", required_argument, NULL, 'L'},
        {"include", required_argument, NULL, 'I'},
        {"exclude", required_argument, NULL, 'X'},
        {"init", required_argument, NULL, 'i'},
        {"max-iter", required_argument, NULL, 'M'},
        {"seed", required_argument, NULL, 's'},
        {"refine", required_argument, NULL, 'R'},
        {"data", required_argument, NULL, 'D'},
        {"samples", required_argument, NULL, 'N'},
        {"reference", required_argument, NULL, 'r'},
        {"threads", required_argument, NULL, 'T'},
        {"inline", no_argument, NULL, 'n'},
        {"uint4", no_argument, NULL, 'U'},
        {"eval", required_argument, NULL, 0x2001},
        {"max-drop", required_argument, NULL, 0x2002},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&t, c, optarg, help)) continue;
        switch (c) {
        case 'B':
            if (!(rc = parse_bits(&t, "--bits", optarg, &co.bits_conv))) co.bits_fc = co.bits_conv;
            break;
        case 'C': rc = parse_bits(&t, "--bits-conv", optarg, &co.bits_conv); break;
        case 'F': rc = parse_bits(&t, "--bits-fc", optarg, &co.bits_fc); break;
        case 'L': rc = copt_add_layer(&t, &l, optarg, 1, 8); break;
        case 'I': rc = copt_add_globs(&t, &l.include, &l.n_include, optarg); break;
        case 'X': rc = copt_add_globs(&t, &l.exclude, &l.n_exclude, optarg); break;
        case 0x2001: eval_spec = optarg; break;
        case 0x2002: rc = copt_number(&t, "--max-drop", optarg, 0, 100, &max_drop); break;
        case 'i':
            if (strcmp(optarg, "linear") == 0) co.init = OPT_INIT_LINEAR;
            else if (strcmp(optarg, "density") == 0) co.init = OPT_INIT_DENSITY;
            else if (strcmp(optarg, "random") == 0) co.init = OPT_INIT_RANDOM;
            else if (strcmp(optarg, "kmeans++") == 0) co.init = OPT_INIT_KMEANSPP;
            else rc = tool_usage(&t, "--init: '%s' is not linear, density, random or kmeans++", optarg);
            break;
        case 'M': if (!(rc = copt_number(&t, "--max-iter", optarg, 1, 1e6, &v))) co.max_iter = (int)v; break;
        case 's': if (!(rc = copt_number(&t, "--seed", optarg, 0, 1e18, &v))) co.seed = (uint64_t)v; break;
        case 'R': refine = optarg; break;
        case 'D': data = optarg; break;
        case 'r': reference = optarg; break;
        case 'N': rc = copt_number(&t, "--samples", optarg, 1, 1e9, &samples); break;
        case 'T': rc = copt_number(&t, "--threads", optarg, 0, 1024, &threads); break;
        case 'n': co.inline_values = true; break;
        case 'U': co.uint4 = true; break;
        default: rc = tool_usage(&t, "bad option");
        }
        if (rc) goto out;
    }
    if ((rc = tool_positional(&t, argc, argv, 1))) goto out;
    if (refine && strcmp(refine, "data") != 0) {
        rc = tool_usage(&t, "--refine: only 'data' is known");
        goto out;
    }
    if (refine && !data) {
        rc = tool_usage(&t, "--refine data needs --data SPEC");
        goto out;
    }
    if (reference && !refine) {
        rc = tool_usage(&t, "--reference is used by --refine data");
        goto out;
    }
    if (data && !refine) {
        rc = tool_usage(&t, "--data is used by --refine data");
        goto out;
    }
    co.layers = l.layers;
    co.n_layers = l.n_layers;
    co.filter = (opt_weight_filter){l.include, l.n_include, l.exclude, l.n_exclude};

    if ((max_drop >= 0) != (eval_spec != NULL)) {
        rc = tool_usage(&t, "--max-drop and --eval go together");
        goto out;
    }
    opt_model *m;
    if ((rc = tool_load(&t, NULL, &m))) goto out;
    if (eval_spec && (rc = copt_top1(&t, m, eval_spec, (int)threads, &base))) {
        opt_model_free(m);
        goto out;
    }
    opt_calib_batches cb = {0};
    if (refine) {
        if ((rc = copt_calib_load(&t, m, data, (size_t)samples, 0, (int)threads, &cb)) ||
            (reference && (rc = copt_calib_reference(&t, reference, &cb)))) {
            copt_calib_free(&cb);
            opt_model_free(m);
            goto out;
        }
        co.refine = &cb;
    }
    opt_layer_stat *st = NULL;
    size_t n = 0;
    opt_error e = {0};
    co.progress = progress;
    co.progress_ctx = &t;
    if (opt_cluster(m, &co, &st, &n, &e) != OPT_OK) {
        rc = tool_fail(&t, tool_in_name(&t), &e);
        copt_calib_free(&cb);
        opt_model_free(m);
        goto out;
    }
    copt_calib_free(&cb);
    static const char *cols[] = {"layer", "op", "weights", "bits", "centroids", "zeros_%",
                                 "iterations", "rms_error", "out_err_kmeans", "out_err_refined"};
    tool_table tb;
    tool_table_init(&tb, "cluster", refine ? 10 : 8, cols);
    for (size_t i = 0; i < n; i++) {
        char extra[64] = "";
        if (refine) snprintf(extra, sizeof extra, "\t%.3g\t%.3g", st[i].out_err_before, st[i].out_err_after);
        tool_table_row(&tb, "%s\t%s\t%llu\t%d\t%d\t%.2f\t%d\t%.3g%s", st[i].layer, st[i].op,
                       (unsigned long long)st[i].numel, st[i].bits, st[i].k,
                       copt_pct(st[i].zeros_after, st[i].numel), st[i].iterations,
                       st[i].mse > 0 ? __builtin_sqrt(st[i].mse) : 0.0, extra);
    }
    if (!t.quiet) tool_table_print(&tb, stderr);
    if (n == 0) tool_note(&t, "no Conv, ConvTranspose, Gemm or MatMul weights selected; model unchanged");
    rc = t.report ? tool_report_write(&t, &tb, 1) : 0;
    tool_table_free(&tb);
    opt_layer_stats_free(st, n);
    double now;
    if (!rc && eval_spec && !(rc = copt_top1(&t, m, eval_spec, (int)threads, &now))) rc = copt_gate(&t, base, now, max_drop);
    if (!rc) rc = tool_save(&t, m, NULL, true);
    opt_model_free(m);
out:
    copt_lists_free(&l);
    return rc;
}
