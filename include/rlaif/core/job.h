/* job.h - what every command and phase receives: the parsed command line,
 * the job's resolved configuration (identical on every rank) and the rank
 * groups. The CLI (rlaif/app/cli.h) fills it; libraries and phases only read
 * it, so no library header needs the CLI. */
#ifndef RLAIF_JOB_H
#define RLAIF_JOB_H

#include "rlaif/core/config.h"
#include "rlaif/core/ranks.h"

typedef struct {
    const char *command;
    const char *job_path; /* NULL when no job file */
    const char *role;     /* --role, NULL when absent */
    const char *log_dir;  /* --log-dir, NULL when absent */
    int nset;
    char **sets; /* --set values */
    int nargs;
    char **args; /* everything else, for the command */
    int help;    /* <command> --help */
} rlaif_args;

typedef struct {
    rlaif_args args;
    rlaif_config *cfg; /* identical on every rank */
    rlaif_ranks ranks; /* set when the command needs_ranks */
} rlaif_ctx;

#endif
