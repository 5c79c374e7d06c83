/* train.h - the learner training loop shared by sft, rm, ppo and dpo.
 *
 * A learner holds the model being trained, its tokenizer and the AdamW
 * state for its shard of the flat parameter space. The loop is data-parallel
 * over the learner communicator:
 *
 *   for step in [resumed step, steps):
 *       stop?  (signal or walltime, agreed by every learner) -> checkpoint, exit 75
 *       zero grads; phase->batch(): this learner's share of the global batch,
 *           in micro-batches, each loss already divided by the GLOBAL
 *           normaliser (so the gradients of L learners sum to the gradient of
 *           one learner holding the whole batch)
 *       MPI_Reduce_scatter of the gradients -> this learner's shard
 *       global grad norm = sqrt(MPI_Allreduce of the shards' sums of squares)
 *       AdamW on the shard (skip on a non-finite loss or norm, clip, schedule)
 *       MPI_Allgatherv of the updated shards -> every learner's full params
 *       metrics row, status line every run.log_every, checkpoint every checkpoint.every
 *   checkpoint with /state done = 1
 *
 * Checkpoints are `<out_dir>/<checkpoint.dir>/<phase>-<step>.h5` (checkpoint.h:
 * full params, sharded moments, /tokenizer, /state step + done + the phase's
 * own keys such as the data cursor). At start the newest valid one is loaded;
 * when it is marked done the phase is skipped. */
#ifndef RLAIF_TRAIN_H
#define RLAIF_TRAIN_H

#include <mpi.h>
#include <stdint.h>

#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/job.h"
#include "rlaif/core/config.h"
#include "rlaif/phases/layout.h"
#include "rlaif/storage/metrics.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/optim.h"
#include "rlaif/tokenizer/chat.h"
#include "rlaif/tokenizer/tokenizer.h"

#define RLAIF_TRAIN_MAX_EXTRA 24

typedef struct rlaif_learner rlaif_learner;

/* What a phase's batch reports: this learner's parts, summed over learners
 * by the loop. loss must already be normalised globally (the parts sum to
 * the step's loss); tokens = tokens through the model (for tokens/s). */
typedef struct {
    double loss, tokens;
    double extra[RLAIF_TRAIN_MAX_EXTRA];
} rlaif_batch_stats;

/* A phase plugged into the loop. */
typedef struct {
    const char *name; /* "sft": config section of the optimizer keys, checkpoint name, metrics */
    int n_extra;      /* phase metric columns after loss, lr, grad_norm, tokens_per_s, skipped */
    const char *const *extra_names;
    /* Accumulate this learner's gradients for step L->step into
     * L->model.grads (zeroed by the loop). */
    int (*batch)(rlaif_learner *L, void *ud, rlaif_batch_stats *st);
    /* Phase keys of the checkpoint's /state (may be NULL). */
    void (*save_state)(const rlaif_learner *L, void *ud, rlaif_kvset *state);
    int (*load_state)(rlaif_learner *L, void *ud, const rlaif_kvset *state);
    void *ud;
} rlaif_phase;

struct rlaif_learner {
    const rlaif_config *cfg;
    MPI_Comm comm; /* the learners */
    int rank, size;
    rlaif_model model; /* full parameters and gradients on every learner */
    rlaif_tokenizer *tok;
    rlaif_chat chat; /* model.chat_template: how prompts and replies are framed */
    rlaif_adamw_config oc;
    rlaif_adamw opt;        /* moments of [begin, end) only */
    size_t begin, end;      /* this learner's shard of the flat parameter space */
    int *counts, *displs;   /* [size] shard sizes and starts, for the collectives */
    float *gshard;          /* [end - begin] reduce-scatter output */
    long step, steps;       /* optimizer steps done, steps of the phase */
    long batch_size;        /* sequences per step over all learners */
    long micro_batch;       /* sequences per forward/backward on one learner */
    long stop_after;        /* testing: request a stop after this many steps (0 = never) */
    char ckpt_dir[4096];    /* <out_dir>/<checkpoint.dir> */
    char ckpt_path[4096];   /* the last checkpoint written or loaded */
    char init_path[4096];   /* the checkpoint the model started from ("" = [model]) */
    rlaif_ckpt_opts ckpt;   /* name = the phase */
    rlaif_metrics *metrics; /* <out_dir>/metrics.h5 + progress.jsonl */
    double last_loss;       /* loss of the last step (for reports) */
    double tokens_per_s;    /* mean over this process's steps */
    /* Optional (NULL after init), collective: run by every learner with the
     * phase's ud before each checkpoint is written (done = 1 for the final
     * one), e.g. a validation pass whose results save_state puts in /state. */
    int (*before_save)(rlaif_learner *L, void *ud, int done);
    const struct rlaif_learner_hooks *hooks; /* optional (NULL after init): the RL phases' hooks */
    /* Steps per outer iteration (0 or 1 after init: every step). Stops and
     * periodic checkpoints happen only when step % quantum == 0, and
     * checkpoint.every then counts iterations: an RL phase's experience
     * lives for one iteration and is not checkpointed. */
    long quantum;
};

/* Collective over comm. Tokenizer from [tokenizer] (or init_from's
 * /tokenizer), model from [model] (vocab_size 0 = the tokenizer's; random
 * weights from run.seed) or from model.init_from, AdamW from [section]
 * (lr, steps, batch_size, micro_batch, schedule, clip), the shard collectives,
 * the checkpoint folder and metrics files. */
int rlaif_learner_init(rlaif_learner *L, const rlaif_config *cfg, MPI_Comm comm,
                       const char *section, int score_head);

/* The architecture of the job's model as rlaif_learner_init builds it
 * without a phase's own source: model.init_from's config, or [model] with
 * vocab_size 0 = [tokenizer]'s size (what the product chooser is
 * calibrated for at start). */
int rlaif_job_model_config(const rlaif_config *cfg, rlaif_model_config *mc);

/* Where rlaif_learner_init_model takes the model from. */
typedef struct {
    int score_head;        /* the phase needs a scalar head */
    const char *init_from; /* checkpoint to start from (NULL = model.init_from; "" = [model]) */
    /* With score_head: 1 = the head is new (a reward model on an SFT trunk):
     * added to a checkpoint without one, replaced in one that has one, and
     * set in a model built from [model]: score.weight ~ N(0, 1/sqrt(C + 1)),
     * C the final hidden width (word_embed_dim), from (run.seed,
     * RLAIF_STREAM_INIT, step 1, tensor index), score.bias = 0, so initial
     * rewards are ~N(0, 1) on normalised outputs.
     * 0 = a checkpoint must bring its head (an error names it otherwise). */
    int fresh_head;
} rlaif_model_source;
/* rlaif_learner_init with the model taken from src. */
int rlaif_learner_init_model(rlaif_learner *L, const rlaif_config *cfg, MPI_Comm comm,
                             const char *section, const rlaif_model_source *src);
void rlaif_learner_free(rlaif_learner *L);

/* This learner's sequences [lo, hi) of a global batch of n (contiguous, so
 * sequence j of a step is the same sequence whatever the learner count). */
void rlaif_learner_share(const rlaif_learner *L, long n, long *lo, long *hi);
/* Sum of x over the learners (e.g. the global count of loss tokens, which
 * every learner needs before its backward). */
int rlaif_learner_sum(const rlaif_learner *L, double x, double *sum);

/* Collective: resume from the newest checkpoint of ph->name (nothing found:
 * *found = 0); *done = its /state done flag. */
int rlaif_learner_resume(rlaif_learner *L, const rlaif_phase *ph, int *found, int *done);
/* Collective: checkpoint at L->step with /state done. */
int rlaif_learner_save(rlaif_learner *L, const rlaif_phase *ph, int done);
/* Collective, after the save that ends a run of the phase (done, or a stop
 * for walltime or a signal): with io.stage_dir the staged checkpoint is
 * copied back to out_dir (rlaif_checkpoint_copy_back) and L->ckpt_path names
 * the copy; without, nothing happens. */
int rlaif_learner_copy_back(rlaif_learner *L);
/* Collective: reduce the accumulated gradients, clip, update, gather. loss is
 * the global loss (for the skip test). */
int rlaif_learner_update(rlaif_learner *L, double loss, rlaif_step_info *info);

/* Collective: the loop above from L->step to L->steps. Returns 0 when the
 * phase is done (final checkpoint written), RLAIF_EX_TEMPFAIL after a
 * stop checkpoint, or an error. */
int rlaif_train_run(rlaif_learner *L, const rlaif_phase *ph);

/* ---- the learner-phase driver: the skeleton sft, rm and dpo share ---- */

/* What a learner phase adds to the skeleton of rlaif_learner_phase_run. */
typedef struct {
    rlaif_phase ph;         /* the loop's part (name, batch, state keys, ud) */
    const char *eval_table; /* metrics table of validation rows ("rm_eval"), or NULL */
    int n_eval;             /* its columns after step */
    const char *const *eval_names;
    const char *result; /* "the reward model": for the closing line */
    /* Collective, after resume and before the first step (not when the
     * phase is complete): the start lines, and what a fresh start needs
     * (found = 0), e.g. a validation pass at step 0. */
    int (*prepare)(rlaif_learner *L, void *ud, int found);
    /* Optional, collective: after the final checkpoint (e.g. a held-out
     * evaluation). */
    int (*after)(rlaif_learner *L, void *ud);
    /* Optional: L->before_save for the run (see struct rlaif_learner). */
    int (*before_save)(rlaif_learner *L, void *ud, int done);
} rlaif_learner_phase;

/* A learner phase's done() in the registry (serial, world rank 0; every
 * learner phase points at it): the newest checkpoint of phase in
 * <out_dir>/<checkpoint.dir> that reads is DONE when its /state done is set
 * and its step reaches <phase>.steps (the phase's rule, shared with
 * rlaif_learner_phase_run) and every checksum verifies (a damaged one is
 * passed over for the next older, as resume does); else PARTIAL; no
 * checkpoint: NOT_STARTED. Loads no model. */
int rlaif_learner_done(const rlaif_config *cfg, const char *phase, rlaif_phase_status *st);

/* Collective over the learners: resume from the phase's newest checkpoint,
 * skip when it is complete, declare and rewind the validation table,
 * prepare, train to L->steps (rlaif_train_run: 75 on a stop), after, and
 * the closing line. stop_after: testing, as --stop-after. */
int rlaif_learner_phase_run(rlaif_learner *L, const rlaif_learner_phase *lp, long stop_after);

/* The start of a learner phase's command on every rank: its own arguments
 * (rlaif_phase_args), then the registry's done() agreed by the world: a
 * finished phase says so and every rank gets *comm = MPI_COMM_NULL. Else
 * *comm = the learners' communicator, or MPI_COMM_NULL on a rank with no
 * part in the phase (rollout and judge ranks of a split layout), which
 * returns at once and waits for the learners in the phase's world-wide end
 * (rlaif_phase_exec). */
int rlaif_learner_phase_enter(const rlaif_ctx *ctx, const char *phase, long *stop_after,
                              MPI_Comm *comm);

/* Hooks for the RL phases (PPO: an outer loop of rollout and scoring, then
 * several optimisation epochs over the batch), run by rlaif_train_run when
 * set in struct rlaif_learner_hooks; both collective over the learners:
 *  - outer(L, ud): before each step, may refill the phase's experience (a
 *    rollout, scoring by the reward model, advantages). Returning non-zero
 *    ends the loop with that code, like an error of the step.
 *  - after_update(L, ud, info): after each optimizer update, with its
 *    lr/grad_norm/skipped (e.g. broadcast the new weights to rollout ranks,
 *    adapt a KL coefficient). */
typedef struct rlaif_learner_hooks {
    int (*outer)(rlaif_learner *L, void *ud);
    int (*after_update)(rlaif_learner *L, void *ud, const rlaif_step_info *info);
    void *ud;
} rlaif_learner_hooks;

/* A training phase's own arguments: `--stop-after N` (testing: stop as on
 * SIGTERM after N steps of this run; *stop_after = 0 when absent). Anything
 * else is a usage error naming the phase. */
int rlaif_phase_args(const rlaif_ctx *ctx, const char *phase, long *stop_after);

#endif
