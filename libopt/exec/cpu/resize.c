/*
 * libopt/exec/cpu/resize.c — Resize (opsets 10 to 19) on the CPU.
 *
 * Resize is separable: the output is built one axis at a time, each pass mapping every output
 * coordinate to n input taps with weights (nearest: 1 tap; linear: 2; cubic: 4; antialiased
 * linear/cubic when downscaling: a footprint widened by 1/scale). The taps and weights are those
 * of ONNX's reference implementation: the source coordinate from coordinate_transformation_mode
 * (half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric,
 * tf_half_pixel_for_nn, tf_crop_and_resize), edge-clamped taps (exclude_outside drops and
 * renormalises instead), and extrapolation_value outside the crop box. Every index is clamped to
 * the input before use.
 */
#include "libopt/exec/cpu/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { RZ_NEAREST, RZ_LINEAR, RZ_CUBIC };
enum { CT_HALF_PIXEL, CT_HALF_PIXEL_SYM, CT_PYTORCH, CT_ALIGN, CT_ASYM, CT_TF_NN, CT_TF_CROP };
enum { NM_ROUND_FLOOR, NM_ROUND_CEIL, NM_FLOOR, NM_CEIL };

typedef struct rz_opts {
    int mode, ctm, nearest;
    bool antialias, exclude_outside;
    float cubic_a, extrapolation;
} rz_opts;

/* One axis's plan: for each output coordinate, n taps (index, weight) and an extrapolate flag. */
typedef struct rz_axis {
    int64_t out, n;
    int64_t *idx;
    float *w;
    bool *extra;
} rz_axis;

static double cubic_w(double x, double A)
{
    x = fabs(x);
    if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
    if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return 0;
}

/* Source coordinate of output coordinate y along an axis; sets *extra for tf_crop_and_resize
 * coordinates outside the input. */
static double rz_coord(const rz_opts *o, double y, double scale, int64_t in, int64_t out_int,
                       double roi0, double roi1, bool *extra)
{
    double outw = scale * (double)in;
    *extra = false;
    switch (o->ctm) {
    case CT_ALIGN:
        return outw == 1 ? 0 : y * (double)(in - 1) / (outw - 1);
    case CT_ASYM:
        return y / scale;
    case CT_TF_NN:
        return (y + 0.5) / scale;
    case CT_PYTORCH:
        return outw == 1 ? -0.5 : (y + 0.5) / scale - 0.5;
    case CT_HALF_PIXEL_SYM: {
        double adj = (double)out_int / outw, center = (double)in / 2;
        return center * (1 - adj) + (y + 0.5) / scale - 0.5;
    }
    case CT_TF_CROP: {
        double x = outw == 1 ? (roi1 - roi0) * (double)(in - 1) / 2
                             : y * (roi1 - roi0) * (double)(in - 1) / (outw - 1);
        x += roi0 * (double)(in - 1);
        if (x < 0 || x > (double)(in - 1)) *extra = true;
        return x;
    }
    default:
        return (y + 0.5) / scale - 0.5;
    }
}

/* Builds the taps of one axis (see the file comment); false on out-of-memory. */
static bool rz_plan(const rz_opts *o, rz_axis *ax, int64_t in, int64_t out, double scale,
                    double roi0, double roi1)
{
    double s1 = scale < 1 ? scale : 1;
    int64_t n, start;
    if (o->mode == RZ_NEAREST) {
        n = 1, start = 0;
    } else if (o->mode == RZ_LINEAR) {
        start = o->antialias ? (int64_t)floor(-1 / s1) + 1 : 0;
        n = 2 - 2 * start;
    } else {
        start = o->antialias ? (int64_t)floor(-2 / s1) + 1 : -1;
        n = 2 - 2 * start;
    }
    ax->out = out;
    ax->n = n;
    ax->idx = malloc((size_t)(out * n + 1) * sizeof *ax->idx);
    ax->w = malloc((size_t)(out * n + 1) * sizeof *ax->w);
    ax->extra = malloc((size_t)out + 1);
    if (!ax->idx || !ax->w || !ax->extra) return false;
    double wt[64];
    if (n > 64) return false;
    for (int64_t y = 0; y < out; y++) {
        bool ex;
        double x = rz_coord(o, (double)y, scale, in, out, roi0, roi1, &ex);
        ax->extra[y] = ex;
        double fl = floor(x);
        int64_t *id = ax->idx + y * n;
        float *w = ax->w + y * n;
        if (o->mode == RZ_NEAREST) {
            double r = x - fl;
            int64_t p = (int64_t)fl;
            if (r != 0) {
                bool up;
                switch (o->nearest) {
                case NM_ROUND_CEIL: up = r >= 0.5; break;
                case NM_FLOOR: up = false; break;
                case NM_CEIL: up = true; break;
                default: up = r > 0.5; break;
                }
                if (up) p++;
            }
            id[0] = p < 0 ? 0 : p >= in ? in - 1 : p;
            w[0] = 1;
            continue;
        }
        /* ratio in (0, 1]: an integer coordinate counts as the right end of the cell below. */
        int64_t base = (int64_t)fl;
        double ratio = x - fl;
        if (ratio == 0) base--, ratio = 1;
        double sum = 0;
        for (int64_t j = 0; j < n; j++) {
            int64_t off = j + start;
            double c;
            if (o->mode == RZ_LINEAR) {
                if (o->antialias) {
                    c = 1 - fabs(((double)off - ratio) * s1);
                    c = c < 0 ? 0 : c > 1 ? 1 : c;
                } else {
                    c = j == 0 ? 1 - ratio : ratio;
                }
            } else {
                c = o->antialias ? cubic_w(((double)off - ratio) * s1, o->cubic_a)
                                 : cubic_w((double)off - ratio, o->cubic_a);
            }
            int64_t p = base + off;
            if (o->exclude_outside && (p < 0 || p >= in)) c = 0;
            wt[j] = c;
            sum += c;
        }
        bool renorm = o->antialias || o->exclude_outside;
        for (int64_t j = 0; j < n; j++) {
            int64_t p = base + j + start;
            id[j] = p < 0 ? 0 : p >= in ? in - 1 : p;
            w[j] = (float)(renorm && sum != 0 ? wt[j] / sum : wt[j]);
        }
    }
    return true;
}

/* Applies one axis: src has dims cur[], dst the same with cur[axis] replaced by ax->out. */
static void rz_pass(const rz_opts *o, const rz_axis *ax, const float *src, float *dst,
                    const int64_t *cur, int r, int axis)
{
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= cur[i];
    for (int i = axis + 1; i < r; i++) inner *= cur[i];
    int64_t in = cur[axis];
    for (int64_t ou = 0; ou < outer; ou++) {
        const float *s = src + ou * in * inner;
        float *d = dst + ou * ax->out * inner;
        for (int64_t y = 0; y < ax->out; y++) {
            float *dy = d + y * inner;
            if (ax->extra[y]) {
                for (int64_t i = 0; i < inner; i++) dy[i] = o->extrapolation;
                continue;
            }
            const int64_t *id = ax->idx + y * ax->n;
            const float *w = ax->w + y * ax->n;
            if (ax->n == 1) {
                memcpy(dy, s + id[0] * inner, (size_t)inner * sizeof *dy);
                continue;
            }
            for (int64_t i = 0; i < inner; i++) dy[i] = 0;
            for (int64_t j = 0; j < ax->n; j++) {
                const float *sj = s + id[j] * inner;
                float wj = w[j];
                for (int64_t i = 0; i < inner; i++) dy[i] += wj * sj[i];
            }
        }
    }
}

static int str_pick(const opt_node *n, const char *name, const char *def, const char *const *opts,
                    int nopts)
{
    for (int i = 0; i < nopts; i++)
        if (nn_attr_is(n, name, opts[i], def)) return i;
    return -1;
}

static opt_status rz_read_opts(const opt_node *n, int opset, rz_opts *o, opt_error *err)
{
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    static const char *const ctms[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                       "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                                       "tf_crop_and_resize"};
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    o->mode = str_pick(n, "mode", "nearest", modes, 3);
    if (o->mode < 0 || (opset < 11 && o->mode == RZ_CUBIC))
        return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "unknown Resize mode");
    if (opset < 11) {
        o->ctm = CT_ASYM;
        o->nearest = NM_FLOOR;
    } else {
        o->ctm = str_pick(n, "coordinate_transformation_mode", "half_pixel", ctms, 7);
        o->nearest = str_pick(n, "nearest_mode", "round_prefer_floor", nms, 4);
        if (o->ctm < 0)
            return opt_node_err(n, err, OPT_ERR_UNSUPPORTED,
                                "unknown coordinate_transformation_mode");
        if (o->nearest < 0) return opt_node_err(n, err, OPT_ERR_UNSUPPORTED, "unknown nearest_mode");
    }
    o->antialias = opt_node_attr_int(n, "antialias", 0) != 0;
    if (o->antialias && o->mode == RZ_NEAREST)
        return opt_node_err(n, err, OPT_ERR_INVALID, "antialias needs mode linear or cubic");
    o->exclude_outside = opt_node_attr_int(n, "exclude_outside", 0) != 0;
    o->cubic_a = opt_node_attr_float(n, "cubic_coeff_a", -0.75f);
    o->extrapolation = opt_node_attr_float(n, "extrapolation_value", 0.0f);
    return OPT_OK;
}

static opt_status rz_prepare(const opt_node *n, int opset, const opt_array *const *consts,
                             size_t n_in, void **state, opt_error *err)
{
    rz_opts o;
    OPT_TRY(rz_read_opts(n, opset, &o, err));
    if (!nn_attr_is(n, "keep_aspect_ratio_policy", "stretch", "stretch") &&
        !nn_attr_is(n, "keep_aspect_ratio_policy", "not_larger", NULL) &&
        !nn_attr_is(n, "keep_aspect_ratio_policy", "not_smaller", NULL))
        return opt_node_err(n, err, OPT_ERR_INVALID, "unknown keep_aspect_ratio_policy");
    return OPT_OK;
}

static opt_status rz_run(opt_kctx *k, opt_error *err)
{
    const opt_array *X = k->in[0];
    int r = X->ndim;
    rz_opts o;
    OPT_TRY(rz_read_opts(k->node, k->opset, &o, err));
    /* Inputs: opset 10 (X, scales); 11+ (X, roi, scales, sizes). Empty tensors count as absent. */
    const opt_array *roi = NULL, *scales = NULL, *sizes = NULL;
    if (k->opset < 11) {
        scales = opt_kctx_has(k, 1) ? k->in[1] : NULL;
    } else {
        roi = opt_kctx_has(k, 1) ? k->in[1] : NULL;
        scales = opt_kctx_has(k, 2) ? k->in[2] : NULL;
        sizes = opt_kctx_has(k, 3) ? k->in[3] : NULL;
    }
    if (roi && !opt_array_numel(roi)) roi = NULL;
    if (scales && !opt_array_numel(scales)) scales = NULL;
    if (sizes && !opt_array_numel(sizes)) sizes = NULL;
    if (!!scales == !!sizes)
        return opt_kerr(k, err, OPT_ERR_INVALID, "exactly one of scales and sizes must be given");

    int64_t axes[OPT_MAX_DIMS];
    int na = nn_attr_ints(k->node, "axes", axes, OPT_MAX_DIMS);
    if (na == -2) return opt_kerr(k, err, OPT_ERR_INVALID, "too many axes");
    if (na < 0) {
        na = r;
        for (int i = 0; i < r; i++) axes[i] = i;
    }
    bool seen[OPT_MAX_DIMS] = {0};
    for (int i = 0; i < na; i++) {
        if (axes[i] < 0) axes[i] += r;
        if (axes[i] < 0 || axes[i] >= r || seen[axes[i]])
            return opt_kerr(k, err, OPT_ERR_INVALID, "axes out of range or repeated");
        seen[axes[i]] = true;
    }
    uint64_t want = (uint64_t)na;
    if ((scales && opt_array_numel(scales) != want) || (sizes && opt_array_numel(sizes) != want))
        return opt_kerr(k, err, OPT_ERR_INVALID, "scales/sizes need %d values", na);
    if (roi && opt_array_numel(roi) != 2 * want)
        return opt_kerr(k, err, OPT_ERR_INVALID, "roi needs %d values", 2 * na);

    double scale[OPT_MAX_DIMS], r0[OPT_MAX_DIMS], r1[OPT_MAX_DIMS];
    int64_t out[OPT_MAX_DIMS];
    for (int i = 0; i < r; i++) scale[i] = 1, out[i] = X->dims[i], r0[i] = 0, r1[i] = 1;
    for (int i = 0; i < na; i++) {
        int a = (int)axes[i];
        if (roi) r0[a] = opt_array_get(roi, (uint64_t)i), r1[a] = opt_array_get(roi, (uint64_t)(na + i));
        if (scales) {
            scale[a] = (double)(float)opt_array_get(scales, (uint64_t)i);
            if (!(scale[a] > 0))
                return opt_kerr(k, err, OPT_ERR_INVALID, "scales must be positive");
            double o_ = scale[a] * (double)X->dims[a];
            if (o.ctm == CT_TF_CROP) o_ *= r1[a] - r0[a];
            out[a] = (int64_t)floor(o_);
        } else {
            out[a] = opt_array_int(sizes, (uint64_t)i);
            if (out[a] < 0) return opt_kerr(k, err, OPT_ERR_INVALID, "negative size");
            scale[a] = X->dims[a] ? (double)out[a] / (double)X->dims[a] : 1;
        }
    }
    if (sizes && !nn_attr_is(k->node, "keep_aspect_ratio_policy", "stretch", "stretch")) {
        bool larger = nn_attr_is(k->node, "keep_aspect_ratio_policy", "not_smaller", NULL);
        double s = scale[axes[0]];
        for (int i = 1; i < na; i++)
            s = larger ? fmax(s, scale[axes[i]]) : fmin(s, scale[axes[i]]);
        for (int i = 0; i < na; i++) {
            scale[axes[i]] = s;
            out[axes[i]] = (int64_t)(s * (double)X->dims[axes[i]] + 0.5);
        }
    }
    OPT_TRY(opt_kctx_output(k, 0, X->dtype, r, out, err));
    uint64_t total = opt_array_numel(&k->out[0]);
    if (!total) return OPT_OK;
    if (!opt_array_numel(X)) return opt_kerr(k, err, OPT_ERR_INVALID, "empty input, non-empty output");

    float *tx, *ty;
    const float *x = nn_f32_in(X, &tx);
    float *y = nn_f32_out(&k->out[0], &ty);
    /* Two ping-pong buffers big enough for any intermediate shape. */
    uint64_t big = opt_array_numel(X);
    int64_t cur[OPT_MAX_DIMS];
    memcpy(cur, X->dims, (size_t)r * sizeof *cur);
    for (int a = 0; a < r; a++) {
        cur[a] = out[a] > cur[a] ? out[a] : cur[a];
        uint64_t n = 1;
        for (int i = 0; i < r; i++) n *= (uint64_t)cur[i];
        if (n > big) big = n;
    }
    float *buf[2] = {malloc(big * sizeof(float)), malloc(big * sizeof(float))};
    opt_status st = OPT_OK;
    if (!x || !y || !buf[0] || !buf[1]) {
        st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(cur, X->dims, (size_t)r * sizeof *cur);
    const float *src = x;
    int which = 0;
    for (int a = 0; a < r; a++) {
        bool roi_id = fabs(r0[a]) < 1e-9 && fabs(r1[a] - 1) < 1e-9;
        if (fabs(scale[a] - 1) < 1e-9 && out[a] == cur[a] && (roi_id || o.ctm != CT_TF_CROP))
            continue;
        rz_axis ax = {0};
        if (!rz_plan(&o, &ax, cur[a], out[a], scale[a], r0[a], r1[a])) {
            free(ax.idx);
            free(ax.w);
            free(ax.extra);
            st = opt_kerr(k, err, OPT_ERR_NOMEM, "out of memory (or footprint too wide)");
            goto done;
        }
        rz_pass(&o, &ax, src, buf[which], cur, r, a);
        free(ax.idx);
        free(ax.w);
        free(ax.extra);
        cur[a] = out[a];
        src = buf[which];
        which ^= 1;
    }
    memcpy(y, src, total * sizeof *y);
done:
    if (st == OPT_OK) nn_f32_out_done(&k->out[0], ty);
    else free(ty);
    free(tx);
    free(buf[0]);
    free(buf[1]);
    return st;
}

#define RZ_DTS (OPT_DTS_FLOATS | OPT_DT_BIT(OPT_DT_INT8) | OPT_DT_BIT(OPT_DT_UINT8))

const opt_kernel opt_kernels_resize[] = {
    {"", "Resize", 10, INT_MAX, RZ_DTS, 0, OPT_DEVICE_CPU, NULL, rz_prepare, rz_run, NULL},
    {0},
};
