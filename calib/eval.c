/*
 * calib/eval.c — top-k accuracy, agreement and output error of models over one dataset stream.
 *
 * Each batch is read once and fed to every model, so memory holds one batch of inputs and one
 * batch of scores per model whatever the dataset size. Models whose input has a fixed batch dim
 * get chunks of that size (the last one zero-padded, its extra rows ignored).
 */
#include "calib/eval.h"

#include "formats/tensorfile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct mstate {
    opt_exec *e;
    const char *name;
    int ndim;
    int64_t dims[OPT_MAX_DIMS];
    int dtype;
    int64_t fixed_b;  /* 0 when the batch dim is symbolic */
    size_t C;
    float *scores;    /* [batch, C] */
    size_t scores_cap;
    double *times;
    size_t nt, tcap;
    float *pad;
    size_t pad_cap;
    char fallback[32];
} mstate;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void opt_eval_compare(const float *a, const float *b, size_t n, double *max_abs, double *max_rel)
{
    double ss = 0;
    size_t finite = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(b[i])) {
            ss += (double)b[i] * (double)b[i];
            finite++;
        }
    double rms = finite ? sqrt(ss / (double)finite) : 0;
    if (rms == 0) rms = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double x = a[i], y = b[i], d;
        if (isnan(x) && isnan(y)) d = 0;
        else if (x == y) d = 0; /* also equal infinities */
        else d = fabs(x - y);
        if (isnan(d)) d = INFINITY; /* NaN on one side only */
        double den = fabs(y) > rms ? fabs(y) : rms;
        if (d > *max_abs) *max_abs = d;
        if (d / den > *max_rel) *max_rel = d / den;
    }
}

static size_t argmax(const float *v, size_t C)
{
    size_t best = 0;
    for (size_t c = 1; c < C; c++)
        if (v[c] > v[best] || (v[best] != v[best] && v[c] == v[c])) best = c;
    return best;
}

/* Rank of class `label` among the scores: how many classes score strictly higher (or equal with
 * a lower index). Rank 0 is top-1. */
static size_t rank_of(const float *v, size_t C, size_t label)
{
    size_t r = 0;
    float s = v[label];
    for (size_t c = 0; c < C; c++)
        if (c != label && (v[c] > s || (v[c] == s && c < label) || s != s)) r++;
    return r;
}

static bool push_time(mstate *m, double ms)
{
    if (m->nt == m->tcap) {
        size_t nc = m->tcap ? m->tcap * 2 : 256;
        double *q = realloc(m->times, nc * sizeof *q);
        if (!q) return false;
        m->times = q;
        m->tcap = nc;
    }
    m->times[m->nt++] = ms;
    return true;
}

/* Runs model m on k samples at x (per floats each), padded to the model's fixed batch when it has
 * one, and stores their k rows of scores at row row0 of m->scores. *ms accumulates the run time. */
static opt_status run_chunk(mstate *m, const float *x, size_t k, const int64_t *sdims, int sndim,
                            size_t per, size_t out_index, size_t row0, double *ms,
                            opt_error *err)
{
    size_t rows = m->fixed_b ? (size_t)m->fixed_b : k;
    opt_array in = {.dtype = OPT_DT_FLOAT, .ndim = sndim + 1};
    in.dims[0] = (int64_t)rows;
    for (int i = 0; i < sndim; i++) in.dims[i + 1] = sdims[i];
    in.nbytes = rows * per * sizeof(float);
    if (rows != k) {
        if (m->pad_cap < rows * per) {
            float *q = realloc(m->pad, rows * per * sizeof(float));
            if (!q) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
            m->pad = q;
            m->pad_cap = rows * per;
        }
        memcpy(m->pad, x, k * per * sizeof(float));
        memset(m->pad + k * per, 0, (rows - k) * per * sizeof(float));
        in.data = m->pad;
    } else {
        in.data = (void *)x;
    }
    opt_array view, conv = {0};
    OPT_TRY(opt_batch_fit(&in, m->name, opt_exec_input_name(m->e, 0), m->ndim, m->dims, &view, err));
    if (m->dtype != 0 && m->dtype != OPT_DT_FLOAT) {
        OPT_TRY(opt_tensorfile_convert(&view, m->dtype, &conv, err));
        view = conv;
    }
    size_t n_out = opt_exec_n_outputs(m->e);
    opt_array *outs = calloc(n_out, sizeof *outs);
    if (!outs) {
        free(conv.data);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    double t0 = now_ms();
    opt_status s = opt_exec_run(m->e, &view, 1, outs, n_out, err);
    *ms += now_ms() - t0;
    free(conv.data);
    if (s == OPT_OK) {
        opt_array *o = &outs[out_index], f = {0};
        uint64_t numel = 1;
        for (int i = 0; i < o->ndim; i++) numel *= (uint64_t)o->dims[i];
        if (o->ndim < 1 || o->dims[0] != (int64_t)rows || rows == 0) {
            s = opt_error_set(err, OPT_ERR_DATA, "%s: output '%s' has no batch dim of %zu (rank %d)", m->name,
                              opt_exec_output_name(m->e, out_index), rows, o->ndim);
        } else {
            size_t C = (size_t)(numel / rows);
            if (m->C == 0) m->C = C;
            if (C != m->C || C == 0)
                s = opt_error_set(err, OPT_ERR_DATA, "%s: output '%s' has %zu scores per sample, earlier %zu",
                                  m->name, opt_exec_output_name(m->e, out_index), C, m->C);
            const opt_array *src = o;
            if (s == OPT_OK && o->dtype != OPT_DT_FLOAT) {
                s = opt_tensorfile_convert(o, OPT_DT_FLOAT, &f, err);
                src = &f;
            }
            if (s == OPT_OK) {
                if (m->scores_cap < (row0 + k) * C) {
                    size_t nc = (row0 + k) * C;
                    float *q = realloc(m->scores, nc * sizeof(float));
                    if (!q) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
                    else {
                        m->scores = q;
                        m->scores_cap = nc;
                    }
                }
                if (s == OPT_OK) memcpy(m->scores + row0 * C, src->data, k * C * sizeof(float));
            }
            free(f.data);
        }
    }
    for (size_t i = 0; i < n_out; i++) opt_array_free(&outs[i]);
    free(outs);
    return s;
}

static double median(double *v, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 1; i < n; i++) { /* insertion sort: a few hundred batches */
        double x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

opt_status opt_eval_models(opt_exec *const *models, const char *const *names, size_t n,
                           opt_dataset *ds, const opt_eval_opts *opts, opt_eval_result *results,
                           opt_error *err)
{
    opt_eval_opts o = {0};
    if (opts) o = *opts;
    if (o.batch == 0) o.batch = 32;
    if (n == 0) return opt_error_set(err, OPT_ERR_USAGE, "no model to evaluate");
    if (!o.no_labels && !opt_dataset_has_labels(ds))
        return opt_error_set(err, OPT_ERR_DATA, "%s: the dataset has no labels (accuracy needs them)",
                             opt_dataset_name(ds));
    mstate *ms = calloc(n, sizeof *ms);
    int32_t *labels = malloc(o.batch * sizeof *labels);
    if (!ms || !labels) {
        free(ms);
        free(labels);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    opt_status s = OPT_OK;
    for (size_t i = 0; i < n && s == OPT_OK; i++) {
        memset(&results[i], 0, sizeof results[i]);
        mstate *m = &ms[i];
        m->e = models[i];
        snprintf(m->fallback, sizeof m->fallback, "model %zu", i + 1);
        m->name = names && names[i] ? names[i] : m->fallback;
        if (opt_exec_n_inputs(m->e) != 1)
            s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "%s: the model has %zu inputs; evaluation feeds one",
                              m->name, opt_exec_n_inputs(m->e));
        else if (o.output_index >= opt_exec_n_outputs(m->e))
            s = opt_error_set(err, OPT_ERR_USAGE, "%s: output %zu asked, the model has %zu", m->name,
                              o.output_index, opt_exec_n_outputs(m->e));
        if (s != OPT_OK) break;
        m->dtype = opt_exec_input_shape(m->e, 0, &m->ndim, m->dims);
        if (m->ndim > 0 && m->dims[0] > 0) m->fixed_b = m->dims[0];
        s = opt_dataset_fit(ds, opt_exec_input_name(m->e, 0), m->dtype, m->ndim, m->dims, err);
        if (s != OPT_OK) {
            /* Name the model as well as the dataset. */
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            s = opt_error_set(err, s, "%s: %s", m->name, msg);
        }
    }
    if (s == OPT_OK) s = opt_dataset_rewind(ds, err);
    size_t total = opt_dataset_count(ds), done = 0;
    int64_t sdims[OPT_MAX_DIMS];
    int sndim = opt_dataset_sample_shape(ds, sdims);
    size_t per = 1;
    for (int i = 0; i < sndim; i++) per *= (size_t)sdims[i];
    while (s == OPT_OK) {
        opt_array x;
        size_t got;
        s = opt_dataset_next_batch(ds, o.batch, &x, labels, &got, err);
        if (s != OPT_OK || got == 0) break;
        for (size_t i = 0; i < n && s == OPT_OK; i++) {
            mstate *m = &ms[i];
            double t = 0;
            size_t step = m->fixed_b ? (size_t)m->fixed_b : got;
            for (size_t off = 0; off < got && s == OPT_OK; off += step) {
                size_t k = got - off < step ? got - off : step;
                s = run_chunk(m, (const float *)x.data + off * per, k, sdims, sndim, per, o.output_index,
                              off, &t, err);
            }
            if (s == OPT_OK && !push_time(m, t)) s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        }
        if (s != OPT_OK) break;
        for (size_t i = 1; i < n && s == OPT_OK; i++)
            if (ms[i].C != ms[0].C)
                s = opt_error_set(err, OPT_ERR_DATA, "%s gives %zu scores per sample, %s gives %zu; they cannot be compared",
                                  ms[i].name, ms[i].C, ms[0].name, ms[0].C);
        if (s != OPT_OK) break;
        size_t C = ms[0].C, k5 = C < 5 ? C : 5;
        for (size_t j = 0; j < got && s == OPT_OK; j++) {
            if (!o.no_labels && (labels[j] < 0 || (size_t)labels[j] >= C)) {
                s = opt_error_set(err, OPT_ERR_DATA, "%s: label %d of sample %zu is outside the model's %zu classes",
                                  opt_dataset_name(ds), labels[j], done + j, C);
                break;
            }
            size_t top0 = argmax(ms[0].scores + j * C, C);
            for (size_t i = 0; i < n; i++) {
                const float *v = ms[i].scores + j * C;
                if (!o.no_labels) {
                    size_t r = rank_of(v, C, (size_t)labels[j]);
                    results[i].correct1 += r == 0;
                    results[i].correct5 += r < k5;
                }
                results[i].agree += argmax(v, C) == top0;
            }
        }
        for (size_t i = 1; i < n && s == OPT_OK; i++)
            opt_eval_compare(ms[i].scores, ms[0].scores, got * C, &results[i].max_abs, &results[i].max_rel);
        done += got;
        if (o.progress) o.progress(o.progress_ctx, done, total);
    }
    for (size_t i = 0; i < n; i++) {
        opt_eval_result *r = &results[i];
        mstate *m = &ms[i];
        if (s == OPT_OK) {
            r->samples = done;
            r->classes = m->C;
            r->top1 = o.no_labels || !done ? NAN : (double)r->correct1 / (double)done;
            r->top5 = o.no_labels || !done ? NAN : (double)r->correct5 / (double)done;
            r->agreement = done ? (double)r->agree / (double)done : 0;
            r->batches = m->nt;
            double sum = 0, mn = INFINITY;
            for (size_t t = 0; t < m->nt; t++) {
                sum += m->times[t];
                if (m->times[t] < mn) mn = m->times[t];
            }
            r->ms_mean = m->nt ? sum / (double)m->nt : 0;
            r->ms_min = m->nt ? mn : 0;
            r->ms_median = median(m->times, m->nt);
        }
        free(m->scores);
        free(m->times);
        free(m->pad);
    }
    free(ms);
    free(labels);
    return s;
}

opt_status opt_eval_top1(opt_exec *model, opt_dataset *ds, const opt_eval_opts *opts,
                         double *top1, opt_error *err)
{
    opt_eval_result r;
    OPT_TRY(opt_eval_models(&model, NULL, 1, ds, opts, &r, err));
    *top1 = r.top1;
    return OPT_OK;
}
