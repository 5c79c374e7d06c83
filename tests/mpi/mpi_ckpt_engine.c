/* mpi_ckpt_engine.c - the parallel checkpoint writer (storage) and the
 * engine's serial one (src/engine/model_io.c) share one layout: a checkpoint written
 * by 4 learners loads with rlaif_ckpt_load / rlaif_model_load, and one written
 * serially loads sharded on 4 ranks, parameters and moments bit for bit; the
 * tokenizer module's callbacks store /tokenizer and every rank reads it back. */
#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/error.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/engine/optim.h"
#include "rlaif/tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"

static const rlaif_model_config cfg = {
    .n_layer = 2, .n_embd = 32, .n_head = 2, .vocab_size = 64, .max_seq_len = 16, .score_head = 1};

static void ok(int rc) {
    if (rc) {
        char buf[1024];
        rlaif_error_format(buf, sizeof buf, 1);
        fprintf(stderr, "%s\n", buf);
        ck_abort_msg("%s", buf);
    }
}

static float moment(int k, size_t i) {
    return (float)(k + 1) * 1e-3f * (float)((i * 2654435761u) % 1000) - 0.3f;
}

static void tmpdir(char *dir, size_t n) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
        snprintf(dir, n, "/tmp/rlaif-ckpt-engine-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
    }
    MPI_Bcast(dir, (int)n, MPI_CHAR, 0, MPI_COMM_WORLD);
}

static void rmdir_all(const char *dir) {
    MPI_Barrier(MPI_COMM_WORLD);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
}

START_TEST(test_parallel_to_serial) {
    int rank, nproc;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nproc);
    char dir[256];
    tmpdir(dir, sizeof dir);
    rlaif_model m;
    ok(rlaif_model_create(&m, &cfg));
    rlaif_model_init_random(&m, 7, 0.02f);
    size_t b, e, total = m.table.total;
    rlaif_shard_range(total, nproc, rank, &b, &e);
    float *mm = malloc(4 * (e - b + 1)), *vv = malloc(4 * (e - b + 1));
    for (size_t i = b; i < e; i++) mm[i - b] = moment(0, i), vv[i - b] = moment(1, i);
    rlaif_ckpt c;
    memset(&c, 0, sizeof c);
    c.table = &m.table, c.params = m.params, c.m = mm, c.v = vv, c.moments_sharded = 1;
    c.arch = "gpt2";
    rlaif_kv_set_int(&c.config, "n_layer", cfg.n_layer);
    rlaif_kv_set_int(&c.config, "n_embd", cfg.n_embd);
    rlaif_kv_set_int(&c.config, "n_head", cfg.n_head);
    rlaif_kv_set_int(&c.config, "vocab_size", cfg.vocab_size);
    rlaif_kv_set_int(&c.config, "max_seq_len", cfg.max_seq_len);
    rlaif_kv_set_int(&c.config, "score_head", cfg.score_head);
    rlaif_kv_set_double(&c.config, "layer_norm_epsilon", RLAIF_LN_EPS);
    rlaif_kv_set_int(&c.optim, "step", 5);
    rlaif_kv_set_int(&c.optim, "skipped", 1);
    rlaif_ckpt_opts o = {dir, "sft", 2, {0}, ""};
    rlaif_h5_opts_default(&o.io);
    char path[512];
    ok(rlaif_checkpoint_save(MPI_COMM_WORLD, &o, 5, &c, path, sizeof path));
    if (rank == 0) {
        rlaif_model m2;
        ok(rlaif_model_load(path, &m2));
        ck_assert_int_eq(m2.table.total, total);
        ck_assert(!memcmp(m2.params, m.params, 4 * total));
        rlaif_adamw opt;
        rlaif_adamw_config acfg;
        memset(&acfg, 0, sizeof acfg);
        rlaif_adamw_init(&opt, &acfg, &m2.table, 0, total);
        long step = 0;
        memset(m2.params, 0, 4 * total);
        ok(rlaif_ckpt_load(path, &m2, &opt, &step));
        ck_assert(!memcmp(m2.params, m.params, 4 * total));
        ck_assert_int_eq(step, 5);
        ck_assert_int_eq(opt.step, 5);
        ck_assert_int_eq(opt.skipped, 1);
        for (size_t i = 0; i < total; i++) {
            float a = moment(0, i), v = moment(1, i);
            ck_assert(!memcmp(&opt.m[i], &a, 4) && !memcmp(&opt.v[i], &v, 4));
        }
        rlaif_adamw_free(&opt);
        rlaif_model_free(&m2);
    }
    free(mm), free(vv);
    rlaif_kv_free(&c.config), rlaif_kv_free(&c.optim), rlaif_kv_free(&c.state);
    rlaif_model_free(&m);
    rmdir_all(dir);
}
END_TEST

START_TEST(test_serial_to_parallel) {
    int rank, nproc;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nproc);
    char dir[256], path[512];
    tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/serial.h5", dir);
    rlaif_model m;
    ok(rlaif_model_create(&m, &cfg));
    rlaif_model_init_random(&m, 11, 0.02f);
    size_t total = m.table.total;
    if (rank == 0) {
        rlaif_adamw opt;
        rlaif_adamw_config acfg;
        memset(&acfg, 0, sizeof acfg);
        rlaif_adamw_init(&opt, &acfg, &m.table, 0, total);
        for (size_t i = 0; i < total; i++) opt.m[i] = moment(2, i), opt.v[i] = moment(3, i);
        opt.step = 9;
        ok(rlaif_ckpt_save(path, &m, &opt, 9));
        rlaif_adamw_free(&opt);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    size_t b, e;
    rlaif_shard_range(total, nproc, rank, &b, &e);
    rlaif_ckpt c;
    memset(&c, 0, sizeof c);
    c.table = &m.table;
    c.params = calloc(total, 4);
    c.m = calloc(e - b + 1, 4), c.v = calloc(e - b + 1, 4), c.moments_sharded = 1;
    rlaif_h5_opts io;
    rlaif_h5_opts_default(&io);
    ok(rlaif_checkpoint_load(MPI_COMM_WORLD, path, &io, &c));
    ck_assert(!memcmp(c.params, m.params, 4 * total));
    for (size_t i = b; i < e; i++) {
        float a = moment(2, i), v = moment(3, i);
        ck_assert(!memcmp(&c.m[i - b], &a, 4) && !memcmp(&c.v[i - b], &v, 4));
    }
    int64_t n_layer, step;
    ok(rlaif_kv_get_int(&c.config, "n_layer", &n_layer));
    ok(rlaif_kv_get_int(&c.state, "step", &step));
    ck_assert_int_eq(n_layer, cfg.n_layer);
    ck_assert_int_eq(step, 9);
    free(c.params), free(c.m), free(c.v);
    rlaif_kv_free(&c.config), rlaif_kv_free(&c.optim), rlaif_kv_free(&c.state);
    rlaif_model_free(&m);
    rmdir_all(dir);
}
END_TEST

START_TEST(test_tokenizer_group) {
    int rank, nproc;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nproc);
    char dir[256];
    tmpdir(dir, sizeof dir);
    rlaif_tokenizer *tok = NULL, *back = NULL;
    ok(rlaif_tokenizer_byte(&tok, "<|endoftext|>,<|pad|>"));
    rlaif_tensor_table tt;
    memset(&tt, 0, sizeof tt);
    int64_t shape[1] = {10};
    rlaif_tensors_add(&tt, "ln_f.weight", 1, shape);
    float params[10] = {0};
    rlaif_ckpt c;
    memset(&c, 0, sizeof c);
    c.table = &tt, c.params = params;
    c.tokenizer_write = rlaif_tokenizer_ckpt_write, c.tokenizer_ud = tok;
    c.tokenizer_read = rlaif_tokenizer_ckpt_read, c.tokenizer_read_ud = &back;
    rlaif_ckpt_opts o = {dir, "tok", 1, {0}, ""};
    rlaif_h5_opts_default(&o.io);
    char path[512];
    ok(rlaif_checkpoint_save(MPI_COMM_WORLD, &o, 1, &c, path, sizeof path));
    ok(rlaif_checkpoint_load(MPI_COMM_WORLD, path, &o.io, &c));
    ck_assert_ptr_nonnull(back);
    const char *text = "h\xc3\xa9llo, world";
    rlaif_tokens a = {0}, b = {0};
    ok(rlaif_tokenizer_encode(tok, text, strlen(text), 0, &a));
    ok(rlaif_tokenizer_encode(back, text, strlen(text), 0, &b));
    ck_assert_uint_eq(a.n, b.n);
    ck_assert(!memcmp(a.ids, b.ids, sizeof(int32_t) * a.n));
    rlaif_tokens_free(&a), rlaif_tokens_free(&b);
    rlaif_tokenizer_free(tok), rlaif_tokenizer_free(back);
    rlaif_kv_free(&c.config), rlaif_kv_free(&c.optim), rlaif_kv_free(&c.state);
    rlaif_tensors_free(&tt);
    rmdir_all(dir);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("ckpt_engine");
    TCase *tc = tcase_create("layout");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_parallel_to_serial);
    tcase_add_test(tc, test_serial_to_parallel);
    tcase_add_test(tc, test_tokenizer_group);
    suite_add_tcase(s, tc);
    return s;
}
