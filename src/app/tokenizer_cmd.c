/* tokenizer_cmd.c - `rlaif tokenize` and `rlaif detokenize`, for people
 * checking data and for converters: the tokenizer of the job file's
 * [tokenizer] section, of a checkpoint, or of a Hugging Face tokenizer.json
 * (`rlaif tokenize --tokenizer DIR/tokenizer.json --save out.h5` makes the
 * /tokenizer group of a converted model), text from the arguments or stdin.
 * Rank 0 does the work. */
#include "rlaif/core/error.h"
#include "rlaif/tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *checkpoint, *tokenizer, *field, *save;
    int flags, jsonl, pieces;
    int nrest;
    char **rest;
} tok_opts;

static int parse_opts(rlaif_ctx *ctx, int encode, tok_opts *o) {
    memset(o, 0, sizeof *o);
    o->rest = xmalloc(((size_t)ctx->args.nargs + 1) * sizeof *o->rest);
    for (int i = 0; i < ctx->args.nargs; i++) {
        const char *a = ctx->args.args[i];
        if (!strcmp(a, "--checkpoint") && i + 1 < ctx->args.nargs)
            o->checkpoint = ctx->args.args[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < ctx->args.nargs)
            o->tokenizer = ctx->args.args[++i];
        else if (encode && !strcmp(a, "--bos"))
            o->flags |= RLAIF_TOK_BOS;
        else if (encode && !strcmp(a, "--special"))
            o->flags |= RLAIF_TOK_SPECIAL;
        else if (encode && !strcmp(a, "--gpt-3-encoder"))
            o->flags |= RLAIF_TOK_GPT3_ENCODER;
        else if (encode && !strcmp(a, "--jsonl"))
            o->jsonl = 1;
        else if (encode && !strcmp(a, "--field") && i + 1 < ctx->args.nargs)
            o->field = ctx->args.args[++i];
        else if (encode && !strcmp(a, "--pieces"))
            o->pieces = 1;
        else if (encode && !strcmp(a, "--save") && i + 1 < ctx->args.nargs)
            o->save = ctx->args.args[++i];
        else if (!encode && !strcmp(a, "--skip-special"))
            o->flags |= RLAIF_TOK_SKIP_SPECIAL;
        else if (!strcmp(a, "--")) {
            while (++i < ctx->args.nargs) o->rest[o->nrest++] = ctx->args.args[i];
        } else if (a[0] == '-' && a[1] == '-') {
            free(o->rest);
            return RLAIF_ERROR(RLAIF_EX_USAGE,
                               encode ? "see rlaif tokenize --help" : "see rlaif detokenize --help",
                               "%s: unknown option '%s'", ctx->args.command, a);
        } else
            o->rest[o->nrest++] = ctx->args.args[i];
    }
    return 0;
}

static int get_tokenizer(rlaif_ctx *ctx, const tok_opts *o, rlaif_tokenizer **t) {
    if (o->checkpoint && o->tokenizer)
        return RLAIF_ERROR(RLAIF_EX_USAGE, NULL, "give --checkpoint or --tokenizer, not both");
    if (o->checkpoint) return rlaif_tokenizer_load_file(t, o->checkpoint);
    if (o->tokenizer) {
        /* a folder means its tokenizer.json */
        size_t n = strlen(o->tokenizer);
        char *path = xmalloc(n + 32);
        memcpy(path, o->tokenizer, n + 1);
        FILE *f = fopen(path, "rb");
        int is_dir = f && fgetc(f) == EOF && ferror(f);
        if (f) fclose(f);
        if (is_dir && n) snprintf(path + n, 32, "%stokenizer.json", path[n - 1] == '/' ? "" : "/");
        int rc = rlaif_tokenizer_load_hf(t, path);
        free(path);
        return rc;
    }
    return rlaif_tokenizer_from_config(t, ctx->cfg);
}

/* --save FILE: a new HDF5 file holding only /tokenizer (what checkpoints hold). */
static int save_file(const rlaif_tokenizer *t, const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, "is the folder writable?", "cannot create %s", path);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc =
        g < 0 ? rlaif_error_h5("H5Gcreate2", __FILE__, __LINE__, NULL) : rlaif_tokenizer_save(t, g);
    if (g >= 0) H5Gclose(g);
    if (H5Fclose(f) < 0 && !rc)
        rc = RLAIF_ERROR(RLAIF_EX_IOERR, "is the disk full?", "closing %s failed", path);
    if (rc) rlaif_error_context("%s: ", path);
    return rc;
}

static int read_stdin(rlaif_bytes *b) {
    char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, stdin)) > 0) {
        if (b->cap - b->n < got + 1) {
            size_t cap = b->cap ? b->cap : sizeof buf;
            while (cap - b->n < got + 1) cap *= 2;
            b->data = xrealloc(b->data, cap);
            b->cap = cap;
        }
        memcpy(b->data + b->n, buf, got);
        b->n += got;
    }
    if (ferror(stdin)) return RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "reading stdin failed");
    if (!b->data) b->data = xcalloc(1, 1);
    b->data[b->n] = '\0'; /* room kept above */
    return 0;
}

static void print_ids(const rlaif_tokenizer *t, const rlaif_tokens *ids, int pieces) {
    if (!pieces) {
        for (size_t i = 0; i < ids->n; i++) printf(i ? " %d" : "%d", (int)ids->ids[i]);
        putchar('\n');
        return;
    }
    for (size_t i = 0; i < ids->n; i++) {
        size_t len;
        const unsigned char *s = (const unsigned char *)rlaif_tokenizer_token(t, ids->ids[i], &len);
        printf("%d\t", (int)ids->ids[i]);
        for (size_t k = 0; k < len; k++) {
            if (s[k] == '\\')
                fputs("\\\\", stdout);
            else if (s[k] >= 0x20 && s[k] < 0x7F)
                putchar(s[k]);
            else
                printf("\\x%02X", s[k]);
        }
        putchar('\n');
    }
}

/* --jsonl: each line a JSON string (or an object whose --field is one). */
static int tokenize_jsonl(rlaif_tokenizer *t, const tok_opts *o, const rlaif_bytes *in) {
    rlaif_tokens ids = {0};
    long line = 0;
    int rc = 0;
    for (const char *p = in->data, *end = in->data + in->n; p < end && !rc;) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        line++;
        json_error_t je;
        json_t *v = json_loadb(p, (size_t)(e - p), JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        p = e + 1;
        json_t *s = json_is_object(v) && o->field ? json_object_get(v, o->field) : v;
        if (!json_is_string(s)) {
            rc = RLAIF_ERROR(RLAIF_EX_USAGE,
                             "give one JSON string per line, or objects and --field KEY",
                             "stdin:%ld: %s", line, v ? "not a JSON string" : je.text);
        } else {
            ids.n = 0;
            rc = rlaif_tokenizer_encode(t, json_string_value(s), json_string_length(s), o->flags,
                                        &ids);
            if (!rc) print_ids(t, &ids, o->pieces);
        }
        json_decref(v);
    }
    rlaif_tokens_free(&ids);
    return rc;
}

int rlaif_cmd_tokenize(rlaif_ctx *ctx) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) return 0;
    tok_opts o;
    RLAIF_TRY(parse_opts(ctx, 1, &o));
    rlaif_tokenizer *t = NULL;
    rlaif_bytes in = {0};
    rlaif_tokens ids = {0};
    int rc = get_tokenizer(ctx, &o, &t);
    if (!rc && o.save) {
        rc = save_file(t, o.save);
    } else if (!rc && o.nrest) {
        for (int i = 0; i < o.nrest; i++) { /* one text, so BOS and prefixes come once */
            if (i) rlaif_bytes_append(&in, " ", 1);
            rlaif_bytes_append(&in, o.rest[i], strlen(o.rest[i]));
        }
        rc = rlaif_tokenizer_encode(t, in.data, in.n, o.flags, &ids);
        if (!rc) print_ids(t, &ids, o.pieces);
    } else if (!rc) {
        rc = read_stdin(&in);
        if (!rc && o.jsonl)
            rc = tokenize_jsonl(t, &o, &in);
        else if (!rc) {
            rc = rlaif_tokenizer_encode(t, in.data, in.n, o.flags, &ids);
            if (!rc) print_ids(t, &ids, o.pieces);
        }
    }
    if (!rc && (fflush(stdout) || ferror(stdout)))
        rc = RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "writing stdout failed");
    rlaif_tokenizer_free(t);
    rlaif_bytes_free(&in);
    rlaif_tokens_free(&ids);
    free(o.rest);
    return rc;
}

/* Ids separated by blanks, commas or brackets (so "[1, 2]" works too). */
static int parse_ids(const char *s, const char *where, rlaif_tokens *ids) {
    long k = 0;
    while (*s) {
        if (strchr(" \t\r\n,[]", *s)) {
            s++;
            continue;
        }
        char *end;
        long long v = strtoll(s, &end, 10);
        k++;
        if (end == s || !(*end == '\0' || strchr(" \t\r\n,[]", *end)) || v < INT32_MIN ||
            v > INT32_MAX)
            return RLAIF_ERROR(RLAIF_EX_USAGE, "token ids are integers separated by spaces",
                               "%s: item %ld is not a token id: '%.20s'", where, k, s);
        if (ids->n == ids->cap) {
            ids->cap = ids->cap ? 2 * ids->cap : 256;
            ids->ids = xrealloc(ids->ids, ids->cap * sizeof *ids->ids);
        }
        ids->ids[ids->n++] = (int32_t)v;
        s = end;
    }
    return 0;
}

int rlaif_cmd_detokenize(rlaif_ctx *ctx) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) return 0;
    tok_opts o;
    RLAIF_TRY(parse_opts(ctx, 0, &o));
    rlaif_tokenizer *t = NULL;
    rlaif_bytes in = {0}, out = {0};
    rlaif_tokens ids = {0};
    int rc = get_tokenizer(ctx, &o, &t);
    for (int i = 0; !rc && i < o.nrest; i++) rc = parse_ids(o.rest[i], "arguments", &ids);
    if (!rc && !o.nrest) {
        rc = read_stdin(&in);
        if (!rc) rc = parse_ids(in.data, "stdin", &ids);
    }
    if (!rc) rc = rlaif_tokenizer_decode(t, ids.ids, ids.n, o.flags, &out);
    if (!rc && out.n && fwrite(out.data, 1, out.n, stdout) != out.n)
        rc = RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "writing stdout failed");
    if (!rc && (fflush(stdout) || ferror(stdout)))
        rc = RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "writing stdout failed");
    rlaif_tokenizer_free(t);
    rlaif_bytes_free(&in);
    rlaif_bytes_free(&out);
    rlaif_tokens_free(&ids);
    free(o.rest);
    return rc;
}
