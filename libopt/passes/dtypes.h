/*
 * libopt/passes/dtypes.h — element types of every value of a graph, for the precision passes.
 *
 * The amp and quant passes need to know which values are float32 before they rewrite a graph.
 * ONNX files declare the types of graph inputs, outputs and initializers, and often (not always)
 * of intermediate values in value_info; the rest follows from each op's type rule, which this
 * file applies in topological order: most ops give their outputs the type of their first input,
 * and the exceptions (Cast, Shape, comparisons, Constant, QuantizeLinear, ...) are listed in a
 * table in dtypes.c. Unknown types are 0.
 */
#ifndef OPT_PASSES_DTYPES_H
#define OPT_PASSES_DTYPES_H

#include "libopt/ir/ir.h"
#include "libopt/ir/strmap.h"

typedef struct opt_dtypes {
    opt_strmap map; /* value name -> dtype; keys borrowed from the graph */
} opt_dtypes;

/* Fills d (zero-initialised) with the types of g's values. The keys point into g: d is valid
 * while those names live (rebuild after editing the graph). */
opt_status opt_dtypes_infer(const opt_graph *g, opt_dtypes *d, opt_error *err);
/* The dtype of name, or 0 when unknown. */
int opt_dtypes_get(const opt_dtypes *d, const char *name);
/* Records a dtype (name borrowed). */
bool opt_dtypes_set(opt_dtypes *d, const char *name, int dtype);
void opt_dtypes_free(opt_dtypes *d);

#endif
