/* run.h - `rlaif run job.ini`: the job's phases (run.phases) in order, and
 * `rlaif status job.ini`: how far each of them is.
 *
 * Before each phase, `run` asks the registry's done() of the phase (agreed
 * by every rank: rlaif_phase_status_get) and does not enter a complete one
 * ("run: sft already complete, skipped (...)"): sft/rm/dpo: the newest
 * checkpoint verifies, has /state done = 1 and the job's steps; collect:
 * preferences.h5's collect_complete with the same settings; eval: eval.h5
 * complete with the same models and settings. done() is the test the phase
 * itself skips by, so a phase command skips the same phases. Rerunning
 * `run` after a crash or an exit 75 thus continues with the first
 * unfinished phase, which resumes. The list is checked before anything
 * starts, so a misspelt or unbuilt phase costs no compute.
 *
 * `status job.ini` (world rank 0, no lock: it only reads) prints one line
 * a phase of run.phases: done, partial (some output, not complete for this
 * job) or not started, with the file it looked at; then what the job's
 * status file says (telemetry.h). */
#ifndef RLAIF_RUN_H
#define RLAIF_RUN_H

#include "rlaif/core/job.h"
#include "rlaif/phases/layout.h"

int rlaif_cmd_run(rlaif_ctx *ctx);

/* `rlaif status job.ini` (src/app/status_cmd.c): each phase of run.phases
 * and what its done() says, read-only, on one rank; max entries. */
#define RLAIF_RUN_MAX_PHASES 32
typedef struct {
    const char *name;
    int built; /* the phase runs in this build */
    rlaif_phase_status st;
} rlaif_run_state;
int rlaif_run_states(const rlaif_config *cfg, rlaif_run_state *out, int max, int *n);

#endif
