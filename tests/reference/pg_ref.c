/* pg_ref.c - the C side of tests/reference/test_pg_step.py: one update step
 * of the policy-gradient phases end to end, through the phases' own code.
 *
 *   pg_ref VARIANT SEED OUT
 *
 * VARIANT: ppo-k1, ppo-k3, a2c, reinforce-loo, reinforce-group,
 * reinforce-moving (the settings ppo_cmd.c gives each algorithm: a2c and
 * reinforce do not clip, reinforce has no value loss).
 *
 * From SEED: a tiny GPT-2 policy with a value head and a second one as
 * the frozen reference and reward model (random weights, non-trivial
 * biases and LayerNorm gains); N sequences, K per prompt, ragged prompts
 * and responses (one of a single EOS token, one cut at W tokens without
 * EOS). The experience is scored as ppo.c does it: the policy's log-probs,
 * entropies and values and the reference's log-probs from rlaif_lp_forward,
 * the score the reward model's value at the last token, normalised, minus
 * the missing-EOS penalty. For ppo the stored log-probs and values are then
 * moved by random noise, as if the policy had been updated since sampling
 * (a later minibatch or epoch), so that ratios and values fall outside
 * their clip ranges. Then rlaif_pg_advantages and one minibatch (M of the N
 * sequences) through rlaif_pg_chunk in 2 chunks with the minibatch's token
 * count as the normaliser.
 *
 * OUT (HDF5): /config and /policy, /ref (the two models), the sequences
 * (/tok, /off, /plen, /len, /eos), the experience (/mask, /logp, /ref_logp,
 * /value, /ent, /raw, /score, /fwd_logp, /fwd_value before the noise), its
 * outputs (/kl, /adv, /ret), /rows (the minibatch), /terms (the chunk's
 * seven metric sums), /grads/<tensor>; the settings and /mean_kl, /moving,
 * /ntok, /count as attributes. */
#include "../../src/phases/ppo_impl.h"
#include "rlaif/core/error.h"
#include "rlaif/core/rng.h"
#include "rlaif/engine/model_io.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_io.h"

#define NO_CLIP 1e30f /* ppo_cmd.c's "no clipping" for a2c and reinforce */

enum { N = 12, K = 3, W = 8, M = 6, CHUNK = 3 };

typedef struct {
    const char *name;
    rlaif_pg_algo algo;
    int kl_estimator, whiten, baseline;
    float clip, vclip, vf_coef, ent_coef, noise;
    int kl_loss; /* ppo.kl_penalty = loss: the KL a loss term, not in the rewards */
} variant;

static const variant variants[] = {
    {"ppo-k1", RLAIF_PG_PPO, RLAIF_KL_K1, 1, 0, 0.2f, 0.2f, 0.5f, 0.05f, 0.3f, 0},
    {"ppo-k3", RLAIF_PG_PPO, RLAIF_KL_K3, 0, 0, 0.2f, 0.2f, 0.5f, 0.05f, 0.3f, 0},
    {"a2c", RLAIF_PG_A2C, RLAIF_KL_K1, 1, 0, NO_CLIP, NO_CLIP, 0.5f, 0.05f, 0, 0},
    {"reinforce-loo", RLAIF_PG_REINFORCE, RLAIF_KL_K1, 0, 0, NO_CLIP, NO_CLIP, 0, 0.05f, 0, 0},
    {"reinforce-group", RLAIF_PG_REINFORCE, RLAIF_KL_K3, 0, 1, NO_CLIP, NO_CLIP, 0, 0.05f, 0, 0},
    {"reinforce-moving", RLAIF_PG_REINFORCE, RLAIF_KL_K1, 0, 2, NO_CLIP, NO_CLIP, 0, 0.05f, 0, 0},
    /* GRPO: group baseline, k3 KL as a loss term */
    {"reinforce-group-klloss", RLAIF_PG_REINFORCE, RLAIF_KL_K3, 0, 1, NO_CLIP, NO_CLIP, 0, 0.05f,
     0.3f, 1},
};

static const float RM_MEAN = 0.05f, RM_STD = 0.1f, EOS_PENALTY = 1.0f;

/* A model of cfg with random weights: GPT-2's init, then every parameter
 * moved a little so that biases and LayerNorm gains are not 0 and 1. */
static void random_model(rlaif_model *m, const rlaif_model_config *cfg, uint64_t seed) {
    OK(rlaif_model_create(m, cfg));
    rlaif_model_init_random(m, seed, 0.2f);
    rlaif_rng g;
    rlaif_rng_init(&g, seed, RLAIF_STREAM_DATA, 1, 0);
    for (size_t i = 0; i < m->table.total; i++) m->params[i] += 0.05f * rlaif_rng_normal(&g);
}

/* Ragged sequences: K responses per prompt; the minibatch's first row is a
 * single EOS token, its second cut at W tokens without EOS. */
static void sequences(rlaif_pg_exp *e, rlaif_rng *g, const uint32_t *mb, int V) {
    int32_t eos_id = V - 1, np = 0;
    for (int i = 0; i < N; i++) {
        e->len[i] = 1 + (int)rlaif_rng_below(g, W);
        e->eos[i] = e->len[i] < W || rlaif_rng_below(g, 2);
    }
    e->len[mb[0]] = 1, e->eos[mb[0]] = 1;
    e->len[mb[1]] = W, e->eos[mb[1]] = 0;
    e->tok = xmalloc(sizeof(int32_t) * (size_t)N * (6 + W));
    e->off[0] = 0;
    for (int i = 0; i < N; i++) {
        int32_t *t = e->tok + e->off[i];
        if (i % K == 0) { /* a new prompt of 1 to 6 tokens */
            np = 1 + (int)rlaif_rng_below(g, 6);
            for (int j = 0; j < np; j++) t[j] = (int32_t)rlaif_rng_below(g, (uint32_t)eos_id);
        } else {
            memcpy(t, e->tok + e->off[i - 1], sizeof(int32_t) * (size_t)np);
        }
        e->plen[i] = np;
        for (int j = 0; j < e->len[i]; j++)
            t[np + j] = (int32_t)rlaif_rng_below(g, (uint32_t)eos_id);
        if (e->eos[i]) t[np + e->len[i] - 1] = eos_id;
        e->off[i + 1] = e->off[i] + np + e->len[i];
        for (int j = 0; j < e->len[i]; j++) e->mask[i * W + j] = 1.0f;
    }
}

/* dst[i, j] = the pass's src at response token j of every sequence. */
static void take(const rlaif_pg_exp *e, const rlaif_lp_batch *lp, const float *src, float *dst) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < e->len[i]; j++) dst[i * W + j] = src[i * lp->T + e->plen[i] - 1 + j];
}

/* The experience as ppo.c's scoring pass fills it. */
static void score(rlaif_pg_exp *e, rlaif_model *pol, rlaif_model *rm) {
    rlaif_seqs s = {e->tok, e->off, e->plen};
    int64_t all[N];
    for (int i = 0; i < N; i++) all[i] = i;
    rlaif_lp_batch lp;
    rlaif_lp_init(&lp, N, pol->cfg.max_seq_len);
    OK(rlaif_lp_forward(pol, &lp, &s, all, N, RLAIF_LP_LOGP | RLAIF_LP_VALUE, NULL));
    take(e, &lp, lp.logp, e->logp), take(e, &lp, lp.entropy, e->ent);
    take(e, &lp, lp.value, e->value);
    lp.mask_pad_keys = 1; /* as ppo_cmd.c sets it for the reward model */
    OK(rlaif_lp_forward(rm, &lp, &s, all, N, RLAIF_LP_LOGP | RLAIF_LP_VALUE, NULL));
    take(e, &lp, lp.logp, e->ref);
    for (int i = 0; i < N; i++) {
        e->raw[i] = lp.value[i * lp.T + lp.last[i]];
        e->score[i] = (e->raw[i] - RM_MEAN) / RM_STD - (e->eos[i] ? 0 : EOS_PENALTY);
    }
    rlaif_lp_free(&lp);
}

static void write_f32(hid_t f, const char *name, const float *x, hsize_t n) {
    write_arr(f, name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 1, &n, x);
}
static void write_i32(hid_t f, const char *name, const int32_t *x, hsize_t n) {
    write_arr(f, name, H5T_NATIVE_INT32, H5T_STD_I32LE, 1, &n, x);
}
static void attr(hid_t f, const char *name, double v) {
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, H5T_NATIVE_DOUBLE, &v) < 0)
        fprintf(stderr, "attr %s\n", name), exit(1);
    H5Aclose(a), H5Sclose(s);
}

static void write_inputs(hid_t o, const rlaif_pg_exp *e, const rlaif_model *pol,
                         const rlaif_model *rm, const float *fwd_logp, const float *fwd_value) {
    OK(rlaif_h5_write_config(o, &pol->cfg));
    OK(rlaif_h5_write_tensors(o, "policy", &pol->table, pol->params));
    OK(rlaif_h5_write_tensors(o, "ref", &rm->table, rm->params));
    hsize_t n = (hsize_t)e->off[N];
    write_i32(o, "tok", e->tok, n);
    write_arr(o, "off", H5T_NATIVE_INT64, H5T_STD_I64LE, 1, &(hsize_t){N + 1}, e->off);
    write_i32(o, "plen", e->plen, N), write_i32(o, "len", e->len, N);
    int32_t eos[N];
    for (int i = 0; i < N; i++) eos[i] = e->eos[i];
    write_i32(o, "eos", eos, N);
    const char *names[] = {"mask", "logp", "ref_logp", "value", "ent", "fwd_logp", "fwd_value"};
    const float *arrays[] = {e->mask, e->logp, e->ref, e->value, e->ent, fwd_logp, fwd_value};
    for (int k = 0; k < 7; k++) write_f32(o, names[k], arrays[k], N * W);
    write_f32(o, "raw", e->raw, N), write_f32(o, "score", e->score, N);
}

static void write_settings(hid_t o, const variant *v, const rlaif_pg_adv_opts *ao) {
    double a[] = {v->algo,         v->kl_estimator, v->whiten, v->baseline, ao->kl_coef, ao->gamma,
                  ao->lam,         v->clip,         v->vclip,  v->vf_coef,  v->ent_coef, ao->moving,
                  ao->moving_rate, RM_MEAN,         RM_STD,    EOS_PENALTY, K,           W};
    const char *names[] = {"algo",
                           "kl_estimator",
                           "whiten",
                           "baseline",
                           "kl_coef",
                           "gamma",
                           "lam",
                           "cliprange",
                           "cliprange_value",
                           "vf_coef",
                           "ent_coef",
                           "moving_before",
                           "moving_rate",
                           "rm_mean",
                           "rm_std",
                           "eos_penalty",
                           "K",
                           "W"};
    for (size_t k = 0; k < sizeof a / sizeof *a; k++) attr(o, names[k], a[k]);
}

/* One minibatch of M rows in chunks of CHUNK rows, normalised by its tokens. */
static void step(pg_run *S, rlaif_model *pol, const uint32_t *mb, double *x, double *count,
                 double *ntok) {
    int64_t rows[M];
    *count = 0;
    for (int k = 0; k < M; k++) rows[k] = mb[k], *count += S->e.len[mb[k]];
    rlaif_model_alloc_grads(pol);
    rlaif_model_zero_grad(pol);
    rlaif_pg_chunk_buffers(S, CHUNK, pol->cfg.max_seq_len);
    for (int a = 0; a < M; a += CHUNK) OK(rlaif_pg_chunk(S, pol, rows + a, CHUNK, *count, x, ntok));
}

static int run(const variant *v, uint64_t seed, const char *out) {
    rlaif_model_config cfg = {.n_layer = 2,
                              .n_embd = 16,
                              .n_head = 2,
                              .vocab_size = 40,
                              .max_seq_len = 16,
                              .score_head = 1};
    rlaif_model pol, rm;
    random_model(&pol, &cfg, seed), random_model(&rm, &cfg, seed + 1);
    pg_run S;
    memset(&S, 0, sizeof S);
    S.W = W, S.cliprange = v->clip, S.cliprange_value = v->vclip;
    S.vf_coef = v->vf_coef, S.ent_coef = v->ent_coef;
    rlaif_pg_exp *e = &S.e;
    rlaif_pg_exp_alloc(e, N, W, K);
    uint32_t perm[N];
    rlaif_rng_permutation(seed, RLAIF_STREAM_SHUFFLE, 0, perm, N);
    rlaif_rng g;
    rlaif_rng_init(&g, seed, RLAIF_STREAM_DATA, 2, 0);
    sequences(e, &g, perm, cfg.vocab_size);
    score(e, &pol, &rm);
    float fwd_logp[N * W], fwd_value[N * W];
    memcpy(fwd_logp, e->logp, sizeof fwd_logp), memcpy(fwd_value, e->value, sizeof fwd_value);
    for (int t = 0; t < N * W; t++)
        if (e->mask[t] != 0.0f) {
            e->logp[t] += v->noise * rlaif_rng_normal(&g);
            e->value[t] += v->noise * rlaif_rng_normal(&g);
        }
    rlaif_pg_adv_opts ao = {v->algo,   v->kl_estimator, 0.1f, 0.97f, 0.9f,
                            v->whiten, v->baseline,     0.3,  0.1};
    S.ao = ao; /* the estimator of the KL loss term */
    if (v->kl_loss) S.kl_loss = 1, S.kl_loss_coef = ao.kl_coef, ao.kl_coef = 0;
    hid_t o = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o < 0) fprintf(stderr, "create %s\n", out), exit(1);
    write_inputs(o, e, &pol, &rm, fwd_logp, fwd_value);
    write_settings(o, v, &ao);
    attr(o, "kl_loss_coef", S.kl_loss_coef);
    double mean_kl = rlaif_pg_advantages(e, &ao);
    double x[7] = {0}, count, ntok = 0;
    step(&S, &pol, perm, x, &count, &ntok);
    write_f32(o, "kl", e->kl, N * W), write_f32(o, "adv", e->adv, N * W);
    write_f32(o, "ret", e->ret, N * W);
    int32_t rows[M];
    for (int k = 0; k < M; k++) rows[k] = (int32_t)perm[k];
    write_i32(o, "rows", rows, M);
    write_f64(o, "terms", x, 7);
    attr(o, "mean_kl", mean_kl), attr(o, "moving", ao.moving);
    attr(o, "count", count), attr(o, "ntok", ntok);
    OK(rlaif_h5_write_tensors(o, "grads", &pol.table, pol.grads));
    H5Fclose(o);
    printf("%s: loss/policy %.6g loss/value %.6g clipfrac %.3g val/clipfrac %.3g entropy %.6g\n",
           v->name, x[0], x[1], x[2], x[4], x[6]);
    free(S.c_old), free(S.c_oldv), free(S.c_adv), free(S.c_ret), free(S.c_mask);
    free(S.c_new), free(S.c_dl), free(S.c_ref), free(S.p_dl), free(S.p_de), free(S.p_dv);
    free(S.perm), free(S.rows);
    rlaif_lp_free(&S.lp), rlaif_pg_exp_free(e);
    rlaif_model_free(&pol), rlaif_model_free(&rm);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4)
        for (size_t k = 0; k < sizeof variants / sizeof *variants; k++)
            if (!strcmp(argv[1], variants[k].name))
                return run(&variants[k], strtoull(argv[2], NULL, 10), argv[3]);
    fprintf(stderr, "usage: pg_ref ppo-k1|ppo-k3|a2c|reinforce-loo|reinforce-group|"
                    "reinforce-moving SEED OUT\n");
    return 64;
}
