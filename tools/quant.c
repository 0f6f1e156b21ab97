/*
 * tools/quant.c — `mopt quant --int8`: post-training INT8 quantization into QDQ form.
 *
 * Ranges come from a calibration table (--table, from `mopt calib`) or from calibration data
 * (--data, calibrated here on mopt's executor). libopt/passes/quant.c does the rewrite. With
 * --eval and --max-drop, calib/fallback.c returns the most harmful quantized nodes to float until
 * the top-1 drop holds (exit 3 when it cannot).
 */
#include "tools/precision.h"
#include "calib/collect.h"
#include "calib/eval.h"
#include "calib/fallback.h"
#include "libopt/passes/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: mopt quant --int8 [options] [MODEL] (--table TABLE.csv | --data SPEC) [-o OUT]\n"
    "\n"
    "Writes a QDQ (QuantizeLinear/DequantizeLinear) INT8 model: Conv, ConvTranspose, MatMul and\n"
    "Gemm get int8 weights (symmetric, per output channel), int32 biases and quantized input\n"
    "activations; an Add of two quantized activations is quantized too; every other op stays\n"
    "float32. ONNX Runtime and TensorRT run the result.\n"
    "\n"
    "  --int8             quantize to INT8 (the only mode)\n"
    "  --table FILE       ranges from a calibration table (mopt calib)\n"
    "  --data SPEC        calibrate on these data (see mopt-calib(1) for SPEC; NAME=SPEC once\n"
    "                     per input for a model of several)\n"
    "  --method M         with --data: minmax (default), percentile, entropy or mse\n"
    "  --percentile P     for --method percentile (default 99.999)\n"
    "  --act T            activations uint8 (asymmetric, default) or int8 (symmetric)\n"
    "  --per-tensor       one weight scale per tensor instead of per output channel\n"
    "  --weights-only     quantize weights only; activations stay float\n"
    "  --no-fold          keep BatchNormalization after Conv (default: fold it into the Conv)\n"
    "  --exclude LIST     node names or op types to leave float (comma-separated, repeatable)\n"
    "  --eval SPEC        labelled data: report top-1 of the float and quantized models\n"
    "  --max-drop P       with --data and --eval: return the most harmful nodes to float, one\n"
    "                     at a time, until the top-1 drop is at most P percentage points\n"
    PREC_DATA_HELP
    "  -o, --output FILE  output model (default: stdout)\n"
    "  --report FILE      also write the per-node table to FILE (.json, .csv or .md)\n"
    "  -q, --quiet        no summary on stderr\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status: 0 success, 1 bad model, table or data (nothing is written), 2 usage,\n"
    "3 the --max-drop gate cannot be met.\n";

typedef struct qtool {
    const uint8_t *bytes;       /* the float model, serialized, to rebuild from */
    size_t len;
    opt_quant_opts qo;
    opt_strmap ranges;          /* tensor -> index into tab */
    opt_calib_table tab;
    char **exclude;
    size_t n_exclude;
} qtool;

static bool lookup(void *ctx, const char *tensor, float *lo, float *hi)
{
    qtool *q = ctx;
    size_t i;
    if (!opt_strmap_get(&q->ranges, tensor, &i)) return false;
    *lo = q->tab.e[i].min;
    *hi = q->tab.e[i].max;
    return true;
}

/* Builds the quantized model from the float bytes, keeping keep_float float (fallback). */
static opt_status build(void *ctx, const char *const *keep_float, size_t n_keep, const char *const *only,
                        size_t n_only, opt_model **out, opt_error *err)
{
    qtool *q = ctx;
    opt_model *m = NULL;
    OPT_TRY(opt_onnx_parse(q->bytes, q->len, NULL, "model", NULL, &m, err));
    opt_quant_opts o = q->qo;
    const char **ex = prec_names_concat(q->exclude, q->n_exclude, keep_float, n_keep);
    if (!ex) {
        opt_model_free(m);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    o.exclude = ex;
    o.n_exclude = q->n_exclude + n_keep;
    o.only = only;
    o.n_only = n_only;
    opt_status s = opt_quant_int8(m, &o, NULL, err);
    free(ex);
    if (s != OPT_OK) {
        opt_model_free(m);
        return s;
    }
    *out = m;
    return OPT_OK;
}

/* Every value name of g (inputs, initializers, node outputs) into map. */
static bool names_of(const opt_graph *g, opt_strmap *map)
{
    for (size_t i = 0; i < g->n_inputs; i++)
        if (g->inputs[i]->name && !opt_strmap_put(map, g->inputs[i]->name, 0)) return false;
    for (size_t i = 0; i < g->n_initializers; i++)
        if (g->initializers[i]->name && !opt_strmap_put(map, g->initializers[i]->name, 0)) return false;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i]->n_outputs; k++)
            if (g->nodes[i]->outputs[k][0] && !opt_strmap_put(map, g->nodes[i]->outputs[k], 0)) return false;
    return true;
}

static void log_line(void *ctx, const char *line)
{
    tool_note(ctx, "%s", line);
}

int cmd_quant(int argc, char **argv)
{
    tool_opts t = {.cmd = "quant", .argc = argc, .argv = argv};
    prec_data_opts d = {0};
    qtool q = {0};
    bool int8 = false, has_drop = false, no_fold = false;
    size_t n_folded = 0;
    double max_drop = 0;
    const char *table = NULL, *eval = NULL;
    prec_specs data = {0};
    opt_range_opts ro = {.method = OPT_CALIB_MINMAX, .qdtype = OPT_DT_UINT8};
    static const struct option longopts[] = {
        {"int8", no_argument, NULL, 'I'},
        {"table", required_argument, NULL, 'T'},
        {"data", required_argument, NULL, 'd'},
        {"method", required_argument, NULL, 'm'},
        {"percentile", required_argument, NULL, 'p'},
        {"act", required_argument, NULL, 'a'},
        {"per-tensor", no_argument, NULL, 'P'},
        {"weights-only", no_argument, NULL, 'W'},
        {"no-fold", no_argument, NULL, 'F'},
        {"exclude", required_argument, NULL, 'x'},
        {"eval", required_argument, NULL, 'e'},
        {"max-drop", required_argument, NULL, 'D'},
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
        case 'I': int8 = true; break;
        case 'T': table = optarg; break;
        case 'd':
            if ((r = prec_spec_add(&t, &data, optarg))) return r;
            break;
        case 'e': eval = optarg; break;
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
        case 'P': q.qo.per_tensor = true; break;
        case 'W': q.qo.weights_only = true; break;
        case 'F': no_fold = true; break;
        case 'x':
            if (!prec_list_add(optarg, &q.exclude, &q.n_exclude)) return EXIT_FAIL;
            break;
        case 'D':
            if (!prec_parse_double(optarg, &max_drop) || max_drop < 0 || max_drop > 100)
                return tool_usage(&t, "--max-drop wants percentage points in [0, 100], not '%s'", optarg);
            has_drop = true;
            break;
        default: return tool_usage(&t, "bad option");
        }
    }
    if ((r = tool_positional(&t, argc, argv, 1))) return r;
    if (!int8) return tool_usage(&t, "say --int8 (the only mode)");
    if (table && data.n && !has_drop) return tool_usage(&t, "give --table or --data, not both");
    if (!table && !data.n && !q.qo.weights_only) return tool_usage(&t, "--table FILE or --data SPEC is required");
    if (has_drop && (!data.n || !eval)) return tool_usage(&t, "--max-drop needs --data CAL and --eval EVAL");
    if (table && (ro.method != OPT_CALIB_MINMAX || ro.percentile)) return tool_usage(&t, "--method goes with --data");
    q.qo.act_dtype = ro.qdtype;
    q.qo.range = lookup;
    q.qo.range_ctx = &q;
    q.qo.exclude = (const char *const *)q.exclude;
    q.qo.n_exclude = q.n_exclude;

    opt_model *m = NULL, *out = NULL;
    opt_feed cal = {0};
    opt_dataset *ev = NULL, *cal1 = NULL;
    opt_calib_stats st;
    opt_calib_stats_init(&st, opt_calib_method_needs_hist(ro.method));
    opt_quant_report rep = {0};
    opt_fallback_result fr = {0};
    opt_error e = {0};
    uint8_t *bytes = NULL;
    const char **needed = NULL;
    size_t n_needed = 0;
    if ((r = tool_load(&t, NULL, &m))) goto done;
    if (table) {
        if (opt_calib_table_read_csv(table, &q.tab, &e) != OPT_OK) {
            r = tool_fail(&t, NULL, &e);
            goto done;
        }
        opt_strmap names = {0};
        if (!names_of(m->graph, &names)) {
            opt_strmap_free(&names);
            goto nomem;
        }
        for (size_t i = 0; i < q.tab.n; i++)
            if (!opt_strmap_get(&names, q.tab.e[i].tensor, NULL)) {
                opt_strmap_free(&names);
                opt_error_set(&e, OPT_ERR_DATA, "%s: tensor '%s' is not in the model (a table made for another model?)",
                              table, q.tab.e[i].tensor);
                r = tool_fail(&t, tool_in_name(&t), &e);
                goto done;
            }
        opt_strmap_free(&names);
    }
    if (!no_fold && opt_quant_fold_bn(m, &n_folded, &e) != OPT_OK) goto fail;
    if (opt_onnx_serialize(m, &bytes, &q.len, &e) != OPT_OK) goto fail;
    q.bytes = bytes;
    if (data.n && (r = prec_open_feed(&t, m, &data, &d, &cal))) goto done;
    if (has_drop && (r = prec_feed_single(&t, &cal, "--max-drop", &cal1))) goto done;
    if (!table && data.n) {
        if (!q.qo.weights_only) {
            if (opt_quant_needed(m, &q.qo, &needed, &n_needed, &e) != OPT_OK) goto fail;
            opt_collect_opts co = {.batch = d.batch, .threads = d.threads, .only = needed, .n_only = n_needed,
                                   .progress = prec_progress, .progress_ctx = &t};
            if (opt_calib_collect_feed(m, &cal, &co, &st, &e) != OPT_OK) goto fail;
            ro.threads = d.threads;
            if (opt_calib_table_from_stats(&st, &ro, &q.tab, &e) != OPT_OK) goto fail;
        }
    }
    for (size_t i = 0; i < q.tab.n; i++)
        if (!opt_strmap_put(&q.ranges, q.tab.e[i].tensor, i)) goto nomem;

    /* The full quantization, for the report (and the output when there is no gate). */
    if (opt_onnx_parse(q.bytes, q.len, NULL, tool_in_name(&t), NULL, &out, &e) != OPT_OK) goto fail;
    if (opt_quant_int8(out, &q.qo, &rep, &e) != OPT_OK) goto fail;

    char b[64];
    if (eval) {
        if ((r = prec_open(&t, eval, &d, true, &ev))) goto done;
        if (!opt_dataset_has_labels(ev)) {
            opt_error_set(&e, OPT_ERR_DATA, "--eval %s has no labels", eval);
            r = tool_fail(&t, NULL, &e);
            goto done;
        }
    }
    if (has_drop) {
        opt_fallback_opts fo = {.max_drop = max_drop, .threads = d.threads, .log = log_line, .log_ctx = &t};
        if (t.quiet) fo.log = NULL;
        if (opt_fallback_run(m, (const char *const *)rep.quantized_nodes, rep.n_quantized, build, &q, cal1, ev, &fo, &fr,
                             &e) != OPT_OK)
            goto fail;
        opt_model_free(out);
        out = fr.model;
        fr.model = NULL;
        if (!fr.met) {
            fprintf(stderr,
                    "mopt quant: %s: top-1 drop %.2f points exceeds --max-drop %.2f with all but one of the quantized nodes returned to float; "
                    "nothing written\n",
                    tool_in_name(&t), 100 * (fr.top1_float - fr.top1_final), max_drop);
            r = EXIT_GATE;
            goto done;
        }
        /* Recount what the final model holds. */
        const char **ex = prec_names_concat(q.exclude, q.n_exclude,
                                            (const char *const *)fr.float_nodes, fr.n_float);
        if (!ex) goto nomem;
        opt_quant_opts o2 = q.qo;
        o2.exclude = ex;
        o2.n_exclude = q.n_exclude + fr.n_float;
        opt_model *again = NULL;
        opt_quant_report_free(&rep);
        opt_status s = opt_onnx_parse(q.bytes, q.len, NULL, tool_in_name(&t), NULL, &again, &e);
        if (s == OPT_OK) s = opt_quant_int8(again, &o2, &rep, &e);
        free(ex);
        if (s != OPT_OK) {
            opt_model_free(again);
            goto fail;
        }
        opt_model_free(out);
        out = again;
    } else if (eval) {
        opt_exec *ex[2] = {NULL, NULL};
        opt_exec_opts eo = {.threads = d.threads};
        opt_eval_result res[2];
        opt_eval_opts evo = {.batch = 256};
        const char *nm[2] = {"float32", "int8"};
        if (opt_exec_new(m, &eo, &ex[0], &e) != OPT_OK || opt_exec_new(out, &eo, &ex[1], &e) != OPT_OK ||
            opt_eval_models(ex, nm, 2, ev, &evo, res, &e) != OPT_OK) {
            opt_exec_free(ex[0]);
            opt_exec_free(ex[1]);
            goto fail;
        }
        opt_exec_free(ex[0]);
        opt_exec_free(ex[1]);
        fr.top1_float = res[0].top1;
        fr.top1_final = res[1].top1;
        tool_note(&t, "top-1 on %zu samples: float32 %.2f%%, int8 %.2f%% (drop %.2f points)", res[0].samples,
                  100 * res[0].top1, 100 * res[1].top1, 100 * (res[0].top1 - res[1].top1));
    }
    if ((r = tool_save(&t, out, NULL, true))) goto done;

    size_t nq = rep.n_quantized;
    if (n_folded) tool_note(&t, "folded %zu BatchNormalization into the Conv before them", n_folded);
    tool_note(&t, "quantized %zu/%zu nodes to int8 (%zu weights, %zu biases, %zu activations; %s activations, %s weights)",
              nq, rep.n_candidates, rep.n_weights, rep.n_biases, rep.n_activations,
              ro.qdtype == OPT_DT_INT8 ? "int8 symmetric" : "uint8 asymmetric",
              q.qo.per_tensor ? "per-tensor" : "per-channel");
    for (size_t i = 0; i < rep.n_float; i++) {
        const char *why = rep.float_reasons[i];
        for (size_t k = 0; k < fr.n_float; k++)
            if (strcmp(fr.float_nodes[k], rep.float_nodes[i]) == 0) why = fr.why[k];
        tool_note(&t, "  float: %s (%s%s)", rep.float_nodes[i], why == rep.float_reasons[i] ? "" : "accuracy: ", why);
    }
    if (has_drop)
        tool_note(&t, "top-1: float32 %.2f%%, int8 %.2f%% (drop %.2f points, gate %.2f)", 100 * fr.top1_float,
                  100 * fr.top1_final, 100 * (fr.top1_float - fr.top1_final), max_drop);
    (void)b;
    if (t.report) {
        static const char *cols[] = {"node", "status", "reason"};
        tool_table tb;
        tool_table_init(&tb, "quantization", 3, cols);
        for (size_t i = 0; i < rep.n_quantized; i++) tool_table_row(&tb, "%s\tint8\t", rep.quantized_nodes[i]);
        for (size_t i = 0; i < rep.n_float; i++) {
            const char *why = rep.float_reasons[i];
            for (size_t k = 0; k < fr.n_float; k++)
                if (strcmp(fr.float_nodes[k], rep.float_nodes[i]) == 0) why = fr.why[k];
            tool_table_row(&tb, "%s\tfloat\t%s", rep.float_nodes[i], why);
        }
        r = tool_report_write(&t, &tb, 1);
        tool_table_free(&tb);
    }
    goto done;
nomem:
    opt_error_set(&e, OPT_ERR_NOMEM, "out of memory");
fail:
    r = tool_fail(&t, tool_in_name(&t), &e);
done:
    free(needed);
    free(bytes);
    opt_fallback_result_free(&fr);
    opt_quant_report_free(&rep);
    opt_calib_stats_free(&st);
    opt_calib_table_free(&q.tab);
    opt_strmap_free(&q.ranges);
    prec_list_free(q.exclude, q.n_exclude);
    opt_feed_free(&cal);
    opt_dataset_free(ev);
    opt_model_free(out);
    opt_model_free(m);
    return r;
}
