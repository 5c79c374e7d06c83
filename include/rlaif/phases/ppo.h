/* ppo.h - `rlaif ppo`, `rlaif reinforce`, `rlaif a2c`: the policy-gradient
 * phases, one loop with three advantage estimators (src/phases/README.md,
 * "The RL phases").
 *
 * One iteration (ppo.steps of them):
 *   1. the policy goes from learner 0 to the rollout ranks (weight_sync.h:
 *      the whole trunk, bucketed Ibcast; nothing moves when unchanged);
 *   2. the batch: ppo.batch_size prompts (training prompts in order,
 *      wrapping) x ppo.samples_per_prompt responses, sampled with the KV
 *      cache; response k of prompt j draws from (run.seed,
 *      RLAIF_STREAM_SAMPLE, iteration + 1, j * K + k), so the tokens do not
 *      depend on how many ranks sample them. Split layout: the rollout ranks
 *      sample contiguous shares and learner 0 gathers them; colocated: each
 *      learner samples its share and the learners all-gather;
 *   3. scoring, each learner its share, then all-gathered so that every
 *      learner holds the whole batch: the policy's log-probs, entropies and
 *      values (a value head on the policy), the frozen reference's (the SFT
 *      model's) log-probs, the reward model's score at the last token,
 *      normalised by the RM's stored mean and std, minus
 *      ppo.missing_eos_penalty when the response has no EOS;
 *   4. advantages (ppo_loss.h):
 *        ppo, a2c   per-token rewards -kl_coef * kl + score at the last
 *                   token, optionally whitened; GAE(gamma, lam) on the
 *                   values; advantages whitened;
 *        reinforce  sequence reward score - kl_coef * sum(kl) with a
 *                   baseline: loo (RLOO), group (GRPO: minus the prompt's
 *                   mean, over its std) or moving (a running mean); the
 *                   advantage is that of every token of the response;
 *   5. optimisation: ppo = ppo.epochs passes over ppo.minibatches
 *      minibatches (a permutation per epoch), clipped ratio and clipped
 *      value loss; a2c and reinforce = one step on the whole batch with no
 *      clipping (a2c with the value loss, reinforce without). Each
 *      minibatch is one step of the shared learner loop (train.h):
 *      gradients reduce-scattered over the learners, ZeRO-1 AdamW.
 * Checkpoints, stops and the KL controller act between iterations only
 * (rlaif_learner.quantum): a checkpoint holds the policy with its value
 * head, the optimiser state, the KL coefficient and the moving baseline,
 * and the rest (the prompt cursor, the sampling counters) follows from the
 * iteration number, so a resumed run repeats the uninterrupted one. */
#ifndef RLAIF_PPO_H
#define RLAIF_PPO_H

#include <stdint.h>

#include "rlaif/core/job.h"
#include "rlaif/engine/logprob.h"
#include "rlaif/engine/model.h"

typedef enum { RLAIF_PG_PPO, RLAIF_PG_REINFORCE, RLAIF_PG_A2C, RLAIF_PG_ODPO } rlaif_pg_algo;

int rlaif_cmd_ppo(rlaif_ctx *ctx);
int rlaif_cmd_reinforce(rlaif_ctx *ctx);
int rlaif_cmd_a2c(rlaif_ctx *ctx);
/* `rlaif online-dpo`: the same iteration with 2 samples per prompt labelled
 * by the judge ranks (verdict, both orders, journaled, every label appended
 * to <out_dir>/online_preferences.h5 as its iteration is judged) and one DPO
 * step (dpo.loss, dpo.beta) against the frozen reference per iteration. */
int rlaif_cmd_online_dpo(rlaif_ctx *ctx);
/* The registry's checks of each: the configuration alone (e.g. a baseline
 * that needs 2 samples with 1), refused before `rlaif run` starts a phase. */
int rlaif_ppo_check(const rlaif_config *cfg);
int rlaif_reinforce_check(const rlaif_config *cfg);
int rlaif_a2c_check(const rlaif_config *cfg);
int rlaif_online_dpo_check(const rlaif_config *cfg);

/* One iteration's experience, whole, on every learner. Sequence i = prompt
 * i / K, sample i % K; its response token j is at i * W + j of the [N, W]
 * arrays (0 past the response). */
typedef struct {
    int N, W, K;        /* sequences, response width, samples per prompt */
    int32_t *tok;       /* ragged prompt + response tokens (rlaif_seqs) */
    int64_t *off;       /* [N + 1] */
    int32_t *plen;      /* [N] prompt tokens */
    int *len;           /* [N] response tokens (EOS included when sampled) */
    float *mask;        /* [N * W] 1 on response tokens */
    float *logp, *ref;  /* [N * W] policy and reference log-probs at sampling time */
    float *value, *ent; /* [N * W] values and entropies at sampling time */
    float *kl;          /* [N * W] per-token KL estimate */
    float *adv, *ret;   /* [N * W] advantages and returns */
    float *score;       /* [N] normalised RM score (with the missing-EOS penalty) */
    float *raw;         /* [N] the RM's raw score */
    uint8_t *eos;       /* [N] the response ended with EOS */
} rlaif_pg_exp;

void rlaif_pg_exp_alloc(rlaif_pg_exp *e, int N, int W, int K);
void rlaif_pg_exp_free(rlaif_pg_exp *e);

/* The advantage settings of an iteration. */
typedef struct {
    rlaif_pg_algo algo;
    int kl_estimator; /* RLAIF_KL_K1 / K3 */
    float kl_coef, gamma, lam;
    int whiten_rewards;
    int baseline;       /* reinforce: 0 loo, 1 group, 2 moving */
    double moving;      /* reinforce, moving baseline: its value (updated) */
    double moving_rate; /* its update weight per iteration */
} rlaif_pg_adv_opts;

/* e->kl (and for the policy-gradient algorithms e->adv, e->ret) from e's log-probs, values and
 * scores (no MPI: every learner holds the whole batch and computes the same numbers). Returns the
 * batch's mean sequence KL (for the metrics and the KL controller). */
double rlaif_pg_advantages(rlaif_pg_exp *e, rlaif_pg_adv_opts *o);

#endif
