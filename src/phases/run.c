/* run.c - `rlaif run`: the job's phases in order, and `rlaif status`: how
 * far each of them is (see run.h). */
#include "rlaif/phases/run.h"
#include "rlaif/phases/registry.h"

#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/stop.h"
#include "rlaif/core/telemetry.h"

#include <mpi.h>

#include "config.h"

#include <stdio.h>
#include <string.h>

#define RUN_MAX_PHASES RLAIF_RUN_MAX_PHASES

/* "sft, collect, ..." from the registry, for the hint. */
static void phase_names(char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (const rlaif_phase_def *p = rlaif_phases; p->name && len < n; p++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? ", " : "phases: ", p->name);
}

/* Split run.phases ("sft, collect,rm") into registry entries; every name
 * must be a pipeline phase, and built unless any_built. Same answer on
 * every rank (the config is identical). */
static int parse_phases(const char *list, const rlaif_phase_def **out, int *n, int any_built) {
    char buf[1024], names[256];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf)
        return RLAIF_ERROR(RLAIF_EX_USAGE, NULL, "run.phases is too long");
    phase_names(names, sizeof names);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ", \t", &save); tok;
         tok = strtok_r(NULL, ", \t", &save)) {
        const rlaif_phase_def *p = rlaif_phase_find(tok);
        if (!p) return RLAIF_ERROR(RLAIF_EX_USAGE, names, "run.phases: '%s' is not a phase", tok);
        if (!p->run && !any_built)
            return RLAIF_ERROR(
                RLAIF_EX_USAGE, "remove it from run.phases (`rlaif --help` lists what is built)",
                "run.phases: phase '%s' is not built yet in rlaif %s", tok, PACKAGE_VERSION);
        if (*n == RUN_MAX_PHASES)
            return RLAIF_ERROR(RLAIF_EX_USAGE, NULL, "run.phases lists more than %d phases",
                               RUN_MAX_PHASES);
        out[(*n)++] = p;
    }
    if (*n == 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "e.g. run.phases = sft,collect,rm,dpo,eval",
                           "run.phases is empty");
    return 0;
}

/* Every phase's rank groups and sizes, before the first one spends compute. */
static int check_layout(const rlaif_ctx *ctx, const rlaif_phase_def *const *phase, int n) {
    for (int i = 0; i < n; i++) {
        int rc = rlaif_phase_check(phase[i], ctx);
        if (rc) return rlaif_error_context("run.phases: "), rc;
    }
    return 0;
}

int rlaif_cmd_run(rlaif_ctx *ctx) {
    if (ctx->args.nargs > 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "testing options belong to the phase commands",
                           "run: unexpected argument '%s'", ctx->args.args[0]);
    const rlaif_phase_def *phase[RUN_MAX_PHASES];
    int n = 0;
    RLAIF_TRY(parse_phases(rlaif_cfg_str(ctx->cfg, "run.phases"), phase, &n, 0));
    RLAIF_TRY(check_layout(ctx, phase, n));
    const char *names[RUN_MAX_PHASES];
    for (int i = 0; i < n; i++) names[i] = phase[i]->name;
    rlaif_live_plan(n, names);
    double t0 = rlaif_now();
    for (int i = 0; i < n; i++) {
        rlaif_info("run: phase %d/%d: %s", i + 1, n, phase[i]->name);
        double t = rlaif_now();
        /* the phase's done(), the same on every rank: a finished phase is
         * not entered (it would load its model and inputs to find out) */
        rlaif_phase_status st;
        RLAIF_TRY(rlaif_phase_status_get(ctx, phase[i], &st));
        if (st.state == RLAIF_PHASE_DONE) {
            rlaif_info("run: %s already complete, skipped (%s)", phase[i]->name, st.what);
            rlaif_live_phase(phase[i]->name, "skipped", 0);
        } else {
            /* the same rc on every rank: 75 = the phase checkpointed on a
             * signal or walltime; the rerun skips the finished phases */
            int rc = rlaif_phase_exec(ctx, phase[i]);
            if (rc) return rc;
            rlaif_info("run: phase %s done in %.1f s", phase[i]->name, rlaif_now() - t);
        }
        /* a stop that came as the phase finished: do not start the next */
        if (i + 1 < n && rlaif_stop_agreed()) {
            rlaif_info("run: stop requested after %s: the rerun starts with %s", phase[i]->name,
                       phase[i + 1]->name);
            return RLAIF_EX_TEMPFAIL;
        }
    }
    rlaif_info("run: %d phases done in %.1f s", n, rlaif_now() - t0);
    return 0;
}

int rlaif_run_states(const rlaif_config *cfg, rlaif_run_state *out, int max, int *n) {
    const rlaif_phase_def *phase[RUN_MAX_PHASES];
    *n = 0;
    RLAIF_TRY(parse_phases(rlaif_cfg_str(cfg, "run.phases"), phase, n, 1));
    if (*n > max) *n = max;
    for (int i = 0; i < *n; i++) {
        rlaif_run_state *o = &out[i];
        memset(o, 0, sizeof *o);
        o->name = phase[i]->name, o->built = phase[i]->run != NULL;
        RLAIF_TRY(phase[i]->done ? phase[i]->done(cfg, phase[i]->name, &o->st) : 0);
    }
    return 0;
}
