/*
 * tests/unit/eval_accuracy.c — calib/eval.h, the accuracy every --max-drop gate relies on: the
 * bundled LeNet-5 scores above 85% top-1 on Fashion-MNIST's first 500 test images, top-5 is at
 * least top-1, a model agrees with itself exactly (same top-1 everywhere, zero output error),
 * fixed-batch models get padded chunks and the same answers, a dataset without labels is refused,
 * and the relative error follows its stated definition (elements below the output's RMS are
 * judged against the RMS).
 */
#include "calib/eval.h"
#include "formats/onnx.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tests run from tests/ (make test: cd tests && unit-tests). */
#define LENET5 "../datasets/lenet5.onnx"

static opt_exec *load(const char *path, opt_model **m)
{
    opt_error e = {0};
    cr_assert_eq(opt_onnx_load(path, NULL, m, &e), OPT_OK, "%s: %s", path, e.msg);
    opt_exec *x;
    opt_exec_opts o = {.threads = 1};
    cr_assert_eq(opt_exec_new(*m, &o, &x, &e), OPT_OK, "%s", e.msg);
    return x;
}

Test(eval, lenet5_is_accurate_on_fashion_mnist_and_agrees_with_itself)
{
    opt_model *m;
    opt_exec *x = load(LENET5, &m);
    opt_dataset_opts dso = {.limit = 500};
    opt_dataset *ds;
    opt_error e = {0};
    cr_assert_eq(opt_dataset_open("fashion-mnist:test", &dso, &ds, &e), OPT_OK, "%s", e.msg);
    opt_exec *both[2] = {x, x};
    opt_eval_result r[2];
    opt_eval_opts eo = {.batch = 64};
    cr_assert_eq(opt_eval_models(both, NULL, 2, ds, &eo, r, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(r[0].samples, 500);
    cr_assert_eq(r[0].classes, 10);
    cr_assert(r[0].top1 > 0.85 && r[0].top1 <= 1.0, "top-1 %.4f", r[0].top1);
    cr_assert(r[0].top5 >= r[0].top1);
    cr_assert_eq(r[1].agree, 500);
    cr_assert_eq(r[1].max_abs, 0.0);
    cr_assert_eq(r[1].max_rel, 0.0);
    cr_assert_eq(r[0].batches, 8, "500 samples in batches of 64");
    double t1;
    cr_assert_eq(opt_eval_top1(x, ds, &eo, &t1, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(t1, r[0].top1, "opt_eval_top1 rewinds and gives the same number");
    /* Batch size does not change the answer. */
    eo.batch = 7;
    cr_assert_eq(opt_eval_top1(x, ds, &eo, &t1, &e), OPT_OK, "%s", e.msg);
    cr_assert_eq(t1, r[0].top1);
    opt_dataset_free(ds);
    opt_exec_free(x);
    opt_model_free(m);
}

Test(eval, data_that_does_not_fit_or_has_no_labels_is_refused)
{
    opt_model *m;
    opt_exec *x = load(LENET5, &m);
    opt_dataset *ds;
    opt_error e = {0};
    opt_dataset_opts dso = {.limit = 10, .layout = OPT_LAYOUT_NHWC};
    cr_assert_eq(opt_dataset_open("fashion-mnist:test", &dso, &ds, &e), OPT_OK, "%s", e.msg);
    double t1;
    /* [28,28,1] samples hold 784 values like [1,28,28]: they are reshaped, not refused. */
    cr_assert_eq(opt_eval_top1(x, ds, NULL, &t1, &e), OPT_OK, "%s", e.msg);
    opt_dataset_free(ds);
    cr_assert_eq(opt_dataset_open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", &dso, &ds, &e),
                 OPT_OK, "%s", e.msg);
    cr_assert_eq(opt_eval_top1(x, ds, NULL, &t1, &e), OPT_ERR_DATA);
    cr_assert(strstr(e.msg, "has no labels"), "%s", e.msg);
    opt_dataset_free(ds);
    opt_exec_free(x);
    opt_model_free(m);
}

Test(eval, relative_error_is_judged_against_the_outputs_rms)
{
    const float b[4] = {10, -10, 10, 0.001f}; /* rms ~ 8.66 */
    const float a[4] = {10, -10, 10.001f, 0.002f};
    double ma = 0, mr = 0;
    opt_eval_compare(a, b, 4, &ma, &mr);
    cr_assert_float_eq(ma, 0.001, 1e-6);
    /* 0.001 off a value of 0.001 is not a 100% error: it is judged against rms(b). */
    cr_assert_float_eq(mr, 0.001 / sqrt((300 + 1e-6) / 4), 1e-7, "got %g", mr);
    const float n1[2] = {NAN, 1}, n2[2] = {NAN, 1}, n3[2] = {1, 1};
    ma = mr = 0;
    opt_eval_compare(n1, n2, 2, &ma, &mr);
    cr_assert_eq(mr, 0.0, "NaN meets NaN");
    opt_eval_compare(n1, n3, 2, &ma, &mr);
    cr_assert(isinf(mr), "NaN where the baseline has a number is an infinite error");
}
