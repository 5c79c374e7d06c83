/* collect.c - `rlaif collect`: the SFT policy samples K responses per prompt
 * on the rollout ranks, pairs of them are labelled by the feedback LLM on
 * the judge ranks, and the judge ranks store pairs, texts and labels in
 * <out_dir>/preferences.h5. The protocol between them is described in
 * include/rlaif/phases/collect.h; the judge side labels and stores exactly like
 * `rlaif judge --prefs` (src/app/judge_cmd.c). */
#include "rlaif/phases/collect.h"
#include "rlaif/phases/layout.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/log.h"
#include "rlaif/core/stop.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/judge/judge.h"
#include "rlaif/phases/mailbox.h"
#include "rlaif/phases/pump.h"
#include "rlaif/phases/rollout.h"
#include "rlaif/core/h5util.h"
#include "rlaif/storage/metrics.h"
#include "rlaif/storage/prefs.h"

#include <hdf5.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { TAG_REQ = 7101, TAG_WORK, TAG_RESULT, TAG_STOP, TAG_PROGRESS, TAG_REPORT };
/* A progress message: prompts sampled, pairs formed, judged, labelled,
 * then the judge's usage (RLAIF_TM_REQUESTS.. RLAIF_TM_COST), as doubles
 * (exact for counts below 2^53) so the cost travels with them. */
enum { NPROG = 4 + RLAIF_TM_N - RLAIF_TM_REQUESTS };
enum { GEN_SEQS = 64 };             /* sequences per generation batch */
enum { STORE_INTERVAL_MS = 10000 }; /* store at least this often when pairs wait */

typedef struct {
    long crash_after, stop_after, store_every;
    int quiet;
} collect_opts;

/* -------------------------------------------------------------- the run */

typedef struct {
    uint64_t id;
    int64_t prompt;
    char *r[2];
} wpair; /* a pair waiting on a rollout rank */

typedef struct {
    uint64_t id;
    int origin; /* world rank of the rollout that sent it */
    char *p, *r[2];
} jentry; /* a pair on a judge rank */

typedef struct {
    rlaif_model model;
    rlaif_tokenizer *tok;
    rlaif_chat chat;
    rlaif_rollout w; /* the sampling settings of [collect] */
    int loaded;
    int64_t lo, hi, next; /* my prompts and the next one to sample */
    uint8_t *stored;      /* [(hi - lo) * P] pair already in preferences.h5 */
    wpair *q;
    size_t qh, qn, qcap; /* ready pairs are q[qh, qn) */
    rlaif_credit credit; /* pairs handed out to judges, not yet answered */
    int *want;           /* [world] open request of each judge (0 = none) */
    char *told_done;     /* [world] */
    int ndone_told, rot, gen_done, active;
    int64_t prompts, skipped, responses, pairs, pairs_before, short_prompts;
    double wait_t0, wait_c0, wait_wall, wait_cpu;
} rollout;

typedef struct {
    rlaif_pump *pump;
    rlaif_prefs *prefs;
    MPI_Comm comm; /* the judge group */
    int rank, size;
    jentry *q;
    size_t qh, qn, qcap; /* received, not submitted */
    jentry *fly;         /* submitted, by pump tag; p == NULL: a free slot */
    size_t nfly, capfly; /* slots in use, slots */
    int64_t *free_slot;  /* [capfly] stack of free slots */
    size_t nfree;
    int *asked; /* [world] pairs asked of each rollout, not yet answered */
    int reserved, nroll_done, active;
    char *roll_done; /* [world] */
    int *answered;   /* [world] results to report to each rollout */
    rlaif_judged_pair *buf;
    size_t nbuf, capbuf;
    MPI_Request areq;
    int ain[4], aout[4], posted;
    double last_store;
    int retry_failed; /* collect.retry_failed */
    int64_t stored;   /* pairs added to the file (judge rank 0: by the group) */
    int64_t left_out; /* unanswered pairs kept out of the file for a rerun */
} judger;

typedef struct {
    const rlaif_config *cfg;
    rlaif_ranks *rk;
    collect_opts o;
    rlaif_mailbox mb;
    rlaif_prompt_set ps;
    int K, P;
    uint64_t seed;
    int is_rollout, is_judge, nroll, njudge;
    int *roll_world, *judge_world;
    int stopping, stop_sig;
    int fail; /* RLAIF_EX_FAIL: this judge rank found the judge out (its error recorded) */
    char policy[4096], prefs_path[4096], *signature;
    int64_t total_pairs; /* pairs this run should label (for the ETA) */
    int64_t had;         /* pairs in preferences.h5 before this run */
    rollout ro;
    judger ju;
    double (*prog)[NPROG]; /* rank 0: latest counts of every rank */
    double t0, last_prog, last_status;
} collect_run;

static int world_of(const rlaif_ranks *rk, rlaif_role r, int i) {
    return rk->colocated ? i : rk->first[r] + i;
}

/* ---- stop: a signal, the walltime or --stop-after, on any rank ---- */

static int check_stop(collect_run *C) {
    if (C->stopping || !rlaif_stop_requested()) return 0;
    C->stopping = 1;
    C->stop_sig = rlaif_stop_signal();
    for (int w = 0; w < C->mb.size; w++)
        if (w != C->mb.rank) RLAIF_TRY(rlaif_mailbox_post_int(&C->mb, w, TAG_STOP, C->stop_sig));
    return 0;
}

/* ---- rollout side ---- */

static int prompt_stored(const collect_run *C, int64_t i) {
    const rollout *R = &C->ro;
    for (int t = 0; t < C->P; t++)
        if (!R->stored[(i - R->lo) * C->P + t]) return 0;
    return 1;
}

static void queue_pair(rollout *R, uint64_t id, int64_t prompt, const char *a, const char *b) {
    if (R->qh > 0 && R->qn == R->qcap) { /* slide down what is left */
        memmove(R->q, R->q + R->qh, sizeof *R->q * (R->qn - R->qh));
        R->qn -= R->qh, R->qh = 0;
    }
    if (R->qn == R->qcap) {
        R->qcap = R->qcap ? 2 * R->qcap : 256;
        R->q = xrealloc(R->q, sizeof *R->q * R->qcap);
    }
    R->q[R->qn++] = (wpair){id, prompt, {xstrdup(a), xstrdup(b)}};
}

/* The pairs of prompt i from its K decoded texts. */
static void form_pairs(collect_run *C, int64_t i, char **texts) {
    rollout *R = &C->ro;
    int *pick = xmalloc(sizeof(int) * 2 * (size_t)C->P);
    int got = rlaif_rollout_pick_pairs(C->seed, i, C->K, C->P, (const char *const *)texts, pick);
    R->short_prompts += got < C->P;
    for (int t = 0; t < got; t++) {
        if (R->stored[(i - R->lo) * C->P + t]) {
            R->pairs_before++;
            continue;
        }
        uint64_t id = (uint64_t)i * (uint64_t)C->P + (uint64_t)t;
        queue_pair(R, id, i, texts[pick[2 * t]], texts[pick[2 * t + 1]]);
        R->pairs++;
    }
    free(pick);
}

/* Prompts ids[0..g): K samples each, decoded, paired. */
static int sample(collect_run *C, const int64_t *ids, int g) {
    rollout *R = &C->ro;
    const char **q = xmalloc(sizeof(char *) * (size_t)g);
    for (int p = 0; p < g; p++) q[p] = C->ps.text[ids[p]];
    rlaif_rollout_batch b;
    int rc = rlaif_rollout_sample(&R->w, g, q, ids, C->K, &b);
    free(q);
    RLAIF_TRY(rc);
    for (int p = 0; p < g; p++) {
        form_pairs(C, ids[p], b.text + (size_t)p * (size_t)C->K);
        R->prompts++, R->responses += C->K;
    }
    rlaif_rollout_batch_free(&b);
    return 0;
}

/* One generation batch when the queue has room; 1 when it did work. */
static int rollout_generate(collect_run *C, int *did) {
    rollout *R = &C->ro;
    *did = 0;
    size_t cap = 2 * (size_t)R->credit.limit + (size_t)(GEN_SEQS * C->P);
    if (R->gen_done || C->stopping || R->qn - R->qh >= cap) return 0;
    int G = GEN_SEQS / C->K > 0 ? GEN_SEQS / C->K : 1, g = 0;
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)G);
    while (g < G && R->next < R->hi) {
        int64_t i = R->next++;
        if (prompt_stored(C, i))
            R->skipped++;
        else
            ids[g++] = i;
    }
    int rc = g ? sample(C, ids, g) : 0;
    free(ids);
    if (R->next >= R->hi) {
        R->gen_done = 1; /* from here on this rank only waits: measure how cheaply */
        R->wait_t0 = rlaif_now(), R->wait_c0 = rlaif_cpu_seconds();
    }
    *did = 1;
    return rc;
}

/* Pairs q[qh, qh + n) as one TAG_WORK message (see collect.h). */
static int send_work(collect_run *C, int dest, int n, int done) {
    rollout *R = &C->ro;
    size_t size = 8;
    for (int i = 0; i < n; i++) {
        const wpair *w = &R->q[R->qh + (size_t)i];
        size += 20 + strlen(C->ps.text[w->prompt]) + strlen(w->r[0]) + strlen(w->r[1]);
    }
    if (size > 1u << 30)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "lower collect.credit",
                           "collect: one work message would hold %zu bytes", size);
    char *buf = xmalloc(size), *p = buf;
    int32_t head[2] = {n, done};
    memcpy(p, head, 8), p += 8;
    for (int i = 0; i < n; i++) {
        wpair *w = &R->q[R->qh++];
        const char *s[3] = {C->ps.text[w->prompt], w->r[0], w->r[1]};
        uint32_t l[3] = {(uint32_t)strlen(s[0]), (uint32_t)strlen(s[1]), (uint32_t)strlen(s[2])};
        memcpy(p, &w->id, 8), memcpy(p + 8, l, 12), p += 20;
        for (int k = 0; k < 3; k++) memcpy(p, s[k], l[k]), p += l[k];
        free(w->r[0]), free(w->r[1]);
    }
    return rlaif_mailbox_post(&C->mb, dest, TAG_WORK, buf, (int)size);
}

/* Answer open requests: pairs within credit, or "done" when nothing is left. */
static int rollout_serve(collect_run *C, int *did) {
    rollout *R = &C->ro;
    for (int k = 0; k < C->njudge; k++) {
        int w = C->judge_world[(k + R->rot) % C->njudge];
        int avail = (int)(R->qn - R->qh), room = rlaif_credit_room(&R->credit);
        if (!R->want[w]) continue;
        if (avail > 0 && room > 0) {
            int n = R->want[w] < avail ? R->want[w] : avail;
            n = n < room ? n : room;
            RLAIF_TRY(send_work(C, w, n, 0));
            rlaif_credit_take(&R->credit, n);
            R->want[w] = 0, *did = 1;
        } else if (avail == 0 && R->gen_done) {
            RLAIF_TRY(send_work(C, w, 0, 1));
            R->want[w] = 0, R->told_done[w] = 1, R->ndone_told++, *did = 1;
        }
    }
    R->rot++;
    return 0;
}

/* ---- judge side ---- */

static void unpack_work(collect_run *C, int src, const char *buf, int len) {
    judger *J = &C->ju;
    int32_t head[2];
    if (len < 8) RLAIF_DIE(RLAIF_EX_SOFTWARE, "a bug", "collect: short work message");
    memcpy(head, buf, 8);
    const char *p = buf + 8, *end = buf + len;
    J->reserved -= J->asked[src];
    J->asked[src] = 0;
    for (int i = 0; i < head[0]; i++) {
        jentry e = {.origin = src};
        uint32_t l[3];
        if (end - p < 20) RLAIF_DIE(RLAIF_EX_SOFTWARE, "a bug", "collect: torn work message");
        memcpy(&e.id, p, 8), memcpy(l, p + 8, 12), p += 20;
        char **dst[3] = {&e.p, &e.r[0], &e.r[1]};
        for (int k = 0; k < 3; k++) {
            if ((size_t)(end - p) < l[k])
                RLAIF_DIE(RLAIF_EX_SOFTWARE, "a bug", "collect: torn work message");
            *dst[k] = xmalloc(l[k] + 1);
            memcpy(*dst[k], p, l[k]), (*dst[k])[l[k]] = 0, p += l[k];
        }
        if (J->qn == J->qcap) {
            if (J->qh > 0) {
                memmove(J->q, J->q + J->qh, sizeof *J->q * (J->qn - J->qh));
                J->qn -= J->qh, J->qh = 0;
            }
            if (J->qn == J->qcap) {
                J->qcap = J->qcap ? 2 * J->qcap : 256;
                J->q = xrealloc(J->q, sizeof *J->q * J->qcap);
            }
        }
        J->q[J->qn++] = e;
    }
    if (head[1] && !J->roll_done[src]) J->roll_done[src] = 1, J->nroll_done++;
}

/* A slot for a pair in flight: its pump tag. */
static int64_t fly_slot(judger *J) {
    if (J->nfree > 0) return J->free_slot[--J->nfree];
    if (J->nfly == J->capfly) {
        J->capfly = J->capfly ? 2 * J->capfly : 64;
        J->fly = xrealloc(J->fly, sizeof *J->fly * J->capfly);
        J->free_slot = xrealloc(J->free_slot, sizeof *J->free_slot * J->capfly);
    }
    return (int64_t)J->nfly++;
}

static int judge_submit(collect_run *C, int *did) {
    judger *J = &C->ju;
    while (J->qh < J->qn && rlaif_pump_room(J->pump) > 0 && !C->stopping) {
        jentry *e = &J->q[J->qh++];
        rlaif_judge_pair p = {e->id, e->p, {e->r[0], e->r[1]}};
        int64_t slot = fly_slot(J);
        J->fly[slot] = *e;
        RLAIF_TRY(rlaif_pump_submit(J->pump, &p, slot));
        *did = 1;
    }
    return 0;
}

static void jentry_free(jentry *e) {
    free(e->p), free(e->r[0]), free(e->r[1]);
    memset(e, 0, sizeof *e);
}

/* A finished pair: into the store buffer (unless the judge never answered
 * it and a rerun is to retry it), credited back to its rollout. */
static int judge_take(void *user, int64_t slot, rlaif_judge_result *r) {
    collect_run *C = user;
    judger *J = &C->ju;
    jentry e = J->fly[slot];
    memset(&J->fly[slot], 0, sizeof J->fly[slot]);
    J->free_slot[J->nfree++] = slot;
    J->answered[e.origin]++;
    if (J->retry_failed && rlaif_pump_unanswered(r->status)) {
        J->left_out++;
        jentry_free(&e);
        return 0;
    }
    if (J->nbuf == J->capbuf) {
        J->capbuf = J->capbuf ? 2 * J->capbuf : 256;
        J->buf = xrealloc(J->buf, sizeof *J->buf * J->capbuf);
    }
    rlaif_judged_pair *d = &J->buf[J->nbuf++];
    d->prompt = e.p, d->response[0] = e.r[0], d->response[1] = e.r[1];
    rlaif_judge_to_pair(r, &d->row);
    d->explanation = r->explanation;
    r->explanation = NULL;
    return 0;
}

/* The judge is out (rlaif_pump_check): stop everyone, store what was
 * labelled, exit with the reason (finish). */
static int judge_out(collect_run *C, int rc) {
    C->fail = rc;
    if (C->stopping) return 0;
    C->stopping = 1;
    for (int w = 0; w < C->mb.size; w++)
        if (w != C->mb.rank) RLAIF_TRY(rlaif_mailbox_post_int(&C->mb, w, TAG_STOP, -1));
    return 0;
}

static int judge_poll(collect_run *C, int *did) {
    judger *J = &C->ju;
    int n = 0, waiting = rlaif_pump_pending(J->pump) > 0;
    /* with calls in flight, poll sleeps in curl_multi_poll for 2 ms: that is
     * both what drives the transfers and this rank's nap */
    RLAIF_TRY(rlaif_pump_poll(J->pump, waiting ? 0.002 : 0, judge_take, C, &n));
    *did |= waiting;
    for (int w = 0; w < C->mb.size && n > 0; w++)
        if (J->answered[w]) {
            RLAIF_TRY(rlaif_mailbox_post_int(&C->mb, w, TAG_RESULT, J->answered[w]));
            J->answered[w] = 0;
        }
    *did |= n > 0;
    int64_t judged = rlaif_pump_counts_of(J->pump)->judged;
    /* only once something is stored: the test resumes from a partial file,
     * and on a loaded machine 25 answers can arrive before the first store */
    if (C->o.crash_after >= 0 && judged >= C->o.crash_after && J->stored > 0) {
        fprintf(stderr, "collect: --crash-after %ld reached: SIGKILL\n", C->o.crash_after);
        raise(SIGKILL); /* testing: die like kill -9, with calls in flight */
    }
    if (C->o.stop_after > 0 && judged >= C->o.stop_after && !rlaif_stop_requested())
        rlaif_stop_request(SIGTERM); /* testing: as if this rank alone got SIGTERM */
    int out = C->fail ? 0 : rlaif_pump_check(J->pump, 0);
    return out ? judge_out(C, out) : 0;
}

/* Ask every rollout rank that may still have pairs for a share of what the
 * judge client can take now. */
static int judge_ask(collect_run *C, int *did) {
    judger *J = &C->ju;
    if (C->stopping) return 0;
    int avail = rlaif_pump_room(J->pump) - (int)(J->qn - J->qh) - J->reserved, cand = 0;
    for (int k = 0; k < C->nroll; k++) {
        int w = C->roll_world[k];
        cand += !J->roll_done[w] && !J->asked[w];
    }
    if (avail <= 0 || cand == 0) return 0;
    int each = avail / cand > 0 ? avail / cand : 1;
    for (int k = 0; k < C->nroll && avail > 0; k++) {
        int w = C->roll_world[k];
        if (J->roll_done[w] || J->asked[w]) continue;
        int want = each < avail ? each : avail;
        RLAIF_TRY(rlaif_mailbox_post_int(&C->mb, w, TAG_REQ, want));
        J->asked[w] = want, J->reserved += want, avail -= want, *did = 1;
    }
    return 0;
}

static void judged_free(rlaif_judged_pair *d) {
    free((char *)d->prompt), free((char *)d->response[0]), free((char *)d->response[1]);
    free((char *)d->explanation);
}

/* Collective over the judge group: append the buffered pairs. */
static int judge_store(collect_run *C) {
    judger *J = &C->ju;
    size_t added = 0;
    /* the store compacts its array in place: hand it a copy, free ours */
    rlaif_judged_pair *tmp = xmalloc(sizeof *tmp * (J->nbuf + 1));
    if (J->nbuf) memcpy(tmp, J->buf, sizeof *tmp * J->nbuf); /* no buffer yet: NULL */
    int rc = rlaif_judge_store(J->prefs, tmp, J->nbuf, &added);
    free(tmp);
    for (size_t i = 0; i < J->nbuf; i++) judged_free(&J->buf[i]);
    J->nbuf = 0;
    J->stored += (int64_t)added;
    J->last_store = rlaif_now();
    return rc;
}

static int judge_finished(const collect_run *C) {
    const judger *J = &C->ju;
    return J->nroll_done == C->nroll && J->qh == J->qn && J->nfly == J->nfree && J->reserved == 0;
}

/* The judges' repeated agreement: store now? all finished? stop? */
static int judge_agree(collect_run *C, int *did) {
    judger *J = &C->ju;
    if (!J->posted) {
        double ms = 1000 * (rlaif_now() - J->last_store);
        J->ain[0] = (int)J->nbuf, J->ain[1] = ms > 1e9 ? 1000000000 : (int)ms;
        J->ain[2] = C->stopping, J->ain[3] = !judge_finished(C);
        RLAIF_CHECK_MPI(MPI_Iallreduce(J->ain, J->aout, 4, MPI_INT, MPI_MAX, J->comm, &J->areq));
        J->posted = 1;
        return 0;
    }
    int flag = 0;
    RLAIF_CHECK_MPI(MPI_Test(&J->areq, &flag, MPI_STATUS_IGNORE));
    if (!flag) return 0;
    J->posted = 0;
    if (J->aout[2] || !J->aout[3]) {
        J->active = 0; /* stopped, or everyone is done: the final store follows */
        C->stopping |= J->aout[2];
        return 0;
    }
    if (J->aout[0] >= C->o.store_every || (J->aout[0] > 0 && J->aout[1] >= STORE_INTERVAL_MS)) {
        RLAIF_TRY(judge_store(C));
        *did = 1;
    }
    return 0;
}

/* ---- messages in, progress out ---- */

static void progress_counts(const collect_run *C, double v[NPROG]) {
    v[0] = (double)(C->ro.prompts + C->ro.skipped), v[1] = (double)C->ro.pairs;
    const rlaif_pump_counts *c = C->ju.pump ? rlaif_pump_counts_of(C->ju.pump) : NULL;
    v[2] = c ? (double)c->judged : 0, v[3] = c ? (double)c->labelled : 0;
    double u[RLAIF_TM_N];
    rlaif_pump_usage(C->ju.pump, u);
    memcpy(v + 4, u + RLAIF_TM_REQUESTS, sizeof(double) * (NPROG - 4));
}

static int handle(collect_run *C, int src, int tag, char *buf, int len) {
    int32_t v = 0;
    if (len >= 4) memcpy(&v, buf, 4);
    if (tag == TAG_STOP) {
        /* v < 0: a judge is out; its error reaches everyone in finish */
        if (!C->stopping) C->stopping = 1, C->stop_sig = v > 0 ? v : 0;
    } else if (tag == TAG_PROGRESS && C->prog && len == (int)sizeof *C->prog) {
        memcpy(C->prog[src], buf, sizeof *C->prog);
    } else if (tag == TAG_REQ && C->ro.active) {
        C->ro.want[src] = v;
    } else if (tag == TAG_RESULT && C->ro.active) {
        rlaif_credit_give(&C->ro.credit, v);
    } else if (tag == TAG_WORK && C->ju.active) {
        unpack_work(C, src, buf, len);
    } /* anything else arrives after a stop: dropped */
    free(buf);
    return 0;
}

static int handle_cb(void *user, int src, int tag, char *buf, int len) {
    return handle(user, src, tag, buf, len);
}

static int service(collect_run *C, int *did) {
    return rlaif_mailbox_service(&C->mb, handle_cb, C, did);
}

static void status_line(collect_run *C) {
    double s[NPROG] = {0}, usage[RLAIF_TM_N];
    for (int r = 0; r < C->mb.size; r++)
        for (int k = 0; k < NPROG; k++) s[k] += C->prog[r][k];
    memcpy(usage + RLAIF_TM_REQUESTS, s + 4, sizeof(double) * (NPROG - 4));
    rlaif_live_judge(usage); /* the status file's judge figures, summed over judge ranks */
    double el = rlaif_now() - C->t0;
    char extra[200];
    snprintf(extra, sizeof extra, "prompts %.0f/%lld sampled, %.0f pairs formed, %.0f labelled",
             s[0], (long long)C->ps.n, s[1], s[3]);
    rlaif_status("collect", (long)s[2], (long)C->total_pairs, el > 0 ? (double)s[2] / el : 0,
                 "pairs/s", el, extra);
}

static int report_progress(collect_run *C, int force) {
    double now = rlaif_now();
    if (!force && now - C->last_prog < 2) return 0;
    C->last_prog = now;
    double v[NPROG];
    progress_counts(C, v);
    if (C->mb.rank == 0) {
        memcpy(C->prog[0], v, sizeof v);
        if (!C->o.quiet && now - C->last_status >= 5) status_line(C), C->last_status = now;
        return 0;
    }
    double *b = xmalloc(sizeof v);
    memcpy(b, v, sizeof v);
    return rlaif_mailbox_post(&C->mb, 0, TAG_PROGRESS, b, (int)sizeof v);
}

/* ---- the loop ---- */

static int rollout_step(collect_run *C, int *did) {
    rollout *R = &C->ro;
    RLAIF_TRY(rollout_serve(C, did));
    int gen = 0;
    RLAIF_TRY(rollout_generate(C, &gen));
    *did |= gen;
    if (C->stopping || (R->gen_done && R->qh == R->qn && R->ndone_told == C->njudge &&
                        R->credit.outstanding == 0)) {
        R->active = 0;
        if (R->gen_done)
            R->wait_wall = rlaif_now() - R->wait_t0, R->wait_cpu = rlaif_cpu_seconds() - R->wait_c0;
    }
    return 0;
}

static int judge_step(collect_run *C, int *did) {
    RLAIF_TRY(judge_submit(C, did));
    RLAIF_TRY(judge_poll(C, did));
    RLAIF_TRY(judge_ask(C, did));
    return judge_agree(C, did);
}

static int main_loop(collect_run *C) {
    while (C->ro.active || C->ju.active) {
        int did = 0;
        RLAIF_TRY(service(C, &did));
        RLAIF_TRY(check_stop(C));
        if (C->ro.active) RLAIF_TRY(rollout_step(C, &did));
        if (C->ju.active) RLAIF_TRY(judge_step(C, &did));
        RLAIF_TRY(report_progress(C, 0));
        if (!did) rlaif_nap();
    }
    return report_progress(C, 1);
}

/* A rank 0 with no collect role (a learner) reports from the drain. */
static void drain_idle(void *user) {
    collect_run *C = user;
    if (C->prog && !C->o.quiet && rlaif_now() - C->last_status >= 5)
        status_line(C), C->last_status = rlaif_now();
}

/* Every rank: receive what is still on its way (see mailbox.h). */
static int drain(collect_run *C) {
    RLAIF_TRY(rlaif_mailbox_drain(&C->mb, handle_cb, C, drain_idle, C));
    if (C->prog && !C->o.quiet) status_line(C);
    return 0;
}

/* --------------------------------------------------------------- setup */

/* The settings a finished preferences.h5 was made with (its
 * collect_complete attribute): a rerun with others collects again. */
static char *make_signature(const rlaif_config *cfg, const char *policy, int64_t n_prompts) {
    json_t *o = json_object();
    const char *keys[] = {"collect.responses_per_prompt",
                          "collect.pairs_per_prompt",
                          "collect.temperature",
                          "collect.top_k",
                          "collect.top_p",
                          "collect.max_new_tokens",
                          "run.seed",
                          "data.task",
                          "data.max_prompt_len"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        json_object_set_new(o, keys[i], json_string(rlaif_cfg_str(cfg, keys[i])));
    const char *chat[3];
    rlaif_chat_keys_set(cfg, chat);
    for (int i = 0; chat[i]; i++)
        json_object_set_new(o, chat[i], json_string(rlaif_cfg_str(cfg, chat[i])));
    json_object_set_new(o, "policy", json_string(policy));
    json_object_set_new(o, "n_prompts", json_integer((json_int_t)n_prompts));
    if (!strcmp(rlaif_cfg_str(cfg, "data.task"), "jsonl"))
        json_object_set_new(o, "data.prompts", json_string(rlaif_cfg_str(cfg, "data.prompts")));
    else
        json_object_set_new(o, "data.max_operand",
                            json_string(rlaif_cfg_str(cfg, "data.max_operand")));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s ? s : xstrdup("{}");
}

static int setup_groups(collect_run *C) {
    rlaif_ranks *rk = C->rk;
    C->is_rollout = rlaif_ranks_has(rk, RLAIF_ROLE_ROLLOUT);
    C->is_judge = rlaif_ranks_has(rk, RLAIF_ROLE_JUDGE);
    C->nroll = rk->count[RLAIF_ROLE_ROLLOUT], C->njudge = rk->count[RLAIF_ROLE_JUDGE];
    C->roll_world = xmalloc(sizeof(int) * (size_t)C->nroll);
    C->judge_world = xmalloc(sizeof(int) * (size_t)C->njudge);
    for (int i = 0; i < C->nroll; i++) C->roll_world[i] = world_of(rk, RLAIF_ROLE_ROLLOUT, i);
    for (int i = 0; i < C->njudge; i++) C->judge_world[i] = world_of(rk, RLAIF_ROLE_JUDGE, i);
    RLAIF_TRY(rlaif_mailbox_open(&C->mb, rk->world));
    if (C->mb.rank == 0) C->prog = xcalloc((size_t)C->mb.size, sizeof *C->prog);
    return 0;
}

/* Rank 0 finds the policy; everyone learns its path. */
static int find_policy(collect_run *C) {
    int rc =
        C->mb.rank == 0 ? rlaif_policy_find(C->cfg, "collect", C->policy, sizeof C->policy) : 0;
    RLAIF_TRY(rlaif_agree(C->mb.comm, rc));
    RLAIF_CHECK_MPI(MPI_Bcast(C->policy, sizeof C->policy, MPI_CHAR, 0, C->mb.comm));
    return 0;
}

/* The rollout ranks load the policy (not when the phase is skipped). */
static int load_policy(collect_run *C) {
    int rc = C->is_rollout ? rlaif_policy_load(C->cfg, "collect", "policy", C->policy, &C->ro.model,
                                               &C->ro.tok, &C->ro.chat)
                           : 0;
    C->ro.loaded = C->is_rollout && !rc;
    return rlaif_agree(C->mb.comm, rc);
}

/* Rank 0, read-only (a skipped phase must not touch the file): was it
 * finished by a collect with these settings? *have = its pair count. The
 * one test of a finished collect, for its run and its done(). */
static int finished_before(const char *path, const char *signature, int64_t *have) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return rlaif_error_clear(), 0;
    char *done = NULL;
    int same = H5Aexists(f, "collect_complete") > 0 &&
               !rlaif_h5_get_attr_str(f, "collect_complete", &done) && !strcmp(done, signature) &&
               !rlaif_h5_get_attr_i64(f, "pairs_committed", have);
    free(done);
    H5Fclose(f);
    rlaif_error_clear();
    return same;
}

/* Its registry done(): the job's policy and prompts (no model loaded) give
 * the signature finished_before looks for. */
int rlaif_collect_done(const rlaif_config *cfg, const char *name, rlaif_phase_status *st) {
    char path[4096], policy[4096];
    rlaif_out_path(cfg, "preferences.h5", path, sizeof path);
    memset(st, 0, sizeof *st);
    snprintf(st->what, sizeof st->what, "no %s", path);
    if (access(path, F_OK) != 0) return 0;
    rlaif_prompt_set ps;
    int64_t have = 0;
    int rc = rlaif_policy_find(cfg, name, policy, sizeof policy);
    if (!rc) rc = rlaif_prompts_train(cfg, name, &ps);
    if (rc) { /* inputs gone: not complete for this job; the phase says why */
        st->state = RLAIF_PHASE_PARTIAL;
        snprintf(st->what, sizeof st->what, "%s, not complete for this job (%s)", path,
                 rlaif_error_message());
        rlaif_error_clear();
        return 0;
    }
    char *sig = make_signature(cfg, policy, ps.n);
    int done = finished_before(path, sig, &have);
    free(sig);
    rlaif_prompts_free(&ps);
    st->state = done ? RLAIF_PHASE_DONE : RLAIF_PHASE_PARTIAL;
    if (done)
        snprintf(st->what, sizeof st->what, "%s: %lld pairs, same settings", path, (long long)have);
    else
        snprintf(st->what, sizeof st->what, "%s, not marked complete with these settings", path);
    return 0;
}

/* Collective over world: skip a finished collect, else learn which pairs
 * the file already holds (those are neither sampled nor judged again). */
static int scan_existing(collect_run *C, int *skip) {
    int64_t have = 0, all = C->ps.n * C->P, head[2] = {0, 0};
    if (C->mb.rank == 0 && access(C->prefs_path, F_OK) == 0)
        head[0] = 1, head[1] = finished_before(C->prefs_path, C->signature, &have);
    RLAIF_CHECK_MPI(MPI_Bcast(head, 2, MPI_INT64_T, 0, C->mb.comm));
    RLAIF_CHECK_MPI(MPI_Bcast(&have, 1, MPI_INT64_T, 0, C->mb.comm));
    *skip = (int)head[1];
    if (*skip) {
        rlaif_info("collect: already complete (%s: %lld pairs, same settings); skipping",
                   C->prefs_path, (long long)have);
        return 0;
    }
    rollout *R = &C->ro;
    rlaif_rollout_shard(C->rk, C->ps.n, &R->lo, &R->hi);
    R->next = R->lo;
    size_t lo = (size_t)R->lo, hi = (size_t)R->hi;
    R->stored = xcalloc((hi - lo) * (size_t)C->P + 1, 1);
    C->total_pairs = all;
    if (!head[0]) return 0;
    rlaif_h5_opts io;
    rlaif_h5_opts_from_cfg(&io, C->cfg);
    rlaif_prefs *p = NULL;
    RLAIF_TRY(rlaif_agree(C->mb.comm, rlaif_prefs_open(C->prefs_path, C->mb.comm, &io, &p)));
    for (size_t i = 0; i < (hi - lo) * (size_t)C->P; i++)
        R->stored[i] = (uint8_t)rlaif_prefs_has_pair(p, (int64_t)(lo * (size_t)C->P + i));
    have = rlaif_prefs_count(p, RLAIF_PREFS_PAIRS);
    RLAIF_TRY(rlaif_agree(C->mb.comm, rlaif_prefs_close(&p)));
    if (have)
        rlaif_info("collect: resuming: %s holds %lld pairs; those are not sampled or judged again",
                   C->prefs_path, (long long)have);
    C->total_pairs = all - (have < all ? have : all);
    C->had = have;
    return 0;
}

static int setup_judge(collect_run *C) {
    judger *J = &C->ju;
    rlaif_ranks *rk = C->rk;
    J->comm = rk->group[RLAIF_ROLE_JUDGE];
    J->rank = rk->colocated ? C->mb.rank : rk->group_rank[RLAIF_ROLE_JUDGE];
    J->size = C->njudge;
    J->retry_failed = rlaif_cfg_bool(C->cfg, "collect.retry_failed");
    RLAIF_TRY(rlaif_pump_open(&J->pump, C->cfg, J->rank, J->size, NULL, "collect"));
    rlaif_judge_meta meta;
    RLAIF_TRY(rlaif_judge_meta_build(rlaif_pump_judge(J->pump), C->cfg, &meta));
    meta.meta.sampling = C->signature;
    rlaif_h5_opts io;
    rlaif_h5_opts_from_cfg(&io, C->cfg);
    int rc = rlaif_prefs_open_or_create(C->prefs_path, J->comm, &io, &meta.meta, &J->prefs);
    rlaif_judge_meta_free(&meta);
    RLAIF_TRY(rc);
    /* synced now and after every store: a kill at any point between stores
     * (even before the first) leaves a file that opens and resumes */
    rlaif_prefs_set_flush(J->prefs, 0);
    RLAIF_TRY(rlaif_prefs_flush(J->prefs));
    int n = C->mb.size;
    J->asked = xcalloc((size_t)n, sizeof(int));
    J->answered = xcalloc((size_t)n, sizeof(int));
    J->roll_done = xcalloc((size_t)n, 1);
    J->active = 1;
    J->last_store = rlaif_now();
    return 0;
}

static void setup_rollout(collect_run *C) {
    rollout *R = &C->ro;
    int n = C->mb.size;
    R->credit.limit = (int)rlaif_cfg_int(C->cfg, "collect.credit");
    R->w = (rlaif_rollout){.model = &R->model,
                           .tok = R->tok,
                           .chat = &R->chat,
                           .who = "collect",
                           .max_prompt_len = rlaif_cfg_int(C->cfg, "data.max_prompt_len"),
                           .max_new_tokens = rlaif_cfg_int(C->cfg, "collect.max_new_tokens"),
                           .pair_response_len = rlaif_cfg_int(C->cfg, "data.max_response_len"),
                           .temperature = (float)rlaif_cfg_float(C->cfg, "collect.temperature"),
                           .top_k = (int)rlaif_cfg_int(C->cfg, "collect.top_k"),
                           .top_p = (float)rlaif_cfg_float(C->cfg, "collect.top_p"),
                           .seed = C->seed,
                           .step = 0};
    R->want = xcalloc((size_t)n, sizeof(int));
    R->told_done = xcalloc((size_t)n, 1);
    R->active = 1;
    if (R->lo == R->hi) R->gen_done = 1, R->wait_t0 = rlaif_now(), R->wait_c0 = rlaif_cpu_seconds();
}

/* ------------------------------------------------------------- summary */

enum { NSUM = 12 + RLAIF_PUMP_NSTATUS };

/* Judge rank 0: the endpoint report and the numbers of the metrics row. */
static int judge_report(collect_run *C, double num[8], char *text, size_t n) {
    judger *J = &C->ju;
    rlaif_judge_endpoint_stats *st = NULL;
    int nep = 0;
    RLAIF_TRY(rlaif_pump_stats(J->pump, J->comm, &st, &nep));
    if (J->rank == 0) {
        rlaif_judge_report_stats(st, nep, text, n);
        memset(num, 0, sizeof(double) * 8);
        num[0] = nep ? rlaif_judge_consistency(&st[0]) : NAN;
        num[1] = nep ? rlaif_judge_first_win_rate(&st[0]) : NAN;
        for (int e = 0; e < nep; e++) {
            num[2] += (double)st[e].calls, num[3] += (double)st[e].http_requests;
            num[4] += (double)st[e].replayed, num[5] += st[e].cost_usd;
        }
    }
    free(st);
    return 0;
}

/* The judge report travels from judge rank 0 to world rank 0. */
static int fetch_report(collect_run *C, double num[8], char *text, size_t n) {
    int jr0 = C->judge_world[0];
    if (C->is_judge) RLAIF_TRY(rlaif_agree(C->ju.comm, judge_report(C, num, text, n)));
    if (jr0 == 0) return 0;
    if (C->mb.rank == jr0) {
        RLAIF_CHECK_MPI(MPI_Send(num, 8, MPI_DOUBLE, 0, TAG_REPORT, C->mb.comm));
        RLAIF_CHECK_MPI(MPI_Send(text, (int)n, MPI_CHAR, 0, TAG_REPORT, C->mb.comm));
    } else if (C->mb.rank == 0) {
        RLAIF_CHECK_MPI(
            MPI_Recv(num, 8, MPI_DOUBLE, jr0, TAG_REPORT, C->mb.comm, MPI_STATUS_IGNORE));
        RLAIF_CHECK_MPI(
            MPI_Recv(text, (int)n, MPI_CHAR, jr0, TAG_REPORT, C->mb.comm, MPI_STATUS_IGNORE));
    }
    return 0;
}

static const char *const metric_names[] = {
    "prompts",     "pairs",          "labelled",       "failed",   "ties",
    "consistency", "first_pos_wins", "judge_calls",    "replayed", "cost_usd",
    "pairs_per_s", "wall_s",         "max_outstanding"};
enum { NMETRIC = sizeof metric_names / sizeof *metric_names };

static int write_metrics(collect_run *C, const double *row, int64_t step) {
    const char *out = rlaif_cfg_str(C->cfg, "run.out_dir");
    rlaif_metrics *m = NULL;
    int rc = rlaif_metrics_open_run(out, C->mb.comm, &m);
    if (!rc) rc = rlaif_metrics_phase(m, "collect", NMETRIC, metric_names);
    if (!rc) rc = rlaif_metrics_log(m, "collect", step, row);
    if (m) {
        int rc2 = rlaif_metrics_close(&m);
        if (!rc) rc = rc2;
    }
    return rc;
}

static int summary(collect_run *C, double wall) {
    const rollout *R = &C->ro;
    const judger *J = &C->ju;
    rlaif_pump_counts jc = {0};
    if (J->pump) jc = *rlaif_pump_counts_of(J->pump);
    /* each rank's own counts go to its log (--log-dir): credit per rank */
    if (C->is_rollout)
        rlaif_debug("collect rank %d rollout: prompts [%lld, %lld), %lld sampled, %lld pairs "
                    "sent, max outstanding %d of credit %d, waited %.2f s using %.3f s CPU",
                    C->mb.rank, (long long)R->lo, (long long)R->hi, (long long)R->prompts,
                    (long long)R->pairs, R->credit.max_outstanding, R->credit.limit, R->wait_wall,
                    R->wait_cpu);
    if (C->is_judge)
        rlaif_debug("collect rank %d judge: %lld pairs judged, %lld labelled, %lld ties",
                    C->mb.rank, (long long)jc.judged, (long long)jc.labelled, (long long)jc.ties);
    int64_t mine[NSUM] = {R->prompts,
                          R->skipped,
                          R->responses,
                          R->pairs,
                          R->pairs_before,
                          R->short_prompts,
                          jc.judged,
                          jc.labelled,
                          jc.ties,
                          jc.judged - jc.labelled,
                          C->mb.rank == C->judge_world[0] ? J->stored : 0,
                          J->left_out},
            s[NSUM];
    for (int i = 0; i < RLAIF_PUMP_NSTATUS; i++) mine[12 + i] = jc.status[i];
    double w[2] = {R->wait_wall, R->wait_cpu}, ws[2];
    int mx = R->credit.max_outstanding, mxs = 0;
    RLAIF_CHECK_MPI(MPI_Reduce(mine, s, NSUM, MPI_INT64_T, MPI_SUM, 0, C->mb.comm));
    RLAIF_CHECK_MPI(MPI_Reduce(w, ws, 2, MPI_DOUBLE, MPI_SUM, 0, C->mb.comm));
    RLAIF_CHECK_MPI(MPI_Reduce(&mx, &mxs, 1, MPI_INT, MPI_MAX, 0, C->mb.comm));
    double num[8] = {NAN, NAN, 0, 0, 0, 0, 0, 0};
    char text[8192] = "";
    RLAIF_TRY(rlaif_agree(C->mb.comm, fetch_report(C, num, text, sizeof text)));
    if (C->mb.rank == 0) {
        rlaif_info("collect: %lld prompts sampled (%lld already stored, skipped), %lld responses, "
                   "%lld pairs formed (%lld stored before), %lld prompts gave fewer than %d "
                   "distinct pairs",
                   (long long)s[0], (long long)s[1], (long long)s[2], (long long)s[3],
                   (long long)s[4], (long long)s[5], C->P);
        char fails[400], cons[16], first[16];
        rlaif_pump_fail_list(s + 12, fails, sizeof fails);
        rlaif_info("collect: %lld pairs judged: %lld labelled, %lld failed%s, %lld ties; %lld "
                   "pairs added to %s; %.1f s, %.2f pairs/s",
                   (long long)s[6], (long long)s[7], (long long)s[9], fails, (long long)s[8],
                   (long long)s[10], C->prefs_path, wall, wall > 0 ? (double)s[6] / wall : 0);
        rlaif_info(
            "collect: judge calls %.0f (%.0f HTTP requests, %.0f answered from the journal), "
            "consistency %s, first-position wins %s, cost $%.4f",
            num[2], num[3], num[4], rlaif_fmt_or_na(cons, sizeof cons, "%.3f", num[0]),
            rlaif_fmt_or_na(first, sizeof first, "%.3f", num[1]), num[5]);
        rlaif_info("collect: rollout credit %d: max outstanding pairs per rollout rank %d; after "
                   "sampling, rollout ranks waited %.2f s using %.3f s CPU",
                   (int)rlaif_cfg_int(C->cfg, "collect.credit"), mxs, ws[0], ws[1]);
        if (s[11])
            rlaif_warn("collect: %lld pairs the judge never answered are not in %s "
                       "(collect.retry_failed): run the same command again to judge them; "
                       "answered calls come from the journal",
                       (long long)s[11], C->prefs_path);
        fputs(text, stdout);
        fflush(stdout);
    }
    double row[NMETRIC] = {(double)s[0],
                           (double)s[6],
                           (double)s[7],
                           (double)s[9],
                           (double)s[8],
                           num[0],
                           num[1],
                           num[2],
                           num[4],
                           num[5],
                           wall > 0 ? (double)s[6] / wall : 0,
                           wall,
                           (double)mxs};
    int64_t step = 0;
    if (C->mb.rank == 0) step = C->had + s[10]; /* the metrics row's step: pairs in the file */
    return rlaif_agree(C->mb.comm, write_metrics(C, row, step));
}

/* ----------------------------------------------------------- the command */

static int parse_opts(const rlaif_ctx *ctx, collect_opts *o) {
    memset(o, 0, sizeof *o);
    o->crash_after = -1, o->store_every = 256;
    for (int i = 0; i < ctx->args.nargs; i++) {
        const char *a = ctx->args.args[i];
        const char *v = i + 1 < ctx->args.nargs ? ctx->args.args[i + 1] : NULL;
        char *end = NULL;
        long *dst = !v                            ? NULL
                    : !strcmp(a, "--crash-after") ? &o->crash_after
                    : !strcmp(a, "--stop-after")  ? &o->stop_after
                    : !strcmp(a, "--store-every") ? &o->store_every
                                                  : NULL;
        if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
            continue;
        }
        if (dst) *dst = strtol(v, &end, 10);
        if (!dst || *end || *dst < 0 || (dst == &o->store_every && *dst < 1))
            return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif collect --help",
                               "collect: bad argument '%s'%s%s", a, v && dst ? " " : "",
                               v && dst ? v : "");
        i++;
    }
    return 0;
}

static void run_free(collect_run *C) {
    rollout *R = &C->ro;
    judger *J = &C->ju;
    for (size_t i = R->qh; i < R->qn; i++) free(R->q[i].r[0]), free(R->q[i].r[1]);
    for (size_t i = J->qh; i < J->qn; i++) free(J->q[i].p), free(J->q[i].r[0]), free(J->q[i].r[1]);
    for (size_t i = 0; i < J->nfly; i++) jentry_free(&J->fly[i]);
    for (size_t i = 0; i < J->nbuf; i++) judged_free(&J->buf[i]);
    free(R->q), free(R->stored), free(R->want), free(R->told_done);
    free(J->q), free(J->fly), free(J->free_slot), free(J->asked), free(J->answered),
        free(J->roll_done), free(J->buf);
    if (R->loaded) rlaif_model_free(&R->model);
    rlaif_tokenizer_free(R->tok);
    rlaif_chat_free(&R->chat);
    if (J->prefs) rlaif_prefs_close(&J->prefs);
    rlaif_pump_close(J->pump);
    rlaif_prompts_free(&C->ps);
    free(C->roll_world), free(C->judge_world), free(C->signature), free(C->prog);
    rlaif_mailbox_close(&C->mb);
}

/* Before any generation: a prompt, its response and the end-of-text token
 * must fit the policy's context, or rm and dpo refuse the pair later (exit
 * 64). Every rank learns the longest prompt and the smallest context of the
 * rollout ranks; responses are capped to the room left (logged once), and a
 * setting that leaves no room at all is refused. */
static int check_fit(collect_run *C) {
    rollout *R = &C->ro;
    int mine[2] = {0, INT_MIN}, all[2]; /* longest prompt, -context */
    int rc = 0;
    if (C->is_rollout) {
        rc = rlaif_rollout_longest(&R->w, C->ps.text, R->lo, R->hi, &mine[0]);
        mine[1] = -R->model.cfg.max_seq_len;
    }
    RLAIF_TRY(rlaif_agree(C->mb.comm, rc));
    RLAIF_CHECK_MPI(MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, C->mb.comm));
    if (all[1] == INT_MIN) return 0; /* no rollout rank holds a prompt */
    int longest = all[0], ctx = -all[1];
    long room = (long)ctx - longest - 1,
         want = (long)rlaif_cfg_int(C->cfg, "collect.max_new_tokens");
    if (room < 1)
        return rlaif_agree(
            C->mb.comm,
            C->mb.rank == 0
                ? RLAIF_ERROR(RLAIF_EX_USAGE,
                              "lower data.max_prompt_len, or train the policy with a larger "
                              "model.max_seq_len",
                              "collect: the longest prompt is %d tokens: with an end-of-text "
                              "token it leaves no room for a response in the policy's "
                              "model.max_seq_len = %d",
                              longest, ctx)
                : 0);
    if (want > room)
        rlaif_info("collect: responses capped at %ld tokens (collect.max_new_tokens = %ld): the "
                   "longest prompt (%d tokens), a response and its end-of-text token must fit "
                   "model.max_seq_len = %d, or rm and dpo refuse the pair",
                   room, want, longest, ctx);
    return 0;
}

static int setup(collect_run *C, int *skip) {
    RLAIF_TRY(setup_groups(C));
    RLAIF_TRY(rlaif_agree(C->mb.comm, rlaif_prompts_train(C->cfg, "collect", &C->ps)));
    if ((double)C->ps.n * C->K > 4294967295.0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "collect in several jobs over slices of the prompts",
                           "collect: %lld prompts x %d responses exceed 2^32 sequence numbers",
                           (long long)C->ps.n, C->K);
    RLAIF_TRY(find_policy(C));
    C->signature = make_signature(C->cfg, C->policy, C->ps.n);
    rlaif_out_path(C->cfg, "preferences.h5", C->prefs_path, sizeof C->prefs_path);
    const char *out = rlaif_cfg_str(C->cfg, "run.out_dir");
    RLAIF_TRY(rlaif_agree(C->mb.comm, C->mb.rank == 0 && *out ? rlaif_mkdir_p(out) : 0));
    RLAIF_TRY(scan_existing(C, skip));
    if (*skip) return 0;
    RLAIF_TRY(load_policy(C));
    if (C->is_rollout) setup_rollout(C);
    RLAIF_TRY(check_fit(C)); /* before the judge side creates preferences.h5 */
    RLAIF_TRY(rlaif_agree(C->mb.comm, C->is_judge ? setup_judge(C) : 0));
    rlaif_info("collect: policy %s; %lld prompts x %d responses, %d pairs each; %d rollout and %d "
               "judge rank%s (%s layout), credit %d pairs per rollout rank",
               C->policy, (long long)C->ps.n, C->K, C->P, C->nroll, C->njudge,
               C->njudge > 1 ? "s" : "", C->rk->colocated ? "colocated" : "split",
               (int)rlaif_cfg_int(C->cfg, "collect.credit"));
    return 0;
}

/* After the loop: drain, store the tail, mark a finished collect, report. */
static int finish(collect_run *C, double t0) {
    RLAIF_TRY(drain(C));
    /* a run too short for the outage window: did most pairs fail? */
    if (C->is_judge && !C->fail && !C->stopping) C->fail = rlaif_pump_check(C->ju.pump, 1);
    int fail = rlaif_agree(C->mb.comm, C->fail); /* the reason reaches every rank */
    int rc = 0;
    if (C->is_judge) {
        rc = judge_store(C); /* what was labelled is kept, also when the judge is out */
        int64_t left = 0;
        if (!rc && MPI_Allreduce(&C->ju.left_out, &left, 1, MPI_INT64_T, MPI_SUM, C->ju.comm))
            rc = RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "collect: MPI_Allreduce failed");
        /* complete only when every pair is in the file: a rerun retries the rest */
        if (!rc && !C->stopping && !fail && left == 0)
            rc = rlaif_h5_attr_str(rlaif_prefs_file(C->ju.prefs), "collect_complete", C->signature);
        int rc2 = rlaif_prefs_close(&C->ju.prefs);
        if (!rc) rc = rc2;
    }
    RLAIF_TRY(rlaif_agree(C->mb.comm, rc));
    RLAIF_TRY(summary(C, rlaif_now() - t0));
    if (fail) {
        rlaif_info("collect: stopped: the judge is not answering (below); what was labelled is "
                   "stored in %s, and the same command continues once the judge answers",
                   C->prefs_path);
        return fail;
    }
    /* the signal is known where it arrived; the others may have stopped on
     * the judges' agreement before its TAG_STOP reached them */
    int mine[2] = {C->stopping, C->stop_sig}, all[2];
    RLAIF_CHECK_MPI(MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, C->mb.comm));
    C->stop_sig = all[1];
    if (all[0] && !rlaif_stop_requested()) rlaif_stop_request(all[1]); /* for the exit line */
    if (all[0]) {
        rlaif_info("collect: stopped (signal %d); what was labelled is stored in %s: run the "
                   "same command again to continue",
                   C->stop_sig, C->prefs_path);
        return RLAIF_EX_TEMPFAIL;
    }
    rlaif_info("collect: done; preferences in %s", C->prefs_path);
    return 0;
}

int rlaif_cmd_collect(rlaif_ctx *ctx) {
    collect_run C;
    memset(&C, 0, sizeof C);
    C.mb.comm = MPI_COMM_NULL;
    RLAIF_TRY(parse_opts(ctx, &C.o));
    RLAIF_TRY(rlaif_ranks_require(&ctx->ranks, "collect", 0, 1, 1));
    RLAIF_TRY(rlaif_pump_preflight(ctx->cfg, "collect"));
    C.cfg = ctx->cfg, C.rk = &ctx->ranks;
    C.K = (int)rlaif_cfg_int(C.cfg, "collect.responses_per_prompt");
    C.P = (int)rlaif_cfg_int(C.cfg, "collect.pairs_per_prompt");
    C.seed = (uint64_t)rlaif_cfg_int(C.cfg, "run.seed");
    double t0 = rlaif_now();
    C.t0 = t0, C.last_status = t0;
    int skip = 0, rc = setup(&C, &skip);
    if (!rc && !skip) {
        if (main_loop(&C)) rlaif_die(); /* mid-protocol: the others cannot be told */
        rc = finish(&C, t0);
    }
    run_free(&C);
    return rc;
}
