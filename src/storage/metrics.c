/* metrics.c - metrics.h5 (one compound table per phase) and progress.jsonl,
 * written by rank 0 only through a serial HDF5 handle. */
#include "rlaif/storage/metrics.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/error.h"
#include "rlaif/core/h5util.h"
#include "rlaif/core/log.h"

#include <math.h>
#include <stdio.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PHASES 16

typedef struct {
    char name[64];
    int ncols;
    hid_t ds, type; /* type: step, time, ncols doubles (packed) */
    char **cols;
} phase_t;

struct rlaif_metrics {
    int rank;
    hid_t file;
    FILE *progress;
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
    if (m->file < 0) return 0;
    if (rlaif_h5_exists(m->file, phase)) {
        p->ds = H5Dopen2(m->file, phase, H5P_DEFAULT);
        RLAIF_CHECK_H5(p->ds, NULL);
        if (!same_columns(p->ds, ncols, names))
            return RLAIF_ERROR(RLAIF_EX_USAGE,
                               "use a fresh out_dir, or remove the phase's table from metrics.h5",
                               "metrics.h5 already has a /%s table with other columns", phase);
        return 0;
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
    }
    return 0;
}

int rlaif_metrics_rewind(rlaif_metrics *m, const char *phase, int64_t step) {
    if (m->rank != 0) return 0;
    phase_t *p = find(m, phase);
    if (!p || p->ds < 0) return 0;
    hsize_t rows;
    RLAIF_TRY(rlaif_h5_rows(p->ds, &rows));
    if (!rows) return 0;
    int64_t *steps = xmalloc(sizeof(int64_t) * rows);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(int64_t));
    H5Tinsert(t, "step", 0, H5T_NATIVE_INT64);
    int rc = rlaif_h5_read_rows(p->ds, t, steps, 0, rows);
    H5Tclose(t);
    hsize_t keep = 0;
    while (!rc && keep < rows && steps[keep] <= step) keep++;
    free(steps);
    if (!rc && keep < rows) rc = rlaif_h5_truncate(p->ds, keep);
    return rc;
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
