/* ppo_cmd.c - the commands `rlaif ppo`, `rlaif reinforce` and `rlaif a2c`:
 * the options of each algorithm, everything that can be refused before any
 * expensive work (no reward model, a reward model of another tokenizer or
 * vocabulary, no prompts, prompts that leave no room for a response), the
 * models, and which rank does what. */
#include "ppo_impl.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/tensors.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/phases/layout.h"
#include "rlaif/phases/dpo.h"
#include "rlaif/phases/pairs.h"
#include "rlaif/phases/pump.h"
#include "rlaif/phases/rm.h"
#include "rlaif/phases/task.h"
#include "rlaif/storage/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_CLIP 1e30f

/* Online DPO: dpo.loss and dpo.beta; a judge that gives verdicts. */
static int odpo_options(pg_run *S, const rlaif_config *cfg) {
    const char *kind = rlaif_cfg_str(cfg, "dpo.loss");
    S->lf.kind = !strcmp(kind, "ipo")    ? RLAIF_DPO_IPO
                 : !strcmp(kind, "cdpo") ? RLAIF_DPO_CDPO
                                         : RLAIF_DPO_SIGMOID;
    S->lf.beta = rlaif_cfg_float(cfg, "dpo.beta");
    S->lf.eps = S->lf.kind == RLAIF_DPO_CDPO ? rlaif_cfg_float(cfg, "dpo.label_smoothing") : 0;
    S->vf_coef = 0;
    if (!(S->lf.beta > 0))
        return RLAIF_ERROR(RLAIF_EX_USAGE, "the DPO default is dpo.beta = 0.1",
                           "%s: dpo.beta must be > 0 (got %g)", S->name, S->lf.beta);
    if (!strcmp(rlaif_cfg_str(cfg, "judge.mode"), "score"))
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set judge.mode = verdict (or logprob, rubric)",
                           "%s: online DPO needs a preference per pair, and judge.mode = score "
                           "rates responses one by one",
                           S->name);
    return 0;
}

/* [ppo] keys -> S (the same on every rank: the configuration only). */
static int options(pg_run *S, const rlaif_config *cfg, rlaif_pg_algo algo) {
    int K = (int)rlaif_cfg_int(cfg, "ppo.samples_per_prompt");
    const char *bl = rlaif_cfg_str(cfg, "ppo.baseline");
    S->seed = (uint64_t)rlaif_cfg_int(cfg, "run.seed");
    S->bs = (int)rlaif_cfg_int(cfg, "ppo.batch_size");
    S->iters = (long)rlaif_cfg_int(cfg, "ppo.steps");
    S->temperature = (float)rlaif_cfg_float(cfg, "ppo.temperature");
    S->eos_penalty = (float)rlaif_cfg_float(cfg, "ppo.missing_eos_penalty");
    S->ent_coef = (float)rlaif_cfg_float(cfg, "ppo.entropy_coef");
    int ppo = algo == RLAIF_PG_PPO, odpo = algo == RLAIF_PG_ODPO;
    if (odpo) K = 2; /* a pair per prompt */
    S->epochs = ppo ? (long)rlaif_cfg_int(cfg, "ppo.epochs") : 1;
    S->nmb = ppo ? (long)rlaif_cfg_int(cfg, "ppo.minibatches") : 1;
    S->quantum = S->epochs * S->nmb;
    S->cliprange = ppo ? (float)rlaif_cfg_float(cfg, "ppo.cliprange") : NO_CLIP;
    S->cliprange_value = ppo ? (float)rlaif_cfg_float(cfg, "ppo.cliprange_value") : NO_CLIP;
    S->vf_coef = algo == RLAIF_PG_REINFORCE ? 0 : (float)rlaif_cfg_float(cfg, "ppo.vf_coef");
    S->ao = (rlaif_pg_adv_opts){
        .algo = algo,
        .kl_estimator =
            strcmp(rlaif_cfg_str(cfg, "ppo.kl_estimator"), "k3") ? RLAIF_KL_K1 : RLAIF_KL_K3,
        .kl_coef = (float)rlaif_cfg_float(cfg, "ppo.kl_coef"),
        .gamma = (float)rlaif_cfg_float(cfg, "ppo.gamma"),
        .lam = (float)rlaif_cfg_float(cfg, "ppo.lam"),
        .whiten_rewards = rlaif_cfg_bool(cfg, "ppo.whiten_rewards"),
        .baseline = !strcmp(bl, "loo")     ? 0
                    : !strcmp(bl, "group") ? 1
                                           : 2,
        .moving_rate = 0.1,
    };
    S->klc =
        (rlaif_kl_ctl){rlaif_cfg_float(cfg, "ppo.kl_coef"), rlaif_cfg_float(cfg, "ppo.target_kl"),
                       (double)rlaif_cfg_int(cfg, "ppo.kl_horizon")};
    S->adaptive_kl = rlaif_cfg_bool(cfg, "ppo.adaptive_kl");
    S->learners_sample = rlaif_cfg_bool(cfg, "ppo.learners_sample");
    S->kl_loss = !strcmp(rlaif_cfg_str(cfg, "ppo.kl_penalty"), "loss");
    rlaif_pg_exp_alloc(&S->e, 0, 0, K); /* sized once W is known */
    S->judge_reward = odpo || !strcmp(rlaif_cfg_str(cfg, "ppo.reward"), "judge");
    if (odpo) return odpo_options(S, cfg);
    if (S->judge_reward && strcmp(rlaif_cfg_str(cfg, "judge.mode"), "score"))
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set judge.mode = score with ppo.reward = judge",
                           "%s: ppo.reward = judge needs a score per response, and judge.mode = %s",
                           S->name, rlaif_cfg_str(cfg, "judge.mode"));
    if (S->judge_reward && K % 2)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set ppo.samples_per_prompt to an even number",
                           "%s: ppo.reward = judge scores the samples of a prompt in pairs, and "
                           "ppo.samples_per_prompt = %d",
                           S->name, K);
    if (algo == RLAIF_PG_REINFORCE && S->ao.baseline != 2 && K < 2)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set ppo.samples_per_prompt = 2 or more",
                           "%s: the %s baseline compares the samples of a prompt, and "
                           "ppo.samples_per_prompt = %d",
                           S->name, bl, K);
    if (((long)S->bs * K) % S->nmb)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "make ppo.batch_size x ppo.samples_per_prompt a multiple",
                           "%s: %d sequences per iteration do not split into ppo.minibatches = %ld",
                           S->name, S->bs * K, S->nmb);
    if ((long)S->bs * K > 1L << 26)
        return RLAIF_ERROR(RLAIF_EX_USAGE, NULL, "%s: %ld sequences per iteration is too many",
                           S->name, (long)S->bs * K);
    return 0;
}

/* The policy to start from (and the reference): model.init_from, else the
 * newest finished sft checkpoint. */
static int policy_source(pg_run *S, const rlaif_config *cfg) {
    if (*rlaif_cfg_str(cfg, "model.init_from")) {
        snprintf(S->policy_path, sizeof S->policy_path, "%s",
                 rlaif_cfg_str(cfg, "model.init_from"));
        return 0;
    }
    char dir[4096];
    int found, ns;
    RLAIF_TRY(rlaif_find_sft_model(cfg, S->name, S->policy_path, sizeof S->policy_path, dir,
                                   sizeof dir, &found, &ns));
    return found ? 0
                 : rlaif_no_sft_model(S->name,
                                      "run rlaif sft first, or set model.init_from = a checkpoint "
                                      "(the policy starts there, and it is the frozen reference)",
                                      dir, ns);
}

/* The reward model's checkpoint: ppo.reward_model, else the newest finished rm. */
static int rm_source(pg_run *S, const rlaif_config *cfg) {
    const char *key = rlaif_cfg_str(cfg, "ppo.reward_model");
    if (*key) return snprintf(S->rm_path, sizeof S->rm_path, "%s", key), 0;
    char dir[4096];
    int found, n;
    rlaif_out_ckpt_dir(cfg, dir, sizeof dir);
    RLAIF_TRY(rlaif_checkpoint_newest_done(dir, "rm", S->name, S->rm_path, sizeof S->rm_path,
                                           &found, &n));
    if (found) return 0;
    return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                       "run rlaif rm first (it needs rlaif collect's preferences), or set "
                       "ppo.reward_model = a reward model checkpoint",
                       "%s: no finished reward model in %s (%d rm checkpoint(s) there)", S->name,
                       dir, n);
}

/* Same tokens, same ids: the reward model reads the policy's token ids. */
static int same_tokenizer(const rlaif_tokenizer *a, const rlaif_tokenizer *b) {
    int32_t n = rlaif_tokenizer_vocab_size(a);
    if (n != rlaif_tokenizer_vocab_size(b) || rlaif_tokenizer_eos(a) != rlaif_tokenizer_eos(b))
        return 0;
    for (int32_t i = 0; i < n; i++) {
        size_t la, lb;
        const char *x = rlaif_tokenizer_token(a, i, &la), *y = rlaif_tokenizer_token(b, i, &lb);
        if (la != lb || (la && memcmp(x, y, la))) return 0;
    }
    return 1;
}

/* A learner's frozen models: the reference and the reward model. */
static int load_frozen(pg_run *S, rlaif_learner *L) {
    RLAIF_TRY(rlaif_model_load(S->policy_path, &S->ref));
    if (S->judge_reward) return 0;
    rlaif_tokenizer *rt = NULL;
    int rc = rlaif_rm_load(S->rm_path, &S->rm, &S->rm_mean, &S->rm_std);
    if (!rc) rc = rlaif_tokenizer_for_checkpoint(&rt, S->rm_path, L->cfg);
    if (!rc && (!same_tokenizer(rt, L->tok) || S->rm.cfg.vocab_size != L->model.cfg.vocab_size))
        rc = RLAIF_ERROR(RLAIF_EX_USAGE,
                         "train the reward model from the same SFT model (rlaif rm), or set "
                         "ppo.reward_model to one that shares the policy's tokenizer",
                         "%s: the reward model %s does not share the policy's tokenizer and "
                         "vocabulary (%d and %d tokens in the models, %d and %d in the "
                         "tokenizers)",
                         S->name, S->rm_path, S->rm.cfg.vocab_size, L->model.cfg.vocab_size,
                         (int)rlaif_tokenizer_vocab_size(rt),
                         (int)rlaif_tokenizer_vocab_size(L->tok));
    if (rt) rlaif_tokenizer_free(rt);
    if (!rc && !(isfinite(S->rm_mean) && isfinite(S->rm_std) && S->rm_std > 0)) {
        rlaif_warn("%s: the reward model %s has no reward statistics (an unfinished rm run?): "
                   "scores are used as they are",
                   S->name, S->rm_path);
        S->rm_mean = 0, S->rm_std = 1;
    }
    return rc;
}

/* The training prompts, tokenized; S->W = the response width every prompt
 * leaves room for in the policy and the reward model. */
static int load_prompts(pg_run *S, rlaif_tokenizer *tok, int max_seq) {
    const rlaif_config *cfg = S->ctx->cfg;
    RLAIF_TRY(rlaif_prompts_train(cfg, S->name, &S->ps));
    if (S->ps.n < 1)
        return RLAIF_ERROR(RLAIF_EX_FAIL, "check data.prompts", "%s: there are no training prompts",
                           S->name);
    rlaif_tokens all = {0};
    S->poff = xmalloc(sizeof(int64_t) * (size_t)(S->ps.n + 1));
    S->poff[0] = 0;
    int64_t longest = 0, which = 0;
    for (int64_t p = 0; p < S->ps.n; p++) {
        RLAIF_TRY(rlaif_format_prompt(tok, &S->chat, S->ps.text[p],
                                      rlaif_cfg_int(cfg, "data.max_prompt_len"), &all));
        S->poff[p + 1] = (int64_t)all.n;
        if (S->poff[p + 1] - S->poff[p] > longest) longest = S->poff[p + 1] - S->poff[p], which = p;
    }
    S->pids = all.ids;
    long want = (long)rlaif_cfg_int(cfg, "ppo.max_new_tokens");
    long room = max_seq - (long)longest;
    if (room < 1)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "lower data.max_prompt_len or use a longer model",
                           "%s: training prompt %lld is %lld tokens, which leaves no room for a "
                           "response in a context of %d",
                           S->name, (long long)which, (long long)longest, max_seq);
    S->W = (int)(want < room ? want : room);
    if (S->W < want)
        rlaif_info("%s: responses capped at %d tokens (ppo.max_new_tokens = %ld): the longest "
                   "prompt has %lld of the context's %d",
                   S->name, S->W, want, (long long)longest, max_seq);
    return 0;
}

/* Buffers of a learner, for S->micro rows: the chunk's and the frozen models' passes. */
static void learner_buffers(pg_run *S, rlaif_learner *L) {
    int R = (int)S->micro;
    if (S->ao.algo == RLAIF_PG_ODPO) {
        rlaif_dpo_buf_init(&S->dbuf, R / 2 > 0 ? R / 2 : 1, L->model.cfg.max_seq_len);
        S->dref = xcalloc((size_t)S->e.N + 1, sizeof(double));
        S->dlabel = xcalloc((size_t)S->e.N / 2 + 1, sizeof(float));
        S->didx = xcalloc((size_t)S->e.N / 2 + 1, sizeof(int64_t));
    }
    rlaif_pg_chunk_buffers(S, R, L->model.cfg.max_seq_len);
    rlaif_lp_init(&S->lp_ref, R, S->ref.cfg.max_seq_len);
    if (!S->judge_reward) rlaif_lp_init(&S->lp_rm, R, S->rm.cfg.max_seq_len);
    S->lp_rm.mask_pad_keys = 1; /* scores as rlaif rm computed them (logprob.h) */
}

/* The experience of N = bs x K sequences of W tokens. */
static void size_experience(pg_run *S) {
    int K = S->e.K;
    rlaif_pg_exp_free(&S->e);
    rlaif_pg_exp_alloc(&S->e, S->bs * K, S->W, K);
}

/* Collective over the learners: the policy with a fresh value head, the
 * frozen models, the prompts, the shapes of the loop. */
static int learner_setup(pg_run *S, rlaif_learner *L, MPI_Comm comm) {
    const rlaif_config *cfg = S->ctx->cfg;
    rlaif_model_source src = {.score_head = 1, .init_from = S->policy_path, .fresh_head = 1};
    RLAIF_TRY(rlaif_learner_init_model(L, cfg, comm, "ppo", &src));
    L->ckpt.name = S->name;
    L->steps = S->iters * S->quantum; /* ppo.steps counts iterations */
    L->oc.total_steps = L->opt.cfg.total_steps = L->steps;
    S->tok = L->tok;
    S->micro = L->micro_batch;
    int rc = rlaif_chat_from_config(&S->chat, cfg, S->policy_path);
    if (!rc) rc = load_frozen(S, L);
    /* log-probs and entropies of the distribution the samples came from */
    L->model.logit_scale = S->ref.logit_scale = S->temperature > 0 ? 1.0f / S->temperature : 1.0f;
    int max_seq = L->model.cfg.max_seq_len;
    if (!rc && !S->judge_reward && S->rm.cfg.max_seq_len < max_seq) max_seq = S->rm.cfg.max_seq_len;
    if (!rc) rc = load_prompts(S, L->tok, max_seq);
    if (!rc) size_experience(S), learner_buffers(S, L);
    return rlaif_agree(comm, rc);
}

/* A rollout rank: its copy of the policy (no value head) and the prompts. */
static int rollout_setup(pg_run *S) {
    RLAIF_TRY(rlaif_policy_load(S->ctx->cfg, S->name, "policy", S->policy_path, &S->sampler,
                                &S->tok, &S->chat));
    return rlaif_prompts_train(S->ctx->cfg, S->name, &S->ps);
}

/* Split layout: the weight broadcast over learner 0 + the rollouts. The
 * value head comes last in the flat block, so the trunk the rollouts
 * sample with is its prefix. */
static int wsync_setup(pg_run *S, rlaif_learner *L, int learner) {
    MPI_Comm w = S->ctx->ranks.weights;
    rlaif_model_config tc = learner ? L->model.cfg : S->sampler.cfg;
    tc.score_head = 0;
    rlaif_tensor_table tt;
    memset(&tt, 0, sizeof tt);
    rlaif_model_table(&tc, &tt);
    size_t n = tt.total;
    rlaif_tensors_free(&tt);
    float *params = learner ? L->model.params : S->sampler.params;
    return rlaif_wsync_init(&S->ws, w, w == MPI_COMM_NULL ? NULL : params, n, (size_t)4 << 20, 0);
}

static void run_free(pg_run *S, rlaif_learner *L, int learner) {
    rlaif_pg_judge_free(S);
    if (S->dbuf.rows) rlaif_dpo_buf_free(&S->dbuf);
    free(S->dref), free(S->dlabel), free(S->didx);
    free(S->pk);
    rlaif_wsync_free(&S->ws);
    rlaif_prompts_free(&S->ps);
    free(S->pids), free(S->poff), free(S->perm), free(S->rows);
    float *f[] = {S->c_old, S->c_oldv, S->c_adv, S->c_ret, S->c_mask, S->c_new,
                  S->c_dl,  S->c_ref,  S->p_dl,  S->p_de,  S->p_dv};
    for (size_t k = 0; k < sizeof f / sizeof *f; k++) free(f[k]);
    rlaif_lp_free(&S->lp), rlaif_lp_free(&S->lp_ref), rlaif_lp_free(&S->lp_rm);
    rlaif_pg_exp_free(&S->e);
    if (S->ref.params) rlaif_model_free(&S->ref);
    if (S->rm.params) rlaif_model_free(&S->rm);
    if (S->sampler.params) rlaif_model_free(&S->sampler);
    if (!learner && S->tok) rlaif_tokenizer_free(S->tok); /* a rollout's or a judge's own */
    rlaif_chat_free(&S->chat);
    if (learner) rlaif_learner_free(L);
}

/* Every rank of the world: set up, agree, then learners train, rollout
 * ranks sample, judge ranks score (d-RLAIF) or have no part. */
static int pg_cmd(rlaif_ctx *ctx, const char *name, rlaif_pg_algo algo) {
    long stop_after;
    RLAIF_TRY(rlaif_phase_args(ctx, name, &stop_after));
    const rlaif_ranks *rk = &ctx->ranks;
    MPI_Comm world = rk->world;
    int learner = rlaif_ranks_has(rk, RLAIF_ROLE_LEARNER);
    int rollout = !rk->colocated && rlaif_ranks_has(rk, RLAIF_ROLE_ROLLOUT);
    int judge = !rk->colocated && rlaif_ranks_has(rk, RLAIF_ROLE_JUDGE);
    pg_run S;
    rlaif_learner L;
    memset(&S, 0, sizeof S), memset(&L, 0, sizeof L);
    S.name = name, S.ctx = ctx, S.split = !rk->colocated, S.jcomm = MPI_COMM_NULL;
    int rc = options(&S, ctx->cfg, algo);
    if (!rc) rc = rlaif_ranks_require(rk, name, 1, 1, S.judge_reward);
    if (!rc && S.judge_reward) rc = rlaif_pump_preflight(ctx->cfg, name);
    if (!rc) rc = policy_source(&S, ctx->cfg);
    if (!rc && learner && !S.judge_reward) rc = rm_source(&S, ctx->cfg);
    rc = rlaif_agree(world, rc);
    if (!rc && learner) rc = learner_setup(&S, &L, rk->group[RLAIF_ROLE_LEARNER]);
    if (!rc && rollout) rc = rollout_setup(&S);
    rc = rlaif_agree(world, rc);
    if (!rc && S.judge_reward) rc = rlaif_agree(world, rlaif_pg_judge_setup(&S, learner, judge));
    int W = S.W; /* learner 0 (world rank 0) decided it from every prompt */
    if (!rc) RLAIF_CHECK_MPI(MPI_Bcast(&W, 1, MPI_INT, 0, world));
    if (!rc && (rollout || (judge && S.judge_reward))) S.W = W, size_experience(&S);
    if (!rc && S.split && (learner || rollout)) rc = wsync_setup(&S, &L, learner);
    rc = rlaif_agree(world, rc);
    if (!rc && learner) {
        rc = rlaif_pg_learner_run(&S, &L, stop_after);
        if (S.split && L.rank == 0) {
            int r2 = rlaif_pg_rollout_release(&S);
            int r3 = S.judge_reward ? rlaif_pg_judge_release(&S) : 0;
            rc = rc ? rc : r2 ? r2 : r3;
        }
    } else if (!rc && rollout) {
        rc = rlaif_pg_rollout_serve(&S);
    } else if (!rc && judge && S.judge_reward) {
        rc = rlaif_pg_judge_serve(&S);
    }
    run_free(&S, &L, learner);
    return rc;
}

/* The registry's check: what options() refuses, before any phase of `rlaif
 * run` starts. */
static int check_algo(const rlaif_config *cfg, const char *name, rlaif_pg_algo algo) {
    pg_run S;
    memset(&S, 0, sizeof S);
    S.name = name;
    int rc = options(&S, cfg, algo);
    rlaif_pg_exp_free(&S.e);
    return rc;
}
int rlaif_ppo_check(const rlaif_config *cfg) {
    return check_algo(cfg, "ppo", RLAIF_PG_PPO);
}
int rlaif_reinforce_check(const rlaif_config *cfg) {
    return check_algo(cfg, "reinforce", RLAIF_PG_REINFORCE);
}
int rlaif_a2c_check(const rlaif_config *cfg) {
    return check_algo(cfg, "a2c", RLAIF_PG_A2C);
}
int rlaif_online_dpo_check(const rlaif_config *cfg) {
    return check_algo(cfg, "online-dpo", RLAIF_PG_ODPO);
}

int rlaif_cmd_ppo(rlaif_ctx *ctx) {
    return pg_cmd(ctx, "ppo", RLAIF_PG_PPO);
}
int rlaif_cmd_reinforce(rlaif_ctx *ctx) {
    return pg_cmd(ctx, "reinforce", RLAIF_PG_REINFORCE);
}
int rlaif_cmd_online_dpo(rlaif_ctx *ctx) {
    return pg_cmd(ctx, "online-dpo", RLAIF_PG_ODPO);
}
int rlaif_cmd_a2c(rlaif_ctx *ctx) {
    return pg_cmd(ctx, "a2c", RLAIF_PG_A2C);
}
