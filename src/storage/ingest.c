/* ingest.c - JSONL <-> preferences.h5, and the `rlaif prefs` command.
 *
 * Inputs people bring (src/storage/README.md, Preference files): {"prompt"}, {"prompt","response"}
 * and human preferences {"prompt","chosen","rejected"} (optional integer
 * "id"). Every malformed line is an error naming the file, line and field.
 * Outputs are written under a temporary name and renamed, so a failed run
 * never leaves a half-written file behind. */
#include "rlaif/storage/prefs.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/tokenizer/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_PROMPTS, KIND_SFT, KIND_PREFS } kind_t;
static const char *const kind_names[] = {"prompts", "sft", "prefs"};
static const char *const kind_fields[3][3] = {
    {"prompt", NULL, NULL}, {"prompt", "response", NULL}, {"prompt", "chosen", "rejected"}};

static int parse_kind(const char *s, kind_t *k) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, kind_names[i])) return *k = (kind_t)i, 0;
    return RLAIF_ERROR(RLAIF_EX_USAGE, "kinds are prompts, sft and prefs", "unknown kind '%s'", s);
}

/* Parsed records: text fields per line (up to 3), plus pair ids. */
typedef struct {
    size_t n, cap;
    char **text; /* n * 3 slots, NULL where unused */
    int64_t *id;
} records;

static void records_free(records *r) {
    for (size_t i = 0; i < 3 * r->n; i++) free(r->text[i]);
    free(r->text), free(r->id);
    memset(r, 0, sizeof *r);
}

static kind_t detect(json_t *obj) {
    if (json_object_get(obj, "chosen") || json_object_get(obj, "rejected")) return KIND_PREFS;
    if (json_object_get(obj, "response")) return KIND_SFT;
    return KIND_PROMPTS;
}

/* One line -> record; errors name file:line and the field. */
static int parse_line(const char *path, long line, const char *text, size_t len, kind_t *kind,
                      int kind_known, records *r) {
    json_error_t jerr;
    json_t *obj = json_loadb(text, len, 0, &jerr);
    if (!obj)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "each line must be one JSON object",
                           "%s:%ld: invalid JSON at column %d: %s", path, line, jerr.column,
                           jerr.text);
    int rc = 0;
    if (!json_is_object(obj)) {
        rc = RLAIF_ERROR(RLAIF_EX_USAGE, "each line must be one JSON object",
                         "%s:%ld: expected a JSON object, found another value", path, line);
        goto out;
    }
    if (!kind_known) *kind = detect(obj);
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 256;
        r->text = xrealloc(r->text, sizeof(char *) * 3 * r->cap);
        r->id = xrealloc(r->id, sizeof(int64_t) * r->cap);
    }
    char **slot = &r->text[3 * r->n];
    slot[0] = slot[1] = slot[2] = NULL;
    for (int f = 0; f < 3 && kind_fields[*kind][f]; f++) {
        const char *name = kind_fields[*kind][f];
        json_t *v = json_object_get(obj, name);
        if (!v) {
            rc = RLAIF_ERROR(RLAIF_EX_USAGE, "every line of a file must have the same fields",
                             "%s:%ld: missing field \"%s\" (this file holds %s records)", path,
                             line, name, kind_names[*kind]);
        } else if (!json_is_string(v)) {
            rc = RLAIF_ERROR(RLAIF_EX_USAGE, "text fields are JSON strings",
                             "%s:%ld: field \"%s\" is not a string", path, line, name);
        } else {
            slot[f] = xmalloc(json_string_length(v) + 1);
            memcpy(slot[f], json_string_value(v), json_string_length(v) + 1);
        }
        if (rc) break;
    }
    /* A preference file must not silently mix in SFT lines and vice versa. */
    if (!rc && *kind != KIND_PREFS &&
        (json_object_get(obj, "chosen") || json_object_get(obj, "rejected")))
        rc = RLAIF_ERROR(RLAIF_EX_USAGE, "every line of a file must have the same fields",
                         "%s:%ld: field \"%s\" does not belong in a %s file", path, line,
                         json_object_get(obj, "chosen") ? "chosen" : "rejected", kind_names[*kind]);
    json_t *id = json_object_get(obj, "id");
    r->id[r->n] = (int64_t)r->n;
    if (!rc && id) {
        if (!json_is_integer(id))
            rc = RLAIF_ERROR(RLAIF_EX_USAGE, "\"id\" is an optional integer pair id",
                             "%s:%ld: field \"id\" is not an integer", path, line);
        else
            r->id[r->n] = (int64_t)json_integer_value(id);
    }
    if (rc) {
        for (int f = 0; f < 3; f++) free(slot[f]);
    } else {
        r->n++;
    }
out:
    json_decref(obj);
    return rc;
}

static int parse_file(const char *path, kind_t *kind, int kind_known, records *r) {
    FILE *f = fopen(path, "rb");
    if (!f) return rlaif_error_sys(RLAIF_EX_NOINPUT, "fopen", path, __FILE__, __LINE__);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    long line = 0;
    int rc = 0;
    while (!rc && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = 0;
        size_t sp = strspn(buf, " \t");
        if ((size_t)len == sp) continue; /* blank lines are allowed */
        if (memchr(buf, 0, (size_t)len))
            rc = RLAIF_ERROR(RLAIF_EX_USAGE, "the file must be UTF-8 text",
                             "%s:%ld: NUL byte in line", path, line);
        else
            rc = parse_line(path, line, buf, (size_t)len, kind, kind_known || r->n > 0, r);
    }
    if (!rc && ferror(f)) rc = rlaif_error_sys(RLAIF_EX_IOERR, "getline", path, __FILE__, __LINE__);
    free(buf);
    fclose(f);
    if (!rc && r->n == 0)
        rc = RLAIF_ERROR(RLAIF_EX_USAGE, "give a file with one JSON object per line",
                         "%s: no records", path);
    return rc;
}

int rlaif_jsonl_read(const char *path, const char *kind_s, size_t *n, char ***texts) {
    kind_t kind = KIND_PROMPTS;
    records r;
    memset(&r, 0, sizeof r);
    *n = 0, *texts = NULL;
    RLAIF_TRY(parse_kind(kind_s, &kind));
    int rc = parse_file(path, &kind, 1, &r);
    if (rc) return records_free(&r), rc;
    *n = r.n, *texts = r.text;
    free(r.id);
    return 0;
}

void rlaif_jsonl_free(char **texts, size_t n) {
    for (size_t i = 0; i < 3 * n; i++) free(texts[i]);
    free(texts);
}

static rlaif_h5_record rec(const char *s) {
    rlaif_h5_record x = {s, s ? strlen(s) : 0, NULL, 0};
    return x;
}

typedef struct {
    rlaif_encode_fn fn;
    void *ud;
} encoder;

/* Tokens for recs[0..n) when an encoder is given; ids freed by the caller. */
static int encode_all(const encoder *enc, rlaif_h5_record *recs, size_t n, int32_t **ids) {
    for (size_t i = 0; i < n && enc->fn; i++) {
        RLAIF_TRY(enc->fn(enc->ud, recs[i].text, recs[i].len, &ids[i], &recs[i].ntok));
        recs[i].tokens = ids[i];
    }
    return 0;
}

static void free_ids(int32_t **ids, size_t n) {
    for (size_t i = 0; i < n; i++) free(ids[i]), ids[i] = NULL;
}

/* Rank 0 holds every record; the others append nothing (collectively). */
static int write_records(rlaif_prefs *p, MPI_Comm comm, const records *r, kind_t kind, int rank,
                         const encoder *enc) {
    size_t n = rank == 0 ? r->n : 0;
    rlaif_h5_record *recs = xcalloc(2 * (n ? n : 1), sizeof *recs);
    int64_t *pid = xmalloc(sizeof(int64_t) * 2 * (n ? n : 1));
    int64_t first = 0, rfirst = 0;
    int32_t **ids = xcalloc(2 * (n ? n : 1), sizeof(int32_t *));
    for (size_t i = 0; i < n; i++) recs[i] = rec(r->text[3 * i]);
    int rc = rlaif_agree(comm, encode_all(enc, recs, n, ids));
    if (!rc) rc = rlaif_prefs_add_prompts(p, recs, n, &first);
    free_ids(ids, n);
    size_t nr = kind == KIND_PROMPTS ? 0 : kind == KIND_SFT ? n : 2 * n;
    for (size_t i = 0; i < n && kind != KIND_PROMPTS; i++) {
        if (kind == KIND_SFT) {
            recs[i] = rec(r->text[3 * i + 1]), pid[i] = first + (int64_t)i;
        } else { /* chosen, rejected as consecutive responses */
            recs[2 * i] = rec(r->text[3 * i + 1]), recs[2 * i + 1] = rec(r->text[3 * i + 2]);
            pid[2 * i] = pid[2 * i + 1] = first + (int64_t)i;
        }
    }
    if (!rc && kind != KIND_PROMPTS) {
        rc = rlaif_agree(comm, encode_all(enc, recs, nr, ids));
        if (!rc) rc = rlaif_prefs_add_responses(p, recs, pid, nr, &rfirst);
        free_ids(ids, nr);
    }
    free(ids);
    if (!rc && kind == KIND_PREFS) {
        rlaif_pair *pairs = xmalloc(sizeof(rlaif_pair) * (n ? n : 1));
        for (size_t i = 0; i < n; i++) {
            rlaif_pair_init(&pairs[i]);
            pairs[i].pair_id = r->id[i];
            pairs[i].prompt_id = first + (int64_t)i;
            pairs[i].response_a = rfirst + 2 * (int64_t)i; /* A = chosen */
            pairs[i].response_b = rfirst + 2 * (int64_t)i + 1;
            pairs[i].label = 1.0, pairs[i].choice = 0;
            pairs[i].source = RLAIF_SOURCE_HUMAN;
        }
        size_t added = 0;
        rc = rlaif_prefs_add_pairs(p, pairs, NULL, n, &added);
        if (!rc && rank == 0 && added < r->n)
            rlaif_warn("%zu preference lines repeat an earlier \"id\" and were skipped",
                       r->n - added);
        free(pairs);
    }
    free(recs), free(pid);
    return rc;
}

int rlaif_prefs_ingest(const char *jsonl, const char *out, const char *kind_s, MPI_Comm comm,
                       const rlaif_h5_opts *io, rlaif_encode_fn encode, void *encode_ud,
                       size_t *nrecords) {
    encoder enc = {encode, encode_ud};
    int rank;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    kind_t kind = KIND_PROMPTS;
    records r = {0};
    int rc = kind_s ? parse_kind(kind_s, &kind) : 0;
    if (!rc && rank == 0) rc = parse_file(jsonl, &kind, kind_s != NULL, &r);
    rc = rlaif_agree(comm, rc);
    if (rc) {
        records_free(&r);
        return rc;
    }
    int k = (int)kind;
    RLAIF_CHECK_MPI(MPI_Bcast(&k, 1, MPI_INT, 0, comm));
    kind = (kind_t)k;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    rlaif_prefs *p = NULL;
    rc = rlaif_prefs_create(tmp, comm, io, NULL, &p);
    if (!rc) {
        rc = rlaif_h5_attr_str(rlaif_prefs_file(p), "ingested_from", jsonl);
        if (!rc) rc = rlaif_h5_attr_str(rlaif_prefs_file(p), "ingested_kind", kind_names[kind]);
        rc = rlaif_agree(comm, rc);
        if (!rc) rc = rlaif_agree(comm, write_records(p, comm, &r, kind, rank, &enc));
        int rc2 = rlaif_agree(comm, rlaif_prefs_close(&p));
        if (!rc) rc = rc2;
    }
    rc = rlaif_h5_commit_tmp(tmp, out, rc, comm);
    if (nrecords) *nrecords = r.n;
    records_free(&r);
    return rc;
}

/* ---- export ---- */

static int emit(FILE *f, json_t *obj) {
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s) return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "json_dumps failed");
    int bad = fprintf(f, "%s\n", s) < 0;
    free(s);
    return bad ? RLAIF_ERROR(RLAIF_EX_IOERR, "the file system may be full", "write failed") : 0;
}

static json_t *jtext(const rlaif_h5_ragged *r, size_t i) {
    char *s = rlaif_ragged_text(r, i);
    json_t *v = json_stringn(s, (size_t)r->length[i]);
    free(s);
    return v ? v : json_string("");
}

static int export_records(FILE *f, const rlaif_prefs_data *d, kind_t kind, size_t *n) {
    int rc = 0;
    *n = 0;
    if (kind == KIND_PROMPTS) {
        for (size_t i = 0; i < d->prompts.n && !rc; i++, ++*n)
            rc = emit(f, json_pack("{s:o}", "prompt", jtext(&d->prompts, i)));
    } else if (kind == KIND_SFT) {
        for (size_t i = 0; i < d->responses.n && !rc; i++, ++*n)
            rc = emit(f, json_pack("{s:o,s:o}", "prompt",
                                   jtext(&d->prompts, (size_t)d->response_prompt[i]), "response",
                                   jtext(&d->responses, i)));
    } else {
        for (size_t i = 0; i < d->npairs && !rc; i++) {
            const rlaif_pair *q = &d->pairs[i];
            if (q->status != RLAIF_PAIR_OK || isnan(q->label) || q->label == 0.5) continue;
            int a_wins = q->label > 0.5;
            size_t w = (size_t)(a_wins ? q->response_a : q->response_b);
            size_t l = (size_t)(a_wins ? q->response_b : q->response_a);
            rc = emit(f,
                      json_pack("{s:o,s:o,s:o,s:I,s:f,s:s}", "prompt",
                                jtext(&d->prompts, (size_t)q->prompt_id), "chosen",
                                jtext(&d->responses, w), "rejected", jtext(&d->responses, l), "id",
                                (json_int_t)q->pair_id, "label", a_wins ? q->label : 1.0 - q->label,
                                "source", q->source == RLAIF_SOURCE_HUMAN ? "human" : "ai"));
            ++*n;
        }
    }
    return rc;
}

int rlaif_prefs_export(const char *h5, const char *jsonl, const char *kind_s, size_t *n) {
    kind_t kind = KIND_PREFS;
    if (kind_s) RLAIF_TRY(parse_kind(kind_s, &kind));
    rlaif_prefs_data d;
    RLAIF_TRY(rlaif_prefs_read(h5, &d));
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", jsonl);
    FILE *f = fopen(tmp, "w");
    int rc = f ? 0 : rlaif_error_sys(RLAIF_EX_IOERR, "fopen", tmp, __FILE__, __LINE__);
    if (!rc) rc = export_records(f, &d, kind, n);
    if (f && fclose(f) != 0 && !rc)
        rc = rlaif_error_sys(RLAIF_EX_IOERR, "fclose", tmp, __FILE__, __LINE__);
    if (!rc && rename(tmp, jsonl) != 0)
        rc = rlaif_error_sys(RLAIF_EX_IOERR, "rename", jsonl, __FILE__, __LINE__);
    if (rc && f) remove(tmp);
    rlaif_prefs_data_free(&d);
    return rc;
}

/* ---- command ---- */

/* rlaif_encode_fn over the job's tokenizer (plain text: special-token text
 * in the data encodes as ordinary text). */
static int encode_with(void *ud, const char *text, size_t len, int32_t **ids, size_t *n) {
    rlaif_tokens t = {0};
    RLAIF_TRY(rlaif_tokenizer_encode(ud, text, len, 0, &t));
    *ids = t.ids, *n = t.n;
    return 0;
}

static int usage(const char *msg) {
    return RLAIF_ERROR(
        RLAIF_EX_USAGE,
        "rlaif prefs ingest IN.jsonl OUT.h5 [--kind prompts|sft|prefs] [--tokenize] | "
        "export IN.h5 OUT.jsonl [--kind ...] | merge OUT.h5 IN.h5... | info IN.h5",
        "prefs: %s", msg);
}

static int cmd_info(const char *path) {
    rlaif_prefs_data d;
    RLAIF_TRY(rlaif_prefs_read(path, &d));
    size_t labelled = 0, failed = 0;
    for (size_t i = 0; i < d.npairs; i++) {
        labelled += !isnan(d.pairs[i].label);
        failed += d.pairs[i].status != RLAIF_PAIR_OK;
    }
    printf("%s: %zu prompts, %zu responses, %zu pairs (%zu labelled, %zu failed)\n", path,
           d.prompts.n, d.responses.n, d.npairs, labelled, failed);
    rlaif_prefs_data_free(&d);
    return 0;
}

int rlaif_cmd_prefs(rlaif_ctx *ctx) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int na = ctx->args.nargs;
    char **a = ctx->args.args;
    const char *kind = NULL, *pos[64];
    int np = 0, tokenize = 0;
    for (int i = 1; i < na; i++) {
        if (!strcmp(a[i], "--kind") && i + 1 < na)
            kind = a[++i];
        else if (!strcmp(a[i], "--tokenize"))
            tokenize = 1;
        else if (np < 64)
            pos[np++] = a[i];
    }
    rlaif_h5_opts io;
    rlaif_h5_opts_from_cfg(&io, ctx->cfg);
    size_t n = 0;
    if (na < 1) return usage("missing subcommand");
    if (!strcmp(a[0], "ingest")) {
        if (np != 2) return usage("ingest takes IN.jsonl OUT.h5");
        rlaif_tokenizer *tok = NULL;
        if (tokenize) /* only rank 0 encodes, but every rank checks the config */
            RLAIF_TRY(rlaif_agree(MPI_COMM_WORLD, rlaif_tokenizer_from_config(&tok, ctx->cfg)));
        int rc = rlaif_prefs_ingest(pos[0], pos[1], kind, MPI_COMM_WORLD, &io,
                                    tok ? encode_with : NULL, tok, &n);
        rlaif_tokenizer_free(tok);
        RLAIF_TRY(rc);
        rlaif_info("ingested %zu records from %s into %s", n, pos[0], pos[1]);
    } else if (!strcmp(a[0], "export")) {
        if (np != 2) return usage("export takes IN.h5 OUT.jsonl");
        int rc = rank == 0 ? rlaif_prefs_export(pos[0], pos[1], kind, &n) : 0;
        RLAIF_TRY(rlaif_agree(MPI_COMM_WORLD, rc));
        rlaif_info("exported %zu records from %s to %s", n, pos[0], pos[1]);
    } else if (!strcmp(a[0], "merge")) {
        if (np < 2) return usage("merge takes OUT.h5 IN.h5...");
        RLAIF_TRY(rlaif_prefs_merge(pos[0], pos + 1, np - 1, MPI_COMM_WORLD, &io, &n));
        rlaif_info("merged %d files into %s: %zu pairs", np - 1, pos[0], n);
    } else if (!strcmp(a[0], "info")) {
        if (np != 1) return usage("info takes IN.h5");
        RLAIF_TRY(rlaif_agree(MPI_COMM_WORLD, rank == 0 ? cmd_info(pos[0]) : 0));
    } else {
        return usage("unknown subcommand (ingest, export, merge, info)");
    }
    return 0;
}
