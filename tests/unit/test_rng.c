/* test_rng.c - Philox-4x32-10 against the published known-answer vectors
 * (Random123 kat_vectors, Salmon et al. SC11), and the draws built on it. */
#include "rlaif/core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"

START_TEST(philox_known_answers) {
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        rlaif_philox4x32(kat[i].ctr, kat[i].key, out);
        for (int j = 0; j < 4; j++)
            ck_assert_msg(out[j] == kat[i].out[j], "vector %zu word %d: %08x != %08x", i, j, out[j],
                          kat[i].out[j]);
    }
}
END_TEST

/* A stream is a pure function of its key: drawing sample 5 alone equals
 * drawing it after samples 0..4, so any rank split gives the same numbers. */
START_TEST(keyed_streams_independent_of_order) {
    uint32_t direct[8], after[8];
    rlaif_rng r;
    rlaif_rng_init(&r, 99, RLAIF_STREAM_SAMPLE, 3, 5);
    for (int i = 0; i < 8; i++) direct[i] = rlaif_rng_u32(&r);
    for (uint32_t idx = 0; idx <= 5; idx++) {
        rlaif_rng_init(&r, 99, RLAIF_STREAM_SAMPLE, 3, idx);
        for (int i = 0; i < 8; i++) after[i] = rlaif_rng_u32(&r);
    }
    ck_assert_mem_eq(direct, after, sizeof direct);
    /* different stream, step, index or seed: different numbers */
    uint32_t other;
    rlaif_rng_init(&r, 99, RLAIF_STREAM_SHUFFLE, 3, 5);
    other = rlaif_rng_u32(&r);
    ck_assert_uint_ne(other, direct[0]);
    rlaif_rng_init(&r, 100, RLAIF_STREAM_SAMPLE, 3, 5);
    ck_assert_uint_ne(rlaif_rng_u32(&r), direct[0]);
}
END_TEST

/* Moments of the uniform and normal draws against closed forms. With n =
 * 200000 the standard error of the mean is 0.29/sqrt(n) = 6.5e-4 (uniform)
 * and 2.2e-3 (normal); 5 sigma bounds keep the test deterministic-safe. */
START_TEST(distributions) {
    rlaif_rng r;
    rlaif_rng_init(&r, 1, RLAIF_STREAM_DATA, 0, 0);
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0;
    for (int i = 0; i < n; i++) {
        float u = rlaif_rng_uniform(&r);
        ck_assert(u >= 0.0f && u < 1.0f);
        su += u;
        double z = rlaif_rng_normal(&r);
        sn += z, sn2 += z * z;
    }
    ck_assert_double_le(fabs(su / n - 0.5), 5 * 0.2887 / sqrt(n));
    ck_assert_double_le(fabs(sn / n), 5 / sqrt(n));
    ck_assert_double_le(fabs(sn2 / n - 1.0), 5 * sqrt(2.0 / n));
    /* below(n): every value in range, each bucket near n/7 (chi-square-ish) */
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint32_t v = rlaif_rng_below(&r, 7);
        ck_assert_uint_lt(v, 7);
        counts[v]++;
    }
    for (int i = 0; i < 7; i++) ck_assert_int_lt(abs(counts[i] - 10000), 500);
}
END_TEST

START_TEST(permutation) {
    uint32_t p[1000], q[1000];
    int seen[1000] = {0};
    rlaif_rng_permutation(5, RLAIF_STREAM_SHUFFLE, 2, p, 1000);
    for (int i = 0; i < 1000; i++) seen[p[i]]++;
    for (int i = 0; i < 1000; i++) ck_assert_int_eq(seen[i], 1);
    rlaif_rng_permutation(5, RLAIF_STREAM_SHUFFLE, 2, q, 1000);
    ck_assert_mem_eq(p, q, sizeof p);
    rlaif_rng_permutation(5, RLAIF_STREAM_SHUFFLE, 3, q, 1000);
    ck_assert(memcmp(p, q, sizeof p) != 0);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("rng");
    tcase_add_test(tc, philox_known_answers);
    tcase_add_test(tc, keyed_streams_independent_of_order);
    tcase_add_test(tc, distributions);
    tcase_add_test(tc, permutation);
    suite_add_tcase(s, tc);
    return s;
}
