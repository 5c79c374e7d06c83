/* telemetry.c - a phase's time and counts, and the live status file
 * <out_dir>/status.json (see telemetry.h).
 *
 * The status document is kept in memory as one JSON object and written
 * whole each time, so the file on disk is always a document this process
 * finished: a reader never has to make sense of half an update. */
#include "rlaif/core/telemetry.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/log.h"

#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const rlaif_tm_names[RLAIF_TM_N] = {
    "compute_s",      "judge_wait_s", "io_s",           "comm_s",        "steps",
    "tokens",         "pairs",        "judge_requests", "judge_retries", "judge_failures",
    "judge_replayed", "judge_tokens", "judge_cost_usd",
};

static double tm[RLAIF_TM_N];

void rlaif_tm_reset(void) {
    memset(tm, 0, sizeof tm);
}

void rlaif_tm_add(int k, double v) {
    if (k >= 0 && k < RLAIF_TM_N) tm[k] += v;
}

double rlaif_tm_since(int k, double t0) {
    double now = rlaif_now();
    rlaif_tm_add(k, now - t0);
    return now;
}

void rlaif_tm_get(double out[RLAIF_TM_N]) {
    memcpy(out, tm, sizeof tm);
}

/* ---- the status file ---- */

/* Status lines may come many times a second: the file follows at most once
 * a second (phase changes, checkpoints and the exit are written at once). */
#define LIVE_MIN_INTERVAL 1.0

static struct {
    json_t *doc; /* NULL: not publishing */
    char path[4200];
    int started; /* the job has done or planned work: the file exists from now on */
    int warned;  /* one warning for a file that cannot be written */
    double last_write, phase_t0;
} live;

static void live_write(int force) {
    if (!live.doc || !live.started) return;
    double now = rlaif_wall_time();
    if (!force && now - live.last_write < LIVE_MIN_INTERVAL) return;
    json_object_set_new(live.doc, "updated", json_real(now));
    char *text = json_dumps(live.doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    if (!text || rlaif_write_atomic(live.path, text) != 0) {
        if (!live.warned)
            rlaif_warn("cannot write %s: `rlaif status` will not see this job", live.path);
        live.warned = 1;
    }
    free(text);
    live.last_write = now;
}

void rlaif_live_open(const char *out_dir, const char *command, const char *ckpt_dir) {
    if (live.doc) return;
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    const char *job = getenv("SLURM_JOB_ID") ? getenv("SLURM_JOB_ID") : getenv("PBS_JOBID");
    rlaif_path_join(live.path, sizeof live.path, *out_dir ? out_dir : ".", RLAIF_LIVE_FILE);
    live.doc =
        json_pack("{s:i, s:s, s:s, s:I, s:s, s:s?, s:f, s:s, s:s, s:[]}", "rlaif_status", 1,
                  "version", PACKAGE_VERSION, "command", command, "pid", (json_int_t)getpid(),
                  "host", host, "job_id", job, "started", rlaif_wall_time(), "state", "running",
                  "checkpoint_dir", ckpt_dir, "phases");
}

void rlaif_live_plan(int n, const char *const *names) {
    for (int i = 0; live.doc && i < n; i++) rlaif_live_phase(names[i], "pending", 0);
    live.started = live.doc != NULL; /* a `run` publishes from its first phase on */
}

/* The phases entry of name, appended when new. */
static json_t *phase_entry(const char *name, size_t *index) {
    json_t *list = json_object_get(live.doc, "phases"), *e;
    size_t i;
    json_array_foreach(list, i, e) {
        if (!strcmp(json_string_value(json_object_get(e, "name")), name)) {
            *index = i;
            return e;
        }
    }
    *index = json_array_size(list);
    json_array_append_new(list, json_pack("{s:s}", "name", name));
    return json_array_get(list, *index);
}

void rlaif_live_phase(const char *name, const char *state, double seconds) {
    if (!live.doc) return;
    size_t i;
    json_t *e = phase_entry(name, &i);
    json_object_set_new(e, "state", json_string(state));
    if (!strcmp(state, "pending")) return; /* the plan: written with the first phase */
    if (!strcmp(state, "running")) {
        live.phase_t0 = rlaif_wall_time();
        json_object_set_new(e, "started", json_real(live.phase_t0));
        json_object_set_new(live.doc, "phase", json_string(name));
        json_object_set_new(live.doc, "phase_index", json_integer((json_int_t)i + 1));
        json_object_set_new(
            live.doc, "phase_count",
            json_integer((json_int_t)json_array_size(json_object_get(live.doc, "phases"))));
        json_object_del(live.doc, "progress");
        json_object_del(live.doc, "judge");
    } else if (strcmp(state, "skipped")) {
        json_object_set_new(e, "seconds", json_real(seconds));
    }
    live_write(1);
}

void rlaif_live_progress(long step, long total, double rate, const char *unit, double eta_s) {
    if (!live.doc) return;
    json_t *p = json_pack("{s:I, s:I, s:f, s:f, s:s}", "step", (json_int_t)step, "total",
                          (json_int_t)total, "percent", total > 0 ? 100.0 * step / total : 0.0,
                          "rate", rate, "unit", unit ? unit : "/s");
    json_object_set_new(p, "eta_s", eta_s >= 0 ? json_real(eta_s) : json_null());
    json_object_set_new(live.doc, "progress", p);
    live.started = 1;
    live_write(0);
}

void rlaif_live_judge(const double v[RLAIF_TM_N]) {
    if (!live.doc) return;
    double el = rlaif_wall_time() - live.phase_t0;
    json_t *j = json_object();
    for (int k = RLAIF_TM_REQUESTS; k < RLAIF_TM_N; k++)
        json_object_set_new(j, rlaif_tm_names[k] + 6, json_real(v[k])); /* without "judge_" */
    json_object_set_new(j, "requests_per_s", json_real(el > 0 ? v[RLAIF_TM_REQUESTS] / el : 0));
    json_object_set_new(live.doc, "judge", j);
}

void rlaif_live_checkpoint(const char *path, long step) {
    if (!live.doc) return;
    json_object_set_new(live.doc, "checkpoint",
                        json_pack("{s:s, s:I, s:f}", "path", path, "step", (json_int_t)step, "time",
                                  rlaif_wall_time()));
    live.started = 1;
    live_write(1);
}

void rlaif_live_summary(const char *phase, int n, const char *const *names, const double *vals) {
    if (!live.doc) return;
    size_t i;
    json_t *e = phase_entry(phase, &i), *s = json_object();
    for (int k = 0; k < n; k++) json_object_set_new(s, names[k], json_real(vals[k]));
    json_object_set_new(e, "summary", s);
    live.started = 1;
    live_write(1);
}

void rlaif_live_end(int code) {
    if (!live.doc) return;
    json_object_set_new(live.doc, "state", json_string("exited"));
    json_object_set_new(live.doc, "exit_code", json_integer(code));
    json_object_set_new(live.doc, "ended", json_real(rlaif_wall_time()));
    live_write(1);
    json_decref(live.doc);
    live.doc = NULL;
}
