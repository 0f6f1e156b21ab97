/*
 * tools/compress_opts.c — see compress_opts.h.
 */
#include "tools/compress_opts.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int copt_number(const tool_opts *t, const char *opt, const char *arg, double lo, double hi, double *v)
{
    char *end;
    double x = strtod(arg, &end);
    if (end == arg || *end || !isfinite(x) || x < lo || x > hi)
        return tool_usage(t, "%s: '%s' is not a number in [%g, %g]", opt, arg, lo, hi);
    *v = x;
    return 0;
}

int copt_add_layer(const tool_opts *t, copt_lists *l, const char *arg, double lo, double hi)
{
    const char *eq = strrchr(arg, '=');
    if (!eq || eq == arg) return tool_usage(t, "--layer wants NAME=VALUE, not '%s'", arg);
    double v;
    int rc = copt_number(t, "--layer", eq + 1, lo, hi, &v);
    if (rc) return rc;
    opt_layer_value *p = realloc(l->layers, (l->n_layers + 1) * sizeof *p);
    char *name = strndup(arg, (size_t)(eq - arg));
    if (!p || !name) {
        free(name);
        return tool_usage(t, "out of memory");
    }
    l->layers = p;
    l->layers[l->n_layers++] = (opt_layer_value){name, v};
    return 0;
}

int copt_add_globs(const tool_opts *t, const char ***list, size_t *n, const char *arg)
{
    char *dup = strdup(arg), *save = NULL;
    if (!dup) return tool_usage(t, "out of memory");
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const char **p = realloc(*list, (*n + 1) * sizeof *p);
        if (!p) return tool_usage(t, "out of memory");
        *list = p;
        (*list)[(*n)++] = strdup(tok);
    }
    free(dup);
    return 0;
}

void copt_lists_free(copt_lists *l)
{
    for (size_t i = 0; i < l->n_layers; i++) free((char *)l->layers[i].name);
    for (size_t i = 0; i < l->n_include; i++) free((char *)l->include[i]);
    for (size_t i = 0; i < l->n_exclude; i++) free((char *)l->exclude[i]);
    free(l->layers);
    free(l->include);
    free(l->exclude);
    memset(l, 0, sizeof *l);
}

#include "calib/dataset.h"

/* The model's first input that is not an initializer, with its declared shape. */
static const opt_value_info *first_input(const opt_model *m)
{
    const opt_graph *g = m->graph;
    for (size_t i = 0; i < g->n_inputs; i++)
        if (!opt_graph_initializer(g, g->inputs[i]->name)) return g->inputs[i];
    return NULL;
}

int copt_calib_load(const tool_opts *t, const opt_model *m, const char *spec, size_t limit,
                    size_t batch, int threads, opt_calib_batches *cb)
{
    memset(cb, 0, sizeof *cb);
    opt_error e = {0};
    const opt_value_info *vi = first_input(m);
    if (!vi) {
        opt_error_set(&e, OPT_ERR_UNSUPPORTED, "the model has no input to feed --data to");
        return tool_fail(t, tool_in_name(t), &e);
    }
    int64_t dims[OPT_MAX_DIMS];
    int ndim = -1;
    if (vi->type && vi->type->shape && vi->type->shape->n_dim <= OPT_MAX_DIMS) {
        ndim = (int)vi->type->shape->n_dim;
        for (int d = 0; d < ndim; d++)
            dims[d] = vi->type->shape->dim[d].kind == OPT_DIM_VALUE ? vi->type->shape->dim[d].value : -1;
    }
    opt_dataset_opts dopts = {.limit = limit ? limit : 1000};
    opt_dataset *ds = NULL;
    if (opt_dataset_open(spec, &dopts, &ds, &e) != OPT_OK) return tool_fail(t, NULL, &e);
    size_t bs = batch ? batch : 250;
    if (ndim > 0 && dims[0] > 0) bs = (size_t)dims[0];
    size_t cap = (opt_dataset_count(ds) + bs - 1) / bs;
    opt_array *arr = calloc(cap + 1, sizeof *arr);
    size_t nb = 0;
    for (;;) {
        opt_array in;
        size_t got;
        if (!arr) {
            opt_error_set(&e, OPT_ERR_NOMEM, "out of memory");
            break;
        }
        if (opt_dataset_next_batch(ds, bs, &in, NULL, &got, &e) != OPT_OK) break;
        if (!got) break;
        opt_array view;
        if (opt_batch_fit(&in, opt_dataset_name(ds), vi->name, ndim, dims, &view, &e) != OPT_OK) break;
        if (nb == cap) break;
        arr[nb] = view;
        arr[nb].data = malloc(view.nbytes ? view.nbytes : 1);
        if (!arr[nb].data) {
            opt_error_set(&e, OPT_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(arr[nb].data, view.data, view.nbytes);
        nb++;
    }
    opt_dataset_free(ds);
    /* The reference for sequential refinement: a private copy of the model as loaded. */
    if (e.status == OPT_OK) {
        uint8_t *buf = NULL;
        size_t len = 0;
        opt_model *ref = NULL;
        if (opt_onnx_serialize(m, &buf, &len, &e) == OPT_OK &&
            opt_onnx_parse(buf, len, NULL, "reference", NULL, &ref, &e) == OPT_OK)
            cb->reference = ref;
        free(buf);
    }
    cb->arrays = arr;
    cb->n_batches = nb;
    cb->n_inputs = 1;
    cb->threads = threads;
    if (e.status != OPT_OK) {
        copt_calib_free(cb);
        return tool_fail(t, NULL, &e);
    }
    return 0;
}

void copt_calib_free(opt_calib_batches *cb)
{
    opt_array *a = (opt_array *)cb->arrays;
    for (size_t i = 0; a && i < cb->n_batches * cb->n_inputs; i++) free(a[i].data);
    free(a);
    opt_model_free((opt_model *)cb->reference);
    memset(cb, 0, sizeof *cb);
}

#include "calib/eval.h"

int copt_top1(const tool_opts *t, const opt_model *m, const char *spec, int threads, double *top1)
{
    opt_error e = {0};
    opt_dataset *ds = NULL;
    opt_exec *x = NULL;
    opt_exec_opts eo = {.threads = threads};
    opt_eval_opts vo = {.batch = 250};
    int rc = 0;
    if (opt_dataset_open(spec, NULL, &ds, &e) != OPT_OK) return tool_fail(t, NULL, &e);
    if (opt_exec_new(m, &eo, &x, &e) != OPT_OK || opt_eval_top1(x, ds, &vo, top1, &e) != OPT_OK)
        rc = tool_fail(t, tool_in_name(t), &e);
    opt_exec_free(x);
    opt_dataset_free(ds);
    return rc;
}

int copt_gate(const tool_opts *t, double base, double now, double max_drop)
{
    double drop = 100 * (base - now);
    if (drop > max_drop + 1e-9) {
        fprintf(stderr, "mopt %s: %s: top-1 %.2f%% -> %.2f%%, a drop of %.2f points exceeds --max-drop %.2f; nothing written\n",
                t->cmd, tool_in_name(t), 100 * base, 100 * now, drop, max_drop);
        return EXIT_GATE;
    }
    tool_note(t, "top-1 %.2f%% -> %.2f%% (%+.2f points, --max-drop %.2f)", 100 * base, 100 * now, -drop, max_drop);
    return 0;
}

int copt_calib_reference(const tool_opts *t, const char *path, opt_calib_batches *cb)
{
    opt_model *ref = NULL;
    opt_error e = {0};
    if (opt_onnx_load(path, NULL, &ref, &e) != OPT_OK) return tool_fail(t, path, &e);
    opt_model_free((opt_model *)cb->reference);
    cb->reference = ref;
    return 0;
}
