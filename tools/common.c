/*
 * tools/common.c — shared plumbing of the subcommands.
 */
#define _GNU_SOURCE
#include "tools/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool tool_common_opt(tool_opts *t, int c, const char *arg, const char *help)
{
    switch (c) {
    case 'o': t->out = arg; return true;
    case 'q': t->quiet = true; return true;
    case 0x1001: t->report = arg; return true;
    case 'h':
        fputs(help, stdout);
        exit(EXIT_OK);
    default: return false;
    }
}

int tool_usage(const tool_opts *t, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "mopt %s: ", t->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try 'mopt %s --help')\n", t->cmd);
    return EXIT_USAGE;
}

int tool_positional(tool_opts *t, int argc, char **argv, int max_pos)
{
    int n = argc - optind;
    if (n > max_pos) return tool_usage(t, "unexpected argument '%s'", argv[optind + max_pos]);
    if (n >= 1) t->in = argv[optind];
    return 0;
}

const char *tool_in_name(const tool_opts *t)
{
    return !t->in || strcmp(t->in, "-") == 0 ? "<stdin>" : t->in;
}

int tool_fail(const tool_opts *t, const char *file, const opt_error *e)
{
    if (file) fprintf(stderr, "mopt %s: %s: %s\n", t->cmd, file, e->msg);
    else fprintf(stderr, "mopt %s: %s\n", t->cmd, e->msg);
    switch (e->status) {
    case OPT_OK: return EXIT_OK;
    case OPT_ERR_USAGE: return EXIT_USAGE;
    case OPT_ERR_ACCURACY: return EXIT_GATE;
    default: return EXIT_FAIL;
    }
}

int tool_load(const tool_opts *t, const opt_load_opts *lo, opt_model **m)
{
    opt_error e = {0};
    if ((!t->in || strcmp(t->in, "-") == 0) && isatty(STDIN_FILENO)) {
        e.status = OPT_ERR_USAGE;
        snprintf(e.msg, sizeof e.msg, "no input model (give a path, or pipe a model to stdin)");
        return tool_fail(t, NULL, &e);
    }
    if (opt_onnx_load(t->in, lo, m, &e) != OPT_OK) return tool_fail(t, tool_in_name(t), &e);
    /* Passes work on dense weights: sparse initializers (prune --sparse-initializers) are
     * expanded here, and written dense unless the pass sparsifies again. */
    if (!t->keep_sparse && (*m)->graph && opt_graph_densify((*m)->graph, &e) != OPT_OK) {
        opt_model_free(*m);
        *m = NULL;
        return tool_fail(t, tool_in_name(t), &e);
    }
    return 0;
}

int tool_save(const tool_opts *t, opt_model *m, const opt_save_opts *so, bool record)
{
    opt_error e = {0};
    if (record) {
        size_t len = 64;
        for (int i = 0; i < t->argc; i++) len += strlen(t->argv[i]) + 1;
        char *line = malloc(len);
        if (!line) {
            opt_error_set(&e, OPT_ERR_NOMEM, "out of memory");
            return tool_fail(t, NULL, &e);
        }
        int k = snprintf(line, len, "mopt %s:", MOPT_VERSION);
        for (int i = 0; i < t->argc; i++) k += snprintf(line + k, len - (size_t)k, " %s", t->argv[i]);
        opt_status s = opt_model_history_append(m, line, &e);
        free(line);
        if (s != OPT_OK) return tool_fail(t, NULL, &e);
    }
    if (opt_onnx_save(m, t->out, so, &e) != OPT_OK)
        return tool_fail(t, t->out && strcmp(t->out, "-") ? t->out : "<stdout>", &e);
    return 0;
}

void tool_note(const tool_opts *t, const char *fmt, ...)
{
    if (t->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mopt %s: ", t->cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void tool_progress(const tool_opts *t, const char *label, unsigned long long done,
                   unsigned long long total)
{
    if (t->quiet || !isatty(STDERR_FILENO) || total == 0) return;
    int width = 30, fill = (int)(done * (unsigned long long)width / total);
    fprintf(stderr, "\r%s [%.*s%*s] %3d%%", label, fill, "##############################",
            width - fill, "", (int)(done * 100 / total));
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

const char *tool_commas(unsigned long long n, char *buf, size_t len)
{
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%llu", n), o = 0;
    for (int i = 0; i < k && (size_t)o + 2 < len; i++) {
        if (i && (k - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
    return buf;
}

/* ---- tables and reports --------------------------------------------------------------------- */

void tool_table_init(tool_table *tb, const char *title, size_t ncols, const char **cols)
{
    memset(tb, 0, sizeof *tb);
    tb->title = title;
    tb->ncols = ncols;
    tb->cols = cols;
}

void tool_table_row(tool_table *tb, const char *fmt, ...)
{
    char *line;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    char **cells = realloc(tb->cells, (tb->nrows + 1) * tb->ncols * sizeof *cells);
    if (!cells) {
        free(line);
        return;
    }
    tb->cells = cells;
    char *p = line;
    for (size_t c = 0; c < tb->ncols; c++) {
        char *tab = p ? strchr(p, '\t') : NULL;
        if (tab) *tab = 0;
        cells[tb->nrows * tb->ncols + c] = strdup(p ? p : "");
        p = tab ? tab + 1 : NULL;
    }
    free(line);
    tb->nrows++;
}

void tool_table_add(tool_table *tb, const char *const *cells)
{
    char **all = realloc(tb->cells, (tb->nrows + 1) * tb->ncols * sizeof *all);
    if (!all) return;
    tb->cells = all;
    for (size_t c = 0; c < tb->ncols; c++)
        all[tb->nrows * tb->ncols + c] = strdup(cells[c] ? cells[c] : "");
    tb->nrows++;
}

void tool_table_free(tool_table *tb)
{
    for (size_t i = 0; i < tb->nrows * tb->ncols; i++) free(tb->cells[i]);
    free(tb->cells);
    tb->cells = NULL;
    tb->nrows = 0;
}

static bool numeric(const char *s)
{
    if (!*s) return false;
    char *end;
    strtod(s, &end);
    return *end == 0 || (*end == '%' && end[1] == 0);
}

void tool_table_print(const tool_table *tb, FILE *f)
{
    size_t w[32] = {0};
    size_t nc = tb->ncols < 32 ? tb->ncols : 32;
    for (size_t c = 0; c < nc; c++) w[c] = strlen(tb->cols[c]);
    for (size_t r = 0; r < tb->nrows; r++)
        for (size_t c = 0; c < nc; c++) {
            size_t l = strlen(tb->cells[r * tb->ncols + c]);
            if (l > w[c]) w[c] = l;
        }
    if (tb->title) fprintf(f, "%s\n", tb->title);
    for (size_t c = 0; c < nc; c++) fprintf(f, "%s%-*s", c ? "  " : "  ", (int)w[c], tb->cols[c]);
    fputc('\n', f);
    for (size_t r = 0; r < tb->nrows; r++) {
        for (size_t c = 0; c < nc; c++) {
            const char *s = tb->cells[r * tb->ncols + c];
            fprintf(f, "  %*s", numeric(s) && c ? (int)w[c] : -(int)w[c], s);
        }
        fputc('\n', f);
    }
}

void tool_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

/* A column is written as JSON numbers when the table says so (tb->numeric bit c), or, when the
 * table says nothing, when every cell parses as a finite number and the header does not name
 * things (a tensor called "0" is still a name). */
static bool col_numeric(const tool_table *tb, size_t c)
{
    if (tb->numeric) return c < 32 && (tb->numeric >> c) & 1u;
    static const char *const names[] = {"name", "tensor", "node", "layer", "model", "op", "op_type",
                                        "type", "shape", "dtype", "stage", "input", "output",
                                        "method", "file"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(tb->cols[c], names[i]) == 0) return false;
    if (!tb->nrows) return false;
    for (size_t r = 0; r < tb->nrows; r++) {
        const char *s = tb->cells[r * tb->ncols + c];
        char *end;
        double v = strtod(s, &end);
        if (!*s || *end || v != v || v - v != 0) return false;
    }
    return true;
}

void tool_table_json(FILE *f, const tool_table *tb, const char *indent)
{
    fputc('[', f);
    for (size_t r = 0; r < tb->nrows; r++) {
        fprintf(f, "%s\n%s  {", r ? "," : "", indent);
        for (size_t c = 0; c < tb->ncols; c++) {
            const char *s = tb->cells[r * tb->ncols + c];
            if (c) fputs(", ", f);
            tool_json_str(f, tb->cols[c]);
            fputs(": ", f);
            if (col_numeric(tb, c)) fputs(s, f);
            else tool_json_str(f, s);
        }
        fputc('}', f);
    }
    fprintf(f, "\n%s]", indent);
}

static void csv_cell(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
}

int tool_report_write(const tool_opts *t, const tool_table *tables, size_t n)
{
    const char *dot = strrchr(t->report, '.');
    const char *ext = dot ? dot + 1 : "";
    int kind = strcmp(ext, "json") == 0 ? 0 : strcmp(ext, "csv") == 0 ? 1 : strcmp(ext, "md") == 0 ? 2 : -1;
    if (kind < 0) return tool_usage(t, "--report: '%s' must end in .json, .csv or .md", t->report);
    FILE *f = fopen(t->report, "w");
    if (!f) {
        fprintf(stderr, "mopt %s: %s: %s\n", t->cmd, t->report, strerror(errno));
        return EXIT_FAIL;
    }
    if (kind == 0) fputs("{", f);
    for (size_t i = 0; i < n; i++) {
        const tool_table *tb = &tables[i];
        if (kind == 0) {
            fprintf(f, "%s\n  ", i ? "," : "");
            tool_json_str(f, tb->title ? tb->title : "table");
            fputs(": ", f);
            tool_table_json(f, tb, "  ");
        } else if (kind == 1) {
            if (n > 1) fprintf(f, "%s# %s\n", i ? "\n" : "", tb->title ? tb->title : "");
            for (size_t c = 0; c < tb->ncols; c++) {
                if (c) fputc(',', f);
                csv_cell(f, tb->cols[c]);
            }
            fputc('\n', f);
            for (size_t r = 0; r < tb->nrows; r++) {
                for (size_t c = 0; c < tb->ncols; c++) {
                    if (c) fputc(',', f);
                    csv_cell(f, tb->cells[r * tb->ncols + c]);
                }
                fputc('\n', f);
            }
        } else {
            if (tb->title) fprintf(f, "%s## %s\n\n", i ? "\n" : "", tb->title);
            for (size_t c = 0; c < tb->ncols; c++) fprintf(f, "| %s ", tb->cols[c]);
            fputs("|\n", f);
            for (size_t c = 0; c < tb->ncols; c++) fputs("|---", f);
            fputs("|\n", f);
            for (size_t r = 0; r < tb->nrows; r++) {
                for (size_t c = 0; c < tb->ncols; c++) fprintf(f, "| %s ", tb->cells[r * tb->ncols + c]);
                fputs("|\n", f);
            }
        }
    }
    if (kind == 0) fputs("\n}\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "mopt %s: %s: %s\n", t->cmd, t->report, strerror(errno));
        return EXIT_FAIL;
    }
    return 0;
}
