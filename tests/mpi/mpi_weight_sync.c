/* mpi_weight_sync.c - run under mpiexec -n 4 (learner 0, learner 1, two
 * rollout ranks): the bucketed weight broadcast (weight_sync.h) after real
 * AdamW updates leaves each rollout's parameters bit-identical to learner 0's,
 * a rollout then samples exactly the tokens and log-probs learner 0 samples
 * with the same seed, for buckets smaller than a tensor and not dividing the
 * block; learner 1 (outside the communicator) is untouched; an unchanged
 * version moves nothing. The reference copy of learner 0's block travels by
 * a plain MPI_Bcast over the world, a path independent of the buckets. */
#include "rlaif/core/config.h"
#include "rlaif/core/error.h"
#include "rlaif/core/ranks.h"
#include "rlaif/core/weight_sync.h"
#include "rlaif/engine/generate.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/optim.h"

#include <stdlib.h>
#include <string.h>

#include "check_main.h"

enum { T = 12, B = 3, NEW = 8 };
static int world_rank;
static const rlaif_model_config tiny = {
    .n_layer = 2, .n_embd = 32, .n_head = 4, .vocab_size = 67, .max_seq_len = 24};

static rlaif_config *config_with(int nset, char **sets) {
    rlaif_config *cfg = NULL;
    char *no_env[] = {NULL};
    int st = 0;
    if (world_rank == 0) st = rlaif_config_load(&cfg, NULL, nset, sets, no_env);
    ck_assert_int_eq(rlaif_config_bcast(&cfg, st, 0, MPI_COMM_WORLD), 0);
    return cfg;
}

/* Learner 0, learner 1 (outside the weights communicator), 2 rollouts. */
static rlaif_config *layout(rlaif_ranks *rk) {
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    char *sets[] = {"ranks.learner=2", "ranks.rollout=2", "ranks.judge=0"};
    rlaif_config *cfg = config_with(3, sets);
    ck_assert_int_eq(rlaif_ranks_init(rk, cfg, NULL), 0);
    ck_assert_int_eq(rk->role, world_rank < 2 ? RLAIF_ROLE_LEARNER : RLAIF_ROLE_ROLLOUT);
    return cfg;
}

/* One real learner update: next-token cross-entropy on a fixed batch, AdamW. */
static void learner_step(rlaif_model *m, rlaif_adamw *opt, int k) {
    int tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (7 * i + 3 * k) % tiny.vocab_size;
    for (int i = 0; i < B * T; i++) tgt[i] = i % T == T - 1 ? -1 : tok[i + 1];
    float dlogp[B * T];
    rlaif_model_zero_grad(m);
    ck_assert_int_eq(rlaif_model_forward(m, tok, NULL, NULL, B, T), 0);
    ck_assert_int_eq(rlaif_model_lm_forward(m, tgt), 0);
    float loss = rlaif_ce_loss(m, tgt, NULL, dlogp);
    ck_assert_int_eq(rlaif_model_backward(m, dlogp, NULL, NULL), 0);
    rlaif_step_info info;
    rlaif_adamw_step(opt, m->params, m->grads, loss, &info);
    ck_assert_int_eq(info.skipped, 0);
}

/* Sampled tokens and log-probs of B prompts at temperature 1, fixed seed. */
static void sample(rlaif_model *m, int *tokens, float *logp) {
    int prompt[] = {5, 9, 11, 2, 40, 41, 42, 66};
    int64_t off[B] = {0, 2, 5};
    int len[B] = {2, 3, 3};
    rlaif_gen_config gc = rlaif_gen_defaults();
    gc.temperature = 1.0f, gc.max_new_tokens = NEW, gc.seed = 77, gc.step = 3;
    rlaif_gen_output out;
    ck_assert_int_eq(rlaif_generate(m, &gc, B, prompt, off, len, NULL, &out), 0);
    memcpy(tokens, out.tokens, sizeof(int) * B * NEW);
    memcpy(logp, out.logp, sizeof(float) * B * NEW);
    rlaif_gen_output_free(&out);
}

/* Every rank's verdict, agreed over the world before asserting, so a
 * failure on one rank fails the test on all instead of hanging the others. */
static int all_ok(int ok) {
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}

/* Learner 0's parameters and samples reach every rank by plain MPI_Bcast
 * over the world; each rollout compares its own bit for bit. */
static void check_rollouts_equal(const rlaif_ranks *rk, rlaif_model *m, const float *l1_before) {
    size_t n = m->table.total, bytes = sizeof(float) * n;
    float *ref = xmalloc(bytes);
    if (world_rank == 0) memcpy(ref, m->params, bytes);
    MPI_Bcast(ref, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    int ok = 1;
    if (rk->role == RLAIF_ROLE_ROLLOUT) ok = memcmp(m->params, ref, bytes) == 0;
    if (rk->role == RLAIF_ROLE_LEARNER && world_rank != 0) /* untouched, and not learner 0's */
        ok = memcmp(m->params, l1_before, bytes) == 0 && memcmp(m->params, ref, bytes) != 0;
    ck_assert_msg(all_ok(ok), "parameters after the broadcast");
    int tok[B * NEW], tok0[B * NEW];
    float lp[B * NEW], lp0[B * NEW];
    sample(m, tok, lp);
    memcpy(tok0, tok, sizeof tok), memcpy(lp0, lp, sizeof lp);
    MPI_Bcast(tok0, B * NEW, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(lp0, B * NEW, MPI_FLOAT, 0, MPI_COMM_WORLD);
    ok = rk->role != RLAIF_ROLE_ROLLOUT ||
         (memcmp(tok, tok0, sizeof tok) == 0 && memcmp(lp, lp0, sizeof lp) == 0);
    ck_assert_msg(all_ok(ok), "samples of a rollout vs learner 0");
    free(ref);
}

/* One broadcast of version v: learner 0 overlaps by polling, rollouts poll
 * then wait. */
static void broadcast(rlaif_wsync *w, uint64_t v) {
    ck_assert_int_eq(rlaif_wsync_start(w, v), 0);
    int done = 0;
    for (int i = 0; i < 3 && !done; i++) ck_assert_int_eq(rlaif_wsync_test(w, &done), 0);
    ck_assert_int_eq(rlaif_wsync_wait(w), 0);
    ck_assert_int_eq(rlaif_wsync_test(w, &done), 0);
    ck_assert_int_eq(done, 1);
}

START_TEST(bucketed_broadcast_bit_exact) {
    rlaif_ranks rk;
    rlaif_config *cfg = layout(&rk);
    ck_assert_int_eq(rlaif_cfg_int(cfg, "ranks.weight_bucket_bytes"), 16 << 20);

    rlaif_model m;
    ck_assert_int_eq(rlaif_model_create(&m, &tiny), 0);
    rlaif_model_init_random(&m, 100 + (uint64_t)world_rank, 0.02f); /* all differ */
    rlaif_model_alloc_grads(&m);
    size_t n = m.table.total, biggest = 0;
    for (int i = 0; i < m.table.n; i++)
        if (m.table.t[i].numel > biggest) biggest = m.table.t[i].numel;
    rlaif_adamw_config oc = rlaif_adamw_defaults();
    oc.lr = 1e-2f;
    rlaif_adamw opt;
    rlaif_adamw_init(&opt, &oc, &m.table, 0, n);
    float *l1_before = xmalloc(sizeof(float) * n);
    memcpy(l1_before, m.params, sizeof(float) * n);

    /* bucket sizes in bytes: one float; 997 floats (prime: does not divide
     * the block, smaller than the largest tensor); not a float multiple;
     * the configured default (one bucket for this model) */
    size_t sizes[] = {4, 997 * 4, 1001 * 4 + 3,
                      (size_t)rlaif_cfg_int(cfg, "ranks.weight_bucket_bytes")};
    uint64_t v = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        if (world_rank == 0) learner_step(&m, &opt, (int)k);
        rlaif_wsync w;
        ck_assert_int_eq(rlaif_wsync_init(&w, rk.weights, m.params, m.table.total, sizes[k], v), 0);
        if (rk.weights != MPI_COMM_NULL) {
            size_t bucket = sizes[k] / 4;
            ck_assert_int_eq(w.nbuckets, (int)((n + bucket - 1) / bucket));
            if (k == 1 || k == 2) ck_assert(n % bucket != 0 && bucket < biggest);
        }
        broadcast(&w, ++v);
        ck_assert_uint_eq(w.version, rk.weights == MPI_COMM_NULL ? v - 1 : v);
        ck_assert_int_eq(w.buckets, rk.weights == MPI_COMM_NULL ? 0 : w.nbuckets);
        check_rollouts_equal(&rk, &m, l1_before);
        rlaif_wsync_free(&w);
    }
    rlaif_adamw_free(&opt);
    free(l1_before);
    rlaif_model_free(&m);
    rlaif_ranks_free(&rk);
    rlaif_config_free(cfg);
}
END_TEST

START_TEST(unchanged_version_moves_nothing) {
    rlaif_ranks rk;
    rlaif_config *cfg = layout(&rk);
    rlaif_model m;
    ck_assert_int_eq(rlaif_model_create(&m, &tiny), 0);
    rlaif_model_init_random(&m, 7 + (uint64_t)world_rank, 0.02f);
    size_t n = m.table.total;
    rlaif_wsync w;
    ck_assert_int_eq(rlaif_wsync_init(&w, rk.weights, m.params, m.table.total, 1000, 0), 0);
    broadcast(&w, 5);
    float *held = xmalloc(sizeof(float) * n);
    memcpy(held, m.params, sizeof(float) * n);
    /* learner 0 changes its block but announces the version already sent:
     * the receivers keep theirs (only the header moved) */
    if (world_rank == 0) m.params[0] += 1.0f;
    broadcast(&w, 5);
    int ok = rk.role != RLAIF_ROLE_ROLLOUT ||
             (memcmp(m.params, held, sizeof(float) * n) == 0 && w.skipped == 1 && w.version == 5);
    ck_assert_msg(all_ok(ok), "an unchanged version moved parameters");
    /* a new version moves everything again */
    broadcast(&w, 6);
    ok = rk.role != RLAIF_ROLE_ROLLOUT || memcmp(m.params, held, sizeof(float) * n) != 0;
    ck_assert_msg(all_ok(ok), "a new version did not move the parameters");
    if (rk.weights != MPI_COMM_NULL) ck_assert_int_eq(w.buckets, 2 * w.nbuckets);
    free(held);
    rlaif_wsync_free(&w);
    rlaif_model_free(&m);
    rlaif_ranks_free(&rk);
    rlaif_config_free(cfg);
}
END_TEST

START_TEST(block_size_mismatch_agreed) {
    rlaif_ranks rk;
    rlaif_config *cfg = layout(&rk);
    rlaif_model_config c = tiny;
    if (world_rank == 3) c.n_layer = 1; /* one rollout loaded another model */
    rlaif_model m;
    ck_assert_int_eq(rlaif_model_create(&m, &c), 0);
    rlaif_wsync w;
    int rc = rlaif_wsync_init(&w, rk.weights, m.params, m.table.total, 4096, 0);
    ck_assert_int_eq(rc, rk.weights == MPI_COMM_NULL ? 0 : RLAIF_EX_USAGE);
    rlaif_error_clear();
    rlaif_wsync_free(&w);
    rlaif_model_free(&m);
    rlaif_ranks_free(&rk);
    rlaif_config_free(cfg);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("mpi_weight_sync");
    TCase *tc = tcase_create("weight_sync");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, bucketed_broadcast_bit_exact);
    tcase_add_test(tc, unchanged_version_moves_nothing);
    tcase_add_test(tc, block_size_mismatch_agreed);
    suite_add_tcase(s, tc);
    return s;
}
