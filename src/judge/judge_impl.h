/* judge_impl.h - the judge's private state, shared by judge.c (pairs, calls,
 * aggregation, polling) and judge_setup.c (open, close, statistics). */
#ifndef RLAIF_JUDGE_IMPL_H
#define RLAIF_JUDGE_IMPL_H

#include "rlaif/judge/judge.h"

#include "rlaif/engine/generate.h"

#include <curl/curl.h>

typedef struct rlaif_local rlaif_local; /* judge_local.c */

/* One endpoint of [judge] or judge.ensemble. */
typedef struct {
    rlaif_local *local; /* backend local: the judge model on this rank */
    rlaif_judge_endpoint e;
    char *url; /* full request URL */
    char *key; /* API key (memory only; scrubbed from every message) */
    struct curl_slist *headers;
    rlaif_bucket requests, tokens;
    rlaif_builtin_opts builtin;
    /* an outage: failures with no answer between them (judge.c, endpoint_failed) */
    long down_fails;
    double down_since, down_since_wall, down_line; /* rlaif_now / wall clock / last line */
} endpoint;

/* What one call (unit, order) of a pair gave. */
typedef struct {
    int8_t asked, done, replayed;
    int status, http;
    double p;                           /* P(response[0] better), NaN */
    int first;                          /* the verdict chose position A (1), B (0), none (-1) */
    float rubric[2][RLAIF_JUDGE_NCRIT]; /* by response index */
    float score;
    long tin, tout;
    char *text; /* primary unit only */
    char reason[120];
} outcome;

typedef struct pstate {
    uint64_t pair_id;
    char *prompt, *resp[2];
    int nleft, ncalls, nreplayed;
    outcome *oc; /* [unit][order] */
    rlaif_judge_result res;
    struct pstate *next; /* free list / done queue */
} pstate;

typedef struct call {
    pstate *pair;
    int unit, order;
    char key[33];
    char *body, *user; /* HTTP body, or the builtin's user message */
    int32_t *ids;      /* local: the prompt's token ids */
    int nids;
    size_t len, content_bytes; /* body bytes; bytes of the messages' text */
    int attempts;
    int journaled; /* the answer was journaled as its last byte arrived (on_complete) */
    double not_before, est_tokens;
    struct call *next;         /* ready queue / retry list */
    struct call *next_pending; /* bucket chain of the pending-key table */
    struct call *followers;    /* calls with the same key waiting on this one */
    struct call *next_follower;
} call;

struct rlaif_judge {
    rlaif_judge_mode mode;
    endpoint *ep;
    int nep;
    rlaif_judge_template *tpl;
    int ntpl, nunits;
    char *fewshot;
    uint64_t seed;
    double both_orders, min_coverage, backoff_base, backoff_cap, price_in, price_out;
    int disagreement; /* 0 drop, 1 tie, 2 average */
    int majority, max_attempts, n_judge;
    int nlocal; /* endpoints with backend local */
    rlaif_http *http;
    rlaif_adapt adapt; /* requests in flight (judge_adapt.c) */
    int connections;   /* the connection cap last given to curl */
    rlaif_journal *journal;
    pstate *slots, *free_slots, *done_head, *done_tail;
    int credit_max, npending, ndone;
    call *ready_head, *ready_tail, *delayed;
    call **pending; /* HTTP calls not yet settled, by key: a twin waits, never pays */
    long npending_buckets;
    double wake; /* earliest time a waiting call may go */
    rlaif_judge_endpoint_stats *stats;
};

/* Frees the call and any followers. */
void rlaif_judge_free_call(call *c);
/* Journals an HTTP answer as its last byte is read (rlaif_http_on_complete;
 * ctx the judge, user the call). */
void rlaif_judge_on_complete(void *ctx, void *user, const char *body, size_t len, long http);

/* ---- the local backend (judge_local.c) ---- */

/* Calls waiting for the judge model, first in first out. */
typedef struct {
    call *head, *tail;
    int n;
} rlaif_local_queue;
void rlaif_local_queue_push(rlaif_local_queue *q, call *c);
/* Up to max calls off the front into out; returns how many. */
int rlaif_local_queue_take(rlaif_local_queue *q, int max, call **out);

/* Loads judge.model (path) once, read-only, after checking it fits in the
 * memory this rank may use; its tokenizer from /tokenizer, its chat
 * template from judge.chat_template (default model.chat_template). */
int rlaif_local_open(rlaif_local **out, const rlaif_config *cfg, const char *path,
                     rlaif_judge_mode mode);
/* drop (may be NULL) gets each call still queued or running. */
void rlaif_local_close(rlaif_local *L, void (*drop)(call *c));
/* The rendered messages as the prompt's ids into c->ids. Returns 0, an
 * error status, or -1 when the prompt does not fit the model's context
 * (why says so). */
int rlaif_local_encode(rlaif_local *L, const rlaif_judge_messages *m, call *c, char *why, size_t n);
/* The journal key: hash(model identity, mode, sampling settings, order,
 * prompt ids). */
void rlaif_local_key(const rlaif_local *L, const call *c, int order, char key[33]);
void rlaif_local_submit(rlaif_local *L, call *c);
int rlaif_local_busy(const rlaif_local *L);
/* A finished call's answer (raw: the ids read and written, as JSON); 0 when
 * the callee took the call. */
typedef int (*rlaif_local_answer_fn)(void *ctx, call *c, const rlaif_journal_entry *e,
                                     const char *raw);
/* One bounded piece of work: start a batch from the queue, then one prefill
 * chunk or one decoding step; when the batch ends every call goes to fn. */
int rlaif_local_slice(rlaif_local *L, rlaif_local_answer_fn fn, void *ctx);
long rlaif_local_generations(const rlaif_local *L);
/* The engine's prefill and decoding time over the batches that ended. */
const rlaif_gen_timing *rlaif_local_timing(const rlaif_local *L);

#endif
