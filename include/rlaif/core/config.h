/* config.h - job files: schema, precedence, validation, broadcast.
 *
 * Every key rlaif knows is declared once in src/core/config_schema.c with its type,
 * default, range and help. Values resolve as
 *     defaults < job file < RLAIF_<SECTION>_<KEY> environment < --set section.key=value
 * and each value remembers where it came from ("default", "job.ini:12",
 * "env RLAIF_PPO_KL_COEF", "--set"). Rank 0 parses; rlaif_config_bcast sends
 * the resolved table so every rank sees identical values. Unknown sections or
 * keys, bad types, out-of-range values and duplicates are errors naming the
 * file, line and key, with the nearest valid key suggested. */
#ifndef RLAIF_CONFIG_H
#define RLAIF_CONFIG_H

#include <mpi.h>
#include <stdio.h>

typedef enum {
    RLAIF_CFG_INT,      /* 64-bit integer within [min, max] */
    RLAIF_CFG_FLOAT,    /* double within [min, max] */
    RLAIF_CFG_BOOL,     /* true/false, yes/no, on/off, 1/0 */
    RLAIF_CFG_STRING,   /* free text (paths, URLs, names) */
    RLAIF_CFG_ENUM,     /* one of choices "a|b|c" */
    RLAIF_CFG_DURATION, /* seconds: "90", "90s", "15m", "2h", "01:30:00"; read as float */
} rlaif_cfg_type;

typedef struct {
    const char *section;
    const char *key;
    rlaif_cfg_type type;
    const char *def;     /* default, as text */
    double min, max;     /* range for INT/FLOAT/DURATION (ignored when min > max) */
    const char *choices; /* ENUM: "a|b|c" */
    const char *help;
} rlaif_cfg_spec;

/* The schema: a table terminated by a row with section == NULL. */
extern const rlaif_cfg_spec rlaif_config_schema[];

typedef struct rlaif_config rlaif_config;

/* Parse on one process (no MPI). path may be NULL (defaults + env + --set).
 * sets: nset strings "section.key=value". env: environ-style array or NULL for
 * the process environment. Returns 0 or RLAIF_EX_USAGE / RLAIF_EX_NOINPUT with
 * the error recorded. *out is NULL on failure. */
int rlaif_config_load(rlaif_config **out, const char *path, int nset, char *const *sets,
                      char *const *env);

/* Collective: rank root's status and config reach every rank of comm. On
 * non-root ranks *cfg is created. Returns the agreed status. */
int rlaif_config_bcast(rlaif_config **cfg, int status, int root, MPI_Comm comm);

void rlaif_config_free(rlaif_config *cfg);

/* Typed getters by "section.key". Asking for a key not in the schema, or
 * with the wrong type, is a bug in rlaif: it dies with an internal error. */
long long rlaif_cfg_int(const rlaif_config *cfg, const char *name);
double rlaif_cfg_float(const rlaif_config *cfg, const char *name); /* FLOAT and DURATION */
int rlaif_cfg_bool(const rlaif_config *cfg, const char *name);
const char *rlaif_cfg_str(const rlaif_config *cfg, const char *name); /* any type, as text */
const char *rlaif_cfg_origin(const rlaif_config *cfg, const char *name);
/* 1 when "section.key" is in the schema (for code generic over sections). */
int rlaif_cfg_has(const char *name);
/* Path of the job file ("" when none) and its directory. */
const char *rlaif_config_path(const rlaif_config *cfg);

/* Override one value after loading, as if from --set (tests, phase drivers). */
int rlaif_config_set(rlaif_config *cfg, const char *name, const char *value, const char *origin);

/* "section.key = value    # origin" for every key, grouped by section. */
void rlaif_config_print(const rlaif_config *cfg, FILE *out, int with_origin);
/* The same as one malloc'd string (stored as an HDF5 attribute by writers). */
char *rlaif_config_dump(const rlaif_config *cfg);

/* Log the non-default values with their origins (rank 0) and the whole
 * resolved table to the per-rank log. Called at the start of every phase. */
void rlaif_config_log(const rlaif_config *cfg);

/* Parse helpers shared with the command line. */
int rlaif_parse_duration(const char *text, double *seconds);
/* Levenshtein distance, for "did you mean" suggestions. */
int rlaif_edit_distance(const char *a, const char *b);

#endif
