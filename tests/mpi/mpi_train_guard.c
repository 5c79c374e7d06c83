/* mpi_train_guard.c - run under mpiexec -n 4 (every rank a learner): the
 * numeric guards of the training loop on a tiny real model.
 *  - a non-finite loss, or a NaN gradient on ONE learner only, skips the step
 *    on every learner: parameters, moments and the AdamW step bit for bit
 *    unchanged, the skip counted; a finite step does change them;
 *  - train.max_bad_steps (3) non-finite steps in a row stop rlaif_train_run on
 *    every learner with an error naming the step and the last good
 *    checkpoint, and no checkpoint of the streak is written; a shorter streak
 *    is skipped and the phase finishes. */
#include "rlaif/core/config.h"
#include "rlaif/core/error.h"
#include "rlaif/phases/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"

static int rank, nproc;
static char out_dir[256];

static rlaif_config *config(long max_bad) {
    char d[300], mb[64];
    snprintf(d, sizeof d, "run.out_dir=%s", out_dir);
    snprintf(mb, sizeof mb, "train.max_bad_steps=%ld", max_bad);
    char *sets[] = {d,
                    "model.n_layer=1",
                    "model.n_embd=16",
                    "model.n_head=2",
                    "model.max_seq_len=16",
                    "sft.steps=12",
                    "sft.batch_size=4",
                    "sft.warmup_steps=0",
                    "checkpoint.every=2",
                    "checkpoint.keep=100",
                    "run.log_every=100",
                    mb};
    rlaif_config *cfg = NULL;
    char *no_env[] = {NULL};
    int st = rank == 0 ? rlaif_config_load(&cfg, NULL, 12, sets, no_env) : 0;
    ck_assert_int_eq(rlaif_config_bcast(&cfg, st, 0, MPI_COMM_WORLD), 0);
    return cfg;
}

static void fresh_dir(const char *tag) {
    if (rank == 0) {
        snprintf(out_dir, sizeof out_dir, "/tmp/rlaif-guard-%s-XXXXXX", tag);
        ck_assert_ptr_nonnull(mkdtemp(out_dir));
    }
    MPI_Bcast(out_dir, sizeof out_dir, MPI_CHAR, 0, MPI_COMM_WORLD);
}

/* Finite, step-dependent gradients; steps in [bad_from, bad_to) get a NaN in
 * one element on the last learner only (its shard goes to another learner in
 * the reduce-scatter, so only the reduced norm can tell every learner). */
typedef struct {
    long bad_from, bad_to;
} fault;

static int batch(rlaif_learner *L, void *ud, rlaif_batch_stats *st) {
    const fault *f = ud;
    rlaif_model_grads_ready(&L->model); /* written here, not by a backward */
    for (size_t i = 0; i < L->model.table.total; i++)
        L->model.grads[i] = 1e-3f * sinf((float)(i % 977) + (float)L->step);
    if (L->step >= f->bad_from && L->step < f->bad_to && L->rank == L->size - 1)
        L->model.grads[L->model.table.total / 3] = NAN;
    st->loss = 1.0 / L->size, st->tokens = 16;
    return 0;
}

static rlaif_phase phase(fault *f) {
    rlaif_phase ph = {.name = "sft", .batch = batch, .ud = f};
    return ph;
}

/* The learner's state as bytes: full params, its moments, the counters. */
static void cleanup(rlaif_learner *L, rlaif_config *cfg);

static size_t snapshot(const rlaif_learner *L, unsigned char **buf) {
    size_t np = L->model.table.total, ns = L->end - L->begin;
    size_t n = sizeof(float) * (np + 2 * ns) + 2 * sizeof(long);
    unsigned char *b = malloc(n), *p = b;
    memcpy(p, L->model.params, sizeof(float) * np), p += sizeof(float) * np;
    memcpy(p, L->opt.m, sizeof(float) * ns), p += sizeof(float) * ns;
    memcpy(p, L->opt.v, sizeof(float) * ns), p += sizeof(float) * ns;
    memcpy(p, &L->opt.step, sizeof(long)), p += sizeof(long);
    long zero = 0; /* skipped is compared separately */
    memcpy(p, &zero, sizeof(long));
    *buf = b;
    return n;
}

START_TEST(skip_keeps_state) {
    fresh_dir("skip");
    rlaif_config *cfg = config(5);
    rlaif_learner L;
    ck_assert_int_eq(rlaif_learner_init(&L, cfg, MPI_COMM_WORLD, "sft", 0), 0);
    fault f = {0, 0};
    rlaif_batch_stats st;
    for (int kind = 0; kind < 3; kind++) {
        /* kind 0: NaN loss; 1: NaN gradient on one learner; 2: a finite step */
        memset(&st, 0, sizeof st);
        batch(&L, &f, &st);
        if (kind == 1 && rank == nproc - 1) L.model.grads[L.model.table.total / 3] = NAN;
        unsigned char *before, *after;
        size_t n = snapshot(&L, &before);
        long skipped = L.opt.skipped;
        rlaif_step_info info;
        ck_assert_int_eq(rlaif_learner_update(&L, kind == 0 ? NAN : 1.0, &info), 0);
        snapshot(&L, &after);
        int same = memcmp(before, after, n) == 0;
        if (kind < 2) {
            ck_assert_msg(same, "kind %d: a skipped step changed the state on rank %d", kind, rank);
            ck_assert_int_eq(info.skipped, 1);
            ck_assert_int_eq(L.opt.skipped, skipped + 1);
        } else {
            ck_assert_msg(!same, "a finite step changed nothing (the test cannot see updates)");
            ck_assert_int_eq(info.skipped, 0);
        }
        free(before), free(after);
    }
    cleanup(&L, cfg);
}
END_TEST

static void cleanup(rlaif_learner *L, rlaif_config *cfg) {
    rlaif_learner_free(L);
    rlaif_config_free(cfg);
    MPI_Barrier(MPI_COMM_WORLD);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out_dir);
    if (rank == 0) ck_assert_int_eq(system(cmd), 0);
}

static int file_exists(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/ckpt/%s", out_dir, name);
    return access(p, F_OK) == 0;
}

START_TEST(streak_stops_phase) {
    fresh_dir("streak");
    rlaif_config *cfg = config(3);
    rlaif_learner L;
    ck_assert_int_eq(rlaif_learner_init(&L, cfg, MPI_COMM_WORLD, "sft", 0), 0);
    fault f = {4, 100}; /* steps 5, 6, 7, ... (L.step counts from 0) are bad */
    rlaif_phase ph = phase(&f);
    int rc = rlaif_train_run(&L, &ph);
    ck_assert_int_eq(rc, RLAIF_EX_FAIL); /* on every learner */
    const char *msg = rlaif_error_message();
    ck_assert_msg(strstr(msg, "3 steps in a row") && strstr(msg, "last at step 7") &&
                      strstr(msg, "sft-00000004.h5"),
                  "message: %s", msg);
    ck_assert_int_eq(L.step, 7);
    ck_assert_int_eq(L.opt.skipped, 3);
    ck_assert(file_exists("sft-00000002.h5") && file_exists("sft-00000004.h5"));
    ck_assert_msg(!file_exists("sft-00000006.h5"), "a checkpoint was written during the streak");
    rlaif_error_clear();
    cleanup(&L, cfg);
}
END_TEST

START_TEST(short_streak_finishes) {
    fresh_dir("short");
    rlaif_config *cfg = config(3);
    rlaif_learner L;
    ck_assert_int_eq(rlaif_learner_init(&L, cfg, MPI_COMM_WORLD, "sft", 0), 0);
    fault f = {4, 6}; /* two bad steps: skipped, then training goes on */
    rlaif_phase ph = phase(&f);
    ck_assert_int_eq(rlaif_train_run(&L, &ph), 0);
    ck_assert_int_eq(L.step, 12);
    ck_assert_int_eq(L.opt.skipped, 2);
    ck_assert_int_eq(L.opt.step, 10);
    ck_assert(file_exists("sft-00000012.h5"));
    ck_assert_msg(!file_exists("sft-00000006.h5"), "a checkpoint was written during the streak");
    cleanup(&L, cfg);
}
END_TEST

static Suite *make_suite(void) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nproc);
    Suite *s = suite_create("train_guard");
    TCase *tc = tcase_create("guard");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, skip_keeps_state);
    tcase_add_test(tc, streak_stops_phase);
    tcase_add_test(tc, short_streak_finishes);
    suite_add_tcase(s, tc);
    return s;
}
