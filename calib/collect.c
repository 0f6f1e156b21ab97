/*
 * calib/collect.c — statistics of a model's activations over a dataset (see collect.h).
 */
#include "calib/collect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct obs {
    opt_calib_stats *st;
    opt_strmap only;
    bool filter;
    opt_status status;
    opt_error err;
} obs;

static void observe(void *ctx, const char *name, const opt_node *producer, const opt_array *a)
{
    (void)producer;
    obs *o = ctx;
    if (o->status != OPT_OK) return;
    if (a->dtype != OPT_DT_FLOAT && a->dtype != OPT_DT_FLOAT16 && a->dtype != OPT_DT_BFLOAT16 &&
        a->dtype != OPT_DT_DOUBLE)
        return;
    if (o->filter && !opt_strmap_get(&o->only, name, NULL)) return;
    o->status = opt_calib_stats_add_array(o->st, name, a, &o->err);
}

opt_status opt_calib_collect(const opt_model *m, opt_dataset *ds, const opt_collect_opts *o,
                             opt_calib_stats *st, opt_error *err)
{
    static const opt_collect_opts defaults = {0};
    if (!o) o = &defaults;
    obs ob = {.st = st, .status = OPT_OK};
    if (o->only) {
        ob.filter = true;
        for (size_t i = 0; i < o->n_only; i++)
            if (!opt_strmap_put(&ob.only, o->only[i], i)) {
                opt_strmap_free(&ob.only);
                return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            }
    }
    opt_exec_opts eo = {.threads = o->threads, .observe = observe, .observe_ctx = &ob};
    opt_exec *e = NULL;
    opt_status s = opt_exec_new(m, &eo, &e, err);
    if (s != OPT_OK) goto done;
    if (opt_exec_n_inputs(e) != 1) {
        s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "calibration needs a model with one input (this one has %zu)",
                          opt_exec_n_inputs(e));
        goto done;
    }
    int ndim;
    int64_t dims[OPT_MAX_DIMS];
    const char *in_name = opt_exec_input_name(e, 0);
    int dt = opt_exec_input_shape(e, 0, &ndim, dims);
    if (dt != 0 && dt != OPT_DT_FLOAT) {
        s = opt_error_set(err, OPT_ERR_DATA, "model input '%s' is %s; calibration data are float32", in_name,
                          opt_dtype_short(dt));
        goto done;
    }
    if ((s = opt_dataset_fit(ds, in_name, dt, ndim, dims, err)) != OPT_OK) goto done;
    if ((s = opt_dataset_rewind(ds, err)) != OPT_OK) goto done;
    size_t bs = o->batch ? o->batch : 64, total = opt_dataset_count(ds), done_n = 0;
    if (ndim > 0 && dims[0] > 0) bs = (size_t)dims[0];
    size_t n_out = opt_exec_n_outputs(e);
    opt_array *outs = calloc(n_out ? n_out : 1, sizeof *outs);
    if (!outs) {
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        opt_array batch, view;
        size_t got = 0;
        if ((s = opt_dataset_next_batch(ds, bs, &batch, NULL, &got, err)) != OPT_OK || got == 0) break;
        if ((s = opt_batch_fit(&batch, opt_dataset_name(ds), in_name, ndim, dims, &view, err)) != OPT_OK) break;
        if (!ob.filter || opt_strmap_get(&ob.only, in_name, NULL))
            if ((s = opt_calib_stats_add_array(st, in_name, &view, err)) != OPT_OK) break;
        if ((s = opt_exec_run(e, &view, 1, outs, n_out, err)) != OPT_OK) break;
        for (size_t i = 0; i < n_out; i++) opt_array_free(&outs[i]);
        if (ob.status != OPT_OK) {
            s = ob.status;
            if (err) *err = ob.err;
            break;
        }
        done_n += got;
        if (o->progress) o->progress(o->progress_ctx, done_n, total);
    }
    free(outs);
done:
    opt_exec_free(e);
    opt_strmap_free(&ob.only);
    return s;
}

opt_status opt_calib_table_from_stats(const opt_calib_stats *st, const opt_range_opts *ro,
                                      opt_calib_table *t, opt_error *err)
{
    for (size_t i = 0; i < st->n; i++) {
        const opt_calib_acc *a = &st->acc[i];
        if (a->count == a->nonfinite) continue;
        float lo, hi, scale;
        int32_t zp;
        OPT_TRY(opt_calib_range(a, ro, &lo, &hi, err));
        opt_qparams(lo, hi, ro->qdtype ? ro->qdtype : OPT_DT_UINT8, &scale, &zp);
        OPT_TRY(opt_calib_table_add(t, a->name, opt_calib_method_name(ro->method), lo, hi, scale, zp, err));
    }
    return OPT_OK;
}
