/* cli.h - the rlaif command line and its subcommands.
 *
 *   rlaif [--help|--version|--show-config]
 *   rlaif <command> [job.ini] [--set section.key=value]... [--role R]
 *         [--log-dir DIR] [command arguments]
 *
 * The first argument ending in ".ini" is the job file. Each command is a
 * function in its own module, listed once in src/app/commands.c. */
#ifndef RLAIF_CLI_H
#define RLAIF_CLI_H

#include <stdio.h>

#include "rlaif/core/job.h"

typedef int (*rlaif_command_fn)(rlaif_ctx *ctx);

typedef struct {
    const char *name;
    rlaif_command_fn fn; /* NULL: not built yet */
    int needs_ranks;     /* split communicators before running */
    const char *summary;
    const char *usage; /* extra usage text after the common options */
} rlaif_command;

/* The commands that are not phases (commands.c), terminated by name == NULL;
 * rlaif_command_find also knows every phase of the registry. */
extern const rlaif_command rlaif_commands[];
const rlaif_command *rlaif_command_find(const char *name);

/* Parse argv (no MPI). Returns 0, or RLAIF_EX_USAGE with the error recorded.
 * args->command is NULL for the global --help/--version/--show-config. */
int rlaif_args_parse(int argc, char **argv, rlaif_args *args, int *global_flag);
enum { RLAIF_GLOBAL_NONE, RLAIF_GLOBAL_HELP, RLAIF_GLOBAL_VERSION, RLAIF_GLOBAL_SHOW_CONFIG };
void rlaif_args_free(rlaif_args *args);

void rlaif_print_usage(FILE *out);
void rlaif_print_command_help(const rlaif_command *c, FILE *out);
void rlaif_print_version(FILE *out);
void rlaif_print_build_config(FILE *out); /* versions of MPI, HDF5, OpenBLAS, curl... */

/* Whole program, for main() and for tests that run commands in-process. */
int rlaif_main(int argc, char **argv);

/* Commands of the foundation module (src/app/commands.c). */
int rlaif_cmd_config(rlaif_ctx *ctx);
int rlaif_cmd_ranks(rlaif_ctx *ctx);
/* `rlaif status job.ini | OUT_DIR` (src/app/status_cmd.c). */
int rlaif_cmd_status(rlaif_ctx *ctx);

#endif
