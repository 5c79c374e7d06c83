/* test_gemm_choice.c - the engine's forward products run the path the
 * chooser's table says (rlaif/engine/gemm_choice.h), on a tiny GPT-2:
 *  - fp32, 16 rows: the fixed rule runs the few-row kernel; a table naming
 *    sgemm for those classes makes every layer product run sgemm (the
 *    engine's per-path counters), with the bits of sgemm forced;
 *  - bf16: a table naming the fp32 paths gives logits bit-identical to an
 *    fp32 model on those paths (so the choice really replaced the bf16
 *    products, bias and GELU still applied), and different from the fixed
 *    bf16 rule's;
 *  - decoding: the LM head of rlaif_model_forward_kv follows the table too;
 *  - fp32 decoding on packed weights when the table names that path;
 *  - a frozen model's prefill past 64 rows on its packed weights likewise;
 *  - a frozen bf16 model packs its weights once, not at every sequence;
 *  - the job's start times the classes a model uses, and only classes with
 *    a choice to make;
 *  - an empty table and no force is the fixed rule. */
#include "gemm_bf16.h"  /* rlaif_gemm_lookup */
#include "model_gemm.h" /* rlaif_smallm_kernel */
#include "rlaif/engine/gemm_choice.h"
#include "rlaif/engine/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"

enum { L = 1, C = 64, NH = 4, V = 97, B = 2, T = 8 };

static void make_model(rlaif_model *m, int precision) {
    rlaif_model_config c = {
        .n_layer = L, .n_embd = C, .n_head = NH, .vocab_size = V, .max_seq_len = 16};
    ck_assert_int_eq(rlaif_model_create(m, &c), 0);
    rlaif_model_set_precision(m, precision);
    rlaif_model_init_random(m, 7, 0.2f);
}

/* Table lines naming `path` for the layer products of the model at M rows,
 * and `head` for its LM head (GPT-2: Conv1D weights, tb 0; head tb 1). */
static void table_for(char *buf, size_t n, int bf16, int M, const char *path, const char *head) {
    const int shape[4][2] = {{3 * C, C}, {C, C}, {4 * C, C}, {C, 4 * C}}; /* N, K */
    size_t used = 0;
    for (int s = 0; s < 4; s++)
        used += (size_t)snprintf(buf + used, n - used, "%d 0 0 %d %d %d 1 %s 1 1 1 1 1\n", bf16, M,
                                 shape[s][0], shape[s][1], path);
    snprintf(buf + used, n - used, "%d 0 1 %d %d %d 1 %s 1 1 1 1 1\n", bf16, M, V, C, head);
}

/* logits of the full forward into out (B*T*V); the per-path product
 * counts it added into d. */
static void logits_of(rlaif_model *m, float *out, long long d[RLAIF_GEMM_NPATH]) {
    int tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 31 + 5) % V;
    long long before[RLAIF_GEMM_NPATH];
    for (int p = 0; p < RLAIF_GEMM_NPATH; p++) before[p] = rlaif_gemm_runs(p);
    ck_assert_int_eq(rlaif_model_forward(m, tok, NULL, NULL, B, T), 0);
    ck_assert_int_eq(rlaif_model_lm_forward(m, NULL), 0);
    memcpy(out, m->logits, sizeof(float) * B * T * V);
    for (int p = 0; p < RLAIF_GEMM_NPATH; p++) d[p] = rlaif_gemm_runs(p) - before[p];
}

static void reset(void) {
    rlaif_gemm_choices_clear();
    rlaif_gemm_force(RLAIF_GEMM_FORCE_NONE);
}

START_TEST(test_fp32_table) {
    rlaif_model_set_threads(1, 1);
    rlaif_model m;
    make_model(&m, RLAIF_PREC_FP32);
    static float fixed[B * T * V], tabled[B * T * V], forced[B * T * V];
    long long d[RLAIF_GEMM_NPATH];
    char buf[2048];
    reset();
    logits_of(&m, fixed, d);
    ck_assert_int_eq(d[RLAIF_PATH_SMALLM], 4 * L); /* fixed rule: 16 rows, few-row kernel */
    ck_assert_int_eq(d[RLAIF_PATH_SGEMM], 0);
    table_for(buf, sizeof buf, 0, B * T, "sgemm", "sgemm");
    ck_assert_int_eq(rlaif_gemm_choices_set(buf), 0);
    logits_of(&m, tabled, d);
    ck_assert_int_eq(d[RLAIF_PATH_SGEMM], 4 * L);
    ck_assert_int_eq(d[RLAIF_PATH_SMALLM], 0);
    reset();
    rlaif_gemm_force(RLAIF_PATH_SGEMM);
    logits_of(&m, forced, d);
    ck_assert(memcmp(tabled, forced, sizeof tabled) == 0);
    reset();
    rlaif_model_free(&m);
}
END_TEST

START_TEST(test_bf16_table) {
    rlaif_model_set_threads(1, 1);
    rlaif_model f, h;
    make_model(&f, RLAIF_PREC_FP32);
    make_model(&h, RLAIF_PREC_BF16);
    static float f_sgemm[B * T * V], f_smallm[B * T * V], h_fixed[B * T * V], h_tab[B * T * V];
    long long d[RLAIF_GEMM_NPATH];
    char buf[2048];
    reset();
    rlaif_gemm_force(RLAIF_PATH_SGEMM);
    logits_of(&f, f_sgemm, d);
    reset();
    logits_of(&f, f_smallm, d); /* fp32 fixed rule: few-row layers, sgemm head */
    logits_of(&h, h_fixed, d);
    ck_assert_int_eq(d[RLAIF_PATH_BF16_SMALLM], 4 * L + 1);
    ck_assert(memcmp(h_fixed, f_sgemm, sizeof h_fixed) != 0); /* bf16 rounds */
    table_for(buf, sizeof buf, 1, B * T, "sgemm", "sgemm");
    ck_assert_int_eq(rlaif_gemm_choices_set(buf), 0);
    logits_of(&h, h_tab, d);
    ck_assert_int_eq(d[RLAIF_PATH_SGEMM], 4 * L + 1);
    ck_assert(memcmp(h_tab, f_sgemm, sizeof h_tab) == 0);
    table_for(buf, sizeof buf, 1, B * T, "smallm", "sgemm");
    ck_assert_int_eq(rlaif_gemm_choices_set(buf), 0);
    logits_of(&h, h_tab, d);
    ck_assert_int_eq(d[RLAIF_PATH_SMALLM], 4 * L);
    ck_assert(memcmp(h_tab, f_smallm, sizeof h_tab) == 0);
    reset();
    rlaif_model_free(&f), rlaif_model_free(&h);
}
END_TEST

static float logits[B * V]; /* of the last decode_step */

/* One decoding step of B rows: the products per path it ran. */
static void decode_step(rlaif_model *m, long long d[RLAIF_GEMM_NPATH]) {
    rlaif_kv_cache kv;
    ck_assert_int_eq(rlaif_kv_cache_create(&kv, &m->cfg, B, 8, m->precision), 0);
    int tok[B * 3] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(rlaif_model_forward_kv(m, &kv, tok, NULL, NULL, 3, logits), 0);
    long long before[RLAIF_GEMM_NPATH];
    for (int p = 0; p < RLAIF_GEMM_NPATH; p++) before[p] = rlaif_gemm_runs(p);
    ck_assert_int_eq(rlaif_model_forward_kv(m, &kv, tok, NULL, NULL, 1, logits), 0);
    for (int p = 0; p < RLAIF_GEMM_NPATH; p++) d[p] = rlaif_gemm_runs(p) - before[p];
    rlaif_kv_cache_free(&kv);
}

START_TEST(test_decoding_head) {
    rlaif_model_set_threads(1, 1);
    rlaif_model m;
    make_model(&m, RLAIF_PREC_FP32);
    long long d[RLAIF_GEMM_NPATH];
    reset();
    decode_step(&m, d);
    ck_assert_int_eq(d[RLAIF_PATH_SMALLM], 4 * L + 1); /* the head too, by the fixed rule */
    char line[128];
    snprintf(line, sizeof line, "0 0 1 %d %d %d 1 sgemm 1 1 -1 -1 -1\n", B, V, C);
    ck_assert_int_eq(rlaif_gemm_choices_set(line), 0);
    decode_step(&m, d);
    ck_assert_int_eq(d[RLAIF_PATH_SGEMM], 1); /* the head's class only */
    ck_assert_int_eq(d[RLAIF_PATH_SMALLM], 4 * L);
    reset();
    rlaif_model_free(&m);
}
END_TEST

/* fp32 decoding on weights packed for the sequence: a table naming the
 * packed path for the layer products' classes packs them (the bytes
 * rlaif_model_decode_pack_bytes promises) and runs every layer product
 * from the packed copy, with the bits of the in-order few-row kernel (both
 * are one FMA chain over k, then + bias, then + residual); the head stays
 * on sgemm in both runs. A table without the packed path packs nothing. */
START_TEST(test_decoding_packed) {
    for (int nt = 1; nt <= 2; nt++) {
        rlaif_model_set_threads(nt, 1);
        rlaif_model m;
        make_model(&m, RLAIF_PREC_FP32);
        long long d[RLAIF_GEMM_NPATH];
        static float plain[B * V];
        char buf[1024];
        reset();
        table_for(buf, sizeof buf, 0, B, "smallm", "sgemm");
        ck_assert_int_eq(rlaif_gemm_choices_set(buf), 0);
        ck_assert_uint_eq(rlaif_model_decode_pack_bytes(&m.cfg, RLAIF_PREC_FP32, B), 0);
        decode_step(&m, d);
        ck_assert_int_eq(d[RLAIF_PATH_SMALLM], 4 * L);
        memcpy(plain, logits, sizeof plain);
        table_for(buf, sizeof buf, 0, B, "packed", "sgemm");
        ck_assert_int_eq(rlaif_gemm_choices_set(buf), 0);
        /* q|k|v, out, fc, proj, head: 64-column panels of K rows */
        size_t want = sizeof(float) * (size_t)L * (192 * C + 64 * C + 256 * C + 64 * 4 * C) +
                      sizeof(float) * 128 * C;
        ck_assert_uint_eq(rlaif_model_decode_pack_bytes(&m.cfg, RLAIF_PREC_FP32, B), want);
        decode_step(&m, d);
        ck_assert_int_eq(d[RLAIF_PATH_PACKED], 4 * L);
        ck_assert_int_eq(d[RLAIF_PATH_SGEMM], 1);
        ck_assert(memcmp(plain, logits, sizeof plain) == 0);
        reset();
        rlaif_model_free(&m);
    }
}
END_TEST

/* A frozen model's prefill (a local judge's): its weights stay packed, so
 * past 64 rows its layer products follow the table too, the packed kernel
 * when it names it (the head, tb 1, named sgemm), and a table naming the
 * packed path for the prefill only (a logprob judge never decodes) makes
 * rlaif_model_decode_prepare pack. Two rows of 48 tokens:
 * 96 packed rows, class 128. Logits against the same prefill on sgemm:
 * both are fp32 sums of K <= 256 products (|logit| < 10 here), so they
 * differ by rounding only: 1e-4 is ~50 ulps at that size. A table naming
 * sgemm for class 128 runs sgemm from the same packed model. */
START_TEST(test_frozen_prefill_packed) {
    enum { TP = 48 };
    for (int nt = 1; nt <= 2; nt++) {
        rlaif_model_set_threads(nt, 1);
        rlaif_model m;
        rlaif_model_config c = {
            .n_layer = L, .n_embd = C, .n_head = NH, .vocab_size = V, .max_seq_len = 64};
        ck_assert_int_eq(rlaif_model_create(&m, &c), 0);
        rlaif_model_init_random(&m, 7, 0.2f);
        m.frozen = 1;
        static float lp[B * V], ls[B * V];
        long long d[RLAIF_GEMM_NPATH], before[RLAIF_GEMM_NPATH];
        int tok[B * TP];
        for (int i = 0; i < B * TP; i++) tok[i] = (i * 31 + 5) % V;
        for (int pass = 0; pass < 2; pass++) {
            char buf[4096];
            size_t used = 0;
            for (int M = 1; M <= B; M *= 2) /* decoding's classes: not packed */
                table_for(buf + used, sizeof buf - used, 0, M, "smallm", "sgemm"),
                    used = strlen(buf);
            table_for(buf + used, sizeof buf - used, 0, 128, pass ? "sgemm" : "packed", "sgemm");
            reset();
            ck_assert_int_eq(rlaif_gemm_choices_set(buf), 0);
            /* the prefill's class alone makes a frozen model pack */
            ck_assert_int_eq(rlaif_model_decode_pack_bytes(&m.cfg, RLAIF_PREC_FP32, B) > 0, !pass);
            rlaif_model_decode_prepare(&m, B); /* pass 1: packed already, from pass 0 */
            rlaif_kv_cache kv;
            ck_assert_int_eq(rlaif_kv_cache_create(&kv, &m.cfg, B, TP + 1, m.precision), 0);
            for (int p = 0; p < RLAIF_GEMM_NPATH; p++) before[p] = rlaif_gemm_runs(p);
            ck_assert_int_eq(rlaif_model_forward_kv(&m, &kv, tok, NULL, NULL, TP, pass ? ls : lp),
                             0);
            for (int p = 0; p < RLAIF_GEMM_NPATH; p++) d[p] = rlaif_gemm_runs(p) - before[p];
            rlaif_kv_cache_free(&kv);
            ck_assert_int_eq(d[pass ? RLAIF_PATH_SGEMM : RLAIF_PATH_PACKED], 4 * L + pass);
            ck_assert_int_eq(d[pass ? RLAIF_PATH_PACKED : RLAIF_PATH_SGEMM], pass ? 0 : 1);
        }
        for (int i = 0; i < B * V; i++) ck_assert_float_eq_tol(lp[i], ls[i], 1e-4f);
        /* Which kernel ran is the path counters' to show, not the bits: on
         * the Intel Xeon VM (2026-12-04, OpenBLAS's SkylakeX kernels) sgemm
         * sums these short rows in the packed kernel's order, and the two
         * logits were bit-identical; on the AMD EPYC VM they differ. */
        reset();
        rlaif_model_free(&m);
    }
}
END_TEST

/* A frozen bf16 model (a bf16 local judge's) packs its weights once, at
 * rlaif_model_decode_prepare, and keeps the copy from one sequence to the
 * next; a model whose weights may change repacks at every sequence. Three
 * sequences each: the logits are bit-identical (the same bf16 panels), the
 * frozen model packed once, the other three times. */
START_TEST(test_frozen_bf16_packs_once) {
    reset();
    rlaif_model f, t;
    make_model(&f, RLAIF_PREC_BF16), make_model(&t, RLAIF_PREC_BF16);
    f.frozen = 1;
    rlaif_model_decode_prepare(&f, B);
    ck_assert_int_eq(f.packs, 1);
    int tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 31 + 5) % V;
    static float lf[B * V], lt[B * V];
    for (int seq = 0; seq < 3; seq++) {
        rlaif_model *m[2] = {&f, &t};
        float *out[2] = {lf, lt};
        for (int k = 0; k < 2; k++) {
            rlaif_kv_cache kv;
            ck_assert_int_eq(rlaif_kv_cache_create(&kv, &m[k]->cfg, B, T, m[k]->precision), 0);
            ck_assert_int_eq(rlaif_model_forward_kv(m[k], &kv, tok, NULL, NULL, T, out[k]), 0);
            rlaif_kv_cache_free(&kv);
        }
        ck_assert(memcmp(lf, lt, sizeof lf) == 0);
    }
    ck_assert_int_eq(f.packs, 1);
    ck_assert_int_eq(t.packs, 3);
    rlaif_model_free(&f), rlaif_model_free(&t);
}
END_TEST

/* What the job's start times (rlaif_model_gemm_calibrate), in fp32: the
 * classes of 1..64 rows for a model that trains; for a frozen one (a local
 * judge's) 128 and 256 rows as well, where its prefill runs the packed
 * kernel or sgemm; and where the packed kernel cannot run (a CPU without
 * AVX-512, forced here by naming the plain C few-row kernel) those
 * classes have sgemm alone: neither timed nor recorded. The tiny GPT-2 has
 * 5 distinct products (qkv, out, fc, proj, head), so 5 x 7 classes of
 * 1..64 rows and 5 x 2 past 64. */
START_TEST(test_calibrate_classes) {
    rlaif_model_config c = {
        .n_layer = L, .n_embd = C, .n_head = NH, .vocab_size = V, .max_seq_len = 16};
    const char *best = rlaif_smallm_kernel(NULL);
    int packs = !strcmp(best, "avx512");
    reset();
    ck_assert_int_eq(rlaif_model_gemm_calibrate(&c, RLAIF_PREC_FP32, 1, 0), 5 * 7);
    ck_assert_int_eq(rlaif_gemm_lookup(0, 0, 0, 128, 3 * C, C), -1);
    ck_assert_int_eq(rlaif_model_gemm_calibrate(&c, RLAIF_PREC_FP32, 1, 1), packs ? 5 * 2 : 0);
    ck_assert_int_eq(rlaif_gemm_lookup(0, 0, 0, 128, 3 * C, C) >= 0, packs);
    ck_assert_int_eq(rlaif_gemm_lookup(0, 0, 1, 256, V, C) >= 0, packs);
    rlaif_smallm_kernel("c");
    reset();
    ck_assert_int_eq(rlaif_model_gemm_calibrate(&c, RLAIF_PREC_FP32, 1, 1), 5 * 7);
    ck_assert_int_eq(rlaif_gemm_lookup(0, 0, 0, 128, 3 * C, C), -1);
    ck_assert_int_eq(rlaif_gemm_lookup(0, 0, 0, 64, 3 * C, C) >= 0, 1); /* sgemm or smallm */
    rlaif_smallm_kernel(best);
    reset();
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("gemm_choice");
    TCase *tc = tcase_create("engine");
    tcase_add_test(tc, test_fp32_table);
    tcase_add_test(tc, test_bf16_table);
    tcase_add_test(tc, test_decoding_head);
    tcase_add_test(tc, test_decoding_packed);
    tcase_add_test(tc, test_frozen_prefill_packed);
    tcase_add_test(tc, test_frozen_bf16_packs_once);
    tcase_add_test(tc, test_calibrate_classes);
    suite_add_tcase(s, tc);
    return s;
}
