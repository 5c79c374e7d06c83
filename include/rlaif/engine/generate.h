/* generate.h - batched sampling with a KV cache.
 *
 * Prompts are ragged (flat tokens + offset + length, as stored in HDF5); they
 * are left-padded to the longest, pads are never attended to and positions
 * restart at 0 at each prompt's first token, so a sequence's tokens do not
 * depend on what else is in the batch. Sampling draws come from
 * rlaif_rng(seed, RLAIF_STREAM_SAMPLE, step, seq_index[b]): the same sequence
 * index gives the same tokens whichever rank or batch slot generates it. */
#ifndef RLAIF_GENERATE_H
#define RLAIF_GENERATE_H

#include "rlaif/engine/model.h"

#include <stdint.h>

typedef struct {
    int max_new_tokens;
    float temperature; /* <= 0: greedy (argmax, lowest id on ties) */
    int top_k;         /* 0: off */
    float top_p;       /* >= 1: off */
    int eos_id;        /* < 0: none; the EOS token is kept and ends the sequence */
    int eos_id2;       /* < 0: none; a second token that ends a sequence the same way
                        * (a chat template's end of turn, and the tokenizer's EOS) */
    int pad_id;        /* written after the end and used to pad prompts */
    uint64_t seed;
    uint32_t step; /* e.g. the PPO iteration */
    /* ids >= n_valid are never sampled (0: every id). A model's vocabulary may
     * be padded past its tokenizer's (Qwen2: 151,936 rows for 151,665 ids);
     * such an id has no text. Sampling renormalises over the first n_valid
     * logits; training forwards still use every row (a trained model gives
     * the padding rows ~0 mass, so PPO's ratios are unaffected). */
    int n_valid;
    /* Shared tokens: when every prompt of the batch begins with the same
     * share_min or more tokens (a judge's system prompt and template, a
     * chat template's preamble), those are computed once and their keys and
     * values copied into every row's cache; a prompt repeated in the batch
     * (K samples of one prompt) with share_min or more tokens past those
     * copies them from its first occurrence and computes only its last
     * token. The same values, less prefill work. 0: never. Default 16. */
    int share_min;
    /* A prefix kept from one run to the next (NULL: none; see
     * rlaif_gen_keep). Used only with a frozen model and share_min > 0. */
    struct rlaif_gen_keep *keep;
} rlaif_gen_config;

/* A prefix kept across runs of one frozen model (m->frozen: the local
 * judge's), the way an inference server caches prefixes: the tokens of the
 * last run's shared prefix (a batch of one: its prompt but the last token)
 * and their keys and values in a one-row cache. A run whose every prompt
 * begins with share_min or more of those tokens copies them instead of
 * computing them (counted in prefill_shared), and leaves its own shared
 * prefix in their place; so a judge's system prompt is computed once per
 * job, not once per batch, and the two orders of a pair judged one after
 * the other share their question too. The caller owns it (zeroed: empty)
 * and frees it with rlaif_gen_keep_free; a keep is never read with another
 * model (m is checked) or another precision. */
typedef struct rlaif_gen_keep {
    const rlaif_model *m; /* whose keys and values these are */
    int *tokens, n, cap;  /* the prefix's tokens; n 0: empty */
    rlaif_kv_cache kv;    /* one row, n slots, positions 0 .. n-1 */
} rlaif_gen_keep;
void rlaif_gen_keep_free(rlaif_gen_keep *k);

rlaif_gen_config rlaif_gen_defaults(void); /* greedy, 16 tokens, no EOS, pad 0 */

typedef struct {
    int B, max_new;
    int *tokens; /* [B * max_new]: sampled tokens, pad_id after the end */
    float *logp; /* [B * max_new]: log p of each sampled token under softmax(logits /
                    temperature) (temperature 1 when greedy), before top-k/top-p; 0 after end */
    int *length; /* [B]: tokens generated, EOS included */
} rlaif_gen_output;

/* B prompts: prompt b is tokens[offset[b] .. offset[b] + length[b]) (length >= 1).
 * seq_index: [B] global sequence numbers for the RNG (NULL: 0..B-1).
 * The longest prompt + max_new_tokens must fit the model's max_seq_len.
 * out is allocated here; free it with rlaif_gen_output_free. Clobbers the
 * model's activations (run the next training forward afterwards). */
int rlaif_generate(rlaif_model *m, const rlaif_gen_config *gc, int B, const int *tokens,
                   const int64_t *offset, const int *length, const uint32_t *seq_index,
                   rlaif_gen_output *out);
void rlaif_gen_output_free(rlaif_gen_output *out);

/* The same generation in bounded slices, for a caller that must not block
 * long (the local judge polls every 50 ms): begin allocates the cache and
 * pads the prompts (no compute; max_new_tokens 0 = prefill only); each
 * advance runs either the next prefill chunk of about max_tokens tokens
 * (max_tokens / B prompt columns, at least one; of a shared prefix, which
 * is one row, max_tokens of its tokens) or one decoding step, and
 * sets *finished once every row has ended (prefill only: after the last
 * chunk, when rlaif_gen_logits holds each row's next-token logits [B*V]).
 * Run in one go (max_tokens LONG_MAX) it is exactly rlaif_generate. */
typedef struct rlaif_gen_run rlaif_gen_run;
int rlaif_gen_begin(rlaif_gen_run **g, rlaif_model *m, const rlaif_gen_config *gc, int B,
                    const int *tokens, const int64_t *offset, const int *length,
                    const uint32_t *seq_index);
int rlaif_gen_advance(rlaif_gen_run *g, long max_tokens, int *finished);
const float *rlaif_gen_logits(const rlaif_gen_run *g);
/* Where a run's time went (the engine's own clock, for reports and
 * benchmarks): prefill chunks and the real prompt tokens they computed;
 * (tokens of a shared prefix, copied, are counted apart in prefill_shared);
 * decoding steps (sampling + one forward of the live rows) and the live
 * rows summed over the steps; of each, the time in attention over the KV
 * cache (the rest is the matrix products, norms, activations, sampling).
 * Adds the run's totals into *t. */
typedef struct {
    double prefill_s, decode_s, prefill_attn_s, decode_attn_s;
    long long prefill_tokens, decode_steps, decode_rows;
    long long prefill_shared; /* prompt tokens copied from a shared prefix, not computed */
} rlaif_gen_timing;
void rlaif_gen_add_timing(const rlaif_gen_run *g, rlaif_gen_timing *t);
const rlaif_gen_output *rlaif_gen_result(const rlaif_gen_run *g);
void rlaif_gen_run_free(rlaif_gen_run *g);

/* Sample one token from a row of V logits (exposed for tests). idx/prob are
 * scratch of V entries each. Returns the token; *logp as in rlaif_gen_output. */
int rlaif_sample_token(const float *logits, int V, const rlaif_gen_config *gc, float u, int *idx,
                       float *prob, float *logp);

#endif
