/* prefs.h - preference datasets (preferences.h5; src/storage/README.md).
 *
 * Layout (all 1-D, extendible, chunked; ids are row numbers):
 *   /prompts/{bytes,offset,length,tokens,tok_offset,tok_length}
 *   /responses/{bytes,offset,length,tokens,tok_offset,tok_length,prompt_id}
 *   /explanations/{bytes,offset,length,tokens,tok_offset,tok_length}
 *       row i is the judge's explanation of /pairs row i (may be empty)
 *   /pairs  compound rows, rlaif_pair below (pair_id is the key)
 *   root attributes: rlaif_schema, rlaif_kind="preferences", software_version,
 *       creation_time, judge_settings (JSON, no secrets), sampling (JSON),
 *       n_templates, template_<i>_name, template_<i>_text, template_<i>_hash
 *       (FNV-1a 64, hex), n_judges, judge_<i>_name, status_names.
 *
 * Writers are collective over a communicator (every rank calls every append,
 * possibly with nothing). Readers are serial and can run on any rank. */
#ifndef RLAIF_PREFS_H
#define RLAIF_PREFS_H

#include <mpi.h>
#include <stdint.h>

#include "rlaif/core/job.h"
#include "rlaif/core/h5util.h"

#define RLAIF_RUBRIC_MAX 8

/* Why a pair has no label (or 0 when it has one). Stored as /pairs.status;
 * the names are the root attribute status_names (comma-separated). */
typedef enum {
    RLAIF_PAIR_OK = 0,
    RLAIF_PAIR_TRANSPORT = 1,    /* connection failed after retries */
    RLAIF_PAIR_HTTP = 2,         /* non-retryable HTTP status (4xx validation) */
    RLAIF_PAIR_PARSE = 3,        /* no verdict line / unparseable answer */
    RLAIF_PAIR_REFUSED = 4,      /* the judge refused or answered off-format */
    RLAIF_PAIR_QUOTA = 5,        /* quota or billing error */
    RLAIF_PAIR_TIMEOUT = 6,      /* total timeout */
    RLAIF_PAIR_INCONSISTENT = 7, /* orders disagreed and the config drops such pairs */
    RLAIF_PAIR_OTHER = 8,
    RLAIF_PAIR_NSTATUS
} rlaif_pair_status;
const char *rlaif_pair_status_name(int status);

/* Who produced the label. */
enum { RLAIF_SOURCE_AI = 0, RLAIF_SOURCE_HUMAN = 1 };

/* One /pairs row (the in-memory struct is the HDF5 memory type). */
typedef struct {
    int64_t pair_id;    /* unique key: resume and merge skip ids already present */
    int64_t prompt_id;  /* row of /prompts */
    int64_t response_a; /* rows of /responses */
    int64_t response_b;
    double label;                     /* P(A is better) in [0, 1]; NaN when there is no label */
    int8_t choice;                    /* hard choice: 0 = A, 1 = B, 2 = tie, -1 = none */
    int8_t consistent;                /* both orders agree: 1, disagree: 0, judged once: -1 */
    int8_t source;                    /* RLAIF_SOURCE_* */
    double outcome_ab;                /* P(A) from the order A-then-B; NaN when not judged */
    double outcome_ba;                /* P(A) from the order B-then-A (mapped back to A); NaN */
    float rubric_a[RLAIF_RUBRIC_MAX]; /* per-criterion scores 1-5; NaN unused */
    float rubric_b[RLAIF_RUBRIC_MAX];
    int32_t judge_id;      /* index into judge_<i>_name; -1 = human/none */
    int32_t template_id;   /* index into template_<i>_*; -1 = none */
    int64_t prompt_tokens; /* judge usage over every call of this pair */
    int64_t completion_tokens;
    int32_t status; /* rlaif_pair_status */
} rlaif_pair;

/* A pair with no label yet: NaNs, -1s, zeros. */
void rlaif_pair_init(rlaif_pair *p);
/* HDF5 types for rlaif_pair: memory (native) and file (packed, little endian). */
hid_t rlaif_pair_memtype(void);

typedef struct {
    const char *judge_settings; /* JSON text; never an API key */
    const char *sampling;       /* JSON text */
    int ntemplates;
    const char *const *template_names;
    const char *const *template_texts;
    int njudges;
    const char *const *judge_names;
} rlaif_prefs_meta;

typedef struct rlaif_prefs rlaif_prefs;

/* Collective. create truncates; open resumes an existing file (reads every
 * pair id so later appends skip them); open_or_create does what it says. */
int rlaif_prefs_create(const char *path, MPI_Comm comm, const rlaif_h5_opts *io,
                       const rlaif_prefs_meta *meta, rlaif_prefs **out);
int rlaif_prefs_open(const char *path, MPI_Comm comm, const rlaif_h5_opts *io, rlaif_prefs **out);
int rlaif_prefs_open_or_create(const char *path, MPI_Comm comm, const rlaif_h5_opts *io,
                               const rlaif_prefs_meta *meta, rlaif_prefs **out);

/* Collective appends; *first_id (may be NULL) = id of this rank's first record. */
int rlaif_prefs_add_prompts(rlaif_prefs *p, const rlaif_h5_record *recs, size_t n,
                            int64_t *first_id);
int rlaif_prefs_add_responses(rlaif_prefs *p, const rlaif_h5_record *recs,
                              const int64_t *prompt_ids, size_t n, int64_t *first_id);
/* Pairs whose pair_id is already in the file (or earlier in this call, on any
 * rank) are skipped. explanations may be NULL (all empty). *added (may be
 * NULL) = pairs written by all ranks. The file is flushed (synced to disk)
 * when the last flush is older than the flush interval (default 10 s). */
int rlaif_prefs_add_pairs(rlaif_prefs *p, const rlaif_pair *pairs, const char *const *explanations,
                          size_t n, size_t *added);
/* Collective: flush now / set the interval (0 = after every add_pairs). */
int rlaif_prefs_flush(rlaif_prefs *p);
void rlaif_prefs_set_flush(rlaif_prefs *p, double seconds);
int rlaif_prefs_has_pair(const rlaif_prefs *p, int64_t pair_id);
int64_t rlaif_prefs_count(const rlaif_prefs *p, int which); /* RLAIF_PREFS_* */
enum { RLAIF_PREFS_PROMPTS, RLAIF_PREFS_RESPONSES, RLAIF_PREFS_PAIRS };
hid_t rlaif_prefs_file(const rlaif_prefs *p); /* for extra attributes (collective) */
int rlaif_prefs_close(rlaif_prefs **p);

/* Everything in a file, in memory (serial read). */
typedef struct {
    rlaif_h5_ragged prompts, responses, explanations;
    int64_t *response_prompt; /* responses.n entries */
    rlaif_pair *pairs;
    size_t npairs;
} rlaif_prefs_data;
int rlaif_prefs_read(const char *path, rlaif_prefs_data *d);
void rlaif_prefs_data_free(rlaif_prefs_data *d);
/* Record i of a ragged group as a malloc'd NUL-terminated string. */
char *rlaif_ragged_text(const rlaif_h5_ragged *r, size_t i);

/* Collective: merge inputs into out (written to out.tmp, then renamed).
 * Ids are renumbered; pair ids seen before (earlier input wins) are dropped.
 * The judge and template tables are the union of the inputs' (a judge is
 * known by its name, a template by name and text) and every pair's judge_id
 * and template_id is renumbered to them. */
int rlaif_prefs_merge(const char *out, const char *const *inputs, int n, MPI_Comm comm,
                      const rlaif_h5_opts *io, size_t *npairs);

/* JSONL conversion (src/storage/ingest.c). kind: "prompts" ({"prompt"}), "sft"
 * ({"prompt","response"}), "prefs" ({"prompt","chosen","rejected"}, optional
 * integer "id" = pair id), or NULL to detect it from the first record.
 * Ingest is collective (rank 0 parses and, when encode is not NULL,
 * tokenizes every text; nothing is left behind on error);
 * export runs on one process and writes only labelled, untied pairs. */
/* Optional tokenizer for ingest: *ids (malloc'd, *n of them) = the ids of text. */
typedef int (*rlaif_encode_fn)(void *ud, const char *text, size_t len, int32_t **ids, size_t *n);
int rlaif_prefs_ingest(const char *jsonl, const char *out, const char *kind, MPI_Comm comm,
                       const rlaif_h5_opts *io, rlaif_encode_fn encode, void *encode_ud,
                       size_t *nrecords);
/* Read a JSONL file of one kind ("prompts", "sft", "prefs") on this process,
 * with the same checks and messages as ingest: *texts holds n * 3 strings,
 * record i's fields at [3i, 3i+3) in the kind's order, NULL where unused.
 * Free with rlaif_jsonl_free. */
int rlaif_jsonl_read(const char *path, const char *kind, size_t *n, char ***texts);
void rlaif_jsonl_free(char **texts, size_t n);
int rlaif_prefs_export(const char *h5, const char *jsonl, const char *kind, size_t *nrecords);

/* `rlaif prefs ingest|export|merge|info ...` */
int rlaif_cmd_prefs(rlaif_ctx *ctx);

#endif
