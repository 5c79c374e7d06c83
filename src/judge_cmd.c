/* judge_cmd.c - `rlaif judge`: label a JSONL file of pairs with the job's
 * judge. Useful on its own (label existing pairs, try an endpoint and its
 * bias statistics before a long job) and the driver of the judge's tests and
 * benchmark. With several MPI ranks, rank r takes lines r, r+n, ... and writes
 * OUTPUT.r. A rerun after a crash replays the journal: it pays for nothing
 * twice. */
#include "rlaif/cli.h"
#include "rlaif/error.h"
#include "rlaif/judge.h"
#include "rlaif/log.h"
#include "rlaif/stop.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct {
    const char *input, *output, *journal;
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
        else if (v && !strcmp(a, "--crash-after"))
            o->crash_after = atol(v), i++;
        else
            return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif judge --help",
                               "judge: unexpected argument '%s'", a);
    }
    if (!o->input || !o->output)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "rlaif judge job.ini --input pairs.jsonl --output out.jsonl",
                           "judge: --input and --output are required");
    return 0;
}

/* Next pair of this rank from the input; 0 at the end, <0 on a bad line. */
static int next_pair(FILE *in, long *line, int rank, int size, rlaif_judge_pair *p, json_t **hold,
                     const char *path) {
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

static void write_result(FILE *out, const rlaif_judge_result *r) {
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
    json_dumpf(o, out, JSON_COMPACT);
    fputc('\n', out);
    json_decref(o);
}

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
           (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

static int run(rlaif_ctx *ctx, const judge_opts *o, int rank, int size) {
    char outpath[4096];
    snprintf(outpath, sizeof outpath, size > 1 ? "%s.%d" : "%s", o->output, rank);
    FILE *in = fopen(o->input, "r");
    if (!in) return rlaif_error_sys(RLAIF_EX_NOINPUT, "fopen", o->input, __FILE__, __LINE__);
    FILE *out = fopen(outpath, "w");
    if (!out) {
        fclose(in);
        return rlaif_error_sys(RLAIF_EX_IOERR, "fopen", outpath, __FILE__, __LINE__);
    }
    rlaif_judge *j;
    int rc = rlaif_judge_open(&j, ctx->cfg, rank, size, o->journal);
    if (rc) {
        fclose(in), fclose(out);
        return rc;
    }
    enum { CAP = 256 };
    rlaif_judge_result res[CAP];
    long line = 0, done = 0, labelled = 0, by_status[16] = {0};
    int eof = 0, n;
    double t0 = rlaif_now(), c0 = cpu_seconds(), last_status = t0;
    while (!rc && (!eof || rlaif_judge_pending(j) > 0)) {
        while (!eof && rlaif_judge_credit(j) > 0) {
            rlaif_judge_pair p;
            json_t *hold = NULL;
            int got = next_pair(in, &line, rank, size, &p, &hold, o->input);
            if (got < 0) rc = got;
            if (got <= 0) {
                eof = 1;
                break;
            }
            rc = rlaif_judge_submit(j, &p);
            json_decref(hold);
            if (rc) break;
        }
        if (rc || (rc = rlaif_judge_poll(j, 0.05, res, CAP, &n))) break;
        for (int i = 0; i < n; i++) {
            write_result(out, &res[i]);
            labelled += !isnan(res[i].label);
            by_status[res[i].status & 15]++;
            rlaif_judge_result_free(&res[i]);
        }
        done += n;
        if (o->crash_after >= 0 && done >= o->crash_after) {
            fflush(out); /* testing: die like kill -9 with calls in flight */
            fprintf(stderr, "judge: --crash-after %ld reached: SIGKILL\n", o->crash_after);
            raise(SIGKILL);
        }
        if (rlaif_stop_requested()) { /* preempted: what is answered is journaled */
            rc = RLAIF_ERROR(RLAIF_EX_TEMPFAIL, "run the same command again to finish",
                             "judge: stopped by signal %d after %ld pairs", rlaif_stop_signal(),
                             done);
            break;
        }
        double now = rlaif_now();
        if (!o->quiet && rank == 0 && now - last_status > 5) {
            rlaif_status("judge", done, -1, done / (now - t0), "pairs/s", now - t0, NULL);
            last_status = now;
        }
    }
    double wall = rlaif_now() - t0, cpu = cpu_seconds() - c0;
    if (fclose(out) && !rc)
        rc = rlaif_error_sys(RLAIF_EX_IOERR, "fclose", outpath, __FILE__, __LINE__);
    fclose(in);
    if (!rc) {
        char rep[4096];
        rlaif_judge_report(j, rep, sizeof rep);
        long http = 0;
        for (int e = 0; e < rlaif_judge_nendpoints(j); e++)
            http += rlaif_judge_stats(j, e)->http_requests;
        printf("judge rank %d: %ld pairs, %ld labelled", rank, done, labelled);
        for (int s = 1; s < 16; s++)
            if (by_status[s]) printf(", %ld %s", by_status[s], rlaif_judge_status_name(s));
        printf("\njudge rank %d: %.3f s wall, %ld HTTP requests = %.1f req/s, client CPU %.3f s "
               "= %.1f%% of a core\n%s",
               rank, wall, http, http / wall, cpu, 100 * cpu / wall, rep);
        fflush(stdout);
    }
    rlaif_judge_close(j);
    return rc;
}

int rlaif_cmd_judge(rlaif_ctx *ctx) {
    judge_opts o;
    RLAIF_TRY(parse_opts(ctx, &o));
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return run(ctx, &o, rank, size);
}
