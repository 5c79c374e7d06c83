/* test_config.c - job-file parsing: good files, precedence, every kind of
 * bad file, durations, print/reload round trip. */
#include "rlaif/core/config.h"
#include "rlaif/core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"

static char path[256];
static char *no_env[] = {NULL};

/* Write text to a fresh temporary job file; returns its path. */
static const char *job(const char *text) {
    snprintf(path, sizeof path, "/tmp/rlaif-test-config-%d.ini", (int)getpid());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load text expecting failure with code; message must contain each needle. */
static void expect_error(const char *text, int code, const char *n1, const char *n2) {
    rlaif_config *cfg = (rlaif_config *)1;
    int rc = rlaif_config_load(&cfg, job(text), 0, NULL, no_env);
    ck_assert_msg(rc == code, "expected %d, got %d (%s) for:\n%s", code, rc, rlaif_error_message(),
                  text);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(rlaif_error_message(), n1), "'%s' not in '%s'", n1, rlaif_error_message());
    if (n2)
        ck_assert_msg(strstr(rlaif_error_message(), n2), "'%s' not in '%s'", n2,
                      rlaif_error_message());
}

START_TEST(defaults_and_good_file) {
    rlaif_config *cfg;
    const char *p = job("; comment\n# another\n[run]\nseed = 42\nout_dir = \"out dir; x\"\n\n"
                        "[ppo]\nkl_coef=0.2\nkl_estimator = k3\nwhiten_rewards = no\n"
                        "[run]\nwalltime = 01:30:00\n");
    ck_assert_int_eq(rlaif_config_load(&cfg, p, 0, NULL, no_env), 0);
    ck_assert_int_eq(rlaif_cfg_int(cfg, "run.seed"), 42);
    ck_assert_str_eq(rlaif_cfg_str(cfg, "run.out_dir"), "out dir; x");
    ck_assert_double_eq(rlaif_cfg_float(cfg, "ppo.kl_coef"), 0.2);
    ck_assert_str_eq(rlaif_cfg_str(cfg, "ppo.kl_estimator"), "k3");
    ck_assert_int_eq(rlaif_cfg_bool(cfg, "ppo.whiten_rewards"), 0);
    ck_assert_double_eq(rlaif_cfg_float(cfg, "run.walltime"), 5400);
    ck_assert_double_eq(rlaif_cfg_float(cfg, "ppo.lam"), 0.95); /* default */
    ck_assert_str_eq(rlaif_cfg_origin(cfg, "ppo.lam"), "default");
    char want[300];
    snprintf(want, sizeof want, "%s:4", p);
    ck_assert_str_eq(rlaif_cfg_origin(cfg, "run.seed"), want);
    snprintf(want, sizeof want, "%s:12", p);
    ck_assert_str_eq(rlaif_cfg_origin(cfg, "run.walltime"), want);
    rlaif_config_free(cfg);
}
END_TEST

START_TEST(precedence) {
    rlaif_config *cfg;
    char *env[] = {"RLAIF_RUN_SEED=7", "RLAIF_PPO_KL_COEF=0.3", "UNRELATED=1", NULL};
    char *sets[] = {"ppo.kl_coef=0.4"};
    const char *p = job("[run]\nseed = 1\n[ppo]\nkl_coef = 0.2\ngamma = 0.9\n");
    ck_assert_int_eq(rlaif_config_load(&cfg, p, 1, sets, env), 0);
    ck_assert_int_eq(rlaif_cfg_int(cfg, "run.seed"), 7);           /* env beats file */
    ck_assert_double_eq(rlaif_cfg_float(cfg, "ppo.kl_coef"), 0.4); /* --set beats env */
    ck_assert_double_eq(rlaif_cfg_float(cfg, "ppo.gamma"), 0.9);   /* file beats default */
    ck_assert_str_eq(rlaif_cfg_origin(cfg, "run.seed"), "environment RLAIF_RUN_SEED");
    ck_assert_str_eq(rlaif_cfg_origin(cfg, "ppo.kl_coef"), "--set");
    rlaif_config_free(cfg);
}
END_TEST

START_TEST(bad_files) {
    expect_error("[ppoo]\nkl_coef = 1\n", RLAIF_EX_USAGE, ":1: unknown section [ppoo]",
                 "did you mean [ppo]");
    expect_error("[ppo]\n\nkl_coeff = 1\n", RLAIF_EX_USAGE, ":3: unknown key 'kl_coeff'",
                 "did you mean 'ppo.kl_coef'");
    expect_error("[run]\nseed = abc\n", RLAIF_EX_USAGE, ":2: run.seed = 'abc' is not an integer",
                 NULL);
    expect_error("[run]\nseed = 12x\n", RLAIF_EX_USAGE, "is not an integer", NULL);
    expect_error("[ppo]\nkl_coef = nan\n", RLAIF_EX_USAGE, "is not a finite number", NULL);
    expect_error("[ppo]\nlam = 1.5\n", RLAIF_EX_USAGE, ":2: ppo.lam = 1.5 is out of range", NULL);
    expect_error("[judge]\nmax_inflight = 0\n", RLAIF_EX_USAGE, "out of range", NULL);
    expect_error("[ppo]\nwhiten_rewards = maybe\n", RLAIF_EX_USAGE, "is not a boolean", NULL);
    expect_error("[ppo]\nbaseline = sac\n", RLAIF_EX_USAGE, "'sac' is not one of loo|group|moving",
                 NULL);
    expect_error("[run]\nwalltime = soon\n", RLAIF_EX_USAGE, "is not a duration", NULL);
    expect_error("[run]\nseed = 1\n\nseed = 2\n", RLAIF_EX_USAGE,
                 ":4: duplicate key run.seed (first set on line 2)", NULL);
    expect_error("seed = 1\n", RLAIF_EX_USAGE, ":1: key 'seed' is outside any [section]", NULL);
    expect_error("[run]\nthis line has no equals sign\n", RLAIF_EX_USAGE, ":2: syntax error", NULL);
    expect_error("[run\nseed = 1\n", RLAIF_EX_USAGE, ":1: syntax error", NULL);
    char longline[400];
    memset(longline, 'a', sizeof longline);
    memcpy(longline, "[run]\nout_dir = ", 16);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = 0;
    expect_error(longline, RLAIF_EX_USAGE, ":2: line longer than", NULL);
}
END_TEST

START_TEST(missing_file) {
    rlaif_config *cfg;
    ck_assert_int_eq(rlaif_config_load(&cfg, "/nonexistent/job.ini", 0, NULL, no_env),
                     RLAIF_EX_NOINPUT);
    ck_assert_ptr_nonnull(
        strstr(rlaif_error_message(), "cannot open job file '/nonexistent/job.ini'"));
}
END_TEST

START_TEST(bad_overrides) {
    rlaif_config *cfg;
    char *s1[] = {"ppo.kl_coef"};
    ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 1, s1, no_env), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "expected section.key=value"));
    char *s2[] = {"ppo.kl_cof=1"};
    ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 1, s2, no_env), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "did you mean 'ppo.kl_coef'"));
    char *s3[] = {"ppo.lam=2"};
    ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 1, s3, no_env), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "--set: ppo.lam = 2 is out of range"));
    char *env[] = {"RLAIF_PPO_KL_COEFF=1", NULL};
    ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 0, NULL, env), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "RLAIF_PPO_KL_COEFF names no"));
    char *env2[] = {"RLAIF_JUDGE_TIMEOUT=forever", NULL};
    ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 0, NULL, env2), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "environment RLAIF_JUDGE_TIMEOUT"));
}
END_TEST

START_TEST(durations) {
    double s;
    ck_assert_int_eq(rlaif_parse_duration("90", &s), 0);
    ck_assert_double_eq(s, 90);
    ck_assert_int_eq(rlaif_parse_duration("1.5h", &s), 0);
    ck_assert_double_eq(s, 5400);
    ck_assert_int_eq(rlaif_parse_duration("15m", &s), 0);
    ck_assert_double_eq(s, 900);
    ck_assert_int_eq(rlaif_parse_duration("250ms", &s), 0);
    ck_assert_double_eq(s, 0.25);
    ck_assert_int_eq(rlaif_parse_duration("1-00:00:00", &s), -1);
    ck_assert_int_eq(rlaif_parse_duration("02:03", &s), 0);
    ck_assert_double_eq(s, 123);
    ck_assert_int_eq(rlaif_parse_duration("01:02:03", &s), 0);
    ck_assert_double_eq(s, 3723);
    ck_assert_int_eq(rlaif_parse_duration("-5", &s), -1);
    ck_assert_int_eq(rlaif_parse_duration("5 parsecs", &s), -1);
    ck_assert_int_eq(rlaif_parse_duration("", &s), -1);
}
END_TEST

/* The printed configuration is itself a valid job file with the same values. */
START_TEST(print_reload) {
    rlaif_config *a, *b;
    char *sets[] = {"run.out_dir=a;b # c", "ppo.kl_coef=0.125"};
    ck_assert_int_eq(rlaif_config_load(&a, NULL, 2, sets, no_env), 0);
    char *dump = rlaif_config_dump(a);
    ck_assert_int_eq(rlaif_config_load(&b, job(dump), 0, NULL, no_env), 0);
    ck_assert_str_eq(rlaif_cfg_str(b, "run.out_dir"), "a;b # c");
    ck_assert_double_eq(rlaif_cfg_float(b, "ppo.kl_coef"), 0.125);
    for (const rlaif_cfg_spec *s = rlaif_config_schema; s->section; s++) {
        char name[200];
        snprintf(name, sizeof name, "%s.%s", s->section, s->key);
        ck_assert_str_eq(rlaif_cfg_str(a, name), rlaif_cfg_str(b, name));
    }
    free(dump);
    rlaif_config_free(a);
    rlaif_config_free(b);
}
END_TEST

START_TEST(edit_distance) {
    ck_assert_int_eq(rlaif_edit_distance("kl_coef", "kl_coef"), 0);
    ck_assert_int_eq(rlaif_edit_distance("kl_coeff", "kl_coef"), 1);
    ck_assert_int_eq(rlaif_edit_distance("kitten", "sitting"), 3);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, defaults_and_good_file);
    tcase_add_test(tc, precedence);
    tcase_add_test(tc, bad_files);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, bad_overrides);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, print_reload);
    tcase_add_test(tc, edit_distance);
    suite_add_tcase(s, tc);
    return s;
}
