/* metrics.c - metrics.h5 (one compound table per phase) and progress.jsonl,
 * written by rank 0 only through a serial HDF5 handle.
 *
 * Each step of a phase is in each file once: a resumed job replays the steps
 * after its checkpoint (and an unfinished one, its step-0 evaluation), so a
 * row at step s first drops that phase's rows at steps >= s from both files
 * (issue 12.11). Rows stay in step order, which the drop relies on. */
#include "rlaif/storage/metrics.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/error.h"
#include "rlaif/core/h5util.h"
#include "rlaif/core/log.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PHASES 16
#define NO_STEP    INT64_MIN

typedef struct {
    char name[64];
    int ncols;
    hid_t ds, type; /* type: step, time, ncols doubles (packed) */
    char **cols;
    int64_t last_h5, last_jl; /* newest step in each file, NO_STEP when none */
} phase_t;

struct rlaif_metrics {
    int rank;
    hid_t file;
    FILE *progress;
    char *progress_path;
    int nphases;
    phase_t ph[MAX_PHASES];
};

/* A job killed while metrics.h5 was open can leave it unreadable: keep it
 * for inspection under another name and start a new one (the curves live on
 * in progress.jsonl). */
static int set_aside(const char *path) {
    char aside[4096];
    snprintf(aside, sizeof aside, "%s.damaged-%.0f", path, rlaif_wall_time());
    rlaif_warn("%s cannot be opened (%s); moved to %s, starting a new one", path,
               rlaif_error_message(), aside);
    rlaif_error_clear();
    if (rename(path, aside) != 0)
        return rlaif_error_sys(RLAIF_EX_IOERR, "rename", path, __FILE__, __LINE__);
    return 0;
}

int rlaif_metrics_open(const char *h5path, const char *progress_path, MPI_Comm comm,
                       rlaif_metrics **out) {
    rlaif_metrics *m = xcalloc(1, sizeof *m);
    m->file = -1;
    MPI_Comm_rank(comm, &m->rank);
    *out = m;
    if (m->rank != 0) return 0;
    int rc = 0;
    if (h5path) {
        FILE *f = fopen(h5path, "rb");
        if (f) {
            fclose(f);
            rc = rlaif_h5_open_serial(h5path, 1, &m->file);
            if (rc)
                rc = set_aside(h5path);
            else
                rc = rlaif_h5_check_kind(m->file, h5path, "metrics");
        }
        if (!rc && m->file < 0) {
            m->file = H5Fcreate(h5path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
            if (m->file < 0)
                rc = rlaif_error_h5("H5Fcreate", __FILE__, __LINE__, "check that out_dir exists");
            if (!rc) rc = rlaif_h5_stamp(m->file, "metrics");
        }
    }
    if (!rc && progress_path) {
        m->progress_path = xstrdup(progress_path);
        m->progress = fopen(progress_path, "a");
        if (!m->progress)
            rc = rlaif_error_sys(RLAIF_EX_IOERR, "fopen", progress_path, __FILE__, __LINE__);
    }
    if (rc) {
        rlaif_metrics_close(out);
        return rc;
    }
    return 0;
}

static phase_t *find(rlaif_metrics *m, const char *phase) {
    for (int i = 0; i < m->nphases; i++)
        if (!strcmp(m->ph[i].name, phase)) return &m->ph[i];
    return NULL;
}

static hid_t row_type(int ncols, const char *const *names) {
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(int64_t) + sizeof(double) * (size_t)(ncols + 1));
    H5Tinsert(t, "step", 0, H5T_NATIVE_INT64);
    H5Tinsert(t, "time", 8, H5T_NATIVE_DOUBLE);
    for (int i = 0; i < ncols; i++) H5Tinsert(t, names[i], 16 + 8 * (size_t)i, H5T_NATIVE_DOUBLE);
    return t;
}

/* Do the columns of an existing table match? */
static int same_columns(hid_t ds, int ncols, const char *const *names) {
    hid_t t = H5Dget_type(ds);
    int n = H5Tget_nmembers(t), same = n == ncols + 2;
    for (int i = 0; same && i < ncols; i++) {
        char *s = H5Tget_member_name(t, (unsigned)(i + 2));
        same = s && !strcmp(s, names[i]);
        H5free_memory(s);
    }
    H5Tclose(t);
    return same;
}

/* Names go verbatim into progress.jsonl keys and HDF5 paths: keep them to
 * the characters TRL-style names use, so neither needs escaping. */
static int check_name(const char *what, const char *name, int allow_slash) {
    size_t n = strlen(name);
    int ok = n > 0 && n < 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)name[i]) || strchr("_/.-", name[i]);
    if (ok && !allow_slash) ok = !strchr(name, '/');
    return ok ? 0
              : RLAIF_ERROR(RLAIF_EX_SOFTWARE,
                            "names use letters, digits and _ / . - (phases: no /)",
                            "internal: bad metric %s name '%s'", what, name);
}

/* ------------------------------------------- each step once per file */

/* The step of a progress.jsonl line of phase (as rlaif_metrics_log writes
 * it); 0 when the line belongs to another phase or is not a whole row. */
static int jl_step(const char *line, const char *phase, int64_t *step) {
    size_t n = strlen(phase), len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') return 0; /* cut off by a kill */
    if (strncmp(line, "{\"phase\":\"", 10) || strncmp(line + 10, phase, n) ||
        strncmp(line + 10 + n, "\",\"step\":", 9))
        return 0;
    char *end;
    long long v = strtoll(line + 19 + n, &end, 10);
    if (end == line + 19 + n) return 0;
    *step = (int64_t)v;
    return 1;
}

static int64_t jl_last(const char *path, const char *phase) {
    FILE *f = fopen(path, "r");
    if (!f) return NO_STEP;
    char *line = NULL;
    size_t cap = 0;
    int64_t last = NO_STEP, s;
    while (getline(&line, &cap, f) > 0)
        if (jl_step(line, phase, &s) && s > last) last = s;
    free(line);
    fclose(f);
    return last;
}

/* Drop phase's rows with step > keep from progress.jsonl (and any line a
 * kill cut short): the kept lines go to a new file renamed over the old, so
 * a crash leaves one or the other whole. Other phases' rows are kept. */
static int jl_drop_after(rlaif_metrics *m, phase_t *p, int64_t keep) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", m->progress_path);
    fclose(m->progress);
    m->progress = NULL;
    FILE *in = fopen(m->progress_path, "r"), *out = fopen(tmp, "w");
    if (!in || !out) {
        if (in) fclose(in);
        if (out) fclose(out);
        return rlaif_error_sys(RLAIF_EX_IOERR, "fopen", in ? tmp : m->progress_path, __FILE__,
                               __LINE__);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t s, last = NO_STEP;
    while ((len = getline(&line, &cap, in)) > 0) {
        if (line[len - 1] != '\n') continue;
        if (jl_step(line, p->name, &s)) {
            if (s > keep) continue;
            if (s > last) last = s;
        }
        fwrite(line, 1, (size_t)len, out);
    }
    free(line);
    fclose(in);
    int bad = fflush(out) != 0 || fsync(fileno(out)) != 0;
    bad |= fclose(out) != 0;
    if (bad || rename(tmp, m->progress_path) != 0) {
        unlink(tmp);
        return rlaif_error_sys(RLAIF_EX_IOERR, bad ? "write" : "rename", tmp, __FILE__, __LINE__);
    }
    m->progress = fopen(m->progress_path, "a");
    if (!m->progress)
        return rlaif_error_sys(RLAIF_EX_IOERR, "fopen", m->progress_path, __FILE__, __LINE__);
    p->last_jl = last;
    return 0;
}

/* Drop the table's rows with step > keep; sets last_h5 to the newest left. */
static int h5_drop_after(phase_t *p, int64_t keep) {
    hsize_t rows;
    RLAIF_TRY(rlaif_h5_rows(p->ds, &rows));
    p->last_h5 = NO_STEP;
    if (!rows) return 0;
    int64_t *steps = xmalloc(sizeof(int64_t) * rows);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(int64_t));
    H5Tinsert(t, "step", 0, H5T_NATIVE_INT64);
    int rc = rlaif_h5_read_rows(p->ds, t, steps, 0, rows);
    H5Tclose(t);
    hsize_t k = 0;
    while (!rc && k < rows && steps[k] <= keep) k++;
    if (!rc && k) p->last_h5 = steps[k - 1];
    free(steps);
    if (!rc && k < rows) rc = rlaif_h5_truncate(p->ds, k);
    return rc;
}

static int drop_after(rlaif_metrics *m, phase_t *p, int64_t keep) {
    if (p->ds >= 0 && p->last_h5 > keep) RLAIF_TRY(h5_drop_after(p, keep));
    if (m->progress && p->last_jl > keep) RLAIF_TRY(jl_drop_after(m, p, keep));
    return 0;
}

int rlaif_metrics_phase(rlaif_metrics *m, const char *phase, int ncols, const char *const *names) {
    if (m->rank != 0 || find(m, phase)) return 0;
    RLAIF_TRY(check_name("phase", phase, 0));
    for (int i = 0; i < ncols; i++) RLAIF_TRY(check_name("column", names[i], 1));
    if (m->nphases == MAX_PHASES)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "internal: more than %d metric phases",
                           MAX_PHASES);
    phase_t *p = &m->ph[m->nphases];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", phase);
    p->ncols = ncols;
    p->ds = -1;
    p->type = row_type(ncols, names);
    RLAIF_CHECK_H5(p->type, "metric names must be unique");
    p->cols = xmalloc(sizeof(char *) * (size_t)(ncols ? ncols : 1));
    for (int i = 0; i < ncols; i++) p->cols[i] = xstrdup(names[i]);
    m->nphases++;
    p->last_h5 = NO_STEP;
    p->last_jl = m->progress ? jl_last(m->progress_path, phase) : NO_STEP;
    if (m->file < 0) return 0;
    if (rlaif_h5_exists(m->file, phase)) {
        p->ds = H5Dopen2(m->file, phase, H5P_DEFAULT);
        RLAIF_CHECK_H5(p->ds, NULL);
        if (!same_columns(p->ds, ncols, names))
            return RLAIF_ERROR(RLAIF_EX_USAGE,
                               "use a fresh out_dir, or remove the phase's table from metrics.h5",
                               "metrics.h5 already has a /%s table with other columns", phase);
        return h5_drop_after(p, INT64_MAX);
    }
    return rlaif_h5_create_1d(m->file, phase, p->type, 256, &p->ds);
}

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

int rlaif_metrics_log(rlaif_metrics *m, const char *phase, int64_t step, const double *values) {
    if (m->rank != 0) return 0;
    phase_t *p = find(m, phase);
    if (!p)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "internal: metrics phase %s not declared",
                           phase);
    if (step <= p->last_h5 || step <= p->last_jl) RLAIF_TRY(drop_after(m, p, step - 1));
    double now = rlaif_wall_time();
    if (p->ds >= 0) {
        size_t sz = 16 + 8 * (size_t)p->ncols;
        char *row = xmalloc(sz);
        memcpy(row, &step, 8), memcpy(row + 8, &now, 8);
        memcpy(row + 16, values, 8 * (size_t)p->ncols);
        rlaif_h5_opts o;
        rlaif_h5_opts_default(&o);
        o.collective_data = 0; /* a serial file */
        int rc = rlaif_h5_append(p->ds, p->type, row, 1, MPI_COMM_SELF, &o, NULL, NULL);
        free(row);
        RLAIF_TRY(rc);
        RLAIF_CHECK_H5(H5Fflush(m->file, H5F_SCOPE_LOCAL), "the file system may be full");
        p->last_h5 = step;
    }
    if (m->progress) {
        FILE *f = m->progress;
        fprintf(f, "{\"phase\":\"%s\",\"step\":%lld,\"time\":%.3f", phase, (long long)step, now);
        for (int i = 0; i < p->ncols; i++) {
            fprintf(f, ",\"%s\":", p->cols[i]);
            json_num(f, values[i]);
        }
        fputs("}\n", f);
        if (fflush(f) != 0)
            return rlaif_error_sys(RLAIF_EX_IOERR, "fflush", "progress.jsonl", __FILE__, __LINE__);
        p->last_jl = step;
    }
    return 0;
}

int rlaif_metrics_rewind(rlaif_metrics *m, const char *phase, int64_t step) {
    if (m->rank != 0) return 0;
    phase_t *p = find(m, phase);
    return p ? drop_after(m, p, step) : 0;
}

int rlaif_metrics_summary(rlaif_metrics *m, const char *phase, int n, const char *const *names,
                          const double *values) {
    if (m->rank != 0 || m->file < 0) return 0;
    RLAIF_TRY(check_name("phase", phase, 0));
    char path[128];
    snprintf(path, sizeof path, "summary/%s", phase);
    RLAIF_TRY(rlaif_h5_mkgroups(m->file, path));
    hid_t g = H5Gopen2(m->file, path, H5P_DEFAULT);
    RLAIF_CHECK_H5(g, NULL);
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) rc = rlaif_h5_attr_f64(g, names[i], values[i]);
    H5Gclose(g);
    RLAIF_TRY(rc);
    RLAIF_CHECK_H5(H5Fflush(m->file, H5F_SCOPE_LOCAL), "the file system may be full");
    return 0;
}

int rlaif_metrics_close(rlaif_metrics **pm) {
    rlaif_metrics *m = *pm;
    if (!m) return 0;
    for (int i = 0; i < m->nphases; i++) {
        if (m->ph[i].ds >= 0) H5Dclose(m->ph[i].ds);
        H5Tclose(m->ph[i].type);
        for (int j = 0; j < m->ph[i].ncols; j++) free(m->ph[i].cols[j]);
        free(m->ph[i].cols);
    }
    int rc = rlaif_h5_close_file(&m->file);
    if (m->progress && fclose(m->progress) != 0 && !rc)
        rc = rlaif_error_sys(RLAIF_EX_IOERR, "fclose", "progress.jsonl", __FILE__, __LINE__);
    free(m->progress_path);
    free(m);
    *pm = NULL;
    return rc;
}

int rlaif_metrics_open_run(const char *out_dir, MPI_Comm comm, rlaif_metrics **out) {
    char h5[4200], jl[4200];
    rlaif_path_join(h5, sizeof h5, out_dir, "metrics.h5");
    rlaif_path_join(jl, sizeof jl, out_dir, "progress.jsonl");
    return rlaif_metrics_open(h5, jl, comm, out);
}
