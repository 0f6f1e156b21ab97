/*
 * tools/main.c — the `mopt` command: dispatches to one subcommand per file.
 */
#include "tools/common.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define CMD(name, summary) int cmd_##name(int argc, char **argv);
#include "tools/commands.def"
#undef CMD

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
#define CMD(name, summary) {#name, cmd_##name, summary},
#include "tools/commands.def"
#undef CMD
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mopt COMMAND [options] [IN] [-o OUT]\n"
            "       mopt COMMAND --help | mopt --help | mopt --version\n\n"
            "mopt makes trained neural networks smaller and faster. Each command reads an ONNX\n"
            "model (a path, or standard input when IN is absent or '-') and writes a rewritten\n"
            "model (-o OUT, or standard output when it is not a terminal).\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit status: 0 success, 1 failure, 2 usage error, 3 accuracy gate failed\n"
               "See mopt(1) and mopt-COMMAND(1).\n");
}

int main(int argc, char **argv)
{
    /* Past `ulimit -f`, write() should fail with EFBIG so mopt reports it and exits 1 (the old
     * file stays in place), rather than the process dying of SIGXFSZ. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(c, "--version") == 0 || strcmp(c, "-V") == 0) {
        printf("mopt %s\n", MOPT_VERSION);
        return 0;
    }
    if (strcmp(c, "--list") == 0) {
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) puts(commands[i].name);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(c, commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "mopt: unknown command '%s' (mopt --help lists them)\n", c);
    return 2;
}
