/*
 * tools/precision.c — shared plumbing of `mopt amp`, `mopt calib` and `mopt quant`.
 */
#define _GNU_SOURCE
#include "tools/precision.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool prec_parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-') return false;
    *out = (size_t)v;
    return true;
}

bool prec_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) return false;
    *out = v;
    return true;
}

int prec_data_opt(const tool_opts *t, prec_data_opts *d, int c, const char *arg)
{
    size_t v;
    opt_error e = {0};
    switch (c) {
    case 0x2001:
        if (!prec_parse_size(arg, &v) || v == 0) return -tool_usage(t, "--limit wants a positive integer, not '%s'", arg);
        d->ds.limit = v;
        return 1;
    case 0x2006:
        if (!prec_parse_size(arg, &v) || v == 0) return -tool_usage(t, "--eval-limit wants a positive integer, not '%s'", arg);
        d->eval_limit = v;
        return 1;
    case 0x2002:
        if (opt_dataset_parse_normalize(arg, &d->ds, &e) != OPT_OK) return -tool_usage(t, "--normalize: %s", e.msg);
        return 1;
    case 0x2003:
        if (!prec_parse_size(arg, &v) || v == 0) return -tool_usage(t, "--batch wants a positive integer, not '%s'", arg);
        d->batch = v;
        return 1;
    case 0x2004:
        if (!prec_parse_size(arg, &v) || v > 1024) return -tool_usage(t, "--threads wants a number of threads, not '%s'", arg);
        d->threads = (int)v;
        return 1;
    case 0x2005:
        if (!opt_layout_parse(arg, &d->ds.layout)) return -tool_usage(t, "--layout wants nchw, nhwc, flat or auto, not '%s'", arg);
        return 1;
    default: return 0;
    }
}

int prec_open(const tool_opts *t, const char *spec, const prec_data_opts *d, bool eval, opt_dataset **ds)
{
    opt_dataset_opts o = d->ds;
    o.limit = eval ? d->eval_limit : d->ds.limit;
    opt_error e = {0};
    if (opt_dataset_open(spec, &o, ds, &e) != OPT_OK) {
        if (e.status == OPT_ERR_USAGE) e.status = OPT_ERR_DATA;
        return tool_fail(t, NULL, &e);
    }
    return 0;
}

int prec_spec_add(const tool_opts *t, prec_specs *s, const char *arg)
{
    if (s->n == PREC_MAX_DATA) return tool_usage(t, "--data given more than %d times", PREC_MAX_DATA);
    s->v[s->n++] = arg;
    return 0;
}

int prec_open_feed(const tool_opts *t, const opt_model *m, const prec_specs *specs,
                   const prec_data_opts *d, opt_feed *f)
{
    const opt_graph *g = m->graph;
    const char **inputs = malloc((g->n_inputs ? g->n_inputs : 1) * sizeof *inputs);
    opt_error e = {0};
    if (!inputs) {
        opt_error_set(&e, OPT_ERR_NOMEM, "out of memory");
        return tool_fail(t, NULL, &e);
    }
    size_t k = 0;
    for (size_t i = 0; i < g->n_inputs; i++)
        if (!opt_graph_initializer(g, g->inputs[i]->name)) inputs[k++] = g->inputs[i]->name;
    opt_status s = opt_feed_open(specs->v, specs->n, inputs, k, &d->ds, f, &e);
    free(inputs);
    if (s != OPT_OK) {
        if (e.status == OPT_ERR_USAGE) e.status = OPT_ERR_DATA;
        return tool_fail(t, NULL, &e);
    }
    return 0;
}

int prec_feed_single(const tool_opts *t, const opt_feed *f, const char *what, opt_dataset **ds)
{
    *ds = NULL;
    if (f->n != 1) return tool_usage(t, "%s takes a model of one input (--data names %zu)", what, f->n);
    *ds = f->ds[0];
    return 0;
}

bool prec_list_add(const char *arg, char ***list, size_t *n)
{
    const char *p = arg;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len) {
            char **l = realloc(*list, (*n + 1) * sizeof *l);
            if (!l) return false;
            *list = l;
            l[*n] = strndup(p, len);
            if (!l[*n]) return false;
            (*n)++;
        }
        p += len + (comma ? 1 : 0);
    }
    return true;
}

void prec_list_free(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) free(list[i]);
    free(list);
}

int prec_write_text(const tool_opts *t, const char *path, prec_write_fn fn, void *ctx)
{
    opt_error e = {0};
    if (!path || strcmp(path, "-") == 0) {
        if (fn(ctx, stdout, &e) != OPT_OK || fflush(stdout) != 0) {
            if (e.status == OPT_OK) opt_error_set(&e, OPT_ERR_IO, "write error");
            return tool_fail(t, "<stdout>", &e);
        }
        return 0;
    }
    /* An existing target that is not a regular file (/dev/null, a FIFO) is written in place:
     * renaming over it would replace the device node itself (formats/io.c does the same). */
    if (opt_path_is_special(path)) {
        FILE *df = fopen(path, "w");
        if (!df) {
            opt_error_set(&e, OPT_ERR_IO, "cannot open: %s", strerror(errno));
            return tool_fail(t, path, &e);
        }
        opt_status ds = fn(ctx, df, &e);
        if (fclose(df) != 0 && ds == OPT_OK) ds = opt_error_set(&e, OPT_ERR_IO, "write error: %s", strerror(errno));
        return ds == OPT_OK ? 0 : tool_fail(t, path, &e);
    }
    size_t len = strlen(path) + 16;
    char *tmp = malloc(len);
    if (!tmp) {
        opt_error_set(&e, OPT_ERR_NOMEM, "out of memory");
        return tool_fail(t, path, &e);
    }
    snprintf(tmp, len, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        opt_error_set(&e, OPT_ERR_IO, "cannot create a file beside it: %s", strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        return tool_fail(t, path, &e);
    }
    opt_status s = fn(ctx, f, &e);
    if (s == OPT_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        s = opt_error_set(&e, OPT_ERR_IO, "write error: %s", strerror(errno));
    if (fclose(f) != 0 && s == OPT_OK) s = opt_error_set(&e, OPT_ERR_IO, "write error: %s", strerror(errno));
    if (s == OPT_OK && rename(tmp, path) != 0) s = opt_error_set(&e, OPT_ERR_IO, "rename: %s", strerror(errno));
    if (s != OPT_OK) {
        unlink(tmp);
        free(tmp);
        return tool_fail(t, path, &e);
    }
    free(tmp);
    return 0;
}

void prec_progress(void *ctx, size_t done, size_t total)
{
    tool_progress(ctx, "calibrating", done, total);
}

const char **prec_names_concat(char *const *a, size_t na, const char *const *b, size_t nb)
{
    const char **v = malloc((na + nb + 1) * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < na; i++) v[i] = a[i];
    for (size_t i = 0; i < nb; i++) v[na + i] = b[i];
    return v;
}
