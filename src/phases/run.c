/* run.c - `rlaif run`: the job's phases in order (see run.h). */
#include "rlaif/phases/run.h"
#include "rlaif/app/cli.h"

#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include "config.h"

#include <stdio.h>
#include <string.h>

#define RUN_MAX_PHASES 32

/* Phases a job may list: the pipeline's commands, not the tools. */
static const char *const pipeline_phases[] = {"sft", "collect", "rm",         "ppo",  "reinforce",
                                              "a2c", "dpo",     "online-dpo", "eval", NULL};

static int is_pipeline_phase(const char *name) {
    for (int i = 0; pipeline_phases[i]; i++)
        if (!strcmp(pipeline_phases[i], name)) return 1;
    return 0;
}

/* Split run.phases ("sft, collect,rm") into commands; every name must be a
 * built pipeline phase. Same answer on every rank (the config is identical). */
static int parse_phases(const char *list, const rlaif_command **out, int *n) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf)
        return RLAIF_ERROR(RLAIF_EX_USAGE, NULL, "run.phases is too long");
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ", \t", &save); tok;
         tok = strtok_r(NULL, ", \t", &save)) {
        const rlaif_command *c = rlaif_command_find(tok);
        if (!c || !is_pipeline_phase(tok))
            return RLAIF_ERROR(
                RLAIF_EX_USAGE,
                "phases: sft, collect, rm, ppo, reinforce, a2c, dpo, online-dpo, eval",
                "run.phases: '%s' is not a phase", tok);
        if (!c->fn)
            return RLAIF_ERROR(
                RLAIF_EX_USAGE, "remove it from run.phases (`rlaif --help` lists what is built)",
                "run.phases: phase '%s' is not built yet in rlaif %s", tok, PACKAGE_VERSION);
        if (*n == RUN_MAX_PHASES)
            return RLAIF_ERROR(RLAIF_EX_USAGE, NULL, "run.phases lists more than %d phases",
                               RUN_MAX_PHASES);
        out[(*n)++] = c;
    }
    if (*n == 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "e.g. run.phases = sft,collect,rm,dpo,eval",
                           "run.phases is empty");
    return 0;
}

int rlaif_cmd_run(rlaif_ctx *ctx) {
    if (ctx->args.nargs > 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "testing options belong to the phase commands",
                           "run: unexpected argument '%s'", ctx->args.args[0]);
    const rlaif_command *phase[RUN_MAX_PHASES];
    int n = 0;
    RLAIF_TRY(parse_phases(rlaif_cfg_str(ctx->cfg, "run.phases"), phase, &n));
    double t0 = rlaif_now();
    for (int i = 0; i < n; i++) {
        rlaif_info("run: phase %d/%d: %s", i + 1, n, phase[i]->name);
        double t = rlaif_now();
        int rc = phase[i]->fn(ctx);
        /* 75: the phase checkpointed on a signal or walltime; the rerun
         * skips the finished phases and continues this one. */
        if (rc) return rc;
        rlaif_info("run: phase %s done in %.1f s", phase[i]->name, rlaif_now() - t);
    }
    rlaif_info("run: %d phases done in %.1f s", n, rlaif_now() - t0);
    return 0;
}
