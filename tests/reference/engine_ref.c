/* engine_ref.c - the C side of tests/reference/test_engine.py.
 *
 *   engine_ref run CKPT INPUTS OUT
 * loads the model from CKPT, reads a batch from INPUTS (written by the Python
 * test), and writes to OUT everything the PyTorch reference checks: logits,
 * per-token logprobs, entropy, scalar head, masked loss, the gradients of
 * three losses, greedy generation with its logprobs and the same logprobs
 * from a full forward, ten AdamW losses, and a checkpoint round-trip flag.
 *   engine_ref load CKPT       loads a checkpoint and prints its config.
 * With RLAIF_PRECISION=bf16 in the environment the models run bf16 products.
 * Any arch (gpt2, opt, llama): everything goes through the checkpoint's
 * /config and tensor table. Without a scalar head (score_head 0) the
 * outputs "score" and "grad_score" are left out. */
#include "rlaif/core/error.h"
#include "rlaif/engine/generate.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/engine/optim.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(void) {
    char buf[2048];
    rlaif_error_format(buf, sizeof buf, 0);
    fprintf(stderr, "%s\n", buf);
    exit(1);
}
#define OK(x)                                                                                      \
    do {                                                                                           \
        if ((x) != 0) die();                                                                       \
    } while (0)

static size_t dset_numel(hid_t f, const char *name) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) fprintf(stderr, "missing %s\n", name), exit(1);
    hid_t s = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    H5Sclose(s), H5Dclose(d);
    return (size_t)n;
}

static void *read_all(hid_t f, const char *name, hid_t type, size_t elem) {
    size_t n = dset_numel(f, name);
    void *buf = xmalloc(n * elem + 1);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        fprintf(stderr, "read %s\n", name), exit(1);
    H5Dclose(d);
    return buf;
}

static void write_arr(hid_t f, const char *name, hid_t mtype, hid_t ftype, int nd,
                      const hsize_t *dims, const void *buf) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t s = H5Screate_simple(nd, dims, NULL);
    hid_t d = H5Dcreate2(f, name, ftype, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        fprintf(stderr, "write %s\n", name), exit(1);
    H5Dclose(d), H5Sclose(s), H5Pclose(lcpl);
}

static double attr_f(hid_t f, const char *name) {
    double v;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) fprintf(stderr, "attr %s\n", name), exit(1);
    H5Aclose(a);
    return v;
}

static void write_grads(hid_t out, const char *group, const rlaif_model *m) {
    char name[256];
    for (int i = 0; i < m->table.n; i++) {
        const rlaif_tensor_desc *d = &m->table.t[i];
        hsize_t dims[4];
        for (int k = 0; k < d->ndim; k++) dims[k] = (hsize_t)d->shape[k];
        snprintf(name, sizeof name, "%s/%s", group, d->name);
        write_arr(out, name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, d->ndim, dims, m->grads + d->offset);
    }
}

/* Greedy generation from the ragged prompts of `in`, then the same
 * logprobs by a full forward: gen_out, gen_logp and gen_logp_full + sfx. */
static void gen_check(rlaif_model *m, hid_t in, hid_t out, const char *sfx) {
    char name[64];
    int *gtok = read_all(in, "gen_tokens", H5T_NATIVE_INT, sizeof(int));
    int *glen = read_all(in, "gen_length", H5T_NATIVE_INT, sizeof(int));
    int G = (int)dset_numel(in, "gen_length");
    int64_t *goff = xmalloc(sizeof(int64_t) * G);
    int P = 0;
    for (int b = 0, o = 0; b < G; o += glen[b], b++) goff[b] = o, P = glen[b] > P ? glen[b] : P;
    rlaif_gen_config gc = rlaif_gen_defaults();
    gc.max_new_tokens = (int)attr_f(in, "max_new");
    rlaif_gen_output go;
    OK(rlaif_generate(m, &gc, G, gtok, goff, glen, NULL, &go));
    int NN = gc.max_new_tokens, S = P + NN;
    hsize_t dG[2] = {(hsize_t)G, (hsize_t)NN};
    snprintf(name, sizeof name, "gen_out%s", sfx);
    write_arr(out, name, H5T_NATIVE_INT, H5T_STD_I32LE, 2, dG, go.tokens);
    snprintf(name, sizeof name, "gen_logp%s", sfx);
    write_arr(out, name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, dG, go.logp);
    int *ft = xmalloc(sizeof(int) * G * S), *fp = xmalloc(sizeof(int) * G * S);
    int *ftg = xmalloc(sizeof(int) * G * S);
    uint8_t *fv = xmalloc((size_t)G * S);
    for (int b = 0; b < G; b++) {
        int pad = P - glen[b];
        for (int t = 0; t < S; t++) {
            int i = b * S + t, real = t >= pad;
            ft[i] = !real ? 0 : t < P ? gtok[goff[b] + t - pad] : go.tokens[b * NN + t - P];
            fp[i] = real ? t - pad : 0, fv[i] = (uint8_t)real;
        }
        for (int t = 0; t < S; t++)
            ftg[b * S + t] = t + 1 >= P && t + 1 < S ? ft[b * S + t + 1] : -1;
    }
    OK(rlaif_model_forward(m, ft, fp, fv, G, S));
    OK(rlaif_model_lm_forward(m, ftg));
    float *full = xmalloc(sizeof(float) * G * NN);
    for (int b = 0; b < G; b++)
        for (int s = 0; s < NN; s++) full[b * NN + s] = m->logp[b * S + P - 1 + s];
    snprintf(name, sizeof name, "gen_logp_full%s", sfx);
    write_arr(out, name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, dG, full);
    rlaif_gen_output_free(&go);
    free(gtok), free(glen), free(goff), free(ft), free(fp), free(ftg), free(fv), free(full);
}

static int run(const char *ckpt, const char *inputs, const char *outpath) {
    rlaif_model m;
    OK(rlaif_model_load(ckpt, &m));
    rlaif_model_alloc_grads(&m);
    hid_t in = H5Fopen(inputs, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (in < 0) return fprintf(stderr, "open %s\n", inputs), 1;
    int B = (int)attr_f(in, "B"), T = (int)attr_f(in, "T"), N = B * T, V = m.cfg.vocab_size;
    int *tokens = read_all(in, "tokens", H5T_NATIVE_INT, sizeof(int));
    int *targets = read_all(in, "targets", H5T_NATIVE_INT, sizeof(int));
    int *pos = read_all(in, "pos", H5T_NATIVE_INT, sizeof(int));
    uint8_t *valid = read_all(in, "valid", H5T_NATIVE_UINT8, 1);
    float *mask = read_all(in, "mask", H5T_NATIVE_FLOAT, sizeof(float));
    float *w_lp = read_all(in, "w_logp", H5T_NATIVE_FLOAT, sizeof(float));
    float *w_ent = read_all(in, "w_entropy", H5T_NATIVE_FLOAT, sizeof(float));
    float *w_score = read_all(in, "w_score", H5T_NATIVE_FLOAT, sizeof(float));
    hid_t out = H5Fcreate(outpath, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dBTV[3] = {(hsize_t)B, (hsize_t)T, (hsize_t)V}, dBT[2] = {(hsize_t)B, (hsize_t)T};
    hsize_t one = 1;

    /* forward, heads, masked loss and its gradients */
    OK(rlaif_model_forward(&m, tokens, pos, valid, B, T));
    OK(rlaif_model_lm_forward(&m, targets));
    int head = m.cfg.score_head;
    if (head) OK(rlaif_model_score_forward(&m));
    write_arr(out, "logits", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 3, dBTV, m.logits);
    write_arr(out, "logp", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, dBT, m.logp);
    write_arr(out, "entropy", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, dBT, m.entropy);
    if (head) write_arr(out, "score", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, dBT, m.score);
    float *dlogp = xmalloc(sizeof(float) * N);
    float loss = rlaif_ce_loss(&m, targets, mask, dlogp);
    write_arr(out, "loss", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 1, &one, &loss);
    rlaif_model_zero_grad(&m);
    OK(rlaif_model_backward(&m, dlogp, NULL, NULL));
    write_grads(out, "grad_ce", &m);
    /* logprob + entropy weighting (PPO / DPO / entropy bonus shape) */
    OK(rlaif_model_forward(&m, tokens, pos, valid, B, T));
    OK(rlaif_model_lm_forward(&m, targets));
    rlaif_model_zero_grad(&m);
    OK(rlaif_model_backward(&m, w_lp, w_ent, NULL));
    write_grads(out, "grad_lp", &m);
    /* scalar head weighting (values per token + reward at the last token) */
    if (head) {
        OK(rlaif_model_forward(&m, tokens, pos, valid, B, T));
        OK(rlaif_model_score_forward(&m));
        rlaif_model_zero_grad(&m);
        OK(rlaif_model_backward(&m, NULL, NULL, w_score));
        write_grads(out, "grad_score", &m);
    }

    /* greedy generation from ragged prompts, then the same logprobs by a full forward */
    gen_check(&m, in, out, "");

    /* ten AdamW steps on the masked loss */
    rlaif_adamw_config oc = rlaif_adamw_defaults();
    oc.lr = (float)attr_f(in, "lr"), oc.weight_decay = (float)attr_f(in, "weight_decay");
    oc.grad_clip = (float)attr_f(in, "grad_clip");
    oc.warmup_steps = (long)attr_f(in, "warmup"), oc.total_steps = (long)attr_f(in, "steps");
    oc.min_lr_ratio = (float)attr_f(in, "min_lr_ratio");
    rlaif_adamw opt;
    rlaif_adamw_init(&opt, &oc, &m.table, 0, m.table.total);
    int steps = (int)oc.total_steps;
    float *losses = xmalloc(sizeof(float) * (steps + 1));
    for (int s = 0; s <= steps; s++) {
        OK(rlaif_model_forward(&m, tokens, pos, valid, B, T));
        OK(rlaif_model_lm_forward(&m, targets));
        losses[s] = rlaif_ce_loss(&m, targets, mask, dlogp);
        if (s == steps) break;
        rlaif_model_zero_grad(&m);
        OK(rlaif_model_backward(&m, dlogp, NULL, NULL));
        rlaif_step_info info;
        rlaif_adamw_step(&opt, m.params, m.grads, losses[s], &info);
    }
    hsize_t ds = (hsize_t)steps + 1;
    write_arr(out, "train_loss", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 1, &ds, losses);
    /* generation after the weights changed: a KV cache must use the new ones */
    gen_check(&m, in, out, "_trained");

    /* checkpoint round trip: bit-exact params and moments */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.ckpt.h5", outpath);
    OK(rlaif_ckpt_save(tmp, &m, &opt, 10));
    rlaif_model m2;
    OK(rlaif_model_load(tmp, &m2));
    rlaif_adamw opt2;
    rlaif_adamw_init(&opt2, &oc, &m2.table, 0, m2.table.total);
    long st = 0;
    OK(rlaif_ckpt_load(tmp, &m2, &opt2, &st));
    size_t bytes = sizeof(float) * m.table.total;
    int same = !memcmp(m.params, m2.params, bytes) && !memcmp(opt.m, opt2.m, bytes) &&
               !memcmp(opt.v, opt2.v, bytes) && st == 10 && opt2.step == opt.step;
    write_arr(out, "roundtrip_ok", H5T_NATIVE_INT, H5T_STD_I32LE, 1, &one, &same);
    remove(tmp);

    H5Fclose(out), H5Fclose(in);
    rlaif_adamw_free(&opt), rlaif_adamw_free(&opt2);
    rlaif_model_free(&m), rlaif_model_free(&m2);
    free(tokens), free(targets), free(pos), free(valid), free(mask), free(w_lp), free(w_ent);
    free(w_score), free(dlogp), free(losses);
    return 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* RLAIF_PRECISION=bf16: every model below runs bf16 products
     * (tests/reference/test_bf16.py) */
    const char *prec = getenv("RLAIF_PRECISION");
    if (prec) rlaif_model_set_default_precision(rlaif_precision_parse(prec, NULL));
    int rc = 2;
    if (argc == 5 && !strcmp(argv[1], "run")) {
        rc = run(argv[2], argv[3], argv[4]);
    } else if (argc == 3 && !strcmp(argv[1], "load")) {
        rlaif_model m;
        OK(rlaif_model_load(argv[2], &m));
        const rlaif_model_config *c = &m.cfg;
        printf("arch %s n_layer %d n_embd %d n_head %d vocab_size %d max_seq_len %d score_head %d "
               "n_kv_head %d n_inner %d word_embed_dim %d norm_before %d tie_embeddings %d "
               "attn_bias %d layer_norm_epsilon %g rope_theta %g rope_type %s rope_factor %g "
               "rope_low_freq_factor %g rope_high_freq_factor %g rope_original_max_pos %d "
               "sliding_window %d\n",
               rlaif_arch_name(c->arch), c->n_layer, c->n_embd, c->n_head, c->vocab_size,
               c->max_seq_len, c->score_head, c->n_kv_head, c->n_inner, c->word_embed_dim,
               c->norm_before, c->tie_embeddings, c->attn_bias, (double)c->norm_eps,
               (double)c->rope_theta, rlaif_rope_type_name(c->rope_type), (double)c->rope_factor,
               (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor,
               c->rope_original_max_pos, c->sliding_window);
        rlaif_model_free(&m);
        rc = 0;
    } else {
        fprintf(stderr, "usage: engine_ref run CKPT INPUTS OUT | engine_ref load CKPT\n");
    }
    MPI_Finalize();
    return rc;
}
