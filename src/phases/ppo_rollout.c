/* ppo_rollout.c - the sampling of a policy-gradient iteration (ppo.h, step
 * 1-2): which prompts, who samples them, and how the sequences reach every
 * learner.
 *
 * Split layout, per iteration, over the learner-0 + rollouts communicator:
 *   learner 0: Bcast {iteration, policy version}  -> rollouts (sleeping Ibcast)
 *              weight broadcast (weight_sync.h)    -> rollouts
 *   rollouts:  sample their contiguous share of the prompts, and meanwhile
 *              the learners sample theirs (ppo.learners_sample: the shares
 *              are over rollouts and learners; they would wait otherwise)
 *              Gather {first prompt, ints, rc, stop} and Gatherv of the samples -> learner 0
 *   learners:  all-gather of the whole batch
 * An iteration of -1 releases the rollout ranks at the end of the phase.
 * Colocated: each learner samples its share and the learners all-gather.
 * Waiting ranks sleep (rlaif_wait_sleeping): on a node shared by rollout
 * and learner ranks a spinning wait would steal the other's cores. */
#include "ppo_impl.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/stop.h"
#include "rlaif/core/tensors.h"
#include "rlaif/phases/mailbox.h"
#include "rlaif/phases/task.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Prompts [lo, hi) of iteration it sampled with m into out: per sequence
 * its length, then W tokens (EOS after the end). */
static int sample_share(pg_run *S, rlaif_model *m, long it, long lo, long hi, int32_t *out) {
    int g = (int)(hi - lo), K = S->e.K, W = S->W;
    if (g <= 0) return 0;
    const char **texts = xmalloc(sizeof(char *) * (size_t)g);
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)g);
    for (int p = 0; p < g; p++)
        texts[p] = S->ps.text[rlaif_pg_prompt_of(S, it, lo + p)], ids[p] = lo + p;
    rlaif_rollout r = {.model = m,
                       .tok = S->tok,
                       .chat = &S->chat,
                       .who = S->name,
                       .max_prompt_len = rlaif_cfg_int(S->ctx->cfg, "data.max_prompt_len"),
                       .max_new_tokens = W,
                       .temperature = S->temperature,
                       .top_p = 1.0f,
                       .seed = S->seed,
                       .step = (uint32_t)(it + 1)};
    rlaif_rollout_batch b;
    int rc = rlaif_rollout_sample(&r, g, texts, ids, K, &b);
    free(texts), free(ids);
    RLAIF_TRY(rc);
    int32_t eos = rlaif_chat_stop_id(&S->chat, S->tok);
    for (int s = 0; s < b.B; s++) {
        int32_t *o = out + (size_t)s * (size_t)(W + 1);
        o[0] = b.length[s] < W ? b.length[s] : W;
        for (int j = 0; j < W; j++)
            o[1 + j] = j < b.max_new ? b.tokens[(size_t)s * b.max_new + j] : eos;
    }
    rlaif_rollout_batch_free(&b);
    return 0;
}

char *rlaif_pg_response_text(const pg_run *S, const int32_t *pk, long s) {
    const int32_t *q = pk + (size_t)s * (size_t)(S->W + 1);
    rlaif_bytes b = {0};
    int rc = rlaif_format_response(S->tok, &S->chat, q + 1, (size_t)q[0], &b);
    char *t = rlaif_utf8_clean(rc || !b.data ? "" : b.data, rc ? 0 : b.n);
    rlaif_bytes_free(&b);
    return t;
}

/* S->e's sequences from the packed samples of iteration it. */
static void build(pg_run *S, long it, const int32_t *pk) {
    rlaif_pg_exp *e = &S->e;
    int W = S->W, K = e->K;
    int32_t eos = rlaif_chat_stop_id(&S->chat, S->tok);
    size_t total = 0, nw = (size_t)e->N * (size_t)W;
    for (int i = 0; i < e->N; i++) {
        int64_t p = rlaif_pg_prompt_of(S, it, i / K);
        total += (size_t)(S->poff[p + 1] - S->poff[p]) + (size_t)pk[(size_t)i * (W + 1)];
    }
    e->tok = xrealloc(e->tok, sizeof(int32_t) * (total + 1));
    float *zero[] = {e->mask, e->logp, e->ref, e->value, e->ent, e->kl, e->adv, e->ret};
    for (size_t k = 0; k < sizeof zero / sizeof *zero; k++) memset(zero[k], 0, sizeof(float) * nw);
    e->off[0] = 0;
    for (int i = 0; i < e->N; i++) {
        const int32_t *s = pk + (size_t)i * (W + 1);
        int64_t p = rlaif_pg_prompt_of(S, it, i / K), np = S->poff[p + 1] - S->poff[p];
        int32_t *t = e->tok + e->off[i];
        memcpy(t, S->pids + S->poff[p], sizeof(int32_t) * (size_t)np);
        memcpy(t + np, s + 1, sizeof(int32_t) * (size_t)s[0]);
        e->plen[i] = (int32_t)np, e->len[i] = s[0];
        e->off[i + 1] = e->off[i] + np + s[0];
        e->eos[i] = s[0] > 0 && s[s[0]] == eos;
        for (int j = 0; j < s[0]; j++) e->mask[(size_t)i * W + j] = 1;
    }
}

/* Colocated: each learner samples its share of the prompts; all-gather. */
static int collect_colocated(pg_run *S, rlaif_learner *L, long it, int32_t *pk) {
    int per = (S->W + 1) * S->e.K;
    long lo, hi;
    rlaif_learner_share(L, S->bs, &lo, &hi);
    RLAIF_TRY(rlaif_agree(L->comm, sample_share(S, &L->model, it, lo, hi, pk + (size_t)lo * per)));
    int *cnt = xmalloc(sizeof(int) * (size_t)L->size),
        *dsp = xmalloc(sizeof(int) * (size_t)L->size);
    for (int r = 0; r < L->size; r++) {
        size_t b, e;
        rlaif_shard_range((size_t)S->bs, L->size, r, &b, &e);
        cnt[r] = (int)(e - b) * per, dsp[r] = (int)b * per;
    }
    int err =
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, pk, cnt, dsp, MPI_INT32_T, L->comm);
    free(cnt), free(dsp);
    return err == MPI_SUCCESS ? 0 : rlaif_error_mpi(err, "MPI_Allgatherv", __FILE__, __LINE__);
}

/* Learner 0 -> rollouts: {iteration, version}, or {-1, 0} at the end. The
 * rollouts wait in a sleeping MPI_Ibcast, and a blocking and a non-blocking
 * collective never match each other, so this one is non-blocking too. */
static int send_command(MPI_Comm w, int64_t cmd[2]) {
    MPI_Request rq;
    RLAIF_CHECK_MPI(MPI_Ibcast(cmd, 2, MPI_INT64_T, 0, w, &rq));
    return rlaif_wait_sleeping(&rq);
}

/* Split layout: an iteration's prompts over the ranks that sample, rollout
 * ranks first (worker = rollout group rank), then, with ppo.learners_sample,
 * the learners (worker = rollout count + learner rank), in contiguous shares.
 * The learners would otherwise wait while the rollouts sample. */
static void worker_share(const pg_run *S, int worker, long *lo, long *hi) {
    const rlaif_ranks *rk = &S->ctx->ranks;
    int n =
        rk->count[RLAIF_ROLE_ROLLOUT] + (S->learners_sample ? rk->count[RLAIF_ROLE_LEARNER] : 0);
    size_t a = 0, b = 0;
    if (worker < n) rlaif_shard_range((size_t)S->bs, n, worker, &a, &b);
    *lo = (long)a, *hi = (long)b;
}

/* Split, learner 0: the command and the weights to the rollouts. */
static int lead_start(pg_run *S, rlaif_learner *L, long it) {
    int64_t cmd[2] = {it, (int64_t)L->step + 1};
    RLAIF_TRY(send_command(S->ctx->ranks.weights, cmd));
    double t0 = rlaif_now();
    RLAIF_TRY(rlaif_wsync_start(&S->ws, (uint64_t)cmd[1]));
    RLAIF_TRY(rlaif_wsync_wait(&S->ws));
    S->t_bcast += rlaif_now() - t0;
    return 0;
}

/* Split, learner 0: the rollouts' samples into pk. */
static int lead_gather(pg_run *S, long it, int32_t *pk) {
    MPI_Comm w = S->ctx->ranks.weights;
    int n, per = (S->W + 1) * S->e.K;
    RLAIF_CHECK_MPI(MPI_Comm_size(w, &n));
    int mine[4] = {0, 0, 0, 0}, *meta = xmalloc(sizeof(int) * 4 * (size_t)n);
    int *cnt = xcalloc((size_t)n, sizeof(int)), *dsp = xcalloc((size_t)n, sizeof(int));
    int stop = 0;
    int rc = rlaif_gather_sleeping(mine, 4, meta, 0, w); /* while the rollouts sample */
    for (int r = 1; r < n && !rc; r++) {
        cnt[r] = meta[4 * r + 1], dsp[r] = meta[4 * r] * per, stop |= meta[4 * r + 3];
        if (meta[4 * r + 2] && !rc)
            rc = RLAIF_ERROR(meta[4 * r + 2], "the rollout rank's own error follows",
                             "%s: rollout rank %d failed at iteration %ld", S->name, r, it);
    }
    MPI_Request rq;
    if (!rc &&
        MPI_Igatherv(NULL, 0, MPI_INT32_T, pk, cnt, dsp, MPI_INT32_T, 0, w, &rq) == MPI_SUCCESS)
        rc = rlaif_wait_sleeping(&rq);
    free(meta), free(cnt), free(dsp);
    if (stop) rlaif_stop_request(SIGTERM); /* a rollout saw one: taken at the next iteration */
    return rc;
}

/* Split: every learner's part of pk to every learner. Learner 0 holds the
 * rollouts' prompts and its own share, [0, end of its share); learner l > 0
 * its own share. */
static int share_learners(pg_run *S, rlaif_learner *L, int32_t *pk) {
    int R = S->ctx->ranks.count[RLAIF_ROLE_ROLLOUT], per = (S->W + 1) * S->e.K;
    int *cnt = xmalloc(sizeof(int) * (size_t)L->size),
        *dsp = xmalloc(sizeof(int) * (size_t)L->size);
    for (int l = 0; l < L->size; l++) {
        long lo, hi;
        worker_share(S, R + l, &lo, &hi);
        if (l == 0) lo = 0, hi = S->learners_sample ? hi : S->bs;
        cnt[l] = (int)(hi - lo) * per, dsp[l] = (int)lo * per;
    }
    MPI_Request rq;
    int e = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, pk, cnt, dsp, MPI_INT32_T, L->comm,
                            &rq);
    free(cnt), free(dsp);
    return e == MPI_SUCCESS ? rlaif_wait_sleeping(&rq)
                            : rlaif_error_mpi(e, "MPI_Iallgatherv", __FILE__, __LINE__);
}

/* Split: learner 0 starts the rollouts, every learner samples its share
 * (ppo.learners_sample), learner 0 gathers the rollouts', all share. */
static int collect_split(pg_run *S, rlaif_learner *L, long it, int32_t *pk) {
    int R = S->ctx->ranks.count[RLAIF_ROLE_ROLLOUT], per = (S->W + 1) * S->e.K;
    int started = L->rank == 0 ? lead_start(S, L, it) : 0;
    long lo, hi;
    worker_share(S, R + L->rank, &lo, &hi);
    int rc = started ? started : sample_share(S, &L->model, it, lo, hi, pk + (size_t)lo * per);
    if (L->rank == 0 && !started) {
        int g = lead_gather(S, it, pk);
        rc = rc ? rc : g;
    }
    RLAIF_TRY(rlaif_agree(L->comm, rc));
    return share_learners(S, L, pk);
}

int rlaif_pg_collect(pg_run *S, rlaif_learner *L, long it) {
    size_t n = (size_t)S->e.N * (size_t)(S->W + 1);
    if (!S->pk) S->pk = xcalloc(n + 1, sizeof(int32_t));
    int32_t *pk = S->pk;
    int rc = S->split ? collect_split(S, L, it, pk) : collect_colocated(S, L, it, pk);
    if (!rc) build(S, it, pk);
    return rc ? rc : rlaif_pg_judge_post(S, L, it, pk);
}

int rlaif_pg_rollout_release(pg_run *S) {
    int64_t cmd[2] = {-1, 0};
    return send_command(S->ctx->ranks.weights, cmd);
}

/* Split, a rollout rank: one iteration's share, sent to learner 0. */
static int serve_iteration(pg_run *S, long it, int64_t version, int32_t *pk) {
    MPI_Comm w = S->ctx->ranks.weights;
    long lo, hi;
    int rc = rlaif_wsync_start(&S->ws, (uint64_t)version);
    if (!rc) rc = rlaif_wsync_wait(&S->ws);
    worker_share(S, S->ctx->ranks.group_rank[RLAIF_ROLE_ROLLOUT], &lo, &hi);
    if (!rc) rc = sample_share(S, &S->sampler, it, lo, hi, pk);
    int n = rc ? 0 : (int)(hi - lo) * (S->W + 1) * S->e.K;
    int meta[4] = {(int)lo, n, rc, rlaif_stop_requested()};
    RLAIF_TRY(rlaif_gather_sleeping(meta, 4, NULL, 0, w));
    if (rc) return rc; /* learner 0 gives up on this iteration and releases us */
    MPI_Request rq;    /* learner 0 posts an MPI_Igatherv: it must be matched by one */
    RLAIF_CHECK_MPI(MPI_Igatherv(pk, n, MPI_INT32_T, NULL, NULL, NULL, MPI_INT32_T, 0, w, &rq));
    return rlaif_wait_sleeping(&rq);
}

int rlaif_pg_rollout_serve(pg_run *S) {
    long lo, hi;
    worker_share(S, S->ctx->ranks.group_rank[RLAIF_ROLE_ROLLOUT], &lo, &hi);
    int32_t *pk = xmalloc(sizeof(int32_t) * ((size_t)(hi - lo) * (S->W + 1) * S->e.K + 1));
    int rc = 0;
    for (;;) {
        int64_t cmd[2];
        MPI_Request rq;
        int e = MPI_Ibcast(cmd, 2, MPI_INT64_T, 0, S->ctx->ranks.weights, &rq);
        int wrc = e == MPI_SUCCESS ? rlaif_wait_sleeping(&rq)
                                   : rlaif_error_mpi(e, "MPI_Ibcast", __FILE__, __LINE__);
        if (wrc || cmd[0] < 0) {
            rc = rc ? rc : wrc;
            break;
        }
        int irc = serve_iteration(S, (long)cmd[0], cmd[1], pk);
        if (irc && !rc) rc = irc; /* keep serving until released */
    }
    free(pk);
    return rc;
}
