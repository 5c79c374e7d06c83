/* mpi_train_hooks.c - run under mpiexec -n 4 (every rank a learner): the RL
 * hooks of the training loop (rlaif_learner_hooks: outer before each step,
 * after_update after each update) on a tiny real model.
 *  - order: outer, batch, after_update for every step, exactly steps times
 *    each, outer seeing L->step = k and after_update k + 1 with the update's
 *    lr and grad norm (checked against an independent norm);
 *  - outer feeds the step: data it writes changes the update exactly as a
 *    batch computing that data itself, and unlike an outer that does nothing;
 *  - an error from either hook on ONE learner ends rlaif_train_run on every
 *    learner at the same step with that code (an alarm turns a hang into a
 *    failure);
 *  - a stop requested in after_update on one learner is taken by all at the
 *    next step boundary (exit 75, no further step). */
#include "rlaif/core/config.h"
#include "rlaif/core/error.h"
#include "rlaif/core/stop.h"
#include "rlaif/phases/train.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"

#define STEPS 6
/* seconds: a deadlock is minutes, a run here is seconds */
#ifndef NO_LIMIT
#define NO_LIMIT 300
#endif

static int rank, nproc;
static char out_dir[256];

static rlaif_config *config(void) {
    char d[300];
    snprintf(d, sizeof d, "run.out_dir=%s", out_dir);
    char *sets[] = {d,
                    "model.n_layer=1",
                    "model.n_embd=16",
                    "model.n_head=2",
                    "model.max_seq_len=16",
                    "sft.steps=6",
                    "sft.batch_size=4",
                    "sft.warmup_steps=0",
                    "checkpoint.every=0",
                    "run.log_every=100"};
    rlaif_config *cfg = NULL;
    char *no_env[] = {NULL};
    int st = rank == 0 ? rlaif_config_load(&cfg, NULL, 10, sets, no_env) : 0;
    ck_assert_int_eq(rlaif_config_bcast(&cfg, st, 0, MPI_COMM_WORLD), 0);
    return cfg;
}

/* Every run starts from scratch (a checkpoint left behind would be resumed). */
static void fresh_dir(const char *tag) {
    if (rank == 0) {
        snprintf(out_dir, sizeof out_dir, "/tmp/rlaif-hooks-%s-XXXXXX", tag);
        ck_assert_ptr_nonnull(mkdtemp(out_dir));
    }
    MPI_Bcast(out_dir, sizeof out_dir, MPI_CHAR, 0, MPI_COMM_WORLD);
}

enum { EV_OUTER = 1, EV_BATCH, EV_AFTER };

/* The hooks' and the phase's shared state: what each call saw, the data the
 * step trains on, and the faults to inject. */
typedef struct {
    int events[3 * STEPS + 8][2]; /* (kind, L->step) in call order */
    int n_events;
    float lr[STEPS + 1], norm[STEPS + 1];
    float data;        /* the step's "experience": the batch's gradients depend on it */
    int outer_writes;  /* outer sets data = step + 5 (a rollout, in PPO) */
    int batch_derives; /* the batch computes that value itself (the reference run) */
    int fail_rank, fail_step, fail_after; /* hook error on fail_rank (-1 = none) */
    int stop_rank, stop_step;             /* rlaif_stop_request in after_update */
    size_t total;                         /* parameters of the model */
} rec;

static void log_event(rec *r, int kind, long step) {
    if (r->n_events < (int)(sizeof r->events / sizeof r->events[0]))
        r->events[r->n_events][0] = kind, r->events[r->n_events][1] = (int)step;
    r->n_events++;
}

static float grad_at(size_t i, float data) {
    return 1e-3f * sinf((float)(i % 977) + data);
}

static int batch(rlaif_learner *L, void *ud, rlaif_batch_stats *st) {
    rec *r = ud;
    log_event(r, EV_BATCH, L->step);
    r->total = L->model.table.total;
    float data = r->batch_derives ? (float)L->step + 5 : r->data;
    rlaif_model_grads_ready(&L->model); /* written here, not by a backward */
    for (size_t i = 0; i < L->model.table.total; i++) L->model.grads[i] = grad_at(i, data);
    st->loss = 1.0 / L->size, st->tokens = 16;
    return 0;
}

static int outer(rlaif_learner *L, void *ud) {
    rec *r = ud;
    log_event(r, EV_OUTER, L->step);
    if (r->outer_writes) r->data = (float)L->step + 5;
    if (!r->fail_after && L->rank == r->fail_rank && L->step == r->fail_step)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL, "test: outer fails at step %ld", L->step);
    return 0;
}

static int after_update(rlaif_learner *L, void *ud, const rlaif_step_info *info) {
    rec *r = ud;
    log_event(r, EV_AFTER, L->step);
    if (L->step >= 1 && L->step <= STEPS)
        r->lr[L->step] = info->lr, r->norm[L->step] = info->grad_norm;
    if (L->rank == r->stop_rank && L->step == r->stop_step) rlaif_stop_request(SIGTERM);
    if (r->fail_after && L->rank == r->fail_rank && L->step == r->fail_step)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL, "test: after_update fails at step %ld", L->step);
    return 0;
}

static rec new_rec(void) {
    rec r;
    memset(&r, 0, sizeof r);
    r.fail_rank = r.stop_rank = -1;
    return r;
}

/* One run of rlaif_train_run in a fresh directory; *params = the final full
 * parameters (caller frees) when params is not NULL. */
static int run(rec *r, int with_hooks, float **params, long *step) {
    fresh_dir("run");
    rlaif_config *cfg = config();
    rlaif_learner L;
    ck_assert_int_eq(rlaif_learner_init(&L, cfg, MPI_COMM_WORLD, "sft", 0), 0);
    rlaif_learner_hooks h = {.outer = outer, .after_update = after_update, .ud = r};
    if (with_hooks) L.hooks = &h;
    rlaif_phase ph = {.name = "sft", .batch = batch, .ud = r};
    alarm(NO_LIMIT); /* a learner left waiting in a collective kills the test */
    int rc = rlaif_train_run(&L, &ph);
    alarm(0);
    *step = L.step;
    if (params) {
        *params = malloc(sizeof(float) * L.model.table.total);
        memcpy(*params, L.model.params, sizeof(float) * L.model.table.total);
    }
    rlaif_learner_free(&L);
    rlaif_config_free(cfg);
    MPI_Barrier(MPI_COMM_WORLD);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out_dir);
    if (rank == 0) ck_assert_int_eq(system(cmd), 0);
    return rc;
}

/* 1 when cond holds on every rank (assert only on an agreed verdict). */
static int all(int cond) {
    int ok = 0;
    MPI_Allreduce(&cond, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return ok;
}

START_TEST(hooks_run_in_order) {
    rec r = new_rec();
    r.outer_writes = 1;
    long step;
    int rc = run(&r, 1, NULL, &step);
    ck_assert(all(rc == 0 && step == STEPS));
    int good = r.n_events == 3 * STEPS;
    for (int k = 0; good && k < STEPS; k++) {
        int(*e)[2] = &r.events[3 * k];
        good = e[0][0] == EV_OUTER && e[0][1] == k && e[1][0] == EV_BATCH && e[1][1] == k &&
               e[2][0] == EV_AFTER && e[2][1] == k + 1;
    }
    if (!good)
        for (int i = 0; i < r.n_events && i < 3 * STEPS + 8; i++)
            fprintf(stderr, "rank %d event %d: kind %d step %d\n", rank, i, r.events[i][0],
                    r.events[i][1]);
    ck_assert_msg(all(good), "hooks not called outer/batch/after_update once per step in order");
    /* The info is the update's: the gradients of the identical learners sum
     * to nproc g, whose norm (before clipping) is computed here in double;
     * float sums over ~10^4 terms agree to ~1e-5 relative. */
    int info_ok = 1;
    for (int k = 1; k <= STEPS; k++) {
        double s = 0;
        for (size_t i = 0; i < r.total; i++) {
            double g = (double)nproc * grad_at(i, (float)(k - 1) + 5);
            s += g * g;
        }
        double want = sqrt(s);
        if (fabs(r.norm[k] - want) > 1e-4 * want || !(r.lr[k] > 0) || !isfinite(r.lr[k])) {
            fprintf(stderr, "rank %d step %d: grad norm %g, want %g; lr %g\n", rank, k, r.norm[k],
                    want, r.lr[k]);
            info_ok = 0;
        }
    }
    ck_assert_msg(all(info_ok), "after_update did not get the step's info");
}
END_TEST

START_TEST(outer_feeds_the_step) {
    float *fed, *idle, *ref;
    long step;
    rec a = new_rec(), b = new_rec(), c = new_rec();
    a.outer_writes = 1;  /* outer writes the data the batch reads */
    c.batch_derives = 1; /* no hooks: the batch computes the same data itself */
    ck_assert(all(run(&a, 1, &fed, &step) == 0 && step == STEPS));
    ck_assert(all(run(&b, 1, &idle, &step) == 0 && step == STEPS));
    ck_assert(all(run(&c, 0, &ref, &step) == 0 && step == STEPS));
    size_t n = a.total;
    ck_assert_msg(all(memcmp(fed, ref, n * sizeof(float)) == 0),
                  "the update does not reflect the data outer wrote");
    ck_assert_msg(all(memcmp(fed, idle, n * sizeof(float)) != 0),
                  "the data outer wrote changed nothing");
    free(fed), free(idle), free(ref);
}
END_TEST

/* A hook fails on the last learner only, at step 2 (outer) or after the
 * third update (after_update): every learner returns its code there. */
static void one_learner_fails(int in_after) {
    rec r = new_rec();
    r.fail_rank = nproc - 1, r.fail_step = in_after ? 3 : 2, r.fail_after = in_after;
    long step;
    int rc = run(&r, 1, NULL, &step);
    int ok = rc == RLAIF_EX_NOINPUT && step == (in_after ? 3 : 2) &&
             strstr(rlaif_error_message(), in_after ? "after_update fails" : "outer fails");
    if (!ok)
        fprintf(stderr, "rank %d: rc %d at step %ld: %s\n", rank, rc, step, rlaif_error_message());
    rlaif_error_clear();
    ck_assert_msg(all(ok), "a hook error on one learner did not stop all at the same step");
}

START_TEST(outer_error_stops_all) {
    one_learner_fails(0);
}
END_TEST

START_TEST(after_update_error_stops_all) {
    one_learner_fails(1);
}
END_TEST

START_TEST(stop_in_after_update) {
    rec r = new_rec();
    r.stop_rank = 1, r.stop_step = 2; /* only rank 1 sees the request */
    long step;
    int rc = run(&r, 1, NULL, &step);
    int outers = 0;
    for (int i = 0; i < r.n_events; i++) outers += r.events[i][0] == EV_OUTER;
    int ok = rc == RLAIF_EX_TEMPFAIL && step == 2 && outers == 2;
    if (!ok)
        fprintf(stderr, "rank %d: rc %d at step %ld, %d outer calls\n", rank, rc, step, outers);
    rlaif_stop_reset();
    rlaif_error_clear();
    ck_assert_msg(all(ok), "a stop from after_update was not taken by all at the next step");
}
END_TEST

static Suite *make_suite(void) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nproc);
    Suite *s = suite_create("train_hooks");
    TCase *tc = tcase_create("hooks");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, hooks_run_in_order);
    tcase_add_test(tc, outer_feeds_the_step);
    tcase_add_test(tc, outer_error_stops_all);
    tcase_add_test(tc, after_update_error_stops_all);
    tcase_add_test(tc, stop_in_after_update);
    suite_add_tcase(s, tc);
    return s;
}
