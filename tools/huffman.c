/*
 * tools/huffman.c — `mopt huffman`: Huffman coding of clustered weights, the third stage of
 * Deep Compression. A thin filter over opt_huffman().
 */
#include "tools/compress_opts.h"
#include "libopt/ir/huffman_codec.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: mopt huffman [options] [IN] [-o OUT]\n"
    "\n"
    "Codes the index tensors that `mopt cluster` wrote (uint8 initializers read only through\n"
    "Cast -> Gather) with canonical Huffman codes of at most 11 bits, one code table per stream.\n"
    "Dense tensors code every index; sparse ones code the relative positions of the entries that\n"
    "differ from the most frequent index (the pruned zeros) and their indices, as two streams\n"
    "(Deep Compression's sparse format). Each tensor keeps whichever layout is smaller. The\n"
    "payload is a uint8 initializer decoded by the custom op ai.mopt::HuffmanDecode\n"
    "(docs/formats/huffman.md); mopt's executor runs it, and `mopt unpack` restores standard ONNX.\n"
    "Prints, per tensor, bytes before and after and bits per weight next to the entropy bound.\n"
    "\n"
    "  --layout dense|sparse|auto   force one layout (default auto: the smaller)\n"
    "  --include PAT[,PAT]    only index tensors (or weights) whose name matches\n"
    "  --exclude PAT[,PAT]    leave these alone\n"
    "  -o, --output OUT       output path (default: standard output)\n"
    "  --report FILE          also write the per-tensor table to FILE (.json, .csv or .md)\n"
    "  -q, --quiet            no summary on stderr\n"
    "  -h, --help             this help\n";

int cmd_huffman(int argc, char **argv)
{
    tool_opts t = {.cmd = "huffman", .argc = argc, .argv = argv};
    opt_huffman_opts ho = {.auto_layout = true, .force_layout = -1};
    copt_lists l = {0};
    int rc = 0;
    static const struct option longopts[] = {
        {"layout", required_argument, NULL, 'Y'},
        {"include", required_argument, NULL, 'I'},
        {"exclude", required_argument, NULL, 'X'},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&t, c, optarg, help)) continue;
        switch (c) {
        case 'Y':
            if (strcmp(optarg, "auto") == 0) ho = (opt_huffman_opts){.auto_layout = true, .force_layout = -1};
            else if (strcmp(optarg, "dense") == 0) ho.auto_layout = false, ho.force_layout = OPT_HUF_DENSE;
            else if (strcmp(optarg, "sparse") == 0) ho.auto_layout = false, ho.force_layout = OPT_HUF_SPARSE;
            else rc = tool_usage(&t, "--layout: '%s' is not dense, sparse or auto", optarg);
            break;
        case 'I': rc = copt_add_globs(&t, &l.include, &l.n_include, optarg); break;
        case 'X': rc = copt_add_globs(&t, &l.exclude, &l.n_exclude, optarg); break;
        default: rc = tool_usage(&t, "bad option");
        }
        if (rc) goto out;
    }
    if ((rc = tool_positional(&t, argc, argv, 1))) goto out;
    ho.filter = (opt_weight_filter){l.include, l.n_include, l.exclude, l.n_exclude};
    opt_model *m;
    if ((rc = tool_load(&t, NULL, &m))) goto out;
    opt_layer_stat *st = NULL;
    size_t n = 0;
    opt_error e = {0};
    if (opt_huffman(m, &ho, &st, &n, &e) != OPT_OK) {
        rc = tool_fail(&t, tool_in_name(&t), &e);
        opt_model_free(m);
        goto out;
    }
    static const char *cols[] = {"weight", "elements", "layout", "listed_%", "bytes_before",
                                 "bytes_after", "bits_per_weight", "entropy_bound"};
    tool_table tb;
    tool_table_init(&tb, "huffman", 8, cols);
    uint64_t ne = 0, bb = 0, ba = 0;
    double eb = 0;
    for (size_t i = 0; i < n; i++) {
        tool_table_row(&tb, "%s\t%llu\t%s\t%.2f\t%llu\t%llu\t%.3f\t%.3f", st[i].layer,
                       (unsigned long long)st[i].numel, st[i].layout == OPT_HUF_SPARSE ? "sparse" : "dense",
                       st[i].layout == OPT_HUF_SPARSE ? 100.0 - copt_pct(st[i].zeros_after, st[i].numel) : 100.0,
                       (unsigned long long)st[i].bytes_before, (unsigned long long)st[i].bytes_after,
                       st[i].bits_per_weight, st[i].entropy_bits_per_weight);
        ne += st[i].numel;
        bb += st[i].bytes_before;
        ba += st[i].bytes_after;
        eb += st[i].entropy_bits_per_weight * (double)st[i].numel;
    }
    if (n)
        tool_table_row(&tb, "total\t%llu\t\t\t%llu\t%llu\t%.3f\t%.3f", (unsigned long long)ne,
                       (unsigned long long)bb, (unsigned long long)ba, ne ? 8.0 * (double)ba / (double)ne : 0,
                       ne ? eb / (double)ne : 0);
    if (!t.quiet) tool_table_print(&tb, stderr);
    if (n == 0) tool_note(&t, "no clustered index tensors found (run mopt cluster first); model unchanged");
    rc = t.report ? tool_report_write(&t, &tb, 1) : 0;
    tool_table_free(&tb);
    opt_layer_stats_free(st, n);
    if (!rc) rc = tool_save(&t, m, NULL, n > 0);
    opt_model_free(m);
out:
    copt_lists_free(&l);
    return rc;
}
