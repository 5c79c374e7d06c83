/* generate.c - batched sampling with a KV cache (see generate.h). */
#include "rlaif/engine/generate.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/rng.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

rlaif_gen_config rlaif_gen_defaults(void) {
    return (rlaif_gen_config){.max_new_tokens = 16,
                              .temperature = 0.0f,
                              .top_k = 0,
                              .top_p = 1.0f,
                              .eos_id = -1,
                              .eos_id2 = -1,
                              .pad_id = 0,
                              .seed = 0,
                              .step = 0,
                              .share_min = 16};
}

void rlaif_gen_output_free(rlaif_gen_output *out) {
    free(out->tokens), free(out->logp), free(out->length);
    memset(out, 0, sizeof *out);
}

static _Thread_local const float *g_prob; /* qsort has no context argument */
static int by_prob_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_prob[i] != g_prob[j]) return g_prob[i] > g_prob[j] ? -1 : 1;
    return i - j;
}

int rlaif_sample_token(const float *logits, int V, const rlaif_gen_config *gc, float u, int *idx,
                       float *prob, float *logp) {
    float inv_t = gc->temperature > 0.0f ? 1.0f / gc->temperature : 1.0f;
    float mx;
    float lse = rlaif_logsumexp(logits, V, inv_t, &mx); /* of (logits - mx) / T */
    int arg = 0;
    while (arg < V - 1 && logits[arg] != mx) arg++; /* first maximum */
    int tok = arg;
    if (gc->temperature > 0.0f) {
        for (int v = 0; v < V; v++) prob[v] = expf((logits[v] - mx) * inv_t - lse);
        int k = gc->top_k > 0 && gc->top_k < V ? gc->top_k : V;
        int truncate = k < V || gc->top_p < 1.0f;
        if (!truncate) {
            /* inverse CDF over the whole vocabulary */
            float c = 0.0f;
            tok = V - 1;
            for (int v = 0; v < V; v++) {
                c += prob[v];
                if (u < c) {
                    tok = v;
                    break;
                }
            }
        } else {
            /* Tokens below (1 - top_p) / (V - 1) can never be in the nucleus
             * (llama2.c's trick), which keeps the sort short. */
            float cutoff = gc->top_p < 1.0f ? (1.0f - gc->top_p) / (float)(V - 1) : 0.0f;
            int n = 0;
            for (int v = 0; v < V; v++)
                if (prob[v] >= cutoff) idx[n++] = v;
            if (n == 0) idx[n++] = arg;
            g_prob = prob;
            qsort(idx, (size_t)n, sizeof(int), by_prob_desc);
            if (n > k) n = k;
            float mass = 0.0f;
            int keep = n;
            for (int i = 0; i < n; i++) {
                mass += prob[idx[i]];
                if (gc->top_p < 1.0f && mass >= gc->top_p) {
                    keep = i + 1;
                    break;
                }
            }
            float total = 0.0f;
            for (int i = 0; i < keep; i++) total += prob[idx[i]];
            float r = u * total, c = 0.0f;
            tok = idx[keep - 1];
            for (int i = 0; i < keep; i++) {
                c += prob[idx[i]];
                if (r < c) {
                    tok = idx[i];
                    break;
                }
            }
        }
    }
    if (logp) *logp = (logits[tok] - mx) * inv_t - lse;
    return tok;
}

/* Stepwise generation: the buffers live in the run, so a caller that must
 * not block (the local judge) can prefill in column chunks and decode one
 * step at a time; rlaif_generate drives the same run in one go. */
struct rlaif_gen_run {
    rlaif_model *m;
    rlaif_gen_config gc;
    int B, P, N, Vs, fed, step, finished; /* fed: prompt columns run so far */
    int share, src;       /* every prompt begins with row src's first `share` tokens (0: none) */
    rlaif_kv_cache pre;   /* those tokens' own one-row cache, while the prefix is prefilled */
    int cached;           /* the first tokens of every prompt that are copied, not computed:
                           * share, or those taken from the keep (at most share when B > 1) */
    rlaif_gen_keep *keep; /* gc.keep where the model is frozen, else NULL */
    rlaif_kv_cache kv;
    int *prompt, *ppos, *tok, *pos; /* left-padded prompts [B*P] and one column [B] */
    uint8_t *pvalid, *valid;
    float *logits;
    int *idx, *done, *plen;
    int *lead, copies; /* lead[b]: the first row with row b's very prompt; rows that are not
                        * their own lead copy it (copies: how many), all but its last token */
    float *prob;
    rlaif_rng *rng;
    rlaif_gen_output out;
    rlaif_gen_timing time;
};

void rlaif_gen_keep_free(rlaif_gen_keep *k) {
    if (!k) return;
    free(k->tokens);
    rlaif_kv_cache_free(&k->kv);
    memset(k, 0, sizeof *k);
}

/* Empties k, keeping its token buffer. */
static void keep_clear(rlaif_gen_keep *k) {
    rlaif_kv_cache_free(&k->kv);
    k->n = 0, k->m = NULL;
}

/* k becomes tokens[0..n) with the cache kv (moved in: kv is left empty). */
static void keep_set(rlaif_gen_keep *k, const rlaif_model *m, const int *tokens, int n,
                     rlaif_kv_cache *kv) {
    keep_clear(k);
    if (n > k->cap) {
        free(k->tokens);
        k->tokens = xmalloc(sizeof(int) * (size_t)n), k->cap = n;
    }
    memcpy(k->tokens, tokens, sizeof(int) * (size_t)n);
    k->n = n, k->m = m, k->kv = *kv;
    memset(kv, 0, sizeof *kv);
}

/* How many of the keep's tokens every prompt begins with (each keeping at
 * least one token to compute), when at least min; 0 when fewer, or when
 * the keep holds another model's keys (or the same model's in another
 * precision: a cache's element size is its precision's). */
static int keep_match(const rlaif_gen_keep *k, const rlaif_model *m, int B, const int *tokens,
                      const int64_t *offset, const int *length, int min) {
    if (!k || !k->n || k->m != m || !k->kv.kb != (m->precision != RLAIF_PREC_BF16)) return 0;
    int n = k->n;
    for (int b = 0; b < B; b++) {
        if (length[b] - 1 < n) n = length[b] - 1;
        const int *t = tokens + offset[b];
        int i = 0;
        while (i < n && t[i] == k->tokens[i]) i++;
        n = i;
    }
    return n >= min ? n : 0;
}

void rlaif_gen_run_free(rlaif_gen_run *g) {
    if (!g) return;
    free(g->prompt), free(g->ppos), free(g->pvalid), free(g->tok), free(g->pos), free(g->valid);
    free(g->logits), free(g->idx), free(g->prob), free(g->rng), free(g->done), free(g->plen);
    free(g->lead);
    rlaif_kv_cache_free(&g->kv), rlaif_kv_cache_free(&g->pre);
    rlaif_gen_output_free(&g->out);
    free(g);
}

/* The tokens every prompt begins with, when at least min of them (and at
 * least one token of each prompt left to compute: its last position gives
 * its logits); *src: a longest prompt, whose tokens are read for them. */
static int shared_prefix(int B, const int *tokens, const int64_t *offset, const int *length,
                         int min, int *src) {
    int n = INT_MAX, s = 0;
    for (int b = 0; b < B; b++) {
        if (length[b] - 1 < n) n = length[b] - 1;
        if (length[b] > length[s]) s = b;
    }
    *src = s;
    const int *t0 = tokens + offset[s];
    for (int b = 0; b < B && n >= min; b++) {
        const int *t = tokens + offset[b];
        int i = 0;
        while (i < n && t[i] == t0[i]) i++;
        n = i;
    }
    return B > 1 && min > 0 && n >= min ? n : 0;
}

/* lead[b]: the first row whose prompt is row b's, token for token (K
 * samples of one prompt); returns the rows that are not their own lead. */
static int same_prompts(int B, const int *tokens, const int64_t *offset, const int *length,
                        int *lead) {
    int copies = 0;
    for (int b = 0; b < B; b++) {
        lead[b] = b;
        for (int a = 0; a < b && lead[b] == b; a++)
            if (lead[a] == a && length[a] == length[b] &&
                (offset[a] == offset[b] ||
                 !memcmp(tokens + offset[a], tokens + offset[b], sizeof(int) * length[b])))
                lead[b] = a;
        copies += lead[b] != b;
    }
    return copies;
}

/* The first n tokens of every prompt from src's one row: their keys and
 * values go to every row at that row's first slots, and the batch's cache
 * goes on from column n. */
static void copy_prefix(rlaif_gen_run *g, const rlaif_kv_cache *src, int n) {
    for (int b = 0; b < g->B; b++) {
        rlaif_kv_cache_copy(&g->kv, b, g->P - g->plen[b], src, 0, 0, n);
        rlaif_kv_cache_same(&g->kv, b, g->P - g->plen[b], 0, g->P - g->plen[0], n);
    }
    g->kv.len = n; /* columns 0 .. n - 1: pads or copied */
    g->fed = n;
}

int rlaif_gen_begin(rlaif_gen_run **out, rlaif_model *m, const rlaif_gen_config *gc, int B,
                    const int *tokens, const int64_t *offset, const int *length,
                    const uint32_t *seq_index) {
    *out = NULL;
    int V = m->cfg.vocab_size, N = gc->max_new_tokens, P = 0;
    if (B < 1 || N < 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, NULL, "generate: %d prompts, %d new tokens", B, N);
    for (int b = 0; b < B; b++) {
        if (length[b] < 1)
            return RLAIF_ERROR(RLAIF_EX_USAGE, "drop empty prompts before generating",
                               "generate: prompt %d is empty", b);
        if (length[b] > P) P = length[b];
    }
    if (P + N > m->cfg.max_seq_len)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "shorten the prompts or max_new_tokens",
                           "generate: prompt of %d tokens + %d new exceeds max_seq_len %d", P, N,
                           m->cfg.max_seq_len);
    rlaif_gen_run *g = xcalloc(1, sizeof *g);
    g->m = m, g->gc = *gc, g->B = B, g->P = P, g->N = N;
    /* the ids the sampler may pick: a padded vocabulary's extra rows are not tokens */
    g->Vs = gc->n_valid > 0 && gc->n_valid < V ? gc->n_valid : V;
    int rc = rlaif_kv_cache_create(&g->kv, &m->cfg, B, P + N, m->precision);
    if (rc) return free(g), rc;
    g->out.B = B, g->out.max_new = N;
    g->out.tokens = xmalloc(sizeof(int) * ((size_t)B * N + 1));
    g->out.logp = xcalloc((size_t)B * N + 1, sizeof(float));
    g->out.length = xcalloc((size_t)B, sizeof(int));
    for (int i = 0; i < B * N; i++) g->out.tokens[i] = gc->pad_id;
    g->prompt = xmalloc(sizeof(int) * (size_t)B * P),
    g->ppos = xmalloc(sizeof(int) * (size_t)B * P);
    g->pvalid = xmalloc((size_t)B * P);
    g->tok = xmalloc(sizeof(int) * (size_t)B * P), g->pos = xmalloc(sizeof(int) * (size_t)B * P);
    g->valid = xmalloc((size_t)B * P);
    g->logits = xmalloc(sizeof(float) * (size_t)B * V);
    g->idx = xmalloc(sizeof(int) * (size_t)V * B);
    g->prob = xmalloc(sizeof(float) * (size_t)V * B);
    g->rng = xmalloc(sizeof(rlaif_rng) * (size_t)B);
    g->done = xcalloc((size_t)B, sizeof(int));
    g->plen = xmalloc(sizeof(int) * (size_t)B);
    /* left-padded prompts, positions from 0 at the first real token */
    for (int b = 0; b < B; b++) {
        int pad = P - length[b];
        for (int t = 0; t < P; t++) {
            int real = t >= pad;
            g->prompt[b * P + t] = real ? tokens[offset[b] + t - pad] : gc->pad_id;
            g->ppos[b * P + t] = real ? t - pad : 0;
            g->pvalid[b * P + t] = (uint8_t)real;
        }
        rlaif_rng_init(&g->rng[b], gc->seed, RLAIF_STREAM_SAMPLE, gc->step,
                       seq_index ? seq_index[b] : (uint32_t)b);
        g->plen[b] = length[b];
    }
    g->share = shared_prefix(B, tokens, offset, length, gc->share_min, &g->src);
    g->keep = m->frozen && gc->share_min > 0 ? gc->keep : NULL;
    /* kept <= share when B > 1: the keep's tokens that every prompt begins with */
    int kept = keep_match(g->keep, m, B, tokens, offset, length, gc->share_min);
    g->cached = g->share > kept ? g->share : kept;
    if (gc->share_min > 0 && P - 1 - g->cached >= gc->share_min) {
        g->lead = xmalloc(sizeof(int) * (size_t)B);
        g->copies = same_prompts(B, tokens, offset, length, g->lead);
    }
    double t0 = rlaif_now(); /* the copies are prefill time */
    if (g->share > kept) {   /* computed in its own row, after the kept part */
        rc = rlaif_kv_cache_create(&g->pre, &m->cfg, 1, g->share, m->precision);
        if (rc) return rlaif_gen_run_free(g), rc;
        if (kept) {
            rlaif_kv_cache_copy(&g->pre, 0, 0, &g->keep->kv, 0, 0, kept);
            g->pre.len = g->fed = kept;
            g->time.prefill_shared += kept;
        }
    } else if (kept) { /* all of it kept: straight into every row */
        copy_prefix(g, &g->keep->kv, kept);
        g->time.prefill_shared += (long long)B * kept;
    }
    /* a batch of one or one with a prefix of its own replaces the keep
     * (keep_prompt, prefix_done): the old one is in this run's caches now
     * (a batch of one writes its prompt into the same cache) */
    if (g->keep && B == 1) g->keep->n = 0;
    if (g->keep && B > 1 && g->share > kept) keep_clear(g->keep);
    g->time.prefill_s += rlaif_now() - t0;
    *out = g;
    return 0;
}

/* What prompt column c of row b is to the cache (forward_kv's valid): a
 * pad, a token to compute, one of the shared prefix's (copied), or, in a
 * row with another row's very prompt, one copied from that row before the
 * last column (0 until then). */
static uint8_t column_use(const rlaif_gen_run *g, int b, int c) {
    if (!g->pvalid[(size_t)b * g->P + c]) return 0;
    if (c - (g->P - g->plen[b]) < g->cached) return RLAIF_KV_CACHED;
    return g->copies && g->lead[b] != b && c < g->P - 1 ? 0 : 1;
}

/* Before the last prompt column: each row with another row's very prompt
 * takes that row's keys and values past the shared prefix (the same
 * padding, so the same slots); its last token it computes, for its
 * logits. */
static void copy_same_prompts(rlaif_gen_run *g) {
    for (int b = 0; b < g->B; b++) {
        int from = g->P - g->plen[b] + g->cached, n = g->P - 1 - from;
        if (g->lead[b] == b || n <= 0) continue;
        rlaif_kv_cache_copy(&g->kv, b, from, &g->kv, g->lead[b], from, n);
        /* its whole prompt but the last token is the lead's now, the
         * shared prefix before it included (a copy of the same) */
        int pad = g->P - g->plen[b];
        rlaif_kv_cache_same(&g->kv, b, pad, g->lead[b], pad, g->P - 1 - pad);
        g->time.prefill_shared += n;
    }
}

/* After the shared prefix's last column: it goes to every row (one row's
 * worth was computed), then into the keep, or away. */
static void prefix_done(rlaif_gen_run *g) {
    copy_prefix(g, &g->pre, g->share);
    g->time.prefill_shared += (long long)(g->B - 1) * g->share;
    if (g->keep)
        keep_set(g->keep, g->m, g->prompt + (size_t)g->src * g->P, g->share, &g->pre);
    else
        rlaif_kv_cache_free(&g->pre);
}

/* After the last prompt column of a batch of one: its prompt but the last
 * token goes into the keep (a batch of one has no shared prefix of its
 * own; the next call's may begin with this one's), in the keep's own cache
 * when that holds n slots of this model and precision (call after call
 * reuses it, not allocating and zeroing one a call). A keep is a saving,
 * not a need: where the memory for it is not there, there is none. */
static void keep_prompt(rlaif_gen_run *g) {
    rlaif_gen_keep *k = g->keep;
    int n = g->plen[0] - 1;
    rlaif_kv_cache kv = k->kv;
    if (n < g->gc.share_min || !kv.mem || kv.maxT < n || k->m != g->m ||
        !kv.kb != (g->m->precision != RLAIF_PREC_BF16)) {
        keep_clear(k);
        if (n < g->gc.share_min) return;
        /* room for a quarter more (in slots of 64), so that the next
         * prompts, a little longer, fit too: made for each longer prompt,
         * it was most calls of a judge's varying prompts, each a fresh
         * cache's page faults and zeroing inside the prefill */
        int cap = (n + n / 4 + 63) / 64 * 64;
        if (cap > g->m->cfg.max_seq_len) cap = g->m->cfg.max_seq_len;
        if (rlaif_kv_cache_create(&kv, &g->m->cfg, 1, cap, g->m->precision)) {
            rlaif_error_clear();
            return;
        }
    } else {
        memset(&k->kv, 0, sizeof k->kv); /* moved out; keep_set moves it back */
    }
    rlaif_kv_cache_copy(&kv, 0, 0, &g->kv, 0, 0, n);
    kv.len = n;
    keep_set(g->keep, g->m, g->prompt, n, &kv);
}

/* The next `cols` prompt columns through the cache. While fed < share they
 * are the shared prefix's, run in its own one-row cache (so a chunk
 * computes as many tokens as any other) from row src, a longest prompt: no
 * padding, so its columns are the prefix's positions. */
static int prefill_chunk(rlaif_gen_run *g, int cols) {
    int P = g->P, prefix = g->fed < g->share, rows = prefix ? 1 : g->B;
    rlaif_kv_cache *kv = prefix ? &g->pre : &g->kv;
    for (int r = 0; r < rows; r++) {
        int b = prefix ? g->src : r;
        for (int i = 0; i < cols; i++) {
            g->tok[r * cols + i] = g->prompt[b * P + g->fed + i];
            g->pos[r * cols + i] = g->ppos[b * P + g->fed + i];
            g->valid[r * cols + i] = prefix ? 1 : column_use(g, b, g->fed + i);
        }
    }
    double t0 = rlaif_now(), a0 = kv->attn_s;
    RLAIF_TRY(rlaif_model_forward_kv(g->m, kv, g->tok, g->pos, g->valid, cols, g->logits));
    g->time.prefill_attn_s += kv->attn_s - a0;
    for (int i = 0; i < rows * cols; i++) g->time.prefill_tokens += g->valid[i] == 1;
    g->fed += cols;
    if (prefix && g->fed == g->share) prefix_done(g);
    if (!prefix && g->copies && g->fed == P - 1) copy_same_prompts(g);
    if (!prefix && g->keep && g->B == 1 && g->fed == P) keep_prompt(g);
    g->time.prefill_s += rlaif_now() - t0;
    return 0;
}

/* Sample one token per live row from the logits; 1 when some row goes on. */
static int sample_step(rlaif_gen_run *g) {
    int B = g->B, N = g->N, V = g->m->cfg.vocab_size, s = g->step, live = 0;
    /* rows are independent: each has its own RNG stream and scratch */
#pragma omp parallel for schedule(static) reduction(+ : live) if (B > 1)
    for (int b = 0; b < B; b++) {
        if (g->done[b]) {
            g->tok[b] = g->gc.pad_id, g->valid[b] = 0, g->pos[b] = 0;
            continue;
        }
        /* one uniform per token, drawn even when greedy, so the stream of
         * a sequence does not depend on the decoding settings */
        float u = rlaif_rng_uniform(&g->rng[b]);
        float lp;
        int t = rlaif_sample_token(g->logits + (size_t)b * V, g->Vs, &g->gc, u,
                                   g->idx + (size_t)b * V, g->prob + (size_t)b * V, &lp);
        g->out.tokens[b * N + s] = t, g->out.logp[b * N + s] = lp;
        g->out.length[b] = s + 1;
        if (t == g->gc.eos_id || (g->gc.eos_id2 >= 0 && t == g->gc.eos_id2)) g->done[b] = 1;
        g->tok[b] = t, g->valid[b] = 1, g->pos[b] = g->plen[b] + s;
        live += !g->done[b];
    }
    return live;
}

int rlaif_gen_advance(rlaif_gen_run *g, long max_tokens, int *finished) {
    *finished = g->finished;
    if (g->finished) return 0;
    if (g->fed < g->P) { /* prefill: as many columns as the budget allows, at least one */
        long cols = max_tokens / g->B, end = g->P;
        if (g->fed < g->share)
            cols = max_tokens, end = g->share; /* the prefix: one row */
        else if (g->copies && g->fed < g->P - 1)
            end = g->P - 1; /* then copy_same_prompts */
        if (cols < 1) cols = 1;
        if (cols > end - g->fed) cols = end - g->fed;
        RLAIF_TRY(prefill_chunk(g, (int)cols));
        if (g->fed < g->P || g->N > 0) return 0;
        *finished = g->finished = 1; /* prefill only: the logits are the answer */
        return 0;
    }
    double t0 = rlaif_now(), a0 = g->kv.attn_s;
    int live = sample_step(g), rc = 0;
    if (!live || ++g->step >= g->N) {
        *finished = g->finished = 1;
    } else {
        rc = rlaif_model_forward_kv(g->m, &g->kv, g->tok, g->pos, g->valid, 1, g->logits);
        g->time.decode_steps++, g->time.decode_rows += live;
    }
    g->time.decode_s += rlaif_now() - t0;
    g->time.decode_attn_s += g->kv.attn_s - a0;
    return rc;
}

void rlaif_gen_add_timing(const rlaif_gen_run *g, rlaif_gen_timing *t) {
    t->prefill_s += g->time.prefill_s, t->decode_s += g->time.decode_s;
    t->prefill_attn_s += g->time.prefill_attn_s, t->decode_attn_s += g->time.decode_attn_s;
    t->prefill_tokens += g->time.prefill_tokens, t->decode_steps += g->time.decode_steps;
    t->prefill_shared += g->time.prefill_shared;
    t->decode_rows += g->time.decode_rows;
}

const float *rlaif_gen_logits(const rlaif_gen_run *g) {
    return g->logits;
}

const rlaif_gen_output *rlaif_gen_result(const rlaif_gen_run *g) {
    return &g->out;
}

int rlaif_generate(rlaif_model *m, const rlaif_gen_config *gc, int B, const int *tokens,
                   const int64_t *offset, const int *length, const uint32_t *seq_index,
                   rlaif_gen_output *out) {
    memset(out, 0, sizeof *out);
    if (gc->max_new_tokens < 1)
        return RLAIF_ERROR(RLAIF_EX_USAGE, NULL, "generate: %d prompts, %d new tokens", B,
                           gc->max_new_tokens);
    rlaif_gen_run *g;
    RLAIF_TRY(rlaif_gen_begin(&g, m, gc, B, tokens, offset, length, seq_index));
    int finished = 0, rc = 0;
    while (!finished && !rc) rc = rlaif_gen_advance(g, LONG_MAX, &finished);
    if (!rc) { /* hand the output over */
        *out = g->out;
        memset(&g->out, 0, sizeof g->out);
    }
    rlaif_gen_run_free(g);
    return rc;
}
