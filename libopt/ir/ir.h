/*
 * libopt/ir/ir.h — mopt's in-memory model: model, graph, node, tensor, attribute.
 *
 * The IR mirrors ONNX's ModelProto closely enough that formats/onnx.c can turn a model into the
 * IR and back into exactly the same bytes: every optional field keeps its presence (a NULL string
 * or a has_ flag of 0 means "absent"), typed data fields stay typed, and protobuf fields this
 * version of onnx.proto does not know are kept as opaque opt_unknown records. Passes and kernels
 * only ever see these types; nothing here knows about protobuf.
 *
 * Ownership: the model owns its graph; a graph owns its nodes, tensors and value infos; a node owns
 * its attributes; all strings and arrays are malloc'd and owned by the struct that points to them.
 * opt_model_free() releases everything. Every _free function accepts NULL.
 *
 * This header depends on nothing but libc.
 */
#ifndef OPT_IR_H
#define OPT_IR_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ------------------------------------------------------------------ */

#define OPT_STATUS_LIST(X)                                                        \
    X(OPT_OK, "ok")                                                               \
    X(OPT_ERR_NOMEM, "out of memory")                                             \
    X(OPT_ERR_IO, "I/O error")                                                    \
    X(OPT_ERR_PARSE, "not a valid ONNX model")                                    \
    X(OPT_ERR_INVALID, "invalid model")                                           \
    X(OPT_ERR_UNSUPPORTED, "unsupported")                                         \
    X(OPT_ERR_USAGE, "usage error")                                               \
    X(OPT_ERR_LIMIT, "resource limit exceeded")                                   \
    X(OPT_ERR_DATA, "bad input data")                                             \
    X(OPT_ERR_ACCURACY, "accuracy gate failed")

typedef enum opt_status {
#define OPT_X_ENUM(name, text) name,
    OPT_STATUS_LIST(OPT_X_ENUM)
#undef OPT_X_ENUM
    OPT_STATUS_COUNT
} opt_status;

/* The error context every fallible library call fills: a status and a one-line message that
 * names the node or tensor at fault. Tools print it as "mopt CMD: FILE: msg". */
typedef struct opt_error {
    opt_status status;
    char msg[512];
} opt_error;

/* Returns a static string describing status s. */
const char *opt_status_str(opt_status s);

/* Sets err (if not NULL) to status s with a printf-style message and returns s, so callers can
 * write `return opt_error_set(err, OPT_ERR_INVALID, "node '%s': ...", name);`. */
opt_status opt_error_set(opt_error *err, opt_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Convenience for early returns: evaluate an opt_status expression, return it on failure. */
#define OPT_TRY(expr)                            \
    do {                                         \
        opt_status opt_try_s_ = (expr);          \
        if (opt_try_s_ != OPT_OK) return opt_try_s_; \
    } while (0)

/* ---- element types ------------------------------------------------------------------------ */

/* ONNX TensorProto.DataType codes, including the IR 9/10 float8 and 4-bit types. */
typedef enum opt_dtype {
    OPT_DT_UNDEFINED = 0,
    OPT_DT_FLOAT = 1,
    OPT_DT_UINT8 = 2,
    OPT_DT_INT8 = 3,
    OPT_DT_UINT16 = 4,
    OPT_DT_INT16 = 5,
    OPT_DT_INT32 = 6,
    OPT_DT_INT64 = 7,
    OPT_DT_STRING = 8,
    OPT_DT_BOOL = 9,
    OPT_DT_FLOAT16 = 10,
    OPT_DT_DOUBLE = 11,
    OPT_DT_UINT32 = 12,
    OPT_DT_UINT64 = 13,
    OPT_DT_COMPLEX64 = 14,
    OPT_DT_COMPLEX128 = 15,
    OPT_DT_BFLOAT16 = 16,
    OPT_DT_FLOAT8E4M3FN = 17,
    OPT_DT_FLOAT8E4M3FNUZ = 18,
    OPT_DT_FLOAT8E5M2 = 19,
    OPT_DT_FLOAT8E5M2FNUZ = 20,
    OPT_DT_UINT4 = 21,
    OPT_DT_INT4 = 22,
    OPT_DT_FLOAT4E2M1 = 23,
    OPT_DT_COUNT
} opt_dtype;

/* Name of a dtype as ONNX spells it ("FLOAT", "INT64", ...), or "UNKNOWN". */
const char *opt_dtype_name(int dtype);
/* Lower-case short name ("float32", "int64", "float16", ...) for reports. */
const char *opt_dtype_short(int dtype);
/* Size in bits of one element (4 for int4/uint4/float4, 0 for string/undefined/unknown). */
int opt_dtype_bits(int dtype);
/* True for dtypes the IR knows (1..23). */
bool opt_dtype_valid(int dtype);
/* Bytes needed for n elements of dtype in raw_data layout (4-bit types pack two per byte).
 * Returns false on overflow or for string/unknown dtypes. */
bool opt_dtype_raw_bytes(int dtype, uint64_t n, uint64_t *bytes);

/* Scalar conversions with correct rounding (round to nearest even; NaN kept NaN). */
uint16_t opt_f32_to_f16(float f);
float opt_f16_to_f32(uint16_t h);
uint16_t opt_f32_to_bf16(float f);
float opt_bf16_to_f32(uint16_t h);
uint8_t opt_f32_to_f8(float f, int dtype, bool saturate);
float opt_f8_to_f32(uint8_t v, int dtype);

/* ---- protobuf fields this onnx.proto does not know ----------------------------------------- */

typedef struct opt_unknown_field {
    uint32_t tag;
    uint8_t wire_type;
    size_t len;
    uint8_t *data;
} opt_unknown_field;

typedef struct opt_unknown {
    size_t n;
    opt_unknown_field *f;
} opt_unknown;

/* ---- small shared structs ------------------------------------------------------------------ */

typedef struct opt_bytes {
    size_t len;
    uint8_t *data;
} opt_bytes;

/* StringStringEntryProto. NULL key/value means the field was absent. */
typedef struct opt_kv {
    char *key;
    char *value;
    opt_unknown unk;
} opt_kv;

/* OperatorSetIdProto. */
typedef struct opt_opset {
    char *domain;
    bool has_version;
    int64_t version;
    opt_unknown unk;
} opt_opset;

/* A message the IR keeps as its serialized bytes because no pass looks inside it
 * (TensorProto.Segment, TrainingInfoProto, TensorAnnotation). */
typedef opt_bytes opt_blob;

/* ---- tensors -------------------------------------------------------------------------------- */

/* TensorProto. Data lives in exactly the fields the file used: raw_data or one typed field.
 * Use opt_tensor_to_f32()/opt_tensor_set_f32() for typed access instead of touching them. */
typedef struct opt_tensor {
    char *name;
    char *doc_string;
    int64_t *dims;
    size_t n_dims;
    bool has_data_type;
    int32_t data_type;
    opt_blob *segment;                 /* NULL when absent */
    bool has_raw_data;
    opt_bytes raw_data;
    float *float_data;     size_t n_float_data;
    int32_t *int32_data;   size_t n_int32_data;
    opt_bytes *string_data; size_t n_string_data;
    int64_t *int64_data;   size_t n_int64_data;
    double *double_data;   size_t n_double_data;
    uint64_t *uint64_data; size_t n_uint64_data;
    opt_kv *external_data; size_t n_external_data;
    bool has_data_location;
    int32_t data_location;             /* 0 default, 1 external */
    opt_unknown unk;
} opt_tensor;

/* SparseTensorProto. */
typedef struct opt_sparse_tensor {
    opt_tensor *values;
    opt_tensor *indices;
    int64_t *dims;
    size_t n_dims;
    opt_unknown unk;
} opt_sparse_tensor;

/* ---- types --------------------------------------------------------------------------------- */

typedef struct opt_dim {
    enum { OPT_DIM_NONE = 0, OPT_DIM_VALUE = 1, OPT_DIM_PARAM = 2 } kind;
    int64_t value;
    char *param;
    char *denotation;
    opt_unknown unk;
} opt_dim;

/* TensorShapeProto. */
typedef struct opt_shape {
    opt_dim *dim;
    size_t n_dim;
    opt_unknown unk;
} opt_shape;

typedef enum opt_type_kind {
    OPT_TYPE_NONE = 0,
    OPT_TYPE_TENSOR = 1,
    OPT_TYPE_SEQUENCE = 4,
    OPT_TYPE_MAP = 5,
    OPT_TYPE_SPARSE_TENSOR = 8,
    OPT_TYPE_OPTIONAL = 9,
} opt_type_kind;

/* TypeProto. For TENSOR and SPARSE_TENSOR, elem_type and shape (NULL = unknown rank) apply; for
 * SEQUENCE and OPTIONAL, elem; for MAP, key_type and elem (the value type). `inner_unk` holds the
 * unknown fields of the inner oneof message (TypeProto.Tensor etc.). */
typedef struct opt_type {
    opt_type_kind kind;
    bool has_elem_type;
    int32_t elem_type;
    opt_shape *shape;
    bool has_key_type;
    int32_t key_type;
    struct opt_type *elem;
    char *denotation;
    opt_unknown inner_unk;
    opt_unknown unk;
} opt_type;

/* ValueInfoProto. */
typedef struct opt_value_info {
    char *name;
    opt_type *type;
    char *doc_string;
    opt_unknown unk;
} opt_value_info;

/* ---- attributes, nodes, graphs ------------------------------------------------------------- */

typedef enum opt_attr_type {
    OPT_ATTR_UNDEFINED = 0,
    OPT_ATTR_FLOAT = 1,
    OPT_ATTR_INT = 2,
    OPT_ATTR_STRING = 3,
    OPT_ATTR_TENSOR = 4,
    OPT_ATTR_GRAPH = 5,
    OPT_ATTR_FLOATS = 6,
    OPT_ATTR_INTS = 7,
    OPT_ATTR_STRINGS = 8,
    OPT_ATTR_TENSORS = 9,
    OPT_ATTR_GRAPHS = 10,
    OPT_ATTR_SPARSE_TENSOR = 11,
    OPT_ATTR_SPARSE_TENSORS = 12,
    OPT_ATTR_TYPE_PROTO = 13,
    OPT_ATTR_TYPE_PROTOS = 14,
} opt_attr_type;

struct opt_graph;

/* AttributeProto. */
typedef struct opt_attr {
    char *name;
    char *ref_attr_name;
    char *doc_string;
    bool has_type;
    int32_t type;
    bool has_f;     float f;
    bool has_i;     int64_t i;
    bool has_s;     opt_bytes s;
    opt_tensor *t;
    struct opt_graph *g;
    opt_sparse_tensor *sparse_tensor;
    opt_type *tp;
    float *floats;                     size_t n_floats;
    int64_t *ints;                     size_t n_ints;
    opt_bytes *strings;                size_t n_strings;
    opt_tensor **tensors;              size_t n_tensors;
    struct opt_graph **graphs;         size_t n_graphs;
    opt_sparse_tensor **sparse_tensors; size_t n_sparse_tensors;
    opt_type **type_protos;            size_t n_type_protos;
    opt_unknown unk;
} opt_attr;

/* NodeProto. An empty input name ("") marks an omitted optional input. */
typedef struct opt_node {
    char **inputs;   size_t n_inputs;
    char **outputs;  size_t n_outputs;
    char *name;
    char *op_type;
    char *domain;
    opt_attr *attrs; size_t n_attrs;
    char *doc_string;
    opt_unknown unk;
} opt_node;

/* GraphProto. Node, initializer and value-info arrays are arrays of pointers so edits can move
 * them without invalidating pointers held elsewhere. */
typedef struct opt_graph {
    opt_node **nodes;                 size_t n_nodes;
    char *name;
    opt_tensor **initializers;        size_t n_initializers;
    opt_sparse_tensor **sparse_initializers; size_t n_sparse_initializers;
    char *doc_string;
    opt_value_info **inputs;          size_t n_inputs;
    opt_value_info **outputs;         size_t n_outputs;
    opt_value_info **value_info;      size_t n_value_info;
    opt_blob *quantization_annotation; size_t n_quantization_annotation;
    opt_unknown unk;
} opt_graph;

/* FunctionProto. */
typedef struct opt_function {
    char *name;
    char **inputs;      size_t n_inputs;
    char **outputs;     size_t n_outputs;
    char **attributes;  size_t n_attributes;
    opt_node **nodes;   size_t n_nodes;
    char *doc_string;
    opt_opset *opset_import; size_t n_opset_import;
    char *domain;
    opt_unknown unk;
} opt_function;

/* ModelProto. `dir` is the directory external data locations resolve against (owned; NULL for
 * stdin, meaning the current directory). */
typedef struct opt_model {
    bool has_ir_version;
    int64_t ir_version;
    opt_opset *opset_import;   size_t n_opset_import;
    char *producer_name;
    char *producer_version;
    char *domain;
    bool has_model_version;
    int64_t model_version;
    char *doc_string;
    opt_graph *graph;
    opt_kv *metadata_props;    size_t n_metadata_props;
    opt_blob *training_info;   size_t n_training_info;
    opt_function **functions;  size_t n_functions;
    opt_unknown unk;
} opt_model;

/* ---- allocation and freeing (ir.c) --------------------------------------------------------- */

/* Each _new returns a zeroed object owned by the caller, or NULL when out of memory. */
opt_model *opt_model_new(void);
opt_graph *opt_graph_new(void);
opt_node *opt_node_new(void);
opt_tensor *opt_tensor_new(void);
opt_value_info *opt_value_info_new(void);
opt_type *opt_type_new(void);

void opt_model_free(opt_model *m);
void opt_graph_free(opt_graph *g);
void opt_node_free(opt_node *n);
void opt_attr_clear(opt_attr *a);
void opt_tensor_free(opt_tensor *t);
void opt_sparse_tensor_free(opt_sparse_tensor *s);
void opt_type_free(opt_type *t);
void opt_value_info_free(opt_value_info *v);
void opt_function_free(opt_function *f);
void opt_unknown_clear(opt_unknown *u);
void opt_kv_clear(opt_kv *kv);
void opt_opset_clear(opt_opset *o);

/* Deep copies; the caller owns the result. NULL on out-of-memory (or NULL input). */
opt_tensor *opt_tensor_dup(const opt_tensor *t);
opt_type *opt_type_dup(const opt_type *t);
opt_value_info *opt_value_info_dup(const opt_value_info *v);

/* strdup that accepts NULL (returns NULL). */
char *opt_strdup(const char *s);

/* ---- model-level helpers (ir.c) ------------------------------------------------------------ */

/* Opset version the model imports for domain ("" or "ai.onnx" for the default), or -1. */
int64_t opt_model_opset(const opt_model *m, const char *domain);
/* Value of metadata_props[key] or NULL. */
const char *opt_model_meta_get(const opt_model *m, const char *key);
/* Sets metadata_props[key] = value (adds or replaces). */
opt_status opt_model_meta_set(opt_model *m, const char *key, const char *value, opt_error *err);
/* Appends one entry (a line) to the model's "mopt.history" metadata. */
opt_status opt_model_history_append(opt_model *m, const char *entry, opt_error *err);

/* ---- tensors (tensor.c) --------------------------------------------------------------------- */

/* Number of elements; false on overflow or a negative dim. */
bool opt_tensor_numel(const opt_tensor *t, uint64_t *n);
/* Checks that the data present agrees with dims and dtype (raw_data length, typed field count,
 * external data). Names the tensor in err. */
opt_status opt_tensor_check(const opt_tensor *t, opt_error *err);
/* True when the tensor's data lives in an external file (data_location == EXTERNAL). */
bool opt_tensor_is_external(const opt_tensor *t);
/* Reads element i as double, whatever the dtype and storage (not for strings/complex). */
double opt_tensor_get(const opt_tensor *t, uint64_t i);
/* Copies all elements as float32 into out (n elements = numel). Converts from every numeric dtype
 * with correct rounding. Fails for string/complex/external tensors. */
opt_status opt_tensor_to_f32(const opt_tensor *t, float *out, opt_error *err);
/* Same, into a malloc'd array the caller frees. */
opt_status opt_tensor_to_f32_alloc(const opt_tensor *t, float **out, uint64_t *n, opt_error *err);
/* Replaces the tensor's data with n float32 values converted to dtype (rounding to nearest even,
 * saturating for ints), stored as raw_data; clears the typed fields. dims are unchanged and must
 * describe n elements. */
opt_status opt_tensor_set_f32(opt_tensor *t, int dtype, const float *src, uint64_t n, opt_error *err);
/* Replaces the tensor's data with raw bytes (copied) of the given dtype. */
opt_status opt_tensor_set_raw(opt_tensor *t, int dtype, const void *data, size_t len, opt_error *err);
/* Pointer to contiguous native-layout data if the tensor stores raw_data (little-endian host)
 * or a typed field with the same layout (float_data for FLOAT, int64_data for INT64, ...);
 * NULL otherwise. */
const void *opt_tensor_data(const opt_tensor *t, size_t *len);
/* Sets dims (copied). */
opt_status opt_tensor_set_dims(opt_tensor *t, const int64_t *dims, size_t n, opt_error *err);

/* ---- sparse tensors (sparse.c) ------------------------------------------------------------- */

/* Dense tensor (raw_data, named like s->values) with s's values at s's indices and zeros
 * elsewhere. Checks indices: INT64, [NNZ] linear or [NNZ, rank] coordinates, in range, strictly
 * increasing (no duplicates). Caller owns *out. */
opt_status opt_sparse_to_dense(const opt_sparse_tensor *s, opt_tensor **out, opt_error *err);
/* Sparse form of t: its non-zero elements (bitwise) as values [NNZ] and their linear row-major
 * positions as INT64 indices [NNZ]. Caller owns *out. */
opt_status opt_sparse_from_dense(const opt_tensor *t, opt_sparse_tensor **out, opt_error *err);
/* Moves every sparse initializer of g into g->initializers as a dense tensor. */
opt_status opt_graph_densify(opt_graph *g, opt_error *err);
/* Replaces initializer `name` by a sparse initializer when that is smaller (values + int64
 * indices < dense bytes); *saved (may be NULL) receives the bytes saved, 0 when left dense. */
opt_status opt_graph_sparsify(opt_graph *g, const char *name, size_t *saved, opt_error *err);

/* ---- graphs (graph.c) ----------------------------------------------------------------------- */

/* An index of a graph: who produces and who consumes each value name. Built by
 * opt_graph_index_build; invalid after the graph is edited (rebuild it). */
typedef struct opt_graph_index opt_graph_index;

opt_status opt_graph_index_build(const opt_graph *g, opt_graph_index **out, opt_error *err);
void opt_graph_index_free(opt_graph_index *ix);
/* Node producing `name` (index into g->nodes) or -1 when it is a graph input, initializer or
 * undefined. */
long opt_graph_producer(const opt_graph_index *ix, const char *name);
/* Consumers of `name` as indices into g->nodes; *n receives the count. The array belongs to ix. */
const size_t *opt_graph_consumers(const opt_graph_index *ix, const char *name, size_t *n);
/* True when name is a graph output. */
bool opt_graph_is_output(const opt_graph_index *ix, const char *name);

/* Finds by name; NULL when absent. */
opt_tensor *opt_graph_initializer(const opt_graph *g, const char *name);
opt_node *opt_graph_node(const opt_graph *g, const char *name);
/* The bounds of Clip node n in a model of ONNX opset `opset`: attributes min and max before
 * opset 11, constant scalar float inputs from 11 on; an absent bound is -/+FLT_MAX. false when a
 * bound is not a constant scalar (then it is known only at run time). */
bool opt_clip_bounds(const opt_graph *g, const opt_node *n, int64_t opset, float *lo, float *hi);
opt_value_info *opt_graph_value_info(const opt_graph *g, const char *name);

/* Topological order of g->nodes: *order receives a malloc'd array of n_nodes indices (caller
 * frees). Values defined by an enclosing graph count as defined when outer_defined(name) says so
 * (may be NULL). Reports a cycle naming one of its nodes. Implicit inputs of subgraphs (names
 * used inside an If/Loop/Scan body but defined in this graph) count as inputs of the node. */
opt_status opt_graph_topo_order(const opt_graph *g, size_t **order, opt_error *err);
/* Reorders g->nodes topologically (stable for graphs already sorted). */
opt_status opt_graph_topo_sort(opt_graph *g, opt_error *err);

/* Validation: every node input defined (graph input, initializer, earlier node output or outer
 * scope), every value assigned once, no cycles, graph outputs defined; recursive into subgraphs.
 * Errors name the node and value. */
opt_status opt_model_validate(const opt_model *m, opt_error *err);

/* Returns a name based on `base` that no value, node or initializer in g uses yet (malloc'd). */
char *opt_graph_unique_name(const opt_graph *g, const char *base);

/* Appends a node (ownership moves to g). Inserting at position `at` (or n_nodes to append). */
opt_status opt_graph_insert_node(opt_graph *g, size_t at, opt_node *n, opt_error *err);
/* Removes and frees node i. */
void opt_graph_remove_node(opt_graph *g, size_t i);
/* Appends an initializer (ownership moves to g). */
opt_status opt_graph_add_initializer(opt_graph *g, opt_tensor *t, opt_error *err);
/* Removes and frees the initializer named name; returns whether one was removed. */
bool opt_graph_remove_initializer(opt_graph *g, const char *name);

/* Node construction helpers: a new node with the given op/name and copied input/output names.
 * Returns NULL on out-of-memory. */
opt_node *opt_node_make(const char *op_type, const char *name, const char *const *inputs,
                        size_t n_inputs, const char *const *outputs, size_t n_outputs);
/* Attribute lookup; NULL when absent. */
const opt_attr *opt_node_attr(const opt_node *n, const char *name);
int64_t opt_node_attr_int(const opt_node *n, const char *name, int64_t def);
float opt_node_attr_float(const opt_node *n, const char *name, float def);
/* Returns the string attribute (not NUL-terminated safe: use len) or def. */
const char *opt_node_attr_string(const opt_node *n, const char *name, const char *def);
/* Adds or replaces attributes. */
opt_status opt_node_set_attr_int(opt_node *n, const char *name, int64_t v, opt_error *err);
opt_status opt_node_set_attr_float(opt_node *n, const char *name, float v, opt_error *err);
opt_status opt_node_set_attr_ints(opt_node *n, const char *name, const int64_t *v, size_t k,
                                  opt_error *err);
opt_status opt_node_set_attr_string(opt_node *n, const char *name, const char *v, opt_error *err);
opt_status opt_node_set_attr_tensor(opt_node *n, const char *name, opt_tensor *t, opt_error *err);

/* True when the node's domain is the default ONNX domain ("" or "ai.onnx" or absent). */
bool opt_node_is_onnx(const opt_node *n);

#ifdef __cplusplus
}
#endif
#endif /* OPT_IR_H */
