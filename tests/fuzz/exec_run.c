/*
 * tests/fuzz/exec_run.c — fuzz target: a crafted model through mopt's executor (plan and run on
 * the CPU, one thread). Seeds are ONNX's backend node tests, so mutations land on kernels with
 * odd attributes, shapes and index initializers (Gather, Slice, Pad, Resize, ScatterND, the
 * Huffman decoder op, ...). Inputs are bound at their declared shapes (symbolic dims as 1) and
 * filled with small deterministic values. Properties: no out-of-bounds access (ASan), no UB
 * (UBSan), and a refusal carries a one-line message. Models with more than 64 nodes or inputs of
 * more than 65536 elements are skipped to keep executions fast; node outputs are capped at 32 MiB.
 */
#include "fuzz_util.h"
#include "formats/onnx.h"
#include "libopt/exec/exec.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    opt_load_opts lo = {.skip_external = true};
    opt_error err = {0};
    opt_model *m = NULL;
    if (opt_onnx_parse(data, size, NULL, "fuzz", &lo, &m, &err) != OPT_OK) return 0;
    if (m->graph->n_nodes > 64) {
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
