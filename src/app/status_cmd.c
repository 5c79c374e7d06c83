/* status_cmd.c - `rlaif status`: how far a job is, from a login node.
 *
 *   rlaif status job.ini [--json] [--watch [S]]   each phase of run.phases
 *       (its done(): done / partial / not started), then the live state
 *   rlaif status OUT_DIR [--json] [--watch [S]]   the live state alone
 *
 * The live state is what the job publishes in <out_dir>/status.json
 * (core/telemetry.h: rewritten whole by rename, so always a complete
 * document) plus two things a dead job cannot fake: whether the out_dir's
 * lock (.rlaif.lock, an fcntl lock the kernel drops when its holder dies)
 * is held, asked with F_GETLK, which takes no lock; and the newest
 * checkpoint file. Nothing here writes: files are opened read-only, no
 * HDF5 file the job may be writing is opened (metrics.h5, preferences.h5),
 * and only complete checkpoints (renamed into place) are read. */
#include "rlaif/app/cli.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/log.h"
#include "rlaif/core/stop.h"
#include "rlaif/core/telemetry.h"
#include "rlaif/phases/run.h"
#include "rlaif/storage/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *dir; /* the out_dir */
    int json;
    double watch;            /* seconds between refreshes; 0 = once */
    const rlaif_config *cfg; /* job.ini given: its phases too */
} status_opts;

/* ---- what is known about the job, gathered read-only ---- */

typedef struct {
    json_t *doc; /* status.json, or NULL */
    int known;   /* whether the job runs is known */
    int running;
    char why[600];   /* how that is known */
    double age;      /* seconds since the last update of status.json (-1: none) */
    char ckpt[4200]; /* the newest checkpoint file ("" none) */
    double ckpt_mtime;
    int64_t ckpt_step;
    int ckpt_done;
} job_view;

static double num(const json_t *o, const char *key, double dflt) {
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static const char *str(const json_t *o, const char *key, const char *dflt) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

/* The lock: held means a job runs on this out_dir now, whoever it is. 0
 * when the file system cannot tell (no lock file, no fcntl locks). */
static int lock_state(const char *dir, job_view *v) {
    char path[4200], who[512] = "";
    rlaif_path_join(path, sizeof path, dir, ".rlaif.lock");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int ok = fcntl(fd, F_GETLK, &fl) == 0;
    ssize_t r = ok ? pread(fd, who, sizeof who - 1, 0) : 0;
    close(fd);
    if (!ok) return 0;
    who[r > 0 ? r : 0] = 0;
    who[strcspn(who, "\n")] = 0;
    v->known = 1, v->running = fl.l_type != F_UNLCK;
    if (v->running)
        snprintf(v->why, sizeof v->why, "the out_dir lock is held (%s)",
                 *who ? who : "holder unknown");
    else
        snprintf(v->why, sizeof v->why, "no process holds the out_dir lock");
    return 1;
}

/* Without locks: the writer's pid, when it ran on this host. */
static void pid_state(job_view *v) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    long pid = (long)num(v->doc, "pid", 0);
    if (!v->doc || pid <= 0 || strcmp(str(v->doc, "host", ""), host)) {
        snprintf(v->why, sizeof v->why, "unknown: no fcntl lock to ask and the job ran on host %s",
                 str(v->doc, "host", "?"));
        return;
    }
    v->known = 1;
    v->running = kill((pid_t)pid, 0) == 0 || errno == EPERM;
    snprintf(v->why, sizeof v->why, "pid %ld on this host is %s", pid,
             v->running ? "alive" : "gone");
}

/* The newest complete checkpoint by modification time (temporary files of
 * one being written end in .tmp and are passed over). */
static void newest_ckpt(const char *ckdir, job_view *v) {
    DIR *d = ckdir ? opendir(ckdir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".h5")) continue;
        char path[4200];
        struct stat st;
        rlaif_path_join(path, sizeof path, ckdir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        double mt = (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
        if (mt > v->ckpt_mtime) v->ckpt_mtime = mt, snprintf(v->ckpt, sizeof v->ckpt, "%s", path);
    }
    if (d) closedir(d);
    rlaif_ckpt_info in;
    v->ckpt_step = -1;
    if (*v->ckpt && rlaif_checkpoint_info(v->ckpt, &in) == 0)
        v->ckpt_step = in.step, v->ckpt_done = in.done;
    rlaif_error_clear(); /* deleted by the job's rotation meanwhile: no step */
}

static void gather(const status_opts *o, job_view *v) {
    memset(v, 0, sizeof *v);
    char path[4200], ckdir[4200];
    rlaif_path_join(path, sizeof path, o->dir, RLAIF_LIVE_FILE);
    v->doc = json_load_file(path, 0, NULL);
    v->age = v->doc ? rlaif_wall_time() - num(v->doc, "updated", 0) : -1;
    int asked = lock_state(o->dir, v);
    if (!asked && !v->doc) /* no lock file either: no job of this version ran here */
        v->known = 1, snprintf(v->why, sizeof v->why, "no job has run here");
    else if (!asked)
        pid_state(v);
    /* checkpoint.dir is relative to the out_dir (unless absolute) */
    const char *ck =
        o->cfg ? rlaif_cfg_str(o->cfg, "checkpoint.dir") : str(v->doc, "checkpoint_dir", "ckpt");
    rlaif_path_join(ckdir, sizeof ckdir, o->dir, ck);
    newest_ckpt(ckdir, v);
}

/* ---- text ---- */

static void utc(char *buf, size_t n, double t) {
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void print_phase_states(const rlaif_config *cfg) {
    rlaif_run_state st[RLAIF_RUN_MAX_PHASES];
    static const char *const state_name[] = {"not started", "partial", "done"};
    int n = 0;
    if (rlaif_run_states(cfg, st, RLAIF_RUN_MAX_PHASES, &n)) return;
    printf("run.out_dir = %s, run.phases = %s\n", rlaif_cfg_str(cfg, "run.out_dir"),
           rlaif_cfg_str(cfg, "run.phases"));
    for (int i = 0; i < n; i++)
        printf("  %-10s %-12s %s%s\n", st[i].name, state_name[st[i].st.state], st[i].st.what,
               st[i].built ? "" : " (not built in this version)");
}

static void print_running(const job_view *v) {
    const json_t *d = v->doc;
    const char *state = str(d, "state", "");
    char when[40] = "";
    if (!v->known)
        printf("  running:    unknown (%s)", v->why);
    else if (v->running)
        printf("  running:    yes (%s)", v->why);
    else if (!strcmp(state, "exited")) {
        int code = (int)num(d, "exit_code", -1);
        utc(when, sizeof when, num(d, "ended", 0));
        printf("  running:    no: exited %d (%s) at %s", code,
               code == 0                   ? "done"
               : code == RLAIF_EX_TEMPFAIL ? "checkpointed, requeue"
                                           : "failed",
               when);
    } else if (d)
        printf("  running:    NO: the job ended without recording an exit (killed or crashed?); "
               "%s",
               v->why);
    else
        printf("  running:    no (%s)", v->why);
    if (v->age >= 0) printf("; last update %.0f s ago", v->age);
    printf("\n");
}

static void print_progress(const json_t *d) {
    const json_t *p = json_object_get(d, "progress"), *j = json_object_get(d, "judge");
    char eta[16];
    if (p) {
        rlaif_hms(eta, sizeof eta, num(p, "eta_s", -1));
        printf("  progress:   step %.0f/%.0f (%.1f%%), %.1f %s, ETA %s\n", num(p, "step", 0),
               num(p, "total", 0), num(p, "percent", 0), num(p, "rate", 0), str(p, "unit", ""),
               eta);
    }
    if (j)
        printf("  judge:      %.0f requests (%.2f/s), %.0f retries, %.0f failures, %.0f from the "
               "journal, %.0f tokens, $%.4f\n",
               num(j, "requests", 0), num(j, "requests_per_s", 0), num(j, "retries", 0),
               num(j, "failures", 0), num(j, "replayed", 0), num(j, "tokens", 0),
               num(j, "cost_usd", 0));
}

static void print_phases(const json_t *d) {
    const json_t *list = json_object_get(d, "phases"), *e;
    size_t i;
    json_array_foreach(list, i, e) {
        const json_t *s = json_object_get(e, "summary");
        printf("  %-12s%s", str(e, "name", "?"), str(e, "state", "?"));
        if (json_object_get(e, "seconds")) printf(" (%.1f s)", num(e, "seconds", 0));
        if (s) {
            double rs = num(s, "wall_s", 0) * num(s, "ranks", 1), k = rs > 0 ? 100 / rs : 0;
            printf(
                ": %.2f steps/s, %.0f tokens/s, %.2f pairs/s; compute %.0f%%, judge wait %.0f%%, "
                "I/O %.0f%%, comm %.0f%%",
                num(s, "steps_per_s", 0), num(s, "tokens_per_s", 0), num(s, "pairs_per_s", 0),
                k * num(s, "compute_s", 0), k * num(s, "judge_wait_s", 0), k * num(s, "io_s", 0),
                k * num(s, "comm_s", 0));
            if (num(s, "judge_requests", 0) > 0)
                printf("; judge %.0f requests, %.0f failures, $%.4f", num(s, "judge_requests", 0),
                       num(s, "judge_failures", 0), num(s, "judge_cost_usd", 0));
        }
        printf("\n");
    }
}

static void print_text(const status_opts *o, const job_view *v) {
    const json_t *d = v->doc;
    char when[40];
    if (o->cfg) print_phase_states(o->cfg);
    if (!d) {
        printf("%s: no %s (no phase of a job of this version has started there)\n", o->dir,
               RLAIF_LIVE_FILE);
    } else {
        const char *job = str(d, "job_id", NULL);
        utc(when, sizeof when, num(d, "started", 0));
        printf("%s: rlaif %s, pid %.0f on %s%s%s, started %s\n", o->dir, str(d, "command", "?"),
               num(d, "pid", 0), str(d, "host", "?"), job ? ", batch job " : "", job ? job : "",
               when);
    }
    print_running(v);
    if (d && json_object_get(d, "phase")) {
        const json_t *list = json_object_get(d, "phases");
        const char *name = str(d, "phase", "?");
        const char *state = "?";
        size_t i;
        const json_t *e;
        json_array_foreach(list, i, e) {
            if (!strcmp(str(e, "name", ""), name)) state = str(e, "state", "?");
        }
        int died = v->known && !v->running && !strcmp(state, "running");
        printf("  phase:      %.0f/%.0f %s (%s)\n", num(d, "phase_index", 0),
               num(d, "phase_count", 0), name, died ? "was running when the job died" : state);
        print_progress(d);
    }
    if (*v->ckpt) {
        printf("  checkpoint: %s", v->ckpt);
        if (v->ckpt_step >= 0)
            printf(" (step %lld%s)", (long long)v->ckpt_step, v->ckpt_done ? ", done" : "");
        printf(", written %.0f s ago\n", rlaif_wall_time() - v->ckpt_mtime);
    }
    if (d) {
        printf("  phases:\n");
        print_phases(d);
    }
}

/* ---- JSON: the status file with what was found beside it ---- */

static void print_json(const status_opts *o, const job_view *v) {
    json_t *out = v->doc ? json_deep_copy(v->doc) : json_object();
    json_object_set_new(out, "out_dir", json_string(o->dir));
    json_object_set_new(out, "running", v->known ? json_boolean(v->running) : json_null());
    json_object_set_new(out, "running_why", json_string(v->why));
    json_object_set_new(out, "age_s", v->age >= 0 ? json_real(v->age) : json_null());
    if (*v->ckpt)
        json_object_set_new(out, "newest_checkpoint",
                            json_pack("{s:s, s:I, s:b, s:f}", "path", v->ckpt, "step",
                                      (json_int_t)v->ckpt_step, "done", v->ckpt_done, "mtime",
                                      v->ckpt_mtime));
    rlaif_run_state st[RLAIF_RUN_MAX_PHASES];
    int n = 0;
    if (o->cfg && !rlaif_run_states(o->cfg, st, RLAIF_RUN_MAX_PHASES, &n)) {
        static const char *const state_name[] = {"not started", "partial", "done"};
        json_t *a = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "name", st[i].name, "state",
                                               state_name[st[i].st.state], "what", st[i].st.what));
        json_object_set_new(out, "phase_status", a);
    }
    rlaif_error_clear();
    char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(out);
}

/* ---- the command ---- */

static int parse(rlaif_ctx *ctx, status_opts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < ctx->args.nargs; i++) {
        const char *a = ctx->args.args[i];
        char *end;
        if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--watch")) {
            o->watch = 10;
            if (i + 1 < ctx->args.nargs) {
                double s = strtod(ctx->args.args[i + 1], &end);
                if (!*end && end != ctx->args.args[i + 1]) {
                    if (!(s > 0))
                        return RLAIF_ERROR(RLAIF_EX_USAGE, "e.g. --watch 30",
                                           "status: --watch needs a positive number of seconds");
                    o->watch = s, i++;
                }
            }
        } else if (a[0] != '-' && !o->dir && !ctx->args.job_path) {
            struct stat st;
            if (stat(a, &st) != 0)
                return RLAIF_ERROR(RLAIF_EX_NOINPUT, "give the job's run.out_dir or its job.ini",
                                   "status: %s: %s", a, strerror(errno));
            if (!S_ISDIR(st.st_mode))
                return RLAIF_ERROR(RLAIF_EX_USAGE,
                                   "a job file's name ends in .ini; an out_dir is a folder",
                                   "status: %s is neither a folder nor a .ini job file", a);
            o->dir = a;
        } else {
            return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif status --help",
                               "status: unexpected argument '%s'", a);
        }
    }
    if (!o->dir) {
        o->cfg = ctx->cfg;
        const char *out = rlaif_cfg_str(ctx->cfg, "run.out_dir");
        o->dir = *out ? out : ".";
    }
    return 0;
}

/* Sleep s seconds, waking for a Ctrl-C (the stop flag's handler has it). */
static void nap(double s) {
    for (double t = 0; t < s && !rlaif_stop_requested(); t += 0.1) {
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
}

int rlaif_cmd_status(rlaif_ctx *ctx) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) return 0; /* read-only and serial: rank 0 answers */
    status_opts o;
    RLAIF_TRY(parse(ctx, &o));
    for (int first = 1;; first = 0) {
        job_view v;
        gather(&o, &v);
        if (!first && !o.json) printf("\n");
        if (o.json)
            print_json(&o, &v);
        else
            print_text(&o, &v);
        fflush(stdout);
        json_decref(v.doc);
        /* --watch ends with the job (or Ctrl-C): nothing more will change */
        if (!o.watch || (v.known && !v.running) || rlaif_stop_requested()) break;
        nap(o.watch);
        if (rlaif_stop_requested()) break;
    }
    return 0;
}
