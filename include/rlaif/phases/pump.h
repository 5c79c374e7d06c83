/* pump.h - the judge pump: what a judge rank does with the judge client,
 * shared by collect, eval and `rlaif judge` and meant for online DPO and
 * d-RLAIF (items in, verdicts/scores out). It owns:
 *   - the pre-flight check of the API-key variable (before any work);
 *   - submit/poll with a caller's tag per pair (a slot, an input line, a
 *     prompt index), handed back with each result in any order;
 *   - the counts (judged, labelled, ties, per status) and the endpoint
 *     statistics summed over a communicator;
 *   - the outage guard: when most pairs fail for the same reason (a wrong
 *     key, a closed port, a quota), the pump says so and the phase stops
 *     with that reason (exit 1, RLAIF_EX_FAIL) instead of reporting success;
 *   - which failures a rerun retries: a pair the judge never answered (HTTP
 *     error, quota, retries exhausted) has no journal record, so judging it
 *     again pays only for what was not paid.
 *
 *     rlaif_pump_preflight(cfg, "collect");                 // exit 64 early
 *     rlaif_pump *p;  rlaif_pump_open(&p, cfg, rank, n, NULL, "collect");
 *     while (work) {
 *         while (rlaif_pump_room(p) > 0 && have) rlaif_pump_submit(p, &pair, tag);
 *         rlaif_pump_poll(p, wait, on_result, user, &n);   // on_result(user, tag, r)
 *         if ((rc = rlaif_pump_check(p, 0))) ...            // outage: stop, exit rc
 *     }
 *     rlaif_pump_check(p, 1);                               // the end: most failed?
 *     rlaif_pump_close(p); */
#ifndef RLAIF_PUMP_H
#define RLAIF_PUMP_H

#include <stddef.h>
#include <stdint.h>

#include "rlaif/core/telemetry.h"
#include "rlaif/judge/judge.h"

enum { RLAIF_PUMP_NSTATUS = 16 }; /* room for every rlaif_judge_status */

typedef struct {
    int64_t judged;     /* results handed back */
    int64_t labelled;   /* with a label */
    int64_t ties;       /* label 0.5 */
    int64_t unanswered; /* the judge never answered: a rerun retries these */
    int64_t status[RLAIF_PUMP_NSTATUS];
} rlaif_pump_counts;

typedef struct rlaif_pump rlaif_pump;

/* Before any work: an HTTP judge whose judge.api_key_env names a variable
 * that is unset or empty is a usage error (64) naming the variable; set
 * judge.api_key_env = "" for a server that wants no key. who = the phase. */
int rlaif_pump_preflight(const rlaif_config *cfg, const char *who);

/* The judge client of this judge rank (rlaif_judge_open's arguments). */
int rlaif_pump_open(rlaif_pump **out, const rlaif_config *cfg, int judge_rank, int n_judge,
                    const char *journal_dir, const char *who);
void rlaif_pump_close(rlaif_pump *p);
rlaif_judge *rlaif_pump_judge(const rlaif_pump *p);

int rlaif_pump_room(const rlaif_pump *p);    /* pairs submit takes now */
int rlaif_pump_pending(const rlaif_pump *p); /* submitted, not yet handed back */
/* Queue a pair (copied) with the caller's tag. */
int rlaif_pump_submit(rlaif_pump *p, const rlaif_judge_pair *pair, int64_t tag);

/* A finished pair and its tag; fn may take r->explanation (set it NULL).
 * The pump frees r after fn. */
typedef int (*rlaif_pump_fn)(void *user, int64_t tag, rlaif_judge_result *r);
/* Drive the calls for at most wait seconds; every finished pair through
 * fn; *n (may be NULL) = how many. */
int rlaif_pump_poll(rlaif_pump *p, double wait, rlaif_pump_fn fn, void *user, int *n);

const rlaif_pump_counts *rlaif_pump_counts_of(const rlaif_pump *p);
/* 0, or RLAIF_EX_FAIL with the error recorded when the judge is out: 12 of
 * the last 16 pairs failed with the same status and HTTP code, or (final =
 * 1, at the end of a run too short for that window) three quarters of all. */
int rlaif_pump_check(rlaif_pump *p, int final);

/* This judge's usage so far, summed over its endpoints, into the judge
 * part of an accounting vector (RLAIF_TM_REQUESTS..RLAIF_TM_COST; the rest
 * is left alone). Closing the pump adds it to this rank's accounting. */
void rlaif_pump_usage(const rlaif_pump *p, double v[RLAIF_TM_N]);

/* A status whose pair the judge never answered (nothing journaled). */
int rlaif_pump_unanswered(int status);

/* Collective over comm: the endpoint statistics summed on comm's rank 0
 * into *sum (malloc'd, *nep entries; the caller frees it). */
int rlaif_pump_stats(const rlaif_pump *p, MPI_Comm comm, rlaif_judge_endpoint_stats **sum,
                     int *nep);
/* ", 3 http, 2 exhausted": the failing statuses of a count array. */
void rlaif_pump_fail_list(const int64_t status[RLAIF_PUMP_NSTATUS], char *buf, size_t n);
/* v with fmt ("%.3f"), or "n/a" when v is NaN (nothing to measure). */
const char *rlaif_fmt_or_na(char *buf, size_t n, const char *fmt, double v);

#endif
