/* ppo_judge.c - direct AI reward (d-RLAIF, ppo.reward = judge): the judge
 * ranks score every sampled response, and that score is the reward; no
 * reward model.
 *
 * Each iteration the responses of a prompt are judged in pairs (samples
 * 2m, 2m + 1) with judge.mode = score, which asks the judge for a 1-10
 * score of each response of the pair on its own (rlaif_judge_result.score).
 * Pair ids are a pure function of (iteration, pair), and every call goes
 * through the judge's journal, so a rerun after a crash pays for no call
 * twice. The reward is (score - 5.5) / 2.25 (1..10 onto about -2..2, the
 * scale of a normalised reward model); a response the judge never scored
 * gets 0 and is counted.
 *
 * Split layout, per iteration, over learner 0 + the judge ranks (S->jcomm):
 *   learner 0: Ibcast {iteration} and the batch (as ppo_rollout.c packs it)
 *   judges:    score their contiguous share of the prompts
 *              Gather {first sequence, count, rc} and Igatherv of the scores
 * Learner 0 posts the batch before the learners' scoring pass and collects
 * the scores after it, so the judge calls overlap the reference and policy
 * forwards. Colocated: each learner judges its share and the learners
 * all-gather. */
#include "ppo_impl.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/tensors.h"
#include "rlaif/phases/mailbox.h"
#include "rlaif/phases/pump.h"
#include "rlaif/phases/layout.h"
#include "rlaif/phases/task.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/core/h5util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PAIR_TAG (1ULL << 62) /* d-RLAIF pair ids: apart from collect's and eval's */
#define ODPO_TAG (1ULL << 61) /* online DPO's */

/* One rank's share of an iteration's pairs on their way through the judge. */
typedef struct {
    const pg_run *S;
    float *raw;               /* per sequence: its score, or (online DPO) its pair's label */
    uint64_t base;            /* pair id of the share's first pair */
    char **text;              /* [2 np] the responses */
    const char **prompt;      /* [np] */
    rlaif_judged_pair *store; /* online DPO: the labelled pairs for the preferences file */
    size_t nstore;
} share_run;

static int on_result(void *user, int64_t tag, rlaif_judge_result *r) {
    share_run *o = user;
    uint64_t k = (uint64_t)tag - o->base;
    if (o->S->ao.algo != RLAIF_PG_ODPO) {
        o->raw[2 * k] = r->score[0], o->raw[2 * k + 1] = r->score[1];
        return 0;
    }
    o->raw[2 * k] = o->raw[2 * k + 1] = r->label;
    if (rlaif_pump_unanswered(r->status)) return 0; /* the rerun asks again */
    rlaif_judged_pair *d = &o->store[o->nstore++];
    d->prompt = o->prompt[k], d->response[0] = o->text[2 * k], d->response[1] = o->text[2 * k + 1];
    rlaif_judge_to_pair(r, &d->row);
    d->explanation = r->explanation;
    r->explanation = NULL;
    return 0;
}

/* Submit, poll and check the pump until every pair of sh is back. */
static int drive(pg_run *S, share_run *sh, long np) {
    long next = 0;
    int rc = 0;
    int odpo = S->ao.algo == RLAIF_PG_ODPO;
    while (!rc && (next < np || rlaif_pump_pending(S->pump) > 0)) {
        while (!rc && next < np && rlaif_pump_room(S->pump) > 0) {
            const char *a = sh->text[2 * next], *b = sh->text[2 * next + 1];
            if (odpo && !strcmp(a, b)) { /* nothing to compare: a tie, and no call paid */
                sh->raw[2 * next] = sh->raw[2 * next + 1] = 0.5f;
            } else {
                rlaif_judge_pair p = {sh->base + (uint64_t)next, sh->prompt[next], {a, b}};
                rc = rlaif_pump_submit(S->pump, &p, (int64_t)(sh->base + (uint64_t)next));
            }
            next++;
        }
        if (!rc) rc = rlaif_pump_poll(S->pump, 0.05, on_result, sh, NULL);
        if (!rc) rc = rlaif_pump_check(S->pump, 0);
    }
    return rc;
}

/* Judge the sequences of prompts [lo, hi) of iteration it into raw
 * (raw[0] = sequence lo * K) through this rank's pump; online DPO appends
 * the labelled pairs to the preferences file (collective over the ranks
 * that judge). */
static int judge_share(pg_run *S, long it, long lo, long hi, const int32_t *pk, float *raw) {
    int K = S->e.K, odpo = S->ao.algo == RLAIF_PG_ODPO;
    long np = (hi - lo) * K / 2;
    share_run sh = {.S = S,
                    .raw = raw,
                    .base = (odpo ? ODPO_TAG : PAIR_TAG) | ((uint64_t)it << 30) |
                            (uint64_t)(lo * K / 2)};
    sh.text = xcalloc(2 * (size_t)np + 1, sizeof(char *));
    sh.prompt = xcalloc((size_t)np + 1, sizeof(char *));
    sh.store = xcalloc((size_t)np + 1, sizeof *sh.store);
    for (long s = 0; s < 2 * np; s++) {
        raw[s] = NAN;
        sh.text[s] = rlaif_pg_response_text(S, pk, lo * K + s);
    }
    for (long k = 0; k < np; k++)
        sh.prompt[k] = S->ps.text[rlaif_pg_prompt_of(S, it, lo + 2 * k / K)];
    int rc = drive(S, &sh, np);
    if (odpo) {
        rc = rlaif_agree(S->store_comm, rc);
        size_t added;
        if (!rc) rc = rlaif_judge_store(S->prefs, sh.store, sh.nstore, &added);
    }
    for (size_t k = 0; k < sh.nstore; k++) free((char *)sh.store[k].explanation);
    for (long s = 0; s < 2 * np; s++) free(sh.text[s]);
    free(sh.text), free(sh.prompt), free(sh.store);
    return rc;
}

/* ---- setup ---- */

/* Online DPO, collective over the ranks that judge: the preferences file
 * every label is appended to (resumed: pairs already in it are skipped). */
static int open_prefs(pg_run *S) {
    const rlaif_config *cfg = S->ctx->cfg;
    char path[4096];
    rlaif_out_path(cfg, "online_preferences.h5", path, sizeof path);
    rlaif_judge_meta meta;
    RLAIF_TRY(rlaif_judge_meta_build(rlaif_pump_judge(S->pump), cfg, &meta));
    meta.meta.sampling = "{\"phase\": \"online-dpo\"}";
    rlaif_h5_opts io;
    rlaif_h5_opts_from_cfg(&io, cfg);
    int rc = rlaif_prefs_open_or_create(path, S->store_comm, &io, &meta.meta, &S->prefs);
    rlaif_judge_meta_free(&meta);
    RLAIF_TRY(rc);
    rlaif_prefs_set_flush(S->prefs, 0); /* synced after every iteration's labels */
    return 0;
}

int rlaif_pg_judge_setup(pg_run *S, int learner, int judge) {
    const rlaif_ranks *rk = &S->ctx->ranks;
    int lead = learner && rk->group_rank[RLAIF_ROLE_LEARNER] == 0;
    int color = S->split && (lead || judge) ? 0 : MPI_UNDEFINED;
    S->jcomm = MPI_COMM_NULL;
    RLAIF_CHECK_MPI(MPI_Comm_split(rk->world, color, rk->world_rank, &S->jcomm));
    if (!(judge || (!S->split && learner))) return 0;
    int r = S->split ? rk->group_rank[RLAIF_ROLE_JUDGE] : rk->group_rank[RLAIF_ROLE_LEARNER];
    int n = S->split ? rk->count[RLAIF_ROLE_JUDGE] : rk->count[RLAIF_ROLE_LEARNER];
    RLAIF_TRY(rlaif_pump_open(&S->pump, S->ctx->cfg, r, n, NULL, S->name));
    S->store_comm = rk->group[S->split ? RLAIF_ROLE_JUDGE : RLAIF_ROLE_LEARNER];
    if (S->ao.algo == RLAIF_PG_ODPO) RLAIF_TRY(open_prefs(S));
    if (!S->split) return 0; /* a colocated learner has the tokenizer and prompts */
    RLAIF_TRY(rlaif_tokenizer_for_checkpoint(&S->tok, S->policy_path, S->ctx->cfg));
    RLAIF_TRY(rlaif_chat_from_config(&S->chat, S->ctx->cfg, S->policy_path));
    return rlaif_prompts_train(S->ctx->cfg, S->name, &S->ps);
}

void rlaif_pg_judge_free(pg_run *S) {
    if (S->prefs) rlaif_prefs_close(&S->prefs);
    if (S->pump) rlaif_pump_close(S->pump);
    if (S->jcomm != MPI_COMM_NULL) MPI_Comm_free(&S->jcomm);
    S->pump = NULL;
}

/* ---- learner side ---- */

int rlaif_pg_judge_post(pg_run *S, rlaif_learner *L, long it, const int32_t *pk) {
    if (!S->judge_reward || !S->split || L->rank != 0) return 0;
    int64_t cmd = it;
    MPI_Request rq;
    RLAIF_CHECK_MPI(MPI_Ibcast(&cmd, 1, MPI_INT64_T, 0, S->jcomm, &rq));
    RLAIF_TRY(rlaif_wait_sleeping(&rq));
    /* the judges wait for it while the learners run their forwards */
    return MPI_Ibcast((void *)pk, S->e.N * (S->W + 1), MPI_INT32_T, 0, S->jcomm, &S->jreq) ==
                   MPI_SUCCESS
               ? 0
               : RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "%s: MPI_Ibcast to the judges", S->name);
}

/* Split, learner 0: the judges' scores of the whole batch into raw. */
static int lead_collect(pg_run *S, long it, float *raw) {
    RLAIF_TRY(rlaif_wait_sleeping(&S->jreq));
    int n, mine[3] = {0, 0, 0};
    RLAIF_CHECK_MPI(MPI_Comm_size(S->jcomm, &n));
    int *meta = xmalloc(sizeof(int) * 3 * (size_t)n), *cnt = xcalloc((size_t)n, sizeof(int)),
        *dsp = xcalloc((size_t)n, sizeof(int));
    int rc = rlaif_gather_sleeping(mine, 3, meta, 0, S->jcomm); /* while the judges work */
    for (int r = 1; r < n && !rc; r++) {
        dsp[r] = meta[3 * r], cnt[r] = meta[3 * r + 1];
        if (meta[3 * r + 2])
            rc = RLAIF_ERROR(meta[3 * r + 2], "the judge rank's log has the reason",
                             "%s: judge rank %d could not score iteration %ld", S->name, r - 1, it);
    }
    MPI_Request rq;
    if (!rc &&
        MPI_Igatherv(NULL, 0, MPI_FLOAT, raw, cnt, dsp, MPI_FLOAT, 0, S->jcomm, &rq) == MPI_SUCCESS)
        rc = rlaif_wait_sleeping(&rq);
    free(meta), free(cnt), free(dsp);
    return rc;
}

/* Colocated: this learner judges its share of the prompts; all-gather. */
static int colocated_collect(pg_run *S, rlaif_learner *L, long it, const int32_t *pk, float *raw) {
    int K = S->e.K;
    long lo, hi;
    rlaif_learner_share(L, S->bs, &lo, &hi);
    RLAIF_TRY(rlaif_agree(L->comm, judge_share(S, it, lo, hi, pk, raw + lo * K)));
    int *cnt = xmalloc(sizeof(int) * (size_t)L->size),
        *dsp = xmalloc(sizeof(int) * (size_t)L->size);
    for (int r = 0; r < L->size; r++) {
        size_t b, e;
        rlaif_shard_range((size_t)S->bs, L->size, r, &b, &e);
        cnt[r] = (int)(e - b) * K, dsp[r] = (int)b * K;
    }
    int err = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, raw, cnt, dsp, MPI_FLOAT, L->comm);
    free(cnt), free(dsp);
    return err == MPI_SUCCESS ? 0 : rlaif_error_mpi(err, "MPI_Allgatherv", __FILE__, __LINE__);
}

int rlaif_pg_judge_collect(pg_run *S, rlaif_learner *L, long it, const int32_t *pk) {
    float *raw = S->e.raw;
    if (!S->split) RLAIF_TRY(colocated_collect(S, L, it, pk, raw));
    if (S->split) {
        RLAIF_TRY(rlaif_agree(L->comm, L->rank == 0 ? lead_collect(S, it, raw) : 0));
        MPI_Request rq;
        RLAIF_CHECK_MPI(MPI_Ibcast(raw, S->e.N, MPI_FLOAT, 0, L->comm, &rq));
        RLAIF_TRY(rlaif_wait_sleeping(&rq));
    }
    long failed = 0;
    for (int i = 0; i < S->e.N; i++) failed += isnan(raw[i]);
    if (failed)
        rlaif_warn("%s: iteration %ld: the judge answered for %d of %d responses; the other "
                   "%ld get the neutral reward 0 (online DPO: their pairs are left out)",
                   S->name, it, S->e.N - (int)failed, S->e.N, failed);
    S->judge_failed += failed;
    return 0;
}

int rlaif_pg_judge_release(pg_run *S) {
    int64_t cmd = -1;
    MPI_Request rq;
    RLAIF_CHECK_MPI(MPI_Ibcast(&cmd, 1, MPI_INT64_T, 0, S->jcomm, &rq));
    return rlaif_wait_sleeping(&rq);
}

/* ---- a judge rank ---- */

/* One iteration: the batch from learner 0, this rank's share scored, sent back. */
static int serve_iteration(pg_run *S, long it, int32_t *pk, float *raw) {
    int K = S->e.K;
    MPI_Request rq;
    RLAIF_CHECK_MPI(MPI_Ibcast(pk, S->e.N * (S->W + 1), MPI_INT32_T, 0, S->jcomm, &rq));
    RLAIF_TRY(rlaif_wait_sleeping(&rq));
    size_t a, b;
    rlaif_shard_range((size_t)S->bs, S->ctx->ranks.count[RLAIF_ROLE_JUDGE],
                      S->ctx->ranks.group_rank[RLAIF_ROLE_JUDGE], &a, &b);
    int rc = judge_share(S, it, (long)a, (long)b, pk, raw);
    int meta[3] = {(int)a * K, rc ? 0 : (int)(b - a) * K, rc};
    RLAIF_TRY(rlaif_gather_sleeping(meta, 3, NULL, 0, S->jcomm));
    if (rc) return rc;
    RLAIF_CHECK_MPI(
        MPI_Igatherv(raw, meta[1], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0, S->jcomm, &rq));
    return rlaif_wait_sleeping(&rq);
}

int rlaif_pg_judge_serve(pg_run *S) {
    int32_t *pk = xmalloc(sizeof(int32_t) * ((size_t)S->e.N * (S->W + 1) + 1));
    float *raw = xmalloc(sizeof(float) * ((size_t)S->e.N + 1));
    int rc = 0;
    for (;;) {
        int64_t cmd;
        MPI_Request rq;
        int e = MPI_Ibcast(&cmd, 1, MPI_INT64_T, 0, S->jcomm, &rq);
        int wrc = e == MPI_SUCCESS ? rlaif_wait_sleeping(&rq)
                                   : rlaif_error_mpi(e, "MPI_Ibcast", __FILE__, __LINE__);
        if (wrc || cmd < 0) {
            rc = rc ? rc : wrc;
            break;
        }
        int irc = serve_iteration(S, (long)cmd, pk, raw);
        if (irc && !rc) rc = irc; /* keep serving until released */
    }
    free(pk), free(raw);
    return rc;
}
