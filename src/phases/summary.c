/* summary.c - the closing block of a phase: where its time went, its
 * throughput and the judge's usage, summed over every rank of the world,
 * in the log, as attributes of metrics.h5 /summary/<phase> and in the
 * status file (registry.h, rlaif_phase_summary).
 *
 * Times are rank-seconds: the phase's wall time times the world size is
 * split into what the ranks measured (compute, judge wait, I/O,
 * communication) and the rest (ranks with no part in the phase, waits for
 * messages, untimed work), so the shares add up to 100%. */
#include "rlaif/phases/registry.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/telemetry.h"
#include "rlaif/storage/metrics.h"

#include <stdio.h>
#include <string.h>

enum { NDERIVED = 7 };

/* The attributes: the summed vector, then what follows from it. */
static int fill(const double *v, double wall, int ranks, const char **names, double *vals) {
    int n = 0;
    for (int k = 0; k < RLAIF_TM_N; k++) names[n] = rlaif_tm_names[k], vals[n++] = v[k];
    double timed = 0, per = wall > 0 ? 1 / wall : 0;
    for (int k = 0; k < RLAIF_TM_NTIME; k++) timed += v[k];
    const char *dn[NDERIVED] = {"wall_s",
                                "ranks",
                                "other_s",
                                "steps_per_s",
                                "tokens_per_s",
                                "pairs_per_s",
                                "judge_requests_per_s"};
    double dv[NDERIVED] = {wall,
                           ranks,
                           wall * ranks - timed,
                           v[RLAIF_TM_STEPS] * per,
                           v[RLAIF_TM_TOKENS] * per,
                           v[RLAIF_TM_PAIRS] * per,
                           v[RLAIF_TM_REQUESTS] * per};
    for (int k = 0; k < NDERIVED; k++) names[n] = dn[k], vals[n++] = dv[k];
    return n;
}

static void log_block(const char *phase, const double *v, double wall, int ranks) {
    double rs = wall * ranks > 0 ? wall * ranks : 1, timed = 0;
    for (int k = 0; k < RLAIF_TM_NTIME; k++) timed += v[k];
    double per = wall > 0 ? 1 / wall : 0;
    rlaif_info("%s summary: %.1f s on %d ranks (%.1f rank-s): compute %.1f%%, judge wait %.1f%%, "
               "I/O %.1f%%, communication %.1f%%, other/idle %.1f%%",
               phase, wall, ranks, wall * ranks, 100 * v[RLAIF_TM_COMPUTE] / rs,
               100 * v[RLAIF_TM_JUDGE] / rs, 100 * v[RLAIF_TM_IO] / rs, 100 * v[RLAIF_TM_COMM] / rs,
               100 * (rs - timed) / rs);
    rlaif_info("%s summary: %.0f steps (%.2f/s), %.0f tokens (%.0f/s), %.0f pairs judged (%.2f/s)",
               phase, v[RLAIF_TM_STEPS], v[RLAIF_TM_STEPS] * per, v[RLAIF_TM_TOKENS],
               v[RLAIF_TM_TOKENS] * per, v[RLAIF_TM_PAIRS], v[RLAIF_TM_PAIRS] * per);
    if (v[RLAIF_TM_REQUESTS] + v[RLAIF_TM_REPLAYED] > 0)
        rlaif_info("%s summary: judge %.0f requests (%.2f/s), %.0f retries, %.0f failures, %.0f "
                   "answers from the journal, %.0f tokens, estimated cost $%.4f",
                   phase, v[RLAIF_TM_REQUESTS], v[RLAIF_TM_REQUESTS] * per, v[RLAIF_TM_RETRIES],
                   v[RLAIF_TM_FAILURES], v[RLAIF_TM_REPLAYED], v[RLAIF_TM_JTOKENS],
                   v[RLAIF_TM_COST]);
}

/* World rank 0: the attributes; a summary that cannot be stored is a
 * warning, never the end of a job that did its work. */
static void store(const rlaif_config *cfg, const char *phase, const double *v, double wall,
                  int ranks) {
    const char *names[RLAIF_TM_N + NDERIVED];
    double vals[RLAIF_TM_N + NDERIVED];
    int n = fill(v, wall, ranks, names, vals);
    char path[4200];
    rlaif_out_path(cfg, "metrics.h5", path, sizeof path);
    rlaif_metrics *m = NULL;
    int rc = rlaif_metrics_open(path, NULL, MPI_COMM_SELF, &m);
    if (!rc) rc = rlaif_metrics_summary(m, phase, n, names, vals);
    if (m) rc |= rlaif_metrics_close(&m);
    if (rc) {
        rlaif_warn("%s: the phase summary is not in %s: %s", phase, path, rlaif_error_message());
        rlaif_error_clear();
    }
    rlaif_live_summary(phase, n, names, vals);
}

int rlaif_phase_summary(const rlaif_ctx *ctx, const char *phase, double wall) {
    MPI_Comm world = ctx->ranks.world;
    if (world == MPI_COMM_NULL) return 0;
    double mine[RLAIF_TM_N], sum[RLAIF_TM_N];
    int rank, ranks;
    rlaif_tm_get(mine);
    RLAIF_CHECK_MPI(MPI_Comm_rank(world, &rank));
    RLAIF_CHECK_MPI(MPI_Comm_size(world, &ranks));
    RLAIF_CHECK_MPI(MPI_Reduce(mine, sum, RLAIF_TM_N, MPI_DOUBLE, MPI_SUM, 0, world));
    if (rank != 0) return 0;
    /* a phase that found its work done (a rerun) has nothing to report and
     * must not replace the figures of the run that did the work */
    if (sum[RLAIF_TM_STEPS] + sum[RLAIF_TM_TOKENS] + sum[RLAIF_TM_PAIRS] == 0) return 0;
    log_block(phase, sum, wall, ranks);
    store(ctx->cfg, phase, sum, wall, ranks);
    return 0;
}
