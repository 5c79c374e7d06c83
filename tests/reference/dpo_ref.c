/* dpo_ref.c - the C side of tests/reference/test_dpo_grad.py.
 *
 *   dpo_ref loss < LINES        each line "kind beta eps h p" (kind 0 sigmoid,
 *                               1 ipo, 2 cdpo): prints "loss dloss/dh"
 *                               (rlaif_dpo_pair_loss, %.17g)
 *   dpo_ref grad CKPT IN OUT    loads the policy from CKPT and the pairs from
 *                               IN (/tok, /off, /plen, /label, /ref [2n];
 *                               attributes kind, beta, eps, micro), runs the
 *                               dpo phase's forward + backward over all
 *                               pairs in micro-batches of `micro` pairs with
 *                               the loss normalised by the pair count, and
 *                               writes OUT: /loss, /logps [2n] (policy
 *                               sequence log-probs), /sums (decided,
 *                               correct, chosen, rejected, logp_chosen,
 *                               logp_rejected) and /grads/<tensor>. */
#include "rlaif/phases/dpo.h"
#include "rlaif/core/error.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/model_io.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_io.h"

static int cmd_loss(void) {
    int kind;
    double beta, eps, h, p;
    while (scanf("%d %lf %lf %lf %lf", &kind, &beta, &eps, &h, &p) == 5) {
        rlaif_dpo_loss lf = {(rlaif_dpo_kind)kind, beta, eps};
        double dh, loss = rlaif_dpo_pair_loss(&lf, h, p, &dh);
        printf("%.17g %.17g\n", loss, dh);
    }
    return 0;
}

static int cmd_grad(const char *ckpt, const char *in, const char *out) {
    rlaif_model m;
    OK(rlaif_model_load(ckpt, &m));
    rlaif_model_alloc_grads(&m);
    rlaif_model_zero_grad(&m);
    hid_t f = H5Fopen(in, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) fprintf(stderr, "open %s\n", in), exit(1);
    size_t ntok, noff, nplen, n, nref;
    rlaif_pairs d = {0};
    d.tok = read_all(f, "tok", H5T_NATIVE_INT32, sizeof(int32_t), &ntok);
    d.off = read_all(f, "off", H5T_NATIVE_INT64, sizeof(int64_t), &noff);
    d.plen = read_all(f, "plen", H5T_NATIVE_INT32, sizeof(int32_t), &nplen);
    d.label = read_all(f, "label", H5T_NATIVE_FLOAT, sizeof(float), &n);
    double *ref = read_all(f, "ref", H5T_NATIVE_DOUBLE, sizeof(double), &nref);
    d.n = (int64_t)n;
    rlaif_dpo_loss lf = {(rlaif_dpo_kind)(int)attr_f64(f, "kind"), attr_f64(f, "beta"),
                         attr_f64(f, "eps")};
    int micro = (int)attr_f64(f, "micro");
    H5Fclose(f);
    int64_t *idx = xmalloc(sizeof(int64_t) * n);
    for (size_t i = 0; i < n; i++) idx[i] = (int64_t)i;
    rlaif_dpo_buf buf;
    rlaif_dpo_buf_init(&buf, (int)n, m.cfg.max_seq_len);
    /* the training path: micro-batches, loss over the whole batch's count */
    rlaif_dpo_sums s = {0};
    for (size_t j = 0; j < n; j += (size_t)micro) {
        int B = (int)(n - j < (size_t)micro ? n - j : (size_t)micro);
        OK(rlaif_dpo_micro(&m, &d, ref, idx + j, B, (double)n, &lf, 1, &buf, &s));
    }
    /* the sequence log-probs, from one forward over every pair */
    double ntok_all = 0;
    OK(rlaif_dpo_seq_logps(&m, &d, idx, (int)n, &buf, &ntok_all));
    hid_t o = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o < 0) fprintf(stderr, "create %s\n", out), exit(1);
    double sums[7] = {s.decided,     s.correct,       s.chosen, s.rejected,
                      s.logp_chosen, s.logp_rejected, s.tokens};
    write_f64(o, "loss", &s.loss, 1);
    write_f64(o, "logps", buf.lp, 2 * n);
    write_f64(o, "sums", sums, 7);
    OK(rlaif_h5_write_tensors(o, "grads", &m.table, m.grads));
    H5Fclose(o);
    printf("loss %.9g over %zu pairs, micro-batches of %d\n", s.loss, n, micro);
    free(idx), free(ref), free(d.tok), free(d.off), free(d.plen), free(d.label);
    rlaif_dpo_buf_free(&buf);
    rlaif_model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "loss")) return cmd_loss();
    if (argc == 5 && !strcmp(argv[1], "grad")) return cmd_grad(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: dpo_ref loss < LINES | dpo_ref grad CKPT IN OUT\n");
    return 64;
}
