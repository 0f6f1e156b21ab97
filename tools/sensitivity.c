/*
 * tools/sensitivity.c — `mopt sensitivity`: prune one layer at a time to each of several
 * sparsities and measure top-1 accuracy, to choose per-layer targets for `mopt prune --layer`
 * (Han et al.'s sensitivity analysis). Writes CSV.
 */
#include "tools/compress_opts.h"
#include "calib/eval.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: mopt sensitivity [options] --data SPEC MODEL [-o OUT.csv]\n"
    "\n"
    "For each Conv, ConvTranspose, Gemm and MatMul weight alone, prunes it to each sparsity of\n"
    "--sparsities (the rest of the model untouched), evaluates top-1 accuracy on --data with\n"
    "mopt's executor and writes CSV: layer, op, weight, weights, sparsity, top1, drop (points\n"
    "below the unpruned model). The CSV goes to OUT or standard output; the table to stderr.\n"
    "\n"
    "  --data SPEC            labelled evaluation data, e.g. fashion-mnist:test\n"
    "  --limit N              evaluate on the first N samples only\n"
    "  --batch N              samples per batch (default 250)\n"
    "  --sparsities LIST      comma-separated (default 0.5,0.7,0.8,0.9,0.95)\n"
    "  --refine data          prune as `mopt prune --refine data` does (OBS + least squares)\n"
    "  --calib SPEC           calibration data for --refine (default fashion-mnist:train)\n"
    "  --samples N            calibration samples (default 1000)\n"
    "  --include PAT[,PAT]    only these layers;  --exclude PAT[,PAT]  not these\n"
    "  --threads N            executor threads (default: all cores)\n"
    "  -o, --output OUT       CSV file (default: standard output)\n"
    "  --report FILE          also write the table as .json, .csv or .md\n"
    "  -q, --quiet            no table on stderr\n"
    "  -h, --help             this help\n";

static int eval_model(const tool_opts *t, opt_model *m, opt_dataset *ds, size_t batch, int threads,
                      double *top1)
{
    opt_exec *e = NULL;
    opt_error err = {0};
    opt_exec_opts eo = {.threads = threads};
    opt_eval_opts vo = {.batch = batch};
    if (opt_exec_new(m, &eo, &e, &err) != OPT_OK || opt_eval_top1(e, ds, &vo, top1, &err) != OPT_OK) {
        opt_exec_free(e);
        return tool_fail(t, tool_in_name(t), &err);
    }
    opt_exec_free(e);
    return 0;
}

int cmd_sensitivity(int argc, char **argv)
{
    tool_opts t = {.cmd = "sensitivity", .argc = argc, .argv = argv};
    copt_lists l = {0};
    const char *data = NULL, *refine = NULL, *calib = "fashion-mnist:train", *sp_arg = "0.5,0.7,0.8,0.9,0.95";
    double limit = 0, batch = 250, samples = 1000, threads = 0;
    int rc = 0;
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'D'},
        {"limit", required_argument, NULL, 'l'},
        {"batch", required_argument, NULL, 'b'},
        {"sparsities", required_argument, NULL, 'S'},
        {"refine", required_argument, NULL, 'R'},
        {"calib", required_argument, NULL, 'C'},
        {"samples", required_argument, NULL, 'N'},
        {"include", required_argument, NULL, 'I'},
        {"exclude", required_argument, NULL, 'X'},
        {"threads", required_argument, NULL, 'T'},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&t, c, optarg, help)) continue;
        switch (c) {
        case 'D': data = optarg; break;
        case 'l': rc = copt_number(&t, "--limit", optarg, 1, 1e12, &limit); break;
        case 'b': rc = copt_number(&t, "--batch", optarg, 1, 1e6, &batch); break;
        case 'S': sp_arg = optarg; break;
        case 'R': refine = optarg; break;
        case 'C': calib = optarg; break;
        case 'N': rc = copt_number(&t, "--samples", optarg, 1, 1e9, &samples); break;
        case 'I': rc = copt_add_globs(&t, &l.include, &l.n_include, optarg); break;
        case 'X': rc = copt_add_globs(&t, &l.exclude, &l.n_exclude, optarg); break;
        case 'T': rc = copt_number(&t, "--threads", optarg, 0, 1024, &threads); break;
        default: rc = tool_usage(&t, "bad option");
        }
        if (rc) goto out;
    }
    if ((rc = tool_positional(&t, argc, argv, 1))) goto out;
    if (!data) {
        rc = tool_usage(&t, "--data SPEC is required");
        goto out;
    }
    if (refine && strcmp(refine, "data") != 0) {
        rc = tool_usage(&t, "--refine: only 'data' is known");
        goto out;
    }
    double sp[64];
    size_t nsp = 0;
    {
        char *dup = strdup(sp_arg), *save = NULL;
        for (char *tok = strtok_r(dup, ",", &save); tok && nsp < 64; tok = strtok_r(NULL, ",", &save))
            if ((rc = copt_number(&t, "--sparsities", tok, 0, 1, &sp[nsp++]))) break;
        free(dup);
        if (rc) goto out;
        if (!nsp) {
            rc = tool_usage(&t, "--sparsities is empty");
            goto out;
        }
    }
    opt_model *m;
    if ((rc = tool_load(&t, NULL, &m))) goto out;
    opt_error e = {0};
    opt_dataset *ds = NULL;
    opt_dataset_opts dopts = {.limit = (size_t)limit};
    if (opt_dataset_open(data, &dopts, &ds, &e) != OPT_OK) {
        rc = tool_fail(&t, NULL, &e);
        opt_model_free(m);
        goto out;
    }
    opt_calib_batches cb = {0};
    if (refine && (rc = copt_calib_load(&t, m, calib, (size_t)samples, 0, (int)threads, &cb))) goto done;
    opt_weight_filter f = {l.include, l.n_include, l.exclude, l.n_exclude};
    opt_weight_ref *refs = NULL;
    size_t nw = 0;
    double base;
    if (opt_weights_find(m->graph, &f, &refs, &nw, &e) != OPT_OK) {
        rc = tool_fail(&t, tool_in_name(&t), &e);
        goto done;
    }
    if ((rc = eval_model(&t, m, ds, (size_t)batch, (int)threads, &base))) goto done;
    static const char *cols[] = {"layer", "op", "weight", "weights", "sparsity", "top1", "drop"};
    tool_table tb;
    tool_table_init(&tb, "sensitivity", 7, cols);
    tool_table_row(&tb, "(none)\t\t\t\t0\t%.4f\t0.00", base);
    for (size_t i = 0; i < nw && !rc; i++) {
        float *orig = NULL, *bias = NULL;
        uint64_t n, nb = 0;
        const char *name = refs[i].t->name;
        int dt = refs[i].t->data_type;
        /* The bias may move under --refine: keep it too. */
        opt_tensor *bt = refs[i].node->n_inputs > 2 && *refs[i].node->inputs[2]
                             ? opt_graph_initializer(m->graph, refs[i].node->inputs[2]) : NULL;
        if (opt_tensor_to_f32_alloc(refs[i].t, &orig, &n, &e) != OPT_OK ||
            (bt && opt_tensor_to_f32_alloc(bt, &bias, &nb, &e) != OPT_OK)) {
            rc = tool_fail(&t, tool_in_name(&t), &e);
            free(orig);
            break;
        }
        int bdt = bt ? bt->data_type : 0;
        for (size_t k = 0; k < nsp && !rc; k++) {
            const char *inc[1] = {name};
            opt_layer_value lv = {name, sp[k]};
            opt_prune_opts po = {.mode = OPT_PRUNE_SPARSITY, .value = sp[k], .per_layer = true,
                                 .layers = &lv, .n_layers = 1, .filter = {inc, 1, NULL, 0},
                                 .refine = refine ? &cb : NULL};
            opt_layer_stat *st = NULL;
            size_t ns = 0;
            double top1;
            if (opt_prune(m, &po, &st, &ns, &e) != OPT_OK) rc = tool_fail(&t, tool_in_name(&t), &e);
            opt_layer_stats_free(st, ns);
            if (!rc) rc = eval_model(&t, m, ds, (size_t)batch, (int)threads, &top1);
            if (!rc)
                tool_table_row(&tb, "%s\t%s\t%s\t%llu\t%g\t%.4f\t%.2f",
                               refs[i].node->name ? refs[i].node->name : name, refs[i].node->op_type, name,
                               (unsigned long long)refs[i].numel, sp[k], top1, 100 * (base - top1));
            if (opt_tensor_set_f32(refs[i].t, dt, orig, n, &e) != OPT_OK ||
                (bt && opt_tensor_set_f32(bt, bdt, bias, nb, &e) != OPT_OK))
                rc = tool_fail(&t, tool_in_name(&t), &e);
            tool_progress(&t, "sensitivity", i * nsp + k + 1, nw * nsp);
        }
        free(orig);
        free(bias);
    }
    if (!rc) {
        if (!t.quiet) tool_table_print(&tb, stderr);
        FILE *fo = t.out && strcmp(t.out, "-") ? fopen(t.out, "w") : stdout;
        if (!fo) {
            opt_error_set(&e, OPT_ERR_IO, "cannot write");
            rc = tool_fail(&t, t.out, &e);
        } else {
            for (size_t j = 0; j < tb.ncols; j++) fprintf(fo, "%s%s", j ? "," : "", tb.cols[j]);
            fputc('\n', fo);
            for (size_t r = 0; r < tb.nrows; r++)
                for (size_t j = 0; j < tb.ncols; j++)
                    fprintf(fo, "%s%s", tb.cells[r * tb.ncols + j], j + 1 < tb.ncols ? "," : "\n");
            if (fo != stdout && fclose(fo) != 0) {
                opt_error_set(&e, OPT_ERR_IO, "write failed");
                rc = tool_fail(&t, t.out, &e);
            }
        }
        if (!rc && t.report) rc = tool_report_write(&t, &tb, 1);
    }
    tool_table_free(&tb);
done:
    free(refs);
    copt_calib_free(&cb);
    opt_dataset_free(ds);
    opt_model_free(m);
out:
    copt_lists_free(&l);
    return rc;
}
