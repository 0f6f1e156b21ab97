/*
 * tests/fuzz/fuzz_util.h — what the harnesses share: a property check that aborts (so libFuzzer
 * records the input as a crash), and a way to hand fuzz bytes to readers that take a path.
 */
#ifndef MOPT_FUZZ_UTIL_H
#define MOPT_FUZZ_UTIL_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A property the code under test must keep; a violation is a finding, reported and aborted. */
#define FUZZ_REQUIRE(cond, ...)                                                       \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "property violated: %s (%s:%d): ", #cond, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* An error must carry a message: every failure is reported as one line naming what is wrong. */
#define FUZZ_REQUIRE_MSG(err) \
    FUZZ_REQUIRE((err).msg[0] != 0 && !strchr((err).msg, '\n'), "error message '%s'", (err).msg)

/* Writes data to an anonymous in-memory file and returns its /proc path in path (fd in *fd; the
 * caller closes it). For readers that only take a path. Returns 0 or -1. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t cap, int *fd)
{
    *fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (*fd < 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t k = write(*fd, data + off, size - off);
        if (k <= 0) {
            close(*fd);
            return -1;
        }
        off += (size_t)k;
    }
    snprintf(path, cap, "/proc/self/fd/%d", *fd);
    return 0;
}

/* The lowest free descriptor: the same before and after a call means the call leaked none. */
static inline int fuzz_lowest_fd(void)
{
    int fd = dup(0);
    if (fd >= 0) close(fd);
    return fd;
}

#endif
