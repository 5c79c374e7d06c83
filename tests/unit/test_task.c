/* test_task.c - the arithmetic demo task and the model's text format:
 * prompts the builtin judge parses, demonstrations it rates best, held-out
 * problems disjoint from training, reproducible draws, the token layout. */
#include "rlaif/judge/judge.h"
#include "rlaif/phases/task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"

#define ok(x) ck_assert_int_eq((x), 0)

static int same(const rlaif_arith *x, const rlaif_arith *y) {
    return x->a == y->a && x->b == y->b && x->op == y->op && x->answer == y->answer;
}

/* Other responses a model might give to p: none may beat the demonstration. */
static void rivals(const rlaif_arith *p, char out[6][96]) {
    snprintf(out[0], 96, "The answer is %ld.", p->answer);
    snprintf(out[1], 96, "%ld", p->answer + 1);
    snprintf(out[2], 96, "%ld, obviously, you idiot", p->answer);
    snprintf(out[3], 96, "I don't know");
    snprintf(out[4], 96, "%ld plus change: %ld", p->a, p->answer);
    snprintf(out[5], 96, " %ld ", p->answer);
}

START_TEST(demonstrations_are_judged_best) {
    rlaif_task t;
    ok(rlaif_task_init(&t, 1234, 99, 500));
    int ops[3] = {0};
    for (int64_t i = 0; i < t.n_train; i++) {
        rlaif_arith p;
        char q[96], a[96], r[6][96];
        rlaif_task_train(&t, i, &p);
        ops[p.op]++;
        rlaif_task_prompt(&p, q, sizeof q);
        ck_assert_int_eq(rlaif_task_demo(&t, i, a, sizeof a), 0);
        int correct = 0;
        double best = rlaif_builtin_quality(q, a, &correct);
        ck_assert_msg(correct, "%s -> %s judged wrong", q, a);
        ck_assert(rlaif_task_correct(&p, a));
        /* the highest score a correct answer can get: 4 + 2 + 1 + 1 + 1 + conciseness */
        ck_assert_double_eq_tol(best, 10.0 - (double)strlen(a) / 200.0, 1e-12);
        rivals(&p, r);
        for (int k = 0; k < 6; k++)
            ck_assert_msg(rlaif_builtin_quality(q, r[k], NULL) < best, "%s: '%s' >= '%s'", q, r[k],
                          a);
        ck_assert(p.a >= 0 && p.a <= 99 && p.b >= 0 && p.b <= 99);
    }
    for (int k = 0; k < 3; k++) ck_assert_int_gt(ops[k], 100); /* every operator is used */
    rlaif_task_free(&t);
}
END_TEST

START_TEST(prompt_forms) {
    rlaif_arith p = {47, 38, RLAIF_OP_PLUS, 85};
    char q[96], a[32];
    rlaif_task_prompt(&p, q, sizeof q);
    ck_assert_str_eq(q, "What is 47 plus 38?");
    p = (rlaif_arith){12, 47, RLAIF_OP_MINUS, -35};
    rlaif_task_prompt(&p, q, sizeof q);
    snprintf(a, sizeof a, "-35");
    ck_assert_str_eq(q, "What is 12 minus 47?");
    ck_assert(rlaif_task_correct(&p, a));
    ck_assert(!rlaif_task_correct(&p, "35"));
    p = (rlaif_arith){6, 7, RLAIF_OP_TIMES, 42};
    rlaif_task_prompt(&p, q, sizeof q);
    ck_assert_str_eq(q, "What is 6 times 7?");
    ck_assert(rlaif_task_correct(&p, "42"));
}
END_TEST

/* Flawed demonstrations: each flaw at its set fraction (binomial 4-sigma
 * bands over 4000), exactly the flaws the oracle (the builtin judge) reads
 * in the text, the problems unchanged by the mix, a pure function of
 * (seed, i), and a mix whose style flaws exceed 1 refused. */
START_TEST(flawed_demonstrations) {
    rlaif_task t, bare;
    const int n = 4000;
    ok(rlaif_task_init(&t, 1234, 19, n));
    ok(rlaif_task_init(&bare, 1234, 19, n));
    rlaif_demo_mix mix = {0.2, 0.25, 0.15, 0.3, 1};
    ok(rlaif_task_set_demos(&t, &mix));
    int count[16] = {0}, phrasings = 0;
    char first[96] = "";
    for (int64_t i = 0; i < n; i++) {
        rlaif_arith p, pb;
        char a[96], a2[96];
        int fl = rlaif_task_demo(&t, i, a, sizeof a);
        rlaif_task_train(&t, i, &p);
        rlaif_task_train(&bare, i, &pb);
        ck_assert(same(&p, &pb)); /* the mix draws after the problem */
        ck_assert_int_eq(rlaif_task_flaws(&p, a), fl);
        ck_assert_msg(rlaif_task_flaws(&p, a) == fl, "%lld: '%s' flaws %d", (long long)i, a, fl);
        ck_assert_int_eq(rlaif_task_demo(&t, i, a2, sizeof a2), fl);
        ck_assert_str_eq(a, a2);
        for (int k = 0; k < 4; k++) count[k] += !!(fl & (1 << k));
        /* at most one style flaw */
        ck_assert_int_le(!!(fl & RLAIF_FLAW_RUDE) + !!(fl & RLAIF_FLAW_RAMBLE) +
                             !!(fl & RLAIF_FLAW_OFFTOPIC),
                         1);
        if (fl == 0 && !*first) snprintf(first, sizeof first, "%s", a);
        phrasings += fl == 0 && strcmp(a, first) != 0 && strchr(a, ' ');
        char b[96];
        ck_assert_int_eq(rlaif_task_demo(&bare, i, b, sizeof b), 0);
        char want[32];
        snprintf(want, sizeof want, "%ld", pb.answer);
        ck_assert_str_eq(b, want); /* the default stays the bare right answer */
    }
    const double frac[4] = {0.2, 0.25, 0.15, 0.3};
    for (int k = 0; k < 4; k++) {
        double sd = sqrt(n * frac[k] * (1 - frac[k]));
        ck_assert_msg(fabs(count[k] - n * frac[k]) < 4 * sd, "flaw %d: %d of %d, expected %g", k,
                      count[k], n, frac[k]);
    }
    ck_assert_int_gt(phrasings, 100);
    mix.offtopic = 0.61;
    ck_assert_int_eq(rlaif_task_set_demos(&t, &mix), 64);
    rlaif_task_free(&t), rlaif_task_free(&bare);
}
END_TEST

/* Problem i is a function of (seed, i) only; held-out problems avoid the
 * training set when there is room; a different seed gives other problems. */
START_TEST(heldout_disjoint_and_reproducible) {
    rlaif_task t, t2, t3;
    ok(rlaif_task_init(&t, 7, 99, 2000));
    ok(rlaif_task_init(&t2, 7, 99, 2000));
    ok(rlaif_task_init(&t3, 8, 99, 2000));
    int differ = 0;
    for (int64_t i = 0; i < 1000; i++) {
        rlaif_arith a, b, c;
        rlaif_task_heldout(&t, i, &a);
        rlaif_task_heldout(&t2, i, &b);
        ck_assert(same(&a, &b));
        ck_assert_msg(!rlaif_task_seen(&t, &a), "held-out problem %lld is a training one",
                      (long long)i);
        rlaif_task_train(&t, i, &a);
        ck_assert(rlaif_task_seen(&t, &a));
        rlaif_task_train(&t3, i, &c);
        differ += !same(&a, &c);
    }
    ck_assert_int_gt(differ, 900);
    /* a training set covering all 300 problems of max_operand 9 leaves none unseen */
    rlaif_task small;
    ok(rlaif_task_init(&small, 7, 9, 5000));
    rlaif_arith p;
    rlaif_task_heldout(&small, 0, &p);
    ck_assert(rlaif_task_seen(&small, &p));
    rlaif_task_free(&small);
    ck_assert_int_ne(rlaif_task_init(&small, 7, 0, 10), 0);
    rlaif_task_free(&t), rlaif_task_free(&t2), rlaif_task_free(&t3);
}
END_TEST

/* prompt "\n" response EOS; prompt left-truncated, response cut (then no EOS). */
START_TEST(text_format) {
    rlaif_tokenizer *tok;
    ok(rlaif_tokenizer_byte(&tok, NULL));
    int32_t eos = rlaif_tokenizer_eos(tok);
    rlaif_tokens out = {0};
    size_t np;
    ok(rlaif_format_example(tok, NULL, "What is 1 plus 2?", "3", 64, 32, &out, &np));
    const char *want = "What is 1 plus 2?\n3";
    ck_assert_uint_eq(np, strlen("What is 1 plus 2?\n"));
    ck_assert_uint_eq(out.n, strlen(want) + 1);
    for (size_t i = 0; i < strlen(want); i++) ck_assert_int_eq(out.ids[i], (unsigned char)want[i]);
    ck_assert_int_eq(out.ids[out.n - 1], eos);
    rlaif_bytes text = {0};
    ok(rlaif_format_response(tok, NULL, out.ids + np, out.n - np, &text));
    ck_assert_str_eq(text.data, "3");
    rlaif_bytes_free(&text);
    out.n = 0;
    ok(rlaif_format_example(tok, NULL, "abcdef", "uvwxyz", 4, 3, &out, &np));
    ck_assert_uint_eq(np, 4); /* "def\n" */
    ck_assert_uint_eq(out.n, 7);
    ck_assert_int_eq(out.ids[0], 'd');
    ck_assert_int_eq(out.ids[3], '\n');
    ck_assert_int_eq(out.ids[6], 'w'); /* cut after 3 response tokens: no EOS */
    rlaif_tokens_free(&out);
    rlaif_tokenizer_free(tok);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("task");
    TCase *tc = tcase_create("task");
    tcase_add_test(tc, demonstrations_are_judged_best);
    tcase_add_test(tc, prompt_forms);
    tcase_add_test(tc, flawed_demonstrations);
    tcase_add_test(tc, heldout_disjoint_and_reproducible);
    tcase_add_test(tc, text_format);
    suite_add_tcase(s, tc);
    return s;
}
