/* rm.c - `rlaif rm`: preference pairs -> token sequences -> the learner loop
 * with a Bradley-Terry loss on the scalar head (rm.h has the definitions).
 *
 * Rank 0 of the learners reads preferences.h5 (a serial read of the whole
 * file) and tokenizes, then broadcasts one flat token array, as sft does:
 * every learner needs every pair over an epoch (batches are drawn from a
 * global shuffle), the texts are small next to the model, and one reader
 * parses once and reports a bad file once. preferences.h5 records no
 * tokenizer identity and its stored tokens are per text (not the model's
 * prompt "\n" response EOS with its truncation), so the texts are always
 * tokenized again with the model's own tokenizer. */
#include "rlaif/rm.h"
#include "rlaif/error.h"
#include "rlaif/h5util.h"
#include "rlaif/log.h"
#include "rlaif/model_io.h"
#include "rlaif/prefs.h"
#include "rlaif/rng.h"
#include "rlaif/task.h"
#include "rlaif/train.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the loss ---- */

/* log s(x), stable for large |x| */
static double log_sigmoid(double x) {
    return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}
static double sigmoid(double x) {
    return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
}

double rlaif_rm_pair_loss(double d, double p, double margin, double *dd) {
    /* d/dx log s(x) = s(-x) */
    *dd = -p * sigmoid(margin - d) + (1 - p) * sigmoid(d + margin);
    return -(p * log_sigmoid(d - margin) + (1 - p) * log_sigmoid(-d - margin));
}

void rlaif_rm_buf_init(rlaif_rm_buf *b, int max_pairs, int T) {
    size_t rows = 2 * (size_t)max_pairs, bt = rows * (size_t)T;
    b->tokens = xmalloc(sizeof(int) * bt);
    b->valid = xmalloc(bt);
    b->dscore = xmalloc(sizeof(float) * bt);
    b->last = xmalloc(sizeof(int) * rows);
    b->max_pairs = max_pairs, b->T = T;
}

void rlaif_rm_buf_free(rlaif_rm_buf *b) {
    free(b->tokens), free(b->valid), free(b->dscore), free(b->last);
    memset(b, 0, sizeof *b);
}

/* Rows 2b (A) and 2b+1 (B) of pair idx[b], right-padded to T: tokens
 * [2B*T], valid [2B*T]. Returns T. */
static int pack_rows(const rlaif_rm_pairs *d, const int64_t *idx, int B, rlaif_rm_buf *buf) {
    int T = 1;
    for (int r = 0; r < 2 * B; r++) {
        int64_t s = 2 * idx[r / 2] + r % 2;
        int len = (int)(d->off[s + 1] - d->off[s]);
        if (len > T) T = len;
    }
    for (int r = 0; r < 2 * B; r++) {
        int64_t s = 2 * idx[r / 2] + r % 2;
        const int32_t *x = d->tok + d->off[s];
        int len = (int)(d->off[s + 1] - d->off[s]);
        for (int t = 0; t < T; t++) {
            buf->tokens[r * T + t] = t < len ? x[t] : 0;
            buf->valid[r * T + t] = t < len;
        }
    }
    return T;
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
    int T = pack_rows(d, idx, B, buf), R = 2 * B;
    /* tokens (2B,T) -> hidden (2B,T,C) -> score (2B,T); reward = score at the last real token */
    RLAIF_TRY(rlaif_model_forward(m, buf->tokens, NULL, buf->valid, R, T));
    RLAIF_TRY(rlaif_model_score_forward(m));
    rlaif_last_index(buf->valid, R, T, buf->last);
    memset(buf->dscore, 0, sizeof(float) * (size_t)R * (size_t)T);
    for (int b = 0; b < B; b++) {
        int ia = 2 * b * T + buf->last[2 * b], ib = (2 * b + 1) * T + buf->last[2 * b + 1];
        double dra, drb;
        pair_terms(m->score[ia], m->score[ib], d->label[idx[b]], N, margin, l2, &dra, &drb, s);
        buf->dscore[ia] = (float)dra, buf->dscore[ib] = (float)drb;
        s->tokens += buf->last[2 * b] + buf->last[2 * b + 1] + 2;
    }
    /* d(loss)/d(score) is nonzero only at the two reward positions of each pair */
    return backward ? rlaif_model_backward(m, NULL, NULL, buf->dscore) : 0;
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

typedef struct {
    int64_t total, unusable, dropped; /* pairs read, without a label, dropped soft labels */
    int64_t human;                    /* pairs of data.human_preferences */
} load_counts;

static void pairs_free(rlaif_rm_pairs *d) {
    free(d->tok), free(d->off), free(d->label), free(d->heldout);
    memset(d, 0, sizeof *d);
}

/* Held out when the prompt's hash, as a number in [0, 1), is below frac:
 * FNV-1a 64 of the text, then a splitmix64 finaliser to spread it. */
static int held_out(const char *prompt, double frac) {
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *c = (const unsigned char *)prompt; *c; c++)
        h = (h ^ *c) * 1099511628211ULL;
    h ^= h >> 30, h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27, h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (double)(h >> 11) * 0x1.0p-53 < frac;
}

typedef struct {
    rlaif_rm_pairs *d;
    rlaif_tokens all;
    size_t cap; /* pairs allocated */
    rlaif_tokenizer *tok;
    long max_prompt, max_response;
    int max_seq_len;
    double eval_fraction;
} loader;

/* Append one sequence (prompt, response) as sequence 2n or 2n+1. */
static int add_seq(loader *ld, const char *prompt, const char *response, int64_t s,
                   const char *where) {
    size_t start = ld->all.n, np;
    RLAIF_TRY(rlaif_format_example(ld->tok, prompt, response, ld->max_prompt, ld->max_response,
                                   &ld->all, &np));
    size_t len = ld->all.n - start;
    if (len > (size_t)ld->max_seq_len)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "lower data.max_prompt_len / data.max_response_len or raise "
                           "model.max_seq_len",
                           "%s: prompt + response + EOS is %zu tokens, more than "
                           "model.max_seq_len = %d",
                           where, len, ld->max_seq_len);
    ld->d->off[s + 1] = (int64_t)ld->all.n;
    return 0;
}

static int add_pair(loader *ld, const char *prompt, const char *a, const char *b, double p,
                    const char *where) {
    rlaif_rm_pairs *d = ld->d;
    if ((size_t)d->n == ld->cap) {
        ld->cap = ld->cap ? 2 * ld->cap : 256;
        d->off = xrealloc(d->off, sizeof(int64_t) * (2 * ld->cap + 1));
        d->label = xrealloc(d->label, sizeof(float) * ld->cap);
        d->heldout = xrealloc(d->heldout, ld->cap);
    }
    if (d->n == 0) d->off[0] = (int64_t)ld->all.n;
    RLAIF_TRY(add_seq(ld, prompt, a, 2 * d->n, where));
    RLAIF_TRY(add_seq(ld, prompt, b, 2 * d->n + 1, where));
    d->label[d->n] = (float)p;
    d->heldout[d->n] = (uint8_t)held_out(prompt, ld->eval_fraction);
    d->n++;
    return 0;
}

/* The label a usable pair trains on (rm.soft_labels), or NaN to skip it. */
static double train_label(double p, const char *mode) {
    if (!(p >= 0 && p <= 1)) return NAN;
    if (p == 0 || p == 1 || !strcmp(mode, "soft")) return p;
    if (!strcmp(mode, "hard") && p != 0.5) return p > 0.5 ? 1 : 0;
    return NAN;
}

static int load_prefs(loader *ld, const char *path, const char *mode, load_counts *c) {
    if (access(path, R_OK) != 0)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                           "run rlaif collect (or rlaif judge --prefs) first, or set "
                           "rm.preferences",
                           "rm: cannot read the preferences '%s': %s", path, strerror(errno));
    rlaif_prefs_data pd;
    int rc = rlaif_prefs_read(path, &pd);
    if (rc) return rlaif_error_context("rm.preferences '%s': ", path), rc;
    for (size_t i = 0; i < pd.npairs && !rc; i++) {
        const rlaif_pair *p = &pd.pairs[i];
        c->total++;
        if (p->status != RLAIF_PAIR_OK || !(p->label >= 0 && p->label <= 1)) {
            c->unusable++;
            continue;
        }
        double y = train_label(p->label, mode);
        if (isnan(y)) {
            c->dropped++;
            continue;
        }
        if (p->prompt_id < 0 || (size_t)p->prompt_id >= pd.prompts.n || p->response_a < 0 ||
            (size_t)p->response_a >= pd.responses.n || p->response_b < 0 ||
            (size_t)p->response_b >= pd.responses.n) {
            rc = RLAIF_ERROR(
                RLAIF_EX_FAIL, "the file is damaged: rebuild it with rlaif prefs merge",
                "%s: pair %lld points past /prompts or /responses", path, (long long)p->pair_id);
            break;
        }
        char *q = rlaif_ragged_text(&pd.prompts, (size_t)p->prompt_id);
        char *a = rlaif_ragged_text(&pd.responses, (size_t)p->response_a);
        char *b = rlaif_ragged_text(&pd.responses, (size_t)p->response_b);
        char where[4200];
        snprintf(where, sizeof where, "%s: pair %lld", path, (long long)p->pair_id);
        rc = add_pair(ld, q, a, b, y, where);
        free(q), free(a), free(b);
    }
    rlaif_prefs_data_free(&pd);
    return rc;
}

static int load_human(loader *ld, const char *path, load_counts *c) {
    size_t n;
    char **texts;
    int rc = rlaif_jsonl_read(path, "prefs", &n, &texts);
    if (rc) return rlaif_error_context("data.human_preferences: "), rc;
    for (size_t i = 0; i < n && !rc; i++) {
        char where[4200];
        snprintf(where, sizeof where, "%s: record %zu", path, i + 1);
        /* A = chosen: label 1 */
        rc = add_pair(ld, texts[3 * i], texts[3 * i + 1], texts[3 * i + 2], 1.0, where);
        c->human++;
    }
    rlaif_jsonl_free(texts, n);
    return rc;
}

/* "<a>/<b>", or b alone when it is absolute (as train.c places files). */
static void join(char *out, size_t n, const char *a, const char *b) {
    if (b[0] == '/' || !*a)
        snprintf(out, n, "%s", b);
    else
        snprintf(out, n, "%s/%s", a, b);
}

static void prefs_path(const rlaif_config *cfg, char *out, size_t n) {
    const char *p = rlaif_cfg_str(cfg, "rm.preferences");
    if (*p)
        snprintf(out, n, "%s", p);
    else
        join(out, n, rlaif_cfg_str(cfg, "run.out_dir"), "preferences.h5");
}

/* Rank 0: every usable pair, tokenized. */
static int load_local(rlaif_rm_pairs *d, rlaif_tokenizer *tok, const rlaif_config *cfg,
                      int max_seq_len, load_counts *c) {
    loader ld = {.d = d,
                 .tok = tok,
                 .max_prompt = (long)rlaif_cfg_int(cfg, "data.max_prompt_len"),
                 .max_response = (long)rlaif_cfg_int(cfg, "data.max_response_len"),
                 .max_seq_len = max_seq_len,
                 .eval_fraction = rlaif_cfg_float(cfg, "rm.eval_fraction")};
    char path[4096];
    prefs_path(cfg, path, sizeof path);
    int rc = load_prefs(&ld, path, rlaif_cfg_str(cfg, "rm.soft_labels"), c);
    const char *human = rlaif_cfg_str(cfg, "data.human_preferences");
    if (!rc && *human) rc = load_human(&ld, human, c);
    d->tok = ld.all.ids;
    if (!rc && d->n == 0)
        rc = RLAIF_ERROR(RLAIF_EX_FAIL,
                         "every pair failed, has no label (NaN) or was dropped by "
                         "rm.soft_labels: check the judge's statuses with rlaif prefs info",
                         "rm: no usable pairs in '%s' (%lld pairs: %lld without a label, %lld "
                         "soft labels dropped)",
                         path, (long long)c->total, (long long)c->unusable, (long long)c->dropped);
    return rc;
}

static int pairs_bcast(rlaif_rm_pairs *d, MPI_Comm comm, int rank) {
    int64_t sizes[2] = {d->n, d->n ? d->off[2 * d->n] : 0};
    RLAIF_CHECK_MPI(MPI_Bcast(sizes, 2, MPI_INT64_T, 0, comm));
    if (sizes[1] > 2147483647LL || 2 * sizes[0] + 1 > 2147483647LL)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "split the preferences",
                           "rm: %lld tokens of pairs exceed one broadcast", (long long)sizes[1]);
    if (rank != 0) {
        d->n = sizes[0];
        d->tok = xmalloc(sizeof(int32_t) * (size_t)(sizes[1] + 1));
        d->off = xmalloc(sizeof(int64_t) * (size_t)(2 * d->n + 1));
        d->label = xmalloc(sizeof(float) * (size_t)(d->n + 1));
        d->heldout = xmalloc((size_t)(d->n + 1));
    }
    RLAIF_CHECK_MPI(MPI_Bcast(d->tok, (int)sizes[1], MPI_INT32_T, 0, comm));
    RLAIF_CHECK_MPI(MPI_Bcast(d->off, (int)(2 * d->n + 1), MPI_INT64_T, 0, comm));
    RLAIF_CHECK_MPI(MPI_Bcast(d->label, (int)d->n, MPI_FLOAT, 0, comm));
    RLAIF_CHECK_MPI(MPI_Bcast(d->heldout, (int)d->n, MPI_UINT8_T, 0, comm));
    return 0;
}

/* ---- the phase ---- */

typedef struct {
    rlaif_rm_pairs data;
    int64_t *train, *eval; /* pair indices of each split */
    int64_t ntrain, neval;
    uint64_t seed;
    int64_t pos;        /* training pairs consumed since the start of the phase */
    int64_t perm_epoch; /* epoch of perm, -1 before the first */
    uint32_t *perm;     /* [ntrain] order of the current epoch */
    double margin, l2;
    rlaif_rm_buf buf;
    /* results of the last validation and reward statistics */
    double eval_loss, eval_acc, reward_mean, reward_std;
    int have_eval, have_stats;
} rm_run;

/* Training pair at global position p of the shuffled stream of epochs. */
static int64_t pair_at(rm_run *S, int64_t p) {
    int64_t n = S->ntrain, epoch = p / n;
    if (epoch != S->perm_epoch) {
        rlaif_rng_permutation(S->seed, RLAIF_STREAM_SHUFFLE, (uint32_t)epoch, S->perm, (uint32_t)n);
        S->perm_epoch = epoch;
    }
    return S->train[S->perm[p % n]];
}

static int rm_batch(rlaif_learner *L, void *ud, rlaif_batch_stats *st) {
    rm_run *S = ud;
    long lo, hi;
    rlaif_learner_share(L, L->batch_size, &lo, &hi);
    /* every learner knows the whole batch, so the global counts need no message */
    double N = (double)L->batch_size, decided = 0;
    for (long j = 0; j < L->batch_size; j++)
        decided += S->data.label[pair_at(S, S->pos + j)] != 0.5f;
    int64_t *ex = xmalloc(sizeof(int64_t) * (size_t)(hi - lo + 1));
    for (long j = lo; j < hi; j++) ex[j - lo] = pair_at(S, S->pos + j);
    rlaif_rm_sums s;
    memset(&s, 0, sizeof s);
    int rc = 0;
    for (long j = lo; j < hi && !rc; j += L->micro_batch) {
        int B = (int)(hi - j < L->micro_batch ? hi - j : L->micro_batch);
        rc = rlaif_rm_micro(&L->model, &S->data, ex + (j - lo), B, N, S->margin, S->l2, 1, &S->buf,
                            &s);
    }
    free(ex);
    S->pos += L->batch_size;
    st->loss = s.loss, st->tokens = s.tokens;
    /* extras are summed over learners: each is this learner's part of a global mean */
    double nd = decided > 0 ? decided : 1;
    st->extra[0] = s.correct / nd;
    st->extra[1] = (s.chosen - s.rejected) / nd;
    st->extra[2] = s.chosen / nd;
    st->extra[3] = s.rejected / nd;
    st->extra[4] = L->rank == 0 ? (double)S->pos / (double)S->ntrain : 0;
    return rc;
}

static const char *const extra_names[] = {"accuracy", "margin", "rewards/chosen",
                                          "rewards/rejected", "epoch"};
static const char *const eval_names[] = {"loss", "accuracy", "margin", "pairs"};

/* Collective: the sums of a forward over pairs idx[0..n) (each learner its
 * share), loss normalised by n, reduced over the learners. */
static int forward_all(rlaif_learner *L, rm_run *S, const int64_t *idx, int64_t n,
                       rlaif_rm_sums *out) {
    long lo, hi;
    rlaif_learner_share(L, (long)n, &lo, &hi);
    rlaif_rm_sums s;
    memset(&s, 0, sizeof s);
    int rc = 0;
    for (long j = lo; j < hi && !rc; j += L->micro_batch) {
        int B = (int)(hi - j < L->micro_batch ? hi - j : L->micro_batch);
        rc = rlaif_rm_micro(&L->model, &S->data, idx + j, B, (double)n, S->margin, S->l2, 0,
                            &S->buf, &s);
    }
    RLAIF_TRY(rlaif_agree(L->comm, rc));
    RLAIF_CHECK_MPI(
        MPI_Allreduce(&s, out, (int)(sizeof s / sizeof(double)), MPI_DOUBLE, MPI_SUM, L->comm));
    return 0;
}

/* Collective: validation on the held-out pairs -> metrics /rm_eval at L->step. */
static int validate(rlaif_learner *L, rm_run *S) {
    if (S->neval == 0) return 0;
    rlaif_rm_sums s;
    RLAIF_TRY(forward_all(L, S, S->eval, S->neval, &s));
    double nd = s.decided > 0 ? s.decided : 1;
    double row[4] = {s.loss, s.correct / nd, (s.chosen - s.rejected) / nd, (double)S->neval};
    S->eval_loss = s.loss, S->eval_acc = row[1], S->have_eval = 1;
    rlaif_info("rm: validation at step %ld: loss %.4f, accuracy %.1f%% (%.0f decided of %lld "
               "held-out pairs), margin %.3f",
               L->step, s.loss, 100 * row[1], s.decided, (long long)S->neval, row[2]);
    return rlaif_agree(L->comm, rlaif_metrics_log(L->metrics, "rm_eval", L->step, row));
}

/* Collective: mean and std of the rewards of every training response (for
 * PPO's reward normalisation), stored in the final checkpoint. */
static int reward_stats(rlaif_learner *L, rm_run *S) {
    rlaif_rm_sums s;
    RLAIF_TRY(forward_all(L, S, S->train, S->ntrain, &s));
    double n = 2.0 * (double)S->ntrain, mean = s.sum_r / n, var = s.sum_r2 / n - mean * mean;
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
    rlaif_kv_set_int(state, "data_pos", S->pos);
    rlaif_kv_set_int(state, "epoch", S->pos / S->ntrain);
    rlaif_kv_set_int(state, "n_train_pairs", S->ntrain);
    rlaif_kv_set_int(state, "eval_pairs", S->neval);
    if (S->have_eval) {
        rlaif_kv_set_double(state, "eval_loss", S->eval_loss);
        rlaif_kv_set_double(state, "eval_accuracy", S->eval_acc);
    }
    if (S->have_stats) {
        rlaif_kv_set_double(state, "reward_mean", S->reward_mean);
        rlaif_kv_set_double(state, "reward_std", S->reward_std);
    }
}

static int rm_load(rlaif_learner *L, void *ud, const rlaif_kvset *state) {
    (void)L;
    rm_run *S = ud;
    return rlaif_kv_get_int(state, "data_pos", &S->pos);
}

/* ---- command ---- */

static int parse_args(const rlaif_ctx *ctx, long *stop_after) {
    *stop_after = 0;
    for (int i = 0; i < ctx->args.nargs; i++) {
        const char *a = ctx->args.args[i];
        char *end;
        if (!strcmp(a, "--stop-after") && i + 1 < ctx->args.nargs) {
            *stop_after = strtol(ctx->args.args[++i], &end, 10);
            if (*end || *stop_after < 1)
                return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif rm --help",
                                   "rm: --stop-after needs a positive step count");
        } else {
            return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif rm --help",
                               "rm: unexpected argument '%s'", a);
        }
    }
    return 0;
}

/* /state done of a checkpoint: 1 done, 0 not done, -1 unreadable. */
static int ckpt_done(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    long long done = 0;
    hid_t g = H5Lexists(f, "state", H5P_DEFAULT) > 0 ? H5Gopen2(f, "state", H5P_DEFAULT) : -1;
    int rc = g >= 0 ? 0 : -1;
    if (g >= 0) {
        if (H5Aexists(g, "done") > 0 && rlaif_h5_read_attr_i64(g, path, "/state", "done", &done))
            rc = -1;
        H5Gclose(g);
    }
    H5Fclose(f);
    return rc < 0 ? rc : done != 0;
}

/* Where the reward model starts (rm.h): model.init_from, the newest
 * finished sft checkpoint, or [model] with rm.from_scratch. */
static int model_source(const rlaif_config *cfg, char *path, size_t n, rlaif_model_source *src) {
    src->score_head = 1;
    src->fresh_head = !strcmp(rlaif_cfg_str(cfg, "rm.head"), "new");
    src->init_from = NULL;
    if (*rlaif_cfg_str(cfg, "model.init_from")) return 0;
    char dir[4096];
    join(dir, sizeof dir, rlaif_cfg_str(cfg, "run.out_dir"), rlaif_cfg_str(cfg, "checkpoint.dir"));
    int64_t *steps = NULL;
    int ns = 0;
    RLAIF_TRY(rlaif_checkpoint_list(dir, "sft", &steps, &ns));
    int found = 0;
    for (int i = 0; i < ns && !found; i++) {
        snprintf(path, n, "%s/sft-%08lld.h5", dir, (long long)steps[i]);
        int done = ckpt_done(path);
        found = done == 1;
        if (!found)
            rlaif_info("rm: %s is %s; looking at older sft checkpoints", path,
                       done < 0 ? "unreadable" : "not a finished sft run");
    }
    free(steps);
    if (found) {
        src->init_from = path;
        return 0;
    }
    if (rlaif_cfg_bool(cfg, "rm.from_scratch")) {
        src->init_from = "";
        return 0;
    }
    return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                       "run rlaif sft first, set model.init_from = a checkpoint, or set "
                       "rm.from_scratch = true to train the reward model from [model]",
                       "rm: no model to start from: model.init_from is empty and %s holds %s "
                       "sft checkpoint",
                       dir, ns ? "no finished" : "no");
}

/* Split the pairs; the run's buffers. */
static int setup_run(rlaif_learner *L, rm_run *S) {
    const rlaif_rm_pairs *d = &S->data;
    S->train = xmalloc(sizeof(int64_t) * (size_t)(d->n + 1));
    S->eval = xmalloc(sizeof(int64_t) * (size_t)(d->n + 1));
    for (int64_t i = 0; i < d->n; i++) {
        if (d->heldout[i])
            S->eval[S->neval++] = i;
        else
            S->train[S->ntrain++] = i;
    }
    if (S->ntrain == 0)
        return RLAIF_ERROR(RLAIF_EX_FAIL, "lower rm.eval_fraction or add prompts",
                           "rm: all %lld usable pairs are held out for validation",
                           (long long)d->n);
    S->perm = xmalloc(sizeof(uint32_t) * (size_t)S->ntrain);
    rlaif_rm_buf_init(&S->buf, (int)L->micro_batch, L->model.cfg.max_seq_len);
    return 0;
}

static int run_phase(rlaif_learner *L, rm_run *S, long stop_after, const char *from) {
    const rlaif_phase ph = {"rm", 5, extra_names, rm_batch, rm_save, rm_load, S};
    int found, done;
    RLAIF_TRY(rlaif_learner_resume(L, &ph, &found, &done));
    if (found && done && L->step >= L->steps) {
        rlaif_info("rm: already complete (%s, step %ld, done); skipping", L->ckpt_path, L->step);
        return 0;
    }
    RLAIF_TRY(rlaif_agree(L->comm, rlaif_metrics_phase(L->metrics, "rm_eval", 4, eval_names)));
    RLAIF_TRY(rlaif_agree(L->comm, rlaif_metrics_rewind(L->metrics, "rm_eval", L->step)));
    if (found)
        rlaif_info("rm: resuming from %s at step %ld/%ld", L->ckpt_path, L->step, L->steps);
    else
        rlaif_info("rm: starting from %s", from);
    rlaif_info("rm: %lld training pairs, %lld held out; %ld steps of %ld pairs on %d "
               "learner(s), micro-batch %ld pairs, %zu parameters",
               (long long)S->ntrain, (long long)S->neval, L->steps, L->batch_size, L->size,
               L->micro_batch, L->model.table.total);
    if (!found) RLAIF_TRY(validate(L, S));
    L->stop_after = stop_after;
    L->before_save = rm_before_save;
    RLAIF_TRY(rlaif_train_run(L, &ph));
    rlaif_info("rm: done; the reward model is %s", L->ckpt_path);
    return 0;
}

static void report_counts(const load_counts *c, const rlaif_rm_pairs *d) {
    int64_t tie = 0, soft = 0;
    for (int64_t i = 0; i < d->n; i++) {
        tie += d->label[i] == 0.5f;
        soft += d->label[i] != 0.0f && d->label[i] != 1.0f;
    }
    rlaif_info("rm: %lld pairs read: %lld usable (%lld with soft labels, %lld ties), %lld without "
               "a label, %lld dropped by rm.soft_labels; %lld human pairs",
               (long long)c->total, (long long)(d->n - c->human), (long long)soft, (long long)tie,
               (long long)c->unusable, (long long)c->dropped, (long long)c->human);
}

int rlaif_cmd_rm(rlaif_ctx *ctx) {
    long stop_after;
    RLAIF_TRY(parse_args(ctx, &stop_after));
    RLAIF_TRY(rlaif_ranks_require(&ctx->ranks, "rm", 1, 0, 0));
    /* rollout and judge ranks have no part in the reward model: they sleep
     * in the phase barrier while the learners train */
    if (!rlaif_ranks_has(&ctx->ranks, RLAIF_ROLE_LEARNER))
        return rlaif_phase_barrier(ctx->ranks.world, 1);
    MPI_Comm comm = ctx->ranks.group[RLAIF_ROLE_LEARNER];
    char from[4096];
    rlaif_model_source src;
    int rc = rlaif_agree(comm, model_source(ctx->cfg, from, sizeof from, &src));
    rlaif_learner L;
    memset(&L, 0, sizeof L);
    if (!rc) rc = rlaif_learner_init_model(&L, ctx->cfg, comm, "rm", &src);
    rm_run S;
    memset(&S, 0, sizeof S);
    S.seed = (uint64_t)rlaif_cfg_int(ctx->cfg, "run.seed");
    S.perm_epoch = -1;
    S.margin = rlaif_cfg_float(ctx->cfg, "rm.margin");
    S.l2 = rlaif_cfg_float(ctx->cfg, "rm.reward_l2");
    load_counts c;
    memset(&c, 0, sizeof c);
    if (!rc)
        rc = rlaif_agree(
            L.comm,
            L.rank == 0 ? load_local(&S.data, L.tok, ctx->cfg, L.model.cfg.max_seq_len, &c) : 0);
    if (!rc && L.rank == 0) report_counts(&c, &S.data);
    if (!rc) rc = pairs_bcast(&S.data, L.comm, L.rank);
    if (!rc) rc = rlaif_agree(L.comm, setup_run(&L, &S));
    const char *what = src.init_from ? (*src.init_from ? src.init_from : "[model] (random weights)")
                                     : rlaif_cfg_str(ctx->cfg, "model.init_from");
    if (!rc) rc = run_phase(&L, &S, stop_after, what);
    free(S.train), free(S.eval), free(S.perm);
    rlaif_rm_buf_free(&S.buf);
    pairs_free(&S.data);
    rlaif_learner_free(&L);
    int brc = rlaif_phase_barrier(ctx->ranks.world, 0);
    return rc ? rc : brc;
}
