/*
 * tools/cat.c — `mopt cat`: parse and re-serialize a model, the identity stage of a pipeline.
 * With --external-data it moves large tensors to a side file; --inline-data brings them back.
 */
#include "tools/common.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: mopt cat [options] [IN] [-o OUT]\n"
    "\n"
    "Reads an ONNX model and writes it back unchanged: byte for byte the same for a model\n"
    "without external data. Without options it records nothing in mopt.history.\n"
    "\n"
    "  --external-data        store initializers of at least --size-threshold bytes in a side\n"
    "                         file OUT.data next to OUT (needs -o)\n"
    "  --size-threshold N     bytes (default 1024)\n"
    "  --data-name NAME       side-file name instead of OUT's name + .data\n"
    "  --inline-data          bring external tensors back into the model file\n"
    "  -o, --output OUT       output path (default: standard output)\n"
    "  -q, --quiet            no summary on stderr\n"
    "  -h, --help             this help\n";

int cmd_cat(int argc, char **argv)
{
    tool_opts t = {.cmd = "cat", .keep_sparse = true, .argc = argc, .argv = argv};
    opt_save_opts so = {0};
    bool ext = false, inl = false;
    static const struct option longopts[] = {
        {"external-data", no_argument, NULL, 'E'},
        {"inline-data", no_argument, NULL, 'I'},
        {"size-threshold", required_argument, NULL, 'T'},
        {"data-name", required_argument, NULL, 'D'},
        TOOL_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, TOOL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (tool_common_opt(&t, c, optarg, help)) continue;
        switch (c) {
        case 'E': ext = true; break;
        case 'I': inl = true; break;
        case 'T': {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (*end || v < 0) return tool_usage(&t, "--size-threshold: '%s' is not a byte count", optarg);
            so.size_threshold = (uint64_t)v ? (uint64_t)v : 1;
            break;
        }
        case 'D':
            if (strchr(optarg, '/') || !*optarg || strcmp(optarg, "..") == 0)
                return tool_usage(&t, "--data-name must be a plain file name");
            so.data_name = optarg;
            break;
        default: return tool_usage(&t, "bad option");
        }
    }
    int rc = tool_positional(&t, argc, argv, 1);
    if (rc) return rc;
    if (ext && inl) return tool_usage(&t, "--external-data and --inline-data exclude each other");
    so.external = ext ? OPT_EXTERNAL_MOVE : inl ? OPT_EXTERNAL_INLINE : OPT_EXTERNAL_KEEP;
    opt_model *m;
    if ((rc = tool_load(&t, NULL, &m))) return rc;
    rc = tool_save(&t, m, &so, ext || inl);
    opt_model_free(m);
    return rc;
}
