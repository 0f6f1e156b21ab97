/*
 * tools/info.c — `mopt info`: what a model is made of.
 *
 * Prints the IR version, opsets and producer; inputs and outputs with dtypes and shapes; the op
 * histogram; parameter counts and bytes per dtype (BatchNorm running statistics counted apart,
 * as torchvision does not count them as parameters); a per-initializer table; mopt.history.
 */
#include "tools/common.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: mopt info [options] [MODEL]\n"
    "\n"
    "Describes an ONNX model: IR version, opsets, producer; inputs and outputs with dtypes and\n"
    "shapes; the number of nodes per op type; parameters and bytes per dtype; one line per\n"
    "initializer (name, shape, dtype, bytes, share of zeros); the mopt.history entries.\n"
    "\n"
    "  --json           machine-readable output on stdout\n"
    "  --no-tensors     leave out the per-initializer table\n"
    "  --report FILE    also write the tables to FILE (.json, .csv or .md)\n"
    "  -h, --help       this help\n";

typedef struct opcount {
    const char *op;
    const char *domain;
    size_t n;
} opcount;

static int cmp_opcount(const void *a, const void *b)
{
    const opcount *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? 1 : -1;
    return strcmp(x->op, y->op);
}

/* Renders a value's type as "float32 [N,3,224,224]" into buf. */
static void type_str(const opt_type *t, char *buf, size_t len)
{
    if (!t) {
        snprintf(buf, len, "?");
        return;
    }
    if (t->kind != OPT_TYPE_TENSOR && t->kind != OPT_TYPE_SPARSE_TENSOR) {
        snprintf(buf, len, "%s", t->kind == OPT_TYPE_SEQUENCE ? "sequence" :
                                 t->kind == OPT_TYPE_MAP ? "map" :
                                 t->kind == OPT_TYPE_OPTIONAL ? "optional" : "?");
        return;
    }
    int k = snprintf(buf, len, "%s", opt_dtype_short(t->elem_type));
    if (!t->shape) {
        snprintf(buf + k, len - (size_t)k, " [?]");
        return;
    }
    k += snprintf(buf + k, len - (size_t)k, " [");
    for (size_t i = 0; i < t->shape->n_dim && (size_t)k < len; i++) {
        const opt_dim *d = &t->shape->dim[i];
        if (d->kind == OPT_DIM_VALUE) k += snprintf(buf + k, len - (size_t)k, "%s%lld", i ? "," : "", (long long)d->value);
        else if (d->kind == OPT_DIM_PARAM) k += snprintf(buf + k, len - (size_t)k, "%s%s", i ? "," : "", d->param);
        else k += snprintf(buf + k, len - (size_t)k, "%s?", i ? "," : "");
    }
    if ((size_t)k < len) snprintf(buf + k, len - (size_t)k, "]");
}

static void dims_str(const int64_t *d, size_t n, char *buf, size_t len)
{
    int k = snprintf(buf, len, "[");
    for (size_t i = 0; i < n && (size_t)k < len; i++)
        k += snprintf(buf + k, len - (size_t)k, "%s%lld", i ? "," : "", (long long)d[i]);
    if ((size_t)k < len) snprintf(buf + k, len - (size_t)k, "]");
}

static size_t count_sub_nodes(const opt_graph *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t a = 0; a < g->nodes[i]->n_attrs; a++) {
            const opt_attr *at = &g->nodes[i]->attrs[a];
            if (at->g) n += at->g->n_nodes + count_sub_nodes(at->g);
            for (size_t k = 0; k < at->n_graphs; k++) n += at->graphs[k]->n_nodes + count_sub_nodes(at->graphs[k]);
        }
    return n;
}

int cmd_info(int argc, char **argv)
{
    tool_opts t = {.cmd = "info", .keep_sparse = true, .argc = argc, .argv = argv};
    bool json = false, tensors = true;
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'J'},
        {"no-tensors", no_argument, NULL, 'N'},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&t, c, optarg, help)) continue;
        if (c == 'J') json = true;
        else if (c == 'N') tensors = false;
        else return tool_usage(&t, "bad option");
    }
    int rc = tool_positional(&t, argc, argv, 1);
    if (rc) return rc;
    if (t.out) return tool_usage(&t, "info writes no model; -o is not accepted");
    opt_model *m;
    if ((rc = tool_load(&t, NULL, &m))) return rc;
    const opt_graph *g = m->graph;
    char b1[64], b2[512];

    /* Op histogram. */
    opcount *ops = calloc(g->n_nodes + 1, sizeof *ops);
    size_t nops = 0;
    for (size_t i = 0; ops && i < g->n_nodes; i++) {
        const opt_node *n = g->nodes[i];
        const char *dom = n->domain ? n->domain : "";
        size_t k;
        for (k = 0; k < nops; k++)
            if (strcmp(ops[k].op, n->op_type) == 0 && strcmp(ops[k].domain, dom) == 0) break;
        if (k == nops) ops[nops++] = (opcount){n->op_type, dom, 0};
        ops[k].n++;
    }
    if (ops) qsort(ops, nops, sizeof *ops, cmp_opcount);

    /* BatchNorm running statistics: inputs 3 and 4 of BatchNormalization. */
    opt_graph_index *ix = NULL;
    opt_error e = {0};
    if (opt_graph_index_build(g, &ix, &e) != OPT_OK) {
        free(ops);
        opt_model_free(m);
        return tool_fail(&t, tool_in_name(&t), &e);
    }
    unsigned long long params = 0, bnstats = 0, per_dtype_n[OPT_DT_COUNT] = {0},
                       per_dtype_b[OPT_DT_COUNT] = {0};
    for (size_t i = 0; i < g->n_initializers; i++) {
        const opt_tensor *w = g->initializers[i];
        uint64_t n = 0, bytes = 0;
        opt_tensor_numel(w, &n);
        opt_dtype_raw_bytes(w->data_type, n, &bytes);
        bool bn = false;
        size_t nc;
        const size_t *cons = opt_graph_consumers(ix, w->name ? w->name : "", &nc);
        for (size_t k = 0; k < nc && !bn; k++) {
            const opt_node *cn = g->nodes[cons[k]];
            if (strcmp(cn->op_type, "BatchNormalization") == 0 && cn->n_inputs >= 5 &&
                (strcmp(cn->inputs[3], w->name) == 0 || strcmp(cn->inputs[4], w->name) == 0))
                bn = true;
        }
        if (bn) bnstats += n;
        else params += n;
        if (opt_dtype_valid(w->data_type)) {
            per_dtype_n[w->data_type] += n;
            per_dtype_b[w->data_type] += bytes;
        }
    }
    for (size_t i = 0; i < g->n_sparse_initializers; i++) {
        const opt_tensor *v = g->sparse_initializers[i]->values;
        uint64_t n = 0, bytes = 0;
        opt_tensor_numel(v, &n);
        opt_dtype_raw_bytes(v->data_type, n, &bytes);
        params += n;
        if (opt_dtype_valid(v->data_type)) {
            per_dtype_n[v->data_type] += n;
            per_dtype_b[v->data_type] += bytes;
        }
    }

    /* Inputs that are not initializers (IR < 4 lists initializers as inputs too). */
    tool_table tin, tout, tops, tdt, tinit;
    static const char *io_cols[] = {"name", "type"};
    static const char *op_cols[] = {"count", "op_type"};
    static const char *dt_cols[] = {"dtype", "elements", "bytes"};
    static const char *init_cols[] = {"name", "shape", "dtype", "bytes", "zeros"};
    tool_table_init(&tin, "inputs", 2, io_cols);
    tool_table_init(&tout, "outputs", 2, io_cols);
    tool_table_init(&tops, "ops", 2, op_cols);
    tool_table_init(&tdt, "parameters by dtype", 3, dt_cols);
    tool_table_init(&tinit, "initializers", 5, init_cols);
    tin.numeric = tout.numeric = 0x80000000u; /* no numeric columns */
    tops.numeric = 1u << 0;
    tdt.numeric = (1u << 1) | (1u << 2);
    tinit.numeric = 1u << 3;
    for (size_t i = 0; i < g->n_inputs; i++) {
        if (opt_graph_initializer(g, g->inputs[i]->name ? g->inputs[i]->name : "")) continue;
        type_str(g->inputs[i]->type, b2, sizeof b2);
        tool_table_add(&tin, (const char *[]){g->inputs[i]->name, b2});
    }
    for (size_t i = 0; i < g->n_outputs; i++) {
        type_str(g->outputs[i]->type, b2, sizeof b2);
        tool_table_add(&tout, (const char *[]){g->outputs[i]->name, b2});
    }
    for (size_t i = 0; i < nops; i++)
    {
        char cnt[32], op[512];
        snprintf(cnt, sizeof cnt, "%zu", ops[i].n);
        snprintf(op, sizeof op, "%s%s%s", ops[i].domain, ops[i].domain[0] ? "." : "", ops[i].op);
        tool_table_add(&tops, (const char *[]){cnt, op});
    }
    for (int d = 0; d < OPT_DT_COUNT; d++)
        if (per_dtype_n[d]) tool_table_row(&tdt, "%s\t%llu\t%llu", opt_dtype_short(d), per_dtype_n[d], per_dtype_b[d]);
    if (tensors) {
        for (size_t i = 0; i < g->n_initializers; i++) {
            const opt_tensor *w = g->initializers[i];
            uint64_t n = 0, bytes = 0, zeros = 0;
            opt_tensor_numel(w, &n);
            opt_dtype_raw_bytes(w->data_type, n, &bytes);
            bool numeric = w->data_type != OPT_DT_STRING && w->data_type != OPT_DT_COMPLEX64 &&
                           w->data_type != OPT_DT_COMPLEX128 && (!opt_tensor_is_external(w) || w->has_raw_data);
            if (numeric)
                for (uint64_t k = 0; k < n; k++) zeros += opt_tensor_get(w, k) == 0.0;
            dims_str(w->dims, w->n_dims, b2, sizeof b2);
            char zs[32];
            if (numeric && n) snprintf(zs, sizeof zs, "%.1f%%", 100.0 * (double)zeros / (double)n);
            else snprintf(zs, sizeof zs, "-");
            char bs[32];
            snprintf(bs, sizeof bs, "%llu", (unsigned long long)bytes);
            tool_table_add(&tinit, (const char *[]){w->name, b2, opt_dtype_short(w->data_type), bs, zs});
        }
    }
    const char *hist = opt_model_meta_get(m, "mopt.history");
    size_t subn = count_sub_nodes(g);
    unsigned long long total_bytes = 0;
    for (int d = 0; d < OPT_DT_COUNT; d++) total_bytes += per_dtype_b[d];

    if (json) {
        printf("{\n  \"file\": ");
        tool_json_str(stdout, tool_in_name(&t));
        printf(",\n  \"ir_version\": %lld,\n  \"producer\": ", (long long)m->ir_version);
        {
            char prod[1024];
            snprintf(prod, sizeof prod, "%s %s", m->producer_name ? m->producer_name : "",
                     m->producer_version ? m->producer_version : "");
            tool_json_str(stdout, prod);
        }
        printf(",\n  \"producer_name\": ");
        tool_json_str(stdout, m->producer_name ? m->producer_name : "");
        printf(",\n  \"producer_version\": ");
        tool_json_str(stdout, m->producer_version ? m->producer_version : "");
        printf(",\n  \"opsets\": {");
        for (size_t i = 0; i < m->n_opset_import; i++) {
            const char *d = m->opset_import[i].domain;
            printf("%s", i ? ", " : "");
            tool_json_str(stdout, d && d[0] ? d : "ai.onnx");
            printf(": %lld", (long long)m->opset_import[i].version);
        }
        printf("},\n  \"nodes\": %zu,\n  \"subgraph_nodes\": %zu,\n", g->n_nodes, subn);
        printf("  \"parameters\": %llu,\n  \"batchnorm_statistics\": %llu,\n  \"parameter_bytes\": %llu,\n",
               params, bnstats, total_bytes);
        const tool_table *tabs[] = {&tin, &tout, &tops, &tdt, &tinit};
        const char *keys[] = {"inputs", "outputs", "ops", "dtypes", "initializers"};
        for (size_t k = 0; k < 5; k++) {
            printf("  \"%s\": ", keys[k]);
            tool_table_json(stdout, tabs[k], "  ");
            printf(",\n");
        }
        printf("  \"history\": [");
        for (const char *p = hist ? hist : ""; *p;) {
            const char *nl = strchr(p, '\n');
            size_t l = nl ? (size_t)(nl - p) : strlen(p);
            char *line = strndup(p, l);
            printf("%s\n    ", p == hist ? "" : ",");
            tool_json_str(stdout, line ? line : "");
            free(line);
            p += l + (nl ? 1 : 0);
        }
        printf("\n  ]\n}\n");
    } else {
        printf("model: %s\n", tool_in_name(&t));
        printf("ir_version: %lld\n", (long long)m->ir_version);
        printf("producer: %s %s\n", m->producer_name ? m->producer_name : "", m->producer_version ? m->producer_version : "");
        printf("opsets:");
        for (size_t i = 0; i < m->n_opset_import; i++)
            printf(" %s=%lld", m->opset_import[i].domain && m->opset_import[i].domain[0] ? m->opset_import[i].domain : "ai.onnx",
                   (long long)m->opset_import[i].version);
        printf("\n\n");
        tool_table_print(&tin, stdout);
        printf("\n");
        tool_table_print(&tout, stdout);
        printf("\nops: %zu nodes", g->n_nodes);
        if (subn) printf(" (+%zu in subgraphs)", subn);
        printf("\n");
        for (size_t r = 0; r < tops.nrows; r++) printf("  %7s %s\n", tops.cells[r * 2], tops.cells[r * 2 + 1]);
        printf("\nparameters: %s", tool_commas(params, b1, sizeof b1));
        if (bnstats) printf(" (+%s BatchNorm running statistics)", tool_commas(bnstats, b2, sizeof b2));
        printf(", %s bytes\n", tool_commas(total_bytes, b1, sizeof b1));
        for (size_t r = 0; r < tdt.nrows; r++)
            printf("  %-10s %s elements, %s bytes\n", tdt.cells[r * 3],
                   tool_commas(strtoull(tdt.cells[r * 3 + 1], NULL, 10), b1, sizeof b1),
                   tool_commas(strtoull(tdt.cells[r * 3 + 2], NULL, 10), b2, sizeof b2));
        if (tensors && tinit.nrows) {
            printf("\n");
            tool_table_print(&tinit, stdout);
        }
        if (hist) printf("\nmopt.history:\n  %s\n", hist);
    }
    if (t.report) {
        tool_table all[] = {tin, tout, tops, tdt, tinit};
        rc = tool_report_write(&t, all, 5);
    }
    tool_table_free(&tin);
    tool_table_free(&tout);
    tool_table_free(&tops);
    tool_table_free(&tdt);
    tool_table_free(&tinit);
    opt_graph_index_free(ix);
    free(ops);
    opt_model_free(m);
    return rc;
}
