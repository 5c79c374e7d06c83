/* rm_ref.c - the C side of tests/reference/test_rm_grad.py.
 *
 *   rm_ref pairs < LINES        each line "d p margin": prints "loss dloss/dd"
 *                               (rlaif_rm_pair_loss, %.17g)
 *   rm_ref grad CKPT IN OUT     loads the model (with its score head) from
 *                               CKPT and the pairs from IN (/tok, /off,
 *                               /label; attributes margin, l2, micro), runs
 *                               the rm phase's forward + backward over all
 *                               pairs in micro-batches of `micro` pairs with
 *                               the loss normalised by the pair count, and
 *                               writes OUT: /loss, /rewards [2n], /sums
 *                               (decided, correct, chosen, rejected), and
 *                               /grads/<tensor>.
 *   rm_ref load CKPT            rlaif_rm_load: prints the reward statistics,
 *                               or the error (exit 1) for a model without a
 *                               scalar head. */
#include "rlaif/core/error.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/phases/rm.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_io.h"

static int cmd_pairs(void) {
    double d, p, m;
    while (scanf("%lf %lf %lf", &d, &p, &m) == 3) {
        double dd, loss = rlaif_rm_pair_loss(d, p, m, &dd);
        printf("%.17g %.17g\n", loss, dd);
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
    size_t ntok, noff, n;
    rlaif_rm_pairs d = {0};
    d.tok = read_all(f, "tok", H5T_NATIVE_INT32, sizeof(int32_t), &ntok);
    d.off = read_all(f, "off", H5T_NATIVE_INT64, sizeof(int64_t), &noff);
    d.label = read_all(f, "label", H5T_NATIVE_FLOAT, sizeof(float), &n);
    d.n = (int64_t)n;
    double margin = attr_f64(f, "margin"), l2 = attr_f64(f, "l2");
    int micro = (int)attr_f64(f, "micro");
    H5Fclose(f);
    int64_t *idx = xmalloc(sizeof(int64_t) * n);
    for (size_t i = 0; i < n; i++) idx[i] = (int64_t)i;
    rlaif_rm_buf buf;
    rlaif_rm_buf_init(&buf, (int)n, m.cfg.max_seq_len);
    /* the training path: micro-batches, loss over the whole batch's count */
    rlaif_rm_sums s = {0};
    for (size_t j = 0; j < n; j += (size_t)micro) {
        int B = (int)(n - j < (size_t)micro ? n - j : (size_t)micro);
        OK(rlaif_rm_micro(&m, &d, idx + j, B, (double)n, margin, l2, 1, &buf, &s));
    }
    /* the rewards, from one forward over every pair */
    rlaif_rm_sums s2 = {0};
    OK(rlaif_rm_micro(&m, &d, idx, (int)n, (double)n, margin, l2, 0, &buf, &s2));
    double *r = xmalloc(sizeof(double) * 2 * n);
    for (size_t i = 0; i < 2 * n; i++) r[i] = m.score[i * (size_t)m.T + (size_t)buf.pass.last[i]];
    hid_t o = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o < 0) fprintf(stderr, "create %s\n", out), exit(1);
    double sums[6] = {s.decided, s.correct, s.chosen, s.rejected, s.sum_r2, s2.loss};
    write_f64(o, "loss", &s.loss, 1);
    write_f64(o, "rewards", r, 2 * n);
    write_f64(o, "sums", sums, 6);
    OK(rlaif_h5_write_tensors(o, "grads", &m.table, m.grads));
    H5Fclose(o);
    printf("loss %.9g over %zu pairs, micro-batches of %d\n", s.loss, n, micro);
    free(r), free(idx), free(d.tok), free(d.off), free(d.label);
    rlaif_rm_buf_free(&buf);
    rlaif_model_free(&m);
    return 0;
}

static int cmd_load(const char *ckpt) {
    rlaif_model m;
    double mean, std;
    OK(rlaif_rm_load(ckpt, &m, &mean, &std));
    printf("reward model: %zu parameters, reward mean %.6g std %.6g\n", m.table.total, mean, std);
    rlaif_model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "load")) return cmd_load(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "pairs")) return cmd_pairs();
    if (argc == 5 && !strcmp(argv[1], "grad")) return cmd_grad(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: rm_ref pairs < LINES | rm_ref grad CKPT IN OUT | rm_ref load CKPT\n");
    return 64;
}
