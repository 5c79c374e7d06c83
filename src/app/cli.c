/* cli.c - argument parsing, help, version, build configuration, and the
 * program skeleton every command runs inside (MPI, config, ranks, exits). */
#include "rlaif/app/cli.h"
#include "rlaif/app/gemm_setup.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/stop.h"
#include "rlaif/core/telemetry.h"
#include "rlaif/engine/model.h"
#include "rlaif/storage/outdir.h"
#include "rlaif/storage/siteio.h"
#include "rlaif/phases/layout.h"
#include "rlaif/phases/registry.h"

#include "config.h"

#include <cblas.h>
#include <errno.h>
#include <curl/curl.h>
#include <hdf5.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_OPENBLAS_GET_CONFIG
char *openblas_get_config(void);
#endif
#ifdef HAVE_OPENBLAS_GET_CORENAME
char *openblas_get_corename(void);
#endif

/* Every command: app/commands.c's rows, with the phases of the registry
 * (phases/registry.c, where each is listed once) after `run`. Built on
 * first use; the registry's table is static, so this is too. */
static const rlaif_command *all_commands(void) {
    enum { MAX = 64 };
    static rlaif_command all[MAX + 1];
    if (all[0].name) return all;
    int n = 0;
    for (const rlaif_command *c = rlaif_commands; c->name && n < MAX; c++) {
        all[n++] = *c;
        if (strcmp(c->name, "run")) continue;
        for (const rlaif_phase_def *p = rlaif_phases; p->name && n < MAX; p++)
            all[n++] = (rlaif_command){p->name, p->run, 1, p->summary, p->usage};
    }
    return all;
}

const rlaif_command *rlaif_command_find(const char *name) {
    for (const rlaif_command *c = all_commands(); c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static const char *nearest_command(const char *name) {
    const char *best = NULL;
    int best_d = 1 << 30;
    for (const rlaif_command *c = all_commands(); c->name; c++) {
        int d = rlaif_edit_distance(name, c->name);
        if (d < best_d) best_d = d, best = c->name;
    }
    return best_d <= 2 ? best : NULL;
}

int rlaif_args_parse(int argc, char **argv, rlaif_args *a, int *global_flag) {
    memset(a, 0, sizeof *a);
    *global_flag = RLAIF_GLOBAL_NONE;
    a->sets = xcalloc((size_t)argc + 1, sizeof(char *));
    a->args = xcalloc((size_t)argc + 1, sizeof(char *));
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) { /* global options before the command */
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            *global_flag = RLAIF_GLOBAL_HELP;
        else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V"))
            *global_flag = RLAIF_GLOBAL_VERSION;
        else if (!strcmp(argv[i], "--show-config"))
            *global_flag = RLAIF_GLOBAL_SHOW_CONFIG;
        else
            return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif --help", "unknown option '%s'", argv[i]);
    }
    if (*global_flag) return 0;
    if (i >= argc)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif --help for the commands", "no command given");
    a->command = argv[i++];
    if (!rlaif_command_find(a->command)) {
        const char *near = nearest_command(a->command);
        char hint[128];
        snprintf(hint, sizeof hint, "%s%s%s", near ? "did you mean '" : "see rlaif --help",
                 near ? near : "", near ? "'?" : "");
        return RLAIF_ERROR(RLAIF_EX_USAGE, hint, "unknown command '%s'", a->command);
    }
    for (; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = NULL;
        /* options that take a value: --opt value or --opt=value */
        const char *opts[] = {"--set", "--role", "--log-dir"};
        int which = -1;
        for (int k = 0; k < 3; k++) {
            size_t l = strlen(opts[k]);
            if (!strcmp(arg, opts[k])) {
                if (i + 1 >= argc)
                    return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif <command> --help",
                                       "%s needs a value", opts[k]);
                which = k, val = argv[++i];
            } else if (!strncmp(arg, opts[k], l) && arg[l] == '=') {
                which = k, val = arg + l + 1;
            }
            if (which >= 0) break;
        }
        if (which == 0)
            a->sets[a->nset++] = (char *)val;
        else if (which == 1)
            a->role = val;
        else if (which == 2)
            a->log_dir = val;
        else if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
            a->help = 1;
        else if (!a->job_path && ends_with(arg, ".ini"))
            a->job_path = arg;
        else
            a->args[a->nargs++] = (char *)arg;
    }
    return 0;
}

void rlaif_args_free(rlaif_args *a) {
    free(a->sets);
    free(a->args);
    memset(a, 0, sizeof *a);
}

void rlaif_print_usage(FILE *out) {
    fprintf(out, "usage: rlaif <command> [job.ini] [--set section.key=value]... [--role R]\n"
                 "             [--log-dir DIR] [arguments]\n"
                 "       rlaif --help | --version | --show-config\n\n"
                 "Reinforcement Learning from AI Feedback for MPI clusters.\n\ncommands:\n");
    for (const rlaif_command *c = all_commands(); c->name; c++)
        fprintf(out, "  %-12s %s%s\n", c->name, c->summary, c->fn ? "" : " (not built yet)");
    fprintf(out, "\nConfiguration: defaults < job file < RLAIF_<SECTION>_<KEY> < --set.\n"
                 "`rlaif config job.ini` shows every resolved value and where it came from;\n"
                 "`rlaif config --keys` lists every key.\n\n"
                 "exit codes: 0 done, 1 failed, 64 usage, 66 missing input, 70 internal error,\n"
                 "            74 I/O error, 75 checkpointed on a signal or walltime (requeue)\n");
}

void rlaif_print_command_help(const rlaif_command *c, FILE *out) {
    fprintf(out,
            "usage: rlaif %s [job.ini] [--set section.key=value]... [--role R] [--log-dir "
            "DIR]%s%s\n\n%s\n",
            c->name, c->usage && *c->usage ? "\n" : "", c->usage ? c->usage : "", c->summary);
    fprintf(out, "\n  --set section.key=value  override one job-file value (repeatable)\n"
                 "  --role learner|rollout|judge  this process's group in an MPMD launch\n"
                 "  --log-dir DIR            per-rank log files\n");
}

void rlaif_print_version(FILE *out) {
    fprintf(out, "rlaif %s\n", PACKAGE_VERSION);
}

void rlaif_print_build_config(FILE *out) {
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0, ver = 0, sub = 0;
    MPI_Get_library_version(mpi, &len);
    MPI_Get_version(&ver, &sub);
    char *nl = strchr(mpi, '\n');
    if (nl) *nl = 0;
    nl = strchr(mpi, ',');
    if (nl) *nl = 0;
    unsigned h5maj = 0, h5min = 0, h5rel = 0;
    H5get_libversion(&h5maj, &h5min, &h5rel);
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    rlaif_print_version(out);
    fprintf(out, "MPI:       %s (MPI standard %d.%d)\n", mpi, ver, sub);
    fprintf(out, "HDF5:      %u.%u.%u (parallel: %s)\n", h5maj, h5min, h5rel,
#ifdef H5_HAVE_PARALLEL
            "yes"
#else
            "no"
#endif
    );
#ifdef HAVE_OPENBLAS_GET_CONFIG
    fprintf(out, "OpenBLAS:  %s\n", openblas_get_config());
#else
    fprintf(out, "BLAS:      (not OpenBLAS: no openblas_get_config)\n");
#endif
#ifdef HAVE_OPENBLAS_GET_CORENAME
    fprintf(out, "BLAS core: %s (OPENBLAS_CORETYPE=%s, OPENBLAS_NUM_THREADS=%s)\n",
            openblas_get_corename(),
            getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset",
            getenv("OPENBLAS_NUM_THREADS") ? getenv("OPENBLAS_NUM_THREADS") : "unset");
#endif
    fprintf(out, "libcurl:   %s (%s)\n", cv->version, cv->ssl_version ? cv->ssl_version : "no TLS");
    fprintf(out, "jansson:   %s\n", jansson_version_str());
    fprintf(out, "compiler:  %s\n", RLAIF_BUILD_CC);
    fprintf(out, "CFLAGS:    %s\n", RLAIF_BUILD_CFLAGS);
#ifdef _OPENMP
    fprintf(out, "OpenMP:    %d\n", _OPENMP);
#else
    fprintf(out, "OpenMP:    no\n");
#endif
}

/* A stop seen on a waiting rank goes to the first rank of every group. */
static int attach_relay(const rlaif_ranks *rk) {
    int leaders[RLAIF_NROLES], n = 0;
    for (int r = 0; r < RLAIF_NROLES; r++)
        if (rk->count[r] > 0) leaders[n++] = rk->colocated ? 0 : rk->first[r];
    return rlaif_stop_attach(rk->world, leaders, n);
}

/* `rlaif run` leaves <out_dir>/exit_status (layout.h). A phase command does
 * not: a phase that finds its output complete writes nothing at all. */
static int leaves_status(const rlaif_command *cmd) {
    return cmd && !strcmp(cmd->name, "run");
}

/* World rank 0, once the exit code is agreed: the marker job scripts read. */
static void write_status(const rlaif_ctx *ctx, const rlaif_command *cmd, int status) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0 || !ctx->cfg || !leaves_status(cmd)) return;
    if (rlaif_out_status_write(ctx->cfg, status)) {
        char path[4096];
        rlaif_out_path(ctx->cfg, RLAIF_OUT_STATUS, path, sizeof path);
        fprintf(stderr, "WARNING: cannot write %s: %s (job scripts read it to decide a requeue)\n",
                path, strerror(errno));
    }
}

/* Everything after MPI_Init: config on rank 0 + broadcast, logs, signals,
 * ranks, the command. Returns the agreed status. */
static int run_command(rlaif_ctx *ctx, const rlaif_command *cmd) {
    int world_rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    int status = 0;
    if (world_rank == 0)
        status =
            rlaif_config_load(&ctx->cfg, ctx->args.job_path, ctx->args.nset, ctx->args.sets, NULL);
    RLAIF_TRY(rlaif_config_bcast(&ctx->cfg, status, 0, MPI_COMM_WORLD));

    const char *log_dir =
        ctx->args.log_dir ? ctx->args.log_dir : rlaif_cfg_str(ctx->cfg, "run.log_dir");
    RLAIF_TRY(rlaif_agree(MPI_COMM_WORLD, rlaif_log_init(world_rank, log_dir,
                                                         rlaif_cfg_bool(ctx->cfg, "run.verbose"))));
    RLAIF_TRY(rlaif_stop_init(rlaif_cfg_float(ctx->cfg, "run.walltime"),
                              rlaif_cfg_float(ctx->cfg, "run.stop_margin")));
    if (!cmd->fn)
        return rlaif_agree(MPI_COMM_WORLD,
                           RLAIF_ERROR(RLAIF_EX_SOFTWARE,
                                       "this build has the commands `rlaif --help` lists as built",
                                       "command '%s' is not built yet in rlaif %s", cmd->name,
                                       PACKAGE_VERSION));
    if (cmd->needs_ranks) {
        rlaif_config_log(ctx->cfg);
        int world_size;
        MPI_Comm_size(MPI_COMM_WORLD, &world_size);
        RLAIF_TRY(rlaif_agree(MPI_COMM_WORLD, rlaif_check_launcher(world_size, NULL)));
        RLAIF_TRY(rlaif_ranks_init(&ctx->ranks, ctx->cfg, ctx->args.role));
        rlaif_model_set_threads(ctx->ranks.threads.team, ctx->ranks.threads.blas);
        rlaif_precision_setup(ctx->cfg);
        /* one job per out_dir, of a compatible config (outdir.h); `ranks` only prints */
        if (strcmp(cmd->name, "ranks")) {
            RLAIF_TRY(rlaif_outdir_claim(MPI_COMM_WORLD, ctx->cfg));
            RLAIF_TRY(rlaif_io_log(MPI_COMM_WORLD, ctx->cfg));
            /* after the claim: the record lives in the out_dir this job owns */
            RLAIF_TRY(rlaif_gemm_setup(MPI_COMM_WORLD, ctx->cfg, ctx->ranks.threads.team));
            /* the lock holder publishes <out_dir>/status.json (telemetry.h) */
            if (world_rank == 0)
                rlaif_live_open(rlaif_cfg_str(ctx->cfg, "run.out_dir"), cmd->name,
                                rlaif_cfg_str(ctx->cfg, "checkpoint.dir"));
        }
        RLAIF_TRY(attach_relay(&ctx->ranks));
    } else {
        ctx->ranks.world = MPI_COMM_NULL;
    }
    if (leaves_status(cmd))
        RLAIF_TRY(
            rlaif_agree(MPI_COMM_WORLD, world_rank == 0 ? rlaif_out_status_clear(ctx->cfg) : 0));
    /* a phase ends agreed by every rank (rlaif run agrees after each one) */
    const rlaif_phase_def *ph = rlaif_phase_find(cmd->name);
    return ph ? rlaif_phase_exec(ctx, ph) : cmd->fn(ctx);
}

int rlaif_main(int argc, char **argv) {
    rlaif_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int global = 0;
    int status = rlaif_args_parse(argc, argv, &ctx.args, &global);
    /* --help and --version need no MPI: they work on a login node. */
    if (status == 0 && (global == RLAIF_GLOBAL_HELP || global == RLAIF_GLOBAL_VERSION)) {
        if (global == RLAIF_GLOBAL_HELP)
            rlaif_print_usage(stdout);
        else
            rlaif_print_version(stdout);
        rlaif_args_free(&ctx.args);
        return 0;
    }
    const rlaif_command *cmd =
        status == 0 && ctx.args.command ? rlaif_command_find(ctx.args.command) : NULL;
    if (status == 0 && cmd && ctx.args.help) {
        rlaif_print_command_help(cmd, stdout);
        rlaif_args_free(&ctx.args);
        return 0;
    }
    if (status == 0 && rlaif_check_pmi(NULL)) {
        /* No MPI world to agree in: the first task speaks for all. */
        const char *procid = getenv("SLURM_PROCID");
        if (!procid || atoi(procid) == 0) {
            char buf[2048];
            rlaif_error_format(buf, sizeof buf, 0);
            fprintf(stderr, "%s\n", buf);
        }
        rlaif_args_free(&ctx.args);
        return RLAIF_EX_USAGE;
    }
    rlaif_mpi_preinit();
    /* The handlers before MPI_Init: a SIGTERM during a slow start (a loaded
     * node, a large launch) stops the run cleanly (75) instead of killing it;
     * the walltime deadline follows once the job is read. */
    if (status == 0 && rlaif_stop_init(0, 0)) status = RLAIF_EX_SOFTWARE;
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "ERROR: MPI_Init failed\n  hint: check the MPI launcher and environment\n");
        return RLAIF_EX_SOFTWARE;
    }
    /* Errors come back as codes so every call can be checked and explained. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (status == 0 && global == RLAIF_GLOBAL_SHOW_CONFIG) {
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (rank == 0) rlaif_print_build_config(stdout);
    } else if (status == 0) {
        status = run_command(&ctx, cmd);
    }
    status = rlaif_agree(MPI_COMM_WORLD, status);
    write_status(&ctx, cmd, status);
    rlaif_live_end(status);
    rlaif_stop_detach();
    if (ctx.ranks.world != MPI_COMM_NULL && ctx.ranks.world != 0) rlaif_ranks_free(&ctx.ranks);
    rlaif_config_free(ctx.cfg);
    rlaif_args_free(&ctx.args);
    if (status == RLAIF_EX_TEMPFAIL) {
        rlaif_info("checkpointed and stopping (%s): exit 75 asks to be requeued",
                   rlaif_stop_name(rlaif_stop_signal()));
        rlaif_log_close();
        MPI_Finalize();
        return status;
    }
    rlaif_exit_all(status);
}
