/* layout.h - what a job leaves in run.out_dir, named in one place.
 *
 *   <out_dir>/<checkpoint.dir>/<phase>-<step>.h5   learner checkpoints
 *   <out_dir>/preferences.h5                       collect's labelled pairs
 *   <out_dir>/eval.h5                              eval's pairs and results
 *   <out_dir>/metrics.h5, progress.jsonl           training curves
 *   <out_dir>/exit_status                          how the last run ended
 *   <out_dir>/status.json                          the live state (core/telemetry.h)
 *
 * exit_status holds one line "<code>\n" (75 = checkpointed on a signal or
 * walltime: requeue). World rank 0 removes it when `rlaif run` starts (a
 * phase command leaves it alone: a complete phase writes nothing) and writes it atomically
 * (temporary file + rename) once the exit code is agreed by every rank, so a job script reads the
 * run's own answer whatever the launcher reports (Open MPI's mpiexec says 1 when its ranks exit 75
 * after a SIGTERM). No file = the run did not get that far (killed, or out_dir not writable): not a
 * requeue. */
#ifndef RLAIF_LAYOUT_H
#define RLAIF_LAYOUT_H

#include <stddef.h>

#include "rlaif/core/config.h"

#define RLAIF_OUT_STATUS "exit_status"

/* How far a phase's outputs in run.out_dir are (a phase's done() in the
 * registry): what `rlaif run` skips and `rlaif status` prints. */
typedef enum { RLAIF_PHASE_NOT_STARTED, RLAIF_PHASE_PARTIAL, RLAIF_PHASE_DONE } rlaif_phase_state;
typedef struct {
    rlaif_phase_state state;
    char what[1024]; /* the output it looked at, e.g. "run/ckpt/sft-00000300.h5, step 300, done" */
} rlaif_phase_status;

/* <out_dir>/name (name alone when out_dir is empty or name absolute). */
void rlaif_out_path(const rlaif_config *cfg, const char *name, char *buf, size_t n);
/* <out_dir>/<checkpoint.dir>: where every learner phase keeps its checkpoints. */
void rlaif_out_ckpt_dir(const rlaif_config *cfg, char *buf, size_t n);

/* World rank 0 only. Remove <out_dir>/exit_status (none is fine). */
int rlaif_out_status_clear(const rlaif_config *cfg);
/* Write <out_dir>/exit_status = code, atomically. An out_dir that does not
 * exist is left alone (nothing ran). -1 and errno on failure; the recorded
 * error (the run's own, printed at exit) is left untouched. */
int rlaif_out_status_write(const rlaif_config *cfg, int code);

#endif
