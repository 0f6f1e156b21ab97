/*
 * tests/fuzz/exec_run.c — fuzz target: a crafted model through mopt's executor (plan and run on
 * the CPU, one thread). Seeds are ONNX's backend node tests, so mutations land on kernels with
 * odd attributes, shapes and index initializers (Gather, Slice, Pad, Resize, ScatterND, the
 * Huffman decoder op, ...). Inputs are bound at their declared shapes (symbolic dims as 1) and
 * filled with small deterministic values. Properties: no out-of-bounds access (ASan), no UB
 * (UBSan), and a refusal carries a one-line message. Models with more than 64 nodes or inputs of
 * more than 65536 elements are skipped to keep executions fast; node outputs are capped at 32 MiB.
 * So are convolutions whose multiply-adds, bounded from the declared shapes, exceed 2^26: a small
 * input with large pads (a mutated test_convinteger_with_padding: 1.5 G multiply-adds, 35 s under
 * the sanitizers) is legitimate work, not a hang, but would trip libFuzzer's 10 s timeout.
 */
#include "fuzz_util.h"
#include "formats/onnx.h"
#include "libopt/exec/exec.h"

#include <math.h>

static void fill(opt_array *a)
{
    uint8_t *p = a->data;
    uint64_t n = opt_array_numel(a);
    for (uint64_t i = 0; i < n; i++) {
        switch (a->dtype) {
        case OPT_DT_FLOAT: ((float *)p)[i] = (float)((int)(i % 7) - 3) * 0.5f; break;
        case OPT_DT_DOUBLE: ((double *)p)[i] = (double)((int)(i % 5) - 2); break;
        case OPT_DT_INT64: ((int64_t *)p)[i] = (int64_t)(i % 3); break;
        case OPT_DT_INT32: ((int32_t *)p)[i] = (int32_t)(i % 3); break;
        default: break; /* zeros from opt_array_alloc */
        }
    }
}

/* The declared dims of value `name` (a graph input or an initializer; symbolic dims as 1), or -1. */
static int declared(const opt_graph *g, const char *name, int64_t *dims)
{
    const opt_tensor *t = opt_graph_initializer(g, name);
    if (t) {
        if (t->n_dims > OPT_MAX_DIMS) return -1;
        for (size_t d = 0; d < t->n_dims; d++) dims[d] = t->dims[d];
        return (int)t->n_dims;
    }
    for (size_t i = 0; i < g->n_inputs; i++) {
        const opt_value_info *v = g->inputs[i];
        if (!v->name || strcmp(v->name, name) != 0) continue;
        if (!v->type || !v->type->shape || v->type->shape->n_dim > OPT_MAX_DIMS) return -1;
        const opt_shape *sh = v->type->shape;
        for (size_t d = 0; d < sh->n_dim; d++)
            dims[d] = sh->dim[d].kind == OPT_DIM_VALUE && sh->dim[d].value > 0 ? sh->dim[d].value : 1;
        return (int)sh->n_dim;
    }
    return -1;
}

/* An upper bound of the multiply-adds of the model's convolutions whose x and w shapes are
 * declared: the positions (Conv: every output position, at most the input plus its pads;
 * ConvTranspose: every input position) times the weight's size. */
static double conv_work(const opt_graph *g)
{
    double total = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        bool ct = strcmp(n->op_type, "ConvTranspose") == 0, ql = strcmp(n->op_type, "QLinearConv") == 0;
        if (!ct && !ql && strcmp(n->op_type, "Conv") != 0 && strcmp(n->op_type, "ConvInteger") != 0) continue;
        size_t wi = ql ? 3 : 1;
        if (n->n_inputs <= wi) continue;
        int64_t x[OPT_MAX_DIMS], w[OPT_MAX_DIMS];
        int nx = declared(g, n->inputs[0], x), nw = declared(g, n->inputs[wi], w);
        if (nx < 3 || nw < 1) continue;
        const opt_attr *pads = opt_node_attr(n, "pads");
        double wn = 1, pos = (double)x[0];
        for (int d = 0; d < nw; d++) wn *= (double)w[d];
        for (int d = 2; d < nx; d++) {
            double in = (double)x[d];
            if (!ct && pads && pads->n_ints >= (size_t)(2 * (nx - 2)))
                in += fabs((double)pads->ints[d - 2]) + fabs((double)pads->ints[d - 2 + nx - 2]);
            pos *= in;
        }
        total += pos * wn;
    }
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    opt_load_opts lo = {.skip_external = true};
    opt_error err = {0};
    opt_model *m = NULL;
    if (opt_onnx_parse(data, size, NULL, "fuzz", &lo, &m, &err) != OPT_OK) return 0;
    if (m->graph->n_nodes > 64 || conv_work(m->graph) > 0x1p26) {
        opt_model_free(m);
        return 0;
    }
    /* A legitimate model may ask for outputs of gigabytes (a ConvTranspose with large strides):
     * refused above 32 MiB, so that libFuzzer's memory and time limits report only real leaks,
     * blow-ups and hangs. */
    opt_exec_opts eo = {.threads = 1, .max_output_bytes = 32u << 20};
    opt_exec *e = NULL;
    if (opt_exec_new(m, &eo, &e, &err) != OPT_OK) {
        FUZZ_REQUIRE_MSG(err);
        opt_model_free(m);
        return 0;
    }
    size_t ni = opt_exec_n_inputs(e), no = opt_exec_n_outputs(e);
    opt_array *in = calloc(ni + 1, sizeof *in), *out = calloc(no + 1, sizeof *out);
    bool ok = true;
    for (size_t i = 0; i < ni && ok; i++) {
        int nd;
        int64_t dims[OPT_MAX_DIMS];
        int dt = opt_exec_input_shape(e, i, &nd, dims);
        if (nd < 0 || nd > OPT_MAX_DIMS || dt == OPT_DT_STRING) {
            ok = false;
            break;
        }
        in[i].dtype = dt;
        in[i].ndim = nd;
        uint64_t n = 1;
        for (int d = 0; d < nd; d++) {
            in[i].dims[d] = dims[d] < 0 ? 1 : dims[d];
            if (in[i].dims[d] > 65536 || (n *= (uint64_t)in[i].dims[d]) > 65536) ok = false;
        }
        if (ok && !opt_array_alloc(&in[i])) ok = false;
        if (ok) fill(&in[i]);
    }
    if (ok) {
        if (opt_exec_run(e, in, ni, out, no, &err) != OPT_OK) FUZZ_REQUIRE_MSG(err);
        for (size_t i = 0; i < no; i++) opt_array_free(&out[i]);
    }
    for (size_t i = 0; i < ni; i++) opt_array_free(&in[i]);
    free(in);
    free(out);
    opt_exec_free(e);
    opt_model_free(m);
    return 0;
}
