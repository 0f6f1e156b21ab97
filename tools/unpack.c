/*
 * tools/unpack.c — `mopt unpack`: back to standard ONNX. Decodes ai.mopt::HuffmanDecode payloads
 * into uint8 index initializers (the Gather form `mopt cluster` writes), or with --dense folds
 * the codebook lookups into dense float weights.
 */
#include "tools/common.h"
#include "libopt/passes/compress.h"

#include <string.h>

static const char help[] =
    "usage: mopt unpack [options] [IN] [-o OUT]\n"
    "\n"
    "Turns a model written by `mopt huffman` back into standard ONNX that every runtime loads:\n"
    "each ai.mopt::HuffmanDecode node and its payload become the uint8 index initializer they\n"
    "code (Cast + Gather stay: the clustered form). With --dense, each Gather of a constant\n"
    "codebook by constant indices (what `mopt cluster` writes) also becomes a dense weight.\n"
    "\n"
    "  --dense                fold codebook lookups into dense weights of the codebook's dtype\n"
    "  -o, --output OUT       output path (default: standard output)\n"
    "  -q, --quiet            no summary on stderr\n"
    "  -h, --help             this help\n";

int cmd_unpack(int argc, char **argv)
{
    tool_opts t = {.cmd = "unpack", .argc = argc, .argv = argv};
    bool dense = false;
    static const struct option longopts[] = {
        {"dense", no_argument, NULL, 'd'},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&t, c, optarg, help)) continue;
        if (c == 'd') dense = true;
        else return tool_usage(&t, "bad option");
    }
    if ((rc = tool_positional(&t, argc, argv, 1))) return rc;
    opt_model *m;
    if ((rc = tool_load(&t, NULL, &m))) return rc;
    opt_error e = {0};
    size_t n = 0;
    if (opt_unpack(m, dense, &n, &e) != OPT_OK) {
        rc = tool_fail(&t, tool_in_name(&t), &e);
        opt_model_free(m);
        return rc;
    }
    tool_note(&t, "%zu tensor%s restored%s", n, n == 1 ? "" : "s", dense ? " to dense weights" : "");
    rc = tool_save(&t, m, NULL, n > 0);
    opt_model_free(m);
    return rc;
}
