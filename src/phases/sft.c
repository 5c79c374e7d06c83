/* sft.c - `rlaif sft`: demonstrations -> token sequences -> the learner loop.
 *
 * Rank 0 of the learners reads and tokenizes the demonstrations and
 * broadcasts them (one flat token array), so the data is parsed once and a
 * bad line is reported once. */
#include "rlaif/phases/sft.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/core/rng.h"
#include "rlaif/phases/task.h"
#include "rlaif/phases/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every demonstration as tokens: example i is tok[off[i], off[i+1]), of
 * which the first plen[i] are the prompt (no loss). */
typedef struct {
    int64_t n;
    int32_t *tok;
    int64_t *off;  /* [n + 1] */
    int32_t *plen; /* [n] */
} sft_data;

static void data_free(sft_data *d) {
    free(d->tok), free(d->off), free(d->plen);
    memset(d, 0, sizeof *d);
}

/* Append one (prompt, response) as example d->n. */
static int add_example(sft_data *d, rlaif_tokens *all, rlaif_tokenizer *tok, const rlaif_chat *chat,
                       const char *prompt, const char *response, const rlaif_config *cfg,
                       int max_seq_len, const char *where) {
    size_t start = all->n, np;
    RLAIF_TRY(rlaif_format_example(tok, chat, prompt, response,
                                   rlaif_cfg_int(cfg, "data.max_prompt_len"),
                                   rlaif_cfg_int(cfg, "data.max_response_len"), all, &np));
    size_t len = all->n - start;
    if (len > (size_t)max_seq_len)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "lower data.max_prompt_len / data.max_response_len or raise "
                           "model.max_seq_len",
                           "%s: prompt + response + EOS is %zu tokens, more than "
                           "model.max_seq_len = %d",
                           where, len, max_seq_len);
    d->off[d->n + 1] = (int64_t)all->n;
    d->plen[d->n] = (int32_t)np;
    d->n++;
    return 0;
}

static int load_jsonl(sft_data *d, rlaif_tokens *all, rlaif_tokenizer *tok, const rlaif_chat *chat,
                      const rlaif_config *cfg, const char *path, int max_seq_len) {
    size_t n;
    char **texts;
    int rc = rlaif_jsonl_read(path, "sft", &n, &texts);
    if (rc) return rlaif_error_context("data.sft: "), rc;
    d->off = xcalloc(n + 1, sizeof(int64_t));
    d->plen = xcalloc(n, sizeof(int32_t));
    for (size_t i = 0; i < n && !rc; i++) {
        char where[4200];
        snprintf(where, sizeof where, "%s: record %zu", path, i + 1);
        rc =
            add_example(d, all, tok, chat, texts[3 * i], texts[3 * i + 1], cfg, max_seq_len, where);
    }
    rlaif_jsonl_free(texts, n);
    return rc;
}

static int load_task(sft_data *d, rlaif_tokens *all, rlaif_tokenizer *tok, const rlaif_chat *chat,
                     const rlaif_config *cfg, int max_seq_len) {
    rlaif_task t;
    RLAIF_TRY(rlaif_task_from_cfg(&t, cfg));
    d->off = xcalloc((size_t)t.n_train + 1, sizeof(int64_t));
    d->plen = xcalloc((size_t)t.n_train, sizeof(int32_t));
    int rc = 0;
    for (int64_t i = 0; i < t.n_train && !rc; i++) {
        rlaif_arith p;
        char q[96], a[96], where[64];
        rlaif_task_train(&t, i, &p);
        rlaif_task_prompt(&p, q, sizeof q);
        rlaif_task_demo(&t, i, a, sizeof a);
        snprintf(where, sizeof where, "arithmetic problem %lld", (long long)i);
        rc = add_example(d, all, tok, chat, q, a, cfg, max_seq_len, where);
    }
    rlaif_task_free(&t);
    return rc;
}

/* Rank 0: read data.sft or generate the task's demonstrations. */
static int load_local(sft_data *d, rlaif_tokenizer *tok, const rlaif_chat *chat,
                      const rlaif_config *cfg, int max_seq_len) {
    const char *path = rlaif_cfg_str(cfg, "data.sft");
    rlaif_tokens all = {0};
    int rc;
    if (*path)
        rc = load_jsonl(d, &all, tok, chat, cfg, path, max_seq_len);
    else if (!strcmp(rlaif_cfg_str(cfg, "data.task"), "arithmetic"))
        rc = load_task(d, &all, tok, chat, cfg, max_seq_len);
    else
        rc = RLAIF_ERROR(RLAIF_EX_USAGE,
                         "set data.sft = demos.jsonl, or data.task = arithmetic for the demo task",
                         "sft: no demonstrations: data.sft is empty and data.task is '%s'",
                         rlaif_cfg_str(cfg, "data.task"));
    d->tok = all.ids; /* the flat array is kept as is */
    return rc;
}

static int data_bcast(sft_data *d, MPI_Comm comm, int rank) {
    int64_t sizes[2] = {d->n, d->n ? d->off[d->n] : 0};
    RLAIF_CHECK_MPI(MPI_Bcast(sizes, 2, MPI_INT64_T, 0, comm));
    if (rank != 0) {
        d->n = sizes[0];
        d->tok = xmalloc(sizeof(int32_t) * (size_t)(sizes[1] + 1));
        d->off = xmalloc(sizeof(int64_t) * (size_t)(d->n + 1));
        d->plen = xmalloc(sizeof(int32_t) * (size_t)(d->n + 1));
    }
    /* counts are ints: a data set of more than 2^31 tokens needs chunking */
    if (sizes[1] > 2147483647LL)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "split the demonstrations",
                           "sft: %lld tokens of demonstrations exceed one broadcast",
                           (long long)sizes[1]);
    RLAIF_CHECK_MPI(MPI_Bcast(d->tok, (int)sizes[1], MPI_INT32_T, 0, comm));
    RLAIF_CHECK_MPI(MPI_Bcast(d->off, (int)(d->n + 1), MPI_INT64_T, 0, comm));
    RLAIF_CHECK_MPI(MPI_Bcast(d->plen, (int)d->n, MPI_INT32_T, 0, comm));
    return 0;
}

/* ---- the phase ---- */

typedef struct {
    sft_data data;
    uint64_t seed;
    int64_t pos;        /* sequences consumed since the start of the phase */
    int64_t perm_epoch; /* epoch of perm, -1 before the first */
    uint32_t *perm;     /* [n] order of the current epoch */
    int *tokens, *targets;
    float *dlogp;
} sft_run;

/* Example at global position p of the shuffled stream of epochs. */
static int64_t example_at(sft_run *S, int64_t p) {
    int64_t n = S->data.n, epoch = p / n;
    if (epoch != S->perm_epoch) {
        rlaif_rng_permutation(S->seed, RLAIF_STREAM_SHUFFLE, (uint32_t)epoch, S->perm, (uint32_t)n);
        S->perm_epoch = epoch;
    }
    return S->perm[p % n];
}

/* Micro-batch ex[0..B): right-padded inputs, targets -1 on the prompt and
 * padding; forward, loss / N, backward. Adds its share of the loss to *loss
 * and the tokens it ran to *ntok. */
static int micro_step(rlaif_learner *L, sft_run *S, const int64_t *ex, int B, double N,
                      double *loss, double *ntok) {
    const sft_data *d = &S->data;
    int T = 1;
    for (int b = 0; b < B; b++) {
        int len = (int)(d->off[ex[b] + 1] - d->off[ex[b]]) - 1;
        if (len > T) T = len;
    }
    for (int b = 0; b < B; b++) {
        const int32_t *x = d->tok + d->off[ex[b]];
        int len = (int)(d->off[ex[b] + 1] - d->off[ex[b]]), np = d->plen[ex[b]];
        for (int t = 0; t < T; t++) {
            int i = b * T + t, real = t < len - 1;
            S->tokens[i] = real ? x[t] : 0;
            /* position t predicts token t+1: a loss token when t+1 is past the prompt */
            S->targets[i] = real && t + 1 >= np ? x[t + 1] : -1;
        }
        *ntok += len - 1;
    }
    rlaif_model *m = &L->model;
    RLAIF_TRY(rlaif_model_forward(m, S->tokens, NULL, NULL, B, T));
    RLAIF_TRY(rlaif_model_lm_forward(m, S->targets));
    /* loss = -sum(logp) / N over the GLOBAL count N of loss tokens, so the
     * learners' gradients sum to the gradient of the whole batch */
    double sum = 0;
    for (int i = 0; i < B * T; i++) {
        S->dlogp[i] = S->targets[i] >= 0 ? (float)(-1.0 / N) : 0.0f;
        sum += m->logp[i];
    }
    *loss += -sum / N;
    return rlaif_model_backward(m, S->dlogp, NULL, NULL);
}

static int sft_batch(rlaif_learner *L, void *ud, rlaif_batch_stats *st) {
    sft_run *S = ud;
    long lo, hi;
    rlaif_learner_share(L, L->batch_size, &lo, &hi);
    int64_t *ex = xmalloc(sizeof(int64_t) * (size_t)(hi - lo + 1));
    double mine = 0, N;
    for (long j = lo; j < hi; j++) {
        ex[j - lo] = example_at(S, S->pos + j);
        mine += (double)(S->data.off[ex[j - lo] + 1] - S->data.off[ex[j - lo]] -
                         S->data.plen[ex[j - lo]]);
    }
    int rc = rlaif_learner_sum(L, mine, &N);
    for (long j = lo; j < hi && !rc; j += L->micro_batch) {
        int B = (int)(hi - j < L->micro_batch ? hi - j : L->micro_batch);
        rc = micro_step(L, S, ex + (j - lo), B, N, &st->loss, &st->tokens);
    }
    free(ex);
    S->pos += L->batch_size;
    st->extra[0] = mine;
    /* extras are summed over learners: the epoch comes from learner 0 alone */
    st->extra[1] = L->rank == 0 ? (double)S->pos / (double)S->data.n : 0;
    return rc;
}

static void sft_save(const rlaif_learner *L, void *ud, rlaif_kvset *state) {
    (void)L;
    const sft_run *S = ud;
    rlaif_kv_set_int(state, "data_pos", S->pos);
    rlaif_kv_set_int(state, "epoch", S->pos / S->data.n);
    rlaif_kv_set_int(state, "cursor", S->pos % S->data.n);
    rlaif_kv_set_int(state, "n_examples", S->data.n);
}

static int sft_load(rlaif_learner *L, void *ud, const rlaif_kvset *state) {
    (void)L;
    sft_run *S = ud;
    return rlaif_kv_get_int(state, "data_pos", &S->pos);
}

static const char *const extra_names[] = {"loss_tokens", "epoch"};

/* ---- command ---- */

/* Greedy held-out accuracy of the arithmetic task (when it is the data). */
static int maybe_eval(rlaif_learner *L, const char *when) {
    const rlaif_config *cfg = L->cfg;
    int64_t n = rlaif_cfg_int(cfg, "sft.eval_prompts");
    if (n <= 0 || *rlaif_cfg_str(cfg, "data.sft") ||
        strcmp(rlaif_cfg_str(cfg, "data.task"), "arithmetic"))
        return 0;
    rlaif_task t;
    RLAIF_TRY(rlaif_task_from_cfg(&t, cfg));
    rlaif_info("sft: held-out greedy answers %s training (first 4 of %lld):", when, (long long)n);
    rlaif_task_score s;
    int rc = rlaif_task_eval(&L->model, L->tok, &L->chat, &t, n,
                             rlaif_cfg_int(cfg, "data.max_prompt_len"),
                             (int)rlaif_cfg_int(cfg, "data.max_response_len") + 1, 4, L->comm, &s);
    rlaif_task_free(&t);
    RLAIF_TRY(rc);
    rlaif_info("sft: held-out greedy accuracy %s training: %.1f%% (%lld/%lld; on the %lld not "
               "in the training set: %lld right)",
               when, 100.0 * (double)s.correct / (double)s.n, (long long)s.correct, (long long)s.n,
               (long long)s.unseen, (long long)s.unseen_right);
    rlaif_info("sft: held-out greedy answers %s training by the oracle: rude %.1f%%, rambling "
               "%.1f%%, off-topic %.1f%%",
               when, 100.0 * (double)s.rude / (double)s.n, 100.0 * (double)s.ramble / (double)s.n,
               100.0 * (double)s.offtopic / (double)s.n);
    return 0;
}

static int sft_prepare(rlaif_learner *L, void *ud, int found) {
    const sft_run *S = ud;
    if (!found) RLAIF_TRY(maybe_eval(L, "before"));
    rlaif_info("sft: %lld demonstrations, %ld steps of %ld sequences on %d learner(s), "
               "micro-batch %ld, %zu parameters",
               (long long)S->data.n, L->steps, L->batch_size, L->size, L->micro_batch,
               L->model.table.total);
    return 0;
}

static int sft_after(rlaif_learner *L, void *ud) {
    (void)ud;
    return maybe_eval(L, "after");
}

static int run_phase(rlaif_learner *L, sft_run *S, long stop_after) {
    const rlaif_learner_phase lp = {
        .ph = {"sft", 2, extra_names, sft_batch, sft_save, sft_load, S},
        .result = "the final model",
        .prepare = sft_prepare,
        .after = sft_after,
    };
    return rlaif_learner_phase_run(L, &lp, stop_after);
}

int rlaif_cmd_sft(rlaif_ctx *ctx) {
    long stop_after;
    MPI_Comm comm;
    RLAIF_TRY(rlaif_learner_phase_enter(ctx, "sft", &stop_after, &comm));
    if (comm == MPI_COMM_NULL) return 0; /* no part in sft */
    rlaif_learner L;
    int rc = rlaif_learner_init(&L, ctx->cfg, comm, "sft", 0);
    sft_run S;
    memset(&S, 0, sizeof S);
    S.seed = (uint64_t)rlaif_cfg_int(ctx->cfg, "run.seed");
    S.perm_epoch = -1;
    if (!rc)
        rc = rlaif_agree(L.comm, L.rank == 0 ? load_local(&S.data, L.tok, &L.chat, ctx->cfg,
                                                          L.model.cfg.max_seq_len)
                                             : 0);
    if (!rc) rc = data_bcast(&S.data, L.comm, L.rank);
    if (!rc) {
        size_t cap = (size_t)L.micro_batch * (size_t)L.model.cfg.max_seq_len;
        S.perm = xmalloc(sizeof(uint32_t) * (size_t)S.data.n);
        S.tokens = xmalloc(sizeof(int) * cap);
        S.targets = xmalloc(sizeof(int) * cap);
        S.dlogp = xmalloc(sizeof(float) * cap);
        rc = run_phase(&L, &S, stop_after);
    }
    free(S.perm), free(S.tokens), free(S.targets), free(S.dlogp);
    data_free(&S.data);
    rlaif_learner_free(&L);
    return rc;
}
