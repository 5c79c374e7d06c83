/* test_eval_lc.c - the length-controlled win rate's logistic regression
 * against closed forms: two groups of pairs at log length ratios -c and +c
 * (the saturated model: each group's fitted probability is its mean
 * outcome, so b0 = (logit p1 + logit p2) / 2, b1 = (logit p2 - logit p1) / 2c,
 * and the inverse Fisher information gives Var(b0) = (1/w1 + 1/w2) / 4 with
 * w = n p (1 - p)); with a ridge on the slope, the penalised score
 * equations and information of the same two groups; one length ratio
 * (intercept only: logit of the mean, Var = 1 / (n p (1 - p))); ties as
 * half; separation has no estimate without the ridge, a finite one with it. */
#include "rlaif/phases/eval.h"

#include <math.h>
#include <stdlib.h>

#include "check_main.h"

static double logit(double p) {
    return log(p / (1 - p));
}

static double sig(double z) {
    return 1 / (1 + exp(-z));
}

#define near(a, b, tol)                                                                            \
    ck_assert_msg(fabs((a) - (b)) <= (tol) * (1 + fabs(b)), "%.15g vs %.15g", a, b)

START_TEST(two_groups_closed_form) {
    /* group 1 at x = -c: 30 wins, 10 losses, 20 ties -> p1 = 40/60;
     * group 2 at x = +c: 70 wins, 20 losses, 10 ties -> p2 = 75/100 */
    const double c = 0.7;
    double x[160], y[160];
    int n = 0;
    for (int i = 0; i < 60; i++) x[n] = -c, y[n++] = i < 30 ? 1 : i < 40 ? 0 : 0.5;
    for (int i = 0; i < 100; i++) x[n] = c, y[n++] = i < 70 ? 1 : i < 90 ? 0 : 0.5;
    double p1 = 40.0 / 60, p2 = 75.0 / 100, w1 = 60 * p1 * (1 - p1), w2 = 100 * p2 * (1 - p2);
    double b[2], se[2];
    ck_assert_int_eq(rlaif_logit_fit(x, y, n, 0, b, se), 0);
    near(b[0], (logit(p1) + logit(p2)) / 2, 1e-9);
    near(b[1], (logit(p2) - logit(p1)) / (2 * c), 1e-9);
    near(se[0], sqrt((1 / w1 + 1 / w2) / 4), 1e-9);
    near(se[1], sqrt((1 / w1 + 1 / w2) / (4 * c * c)), 1e-9);
    /* the ridge: b0 and b1 solve the penalised score equations; the
     * standard error is the penalised information's (checked in closed
     * form: per group the fitted p_g, so Var = h11 / det) */
    double lam = 5, br[2], ser[2];
    ck_assert_int_eq(rlaif_logit_fit(x, y, n, lam, br, ser), 0);
    double q1 = sig(br[0] - c * br[1]), q2 = sig(br[0] + c * br[1]);
    near(60 * (p1 - q1) + 100 * (p2 - q2), 0.0, 1e-9);                     /* d/db0 = 0 */
    near(c * (100 * (p2 - q2) - 60 * (p1 - q1)) - lam * br[1], 0.0, 1e-9); /* d/db1 = 0 */
    ck_assert(fabs(br[1]) < fabs(b[1]));                                   /* shrunk */
    double v1 = 60 * q1 * (1 - q1), v2 = 100 * q2 * (1 - q2);
    double h00 = v1 + v2, h01 = c * (v2 - v1), h11 = c * c * (v1 + v2) + lam;
    near(ser[0], sqrt(h11 / (h00 * h11 - h01 * h01)), 1e-9);
    rlaif_lc lc;
    ck_assert_int_eq(rlaif_lc_win_rate(x, y, n, 1.959964, &lc), 0);
    ck_assert_int_eq(rlaif_logit_fit(x, y, n, RLAIF_LC_RIDGE, b, se), 0);
    near(lc.win_rate, sig(b[0]), 1e-12);
    near(lc.lo, sig(b[0] - 1.959964 * se[0]), 1e-12);
    near(lc.hi, sig(b[0] + 1.959964 * se[0]), 1e-12);
    ck_assert(lc.lo < lc.win_rate && lc.win_rate < lc.hi);
    /* the raw win rate (0.7125) is pulled up by the longer group; at equal
     * length the win rate is lower */
    ck_assert(lc.win_rate < (40.0 + 75.0) / 160);
}
END_TEST

START_TEST(one_length_ratio) {
    double x[50], y[50];
    for (int i = 0; i < 50; i++) x[i] = 0.25, y[i] = i < 30 ? 1 : i < 40 ? 0.5 : 0;
    double b[2], se[2], p = 35.0 / 50;
    ck_assert_int_eq(rlaif_logit_fit(x, y, 50, 0, b, se), 0);
    near(b[0], logit(p), 1e-9);
    ck_assert(b[1] == 0 && isnan(se[1]));
    near(se[0], 1 / sqrt(50 * p * (1 - p)), 1e-9);
    /* all ties: exactly 0.5 */
    for (int i = 0; i < 50; i++) y[i] = 0.5;
    rlaif_lc lc;
    ck_assert_int_eq(rlaif_lc_win_rate(x, y, 50, 1.959964, &lc), 0);
    near(lc.win_rate, 0.5, 1e-12);
}
END_TEST

START_TEST(no_estimate) {
    double x[20], y[20], b[2], se[2];
    for (int i = 0; i < 20; i++) x[i] = i % 3, y[i] = 1; /* all wins */
    ck_assert_int_eq(rlaif_logit_fit(x, y, 20, 0, b, se), -1);
    ck_assert(isnan(b[0]) && isnan(se[0]));
    for (int i = 0; i < 20; i++) y[i] = x[i] > 0.5; /* separated by length */
    ck_assert_int_eq(rlaif_logit_fit(x, y, 20, 0, b, se), -1);
    /* ... which the ridge keeps finite */
    ck_assert_int_eq(rlaif_logit_fit(x, y, 20, RLAIF_LC_RIDGE, b, se), 0);
    ck_assert(isfinite(b[0]) && isfinite(b[1]) && b[1] > 0 && isfinite(se[0]));
    rlaif_lc lc;
    ck_assert_int_eq(rlaif_lc_win_rate(x, y, 0, 1.959964, &lc), -1);
    ck_assert(isnan(lc.win_rate) && isnan(lc.lo) && isnan(lc.hi));
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("eval_lc");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, two_groups_closed_form);
    tcase_add_test(tc, one_length_ratio);
    tcase_add_test(tc, no_estimate);
    suite_add_tcase(s, tc);
    return s;
}
