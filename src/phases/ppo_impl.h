/* ppo_impl.h - what ppo.c (learner side), ppo_rollout.c (sampling, rollout
 * ranks) and ppo_cmd.c (setup, commands) share: one run of a
 * policy-gradient phase. Private to src/phases. */
#ifndef RLAIF_PPO_IMPL_H
#define RLAIF_PPO_IMPL_H

#include "rlaif/core/weight_sync.h"
#include "rlaif/engine/logprob.h"
#include "rlaif/phases/ppo.h"
#include "rlaif/phases/dpo.h"
#include "rlaif/phases/ppo_loss.h"
#include "rlaif/phases/rollout.h"
#include "rlaif/phases/train.h"

typedef struct {
    const char *name; /* the phase: ppo, reinforce, a2c */
    const rlaif_ctx *ctx;
    uint64_t seed;
    int split;           /* rollout ranks sample (else the learners) */
    int learners_sample; /* split: the learners sample a share too (ppo.learners_sample) */
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
    rlaif_chat chat;      /* the policy's chat template (owned) */
    rlaif_wsync ws;
    /* the iteration */
    rlaif_pg_exp e;
    rlaif_pg_adv_opts ao;
    rlaif_kl_ctl klc;
    int adaptive_kl;
    double mean_kl;
    long it; /* the iteration whose experience S->e holds */
    double batch_metrics[11];
    float cliprange, cliprange_value, vf_coef, ent_coef;
    /* ppo.kl_penalty = loss (GRPO's way): the KL to the reference is a loss
     * term of this coefficient and estimator, not a reward penalty */
    int kl_loss;
    float kl_loss_coef;
    uint32_t *perm; /* [N] minibatch order of the current epoch */
    int64_t *rows;  /* [micro] */
    /* chunk scratch: response coordinates [micro * W] and pass layout [micro * T] */
    float *c_old, *c_oldv, *c_adv, *c_ret, *c_mask, *c_new, *c_dl, *c_ref;
    float *p_dl, *p_de, *p_dv;
    double t_sample, t_score, t_bcast, t_train; /* seconds, this process */
    double it_bcast, it_gen, it_score, it_t0;   /* this iteration's parts, when training began */
    int32_t *pk; /* [N * (W + 1)] the iteration's samples as sent: per sequence length, tokens */
    /* d-RLAIF (ppo.reward = judge, ppo_judge.c) */
    int judge_reward;
    MPI_Comm jcomm;          /* learner 0 + the judge ranks (split layout) */
    struct rlaif_pump *pump; /* a judge rank's, or a colocated learner's */
    MPI_Request jreq;        /* learner 0: the batch on its way to the judges */
    long judge_failed;       /* responses the judge did not score */
    /* online DPO: the loss, its buffers, and where the labels are stored */
    rlaif_dpo_loss lf;
    rlaif_dpo_buf dbuf;
    double *dref;  /* [N] reference log-prob of each sequence */
    float *dlabel; /* [N / 2] the judge's P(A better) of each pair */
    int64_t *didx; /* [N / 2] the labelled pairs */
    struct rlaif_prefs *prefs;
    MPI_Comm store_comm; /* the ranks that judge (collective appends to prefs) */
} pg_run;

/* The training prompt of sample j of iteration it: in order, wrapping. */
static inline int64_t rlaif_pg_prompt_of(const pg_run *S, long it, long j) {
    return ((int64_t)it * S->bs + j) % S->ps.n;
}

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
/* Sequence s of a packed batch (S->pk's layout) as UTF-8 response text
 * (malloc'd): what the judge and the oracle read. */
char *rlaif_pg_response_text(const pg_run *S, const int32_t *pk, long s);
/* Split layout, a rollout rank: serve learner 0's iterations until it says
 * the phase is over. */
int rlaif_pg_rollout_serve(pg_run *S);
/* Split layout, learner 0: tell the rollout ranks the phase is over. */
int rlaif_pg_rollout_release(pg_run *S);

/* d-RLAIF (ppo_judge.c). Collective over the world: the learner-0 + judges
 * communicator and, on judge ranks and colocated learners, the judge pump. */
int rlaif_pg_judge_setup(pg_run *S, int learner, int judge);
void rlaif_pg_judge_free(pg_run *S);
/* Learner 0 of a split layout: send S->pk of iteration it to the judges
 * (returns at once; the judges score while the learners run forwards). */
int rlaif_pg_judge_post(pg_run *S, rlaif_learner *L, long it, const int32_t *pk);
/* Collective over the learners: the judge scores of the batch into S->e.raw
 * (NaN where the judge gave none). */
int rlaif_pg_judge_collect(pg_run *S, rlaif_learner *L, long it, const int32_t *pk);
/* A judge rank of a split layout: serve until learner 0 releases it. */
int rlaif_pg_judge_serve(pg_run *S);
int rlaif_pg_judge_release(pg_run *S);

#endif
