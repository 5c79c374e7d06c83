/* siteio.c - the job's [io] settings as the user sees them: one line at the
 * start of a job, and `rlaif io`, which opens probe files with the job's
 * MPI-IO hints and prints what MPI-IO reported back (siteio.h). */
#include "rlaif/storage/siteio.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/h5util.h"
#include "rlaif/core/iohints.h"
#include "rlaif/core/log.h"

#include <stdio.h>
#include <string.h>

/* "MPI-IO hints ...; HDF5 alignment ..." for the log and for `rlaif io`. */
static void describe(const rlaif_config *cfg, const rlaif_h5_opts *o, char *buf, size_t n) {
    const char *stage = rlaif_cfg_str(cfg, "io.stage_dir");
    unsigned long long thr = o->align_threshold ? o->align_threshold : o->alignment;
    char align[128];
    if (o->alignment > 1)
        snprintf(align, sizeof align, "%llu bytes for objects of at least %llu",
                 (unsigned long long)o->alignment, thr);
    else
        snprintf(align, sizeof align, "off");
    snprintf(buf, n,
             "MPI-IO hints %s; HDF5 alignment %s; collective metadata %s; raw data %s; "
             "checkpoints %s%s",
             *o->mpi_hints ? o->mpi_hints : "none", align, o->coll_metadata ? "on" : "off",
             o->collective_data ? "collective" : "independent",
             *stage ? "staged in " : "written to out_dir", stage);
}

int rlaif_io_log(MPI_Comm comm, const rlaif_config *cfg) {
    rlaif_h5_opts o;
    rlaif_h5_opts_from_cfg(&o, cfg);
    char line[2048];
    describe(cfg, &o, line, sizeof line);
    rlaif_info("io: %s", line);
    if (!rlaif_cfg_bool(cfg, "run.verbose") || !*o.mpi_hints) return 0;
    const char *out = rlaif_cfg_str(cfg, "run.out_dir");
    return rlaif_agree(comm, rlaif_io_probe(comm, *out ? out : ".", o.mpi_hints, NULL, NULL));
}

/* Probe one folder (created if missing) and print the result on rank 0. */
static int probe_dir(const char *what, const char *dir, const char *hints, int rank) {
    RLAIF_TRY(rlaif_agree(MPI_COMM_WORLD, rank == 0 ? rlaif_mkdir_p(dir) : 0));
    if (rank == 0) printf("%s %s:\n", what, dir);
    int ignored = 0;
    RLAIF_TRY(rlaif_agree(MPI_COMM_WORLD, rlaif_io_probe(MPI_COMM_WORLD, dir, hints,
                                                         rank ? NULL : stdout, &ignored)));
    if (rank == 0 && ignored)
        printf("  %d hint(s) not reported back as given: this MPI-IO ignores or changed them\n",
               ignored);
    return 0;
}

int rlaif_cmd_io(rlaif_ctx *ctx) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (ctx->args.nargs)
        return rlaif_agree(MPI_COMM_WORLD,
                           RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif io --help",
                                       "io: unexpected argument '%s'", ctx->args.args[0]));
    rlaif_h5_opts o;
    rlaif_h5_opts_from_cfg(&o, ctx->cfg);
    char line[2048];
    describe(ctx->cfg, &o, line, sizeof line);
    if (rank == 0) printf("%s\n(%d ranks)\n", line, size);
    const char *out = rlaif_cfg_str(ctx->cfg, "run.out_dir");
    RLAIF_TRY(probe_dir("probe file in run.out_dir", *out ? out : ".", o.mpi_hints, rank));
    const char *stage = rlaif_cfg_str(ctx->cfg, "io.stage_dir");
    if (*stage) RLAIF_TRY(probe_dir("probe file in io.stage_dir", stage, o.mpi_hints, rank));
    if (rank == 0) fflush(stdout);
    return 0;
}
