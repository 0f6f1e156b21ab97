/*
 * libopt/exec/cpu/mopt_ops.c — kernels of mopt's own domain "ai.mopt".
 *
 * HuffmanDecode (docs/formats/huffman.md): input 0 is a uint8 payload; with only that input the
 * output is the uint8 index tensor it codes, and with a codebook as input 1 the output is
 * codebook[index] (the codebook's dtype), i.e. the weight itself. When the inputs are constants
 * (initializers, as `mopt huffman` writes them) the work is done once, in prepare(), and run()
 * only copies the prepared tensor out; otherwise run() decodes every time.
 */
#include "libopt/exec/kernel.h"
#include "libopt/ir/huffman_codec.h"

#include <stdlib.h>
#include <string.h>

typedef struct huf_state {
    opt_huf_info h;
    int dtype;        /* of the output */
    size_t esize;     /* bytes per output element */
    uint8_t *data;    /* the output, prepared once */
} huf_state;

static opt_status huf_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                            size_t n_out, opt_error *err)
{
    if (n_in < 1 || n_in > 2 || n_out != 1)
        return opt_node_err(n, err, OPT_ERR_INVALID, "HuffmanDecode takes one or two inputs and gives one output");
    if (in_dt[0] && in_dt[0] != OPT_DT_UINT8)
        return opt_node_err(n, err, OPT_ERR_INVALID, "HuffmanDecode payload must be uint8");
    out_dt[0] = n_in == 2 && in_dt[1] ? in_dt[1] : OPT_DT_UINT8;
    return OPT_OK;
}

/* Decodes payload `in` (and looks indices up in `book` when given) into st. */
static opt_status decode(const opt_node *n, const opt_array *in, const opt_array *book, huf_state *st,
                         opt_error *err)
{
    opt_status s = opt_huf_weight_header(in->data, in->nbytes, &st->h, err);
    uint8_t *idx = NULL;
    st->dtype = book ? book->dtype : OPT_DT_UINT8;
    st->esize = 1;
    uint64_t k = 0;
    if (s == OPT_OK && book) {
        int bits = 0;
        switch (book->dtype) {
        case OPT_DT_FLOAT: bits = 32; break;
        case OPT_DT_DOUBLE: bits = 64; break;
        case OPT_DT_FLOAT16: case OPT_DT_BFLOAT16: bits = 16; break;
        default: break;
        }
        k = opt_array_numel(book);
        if (!bits || book->ndim != 1)
            s = opt_error_set(err, OPT_ERR_UNSUPPORTED, "codebook must be a 1-D floating-point tensor");
        st->esize = (size_t)bits / 8;
    }
    if (s == OPT_OK && !(idx = malloc(st->h.numel ? st->h.numel : 1)))
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    if (s == OPT_OK) s = opt_huf_weight_decode(in->data, in->nbytes, idx, st->h.numel, err);
    if (s == OPT_OK && book) {
        if (!(st->data = malloc(st->h.numel ? st->h.numel * st->esize : 1)))
            s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
        for (uint64_t j = 0; s == OPT_OK && j < st->h.numel; j++) {
            if (idx[j] >= k) {
                s = opt_error_set(err, OPT_ERR_DATA, "index %d outside the codebook of %llu", idx[j],
                                  (unsigned long long)k);
                break;
            }
            memcpy(st->data + j * st->esize, (const uint8_t *)book->data + idx[j] * st->esize, st->esize);
        }
        free(idx);
    } else if (s == OPT_OK) {
        st->data = idx;
    } else {
        free(idx);
    }
    if (s != OPT_OK) {
        free(st->data);
        st->data = NULL;
        char msg[sizeof err->msg];
        memcpy(msg, err->msg, sizeof msg);
        return opt_node_err(n, err, s, "%s", msg);
    }
    return OPT_OK;
}

static opt_status huf_prepare(const opt_node *n, int opset, const opt_array *const *consts,
                              size_t n_in, void **state, opt_error *err)
{
    *state = NULL;
    if (n_in < 1 || !consts[0] || (n_in > 1 && !consts[1])) return OPT_OK;
    huf_state *st = calloc(1, sizeof *st);
    if (!st) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    opt_status s = decode(n, consts[0], n_in > 1 ? consts[1] : NULL, st, err);
    if (s != OPT_OK) {
        free(st);
        return s;
    }
    *state = st;
    return OPT_OK;
}

static opt_status huf_run(opt_kctx *k, opt_error *err)
{
    huf_state local = {0}, *st = k->state;
    if (!st) {
        OPT_TRY(decode(k->node, k->in[0], opt_kctx_has(k, 1) ? k->in[1] : NULL, &local, err));
        st = &local;
    }
    opt_status s = opt_kctx_output(k, 0, st->dtype, st->h.ndim, st->h.dims, err);
    if (s == OPT_OK && st->h.numel) memcpy(k->out[0].data, st->data, (size_t)st->h.numel * st->esize);
    free(local.data);
    return s;
}

static void huf_release(void *state)
{
    huf_state *st = state;
    if (!st) return;
    free(st->data);
    free(st);
}

const opt_kernel opt_kernels_mopt_ops[] = {
    {"ai.mopt", "HuffmanDecode", 1, INT_MAX, OPT_DT_BIT(OPT_DT_UINT8), 0, OPT_DEVICE_CPU, huf_infer,
     huf_prepare, huf_run, huf_release},
    {0},
};
