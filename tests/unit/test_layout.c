/* test_layout.c - rank-layout decisions, launcher checks, argument parsing
 * and the error record's user-facing format (no MPI communication). */
#include "rlaif/app/cli.h"
#include "rlaif/core/error.h"
#include "rlaif/core/ranks.h"

#include <string.h>

#include "check_main.h"

static const int none[RLAIF_NROLES] = {0, 0, 0};

/* count order in rlaif_layout_request and results: learner, rollout, judge */
static int resolve(int learner, int rollout, int judge, int layout, int world, const int *roles,
                   int count[3], int *colocated) {
    rlaif_layout_request req = {{learner, rollout, judge}, layout, ""};
    return rlaif_layout_resolve(&req, world, roles ? roles : none, count, colocated);
}

START_TEST(automatic_layouts) {
    int c[3], col;
    ck_assert_int_eq(resolve(0, 0, 0, 0, 1, NULL, c, &col), 0);
    ck_assert_int_eq(col, 1);
    ck_assert_int_eq(c[0], 1);
    ck_assert_int_eq(resolve(0, 0, 0, 0, 2, NULL, c, &col), 0);
    ck_assert_int_eq(col, 1);
    ck_assert_int_eq(resolve(0, 0, 0, 0, 4, NULL, c, &col), 0);
    ck_assert_int_eq(col, 0);
    ck_assert_int_eq(c[RLAIF_ROLE_LEARNER], 2);
    ck_assert_int_eq(c[RLAIF_ROLE_ROLLOUT], 1);
    ck_assert_int_eq(c[RLAIF_ROLE_JUDGE], 1);
    for (int w = 3; w <= 64; w++) {
        ck_assert_int_eq(resolve(0, 0, 0, 0, w, NULL, c, &col), 0);
        ck_assert_int_eq(c[0] + c[1] + c[2], w);
        ck_assert(c[0] >= 1 && c[1] >= 1 && c[2] >= 1);
    }
    /* explicit split of 2 ranks is allowed */
    ck_assert_int_eq(resolve(0, 0, 0, 1, 2, NULL, c, &col), 0);
    ck_assert_int_eq(col, 0);
}
END_TEST

START_TEST(explicit_counts) {
    int c[3], col;
    ck_assert_int_eq(resolve(2, 3, 1, 0, 6, NULL, c, &col), 0);
    ck_assert_int_eq(c[RLAIF_ROLE_ROLLOUT], 3);
    ck_assert_int_eq(resolve(2, 3, 1, 0, 4, NULL, c, &col), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "= 6, but the MPI world has 4 ranks"));
    ck_assert_int_eq(resolve(1, 1, 0, 2, 2, NULL, c, &col), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "colocated does not take rank counts"));
}
END_TEST

START_TEST(mpmd_roles) {
    int c[3], col;
    int roles[3] = {1, 2, 1}; /* learner, rollout, judge processes */
    ck_assert_int_eq(resolve(0, 0, 0, 0, 4, roles, c, &col), 0);
    ck_assert_int_eq(c[RLAIF_ROLE_ROLLOUT], 2);
    ck_assert_int_eq(col, 0);
    int partial[3] = {1, 1, 0};
    ck_assert_int_eq(resolve(0, 0, 0, 0, 4, partial, c, &col), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "2 of 4 processes were given --role"));
    ck_assert_int_eq(resolve(1, 1, 2, 0, 4, roles, c, &col), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "[ranks] rollout = 1 but 2 processes"));
    rlaif_role r;
    ck_assert_int_eq(rlaif_role_parse("judge", &r), 0);
    ck_assert_int_eq(r, RLAIF_ROLE_JUDGE);
    ck_assert_int_eq(rlaif_role_parse("critic", &r), RLAIF_EX_USAGE);
}
END_TEST

START_TEST(launcher_checks) {
    char *ok[] = {"SLURM_STEP_NUM_TASKS=4", NULL};
    char *bad[] = {"SLURM_STEP_NUM_TASKS=4", "SLURM_NTASKS=4", NULL};
    char *batch_only[] = {"SLURM_NTASKS=8", NULL}; /* batch script, no srun step */
    ck_assert_int_eq(rlaif_check_launcher(4, ok), 0);
    ck_assert_int_eq(rlaif_check_launcher(1, bad), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(
        strstr(rlaif_error_message(), "Slurm started 4 tasks but the MPI world has 1 rank"));
    ck_assert_ptr_nonnull(strstr(rlaif_error_hint(), "--mpi=pmix"));
    ck_assert_int_eq(rlaif_check_launcher(1, batch_only), 0);
    char *no_pmi[] = {"SLURM_STEP_NUM_TASKS=2", "SLURM_PROCID=0", NULL};
    char *pmix[] = {"SLURM_STEP_NUM_TASKS=2", "PMIX_RANK=0", NULL};
    char *one[] = {"SLURM_STEP_NUM_TASKS=1", NULL};
    ck_assert_int_eq(rlaif_check_pmi(no_pmi), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "Slurm started 2 tasks but none can find"));
    ck_assert_int_eq(rlaif_check_pmi(pmix), 0);
    ck_assert_int_eq(rlaif_check_pmi(one), 0);
}
END_TEST

START_TEST(arguments) {
    rlaif_args a;
    int g;
    char *argv1[] = {"rlaif",
                     "ppo",
                     "job.ini",
                     "--set",
                     "ppo.kl_coef=1",
                     "--set=run.seed=2",
                     "--role",
                     "judge",
                     "--log-dir=logs",
                     "extra",
                     NULL};
    ck_assert_int_eq(rlaif_args_parse(10, argv1, &a, &g), 0);
    ck_assert_str_eq(a.command, "ppo");
    ck_assert_str_eq(a.job_path, "job.ini");
    ck_assert_int_eq(a.nset, 2);
    ck_assert_str_eq(a.sets[1], "run.seed=2");
    ck_assert_str_eq(a.role, "judge");
    ck_assert_str_eq(a.log_dir, "logs");
    ck_assert_int_eq(a.nargs, 1);
    rlaif_args_free(&a);
    char *argv2[] = {"rlaif", "ppo", "--set", NULL};
    ck_assert_int_eq(rlaif_args_parse(3, argv2, &a, &g), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "--set needs a value"));
    rlaif_args_free(&a);
    char *argv3[] = {"rlaif", "pop", NULL};
    ck_assert_int_eq(rlaif_args_parse(2, argv3, &a, &g), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_hint(), "did you mean 'ppo'"));
    rlaif_args_free(&a);
    char *argv4[] = {"rlaif", "--version", NULL};
    ck_assert_int_eq(rlaif_args_parse(2, argv4, &a, &g), 0);
    ck_assert_int_eq(g, RLAIF_GLOBAL_VERSION);
    rlaif_args_free(&a);
    char *argv5[] = {"rlaif", NULL};
    ck_assert_int_eq(rlaif_args_parse(1, argv5, &a, &g), RLAIF_EX_USAGE);
    rlaif_args_free(&a);
}
END_TEST

START_TEST(error_format) {
    rlaif_error_clear();
    int rc = RLAIF_ERROR(RLAIF_EX_IOERR, "free some space", "writing %s failed", "x.h5");
    ck_assert_int_eq(rc, RLAIF_EX_IOERR);
    char buf[512];
    rlaif_error_format(buf, sizeof buf, 1);
    ck_assert_ptr_nonnull(strstr(buf, "ERROR on rank 0: writing x.h5 failed (test_layout.c:"));
    ck_assert_ptr_nonnull(strstr(buf, "\n  hint: free some space"));
    rlaif_error_format(buf, sizeof buf, 0);
    ck_assert_ptr_eq(strstr(buf, "ERROR: writing x.h5 failed"), buf);
    rlaif_error_context("checkpoint %d: ", 3);
    ck_assert_str_eq(rlaif_error_message(), "checkpoint 3: writing x.h5 failed");
    /* checked libc call: the message names the object and errno's text */
    FILE *f = fopen("/nonexistent/dir/file", "r");
    ck_assert_int_eq(
        rlaif_error_sys(RLAIF_EX_NOINPUT, "fopen", "/nonexistent/dir/file", __FILE__, __LINE__),
        RLAIF_EX_NOINPUT);
    ck_assert_ptr_null(f);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "No such file or directory"));
    ck_assert_ptr_nonnull(strstr(rlaif_error_hint(), "path exists"));
}
END_TEST

START_TEST(required_groups) {
    rlaif_ranks rk;
    memset(&rk, 0, sizeof rk);
    rk.count[RLAIF_ROLE_LEARNER] = 2, rk.count[RLAIF_ROLE_ROLLOUT] = 2;
    ck_assert_int_eq(rlaif_ranks_require(&rk, "ppo", 1, 1, 0), 0);
    ck_assert_int_eq(rlaif_ranks_require(&rk, "collect", 0, 1, 1), RLAIF_EX_USAGE);
    ck_assert_str_eq(rlaif_error_message(),
                     "phase 'collect' needs judge ranks but the layout has none");
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("layout");
    tcase_add_test(tc, automatic_layouts);
    tcase_add_test(tc, explicit_counts);
    tcase_add_test(tc, mpmd_roles);
    tcase_add_test(tc, launcher_checks);
    tcase_add_test(tc, arguments);
    tcase_add_test(tc, error_format);
    tcase_add_test(tc, required_groups);
    suite_add_tcase(s, tc);
    return s;
}
