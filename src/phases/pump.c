/* pump.c - the judge pump: key pre-flight, submit/poll with tags, counts,
 * the outage guard and summed statistics (include/rlaif/phases/pump.h). */
#include "rlaif/phases/pump.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WINDOW = 16, WINDOW_OUT = 12 }; /* outage: 12 of the last 16 pairs, one reason */

/* pair id -> tag of the pairs in flight (open addressing, linear probing,
 * backward-shift deletion, grown at half full). A pair id submitted twice
 * at once has two entries; its results are identical, so either tag fits. */
typedef struct {
    uint64_t id;
    int64_t tag;
    int used;
} tag_slot;

typedef struct {
    tag_slot *t;
    size_t mask, count;
} tag_map;

struct rlaif_pump {
    rlaif_judge *j;
    const char *who;
    const rlaif_config *cfg;
    tag_map tags;
    rlaif_pump_counts c;
    int ring[WINDOW]; /* reason key of the last results (-1 = answered) */
    int nring;
    char reason[RLAIF_PUMP_NSTATUS][160]; /* the latest reason per status */
    int http[RLAIF_PUMP_NSTATUS];
    double last_poll, last_busy; /* the previous poll's return, other timed work then */
};

/* ------------------------------------------------------------- the map */

static size_t tag_home(const tag_map *m, uint64_t id) {
    return (size_t)rlaif_hash64(&id, sizeof id, 5) & m->mask;
}

static void tag_init(tag_map *m, size_t n) {
    m->t = xcalloc(n, sizeof *m->t);
    m->mask = n - 1, m->count = 0;
}

static void tag_put(tag_map *m, uint64_t id, int64_t tag);

static void tag_grow(tag_map *m) {
    tag_map old = *m;
    tag_init(m, 2 * (old.mask + 1));
    for (size_t i = 0; i <= old.mask; i++)
        if (old.t[i].used) tag_put(m, old.t[i].id, old.t[i].tag);
    free(old.t);
}

static void tag_put(tag_map *m, uint64_t id, int64_t tag) {
    if (2 * (m->count + 1) > m->mask + 1) tag_grow(m);
    size_t i = tag_home(m, id);
    while (m->t[i].used) i = (i + 1) & m->mask;
    m->t[i] = (tag_slot){id, tag, 1};
    m->count++;
}

/* The tag of a pair in flight (and forget it); 0 and *tag, -1 if unknown. */
static int tag_take(tag_map *m, uint64_t id, int64_t *tag) {
    size_t i = tag_home(m, id);
    while (m->t[i].used && m->t[i].id != id) i = (i + 1) & m->mask;
    if (!m->t[i].used) return -1;
    *tag = m->t[i].tag;
    m->t[i].used = 0, m->count--;
    for (size_t j = (i + 1) & m->mask; m->t[j].used; j = (j + 1) & m->mask) {
        size_t k = tag_home(m, m->t[j].id); /* move j back to i unless k lies in (i, j] */
        if ((j > i && (k <= i || k > j)) || (j < i && k <= i && k > j)) {
            m->t[i] = m->t[j];
            m->t[j].used = 0;
            i = j;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ the pump */

int rlaif_pump_preflight(const rlaif_config *cfg, const char *who) {
    const char *backend = rlaif_cfg_str(cfg, "judge.backend");
    if (!strcmp(backend, "builtin") || !strcmp(backend, "local")) return 0; /* no key */
    const char *env = rlaif_cfg_str(cfg, "judge.api_key_env");
    const char *key = *env ? getenv(env) : NULL;
    if (!*env || (key && *key)) return 0;
    return RLAIF_ERROR(RLAIF_EX_USAGE,
                       "export the key in the job script (it is never read from the job file); "
                       "for a server that wants no key, set judge.api_key_env = \"\"",
                       "%s: the judge's API key variable %s (judge.api_key_env) is %s", who, env,
                       key ? "empty" : "not set");
}

int rlaif_pump_open(rlaif_pump **out, const rlaif_config *cfg, int judge_rank, int n_judge,
                    const char *journal_dir, const char *who) {
    *out = NULL;
    rlaif_pump *p = xcalloc(1, sizeof *p);
    p->who = who, p->cfg = cfg;
    int rc = rlaif_judge_open(&p->j, cfg, judge_rank, n_judge, journal_dir);
    if (rc) return free(p), rc;
    tag_init(&p->tags, 64);
    *out = p;
    return 0;
}

void rlaif_pump_usage(const rlaif_pump *p, double v[RLAIF_TM_N]) {
    for (int k = RLAIF_TM_REQUESTS; k < RLAIF_TM_N; k++) v[k] = 0;
    for (int e = 0; p && e < rlaif_judge_nendpoints(p->j); e++) {
        const rlaif_judge_endpoint_stats *s = rlaif_judge_stats(p->j, e);
        /* HTTP requests with their retries; the builtin judge makes none,
         * so its calls that the journal did not answer count */
        long answered = s->calls - s->replayed;
        v[RLAIF_TM_REQUESTS] += (double)(s->http_requests > answered ? s->http_requests : answered);
        v[RLAIF_TM_RETRIES] += (double)s->retries;
        v[RLAIF_TM_FAILURES] += (double)s->failed;
        v[RLAIF_TM_REPLAYED] += (double)s->replayed;
        v[RLAIF_TM_JTOKENS] += (double)(s->tokens_in + s->tokens_out);
        v[RLAIF_TM_COST] += s->cost_usd;
    }
}

void rlaif_pump_close(rlaif_pump *p) {
    if (!p) return;
    double v[RLAIF_TM_N]; /* the phase summary's judge usage: this judge's whole life */
    rlaif_pump_usage(p, v);
    for (int k = RLAIF_TM_REQUESTS; k < RLAIF_TM_N; k++) rlaif_tm_add(k, v[k]);
    rlaif_judge_close(p->j);
    free(p->tags.t);
    free(p);
}

rlaif_judge *rlaif_pump_judge(const rlaif_pump *p) {
    return p->j;
}

int rlaif_pump_room(const rlaif_pump *p) {
    return rlaif_judge_credit(p->j);
}

int rlaif_pump_pending(const rlaif_pump *p) {
    return rlaif_judge_pending(p->j);
}

int rlaif_pump_submit(rlaif_pump *p, const rlaif_judge_pair *pair, int64_t tag) {
    RLAIF_TRY(rlaif_judge_submit(p->j, pair));
    tag_put(&p->tags, pair->pair_id, tag);
    return 0;
}

int rlaif_pump_unanswered(int status) {
    return status == RLAIF_JS_HTTP || status == RLAIF_JS_QUOTA || status == RLAIF_JS_EXHAUSTED;
}

/* A failure that says the judge does not answer well (a disagreement of
 * the two orders is an answer). */
static int failed(int status) {
    return status != RLAIF_JS_OK && status != RLAIF_JS_DISAGREE;
}

static void count(rlaif_pump *p, const rlaif_judge_result *r) {
    int s = r->status & (RLAIF_PUMP_NSTATUS - 1);
    p->c.judged++;
    rlaif_tm_add(RLAIF_TM_PAIRS, 1);
    p->c.labelled += !isnan(r->label);
    p->c.ties += r->label == 0.5f;
    p->c.unanswered += rlaif_pump_unanswered(r->status);
    p->c.status[s]++;
    if (failed(r->status)) {
        snprintf(p->reason[s], sizeof p->reason[s], "%s", r->reason);
        p->http[s] = r->http_status;
    }
    int key = failed(r->status) ? s * 1000 + (r->http_status % 1000) : -1;
    p->ring[p->nring++ % WINDOW] = key;
}

/* This rank's timed work other than the judge's (a colocated rank samples
 * between polls: that time is compute, not judge wait). */
static double other_work(void) {
    double v[RLAIF_TM_N];
    rlaif_tm_get(v);
    return v[RLAIF_TM_COMPUTE] + v[RLAIF_TM_IO] + v[RLAIF_TM_COMM];
}

int rlaif_pump_poll(rlaif_pump *p, double wait, rlaif_pump_fn fn, void *user, int *n) {
    enum { CAP = 256 };
    rlaif_judge_result res[CAP];
    int got = 0, rc = 0, busy = rlaif_pump_pending(p) > 0;
    double t_in = rlaif_now();
    RLAIF_TRY(rlaif_judge_poll(p->j, wait, res, CAP, &got));
    /* judge wait: the time this rank had calls out since its last poll,
     * less what it spent on other timed work meanwhile */
    double t_out = rlaif_now(), other = other_work();
    double waited = t_out - (p->last_poll > 0 ? p->last_poll : t_in) - (other - p->last_busy);
    if (busy && waited > 0) rlaif_tm_add(RLAIF_TM_JUDGE, waited);
    p->last_poll = t_out, p->last_busy = other;
    for (int i = 0; i < got; i++) {
        int64_t tag = 0;
        if (!rc && tag_take(&p->tags, res[i].pair_id, &tag))
            rc = RLAIF_ERROR(RLAIF_EX_SOFTWARE, "a bug: please report it",
                             "%s: pair %llu came back but was not submitted", p->who,
                             (unsigned long long)res[i].pair_id);
        if (!rc) count(p, &res[i]);
        if (!rc) rc = fn(user, tag, &res[i]);
        rlaif_judge_result_free(&res[i]);
    }
    if (n) *n = got;
    return rc;
}

const rlaif_pump_counts *rlaif_pump_counts_of(const rlaif_pump *p) {
    return &p->c;
}

/* The stop: name the reason and what to do about it. */
static int outage(const rlaif_pump *p, int s, long k, long of) {
    int http = p->http[s];
    const char *hint =
        http == 401 || http == 403
            ? "check the key in the variable judge.api_key_env names, judge.base_url and "
              "judge.model; answered calls are journaled: the rerun pays nothing twice"
        : s == RLAIF_JS_EXHAUSTED
            ? "is the endpoint up at judge.base_url (rlaif judge with a few pairs tries it)? "
              "answered calls are journaled: the rerun pays nothing twice"
            : "try the endpoint with `rlaif judge job.ini --input pairs.jsonl --output x.jsonl`; "
              "answered calls are journaled: the rerun pays nothing twice";
    return RLAIF_ERROR(RLAIF_EX_FAIL, hint,
                       "%s: the judge is not answering: %ld of %s%ld pairs failed with status "
                       "%s (HTTP %d): %s",
                       p->who, k, of == WINDOW ? "the last " : "", of, rlaif_judge_status_name(s),
                       http, p->reason[s]);
}

int rlaif_pump_check(rlaif_pump *p, int final) {
    if (p->nring >= WINDOW) {
        for (int a = 0; a < WINDOW; a++) {
            int same = 0;
            for (int b = 0; b < WINDOW && p->ring[a] >= 0; b++) same += p->ring[b] == p->ring[a];
            if (same >= WINDOW_OUT) return outage(p, p->ring[a] / 1000, same, WINDOW);
        }
    }
    if (!final || p->c.judged == 0) return 0;
    for (int s = 0; s < RLAIF_PUMP_NSTATUS; s++)
        if (failed(s) && 4 * p->c.status[s] >= 3 * p->c.judged)
            return outage(p, s, (long)p->c.status[s], (long)p->c.judged);
    return 0;
}

/* ---------------------------------------------------------- reporting */

enum { NL = 15, ND = 11 }; /* long and double fields of an endpoint's statistics */

static void stats_pack(const rlaif_judge_endpoint_stats *s, long long *x, double *y) {
    x[0] = s->calls, x[1] = s->http_requests, x[2] = s->retries, x[3] = s->replayed;
    x[4] = s->failed, x[5] = s->pairs_two_orders, x[6] = s->pairs_consistent;
    x[7] = s->verdicts, x[8] = s->first_wins, x[9] = s->tokens_in, x[10] = s->tokens_out;
    y[0] = s->len_n, y[1] = s->len_sx, y[2] = s->len_sy, y[3] = s->len_sxx;
    y[4] = s->len_syy, y[5] = s->len_sxy, y[6] = s->cost_usd;
    x[11] = s->model.prefill_tokens, x[12] = s->model.decode_steps, x[13] = s->model.decode_rows;
    x[14] = s->model.prefill_shared;
    y[7] = s->model.prefill_s, y[8] = s->model.decode_s;
    y[9] = s->model.prefill_attn_s, y[10] = s->model.decode_attn_s;
}

static void stats_unpack(rlaif_judge_endpoint_stats *s, const long long *x, const double *y) {
    s->calls = (long)x[0], s->http_requests = (long)x[1], s->retries = (long)x[2];
    s->replayed = (long)x[3], s->failed = (long)x[4], s->pairs_two_orders = (long)x[5];
    s->pairs_consistent = (long)x[6], s->verdicts = (long)x[7], s->first_wins = (long)x[8];
    s->tokens_in = x[9], s->tokens_out = x[10];
    s->len_n = y[0], s->len_sx = y[1], s->len_sy = y[2], s->len_sxx = y[3];
    s->len_syy = y[4], s->len_sxy = y[5], s->cost_usd = y[6];
    s->model.prefill_tokens = x[11], s->model.decode_steps = x[12], s->model.decode_rows = x[13];
    s->model.prefill_shared = x[14];
    s->model.prefill_s = y[7], s->model.decode_s = y[8];
    s->model.prefill_attn_s = y[9], s->model.decode_attn_s = y[10];
}

int rlaif_pump_stats(const rlaif_pump *p, MPI_Comm comm, rlaif_judge_endpoint_stats **sum,
                     int *nep) {
    int ne = *nep = rlaif_judge_nendpoints(p->j);
    long long *l = xcalloc((size_t)(2 * NL * ne) + 1, sizeof *l);
    double *d = xcalloc((size_t)(2 * ND * ne) + 1, sizeof *d);
    for (int e = 0; e < ne; e++) stats_pack(rlaif_judge_stats(p->j, e), l + NL * e, d + ND * e);
    int rc = MPI_Reduce(l, l + NL * ne, NL * ne, MPI_LONG_LONG, MPI_SUM, 0, comm);
    if (rc == MPI_SUCCESS) rc = MPI_Reduce(d, d + ND * ne, ND * ne, MPI_DOUBLE, MPI_SUM, 0, comm);
    if (rc != MPI_SUCCESS) {
        free(l), free(d);
        return rlaif_error_mpi(rc, "MPI_Reduce of the judge statistics", __FILE__, __LINE__);
    }
    *sum = xcalloc((size_t)ne + 1, sizeof **sum);
    for (int e = 0; e < ne; e++) {
        (*sum)[e] = *rlaif_judge_stats(p->j, e); /* the name */
        stats_unpack(&(*sum)[e], l + NL * (ne + e), d + ND * (ne + e));
    }
    free(l), free(d);
    return 0;
}

void rlaif_pump_fail_list(const int64_t status[RLAIF_PUMP_NSTATUS], char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int s = 1; s < RLAIF_PUMP_NSTATUS; s++)
        if (status[s] && k + 40 < n)
            k += (size_t)snprintf(buf + k, n - k, ", %lld %s", (long long)status[s],
                                  rlaif_judge_status_name(s));
}

const char *rlaif_fmt_or_na(char *buf, size_t n, const char *fmt, double v) {
    if (isnan(v))
        snprintf(buf, n, "n/a");
    else
        snprintf(buf, n, fmt, v);
    return buf;
}
