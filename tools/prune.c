/*
 * tools/prune.c — `mopt prune`: magnitude pruning of Conv, ConvTranspose, Gemm and MatMul
 * weights, the first stage of Deep Compression. A thin filter over opt_prune().
 */
#include "tools/compress_opts.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: mopt prune [options] [IN] [-o OUT]\n"
    "\n"
    "Sets the smallest-magnitude weights of Conv, ConvTranspose, Gemm and MatMul nodes to zero.\n"
    "Biases, BatchNorm parameters and every tensor that is not such a weight are never touched.\n"
    "Prints the sparsity of each layer before and after on stderr.\n"
    "\n"
    "Choose one mode (default --sparsity 0.5):\n"
    "  --sparsity S           fraction S of the weights becomes zero, by one global magnitude\n"
    "                         threshold over all selected layers (or per layer, --per-layer)\n"
    "  --threshold T          weights with |w| < T become zero\n"
    "  --quality Q            per layer, |w| < Q x std(layer's weights) become zero (Han et al.)\n"
    "  --per-layer            with --sparsity: every layer gets sparsity S\n"
    "  --layer NAME=S         this layer (node or weight name, glob) gets sparsity S; repeatable\n"
    "  --refine data          choose the weights to drop by the Optimal Brain Surgeon saliency\n"
    "                         on --data inputs (same count per layer), refit the rest by least\n"
    "                         squares to the layer's output, and correct the bias\n"
    "  --data SPEC            calibration data, e.g. fashion-mnist:train (see mopt-eval(1))\n"
    "  --samples N            calibration samples (default 1000)\n"
    "  --threads N            executor threads for --refine (default: all cores)\n"
    "  --include PAT[,PAT]    only layers whose node name, weight name or op type matches\n"
    "  --exclude PAT[,PAT]    leave these layers alone (wins over --include)\n"
    "  --sparse-initializers  store each pruned weight as an ONNX sparse initializer (its\n"
    "                         non-zero values and their int64 positions) where that is\n"
    "                         smaller than the dense tensor (needs IR version 6 or later)\n"
    "  --eval SPEC            labelled data for --max-drop, e.g. fashion-mnist:test\n"
    "  --max-drop P           exit 3 and write nothing when top-1 on --eval falls by more\n"
    "                         than P points (mopt's executor)\n"
    "  -o, --output OUT       output path (default: standard output)\n"
    "  --report FILE          also write the per-layer table to FILE (.json, .csv or .md)\n"
    "  -q, --quiet            no summary on stderr\n"
    "  -h, --help             this help\n";

static void progress(void *ctx, size_t done, size_t total)
{
    tool_progress(ctx, "prune", done, total);
}

/* --sparse-initializers: each pruned weight becomes a sparse initializer where that is smaller. */
static int sparsify(const tool_opts *t, opt_model *m, const opt_layer_stat *st, size_t n)
{
    size_t saved = 0, moved = 0;
    opt_error e = {0};
    for (size_t i = 0; i < n; i++) {
        size_t s = 0;
        if (!opt_graph_initializer(m->graph, st[i].tensor)) continue; /* already moved (shared) */
        if (opt_graph_sparsify(m->graph, st[i].tensor, &s, &e) != OPT_OK)
            return tool_fail(t, tool_in_name(t), &e);
        saved += s;
        moved += s > 0;
    }
    tool_note(t, "%zu of %zu weights stored as sparse initializers, %zu bytes smaller", moved, n, saved);
    return 0;
}

int cmd_prune(int argc, char **argv)
{
    tool_opts t = {.cmd = "prune", .argc = argc, .argv = argv};
    opt_prune_opts po = {.mode = OPT_PRUNE_SPARSITY, .value = 0.5};
    copt_lists l = {0};
    int modes = 0, rc = 0;
    const char *refine = NULL, *data = NULL, *eval_spec = NULL;
    bool sparse_init = false;
    double samples = 1000, threads = 0, max_drop = -1, base = 0;
    static const struct option longopts[] = {
        {"sparsity", required_argument, NULL, 'S'},
        {"threshold", required_argument, NULL, 'T'},
        {"quality", required_argument, NULL, 'Q'},
        {"per-layer", no_argument, NULL, 'P'},
        {"layer", required_argument, NULL, 'L'},
        {"include", required_argument, NULL, 'I'},
        {"exclude", required_argument, NULL, 'X'},
        {"refine", required_argument, NULL, 'R'},
        {"data", required_argument, NULL, 'D'},
        {"samples", required_argument, NULL, 'N'},
        {"threads", required_argument, NULL, 'H'},
        {"eval", required_argument, NULL, 0x2001},
        {"max-drop", required_argument, NULL, 0x2002},
        {"sparse-initializers", no_argument, NULL, 0x2003},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&t, c, optarg, help)) continue;
        switch (c) {
        case 'S': modes++; po.mode = OPT_PRUNE_SPARSITY; rc = copt_number(&t, "--sparsity", optarg, 0, 1, &po.value); break;
        case 'T': modes++; po.mode = OPT_PRUNE_THRESHOLD; rc = copt_number(&t, "--threshold", optarg, 0, 1e30, &po.value); break;
        case 'Q': modes++; po.mode = OPT_PRUNE_QUALITY; rc = copt_number(&t, "--quality", optarg, 0, 1e6, &po.value); break;
        case 'P': po.per_layer = true; break;
        case 'L': rc = copt_add_layer(&t, &l, optarg, 0, 1); break;
        case 'I': rc = copt_add_globs(&t, &l.include, &l.n_include, optarg); break;
        case 'X': rc = copt_add_globs(&t, &l.exclude, &l.n_exclude, optarg); break;
        case 0x2001: eval_spec = optarg; break;
        case 0x2002: rc = copt_number(&t, "--max-drop", optarg, 0, 100, &max_drop); break;
        case 0x2003: sparse_init = true; break;
        case 'R': refine = optarg; break;
        case 'D': data = optarg; break;
        case 'N': rc = copt_number(&t, "--samples", optarg, 1, 1e9, &samples); break;
        case 'H': rc = copt_number(&t, "--threads", optarg, 0, 1024, &threads); break;
        default: rc = tool_usage(&t, "bad option");
        }
        if (rc) goto out;
    }
    if ((rc = tool_positional(&t, argc, argv, 1))) goto out;
    if (modes > 1) {
        rc = tool_usage(&t, "choose one of --sparsity, --threshold and --quality");
        goto out;
    }
    if (po.per_layer && po.mode != OPT_PRUNE_SPARSITY) {
        rc = tool_usage(&t, "--per-layer goes with --sparsity");
        goto out;
    }
    if (refine && strcmp(refine, "data") != 0) {
        rc = tool_usage(&t, "--refine: only 'data' is known");
        goto out;
    }
    if (!refine != !data) {
        rc = tool_usage(&t, refine ? "--refine data needs --data SPEC" : "--data is used by --refine data");
        goto out;
    }
    po.layers = l.layers;
    po.n_layers = l.n_layers;
    po.filter = (opt_weight_filter){l.include, l.n_include, l.exclude, l.n_exclude};

    if ((max_drop >= 0) != (eval_spec != NULL)) {
        rc = tool_usage(&t, "--max-drop and --eval go together");
        goto out;
    }
    opt_model *m;
    if ((rc = tool_load(&t, NULL, &m))) goto out;
    if (sparse_init && m->ir_version < 6) {
        opt_error ie = {0};
        opt_error_set(&ie, OPT_ERR_UNSUPPORTED,
                      "--sparse-initializers needs IR version 6 or later (the model has %lld)",
                      (long long)m->ir_version);
        rc = tool_fail(&t, tool_in_name(&t), &ie);
        opt_model_free(m);
        goto out;
    }
    if (eval_spec && (rc = copt_top1(&t, m, eval_spec, (int)threads, &base))) {
        opt_model_free(m);
        goto out;
    }
    opt_calib_batches cb = {0};
    if (refine) {
        if ((rc = copt_calib_load(&t, m, data, (size_t)samples, 0, (int)threads, &cb))) {
            opt_model_free(m);
            goto out;
        }
        po.refine = &cb;
    }
    opt_layer_stat *st = NULL;
    size_t n = 0;
    opt_error e = {0};
    po.progress = progress;
    po.progress_ctx = &t;
    opt_status ps = opt_prune(m, &po, &st, &n, &e);
    copt_calib_free(&cb);
    if (ps != OPT_OK) {
        rc = tool_fail(&t, tool_in_name(&t), &e);
        opt_model_free(m);
        goto out;
    }
    static const char *cols[] = {"layer", "op", "weight", "weights", "sparsity_before_%",
                                 "sparsity_after_%", "threshold"};
    tool_table tb;
    tool_table_init(&tb, "prune", 7, cols);
    uint64_t tot = 0, zb = 0, za = 0;
    for (size_t i = 0; i < n; i++) {
        tool_table_row(&tb, "%s\t%s\t%s\t%llu\t%.2f\t%.2f\t%.6g", st[i].layer, st[i].op, st[i].tensor,
                       (unsigned long long)st[i].numel, copt_pct(st[i].zeros_before, st[i].numel),
                       copt_pct(st[i].zeros_after, st[i].numel), st[i].threshold);
        tot += st[i].numel;
        zb += st[i].zeros_before;
        za += st[i].zeros_after;
    }
    tool_table_row(&tb, "total\t\t\t%llu\t%.2f\t%.2f\t", (unsigned long long)tot, copt_pct(zb, tot),
                   copt_pct(za, tot));
    if (!t.quiet) tool_table_print(&tb, stderr);
    if (n == 0) tool_note(&t, "no Conv, ConvTranspose, Gemm or MatMul weights selected; model unchanged");
    rc = t.report ? tool_report_write(&t, &tb, 1) : 0;
    tool_table_free(&tb);
    double now;
    if (!rc && eval_spec && !(rc = copt_top1(&t, m, eval_spec, (int)threads, &now))) rc = copt_gate(&t, base, now, max_drop);
    if (!rc && sparse_init) rc = sparsify(&t, m, st, n);
    opt_layer_stats_free(st, n);
    if (!rc) rc = tool_save(&t, m, NULL, true);
    opt_model_free(m);
out:
    copt_lists_free(&l);
    return rc;
}
