/* test_model_io.c - checkpoints (round trip, clear errors), AdamW's skip and
 * sharding, and generation (seeded sampling independent of batch
 * composition, EOS, top-k/top-p). Numerics against PyTorch live in
 * tests/reference/test_engine.py. */
#include "rlaif/core/error.h"
#include "rlaif/engine/generate.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/engine/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"

static const rlaif_model_config tiny = {
    .n_layer = 2, .n_embd = 32, .n_head = 4, .vocab_size = 50, .max_seq_len = 32, .score_head = 1};
static char path[256];

static void make_ckpt(rlaif_model *m, rlaif_adamw *opt) {
    ck_assert_int_eq(rlaif_model_create(m, &tiny), 0);
    rlaif_model_init_random(m, 7, 0.2f);
    rlaif_adamw_config oc = rlaif_adamw_defaults();
    rlaif_adamw_init(opt, &oc, &m->table, 0, m->table.total);
    for (size_t i = 0; i < m->table.total; i++) opt->m[i] = (float)i * 1e-3f, opt->v[i] = 0.5f;
    opt->step = 3, opt->skipped = 1;
    snprintf(path, sizeof path, "/tmp/rlaif-test-model-io-%d.h5", (int)getpid());
    ck_assert_int_eq(rlaif_ckpt_save(path, m, opt, 42), 0);
}

START_TEST(roundtrip) {
    rlaif_model m, m2;
    rlaif_adamw opt, opt2;
    make_ckpt(&m, &opt);
    ck_assert_int_eq(rlaif_model_load(path, &m2), 0);
    ck_assert(!memcmp(&m.cfg, &m2.cfg, sizeof m.cfg));
    rlaif_adamw_init(&opt2, &opt.cfg, &m2.table, 0, m2.table.total);
    long step = 0;
    ck_assert_int_eq(rlaif_ckpt_load(path, &m2, &opt2, &step), 0);
    size_t bytes = m.table.total * sizeof(float);
    ck_assert(!memcmp(m.params, m2.params, bytes));
    ck_assert(!memcmp(opt.m, opt2.m, bytes) && !memcmp(opt.v, opt2.v, bytes));
    ck_assert_int_eq(step, 42);
    ck_assert_int_eq(opt2.step, 3);
    ck_assert_int_eq(opt2.skipped, 1);
    rlaif_adamw_free(&opt), rlaif_adamw_free(&opt2);
    rlaif_model_free(&m), rlaif_model_free(&m2);
    remove(path);
}
END_TEST

/* Edit the saved file with raw HDF5 calls, then expect an error naming it. */
static void expect_load_error(const char *needle) {
    rlaif_model m;
    int rc = rlaif_model_load(path, &m);
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(strstr(rlaif_error_message(), needle), "message '%s' lacks '%s'",
                  rlaif_error_message(), needle);
    ck_assert_msg(strstr(rlaif_error_message(), path), "message '%s' lacks the path",
                  rlaif_error_message());
    rlaif_error_clear();
}

START_TEST(missing_tensor) {
    rlaif_model m;
    rlaif_adamw opt;
    make_ckpt(&m, &opt);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(H5Ldelete(f, "/params/h.1.mlp.c_fc.weight", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_load_error("dataset /params/h.1.mlp.c_fc.weight is missing");
    rlaif_adamw_free(&opt), rlaif_model_free(&m);
    remove(path);
}
END_TEST

START_TEST(wrong_shape) {
    rlaif_model m;
    rlaif_adamw opt;
    make_ckpt(&m, &opt);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(H5Ldelete(f, "/params/h.0.ln_1.bias", H5P_DEFAULT) >= 0);
    hsize_t dims[1] = {31};
    hid_t s = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "/params/h.0.ln_1.bias", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    ck_assert(d >= 0);
    H5Dclose(d), H5Sclose(s), H5Fclose(f);
    expect_load_error("dataset /params/h.0.ln_1.bias has shape [31], the model expects [32]");
    rlaif_adamw_free(&opt), rlaif_model_free(&m);
    remove(path);
}
END_TEST

START_TEST(wrong_schema) {
    rlaif_model m;
    rlaif_adamw opt;
    make_ckpt(&m, &opt);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    long long v = 99;
    hid_t a = H5Aopen(f, "rlaif_schema", H5P_DEFAULT);
    ck_assert(H5Awrite(a, H5T_NATIVE_LLONG, &v) >= 0);
    H5Aclose(a), H5Fclose(f);
    expect_load_error("rlaif_schema is 99, this build reads version 1");
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(H5Adelete(f, "rlaif_schema") >= 0);
    H5Fclose(f);
    expect_load_error("is not an rlaif checkpoint");
    rlaif_adamw_free(&opt), rlaif_model_free(&m);
    remove(path);
    rlaif_model m2;
    ck_assert_int_eq(rlaif_model_load("/nonexistent/ckpt.h5", &m2), RLAIF_EX_NOINPUT);
    rlaif_error_clear();
}
END_TEST

START_TEST(config_mismatch) {
    rlaif_model m, other;
    rlaif_adamw opt;
    make_ckpt(&m, &opt);
    rlaif_model_config c = tiny;
    c.score_head = 0;
    ck_assert_int_eq(rlaif_model_create(&other, &c), 0);
    ck_assert_int_ne(rlaif_ckpt_load(path, &other, NULL, NULL), 0);
    ck_assert(strstr(rlaif_error_message(), "differs from the model"));
    rlaif_error_clear();
    rlaif_model_free(&other), rlaif_adamw_free(&opt), rlaif_model_free(&m);
    remove(path);
}
END_TEST

START_TEST(adamw_skip_and_shards) {
    rlaif_model m;
    ck_assert_int_eq(rlaif_model_create(&m, &tiny), 0);
    rlaif_model_init_random(&m, 1, 0.02f);
    size_t n = m.table.total;
    float *g = malloc(n * sizeof(float)), *p0 = malloc(n * sizeof(float));
    float *p1 = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) g[i] = sinf((float)i);
    memcpy(p0, m.params, n * sizeof(float));
    memcpy(p1, m.params, n * sizeof(float));
    rlaif_adamw_config oc = rlaif_adamw_defaults();
    oc.weight_decay = 0.1f, oc.lr = 1e-2f;
    /* whole range, with clipping done by hand as a sharded run would */
    rlaif_adamw whole, a, b;
    rlaif_adamw_init(&whole, &oc, &m.table, 0, n);
    float scale = (float)(oc.grad_clip / (sqrt(rlaif_grad_sumsq(g, 0, n)) + 1e-6));
    rlaif_adamw_update(&whole, p0, g, 1e-2f, scale);
    size_t b0, e0, b1, e1;
    rlaif_shard_range(n, 2, 0, &b0, &e0);
    rlaif_shard_range(n, 2, 1, &b1, &e1);
    rlaif_adamw_init(&a, &oc, &m.table, b0, e0);
    rlaif_adamw_init(&b, &oc, &m.table, b1, e1);
    double ss = rlaif_grad_sumsq(g, b0, e0) + rlaif_grad_sumsq(g, b1, e1);
    float scale2 = (float)(oc.grad_clip / (sqrt(ss) + 1e-6));
    rlaif_adamw_update(&a, p1, g, 1e-2f, scale2);
    rlaif_adamw_update(&b, p1, g, 1e-2f, scale2);
    ck_assert(!memcmp(p0, p1, n * sizeof(float)));
    /* LayerNorm weights (1-D) are not decayed: with g = 0 they do not move */
    const rlaif_tensor_desc *ln = rlaif_tensors_find(&m.table, "h.0.ln_1.weight");
    const rlaif_tensor_desc *wt = rlaif_tensors_find(&m.table, "h.0.mlp.c_fc.weight");
    memset(g, 0, n * sizeof(float));
    memcpy(p1, p0, n * sizeof(float));
    rlaif_adamw_free(&whole);
    rlaif_adamw_init(&whole, &oc, &m.table, 0, n);
    rlaif_adamw_update(&whole, p1, g, 1e-2f, 1.0f);
    ck_assert(!memcmp(p1 + ln->offset, p0 + ln->offset, ln->numel * sizeof(float)));
    ck_assert_float_eq_tol(p1[wt->offset], p0[wt->offset] * (1.0f - 1e-3f), 1e-9f);
    /* a non-finite gradient skips the step and counts it */
    g[5] = NAN;
    rlaif_step_info info;
    memcpy(p1, p0, n * sizeof(float));
    rlaif_adamw_step(&whole, p1, g, 1.0f, &info);
    ck_assert_int_eq(info.skipped, 1);
    ck_assert_int_eq(whole.skipped, 1);
    ck_assert(!memcmp(p1, p0, n * sizeof(float)));
    g[5] = 0.0f;
    rlaif_adamw_step(&whole, p1, g, INFINITY, &info);
    ck_assert_int_eq(whole.skipped, 2);
    /* schedule: warmup then cosine down to min_lr_ratio */
    oc.warmup_steps = 10, oc.total_steps = 110, oc.min_lr_ratio = 0.1f;
    ck_assert_float_eq_tol(rlaif_lr_at(&oc, 0), oc.lr / 10, 1e-9f);
    ck_assert_float_eq_tol(rlaif_lr_at(&oc, 9), oc.lr, 1e-9f);
    ck_assert_float_eq_tol(rlaif_lr_at(&oc, 60), 0.55f * oc.lr, 1e-7f);
    ck_assert_float_eq_tol(rlaif_lr_at(&oc, 110), 0.1f * oc.lr, 1e-9f);
    rlaif_adamw_free(&whole), rlaif_adamw_free(&a), rlaif_adamw_free(&b);
    free(g), free(p0), free(p1);
    rlaif_model_free(&m);
}
END_TEST

START_TEST(sampling_is_per_sequence) {
    rlaif_model m;
    ck_assert_int_eq(rlaif_model_create(&m, &tiny), 0);
    rlaif_model_init_random(&m, 3, 0.3f);
    int toks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    int64_t off[] = {0, 5, 7};
    int len[] = {5, 2, 5};
    uint32_t idx[] = {100, 101, 102};
    rlaif_gen_config gc = rlaif_gen_defaults();
    gc.temperature = 1.0f, gc.top_k = 20, gc.top_p = 0.95f, gc.seed = 9, gc.step = 4;
    gc.max_new_tokens = 12;
    rlaif_gen_output all, one, again;
    ck_assert_int_eq(rlaif_generate(&m, &gc, 3, toks, off, len, idx, &all), 0);
    /* sequence 101 alone (different padding, batch size) gives the same tokens */
    ck_assert_int_eq(rlaif_generate(&m, &gc, 1, toks, off + 1, len + 1, idx + 1, &one), 0);
    ck_assert(!memcmp(one.tokens, all.tokens + 12, 12 * sizeof(int)));
    for (int s = 0; s < 12; s++) ck_assert_float_eq_tol(one.logp[s], all.logp[12 + s], 1e-5f);
    /* another seed changes the samples */
    gc.seed = 10;
    ck_assert_int_eq(rlaif_generate(&m, &gc, 3, toks, off, len, idx, &again), 0);
    ck_assert(memcmp(again.tokens, all.tokens, sizeof(int) * 36));
    rlaif_gen_output_free(&again);
    /* EOS: stop at the first occurrence, pad afterwards */
    gc.seed = 9, gc.eos_id = all.tokens[3], gc.pad_id = 49;
    int first = 0;
    while (all.tokens[first] != gc.eos_id) first++;
    ck_assert_int_eq(rlaif_generate(&m, &gc, 3, toks, off, len, idx, &again), 0);
    ck_assert_int_eq(again.length[0], first + 1);
    ck_assert_int_eq(again.tokens[first], gc.eos_id);
    for (int s = first + 1; s < 12; s++) ck_assert_int_eq(again.tokens[s], 49);
    rlaif_gen_output_free(&again), rlaif_gen_output_free(&all), rlaif_gen_output_free(&one);
    /* too long for max_seq_len is a usage error */
    gc.max_new_tokens = 30;
    ck_assert_int_eq(rlaif_generate(&m, &gc, 3, toks, off, len, idx, &again), RLAIF_EX_USAGE);
    rlaif_error_clear();
    rlaif_model_free(&m);
}
END_TEST

START_TEST(sample_token_filters) {
    float logits[5] = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f};
    int idx[5];
    float prob[5], lp;
    rlaif_gen_config gc = rlaif_gen_defaults();
    ck_assert_int_eq(rlaif_sample_token(logits, 5, &gc, 0.9f, idx, prob, &lp), 2); /* greedy */
    gc.temperature = 1.0f, gc.top_k = 1;
    ck_assert_int_eq(rlaif_sample_token(logits, 5, &gc, 0.99f, idx, prob, &lp), 2);
    gc.top_k = 0, gc.top_p = 0.01f;
    ck_assert_int_eq(rlaif_sample_token(logits, 5, &gc, 0.99f, idx, prob, &lp), 2);
    /* top-k 2 keeps tokens 2 and 1 only; frequencies follow the renormalised softmax */
    gc.top_p = 1.0f, gc.top_k = 2;
    int count[5] = {0};
    for (int i = 0; i < 10000; i++)
        count[rlaif_sample_token(logits, 5, &gc, ((float)i + 0.5f) / 10000.0f, idx, prob, &lp)]++;
    ck_assert_int_eq(count[0] + count[3] + count[4], 0);
    double p1 = 1.0 / (1.0 + exp(1.0));
    ck_assert_msg(fabs(count[1] / 10000.0 - p1) < 1e-3, "top-k frequency %d", count[1]);
    /* no filter: the inverse CDF of softmax; logp is log softmax of the token */
    gc.top_k = 0;
    double z = 0;
    for (int v = 0; v < 5; v++) z += exp(logits[v]);
    for (int v = 0; v < 5; v++) count[v] = 0;
    for (int i = 0; i < 10000; i++)
        count[rlaif_sample_token(logits, 5, &gc, ((float)i + 0.5f) / 10000.0f, idx, prob, &lp)]++;
    for (int v = 0; v < 5; v++)
        ck_assert_msg(fabs(count[v] / 10000.0 - exp(logits[v]) / z) < 1e-3, "token %d", v);
    int t = rlaif_sample_token(logits, 5, &gc, 0.5f, idx, prob, &lp);
    ck_assert_float_eq_tol(lp, logits[t] - log(z), 1e-6);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("test_model_io");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, roundtrip);
    tcase_add_test(tc, missing_tensor);
    tcase_add_test(tc, wrong_shape);
    tcase_add_test(tc, wrong_schema);
    tcase_add_test(tc, config_mismatch);
    tcase_add_test(tc, adamw_skip_and_shards);
    tcase_add_test(tc, sampling_is_per_sequence);
    tcase_add_test(tc, sample_token_filters);
    suite_add_tcase(s, tc);
    return s;
}
