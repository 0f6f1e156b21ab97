/*
 * tests/unit/kernels_util.h — helpers for the kernel unit tests (tests/unit/kernels_*.c): a
 * seeded random generator, one-node models built in memory and run through the executor, and
 * comparisons with named tolerances.
 *
 * Everything is static so each test file includes its own copy.
 */
#ifndef TESTS_UNIT_KERNELS_UTIL_H
#define TESTS_UNIT_KERNELS_UTIL_H

#include "libopt/exec/exec.h"
#include "libopt/ir/ir.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tolerances, named per comparison so a failure says which contract broke. */
#define KT_F32_REL 1e-4 /* float32 fast path vs double-accumulating reference, relative to scale */

/* xorshift64*: the same sequence on every machine. */
typedef struct kt_rng {
    uint64_t s;
} kt_rng;

static inline uint64_t kt_next(kt_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}

/* Uniform integer in [lo, hi]. */
static inline int64_t kt_int(kt_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(kt_next(r) % (uint64_t)(hi - lo + 1));
}

/* Uniform float in [-1, 1). */
static inline float kt_float(kt_rng *r)
{
    return (float)((double)(kt_next(r) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static inline float *kt_randf(kt_rng *r, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    cr_assert(p);
    for (size_t i = 0; i < n; i++) p[i] = kt_float(r);
    return p;
}

/* Max |a - b| over n values, relative to max(1, max |b|). */
static inline double kt_max_rel(const float *a, const float *b, size_t n)
{
    double m = 1, d = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(b[i]));
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) return INFINITY;
        d = fmax(d, fabs((double)a[i] - b[i]));
    }
    return d / m;
}

/* ---- one-node models ------------------------------------------------------------------------- */

/* An operand of a one-node model: a graph input (data given at run) or an initializer. */
typedef struct kt_operand {
    const char *name; /* "" for an omitted optional input */
    int dtype;
    int ndim;
    int64_t dims[8];
    const void *data; /* bytes in dtype's native layout */
    bool initializer;
} kt_operand;

static inline opt_value_info *kt_vi(const char *name, int dtype, int ndim, const int64_t *dims)
{
    opt_value_info *v = opt_value_info_new();
    v->name = opt_strdup(name);
    v->type = opt_type_new();
    v->type->kind = OPT_TYPE_TENSOR;
    v->type->has_elem_type = true;
    v->type->elem_type = dtype;
    if (ndim >= 0) {
        v->type->shape = calloc(1, sizeof *v->type->shape);
        v->type->shape->n_dim = (size_t)ndim;
        v->type->shape->dim = calloc((size_t)ndim + 1, sizeof(opt_dim));
        for (int i = 0; i < ndim; i++) {
            v->type->shape->dim[i].kind = OPT_DIM_VALUE;
            v->type->shape->dim[i].value = dims[i];
        }
    }
    return v;
}

static inline size_t kt_nbytes(int dtype, int ndim, const int64_t *dims)
{
    uint64_t n = 1, b = 0;
    for (int i = 0; i < ndim; i++) n *= (uint64_t)dims[i];
    cr_assert(opt_dtype_raw_bytes(dtype, n, &b));
    return (size_t)b;
}

/* An empty model (default domain at `opset`, IR version ir) with an empty graph called name.
 * Free with opt_model_free. */
static inline opt_model *kt_model_empty(int opset, int64_t ir, const char *name)
{
    opt_model *m = opt_model_new();
    m->has_ir_version = true;
    m->ir_version = ir;
    m->opset_import = calloc(1, sizeof *m->opset_import);
    m->n_opset_import = 1;
    m->opset_import[0].domain = opt_strdup("");
    m->opset_import[0].has_version = true;
    m->opset_import[0].version = opset;
    m->graph = opt_graph_new();
    m->graph->name = opt_strdup(name);
    return m;
}

/* Adds the float32 initializer name (dims[nd], values v) to g. */
static inline void kt_add_init(opt_graph *g, const char *name, const int64_t *dims, int nd,
                               const float *v)
{
    opt_error err = {0};
    opt_tensor *t = opt_tensor_new();
    t->name = opt_strdup(name);
    cr_assert(opt_tensor_set_dims(t, dims, (size_t)nd, &err) == OPT_OK);
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)dims[i];
    cr_assert(opt_tensor_set_raw(t, OPT_DT_FLOAT, v, n * sizeof(float), &err) == OPT_OK);
    cr_assert(opt_graph_add_initializer(g, t, &err) == OPT_OK);
}

/* Appends node op (inputs in[n_in], one output out) to g. */
static inline void kt_add_node(opt_graph *g, const char *op, const char *name,
                               const char *const *in, size_t n_in, const char *out)
{
    opt_error err = {0};
    opt_node *n = opt_node_make(op, name, in, n_in, &out, 1);
    cr_assert(opt_graph_insert_node(g, g->n_nodes, n, &err) == OPT_OK);
}

/* Builds a model with one node op_type (default domain, opset) over the operands; outputs are
 * named y0, y1, ... with dtype out_dt[i] and unknown shape. The caller adds attributes to
 * m->graph->nodes[0] and frees with opt_model_free. */
static inline opt_model *kt_model(const char *op_type, int opset, const kt_operand *in, size_t n_in,
                                  const int *out_dt, size_t n_out)
{
    opt_model *m = kt_model_empty(opset, 8, "kt");
    opt_graph *g = m->graph;
    const char *ins[16], *outs[8];
    char onames[8][24];
    for (size_t i = 0; i < n_in; i++) ins[i] = in[i].name;
    for (size_t i = 0; i < n_out; i++) {
        snprintf(onames[i], sizeof onames[i], "y%zu", i);
        outs[i] = onames[i];
    }
    opt_node *n = opt_node_make(op_type, "node", ins, n_in, outs, n_out);
    opt_error err = {0};
    cr_assert(opt_graph_insert_node(g, 0, n, &err) == OPT_OK);
    for (size_t i = 0; i < n_in; i++) {
        if (!in[i].name[0]) continue;
        if (in[i].initializer) {
            opt_tensor *t = opt_tensor_new();
            t->name = opt_strdup(in[i].name);
            cr_assert(opt_tensor_set_dims(t, in[i].dims, (size_t)in[i].ndim, &err) == OPT_OK);
            cr_assert(opt_tensor_set_raw(t, in[i].dtype, in[i].data,
                                         kt_nbytes(in[i].dtype, in[i].ndim, in[i].dims),
                                         &err) == OPT_OK);
            cr_assert(opt_graph_add_initializer(g, t, &err) == OPT_OK);
        } else {
            g->inputs = realloc(g->inputs, (g->n_inputs + 1) * sizeof *g->inputs);
            g->inputs[g->n_inputs++] = kt_vi(in[i].name, in[i].dtype, in[i].ndim, in[i].dims);
        }
    }
    g->outputs = calloc(n_out, sizeof *g->outputs);
    g->n_outputs = n_out;
    for (size_t i = 0; i < n_out; i++) g->outputs[i] = kt_vi(outs[i], out_dt[i], -1, NULL);
    return m;
}

/* Runs m with `threads` threads, binding the non-initializer operands in order; outputs receive
 * n_out arrays the caller frees (opt_array_free). Fails the test on any error. */
static inline void kt_run(const opt_model *m, int threads, const kt_operand *in, size_t n_in,
                          opt_array *out, size_t n_out)
{
    opt_exec_opts o = {0};
    o.threads = threads;
    opt_exec *e = NULL;
    opt_error err = {0};
    opt_status st = opt_exec_new(m, &o, &e, &err);
    cr_assert_eq(st, OPT_OK, "load: %s", err.msg);
    opt_array ins[16];
    size_t k = 0;
    for (size_t i = 0; i < n_in; i++) {
        if (!in[i].name[0] || in[i].initializer) continue;
        memset(&ins[k], 0, sizeof ins[k]);
        ins[k].dtype = in[i].dtype;
        ins[k].ndim = in[i].ndim;
        memcpy(ins[k].dims, in[i].dims, sizeof in[i].dims[0] * (size_t)in[i].ndim);
        ins[k].data = (void *)in[i].data;
        ins[k].nbytes = kt_nbytes(in[i].dtype, in[i].ndim, in[i].dims);
        k++;
    }
    st = opt_exec_run(e, ins, k, out, n_out, &err);
    cr_assert_eq(st, OPT_OK, "run: %s", err.msg);
    opt_exec_free(e);
}

/* Loads m and expects failure; returns the status (err receives the message). */
static inline opt_status kt_load_fails(const opt_model *m, opt_error *err)
{
    opt_exec_opts o = {0};
    o.threads = 1;
    opt_exec *e = NULL;
    opt_status st = opt_exec_new(m, &o, &e, err);
    opt_exec_free(e);
    return st;
}

static inline void kt_attr_ints(opt_model *m, const char *name, const int64_t *v, size_t n)
{
    opt_error err = {0};
    cr_assert(opt_node_set_attr_ints(m->graph->nodes[0], name, v, n, &err) == OPT_OK);
}

static inline void kt_attr_int(opt_model *m, const char *name, int64_t v)
{
    opt_error err = {0};
    cr_assert(opt_node_set_attr_int(m->graph->nodes[0], name, v, &err) == OPT_OK);
}

static inline void kt_attr_str(opt_model *m, const char *name, const char *v)
{
    opt_error err = {0};
    cr_assert(opt_node_set_attr_string(m->graph->nodes[0], name, v, &err) == OPT_OK);
}

static inline void kt_attr_float(opt_model *m, const char *name, float v)
{
    opt_error err = {0};
    cr_assert(opt_node_set_attr_float(m->graph->nodes[0], name, v, &err) == OPT_OK);
}

#endif
