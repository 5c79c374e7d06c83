/* run.h - `rlaif run job.ini`: the job's phases (run.phases) in order.
 *
 * Every phase is resumable and skips itself when its complete output exists
 * (sft/rm/dpo: a final checkpoint with /state done = 1; collect: the
 * preferences file's collect_complete attribute; eval: the same settings
 * already evaluated), so `run` is only a loop: rerunning it after a crash or
 * an exit 75 continues with the first unfinished phase. The list is checked
 * before anything starts, so a misspelt or unbuilt phase costs no compute. */
#ifndef RLAIF_RUN_H
#define RLAIF_RUN_H

#include "rlaif/core/job.h"

int rlaif_cmd_run(rlaif_ctx *ctx);

#endif
