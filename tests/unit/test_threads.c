/* test_threads.c - the per-rank thread decision (issue 15): what the
 * affinity mask, the ranks sharing it and the environment give, with no
 * launcher-specific variable involved. */
#include "rlaif/core/ranks.h"

#include <string.h>

#include "check_main.h"

static rlaif_threads decide(int cpus, int sharing, int local, const char *omp, const char *blas,
                            const char *cpt) {
    rlaif_threads t;
    rlaif_threads_decide(cpus, sharing, local, omp, blas, cpt, &t);
    return t;
}

/* srun without binding: every rank sees the whole node and must split it. */
START_TEST(shared_mask_is_split) {
    rlaif_threads t = decide(2, 2, 2, NULL, NULL, NULL);
    ck_assert_int_eq(t.team, 1);
    ck_assert_int_eq(t.blas, 1);
    t = decide(2, 4, 4, NULL, NULL, NULL); /* oversubscribed: never 0 */
    ck_assert_int_eq(t.team, 1);
    t = decide(64, 4, 4, NULL, NULL, NULL);
    ck_assert_int_eq(t.team, 16);
    ck_assert_int_eq(t.blas, 1); /* the team splits products: OpenBLAS stays at 1 */
    t = decide(64, 3, 3, NULL, NULL, NULL);
    ck_assert_int_eq(t.team, 21);
    ck_assert(strstr(t.why, "64 CPUs in the affinity mask, shared by 3 of 3 ranks"));
}
END_TEST

/* mpiexec/srun binding each rank to its own cores: the mask is the share. */
START_TEST(bound_mask_is_the_share) {
    rlaif_threads t = decide(4, 1, 8, NULL, NULL, NULL);
    ck_assert_int_eq(t.team, 4);
    t = decide(1, 1, 2, NULL, NULL, NULL);
    ck_assert_int_eq(t.team, 1);
    /* a cgroup giving the job 8 of the node's CPUs, 2 ranks in it */
    t = decide(8, 2, 2, NULL, NULL, NULL);
    ck_assert_int_eq(t.team, 4);
    t = decide(0, 0, 0, NULL, NULL, NULL); /* nonsense inputs still give 1 */
    ck_assert_int_eq(t.team, 1);
    ck_assert_int_eq(t.blas, 1);
}
END_TEST

START_TEST(slurm_cpus_per_task_caps) {
    rlaif_threads t = decide(16, 2, 2, NULL, NULL, "4");
    ck_assert_int_eq(t.team, 4);
    ck_assert(strstr(t.why, "SLURM_CPUS_PER_TASK=4"));
    t = decide(4, 2, 2, NULL, NULL, "8"); /* never above what the mask gives */
    ck_assert_int_eq(t.team, 2);
    t = decide(4, 1, 1, NULL, NULL, "x");
    ck_assert_int_eq(t.team, 4);
}
END_TEST

START_TEST(omp_num_threads_respected) {
    rlaif_threads t = decide(2, 4, 4, "3", NULL, NULL);
    ck_assert_int_eq(t.team, 3);
    ck_assert_int_eq(t.blas, 1);
    ck_assert(strstr(t.why, "OMP_NUM_THREADS=3 respected (more threads than CPUs)"));
    t = decide(16, 1, 1, "4,2", NULL, NULL); /* nested list: the outer level */
    ck_assert_int_eq(t.team, 4);
    t = decide(16, 2, 2, "many", NULL, NULL);
    ck_assert_int_eq(t.team, 8);
    ck_assert(strstr(t.why, "OMP_NUM_THREADS='many' is not a count, ignored"));
    t = decide(16, 2, 2, "0", NULL, NULL);
    ck_assert_int_eq(t.team, 8);
}
END_TEST

/* A team of 1 (the user's OMP_NUM_THREADS=1) leaves the share to OpenBLAS. */
START_TEST(openblas_consistent) {
    rlaif_threads t = decide(8, 2, 2, "1", NULL, NULL);
    ck_assert_int_eq(t.team, 1);
    ck_assert_int_eq(t.blas, 4);
    t = decide(8, 2, 2, "1", "2", NULL);
    ck_assert_int_eq(t.blas, 2);
    t = decide(8, 2, 2, "2", "4", NULL); /* never two pools spinning */
    ck_assert_int_eq(t.blas, 1);
    t = decide(2, 2, 2, "1", NULL, NULL);
    ck_assert_int_eq(t.blas, 1);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_add_test(tc, shared_mask_is_split);
    tcase_add_test(tc, bound_mask_is_the_share);
    tcase_add_test(tc, slurm_cpus_per_task_caps);
    tcase_add_test(tc, omp_num_threads_respected);
    tcase_add_test(tc, openblas_consistent);
    suite_add_tcase(s, tc);
    return s;
}
