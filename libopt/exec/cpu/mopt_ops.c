/*
 * libopt/exec/cpu/mopt_ops.c — kernels of mopt's own domain "ai.mopt".
 *
 * HuffmanDecode (docs/formats/huffman.md): input 0 is a uint8 payload, output 0 the uint8 index
 * tensor it codes. When the payload is a constant (an initializer, as `mopt huffman` writes it)
 * it is decoded once, in prepare(), and run() only copies the indices out; otherwise run()
 * decodes every time.
 */
#include "libopt/exec/kernel.h"
#include "libopt/ir/huffman_codec.h"

#include <stdlib.h>
#include <string.h>

typedef struct huf_state {
    opt_huf_info h;
    uint8_t *idx; /* decoded once at load */
} huf_state;

static opt_status huf_infer(const opt_node *n, int opset, const int *in_dt, size_t n_in, int *out_dt,
                            size_t n_out, opt_error *err)
{
    if (n_in != 1 || n_out != 1)
        return opt_node_err(n, err, OPT_ERR_INVALID, "HuffmanDecode takes one input and gives one output");
    if (in_dt[0] && in_dt[0] != OPT_DT_UINT8)
        return opt_node_err(n, err, OPT_ERR_INVALID, "HuffmanDecode input must be uint8");
    out_dt[0] = OPT_DT_UINT8;
    return OPT_OK;
}

static opt_status decode(const opt_node *n, const opt_array *in, huf_state *st, opt_error *err)
{
    opt_status s = opt_huf_weight_header(in->data, in->nbytes, &st->h, err);
    if (s == OPT_OK && !(st->idx = malloc(st->h.numel ? st->h.numel : 1)))
        s = opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    if (s == OPT_OK) s = opt_huf_weight_decode(in->data, in->nbytes, st->idx, st->h.numel, err);
    if (s != OPT_OK) {
        free(st->idx);
        st->idx = NULL;
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
    if (n_in < 1 || !consts[0]) return OPT_OK;
    huf_state *st = calloc(1, sizeof *st);
    if (!st) return opt_error_set(err, OPT_ERR_NOMEM, "out of memory");
    opt_status s = decode(n, consts[0], st, err);
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
        OPT_TRY(decode(k->node, k->in[0], &local, err));
        st = &local;
    }
    opt_status s = opt_kctx_output(k, 0, OPT_DT_UINT8, st->h.ndim, st->h.dims, err);
    if (s == OPT_OK && st->h.numel) memcpy(k->out[0].data, st->idx, (size_t)st->h.numel);
    free(local.idx);
    return s;
}

static void huf_release(void *state)
{
    huf_state *st = state;
    if (!st) return;
    free(st->idx);
    free(st);
}

const opt_kernel opt_kernels_mopt_ops[] = {
    {"ai.mopt", "HuffmanDecode", 1, INT_MAX, OPT_DT_BIT(OPT_DT_UINT8), 0, OPT_DEVICE_CPU, huf_infer,
     huf_prepare, huf_run, huf_release},
    {0},
};
