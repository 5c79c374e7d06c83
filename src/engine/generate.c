/* generate.c - batched sampling with a KV cache (see generate.h). */
#include "rlaif/engine/generate.h"
#include "rlaif/core/error.h"
#include "rlaif/core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

rlaif_gen_config rlaif_gen_defaults(void) {
    return (rlaif_gen_config){.max_new_tokens = 16,
                              .temperature = 0.0f,
                              .top_k = 0,
                              .top_p = 1.0f,
                              .eos_id = -1,
                              .pad_id = 0,
                              .seed = 0,
                              .step = 0};
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

int rlaif_generate(rlaif_model *m, const rlaif_gen_config *gc, int B, const int *tokens,
                   const int64_t *offset, const int *length, const uint32_t *seq_index,
                   rlaif_gen_output *out) {
    memset(out, 0, sizeof *out);
    int V = m->cfg.vocab_size, N = gc->max_new_tokens, P = 0;
    if (B < 1 || N < 1)
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
    /* the ids the sampler may pick: a padded vocabulary's extra rows are not tokens */
    int Vs = gc->n_valid > 0 && gc->n_valid < V ? gc->n_valid : V;
    rlaif_kv_cache kv;
    RLAIF_TRY(rlaif_kv_cache_create(&kv, &m->cfg, B, P + N));
    out->B = B, out->max_new = N;
    out->tokens = xmalloc(sizeof(int) * (size_t)B * N);
    out->logp = xcalloc((size_t)B * N, sizeof(float));
    out->length = xcalloc((size_t)B, sizeof(int));
    int *tok = xmalloc(sizeof(int) * (size_t)B * P), *pos = xmalloc(sizeof(int) * (size_t)B * P);
    uint8_t *valid = xmalloc((size_t)B * P);
    float *logits = xmalloc(sizeof(float) * (size_t)B * V);
    int *idx = xmalloc(sizeof(int) * (size_t)V * B);
    float *prob = xmalloc(sizeof(float) * (size_t)V * B);
    rlaif_rng *rng = xmalloc(sizeof(rlaif_rng) * (size_t)B);
    int *done = xcalloc((size_t)B, sizeof(int));
    for (int i = 0; i < B * N; i++) out->tokens[i] = gc->pad_id;

    /* Prefill: left-padded prompts, positions from 0 at the first real token. */
    for (int b = 0; b < B; b++) {
        int pad = P - length[b];
        for (int t = 0; t < P; t++) {
            int real = t >= pad;
            tok[b * P + t] = real ? tokens[offset[b] + t - pad] : gc->pad_id;
            pos[b * P + t] = real ? t - pad : 0;
            valid[b * P + t] = (uint8_t)real;
        }
        rlaif_rng_init(&rng[b], gc->seed, RLAIF_STREAM_SAMPLE, gc->step,
                       seq_index ? seq_index[b] : (uint32_t)b);
    }
    int rc = rlaif_model_forward_kv(m, &kv, tok, pos, valid, P, logits);
    for (int s = 0; s < N && !rc; s++) {
        int live = 0;
        /* rows are independent: each has its own RNG stream and scratch */
#pragma omp parallel for schedule(static) reduction(+ : live) if (B > 1)
        for (int b = 0; b < B; b++) {
            if (done[b]) {
                tok[b] = gc->pad_id, valid[b] = 0, pos[b] = 0;
                continue;
            }
            /* one uniform per token, drawn even when greedy, so the stream of
             * a sequence does not depend on the decoding settings */
            float u = rlaif_rng_uniform(&rng[b]);
            float lp;
            int t = rlaif_sample_token(logits + (size_t)b * V, Vs, gc, u, idx + (size_t)b * V,
                                       prob + (size_t)b * V, &lp);
            out->tokens[b * N + s] = t, out->logp[b * N + s] = lp;
            out->length[b] = s + 1;
            if (t == gc->eos_id) done[b] = 1;
            tok[b] = t, valid[b] = 1, pos[b] = length[b] + s;
            live += !done[b];
        }
        if (!live || s == N - 1) break;
        rc = rlaif_model_forward_kv(m, &kv, tok, pos, valid, 1, logits);
    }
    free(tok), free(pos), free(valid), free(logits), free(idx), free(prob), free(rng), free(done);
    rlaif_kv_cache_free(&kv);
    if (rc) rlaif_gen_output_free(out);
    return rc;
}
