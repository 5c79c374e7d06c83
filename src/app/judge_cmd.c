/* judge_cmd.c - `rlaif judge`: label a JSONL file of pairs with the job's
 * judge. Useful on its own (label existing pairs, try an endpoint and its
 * bias statistics before a long job) and the driver of the judge's tests and
 * benchmark. With n MPI ranks, rank r takes lines r, r+n, ... and writes its
 * results, tagged with their input line, to OUTPUT.part.r; when every rank is
 * done, rank 0 merges the parts into OUTPUT in input order (written to a
 * temporary name, fsynced, renamed) and removes them, and prints one summary
 * of the counts summed over the ranks (each rank's own lines go to its
 * per-rank log). A rerun after a crash replays the journal: it pays for
 * nothing twice. With --prefs, the labelled pairs and their texts are also
 * appended, collectively by every rank, to a preferences.h5 (pairs already
 * in it are skipped, so a rerun adds nothing twice). */
#include "rlaif/app/cli.h"
#include "rlaif/app/gemm_setup.h"
#include "rlaif/app/judge_demos.h"
#include "rlaif/core/error.h"
#include "rlaif/judge/judge.h"
#include "rlaif/core/log.h"
#include "rlaif/phases/mailbox.h"
#include "rlaif/phases/pump.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/core/ranks.h"
#include "rlaif/core/stop.h"
#include "rlaif/engine/model.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct {
    const char *input, *output, *journal, *prefs, *demos;
    long crash_after;
    int quiet;
} judge_opts;

static int parse_opts(rlaif_ctx *ctx, judge_opts *o) {
    memset(o, 0, sizeof *o);
    o->crash_after = -1;
    for (int i = 0; i < ctx->args.nargs; i++) {
        const char *a = ctx->args.args[i],
                   *v = i + 1 < ctx->args.nargs ? ctx->args.args[i + 1] : NULL;
        if (!strcmp(a, "--quiet"))
            o->quiet = 1;
        else if (v && !strcmp(a, "--input"))
            o->input = v, i++;
        else if (v && !strcmp(a, "--output"))
            o->output = v, i++;
        else if (v && !strcmp(a, "--journal"))
            o->journal = v, i++;
        else if (v && !strcmp(a, "--prefs"))
            o->prefs = v, i++;
        else if (v && !strcmp(a, "--demos"))
            o->demos = v, i++;
        else if (v && !strcmp(a, "--crash-after"))
            o->crash_after = atol(v), i++;
        else
            return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif judge --help",
                               "judge: unexpected argument '%s'", a);
    }
    if (!o->input || (!o->output && !o->demos))
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "rlaif judge job.ini --input pairs.jsonl --output out.jsonl",
                           "judge: --input and --output are required");
    return 0;
}

/* Next pair of this rank from the input; 0 at the end, <0 on a bad line. */
static int next_pair(FILE *in, long *line, int rank, int size, rlaif_judge_pair *p, long *at,
                     json_t **hold, const char *path) {
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&buf, &cap, in)) > 0) {
        long idx = (*line)++;
        if (idx % size != rank || n <= 1) continue;
        json_error_t err;
        json_t *o = json_loadb(buf, (size_t)n, 0, &err);
        const char *pr = json_string_value(json_object_get(o, "prompt"));
        const char *a = json_string_value(json_object_get(o, "response_a"));
        const char *b = json_string_value(json_object_get(o, "response_b"));
        if (!a) a = json_string_value(json_object_get(o, "a"));
        if (!b) b = json_string_value(json_object_get(o, "b"));
        if (!pr || !a || !b) {
            json_decref(o);
            free(buf);
            return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                               "each line: {\"id\": N, \"prompt\": ..., \"response_a\": ..., "
                               "\"response_b\": ...}",
                               "%s:%ld: not a pair", path, idx + 1);
        }
        json_t *id = json_object_get(o, "id");
        p->pair_id = json_is_integer(id) ? (uint64_t)json_integer_value(id) : (uint64_t)idx;
        p->prompt = pr, p->response[0] = a, p->response[1] = b;
        *at = idx;
        *hold = o;
        free(buf);
        return 1;
    }
    free(buf);
    return 0;
}

static json_t *num(double v) {
    return isnan(v) ? json_null() : json_real(v);
}

/* One result as a part line: "<input line> <json>\n". Returns 0 or -1
 * (the stream's error flag tells why). */
static int write_result(FILE *out, long line, const rlaif_judge_result *r) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)r->pair_id));
    json_object_set_new(o, "label", num(r->label));
    json_object_set_new(o, "choice", json_integer(r->choice));
    json_object_set_new(o, "status", json_string(rlaif_judge_status_name(r->status)));
    json_object_set_new(o, "reason", json_string(r->reason));
    json_object_set_new(o, "http", json_integer(r->http_status));
    json_object_set_new(o, "consistent", json_integer(r->consistent));
    json_object_set_new(o, "outcome", json_pack("[i,i]", r->outcome[0], r->outcome[1]));
    json_object_set_new(o, "soft", json_pack("[o,o]", num(r->soft[0]), num(r->soft[1])));
    json_object_set_new(o, "score", json_pack("[o,o]", num(r->score[0]), num(r->score[1])));
    json_t *rub = json_array();
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < RLAIF_JUDGE_NCRIT; c++)
            json_array_append_new(rub, num(r->rubric[s][c]));
    json_object_set_new(o, "rubric", rub);
    json_object_set_new(o, "calls", json_integer(r->ncalls));
    json_object_set_new(o, "replayed", json_integer(r->nreplayed));
    json_object_set_new(o, "tokens_in", json_integer(r->tokens_in));
    json_object_set_new(o, "tokens_out", json_integer(r->tokens_out));
    json_object_set_new(o, "explanation", json_string(r->explanation ? r->explanation : ""));
    int rc = fprintf(out, "%ld ", line) < 0 || json_dumpf(o, out, JSON_COMPACT) ||
                     fputc('\n', out) == EOF
                 ? -1
                 : 0;
    json_decref(o);
    return rc;
}

/* ------------------------------------------- pairs kept for --prefs */

/* This rank's pairs by input line (rank r holds lines r, r+n, ...: slot
 * line / n), with their texts and, once judged, their /pairs rows. */
typedef struct {
    rlaif_judged_pair *v;
    char *done; /* 1 when v[k] holds a result */
    size_t n, cap;
} kept_pairs;

static void kept_add(kept_pairs *k, size_t slot, const rlaif_judge_pair *p) {
    if (slot >= k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 1024;
        while (cap <= slot) cap *= 2;
        k->v = xrealloc(k->v, cap * sizeof *k->v);
        k->done = xrealloc(k->done, cap);
        memset(k->v + k->cap, 0, (cap - k->cap) * sizeof *k->v);
        memset(k->done + k->cap, 0, cap - k->cap);
        k->cap = cap;
    }
    rlaif_judged_pair *d = &k->v[slot];
    d->prompt = xstrdup(p->prompt);
    d->response[0] = xstrdup(p->response[0]);
    d->response[1] = xstrdup(p->response[1]);
    if (slot >= k->n) k->n = slot + 1;
}

/* Keeps the result's row and takes its explanation. */
static void kept_result(kept_pairs *k, size_t slot, rlaif_judge_result *r) {
    rlaif_judge_to_pair(r, &k->v[slot].row);
    k->v[slot].explanation = r->explanation;
    r->explanation = NULL;
    k->done[slot] = 1;
}

static void kept_free(kept_pairs *k) {
    for (size_t i = 0; i < k->n; i++) {
        free((char *)k->v[i].prompt), free((char *)k->v[i].response[0]);
        free((char *)k->v[i].response[1]), free((char *)k->v[i].explanation);
    }
    free(k->v), free(k->done);
    memset(k, 0, sizeof *k);
}

/* Collective: append every rank's judged pairs to the --prefs file. */
static int store_prefs(rlaif_ctx *ctx, const rlaif_judge *j, const char *path, kept_pairs *k,
                       int rank) {
    size_t m = 0, added = 0;
    for (size_t i = 0; i < k->n; i++)
        if (k->done[i]) k->v[m] = k->v[i], k->done[m++] = 1;
    for (size_t i = m; i < k->n; i++) memset(&k->v[i], 0, sizeof k->v[i]); /* moved down */
    k->n = m;
    rlaif_judge_meta meta;
    int rc = rlaif_judge_meta_build(j, ctx->cfg, &meta);
    rc = rlaif_agree(MPI_COMM_WORLD, rc);
    if (rc) return rc;
    rlaif_h5_opts io;
    rlaif_h5_opts_from_cfg(&io, ctx->cfg);
    rlaif_prefs *p = NULL;
    rc = rlaif_prefs_open_or_create(path, MPI_COMM_WORLD, &io, &meta.meta, &p);
    if (!rc) rc = rlaif_judge_store(p, k->v, m, &added);
    if (p) {
        int rc2 = rlaif_prefs_close(&p);
        if (!rc) rc = rc2;
    }
    rlaif_judge_meta_free(&meta);
    if (!rc && rank == 0) rlaif_info("judge: %zu pairs added to %s", added, path);
    return rc;
}

/* ------------------------------------------------------ the parts, merged */

static void part_path(char *buf, size_t n, const char *output, int rank) {
    snprintf(buf, n, "%s.part.%d", output, rank);
}

typedef struct {
    long line;
    int part;
    long len;
    off_t off;
} part_rec;

static int by_line(const void *a, const void *b) {
    long x = ((const part_rec *)a)->line, y = ((const part_rec *)b)->line;
    return x < y ? -1 : x > y;
}

/* Index one part file: where each record lies and its input line. */
static int index_part(const char *path, int part, part_rec **recs, long *n, long *cap) {
    FILE *f = fopen(path, "r");
    if (!f)
        return rlaif_error_sys(RLAIF_EX_IOERR, "fopen", path, __FILE__, __LINE__),
               rlaif_error_context("merging the judge's parts: ");
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t got;
    off_t off = 0;
    int rc = 0;
    while ((got = getline(&buf, &bcap, f)) > 0) {
        char *end;
        long line = strtol(buf, &end, 10);
        if (buf[got - 1] != '\n' || end == buf || *end != ' ' || line < 0) {
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, "rerun the same command: the journal has the answers",
                             "judge: %s is damaged at byte %lld", path, (long long)off);
            break;
        }
        if (*n == *cap) *recs = xrealloc(*recs, sizeof **recs * (size_t)(*cap = 2 * *cap + 1024));
        size_t skip = (size_t)(end + 1 - buf);
        (*recs)[(*n)++] = (part_rec){line, part, (long)((size_t)got - skip), off + (off_t)skip};
        off += (off_t)got;
    }
    if (!rc && ferror(f)) rc = rlaif_error_sys(RLAIF_EX_IOERR, "getline", path, __FILE__, __LINE__);
    free(buf);
    fclose(f);
    return rc;
}

/* Parts an earlier run on more ranks left: OUTPUT.part.N with any N. */
static int remove_stale_parts(const char *output) {
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s", output);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : output;
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    if (slash && !*dir) snprintf(dir, sizeof dir, "/");
    size_t bl = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return rlaif_error_sys(RLAIF_EX_IOERR, "opendir", dir, __FILE__, __LINE__);
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        const char *n = de->d_name;
        if (strncmp(n, base, bl) || strncmp(n + bl, ".part.", 6) || !n[bl + 6] ||
            strspn(n + bl + 6, "0123456789") != strlen(n + bl + 6))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, n);
        if (unlink(path) && errno != ENOENT)
            rc = rlaif_error_sys(RLAIF_EX_IOERR, "unlink", path, __FILE__, __LINE__);
    }
    closedir(d);
    return rc;
}

/* Rank 0: OUTPUT.part.0..size-1 -> OUTPUT in input order (temporary name,
 * fsync, rename), then the parts go. expect = records summed over ranks. */
static int merge_parts(const char *output, int size, long expect) {
    char path[4200], tmp[4200];
    part_rec *recs = NULL;
    long n = 0, cap = 0;
    int rc = 0;
    for (int r = 0; r < size && !rc; r++) {
        part_path(path, sizeof path, output, r);
        rc = index_part(path, r, &recs, &n, &cap);
    }
    if (!rc && n != expect)
        rc = RLAIF_ERROR(RLAIF_EX_SOFTWARE, "a bug: please report it",
                         "judge: the parts of %s hold %ld results, the ranks returned %ld", output,
                         n, expect);
    if (rc) {
        free(recs);
        return rc;
    }
    qsort(recs, (size_t)n, sizeof *recs, by_line);
    int *fds = xcalloc((size_t)size, sizeof *fds);
    for (int r = 0; r < size; r++) fds[r] = -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", output);
    FILE *out = fopen(tmp, "w");
    if (!out) rc = rlaif_error_sys(RLAIF_EX_IOERR, "fopen", tmp, __FILE__, __LINE__);
    for (int r = 0; r < size && !rc; r++) {
        part_path(path, sizeof path, output, r);
        if ((fds[r] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            rc = rlaif_error_sys(RLAIF_EX_IOERR, "open", path, __FILE__, __LINE__);
    }
    char *buf = NULL;
    long bcap = 0;
    for (long i = 0; i < n && !rc; i++) {
        const part_rec *p = &recs[i];
        if (p->len > bcap) buf = xrealloc(buf, (size_t)(bcap = 2 * p->len));
        ssize_t got = pread(fds[p->part], buf, (size_t)p->len, p->off);
        if (got != p->len) {
            part_path(path, sizeof path, output, p->part);
            rc = got < 0 ? rlaif_error_sys(RLAIF_EX_IOERR, "pread", path, __FILE__, __LINE__)
                         : RLAIF_ERROR(RLAIF_EX_IOERR, "did another process change it?",
                                       "judge: %s shrank while merging", path);
        } else if (fwrite(buf, 1, (size_t)p->len, out) != (size_t)p->len)
            rc = rlaif_error_sys(RLAIF_EX_IOERR, "fwrite", tmp, __FILE__, __LINE__);
    }
    free(buf);
    free(recs);
    for (int r = 0; r < size; r++)
        if (fds[r] >= 0) close(fds[r]);
    free(fds);
    if (out) {
        if (!rc && (fflush(out) || fsync(fileno(out))))
            rc = rlaif_error_sys(RLAIF_EX_IOERR, "fflush/fsync", tmp, __FILE__, __LINE__);
        if (fclose(out) && !rc)
            rc = rlaif_error_sys(RLAIF_EX_IOERR, "fclose", tmp, __FILE__, __LINE__);
    }
    if (!rc && rename(tmp, output))
        rc = rlaif_error_sys(RLAIF_EX_IOERR, "rename to the output", tmp, __FILE__, __LINE__);
    if (rc) {
        unlink(tmp); /* the parts stay: nothing is lost */
        return rlaif_error_context("merging the judge's parts into %s: ", output);
    }
    for (int r = 0; r < size; r++) {
        part_path(path, sizeof path, output, r);
        if (unlink(path))
            return rlaif_error_sys(RLAIF_EX_IOERR, "unlink", path, __FILE__, __LINE__);
    }
    return remove_stale_parts(output);
}

/* ---------------------------------------------------------- the summary */

enum { NCOUNT = 19 }; /* pairs, labelled, 16 statuses, HTTP requests */

/* Counts (pairs, labelled, per status, HTTP requests), wall and CPU: one
 * line set on rank 0 summed over the ranks; each rank's own in its log. */
static int summary(const rlaif_pump *p, int rank, int size, long count[NCOUNT], double wall,
                   double cpu, long *total) {
    const rlaif_judge *j = rlaif_pump_judge(p);
    char rep[8192], line[600];
    rlaif_judge_report(j, rep, sizeof rep);
    rlaif_debug("judge rank %d: %ld pairs, %ld labelled, %ld HTTP requests, %.3f s wall, client "
                "CPU %.3f s\n%s",
                rank, count[0], count[1], count[18], wall, cpu, rep);
    long sum[NCOUNT];
    double t[2] = {wall, cpu}, tmax[2];
    RLAIF_CHECK_MPI(MPI_Reduce(count, sum, NCOUNT, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD));
    RLAIF_CHECK_MPI(MPI_Reduce(&t[0], &tmax[0], 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD));
    RLAIF_CHECK_MPI(MPI_Reduce(&t[1], &tmax[1], 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
    int nep = 0;
    rlaif_judge_endpoint_stats *st = NULL;
    int rc = rlaif_pump_stats(p, MPI_COMM_WORLD, &st, &nep);
    if (!rc && rank == 0) {
        *total = sum[0];
        rlaif_judge_report_stats(st, nep, rep, sizeof rep);
        int64_t status[RLAIF_PUMP_NSTATUS];
        char fails[400];
        for (int s = 0; s < RLAIF_PUMP_NSTATUS; s++) status[s] = sum[2 + s];
        rlaif_pump_fail_list(status, fails, sizeof fails);
        snprintf(line, sizeof line, "judge: %ld pairs, %ld labelled%s", sum[0], sum[1], fails);
        wall = tmax[0], cpu = tmax[1];
        printf("%s\njudge: %d rank%s, %.3f s wall, %ld HTTP requests = %.1f req/s, client CPU "
               "%.3f s = %.1f%% of a core\n%s",
               line, size, size > 1 ? "s" : "", wall, sum[18], (double)sum[18] / wall, cpu,
               100 * cpu / wall, rep);
        fflush(stdout);
    }
    free(st);
    return rc;
}

/* --------------------------------------------------------------- the run */

/* This rank's pairs in the input (non-empty lines r, r + n, ...): the
 * total of its progress lines. */
static long share_size(FILE *in, int rank, int size) {
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    long line = 0, mine = 0;
    while ((n = getline(&buf, &cap, in)) > 0) mine += line++ % size == rank && n > 1;
    free(buf);
    rewind(in);
    return mine;
}

/* Where finished pairs go: the part file, the --prefs rows, the counts. */
typedef struct {
    FILE *out;
    const char *outpath;
    kept_pairs *kept; /* NULL without --prefs */
    int size;
    long *count;
} sink;

static int sink_take(void *user, int64_t at, rlaif_judge_result *r) {
    sink *k = user;
    if (write_result(k->out, (long)at, r))
        return rlaif_error_sys(RLAIF_EX_IOERR, "fprintf", k->outpath, __FILE__, __LINE__);
    if (k->kept) kept_result(k->kept, (size_t)(at / k->size), r);
    k->count[0]++;
    k->count[1] += !isnan(r->label);
    k->count[2 + (r->status & 15)]++;
    return 0;
}

/* Up to the pump's room of this rank's pairs submitted; *eof at the end. */
static int feed(rlaif_pump *p, FILE *in, long *line, const judge_opts *o, int rank, int size,
                kept_pairs *kept, int *eof) {
    while (!*eof && rlaif_pump_room(p) > 0) {
        rlaif_judge_pair pair;
        json_t *hold = NULL;
        long at = -1;
        int got = next_pair(in, line, rank, size, &pair, &at, &hold, o->input);
        if (got <= 0) {
            *eof = 1;
            return got;
        }
        int rc = rlaif_pump_submit(p, &pair, at);
        if (!rc && o->prefs) kept_add(kept, (size_t)(at / size), &pair);
        json_decref(hold);
        RLAIF_TRY(rc);
    }
    return 0;
}

/* Label this rank's share of the input into its part file. */
static int label(rlaif_ctx *ctx, const judge_opts *o, int rank, int size, rlaif_pump **pp,
                 kept_pairs *kept, long count[NCOUNT], double *wall, double *cpu) {
    char outpath[4200];
    part_path(outpath, sizeof outpath, o->output, rank);
    FILE *in = fopen(o->input, "r");
    if (!in) return rlaif_error_sys(RLAIF_EX_NOINPUT, "fopen", o->input, __FILE__, __LINE__);
    FILE *out = fopen(outpath, "w");
    if (!out) {
        fclose(in);
        return rlaif_error_sys(RLAIF_EX_IOERR, "fopen", outpath, __FILE__, __LINE__);
    }
    int rc = rlaif_pump_open(pp, ctx->cfg, rank, size, o->journal, "judge");
    if (rc) {
        fclose(in), fclose(out);
        return rc;
    }
    rlaif_pump *p = *pp;
    sink k = {out, outpath, o->prefs ? kept : NULL, size, count};
    long line = 0, total = share_size(in, rank, size);
    int eof = 0;
    double t0 = rlaif_now(), c0 = rlaif_cpu_seconds(), last_status = t0;
    while (!rc && (!eof || rlaif_pump_pending(p) > 0)) {
        rc = feed(p, in, &line, o, rank, size, kept, &eof);
        if (!rc) rc = rlaif_pump_poll(p, 0.05, sink_take, &k, NULL);
        if (rc) break;
        if (o->crash_after >= 0 && count[0] >= o->crash_after) {
            fflush(out); /* testing: die like kill -9 with calls in flight */
            fprintf(stderr, "judge: --crash-after %ld reached: SIGKILL\n", o->crash_after);
            raise(SIGKILL);
        }
        if (rlaif_stop_requested()) { /* preempted: what is answered is journaled */
            rc = RLAIF_ERROR(RLAIF_EX_TEMPFAIL, "run the same command again to finish",
                             "judge: stopped by %s after %ld pairs",
                             rlaif_stop_name(rlaif_stop_signal()), count[0]);
            break;
        }
        double now = rlaif_now();
        if (!o->quiet && rank == 0 && now - last_status > 5) {
            rlaif_status("judge", count[0], total, (double)count[0] / (now - t0), "pairs/s",
                         now - t0, size > 1 ? "rank 0's share" : NULL);
            last_status = now;
        }
    }
    *wall = rlaif_now() - t0, *cpu = rlaif_cpu_seconds() - c0;
    const rlaif_judge *j = rlaif_pump_judge(p);
    for (int e = 0; e < rlaif_judge_nendpoints(j); e++)
        count[18] += rlaif_judge_stats(j, e)->http_requests;
    if (ferror(out) && !rc)
        rc = rlaif_error_sys(RLAIF_EX_IOERR, "fwrite", outpath, __FILE__, __LINE__);
    if (fclose(out) && !rc)
        rc = rlaif_error_sys(RLAIF_EX_IOERR, "fclose", outpath, __FILE__, __LINE__);
    fclose(in);
    return rc;
}

/* --demos: rank 0 writes them (the builtin judge needs no more), all agree. */
static int demos(rlaif_ctx *ctx, const judge_opts *o) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    long n = 0;
    int rc = rank == 0 ? rlaif_judge_demos_write(ctx->cfg, o->input, o->demos, &n) : 0;
    if (!rc && rank == 0 && !o->quiet)
        printf(
            "judge: %ld demonstrations (2 a pair: both orders, score mode both responses) in %s\n",
            n, o->demos);
    return rlaif_agree(MPI_COMM_WORLD, rc);
}

int rlaif_cmd_judge(rlaif_ctx *ctx) {
    judge_opts o;
    RLAIF_TRY(parse_opts(ctx, &o));
    if (o.demos) return demos(ctx, &o);
    RLAIF_TRY(rlaif_pump_preflight(ctx->cfg, "judge"));
    /* a local judge runs the engine: on this rank's share of the cores, as
     * the phases do (and its memory check divides the node by these ranks) */
    if (!strcmp(rlaif_cfg_str(ctx->cfg, "judge.backend"), "local") ||
        strstr(rlaif_cfg_str(ctx->cfg, "judge.ensemble"), "local")) {
        rlaif_threads th;
        RLAIF_TRY(rlaif_agree(MPI_COMM_WORLD, rlaif_threads_plan(MPI_COMM_WORLD, &th)));
        rlaif_model_set_threads(th.team, th.blas);
        /* model.precision too: without it a local judge ran fp32 whatever
         * the job said (found 2026-12-04: a bf16 run took the fp32 time) */
        rlaif_precision_setup(ctx->cfg);
        /* the judge models' product paths, as a phase's judge ranks get them */
        RLAIF_TRY(rlaif_gemm_setup_judges(MPI_COMM_WORLD, ctx->cfg, th.team));
    }
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    rlaif_pump *j = NULL;
    kept_pairs kept = {0};
    long count[NCOUNT] = {0}, total = 0;
    double wall = 0, cpu = 0;
    int rc = label(ctx, &o, rank, size, &j, &kept, count, &wall, &cpu);
    /* every rank done (or failed: then the parts stay for nobody, the
     * journal keeps the answers and a rerun rewrites them) */
    rc = rlaif_agree(MPI_COMM_WORLD, rc);
    if (!rc) rc = rlaif_agree(MPI_COMM_WORLD, summary(j, rank, size, count, wall, cpu, &total));
    if (!rc && o.prefs) rc = store_prefs(ctx, rlaif_pump_judge(j), o.prefs, &kept, rank);
    kept_free(&kept);
    rlaif_pump_close(j);
    if (!rc) rc = rlaif_agree(MPI_COMM_WORLD, rank == 0 ? merge_parts(o.output, size, total) : 0);
    return rc;
}
