/* rollout.h - the rollout worker: what a rollout rank does with a policy,
 * shared by collect and eval and meant for PPO, REINFORCE and online DPO:
 * the training prompts, the policy's checkpoint, each rank's contiguous
 * share of the prompts, batched sampling (prompts in; sampled token ids,
 * their behaviour log-probs and the decoded, UTF-8-clean texts out), and the
 * pairing of K responses into preference pairs.
 *
 *     rlaif_rollout r = {.model = &m, .tok = tok, .who = "ppo", ...sampling...};
 *     rlaif_rollout_batch b;
 *     rlaif_rollout_sample(&r, g, prompts, prompt_ids, K, &b);
 *     // sequence p * K + k: b.tokens[(p*K+k) * b.max_new ...], b.logp, b.length, b.text
 *     rlaif_rollout_batch_free(&b);
 *
 * Determinism: sequence k of prompt i draws from rlaif_rng(seed,
 * RLAIF_STREAM_SAMPLE, step, i * K + k), so its tokens are the same
 * whatever the rank count, batch or slot (collect uses step 0, eval
 * RLAIF_STREAM_EVAL; PPO would use its iteration). */
#ifndef RLAIF_ROLLOUT_H
#define RLAIF_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>

#include "rlaif/core/job.h"
#include "rlaif/engine/model.h"
#include "rlaif/tokenizer/chat.h"
#include "rlaif/tokenizer/tokenizer.h"

/* ------------------------------------------------------------- prompts */

typedef struct {
    int64_t n;
    char **text;  /* [n] */
    char **jsonl; /* rlaif_jsonl_read's array (NULL for the task) */
    size_t njsonl;
} rlaif_prompt_set;

/* The training prompts: data.task = arithmetic -> training problems
 * [0, data.n_prompts); data.task = jsonl -> the {"prompt"} records of
 * data.prompts. who names the phase in errors. */
int rlaif_prompts_train(const rlaif_config *cfg, const char *who, rlaif_prompt_set *ps);
void rlaif_prompts_free(rlaif_prompt_set *ps);

/* This rank's contiguous share [lo, hi) of n prompts among the rollout
 * ranks (empty when it is not one). */
void rlaif_rollout_shard(const rlaif_ranks *rk, int64_t n, int64_t *lo, int64_t *hi);

/* -------------------------------------------------------------- policy */

/* model.init_from, else the newest finished sft checkpoint (an sft stopped
 * early is not the policy). who names the phase in errors. */
int rlaif_policy_find(const rlaif_config *cfg, const char *who, char *path, size_t n);
/* A checkpoint, its tokenizer (its /tokenizer, else the job's) and its chat
 * template (model.chat_template; auto: the checkpoint's); the tokenizer
 * must have the token that ends a reply. what = "policy", "model", ... in
 * errors. */
int rlaif_policy_load(const rlaif_config *cfg, const char *who, const char *what, const char *path,
                      rlaif_model *m, rlaif_tokenizer **tok, rlaif_chat *chat);

/* ------------------------------------------------------------ sampling */

typedef struct {
    rlaif_model *model;
    rlaif_tokenizer *tok;
    const rlaif_chat *chat; /* NULL: plain text (form none) */
    const char *who;        /* phase name for errors */
    long max_prompt_len;    /* data.max_prompt_len */
    long max_new_tokens;    /* capped by what the context leaves */
    /* collect: data.max_response_len, and every response made to fit rm and
     * dpo (prompt + response + end-of-text within max_seq_len); 0: no such
     * care (eval judges its texts only) */
    long pair_response_len;
    float temperature; /* <= 0 greedy */
    int top_k;         /* 0 off */
    float top_p;       /* >= 1 off */
    uint64_t seed;
    uint32_t step;
} rlaif_rollout;

typedef struct {
    int B, max_new; /* B = prompts x K sequences; sequence p * K + k */
    int *tokens;    /* [B * max_new] sampled ids, the pad (EOS) after the end */
    float *logp;    /* [B * max_new] behaviour log-probs (see generate.h) */
    int *length;    /* [B] tokens generated, EOS included */
    char **text;    /* [B] the responses as UTF-8 text (U+FFFD for bad bytes) */
} rlaif_rollout_batch;

/* The response tokens a prompt of `longest` tokens leaves in the model's
 * context: max_seq_len - longest, less 1 when pair_response_len is set, for
 * the end-of-text token rm and dpo append to a response that reached the cap
 * (without it such a pair is one token too long for them and refused).
 * Generation is capped to it. */
long rlaif_rollout_room(const rlaif_rollout *r, int longest);
/* The longest of the prompts texts[lo, hi) once formatted (data.max_prompt_len
 * applied), in tokens; 0 when the range is empty. */
int rlaif_rollout_longest(const rlaif_rollout *r, char *const *texts, int64_t lo, int64_t hi,
                          int *longest);

/* K samples for each of the g prompts texts[p] with global ids ids[p]. */
int rlaif_rollout_sample(const rlaif_rollout *r, int g, const char *const *texts,
                         const int64_t *ids, int K, rlaif_rollout_batch *out);
void rlaif_rollout_batch_free(rlaif_rollout_batch *b);

/* A malloc'd copy of s[0, n) with every byte that is not part of valid
 * UTF-8 (and NUL) replaced by U+FFFD: model output on its way to a judge,
 * whose requests are JSON. */
char *rlaif_utf8_clean(const char *s, size_t n);

/* ------------------------------------------------------------- pairing */

/* The pairs of one prompt: texts[0..K) sampled responses; fills
 * pick[2 * t], pick[2 * t + 1] (t < returned count <= P) with the indexes of
 * the responses of pair t: the K(K-1)/2 index pairs (a < b) in the order of
 * a permutation keyed by (seed, RLAIF_STREAM_PAIRS, prompt), the first P
 * whose texts differ (and differ from pairs already taken). Pure function of
 * (seed, prompt, texts). */
int rlaif_rollout_pick_pairs(uint64_t seed, int64_t prompt, int K, int P, const char *const *texts,
                             int *pick);

#endif
