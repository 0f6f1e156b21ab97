/*
 * tools/common.h — what every `mopt` subcommand shares: the filter conventions of DESIGN.md
 * (IN or stdin, -o OUT or stdout, atomic writes, history), error printing, reports, progress.
 *
 * Only tools/ prints and chooses exit codes; the library returns opt_status values.
 */
#ifndef MOPT_TOOLS_COMMON_H
#define MOPT_TOOLS_COMMON_H

#include "formats/onnx.h"

#include <getopt.h>
#include <stdio.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_GATE = 3 };

/* Options every filter accepts. Zero-initialised means defaults. */
typedef struct tool_opts {
    const char *cmd;    /* subcommand name, for messages */
    const char *in;     /* input path or NULL/"-" for stdin */
    const char *out;    /* output path or NULL/"-" for stdout */
    const char *report; /* --report FILE (.json, .csv, .md) */
    bool quiet;
    bool keep_sparse;   /* tool_load keeps sparse initializers (cat, info); others densify */
    int argc;           /* the command line, for mopt.history */
    char **argv;
} tool_opts;

/* getopt_long entries for the shared options; tools append them to their own table. */
#define TOOL_COMMON_LONGOPTS                                    \
    {"output", required_argument, NULL, 'o'},                   \
    {"report", required_argument, NULL, 0x1001},                \
    {"quiet", no_argument, NULL, 'q'},                          \
    {"help", no_argument, NULL, 'h'}
#define TOOL_COMMON_SHORTOPTS "o:qh"

/* Handles a shared option; returns true if c was one (help prints `help` and exits 0). */
bool tool_common_opt(tool_opts *t, int c, const char *arg, const char *help);

/* After getopt: takes at most `max_pos` positional arguments; the first is IN. Returns 0 or
 * EXIT_USAGE after printing why. */
int tool_positional(tool_opts *t, int argc, char **argv, int max_pos);

/* Prints "mopt CMD: FILE: message" and returns the exit code for e->status. */
int tool_fail(const tool_opts *t, const char *file, const opt_error *e);

/* Prints "mopt CMD: message" plus a hint, returns EXIT_USAGE. */
int tool_usage(const tool_opts *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Display name of the input: the path, or "<stdin>". */
const char *tool_in_name(const tool_opts *t);

/* Loads IN; on failure prints and returns the exit code, else 0. */
int tool_load(const tool_opts *t, const opt_load_opts *lo, opt_model **m);

/* Appends this command line to the model's mopt.history (when record) and writes OUT
 * atomically; prints and returns the exit code on failure, else 0. */
int tool_save(const tool_opts *t, opt_model *m, const opt_save_opts *so, bool record);

/* Summary line on stderr unless --quiet. */
void tool_note(const tool_opts *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A progress bar on stderr when it is a terminal and not --quiet; done == total ends it. */
void tool_progress(const tool_opts *t, const char *label, unsigned long long done,
                   unsigned long long total);

/* ---- reports ---------------------------------------------------------------------------- */

/* A table of strings, rendered as text (stderr), JSON, CSV or Markdown. */
typedef struct tool_table {
    const char *title;
    size_t ncols;
    const char **cols;
    size_t nrows;
    char **cells; /* nrows * ncols, owned */
    uint32_t numeric; /* bit c set: column c holds numbers (JSON); 0: guess from the cells */
} tool_table;

void tool_table_init(tool_table *tb, const char *title, size_t ncols, const char **cols);
/* Appends a row from printf-formatted cells separated by '\t'. */
void tool_table_row(tool_table *tb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a row of ncols cells given as an array (use it when a cell may contain a tab, e.g. a
 * tensor or node name). */
void tool_table_add(tool_table *tb, const char *const *cells);
void tool_table_free(tool_table *tb);
/* Prints aligned text. */
void tool_table_print(const tool_table *tb, FILE *f);
/* Writes s as a JSON string literal (quotes, escapes, control characters as \\u00XX). */
void tool_json_str(FILE *f, const char *s);
/* Writes tb as a JSON array of objects (one per row) to f; indent prefixes each row line. */
void tool_table_json(FILE *f, const tool_table *tb, const char *indent);
/* Writes tables to path, format by extension (.json .csv .md). Returns 0 or prints and 1. */
int tool_report_write(const tool_opts *t, const tool_table *tables, size_t n);

/* Formats n with thousands separators into buf. */
const char *tool_commas(unsigned long long n, char *buf, size_t len);

#endif
