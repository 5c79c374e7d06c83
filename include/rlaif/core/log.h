/* log.h - rank-0 status lines, warnings and per-rank logs.
 *
 * Batch logs are read after the fact, so every rank-0 line is complete,
 * timestamped and flushed (line-buffered); a progress bar replaces the status
 * line only when stdout is a terminal. With --log-dir every rank also writes
 * its own file (rank-00012.log) holding its debug lines. */
#ifndef RLAIF_LOG_H
#define RLAIF_LOG_H

#include <stdio.h>

/* Called once after MPI_Init. log_dir may be NULL or "" (no per-rank files).
 * Returns 0 or an error status (the folder could not be created). */
int rlaif_log_init(int world_rank, const char *log_dir, int verbose);
void rlaif_log_close(void);

/* Rank 0 only (other ranks: per-rank log only): "[2026-11-26 16:40:01] msg" */
void rlaif_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Any rank, to stderr: "WARNING (rank N): msg". */
void rlaif_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Per-rank log (and stderr when verbose). */
void rlaif_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A phase's status line: "[time] sft step 120/1000 (12.0%) 35.1 tok/s ETA 00:04:10 | extra".
 * Rank 0 only; elapsed is the phase's wall time so far. The same figures
 * go to the job's status file (telemetry.h). */
void rlaif_status(const char *phase, long step, long total, double rate, const char *unit,
                  double elapsed, const char *extra);

/* "01:02:03" for s seconds ("--:--:--" when negative, NaN or over 99 h). */
void rlaif_hms(char *buf, size_t n, double s);

/* Seconds since the epoch as a double (monotonic clock for intervals: rlaif_now). */
double rlaif_now(void);
double rlaif_wall_time(void);
/* "2026-11-26T16:40:01Z" */
void rlaif_timestamp_iso(char *buf, size_t n);
/* Tests only: sleep the seconds the environment variable var names (unset
 * or 0: none), to pace a phase or slow a checkpoint; changes no number. */
void rlaif_test_delay(const char *var);

#endif
