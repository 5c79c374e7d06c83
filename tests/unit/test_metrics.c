/* test_metrics.c - each step of a phase is in metrics.h5 and progress.jsonl
 * once, across a resume that replays steps after its checkpoint and a
 * restart that repeats the step-0 evaluation (issue 12.11). */
#include "rlaif/storage/metrics.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"

static char dir[256], h5[300], jl[300];
static const char *const cols[] = {"loss"};

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/rlaif-metrics-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(h5, sizeof h5, "%s/metrics.h5", dir);
    snprintf(jl, sizeof jl, "%s/progress.jsonl", dir);
}

static void teardown(void) {
    unlink(h5), unlink(jl);
    rmdir(dir);
}

/* Open, declare, optionally rewind, log steps [from, to), close. */
static void session(const char *phase, long rewind, int from, int to) {
    rlaif_metrics *m;
    ck_assert_int_eq(rlaif_metrics_open(h5, jl, MPI_COMM_SELF, &m), 0);
    ck_assert_int_eq(rlaif_metrics_phase(m, phase, 1, cols), 0);
    if (rewind >= 0) ck_assert_int_eq(rlaif_metrics_rewind(m, phase, rewind), 0);
    for (int s = from; s < to; s++) {
        double v = 100.0 * from + s; /* which session wrote the row */
        ck_assert_int_eq(rlaif_metrics_log(m, phase, s, &v), 0);
    }
    ck_assert_int_eq(rlaif_metrics_close(&m), 0);
}

/* steps[] and loss[] of /phase in metrics.h5; returns the row count. */
static int h5_rows(const char *phase, long long *steps, double *loss, int max) {
    hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hid_t ds = H5Dopen2(f, phase, H5P_DEFAULT), sp = H5Dget_space(ds);
    hsize_t n;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    ck_assert_int_le((int)n, max);
    typedef struct {
        long long step;
        double loss;
    } row;
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(row));
    H5Tinsert(t, "step", HOFFSET(row, step), H5T_NATIVE_LLONG);
    H5Tinsert(t, "loss", HOFFSET(row, loss), H5T_NATIVE_DOUBLE);
    row *r = calloc(n ? n : 1, sizeof(row));
    if (n) ck_assert_int_ge(H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, r), 0);
    for (hsize_t i = 0; i < n; i++) steps[i] = r[i].step, loss[i] = r[i].loss;
    free(r);
    H5Tclose(t), H5Sclose(sp), H5Dclose(ds), H5Fclose(f);
    return (int)n;
}

/* Steps of phase in progress.jsonl, in file order; returns the count. */
static int jl_rows(const char *phase, long long *steps, int max) {
    FILE *f = fopen(jl, "r");
    ck_assert_ptr_nonnull(f);
    char line[512], key[128];
    snprintf(key, sizeof key, "{\"phase\":\"%s\",\"step\":", phase);
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) {
            ck_assert_int_lt(n, max);
            steps[n++] = atoll(line + strlen(key));
        }
    fclose(f);
    return n;
}

static void assert_each_once(const char *phase, int nsteps) {
    long long st[64];
    double loss[64];
    ck_assert_int_eq(h5_rows(phase, st, loss, 64), nsteps);
    for (int i = 0; i < nsteps; i++) ck_assert_int_eq(st[i], i);
    ck_assert_int_eq(jl_rows(phase, st, 64), nsteps);
    for (int i = 0; i < nsteps; i++) ck_assert_int_eq(st[i], i);
}

/* Killed at step 7 after a checkpoint at 5: resume rewinds to 5 and logs 6..9. */
START_TEST(resume_after_checkpoint) {
    setup();
    session("sft", -1, 0, 8);
    session("other", -1, 0, 3); /* another phase's rows are left alone */
    session("sft", 5, 6, 10);
    assert_each_once("sft", 10);
    assert_each_once("other", 3);
    long long st[64];
    double loss[64];
    h5_rows("sft", st, loss, 64);
    ck_assert(loss[5] == 5.0 && loss[6] == 606.0); /* replayed steps are the new run's */
    teardown();
}
END_TEST

/* Stopped before the first checkpoint: the restart evaluates step 0 again. */
START_TEST(step0_evaluation_repeated) {
    setup();
    session("rm_eval", 0, 0, 1);
    session("rm_eval", 0, 0, 1);
    assert_each_once("rm_eval", 1);
    long long st[4];
    double loss[4];
    h5_rows("rm_eval", st, loss, 4);
    teardown();
}
END_TEST

/* A phase that logs again without a rewind (collect, eval reruns) and a
 * progress.jsonl row cut short by a kill. */
START_TEST(replay_without_rewind) {
    setup();
    session("collect", -1, 0, 4);
    FILE *f = fopen(jl, "a");
    fputs("{\"phase\":\"collect\",\"step\":4,\"ti", f); /* no newline: killed mid-row */
    fclose(f);
    session("collect", -1, 2, 5);
    assert_each_once("collect", 5);
    teardown();
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, resume_after_checkpoint);
    tcase_add_test(tc, step0_evaluation_repeated);
    tcase_add_test(tc, replay_without_rewind);
    suite_add_tcase(s, tc);
    return s;
}
