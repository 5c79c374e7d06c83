/* registry.h - the pipeline's phases, one entry each (IOR's backend table is
 * the model): what a phase is called, which rank groups it needs, what it
 * reads and leaves, whether its outputs are complete, and the function that
 * runs it. `rlaif run` and `rlaif status` (run.c), the CLI (cli.c: a phase
 * command ends world-agreed), eval's model choice (eval.c) and the job check
 * before the first phase read this one table. */
#ifndef RLAIF_REGISTRY_H
#define RLAIF_REGISTRY_H

#include "rlaif/core/job.h"
#include "rlaif/phases/layout.h"

typedef struct {
    const char *name;           /* command and run.phases name */
    const char *summary;        /* one line of `rlaif --help` */
    const char *usage;          /* the phase's own options for `rlaif <phase> --help`, or NULL */
    int needs[RLAIF_NROLES];    /* groups that must hold ranks (learner, rollout, judge) */
    int (*run)(rlaif_ctx *ctx); /* NULL: not built yet */
    /* Serial, read-only, on world rank 0 (rlaif_phase_status_get agrees it):
     * how far the phase's outputs in run.out_dir are. It is the function
     * the phase's own run() skips by, so `rlaif run` skips exactly what the
     * phase command would, without entering it. Missing inputs are not an
     * error here (NOT_STARTED or PARTIAL: the phase reports them). Learner
     * phases: rlaif_learner_done (train.h). */
    int (*done)(const rlaif_config *cfg, const char *name, rlaif_phase_status *st);
    const char *inputs;  /* what it reads (for --help and the README) */
    const char *outputs; /* what it leaves in run.out_dir */
    /* > 0: it trains a policy that eval may pick. Eval takes the newest
     * finished checkpoint of all of them (by the /state saved_at it was
     * written at); a tie goes to the higher number. */
    int policy_rank;
    /* Optional: what can be refused from the configuration alone (sizes),
     * run by `rlaif run` for every listed phase before the first starts. */
    int (*check)(const rlaif_config *cfg);
} rlaif_phase_def;

extern const rlaif_phase_def rlaif_phases[]; /* terminated by name == NULL */
const rlaif_phase_def *rlaif_phase_find(const char *name);

/* The phases that train a policy, highest policy_rank first (eval.policy =
 * "" picks the newest of them, ties in this order): fills out with up to max
 * names, returns how many. */
int rlaif_phase_policies(const char **out, int max);

/* Usage error unless the layout gives the phase every group it needs and
 * its check (if any) accepts the configuration. */
int rlaif_phase_check(const rlaif_phase_def *p, const rlaif_ctx *ctx);

/* Collective over the world: p->done on world rank 0 (NULL done: not
 * started), its error agreed and its answer broadcast, so every rank takes
 * the same decision. */
int rlaif_phase_status_get(const rlaif_ctx *ctx, const rlaif_phase_def *p, rlaif_phase_status *st);

/* Run one phase on every rank of the world and end it agreed
 * (rlaif_stop_agree_end): the returned code is the same on every rank, and
 * a rank with no part in the phase sleeps until the others are done. */
int rlaif_phase_exec(rlaif_ctx *ctx, const rlaif_phase_def *p);

/* Collective over the world, after a phase ended (or stopped) agreed: its
 * time split, throughput and judge usage summed over every rank
 * (telemetry.h) as a block in the log, attributes of metrics.h5
 * /summary/<phase> and the status file; nothing when the phase did no work
 * (a rerun of a finished one). wall = the phase's seconds (summary.c). */
int rlaif_phase_summary(const rlaif_ctx *ctx, const char *phase, double wall);

#endif
