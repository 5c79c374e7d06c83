/* mpi_ranks.c - run under mpiexec -n 4: communicators of every layout,
 * config broadcast, error agreement, collective stop, rank-count
 * independence of the RNG. */
#include "rlaif/core/config.h"
#include "rlaif/core/error.h"
#include "rlaif/core/ranks.h"
#include "rlaif/core/rng.h"
#include "rlaif/core/stop.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"

static int world_rank, world_size;

static rlaif_config *config_with(int nset, char **sets) {
    rlaif_config *cfg = NULL;
    char *no_env[] = {NULL};
    int st = 0;
    if (world_rank == 0) st = rlaif_config_load(&cfg, NULL, nset, sets, no_env);
    ck_assert_int_eq(rlaif_config_bcast(&cfg, st, 0, MPI_COMM_WORLD), 0);
    return cfg;
}

static int comm_size(MPI_Comm c) {
    int n = -1;
    if (c != MPI_COMM_NULL) MPI_Comm_size(c, &n);
    return n;
}

START_TEST(split_layout) {
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    ck_assert_int_eq(world_size, 4);
    char *sets[] = {"ranks.learner=1", "ranks.rollout=2", "ranks.judge=1"};
    rlaif_config *cfg = config_with(3, sets);
    rlaif_ranks rk;
    ck_assert_int_eq(rlaif_ranks_init(&rk, cfg, NULL), 0);
    ck_assert_int_eq(rk.colocated, 0);
    rlaif_role want = world_rank == 0   ? RLAIF_ROLE_LEARNER
                      : world_rank <= 2 ? RLAIF_ROLE_ROLLOUT
                                        : RLAIF_ROLE_JUDGE;
    ck_assert_int_eq(rk.role, want);
    ck_assert_int_eq(comm_size(rk.group[want]), rk.count[want]);
    for (int r = 0; r < RLAIF_NROLES; r++)
        if (r != (int)want) ck_assert(rk.group[r] == MPI_COMM_NULL);
    /* weight broadcast: learner 0 at rank 0 plus the 2 rollouts */
    if (want == RLAIF_ROLE_JUDGE) {
        ck_assert(rk.weights == MPI_COMM_NULL);
    } else {
        ck_assert_int_eq(comm_size(rk.weights), 3);
        int wr;
        MPI_Comm_rank(rk.weights, &wr);
        if (world_rank == 0) ck_assert_int_eq(wr, 0);
        float w = world_rank == 0 ? 42.0f : 0.0f;
        MPI_Bcast(&w, 1, MPI_FLOAT, 0, rk.weights);
        ck_assert(w == 42.0f);
    }
    ck_assert_int_eq(rlaif_ranks_require(&rk, "ppo", 1, 1, 0), 0);
    rlaif_ranks_free(&rk);
    rlaif_config_free(cfg);
}
END_TEST

START_TEST(mpmd_roles_and_colocated) {
    /* each process names its role, as srun --multi-prog would */
    const char *roles[] = {"judge", "learner", "rollout", "learner"};
    rlaif_config *cfg = config_with(0, NULL);
    rlaif_ranks rk;
    ck_assert_int_eq(rlaif_ranks_init(&rk, cfg, roles[world_rank]), 0);
    ck_assert_int_eq(rk.count[RLAIF_ROLE_LEARNER], 2);
    ck_assert_int_eq(rk.count[RLAIF_ROLE_JUDGE], 1);
    rlaif_role mine;
    rlaif_role_parse(roles[world_rank], &mine);
    ck_assert_int_eq(rk.role, mine);
    if (mine == RLAIF_ROLE_LEARNER) ck_assert_int_eq(rk.group_rank[mine], world_rank == 1 ? 0 : 1);
    if (world_rank == 1) { /* learner 0 leads the weight communicator */
        int wr;
        MPI_Comm_rank(rk.weights, &wr);
        ck_assert_int_eq(wr, 0);
    }
    rlaif_ranks_free(&rk);
    rlaif_config_free(cfg);

    char *col[] = {"ranks.layout=colocated"};
    cfg = config_with(1, col);
    ck_assert_int_eq(rlaif_ranks_init(&rk, cfg, NULL), 0);
    ck_assert_int_eq(rk.colocated, 1);
    for (int r = 0; r < RLAIF_NROLES; r++) ck_assert_int_eq(comm_size(rk.group[r]), 4);
    rlaif_ranks_free(&rk);
    rlaif_config_free(cfg);
}
END_TEST

START_TEST(layout_errors_agreed) {
    char *sets[] = {"ranks.learner=1", "ranks.rollout=1", "ranks.judge=1"};
    rlaif_config *cfg = config_with(3, sets);
    rlaif_ranks rk;
    ck_assert_int_eq(rlaif_ranks_init(&rk, cfg, NULL), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "the MPI world has 4 ranks"));
    rlaif_ranks_free(&rk);
    rlaif_config_free(cfg);
    /* one bad --role: every rank gets the same error */
    cfg = config_with(0, NULL);
    ck_assert_int_eq(rlaif_ranks_init(&rk, cfg, world_rank == 2 ? "critic" : "judge"),
                     RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "unknown role 'critic'"));
    rlaif_ranks_free(&rk);
    rlaif_config_free(cfg);
}
END_TEST

/* Every rank holds the same values and origins after the broadcast. */
START_TEST(config_bcast_identical) {
    char *sets[] = {"run.seed=77", "judge.base_url=http://127.0.0.1:9/v1"};
    rlaif_config *cfg = config_with(2, sets);
    char *dump = rlaif_config_dump(cfg);
    int len = (int)strlen(dump) + 1, maxlen;
    MPI_Allreduce(&len, &maxlen, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    ck_assert_int_eq(len, maxlen);
    char *root = malloc((size_t)len);
    memcpy(root, dump, (size_t)len);
    MPI_Bcast(root, len, MPI_CHAR, 0, MPI_COMM_WORLD);
    ck_assert_str_eq(root, dump);
    ck_assert_int_eq(rlaif_cfg_int(cfg, "run.seed"), 77);
    free(root);
    free(dump);
    rlaif_config_free(cfg);
    /* a parse error on rank 0 reaches every rank */
    rlaif_config *bad = NULL;
    char *badset[] = {"run.sed=1"};
    char *no_env[] = {NULL};
    int st = world_rank == 0 ? rlaif_config_load(&bad, NULL, 1, badset, no_env) : 0;
    ck_assert_int_eq(rlaif_config_bcast(&bad, st, 0, MPI_COMM_WORLD), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "did you mean 'run.seed'"));
}
END_TEST

START_TEST(agree_picks_lowest_failing_rank) {
    rlaif_error_clear();
    int st = 0;
    if (world_rank == 2) st = RLAIF_ERROR(RLAIF_EX_IOERR, "h2", "disk full on rank two");
    if (world_rank == 3) st = RLAIF_ERROR(RLAIF_EX_FAIL, "h3", "other failure");
    ck_assert_int_eq(rlaif_agree(MPI_COMM_WORLD, st), RLAIF_EX_IOERR);
    ck_assert_str_eq(rlaif_error_message(), "disk full on rank two");
    ck_assert_str_eq(rlaif_error_hint(), "h2");
    char buf[512];
    rlaif_error_format(buf, sizeof buf, 0);
    ck_assert_ptr_nonnull(strstr(buf, "ERROR: disk full on rank two (rank 2, mpi_ranks.c:"));
    ck_assert_int_eq(rlaif_agree(MPI_COMM_WORLD, 0), 0);
}
END_TEST

START_TEST(collective_stop) {
    rlaif_stop_reset();
    ck_assert_int_eq(rlaif_stop_init(0, 0), 0);
    ck_assert_int_eq(rlaif_should_stop(MPI_COMM_WORLD), 0);
    if (world_rank == 3) raise(SIGUSR1); /* a real signal, handled by the flag */
    ck_assert_int_eq(rlaif_should_stop(MPI_COMM_WORLD), 1);
    if (world_rank == 3) ck_assert_int_eq(rlaif_stop_signal(), SIGUSR1);
    rlaif_stop_reset();
    /* a walltime already past its margin stops every rank */
    ck_assert_int_eq(rlaif_stop_init(world_rank == 1 ? 10 : 0, world_rank == 1 ? 20 : 0), 0);
    ck_assert_int_eq(rlaif_should_stop(MPI_COMM_WORLD), 1);
    rlaif_stop_reset();
    ck_assert_int_eq(rlaif_should_stop(MPI_COMM_WORLD), 0);
}
END_TEST

/* Samples 0..N-1 drawn by P ranks (round robin) equal the serial draw. */
START_TEST(rng_rank_count_independent) {
    enum { N = 64, K = 5 };
    uint32_t serial[N * K], mine[N * K], got[N * K];
    memset(mine, 0, sizeof mine);
    for (int i = 0; i < N; i++) {
        rlaif_rng r;
        rlaif_rng_init(&r, 2024, RLAIF_STREAM_SAMPLE, 7, (uint32_t)i);
        for (int k = 0; k < K; k++) serial[i * K + k] = rlaif_rng_u32(&r);
        if (i % world_size == world_rank)
            for (int k = 0; k < K; k++) mine[i * K + k] = serial[i * K + k];
    }
    MPI_Allreduce(mine, got, N * K, MPI_UINT32_T, MPI_BOR, MPI_COMM_WORLD);
    ck_assert_mem_eq(got, serial, sizeof serial);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("mpi_ranks");
    TCase *tc = tcase_create("ranks");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, split_layout);
    tcase_add_test(tc, mpmd_roles_and_colocated);
    tcase_add_test(tc, layout_errors_agreed);
    tcase_add_test(tc, config_bcast_identical);
    tcase_add_test(tc, agree_picks_lowest_failing_rank);
    tcase_add_test(tc, collective_stop);
    tcase_add_test(tc, rng_rank_count_independent);
    suite_add_tcase(s, tc);
    return s;
}
