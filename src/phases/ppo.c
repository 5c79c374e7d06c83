/* ppo.c - `rlaif ppo`, `rlaif reinforce`, `rlaif a2c` (ppo.h has the
 * iteration): the models, the scoring pass, the minibatch step plugged into
 * the shared learner loop, the hooks, and the commands. Sampling and the
 * rollout ranks' side are in ppo_rollout.c, the advantages in ppo_exp.c,
 * the per-token arithmetic in ppo_loss.c. */
#include "ppo_impl.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/rng.h"
#include "rlaif/core/tensors.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/judge/judge.h"
#include "rlaif/phases/dpo.h"
#include "rlaif/phases/pairs.h"
#include "rlaif/phases/ppo_loss.h"
#include "rlaif/phases/rm.h"
#include "rlaif/storage/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TRL's names where TRL has the quantity: 7 per minibatch, then 11 per
 * iteration (batch_metrics: the objective, lengths, the KL coefficient and
 * the demo task's oracle) */
static const char *const extra_names[] = {"loss/policy",       "loss/value",
                                          "policy/clipfrac",   "policy/approxkl",
                                          "val/clipfrac",      "val/vpred",
                                          "policy/entropy",    "objective/kl",
                                          "objective/entropy", "objective/rlhf_reward",
                                          "objective/scores",  "response_length",
                                          "eos_rate",          "objective/kl_coef",
                                          "oracle/accuracy",   "oracle/rude",
                                          "oracle/rambling",   "oracle/off_topic"};
enum { N_MB_EXTRA = 7, N_EXTRA = (int)(sizeof extra_names / sizeof *extra_names) };
_Static_assert(N_EXTRA - N_MB_EXTRA == sizeof((pg_run *)0)->batch_metrics / sizeof(double),
               "one name per batch metric");
/* online DPO: TRL's DPO names, then the iteration's */
static const char *const odpo_names[] = {
    "loss/dpo",         "rewards/accuracies", "rewards/margins", "rewards/chosen",
    "rewards/rejected", "logps/chosen",       "logps/rejected",  "objective/kl",
    "labelled",         "response_length",    "eos_rate"};
enum { N_ODPO_MB = 7, N_ODPO = (int)(sizeof odpo_names / sizeof *odpo_names) };
_Static_assert(N_EXTRA <= RLAIF_TRAIN_MAX_EXTRA, "the loop's metric columns");

/* ---- scoring: the experience's log-probs, values and scores ---- */

/* dst[i, j] = src at response token j of sequence i, row r of a pass. */
static void take(const rlaif_pg_exp *e, const rlaif_lp_batch *lp, const float *src, int r,
                 int64_t i, float *dst) {
    for (int j = 0; j < e->len[i]; j++)
        dst[(size_t)i * e->W + j] = src[(size_t)r * lp->T + e->plen[i] - 1 + j];
}

/* This learner's share of the sequences through the policy, the reference
 * and the reward model. */
static int score_share(pg_run *S, rlaif_learner *L, long lo, long hi) {
    rlaif_pg_exp *e = &S->e;
    rlaif_seqs s = {e->tok, e->off, e->plen};
    int64_t *rows = S->rows;
    for (long a = lo; a < hi; a += S->micro) {
        int R = (int)(hi - a < S->micro ? hi - a : S->micro);
        for (int r = 0; r < R; r++) rows[r] = a + r;
        RLAIF_TRY(
            rlaif_lp_forward(&L->model, &S->lp, &s, rows, R, RLAIF_LP_LOGP | RLAIF_LP_VALUE, NULL));
        for (int r = 0; r < R; r++) {
            take(e, &S->lp, S->lp.logp, r, a + r, e->logp);
            take(e, &S->lp, S->lp.entropy, r, a + r, e->ent);
            take(e, &S->lp, S->lp.value, r, a + r, e->value);
        }
        RLAIF_TRY(rlaif_lp_forward(&S->ref, &S->lp_ref, &s, rows, R, RLAIF_LP_LOGP, NULL));
        for (int r = 0; r < R; r++) take(e, &S->lp_ref, S->lp_ref.logp, r, a + r, e->ref);
        if (S->judge_reward) continue; /* the judge gives the scores */
        RLAIF_TRY(rlaif_lp_forward(&S->rm, &S->lp_rm, &s, rows, R, RLAIF_LP_VALUE, NULL));
        for (int r = 0; r < R; r++)
            e->raw[a + r] = S->lp_rm.value[(size_t)r * S->lp_rm.T + S->lp_rm.last[r]];
    }
    return 0;
}

/* All-gather of x [N, per] (each learner filled its rows). */
static int gather_rows(rlaif_learner *L, float *x, int N, int per) {
    int *cnt = xmalloc(sizeof(int) * (size_t)L->size),
        *dsp = xmalloc(sizeof(int) * (size_t)L->size);
    for (int r = 0; r < L->size; r++) {
        size_t b, e;
        rlaif_shard_range((size_t)N, L->size, r, &b, &e);
        cnt[r] = (int)(e - b) * per, dsp[r] = (int)b * per;
    }
    int err = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, cnt, dsp, MPI_FLOAT, L->comm);
    free(cnt), free(dsp);
    return err == MPI_SUCCESS ? 0 : rlaif_error_mpi(err, "MPI_Allgatherv", __FILE__, __LINE__);
}

/* Collective over the learners: the whole batch scored on every learner,
 * then the normalised scores. */
static int score_batch(pg_run *S, rlaif_learner *L, long it) {
    rlaif_pg_exp *e = &S->e;
    long lo, hi;
    rlaif_learner_share(L, e->N, &lo, &hi);
    RLAIF_TRY(rlaif_agree(L->comm, score_share(S, L, lo, hi)));
    float *tok_arrays[] = {e->logp, e->ent, e->value, e->ref};
    for (size_t k = 0; k < sizeof tok_arrays / sizeof *tok_arrays; k++)
        RLAIF_TRY(gather_rows(L, tok_arrays[k], e->N, e->W));
    if (S->judge_reward)
        RLAIF_TRY(rlaif_pg_judge_collect(S, L, it, S->pk));
    else
        RLAIF_TRY(gather_rows(L, e->raw, e->N, 1));
    if (S->ao.algo == RLAIF_PG_ODPO) { /* the judge's labels, no scores */
        for (int p = 0; p < e->N / 2; p++) S->dlabel[p] = e->raw[2 * p];
        return 0;
    }
    for (int i = 0; i < e->N; i++) {
        /* a judge's 1..10 onto about -2..2; a response it did not score: 0 */
        e->score[i] = S->judge_reward ? (isnan(e->raw[i]) ? 0.0f : (e->raw[i] - 5.5f) / 2.25f)
                                      : (float)((e->raw[i] - S->rm_mean) / S->rm_std);
        if (!e->eos[i]) e->score[i] -= S->eos_penalty;
    }
    return 0;
}

/* The demo task's oracle on the sampled responses (the builtin judge's
 * criteria): m[0..4) = the share answered right, rude, rambling, off-topic
 * (NaN for other data). Reward hacking shows as a reward that rises while
 * these do not improve. */
static void oracle_rates(const pg_run *S, double *m) {
    for (int k = 0; k < 4; k++) m[k] = NAN;
    if (strcmp(rlaif_cfg_str(S->ctx->cfg, "data.task"), "arithmetic")) return;
    double n[4] = {0, 0, 0, 0};
    for (int i = 0; i < S->e.N; i++) {
        char *t = rlaif_pg_response_text(S, S->pk, i);
        rlaif_flaws f;
        rlaif_builtin_flaws(S->ps.text[rlaif_pg_prompt_of(S, S->it, i / S->e.K)], t, &f);
        n[0] += f.correct, n[1] += f.rude, n[2] += f.rambling, n[3] += f.off_topic;
        free(t);
    }
    for (int k = 0; k < 4; k++) m[k] = n[k] / S->e.N;
}

/* The batch-level metrics of an iteration (objective/..., lengths). */
static void batch_metrics(pg_run *S, double mean_kl) {
    const rlaif_pg_exp *e = &S->e;
    double ent = 0, score = 0, len = 0, eos = 0;
    for (size_t t = 0; t < (size_t)e->N * e->W; t++) ent -= e->logp[t];
    for (int i = 0; i < e->N; i++) score += e->score[i], len += e->len[i], eos += e->eos[i];
    double n = e->N;
    double *m = S->batch_metrics;
    m[0] = mean_kl, m[1] = ent / n, m[2] = score / n - S->ao.kl_coef * mean_kl;
    m[3] = score / n, m[4] = len / n, m[5] = eos / n, m[6] = S->klc.value;
    oracle_rates(S, m + 7);
}

/* ---- the hooks ---- */

/* outer: at an iteration's first step, its experience. */
static int pg_outer(rlaif_learner *L, void *ud) {
    pg_run *S = ud;
    if (L->step % S->quantum) return 0;
    long it = L->step / S->quantum;
    S->it = it;
    double t0 = rlaif_now(), b0 = S->t_bcast;
    RLAIF_TRY(rlaif_pg_collect(S, L, it));
    double t1 = rlaif_now();
    RLAIF_TRY(score_batch(S, L, it));
    /* the KL coefficient goes into the rewards, or (kl_penalty = loss) into the loss */
    S->ao.kl_coef = S->kl_loss ? 0.0f : (float)S->klc.value;
    S->kl_loss_coef = S->kl_loss ? (float)S->klc.value : 0.0f;
    S->mean_kl = rlaif_pg_advantages(&S->e, &S->ao);
    batch_metrics(S, S->mean_kl);
    S->it_t0 = rlaif_now();
    S->it_bcast = S->t_bcast - b0, S->it_gen = t1 - t0 - S->it_bcast, S->it_score = S->it_t0 - t1;
    S->t_sample += t1 - t0, S->t_score += S->it_score;
    return 0;
}

/* after_update: at an iteration's last step, the KL controller. */
static int pg_after_update(rlaif_learner *L, void *ud, const rlaif_step_info *info) {
    (void)info;
    pg_run *S = ud;
    if (L->step % S->quantum) return 0;
    if (S->adaptive_kl) rlaif_kl_ctl_update(&S->klc, S->mean_kl, (double)S->e.N);
    /* The iteration's four parts, for tools/bench/bench-pipeline (per-rank
     * log): generation is the wait for the samples past the broadcast. */
    double train = rlaif_now() - S->it_t0;
    S->t_train += train;
    rlaif_debug("%s: iteration %ld: broadcast %.4f s, generation %.4f s, scoring %.4f s, "
                "training %.4f s",
                S->name, L->step / S->quantum - 1, S->it_bcast, S->it_gen, S->it_score, train);
    return 0;
}

/* ---- one minibatch step ---- */

/* The minibatch rows of step s of an iteration: a permutation per epoch. */
static const uint32_t *minibatch(pg_run *S, long it, long s, int *M) {
    long epoch = s / S->nmb, mb = s % S->nmb;
    if (mb == 0)
        rlaif_rng_permutation(S->seed, RLAIF_STREAM_SHUFFLE,
                              0x40000000u ^ (uint32_t)(it * S->epochs + epoch), S->perm,
                              (uint32_t)S->e.N);
    *M = S->e.N / S->nmb;
    return S->perm + mb * *M;
}

/* Response-coordinate copies of the chunk's rows (k-th row = sequence
 * rows[k]) of the experience arrays, for the loss functions. */
static void chunk_inputs(pg_run *S, const int64_t *rows, int R) {
    const rlaif_pg_exp *e = &S->e;
    size_t W = (size_t)e->W;
    for (int k = 0; k < R; k++) {
        size_t src = (size_t)rows[k] * W, dst = (size_t)k * W;
        memcpy(S->c_old + dst, e->logp + src, sizeof(float) * W);
        memcpy(S->c_oldv + dst, e->value + src, sizeof(float) * W);
        memcpy(S->c_adv + dst, e->adv + src, sizeof(float) * W);
        memcpy(S->c_ret + dst, e->ret + src, sizeof(float) * W);
        memcpy(S->c_mask + dst, e->mask + src, sizeof(float) * W);
        memcpy(S->c_ref + dst, e->ref + src, sizeof(float) * W);
    }
}

void rlaif_pg_chunk_buffers(pg_run *S, int R, int T) {
    int W = S->W;
    rlaif_lp_init(&S->lp, R, T);
    float **cw[] = {&S->c_old,  &S->c_oldv, &S->c_adv, &S->c_ret,
                    &S->c_mask, &S->c_new,  &S->c_dl,  &S->c_ref};
    for (size_t k = 0; k < sizeof cw / sizeof *cw; k++)
        *cw[k] = xcalloc((size_t)R * W + 1, sizeof(float));
    float **ct[] = {&S->p_dl, &S->p_de, &S->p_dv};
    for (size_t k = 0; k < sizeof ct / sizeof *ct; k++)
        *ct[k] = xcalloc((size_t)R * T + 1, sizeof(float));
    S->perm = xmalloc(sizeof(uint32_t) * ((size_t)S->e.N + 1));
    S->rows = xmalloc(sizeof(int64_t) * (size_t)R);
}

/* Chunk response coordinates <-> the pass's [R, T] layout. */
static void to_chunk(const pg_run *S, const int64_t *rows, int R, const float *src, float *dst) {
    const rlaif_pg_exp *e = &S->e;
    memset(dst, 0, sizeof(float) * (size_t)R * (size_t)e->W);
    for (int k = 0; k < R; k++)
        for (int j = 0; j < e->len[rows[k]]; j++)
            dst[(size_t)k * e->W + j] = src[(size_t)k * S->lp.T + e->plen[rows[k]] - 1 + j];
}
static void to_pass(const pg_run *S, const int64_t *rows, int R, const float *src, float *dst) {
    const rlaif_pg_exp *e = &S->e;
    memset(dst, 0, sizeof(float) * (size_t)R * (size_t)S->lp.T);
    for (int k = 0; k < R; k++)
        for (int j = 0; j < e->len[rows[k]]; j++)
            dst[(size_t)k * S->lp.T + e->plen[rows[k]] - 1 + j] = src[(size_t)k * e->W + j];
}

/* ppo.kl_penalty = loss: kl_loss_coef * the masked mean of the per-token
 * KL estimate at the chunk's new log-probs (S->c_new) against the
 * reference's, its gradient added to S->c_dl; returns this chunk's share. */
static double kl_loss(pg_run *S, int n, double count) {
    double loss = 0, c = S->kl_loss_coef / count;
    for (int t = 0; t < n; t++) {
        if (S->c_mask[t] == 0.0f) continue;
        double d = (double)S->c_new[t] - S->c_ref[t]; /* log pi - log ref */
        int k3 = S->ao.kl_estimator == RLAIF_KL_K3;
        loss += c * (k3 ? expm1(-d) + d : d);
        S->c_dl[t] += (float)(c * (k3 ? -expm1(-d) : 1.0));
    }
    return loss;
}

int rlaif_pg_chunk(pg_run *S, rlaif_model *m, const int64_t *rows, int R, double count, double *x,
                   double *ntok) {
    rlaif_pg_exp *e = &S->e;
    rlaif_seqs s = {e->tok, e->off, e->plen};
    int heads = RLAIF_LP_LOGP | (S->vf_coef > 0 ? RLAIF_LP_VALUE : 0);
    RLAIF_TRY(rlaif_lp_forward(m, &S->lp, &s, rows, R, heads, ntok));
    int n = R * e->W;
    chunk_inputs(S, rows, R);
    to_chunk(S, rows, R, S->lp.logp, S->c_new);
    rlaif_ppo_terms pt = rlaif_ppo_policy_loss(S->c_dl, S->c_new, S->c_old, S->c_adv, S->c_mask, n,
                                               count, S->cliprange);
    x[0] += pt.loss, x[2] += pt.clipfrac, x[3] += pt.approxkl;
    if (S->kl_loss_coef > 0) x[0] += kl_loss(S, n, count);
    to_pass(S, rows, R, S->c_dl, S->p_dl);
    to_chunk(S, rows, R, S->lp.entropy, S->c_new);
    for (int t = 0; t < n; t++) {
        x[6] += S->c_mask[t] * S->c_new[t] / count;
        S->c_dl[t] = (float)(-S->ent_coef * S->c_mask[t] / count);
    }
    to_pass(S, rows, R, S->c_dl, S->p_de);
    if (S->vf_coef > 0) {
        to_chunk(S, rows, R, S->lp.value, S->c_new);
        rlaif_ppo_terms vt = rlaif_ppo_value_loss(S->c_dl, S->c_new, S->c_oldv, S->c_ret, S->c_mask,
                                                  n, count, S->cliprange_value, S->vf_coef);
        x[1] += vt.loss, x[4] += vt.clipfrac;
        for (int t = 0; t < n; t++) x[5] += S->c_mask[t] * S->c_new[t] / count;
        to_pass(S, rows, R, S->c_dl, S->p_dv);
    }
    return rlaif_lp_backward(m, &S->lp, S->p_dl, S->ent_coef > 0 ? S->p_de : NULL,
                             S->vf_coef > 0 ? S->p_dv : NULL);
}

/* Online DPO's step: the DPO loss (dpo.c) on the iteration's labelled
 * pairs (sequences 2p, 2p + 1 are pair p's A and B, the layout of
 * rlaif_pairs) against the reference log-probs of the scoring pass. */
static int odpo_batch(rlaif_learner *L, pg_run *S, rlaif_batch_stats *st) {
    rlaif_pg_exp *e = &S->e;
    int P = e->N / 2;
    long nl = 0;
    double nd = 0;
    for (int p = 0; p < P; p++)
        if (!isnan(S->dlabel[p])) S->didx[nl++] = p, nd += S->dlabel[p] != 0.5f;
    for (int i = 0; i < e->N; i++) {
        double r = 0;
        for (int j = 0; j < e->len[i]; j++) r += e->ref[(size_t)i * e->W + j];
        S->dref[i] = r;
    }
    rlaif_pairs d = {.n = P, .tok = e->tok, .off = e->off, .plen = e->plen, .label = S->dlabel};
    long lo, hi;
    rlaif_learner_share(L, nl, &lo, &hi);
    rlaif_dpo_sums sums;
    memset(&sums, 0, sizeof sums);
    for (long a = lo; a < hi; a += S->dbuf.max_pairs) {
        int B = (int)(hi - a < S->dbuf.max_pairs ? hi - a : S->dbuf.max_pairs);
        RLAIF_TRY(rlaif_dpo_micro(&L->model, &d, S->dref, S->didx + a, B, nl > 0 ? (double)nl : 1,
                                  &S->lf, 1, &S->dbuf, &sums));
    }
    double q = nd > 0 ? nd : 1;
    double x[N_ODPO] = {sums.loss,
                        sums.correct / q,
                        (sums.chosen - sums.rejected) / q,
                        sums.chosen / q,
                        sums.rejected / q,
                        sums.logp_chosen / q,
                        sums.logp_rejected / q};
    if (L->rank == 0) {
        x[7] = S->batch_metrics[0], x[8] = (double)nl / P;
        x[9] = S->batch_metrics[4], x[10] = S->batch_metrics[5];
    }
    st->loss = sums.loss, st->tokens = sums.tokens;
    for (int k = 0; k < N_ODPO; k++) st->extra[k] = x[k];
    return 0;
}

static int pg_batch(rlaif_learner *L, void *ud, rlaif_batch_stats *st) {
    pg_run *S = ud;
    if (S->ao.algo == RLAIF_PG_ODPO) return odpo_batch(L, S, st);
    long it = L->step / S->quantum, s = L->step % S->quantum;
    int M;
    const uint32_t *mb = minibatch(S, it, s, &M);
    double count = 0;
    for (int k = 0; k < M; k++) count += S->e.len[mb[k]];
    long lo, hi;
    rlaif_learner_share(L, M, &lo, &hi);
    int64_t *rows = S->rows;
    double x[N_MB_EXTRA] = {0}, ntok = 0;
    for (long a = lo; a < hi; a += S->micro) {
        int R = (int)(hi - a < S->micro ? hi - a : S->micro);
        for (int r = 0; r < R; r++) rows[r] = mb[a + r];
        RLAIF_TRY(rlaif_pg_chunk(S, &L->model, rows, R, count > 0 ? count : 1, x, &ntok));
    }
    st->loss = x[0] + S->vf_coef * x[1] - S->ent_coef * x[6];
    st->tokens = ntok;
    for (int k = 0; k < N_MB_EXTRA; k++) st->extra[k] = x[k];
    for (int k = 0; k < N_EXTRA - N_MB_EXTRA; k++)
        st->extra[N_MB_EXTRA + k] = L->rank == 0 ? S->batch_metrics[k] : 0;
    return 0;
}

/* ---- checkpoint state ---- */

static void pg_save(const rlaif_learner *L, void *ud, rlaif_kvset *state) {
    (void)L;
    const pg_run *S = ud;
    rlaif_kv_set_double(state, "kl_coef", S->klc.value);
    rlaif_kv_set_double(state, "baseline", S->ao.moving);
    rlaif_kv_set_int(state, "iterations", L->step / S->quantum);
}

static int pg_load(rlaif_learner *L, void *ud, const rlaif_kvset *state) {
    pg_run *S = ud;
    if (L->step % S->quantum)
        return RLAIF_ERROR(RLAIF_EX_FAIL, "remove it: checkpoints are written between iterations",
                           "%s: checkpoint at step %ld is inside an iteration of %ld steps",
                           S->name, L->step, S->quantum);
    RLAIF_TRY(rlaif_kv_get_double(state, "kl_coef", &S->klc.value));
    return rlaif_kv_get_double(state, "baseline", &S->ao.moving);
}

/* ---- the learner side of the phase ---- */

static int pg_prepare(rlaif_learner *L, void *ud, int found) {
    pg_run *S = ud;
    if (!found) rlaif_info("%s: starting from %s (policy and reference)", S->name, S->policy_path);
    if (S->judge_reward)
        rlaif_info("%s: the reward is the judge's score of each response (d-RLAIF)", S->name);
    else
        rlaif_info("%s: reward model %s (score normalised by mean %.4f, std %.4f)", S->name,
                   S->rm_path, S->rm_mean, S->rm_std);
    rlaif_info("%s: %ld iterations of %d prompts x %d samples (%d tokens at most each), %ld "
               "epoch(s) x %ld minibatch(es) per iteration on %d learner(s) (%s sampling), "
               "%zu parameters with the value head",
               S->name, S->iters, S->bs, S->e.K, S->W, S->epochs, S->nmb, L->size,
               S->split ? "rollout ranks" : "colocated", L->model.table.total);
    return 0;
}

static int pg_after(rlaif_learner *L, void *ud) {
    pg_run *S = ud;
    rlaif_info("%s: time in sampling %.1f s, scoring %.1f s, training %.1f s (this process; "
               "weight broadcast %.2f s of the sampling)",
               S->name, S->t_sample, S->t_score, S->t_train, S->t_bcast);
    (void)L;
    return 0;
}

int rlaif_pg_learner_run(pg_run *S, rlaif_learner *L, long stop_after) {
    static const char *const no_eval[] = {NULL};
    rlaif_learner_hooks hooks = {pg_outer, pg_after_update, S};
    L->hooks = &hooks;
    L->quantum = S->quantum;
    rlaif_learner_phase lp = {
        .ph = {S->name, S->ao.algo == RLAIF_PG_ODPO ? N_ODPO : N_EXTRA,
               S->ao.algo == RLAIF_PG_ODPO ? odpo_names : extra_names, pg_batch, pg_save, pg_load,
               S},
        .eval_table = NULL,
        .n_eval = 0,
        .eval_names = no_eval,
        .result = "the policy",
        .prepare = pg_prepare,
        .after = pg_after,
    };
    int rc = rlaif_learner_phase_run(L, &lp, stop_after);
    L->hooks = NULL;
    return rc;
}
