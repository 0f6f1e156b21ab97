/*
 * calib/table.c — calibration table reader and writers (see table.h).
 */
#include "calib/table.h"

#include <csv.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void opt_calib_table_free(opt_calib_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) free(t->e[i].tensor);
    free(t->e);
    memset(t, 0, sizeof *t);
}

opt_status opt_calib_table_add(opt_calib_table *t, const char *tensor, const char *method,
                               float min, float max, float scale, int32_t zero_point,
                               opt_error *err)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        opt_calib_entry *e = realloc(t->e, cap * sizeof *e);
        if (!e) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        t->e = e;
        t->cap = cap;
    }
    opt_calib_entry *e = &t->e[t->n];
    memset(e, 0, sizeof *e);
    e->tensor = opt_strdup(tensor);
    if (!e->tensor) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    snprintf(e->method, sizeof e->method, "%s", method ? method : "");
    e->min = min;
    e->max = max;
    e->scale = scale;
    e->zero_point = zero_point;
    t->n++;
    return OPT_OK;
}

long opt_calib_table_find(const opt_calib_table *t, const char *tensor)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].tensor, tensor) == 0) return (long)i;
    return -1;
}

/* One CSV field, quoted (by libcsv) only when it must be. */
static void put_field(FILE *f, const char *s)
{
    size_t n = strlen(s);
    /* libcsv trims spaces and tabs around unquoted fields, so those must be quoted too. */
    if (strpbrk(s, ",\"\r\n") || (n && strchr(" \t", s[0])) || (n && strchr(" \t", s[n - 1])))
        csv_fwrite(f, s, n);
    else fputs(s, f);
}

opt_status opt_calib_table_write_csv(const opt_calib_table *t, FILE *f, opt_error *err)
{
    fputs("tensor,method,min,max,scale,zero_point\n", f);
    for (size_t i = 0; i < t->n; i++) {
        const opt_calib_entry *e = &t->e[i];
        put_field(f, e->tensor);
        fputc(',', f);
        put_field(f, e->method);
        fprintf(f, ",%.9g,%.9g,%.9g,%d\n", e->min, e->max, e->scale, (int)e->zero_point);
    }
    if (ferror(f)) return opt_error_set(err, OPT_ERR_IO, "write error: %s", strerror(errno));
    return OPT_OK;
}

/* Parser state for libcsv's callbacks. */
typedef struct reader {
    opt_calib_table *t;
    char *fields[6];
    int nf;          /* fields in the current record */
    long line;       /* record number (1 = header) */
    opt_error *err;
    const char *what;
    bool failed;
} reader;

static void on_field(void *s, size_t len, void *data)
{
    reader *r = data;
    if (r->failed) return;
    if (s && memchr(s, 0, len)) {
        /* A NUL would silently cut the tensor name short. */
        opt_error_set(r->err, OPT_ERR_DATA, "%s: line %ld: NUL byte in a field", r->what, r->line + 1);
        r->failed = true;
        return;
    }
    if (r->nf < 6) {
        r->fields[r->nf] = malloc(len + 1);
        if (!r->fields[r->nf]) {
            opt_error_set(r->err, OPT_ERR_NOMEM, "out of memory");
            r->failed = true;
            return;
        }
        memcpy(r->fields[r->nf], s ? s : "", len);
        r->fields[r->nf][len] = 0;
    }
    r->nf++;
}

static bool parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(d)) return false;
    *out = (float)d;
    return isfinite(*out); /* 1e39 is a finite double but float infinity */
}

static void on_record(int c, void *data)
{
    (void)c;
    reader *r = data;
    r->line++;
    if (r->failed) goto done;
    if (r->nf == 1 && r->fields[0][0] == 0) goto done; /* blank line */
    if (r->line == 1) {
        static const char *hdr[6] = {"tensor", "method", "min", "max", "scale", "zero_point"};
        bool ok = r->nf == 6;
        for (int i = 0; ok && i < 6; i++) ok = strcmp(r->fields[i], hdr[i]) == 0;
        if (!ok) {
            opt_error_set(r->err, OPT_ERR_DATA,
                          "%s: line 1: not a calibration table (want header tensor,method,min,max,scale,zero_point)",
                          r->what);
            r->failed = true;
        }
        goto done;
    }
    if (r->nf != 6) {
        opt_error_set(r->err, OPT_ERR_DATA, "%s: line %ld: %d fields, want 6", r->what, r->line, r->nf);
        r->failed = true;
        goto done;
    }
    float mn, mx, sc;
    char *end;
    long zp = strtol(r->fields[5], &end, 10);
    if (!parse_float(r->fields[2], &mn) || !parse_float(r->fields[3], &mx) || mn > mx) {
        opt_error_set(r->err, OPT_ERR_DATA, "%s: line %ld: tensor '%s': min and max must be finite numbers with min <= max",
                      r->what, r->line, r->fields[0]);
        r->failed = true;
    } else if (!parse_float(r->fields[4], &sc) || !(sc > 0)) {
        opt_error_set(r->err, OPT_ERR_DATA, "%s: line %ld: tensor '%s': scale must be a positive number",
                      r->what, r->line, r->fields[0]);
        r->failed = true;
    } else if (end == r->fields[5] || *end || zp < -2147483647L || zp > 2147483647L) {
        opt_error_set(r->err, OPT_ERR_DATA, "%s: line %ld: tensor '%s': zero_point must be an integer",
                      r->what, r->line, r->fields[0]);
        r->failed = true;
    } else if (!r->fields[0][0]) {
        opt_error_set(r->err, OPT_ERR_DATA, "%s: line %ld: empty tensor name", r->what, r->line);
        r->failed = true;
    } else if (opt_calib_table_find(r->t, r->fields[0]) >= 0) {
        opt_error_set(r->err, OPT_ERR_DATA, "%s: line %ld: tensor '%s' appears twice", r->what, r->line,
                      r->fields[0]);
        r->failed = true;
    } else if (opt_calib_table_add(r->t, r->fields[0], r->fields[1], mn, mx, sc, (int32_t)zp, r->err) != OPT_OK) {
        r->failed = true;
    }
done:
    for (int i = 0; i < 6 && i < r->nf; i++) free(r->fields[i]);
    r->nf = 0;
}

opt_status opt_calib_table_read_csv(const char *path, opt_calib_table *t, opt_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return opt_error_set(err, OPT_ERR_IO, "%s: %s", path, strerror(errno));
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
        fclose(f);
        return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    }
    reader r = {.t = t, .err = err, .what = path};
    char buf[65536];
    size_t k;
    bool parse_err = false;
    while (!r.failed && (k = fread(buf, 1, sizeof buf, f)) > 0)
        if (csv_parse(&p, buf, k, on_field, on_record, &r) != k) {
            parse_err = true;
            break;
        }
    if (!r.failed && !parse_err && csv_fini(&p, on_field, on_record, &r) != 0) parse_err = true;
    for (int i = 0; i < 6 && i < r.nf; i++) free(r.fields[i]);
    bool rerr = ferror(f);
    csv_free(&p);
    fclose(f);
    if (r.failed) {
        /* the record callback set err */
    } else if (parse_err)
        opt_error_set(err, OPT_ERR_DATA, "%s: line %ld: malformed CSV (%s)", path, r.line + 1,
                      csv_strerror(csv_error(&p)));
    else if (rerr)
        opt_error_set(err, OPT_ERR_IO, "%s: read error", path);
    else if (r.line == 0)
        opt_error_set(err, OPT_ERR_DATA, "%s: empty file, not a calibration table", path);
    else if (t->n == 0)
        opt_error_set(err, OPT_ERR_DATA, "%s: the table has no rows", path);
    else
        return OPT_OK;
    opt_calib_table_free(t);
    return err ? err->status : OPT_ERR_DATA;
}

opt_status opt_calib_table_write_trt(const opt_calib_table *t, const char *algorithm, FILE *f,
                                     opt_error *err)
{
    fprintf(f, "TRT-8601-%s\n", algorithm ? algorithm : "EntropyCalibration2");
    for (size_t i = 0; i < t->n; i++) {
        const opt_calib_entry *e = &t->e[i];
        float amax = fmaxf(fabsf(e->min), fabsf(e->max));
        float s = amax > 0 ? amax / 127.0f : 1.0f;
        uint32_t bits;
        memcpy(&bits, &s, 4);
        fprintf(f, "%s: %08x\n", e->tensor, bits);
    }
    if (ferror(f)) return opt_error_set(err, OPT_ERR_IO, "write error: %s", strerror(errno));
    return OPT_OK;
}
