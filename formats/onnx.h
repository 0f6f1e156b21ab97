/*
 * formats/onnx.h — ONNX protobuf bytes <-> libopt IR, with external data.
 *
 * Reading keeps everything the file holds (see libopt/ir/ir.h), so writing an unchanged model
 * gives back the same bytes. External tensor data is read into memory at load time, from files
 * that must lie inside the model's directory.
 */
#ifndef OPT_FORMATS_ONNX_H
#define OPT_FORMATS_ONNX_H

#include "libopt/ir/ir.h"

/* Options for loading; a zeroed struct means the defaults. */
typedef struct opt_load_opts {
    bool skip_external;  /* leave external tensors unloaded (for `mopt info`) */
    bool no_validate;    /* skip graph validation (structure is still checked) */
} opt_load_opts;

/* Where external data goes when saving. */
typedef enum opt_external_mode {
    OPT_EXTERNAL_KEEP = 0,   /* tensors read from external data are written to external data */
    OPT_EXTERNAL_MOVE = 1,   /* every initializer of at least size_threshold bytes goes external */
    OPT_EXTERNAL_INLINE = 2, /* everything inline */
} opt_external_mode;

typedef struct opt_save_opts {
    opt_external_mode external;
    uint64_t size_threshold; /* bytes; 0 means the default, 1024 */
    const char *data_name;   /* side-file name; NULL: "<model file name>.data" */
} opt_save_opts;

/* Parses a model from buf (len bytes). `dir` is where external data locations resolve (NULL:
 * the current directory); `what` names the source in messages. On success *out receives a model
 * the caller frees with opt_model_free. Errors name the tensor or node at fault. */
opt_status opt_onnx_parse(const uint8_t *buf, size_t len, const char *dir, const char *what,
                          const opt_load_opts *opts, opt_model **out, opt_error *err);

/* Reads and parses a model file; path NULL or "-" reads standard input. */
opt_status opt_onnx_load(const char *path, const opt_load_opts *opts, opt_model **out,
                         opt_error *err);

/* Serializes m into a malloc'd buffer (*buf, *len) the caller frees. External tensors whose data
 * is loaded are written inline. */
opt_status opt_onnx_serialize(const opt_model *m, uint8_t **buf, size_t *len, opt_error *err);

/* True when `path` exists and is neither a regular file nor a directory (/dev/null, a FIFO, a
 * terminal): writers open such a target in place, since renaming a temporary file over it would
 * replace the node itself. */
bool opt_path_is_special(const char *path);

/* Writes m to path atomically: temporary files in the target directory, fsync, rename; nothing
 * is left behind on failure. path NULL or "-" writes to standard output (external data is then
 * written inline; OPT_EXTERNAL_MOVE is refused). */
opt_status opt_onnx_save(const opt_model *m, const char *path, const opt_save_opts *opts,
                         opt_error *err);

/* Reads a whole file (or stdin for NULL/"-") into a malloc'd buffer. */
opt_status opt_read_file(const char *path, uint8_t **buf, size_t *len, opt_error *err);

/* Checks that `location` names a file inside `dir` (no "..", no absolute path, no symlink that
 * leads out) and opens it read-only. Returns the fd or -1 with err set. */
int opt_external_open(const char *dir, const char *location, const char *tensor, opt_error *err);

/* Loads the data of every external tensor of m (recursively through subgraphs) from dir. */
opt_status opt_external_load(opt_model *m, const char *dir, opt_error *err);

#endif
