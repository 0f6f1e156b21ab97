/*
 * libopt/exec/registry.c — the op registry, generated from libopt/exec/ops.def.
 *
 * Each family contributes a zero-terminated table (op_type == NULL ends it). Lookup is a linear
 * scan: it only runs while a model is planned, a few hundred times per load.
 */
#include "libopt/exec/kernel.h"

#include <string.h>

#define FAMILY(name) extern const opt_kernel opt_kernels_##name[];
#include "libopt/exec/ops.def"
#undef FAMILY

static const opt_kernel *const families[] = {
#define FAMILY(name) opt_kernels_##name,
#include "libopt/exec/ops.def"
#undef FAMILY
    NULL,
};

static bool same_domain(const char *a, const char *b)
{
    if (!a || strcmp(a, "ai.onnx") == 0) a = "";
    if (!b || strcmp(b, "ai.onnx") == 0) b = "";
    return strcmp(a, b) == 0;
}

const opt_kernel *opt_kernel_find(const char *domain, const char *op_type, int opset, int dtype,
                                  opt_device dev)
{
    for (size_t f = 0; families[f]; f++)
        for (const opt_kernel *k = families[f]; k->op_type; k++) {
            if (k->device != dev || strcmp(k->op_type, op_type) != 0 || !same_domain(k->domain, domain))
                continue;
            if (opset < k->since || opset > k->until) continue;
            if (k->dtypes == OPT_DTS_ALL) return k;
            if (dtype > 0 && dtype < 32 && (k->dtypes & OPT_DT_BIT(dtype))) return k;
        }
    return NULL;
}

const opt_kernel *opt_kernel_match(const char *domain, const char *op_type, int opset,
                                   const int *in_dt, size_t n_in, opt_device dev)
{
    for (size_t f = 0; families[f]; f++)
        for (const opt_kernel *k = families[f]; k->op_type; k++) {
            if (k->device != dev || strcmp(k->op_type, op_type) != 0 || !same_domain(k->domain, domain))
                continue;
            if (opset < k->since || opset > k->until) continue;
            if (k->dtypes == OPT_DTS_ALL) return k;
            int dt = k->type_input >= 0 && (size_t)k->type_input < n_in ? in_dt[k->type_input] : 0;
            if (dt > 0 && dt < 32 && (k->dtypes & OPT_DT_BIT(dt))) return k;
        }
    return NULL;
}

bool opt_kernel_known(const char *domain, const char *op_type, opt_device dev)
{
    for (size_t f = 0; families[f]; f++)
        for (const opt_kernel *k = families[f]; k->op_type; k++)
            if (k->device == dev && strcmp(k->op_type, op_type) == 0 && same_domain(k->domain, domain))
                return true;
    return false;
}

void opt_kernel_each(void (*fn)(void *ctx, const opt_kernel *k), void *ctx)
{
    for (size_t f = 0; families[f]; f++)
        for (const opt_kernel *k = families[f]; k->op_type; k++) fn(ctx, k);
}
