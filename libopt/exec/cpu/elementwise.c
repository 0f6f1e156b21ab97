/*
 * libopt/exec/cpu/elementwise.c — elementwise ops: activations, unary math, binary arithmetic
 * and comparisons with numpy broadcasting, variadic Min/Max/Sum/Mean, Clip, Where, logic.
 *
 * Each op is an expression written once (with <tgmath.h> so the same text computes in float or
 * double) and expanded into one tight loop per C type. float16/bfloat16 run the float32 loop on
 * chunks converted into a stack buffer and round once at the output. Work is split over the
 * output elements with opt_parallel_for, so results do not depend on the thread count.
 *
 * The float32 loops are compiled for AVX-512, AVX2 and baseline x86-64 (NN_VEC) and picked at
 * load; Exp, Erf, Tanh, Sigmoid and Gelu (both forms) use the vectorisable nn_expf, nn_erff,
 * nn_tanhf and nn_sigmoidf (vmath.h) in float32 instead of libm's one-value-at-a-time calls,
 * whose results they match within a few ulp.
 * float64 keeps libm.
 */
#include "libopt/exec/cpu/bcast.h"
#include "libopt/exec/cpu/convert.h"
#include "libopt/exec/cpu/nn.h"
#include "libopt/exec/cpu/vmath.h"
#include "libopt/exec/fuse.h"

#include <string.h>
#include <tgmath.h>

#define CHUNK 256
#define PAR_MIN 32768 /* below this many elements, run on one thread */

#define F16BIT (OPT_DT_BIT(OPT_DT_FLOAT16) | OPT_DT_BIT(OPT_DT_BFLOAT16))
#define F32_64 (OPT_DT_BIT(OPT_DT_FLOAT) | OPT_DT_BIT(OPT_DT_DOUBLE))
#define SINTS (OPT_DT_BIT(OPT_DT_INT8) | OPT_DT_BIT(OPT_DT_INT16) | OPT_DT_BIT(OPT_DT_INT32) | OPT_DT_BIT(OPT_DT_INT64))
#define UINTS (OPT_DT_BIT(OPT_DT_UINT8) | OPT_DT_BIT(OPT_DT_UINT16) | OPT_DT_BIT(OPT_DT_UINT32) | OPT_DT_BIT(OPT_DT_UINT64))
#define BOOLBIT OPT_DT_BIT(OPT_DT_BOOL)

typedef struct uparams {
    float alpha, beta, gamma;
    int mode;
} uparams;

static size_t dt_size(int dt)
{
    return (size_t)opt_dtype_bits(dt) / 8;
}

/* Splits [0, n) over the executor's threads unless n is small. */
static void par(opt_kctx *k, uint64_t n, void (*fn)(void *, size_t, size_t), void *ctx)
{
    if (n < PAR_MIN) fn(ctx, 0, (size_t)n);
    else opt_parallel_for(k, (size_t)n, fn, ctx);
}

/* ==== unary ================================================================================= */

/* The ops as expressions of v (type T) and p (uparams). */
#define U_RELU(T) (v > 0 ? v : (T)0)
#define U_LEAKY(T) (v >= 0 ? v : v * (T)p->alpha)
#define U_ELU(T) (v >= 0 ? v : (T)p->alpha * (exp(v) - 1))
#define U_SELU(T) ((T)p->gamma * (v > 0 ? v : (T)p->alpha * exp(v) - (T)p->alpha))
#define U_CELU(T) ((v > 0 ? v : (T)0) + fmin((T)0, (T)p->alpha * (exp(v / (T)p->alpha) - 1)))
#define U_THRELU(T) (v > (T)p->alpha ? v : (T)0)
#define U_SIGMOID(T) (v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v)))
#define U_HSIGMOID(T) (fmax((T)0, fmin((T)1, (T)p->alpha * v + (T)p->beta)))
#define U_HSWISH(T) (v * fmax((T)0, fmin((T)1, v / 6 + (T)0.5)))
#define U_TANH(T) (tanh(v))
#define U_ERF(T) (erf(v))
#define U_GELU(T) (p->mode ? (T)0.5 * v * (1 + tanh((T)0.7978845608028654 * (v + (T)0.044715 * v * v * v))) \
                           : (T)0.5 * v * (1 + erf(v * (T)0.7071067811865476)))
#define U_SQRT(T) (sqrt(v))
#define U_EXP(T) (exp(v))
#define U_LOG(T) (log(v))
#define U_NEG(T) (-v)
#define U_ABS(T) (fabs(v))
#define U_RECIP(T) (1 / v)
#define U_FLOOR(T) (floor(v))
#define U_CEIL(T) (ceil(v))
#define U_ROUND(T) (nearbyint(v))
#define U_SIGN(T) ((T)((v > 0) - (v < 0)))
#define U_SOFTPLUS(T) (log(exp(v) + 1))
#define U_SOFTSIGN(T) (v / (1 + fabs(v)))
#define U_SIN(T) (sin(v))
#define U_COS(T) (cos(v))
#define U_TAN(T) (tan(v))
#define U_ASIN(T) (asin(v))
#define U_ACOS(T) (acos(v))
#define U_ATAN(T) (atan(v))
#define U_SINH(T) (sinh(v))
#define U_COSH(T) (cosh(v))
#define U_ASINH(T) (asinh(v))
#define U_ACOSH(T) (acosh(v))
#define U_ATANH(T) (atanh(v))
#define U_SHRINK(T) (v < -(T)p->alpha ? v + (T)p->beta : v > (T)p->alpha ? v - (T)p->beta : (T)0)

/* Integer forms where the op defines integer types. */
#define I_RELU(T) (v > 0 ? v : (T)0)
#define I_NEG(T) ((T)(0 - (uint64_t)v)) /* wraps like two's complement, no UB */
#define I_ABS(T) ((T)(v < 0 ? (T)(0 - (uint64_t)v) : v))
#define I_SIGN(T) ((T)((v > 0) - (v < 0)))

/* float32 forms that differ from the generic expression: vectorisable exp, erf, tanh, sigmoid. */
#define F_EXP(T) (nn_expf(v))
#define F_ERF(T) (nn_erff(v))
#define F_SIGMOID(T) (nn_sigmoidf(v))
#define F_TANH(T) (nn_tanhf(v))
#define F_GELU_ERF(T) ((T)0.5 * v * (1 + nn_erff(v * (T)0.7071067811865476)))
#define F_GELU_TANH(T) ((T)0.5 * v * (1 + nn_tanhf((T)0.7978845608028654 * (v + (T)0.044715 * v * v * v))))

typedef void (*uloop_fn)(const void *x, void *y, size_t n, const uparams *p);

#define DEF_ULOOP(NAME, T, EXPR) DEF_ULOOP_A(NAME, T, EXPR, )
#define DEF_ULOOPV(NAME, T, EXPR) DEF_ULOOP_A(NAME, T, EXPR, NN_VEC)
#define DEF_ULOOP_A(NAME, T, EXPR, ATTR)                                           \
    static ATTR void NAME(const void *x_, void *y_, size_t n, const uparams *p)    \
    {                                                                              \
        const T *x = x_;                                                           \
        T *y = y_;                                                                 \
        (void)p;                                                                   \
        for (size_t i = 0; i < n; i++) {                                           \
            T v = x[i];                                                            \
            y[i] = EXPR(T);                                                        \
        }                                                                          \
    }

#define DEF_UFLOAT(OP)                                                             \
    DEF_ULOOPV(u_##OP##_f32, float, U_##OP)                                        \
    DEF_ULOOP(u_##OP##_f64, double, U_##OP)
#define DEF_UFLOATX(OP)                                                            \
    DEF_ULOOPV(u_##OP##_f32, float, F_##OP)                                        \
    DEF_ULOOP(u_##OP##_f64, double, U_##OP)

#define DEF_UINT(OP)                                                               \
    DEF_ULOOP(i_##OP##_i8, int8_t, I_##OP)                                         \
    DEF_ULOOP(i_##OP##_i16, int16_t, I_##OP)                                       \
    DEF_ULOOP(i_##OP##_i32, int32_t, I_##OP)                                       \
    DEF_ULOOP(i_##OP##_i64, int64_t, I_##OP)                                       \
    DEF_ULOOP(i_##OP##_u8, uint8_t, I_##OP)                                        \
    DEF_ULOOP(i_##OP##_u16, uint16_t, I_##OP)                                      \
    DEF_ULOOP(i_##OP##_u32, uint32_t, I_##OP)                                      \
    DEF_ULOOP(i_##OP##_u64, uint64_t, I_##OP)

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wbool-compare"
DEF_UFLOAT(RELU) DEF_UFLOAT(LEAKY) DEF_UFLOAT(ELU) DEF_UFLOAT(SELU) DEF_UFLOAT(CELU)
DEF_UFLOAT(THRELU) DEF_UFLOATX(SIGMOID) DEF_UFLOAT(HSIGMOID) DEF_UFLOAT(HSWISH) DEF_UFLOATX(TANH)
DEF_UFLOATX(ERF) DEF_UFLOAT(SQRT) DEF_UFLOATX(EXP) DEF_UFLOAT(LOG) DEF_UFLOAT(NEG)
DEF_UFLOAT(ABS) DEF_UFLOAT(RECIP) DEF_UFLOAT(FLOOR) DEF_UFLOAT(CEIL) DEF_UFLOAT(ROUND)
DEF_UFLOAT(SIGN) DEF_UFLOAT(SOFTPLUS) DEF_UFLOAT(SOFTSIGN) DEF_UFLOAT(SIN) DEF_UFLOAT(COS)
DEF_UFLOAT(TAN) DEF_UFLOAT(ASIN) DEF_UFLOAT(ACOS) DEF_UFLOAT(ATAN) DEF_UFLOAT(SINH)
DEF_UFLOAT(COSH) DEF_UFLOAT(ASINH) DEF_UFLOAT(ACOSH) DEF_UFLOAT(ATANH) DEF_UFLOAT(SHRINK)
DEF_UINT(RELU) DEF_UINT(NEG) DEF_UINT(ABS) DEF_UINT(SIGN)
#pragma GCC diagnostic pop

/* Gelu's two forms as two loops, so that neither tests the mode per value (which would keep the
 * loop scalar). */
DEF_ULOOPV(gelu_erf_f32, float, F_GELU_ERF)
DEF_ULOOPV(gelu_tanh_f32, float, F_GELU_TANH)
DEF_ULOOP(u_GELU_f64, double, U_GELU)
static void u_GELU_f32(const void *x, void *y, size_t n, const uparams *p)
{
    (p->mode ? gelu_tanh_f32 : gelu_erf_f32)(x, y, n, p);
}

typedef struct uop {
    const char *op;
    uloop_fn f32, f64;
    uloop_fn ints[8]; /* i8 i16 i32 i64 u8 u16 u32 u64; NULL where undefined */
    float alpha, beta, gamma; /* attribute defaults */
} uop;

#define UF(NAME, OP, A, B, G) {NAME, u_##OP##_f32, u_##OP##_f64, {0}, A, B, G}
#define UFI(NAME, OP, A, B, G)                                                          \
    {NAME, u_##OP##_f32, u_##OP##_f64,                                                  \
     {i_##OP##_i8, i_##OP##_i16, i_##OP##_i32, i_##OP##_i64, i_##OP##_u8, i_##OP##_u16, \
      i_##OP##_u32, i_##OP##_u64}, A, B, G}

static const uop uops[] = {
    UFI("Relu", RELU, 0, 0, 0),
    UF("LeakyRelu", LEAKY, 0.01f, 0, 0),
    UF("Elu", ELU, 1.0f, 0, 0),
    UF("Selu", SELU, 1.67326319217681884765625f, 0, 1.05070102214813232421875f),
    UF("Celu", CELU, 1.0f, 0, 0),
    UF("ThresholdedRelu", THRELU, 1.0f, 0, 0),
    UF("Sigmoid", SIGMOID, 0, 0, 0),
    UF("HardSigmoid", HSIGMOID, 0.2f, 0.5f, 0),
    UF("HardSwish", HSWISH, 0, 0, 0),
    UF("Tanh", TANH, 0, 0, 0),
    UF("Erf", ERF, 0, 0, 0),
    UF("Gelu", GELU, 0, 0, 0),
    UF("Sqrt", SQRT, 0, 0, 0),
    UF("Exp", EXP, 0, 0, 0),
    UF("Log", LOG, 0, 0, 0),
    UFI("Neg", NEG, 0, 0, 0),
    UFI("Abs", ABS, 0, 0, 0),
    UF("Reciprocal", RECIP, 0, 0, 0),
    UF("Floor", FLOOR, 0, 0, 0),
    UF("Ceil", CEIL, 0, 0, 0),
    UF("Round", ROUND, 0, 0, 0),
    UFI("Sign", SIGN, 0, 0, 0),
    UF("Softplus", SOFTPLUS, 0, 0, 0),
    UF("Softsign", SOFTSIGN, 0, 0, 0),
    UF("Sin", SIN, 0, 0, 0),
    UF("Cos", COS, 0, 0, 0),
    UF("Tan", TAN, 0, 0, 0),
    UF("Asin", ASIN, 0, 0, 0),
    UF("Acos", ACOS, 0, 0, 0),
    UF("Atan", ATAN, 0, 0, 0),
    UF("Sinh", SINH, 0, 0, 0),
    UF("Cosh", COSH, 0, 0, 0),
    UF("Asinh", ASINH, 0, 0, 0),
    UF("Acosh", ACOSH, 0, 0, 0),
    UF("Atanh", ATANH, 0, 0, 0),
    UF("Shrink", SHRINK, 0.5f, 0.0f, 0),
};

static const uop *find_uop(const char *op)
{
    for (size_t i = 0; i < sizeof uops / sizeof uops[0]; i++)
        if (strcmp(uops[i].op, op) == 0) return &uops[i];
    return NULL;
}

static int int_slot(int dt)
{
    switch (dt) {
    case OPT_DT_INT8: return 0;
    case OPT_DT_INT16: return 1;
    case OPT_DT_INT32: return 2;
    case OPT_DT_INT64: return 3;
    case OPT_DT_UINT8: return 4;
    case OPT_DT_UINT16: return 5;
    case OPT_DT_UINT32: return 6;
    case OPT_DT_UINT64: return 7;
    default: return -1;
    }
}

typedef struct ujob {
    uloop_fn f;
    const void *x;
    void *y;
    int dt;
    size_t es;
    uparams p;
} ujob;

static void ujob_run(void *ctx, size_t b, size_t e)
{
    const ujob *j = ctx;
    if (j->dt == OPT_DT_FLOAT16 || j->dt == OPT_DT_BFLOAT16) {
        float t[CHUNK];
        for (size_t i = b; i < e; i += CHUNK) {
            size_t n = e - i < CHUNK ? e - i : CHUNK;
            opt_cvt_to_f32((const uint16_t *)j->x + i, j->dt, t, n);
            j->f(t, t, n, &j->p);
            opt_cvt_from_f32(t, (uint16_t *)j->y + i, j->dt, n);
        }
        return;
    }
    j->f((const char *)j->x + b * j->es, (char *)j->y + b * j->es, e - b, &j->p);
}

static opt_status unary_run(opt_kctx *k, opt_error *err)
{
    const uop *u = find_uop(k->node->op_type);
    const opt_array *x = k->in[0];
    ujob j = {.x = x->data, .dt = x->dtype, .es = dt_size(x->dtype)};
    j.p.alpha = opt_node_attr_float(k->node, "alpha", u->alpha);
    j.p.beta = opt_node_attr_float(k->node, "beta", u->beta);
    j.p.gamma = opt_node_attr_float(k->node, "gamma", u->gamma);
    if (strcmp(u->op, "Shrink") == 0) {
        j.p.alpha = opt_node_attr_float(k->node, "lambd", 0.5f);
        j.p.beta = opt_node_attr_float(k->node, "bias", 0.0f);
    }
    if (strcmp(u->op, "Gelu") == 0) {
        char abuf[32];
        const char *a = opt_kattr_str(k->node, "approximate", "none", abuf, sizeof abuf);
        if (strcmp(a, "tanh") == 0) j.p.mode = 1;
        else if (strcmp(a, "none") != 0)
            return opt_kerr(k, err, OPT_ERR_INVALID, "approximate='%s' (none or tanh)", a);
    }
    switch (x->dtype) {
    case OPT_DT_FLOAT: case OPT_DT_FLOAT16: case OPT_DT_BFLOAT16: j.f = u->f32; break;
    case OPT_DT_DOUBLE: j.f = u->f64; break;
    default: {
        int s = int_slot(x->dtype);
        j.f = s >= 0 ? u->ints[s] : NULL;
    }
    }
    if (!j.f) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "dtype %s", opt_dtype_short(x->dtype));
    OPT_TRY(opt_kctx_output_inplace(k, 0, 0, x->dtype, x->ndim, x->dims, err));
    j.y = k->out[0].data;
    par(k, opt_array_numel(x), ujob_run, &j);
    return OPT_OK;
}

/* Gelu of the executor's domain, made at load by libopt/exec/fuse.c from the erf form written out
 * as Div, Erf, Add, Mul, Mul: one input, it is the Gelu above; two, y = Gelu(x + B) with B a float32
 * vector along x's last axis (the bias Add before the chain folded in), broadcast as Add does. */
static NN_VEC void gelu_bias_f32(const float *x, const float *b, float *y, size_t n, size_t xs, size_t bs)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i * xs] + b[i * bs];
        y[i] = F_GELU_ERF(float);
    }
}

typedef struct gbjob {
    const float *x, *b;
    float *y;
    size_t cols, xs, bs; /* output row length; x and B strides along it (0: broadcast) */
} gbjob;

static void gelu_bias_run(void *ctx, size_t b, size_t e)
{
    const gbjob *j = ctx;
    for (size_t i = b; i < e;) {
        size_t r = i / j->cols, c = i % j->cols, n = j->cols - c < e - i ? j->cols - c : e - i;
        gelu_bias_f32(j->x + (j->xs ? i : r), j->b + c * j->bs, j->y + i, n, j->xs, j->bs);
        i += n;
    }
}

static opt_status fused_gelu_run(opt_kctx *k, opt_error *err)
{
    if (k->n_in < 2 || !opt_kctx_has(k, 1)) return unary_run(k, err);
    const opt_array *x = k->in[0], *b = k->in[1];
    if (x->dtype != OPT_DT_FLOAT || b->dtype != OPT_DT_FLOAT || b->ndim != 1)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "bias Gelu of %s and %s", opt_dtype_short(x->dtype),
                        opt_dtype_short(b->dtype));
    int64_t cx = x->ndim ? x->dims[x->ndim - 1] : 1, L = b->dims[0];
    if (cx != L && cx != 1 && L != 1)
        return opt_kerr(k, err, OPT_ERR_INVALID, "bias of %lld values along a last axis of %lld", (long long)L,
                        (long long)cx);
    int64_t dims[OPT_MAX_DIMS];
    int nd = x->ndim ? x->ndim : 1;
    for (int i = 0; i < nd; i++) dims[i] = x->ndim ? x->dims[i] : 1;
    dims[nd - 1] = cx > L ? cx : L;
    if (cx == dims[nd - 1]) OPT_TRY(opt_kctx_output_inplace(k, 0, 0, OPT_DT_FLOAT, nd, dims, err));
    else OPT_TRY(opt_kctx_output(k, 0, OPT_DT_FLOAT, nd, dims, err));
    gbjob j = {.x = x->data, .b = b->data, .y = k->out[0].data, .cols = (size_t)dims[nd - 1],
               .xs = cx == 1 && dims[nd - 1] > 1 ? 0 : 1, .bs = L == 1 ? 0 : 1};
    if (j.cols == 0) return OPT_OK;
    par(k, opt_array_numel(&k->out[0]), gelu_bias_run, &j);
    return OPT_OK;
}

/* ==== binary ================================================================================ */

/* Binary expressions of a, b (type T). */
#define B_ADD(T) ((T)(a + b))
#define B_SUB(T) ((T)(a - b))
#define B_MUL(T) ((T)(a * b))
#define B_DIV(T) ((T)(a / b))
#define B_MAX(T) (a != a ? a : a > b || b != b ? (a > b ? a : b) : b)
#define B_MIN(T) (a != a ? a : a < b || b != b ? (a < b ? a : b) : b)
#define B_PRELU(T) ((T)(a < 0 ? a * b : a))
#define B_FMOD(T) (fmod(a, b))
/* numpy.mod for floats (fmod=0, opset 10+ allows it): the result takes the divisor's sign. */
#define B_PYMOD(T) (pymod_##T(a, b))
static inline float pymod_float(float a, float b)
{
    float r = fmodf(a, b);
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
static inline double pymod_double(double a, double b)
{
    double r = fmod(a, b);
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
/* Integer division: C truncates (as ONNX Runtime does); x/0 gives 0 instead of a trap. */
/* Integer add/sub/mul wrap (as ONNX Runtime does in practice) instead of overflowing. */
#define BI_ADD(T) ((T)((uint64_t)a + (uint64_t)b))
#define BI_SUB(T) ((T)((uint64_t)a - (uint64_t)b))
#define BI_MUL(T) ((T)((uint64_t)a * (uint64_t)b))
#define BI_DIV(T) ((T)(b == 0 ? 0 : ((T)-1 < 0 && b == (T)-1) ? (T)(0 - a) : a / b))
#define BI_MAX(T) (a > b ? a : b)
#define BI_MIN(T) (a < b ? a : b)
/* Python-style integer mod (sign of the divisor), ONNX Mod with fmod=0. */
#define BI_MOD(T) ((T)(b == 0 ? 0 : ((T)-1 < 0 && b == (T)-1) ? 0 : ((a % b != 0 && ((a % b < 0) != (b < 0))) ? a % b + b : a % b)))
#define BI_FMOD(T) ((T)(b == 0 ? 0 : ((T)-1 < 0 && b == (T)-1) ? 0 : a % b))
/* Comparisons and logic: output bool. */
#define C_EQ(T) (a == b)
#define C_LT(T) (a < b)
#define C_GT(T) (a > b)
#define C_LE(T) (a <= b)
#define C_GE(T) (a >= b)
#define I_BAND(T) ((T)(a & b))
#define I_BOR(T) ((T)(a | b))
#define I_BXOR(T) ((T)(a ^ b))
/* Shifts by at least the width give 0 (C leaves them undefined). */
#define I_SHL(T) ((T)((uint64_t)b >= sizeof(T) * 8 ? 0 : (T)((uint64_t)a << b)))
#define I_SHR(T) ((T)((uint64_t)b >= sizeof(T) * 8 ? 0 : (T)(a >> b)))
#define L_AND(T) ((a != 0) & (b != 0))
#define L_OR(T) ((a != 0) | (b != 0))
#define L_XOR(T) ((a != 0) ^ (b != 0))

/* One run of a binary op: out[0..n) = EXPR(a[i*sa], b[i*sb]). The three common stride patterns
 * get their own loops so the compiler vectorises them. */
typedef void (*bloop_fn)(const void *a, int64_t sa, const void *b, int64_t sb, void *o, size_t n);

#define DEF_BLOOP(NAME, T, TO, EXPR) DEF_BLOOP_A(NAME, T, TO, EXPR, )
#define DEF_BLOOPV(NAME, T, TO, EXPR) DEF_BLOOP_A(NAME, T, TO, EXPR, NN_VEC)
#define DEF_BLOOP_A(NAME, T, TO, EXPR, ATTR)                                                \
    static ATTR void NAME(const void *a_, int64_t sa, const void *b_, int64_t sb, void *o_, size_t n) \
    {                                                                                       \
        const T *pa = a_, *pb = b_;                                                         \
        TO *o = o_;                                                                         \
        if (sa == 1 && sb == 1)                                                             \
            for (size_t i = 0; i < n; i++) { T a = pa[i], b = pb[i]; o[i] = (TO)(EXPR(T)); } \
        else if (sa == 1 && sb == 0) {                                                      \
            T b = pb[0];                                                                    \
            for (size_t i = 0; i < n; i++) { T a = pa[i]; o[i] = (TO)(EXPR(T)); }            \
        } else if (sa == 0 && sb == 1) {                                                    \
            T a = pa[0];                                                                    \
            for (size_t i = 0; i < n; i++) { T b = pb[i]; o[i] = (TO)(EXPR(T)); }            \
        } else                                                                              \
            for (size_t i = 0; i < n; i++) {                                                \
                T a = pa[(int64_t)i * sa], b = pb[(int64_t)i * sb];                         \
                o[i] = (TO)(EXPR(T));                                                       \
            }                                                                               \
    }

/* Slots: 0 f32, 1 f64, 2 i8, 3 i16, 4 i32, 5 i64, 6 u8, 7 u16, 8 u32, 9 u64, 10 bool. */
#define NSLOT 11
static int slot_of(int dt)
{
    switch (dt) {
    case OPT_DT_FLOAT: case OPT_DT_FLOAT16: case OPT_DT_BFLOAT16: return 0;
    case OPT_DT_DOUBLE: return 1;
    case OPT_DT_BOOL: return 10;
    default: {
        int s = int_slot(dt);
        return s < 0 ? -1 : s + 2;
    }
    }
}

#define DEF_BFLOAT(NAME, EXPR, TO32, TO64)                                          \
    DEF_BLOOPV(NAME##_f32, float, TO32, EXPR)                                       \
    DEF_BLOOP(NAME##_f64, double, TO64, EXPR)
#define DEF_BINT(NAME, EXPR, TOSAME)                                                \
    DEF_BLOOP(NAME##_i8, int8_t, TOSAME(int8_t), EXPR)                              \
    DEF_BLOOP(NAME##_i16, int16_t, TOSAME(int16_t), EXPR)                           \
    DEF_BLOOP(NAME##_i32, int32_t, TOSAME(int32_t), EXPR)                           \
    DEF_BLOOP(NAME##_i64, int64_t, TOSAME(int64_t), EXPR)                           \
    DEF_BLOOP(NAME##_u8, uint8_t, TOSAME(uint8_t), EXPR)                            \
    DEF_BLOOP(NAME##_u16, uint16_t, TOSAME(uint16_t), EXPR)                         \
    DEF_BLOOP(NAME##_u32, uint32_t, TOSAME(uint32_t), EXPR)                         \
    DEF_BLOOP(NAME##_u64, uint64_t, TOSAME(uint64_t), EXPR)
#define SAME(T) T
#define BOOLOUT(T) uint8_t

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wbool-compare"
#pragma GCC diagnostic ignored "-Wfloat-equal"
DEF_BFLOAT(b_add, B_ADD, float, double) DEF_BINT(b_add, BI_ADD, SAME)
DEF_BFLOAT(b_sub, B_SUB, float, double) DEF_BINT(b_sub, BI_SUB, SAME)
DEF_BFLOAT(b_mul, B_MUL, float, double) DEF_BINT(b_mul, BI_MUL, SAME)
DEF_BFLOAT(b_div, B_DIV, float, double) DEF_BINT(b_div, BI_DIV, SAME)
DEF_BFLOAT(b_max, B_MAX, float, double) DEF_BINT(b_max, BI_MAX, SAME)
DEF_BFLOAT(b_min, B_MIN, float, double) DEF_BINT(b_min, BI_MIN, SAME)
DEF_BFLOAT(b_prelu, B_PRELU, float, double) DEF_BINT(b_prelu, B_PRELU, SAME)
DEF_BFLOAT(b_fmod, B_FMOD, float, double) DEF_BINT(b_fmod, BI_FMOD, SAME)
DEF_BINT(b_mod, BI_MOD, SAME)
DEF_BFLOAT(b_pymod, B_PYMOD, float, double)
DEF_BINT(b_band, I_BAND, SAME)
DEF_BINT(b_bor, I_BOR, SAME)
DEF_BINT(b_bxor, I_BXOR, SAME)
DEF_BINT(b_shl, I_SHL, SAME)
DEF_BINT(b_shr, I_SHR, SAME)
DEF_BFLOAT(c_eq, C_EQ, uint8_t, uint8_t) DEF_BINT(c_eq, C_EQ, BOOLOUT)
DEF_BFLOAT(c_lt, C_LT, uint8_t, uint8_t) DEF_BINT(c_lt, C_LT, BOOLOUT)
DEF_BFLOAT(c_gt, C_GT, uint8_t, uint8_t) DEF_BINT(c_gt, C_GT, BOOLOUT)
DEF_BFLOAT(c_le, C_LE, uint8_t, uint8_t) DEF_BINT(c_le, C_LE, BOOLOUT)
DEF_BFLOAT(c_ge, C_GE, uint8_t, uint8_t) DEF_BINT(c_ge, C_GE, BOOLOUT)
DEF_BLOOP(l_and_b, uint8_t, uint8_t, L_AND)
DEF_BLOOP(l_or_b, uint8_t, uint8_t, L_OR)
DEF_BLOOP(l_xor_b, uint8_t, uint8_t, L_XOR)
DEF_BLOOP(c_eq_b, uint8_t, uint8_t, C_EQ)
#pragma GCC diagnostic pop

typedef struct bop {
    const char *op;
    bloop_fn f[NSLOT];
    bool to_bool;
} bop;

#define BF(N) N##_f32, N##_f64
#define BI(N) N##_i8, N##_i16, N##_i32, N##_i64, N##_u8, N##_u16, N##_u32, N##_u64
static const bop bops[] = {
    {"Add", {BF(b_add), BI(b_add), NULL}, false},
    {"Sub", {BF(b_sub), BI(b_sub), NULL}, false},
    {"Mul", {BF(b_mul), BI(b_mul), NULL}, false},
    {"Div", {BF(b_div), BI(b_div), NULL}, false},
    {"Max", {BF(b_max), BI(b_max), NULL}, false},
    {"Min", {BF(b_min), BI(b_min), NULL}, false},
    {"Sum", {BF(b_add), BI(b_add), NULL}, false},
    {"Mean", {BF(b_add), NULL}, false},
    {"PRelu", {BF(b_prelu), BI(b_prelu), NULL}, false},
    {"Mod", {BF(b_fmod), BI(b_mod), NULL}, false},
    {"Equal", {BF(c_eq), BI(c_eq), c_eq_b}, true},
    {"Less", {BF(c_lt), BI(c_lt), NULL}, true},
    {"Greater", {BF(c_gt), BI(c_gt), NULL}, true},
    {"LessOrEqual", {BF(c_le), BI(c_le), NULL}, true},
    {"GreaterOrEqual", {BF(c_ge), BI(c_ge), NULL}, true},
    {"BitwiseAnd", {NULL, NULL, BI(b_band), NULL}, false},
    {"BitwiseOr", {NULL, NULL, BI(b_bor), NULL}, false},
    {"BitwiseXor", {NULL, NULL, BI(b_bxor), NULL}, false},
    {"BitShift", {NULL, NULL, BI(b_shl), NULL}, false},
    {"And", {[10] = l_and_b}, true},
    {"Or", {[10] = l_or_b}, true},
    {"Xor", {[10] = l_xor_b}, true},
};

static const bop *find_bop(const char *op)
{
    for (size_t i = 0; i < sizeof bops / sizeof bops[0]; i++)
        if (strcmp(bops[i].op, op) == 0) return &bops[i];
    return NULL;
}

typedef struct bjob {
    opt_bcast bc;
    bloop_fn f;
    const char *a, *b;
    char *o;
    int dt, odt;
    size_t es, oes;
} bjob;

static void bjob_seg(void *ctx, const int64_t *in, const int64_t *st, uint64_t out, uint64_t len)
{
    const bjob *j = ctx;
    if (j->dt == OPT_DT_FLOAT16 || j->dt == OPT_DT_BFLOAT16) {
        float ta[CHUNK], tb[CHUNK], to[CHUNK];
        for (uint64_t i = 0; i < len; i += CHUNK) {
            size_t n = len - i < CHUNK ? (size_t)(len - i) : CHUNK;
            const uint16_t *pa = (const uint16_t *)j->a + in[0] + (int64_t)i * st[0];
            const uint16_t *pb = (const uint16_t *)j->b + in[1] + (int64_t)i * st[1];
            if (st[0]) opt_cvt_to_f32(pa, j->dt, ta, n); else opt_cvt_to_f32(pa, j->dt, ta, 1);
            if (st[1]) opt_cvt_to_f32(pb, j->dt, tb, n); else opt_cvt_to_f32(pb, j->dt, tb, 1);
            if (j->odt == OPT_DT_BOOL) {
                j->f(ta, st[0] ? 1 : 0, tb, st[1] ? 1 : 0, j->o + out + i, n);
            } else {
                j->f(ta, st[0] ? 1 : 0, tb, st[1] ? 1 : 0, to, n);
                opt_cvt_from_f32(to, (uint16_t *)j->o + out + i, j->dt, n);
            }
        }
        return;
    }
    j->f(j->a + (size_t)in[0] * j->es, st[0], j->b + (size_t)in[1] * j->es, st[1],
         j->o + out * j->oes, (size_t)len);
}

static void bjob_run(void *ctx, size_t b, size_t e)
{
    bjob *j = ctx;
    opt_bcast_walk(&j->bc, b, e, bjob_seg, j);
}

/* out = f(a, b) with broadcasting, into output 0 (already allocated with the broadcast shape
 * when `alloc` is false). */
static opt_status binary_apply(opt_kctx *k, const bop *op, bloop_fn f, const opt_array *a,
                               const opt_array *b, bool alloc, opt_error *err)
{
    bjob j = {.f = f, .dt = a->dtype, .es = dt_size(a->dtype)};
    const opt_array *ins[2] = {a, b};
    OPT_TRY(opt_bcast_init(&j.bc, k, ins, 2, err));
    j.odt = op->to_bool ? OPT_DT_BOOL : a->dtype;
    j.oes = dt_size(j.odt);
    if (alloc) {
        /* Reuse a dying input's buffer when it has the output's size (then its layout too). */
        size_t src = j.odt != a->dtype ? 2 : opt_array_numel(a) == j.bc.numel ? 0
                     : opt_array_numel(b) == j.bc.numel ? 1 : 2;
        if (src < 2) OPT_TRY(opt_kctx_output_inplace(k, 0, src, j.odt, j.bc.out_ndim, j.bc.out_dims, err));
        else OPT_TRY(opt_kctx_output(k, 0, j.odt, j.bc.out_ndim, j.bc.out_dims, err));
    }
    j.a = a->data;
    j.b = b->data;
    j.o = k->out[0].data;
    par(k, j.bc.numel, bjob_run, &j);
    return OPT_OK;
}

static opt_status binary_run(opt_kctx *k, opt_error *err)
{
    const bop *op = find_bop(k->node->op_type);
    const opt_array *a = k->in[0], *b = k->in[1];
    if (!b) return opt_kerr(k, err, OPT_ERR_INVALID, "needs two inputs");
    if (a->dtype != b->dtype)
        return opt_kerr(k, err, OPT_ERR_INVALID, "inputs have different dtypes (%s, %s)",
                        opt_dtype_short(a->dtype), opt_dtype_short(b->dtype));
    int s = slot_of(a->dtype);
    bloop_fn f = s >= 0 ? op->f[s] : NULL;
    if (strcmp(op->op, "Mod") == 0 && s >= 2 && opt_node_attr_int(k->node, "fmod", 0))
        f = (bloop_fn[]){BI(b_fmod)}[s - 2];
    if (strcmp(op->op, "Mod") == 0 && s < 2 && !opt_node_attr_int(k->node, "fmod", 0))
        f = s == 0 ? b_pymod_f32 : b_pymod_f64;
    if (strcmp(op->op, "BitShift") == 0 && s >= 2) {
        char db[8];
        const char *dir = opt_kattr_str(k->node, "direction", "", db, sizeof db);
        if (strcmp(dir, "RIGHT") == 0) f = (bloop_fn[]){BI(b_shr)}[s - 2];
        else if (strcmp(dir, "LEFT") != 0) return opt_kerr(k, err, OPT_ERR_INVALID, "direction must be LEFT or RIGHT");
    }
    if (!f) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "dtype %s", opt_dtype_short(a->dtype));
    if (strcmp(op->op, "PRelu") == 0) {
        /* The slope broadcasts to X (unidirectionally). */
        opt_bcast bc;
        OPT_TRY(opt_bcast_init(&bc, k, k->in, 2, err));
        if (bc.out_ndim != a->ndim || memcmp(bc.out_dims, a->dims, sizeof(int64_t) * (size_t)a->ndim))
            return opt_kerr(k, err, OPT_ERR_INVALID, "slope does not broadcast to X");
    }
    return binary_apply(k, op, f, a, b, true, err);
}

/* Opset 1-6 Add/Sub/Mul/Div/PRelu: the legacy broadcast. With broadcast=1, B's dims line up with
 * A's starting at `axis` (default: B's dims are A's trailing dims); without it the shapes must be
 * equal. Legacy PRelu shares a one-element slope, or applies a [C] slope along axis 1 (what
 * PyTorch exported). B is given A's rank with ones elsewhere and the numpy path does the rest. */
static opt_status legacy_binary_run(opt_kctx *k, opt_error *err)
{
    const opt_array *a = k->in[0], *b = k->in[1];
    if (!b) return opt_kerr(k, err, OPT_ERR_INVALID, "needs two inputs");
    bool prelu = strcmp(k->node->op_type, "PRelu") == 0;
    int64_t axis;
    if (prelu) {
        uint64_t nb = opt_array_numel(b);
        if (nb == 1 || b->ndim != 1 || a->ndim < 2) return binary_run(k, err);
        axis = 1;
    } else {
        if (!opt_node_attr_int(k->node, "broadcast", 0)) {
            if (a->ndim != b->ndim || memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->ndim))
                return opt_kerr(k, err, OPT_ERR_INVALID,
                                "shapes differ and the legacy broadcast attribute is not set");
            return binary_run(k, err);
        }
        axis = opt_node_attr_int(k->node, "axis", (int64_t)a->ndim - b->ndim);
    }
    if (axis < 0) axis += a->ndim;
    if (b->ndim > a->ndim || axis < 0 || axis + b->ndim > a->ndim)
        return opt_kerr(k, err, OPT_ERR_INVALID, "legacy broadcast: B (rank %d) does not fit A (rank %d) at axis %lld",
                        b->ndim, a->ndim, (long long)axis);
    opt_array bb = *b;
    bb.ndim = a->ndim;
    for (int d = 0; d < a->ndim; d++)
        bb.dims[d] = d >= axis && d < axis + b->ndim ? b->dims[d - axis] : 1;
    for (int d = 0; d < a->ndim; d++)
        if (bb.dims[d] != 1 && bb.dims[d] != a->dims[d])
            return opt_kerr(k, err, OPT_ERR_INVALID, "legacy broadcast: B's dim %lld does not match A's %lld",
                            (long long)bb.dims[d], (long long)a->dims[d]);
    const opt_array *ins[2] = {a, &bb};
    const opt_array *const *saved = k->in;
    k->in = ins;
    opt_status st = binary_run(k, err);
    k->in = saved;
    return st;
}

typedef struct cpjob {
    opt_bcast bc;
    const char *x;
    char *o;
    size_t es;
} cpjob;

static void copy_seg(void *ctx, const int64_t *in, const int64_t *st, uint64_t out, uint64_t len)
{
    const cpjob *j = ctx;
    if (st[0] == 1) {
        memcpy(j->o + out * j->es, j->x + (size_t)in[0] * j->es, (size_t)len * j->es);
        return;
    }
    for (uint64_t i = 0; i < len; i++)
        memcpy(j->o + (out + i) * j->es, j->x + (size_t)(in[0] + (int64_t)i * st[0]) * j->es, j->es);
}

static void copy_part(void *ctx, size_t b, size_t e)
{
    cpjob *j = ctx;
    opt_bcast_walk(&j->bc, b, e, copy_seg, j);
}

/* Copies x broadcast to o's shape (already allocated). */
static opt_status bcast_copy(opt_kctx *k, const opt_array *x, opt_array *o, opt_error *err)
{
    cpjob j = {.x = x->data, .o = o->data, .es = dt_size(x->dtype)};
    const opt_array *pr[2] = {x, o};
    OPT_TRY(opt_bcast_init(&j.bc, k, pr, 2, err));
    par(k, j.bc.numel, copy_part, &j);
    return OPT_OK;
}

/* Variadic Max/Min/Sum/Mean (opset 8+ broadcast): fold left into the output. */
static opt_status variadic_run(opt_kctx *k, opt_error *err)
{
    const bop *op = find_bop(k->node->op_type);
    size_t n = 0;
    const opt_array *ins[64];
    for (size_t i = 0; i < k->n_in && n < 64; i++)
        if (k->in[i]) ins[n++] = k->in[i];
    if (n == 0) return opt_kerr(k, err, OPT_ERR_INVALID, "needs at least one input");
    int dt = ins[0]->dtype;
    for (size_t i = 1; i < n; i++)
        if (ins[i]->dtype != dt) return opt_kerr(k, err, OPT_ERR_INVALID, "inputs have different dtypes");
    int s = slot_of(dt);
    bloop_fn f = s >= 0 ? op->f[s] : NULL;
    if (!f) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "dtype %s", opt_dtype_short(dt));
    /* The output shape is the broadcast of all inputs. */
    int nd = 0;
    int64_t dims[OPT_MAX_DIMS];
    for (size_t i = 0; i < n; i++) {
        opt_array shp = {.ndim = nd};
        memcpy(shp.dims, dims, sizeof dims);
        const opt_array *pair[2] = {&shp, ins[i]};
        opt_bcast bc;
        OPT_TRY(opt_bcast_init(&bc, k, pair, 2, err));
        nd = bc.out_ndim;
        memcpy(dims, bc.out_dims, sizeof dims);
    }
    OPT_TRY(opt_kctx_output(k, 0, dt, nd, dims, err));
    opt_array *o = &k->out[0];
    OPT_TRY(bcast_copy(k, ins[0], o, err));
    for (size_t i = 1; i < n; i++) {
        opt_array cur = *o;
        OPT_TRY(binary_apply(k, op, f, &cur, ins[i], false, err));
    }
    if (strcmp(op->op, "Mean") == 0 && n > 1) {
        uint64_t m = opt_array_numel(o);
        for (uint64_t i = 0; i < m; i++) {
            if (dt == OPT_DT_FLOAT) ((float *)o->data)[i] /= (float)n;
            else if (dt == OPT_DT_DOUBLE) ((double *)o->data)[i] /= (double)n;
            else opt_store_f32(o->data, dt, i, opt_load_f32(o->data, dt, i) / (float)n);
        }
    }
    return OPT_OK;
}

/* ==== Pow (mixed base and exponent types) ================================================== */

typedef struct pjob {
    opt_bcast bc;
    const opt_array *a, *b;
    opt_array *o;
} pjob;

static void pow_seg(void *ctx, const int64_t *in, const int64_t *st, uint64_t out, uint64_t len)
{
    const pjob *j = ctx;
    if (j->a->dtype == OPT_DT_FLOAT && j->b->dtype == OPT_DT_FLOAT) {
        const float *a = j->a->data, *b = j->b->data;
        float *o = j->o->data;
        for (uint64_t i = 0; i < len; i++)
            o[out + i] = powf(a[in[0] + (int64_t)i * st[0]], b[in[1] + (int64_t)i * st[1]]);
        return;
    }
    for (uint64_t i = 0; i < len; i++) {
        double x = opt_array_get(j->a, (uint64_t)(in[0] + (int64_t)i * st[0]));
        double y = opt_array_get(j->b, (uint64_t)(in[1] + (int64_t)i * st[1]));
        double r = pow(x, y);
        int dt = j->o->dtype;
        size_t w = (size_t)opt_dtype_bits(dt) / 8;
        /* Integer outputs truncate toward zero as ONNX Runtime's cast does (2^1.5 -> 2), then
         * saturate (2^64 or an infinity would be undefined behaviour to convert); NaN -> 0. */
        bool fp = dt == OPT_DT_FLOAT || dt == OPT_DT_DOUBLE || dt == OPT_DT_FLOAT16 ||
                  dt == OPT_DT_BFLOAT16;
        if (!fp) r = trunc(r);
        opt_cvt_from_f64(&r, (char *)j->o->data + (out + i) * w, dt, 1);
    }
}

static void pow_run1(void *ctx, size_t b, size_t e)
{
    pjob *j = ctx;
    opt_bcast_walk(&j->bc, b, e, pow_seg, j);
}

static opt_status pow_run(opt_kctx *k, opt_error *err)
{
    pjob j = {.a = k->in[0], .b = k->in[1]};
    if (!j.b) return opt_kerr(k, err, OPT_ERR_INVALID, "needs two inputs");
    if (!opt_cvt_supported(j.b->dtype) || j.b->dtype == OPT_DT_BOOL)
        return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "exponent dtype %s", opt_dtype_short(j.b->dtype));
    OPT_TRY(opt_bcast_init(&j.bc, k, k->in, 2, err));
    OPT_TRY(opt_kctx_output(k, 0, j.a->dtype, j.bc.out_ndim, j.bc.out_dims, err));
    j.o = &k->out[0];
    par(k, j.bc.numel, pow_run1, &j);
    return OPT_OK;
}

/* ==== Clip ================================================================================= */

typedef struct cjob {
    const void *x;
    void *y;
    int dt;
    double lo, hi;
} cjob;

#define CLIP_LOOP(T)                                                               \
    do {                                                                           \
        const T *x = j->x;                                                         \
        T *y = j->y;                                                               \
        T lo = (T)j->lo, hi = (T)j->hi;                                            \
        for (size_t i = b; i < e; i++) {                                           \
            T v = x[i];                                                            \
            v = v < lo ? lo : v;                                                   \
            y[i] = v > hi ? hi : v; /* min > max gives max, as the spec says */    \
        }                                                                          \
    } while (0)

static NN_VEC void clip_f32(const float *x, float *y, size_t b, size_t e, float lo, float hi)
{
    for (size_t i = b; i < e; i++) {
        float v = x[i];
        v = v < lo ? lo : v;
        y[i] = v > hi ? hi : v;
    }
}

static void clip_part(void *ctx, size_t b, size_t e)
{
    const cjob *j = ctx;
    switch (j->dt) {
    case OPT_DT_FLOAT: clip_f32(j->x, j->y, b, e, (float)j->lo, (float)j->hi); break;
    case OPT_DT_DOUBLE: CLIP_LOOP(double); break;
    case OPT_DT_INT8: CLIP_LOOP(int8_t); break;
    case OPT_DT_INT16: CLIP_LOOP(int16_t); break;
    case OPT_DT_INT32: CLIP_LOOP(int32_t); break;
    case OPT_DT_INT64: CLIP_LOOP(int64_t); break;
    case OPT_DT_UINT8: CLIP_LOOP(uint8_t); break;
    case OPT_DT_UINT16: CLIP_LOOP(uint16_t); break;
    case OPT_DT_UINT32: CLIP_LOOP(uint32_t); break;
    case OPT_DT_UINT64: CLIP_LOOP(uint64_t); break;
    default: /* float16/bfloat16 */
        for (size_t i = b; i < e; i++) {
            float v = opt_load_f32(j->x, j->dt, i);
            v = v < (float)j->lo ? (float)j->lo : v;
            v = v > (float)j->hi ? (float)j->hi : v;
            opt_store_f32(j->y, j->dt, i, v);
        }
    }
}

static void dtype_range(int dt, double *lo, double *hi)
{
    switch (dt) {
    case OPT_DT_INT8: *lo = INT8_MIN; *hi = INT8_MAX; break;
    case OPT_DT_INT16: *lo = INT16_MIN; *hi = INT16_MAX; break;
    case OPT_DT_INT32: *lo = INT32_MIN; *hi = INT32_MAX; break;
    case OPT_DT_INT64: *lo = -9223372036854775808.0; *hi = 9223372036854774784.0; break;
    case OPT_DT_UINT8: *lo = 0; *hi = UINT8_MAX; break;
    case OPT_DT_UINT16: *lo = 0; *hi = UINT16_MAX; break;
    case OPT_DT_UINT32: *lo = 0; *hi = UINT32_MAX; break;
    case OPT_DT_UINT64: *lo = 0; *hi = 18446744073709549568.0; break;
    default: *lo = -INFINITY; *hi = INFINITY;
    }
}

static opt_status clip_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    cjob j = {.x = x->data, .dt = x->dtype};
    dtype_range(x->dtype, &j.lo, &j.hi);
    if (k->opset < 11) {
        j.lo = opt_node_attr_float(k->node, "min", -3.402823e+38f);
        j.hi = opt_node_attr_float(k->node, "max", 3.402823e+38f);
    } else {
        if (opt_kctx_has(k, 1)) {
            if (opt_array_numel(k->in[1]) != 1) return opt_kerr(k, err, OPT_ERR_INVALID, "min must be a scalar");
            j.lo = opt_array_get(k->in[1], 0);
        }
        if (opt_kctx_has(k, 2)) {
            if (opt_array_numel(k->in[2]) != 1) return opt_kerr(k, err, OPT_ERR_INVALID, "max must be a scalar");
            j.hi = opt_array_get(k->in[2], 0);
        }
    }
    /* Bounds past the dtype's range (the opset-6 default is -FLT_MAX) or NaN would make the
     * integer casts in CLIP_LOOP undefined: clamp them into it (same result). */
    double rlo, rhi;
    dtype_range(x->dtype, &rlo, &rhi);
    if (!(j.lo >= rlo)) j.lo = rlo;
    if (!(j.lo <= rhi)) j.lo = rhi;
    if (!(j.hi <= rhi)) j.hi = rhi;
    if (!(j.hi >= rlo)) j.hi = rlo;
    OPT_TRY(opt_kctx_output_inplace(k, 0, 0, x->dtype, x->ndim, x->dims, err));
    j.y = k->out[0].data;
    par(k, opt_array_numel(x), clip_part, &j);
    return OPT_OK;
}

/* ==== Not, Where ============================================================================ */

static opt_status not_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    OPT_TRY(opt_kctx_output(k, 0, OPT_DT_BOOL, x->ndim, x->dims, err));
    const uint8_t *a = x->data;
    uint8_t *y = k->out[0].data;
    uint64_t n = opt_array_numel(x);
    for (uint64_t i = 0; i < n; i++) y[i] = !a[i];
    return OPT_OK;
}

static opt_status isnan_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    bool inf = strcmp(k->node->op_type, "IsInf") == 0;
    bool neg = opt_node_attr_int(k->node, "detect_negative", 1) != 0;
    bool pos = opt_node_attr_int(k->node, "detect_positive", 1) != 0;
    OPT_TRY(opt_kctx_output(k, 0, OPT_DT_BOOL, x->ndim, x->dims, err));
    uint8_t *y = k->out[0].data;
    uint64_t n = opt_array_numel(x);
    for (uint64_t i = 0; i < n; i++) {
        double v = opt_array_get(x, i);
        y[i] = inf ? (isinf(v) && ((v > 0 && pos) || (v < 0 && neg))) : isnan(v);
    }
    return OPT_OK;
}

static opt_status bnot_run(opt_kctx *k, opt_error *err)
{
    const opt_array *x = k->in[0];
    OPT_TRY(opt_kctx_output(k, 0, x->dtype, x->ndim, x->dims, err));
    const uint8_t *a = x->data;
    uint8_t *y = k->out[0].data;
    for (size_t i = 0; i < x->nbytes; i++) y[i] = (uint8_t)~a[i];
    return OPT_OK;
}

typedef struct wjob {
    opt_bcast bc;
    const uint8_t *c;
    const char *x, *y;
    char *o;
    size_t es;
} wjob;

static void where_seg(void *ctx, const int64_t *in, const int64_t *st, uint64_t out, uint64_t len)
{
    const wjob *j = ctx;
    size_t es = j->es;
    for (uint64_t i = 0; i < len; i++) {
        bool c = j->c[in[0] + (int64_t)i * st[0]] != 0;
        const char *src = c ? j->x + (size_t)(in[1] + (int64_t)i * st[1]) * es
                            : j->y + (size_t)(in[2] + (int64_t)i * st[2]) * es;
        char *dst = j->o + (out + i) * es;
        switch (es) {
        case 1: *dst = *src; break;
        case 2: memcpy(dst, src, 2); break;
        case 4: memcpy(dst, src, 4); break;
        case 8: memcpy(dst, src, 8); break;
        default: memcpy(dst, src, es);
        }
    }
}

static void where_part(void *ctx, size_t b, size_t e)
{
    wjob *j = ctx;
    opt_bcast_walk(&j->bc, b, e, where_seg, j);
}

static opt_status where_run(opt_kctx *k, opt_error *err)
{
    if (k->n_in < 3 || !k->in[1] || !k->in[2]) return opt_kerr(k, err, OPT_ERR_INVALID, "needs 3 inputs");
    if (k->in[1]->dtype != k->in[2]->dtype)
        return opt_kerr(k, err, OPT_ERR_INVALID, "X and Y have different dtypes");
    if (k->in[0]->dtype != OPT_DT_BOOL) return opt_kerr(k, err, OPT_ERR_INVALID, "condition must be bool");
    wjob j = {.es = dt_size(k->in[1]->dtype)};
    if (!j.es) return opt_kerr(k, err, OPT_ERR_UNSUPPORTED, "dtype %s", opt_dtype_short(k->in[1]->dtype));
    OPT_TRY(opt_bcast_init(&j.bc, k, k->in, 3, err));
    OPT_TRY(opt_kctx_output(k, 0, k->in[1]->dtype, j.bc.out_ndim, j.bc.out_dims, err));
    j.c = k->in[0]->data;
    j.x = k->in[1]->data;
    j.y = k->in[2]->data;
    j.o = k->out[0].data;
    par(k, j.bc.numel, where_part, &j);
    return OPT_OK;
}

/* ==== dtype inference ====================================================================== */

static opt_status infer_bool(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                             size_t n_out, opt_error *err)
{
    for (size_t i = 0; i < n_out; i++) out_dt[i] = OPT_DT_BOOL;
    return OPT_OK;
}

static opt_status infer_where(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                              size_t n_out, opt_error *err)
{
    if (n_in < 3) return opt_node_err(n, err, OPT_ERR_INVALID, "needs 3 inputs");
    out_dt[0] = in_dt[1];
    return OPT_OK;
}

/* ==== the table ============================================================================= */

#define FL OPT_DTS_FLOATS
#define NUM OPT_DTS_NUMERIC
#define K(OP, SINCE, DTS, RUN) {"", OP, SINCE, INT_MAX, DTS, 0, OPT_DEVICE_CPU, NULL, NULL, RUN, NULL}
#define KR(OP, SINCE, UNTIL, DTS, RUN) {"", OP, SINCE, UNTIL, DTS, 0, OPT_DEVICE_CPU, NULL, NULL, RUN, NULL}
#define KI(OP, SINCE, DTS, INFER, RUN) {"", OP, SINCE, INT_MAX, DTS, 0, OPT_DEVICE_CPU, INFER, NULL, RUN, NULL}

const opt_kernel opt_kernels_elementwise[] = {
    K("Relu", 1, FL | SINTS, unary_run),
    K("LeakyRelu", 1, FL, unary_run),
    K("Elu", 1, FL, unary_run),
    K("Selu", 1, FL, unary_run),
    K("Celu", 12, FL, unary_run),
    K("ThresholdedRelu", 10, FL, unary_run),
    K("Sigmoid", 1, FL, unary_run),
    K("HardSigmoid", 1, FL, unary_run),
    K("HardSwish", 14, FL, unary_run),
    K("Tanh", 1, FL, unary_run),
    K("Erf", 9, FL, unary_run),
    K("Gelu", 20, FL, unary_run),
    {OPT_FUSE_DOMAIN, "Gelu", 1, INT_MAX, FL, 0, OPT_DEVICE_CPU, NULL, NULL, fused_gelu_run, NULL},
    K("Sqrt", 1, FL, unary_run),
    K("Exp", 1, FL, unary_run),
    K("Log", 1, FL, unary_run),
    K("Neg", 1, FL | SINTS, unary_run),
    K("Abs", 1, FL | SINTS | UINTS, unary_run),
    K("Reciprocal", 1, FL, unary_run),
    K("Floor", 1, FL, unary_run),
    K("Ceil", 1, FL, unary_run),
    K("Round", 11, FL, unary_run),
    K("Sign", 9, NUM, unary_run),
    K("Softplus", 1, FL, unary_run),
    K("Softsign", 1, FL, unary_run),
    K("Sin", 7, FL, unary_run),
    K("Cos", 7, FL, unary_run),
    K("Tan", 7, FL, unary_run),
    K("Asin", 7, FL, unary_run),
    K("Acos", 7, FL, unary_run),
    K("Atan", 7, FL, unary_run),
    K("Sinh", 9, FL, unary_run),
    K("Cosh", 9, FL, unary_run),
    K("Asinh", 9, FL, unary_run),
    K("Acosh", 9, FL, unary_run),
    K("Atanh", 9, FL, unary_run),
    K("Shrink", 9, FL, unary_run),
    KR("Add", 1, 6, NUM, legacy_binary_run),
    KR("Sub", 1, 6, NUM, legacy_binary_run),
    KR("Mul", 1, 6, NUM, legacy_binary_run),
    KR("Div", 1, 6, NUM, legacy_binary_run),
    KR("PRelu", 1, 6, FL, legacy_binary_run),
    K("Add", 7, NUM, binary_run),
    K("Sub", 7, NUM, binary_run),
    K("Mul", 7, NUM, binary_run),
    K("Div", 7, NUM, binary_run),
    K("Mod", 10, NUM, binary_run),
    K("PRelu", 7, FL | SINTS | UINTS, binary_run),
    K("Pow", 7, FL | OPT_DT_BIT(OPT_DT_INT32) | OPT_DT_BIT(OPT_DT_INT64), pow_run),
    K("Max", 8, NUM, variadic_run),
    K("Min", 8, NUM, variadic_run),
    K("Sum", 8, NUM, variadic_run),
    K("Mean", 8, FL, variadic_run),
    KI("Equal", 7, NUM | BOOLBIT, infer_bool, binary_run),
    KI("Less", 7, NUM, infer_bool, binary_run),
    KI("Greater", 7, NUM, infer_bool, binary_run),
    KI("LessOrEqual", 12, NUM, infer_bool, binary_run),
    KI("GreaterOrEqual", 12, NUM, infer_bool, binary_run),
    KI("And", 7, BOOLBIT, infer_bool, binary_run),
    KI("Or", 7, BOOLBIT, infer_bool, binary_run),
    KI("Xor", 7, BOOLBIT, infer_bool, binary_run),
    KI("Not", 1, BOOLBIT, infer_bool, not_run),
    KI("IsNaN", 9, FL, infer_bool, isnan_run),
    KI("IsInf", 10, FL, infer_bool, isnan_run),
    K("BitwiseAnd", 18, SINTS | UINTS, binary_run),
    K("BitwiseOr", 18, SINTS | UINTS, binary_run),
    K("BitwiseXor", 18, SINTS | UINTS, binary_run),
    K("BitwiseNot", 18, SINTS | UINTS, bnot_run),
    K("BitShift", 11, UINTS, binary_run),
    K("Clip", 1, NUM, clip_run),
    {"", "Where", 9, INT_MAX, BOOLBIT, 0, OPT_DEVICE_CPU, infer_where, NULL, where_run, NULL},
    {0},
};
