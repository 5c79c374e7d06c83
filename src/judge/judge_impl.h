/* judge_impl.h - the judge's private state, shared by judge.c (pairs, calls,
 * aggregation, polling) and judge_setup.c (open, close, statistics). */
#ifndef RLAIF_JUDGE_IMPL_H
#define RLAIF_JUDGE_IMPL_H

#include "rlaif/judge/judge.h"

#include <curl/curl.h>

/* One endpoint of [judge] or judge.ensemble. */
typedef struct {
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
    char *body, *user;         /* HTTP body, or the builtin's user message */
    size_t len, content_bytes; /* body bytes; bytes of the messages' text */
    int attempts;
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

#endif
