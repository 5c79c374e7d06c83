/* mpi_gemm_agree.c - run under mpiexec -n 4: the job's product-path table
 * (rlaif_gemm_agree) is rank 0's on every rank, on 2 ranks (a split of the
 * world) and on all 4, even when the other ranks' own timings say otherwise
 * (they start from a table of their own with every choice flipped, as a
 * rank that timed differently would have); rank 0 records it, and a second
 * agreement on the same record (a resume) or on the same cache (another
 * job on this machine) times nothing and gives the same table. */
#include "rlaif/app/gemm_setup.h"
#include "rlaif/core/error.h"
#include "rlaif/engine/gemm_choice.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"

static const rlaif_model_config mc = {
    .n_layer = 1, .n_embd = 32, .n_head = 2, .vocab_size = 64, .max_seq_len = 16};

/* The current table as text (caller frees). */
static char *table(void) {
    size_t n = rlaif_gemm_choices_get(NULL, 0);
    char *t = malloc(n);
    rlaif_gemm_choices_get(t, n);
    return t;
}

/* What a rank that timed differently would hold: its own timing of the
 * classes with every sgemm / smallm choice swapped (packed: sgemm). */
static void skewed_table(void) {
    rlaif_gemm_choices_clear();
    rlaif_model_gemm_calibrate(&mc, RLAIF_PREC_FP32, 1, 0);
    char *t = table(), *out = malloc(strlen(t) + 64), *o = out;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        char *sg = strstr(line, " sgemm "), *sm = strstr(line, " smallm ");
        char *pk = strstr(line, " packed ");
        const char *from = sg ? " sgemm " : sm ? " smallm " : " packed ";
        const char *to = sg ? " smallm " : " sgemm ";
        char *at = sg ? sg : sm ? sm : pk;
        ck_assert_ptr_nonnull(at);
        o += sprintf(o, "%.*s%s%s\n", (int)(at - line), line, to, at + strlen(from));
    }
    ck_assert_int_eq(rlaif_gemm_choices_set(out), 0);
    free(t), free(out);
}

/* The first check that failed (on any rank of its communicator), "" if
 * none. Checks do not assert on the spot: a rank leaving a test early
 * would leave the others waiting in the next collective; the tests assert
 * this at their end, every rank of the world the same way. */
static char failed[256];

static void expect(MPI_Comm comm, int cond, const char *what) {
    int all = 0;
    MPI_Allreduce(&cond, &all, 1, MPI_INT, MPI_MIN, comm);
    if (!all && !*failed) snprintf(failed, sizeof failed, "not on every rank: %s", what);
}

/* Every rank of the world: no check failed anywhere. */
static void assert_none_failed(void) {
    int ok = !*failed, all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    ck_assert_msg(all, "%s", *failed ? failed : "a check failed on another rank");
    failed[0] = '\0';
}

/* Rank 0's text on every rank of comm equals the rank's own. */
static void same_as_root(MPI_Comm comm) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    char *mine = table();
    long long n = (long long)strlen(mine) + 1;
    MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, comm);
    char *root = rank == 0 ? strdup(mine) : malloc((size_t)n);
    MPI_Bcast(root, (int)n, MPI_CHAR, 0, comm);
    expect(comm, !strcmp(mine, root), "the table is rank 0's");
    free(mine), free(root);
}

/* A fresh folder named on every rank of comm. */
static void tmpdir(MPI_Comm comm, char *dir) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    if (rank == 0) {
        strcpy(dir, "/tmp/rlaif-gemm-agree-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
    }
    MPI_Bcast(dir, 64, MPI_CHAR, 0, comm);
}

static void agree_on(MPI_Comm comm) {
    int rank, timed = -1;
    char dir[64], rec[128], rec2[128], cache[128];
    MPI_Comm_rank(comm, &rank);
    tmpdir(comm, dir);
    snprintf(rec, sizeof rec, "%s/gemm_choices.txt", dir);
    snprintf(rec2, sizeof rec2, "%s/other_job.txt", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    if (rank == 0)
        rlaif_gemm_choices_clear();
    else
        skewed_table();
    int rc = rlaif_gemm_agree(comm, &mc, RLAIF_PREC_FP32, 0, 1, rec, cache, &timed);
    expect(comm, rc == 0 && (rank != 0 || timed > 0), "a first agreement times");
    same_as_root(comm);
    char *first = table();
    /* a resume: the record, nothing timed, the same table */
    if (rank != 0) skewed_table();
    rlaif_gemm_choices_clear();
    rc = rlaif_gemm_agree(comm, &mc, RLAIF_PREC_FP32, 0, 1, rec, NULL, &timed);
    expect(comm, rc == 0 && (rank != 0 || timed == 0), "a resume times nothing");
    char *again = table();
    expect(comm, !strcmp(first, again), "a resume has the table of the run before");
    /* another job on this machine: the cache, nothing timed */
    rlaif_gemm_choices_clear();
    rc = rlaif_gemm_agree(comm, &mc, RLAIF_PREC_FP32, 0, 1, rec2, cache, &timed);
    expect(comm, rc == 0 && (rank != 0 || (timed == 0 && access(rec2, R_OK) == 0)),
           "another job takes the cache, times nothing and records it");
    free(again);
    again = table();
    expect(comm, !strcmp(first, again), "the cache gives the same table");
    free(first), free(again);
    MPI_Barrier(comm);
    if (rank == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    rlaif_gemm_choices_clear();
}

START_TEST(test_two_ranks) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm two;
    MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &two);
    if (two != MPI_COMM_NULL) agree_on(two), MPI_Comm_free(&two);
    assert_none_failed();
}
END_TEST

START_TEST(test_world) {
    int n;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    ck_assert_int_ge(n, 2);
    agree_on(MPI_COMM_WORLD);
    assert_none_failed();
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("gemm_agree");
    TCase *tc = tcase_create("agree");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_two_ranks);
    tcase_add_test(tc, test_world);
    suite_add_tcase(s, tc);
    return s;
}
