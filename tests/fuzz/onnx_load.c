/*
 * tests/fuzz/onnx_load.c — fuzz target: the ONNX reader and IR validation.
 *
 * Any bytes: opt_onnx_parse either fails with a one-line message or returns a model that
 * (1) serializes, (2) parses back, (3) serializes to the same bytes again (the IR loses nothing
 * of what it accepted), and (4) survives the graph helpers (index, topological order) and typed
 * access to every initializer; and (5) opt_onnx_load, which maps the file and releases pages as
 * it goes, reads the same model. No external files are touched (skip_external).
 */
#include "fuzz_util.h"
#include "formats/onnx.h"

static void exercise(const opt_model *m)
{
    const opt_graph *g = m->graph;
    opt_error err = {0};
    opt_graph_index *ix = NULL;
    if (opt_graph_index_build(g, &ix, &err) == OPT_OK) {
        for (size_t i = 0; i < g->n_nodes; i++)
            for (size_t k = 0; k < g->nodes[i]->n_inputs; k++) {
                size_t nc;
                const size_t *c = opt_graph_consumers(ix, g->nodes[i]->inputs[k], &nc);
                for (size_t j = 0; j < nc; j++) FUZZ_REQUIRE(c[j] < g->n_nodes, "consumer index");
                long p = opt_graph_producer(ix, g->nodes[i]->inputs[k]);
                FUZZ_REQUIRE(p < (long)g->n_nodes, "producer index");
            }
        opt_graph_index_free(ix);
    }
    size_t *order = NULL;
    if (opt_graph_topo_order(g, &order, &err) == OPT_OK) {
        /* A permutation of the nodes. */
        uint8_t *seen = calloc(g->n_nodes + 1, 1);
        for (size_t i = 0; i < g->n_nodes; i++) {
            FUZZ_REQUIRE(order[i] < g->n_nodes && !seen[order[i]], "topological order is a permutation");
            seen[order[i]] = 1;
        }
        free(seen);
        free(order);
    }
    for (size_t i = 0; i < g->n_initializers; i++) {
        const opt_tensor *t = g->initializers[i];
        uint64_t n;
        if (!opt_tensor_numel(t, &n) || n > (1u << 20)) continue;
        float *v = NULL;
        uint64_t got;
        if (opt_tensor_to_f32_alloc(t, &v, &got, &err) == OPT_OK) {
            FUZZ_REQUIRE(got == n, "to_f32 count");
            free(v);
        } else {
            FUZZ_REQUIRE_MSG(err);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    opt_load_opts lo = {.skip_external = true};
    opt_error err = {0};
    opt_model *m = NULL;
    if (opt_onnx_parse(data, size, NULL, "fuzz", &lo, &m, &err) != OPT_OK) {
        FUZZ_REQUIRE(m == NULL, "no model on failure");
        FUZZ_REQUIRE_MSG(err);
        return 0;
    }
    exercise(m);
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    FUZZ_REQUIRE(opt_onnx_serialize(m, &b1, &n1, &err) == OPT_OK, "serialize: %s", err.msg);
    opt_model *m2 = NULL;
    FUZZ_REQUIRE(opt_onnx_parse(b1, n1, NULL, "fuzz2", &lo, &m2, &err) == OPT_OK,
                 "what was written parses back: %s", err.msg);
    FUZZ_REQUIRE(opt_onnx_serialize(m2, &b2, &n2, &err) == OPT_OK, "serialize again: %s", err.msg);
    FUZZ_REQUIRE(n1 == n2 && memcmp(b1, b2, n1) == 0, "second serialization differs (%zu vs %zu bytes)",
                 n1, n2);
    /* The file path: opt_onnx_load maps regular files and releases pages the parser has copied
     * out of; it must read exactly what opt_onnx_parse reads from memory. */
    char path[64];
    int fd;
    if (fuzz_memfile(data, size, path, sizeof path, &fd) == 0) {
        opt_model *m3 = NULL;
        opt_error e3 = {0};
        FUZZ_REQUIRE(opt_onnx_load(path, &lo, &m3, &e3) == OPT_OK, "parses from memory, not from a file: %s",
                     e3.msg);
        uint8_t *b3 = NULL;
        size_t n3 = 0;
        FUZZ_REQUIRE(opt_onnx_serialize(m3, &b3, &n3, &e3) == OPT_OK, "serialize the loaded model");
        FUZZ_REQUIRE(n3 == n1 && memcmp(b3, b1, n1) == 0, "the mapped load differs from the parse");
        free(b3);
        opt_model_free(m3);
        close(fd);
    }
    free(b1);
    free(b2);
    opt_model_free(m2);
    opt_model_free(m);
    return 0;
}
