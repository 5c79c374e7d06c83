/* log.c - rank-0 status lines, warnings, per-rank log files. */
#include "rlaif/core/log.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/telemetry.h"

#include <errno.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_rank = 0;
static int log_verbose = 0;
static int log_tty = 0;
static FILE *rank_log = NULL;

double rlaif_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void rlaif_test_delay(const char *var) {
    const char *e = getenv(var);
    double delay = e ? atof(e) : 0;
    if (delay > 0) {
        struct timespec ts = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

double rlaif_wall_time(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

void rlaif_timestamp_iso(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void stamp(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

int rlaif_log_init(int world_rank, const char *log_dir, int verbose) {
    log_rank = world_rank;
    log_verbose = verbose;
    rlaif_on_exit(rlaif_log_close); /* flushed and closed on any exit path */
    /* MPI launchers forward rank output through a pseudo-terminal, so isatty
     * alone would put progress bars into batch logs: only draw one when
     * rlaif was started directly on a terminal. */
    int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_RANK") || getenv("PMIX_RANK") ||
                   getenv("SLURM_STEP_ID");
    log_tty = isatty(STDOUT_FILENO) && !launched;
    /* Line-buffered even when stdout is a batch log file. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (log_dir && *log_dir) {
        if (rlaif_mkdir_p(log_dir)) return rlaif_error_context("--log-dir: ");
        char path[4200];
        snprintf(path, sizeof path, "%s/rank-%05d.log", log_dir, world_rank);
        rank_log = fopen(path, "a");
        if (!rank_log)
            return RLAIF_ERROR(RLAIF_EX_IOERR, "check --log-dir", "cannot open %s: %s", path,
                               strerror(errno));
        setvbuf(rank_log, NULL, _IOLBF, 0);
    }
    return 0;
}

void rlaif_log_close(void) {
    if (rank_log) fclose(rank_log);
    rank_log = NULL;
}

static void to_rank_log(const char *level, const char *msg) {
    if (!rank_log) return;
    char ts[32];
    stamp(ts, sizeof ts);
    fprintf(rank_log, "[%s] %s%s\n", ts, level, msg);
}

void rlaif_info(const char *fmt, ...) {
    char msg[4096], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    to_rank_log("", msg);
    if (log_rank != 0) return;
    stamp(ts, sizeof ts);
    if (log_tty) fputs("\r\033[K", stdout);
    fprintf(stdout, "[%s] %s\n", ts, msg);
}

void rlaif_warn(const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    to_rank_log("WARNING: ", msg);
    fprintf(stderr, "WARNING (rank %d): %s\n", log_rank, msg);
}

void rlaif_debug(const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    to_rank_log("debug: ", msg);
    if (log_verbose) fprintf(stderr, "debug (rank %d): %s\n", log_rank, msg);
}

void rlaif_hms(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 359999) {
        snprintf(buf, n, "--:--:--");
        return;
    }
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

void rlaif_status(const char *phase, long step, long total, double rate, const char *unit,
                  double elapsed, const char *extra) {
    if (log_rank != 0) return;
    char eta[16], ts[32], line[1024];
    double left = (total > 0 && step > 0) ? elapsed / (double)step * (double)(total - step) : -1;
    rlaif_hms(eta, sizeof eta, left);
    rlaif_live_progress(step, total, rate, unit, left); /* and the status file */
    stamp(ts, sizeof ts);
    double pct = total > 0 ? 100.0 * (double)step / (double)total : 0;
    snprintf(line, sizeof line, "%s step %ld/%ld (%.1f%%) %.1f %s ETA %s%s%s", phase, step, total,
             pct, rate, unit ? unit : "/s", eta, extra && *extra ? " | " : "", extra ? extra : "");
    to_rank_log("", line);
    if (log_tty) {
        int width = 30, filled = total > 0 ? (int)(width * step / total) : 0;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        fprintf(stdout, "\r\033[K[%s] %s", bar, line);
        if (step >= total) fputc('\n', stdout);
        fflush(stdout);
    } else {
        fprintf(stdout, "[%s] %s\n", ts, line);
    }
}
