/*
 * tests/unit/tensorfile_streams.c — record streams (formats/tensorfile.h) and datasets
 * (calib/dataset.h): Fashion-MNIST's test set streams as 10,000 images [1,28,28] of pixels/255
 * with 1,000 labels per class; every file format streams the same records as a whole-file read;
 * rewind and --limit behave; layouts transpose and normalisation is per channel; samples are
 * fitted to declared model inputs or refused with the shapes in the message; truncated, empty,
 * mislabelled and NaN-holding datasets are refused naming the file; integer inputs get the
 * stored integers exactly; a feed binds NAME=SPEC, then plain specs in input order.
 */
#include "calib/dataset.h"
#include "formats/tensorfile.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char dir[64];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/mopt-unit-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void rm_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(dataset, .init = mkdir_tmp, .fini = rm_tmp);
TestSuite(tstream, .init = mkdir_tmp, .fini = rm_tmp);

static const char *path(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void write_array(const char *name, int dtype, int ndim, const int64_t *dims, const void *data)
{
    opt_array a = {.dtype = dtype, .ndim = ndim, .data = (void *)data};
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        a.dims[i] = dims[i];
        n *= (uint64_t)dims[i];
    }
    cr_assert(opt_tensorfile_nbytes(dtype, n, &a.nbytes));
    opt_error e;
    cr_assert_eq(opt_tensorfile_write(path(name), OPT_TFMT_AUTO, &a, NULL, &e), OPT_OK, "%s", e.msg);
}

static void write_text(const char *name, const char *s)
{
    FILE *f = fopen(path(name), "w");
    cr_assert(f);
    fputs(s, f);
    fclose(f);
}

Test(dataset, fashion_mnist_test_is_ten_thousand_images_of_pixels_over_255)
{
    opt_dataset *ds;
    opt_error e = {0};
    if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0)
        cr_assert_fail("dataset-fashion-mnist is not installed (make deps)");
    cr_assert_eq(opt_dataset_open("fashion-mnist:test", NULL, &ds, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_count(ds), 10000);
    cr_assert(opt_dataset_has_labels(ds));
    int64_t d[8];
    cr_assert_eq(opt_dataset_sample_shape(ds, d), 3);
    cr_assert(d[0] == 1 && d[1] == 28 && d[2] == 28);
    size_t hist[10] = {0}, total = 0, got;
    double sum = 0, mx = 0;
    int32_t labels[1000];
    opt_array x;
    do {
        cr_assert_eq(opt_dataset_next_batch(ds, 1000, &x, labels, &got, &e), OPT_OK, "%s", e.msg);
        const float *f = x.data;
        for (size_t i = 0; i < got * 784; i++) {
            sum += f[i];
            if (f[i] > mx) mx = f[i];
        }
        for (size_t i = 0; i < got; i++) {
            cr_assert(labels[i] >= 0 && labels[i] < 10);
            hist[labels[i]]++;
        }
        total += got;
    } while (got);
    cr_assert_eq(total, 10000);
    for (int c = 0; c < 10; c++) cr_assert_eq(hist[c], 1000, "class %d has %zu", c, hist[c]);
    cr_assert_float_eq(mx, 1.0, 1e-7, "the brightest pixel is 255/255");
    cr_assert_float_eq(sum / (10000.0 * 784), 0.2868, 5e-4, "mean pixel of the test set");
    opt_dataset_free(ds);
}

Test(dataset, rewind_and_limit_give_the_same_first_samples)
{
    opt_dataset_opts o = {.limit = 70};
    opt_dataset *ds;
    opt_error e;
    cr_assert_eq(opt_dataset_open("fashion-mnist:train", &o, &ds, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_count(ds), 70);
    opt_array x;
    int32_t l1[32], l2[32];
    size_t got;
    cr_assert_eq(opt_dataset_next_batch(ds, 32, &x, l1, &got, &e), OPT_OK);
    float first[32 * 784];
    memcpy(first, x.data, sizeof first);
    size_t n = got;
    while (got) {
        cr_assert_eq(opt_dataset_next_batch(ds, 32, &x, NULL, &got, &e), OPT_OK);
        n += got;
    }
    cr_assert_eq(n, 70, "--limit caps the stream");
    cr_assert_eq(opt_dataset_rewind(ds, &e), OPT_OK);
    cr_assert_eq(opt_dataset_next_batch(ds, 32, &x, l2, &got, &e), OPT_OK);
    cr_assert_eq(got, 32);
    cr_assert(memcmp(first, x.data, sizeof first) == 0, "rewind gives the same samples");
    cr_assert(memcmp(l1, l2, sizeof l1) == 0, "and the same labels");
    opt_dataset_free(ds);
}

Test(tstream, every_format_streams_what_a_whole_read_gives)
{
    int32_t v[6 * 5];
    for (int i = 0; i < 30; i++) v[i] = i * 7 - 50;
    int64_t d[] = {6, 5};
    write_array("v.npy", OPT_DT_INT32, 2, d, v);
    write_array("v.idx", OPT_DT_INT32, 2, d, v);
    write_array("v.csv", OPT_DT_INT32, 2, d, v);
    const char *names[] = {"v.npy", "v.idx", "v.csv"};
    for (int k = 0; k < 3; k++) {
        opt_tstream *s;
        opt_error e;
        cr_assert_eq(opt_tstream_open(path(names[k]), OPT_TFMT_AUTO, &s, &e), OPT_OK, "%s", e.msg);
        cr_assert_eq(opt_tstream_count(s), 6);
        int dt = opt_tstream_dtype(s);
        size_t es = dt == OPT_DT_DOUBLE ? 8 : 4;
        uint8_t buf[6 * 5 * 8];
        cr_assert_eq(opt_tstream_read(s, 2, buf, &e), OPT_OK, "%s", e.msg);
        cr_assert_eq(opt_tstream_read(s, 4, buf + 2 * 5 * es, &e), OPT_OK, "%s", e.msg);
        for (int i = 0; i < 30; i++) {
            double x;
            if (dt == OPT_DT_DOUBLE) memcpy(&x, buf + i * 8, 8);
            else {
                int32_t t;
                memcpy(&t, buf + i * 4, 4);
                x = t;
            }
            cr_assert_eq(x, v[i], "%s value %d", names[k], i);
        }
        cr_assert_neq(opt_tstream_read(s, 1, buf, &e), OPT_OK, "reading past the end is an error");
        cr_assert_eq(opt_tstream_rewind(s, &e), OPT_OK);
        cr_assert_eq(opt_tstream_read(s, 6, buf, &e), OPT_OK, "%s", e.msg);
        opt_tstream_close(s);
    }
}

Test(tstream, gzip_streams_read_incrementally_and_detect_truncation)
{
    uint8_t img[40 * 100];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 131 + (i >> 5));
    int64_t d[] = {40, 10, 10};
    write_array("img.idx", OPT_DT_UINT8, 3, d, img);
    uint8_t *raw;
    size_t len;
    opt_error e;
    opt_array a = {.dtype = OPT_DT_UINT8, .ndim = 3, .dims = {40, 10, 10}, .data = img, .nbytes = sizeof img};
    cr_assert_eq(opt_tensorfile_serialize(&a, OPT_TFMT_IDX, NULL, &raw, &len, &e), OPT_OK);
    gzFile g = gzopen(path("img.idx.gz"), "wb");
    gzwrite(g, raw, (unsigned)len);
    gzclose(g);
    free(raw);
    opt_tstream *s;
    cr_assert_eq(opt_tstream_open(path("img.idx.gz"), OPT_TFMT_AUTO, &s, &e), OPT_OK, "%s", e.msg);
    uint8_t back[sizeof img];
    for (int i = 0; i < 40; i += 8) cr_assert_eq(opt_tstream_read(s, 8, back + i * 100, &e), OPT_OK, "%s", e.msg);
    cr_assert(memcmp(back, img, sizeof img) == 0);
    opt_tstream_close(s);
    /* Cut the compressed file in half: open succeeds (the header is there), reading fails. */
    FILE *f = fopen(path("img.idx.gz"), "rb");
    uint8_t gz[8192];
    size_t n = fread(gz, 1, sizeof gz, f);
    fclose(f);
    f = fopen(path("half.idx.gz"), "wb");
    fwrite(gz, 1, n / 2, f);
    fclose(f);
    cr_assert_eq(opt_tstream_open(path("half.idx.gz"), OPT_TFMT_AUTO, &s, &e), OPT_OK, "%s", e.msg);
    cr_assert_neq(opt_tstream_read(s, 40, back, &e), OPT_OK);
    cr_assert(strstr(e.msg, "half.idx.gz: "), "message names the file: %s", e.msg);
    opt_tstream_close(s);
    /* A plain file shorter than its header says fails at open. */
    f = fopen(path("short.idx"), "wb");
    fwrite("\x00\x00\x08\x01\x00\x00\x00\x09" "abc", 1, 11, f);
    fclose(f);
    cr_assert_eq(opt_tstream_open(path("short.idx"), OPT_TFMT_AUTO, &s, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "short.idx: truncated: header says 9 bytes of data, file has 3"), "%s", e.msg);
}

Test(dataset, nhwc_samples_are_transposed_to_nchw_and_normalised_per_channel)
{
    /* 2 samples, H=2, W=2, C=3 stored HWC; value = 100*sample + 10*c + (h*2+w). */
    float v[2 * 2 * 2 * 3];
    for (int s = 0; s < 2; s++)
        for (int h = 0; h < 2; h++)
            for (int w = 0; w < 2; w++)
                for (int c = 0; c < 3; c++) v[((s * 2 + h) * 2 + w) * 3 + c] = (float)(100 * s + 10 * c + h * 2 + w);
    int64_t d[] = {2, 2, 2, 3};
    write_array("hwc.npy", OPT_DT_FLOAT, 4, d, v);
    opt_dataset_opts o = {.layout = OPT_LAYOUT_NCHW, .src_layout = OPT_LAYOUT_NHWC, .n_norm = 3,
                          .mean = {0, 10, 20}, .std = {1, 2, 4}};
    char spec[300];
    snprintf(spec, sizeof spec, "npy:%s", path("hwc.npy"));
    opt_dataset *ds;
    opt_error e;
    cr_assert_eq(opt_dataset_open(spec, &o, &ds, &e), OPT_OK, "%s", e.msg);
    int64_t sd[8];
    cr_assert_eq(opt_dataset_sample_shape(ds, sd), 3);
    cr_assert(sd[0] == 3 && sd[1] == 2 && sd[2] == 2, "[C,H,W]");
    opt_array x;
    size_t got;
    cr_assert_eq(opt_dataset_next_batch(ds, 8, &x, NULL, &got, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(got, 2);
    const float *f = x.data;
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 4; p++) {
                float raw = (float)(100 * s + 10 * c + p);
                float want = (raw - o.mean[c]) / o.std[c];
                cr_assert_float_eq(f[(s * 3 + c) * 4 + p], want, 1e-6, "s%d c%d p%d", s, c, p);
            }
    opt_dataset_free(ds);
    /* A channel count that disagrees with --normalize is refused. */
    o.n_norm = 2;
    cr_assert_eq(opt_dataset_open(spec, &o, &ds, &e), OPT_ERR_USAGE);
    cr_assert(strstr(e.msg, "--normalize has 2 channels"), "%s", e.msg);
}

Test(dataset, csv_with_a_header_and_labels_in_the_last_column)
{
    write_text("d.csv", "a,b,c,label\n0.5,1,2,3\n4,5,6,1\n");
    opt_dataset *ds;
    opt_error e;
    char spec[300];
    snprintf(spec, sizeof spec, "csv:%s,last", path("d.csv"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_count(ds), 2);
    int64_t sd[8];
    cr_assert_eq(opt_dataset_sample_shape(ds, sd), 1);
    cr_assert_eq(sd[0], 3);
    opt_array x;
    int32_t l[2];
    size_t got;
    cr_assert_eq(opt_dataset_next_batch(ds, 2, &x, l, &got, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(got, 2);
    cr_assert_eq(((float *)x.data)[0], 0.5f);
    cr_assert_eq(((float *)x.data)[5], 6.0f);
    cr_assert(l[0] == 3 && l[1] == 1);
    opt_dataset_free(ds);
    write_text("frac.csv", "1,2,0.5\n");
    snprintf(spec, sizeof spec, "csv:%s,last", path("frac.csv"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_next_batch(ds, 2, &x, l, &got, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "label of sample 0 (last column) is not an integer"), "%s", e.msg);
    opt_dataset_free(ds);
}

Test(dataset, bad_datasets_are_refused_naming_the_file)
{
    float v[4 * 3] = {0};
    v[7] = NAN;
    int64_t d[] = {4, 3}, dl[] = {3};
    int64_t lab[3] = {0, 1, 2};
    write_array("nan.npy", OPT_DT_FLOAT, 2, d, v);
    write_array("lab3.npy", OPT_DT_INT64, 1, dl, lab);
    int64_t d0[] = {0, 3};
    write_array("empty.npy", OPT_DT_FLOAT, 2, d0, v);
    opt_dataset *ds;
    opt_error e;
    char spec[600];
    snprintf(spec, sizeof spec, "npy:%s,%s", path("nan.npy"), path("lab3.npy"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "lab3.npy: 3 labels for 4 samples in"), "%s", e.msg);
    snprintf(spec, sizeof spec, "npy:%s", path("nan.npy"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_OK, "%s", e.msg);
    opt_array x;
    size_t got;
    cr_assert_eq(opt_dataset_next_batch(ds, 4, &x, NULL, &got, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "nan.npy: sample 2, value 1 is NaN"), "%s", e.msg);
    opt_dataset_free(ds);
    opt_dataset_opts o = {.allow_nonfinite = true};
    cr_assert_eq(opt_dataset_open(spec, &o, &ds, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_next_batch(ds, 4, &x, NULL, &got, &e), OPT_OK, "allow_nonfinite lets NaN through");
    opt_dataset_free(ds);
    snprintf(spec, sizeof spec, "npy:%s", path("empty.npy"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "empty.npy: dataset is empty"), "%s", e.msg);
    snprintf(spec, sizeof spec, "npy:%s", path("missing.npy"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_ERR_IO);
    cr_assert(strstr(e.msg, "missing.npy: cannot open"), "%s", e.msg);
    cr_assert_eq(opt_dataset_open("imagenet:val", NULL, &ds, &e), OPT_ERR_USAGE);
    cr_assert(strstr(e.msg, "unknown data spec 'imagenet:val'"), "%s", e.msg);
    opt_dataset_opts bad = {0};
    cr_assert_eq(opt_dataset_parse_normalize("0.5", &bad, &e), OPT_ERR_USAGE);
    cr_assert_eq(opt_dataset_parse_normalize("0.5,0", &bad, &e), OPT_ERR_USAGE);
    cr_assert_eq(opt_dataset_parse_normalize("0.485,0.456,0.406:0.229,0.224,0.225", &bad, &e), OPT_OK);
    cr_assert_eq(bad.n_norm, 3);
    cr_assert_float_eq(bad.std[2], 0.225f, 1e-7);
}

Test(dataset, samples_fit_declared_inputs_by_value_count)
{
    opt_dataset_opts o = {.limit = 4};
    opt_dataset *ds;
    opt_error e;
    cr_assert_eq(opt_dataset_open("fashion-mnist:test", &o, &ds, &e), OPT_OK, "%s", e.msg);
    int64_t nchw[] = {-1, 1, 28, 28}, flat[] = {-1, 784}, rgb[] = {-1, 3, 32, 32}, fixed[] = {1, 784},
            sym[] = {-1, -1, 28, 28};
    cr_assert_eq(opt_dataset_fit(ds, "x", OPT_DT_FLOAT, 4, nchw, &e), OPT_OK);
    cr_assert_eq(opt_dataset_fit(ds, "x", OPT_DT_FLOAT, 2, flat, &e), OPT_OK);
    cr_assert_eq(opt_dataset_fit(ds, "x", OPT_DT_FLOAT16, 4, sym, &e), OPT_OK);
    cr_assert_eq(opt_dataset_fit(ds, "x", OPT_DT_FLOAT, 4, rgb, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "fashion-mnist:test: samples [1,28,28] (784 values) do not fit input 'x' [N,3,32,32] (3072 values per sample)"),
              "%s", e.msg);
    cr_assert_eq(opt_dataset_fit(ds, "ids", OPT_DT_INT64, 2, flat, &e), OPT_ERR_UNSUPPORTED);
    opt_array x, view;
    size_t got;
    cr_assert_eq(opt_dataset_next_batch(ds, 4, &x, NULL, &got, &e), OPT_OK);
    cr_assert_eq(opt_batch_fit(&x, "batch", "x", 2, flat, &view, &e), OPT_OK, "%s", e.msg);
    cr_assert(view.ndim == 2 && view.dims[0] == 4 && view.dims[1] == 784 && view.data == x.data);
    cr_assert_eq(opt_batch_fit(&x, "batch", "x", 4, sym, &view, &e), OPT_OK, "%s", e.msg);
    cr_assert(view.dims[1] == 1 && view.dims[2] == 28);
    cr_assert_eq(opt_batch_fit(&x, "batch", "x", 2, fixed, &view, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "fixed batch size of 1; the batch has 4 samples"), "%s", e.msg);
    opt_dataset_free(ds);
}

Test(dataset, integer_inputs_get_the_stored_integers_exactly)
{
    /* int64 values past float32's and double's exact range, int32 and whole float32 sources,
     * labels in a last CSV column. */
    int64_t big[2 * 3] = {0, 1, -1, (int64_t)1 << 60, INT64_MAX, INT64_MIN + 1};
    int32_t small[2 * 3] = {5, -6, 7, 2147483647, 0, -2147483647 - 1};
    float whole[2 * 3] = {1, 2, 3, 4, 5, 6.5f};
    int64_t d[] = {2, 3};
    write_array("big.npy", OPT_DT_INT64, 2, d, big);
    write_array("small.npy", OPT_DT_INT32, 2, d, small);
    write_array("whole.npy", OPT_DT_FLOAT, 2, d, whole);
    write_text("rows.csv", "1,2,3,9\n4,5,6,8\n");
    opt_dataset *ds;
    opt_error e;
    opt_array x;
    size_t got;
    int32_t lab[2];
    char spec[600];
    int64_t decl[] = {-1, 3};
    /* int64 -> int64: in place, bit for bit (a float path would round 2^60 + 1 and INT64_MAX). */
    snprintf(spec, sizeof spec, "npy:%s", path("big.npy"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_fit(ds, "ids", OPT_DT_INT64, 2, decl, &e), OPT_ERR_UNSUPPORTED, "float batches by default");
    cr_assert_eq(opt_dataset_set_dtype(ds, "ids", OPT_DT_INT64, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_fit(ds, "ids", OPT_DT_INT64, 2, decl, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_next_batch(ds, 8, &x, NULL, &got, &e), OPT_OK, "%s", e.msg);
    cr_assert(got == 2 && x.dtype == OPT_DT_INT64 && x.ndim == 2 && x.dims[1] == 3 && x.nbytes == sizeof big);
    cr_assert(memcmp(x.data, big, sizeof big) == 0);
    /* ... and into int32: out of range, named. */
    cr_assert_eq(opt_dataset_rewind(ds, &e), OPT_OK);
    cr_assert_eq(opt_dataset_set_dtype(ds, "ids", OPT_DT_INT32, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_next_batch(ds, 8, &x, NULL, &got, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "big.npy: sample 1, value 0 is 1152921504606846976, not in the type's range (input 'ids' is int32)"),
              "%s", e.msg);
    opt_dataset_free(ds);
    /* int32 -> int64, and -> bool (5 is not 0 or 1). */
    snprintf(spec, sizeof spec, "npy:%s", path("small.npy"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_set_dtype(ds, "ids", OPT_DT_INT64, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_next_batch(ds, 8, &x, NULL, &got, &e), OPT_OK, "%s", e.msg);
    for (int i = 0; i < 6; i++) cr_assert_eq(((const int64_t *)x.data)[i], small[i], "value %d", i);
    cr_assert_eq(opt_dataset_rewind(ds, &e), OPT_OK);
    cr_assert_eq(opt_dataset_set_dtype(ds, "mask", OPT_DT_BOOL, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_next_batch(ds, 8, &x, NULL, &got, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "sample 0, value 0 is 5, not in the type's range (input 'mask' is bool)"), "%s", e.msg);
    opt_dataset_free(ds);
    /* float32 holding whole numbers converts; a fraction is refused at its sample. uint8-style
     * scaling never applies to integer batches. */
    snprintf(spec, sizeof spec, "npy:%s", path("whole.npy"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_set_dtype(ds, "ids", OPT_DT_INT64, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_next_batch(ds, 1, &x, NULL, &got, &e), OPT_OK, "%s", e.msg);
    cr_assert(((const int64_t *)x.data)[2] == 3);
    cr_assert_eq(opt_dataset_next_batch(ds, 1, &x, NULL, &got, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "whole.npy: sample 1, value 2 is 6.5, not a whole number (input 'ids' is int64)"), "%s", e.msg);
    cr_assert_eq(opt_dataset_set_dtype(ds, "x", OPT_DT_FLOAT16, &e), OPT_ERR_UNSUPPORTED);
    opt_dataset_free(ds);
    /* CSV with the label in the last column: the column is dropped, labels still come. */
    snprintf(spec, sizeof spec, "csv:%s,last", path("rows.csv"));
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_set_dtype(ds, "ids", OPT_DT_INT32, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_dataset_next_batch(ds, 8, &x, lab, &got, &e), OPT_OK, "%s", e.msg);
    const int32_t want[] = {1, 2, 3, 4, 5, 6};
    cr_assert(got == 2 && x.nbytes == sizeof want && memcmp(x.data, want, sizeof want) == 0);
    cr_assert(lab[0] == 9 && lab[1] == 8);
    opt_dataset_free(ds);
}

Test(dataset, a_feed_binds_named_specs_then_plain_ones_in_input_order)
{
    int64_t v[4 * 2] = {0};
    int64_t d4[] = {4, 2}, d3[] = {3, 2};
    write_array("a.npy", OPT_DT_INT64, 2, d4, v);
    write_array("b.npy", OPT_DT_INT64, 2, d4, v);
    write_array("c3.npy", OPT_DT_INT64, 2, d3, v);
    const char *inputs[] = {"ids", "mask", "type"};
    char s0[300], s1[300], s2[300];
    const char *specs[] = {s0, s1, s2};
    opt_feed f;
    opt_error e;
    /* mask named, the two plain ones take ids and type, in that order */
    snprintf(s0, sizeof s0, "npy:%s", path("a.npy"));
    snprintf(s1, sizeof s1, "mask=npy:%s", path("b.npy"));
    snprintf(s2, sizeof s2, "%s", path("b.npy"));
    cr_assert_eq(opt_feed_open(specs, 3, inputs, 3, NULL, &f, &e), OPT_OK, "%s", e.msg);
    cr_assert(f.n == 3 && strcmp(f.input[0], "ids") == 0 && strcmp(f.input[1], "mask") == 0 &&
              strcmp(f.input[2], "type") == 0);
    cr_assert(strstr(f.name, "ids=") == f.name && strstr(f.name, ", mask=") && strstr(f.name, ", type="), "%s", f.name);
    opt_feed_free(&f);
    /* a name that is no input is a plain spec (here a file called "nope=..." that is missing) */
    snprintf(s0, sizeof s0, "nope=npy:%s", path("a.npy"));
    cr_assert_eq(opt_feed_open(specs, 1, inputs, 3, NULL, &f, &e), OPT_ERR_IO);
    cr_assert(strstr(e.msg, "nope=npy:") && strstr(e.msg, "cannot open"), "%s", e.msg);
    /* fed twice; more specs than inputs; sample counts differ */
    snprintf(s0, sizeof s0, "ids=npy:%s", path("a.npy"));
    snprintf(s1, sizeof s1, "ids=npy:%s", path("b.npy"));
    cr_assert_eq(opt_feed_open(specs, 2, inputs, 3, NULL, &f, &e), OPT_ERR_USAGE);
    cr_assert(strstr(e.msg, "input 'ids' is fed twice"), "%s", e.msg);
    snprintf(s1, sizeof s1, "npy:%s", path("b.npy"));
    cr_assert_eq(opt_feed_open(specs, 2, inputs, 1, NULL, &f, &e), OPT_ERR_USAGE);
    cr_assert(strstr(e.msg, "every input of the model (ids) has its data already"), "%s", e.msg);
    snprintf(s1, sizeof s1, "npy:%s", path("c3.npy"));
    cr_assert_eq(opt_feed_open(specs, 2, inputs, 3, NULL, &f, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "c3.npy: 3 samples for input 'mask', but "), "%s", e.msg);
    cr_assert_eq(f.n, 0, "nothing left open");
    /* --limit evens them out */
    opt_dataset_opts o = {.limit = 3};
    cr_assert_eq(opt_feed_open(specs, 2, inputs, 3, &o, &f, &e), OPT_OK, "%s", e.msg);
    opt_feed_free(&f);
}

/* Batches of 3 made with opt_dataset_take + opt_dataset_fill, filled last first, hold the bytes
 * opt_dataset_next_batch gives in order; plain .npy and IDX read in any order (the caller sets
 * the ranges), .gz and CSV hand out their records in take; a NaN is named by its sample number
 * wherever its batch is filled. */
Test(dataset, take_and_fill_in_any_order_give_next_batchs_bytes)
{
    enum { N = 11, F = 6, B = 3, NB = (N + B - 1) / B };
    float v[N * F];
    uint8_t u[N * F];
    for (int i = 0; i < N * F; i++) {
        v[i] = (float)(i * 37 % 101) / 7.0f - 5.0f;
        u[i] = (uint8_t)(i * 53 + 7);
    }
    int64_t d[] = {N, F}, d3[] = {N, 2, 3};
    write_array("f.npy", OPT_DT_FLOAT, 2, d, v);
    write_array("u.idx", OPT_DT_UINT8, 3, d3, u);
    write_array("f.csv", OPT_DT_FLOAT, 2, d, v);
    uint8_t *raw;
    size_t len;
    opt_error e;
    opt_array a = {.dtype = OPT_DT_UINT8, .ndim = 3, .dims = {N, 2, 3}, .data = u, .nbytes = sizeof u};
    cr_assert_eq(opt_tensorfile_serialize(&a, OPT_TFMT_IDX, NULL, &raw, &len, &e), OPT_OK);
    gzFile g = gzopen(path("u.idx.gz"), "wb");
    gzwrite(g, raw, (unsigned)len);
    gzclose(g);
    free(raw);
    const char *specs[] = {"npy:%s/f.npy", "idx:%s/u.idx", "idx:%s/u.idx.gz", "csv:%s/f.csv"};
    const bool random[] = {true, true, false, false};
    for (int k = 0; k < 4; k++) {
        char spec[256];
        snprintf(spec, sizeof spec, specs[k], dir);
        opt_dataset *ds, *ref;
        cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_OK, "%s", e.msg);
        cr_assert_eq(opt_dataset_open(spec, NULL, &ref, &e), OPT_OK, "%s", e.msg);
        cr_assert_eq(opt_dataset_random_access(ds), random[k], "%s", spec);
        float want[N * F];
        size_t got, at = 0;
        opt_array x;
        while (opt_dataset_next_batch(ref, B, &x, NULL, &got, &e) == OPT_OK && got > 0) {
            memcpy(want + at * F, x.data, x.nbytes);
            at += got;
        }
        cr_assert_eq(at, N);
        opt_dataset_buf bufs[NB] = {0};
        for (int b = 0; b < NB; b++) {
            if (random[k]) {
                bufs[b].first = (size_t)b * B;
                bufs[b].n = N - b * B < B ? N - b * B : B;
            } else {
                cr_assert_eq(opt_dataset_take(ds, B, &bufs[b], &got, &e), OPT_OK, "%s", e.msg);
                cr_assert_eq(bufs[b].first, (size_t)b * B);
                cr_assert_eq(got, bufs[b].n);
            }
        }
        for (int b = NB - 1; b >= 0; b--) {
            cr_assert_eq(opt_dataset_fill(ds, &bufs[b], &x, &e), OPT_OK, "%s: %s", spec, e.msg);
            cr_assert_eq(x.dims[0], (int64_t)bufs[b].n);
            cr_assert(memcmp(x.data, want + (size_t)b * B * F, x.nbytes) == 0, "%s batch %d", spec, b);
        }
        if (random[k]) { /* a range past the end is refused */
            opt_dataset_buf past = {.first = N - 1, .n = 2};
            cr_assert_neq(opt_dataset_fill(ds, &past, &x, &e), OPT_OK, "%s", spec);
            opt_dataset_buf_free(&past);
        }
        for (int b = 0; b < NB; b++) opt_dataset_buf_free(&bufs[b]);
        opt_dataset_free(ds);
        opt_dataset_free(ref);
    }
    /* NaN in sample 7 (batch 2): filling batch 2 names it, before or after the others. */
    v[7 * F + 4] = NAN;
    write_array("nan2.npy", OPT_DT_FLOAT, 2, d, v);
    char spec[256];
    snprintf(spec, sizeof spec, "npy:%s/nan2.npy", dir);
    opt_dataset *ds;
    cr_assert_eq(opt_dataset_open(spec, NULL, &ds, &e), OPT_OK, "%s", e.msg);
    opt_dataset_buf b2 = {.first = 6, .n = 3}, b0 = {.first = 0, .n = 3};
    opt_array x;
    cr_assert_eq(opt_dataset_fill(ds, &b2, &x, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "nan2.npy: sample 7, value 4 is NaN"), "%s", e.msg);
    cr_assert_eq(opt_dataset_fill(ds, &b0, &x, &e), OPT_OK, "%s", e.msg);
    opt_dataset_buf_free(&b2);
    opt_dataset_buf_free(&b0);
    opt_dataset_free(ds);
}
