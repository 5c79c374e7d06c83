/* judge_adapt.c - how many requests a judge rank keeps in flight: adapted to
 * what the endpoint sustains, judge.max_inflight being only the ceiling.
 *
 * Why: a server with few workers (llama.cpp's llama-server: a handful of HTTP
 * threads, each keeping its connection for as long as it stays alive) lets
 * extra connections wait for seconds. 16 in flight there ran at 1.6 req/s
 * where 3 ran at 48; a hosted API, on the other hand, wants many in flight.
 *
 * How (TCP-like, on latency as well as on errors):
 *  - from START, doubling per round trip until the first answer that waited
 *    or the first cut (slow start), then +1 per round trip, while latency
 *    holds (an answer within
 *    GROW_TOL x the base latency, the lowest seen: under a queue, where
 *    every answer waits, the limit stops growing). A round trip ends
 *    when every request sent before the last step has been answered: a
 *    request waiting for a worker shows no latency until it is answered, so
 *    the limit never runs ahead of what was seen;
 *  - queueing (an answer slower than QUEUE_TOL x the typical latency, a
 *    moving average, so that long answers of a hosted LLM are not taken for
 *    a queue; or a request unanswered that long and at least WAIT_MIN: a
 *    connection waiting for a worker gives no answer to time) marks the
 *    limit it happened at as the ceiling and steps one below it;
 *  - 429, 5xx and transport errors halve the limit when they are at least
 *    half of the last 16 answers (an overloaded or rate-limiting server;
 *    scattered faults are the retries' business);
 *  - a request that timed out says nothing of the load (hosted APIs hang
 *    scattered requests): it is no error, and for as long as it hung after
 *    it (hang_until) a request in flight may be another hang, so it neither
 *    holds back the round trip nor counts as waiting in a queue. Else 30%
 *    of requests hanging until a 0.5 s timeout kept one hang in flight at
 *    all times: one step per 0.5 s, 64 in flight reached after 30 s;
 *  - only requests sent after the last cut count: the others went out
 *    under the old limit;
 *  - growing to the ceiling again is tried only after probe_every seconds
 *    (10 s, doubling to 5 min while probes fail), so finding 3 workers costs
 *    one waiting request now and then, not one per round trip.
 * Pure functions of their inputs (times are passed in): unit-tested. */
#include "rlaif/judge/judge.h"

#include <math.h>

#define GROW_TOL    1.5  /* latency "holds": within 1.5x the base */
#define QUEUE_TOL   4.0  /* 4x the typical latency, answered or still waiting: a queue */
#define SLACK       0.01 /* s: scheduling noise never counts as queueing */
#define WAIT_MIN    1.0  /* s: a request unanswered this long at least waits in a queue */
#define ERR_SHARE   0.5  /* errors cut when they are half of the last answers */
#define START       4    /* a first guess: most servers take 4 at once */
#define PROBE_FIRST 10.0
#define PROBE_MAX   300.0

void rlaif_adapt_init(rlaif_adapt *a, int max_inflight, int adaptive, double now) {
    *a = (rlaif_adapt){.max = max_inflight,
                       .limit = adaptive && max_inflight > START ? START : max_inflight,
                       .fixed = !adaptive,
                       .base = INFINITY,
                       .typical = INFINITY,
                       .ceiling = INFINITY,
                       .last_cut = now - 1e9,
                       .last_grow = now - 1e9,
                       .probe_every = PROBE_FIRST,
                       .slow_start = 1};
}

int rlaif_adapt_limit(const rlaif_adapt *a) {
    int n = (int)floor(a->limit + 1e-9);
    return n < 1 ? 1 : n > a->max ? a->max : n;
}

static double queue_after(const rlaif_adapt *a) {
    return QUEUE_TOL * a->typical + SLACK;
}

double rlaif_adapt_stuck_after(const rlaif_adapt *a) {
    return a->fixed || !isfinite(a->base) ? INFINITY : fmax(queue_after(a), WAIT_MIN);
}

/* Remember whether an answer was an error; 1 when errors are ERR_SHARE of
 * the last RLAIF_ADAPT_HIST answers. */
static int errors_dominate(rlaif_adapt *a, int failed) {
    a->hist = (a->hist << 1 | (unsigned)(failed != 0)) & ((1u << RLAIF_ADAPT_HIST) - 1);
    if (a->nhist < RLAIF_ADAPT_HIST) a->nhist++;
    return __builtin_popcount(a->hist) >= ERR_SHARE * a->nhist && a->nhist >= 4;
}

/* started: when the request that showed congestion was sent. */
static void cut(rlaif_adapt *a, int queueing, double started, double now) {
    /* before the first answer there is no load to adapt to: an endpoint that
     * never answered is down (the outage line says so), and its retries go
     * at the first guess */
    if (!isfinite(a->base)) return;
    if (started < a->last_cut) return; /* sent under the old limit */
    int at = rlaif_adapt_limit(a);
    a->last_cut = now;
    a->cuts++;
    a->slow_start = 0;
    if (!queueing) { /* errors: halve, and grow back as before */
        a->limit = fmax(1, floor(at / 2.0));
        return;
    }
    if (at >= a->ceiling) /* a probe at the ceiling failed: wait longer next time */
        a->probe_every = fmin(2 * a->probe_every, PROBE_MAX);
    a->ceiling = at;
    a->limit = fmax(1, at - 1);
    a->probe_at = now + a->probe_every;
}

static void grow(rlaif_adapt *a, double now) {
    int cur = rlaif_adapt_limit(a), next = a->slow_start ? 2 * cur : cur + 1;
    if (next > a->max) next = a->max;
    if (next <= cur) return;
    if (next >= a->ceiling && now < a->probe_at) { /* not yet: it queued there */
        if (cur + 1 >= a->ceiling) return;
        next = cur + 1;
    }
    if (next > a->ceiling) /* the ceiling held a whole round trip: gone */
        a->ceiling = INFINITY, a->probe_every = PROBE_FIRST;
    a->limit = next;
    a->last_grow = now;
}

void rlaif_adapt_done(rlaif_adapt *a, double latency, int failed, int inflight, double oldest_start,
                      double now) {
    if (a->fixed) return;
    if (failed == RLAIF_ADAPT_TIMEOUT) { /* see the top: a hang, not a load */
        a->hang_until = fmax(a->hang_until, now + latency);
        return;
    }
    double started = now - latency;
    if (now < a->hang_until) oldest_start = now; /* the others may hang as well */
    if (errors_dominate(a, failed) && failed) cut(a, 0, started, now);
    if (failed) return;
    if (isfinite(a->typical) && latency > queue_after(a)) {
        cut(a, 1, started, now);
        return; /* a queued answer says nothing of the server's speed */
    }
    if (latency < a->base) a->base = latency;
    if (!isfinite(a->typical)) a->last_grow = now; /* the first batch must all answer first */
    if (latency > GROW_TOL * a->base + SLACK) a->slow_start = 0; /* a wait: step by one now */
    a->typical = isfinite(a->typical) ? a->typical + 0.05 * (latency - a->typical) : latency;
    /* one step per round trip, when the limit is what holds us back */
    if (latency <= GROW_TOL * a->base + SLACK && started >= a->last_grow &&
        oldest_start >= a->last_grow && inflight >= rlaif_adapt_limit(a))
        grow(a, now);
}

void rlaif_adapt_waiting(rlaif_adapt *a, double oldest_start, double now) {
    if (a->fixed || !isfinite(a->base) || oldest_start <= a->stuck_seen) return;
    if (now < a->hang_until) return; /* hangs are seen: this may be one */
    if (now - oldest_start > rlaif_adapt_stuck_after(a)) {
        a->stuck_seen = oldest_start; /* each waiting request counts once */
        cut(a, 1, oldest_start, now);
    }
}
