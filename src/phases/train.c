/* train.c - the learner training loop shared by the training phases.
 *
 * Gradient reduction is ZeRO-1 style: MPI_Reduce_scatter hands each learner
 * the summed gradients of its shard, AdamW updates that shard with moments
 * kept for it alone, and MPI_Allgatherv sends the updated parameters back to
 * everyone. A ring all-reduce is itself a reduce-scatter followed by an
 * all-gather, so this moves the same bytes as MPI_Allreduce, but each learner
 * stores m and v for 1/L of the parameters and does 1/L of the AdamW work
 * (which is bandwidth-bound: 7 floats per parameter). Checkpoints therefore
 * hold full parameters and sharded moments (moments_sharded = 1), and a run
 * resumes on any learner count. */
#include "rlaif/phases/train.h"
#include "rlaif/phases/layout.h"
#include "rlaif/phases/registry.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/log.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/core/rng.h"
#include "rlaif/core/stop.h"
#include "rlaif/core/telemetry.h"

#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static rlaif_adamw_config optim_from_cfg(const rlaif_config *cfg, const char *sec) {
    char k[64];
#define GETF(name) (snprintf(k, sizeof k, "%s.%s", sec, name), rlaif_cfg_float(cfg, k))
#define GETI(name) (snprintf(k, sizeof k, "%s.%s", sec, name), rlaif_cfg_int(cfg, k))
    rlaif_adamw_config oc = rlaif_adamw_defaults();
    oc.lr = (float)GETF("lr");
    oc.beta1 = (float)GETF("beta1");
    oc.beta2 = (float)GETF("beta2");
    oc.eps = (float)GETF("eps");
    oc.weight_decay = (float)GETF("weight_decay");
    oc.grad_clip = (float)GETF("grad_clip");
    oc.warmup_steps = (long)GETI("warmup_steps");
    oc.total_steps = (long)GETI("steps");
    oc.min_lr_ratio = (float)GETF("min_lr_ratio");
#undef GETF
#undef GETI
    return oc;
}

/* A new scalar head (rlaif_model_source.fresh_head in train.h): the std of
 * 1/sqrt(C + 1) gives rewards of about unit scale on LayerNorm outputs
 * (as in OpenAI's lm-human-preferences and TRL's reward/value heads). */
static void init_fresh_head(rlaif_model *m, uint64_t seed) {
    int C = m->cfg.word_embed_dim; /* the head reads the final hidden state */
    rlaif_rng r;
    rlaif_rng_init(&r, seed, RLAIF_STREAM_INIT, 1, (uint32_t)(m->table.n - 2));
    float std = 1.0f / sqrtf((float)C + 1.0f);
    for (int c = 0; c < C; c++) m->w.score_w[c] = std * rlaif_rng_normal(&r);
    m->w.score_b[0] = 0.0f;
}

/* A model loaded without a scalar head -> the same trunk with a (zero) head. */
static int add_head(rlaif_model *m) {
    rlaif_model_config hc = m->cfg;
    hc.score_head = 1;
    rlaif_model h;
    RLAIF_TRY(rlaif_model_create(&h, &hc));
    /* the head's two tensors come last in the canonical order, so the
     * trunk's parameters are a prefix of the new flat buffer */
    memcpy(h.params, m->params, sizeof(float) * m->table.total);
    rlaif_model_free(m);
    *m = h;
    return 0;
}

/* A random-init model's architecture from [model] (0 = the arch's default;
 * keys another arch has no use for are ignored, e.g. n_kv_head for gpt2). */
static rlaif_model_config model_config(const rlaif_config *cfg, int score_head) {
    rlaif_model_config mc = {
        .arch = rlaif_arch_parse(rlaif_cfg_str(cfg, "model.arch")),
        .n_layer = (int)rlaif_cfg_int(cfg, "model.n_layer"),
        .n_embd = (int)rlaif_cfg_int(cfg, "model.n_embd"),
        .n_head = (int)rlaif_cfg_int(cfg, "model.n_head"),
        .vocab_size = (int)rlaif_cfg_int(cfg, "model.vocab_size"),
        .max_seq_len = (int)rlaif_cfg_int(cfg, "model.max_seq_len"),
        .score_head = score_head,
        .n_inner = (int)rlaif_cfg_int(cfg, "model.n_inner"),
    };
    if (mc.arch == RLAIF_ARCH_LLAMA) {
        mc.n_kv_head = (int)rlaif_cfg_int(cfg, "model.n_kv_head");
        mc.rope_theta = (float)rlaif_cfg_float(cfg, "model.rope_theta");
        mc.tie_embeddings = rlaif_cfg_bool(cfg, "model.tie_embeddings");
        mc.attn_bias = rlaif_cfg_bool(cfg, "model.attn_bias");
        mc.sliding_window = (int)rlaif_cfg_int(cfg, "model.sliding_window");
    }
    mc.norm_before = rlaif_cfg_bool(cfg, "model.norm_before");
    return mc;
}

int rlaif_job_model_config(const rlaif_config *cfg, rlaif_model_config *mc) {
    const char *from = rlaif_cfg_str(cfg, "model.init_from");
    if (*from) return rlaif_ckpt_read_config(from, mc);
    *mc = model_config(cfg, 0);
    if (mc->vocab_size == 0) {
        rlaif_tokenizer *tok = NULL;
        RLAIF_TRY(rlaif_tokenizer_from_config(&tok, cfg));
        mc->vocab_size = rlaif_tokenizer_vocab_size(tok);
        rlaif_tokenizer_free(tok);
    }
    return 0;
}

/* Tokenizer and model, from a checkpoint or from [tokenizer] + [model]. */
static int build_model(rlaif_learner *L, const rlaif_model_source *src) {
    const rlaif_config *cfg = L->cfg;
    const char *key = src->init_from ? "model" : "model.init_from";
    const char *from = src->init_from ? src->init_from : rlaif_cfg_str(cfg, "model.init_from");
    int score_head = src->score_head;
    uint64_t seed = (uint64_t)rlaif_cfg_int(cfg, "run.seed");
    if (*from) {
        if (access(from, R_OK) != 0)
            return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                               "give a checkpoint written by rlaif (e.g. run/ckpt/sft-*.h5) or "
                               "converted by tools/user/hf-to-rlaif",
                               "%s: cannot read '%s': %s", key, from, strerror(errno));
        int rc = rlaif_tokenizer_for_checkpoint(&L->tok, from, cfg);
        if (!rc) rc = rlaif_chat_from_config(&L->chat, cfg, from);
        if (!rc) rc = rlaif_model_load(from, &L->model);
        if (rc) return rlaif_error_context("%s '%s': ", key, from), rc;
        if (score_head && !L->model.cfg.score_head) {
            if (!src->fresh_head)
                return RLAIF_ERROR(RLAIF_EX_USAGE,
                                   "start from a model with a score head (e.g. a reward model)",
                                   "%s '%s' has no scalar head", key, from);
            RLAIF_TRY(add_head(&L->model));
        }
        if (score_head && src->fresh_head) init_fresh_head(&L->model, seed);
        snprintf(L->init_path, sizeof L->init_path, "%s", from);
    } else {
        RLAIF_TRY(rlaif_tokenizer_from_config(&L->tok, cfg));
        RLAIF_TRY(rlaif_chat_from_config(&L->chat, cfg, NULL));
        rlaif_model_config mc = model_config(cfg, score_head);
        if (mc.vocab_size == 0) mc.vocab_size = rlaif_tokenizer_vocab_size(L->tok);
        RLAIF_TRY(rlaif_model_create(&L->model, &mc));
        /* same weights on every learner: keyed by the seed, not the rank */
        rlaif_model_init_random(&L->model, seed, (float)rlaif_cfg_float(cfg, "model.init_std"));
        if (score_head && src->fresh_head) init_fresh_head(&L->model, seed);
    }
    if (rlaif_tokenizer_vocab_size(L->tok) > L->model.cfg.vocab_size)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set model.vocab_size = 0 (the tokenizer's size)",
                           "the tokenizer has %d tokens but the model only %d",
                           (int)rlaif_tokenizer_vocab_size(L->tok), L->model.cfg.vocab_size);
    rlaif_model_alloc_grads(&L->model);
    return 0;
}

/* Shards of the flat parameter space and the collectives' counts. */
static int setup_shards(rlaif_learner *L) {
    size_t total = L->model.table.total;
    L->counts = xmalloc(sizeof(int) * (size_t)L->size);
    L->displs = xmalloc(sizeof(int) * (size_t)L->size);
    if (total > INT_MAX)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "the collectives count floats in an int",
                           "%zu parameters do not fit one MPI count", total);
    for (int r = 0; r < L->size; r++) {
        size_t b, e;
        rlaif_shard_range(total, L->size, r, &b, &e);
        L->counts[r] = (int)(e - b), L->displs[r] = (int)b;
    }
    rlaif_shard_range(total, L->size, L->rank, &L->begin, &L->end);
    L->gshard = xmalloc(sizeof(float) * (L->end - L->begin + 1));
    rlaif_adamw_init(&L->opt, &L->oc, &L->model.table, L->begin, L->end);
    return 0;
}

/* Everything of init that may fail on one rank only (files, sizes). */
static int init_local(rlaif_learner *L, const char *section, const rlaif_model_source *src) {
    const rlaif_config *cfg = L->cfg;
    char k[64];
    L->oc = optim_from_cfg(cfg, section);
    snprintf(k, sizeof k, "%s.steps", section);
    L->steps = (long)rlaif_cfg_int(cfg, k);
    snprintf(k, sizeof k, "%s.batch_size", section);
    L->batch_size = (long)rlaif_cfg_int(cfg, k);
    snprintf(k, sizeof k, "%s.micro_batch", section);
    L->micro_batch = (long)rlaif_cfg_int(cfg, k);
    if (L->micro_batch <= 0) L->micro_batch = L->batch_size;
    RLAIF_TRY(build_model(L, src));
    RLAIF_TRY(setup_shards(L));
    const char *out = rlaif_cfg_str(cfg, "run.out_dir");
    rlaif_out_ckpt_dir(cfg, L->ckpt_dir, sizeof L->ckpt_dir);
    return L->rank == 0 ? rlaif_mkdir_p(*out ? out : ".") : 0;
}

int rlaif_learner_init(rlaif_learner *L, const rlaif_config *cfg, MPI_Comm comm,
                       const char *section, int score_head) {
    const rlaif_model_source src = {.score_head = score_head};
    return rlaif_learner_init_model(L, cfg, comm, section, &src);
}

int rlaif_learner_init_model(rlaif_learner *L, const rlaif_config *cfg, MPI_Comm comm,
                             const char *section, const rlaif_model_source *src) {
    memset(L, 0, sizeof *L);
    L->cfg = cfg, L->comm = comm;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &L->rank));
    RLAIF_CHECK_MPI(MPI_Comm_size(comm, &L->size));
    RLAIF_TRY(rlaif_agree(comm, init_local(L, section, src)));
    rlaif_checkpoint_opts_from_cfg(&L->ckpt, cfg, L->ckpt_dir, section);
    const char *out = rlaif_cfg_str(cfg, "run.out_dir");
    return rlaif_agree(comm, rlaif_metrics_open_run(out, comm, &L->metrics));
}

void rlaif_learner_free(rlaif_learner *L) {
    if (L->metrics) rlaif_metrics_close(&L->metrics);
    rlaif_adamw_free(&L->opt);
    rlaif_model_free(&L->model);
    rlaif_tokenizer_free(L->tok);
    rlaif_chat_free(&L->chat);
    free(L->counts), free(L->displs), free(L->gshard);
    memset(L, 0, sizeof *L);
}

void rlaif_learner_share(const rlaif_learner *L, long n, long *lo, long *hi) {
    size_t b, e;
    rlaif_shard_range((size_t)n, L->size, L->rank, &b, &e);
    *lo = (long)b, *hi = (long)e;
}

int rlaif_learner_sum(const rlaif_learner *L, double x, double *sum) {
    RLAIF_CHECK_MPI(MPI_Allreduce(&x, sum, 1, MPI_DOUBLE, MPI_SUM, L->comm));
    return 0;
}

/* ---- checkpoints ---- */

/* /config: the engine writes the model's attributes (arch, sizes, RoPE, ...). */
static int write_model_config(hid_t g, void *ud) {
    return rlaif_h5_write_config_attrs(g, ud);
}

static void ckpt_describe(rlaif_learner *L, rlaif_ckpt *c) {
    memset(c, 0, sizeof *c);
    c->table = &L->model.table;
    c->params = L->model.params;
    c->m = L->opt.m, c->v = L->opt.v, c->moments_sharded = 1;
    c->config_write = write_model_config, c->config_ud = &L->model.cfg;
}

int rlaif_learner_save(rlaif_learner *L, const rlaif_phase *ph, int done) {
    double t0 = rlaif_now();
    if (L->before_save) RLAIF_TRY(rlaif_agree(L->comm, L->before_save(L, ph->ud, done)));
    rlaif_ckpt c;
    ckpt_describe(L, &c);
    rlaif_kv_set_int(&c.optim, "step", L->opt.step);
    rlaif_kv_set_int(&c.optim, "skipped", L->opt.skipped);
    rlaif_kv_set_int(&c.state, "step", L->step);
    rlaif_kv_set_int(&c.state, "done", done);
    rlaif_kv_set_int(&c.state, "steps", L->steps);
    if (ph->save_state) ph->save_state(L, ph->ud, &c.state);
    char *job = rlaif_config_dump(L->cfg);
    c.job_config = job;
    c.tokenizer_write = rlaif_tokenizer_ckpt_write, c.tokenizer_ud = L->tok;
    c.hf_files_from = L->init_path[0] ? L->init_path : NULL;
    int rc =
        rlaif_checkpoint_save(L->comm, &L->ckpt, L->step, &c, L->ckpt_path, sizeof L->ckpt_path);
    free(job);
    rlaif_kv_free(&c.config), rlaif_kv_free(&c.optim), rlaif_kv_free(&c.state);
    rlaif_tm_since(RLAIF_TM_IO, t0);
    if (!rc) {
        rlaif_info("%s: checkpoint %s (step %ld%s)", ph->name, L->ckpt_path, L->step,
                   done ? ", done" : "");
        rlaif_live_checkpoint(L->ckpt_path, L->step);
    }
    return rc;
}

int rlaif_learner_copy_back(rlaif_learner *L) {
    return rlaif_checkpoint_copy_back(L->comm, &L->ckpt, L->ckpt_path, L->ckpt_path,
                                      sizeof L->ckpt_path);
}

int rlaif_learner_resume(rlaif_learner *L, const rlaif_phase *ph, int *found, int *done) {
    rlaif_ckpt c;
    ckpt_describe(L, &c);
    *done = 0;
    RLAIF_TRY(
        rlaif_checkpoint_resume(L->comm, &L->ckpt, &c, found, L->ckpt_path, sizeof L->ckpt_path));
    int rc = 0;
    if (*found) {
        int64_t step = 0, skipped = 0, ostep = 0;
        const rlaif_kv *d = rlaif_kv_find(&c.state, "done");
        rc = rlaif_kv_get_int(&c.state, "step", &step);
        if (!rc) rc = rlaif_kv_get_int(&c.optim, "step", &ostep);
        if (!rc) rc = rlaif_kv_get_int(&c.optim, "skipped", &skipped);
        if (!rc && ph->load_state) rc = ph->load_state(L, ph->ud, &c.state);
        L->step = (long)step, L->opt.step = (long)ostep, L->opt.skipped = (long)skipped;
        *done = d && d->is_int && d->i != 0;
        if (rc) rlaif_error_context("resuming from %s: ", L->ckpt_path);
    }
    rlaif_kv_free(&c.config), rlaif_kv_free(&c.optim), rlaif_kv_free(&c.state);
    return rc;
}

/* ---- one update ---- */

int rlaif_learner_update(rlaif_learner *L, double loss, rlaif_step_info *info) {
    rlaif_model_grads_ready(&L->model); /* a batch without a backward: zeros */
    float *g = L->model.grads;
    size_t n = L->end - L->begin;
    double t = rlaif_now();
    RLAIF_CHECK_MPI(MPI_Reduce_scatter(g, L->gshard, L->counts, MPI_FLOAT, MPI_SUM, L->comm));
    memcpy(g + L->begin, L->gshard, sizeof(float) * n);
    double mine = rlaif_grad_sumsq(g, L->begin, L->end), all;
    RLAIF_CHECK_MPI(MPI_Allreduce(&mine, &all, 1, MPI_DOUBLE, MPI_SUM, L->comm));
    double norm = sqrt(all);
    t = rlaif_tm_since(RLAIF_TM_COMM, t);
    /* The same decisions as rlaif_adamw_step, from globally reduced values,
     * so every learner skips or clips the same step. */
    rlaif_step_info in = {.lr = rlaif_lr_at(&L->oc, L->opt.step), .grad_norm = (float)norm};
    if (!isfinite(loss) || !isfinite(norm)) {
        in.skipped = 1;
        L->opt.skipped++;
    } else {
        float scale = 1.0f;
        if (L->oc.grad_clip > 0.0f) {
            double coef = L->oc.grad_clip / (norm + 1e-6);
            if (coef < 1.0) scale = (float)coef;
        }
        rlaif_adamw_update(&L->opt, L->model.params, g, in.lr, scale);
    }
    t = rlaif_tm_since(RLAIF_TM_COMPUTE, t);
    RLAIF_CHECK_MPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, L->model.params, L->counts,
                                   L->displs, MPI_FLOAT, L->comm));
    rlaif_tm_since(RLAIF_TM_COMM, t);
    *info = in;
    return 0;
}

/* ---- the loop ---- */

enum { NCOMMON = 5 };
static const char *const common_cols[NCOMMON] = {"loss", "lr", "grad_norm", "tokens_per_s",
                                                 "skipped"};

static int declare_metrics(rlaif_learner *L, const rlaif_phase *ph) {
    const char *names[NCOMMON + RLAIF_TRAIN_MAX_EXTRA];
    for (int i = 0; i < NCOMMON; i++) names[i] = common_cols[i];
    for (int i = 0; i < ph->n_extra; i++) names[NCOMMON + i] = ph->extra_names[i];
    /* only rank 0 writes metrics: every call is agreed, so a failed write
     * stops all learners at the same point instead of leaving them waiting */
    RLAIF_TRY(rlaif_agree(L->comm,
                          rlaif_metrics_phase(L->metrics, ph->name, NCOMMON + ph->n_extra, names)));
    /* rows past the resumed step came from a run that did not reach its next checkpoint */
    return rlaif_agree(L->comm, rlaif_metrics_rewind(L->metrics, ph->name, L->step));
}

/* One step: batch, reductions, update, metrics row. */
static int train_step(rlaif_learner *L, const rlaif_phase *ph, double *tokens, double *loss,
                      rlaif_step_info *info) {
    double t0 = rlaif_now();
    rlaif_model_zero_grad(&L->model);
    rlaif_batch_stats st;
    memset(&st, 0, sizeof st);
    RLAIF_TRY(rlaif_agree(L->comm, ph->batch(L, ph->ud, &st)));
    double t = rlaif_tm_since(RLAIF_TM_COMPUTE, t0);
    double mine[2 + RLAIF_TRAIN_MAX_EXTRA], all[2 + RLAIF_TRAIN_MAX_EXTRA];
    mine[0] = st.loss, mine[1] = st.tokens;
    for (int i = 0; i < ph->n_extra; i++) mine[2 + i] = st.extra[i];
    RLAIF_CHECK_MPI(MPI_Allreduce(mine, all, 2 + ph->n_extra, MPI_DOUBLE, MPI_SUM, L->comm));
    rlaif_tm_since(RLAIF_TM_COMM, t);
    RLAIF_TRY(rlaif_learner_update(L, all[0], info));
    L->step++;
    /* counted once: the tokens of this learner's share, the step by learner 0 */
    rlaif_tm_add(RLAIF_TM_TOKENS, st.tokens);
    rlaif_tm_add(RLAIF_TM_STEPS, L->rank == 0);
    double dt = rlaif_now() - t0;
    double row[NCOMMON + RLAIF_TRAIN_MAX_EXTRA] = {all[0], info->lr, info->grad_norm,
                                                   dt > 0 ? all[1] / dt : 0, info->skipped};
    for (int i = 0; i < ph->n_extra; i++) row[NCOMMON + i] = all[2 + i];
    *tokens = all[1], *loss = all[0];
    t = rlaif_now();
    int rc = rlaif_agree(L->comm, rlaif_metrics_log(L->metrics, ph->name, L->step, row));
    rlaif_tm_since(RLAIF_TM_IO, t);
    return rc;
}

/* Fault tests kill ranks in the middle of a phase (tests/faults): on a quiet
 * machine the tests' tiny phases end in a fraction of a second, before a
 * watcher can see where they are. RLAIF_TEST_STEP_DELAY (seconds) sleeps
 * after each step; it changes no number, only the pace. */
static void test_pace(void) {
    rlaif_test_delay("RLAIF_TEST_STEP_DELAY");
}

int rlaif_train_run(rlaif_learner *L, const rlaif_phase *ph) {
    RLAIF_TRY(declare_metrics(L, ph));
    long first = L->step, every = (long)rlaif_cfg_int(L->cfg, "checkpoint.every");
    long log_every = (long)rlaif_cfg_int(L->cfg, "run.log_every");
    double t0 = rlaif_now(), tokens = 0, window_tokens = 0, window_t0 = t0;
    long bad = 0, max_bad = (long)rlaif_cfg_int(L->cfg, "train.max_bad_steps");
    long q = L->quantum > 1 ? L->quantum : 1;
    while (L->step < L->steps) {
        if (L->step % q == 0 && rlaif_should_stop(L->comm)) {
            rlaif_info("%s: stop requested at step %ld/%ld: checkpointing", ph->name, L->step,
                       L->steps);
            RLAIF_TRY(rlaif_learner_save(L, ph, 0));
            RLAIF_TRY(rlaif_learner_copy_back(L));
            return RLAIF_EX_TEMPFAIL;
        }
        const rlaif_learner_hooks *h = L->hooks;
        if (h && h->outer) RLAIF_TRY(rlaif_agree(L->comm, h->outer(L, h->ud)));
        double tok = 0, loss = 0;
        rlaif_step_info info = {0};
        RLAIF_TRY(train_step(L, ph, &tok, &loss, &info));
        if (h && h->after_update) RLAIF_TRY(rlaif_agree(L->comm, h->after_update(L, h->ud, &info)));
        tokens += tok, window_tokens += tok, L->last_loss = loss;
        /* skipped comes from globally reduced values, so every learner stops at
         * the same step; no checkpoint is written during a streak (below), so
         * the newest one is of the last good step */
        if ((bad = info.skipped ? bad + 1 : 0) >= max_bad)
            return RLAIF_ERROR(RLAIF_EX_FAIL,
                               "lower the learning rate or check the data; train.max_bad_steps "
                               "sets how many are skipped before stopping",
                               "%s: %ld steps in a row with a non-finite loss or gradient, the "
                               "last at step %ld (loss %g, grad norm %g); the last good "
                               "checkpoint is %s",
                               ph->name, bad, L->step, loss, info.grad_norm,
                               *L->ckpt_path ? L->ckpt_path : "none");
        if (L->step % log_every == 0 || L->step == L->steps) {
            double now = rlaif_now(), done = (double)(L->step - first);
            char extra[160];
            snprintf(extra, sizeof extra, "loss %.4f lr %.2e |g| %.3f%s", loss, info.lr,
                     info.grad_norm, info.skipped ? " (skipped: non-finite)" : "");
            /* ETA from this run's pace (a resumed run did not do the first steps) */
            double elapsed_equiv = (now - t0) * (double)L->step / done;
            rlaif_status(ph->name, L->step, L->steps, window_tokens / (now - window_t0), "tok/s",
                         elapsed_equiv, extra);
            window_tokens = 0, window_t0 = now;
        }
        if (every > 0 && L->step % (every * q) == 0 && L->step < L->steps && !bad)
            RLAIF_TRY(rlaif_learner_save(L, ph, 0));
        if (L->stop_after > 0 && L->step - first == L->stop_after && L->rank == 0)
            rlaif_stop_request(SIGTERM); /* as if preempted: only rank 0 sees it */
        test_pace();
    }
    double dt = rlaif_now() - t0;
    L->tokens_per_s = dt > 0 ? tokens / dt : 0;
    if (L->step > first)
        rlaif_info("%s: %ld steps in %.1f s: %.2f steps/s, %.0f tok/s", ph->name, L->step - first,
                   dt, (double)(L->step - first) / dt, L->tokens_per_s);
    RLAIF_TRY(rlaif_learner_save(L, ph, 1));
    return rlaif_learner_copy_back(L);
}

/* ---- the learner-phase driver ---- */

/* The one rule of a finished learner phase: its checkpoint ran to the end
 * (/state done) and has the steps the job asks for now (a raised
 * <phase>.steps continues a finished run). */
static int finished(int done, int64_t step, long steps) {
    return done && step >= steps;
}

/* The steps the job asks of phase (its section's steps key; 0 for a phase
 * without one). */
static long phase_steps(const rlaif_config *cfg, const char *phase) {
    char k[64];
    snprintf(k, sizeof k, "%s.steps", phase);
    return rlaif_cfg_has(k) ? (long)rlaif_cfg_int(cfg, k) : 0;
}

/* One checkpoint as resume would take it, judged from the file: 0 when it
 * is passed over (unreadable, or it would end the phase but a checksum
 * fails, as resume verifies it), else 1 and st says DONE or PARTIAL. */
static int judge_ckpt(const char *path, long steps, rlaif_phase_status *st) {
    rlaif_ckpt_info in;
    if (rlaif_checkpoint_info(path, &in) != 0) {
        rlaif_warn("checkpoint %s is damaged: its /state cannot be read", path);
        return 0;
    }
    int end = finished(in.done, in.step, steps);
    if (end && rlaif_checkpoint_verify(path) != 0) {
        rlaif_warn("checkpoint %s is damaged: %s", path, rlaif_error_message());
        rlaif_error_clear();
        return 0;
    }
    st->state = end ? RLAIF_PHASE_DONE : RLAIF_PHASE_PARTIAL;
    if (end)
        snprintf(st->what, sizeof st->what, "%s, step %lld, done", path, (long long)in.step);
    else
        snprintf(st->what, sizeof st->what, "%s, step %lld of %ld", path, (long long)in.step,
                 steps);
    return 1;
}

/* Newest first, the first checkpoint judge_ckpt does not pass over decides. */
int rlaif_learner_done(const rlaif_config *cfg, const char *phase, rlaif_phase_status *st) {
    char dir[4096], path[4096];
    rlaif_out_ckpt_dir(cfg, dir, sizeof dir);
    rlaif_ckpt_opts o;
    rlaif_checkpoint_opts_from_cfg(&o, cfg, dir, phase);
    int64_t *step = NULL;
    int n = 0;
    memset(st, 0, sizeof *st);
    RLAIF_TRY(rlaif_checkpoint_list(dir, phase, &step, &n));
    st->state = n ? RLAIF_PHASE_PARTIAL : RLAIF_PHASE_NOT_STARTED;
    snprintf(st->what, sizeof st->what,
             n ? "no checkpoint of %s in %s reads and verifies" : "no %s-*.h5 in %s", phase, dir);
    int decided = 0;
    for (int i = 0; i < n && !decided; i++) {
        rlaif_checkpoint_path(&o, step[i], path, sizeof path);
        decided = judge_ckpt(path, phase_steps(cfg, phase), st);
    }
    free(step);
    return 0;
}

int rlaif_learner_phase_run(rlaif_learner *L, const rlaif_learner_phase *lp, long stop_after) {
    const char *name = lp->ph.name;
    int found, done;
    RLAIF_TRY(rlaif_learner_resume(L, &lp->ph, &found, &done));
    /* rlaif_learner_phase_enter skipped a finished phase before loading
     * anything; this is the same rule on what resume loaded, for a caller
     * that did not enter through it */
    if (found && finished(done, L->step, L->steps)) {
        rlaif_info("%s: already complete (%s, step %ld, done); skipping", name, L->ckpt_path,
                   L->step);
        return 0;
    }
    if (lp->eval_table) {
        RLAIF_TRY(rlaif_agree(
            L->comm, rlaif_metrics_phase(L->metrics, lp->eval_table, lp->n_eval, lp->eval_names)));
        RLAIF_TRY(rlaif_agree(L->comm, rlaif_metrics_rewind(L->metrics, lp->eval_table, L->step)));
    }
    if (found)
        rlaif_info("%s: resuming from %s at step %ld/%ld", name, L->ckpt_path, L->step, L->steps);
    RLAIF_TRY(lp->prepare(L, lp->ph.ud, found));
    L->stop_after = stop_after;
    L->before_save = lp->before_save;
    RLAIF_TRY(rlaif_train_run(L, &lp->ph));
    if (lp->after) RLAIF_TRY(lp->after(L, lp->ph.ud));
    rlaif_info("%s: done; %s is %s", name, lp->result, L->ckpt_path);
    return 0;
}

int rlaif_learner_phase_enter(const rlaif_ctx *ctx, const char *phase, long *stop_after,
                              MPI_Comm *comm) {
    *comm = MPI_COMM_NULL;
    RLAIF_TRY(rlaif_phase_args(ctx, phase, stop_after));
    RLAIF_TRY(rlaif_ranks_require(&ctx->ranks, phase, 1, 0, 0));
    /* the registry's done() (rlaif_learner_done), agreed by the world: a
     * finished phase loads neither its model nor its data */
    rlaif_phase_status st;
    RLAIF_TRY(rlaif_phase_status_get(ctx, rlaif_phase_find(phase), &st));
    if (st.state == RLAIF_PHASE_DONE) {
        rlaif_info("%s: already complete (%s); skipping", phase, st.what);
        return 0;
    }
    if (rlaif_ranks_has(&ctx->ranks, RLAIF_ROLE_LEARNER))
        *comm = ctx->ranks.group[RLAIF_ROLE_LEARNER];
    return 0;
}

int rlaif_phase_args(const rlaif_ctx *ctx, const char *phase, long *stop_after) {
    char hint[64];
    snprintf(hint, sizeof hint, "see rlaif %s --help", phase);
    *stop_after = 0;
    for (int i = 0; i < ctx->args.nargs; i++) {
        const char *a = ctx->args.args[i];
        char *end;
        if (!strcmp(a, "--stop-after") && i + 1 < ctx->args.nargs) {
            *stop_after = strtol(ctx->args.args[++i], &end, 10);
            if (*end || *stop_after < 1)
                return RLAIF_ERROR(RLAIF_EX_USAGE, hint,
                                   "%s: --stop-after needs a positive step count", phase);
        } else {
            return RLAIF_ERROR(RLAIF_EX_USAGE, hint, "%s: unexpected argument '%s'", phase, a);
        }
    }
    return 0;
}
