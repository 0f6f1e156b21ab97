/*
 * libopt/ir/strmap.h — an open-addressing hash map from strings to size_t values.
 *
 * Keys are borrowed, not copied: they must outlive the map (they are usually names owned by the
 * graph being indexed). Used by the graph index, validation and the executor's planner.
 */
#ifndef OPT_STRMAP_H
#define OPT_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct opt_strmap {
    const char **keys;
    size_t *vals;
    size_t cap; /* power of two, or 0 */
    size_t n;
} opt_strmap;

/* Zero-initialised map is valid and empty. */
void opt_strmap_free(opt_strmap *m);
/* Inserts or replaces; false on out-of-memory. */
bool opt_strmap_put(opt_strmap *m, const char *key, size_t val);
/* Looks key up; returns whether it is present and stores its value in *val (may be NULL). */
bool opt_strmap_get(const opt_strmap *m, const char *key, size_t *val);

#endif
