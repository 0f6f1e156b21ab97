/*
 * tools/compress_opts.h — option parsing shared by prune, cluster and sensitivity: NAME=VALUE
 * layer overrides and comma-separated --include/--exclude globs.
 */
#ifndef MOPT_TOOLS_COMPRESS_OPTS_H
#define MOPT_TOOLS_COMPRESS_OPTS_H

#include "tools/common.h"
#include "libopt/passes/compress.h"

/* Growable lists that live until the process exits (tools are short-lived; freed by
 * copt_lists_free). */
typedef struct copt_lists {
    opt_layer_value *layers;
    size_t n_layers;
    const char **include;
    size_t n_include;
    const char **exclude;
    size_t n_exclude;
} copt_lists;

/* Parses "NAME=VALUE" into l->layers; VALUE must be a number in [lo, hi]. 0 or EXIT_USAGE. */
int copt_add_layer(const tool_opts *t, copt_lists *l, const char *arg, double lo, double hi);
/* Appends the comma-separated globs of arg to *list. */
int copt_add_globs(const tool_opts *t, const char ***list, size_t *n, const char *arg);
/* Parses a number in [lo, hi] for option `opt`; 0 or EXIT_USAGE. */
int copt_number(const tool_opts *t, const char *opt, const char *arg, double lo, double hi, double *v);
void copt_lists_free(copt_lists *l);

/* Percent of part in whole, 0 for an empty whole. */
static inline double copt_pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

#endif

/* Reads up to `limit` samples (0: 1000) of dataset SPEC in batches of `batch` (0: 250) fitted
 * to the model's first graph input, into cb (arrays owned by cb; copt_calib_free releases).
 * Returns 0 or prints and returns the exit code. */
int copt_calib_load(const tool_opts *t, const opt_model *m, const char *spec, size_t limit,
                    size_t batch, int threads, opt_calib_batches *cb);
/* Replaces cb's reference (a copy of the input model) by the model at path: the layers are then
 * fitted towards that model's outputs. 0 or the exit code. */
int copt_calib_reference(const tool_opts *t, const char *path, opt_calib_batches *cb);
void copt_calib_free(opt_calib_batches *cb);

/* --eval SPEC --max-drop P: top-1 of m on SPEC (mopt's executor), in [0,1]. 0 or the exit code. */
int copt_top1(const tool_opts *t, const opt_model *m, const char *spec, int threads, double *top1);
/* Prints the gate line and returns 0 when base - now <= max_drop points, else EXIT_GATE. */
int copt_gate(const tool_opts *t, double base, double now, double max_drop);
