/* lp_ref.c - the C side of tests/reference/test_logprob.py.
 *
 *   lp_ref CKPT IN OUT   loads the model from CKPT and the sequences from IN
 *                        (/tok, /off, /plen; /dlogp, /dent, /dval [R*T]
 *                        upstream gradients in the pass's (R,T) layout;
 *                        attributes heads, micro), runs rlaif_lp_forward +
 *                        rlaif_lp_backward over every sequence in micro-batches
 *                        of `micro` rows (each micro-batch padded to its own
 *                        longest row), and writes OUT: /T (per micro-batch),
 *                        /logp, /entropy, /value, /mask [R*Tmax] re-laid at
 *                        the full batch's width, /last [R], /seq [R]
 *                        (rlaif_lp_seq_logp) and /grads/<tensor>. */
#include "rlaif/core/error.h"
#include "rlaif/engine/logprob.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/core/h5util.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_io.h"

/* The full batch's (R, Tw) upstream gradients g -> the micro-batch's (B, T) rows r0.. */
static float *slice(const float *g, int r0, int B, int T, int Tw) {
    float *out = xmalloc(sizeof(float) * (size_t)B * (size_t)T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) out[b * T + t] = t < Tw ? g[(r0 + b) * Tw + t] : 0.0f;
    return out;
}

/* (B, T) outputs of the micro-batch -> rows r0.. of the full (R, Tw) array. */
static void place(float *dst, const float *src, int r0, int B, int T, int Tw) {
    for (int b = 0; b < B && src; b++)
        for (int t = 0; t < T && t < Tw; t++) dst[(r0 + b) * Tw + t] = src[b * T + t];
}

int main(int argc, char **argv) {
    if (argc != 4) return fprintf(stderr, "usage: lp_ref CKPT IN OUT\n"), 2;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    rlaif_model m;
    OK(rlaif_model_load(argv[1], &m));
    rlaif_model_alloc_grads(&m);
    rlaif_model_zero_grad(&m);
    hid_t f = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    size_t ntok, noff, R, nd;
    int32_t *tok = read_all(f, "tok", H5T_NATIVE_INT32, 4, &ntok);
    int64_t *off = read_all(f, "off", H5T_NATIVE_INT64, 8, &noff);
    int32_t *plen = read_all(f, "plen", H5T_NATIVE_INT32, 4, &R);
    float *dl = read_all(f, "dlogp", H5T_NATIVE_FLOAT, 4, &nd);
    float *de = read_all(f, "dent", H5T_NATIVE_FLOAT, 4, &nd);
    float *dv = read_all(f, "dval", H5T_NATIVE_FLOAT, 4, &nd);
    int heads = (int)attr_f64(f, "heads"), micro = (int)attr_f64(f, "micro");
    m.logit_scale = (float)attr_f64(f, "scale"); /* 1 / the sampling temperature */
    H5Fclose(f);
    int Tw = (int)(nd / R), nR = (int)R;
    rlaif_seqs s = {tok, off, plen};
    rlaif_lp_batch lp;
    rlaif_lp_init(&lp, micro, m.cfg.max_seq_len);
    size_t RT = R * (size_t)Tw;
    float *logp = calloc(RT, 4), *ent = calloc(RT, 4), *val = calloc(RT, 4), *mask = calloc(RT, 4);
    int *last = xmalloc(sizeof(int) * R), *Ts = xmalloc(sizeof(int) * R);
    double *seq = xmalloc(sizeof(double) * R), ntokens = 0;
    int64_t *rows = xmalloc(sizeof(int64_t) * R);
    for (int r = 0; r < nR; r++) rows[r] = r;
    int nmicro = 0;
    for (int r0 = 0; r0 < nR; r0 += micro) {
        int B = nR - r0 < micro ? nR - r0 : micro;
        OK(rlaif_lp_forward(&m, &lp, &s, rows + r0, B, heads, &ntokens));
        int T = lp.T;
        Ts[nmicro++] = T;
        place(logp, lp.logp, r0, B, T, Tw), place(ent, lp.entropy, r0, B, T, Tw);
        place(val, lp.value, r0, B, T, Tw), place(mask, lp.mask, r0, B, T, Tw);
        for (int b = 0; b < B; b++) {
            last[r0 + b] = lp.last[b];
            seq[r0 + b] = heads & RLAIF_LP_LOGP ? rlaif_lp_seq_logp(&lp, b) : 0;
        }
        float *gl = slice(dl, r0, B, T, Tw), *ge = slice(de, r0, B, T, Tw);
        float *gv = slice(dv, r0, B, T, Tw);
        int lpo = heads & RLAIF_LP_LOGP, vo = heads & RLAIF_LP_VALUE;
        OK(rlaif_lp_backward(&m, &lp, lpo ? gl : NULL, lpo ? ge : NULL, vo ? gv : NULL));
        free(gl), free(ge), free(gv);
    }
    hid_t o = H5Fcreate(argv[3], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d2[2] = {R, (hsize_t)Tw}, d1 = R, dm = (hsize_t)nmicro, d0 = 1;
    write_arr(o, "logp", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, d2, logp);
    write_arr(o, "entropy", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, d2, ent);
    write_arr(o, "value", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, d2, val);
    write_arr(o, "mask", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, d2, mask);
    write_arr(o, "last", H5T_NATIVE_INT, H5T_STD_I32LE, 1, &d1, last);
    write_arr(o, "T", H5T_NATIVE_INT, H5T_STD_I32LE, 1, &dm, Ts);
    write_arr(o, "seq", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 1, &d1, seq);
    write_arr(o, "ntokens", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 1, &d0, &ntokens);
    OK(rlaif_h5_write_tensors(o, "grads", &m.table, m.grads));
    H5Fclose(o);
    free(tok), free(off), free(plen), free(dl), free(de), free(dv);
    free(logp), free(ent), free(val), free(mask), free(last), free(Ts), free(seq), free(rows);
    rlaif_lp_free(&lp);
    rlaif_model_free(&m);
    return 0;
}
