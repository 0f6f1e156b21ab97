/*
 * calib/dataset.h — datasets as streams of batches.
 *
 * Every command that feeds data through a model (`mopt eval`, `mopt calib`, `mopt quant --data`,
 * `mopt cluster --refine data --data`, `mopt sensitivity --data`, `mopt amp --data`) opens its
 * --data SPEC with opt_dataset_open and reads float32 batches with opt_dataset_next_batch.
 *
 * SPEC strings (the part before the first ':' names the source):
 *
 *   fashion-mnist:test          Debian's dataset-fashion-mnist (t10k-*-ubyte.gz), 10,000 samples
 *   fashion-mnist:train         the same, train-*-ubyte.gz, 60,000 samples
 *   idx:IMAGES[,LABELS]         IDX files (.gz read through zlib); images [N,H,W] or [N,...]
 *   npy:INPUTS[,LABELS]         .npy, samples along the first axis; labels any integer dtype
 *   csv:INPUTS[,LABELS]         libcsv, one sample per row (numbers); labels: one per row,
 *                               or LABELS may be the literal "last" to take the last column of
 *                               INPUTS as the label
 *   PATH                        a bare path: the format is guessed from the extension
 *                               (.npy, .csv, .idx, *-ubyte, .gz) and there are no labels
 *
 * Fashion-MNIST's directory can be overridden with the environment variable MOPT_FASHION_MNIST
 * (tests use it). Every sample becomes float32: value * scale, then (v - mean[c]) / std[c].
 * The default scale is 1/255 for uint8 sources and 1 otherwise, so fashion-mnist:* batches are
 * pixels/255 in [N,1,28,28] — what the bundled Fashion-MNIST models (datasets/) expect.
 *
 * Streaming: memory does not grow with the number of samples. IDX and .gz files are read
 * incrementally (gzread), .npy by seeking, CSV row by row (the CSV file is scanned once at
 * open to count and check rows). The only buffers are one batch of inputs, owned by the dataset
 * (opt_dataset_next_batch), or the callers' own (opt_dataset_take / opt_dataset_fill, which read
 * a plain .npy or IDX file at any sample with pread, from several threads at once).
 *
 * Validation: a missing file, a malformed header, a size that does not match the header, a
 * label count that differs from the sample count, an empty dataset, NaN or Inf in the data
 * (reported at the batch that holds it, naming the sample), and shapes that do not fit a model
 * input (opt_dataset_fit) all fail with a one-line message in opt_error that names the file.
 * Tools print it as "mopt CMD: message" (the message already names the file).
 *
 * Dependencies: calib -> formats (formats/tensorfile.h streaming readers) -> libopt/ir, and
 * libopt/exec/exec.h for opt_array.
 */
#ifndef OPT_CALIB_DATASET_H
#define OPT_CALIB_DATASET_H

#include "libopt/exec/exec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How each sample is laid out in the batches handed to the model. */
typedef enum opt_layout {
    OPT_LAYOUT_AUTO = 0, /* as stored; image sources of rank 2 ([H,W], IDX) gain a channel: [1,H,W] */
    OPT_LAYOUT_NCHW = 1, /* samples [C,H,W]; rank-2 [H,W] samples become [1,H,W] */
    OPT_LAYOUT_NHWC = 2, /* samples [H,W,C]; rank-2 [H,W] samples become [H,W,1] */
    OPT_LAYOUT_FLAT = 3, /* samples [K], K = product of the stored sample dims */
} opt_layout;

/* Parses "nchw", "nhwc", "flat" or "auto" (case-insensitive); false for anything else. */
bool opt_layout_parse(const char *s, opt_layout *out);
const char *opt_layout_name(opt_layout l);

#define OPT_DATASET_MAX_CHANNELS 16

/* Options for opt_dataset_open; a zeroed struct means the defaults. */
typedef struct opt_dataset_opts {
    size_t limit;          /* use only the first `limit` samples (0: all) */
    opt_layout layout;     /* target layout of each sample (default OPT_LAYOUT_AUTO) */
    /* Layout the stored samples are in when they have rank 3: OPT_LAYOUT_AUTO means "as the
     * target layout" (no transpose) except for IDX sources, which are HWC by the IDX convention.
     * Setting NHWC with layout NCHW (or the reverse) transposes each sample. */
    opt_layout src_layout;
    float scale;           /* multiply raw values by this first (0: 1/255 for uint8 data, else 1) */
    size_t n_norm;         /* 0: no normalisation; 1: one mean/std for all; C: per channel */
    float mean[OPT_DATASET_MAX_CHANNELS];
    float std[OPT_DATASET_MAX_CHANNELS];
    bool allow_nonfinite;  /* let NaN/Inf through (default: an error naming the sample) */
} opt_dataset_opts;

/* Parses a --normalize argument: "MEAN,STD" or "M1,M2,M3:S1,S2,S3" (per channel; also accepted:
 * "M1/M2/M3,S1/S2/S3"). Fills n_norm, mean and std of o. OPT_ERR_USAGE with a message otherwise.
 * std values must be non-zero. */
opt_status opt_dataset_parse_normalize(const char *s, opt_dataset_opts *o, opt_error *err);

typedef struct opt_dataset opt_dataset;

/* Opens the dataset described by spec. On success *out receives a dataset the caller frees with
 * opt_dataset_free. Files are opened and their headers checked here; the data is read lazily.
 * Fails (naming the file) on a missing or malformed file, an unknown spec, an empty dataset or
 * mismatched label count. */
opt_status opt_dataset_open(const char *spec, const opt_dataset_opts *opts, opt_dataset **out,
                            opt_error *err);
void opt_dataset_free(opt_dataset *ds);

/* Number of samples the stream yields (after --limit). Always >= 1 for an open dataset. */
size_t opt_dataset_count(const opt_dataset *ds);
/* Whether the dataset has labels. */
bool opt_dataset_has_labels(const opt_dataset *ds);
/* Shape of one sample as delivered (after layout), without the batch dim; returns ndim and
 * fills dims (at most OPT_MAX_DIMS - 1 entries). */
int opt_dataset_sample_shape(const opt_dataset *ds, int64_t *dims);
/* Human-readable name of the source ("fashion-mnist:test (/usr/share/.../t10k-images...)"),
 * owned by ds. */
const char *opt_dataset_name(const opt_dataset *ds);
/* Number of samples already delivered since open/rewind. */
size_t opt_dataset_pos(const opt_dataset *ds);

/* Reads up to max samples (max >= 1) into a float32 batch [B, sample dims...]. inputs->data
 * points into a buffer owned by ds, valid until the next call on ds (copy it to keep it);
 * do not free it. labels (may be NULL; at least max entries) receives the labels when the
 * dataset has them, -1 otherwise. *got receives B; 0 at the end of the stream (which is not an
 * error). Errors: I/O or a truncated file, a label outside int32, NaN/Inf (unless allowed). */
opt_status opt_dataset_next_batch(opt_dataset *ds, size_t max, opt_array *inputs,
                                  int32_t *labels, size_t *got, opt_error *err);

/* The same in two steps, for threads that share one dataset: opt_dataset_take hands out the
 * next samples (under the callers' lock), and each thread then makes its batch with
 * opt_dataset_fill, in buffers of its own, at the same time as the others fill theirs.
 *
 * A dataset whose records can be read in any order (opt_dataset_random_access: plain .npy and
 * IDX files, through pread) reads nothing in take, so only the hand-out is serial; a .gz or
 * CSV source reads its records in take (the stream is sequential) and converts them in fill.
 * Labels are not read (opt_dataset_next_batch reads them). */
typedef struct opt_dataset_buf {
    void *raw;  size_t raw_cap;   /* the records as stored */
    float *tmp; size_t tmp_cap;   /* before a transpose */
    void *out;  size_t out_cap;   /* the batch */
    size_t first, n;              /* the samples taken: their numbers in the dataset (from
                                   * opt_dataset_take; for a random-access dataset the caller
                                   * may set any range within opt_dataset_count instead) */
} opt_dataset_buf;
void opt_dataset_buf_free(opt_dataset_buf *b);
bool opt_dataset_random_access(const opt_dataset *ds);
/* Takes the next (up to) max samples into b (*got 0 at the end of the stream). Not
 * thread-safe. */
opt_status opt_dataset_take(opt_dataset *ds, size_t max, opt_dataset_buf *b, size_t *got, opt_error *err);
/* Makes the batch of the samples b holds (reading them first from a random-access dataset):
 * *inputs points into b->out. Changes nothing in ds: threads may fill their own buffers at
 * once. The errors of opt_dataset_next_batch, naming samples by their number in the dataset. */
opt_status opt_dataset_fill(const opt_dataset *ds, opt_dataset_buf *b, opt_array *inputs, opt_error *err);

/* Starts the stream again from the first sample. */
opt_status opt_dataset_rewind(opt_dataset *ds, opt_error *err);

/* Delivers batches in `dtype` (OPT_DT_FLOAT, the default, or an integer type or bool) for the
 * model input input_name (named in messages). Integer batches hold the stored values exactly:
 * no scale or --normalize (those apply to float inputs only); a value that is not a whole
 * number in the type's range is an error at the batch that holds it, naming the sample. A
 * layout that transposes samples, or a float type other than float32, is refused. */
opt_status opt_dataset_set_dtype(opt_dataset *ds, const char *input_name, int dtype, opt_error *err);

/* ---- several inputs: one dataset per model input ----------------------------------------- */

/* The data of a model with several inputs: part i feeds the input named input[i] (NULL: the
 * model's only input, whatever its name). Parts are read in lockstep, sample k of every part making sample k of
 * the feed. */
typedef struct opt_feed {
    size_t n;
    char **input;
    opt_dataset **ds;
    char *name;        /* for messages: the dataset's name, or "input_ids=ids.npy, mask=m.npy" */
} opt_feed;

/* Opens one part per spec. A spec "NAME=SPEC" whose NAME is one of the n_inputs names in
 * `inputs` (the model's graph inputs, in graph order) feeds that input; the other specs feed
 * the inputs left, in order, as `mopt run -i` binds unnamed files (with no names given, a
 * single spec feeds the model's only input). Fails, naming the spec, on an input fed twice,
 * more specs than inputs, or parts with different sample counts (after opts->limit). Inputs
 * left without data are for the consumer to report (it knows the model). */
opt_status opt_feed_open(const char *const *specs, size_t n_specs, const char *const *inputs,
                         size_t n_inputs, const opt_dataset_opts *opts, opt_feed *f, opt_error *err);
void opt_feed_free(opt_feed *f);

/* ---- fitting batches to a model input ---------------------------------------------------- */

/* Checks that samples of ds can feed a model input declared with `ndim` dims `dims` (the batch
 * dim first; -1 = symbolic; ndim -1 = unknown rank, anything fits) and dtype `dtype` (float
 * types only; 0 = unknown). Fits when the per-sample element counts agree (so [N,784] takes
 * [1,28,28] samples and [N,1,28,28] takes [784] ones) and no fixed dim contradicts the data.
 * On failure err says, naming the dataset and the input:
 *   "fashion-mnist:test: samples [1,28,28] (784 values) do not fit input 'x' [N,3,32,32] (3072)" */
opt_status opt_dataset_fit(const opt_dataset *ds, const char *input_name, int dtype, int ndim,
                           const int64_t *dims, opt_error *err);

/* Makes *view a reshaped view of batch (sharing its data; nothing to free) with the shape the
 * model input declares, the batch dim set to the batch's. A fixed batch dim in the declaration
 * that differs from the batch is an error (the caller should then use batches of that size).
 * Same failures as opt_dataset_fit; `what` names the data in messages. */
opt_status opt_batch_fit(const opt_array *batch, const char *what, const char *input_name,
                         int ndim, const int64_t *dims, opt_array *view, opt_error *err);

#ifdef __cplusplus
}
#endif
#endif
