/* ppo_impl.h - what ppo.c (learner side), ppo_rollout.c (sampling, rollout
 * ranks) and ppo_cmd.c (setup, commands) share: one run of a
 * policy-gradient phase. Private to src/phases. */
#ifndef RLAIF_PPO_IMPL_H
#define RLAIF_PPO_IMPL_H

#include "rlaif/core/weight_sync.h"
#include "rlaif/engine/logprob.h"
#include "rlaif/phases/ppo.h"
#include "rlaif/phases/ppo_loss.h"
#include "rlaif/phases/rollout.h"
#include "rlaif/phases/train.h"

typedef struct {
    const char *name; /* the phase: ppo, reinforce, a2c */
    const rlaif_ctx *ctx;
    uint64_t seed;
    int split; /* rollout ranks sample (else the learners) */
    /* data: the training prompts, tokenized once */
    rlaif_prompt_set ps;
    int32_t *pids; /* prompt p's ids: pids[poff[p] .. poff[p + 1]) */
    int64_t *poff;
    /* the iteration's shape */
    int bs, W; /* prompts per iteration, response width */
    long iters, epochs, nmb, quantum, micro;
    float temperature;
    /* models of a learner: frozen reference and reward model */
    char policy_path[4096], rm_path[4096];
    rlaif_model ref, rm;
    double rm_mean, rm_std;
    float eos_penalty;
    rlaif_lp_batch lp, lp_ref, lp_rm;
    /* sampling: the learner's policy (colocated) or the rollout's copy */
    rlaif_model sampler;
    rlaif_tokenizer *tok; /* the policy's tokenizer (not owned on learners) */
    rlaif_wsync ws;
    /* the iteration */
    rlaif_pg_exp e;
    rlaif_pg_adv_opts ao;
    rlaif_kl_ctl klc;
    int adaptive_kl;
    double mean_kl;
    double batch_metrics[7];
    float cliprange, cliprange_value, vf_coef, ent_coef;
    uint32_t *perm; /* [N] minibatch order of the current epoch */
    int64_t *rows;  /* [micro] */
    /* chunk scratch: response coordinates [micro * W] and pass layout [micro * T] */
    float *c_old, *c_oldv, *c_adv, *c_ret, *c_mask, *c_new, *c_dl;
    float *p_dl, *p_de, *p_dv;
    double t_sample, t_score, t_bcast, t_train; /* seconds, this process */
    double it_bcast, it_gen, it_score, it_t0;   /* this iteration's parts, when training began */
} pg_run;

/* Learner side (ppo.c): the loop with the hooks. Collective over L->comm. */
int rlaif_pg_learner_run(pg_run *S, rlaif_learner *L, long stop_after);

/* Forward, the three losses and backward of R rows of S->e (sequences
 * rows[0..R), R <= the buffers' rows) through m: gradients accumulated into
 * m->grads; x[0..7) += this chunk's shares of loss/policy, loss/value,
 * policy/clipfrac, policy/approxkl, val/clipfrac, val/vpred and
 * policy/entropy, each a sum over its tokens divided by count (the
 * minibatch's response tokens over all learners). */
int rlaif_pg_chunk(pg_run *S, rlaif_model *m, const int64_t *rows, int R, double count, double *x,
                   double *ntok);
/* The pass and the chunk scratch of rlaif_pg_chunk for R rows of up to T
 * tokens (S->W and S->e.N set). */
void rlaif_pg_chunk_buffers(pg_run *S, int R, int T);

/* Sampling (ppo_rollout.c). Collective over the learners (and, split, the
 * rollout ranks through learner 0): S->e holds iteration it's sequences on
 * every learner. */
int rlaif_pg_collect(pg_run *S, rlaif_learner *L, long it);
/* Split layout, a rollout rank: serve learner 0's iterations until it says
 * the phase is over. */
int rlaif_pg_rollout_serve(pg_run *S);
/* Split layout, learner 0: tell the rollout ranks the phase is over. */
int rlaif_pg_rollout_release(pg_run *S);

#endif
