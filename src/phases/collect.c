/* collect.c - `rlaif collect`: the SFT policy samples K responses per prompt
 * on the rollout ranks, pairs of them are labelled by the feedback LLM on
 * the judge ranks, and the judge ranks store pairs, texts and labels in
 * <out_dir>/preferences.h5. The protocol between them is described in
 * include/rlaif/phases/collect.h; the judge side labels and stores exactly like
 * `rlaif judge --prefs` (src/app/judge_cmd.c). */
#include "rlaif/phases/collect.h"
#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/engine/generate.h"
#include "rlaif/judge/judge.h"
#include "rlaif/core/log.h"
#include "rlaif/storage/metrics.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/core/rng.h"
#include "rlaif/core/stop.h"
#include "rlaif/phases/task.h"
#include "rlaif/core/tensors.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { TAG_REQ = 7101, TAG_WORK, TAG_RESULT, TAG_STOP, TAG_PROGRESS, TAG_REPORT };
enum { GEN_SEQS = 64 };             /* sequences per generation batch */
enum { STORE_INTERVAL_MS = 10000 }; /* store at least this often when pairs wait */

typedef struct {
    long crash_after, stop_after, store_every;
    int quiet;
} collect_opts;

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
           (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

static void nap(void) {
    struct timespec ts = {0, 2 * 1000 * 1000}; /* 2 ms: nothing here is that urgent */
    nanosleep(&ts, NULL);
}

static int mkdir_p(const char *dir) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return rlaif_error_sys(RLAIF_EX_IOERR, "mkdir", buf, __FILE__, __LINE__);
        if (!c) return 0;
        *p = c;
    }
}

/* ------------------------------------------------------------ messages */

typedef struct {
    MPI_Request req;
    void *buf;
} outmsg;

typedef struct {
    MPI_Comm comm; /* a duplicate of world: our tags cannot meet anyone else's */
    int rank, size;
    outmsg *out;
    int nout, capout;
    long *sent, *recvd; /* messages per peer, for the final drain */
} proto;

/* Send len bytes of buf (malloc'd; freed once sent) without blocking. */
static int post(proto *pr, int dest, int tag, void *buf, int len) {
    if (pr->nout == pr->capout) {
        pr->capout = pr->capout ? 2 * pr->capout : 64;
        pr->out = xrealloc(pr->out, sizeof *pr->out * (size_t)pr->capout);
    }
    outmsg *m = &pr->out[pr->nout++];
    m->buf = buf;
    RLAIF_CHECK_MPI(MPI_Isend(buf, len, MPI_BYTE, dest, tag, pr->comm, &m->req));
    pr->sent[dest]++;
    return 0;
}

static int post_int(proto *pr, int dest, int tag, int32_t v) {
    int32_t *b = xmalloc(sizeof v);
    *b = v;
    return post(pr, dest, tag, b, (int)sizeof v);
}

/* Free the buffers of sends that completed. */
static int reap(proto *pr) {
    for (int i = 0; i < pr->nout;) {
        int done = 0;
        RLAIF_CHECK_MPI(MPI_Test(&pr->out[i].req, &done, MPI_STATUS_IGNORE));
        if (!done) {
            i++;
            continue;
        }
        free(pr->out[i].buf);
        pr->out[i] = pr->out[--pr->nout];
    }
    return 0;
}

/* 1 and a message (malloc'd, NUL after it) when one is waiting, else 0. */
static int recv_any(proto *pr, int *src, int *tag, char **buf, int *len) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, pr->comm, &flag, &st) != MPI_SUCCESS || !flag)
        return 0;
    MPI_Get_count(&st, MPI_BYTE, len);
    *buf = xmalloc((size_t)*len + 1);
    if (MPI_Recv(*buf, *len, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, pr->comm, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS)
        RLAIF_DIE(RLAIF_EX_SOFTWARE, NULL, "collect: MPI_Recv of a protocol message failed");
    (*buf)[*len] = 0;
    *src = st.MPI_SOURCE, *tag = st.MPI_TAG;
    pr->recvd[*src]++;
    return 1;
}

/* ------------------------------------------------------------- prompts */

typedef struct {
    int64_t n;
    char **text;  /* [n] */
    char **jsonl; /* rlaif_jsonl_read's array (NULL for the task) */
    size_t njsonl;
} prompt_set;

static int load_prompts(const rlaif_config *cfg, prompt_set *ps) {
    memset(ps, 0, sizeof *ps);
    if (!strcmp(rlaif_cfg_str(cfg, "data.task"), "jsonl")) {
        const char *path = rlaif_cfg_str(cfg, "data.prompts");
        if (!*path)
            return RLAIF_ERROR(RLAIF_EX_USAGE, "set data.prompts = prompts.jsonl",
                               "collect: data.task = jsonl but data.prompts is empty");
        int rc = rlaif_jsonl_read(path, "prompts", &ps->njsonl, &ps->jsonl);
        if (rc) return rlaif_error_context("data.prompts: "), rc;
        ps->n = (int64_t)ps->njsonl;
        ps->text = xmalloc(sizeof(char *) * (ps->njsonl + 1));
        for (size_t i = 0; i < ps->njsonl; i++) ps->text[i] = ps->jsonl[3 * i];
        return 0;
    }
    rlaif_task t;
    RLAIF_TRY(rlaif_task_from_cfg(&t, cfg));
    ps->n = t.n_train;
    ps->text = xmalloc(sizeof(char *) * (size_t)(ps->n + 1));
    for (int64_t i = 0; i < ps->n; i++) {
        rlaif_arith p;
        char q[96];
        rlaif_task_train(&t, i, &p);
        rlaif_task_prompt(&p, q, sizeof q);
        ps->text[i] = xstrdup(q);
    }
    rlaif_task_free(&t);
    return 0;
}

static void prompts_free(prompt_set *ps) {
    if (ps->jsonl)
        rlaif_jsonl_free(ps->jsonl, ps->njsonl);
    else
        for (int64_t i = 0; i < ps->n; i++) free(ps->text[i]);
    free(ps->text);
    memset(ps, 0, sizeof *ps);
}

/* -------------------------------------------------------------- policy */

/* model.init_from, else the newest finished sft checkpoint (rank 0 only):
 * an sft stopped early (exit 75, not yet rerun) is not the policy. */
static int find_policy(const rlaif_config *cfg, char *path, size_t n) {
    const char *from = rlaif_cfg_str(cfg, "model.init_from");
    if (*from) {
        if (access(from, R_OK) != 0)
            return RLAIF_ERROR(RLAIF_EX_NOINPUT, "give a checkpoint written by rlaif sft",
                               "collect: model.init_from: cannot read '%s'", from);
        snprintf(path, n, "%s", from);
        return 0;
    }
    char dir[4096];
    rlaif_path_join(dir, sizeof dir, rlaif_cfg_str(cfg, "run.out_dir"),
                    rlaif_cfg_str(cfg, "checkpoint.dir"));
    int count = 0, found = 0;
    RLAIF_TRY(rlaif_checkpoint_newest_done(dir, "sft", "collect", path, n, &found, &count));
    if (!found)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                           "run (or finish) `rlaif sft job.ini` first, or set model.init_from = a "
                           "checkpoint",
                           "collect: no policy: model.init_from is empty and there is no %ssft "
                           "checkpoint %s/sft-*.h5",
                           count ? "finished " : "", dir);
    return 0;
}

static int load_policy(const rlaif_config *cfg, const char *path, rlaif_model *m,
                       rlaif_tokenizer **tok) {
    int rc = rlaif_tokenizer_for_checkpoint(tok, path, cfg);
    if (!rc) rc = rlaif_model_load(path, m);
    if (rc) return rlaif_error_context("collect: policy %s: ", path), rc;
    if (rlaif_tokenizer_eos(*tok) < 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "add <|endoftext|> to tokenizer.specials",
                           "collect: the policy's tokenizer has no end-of-text token");
    return 0;
}

/* ------------------------------------------------------------- pairing */

int rlaif_collect_pick_pairs(uint64_t seed, int64_t prompt, int K, int P, const char *const *texts,
                             int *pick) {
    uint32_t n = (uint32_t)(K * (K - 1) / 2);
    uint32_t *perm = xmalloc(sizeof *perm * n);
    int *ia = xmalloc(sizeof(int) * n), *ib = xmalloc(sizeof(int) * n);
    uint32_t k = 0;
    for (int a = 0; a < K; a++)
        for (int b = a + 1; b < K; b++) ia[k] = a, ib[k] = b, k++;
    rlaif_rng_permutation(seed, RLAIF_STREAM_PAIRS, (uint32_t)prompt, perm, n);
    int got = 0;
    for (uint32_t i = 0; i < n && got < P; i++) {
        int a = ia[perm[i]], b = ib[perm[i]], dup = !strcmp(texts[a], texts[b]);
        /* the same two texts again (other copies of them) teach nothing new */
        for (int t = 0; t < got && !dup; t++) {
            const char *x = texts[pick[2 * t]], *y = texts[pick[2 * t + 1]];
            dup = (!strcmp(x, texts[a]) && !strcmp(y, texts[b])) ||
                  (!strcmp(x, texts[b]) && !strcmp(y, texts[a]));
        }
        if (dup) continue;
        pick[2 * got] = a, pick[2 * got + 1] = b;
        got++;
    }
    free(perm), free(ia), free(ib);
    return got;
}

/* Bytes that are not UTF-8 become U+FFFD: an untrained byte-level model
 * writes any bytes, and JSON requests (the judge's) must be valid UTF-8. */
char *rlaif_utf8_clean(const char *s, size_t n) {
    char *o = xmalloc(3 * n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + len <= n && c != 0;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] >> 6) == 2;
        if (ok && len == 2) ok = c >= 0xC2;
        if (ok && len == 3) {
            unsigned char d = (unsigned char)s[i + 1];
            ok = !(c == 0xE0 && d < 0xA0) && !(c == 0xED && d >= 0xA0);
        }
        if (ok && len == 4) {
            unsigned char d = (unsigned char)s[i + 1];
            ok = c <= 0xF4 && !(c == 0xF0 && d < 0x90) && !(c == 0xF4 && d >= 0x90);
        }
        if (ok) {
            memcpy(o + j, s + i, len), j += len, i += len;
        } else {
            memcpy(o + j, "\xEF\xBF\xBD", 3), j += 3, i++;
        }
    }
    o[j] = 0;
    return o;
}

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

enum { NSTAT = 16 };

typedef struct {
    rlaif_model model;
    rlaif_tokenizer *tok;
    int loaded;
    int64_t lo, hi, next; /* my prompts and the next one to sample */
    uint8_t *stored;      /* [(hi - lo) * P] pair already in preferences.h5 */
    wpair *q;
    size_t qh, qn, qcap; /* ready pairs are q[qh, qn) */
    int credit, outstanding, max_outstanding;
    int *want;       /* [world] open request of each judge (0 = none) */
    char *told_done; /* [world] */
    int ndone_told, rot, gen_done, active;
    int64_t prompts, skipped, responses, pairs, pairs_before, short_prompts;
    double wait_t0, wait_c0, wait_wall, wait_cpu;
} rollout;

typedef struct {
    rlaif_judge *j;
    rlaif_prefs *prefs;
    MPI_Comm comm; /* the judge group */
    int rank, size;
    jentry *q;
    size_t qh, qn, qcap; /* received, not submitted */
    jentry *fly;
    size_t nfly, capfly; /* submitted */
    int *asked;          /* [world] pairs asked of each rollout, not yet answered */
    int reserved, nroll_done, active;
    char *roll_done; /* [world] */
    int *answered;   /* [world] results to report to each rollout */
    rlaif_judged_pair *buf;
    size_t nbuf, capbuf;
    MPI_Request areq;
    int ain[4], aout[4], posted;
    double last_store;
    int64_t judged, labelled, ties, stored, status[NSTAT];
} judger;

typedef struct {
    const rlaif_config *cfg;
    rlaif_ranks *rk;
    collect_opts o;
    proto pr;
    prompt_set ps;
    int K, P;
    uint64_t seed;
    int is_rollout, is_judge, nroll, njudge;
    int *roll_world, *judge_world;
    int stopping, stop_sig;
    char policy[4096], prefs_path[4096], *signature;
    int64_t total_pairs; /* pairs this run should label (for the ETA) */
    int64_t had;         /* pairs in preferences.h5 before this run */
    rollout ro;
    judger ju;
    int64_t (*prog)[4]; /* rank 0: latest counts of every rank */
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
    for (int w = 0; w < C->pr.size; w++)
        if (w != C->pr.rank) RLAIF_TRY(post_int(&C->pr, w, TAG_STOP, C->stop_sig));
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
    int got = rlaif_collect_pick_pairs(C->seed, i, C->K, C->P, (const char *const *)texts, pick);
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
    int B = g * C->K, longest = 0;
    rlaif_tokens all = {0};
    int64_t *off = xmalloc(sizeof(int64_t) * (size_t)B);
    int *len = xmalloc(sizeof(int) * (size_t)B);
    uint32_t *seq = xmalloc(sizeof(uint32_t) * (size_t)B);
    int rc = 0;
    for (int p = 0; p < g && !rc; p++) {
        size_t start = all.n;
        rc = rlaif_format_prompt(R->tok, C->ps.text[ids[p]],
                                 rlaif_cfg_int(C->cfg, "data.max_prompt_len"), &all);
        int n = (int)(all.n - start);
        for (int k = 0; k < C->K && !rc; k++) {
            off[p * C->K + k] = (int64_t)start; /* the K samples share the prompt's ids */
            len[p * C->K + k] = n;
            seq[p * C->K + k] = (uint32_t)(ids[p] * C->K + k);
        }
        if (n > longest) longest = n;
    }
    rlaif_gen_config gc = rlaif_gen_defaults();
    int room = R->model.cfg.max_seq_len - longest;
    long want = rlaif_cfg_int(C->cfg, "collect.max_new_tokens");
    gc.max_new_tokens = want < room ? (int)want : room;
    gc.temperature = (float)rlaif_cfg_float(C->cfg, "collect.temperature");
    gc.top_k = (int)rlaif_cfg_int(C->cfg, "collect.top_k");
    gc.top_p = (float)rlaif_cfg_float(C->cfg, "collect.top_p");
    gc.eos_id = rlaif_tokenizer_eos(R->tok);
    gc.pad_id = gc.eos_id;
    gc.seed = C->seed, gc.step = 0;
    rlaif_gen_output go;
    if (!rc && gc.max_new_tokens < 1)
        rc = RLAIF_ERROR(RLAIF_EX_USAGE, "lower data.max_prompt_len or use a longer model",
                         "collect: a prompt of %d tokens leaves no room in model.max_seq_len = %d",
                         longest, R->model.cfg.max_seq_len);
    if (!rc) rc = rlaif_generate(&R->model, &gc, B, all.ids, off, len, seq, &go);
    rlaif_tokens_free(&all);
    free(off), free(len), free(seq);
    RLAIF_TRY(rc);
    char **texts = xcalloc((size_t)C->K, sizeof(char *));
    for (int p = 0; p < g && !rc; p++) {
        for (int k = 0; k < C->K && !rc; k++) {
            int b = p * C->K + k;
            rlaif_bytes t = {0};
            rc = rlaif_format_response(R->tok, go.tokens + (size_t)b * (size_t)go.max_new,
                                       (size_t)go.length[b], &t);
            texts[k] = rlaif_utf8_clean(t.data ? t.data : "", t.n);
            rlaif_bytes_free(&t);
        }
        if (!rc) form_pairs(C, ids[p], texts);
        for (int k = 0; k < C->K; k++) free(texts[k]), texts[k] = NULL;
        R->prompts++, R->responses += C->K;
    }
    free(texts);
    rlaif_gen_output_free(&go);
    return rc;
}

/* One generation batch when the queue has room; 1 when it did work. */
static int rollout_generate(collect_run *C, int *did) {
    rollout *R = &C->ro;
    *did = 0;
    size_t cap = 2 * (size_t)R->credit + (size_t)(GEN_SEQS * C->P);
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
        R->wait_t0 = rlaif_now(), R->wait_c0 = cpu_seconds();
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
    return post(&C->pr, dest, TAG_WORK, buf, (int)size);
}

/* Answer open requests: pairs within credit, or "done" when nothing is left. */
static int rollout_serve(collect_run *C, int *did) {
    rollout *R = &C->ro;
    for (int k = 0; k < C->njudge; k++) {
        int w = C->judge_world[(k + R->rot) % C->njudge];
        int avail = (int)(R->qn - R->qh), room = R->credit - R->outstanding;
        if (!R->want[w]) continue;
        if (avail > 0 && room > 0) {
            int n = R->want[w] < avail ? R->want[w] : avail;
            n = n < room ? n : room;
            RLAIF_TRY(send_work(C, w, n, 0));
            R->outstanding += n;
            if (R->outstanding > R->max_outstanding) R->max_outstanding = R->outstanding;
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

static int judge_submit(collect_run *C, int *did) {
    judger *J = &C->ju;
    while (J->qh < J->qn && rlaif_judge_credit(J->j) > 0 && !C->stopping) {
        jentry *e = &J->q[J->qh++];
        rlaif_judge_pair p = {e->id, e->p, {e->r[0], e->r[1]}};
        RLAIF_TRY(rlaif_judge_submit(J->j, &p));
        if (J->nfly == J->capfly) {
            J->capfly = J->capfly ? 2 * J->capfly : 64;
            J->fly = xrealloc(J->fly, sizeof *J->fly * J->capfly);
        }
        J->fly[J->nfly++] = *e;
        *did = 1;
    }
    return 0;
}

/* A finished pair: into the store buffer, credited back to its rollout. */
static int judge_take(collect_run *C, rlaif_judge_result *r) {
    judger *J = &C->ju;
    size_t k = 0;
    while (k < J->nfly && J->fly[k].id != r->pair_id) k++;
    if (k == J->nfly)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, "a bug: please report it",
                           "collect: pair %llu came back but was not submitted",
                           (unsigned long long)r->pair_id);
    jentry e = J->fly[k];
    J->fly[k] = J->fly[--J->nfly];
    if (J->nbuf == J->capbuf) {
        J->capbuf = J->capbuf ? 2 * J->capbuf : 256;
        J->buf = xrealloc(J->buf, sizeof *J->buf * J->capbuf);
    }
    rlaif_judged_pair *d = &J->buf[J->nbuf++];
    d->prompt = e.p, d->response[0] = e.r[0], d->response[1] = e.r[1];
    rlaif_judge_to_pair(r, &d->row);
    d->explanation = r->explanation;
    r->explanation = NULL;
    J->answered[e.origin]++;
    J->judged++;
    J->labelled += !isnan(r->label);
    J->ties += r->label == 0.5f;
    J->status[r->status & (NSTAT - 1)]++;
    return 0;
}

static int judge_poll(collect_run *C, int *did) {
    judger *J = &C->ju;
    enum { CAP = 256 };
    rlaif_judge_result res[CAP];
    int n = 0, waiting = rlaif_judge_pending(J->j) > 0;
    /* with calls in flight, poll sleeps in curl_multi_poll for 2 ms: that is
     * both what drives the transfers and this rank's nap */
    RLAIF_TRY(rlaif_judge_poll(J->j, waiting ? 0.002 : 0, res, CAP, &n));
    *did |= waiting;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (!rc) rc = judge_take(C, &res[i]);
        rlaif_judge_result_free(&res[i]);
    }
    RLAIF_TRY(rc);
    for (int w = 0; w < C->pr.size && n > 0; w++)
        if (J->answered[w]) {
            RLAIF_TRY(post_int(&C->pr, w, TAG_RESULT, J->answered[w]));
            J->answered[w] = 0;
        }
    *did |= n > 0;
    if (C->o.crash_after >= 0 && J->judged >= C->o.crash_after) {
        fprintf(stderr, "collect: --crash-after %ld reached: SIGKILL\n", C->o.crash_after);
        raise(SIGKILL); /* testing: die like kill -9, with calls in flight */
    }
    if (C->o.stop_after > 0 && J->judged >= C->o.stop_after && !rlaif_stop_requested())
        rlaif_stop_request(SIGTERM); /* testing: as if this rank alone got SIGTERM */
    return 0;
}

/* Ask every rollout rank that may still have pairs for a share of what the
 * judge client can take now. */
static int judge_ask(collect_run *C, int *did) {
    judger *J = &C->ju;
    if (C->stopping) return 0;
    int avail = rlaif_judge_credit(J->j) - (int)(J->qn - J->qh) - J->reserved, cand = 0;
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
        RLAIF_TRY(post_int(&C->pr, w, TAG_REQ, want));
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
    if (J->nbuf) memcpy(tmp, J->buf, sizeof *tmp * J->nbuf); /* buf is NULL when empty (UBSan) */
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
    return J->nroll_done == C->nroll && J->qh == J->qn && J->nfly == 0 && J->reserved == 0;
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

static void progress_counts(const collect_run *C, int64_t v[4]) {
    v[0] = C->ro.prompts + C->ro.skipped, v[1] = C->ro.pairs;
    v[2] = C->ju.judged, v[3] = C->ju.labelled;
}

static int handle(collect_run *C, int src, int tag, char *buf, int len) {
    int32_t v = 0;
    if (len >= 4) memcpy(&v, buf, 4);
    if (tag == TAG_STOP) {
        if (!C->stopping) C->stopping = 1, C->stop_sig = v;
    } else if (tag == TAG_PROGRESS && C->prog && len == 32) {
        memcpy(C->prog[src], buf, 32);
    } else if (tag == TAG_REQ && C->ro.active) {
        C->ro.want[src] = v;
    } else if (tag == TAG_RESULT && C->ro.active) {
        C->ro.outstanding -= v;
    } else if (tag == TAG_WORK && C->ju.active) {
        unpack_work(C, src, buf, len);
    } /* anything else arrives after a stop: dropped */
    free(buf);
    return 0;
}

static int service(collect_run *C, int *did) {
    int src, tag, len;
    char *buf;
    while (recv_any(&C->pr, &src, &tag, &buf, &len)) {
        RLAIF_TRY(handle(C, src, tag, buf, len));
        *did = 1;
    }
    return reap(&C->pr);
}

static void status_line(collect_run *C) {
    int64_t s[4] = {0};
    for (int r = 0; r < C->pr.size; r++)
        for (int k = 0; k < 4; k++) s[k] += C->prog[r][k];
    double el = rlaif_now() - C->t0;
    char extra[200];
    snprintf(extra, sizeof extra, "prompts %lld/%lld sampled, %lld pairs formed, %lld labelled",
             (long long)s[0], (long long)C->ps.n, (long long)s[1], (long long)s[3]);
    rlaif_status("collect", (long)s[2], (long)C->total_pairs, el > 0 ? (double)s[2] / el : 0,
                 "pairs/s", el, extra);
}

static int report_progress(collect_run *C, int force) {
    double now = rlaif_now();
    if (!force && now - C->last_prog < 2) return 0;
    C->last_prog = now;
    int64_t v[4];
    progress_counts(C, v);
    if (C->pr.rank == 0) {
        memcpy(C->prog[0], v, sizeof v);
        if (!C->o.quiet && now - C->last_status >= 5) status_line(C), C->last_status = now;
        return 0;
    }
    int64_t *b = xmalloc(sizeof v);
    memcpy(b, v, sizeof v);
    return post(&C->pr, 0, TAG_PROGRESS, b, (int)sizeof v);
}

/* ---- the loop ---- */

static int rollout_step(collect_run *C, int *did) {
    rollout *R = &C->ro;
    RLAIF_TRY(rollout_serve(C, did));
    int gen = 0;
    RLAIF_TRY(rollout_generate(C, &gen));
    *did |= gen;
    if (C->stopping ||
        (R->gen_done && R->qh == R->qn && R->ndone_told == C->njudge && R->outstanding == 0)) {
        R->active = 0;
        if (R->gen_done)
            R->wait_wall = rlaif_now() - R->wait_t0, R->wait_cpu = cpu_seconds() - R->wait_c0;
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
        if (!did) nap();
    }
    return report_progress(C, 1);
}

/* Every rank: learn how many messages each peer sent me (MPI_Ialltoall,
 * posted once my own sending is over) and receive what is still coming, so
 * nothing is left unmatched; sleeps between polls like the loop. */
static int drain(collect_run *C) {
    proto *pr = &C->pr;
    long *theirs = xcalloc((size_t)pr->size, sizeof(long));
    MPI_Request req;
    RLAIF_CHECK_MPI(MPI_Ialltoall(pr->sent, 1, MPI_LONG, theirs, 1, MPI_LONG, pr->comm, &req));
    int known = 0;
    for (;;) {
        int did = 0;
        RLAIF_TRY(service(C, &did));
        if (!known) RLAIF_CHECK_MPI(MPI_Test(&req, &known, MPI_STATUS_IGNORE));
        int left = pr->nout > 0;
        for (int r = 0; known && r < pr->size; r++) left |= pr->recvd[r] < theirs[r];
        if (known && !left) break;
        /* a rank 0 with no collect role (a learner) reports from here */
        if (C->prog && !C->o.quiet && rlaif_now() - C->last_status >= 5)
            status_line(C), C->last_status = rlaif_now();
        if (!did) nap();
    }
    free(theirs);
    if (C->prog && !C->o.quiet) status_line(C);
    return 0;
}

/* --------------------------------------------------------------- setup */

static char *make_signature(const collect_run *C) {
    const rlaif_config *cfg = C->cfg;
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
    json_object_set_new(o, "policy", json_string(C->policy));
    json_object_set_new(o, "n_prompts", json_integer((json_int_t)C->ps.n));
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
    proto *pr = &C->pr;
    RLAIF_CHECK_MPI(MPI_Comm_dup(rk->world, &pr->comm));
    RLAIF_CHECK_MPI(MPI_Comm_rank(pr->comm, &pr->rank));
    RLAIF_CHECK_MPI(MPI_Comm_size(pr->comm, &pr->size));
    pr->sent = xcalloc((size_t)pr->size, sizeof(long));
    pr->recvd = xcalloc((size_t)pr->size, sizeof(long));
    if (pr->rank == 0) C->prog = xcalloc((size_t)pr->size, sizeof *C->prog);
    return 0;
}

/* Rank 0 finds the policy; everyone learns its path. */
static int setup_policy(collect_run *C) {
    int rc = C->pr.rank == 0 ? find_policy(C->cfg, C->policy, sizeof C->policy) : 0;
    RLAIF_TRY(rlaif_agree(C->pr.comm, rc));
    RLAIF_CHECK_MPI(MPI_Bcast(C->policy, sizeof C->policy, MPI_CHAR, 0, C->pr.comm));
    rc = C->is_rollout ? load_policy(C->cfg, C->policy, &C->ro.model, &C->ro.tok) : 0;
    C->ro.loaded = C->is_rollout && !rc;
    return rlaif_agree(C->pr.comm, rc);
}

/* Rank 0, read-only (a skipped phase must not touch the file): was it
 * finished by a collect with these settings? *have = its pair count. */
static int finished_before(const collect_run *C, int64_t *have) {
    hid_t f = H5Fopen(C->prefs_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 0;
    char *done = NULL;
    int same = H5Aexists(f, "collect_complete") > 0 &&
               !rlaif_h5_get_attr_str(f, "collect_complete", &done) &&
               !strcmp(done, C->signature) && !rlaif_h5_get_attr_i64(f, "pairs_committed", have);
    free(done);
    H5Fclose(f);
    rlaif_error_clear();
    return same;
}

/* Collective over world: skip a finished collect, else learn which pairs
 * the file already holds (those are neither sampled nor judged again). */
static int scan_existing(collect_run *C, int *skip) {
    int64_t have = 0, all = C->ps.n * C->P, head[2] = {0, 0};
    if (C->pr.rank == 0 && access(C->prefs_path, F_OK) == 0)
        head[0] = 1, head[1] = finished_before(C, &have);
    RLAIF_CHECK_MPI(MPI_Bcast(head, 2, MPI_INT64_T, 0, C->pr.comm));
    RLAIF_CHECK_MPI(MPI_Bcast(&have, 1, MPI_INT64_T, 0, C->pr.comm));
    *skip = (int)head[1];
    if (*skip) {
        rlaif_info("collect: already complete (%s: %lld pairs, same settings); skipping",
                   C->prefs_path, (long long)have);
        return 0;
    }
    rollout *R = &C->ro;
    size_t lo = 0, hi = 0;
    int me = C->rk->colocated ? C->pr.rank : C->rk->group_rank[RLAIF_ROLE_ROLLOUT];
    if (C->is_rollout) rlaif_shard_range((size_t)C->ps.n, C->nroll, me, &lo, &hi);
    R->lo = (int64_t)lo, R->hi = (int64_t)hi, R->next = R->lo;
    R->stored = xcalloc((hi - lo) * (size_t)C->P + 1, 1);
    C->total_pairs = all;
    if (!head[0]) return 0;
    rlaif_h5_opts io;
    rlaif_h5_opts_from_cfg(&io, C->cfg);
    rlaif_prefs *p = NULL;
    RLAIF_TRY(rlaif_agree(C->pr.comm, rlaif_prefs_open(C->prefs_path, C->pr.comm, &io, &p)));
    for (size_t i = 0; i < (hi - lo) * (size_t)C->P; i++)
        R->stored[i] = (uint8_t)rlaif_prefs_has_pair(p, (int64_t)(lo * (size_t)C->P + i));
    have = rlaif_prefs_count(p, RLAIF_PREFS_PAIRS);
    RLAIF_TRY(rlaif_agree(C->pr.comm, rlaif_prefs_close(&p)));
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
    J->rank = rk->colocated ? C->pr.rank : rk->group_rank[RLAIF_ROLE_JUDGE];
    J->size = C->njudge;
    RLAIF_TRY(rlaif_judge_open(&J->j, C->cfg, J->rank, J->size, NULL));
    rlaif_judge_meta meta;
    RLAIF_TRY(rlaif_judge_meta_build(J->j, C->cfg, &meta));
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
    int n = C->pr.size;
    J->asked = xcalloc((size_t)n, sizeof(int));
    J->answered = xcalloc((size_t)n, sizeof(int));
    J->roll_done = xcalloc((size_t)n, 1);
    J->active = 1;
    J->last_store = rlaif_now();
    return 0;
}

static void setup_rollout(collect_run *C) {
    rollout *R = &C->ro;
    int n = C->pr.size;
    R->credit = (int)rlaif_cfg_int(C->cfg, "collect.credit");
    R->want = xcalloc((size_t)n, sizeof(int));
    R->told_done = xcalloc((size_t)n, 1);
    R->active = 1;
    if (R->lo == R->hi) R->gen_done = 1, R->wait_t0 = rlaif_now(), R->wait_c0 = cpu_seconds();
}

/* ------------------------------------------------------------- summary */

enum { NSUM = 12 + NSTAT };

/* Judge rank 0: the endpoint report and the numbers of the metrics row. */
static int judge_report(collect_run *C, double num[8], char *text, size_t n) {
    judger *J = &C->ju;
    int nep = rlaif_judge_nendpoints(J->j);
    rlaif_judge_endpoint_stats *st = xcalloc((size_t)nep, sizeof *st);
    int rc = 0;
    for (int e = 0; e < nep && !rc; e++) {
        const rlaif_judge_endpoint_stats *s = rlaif_judge_stats(J->j, e);
        long long l[11] = {s->calls,      s->http_requests,    s->retries,          s->replayed,
                           s->failed,     s->pairs_two_orders, s->pairs_consistent, s->verdicts,
                           s->first_wins, s->tokens_in,        s->tokens_out};
        double d[7] = {s->len_n,   s->len_sx,  s->len_sy,  s->len_sxx,
                       s->len_syy, s->len_sxy, s->cost_usd};
        long long L[11];
        double D[7];
        if (MPI_Reduce(l, L, 11, MPI_LONG_LONG, MPI_SUM, 0, J->comm) != MPI_SUCCESS ||
            MPI_Reduce(d, D, 7, MPI_DOUBLE, MPI_SUM, 0, J->comm) != MPI_SUCCESS) {
            rc = RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "collect: MPI_Reduce of judge stats failed");
            break;
        }
        rlaif_judge_endpoint_stats *t = &st[e];
        *t = *s;
        t->calls = (long)L[0], t->http_requests = (long)L[1], t->retries = (long)L[2];
        t->replayed = (long)L[3], t->failed = (long)L[4], t->pairs_two_orders = (long)L[5];
        t->pairs_consistent = (long)L[6], t->verdicts = (long)L[7], t->first_wins = (long)L[8];
        t->tokens_in = L[9], t->tokens_out = L[10];
        t->len_n = D[0], t->len_sx = D[1], t->len_sy = D[2], t->len_sxx = D[3];
        t->len_syy = D[4], t->len_sxy = D[5], t->cost_usd = D[6];
    }
    if (!rc && J->rank == 0) {
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
    return rc;
}

/* The judge report travels from judge rank 0 to world rank 0. */
static int fetch_report(collect_run *C, double num[8], char *text, size_t n) {
    int jr0 = C->judge_world[0];
    if (C->is_judge) RLAIF_TRY(rlaif_agree(C->ju.comm, judge_report(C, num, text, n)));
    if (jr0 == 0) return 0;
    if (C->pr.rank == jr0) {
        RLAIF_CHECK_MPI(MPI_Send(num, 8, MPI_DOUBLE, 0, TAG_REPORT, C->pr.comm));
        RLAIF_CHECK_MPI(MPI_Send(text, (int)n, MPI_CHAR, 0, TAG_REPORT, C->pr.comm));
    } else if (C->pr.rank == 0) {
        RLAIF_CHECK_MPI(
            MPI_Recv(num, 8, MPI_DOUBLE, jr0, TAG_REPORT, C->pr.comm, MPI_STATUS_IGNORE));
        RLAIF_CHECK_MPI(
            MPI_Recv(text, (int)n, MPI_CHAR, jr0, TAG_REPORT, C->pr.comm, MPI_STATUS_IGNORE));
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
    int rc = rlaif_metrics_open_run(out, C->pr.comm, &m);
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
    /* each rank's own counts go to its log (--log-dir): credit per rank */
    if (C->is_rollout)
        rlaif_debug("collect rank %d rollout: prompts [%lld, %lld), %lld sampled, %lld pairs "
                    "sent, max outstanding %d of credit %d, waited %.2f s using %.3f s CPU",
                    C->pr.rank, (long long)R->lo, (long long)R->hi, (long long)R->prompts,
                    (long long)R->pairs, R->max_outstanding, R->credit, R->wait_wall, R->wait_cpu);
    if (C->is_judge)
        rlaif_debug("collect rank %d judge: %lld pairs judged, %lld labelled, %lld ties",
                    C->pr.rank, (long long)J->judged, (long long)J->labelled, (long long)J->ties);
    int64_t mine[NSUM] = {R->prompts,
                          R->skipped,
                          R->responses,
                          R->pairs,
                          R->pairs_before,
                          R->short_prompts,
                          J->judged,
                          J->labelled,
                          J->ties,
                          J->judged - J->labelled,
                          C->pr.rank == C->judge_world[0] ? J->stored : 0},
            s[NSUM];
    for (int i = 0; i < NSTAT; i++) mine[12 + i] = J->status[i];
    double w[2] = {R->wait_wall, R->wait_cpu}, ws[2];
    int mx = R->max_outstanding, mxs = 0;
    RLAIF_CHECK_MPI(MPI_Reduce(mine, s, NSUM, MPI_INT64_T, MPI_SUM, 0, C->pr.comm));
    RLAIF_CHECK_MPI(MPI_Reduce(w, ws, 2, MPI_DOUBLE, MPI_SUM, 0, C->pr.comm));
    RLAIF_CHECK_MPI(MPI_Reduce(&mx, &mxs, 1, MPI_INT, MPI_MAX, 0, C->pr.comm));
    double num[8] = {NAN, NAN, 0, 0, 0, 0, 0, 0};
    char text[8192] = "";
    RLAIF_TRY(rlaif_agree(C->pr.comm, fetch_report(C, num, text, sizeof text)));
    if (C->pr.rank == 0) {
        rlaif_info("collect: %lld prompts sampled (%lld already stored, skipped), %lld responses, "
                   "%lld pairs formed (%lld stored before), %lld prompts gave fewer than %d "
                   "distinct pairs",
                   (long long)s[0], (long long)s[1], (long long)s[2], (long long)s[3],
                   (long long)s[4], (long long)s[5], C->P);
        char fails[400] = "";
        size_t k = 0;
        for (int i = 1; i < NSTAT; i++)
            if (s[12 + i] && k < sizeof fails - 40)
                k += (size_t)snprintf(fails + k, sizeof fails - k, ", %lld %s",
                                      (long long)s[12 + i], rlaif_judge_status_name(i));
        rlaif_info("collect: %lld pairs judged: %lld labelled, %lld failed%s, %lld ties; %lld "
                   "pairs added to %s; %.1f s, %.2f pairs/s",
                   (long long)s[6], (long long)s[7], (long long)s[9], fails, (long long)s[8],
                   (long long)s[10], C->prefs_path, wall, wall > 0 ? (double)s[6] / wall : 0);
        rlaif_info(
            "collect: judge calls %.0f (%.0f HTTP requests, %.0f answered from the journal), "
            "consistency %.3f, first-position wins %.3f, cost $%.4f",
            num[2], num[3], num[4], num[0], num[1], num[5]);
        rlaif_info("collect: rollout credit %d: max outstanding pairs per rollout rank %d; after "
                   "sampling, rollout ranks waited %.2f s using %.3f s CPU",
                   (int)rlaif_cfg_int(C->cfg, "collect.credit"), mxs, ws[0], ws[1]);
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
    if (C->pr.rank == 0) step = C->had + s[10]; /* the metrics row's step: pairs in the file */
    return rlaif_agree(C->pr.comm, write_metrics(C, row, step));
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
    for (size_t i = 0; i < J->nfly; i++)
        free(J->fly[i].p), free(J->fly[i].r[0]), free(J->fly[i].r[1]);
    for (size_t i = 0; i < J->nbuf; i++) judged_free(&J->buf[i]);
    free(R->q), free(R->stored), free(R->want), free(R->told_done);
    free(J->q), free(J->fly), free(J->asked), free(J->answered), free(J->roll_done), free(J->buf);
    if (R->loaded) rlaif_model_free(&R->model);
    rlaif_tokenizer_free(R->tok);
    if (J->prefs) rlaif_prefs_close(&J->prefs);
    rlaif_judge_close(J->j);
    prompts_free(&C->ps);
    free(C->roll_world), free(C->judge_world), free(C->signature), free(C->prog);
    free(C->pr.out), free(C->pr.sent), free(C->pr.recvd);
    if (C->pr.comm != MPI_COMM_NULL) MPI_Comm_free(&C->pr.comm);
}

static int setup(collect_run *C, int *skip) {
    RLAIF_TRY(setup_groups(C));
    RLAIF_TRY(rlaif_agree(C->pr.comm, load_prompts(C->cfg, &C->ps)));
    if ((double)C->ps.n * C->K > 4294967295.0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "collect in several jobs over slices of the prompts",
                           "collect: %lld prompts x %d responses exceed 2^32 sequence numbers",
                           (long long)C->ps.n, C->K);
    RLAIF_TRY(setup_policy(C));
    C->signature = make_signature(C);
    rlaif_path_join(C->prefs_path, sizeof C->prefs_path, rlaif_cfg_str(C->cfg, "run.out_dir"),
                    "preferences.h5");
    const char *out = rlaif_cfg_str(C->cfg, "run.out_dir");
    RLAIF_TRY(rlaif_agree(C->pr.comm, C->pr.rank == 0 && *out ? mkdir_p(out) : 0));
    RLAIF_TRY(scan_existing(C, skip));
    if (*skip) return 0;
    RLAIF_TRY(rlaif_agree(C->pr.comm, C->is_judge ? setup_judge(C) : 0));
    if (C->is_rollout) setup_rollout(C);
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
    int rc = 0;
    if (C->is_judge) {
        rc = judge_store(C);
        if (!rc && !C->stopping)
            rc = rlaif_h5_attr_str(rlaif_prefs_file(C->ju.prefs), "collect_complete", C->signature);
        int rc2 = rlaif_prefs_close(&C->ju.prefs);
        if (!rc) rc = rc2;
    }
    RLAIF_TRY(rlaif_agree(C->pr.comm, rc));
    RLAIF_TRY(summary(C, rlaif_now() - t0));
    /* the signal is known where it arrived; the others may have stopped on
     * the judges' agreement before its TAG_STOP reached them */
    int mine[2] = {C->stopping, C->stop_sig}, all[2];
    RLAIF_CHECK_MPI(MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, C->pr.comm));
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
    C.pr.comm = MPI_COMM_NULL;
    RLAIF_TRY(parse_opts(ctx, &C.o));
    RLAIF_TRY(rlaif_ranks_require(&ctx->ranks, "collect", 0, 1, 1));
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
