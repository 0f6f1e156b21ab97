/*
 * tools/amp.c — `mopt amp --to fp16|bf16`: automatic mixed precision.
 *
 * libopt/passes/amp.c classes the nodes, minimises casts and rewrites the model. With --data the
 * model first runs on mopt's executor over the data: nodes whose activations overflow the half
 * type, or lose too many values to underflow, stay float32. With --eval and --max-drop,
 * calib/fallback.c returns the most harmful converted nodes to float32 until the top-1 drop holds.
 */
#include "tools/precision.h"
#include "calib/collect.h"
#include "calib/eval.h"
#include "calib/fallback.h"
#include "libopt/passes/amp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: mopt amp [--to fp16|bf16] [options] [MODEL] [-o OUT]\n"
    "\n"
    "Converts float32 nodes and weights to float16 (default) or bfloat16 and inserts Cast nodes\n"
    "at the precision boundaries, as TensorFlow's auto-mixed-precision pass does. Op lists:\n"
    "allow (Conv, ConvTranspose, MatMul, Gemm, Einsum: always half), infer (element-wise,\n"
    "activations, pooling, reshape-like: follow their neighbours, choosing the fewest casts),\n"
    "deny (Softmax, Exp, Log, Pow, reductions, LayerNormalization, Resize, ...: float32).\n"
    "Weights beyond the half range are clamped, with a warning that names them.\n"
    "\n"
    "  --to T             fp16 (default) or bf16\n"
    "  --keep-io          keep model inputs and outputs float32\n"
    "  --all              convert every node whose ONNX schema accepts the half type\n"
    "  --allow OPS        add op types to the allow list (comma-separated, repeatable)\n"
    "  --deny OPS         add op types to the deny list\n"
    "  --exclude-node N   keep these nodes float32\n"
    "  --data SPEC        run the model on these data first: nodes whose activations exceed\n"
    "                     the half range (65504 for fp16) or underflow stay float32\n"
    "                     (NAME=SPEC once per input for a model of several)\n"
    "  --underflow F      with --data: the share of non-zero values that may flush to zero\n"
    "                     in fp16 before a node stays float32 (default 0.01)\n"
    "  --eval SPEC        labelled data: report top-1 of the float32 and converted models\n"
    "  --max-drop P       with --data and --eval: return the most harmful nodes to float32,\n"
    "                     one at a time, until the top-1 drop is at most P percentage points\n"
    PREC_DATA_HELP
    "  -o, --output FILE  output model (default: stdout)\n"
    "  --report FILE      also write the per-op table to FILE (.json, .csv or .md)\n"
    "  -q, --quiet        no summary on stderr\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status: 0 success, 1 bad model or data (nothing is written), 2 usage,\n"
    "3 the --max-drop gate cannot be met.\n";

typedef struct atool {
    const uint8_t *bytes;
    size_t len;
    opt_amp_opts ao;
    char **allow, **deny, **exclude;
    size_t n_allow, n_deny, n_exclude;
    char **keep, **reasons;
    size_t n_keep;
} atool;

static opt_status build(void *ctx, const char *const *keep_float, size_t n_keep, const char *const *only,
                        size_t n_only, opt_model **out, opt_error *err)
{
    atool *a = ctx;
    opt_model *m = NULL;
    OPT_TRY(opt_onnx_parse(a->bytes, a->len, NULL, "model", NULL, &m, err));
    opt_amp_opts o = a->ao;
    const char **ex = prec_names_concat(a->exclude, a->n_exclude, keep_float, n_keep);
    if (!ex) {
        opt_model_free(m);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    o.exclude = ex;
    o.n_exclude = a->n_exclude + n_keep;
    o.only = only;
    o.n_only = n_only;
    opt_status s = opt_amp_convert(m, &o, NULL, err);
    free(ex);
    if (s != OPT_OK) {
        opt_model_free(m);
        return s;
    }
    *out = m;
    return OPT_OK;
}

/* Why report entry i stayed float32: the fallback's measurement for nodes it returned. */
static const char *reason_of(const opt_amp_report *rep, const opt_fallback_result *fr, size_t i)
{
    static char buf[600];
    for (size_t k = 0; k < fr->n_float; k++)
        if (strcmp(fr->float_nodes[k], rep->float_nodes[i]) == 0) {
            snprintf(buf, sizeof buf, "accuracy: %s", fr->why[k]);
            return buf;
        }
    return rep->float_reasons[i];
}

static void log_line(void *ctx, const char *line)
{
    tool_note(ctx, "%s", line);
}

static bool push2(atool *a, const char *name, const char *why)
{
    char **k = realloc(a->keep, (a->n_keep + 1) * sizeof *k);
    if (k) a->keep = k;
    char **r = realloc(a->reasons, (a->n_keep + 1) * sizeof *r);
    if (r) a->reasons = r;
    if (!k || !r) return false;
    a->keep[a->n_keep] = opt_strdup(name);
    a->reasons[a->n_keep] = opt_strdup(why);
    a->n_keep++;
    return true;
}

int cmd_amp(int argc, char **argv)
{
    tool_opts t = {.cmd = "amp", .argc = argc, .argv = argv};
    prec_data_opts d = {0};
    atool a = {0};
    bool has_drop = false;
    double max_drop = 0, underflow = 0.01;
    const char *eval = NULL;
    prec_specs data = {0};
    a.ao.to = OPT_DT_FLOAT16;
    static const struct option longopts[] = {
        {"to", required_argument, NULL, 't'},
        {"keep-io", no_argument, NULL, 'k'},
        {"all", no_argument, NULL, 'A'},
        {"allow", required_argument, NULL, 'a'},
        {"deny", required_argument, NULL, 'n'},
        {"exclude-node", required_argument, NULL, 'x'},
        {"data", required_argument, NULL, 'd'},
        {"underflow", required_argument, NULL, 'u'},
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
        case 't':
            if (strcmp(optarg, "fp16") == 0 || strcmp(optarg, "float16") == 0) a.ao.to = OPT_DT_FLOAT16;
            else if (strcmp(optarg, "bf16") == 0 || strcmp(optarg, "bfloat16") == 0) a.ao.to = OPT_DT_BFLOAT16;
            else return tool_usage(&t, "--to wants fp16 or bf16, not '%s'", optarg);
            break;
        case 'k': a.ao.keep_io = true; break;
        case 'A': a.ao.all = true; break;
        case 'a':
            if (!prec_list_add(optarg, &a.allow, &a.n_allow)) return EXIT_FAIL;
            break;
        case 'n':
            if (!prec_list_add(optarg, &a.deny, &a.n_deny)) return EXIT_FAIL;
            break;
        case 'x':
            if (!prec_list_add(optarg, &a.exclude, &a.n_exclude)) return EXIT_FAIL;
            break;
        case 'd':
            if ((r = prec_spec_add(&t, &data, optarg))) return r;
            break;
        case 'e': eval = optarg; break;
        case 'u':
            if (!prec_parse_double(optarg, &underflow) || underflow < 0 || underflow > 1)
                return tool_usage(&t, "--underflow wants a fraction in [0, 1], not '%s'", optarg);
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
    if (has_drop && (!data.n || !eval)) return tool_usage(&t, "--max-drop needs --data CAL and --eval EVAL");
    a.ao.allow = (const char *const *)a.allow;
    a.ao.n_allow = a.n_allow;
    a.ao.deny = (const char *const *)a.deny;
    a.ao.n_deny = a.n_deny;
    a.ao.exclude = (const char *const *)a.exclude;
    a.ao.n_exclude = a.n_exclude;
    const char *tname = a.ao.to == OPT_DT_FLOAT16 ? "float16" : "bfloat16";
    double lim = a.ao.to == OPT_DT_FLOAT16 ? 65504.0 : 3.3895313892515355e38;

    opt_model *m = NULL, *out = NULL;
    opt_feed cal = {0};
    opt_dataset *ev = NULL, *cal1 = NULL;
    opt_calib_stats st;
    opt_calib_stats_init(&st, false);
    opt_amp_report rep = {0};
    opt_fallback_result fr = {0};
    opt_error e = {0};
    uint8_t *bytes = NULL;
    if ((r = tool_load(&t, NULL, &m))) goto done;
    if (opt_onnx_serialize(m, &bytes, &a.len, &e) != OPT_OK) goto fail;
    a.bytes = bytes;
    if (data.n) {
        if ((r = prec_open_feed(&t, m, &data, &d, &cal))) goto done;
        if (has_drop && (r = prec_feed_single(&t, &cal, "--max-drop", &cal1))) goto done;
        opt_collect_opts co = {.batch = d.batch, .threads = d.threads, .progress = prec_progress, .progress_ctx = &t};
        if (opt_calib_collect_feed(m, &cal, &co, &st, &e) != OPT_OK) goto fail;
        for (size_t i = 0; i < st.n; i++) {
            const opt_calib_acc *acc = &st.acc[i];
            char why[256];
            double amax = fmax(fabs(acc->min), fabs(acc->max));
            uint64_t nz = acc->count - acc->zeros - acc->nonfinite;
            if (acc->min <= acc->max && amax > lim)
                snprintf(why, sizeof why, "activation '%s' reaches %.4g, beyond %s's %.6g", acc->name, amax, tname, lim);
            else if (a.ao.to == OPT_DT_FLOAT16 && nz && (double)acc->f16_flush / (double)nz > underflow)
                snprintf(why, sizeof why, "activation '%s': %.2f%% of its non-zero values flush to zero in float16",
                         acc->name, 100.0 * (double)acc->f16_flush / (double)nz);
            else
                continue;
            if (!push2(&a, acc->name, why)) goto nomem;
        }
        a.ao.keep_values = (const char *const *)a.keep;
        a.ao.keep_reasons = (const char *const *)a.reasons;
        a.ao.n_keep_values = a.n_keep;
    }
    if (opt_onnx_parse(a.bytes, a.len, NULL, tool_in_name(&t), NULL, &out, &e) != OPT_OK) goto fail;
    if (opt_amp_convert(out, &a.ao, &rep, &e) != OPT_OK) goto fail;
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
        if (opt_fallback_run(m, (const char *const *)rep.converted_nodes, rep.n_converted, build, &a, cal1, ev, &fo, &fr,
                             &e) != OPT_OK)
            goto fail;
        opt_model_free(out);
        out = fr.model;
        fr.model = NULL;
        if (!fr.met) {
            fprintf(stderr,
                    "mopt amp: %s: top-1 drop %.2f points exceeds --max-drop %.2f with all but one of the converted nodes returned to float; "
                    "nothing written\n",
                    tool_in_name(&t), 100 * (fr.top1_float - fr.top1_final), max_drop);
            r = EXIT_GATE;
            goto done;
        }
        /* Recount what the final model holds. */
        opt_amp_report_free(&rep);
        opt_model *again = NULL;
        const char **keep = malloc((fr.n_float + 1) * sizeof *keep);
        if (!keep) goto nomem;
        for (size_t i = 0; i < fr.n_float; i++) keep[i] = fr.float_nodes[i];
        opt_amp_opts o2 = a.ao;
        const char **ex = prec_names_concat(a.exclude, a.n_exclude, keep, fr.n_float);
        if (!ex) {
            free(keep);
            goto nomem;
        }
        o2.exclude = ex;
        o2.n_exclude = a.n_exclude + fr.n_float;
        opt_status s = opt_onnx_parse(a.bytes, a.len, NULL, tool_in_name(&t), NULL, &again, &e);
        if (s == OPT_OK) s = opt_amp_convert(again, &o2, &rep, &e);
        free(ex);
        free(keep);
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
        const char *nm[2] = {"float32", tname};
        if (opt_exec_new(m, &eo, &ex[0], &e) != OPT_OK || opt_exec_new(out, &eo, &ex[1], &e) != OPT_OK ||
            opt_eval_models(ex, nm, 2, ev, &evo, res, &e) != OPT_OK) {
            opt_exec_free(ex[0]);
            opt_exec_free(ex[1]);
            goto fail;
        }
        opt_exec_free(ex[0]);
        opt_exec_free(ex[1]);
        tool_note(&t, "top-1 on %zu samples: float32 %.2f%%, %s %.2f%% (drop %.2f points; max abs output error %.3g)",
                  res[0].samples, 100 * res[0].top1, tname, 100 * res[1].top1, 100 * (res[0].top1 - res[1].top1),
                  res[1].max_abs);
    }
    if ((r = tool_save(&t, out, NULL, true))) goto done;

    if (rep.n_clamped && !t.quiet) {
        fprintf(stderr, "mopt amp: warning: values beyond %s's range were clamped in:", tname);
        for (size_t i = 0; i < rep.n_clamped; i++) fprintf(stderr, "%s %s", i ? "," : "", rep.clamped[i]);
        fputc('\n', stderr);
    }
    tool_note(&t, "converted %zu/%zu nodes to %s using %zu casts", rep.n_converted, rep.n_nodes, tname, rep.n_casts);
    if (!t.quiet) {
        for (size_t i = 0; i < rep.n_ops; i++)
            fprintf(stderr, "  %-24s %zu/%zu\n", rep.ops[i].op_type, rep.ops[i].converted, rep.ops[i].total);
        for (size_t i = 0; i < rep.n_float; i++)
            fprintf(stderr, "  float32: %s (%s)\n", rep.float_nodes[i], reason_of(&rep, &fr, i));
    }
    if (has_drop)
        tool_note(&t, "top-1: float32 %.2f%%, %s %.2f%% (drop %.2f points, gate %.2f)", 100 * fr.top1_float, tname,
                  100 * fr.top1_final, 100 * (fr.top1_float - fr.top1_final), max_drop);
    if (t.report) {
        static const char *cols[] = {"op_type", "converted", "total"};
        static const char *cols2[] = {"node", "reason"};
        tool_table tb[2];
        tool_table_init(&tb[0], "ops", 3, cols);
        tool_table_init(&tb[1], "kept float32", 2, cols2);
        for (size_t i = 0; i < rep.n_ops; i++)
            tool_table_row(&tb[0], "%s\t%zu\t%zu", rep.ops[i].op_type, rep.ops[i].converted, rep.ops[i].total);
        for (size_t i = 0; i < rep.n_float; i++)
            tool_table_row(&tb[1], "%s\t%s", rep.float_nodes[i], reason_of(&rep, &fr, i));
        r = tool_report_write(&t, tb, 2);
        tool_table_free(&tb[0]);
        tool_table_free(&tb[1]);
    }
    goto done;
nomem:
    opt_error_set(&e, OPT_ERR_NOMEM, "out of memory");
fail:
    r = tool_fail(&t, tool_in_name(&t), &e);
done:
    free(bytes);
    opt_fallback_result_free(&fr);
    opt_amp_report_free(&rep);
    opt_calib_stats_free(&st);
    prec_list_free(a.allow, a.n_allow);
    prec_list_free(a.deny, a.n_deny);
    prec_list_free(a.exclude, a.n_exclude);
    prec_list_free(a.keep, a.n_keep);
    prec_list_free(a.reasons, a.n_keep);
    opt_feed_free(&cal);
    opt_dataset_free(ev);
    opt_model_free(out);
    opt_model_free(m);
    return r;
}
