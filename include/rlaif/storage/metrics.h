/* metrics.h - per-step training metrics: metrics.h5 and progress.jsonl.
 *
 * metrics.h5 holds one extendible compound dataset per phase (/sft, /rm,
 * /ppo, /dpo, ...) whose columns are given when the phase starts: "step"
 * (int64), "time" (double, seconds since the epoch) and one double per
 * metric, named as in TRL ("objective/kl", "policy/clipfrac", "loss", ...).
 * Every logged row is also one JSON line in progress.jsonl for live
 * monitoring (`tail -f`); NaN and infinities become null there.
 *
 * Values are already reduced across ranks, so only rank 0 of comm touches
 * the files; every function may be called on every rank (others return 0).
 * The file is flushed after every row so a killed job keeps its curves; a
 * metrics.h5 that no longer opens is renamed to metrics.h5.damaged-<time>
 * with a warning and a new one is started. */
#ifndef RLAIF_METRICS_H
#define RLAIF_METRICS_H

#include <mpi.h>
#include <stdint.h>

typedef struct rlaif_metrics rlaif_metrics;

/* Open (or create) h5path and progress_path (either may be NULL to skip it). */
int rlaif_metrics_open(const char *h5path, const char *progress_path, MPI_Comm comm,
                       rlaif_metrics **out);
/* The job's files: <out_dir>/metrics.h5 and <out_dir>/progress.jsonl. */
int rlaif_metrics_open_run(const char *out_dir, MPI_Comm comm, rlaif_metrics **out);
/* Declare a phase's columns. If /phase exists its columns must be the same. */
int rlaif_metrics_phase(rlaif_metrics *m, const char *phase, int ncols, const char *const *names);
/* One row: values[ncols] in the declared order. A step the phase already
 * has in a file (a resumed job replaying it) replaces the rows from that
 * step on, so each step is in metrics.h5 and progress.jsonl once. */
int rlaif_metrics_log(rlaif_metrics *m, const char *phase, int64_t step, const double *values);
/* Resuming from a checkpoint at step: drop rows of phase with a larger step
 * from metrics.h5 and progress.jsonl. */
int rlaif_metrics_rewind(rlaif_metrics *m, const char *phase, int64_t step);
/* A phase's closing figures as float64 attributes of the group
 * /summary/<phase> (replacing those of an earlier run of the phase). */
int rlaif_metrics_summary(rlaif_metrics *m, const char *phase, int n, const char *const *names,
                          const double *values);
int rlaif_metrics_close(rlaif_metrics **m);

#endif
