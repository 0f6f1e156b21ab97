/*
 * tools/precision.h — what `mopt amp`, `mopt calib` and `mopt quant` share: the dataset options,
 * comma-separated lists, atomic writes of text files and the progress callback.
 */
#ifndef MOPT_TOOLS_PRECISION_H
#define MOPT_TOOLS_PRECISION_H

#include "tools/common.h"
#include "calib/dataset.h"

typedef struct prec_data_opts {
    opt_dataset_opts ds;  /* --limit, --normalize, --layout */
    size_t eval_limit;    /* --eval-limit */
    size_t batch;         /* --batch */
    int threads;          /* --threads */
} prec_data_opts;

#define PREC_DATA_LONGOPTS                                 \
    {"limit", required_argument, NULL, 0x2001},            \
    {"normalize", required_argument, NULL, 0x2002},        \
    {"batch", required_argument, NULL, 0x2003},            \
    {"threads", required_argument, NULL, 0x2004},          \
    {"layout", required_argument, NULL, 0x2005},           \
    {"eval-limit", required_argument, NULL, 0x2006}

#define PREC_DATA_HELP                                                                      \
    "  --limit N          use the first N samples of --data\n"                              \
    "  --eval-limit N     use the first N samples of --eval\n"                              \
    "  --normalize M,S    per-sample (x - M) / S after scaling (per channel: M1,M2:S1,S2)\n" \
    "  --layout L         nchw, nhwc, flat or auto (default) for the samples\n"             \
    "  --batch N          samples per batch (default 64)\n"                                 \
    "  --threads N        executor threads (default: all cores)\n"

/* Handles a dataset option: 1 when c was one, 0 when not, -EXIT_USAGE after printing why. */
int prec_data_opt(const tool_opts *t, prec_data_opts *d, int c, const char *arg);

/* Opens spec with d's options (limit = eval_limit when `eval`); prints and returns the exit
 * code on failure, else 0. */
int prec_open(const tool_opts *t, const char *spec, const prec_data_opts *d, bool eval, opt_dataset **ds);

/* --data arguments: one, or one NAME=SPEC per model input (borrowed from argv). */
#define PREC_MAX_DATA 16
typedef struct prec_specs {
    const char *v[PREC_MAX_DATA];
    size_t n;
} prec_specs;
/* Appends one --data argument; prints a usage error and returns its exit code past
 * PREC_MAX_DATA, else 0. */
int prec_spec_add(const tool_opts *t, prec_specs *s, const char *arg);

/* Opens the --data arguments of model m as a feed (calib/dataset.h: "NAME=SPEC" for each input
 * of a model of several, a plain SPEC for a model of one); prints and returns the exit code on
 * failure, else 0. */
int prec_open_feed(const tool_opts *t, const opt_model *m, const prec_specs *specs,
                   const prec_data_opts *d, opt_feed *f);

/* The feed's only dataset, for what takes one (--max-drop); prints a usage error naming `what`
 * and returns its exit code when f has several parts, else 0. */
int prec_feed_single(const tool_opts *t, const opt_feed *f, const char *what, opt_dataset **ds);

/* Appends the comma-separated items of arg to *list (strings owned by the list). */
bool prec_list_add(const char *arg, char ***list, size_t *n);
void prec_list_free(char **list, size_t n);
/* The user's --exclude names followed by the fallback's keep-float names, in one malloc'd array of
 * borrowed pointers (the caller frees the array only); NULL when out of memory. */
const char **prec_names_concat(char *const *a, size_t na, const char *const *b, size_t nb);

/* Writes a text file atomically (temporary file beside it, then rename) through fn; path NULL or
 * "-" writes stdout. Prints and returns the exit code on failure, else 0. */
typedef opt_status (*prec_write_fn)(void *ctx, FILE *f, opt_error *err);
int prec_write_text(const tool_opts *t, const char *path, prec_write_fn fn, void *ctx);

/* Progress callback for calib/collect.h and calib/eval.h: ctx is the tool_opts. */
void prec_progress(void *ctx, size_t done, size_t total);

/* Parses a non-negative number; false on junk. */
bool prec_parse_size(const char *s, size_t *out);
bool prec_parse_double(const char *s, double *out);

#endif
