/* rm.c - `rlaif rm`: preference pairs -> token sequences -> the learner loop
 * with a Bradley-Terry loss on the scalar head (rm.h has the definitions).
 *
 * The pairs are read, split and tokenized by pairs.c (shared with dpo). */
#include "rlaif/phases/rm.h"
#include "rlaif/core/error.h"
#include "rlaif/core/h5util.h"
#include "rlaif/core/log.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/core/rng.h"
#include "rlaif/phases/task.h"
#include "rlaif/phases/train.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the loss ---- */

double rlaif_rm_pair_loss(double d, double p, double margin, double *dd) {
    /* d/dx log s(x) = s(-x) */
    *dd = -p * rlaif_sigmoid(margin - d) + (1 - p) * rlaif_sigmoid(d + margin);
    return -(p * rlaif_log_sigmoid(d - margin) + (1 - p) * rlaif_log_sigmoid(-d - margin));
}

void rlaif_rm_buf_init(rlaif_rm_buf *b, int max_pairs, int T) {
    size_t rows = 2 * (size_t)max_pairs, bt = rows * (size_t)T;
    rlaif_lp_init(&b->pass, 2 * max_pairs, T);
    b->pass.mask_pad_keys = 1; /* rewards bit-identical to earlier rm runs (logprob.h) */
    b->rows = xmalloc(sizeof(int64_t) * rows);
    b->dscore = xmalloc(sizeof(float) * bt);
    b->max_pairs = max_pairs, b->T = T;
}

void rlaif_rm_buf_free(rlaif_rm_buf *b) {
    rlaif_lp_free(&b->pass);
    free(b->rows), free(b->dscore);
    memset(b, 0, sizeof *b);
}

/* Loss, gradient d(loss)/d(r) and the sums of pair b from its two rewards. */
static void pair_terms(double ra, double rb, double p, double N, double margin, double l2,
                       double *dra, double *drb, rlaif_rm_sums *s) {
    double dd, bt = rlaif_rm_pair_loss(ra - rb, p, margin, &dd);
    /* sum(bt)/N + l2 * sum(r^2) / (2N) */
    s->loss += bt / N + l2 * (ra * ra + rb * rb) / (2 * N);
    *dra = dd / N + l2 * ra / N;
    *drb = -dd / N + l2 * rb / N;
    if (p != 0.5) {
        double rw = p > 0.5 ? ra : rb, rl = p > 0.5 ? rb : ra;
        s->decided += 1, s->correct += rw > rl;
        s->chosen += rw, s->rejected += rl;
    }
    s->sum_r += ra + rb, s->sum_r2 += ra * ra + rb * rb;
}

int rlaif_rm_micro(rlaif_model *m, const rlaif_rm_pairs *d, const int64_t *idx, int B, double N,
                   double margin, double l2, int backward, rlaif_rm_buf *buf, rlaif_rm_sums *s) {
    if (B > buf->max_pairs)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "rm: micro-batch of %d pairs > buffer %d", B,
                           buf->max_pairs);
    /* rows 2b (A) and 2b+1 (B) of pair idx[b] -> score (2B,T); reward = the
     * score at the last token of each row */
    int R = 2 * B;
    for (int r = 0; r < R; r++) buf->rows[r] = 2 * idx[r / 2] + r % 2;
    rlaif_seqs seqs = {d->tok, d->off, NULL};
    RLAIF_TRY(rlaif_lp_forward(m, &buf->pass, &seqs, buf->rows, R, RLAIF_LP_VALUE, NULL));
    int T = buf->pass.T;
    const int *last = buf->pass.last;
    const float *score = buf->pass.value;
    memset(buf->dscore, 0, sizeof(float) * (size_t)R * (size_t)T);
    for (int b = 0; b < B; b++) {
        int ia = 2 * b * T + last[2 * b], ib = (2 * b + 1) * T + last[2 * b + 1];
        double dra, drb;
        pair_terms(score[ia], score[ib], d->label[idx[b]], N, margin, l2, &dra, &drb, s);
        buf->dscore[ia] = (float)dra, buf->dscore[ib] = (float)drb;
        s->tokens += last[2 * b] + last[2 * b + 1] + 2;
    }
    /* d(loss)/d(score) is nonzero only at the two reward positions of each pair */
    return backward ? rlaif_lp_backward(m, &buf->pass, NULL, NULL, buf->dscore) : 0;
}

/* /state attribute name of path as a double, NaN when it is missing. */
static double state_f64(hid_t f, const char *name) {
    double v = NAN;
    if (H5Lexists(f, "state", H5P_DEFAULT) <= 0) return v;
    hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
    if (g < 0) return v;
    if (H5Aexists(g, name) > 0 && rlaif_h5_get_attr_f64(g, name, &v)) v = NAN;
    H5Gclose(g);
    return v;
}

int rlaif_rm_load(const char *path, rlaif_model *m, double *reward_mean, double *reward_std) {
    int rc = rlaif_model_load(path, m);
    if (rc) return rlaif_error_context("reward model '%s': ", path), rc;
    if (!m->cfg.score_head) {
        rlaif_model_free(m);
        return RLAIF_ERROR(RLAIF_EX_USAGE, "give the rm-*.h5 checkpoint that rlaif rm wrote",
                           "reward model '%s' has no scalar head: it is not a reward model", path);
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        rlaif_model_free(m);
        return rlaif_error_h5("H5Fopen", __FILE__, __LINE__, "check that the file is readable");
    }
    *reward_mean = state_f64(f, "reward_mean");
    *reward_std = state_f64(f, "reward_std");
    H5Fclose(f);
    return 0;
}

/* ---- data ---- */

/* ---- the phase ---- */

typedef struct {
    rlaif_rm_pairs data;
    rlaif_pair_stream st; /* split and shuffled training stream */
    double margin, l2;
    rlaif_rm_buf buf;
    /* results of the last validation and reward statistics */
    double eval_loss, eval_acc, reward_mean, reward_std;
    int have_eval, have_stats;
    const char *from;     /* the model it starts from, for the start line */
    rlaif_model *model;   /* the learner's model */
    rlaif_pair_pass pass; /* rm_micro on the run */
    rlaif_rm_sums sums;   /* of the last batch */
} rm_run;

/* rlaif_pair_pass.micro of the run (sums: an rlaif_rm_sums). */
static int rm_micro(void *ud, const int64_t *ex, int B, double N, int train, double *sums) {
    rm_run *S = ud;
    rlaif_rm_sums *s = (rlaif_rm_sums *)sums;
    return rlaif_rm_micro(S->model, &S->data, ex, B, N, S->margin, S->l2, train, &S->buf, s);
}
_Static_assert(offsetof(rlaif_rm_sums, loss) == 0 &&
                   offsetof(rlaif_rm_sums, tokens) == sizeof(rlaif_rm_sums) - sizeof(double),
               "rlaif_pair_pass: the loss is the first of the sums, the tokens the last");

static int rm_batch(rlaif_learner *L, void *ud, rlaif_batch_stats *st) {
    rm_run *S = ud;
    double nd;
    int rc = rlaif_pair_batch(L, &S->st, S->data.label, &S->pass, (double *)&S->sums, st, &nd);
    const rlaif_rm_sums *s = &S->sums;
    /* extras are summed over learners: each is this learner's part of a global mean */
    st->extra[0] = s->correct / nd;
    st->extra[1] = (s->chosen - s->rejected) / nd;
    st->extra[2] = s->chosen / nd;
    st->extra[3] = s->rejected / nd;
    st->extra[4] = L->rank == 0 ? (double)S->st.pos / (double)S->st.ntrain : 0;
    return rc;
}

static const char *const extra_names[] = {"accuracy", "margin", "rewards/chosen",
                                          "rewards/rejected", "epoch"};
static const char *const eval_names[] = {"loss", "accuracy", "margin", "pairs"};

/* Collective: the sums of a forward over pairs idx[0..n), reduced over the learners. */
static int forward_all(rlaif_learner *L, rm_run *S, const int64_t *idx, int64_t n,
                       rlaif_rm_sums *out) {
    return rlaif_pair_forward_all(L, idx, n, &S->pass, (double *)out);
}

/* Collective: validation on the held-out pairs -> metrics /rm_eval at L->step. */
static int validate(rlaif_learner *L, rm_run *S) {
    if (S->st.neval == 0) return 0;
    rlaif_rm_sums s;
    RLAIF_TRY(forward_all(L, S, S->st.eval, S->st.neval, &s));
    double nd = s.decided > 0 ? s.decided : 1;
    double row[4] = {s.loss, s.correct / nd, (s.chosen - s.rejected) / nd, (double)S->st.neval};
    S->eval_loss = s.loss, S->eval_acc = row[1], S->have_eval = 1;
    rlaif_info("rm: validation at step %ld: loss %.4f, accuracy %.1f%% (%.0f decided of %lld "
               "held-out pairs), margin %.3f",
               L->step, s.loss, 100 * row[1], s.decided, (long long)S->st.neval, row[2]);
    return rlaif_agree(L->comm, rlaif_metrics_log(L->metrics, "rm_eval", L->step, row));
}

/* Collective: mean and std of the rewards of every training response (for
 * PPO's reward normalisation), stored in the final checkpoint. */
static int reward_stats(rlaif_learner *L, rm_run *S) {
    rlaif_rm_sums s;
    RLAIF_TRY(forward_all(L, S, S->st.train, S->st.ntrain, &s));
    double n = 2.0 * (double)S->st.ntrain, mean = s.sum_r / n, var = s.sum_r2 / n - mean * mean;
    S->reward_mean = mean, S->reward_std = sqrt(var > 0 ? var : 0), S->have_stats = 1;
    rlaif_info("rm: rewards of the %.0f training responses: mean %.4f, std %.4f", n, mean,
               S->reward_std);
    return 0;
}

static int rm_before_save(rlaif_learner *L, void *ud, int done) {
    rm_run *S = ud;
    RLAIF_TRY(validate(L, S));
    return done ? reward_stats(L, S) : 0;
}

static void rm_save(const rlaif_learner *L, void *ud, rlaif_kvset *state) {
    (void)L;
    const rm_run *S = ud;
    rlaif_pair_phase_save(&S->st, S->have_eval, S->eval_loss, S->eval_acc, state);
    if (S->have_stats) {
        rlaif_kv_set_double(state, "reward_mean", S->reward_mean);
        rlaif_kv_set_double(state, "reward_std", S->reward_std);
    }
}

static int rm_load(rlaif_learner *L, void *ud, const rlaif_kvset *state) {
    (void)L;
    rm_run *S = ud;
    return rlaif_pair_stream_load(&S->st, state);
}

/* ---- command ---- */

/* Where the reward model starts (rm.h): model.init_from, the newest
 * finished sft checkpoint, or [model] with rm.from_scratch. */
static int model_source(const rlaif_config *cfg, char *path, size_t n, rlaif_model_source *src) {
    src->score_head = 1;
    src->fresh_head = !strcmp(rlaif_cfg_str(cfg, "rm.head"), "new");
    src->init_from = NULL;
    if (*rlaif_cfg_str(cfg, "model.init_from")) return 0;
    char dir[4096];
    int found, ns;
    RLAIF_TRY(rlaif_find_sft_model(cfg, "rm", path, n, dir, sizeof dir, &found, &ns));
    if (found || rlaif_cfg_bool(cfg, "rm.from_scratch")) {
        src->init_from = found ? path : ""; /* "": [model], random weights */
        return 0;
    }
    return rlaif_no_sft_model("rm",
                              "run rlaif sft first, set model.init_from = a checkpoint, or set "
                              "rm.from_scratch = true to train the reward model from [model]",
                              dir, ns);
}

/* Split the pairs; the run's buffers. */
static int setup_run(rlaif_learner *L, rm_run *S) {
    const rlaif_rm_pairs *d = &S->data;
    RLAIF_TRY(rlaif_pair_stream_init(&S->st, d, (uint64_t)rlaif_cfg_int(L->cfg, "run.seed"), "rm"));
    rlaif_rm_buf_init(&S->buf, (int)L->micro_batch, L->model.cfg.max_seq_len);
    S->pass = (rlaif_pair_pass){rm_micro, S, (int)(sizeof S->sums / sizeof(double))};
    return 0;
}

static int rm_prepare(rlaif_learner *L, void *ud, int found) {
    const rm_run *S = ud;
    if (!found) rlaif_info("rm: starting from %s", S->from);
    rlaif_info("rm: %lld training pairs, %lld held out; %ld steps of %ld pairs on %d "
               "learner(s), micro-batch %ld pairs, %zu parameters",
               (long long)S->st.ntrain, (long long)S->st.neval, L->steps, L->batch_size, L->size,
               L->micro_batch, L->model.table.total);
    return found ? 0 : validate(L, ud);
}

static int run_phase(rlaif_learner *L, rm_run *S, long stop_after) {
    const rlaif_phase ph = {"rm", 5, extra_names, rm_batch, rm_save, rm_load, S};
    return rlaif_pair_phase_run(L, &ph, 4, eval_names, "the reward model", rm_prepare,
                                rm_before_save, stop_after);
}

int rlaif_cmd_rm(rlaif_ctx *ctx) {
    long stop_after;
    MPI_Comm comm;
    RLAIF_TRY(rlaif_learner_phase_enter(ctx, "rm", &stop_after, &comm));
    if (comm == MPI_COMM_NULL) return 0; /* no part in the reward model */
    char from[4096];
    rlaif_model_source src;
    int rc = rlaif_agree(comm, model_source(ctx->cfg, from, sizeof from, &src));
    rlaif_learner L;
    memset(&L, 0, sizeof L);
    if (!rc) rc = rlaif_learner_init_model(&L, ctx->cfg, comm, "rm", &src);
    rm_run S;
    memset(&S, 0, sizeof S);
    S.margin = rlaif_cfg_float(ctx->cfg, "rm.margin");
    S.l2 = rlaif_cfg_float(ctx->cfg, "rm.reward_l2");
    if (!rc) rc = rlaif_pairs_load_all(&S.data, &L, "rm");
    if (!rc) rc = rlaif_agree(L.comm, setup_run(&L, &S));
    S.from = src.init_from ? (*src.init_from ? src.init_from : "[model] (random weights)")
                           : rlaif_cfg_str(ctx->cfg, "model.init_from");
    S.model = &L.model;
    if (!rc) rc = run_phase(&L, &S, stop_after);
    rlaif_pair_stream_free(&S.st);
    rlaif_rm_buf_free(&S.buf);
    rlaif_pairs_free(&S.data);
    rlaif_learner_free(&L);
    return rc;
}
