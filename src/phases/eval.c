/* eval.c - `rlaif eval`: the policy and a baseline answer held-out prompts,
 * the judge compares each pair in both orders, win rate with a confidence
 * interval; beside it the length-controlled win rate (eval_lc.c), response
 * lengths, the policy's KL to the baseline on its own answers and, on the
 * arithmetic task, the oracle's flaw rates of both models. The design (and
 * why it does not run collect's pull protocol) is in
 * include/rlaif/phases/eval.h. */
#include "rlaif/phases/eval.h"
#include "rlaif/phases/layout.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/log.h"
#include "rlaif/phases/registry.h"
#include "rlaif/core/rng.h"
#include "rlaif/core/stop.h"
#include "rlaif/engine/logprob.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/judge/judge.h"
#include "rlaif/phases/mailbox.h"
#include "rlaif/phases/pump.h"
#include "rlaif/phases/rollout.h"
#include "rlaif/phases/task.h"
#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/h5util.h"
#include "rlaif/storage/metrics.h"
#include "rlaif/storage/prefs.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { GEN_BATCH = 64 }; /* sequences per generation batch */
enum { NOUT = 7 };       /* per pair: label, outcome[2], consistent, status, calls, replayed */

typedef struct {
    int64_t n, judged, wins, losses, ties, failed, identical;
    int64_t two_orders, consistent, verdicts, first;
    double calls, replayed, win_rate, lo, hi;
    int64_t right[2], decided, agree_n, agree;
    int64_t status[RLAIF_PUMP_NSTATUS], unanswered; /* of the failed pairs */
    double len[2], kl;                              /* mean bytes per answer; mean KL */
    rlaif_lc lc;                                    /* length-controlled win rate */
    int64_t flaw[2][4]; /* arithmetic task: answers with each RLAIF_FLAW_* bit */
} eval_stats;

typedef struct {
    const rlaif_config *cfg;
    rlaif_ranks *rk;
    MPI_Comm world;
    int rank, is_rollout, is_judge;
    int64_t n;
    char **prompt;     /* [n] */
    rlaif_arith *prob; /* [n] arithmetic task, else NULL */
    char **resp[2];    /* [2][n]: policy, baseline; on every rank after generation */
    double *out;       /* [n * NOUT] judge outcomes, on every rank after judging */
    int32_t **ids;     /* [n] the policy's answer tokens (EOS included), this rank's share */
    int *nids;         /* [n] their counts */
    double *lp[2];     /* [n] log p(policy's answer) under policy, baseline; every rank */
    int vocab[2];      /* vocabulary sizes: a KL needs both models to read the same ids */
    char model[2][4096], path[4096], *signature, summary[16384];
    eval_stats st;
} eval_run;

void rlaif_wilson(double k, double n, double z, double *lo, double *hi) {
    if (n <= 0) {
        *lo = NAN, *hi = NAN;
        return;
    }
    double p = k / n, z2 = z * z, d = 1 + z2 / n;
    double c = (p + z2 / (2 * n)) / d, h = z / d * sqrt(p * (1 - p) / n + z2 / (4 * n * n));
    *lo = c - h > 0 ? c - h : 0, *hi = c + h < 1 ? c + h : 1; /* rounding: -0.0000 */
}

/* ------------------------------------------------------------- models */

/* The newest finished checkpoint of phase into path; 0 and *found. */
static int newest_finished(const rlaif_config *cfg, const char *phase, char *path, size_t n,
                           int *found) {
    char dir[4096];
    int count;
    rlaif_out_ckpt_dir(cfg, dir, sizeof dir);
    return rlaif_checkpoint_newest_done(dir, phase, "eval", path, n, found, &count);
}

/* A phase that leaves learner checkpoints (the registry: it needs learners). */
static int is_phase(const char *s) {
    const rlaif_phase_def *p = rlaif_phase_find(s);
    return p && p->needs[RLAIF_ROLE_LEARNER];
}

/* t (seconds since the epoch) as "2026-12-01T17:44:37.955Z". */
static void utc_ms(double t, char *buf, size_t n) {
    time_t sec = (time_t)t;
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t len = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + len, n - len, ".%03dZ", (int)((t - (double)sec) * 1000));
}

/* eval.policy = "": of the registry's policy phases, the finished checkpoint
 * written last. Its /state saved_at orders them, not the step (steps of
 * different phases do not compare) nor the file's mtime (a copy of the
 * out_dir renews every mtime; saved_at travels inside the file). A tie
 * (same microsecond, or two old files stamped in the same second) goes to
 * the phase listed first (the higher policy_rank). why: the reason, for the
 * log. */
static int newest_policy(const rlaif_config *cfg, char *path, size_t n, char *why, size_t nwhy,
                         int *found) {
    const char *phase[16];
    int np = rlaif_phase_policies(phase, 16);
    double best = 0;
    size_t len = 0;
    *found = 0;
    for (int i = 0; i < np; i++) {
        char p[4096];
        int f = 0;
        rlaif_ckpt_info in;
        RLAIF_TRY(newest_finished(cfg, phase[i], p, sizeof p, &f));
        if (!f || rlaif_checkpoint_info(p, &in) != 0) continue;
        char at[64];
        utc_ms(in.saved_at, at, sizeof at);
        if (len < nwhy)
            len += (size_t)snprintf(why + len, nwhy - len, "%s%s saved %s", len ? ", " : "",
                                    phase[i], at);
        if (!*found || in.saved_at > best) snprintf(path, n, "%s", p), best = in.saved_at;
        *found = 1;
    }
    return 0;
}

/* eval.policy or eval.baseline (rank 0): "" = the newest finished policy
 * (newest_policy); a phase name = its newest finished checkpoint; else a
 * path. why (may be NULL) receives how it was chosen. */
static int resolve_model(const rlaif_config *cfg, const char *key, char *path, size_t n, char *why,
                         size_t nwhy) {
    const char *v = rlaif_cfg_str(cfg, key);
    char reason[1024] = "";
    int found = 0;
    if (*v && !is_phase(v)) {
        if (access(v, R_OK) != 0)
            return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                               "give a checkpoint file or a phase name (sft, dpo, ppo)",
                               "eval: %s: cannot read checkpoint '%s'", key, v);
        snprintf(path, n, "%s", v);
        snprintf(reason, sizeof reason, "a checkpoint path");
        found = 1;
    } else if (*v) {
        RLAIF_TRY(newest_finished(cfg, v, path, n, &found));
        snprintf(reason, sizeof reason, "the newest finished %s checkpoint", v);
    } else {
        char all[900] = "";
        RLAIF_TRY(newest_policy(cfg, path, n, all, sizeof all, &found));
        snprintf(reason, sizeof reason, "the finished policy saved last, of: %s", all);
    }
    if (!found) {
        char dir[4096];
        rlaif_out_ckpt_dir(cfg, dir, sizeof dir);
        return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                           "run (or finish) the training phase first, or set the key to a "
                           "checkpoint path",
                           "eval: %s = '%s': no finished %s checkpoint in %s", key, v,
                           *v ? v : "ppo, dpo or sft", dir);
    }
    if (why) snprintf(why, nwhy, "%s", reason);
    return 0;
}

/* ------------------------------------------------------------ prompts */

/* The last n records of eval.prompts (default data.prompts). */
static int load_jsonl_prompts(eval_run *E) {
    const char *path = rlaif_cfg_str(E->cfg, "eval.prompts");
    if (!*path) path = rlaif_cfg_str(E->cfg, "data.prompts");
    if (!*path)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set eval.prompts = prompts.jsonl",
                           "eval: data.task = jsonl but eval.prompts and data.prompts are empty");
    char **t = NULL;
    size_t nt = 0;
    int rc = rlaif_jsonl_read(path, "prompts", &nt, &t);
    if (rc) return rlaif_error_context("eval.prompts: "), rc;
    size_t from = nt > (size_t)E->n ? nt - (size_t)E->n : 0;
    E->n = (int64_t)(nt - from);
    E->prompt = xcalloc((size_t)E->n + 1, sizeof(char *));
    for (size_t i = from; i < nt; i++) E->prompt[i - from] = xstrdup(t[3 * i]);
    rlaif_jsonl_free(t, nt);
    if (E->n == 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "add {\"prompt\"} lines", "eval: %s holds no prompts",
                           path);
    return 0;
}

static int load_prompts(eval_run *E) {
    E->n = rlaif_cfg_int(E->cfg, "eval.n_prompts");
    if (!strcmp(rlaif_cfg_str(E->cfg, "data.task"), "jsonl")) return load_jsonl_prompts(E);
    rlaif_task t;
    RLAIF_TRY(rlaif_task_from_cfg(&t, E->cfg));
    E->prompt = xcalloc((size_t)E->n + 1, sizeof(char *));
    E->prob = xcalloc((size_t)E->n + 1, sizeof *E->prob);
    for (int64_t i = 0; i < E->n; i++) {
        char q[96];
        rlaif_task_heldout(&t, i, &E->prob[i]);
        rlaif_task_prompt(&E->prob[i], q, sizeof q);
        E->prompt[i] = xstrdup(q);
    }
    rlaif_task_free(&t);
    return 0;
}

/* --------------------------------------------------------- generation */

/* Prompts [lo, hi) answered by r into texts[lo, hi). */
static int answer_batch(eval_run *E, const rlaif_rollout *r, int64_t lo, int64_t hi, char **texts) {
    int B = (int)(hi - lo);
    int64_t ids[GEN_BATCH];
    for (int b = 0; b < B; b++) ids[b] = lo + b; /* the prompt, not the slot: any rank count */
    rlaif_rollout_batch out;
    RLAIF_TRY(rlaif_rollout_sample(r, B, (const char *const *)E->prompt + lo, ids, 1, &out));
    for (int b = 0; b < B; b++) texts[lo + b] = out.text[b], out.text[b] = NULL;
    for (int b = 0; texts == E->resp[0] && b < B; b++) { /* the policy's: for the KL */
        E->nids[lo + b] = out.length[b];
        E->ids[lo + b] = xmalloc(sizeof(int32_t) * (size_t)(out.length[b] + 1));
        for (int t = 0; t < out.length[b]; t++)
            E->ids[lo + b][t] = out.tokens[(size_t)b * (size_t)out.max_new + (size_t)t];
    }
    rlaif_rollout_batch_free(&out);
    return 0;
}

/* log p(policy's answer i | prompt i) under m for i in [lo, hi) into
 * E->lp[k]: the response tokens as the policy generated them (EOS
 * included when it stopped), after the prompt in the training format. */
static int score_batch(eval_run *E, int k, rlaif_model *m, const rlaif_rollout *ro,
                       rlaif_lp_batch *lp, int64_t lo, int64_t hi) {
    rlaif_tokens all = {0};
    int64_t off[GEN_BATCH + 1], rows[GEN_BATCH];
    int32_t plen[GEN_BATCH];
    int R = (int)(hi - lo), rc = 0;
    off[0] = 0;
    for (int r = 0; r < R && !rc; r++) {
        rc = rlaif_format_prompt(ro->tok, ro->chat, E->prompt[lo + r],
                                 rlaif_cfg_int(E->cfg, "data.max_prompt_len"), &all);
        plen[r] = (int32_t)(all.n - (size_t)off[r]);
        for (int t = 0; !rc && t < E->nids[lo + r]; t++) {
            if (all.n == all.cap) {
                all.cap = 2 * all.cap + 64;
                all.ids = xrealloc(all.ids, sizeof(int32_t) * all.cap);
            }
            all.ids[all.n++] = E->ids[lo + r][t];
        }
        off[r + 1] = (int64_t)all.n, rows[r] = r;
    }
    rlaif_seqs s = {all.ids, off, plen};
    if (!rc) rc = rlaif_lp_forward(m, lp, &s, rows, R, RLAIF_LP_LOGP, NULL);
    for (int r = 0; r < R && !rc; r++) E->lp[k][lo + r] = rlaif_lp_seq_logp(lp, r);
    rlaif_tokens_free(&all);
    return rc;
}

/* This rank's share of the policy's answers scored by model k. */
static int score_share(eval_run *E, int k, rlaif_model *m, const rlaif_rollout *ro, int64_t lo,
                       int64_t hi) {
    E->vocab[k] = m->cfg.vocab_size;
    if (E->vocab[k] != E->vocab[0]) return 0; /* other ids: no KL (eval_finish_kl says so) */
    rlaif_lp_batch lp;
    rlaif_lp_init(&lp, GEN_BATCH, m->cfg.max_seq_len);
    int rc = 0;
    for (int64_t i = lo; i < hi && !rc; i += GEN_BATCH)
        rc = score_batch(E, k, m, ro, &lp, i, i + GEN_BATCH < hi ? i + GEN_BATCH : hi);
    rlaif_lp_free(&lp);
    return rc;
}

/* This rollout rank's share [lo, hi) answered by model k. */
static int answer_share(eval_run *E, int k, int64_t lo, int64_t hi) {
    rlaif_model m;
    memset(&m, 0, sizeof m); /* rlaif_model_free takes a zeroed model */
    rlaif_tokenizer *tok = NULL;
    rlaif_chat chat = {0};
    int rc = rlaif_policy_load(E->cfg, "eval", "model", E->model[k], &m, &tok, &chat);
    rlaif_rollout r = {.model = &m,
                       .tok = tok,
                       .chat = &chat,
                       .who = "eval",
                       .max_prompt_len = rlaif_cfg_int(E->cfg, "data.max_prompt_len"),
                       .max_new_tokens = rlaif_cfg_int(E->cfg, "eval.max_new_tokens"),
                       .temperature = (float)rlaif_cfg_float(E->cfg, "eval.temperature"),
                       .top_p = 1,
                       .seed = (uint64_t)rlaif_cfg_int(E->cfg, "run.seed"),
                       .step = RLAIF_STREAM_EVAL};
    for (int64_t i = lo; i < hi && !rc; i += GEN_BATCH)
        rc = answer_batch(E, &r, i, i + GEN_BATCH < hi ? i + GEN_BATCH : hi, E->resp[k]);
    if (!rc) rc = score_share(E, k, &m, &r, lo, hi);
    rlaif_model_free(&m);
    rlaif_tokenizer_free(tok);
    rlaif_chat_free(&chat);
    return rc;
}

/* Texts [lo, hi) of every rank to every rank, in world (= prompt) order. */
static int gather_texts(eval_run *E, char **texts, int64_t lo, int64_t hi) {
    int size;
    RLAIF_CHECK_MPI(MPI_Comm_size(E->world, &size));
    size_t mine = 0;
    for (int64_t i = lo; i < hi; i++) mine += strlen(texts[i]) + 1;
    if (mine > (1u << 30))
        return RLAIF_ERROR(RLAIF_EX_USAGE, "lower eval.n_prompts",
                           "eval: %zu bytes of answers "
                           "on one rank",
                           mine);
    char *buf = xmalloc(mine + 1), *p = buf;
    for (int64_t i = lo; i < hi; i++) {
        size_t l = strlen(texts[i]) + 1;
        memcpy(p, texts[i], l), p += l;
    }
    int cnt = (int)mine, *cnts = xmalloc(sizeof(int) * (size_t)size), *disp;
    disp = xmalloc(sizeof(int) * (size_t)size);
    int rc = MPI_Allgather(&cnt, 1, MPI_INT, cnts, 1, MPI_INT, E->world);
    long total = 0;
    for (int r = 0; r < size; r++) disp[r] = (int)total, total += cnts[r];
    char *all = xmalloc((size_t)total + 1);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allgatherv(buf, cnt, MPI_CHAR, all, cnts, disp, MPI_CHAR, E->world);
    free(buf), free(cnts), free(disp);
    if (rc != MPI_SUCCESS)
        return free(all), rlaif_error_mpi(rc, "MPI_Allgatherv", __FILE__, __LINE__);
    int64_t i = 0;
    for (char *q = all; q < all + total && i < E->n; q += strlen(q) + 1, i++) {
        if (!texts[i]) texts[i] = xstrdup(q);
    }
    free(all);
    if (i != E->n)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, "a bug: please report it",
                           "eval: %lld answers gathered for %lld prompts", (long long)i,
                           (long long)E->n);
    return 0;
}

/* The log-probs of every share to every rank (each prompt is scored on one
 * rank, the others hold 0), and one vocabulary test for all. */
static int gather_lp(eval_run *E) {
    int v[2] = {E->is_rollout ? E->vocab[0] : 0, E->is_rollout ? E->vocab[1] : 0}, vmax[2];
    RLAIF_CHECK_MPI(MPI_Allreduce(v, vmax, 2, MPI_INT, MPI_MAX, E->world));
    E->vocab[0] = vmax[0], E->vocab[1] = vmax[1];
    for (int k = 0; k < 2; k++)
        RLAIF_CHECK_MPI(
            MPI_Allreduce(MPI_IN_PLACE, E->lp[k], (int)E->n, MPI_DOUBLE, MPI_SUM, E->world));
    return 0;
}

/* Both models answer every prompt (rollout ranks), every rank gets the texts;
 * both score the policy's answers (for the KL). */
static int generate_all(eval_run *E) {
    int64_t lo, hi;
    rlaif_rollout_shard(E->rk, E->n, &lo, &hi);
    E->ids = xcalloc((size_t)E->n + 1, sizeof(int32_t *));
    E->nids = xcalloc((size_t)E->n + 1, sizeof(int));
    for (int k = 0; k < 2; k++) {
        E->resp[k] = xcalloc((size_t)E->n + 1, sizeof(char *));
        E->lp[k] = xcalloc((size_t)E->n + 1, sizeof(double));
        int rc = E->is_rollout ? answer_share(E, k, lo, hi) : 0;
        RLAIF_TRY(rlaif_agree(E->world, rc));
        RLAIF_TRY(gather_texts(E, E->resp[k], lo, hi));
    }
    return gather_lp(E);
}

/* -------------------------------------------------------------- judge */

/* Two equal strings: a tie, no call (a judge can only flip a coin). */
static void tie_result(uint64_t id, rlaif_judge_result *r) {
    memset(r, 0, sizeof *r);
    r->pair_id = id, r->label = 0.5f, r->choice = -1;
    r->outcome[0] = r->outcome[1] = -2;
    r->soft[0] = r->soft[1] = NAN, r->score[0] = r->score[1] = NAN;
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < RLAIF_JUDGE_NCRIT; c++) r->rubric[k][c] = NAN;
    r->consistent = -1, r->status = RLAIF_JS_OK;
    r->explanation = xstrdup("identical responses: a tie without a judge call");
}

typedef struct {
    rlaif_judge_result *res;
    int64_t lo;
    int64_t done;
} share;

/* A judged pair (tag = its index) into its row; keeps the explanation. */
static int share_take(void *user, int64_t i, rlaif_judge_result *r) {
    share *sh = user;
    sh->res[i - sh->lo] = *r;
    r->explanation = NULL;
    sh->done++;
    return 0;
}

/* Judge pairs [lo, hi) into res[0, hi - lo). */
static int judge_share(eval_run *E, rlaif_pump *p, int64_t lo, int64_t hi,
                       rlaif_judge_result *res) {
    share sh = {res, lo, 0};
    int64_t next = lo;
    while (sh.done < hi - lo) {
        /* SIGTERM/SIGUSR1/walltime: what was answered is in the journal */
        if (rlaif_stop_requested()) return RLAIF_EX_TEMPFAIL;
        while (next < hi && rlaif_pump_room(p) > 0) {
            int64_t i = next++;
            if (!strcmp(E->resp[0][i], E->resp[1][i])) {
                tie_result((uint64_t)i, &res[i - lo]), sh.done++;
                continue;
            }
            rlaif_judge_pair pair = {(uint64_t)i, E->prompt[i], {E->resp[0][i], E->resp[1][i]}};
            RLAIF_TRY(rlaif_pump_submit(p, &pair, i));
        }
        RLAIF_TRY(rlaif_pump_poll(p, rlaif_pump_pending(p) ? 0.05 : 0, share_take, &sh, NULL));
        RLAIF_TRY(rlaif_pump_check(p, 0)); /* the judge is out: stop with the reason */
    }
    return rlaif_pump_check(p, 1);
}

static void outcome_row(const rlaif_judge_result *r, double *o) {
    o[0] = r->label, o[1] = r->outcome[0], o[2] = r->outcome[1], o[3] = r->consistent;
    o[4] = r->status, o[5] = r->ncalls, o[6] = r->nreplayed;
}

/* Outcomes of every judge rank's share to every rank, in pair order. */
static int gather_outcomes(eval_run *E, const double *mine, int nmine) {
    int size;
    RLAIF_CHECK_MPI(MPI_Comm_size(E->world, &size));
    int *cnts = xmalloc(sizeof(int) * (size_t)size), *disp = xmalloc(sizeof(int) * (size_t)size);
    int cnt = nmine * NOUT, rc = MPI_Allgather(&cnt, 1, MPI_INT, cnts, 1, MPI_INT, E->world);
    long total = 0;
    for (int r = 0; r < size; r++) disp[r] = (int)total, total += cnts[r];
    E->out = xcalloc((size_t)E->n * NOUT + 1, sizeof(double));
    if (rc == MPI_SUCCESS && total == E->n * NOUT)
        rc = MPI_Allgatherv(mine, cnt, MPI_DOUBLE, E->out, cnts, disp, MPI_DOUBLE, E->world);
    free(cnts), free(disp);
    if (rc != MPI_SUCCESS) return rlaif_error_mpi(rc, "MPI_Allgatherv", __FILE__, __LINE__);
    if (total != E->n * NOUT)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, "a bug: please report it",
                           "eval: %ld outcomes gathered for %lld pairs", total / NOUT,
                           (long long)E->n);
    return 0;
}

/* ---------------------------------------------------------- statistics */

static void pair_stats(eval_stats *s, const double *o) {
    double label = o[0];
    int o0 = (int)o[1], o1 = (int)o[2];
    s->calls += o[5], s->replayed += o[6];
    s->status[(int)o[4] & (RLAIF_PUMP_NSTATUS - 1)]++;
    s->unanswered += rlaif_pump_unanswered((int)o[4]);
    if (isnan(label)) {
        s->failed++;
        return;
    }
    s->judged++;
    s->wins += label > 0.5, s->losses += label < 0.5, s->ties += label == 0.5;
    s->identical += o0 == -2 && o1 == -2;
    if (o0 >= 0 && o1 >= 0) s->two_orders++, s->consistent += o0 == o1;
    /* order 0 puts response 0 in position A, order 1 response 1 */
    if (o0 >= 0) s->verdicts++, s->first += o0 == 0;
    if (o1 >= 0) s->verdicts++, s->first += o1 == 1;
}

/* x = log length ratio (bytes + 1: an empty answer has a length) of pair i. */
static double log_len_ratio(const eval_run *E, int64_t i) {
    return log((1.0 + (double)strlen(E->resp[0][i])) / (1.0 + (double)strlen(E->resp[1][i])));
}

/* KL(policy || baseline) on the policy's answer i: log p_policy - log p_baseline
 * (NaN when the models read token ids differently). */
static double pair_kl(const eval_run *E, int64_t i) {
    return E->vocab[0] == E->vocab[1] ? E->lp[0][i] - E->lp[1][i] : NAN;
}

/* Lengths, KL, the length-controlled win rate over the judged pairs (a
 * win 1, a tie 0.5, a loss 0: the outcomes of the plain win rate). */
static void length_stats(eval_run *E) {
    eval_stats *s = &E->st;
    double *x = xcalloc((size_t)E->n + 1, sizeof(double)), *y = xcalloc((size_t)E->n + 1, 8);
    int64_t m = 0;
    for (int64_t i = 0; i < E->n; i++) {
        for (int k = 0; k < 2; k++) s->len[k] += (double)strlen(E->resp[k][i]) / (double)E->n;
        s->kl += pair_kl(E, i) / (double)E->n;
        double label = E->out[i * NOUT];
        if (isnan(label)) continue;
        x[m] = log_len_ratio(E, i), y[m++] = label > 0.5 ? 1 : label < 0.5 ? 0 : 0.5;
    }
    rlaif_lc_win_rate(x, y, m, 1.959964, &s->lc);
    free(x), free(y);
}

static void compute_stats(eval_run *E) {
    eval_stats *s = &E->st;
    memset(s, 0, sizeof *s);
    s->n = E->n;
    for (int64_t i = 0; i < E->n; i++) pair_stats(s, E->out + i * NOUT);
    length_stats(E);
    s->win_rate = s->judged ? ((double)s->wins + 0.5 * (double)s->ties) / (double)s->judged : NAN;
    rlaif_wilson((double)s->wins + 0.5 * (double)s->ties, (double)s->judged, 1.959964, &s->lo,
                 &s->hi);
    for (int64_t i = 0; E->prob && i < E->n; i++) {
        int f[2] = {rlaif_task_flaws(&E->prob[i], E->resp[0][i]),
                    rlaif_task_flaws(&E->prob[i], E->resp[1][i])};
        for (int k = 0; k < 2; k++)
            for (int b = 0; b < 4; b++) s->flaw[k][b] += (f[k] >> b) & 1;
        int r0 = !(f[0] & RLAIF_FLAW_WRONG), r1 = !(f[1] & RLAIF_FLAW_WRONG);
        double label = E->out[i * NOUT];
        s->right[0] += r0, s->right[1] += r1;
        s->decided += r0 != r1;
        if (r0 != r1 && !isnan(label) && label != 0.5)
            s->agree_n++, s->agree += (label > 0.5) == r0;
    }
}

static double ratio(double a, double b) {
    return b > 0 ? a / b : NAN;
}

/* The results lines (also stored in eval.h5 and printed again on a skip). */
static void format_summary(eval_run *E) {
    const eval_stats *s = &E->st;
    char cons[16], first[16];
    size_t k = (size_t)snprintf(
        E->summary, sizeof E->summary,
        "eval: win rate %.4f [%.4f, %.4f] (95%% Wilson) of %s vs %s: %lld pairs judged of "
        "%lld: %lld wins, %lld losses, %lld ties (%lld identical answers), %lld failed\n"
        "eval: judge both orders: consistency %s (%lld pairs), first-position wins %s; "
        "judge calls %.0f (%.0f answered from the journal)\n",
        s->win_rate, s->lo, s->hi, E->model[0], E->model[1], (long long)s->judged, (long long)s->n,
        (long long)s->wins, (long long)s->losses, (long long)s->ties, (long long)s->identical,
        (long long)s->failed,
        rlaif_fmt_or_na(cons, sizeof cons, "%.3f",
                        ratio((double)s->consistent, (double)s->two_orders)),
        (long long)s->two_orders,
        rlaif_fmt_or_na(first, sizeof first, "%.3f", ratio((double)s->first, (double)s->verdicts)),
        s->calls, s->replayed);
    char lc[4][16], kl[16];
    rlaif_fmt_or_na(lc[0], sizeof lc[0], "%.4f", s->lc.win_rate);
    rlaif_fmt_or_na(lc[1], sizeof lc[1], "%.4f", s->lc.lo);
    rlaif_fmt_or_na(lc[2], sizeof lc[2], "%.4f", s->lc.hi);
    rlaif_fmt_or_na(lc[3], sizeof lc[3], "%.3f", s->lc.b[1]);
    if (k < sizeof E->summary)
        k += (size_t)snprintf(
            E->summary + k, sizeof E->summary - k,
            "eval: length-controlled win rate %s [%s, %s] (logistic fit on the log length "
            "ratio, at equal length; slope %s%s); mean answer length policy %.1f, baseline "
            "%.1f bytes; mean KL(policy || baseline) on the policy's answers %s nats\n",
            lc[0], lc[1], lc[2], lc[3],
            isnan(s->lc.win_rate) ? "; no finite fit: one side wins "
                                    "every pair"
                                  : "",
            s->len[0], s->len[1], rlaif_fmt_or_na(kl, sizeof kl, "%.4f", s->kl));
    for (int m = 0; E->prob && m < 2 && k < sizeof E->summary; m++)
        k += (size_t)snprintf(
            E->summary + k, sizeof E->summary - k,
            "eval: oracle rates of the %s's answers: accuracy %.4f, rude %.4f, rambling %.4f, "
            "off-topic %.4f\n",
            m ? "baseline" : "policy", 1 - ratio((double)s->flaw[m][0], (double)s->n),
            ratio((double)s->flaw[m][1], (double)s->n), ratio((double)s->flaw[m][2], (double)s->n),
            ratio((double)s->flaw[m][3], (double)s->n));
    if (E->prob && k < sizeof E->summary)
        snprintf(
            E->summary + k, sizeof E->summary - k,
            "eval: oracle (arithmetic truth): policy accuracy %.4f, baseline accuracy %.4f, "
            "oracle win rate %.4f; judge agrees with the oracle on %lld of %lld decided "
            "pairs (%.4f; %lld pairs have exactly one right answer)\n",
            ratio((double)s->right[0], (double)s->n), ratio((double)s->right[1], (double)s->n),
            ratio((double)(s->right[0] - s->right[1]) * 0.5 + 0.5 * (double)s->n, (double)s->n),
            (long long)s->agree, (long long)s->agree_n, ratio((double)s->agree, (double)s->agree_n),
            (long long)s->decided);
}

/* No pair judged: there is no win rate to print (an interval resting on
 * identical answers alone, or on nothing, would read as a result). */
static int refuse_unjudged(const eval_run *E) {
    const eval_stats *s = &E->st;
    if (s->judged > s->identical || s->n == 0) return 0;
    if (s->judged > 0 && s->failed == 0) return 0; /* the same model twice: ties, rightly */
    char fails[400];
    rlaif_pump_fail_list(s->status, fails, sizeof fails);
    return RLAIF_ERROR(RLAIF_EX_FAIL,
                       "check the judge (rlaif judge job.ini --input pairs.jsonl --output x.jsonl "
                       "tries it); answered calls are journaled: the rerun pays nothing twice",
                       "eval: no win rate: the judge decided none of the %lld pairs it was asked "
                       "(%lld failed%s)",
                       (long long)(s->n - s->identical), (long long)s->failed, fails);
}

static const char *const metric_names[] = {"win_rate",
                                           "win_rate_lo",
                                           "win_rate_hi",
                                           "judged",
                                           "wins",
                                           "losses",
                                           "ties",
                                           "identical",
                                           "failed",
                                           "consistency",
                                           "first_pos_wins",
                                           "policy_accuracy",
                                           "baseline_accuracy",
                                           "oracle_win_rate",
                                           "judge_oracle_agreement",
                                           "oracle_decided",
                                           "judge_calls",
                                           "replayed",
                                           "lc_win_rate",
                                           "lc_win_rate_lo",
                                           "lc_win_rate_hi",
                                           "lc_slope",
                                           "policy_len",
                                           "baseline_len",
                                           "kl",
                                           "policy_rude",
                                           "policy_rambling",
                                           "policy_offtopic",
                                           "baseline_rude",
                                           "baseline_rambling",
                                           "baseline_offtopic",
                                           "wall_s"};
enum { NMETRIC = sizeof metric_names / sizeof *metric_names };

static int write_metrics(eval_run *E, double wall) {
    const eval_stats *s = &E->st;
    double n = (double)s->n, acc0 = E->prob ? ratio((double)s->right[0], n) : NAN;
    double acc1 = E->prob ? ratio((double)s->right[1], n) : NAN;
    double row[NMETRIC] = {s->win_rate,
                           s->lo,
                           s->hi,
                           (double)s->judged,
                           (double)s->wins,
                           (double)s->losses,
                           (double)s->ties,
                           (double)s->identical,
                           (double)s->failed,
                           ratio((double)s->consistent, (double)s->two_orders),
                           ratio((double)s->first, (double)s->verdicts),
                           acc0,
                           acc1,
                           E->prob ? 0.5 + 0.5 * (acc0 - acc1) : NAN,
                           E->prob ? ratio((double)s->agree, (double)s->agree_n) : NAN,
                           E->prob ? (double)s->decided : NAN,
                           s->calls,
                           s->replayed,
                           s->lc.win_rate,
                           s->lc.lo,
                           s->lc.hi,
                           s->lc.b[1],
                           s->len[0],
                           s->len[1],
                           s->kl,
                           E->prob ? ratio((double)s->flaw[0][1], n) : NAN,
                           E->prob ? ratio((double)s->flaw[0][2], n) : NAN,
                           E->prob ? ratio((double)s->flaw[0][3], n) : NAN,
                           E->prob ? ratio((double)s->flaw[1][1], n) : NAN,
                           E->prob ? ratio((double)s->flaw[1][2], n) : NAN,
                           E->prob ? ratio((double)s->flaw[1][3], n) : NAN,
                           wall};
    const char *out = rlaif_cfg_str(E->cfg, "run.out_dir");
    rlaif_metrics *m = NULL;
    int rc = rlaif_metrics_open_run(out, E->world, &m);
    if (!rc) rc = rlaif_metrics_phase(m, "eval", NMETRIC, metric_names);
    if (!rc) rc = rlaif_metrics_log(m, "eval", s->n, row);
    if (m) {
        int rc2 = rlaif_metrics_close(&m);
        if (!rc) rc = rc2;
    }
    return rc;
}

/* ------------------------------------------------------ eval.h5, skip */

/* judge.disagreement as eval runs it: drop becomes tie (force_judge_settings). */
static const char *disagreement(const rlaif_config *cfg) {
    const char *v = rlaif_cfg_str(cfg, "judge.disagreement");
    return strcmp(v, "drop") ? v : "tie";
}

/* The settings of an eval (eval.h5's eval_complete) with the two models. */
static char *make_signature(const rlaif_config *cfg, char model[2][4096]) {
    const char *keys[] = {
        "eval.n_prompts",   "eval.temperature",    "eval.max_new_tokens", "eval.prompts",
        "run.seed",         "data.task",           "data.prompts",        "data.max_operand",
        "data.n_prompts",   "data.max_prompt_len", "judge.backend",       "judge.mode",
        "judge.base_url",   "judge.model",         "judge.templates",     "judge.few_shot",
        "judge.ensemble",   "judge.aggregate",     "judge.disagreement",  "judge.flip_prob",
        "judge.first_bias", "judge.temperature",   "judge.seed"};
    json_t *o = json_object();
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        json_object_set_new(o, keys[i],
                            json_string(!strcmp(keys[i], "judge.disagreement")
                                            ? disagreement(cfg)
                                            : rlaif_cfg_str(cfg, keys[i])));
    const char *chat[3];
    rlaif_chat_keys_set(cfg, chat);
    for (int i = 0; chat[i]; i++)
        json_object_set_new(o, chat[i], json_string(rlaif_cfg_str(cfg, chat[i])));
    for (int k = 0; k < 2; k++) {
        /* size and mtime: a model retrained into the same path is another model */
        struct stat st;
        char id[64] = "";
        if (stat(model[k], &st) == 0)
            snprintf(id, sizeof id, "%lld:%lld", (long long)st.st_size, (long long)st.st_mtime);
        json_object_set_new(o, k ? "baseline" : "policy", json_string(model[k]));
        json_object_set_new(o, k ? "baseline_file" : "policy_file", json_string(id));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s ? s : xstrdup("{}");
}

/* Rank 0, read-only: does path hold a complete eval of these settings? Its
 * results lines into summary. The one test of a finished eval, for its run
 * and its done(). */
static int finished_before(const char *path, const char *signature, char *summary, size_t n) {
    if (access(path, F_OK) != 0) return 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char *done = NULL, *res = NULL;
    int same = f >= 0 && H5Aexists(f, "eval_complete") > 0 && H5Aexists(f, "eval_results") > 0 &&
               !rlaif_h5_get_attr_str(f, "eval_complete", &done) &&
               !rlaif_h5_get_attr_str(f, "eval_results", &res) && !strcmp(done, signature);
    if (same) snprintf(summary, n, "%s", res);
    if (f >= 0) H5Fclose(f);
    free(done), free(res);
    rlaif_error_clear();
    return same;
}

int rlaif_eval_done(const rlaif_config *cfg, const char *name, rlaif_phase_status *st) {
    (void)name;
    char model[2][4096], path[4096], summary[2048];
    memset(st, 0, sizeof *st);
    rlaif_out_path(cfg, "eval.h5", path, sizeof path);
    snprintf(st->what, sizeof st->what, "no %s", path);
    if (access(path, F_OK) != 0) return 0;
    st->state = RLAIF_PHASE_PARTIAL;
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++)
        rc = resolve_model(cfg, k ? "eval.baseline" : "eval.policy", model[k], sizeof model[k],
                           NULL, 0);
    if (rc) { /* no model to evaluate: not complete for this job; the phase says why */
        snprintf(st->what, sizeof st->what, "%s, not complete for this job (%s)", path,
                 rlaif_error_message());
        rlaif_error_clear();
        return 0;
    }
    char *sig = make_signature(cfg, model);
    if (finished_before(path, sig, summary, sizeof summary)) st->state = RLAIF_PHASE_DONE;
    free(sig);
    snprintf(st->what, sizeof st->what,
             st->state == RLAIF_PHASE_DONE ? "%s, same settings"
                                           : "%s, of other models or settings",
             path);
    return 0;
}

/* Rank 0, once the eval runs: one file holds one eval, and the judge's
 * journal makes redoing it free. */
static int remove_stale(const eval_run *E) {
    if (access(E->path, F_OK) == 0 && unlink(E->path) != 0)
        return rlaif_error_sys(RLAIF_EX_IOERR, "unlink", E->path, __FILE__, __LINE__);
    return 0;
}

/* Judge group, collective: one per-pair column of /eval, rows [lo, hi)
 * of this rank (pair i at row i: the shares are contiguous, in rank order). */
static int eval_column(hid_t g, const char *name, const double *v, int64_t lo, int64_t hi,
                       MPI_Comm comm, const rlaif_h5_opts *io) {
    hid_t ds;
    RLAIF_TRY(rlaif_h5_create_1d(g, name, H5T_NATIVE_DOUBLE, 4096, &ds));
    int rc =
        rlaif_h5_append(ds, H5T_NATIVE_DOUBLE, v + lo, (size_t)(hi - lo), comm, io, NULL, NULL);
    H5Dclose(ds);
    return rc;
}

/* Judge group, collective: /eval, the per-pair numbers behind the results
 * (answer lengths, log length ratio, outcome, KL, oracle flaw bits) and the
 * results themselves as attributes (tools/user/rlaif-analyze eval reads it). */
static int store_eval_group(eval_run *E, hid_t f, MPI_Comm comm, int64_t lo, int64_t hi,
                            const rlaif_h5_opts *io) {
    const char *cols[] = {"policy_len", "baseline_len", "log_len_ratio", "outcome",
                          "kl",         "policy_flaws", "baseline_flaws"};
    enum { NCOL = sizeof cols / sizeof *cols };
    double *v = xcalloc((size_t)E->n * NCOL + 1, sizeof(double));
    for (int64_t i = 0; i < E->n; i++) {
        double label = E->out[i * NOUT], *row = v + i;
        row[0] = (double)strlen(E->resp[0][i]), row[E->n] = (double)strlen(E->resp[1][i]);
        row[2 * E->n] = log_len_ratio(E, i);
        row[3 * E->n] = isnan(label) ? NAN : label > 0.5 ? 1 : label < 0.5 ? 0 : 0.5;
        row[4 * E->n] = pair_kl(E, i);
        row[5 * E->n] = E->prob ? rlaif_task_flaws(&E->prob[i], E->resp[0][i]) : NAN;
        row[6 * E->n] = E->prob ? rlaif_task_flaws(&E->prob[i], E->resp[1][i]) : NAN;
    }
    hid_t g = H5Gcreate2(f, "eval", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = g < 0 ? rlaif_error_h5("H5Gcreate2", __FILE__, __LINE__, "/eval") : 0;
    for (int c = 0; c < NCOL && !rc; c++)
        rc = eval_column(g, cols[c], v + c * E->n, lo, hi, comm, io);
    free(v);
    const eval_stats *s = &E->st;
    const char *an[] = {
        "lc_win_rate",     "lc_win_rate_lo", "lc_win_rate_hi", "lc_intercept", "lc_slope",
        "lc_intercept_se", "lc_slope_se",    "policy_len",     "baseline_len", "kl"};
    double av[] = {s->lc.win_rate, s->lc.lo,    s->lc.hi,  s->lc.b[0], s->lc.b[1],
                   s->lc.se[0],    s->lc.se[1], s->len[0], s->len[1],  s->kl};
    for (size_t a = 0; a < sizeof av / sizeof *av && !rc; a++)
        rc = rlaif_h5_attr_f64(g, an[a], av[a]);
    /* oracle rates, [policy, baseline] x [accuracy, rude, rambling, off-topic] */
    const char *on[] = {"accuracy", "rude", "rambling", "offtopic"};
    for (int m = 0; E->prob && m < 2 && !rc; m++)
        for (int b = 0; b < 4 && !rc; b++) {
            char name[48];
            double r = (double)s->flaw[m][b] / (double)s->n;
            snprintf(name, sizeof name, "%s_%s", m ? "baseline" : "policy", on[b]);
            rc = rlaif_h5_attr_f64(g, name, b ? r : 1 - r);
        }
    if (!rc) rc = rlaif_h5_attr_str(g, "flaw_bits", "1 wrong, 2 rude, 4 rambling, 8 off-topic");
    if (g >= 0) H5Gclose(g);
    return rc;
}

/* Judge group, collective: the pairs into eval.h5, marked complete. */
static int store_pairs(eval_run *E, rlaif_judge *j, MPI_Comm comm, int64_t lo, int64_t hi,
                       rlaif_judge_result *res) {
    rlaif_judge_meta meta;
    RLAIF_TRY(rlaif_judge_meta_build(j, E->cfg, &meta));
    meta.meta.sampling = E->signature;
    rlaif_h5_opts io;
    rlaif_h5_opts_from_cfg(&io, E->cfg);
    rlaif_prefs *p = NULL;
    int rc = rlaif_prefs_open_or_create(E->path, comm, &io, &meta.meta, &p);
    rlaif_judge_meta_free(&meta);
    RLAIF_TRY(rc);
    size_t n = (size_t)(hi - lo);
    rlaif_judged_pair *d = xcalloc(n + 1, sizeof *d);
    for (size_t k = 0; k < n; k++) {
        int64_t i = lo + (int64_t)k;
        d[k].prompt = E->prompt[i], d[k].response[0] = E->resp[0][i];
        d[k].response[1] = E->resp[1][i], d[k].explanation = res[k].explanation;
        rlaif_judge_to_pair(&res[k], &d[k].row);
    }
    rc = rlaif_judge_store(p, d, n, NULL);
    free(d);
    hid_t f = rlaif_prefs_file(p);
    if (!rc) rc = store_eval_group(E, f, comm, lo, hi, &io);
    if (!rc) rc = rlaif_h5_attr_str(f, "eval_results", E->summary);
    /* pairs the judge never answered: a rerun asks again (the journal
     * answers the rest), so this eval is not complete */
    if (!rc && E->st.unanswered == 0) rc = rlaif_h5_attr_str(f, "eval_complete", E->signature);
    int rc2 = rlaif_prefs_close(&p);
    return rc ? rc : rc2;
}

/* Judge ranks label their share; everyone gets the outcomes and the
 * statistics; the judge group stores the pairs. */
static int judge_all(eval_run *E) {
    int64_t lo = 0, hi = 0;
    rlaif_pump *j = NULL;
    rlaif_judge_result *res = NULL;
    int rc = 0;
    if (E->is_judge) {
        MPI_Comm jc = E->rk->group[RLAIF_ROLE_JUDGE];
        int r, n;
        size_t a, b;
        RLAIF_CHECK_MPI(MPI_Comm_rank(jc, &r));
        RLAIF_CHECK_MPI(MPI_Comm_size(jc, &n));
        rlaif_shard_range((size_t)E->n, n, r, &a, &b);
        lo = (int64_t)a, hi = (int64_t)b;
        res = xcalloc((size_t)(hi - lo) + 1, sizeof *res);
        rc = rlaif_pump_open(&j, E->cfg, r, n, NULL, "eval");
        if (!rc) rc = judge_share(E, j, lo, hi, res);
    }
    double *mine = xcalloc((size_t)(hi - lo) * NOUT + 1, sizeof(double));
    for (int64_t k = 0; !rc && k < hi - lo; k++) outcome_row(&res[k], mine + k * NOUT);
    /* ranks without judging to do (rollout ranks of a split layout) wait
     * for the judges without spinning a core */
    int brc = rlaif_barrier_sleeping(E->world);
    rc = rlaif_agree(E->world, rc ? rc : brc);
    if (!rc) rc = gather_outcomes(E, mine, (int)(hi - lo));
    free(mine);
    if (!rc) compute_stats(E), format_summary(E);
    if (!rc) rc = refuse_unjudged(E);
    if (!rc && E->is_judge)
        rc = store_pairs(E, rlaif_pump_judge(j), E->rk->group[RLAIF_ROLE_JUDGE], lo, hi, res);
    for (int64_t k = 0; res && k < hi - lo; k++) rlaif_judge_result_free(&res[k]);
    free(res);
    rlaif_pump_close(j);
    return rlaif_agree(E->world, rc);
}

/* ------------------------------------------------------------ command */

int rlaif_eval_check(const rlaif_config *cfg) {
    /* data.task = jsonl uses at most the file's records: known only when read */
    if (!strcmp(rlaif_cfg_str(cfg, "data.task"), "jsonl")) return 0;
    /* a lower bound of what each rank holds a prompt: 4 pointers, the problem,
     * the NOUT outcomes, and one byte a generated token of both responses */
    double per = 4 * sizeof(char *) + sizeof(rlaif_arith) + NOUT * sizeof(double) +
                 2.0 * (double)rlaif_cfg_int(cfg, "eval.max_new_tokens");
    double need = per * (double)rlaif_cfg_int(cfg, "eval.n_prompts");
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (have > 0 && need > have)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "lower eval.n_prompts",
                           "eval.n_prompts = %lld needs at least %.3g GB on every rank, more "
                           "than this node's %.3g GB",
                           (long long)rlaif_cfg_int(cfg, "eval.n_prompts"), need / 1e9, have / 1e9);
    return 0;
}

/* Eval judges every pair in both orders, and a disagreement counts half. */
static int force_judge_settings(rlaif_config *cfg) {
    if (rlaif_cfg_float(cfg, "judge.both_orders") != 1.0) {
        rlaif_info("eval: judge.both_orders = 1 (was %s): eval judges every pair in both orders",
                   rlaif_cfg_str(cfg, "judge.both_orders"));
        RLAIF_TRY(rlaif_config_set(cfg, "judge.both_orders", "1", "eval"));
    }
    if (strcmp(rlaif_cfg_str(cfg, "judge.disagreement"), disagreement(cfg))) {
        rlaif_info("eval: judge.disagreement = tie (was drop): a pair the orders disagree on "
                   "counts half");
        RLAIF_TRY(rlaif_config_set(cfg, "judge.disagreement", "tie", "eval"));
    }
    return 0;
}

/* Rank 0 resolves both models and says why; every rank learns them. */
static int pick_models(eval_run *E) {
    int rc = 0;
    for (int k = 0; k < 2 && E->rank == 0 && !rc; k++) {
        const char *key = k ? "eval.baseline" : "eval.policy";
        char why[1024];
        rc = resolve_model(E->cfg, key, E->model[k], sizeof E->model[k], why, sizeof why);
        if (!rc)
            rlaif_info("eval: %s = '%s': %s (%s)", key, rlaif_cfg_str(E->cfg, key), E->model[k],
                       why);
    }
    RLAIF_TRY(rlaif_agree(E->world, rc));
    for (int k = 0; k < 2; k++)
        RLAIF_CHECK_MPI(MPI_Bcast(E->model[k], sizeof E->model[k], MPI_CHAR, 0, E->world));
    if (E->rank == 0 && !strcmp(E->model[0], E->model[1]))
        rlaif_warn("eval: the policy is the baseline (%s): the win rate compares the model "
                   "with itself",
                   E->model[0]);
    return 0;
}

/* The models, then the skip (finished_before, as done() decides it), and
 * only for an eval that runs the prompts and the removal of an old eval.h5. */
static int setup(eval_run *E, int *skip) {
    RLAIF_TRY(pick_models(E));
    E->signature = make_signature(E->cfg, E->model);
    const char *out = rlaif_cfg_str(E->cfg, "run.out_dir");
    rlaif_out_path(E->cfg, "eval.h5", E->path, sizeof E->path);
    int sk = E->rank == 0 && finished_before(E->path, E->signature, E->summary, sizeof E->summary);
    RLAIF_CHECK_MPI(MPI_Bcast(&sk, 1, MPI_INT, 0, E->world));
    *skip = sk;
    if (sk) return 0;
    RLAIF_TRY(rlaif_agree(E->world, load_prompts(E)));
    RLAIF_TRY(rlaif_agree(E->world, E->rank == 0 && *out ? rlaif_mkdir_p(out) : 0));
    return rlaif_agree(E->world, E->rank == 0 ? remove_stale(E) : 0);
}

static void run_free(eval_run *E) {
    for (int64_t i = 0; E->prompt && i < E->n; i++) free(E->prompt[i]);
    for (int k = 0; k < 2; k++) {
        for (int64_t i = 0; E->resp[k] && i < E->n; i++) free(E->resp[k][i]);
        free(E->resp[k]);
    }
    for (int64_t i = 0; E->ids && i < E->n; i++) free(E->ids[i]);
    free(E->ids), free(E->nids), free(E->lp[0]), free(E->lp[1]);
    free(E->prompt), free(E->prob), free(E->out), free(E->signature);
}

int rlaif_cmd_eval(rlaif_ctx *ctx) {
    if (ctx->args.nargs > 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif eval --help", "eval: unknown argument '%s'",
                           ctx->args.args[0]);
    RLAIF_TRY(rlaif_ranks_require(&ctx->ranks, "eval", 0, 1, 1));
    RLAIF_TRY(rlaif_pump_preflight(ctx->cfg, "eval"));
    RLAIF_TRY(force_judge_settings(ctx->cfg));
    eval_run E;
    memset(&E, 0, sizeof E);
    E.cfg = ctx->cfg, E.rk = &ctx->ranks, E.world = ctx->ranks.world;
    E.rank = ctx->ranks.world_rank;
    E.is_rollout = rlaif_ranks_has(E.rk, RLAIF_ROLE_ROLLOUT);
    E.is_judge = rlaif_ranks_has(E.rk, RLAIF_ROLE_JUDGE);
    double t0 = rlaif_now();
    int skip = 0, rc = setup(&E, &skip);
    if (!rc && skip) {
        rlaif_info("eval: already complete (%s, same settings); skipping", E.path);
        if (E.rank == 0) fputs(E.summary, stdout), fflush(stdout);
    } else if (!rc) {
        rlaif_info("eval: policy %s vs baseline %s on %lld held-out prompts (%s), judged in both "
                   "orders",
                   E.model[0], E.model[1], (long long)E.n,
                   rlaif_cfg_float(E.cfg, "eval.temperature") > 0 ? "sampled" : "greedy");
        rc = generate_all(&E);
        if (!rc) rc = judge_all(&E);
        if (!rc && E.rank == 0) fputs(E.summary, stdout), fflush(stdout);
        if (!rc && E.st.unanswered)
            rlaif_warn("eval: %lld pairs the judge never answered are left out of the win rate: "
                       "run the same command again to judge them",
                       (long long)E.st.unanswered);
        if (!rc) rc = rlaif_agree(E.world, write_metrics(&E, rlaif_now() - t0));
        if (!rc)
            rlaif_info("eval: done; pairs in %s (tools/user/rlaif-analyze prefs %s)", E.path,
                       E.path);
    }
    if (rc == RLAIF_EX_TEMPFAIL)
        rlaif_info("eval: stopped (signal %d) while judging; the answers so far are in the "
                   "judge's journal: run the same command again to finish without paying twice",
                   rlaif_stop_signal());
    run_free(&E);
    return rc;
}
