/* test_model_io.c - checkpoints (round trip of each arch, clear errors,
 * config errors naming the field, gpt2 files from before OPT/Llama), AdamW's skip and
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

/* The other two families with every optional part switched on. */
static const rlaif_model_config llama = {.arch = RLAIF_ARCH_LLAMA,
                                         .n_layer = 2,
                                         .n_embd = 32,
                                         .n_head = 4,
                                         .n_kv_head = 2,
                                         .n_inner = 40,
                                         .vocab_size = 50,
                                         .max_seq_len = 32,
                                         .score_head = 1,
                                         .attn_bias = 1,
                                         .tie_embeddings = 0,
                                         .rope_theta = 500000.0f,
                                         .rope_type = RLAIF_ROPE_LLAMA3,
                                         .rope_factor = 8.0f,
                                         .rope_low_freq_factor = 1.0f,
                                         .rope_high_freq_factor = 4.0f,
                                         .rope_original_max_pos = 8192,
                                         .sliding_window = 7};
static const rlaif_model_config opt350 = {.arch = RLAIF_ARCH_OPT,
                                          .n_layer = 2,
                                          .n_embd = 32,
                                          .n_head = 4,
                                          .n_inner = 48,
                                          .word_embed_dim = 16,
                                          .norm_before = 0,
                                          .vocab_size = 50,
                                          .max_seq_len = 32,
                                          .score_head = 1};

/* shape of a named tensor (-1 when missing) */
static int64_t dim_of(const rlaif_model *m, const char *name, int k) {
    for (int i = 0; i < m->table.n; i++)
        if (!strcmp(m->table.t[i].name, name)) return m->table.t[i].shape[k];
    return -1;
}

START_TEST(roundtrip_archs) {
    const rlaif_model_config *cfgs[] = {&llama, &opt350};
    for (int i = 0; i < 2; i++) {
        rlaif_model m, m2;
        ck_assert_int_eq(rlaif_model_create(&m, cfgs[i]), 0);
        rlaif_model_init_random(&m, 7, 0.2f);
        snprintf(path, sizeof path, "/tmp/rlaif-test-model-io-%d.h5", (int)getpid());
        ck_assert_int_eq(rlaif_ckpt_save(path, &m, NULL, 5), 0);
        ck_assert_int_eq(rlaif_model_load(path, &m2), 0);
        ck_assert(!memcmp(&m.cfg, &m2.cfg, sizeof m.cfg));
        ck_assert_int_eq(m2.table.total, m.table.total);
        ck_assert(!memcmp(m.params, m2.params, m.table.total * sizeof(float)));
        rlaif_model_free(&m), rlaif_model_free(&m2);
    }
    /* HF names and shapes: GQA keys [NKV hd, C], gate|up, untied head,
     * OPT's offset positions and projections, no final norm when post-LN */
    rlaif_model m;
    ck_assert_int_eq(rlaif_model_create(&m, &llama), 0);
    ck_assert_int_eq(dim_of(&m, "layers.1.self_attn.k_proj.weight", 0), 16);
    ck_assert_int_eq(dim_of(&m, "layers.1.self_attn.v_proj.bias", 0), 16);
    ck_assert_int_eq(dim_of(&m, "layers.0.mlp.up_proj.weight", 0), 40);
    ck_assert_int_eq(dim_of(&m, "lm_head.weight", 0), 50);
    ck_assert_int_eq(dim_of(&m, "layers.0.self_attn.o_proj.bias", 0), -1);
    ck_assert(m.w.h[0].fc_w + 40 * 32 == m.params + m.table.t[11].offset); /* up follows gate */
    rlaif_model_free(&m);
    ck_assert_int_eq(rlaif_model_create(&m, &opt350), 0);
    ck_assert_int_eq(dim_of(&m, "embed_positions.weight", 0), 34);
    ck_assert_int_eq(dim_of(&m, "project_in.weight", 1), 16);
    ck_assert_int_eq(dim_of(&m, "project_out.weight", 0), 16);
    ck_assert_int_eq(dim_of(&m, "score.weight", 1), 16);
    ck_assert_int_eq(dim_of(&m, "final_layer_norm.weight", 0), -1);
    rlaif_model_free(&m);
    remove(path);
}
END_TEST

/* A bad config is refused with the field's name. */
static void expect_config_error(rlaif_model_config c, const char *needle) {
    rlaif_model m;
    ck_assert_int_ne(rlaif_model_create(&m, &c), 0);
    ck_assert_msg(strstr(rlaif_error_message(), needle), "message '%s' lacks '%s'",
                  rlaif_error_message(), needle);
    rlaif_error_clear();
}

START_TEST(config_errors) {
    rlaif_model_config c = llama;
    c.n_kv_head = 3;
    expect_config_error(c, "n_kv_head 3 does not divide n_head 4");
    c = llama, c.n_head = 32; /* head_dim 1 */
    expect_config_error(c, "head_dim 1 is odd");
    c = llama, c.rope_high_freq_factor = 0.5f;
    expect_config_error(c, "rope_high_freq_factor");
    c = llama, c.word_embed_dim = 16;
    expect_config_error(c, "word_embed_dim");
    c = tiny, c.n_kv_head = 2;
    expect_config_error(c, "n_kv_head 2 != n_head 4");
    c = tiny, c.sliding_window = 4;
    expect_config_error(c, "sliding_window");
    c = opt350, c.n_head = 5;
    expect_config_error(c, "n_head 5 does not divide n_embd 32");
    c = opt350, c.arch = 7;
    expect_config_error(c, "arch 7");
    /* in a file: the error names the file and the attribute */
    rlaif_model m;
    ck_assert_int_eq(rlaif_model_create(&m, &llama), 0);
    snprintf(path, sizeof path, "/tmp/rlaif-test-model-io-%d.h5", (int)getpid());
    ck_assert_int_eq(rlaif_ckpt_save(path, &m, NULL, 0), 0);
    rlaif_model_free(&m);
    /* rewritten, not H5Awrite: HDF5 1.10 cannot write an attribute of a
     * group whose attributes moved to dense storage ("can't locate open
     * attribute") */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "/config", H5P_DEFAULT);
    ck_assert(H5Adelete(g, "n_kv_head") >= 0);
    ck_assert_int_eq(rlaif_h5_write_attr_i64(g, "n_kv_head", 3), 0);
    H5Gclose(g), H5Fclose(f);
    expect_load_error("n_kv_head 3 does not divide n_head 4");
    ck_assert_int_eq(rlaif_model_create(&m, &llama), 0);
    ck_assert_int_eq(rlaif_ckpt_save(path, &m, NULL, 0), 0);
    rlaif_model_free(&m);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(H5Adelete_by_name(f, "/config", "rope_theta", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_load_error("attribute rope_theta of /config is missing");
    remove(path);
}
END_TEST

/* A gpt2 checkpoint written before OPT/Llama (only arch, the six sizes and
 * layer_norm_epsilon in /config) loads with the gpt2 defaults. */
static herr_t count_attr(hid_t loc, const char *name, const H5A_info_t *info, void *ud) {
    (void)loc, (void)name, (void)info;
    ++*(int *)ud;
    return 0;
}

START_TEST(old_gpt2_loads) {
    rlaif_model m, m2;
    rlaif_adamw opt;
    make_ckpt(&m, &opt);
    const char *newer[] = {
        "n_kv_head",      "n_inner",     "word_embed_dim",        "norm_before",
        "tie_embeddings", "attn_bias",   "rope_original_max_pos", "sliding_window",
        "rope_theta",     "rope_factor", "rope_low_freq_factor",  "rope_high_freq_factor",
        "rope_type"};
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    for (size_t i = 0; i < sizeof newer / sizeof newer[0]; i++)
        ck_assert(H5Adelete_by_name(f, "/config", newer[i], H5P_DEFAULT) >= 0);
    hid_t g = H5Gopen2(f, "/config", H5P_DEFAULT);
    int nattr = 0;
    ck_assert(H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, count_attr, &nattr) >= 0);
    ck_assert_int_eq(nattr, 8); /* arch, 6 sizes, layer_norm_epsilon */
    H5Gclose(g), H5Fclose(f);
    ck_assert_int_eq(rlaif_model_load(path, &m2), 0);
    ck_assert(!memcmp(&m.cfg, &m2.cfg, sizeof m.cfg));
    ck_assert(!memcmp(m.params, m2.params, m.table.total * sizeof(float)));
    rlaif_model_free(&m), rlaif_model_free(&m2), rlaif_adamw_free(&opt);
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
    rlaif_gen_output_free(&again);
    /* the same token as the second end token (a chat turn's end besides EOS) */
    gc.eos_id2 = gc.eos_id, gc.eos_id = 7777;
    ck_assert_int_eq(rlaif_generate(&m, &gc, 3, toks, off, len, idx, &again), 0);
    ck_assert_int_eq(again.length[0], first + 1);
    ck_assert_int_eq(again.tokens[first], gc.eos_id2);
    gc.eos_id = -1, gc.eos_id2 = -1;
    rlaif_gen_output_free(&again), rlaif_gen_output_free(&all), rlaif_gen_output_free(&one);
    /* too long for max_seq_len is a usage error */
    gc.max_new_tokens = 30;
    ck_assert_int_eq(rlaif_generate(&m, &gc, 3, toks, off, len, idx, &again), RLAIF_EX_USAGE);
    rlaif_error_clear();
    rlaif_model_free(&m);
}
END_TEST

/* A vocabulary padded past the tokenizer's: ids >= n_valid are never sampled
 * (they would have no text), greedy or not; without the limit they are. */
START_TEST(padded_vocabulary_not_sampled) {
    rlaif_model m;
    ck_assert_int_eq(rlaif_model_create(&m, &tiny), 0);
    rlaif_model_init_random(&m, 3, 1.0f); /* large weights: every id gets mass */
    int V = m.cfg.vocab_size, n_valid = V / 2, toks[8];
    int64_t off[8];
    int len[8];
    for (int b = 0; b < 8; b++) toks[b] = b + 1, off[b] = b, len[b] = 1;
    rlaif_gen_config gc = rlaif_gen_defaults();
    gc.temperature = 1.0f, gc.seed = 5, gc.max_new_tokens = 12;
    int above[2] = {0, 0};
    for (int limit = 0; limit < 2; limit++) {
        gc.n_valid = limit ? n_valid : 0;
        for (gc.temperature = 0.0f; gc.temperature < 2.5f; gc.temperature += 2.0f) {
            rlaif_gen_output go;
            ck_assert_int_eq(rlaif_generate(&m, &gc, 8, toks, off, len, NULL, &go), 0);
            for (int i = 0; i < 8 * 12; i++) above[limit] += go.tokens[i] >= n_valid;
            rlaif_gen_output_free(&go);
        }
    }
    ck_assert_int_gt(above[0], 0); /* the test could see a padded id */
    ck_assert_int_eq(above[1], 0);
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
    tcase_add_test(tc, roundtrip_archs);
    tcase_add_test(tc, config_errors);
    tcase_add_test(tc, old_gpt2_loads);
    tcase_add_test(tc, adamw_skip_and_shards);
    tcase_add_test(tc, sampling_is_per_sequence);
    tcase_add_test(tc, sample_token_filters);
    tcase_add_test(tc, padded_vocabulary_not_sampled);
    suite_add_tcase(s, tc);
    return s;
}
