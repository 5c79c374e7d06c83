/* pairs.c - preference pairs -> token sequences for rm and dpo (pairs.h).
 *
 * Rank 0 of the learners reads preferences.h5 (a serial read of the whole
 * file) and tokenizes, then broadcasts one flat token array, as sft does:
 * every learner needs every pair over an epoch (batches are drawn from a
 * global shuffle), the texts are small next to the model, and one reader
 * parses once and reports a bad file once. preferences.h5 records no
 * tokenizer identity and its stored tokens are per text (not the model's
 * prompt "\n" response EOS with its truncation), so the texts are always
 * tokenized again with the model's own tokenizer.
 *
 * Also the training stream of the pairs and the learner's batch and
 * validation passes over them, which rm and dpo share but for the
 * micro-batch. */
#include "rlaif/phases/pairs.h"
#include "rlaif/phases/layout.h"
#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/error.h"
#include "rlaif/core/h5util.h"
#include "rlaif/core/log.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/core/rng.h"
#include "rlaif/phases/task.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void rlaif_pairs_free(rlaif_pairs *d) {
    free(d->tok), free(d->off), free(d->plen), free(d->label), free(d->heldout);
    memset(d, 0, sizeof *d);
}

/* Held out when the prompt's hash, as a number in [0, 1), is below frac:
 * FNV-1a 64 of the text, then a splitmix64 finaliser to spread it. */
int rlaif_pairs_held_out(const char *prompt, double frac) {
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *c = (const unsigned char *)prompt; *c; c++)
        h = (h ^ *c) * 1099511628211ULL;
    h ^= h >> 30, h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27, h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (double)(h >> 11) * 0x1.0p-53 < frac;
}

typedef struct {
    rlaif_pairs *d;
    rlaif_tokens all;
    size_t cap; /* pairs allocated */
    rlaif_tokenizer *tok;
    const rlaif_chat *chat;
    long max_prompt, max_response;
    int max_seq_len;
    double eval_fraction;
} loader;

/* Append one sequence (prompt, response) as sequence 2n or 2n+1. */
static int add_seq(loader *ld, const char *prompt, const char *response, int64_t s,
                   const char *where) {
    size_t start = ld->all.n, np;
    RLAIF_TRY(rlaif_format_example(ld->tok, ld->chat, prompt, response, ld->max_prompt,
                                   ld->max_response, &ld->all, &np));
    size_t len = ld->all.n - start;
    if (len > (size_t)ld->max_seq_len)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "lower data.max_prompt_len / data.max_response_len or raise "
                           "model.max_seq_len",
                           "%s: prompt + response + EOS is %zu tokens, more than "
                           "model.max_seq_len = %d",
                           where, len, ld->max_seq_len);
    ld->d->off[s + 1] = (int64_t)ld->all.n;
    ld->d->plen[s] = (int32_t)np;
    return 0;
}

static int add_pair(loader *ld, const char *prompt, const char *a, const char *b, double p,
                    const char *where) {
    rlaif_pairs *d = ld->d;
    if ((size_t)d->n == ld->cap) {
        ld->cap = ld->cap ? 2 * ld->cap : 256;
        d->off = xrealloc(d->off, sizeof(int64_t) * (2 * ld->cap + 1));
        d->plen = xrealloc(d->plen, sizeof(int32_t) * 2 * ld->cap);
        d->label = xrealloc(d->label, sizeof(float) * ld->cap);
        d->heldout = xrealloc(d->heldout, ld->cap);
    }
    if (d->n == 0) d->off[0] = (int64_t)ld->all.n;
    RLAIF_TRY(add_seq(ld, prompt, a, 2 * d->n, where));
    RLAIF_TRY(add_seq(ld, prompt, b, 2 * d->n + 1, where));
    d->label[d->n] = (float)p;
    d->heldout[d->n] = (uint8_t)rlaif_pairs_held_out(prompt, ld->eval_fraction);
    d->n++;
    return 0;
}

/* The label a usable pair trains on (<phase>.soft_labels), or NaN to skip it. */
static double train_label(double p, const char *mode) {
    if (!(p >= 0 && p <= 1)) return NAN;
    if (p == 0 || p == 1 || !strcmp(mode, "soft")) return p;
    if (!strcmp(mode, "hard") && p != 0.5) return p > 0.5 ? 1 : 0;
    return NAN;
}

/* Pair p's texts, after checking its ids point into the file. */
static int add_stored_pair(loader *ld, const rlaif_prefs_data *pd, const rlaif_pair *p, double y,
                           const char *path) {
    if (p->prompt_id < 0 || (size_t)p->prompt_id >= pd->prompts.n || p->response_a < 0 ||
        (size_t)p->response_a >= pd->responses.n || p->response_b < 0 ||
        (size_t)p->response_b >= pd->responses.n)
        return RLAIF_ERROR(RLAIF_EX_FAIL, "the file is damaged: rebuild it with rlaif prefs merge",
                           "%s: pair %lld points past /prompts or /responses", path,
                           (long long)p->pair_id);
    char *q = rlaif_ragged_text(&pd->prompts, (size_t)p->prompt_id);
    char *a = rlaif_ragged_text(&pd->responses, (size_t)p->response_a);
    char *b = rlaif_ragged_text(&pd->responses, (size_t)p->response_b);
    char where[4200];
    snprintf(where, sizeof where, "%s: pair %lld", path, (long long)p->pair_id);
    int rc = add_pair(ld, q, a, b, y, where);
    free(q), free(a), free(b);
    return rc;
}

static int load_prefs(loader *ld, const char *section, const char *path, const char *mode,
                      rlaif_pairs_counts *c) {
    if (access(path, R_OK) != 0) {
        char hint[160];
        snprintf(hint, sizeof hint,
                 "run rlaif collect (or rlaif judge --prefs) first, or set %s.preferences",
                 section);
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, hint, "%s: cannot read the preferences '%s': %s",
                           section, path, strerror(errno));
    }
    rlaif_prefs_data pd;
    int rc = rlaif_prefs_read(path, &pd);
    if (rc) return rlaif_error_context("%s.preferences '%s': ", section, path), rc;
    for (size_t i = 0; i < pd.npairs && !rc; i++) {
        const rlaif_pair *p = &pd.pairs[i];
        c->total++;
        if (p->status != RLAIF_PAIR_OK || !(p->label >= 0 && p->label <= 1)) {
            c->unusable++;
            continue;
        }
        double y = train_label(p->label, mode);
        if (isnan(y)) {
            c->dropped++;
            continue;
        }
        rc = add_stored_pair(ld, &pd, p, y, path);
    }
    rlaif_prefs_data_free(&pd);
    return rc;
}

static int load_human(loader *ld, const char *path, rlaif_pairs_counts *c) {
    size_t n;
    char **texts;
    int rc = rlaif_jsonl_read(path, "prefs", &n, &texts);
    if (rc) return rlaif_error_context("data.human_preferences: "), rc;
    for (size_t i = 0; i < n && !rc; i++) {
        char where[4200];
        snprintf(where, sizeof where, "%s: record %zu", path, i + 1);
        /* A = chosen: label 1 */
        rc = add_pair(ld, texts[3 * i], texts[3 * i + 1], texts[3 * i + 2], 1.0, where);
        c->human++;
    }
    rlaif_jsonl_free(texts, n);
    return rc;
}

/* "<section>.<key>" of cfg */
static const char *sec_str(const rlaif_config *cfg, const char *section, const char *key) {
    char k[96];
    snprintf(k, sizeof k, "%s.%s", section, key);
    return rlaif_cfg_str(cfg, k);
}

int rlaif_pairs_load(rlaif_pairs *d, rlaif_tokenizer *tok, const rlaif_chat *chat,
                     const rlaif_config *cfg, const char *section, int max_seq_len,
                     rlaif_pairs_counts *c) {
    char k[96];
    snprintf(k, sizeof k, "%s.eval_fraction", section);
    loader ld = {.d = d,
                 .tok = tok,
                 .chat = chat,
                 .max_prompt = (long)rlaif_cfg_int(cfg, "data.max_prompt_len"),
                 .max_response = (long)rlaif_cfg_int(cfg, "data.max_response_len"),
                 .max_seq_len = max_seq_len,
                 .eval_fraction = rlaif_cfg_float(cfg, k)};
    char path[4096];
    const char *p = sec_str(cfg, section, "preferences");
    if (*p)
        snprintf(path, sizeof path, "%s", p);
    else
        rlaif_out_path(cfg, "preferences.h5", path, sizeof path);
    int rc = load_prefs(&ld, section, path, sec_str(cfg, section, "soft_labels"), c);
    const char *human = rlaif_cfg_str(cfg, "data.human_preferences");
    if (!rc && *human) rc = load_human(&ld, human, c);
    d->tok = ld.all.ids;
    if (!rc && d->n == 0) {
        char hint[200];
        snprintf(hint, sizeof hint,
                 "every pair failed, has no label (NaN) or was dropped by %s.soft_labels: check "
                 "the judge's statuses with rlaif prefs info",
                 section);
        rc = RLAIF_ERROR(RLAIF_EX_FAIL, hint,
                         "%s: no usable pairs in '%s' (%lld pairs: %lld without a label, %lld "
                         "soft labels dropped)",
                         section, path, (long long)c->total, (long long)c->unusable,
                         (long long)c->dropped);
    }
    return rc;
}

int rlaif_pairs_bcast(rlaif_pairs *d, MPI_Comm comm, int rank, const char *section) {
    int64_t sizes[2] = {d->n, d->n ? d->off[2 * d->n] : 0};
    RLAIF_CHECK_MPI(MPI_Bcast(sizes, 2, MPI_INT64_T, 0, comm));
    if (sizes[1] > 2147483647LL || 2 * sizes[0] + 1 > 2147483647LL)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "split the preferences",
                           "%s: %lld tokens of pairs exceed one broadcast", section,
                           (long long)sizes[1]);
    if (rank != 0) {
        d->n = sizes[0];
        d->tok = xmalloc(sizeof(int32_t) * (size_t)(sizes[1] + 1));
        d->off = xmalloc(sizeof(int64_t) * (size_t)(2 * d->n + 1));
        d->plen = xmalloc(sizeof(int32_t) * (size_t)(2 * d->n + 1));
        d->label = xmalloc(sizeof(float) * (size_t)(d->n + 1));
        d->heldout = xmalloc((size_t)(d->n + 1));
    }
    RLAIF_CHECK_MPI(MPI_Bcast(d->tok, (int)sizes[1], MPI_INT32_T, 0, comm));
    RLAIF_CHECK_MPI(MPI_Bcast(d->off, (int)(2 * d->n + 1), MPI_INT64_T, 0, comm));
    RLAIF_CHECK_MPI(MPI_Bcast(d->plen, (int)(2 * d->n), MPI_INT32_T, 0, comm));
    RLAIF_CHECK_MPI(MPI_Bcast(d->label, (int)d->n, MPI_FLOAT, 0, comm));
    RLAIF_CHECK_MPI(MPI_Bcast(d->heldout, (int)d->n, MPI_UINT8_T, 0, comm));
    return 0;
}

void rlaif_pairs_report(const char *section, const rlaif_pairs_counts *c, const rlaif_pairs *d) {
    int64_t tie = 0, soft = 0;
    for (int64_t i = 0; i < d->n; i++) {
        tie += d->label[i] == 0.5f;
        soft += d->label[i] != 0.0f && d->label[i] != 1.0f;
    }
    rlaif_info("%s: %lld pairs read: %lld usable (%lld with soft labels, %lld ties), %lld without "
               "a label, %lld dropped by %s.soft_labels; %lld human pairs",
               section, (long long)c->total, (long long)(d->n - c->human), (long long)soft,
               (long long)tie, (long long)c->unusable, (long long)c->dropped, section,
               (long long)c->human);
}

int rlaif_find_sft_model(const rlaif_config *cfg, const char *phase, char *path, size_t n,
                         char *dir, size_t dn, int *found, int *nsft) {
    rlaif_out_ckpt_dir(cfg, dir, dn);
    return rlaif_checkpoint_newest_done(dir, "sft", phase, path, n, found, nsft);
}

/* ---- the training stream ---- */

int rlaif_pair_stream_init(rlaif_pair_stream *s, const rlaif_pairs *d, uint64_t seed,
                           const char *section) {
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->perm_epoch = -1;
    s->train = xmalloc(sizeof(int64_t) * (size_t)(d->n + 1));
    s->eval = xmalloc(sizeof(int64_t) * (size_t)(d->n + 1));
    for (int64_t i = 0; i < d->n; i++) {
        if (d->heldout[i])
            s->eval[s->neval++] = i;
        else
            s->train[s->ntrain++] = i;
    }
    if (s->ntrain == 0) {
        char hint[96];
        snprintf(hint, sizeof hint, "lower %s.eval_fraction or add prompts", section);
        return RLAIF_ERROR(RLAIF_EX_FAIL, hint,
                           "%s: all %lld usable pairs are held out for validation", section,
                           (long long)d->n);
    }
    s->perm = xmalloc(sizeof(uint32_t) * (size_t)s->ntrain);
    return 0;
}

int64_t rlaif_pair_stream_at(rlaif_pair_stream *s, int64_t p) {
    int64_t n = s->ntrain, epoch = p / n;
    if (epoch != s->perm_epoch) {
        rlaif_rng_permutation(s->seed, RLAIF_STREAM_SHUFFLE, (uint32_t)epoch, s->perm, (uint32_t)n);
        s->perm_epoch = epoch;
    }
    return s->train[s->perm[p % n]];
}

void rlaif_pair_stream_save(const rlaif_pair_stream *s, rlaif_kvset *state) {
    rlaif_kv_set_int(state, "data_pos", s->pos);
    rlaif_kv_set_int(state, "epoch", s->ntrain ? s->pos / s->ntrain : 0);
    rlaif_kv_set_int(state, "n_train_pairs", s->ntrain);
    rlaif_kv_set_int(state, "eval_pairs", s->neval);
}

void rlaif_pair_phase_save(const rlaif_pair_stream *s, int have_eval, double eval_loss,
                           double eval_acc, rlaif_kvset *state) {
    rlaif_pair_stream_save(s, state);
    if (!have_eval) return;
    rlaif_kv_set_double(state, "eval_loss", eval_loss);
    rlaif_kv_set_double(state, "eval_accuracy", eval_acc);
}

int rlaif_pair_stream_load(rlaif_pair_stream *s, const rlaif_kvset *state) {
    return rlaif_kv_get_int(state, "data_pos", &s->pos);
}

void rlaif_pair_stream_free(rlaif_pair_stream *s) {
    free(s->train), free(s->eval), free(s->perm);
    memset(s, 0, sizeof *s);
}

int rlaif_no_sft_model(const char *phase, const char *hint, const char *dir, int nsft) {
    return RLAIF_ERROR(RLAIF_EX_NOINPUT, hint,
                       "%s: no model to start from: model.init_from is empty and %s holds %s sft "
                       "checkpoint",
                       phase, dir, nsft ? "no finished" : "no");
}

int rlaif_pairs_load_all(rlaif_pairs *d, rlaif_learner *L, const char *section) {
    rlaif_pairs_counts c;
    memset(&c, 0, sizeof c);
    RLAIF_TRY(rlaif_agree(L->comm, L->rank == 0
                                       ? rlaif_pairs_load(d, L->tok, &L->chat, L->cfg, section,
                                                          L->model.cfg.max_seq_len, &c)
                                       : 0));
    if (L->rank == 0) rlaif_pairs_report(section, &c, d);
    return rlaif_pairs_bcast(d, L->comm, L->rank, section);
}

/* ---- the learner's passes over pairs ---- */

/* Micro-batches of at most L->micro_batch pairs over idx[0..n) into sums. */
static int micro_loop(rlaif_learner *L, const int64_t *idx, long n, double N, int train,
                      const rlaif_pair_pass *p, double *sums) {
    int rc = 0;
    for (long j = 0; j < n && !rc; j += L->micro_batch) {
        int B = (int)(n - j < L->micro_batch ? n - j : L->micro_batch);
        rc = p->micro(p->ud, idx + j, B, N, train, sums);
    }
    return rc;
}

int rlaif_pair_batch(rlaif_learner *L, rlaif_pair_stream *st, const float *label,
                     const rlaif_pair_pass *p, double *sums, rlaif_batch_stats *bs, double *nd) {
    long lo, hi;
    rlaif_learner_share(L, L->batch_size, &lo, &hi);
    double decided = 0;
    for (long j = 0; j < L->batch_size; j++)
        decided += label[rlaif_pair_stream_at(st, st->pos + j)] != 0.5f;
    int64_t *ex = xmalloc(sizeof(int64_t) * (size_t)(hi - lo + 1));
    for (long j = lo; j < hi; j++) ex[j - lo] = rlaif_pair_stream_at(st, st->pos + j);
    memset(sums, 0, sizeof(double) * (size_t)p->nsums);
    int rc = micro_loop(L, ex, hi - lo, (double)L->batch_size, 1, p, sums);
    free(ex);
    st->pos += L->batch_size;
    bs->loss = sums[0], bs->tokens = sums[p->nsums - 1];
    *nd = decided > 0 ? decided : 1;
    return rc;
}

int rlaif_pair_forward_all(rlaif_learner *L, const int64_t *idx, int64_t n,
                           const rlaif_pair_pass *p, double *out) {
    long lo, hi;
    rlaif_learner_share(L, (long)n, &lo, &hi);
    double *s = xcalloc((size_t)p->nsums, sizeof(double));
    int rc = rlaif_agree(L->comm, micro_loop(L, idx + lo, hi - lo, (double)n, 0, p, s));
    if (!rc) {
        int e = MPI_Allreduce(s, out, p->nsums, MPI_DOUBLE, MPI_SUM, L->comm);
        if (e != MPI_SUCCESS) rc = rlaif_error_mpi(e, "MPI_Allreduce", __FILE__, __LINE__);
    }
    free(s);
    return rc;
}

int rlaif_pair_phase_run(rlaif_learner *L, const rlaif_phase *ph, int n_eval,
                         const char *const *eval_names, const char *result,
                         int (*prepare)(rlaif_learner *L, void *ud, int found),
                         int (*before_save)(rlaif_learner *L, void *ud, int done),
                         long stop_after) {
    char table[64];
    snprintf(table, sizeof table, "%s_eval", ph->name);
    const rlaif_learner_phase lp = {
        .ph = *ph,
        .eval_table = table,
        .n_eval = n_eval,
        .eval_names = eval_names,
        .result = result,
        .prepare = prepare,
        .before_save = before_save,
    };
    return rlaif_learner_phase_run(L, &lp, stop_after);
}
