/* rollout.c - the rollout worker: training prompts, the policy checkpoint,
 * prompt shards, batched sampling with behaviour log-probs, UTF-8 cleaning
 * and response pairing (include/rlaif/phases/rollout.h). */
#include "rlaif/phases/rollout.h"
#include "rlaif/phases/layout.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/rng.h"
#include "rlaif/core/log.h"
#include "rlaif/core/telemetry.h"
#include "rlaif/core/tensors.h"
#include "rlaif/engine/generate.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/phases/task.h"
#include "rlaif/storage/checkpoint.h"
#include "rlaif/storage/prefs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- prompts */

static int prompts_jsonl(const rlaif_config *cfg, const char *who, rlaif_prompt_set *ps) {
    const char *path = rlaif_cfg_str(cfg, "data.prompts");
    if (!*path)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set data.prompts = prompts.jsonl",
                           "%s: data.task = jsonl but data.prompts is empty", who);
    int rc = rlaif_jsonl_read(path, "prompts", &ps->njsonl, &ps->jsonl);
    if (rc) return rlaif_error_context("data.prompts: "), rc;
    ps->n = (int64_t)ps->njsonl;
    ps->text = xmalloc(sizeof(char *) * (ps->njsonl + 1));
    for (size_t i = 0; i < ps->njsonl; i++) ps->text[i] = ps->jsonl[3 * i];
    return 0;
}

int rlaif_prompts_train(const rlaif_config *cfg, const char *who, rlaif_prompt_set *ps) {
    memset(ps, 0, sizeof *ps);
    if (!strcmp(rlaif_cfg_str(cfg, "data.task"), "jsonl")) return prompts_jsonl(cfg, who, ps);
    rlaif_task t;
    RLAIF_TRY(rlaif_task_from_cfg(&t, cfg));
    ps->n = t.n_train;
    ps->text = xmalloc(sizeof(char *) * (size_t)(ps->n + 1));
    for (int64_t i = 0; i < ps->n; i++) {
        rlaif_arith p;
        char q[96];
        rlaif_task_train(&t, i, &p);
        rlaif_task_prompt(&p, q, sizeof q);
        ps->text[i] = xstrdup(q);
    }
    rlaif_task_free(&t);
    return 0;
}

void rlaif_prompts_free(rlaif_prompt_set *ps) {
    if (ps->jsonl)
        rlaif_jsonl_free(ps->jsonl, ps->njsonl);
    else
        for (int64_t i = 0; ps->text && i < ps->n; i++) free(ps->text[i]);
    free(ps->text);
    memset(ps, 0, sizeof *ps);
}

void rlaif_rollout_shard(const rlaif_ranks *rk, int64_t n, int64_t *lo, int64_t *hi) {
    size_t a = 0, b = 0;
    if (rlaif_ranks_has(rk, RLAIF_ROLE_ROLLOUT)) {
        int me = rk->colocated ? rk->world_rank : rk->group_rank[RLAIF_ROLE_ROLLOUT];
        rlaif_shard_range((size_t)n, rk->count[RLAIF_ROLE_ROLLOUT], me, &a, &b);
    }
    *lo = (int64_t)a, *hi = (int64_t)b;
}

/* -------------------------------------------------------------- policy */

int rlaif_policy_find(const rlaif_config *cfg, const char *who, char *path, size_t n) {
    const char *from = rlaif_cfg_str(cfg, "model.init_from");
    if (*from) {
        if (access(from, R_OK) != 0)
            return RLAIF_ERROR(RLAIF_EX_NOINPUT, "give a checkpoint written by rlaif sft",
                               "%s: model.init_from: cannot read '%s'", who, from);
        snprintf(path, n, "%s", from);
        return 0;
    }
    char dir[4096];
    rlaif_out_ckpt_dir(cfg, dir, sizeof dir);
    int count = 0, found = 0;
    RLAIF_TRY(rlaif_checkpoint_newest_done(dir, "sft", who, path, n, &found, &count));
    if (!found)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                           "run (or finish) `rlaif sft job.ini` first, or set model.init_from = a "
                           "checkpoint",
                           "%s: no policy: model.init_from is empty and there is no %ssft "
                           "checkpoint %s/sft-*.h5",
                           who, count ? "finished " : "", dir);
    return 0;
}

int rlaif_policy_load(const rlaif_config *cfg, const char *who, const char *what, const char *path,
                      rlaif_model *m, rlaif_tokenizer **tok, rlaif_chat *chat) {
    int rc = rlaif_tokenizer_for_checkpoint(tok, path, cfg);
    if (!rc) rc = rlaif_chat_from_config(chat, cfg, path);
    if (!rc) rc = rlaif_model_load(path, m);
    int32_t stop; /* generation needs the token that ends a reply */
    if (!rc) rc = rlaif_chat_require_stop(chat, *tok, &stop);
    if (rc) rlaif_error_context("%s: %s %s: ", who, what, path);
    return rc;
}

/* ------------------------------------------------------------ sampling */

long rlaif_rollout_room(const rlaif_rollout *r, int longest) {
    return (long)r->model->cfg.max_seq_len - longest - (r->pair_response_len > 0);
}

int rlaif_rollout_longest(const rlaif_rollout *r, char *const *texts, int64_t lo, int64_t hi,
                          int *longest) {
    rlaif_tokens t = {0};
    int rc = 0;
    *longest = 0;
    for (int64_t i = lo; i < hi && !rc; i++) {
        t.n = 0;
        rc = rlaif_format_prompt(r->tok, r->chat, texts[i], r->max_prompt_len, &t);
        if ((int)t.n > *longest) *longest = (int)t.n;
    }
    rlaif_tokens_free(&t);
    return rc;
}

/* The generation settings of r for a batch whose longest prompt is longest. */
static int gen_config(const rlaif_rollout *r, int longest, rlaif_gen_config *gc) {
    *gc = rlaif_gen_defaults();
    long room = rlaif_rollout_room(r, longest);
    gc->max_new_tokens = (int)(r->max_new_tokens < room ? r->max_new_tokens : room);
    gc->temperature = r->temperature;
    gc->top_k = r->top_k;
    gc->top_p = r->top_p;
    gc->eos_id = rlaif_chat_stop_id(r->chat, r->tok);
    gc->pad_id = gc->eos_id;
    gc->seed = r->seed, gc->step = r->step;
    gc->n_valid = (int)rlaif_tokenizer_vocab_size(r->tok); /* ids the tokenizer can decode */
    if (gc->max_new_tokens < 1)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "lower data.max_prompt_len or use a longer model",
                           "%s: a prompt of %d tokens and an end-of-text token leave no room "
                           "for a response in model.max_seq_len = %d",
                           r->who, longest, r->model->cfg.max_seq_len);
    return 0;
}

/* rm and dpo read a response as text and encode it again: a byte that was
 * not UTF-8 comes back as U+FFFD, 3 bytes (3 tokens for the byte
 * tokenizer), so an early policy's text can outgrow what was generated.
 * For collect, cut it at a character boundary to room tokens, so prompt +
 * response + end-of-text still fits model.max_seq_len and they take the
 * pair; not needed when they cut responses to data.max_response_len <=
 * room + 1 themselves (then the text stays whole, as the judge saw it). */
static int fit_text(const rlaif_rollout *r, char *text, long room) {
    if (r->pair_response_len <= 0 || r->pair_response_len <= room + 1) return 0;
    rlaif_tokens t = {0};
    size_t n = strlen(text);
    int rc;
    while (!(rc = rlaif_tokenizer_encode(r->tok, text, n, 0, &t)) && (long)t.n > room && n > 0) {
        do n--;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80);
        t.n = 0;
    }
    text[n] = 0;
    rlaif_tokens_free(&t);
    return rc;
}

/* Decode every sequence of go into clean text of at most room tokens. */
static int decode(const rlaif_rollout *r, const rlaif_gen_output *go, long room, char **text) {
    int rc = 0;
    for (int b = 0; b < go->B && !rc; b++) {
        rlaif_bytes t = {0};
        rc = rlaif_format_response(r->tok, r->chat, go->tokens + (size_t)b * (size_t)go->max_new,
                                   (size_t)go->length[b], &t);
        text[b] = rlaif_utf8_clean(t.data ? t.data : "", t.n);
        rlaif_bytes_free(&t);
        if (!rc) rc = fit_text(r, text[b], room);
    }
    return rc;
}

int rlaif_rollout_sample(const rlaif_rollout *r, int g, const char *const *texts,
                         const int64_t *ids, int K, rlaif_rollout_batch *out) {
    memset(out, 0, sizeof *out);
    double t0 = rlaif_now();
    int B = g * K, longest = 0, rc = 0;
    rlaif_tokens all = {0};
    int64_t *off = xmalloc(sizeof(int64_t) * (size_t)B);
    int *len = xmalloc(sizeof(int) * (size_t)B);
    uint32_t *seq = xmalloc(sizeof(uint32_t) * (size_t)B);
    for (int p = 0; p < g && !rc; p++) {
        size_t start = all.n;
        rc = rlaif_format_prompt(r->tok, r->chat, texts[p], r->max_prompt_len, &all);
        int n = (int)(all.n - start);
        for (int k = 0; k < K; k++) {
            off[p * K + k] = (int64_t)start; /* the K samples share the prompt's ids */
            len[p * K + k] = n;
            seq[p * K + k] = (uint32_t)(ids[p] * K + k); /* the prompt, not the slot */
        }
        if (n > longest) longest = n;
    }
    rlaif_gen_config gc;
    rlaif_gen_output go;
    memset(&go, 0, sizeof go);
    if (!rc) rc = gen_config(r, longest, &gc);
    if (!rc) rc = rlaif_generate(r->model, &gc, B, all.ids, off, len, seq, &go);
    rlaif_tokens_free(&all);
    free(off), free(len), free(seq);
    RLAIF_TRY(rc);
    rlaif_tm_since(RLAIF_TM_COMPUTE, t0); /* sampling is the rollout ranks' compute */
    for (int i = 0; i < go.B; i++) rlaif_tm_add(RLAIF_TM_TOKENS, go.length[i]);
    out->B = go.B, out->max_new = go.max_new;
    out->tokens = go.tokens, out->logp = go.logp, out->length = go.length;
    out->text = xcalloc((size_t)B + 1, sizeof(char *));
    return decode(r, &go, gc.max_new_tokens, out->text);
}

void rlaif_rollout_batch_free(rlaif_rollout_batch *b) {
    for (int i = 0; b->text && i < b->B; i++) free(b->text[i]);
    rlaif_gen_output go = {.B = b->B,
                           .max_new = b->max_new,
                           .tokens = b->tokens,
                           .logp = b->logp,
                           .length = b->length};
    rlaif_gen_output_free(&go);
    free(b->text);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------- text, pairing */

/* Bytes that are not UTF-8 become U+FFFD: an untrained byte-level model
 * writes any bytes, and JSON requests (the judge's) must be valid UTF-8. */
char *rlaif_utf8_clean(const char *s, size_t n) {
    char *o = xmalloc(3 * n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + len <= n && c != 0;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] >> 6) == 2;
        if (ok && len == 2) ok = c >= 0xC2;
        if (ok && len == 3) {
            unsigned char d = (unsigned char)s[i + 1];
            ok = !(c == 0xE0 && d < 0xA0) && !(c == 0xED && d >= 0xA0);
        }
        if (ok && len == 4) {
            unsigned char d = (unsigned char)s[i + 1];
            ok = c <= 0xF4 && !(c == 0xF0 && d < 0x90) && !(c == 0xF4 && d >= 0x90);
        }
        if (ok) {
            memcpy(o + j, s + i, len), j += len, i += len;
        } else {
            memcpy(o + j, "\xEF\xBF\xBD", 3), j += 3, i++;
        }
    }
    o[j] = 0;
    return o;
}

int rlaif_rollout_pick_pairs(uint64_t seed, int64_t prompt, int K, int P, const char *const *texts,
                             int *pick) {
    uint32_t n = (uint32_t)(K * (K - 1) / 2);
    uint32_t *perm = xmalloc(sizeof *perm * n);
    int *ia = xmalloc(sizeof(int) * n), *ib = xmalloc(sizeof(int) * n);
    uint32_t k = 0;
    for (int a = 0; a < K; a++)
        for (int b = a + 1; b < K; b++) ia[k] = a, ib[k] = b, k++;
    rlaif_rng_permutation(seed, RLAIF_STREAM_PAIRS, (uint32_t)prompt, perm, n);
    int got = 0;
    for (uint32_t i = 0; i < n && got < P; i++) {
        int a = ia[perm[i]], b = ib[perm[i]], dup = !strcmp(texts[a], texts[b]);
        /* the same two texts again (other copies of them) teach nothing new */
        for (int t = 0; t < got && !dup; t++) {
            const char *x = texts[pick[2 * t]], *y = texts[pick[2 * t + 1]];
            dup = (!strcmp(x, texts[a]) && !strcmp(y, texts[b])) ||
                  (!strcmp(x, texts[b]) && !strcmp(y, texts[a]));
        }
        if (dup) continue;
        pick[2 * got] = a, pick[2 * got + 1] = b;
        got++;
    }
    free(perm), free(ia), free(ib);
    return got;
}
