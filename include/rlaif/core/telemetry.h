/* telemetry.h - what a running job tells the people watching it: where a
 * phase's time went, what it counted, and a live status file that
 * `rlaif status <out_dir>` reads from a login node.
 *
 * Accounting (every rank, this process only): the time of the current
 * phase in the kinds the phases can measure - compute (forward, backward,
 * optimizer, sampling), judge wait (driving and waiting for judge calls),
 * I/O (checkpoints, metrics rows, preference stores), communication (the
 * learners' collectives) - and its counts (steps, tokens, pairs, judge
 * usage). rlaif_phase_exec resets them when a phase starts and sums them
 * over the world when it ends (the phase summary: log block and metrics.h5
 * attributes). Counts are added once per thing: steps by one learner,
 * tokens and pairs by the rank that processed them.
 *
 * The status file <out_dir>/status.json (world rank 0 of a job that holds
 * the out_dir's lock): rewritten whole - temporary file, fsync, rename - at
 * phase boundaries, checkpoints, status lines (at most once a second) and
 * exit. A reader therefore always finds a complete last state, also after
 * a kill -9 (no HDF5 file is read while the job may be writing it). It
 * records who writes it (pid, host, batch job id), the phase, step/total,
 * rate and ETA, the judge's usage so far, the newest checkpoint, each
 * phase's state and summary, and, at a clean exit, the exit code. Nothing
 * here ever fails a job: a status file that cannot be written is a warning. */
#ifndef RLAIF_TELEMETRY_H
#define RLAIF_TELEMETRY_H

/* Indexes of the accounting vector: four times, then the counts. */
enum {
    RLAIF_TM_COMPUTE, /* seconds */
    RLAIF_TM_JUDGE,   /* seconds waiting for / driving judge calls */
    RLAIF_TM_IO,      /* seconds */
    RLAIF_TM_COMM,    /* seconds in collectives that move data */
    RLAIF_TM_NTIME,   /* the number of times */
    RLAIF_TM_STEPS = RLAIF_TM_NTIME,
    RLAIF_TM_TOKENS,   /* tokens through a model (trained on or generated) */
    RLAIF_TM_PAIRS,    /* pairs judged */
    RLAIF_TM_REQUESTS, /* judge HTTP requests */
    RLAIF_TM_RETRIES,
    RLAIF_TM_FAILURES, /* judge calls that failed for good */
    RLAIF_TM_REPLAYED, /* answers read back from the journal (not paid again) */
    RLAIF_TM_JTOKENS,  /* judge prompt + completion tokens */
    RLAIF_TM_COST,     /* estimated USD (judge.price_*_per_mtok) */
    RLAIF_TM_N
};
/* Attribute and JSON names: "compute_s", ..., "judge_cost_usd". */
extern const char *const rlaif_tm_names[RLAIF_TM_N];

void rlaif_tm_reset(void);
void rlaif_tm_add(int k, double v);
/* Adds now - t0 to time k and returns now, so consecutive parts chain:
 * t = rlaif_tm_since(RLAIF_TM_COMPUTE, t); t = rlaif_tm_since(RLAIF_TM_COMM, t); */
double rlaif_tm_since(int k, double t0);
void rlaif_tm_get(double out[RLAIF_TM_N]);

/* ---- the status file (no-ops until rlaif_live_open; world rank 0) ---- */

#define RLAIF_LIVE_FILE "status.json"

/* Start publishing <out_dir>/status.json for this command. Nothing is
 * written before the job has work to show - a `run`'s plan, a phase's first
 * status line, checkpoint or summary - so a job refused before its first
 * phase, or a phase command that finds its work done, writes nothing. */
void rlaif_live_open(const char *out_dir, const char *command, const char *ckpt_dir);
/* (ckpt_dir as checkpoint.dir says it: relative to out_dir unless absolute,
 * so a reader in another working folder finds it) */
/* The phases a `run` will go through, in order (shown as "phase 2/5"). */
void rlaif_live_plan(int n, const char *const *names);
/* A phase's state: "running" (it becomes the current phase; its progress
 * and judge figures start afresh), "skipped", "done", "stopped" or
 * "failed"; seconds = its wall time when it ended (else ignored). */
void rlaif_live_phase(const char *name, const char *state, double seconds);
/* From the status line (rlaif_status): eta_s < 0 when unknown. */
void rlaif_live_progress(long step, long total, double rate, const char *unit, double eta_s);
/* The judge's usage so far in the current phase (summed over judge ranks):
 * the RLAIF_TM_REQUESTS.. RLAIF_TM_COST part of an accounting vector. */
void rlaif_live_judge(const double tm[RLAIF_TM_N]);
void rlaif_live_checkpoint(const char *path, long step);
/* The phase's summary figures: n named numbers (those of metrics.h5). */
void rlaif_live_summary(const char *phase, int n, const char *const *names, const double *vals);
/* The agreed exit code, once, at the end of the command. */
void rlaif_live_end(int code);

#endif
