/* ppo_exp.c - one iteration's experience for the policy-gradient phases:
 * its buffers, the sequences built from sampled responses, and the
 * advantages of each algorithm (ppo.h). No MPI and no model here: the
 * scoring passes that fill the log-probs live in ppo.c. */
#include "rlaif/phases/ppo.h"
#include "rlaif/core/error.h"
#include "rlaif/phases/ppo_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rlaif_pg_exp_alloc(rlaif_pg_exp *e, int N, int W, int K) {
    memset(e, 0, sizeof *e);
    size_t nw = (size_t)N * (size_t)W;
    e->N = N, e->W = W, e->K = K;
    e->off = xcalloc((size_t)N + 1, sizeof(int64_t));
    e->plen = xcalloc((size_t)N, sizeof(int32_t));
    e->len = xcalloc((size_t)N, sizeof(int));
    float **per_token[] = {&e->mask, &e->logp, &e->ref, &e->value,
                           &e->ent,  &e->kl,   &e->adv, &e->ret};
    for (size_t i = 0; i < sizeof per_token / sizeof *per_token; i++)
        *per_token[i] = xcalloc(nw + 1, sizeof(float));
    e->score = xcalloc((size_t)N + 1, sizeof(float));
    e->raw = xcalloc((size_t)N + 1, sizeof(float));
    e->eos = xcalloc((size_t)N + 1, 1);
}

void rlaif_pg_exp_free(rlaif_pg_exp *e) {
    free(e->tok), free(e->off), free(e->plen), free(e->len);
    free(e->mask), free(e->logp), free(e->ref), free(e->value), free(e->ent);
    free(e->kl), free(e->adv), free(e->ret), free(e->score), free(e->raw), free(e->eos);
    memset(e, 0, sizeof *e);
}

/* Sequence rewards of REINFORCE: score - kl_coef * (the response's KL). */
static void sequence_rewards(const rlaif_pg_exp *e, float kl_coef, float *R) {
    for (int i = 0; i < e->N; i++) {
        double kl = 0;
        for (int j = 0; j < e->W; j++) kl += e->kl[(size_t)i * e->W + j];
        R[i] = (float)(e->score[i] - kl_coef * kl);
    }
}

/* GRPO: (R - the prompt's mean) / (its unbiased std + 1e-4). */
static void group_advantages(float *a, const float *R, int n_prompts, int K) {
    for (int p = 0; p < n_prompts; p++) {
        const float *r = R + (size_t)p * K;
        double s = 0, ss = 0;
        for (int k = 0; k < K; k++) s += r[k];
        double mean = s / K;
        for (int k = 0; k < K; k++) ss += (r[k] - mean) * (r[k] - mean);
        double sd = K > 1 ? sqrt(ss / (K - 1)) : 0;
        for (int k = 0; k < K; k++) a[(size_t)p * K + k] = (float)((r[k] - mean) / (sd + 1e-4));
    }
}

/* REINFORCE: one advantage per sequence, given to each of its tokens. */
static void reinforce_advantages(rlaif_pg_exp *e, rlaif_pg_adv_opts *o) {
    int N = e->N;
    float *R = xmalloc(sizeof(float) * (size_t)N), *a = xmalloc(sizeof(float) * (size_t)N);
    sequence_rewards(e, o->kl_coef, R);
    if (o->baseline == 0) {
        rlaif_rloo_advantages(a, R, N / e->K, e->K);
    } else if (o->baseline == 1) {
        group_advantages(a, R, N / e->K, e->K);
    } else {
        double mean = 0;
        for (int i = 0; i < N; i++) a[i] = (float)(R[i] - o->moving), mean += R[i] / N;
        o->moving = (1 - o->moving_rate) * o->moving + o->moving_rate * mean;
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < e->W; j++) {
            size_t t = (size_t)i * e->W + j;
            e->adv[t] = a[i] * e->mask[t], e->ret[t] = 0;
        }
    free(R), free(a);
}

/* PPO and A2C: per-token rewards, GAE on the values, whitened advantages. */
static void gae_advantages(rlaif_pg_exp *e, const rlaif_pg_adv_opts *o) {
    int n = e->N * e->W;
    float *rw = xmalloc(sizeof(float) * ((size_t)n + 1));
    rlaif_ppo_rewards(rw, e->kl, e->score, e->mask, e->N, e->W, o->kl_coef);
    if (o->whiten_rewards)
        rlaif_masked_whiten(rw, e->mask, n, rlaif_masked_moments(rw, e->mask, n), 0);
    rlaif_gae(e->adv, e->ret, rw, e->value, e->mask, e->N, e->W, o->gamma, o->lam);
    rlaif_masked_whiten(e->adv, e->mask, n, rlaif_masked_moments(e->adv, e->mask, n), 1);
    free(rw);
}

double rlaif_pg_advantages(rlaif_pg_exp *e, rlaif_pg_adv_opts *o) {
    int n = e->N * e->W;
    rlaif_kl_per_token(e->kl, e->logp, e->ref, e->mask, n, o->kl_estimator);
    double kl = 0;
    for (int t = 0; t < n; t++) kl += e->kl[t];
    if (o->algo == RLAIF_PG_ODPO) /* the DPO loss needs no advantages */
        ;
    else if (o->algo == RLAIF_PG_REINFORCE)
        reinforce_advantages(e, o);
    else
        gae_advantages(e, o);
    return e->N > 0 ? kl / e->N : 0;
}
