/* task.h - the arithmetic demo task, and the model's text format.
 *
 * The demo task asks "What is A plus B?", "What is A minus B?" or "What is
 * A times B?" with operands in [0, data.max_operand]: the question forms the
 * builtin judge (src/judge/judge_builtin.c) parses. By default its
 * demonstration is the bare answer ("85", "-35"): the response
 * rlaif_builtin_quality rates best (correct, safe, focused, has a number, as
 * short as a correct answer can be).
 *
 * Flawed demonstrations, like the imperfect human data of a real SFT set
 * (data.flaw_*, all 0 by default): a fraction flaw_wrong of them give a wrong
 * number (the answer off by 1, 2 or 10), and, independently, a fraction
 * flaw_rude is rude ("85, you idiot."), flaw_ramble rambles ("Let me think
 * about it. The answer is 85."), flaw_offtopic adds an unrelated sentence
 * ("85. By the way, I like pizza."): at most one of these three each, so
 * their sum is at most 1. data.demo_phrasing = varied phrases the rest in
 * several clean ways ("85", "85.", "The answer is 85.", "It is 85."). Which
 * demonstration gets what is drawn from problem i's own RLAIF_STREAM_DATA
 * draws (after the problem's), so it depends on (run.seed, i) only. Every
 * flaw is one the builtin judge sees (rlaif_builtin_flaws), and the oracle
 * (rlaif_task_flaws) counts them in what a model answers.
 *
 * Problem i is a pure function of (run.seed, stream, i) through the
 * counter-based RNG, never of the rank count: training problems come from
 * RLAIF_STREAM_DATA (i in [0, data.n_prompts)), held-out problems from
 * RLAIF_STREAM_HELDOUT, redrawn (up to 64 times) while they equal a training
 * problem, so the held-out set is disjoint from the training set whenever
 * the problem space (3 (max_operand + 1)^2 problems) leaves room for it.
 *
 * The model's text of a (prompt, response) pair is, in token ids, with the
 * chat form none (the default; chat NULL is none too):
 *     encode(prompt "\n") [left-truncated to max_prompt_len]
 *     encode(response)    [truncated to max_response_len]
 *     EOS                 [only when the response was not truncated]
 * and with a chat template (model.chat_template, rlaif/tokenizer/chat.h):
 *     the template's conversation [system prompt,] user = prompt, with the
 *       generation prompt [the start of the user's text cut to fit max_prompt_len]
 *     encode(the reply as the template writes it)   [truncated]
 *     the end-of-turn token (<|im_end|>, <|eot_id|>, </s>)   [when not truncated]
 * and generation stops at that token (rlaif_chat_stop_id). sft, collect,
 * rm, dpo, ppo and eval all go through rlaif_format_*, so a model is always
 * prompted exactly as it was trained. */
#ifndef RLAIF_TASK_H
#define RLAIF_TASK_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rlaif/core/config.h"
#include "rlaif/engine/model.h"
#include "rlaif/tokenizer/chat.h"
#include "rlaif/tokenizer/tokenizer.h"

typedef enum { RLAIF_OP_PLUS = 0, RLAIF_OP_MINUS = 1, RLAIF_OP_TIMES = 2 } rlaif_arith_op;

typedef struct {
    long a, b;
    rlaif_arith_op op;
    long answer;
} rlaif_arith;

/* Fractions of the demonstrations with each flaw (see top). */
typedef struct {
    double wrong, rude, ramble, offtopic;
    int varied; /* 1: clean demonstrations phrased in several ways */
} rlaif_demo_mix;

/* Flaws of a response (bit mask), as the builtin judge sees them. */
enum {
    RLAIF_FLAW_WRONG = 1, /* not the right number (or none) */
    RLAIF_FLAW_RUDE = 2,
    RLAIF_FLAW_RAMBLE = 4,
    RLAIF_FLAW_OFFTOPIC = 8
};

typedef struct {
    uint64_t seed;
    long max_operand;
    int64_t n_train;
    uint64_t *train_ids; /* [n_train] sorted problem ids of the training set */
    rlaif_demo_mix mix;  /* all 0 after init: bare right answers */
} rlaif_task;

/* n_train problems from seed (the training set's ids are kept to keep the
 * held-out set disjoint). Returns 0 or RLAIF_EX_USAGE for bad sizes. */
int rlaif_task_init(rlaif_task *t, uint64_t seed, long max_operand, int64_t n_train);
/* The demonstrations' flaws; RLAIF_EX_USAGE when rude + ramble + offtopic > 1. */
int rlaif_task_set_demos(rlaif_task *t, const rlaif_demo_mix *mix);
/* From run.seed, data.max_operand, data.n_prompts, data.flaw_* and
 * data.demo_phrasing. */
int rlaif_task_from_cfg(rlaif_task *t, const rlaif_config *cfg);
void rlaif_task_free(rlaif_task *t);

/* Training problem i (0 <= i < n_train) and held-out problem i (any i >= 0). */
void rlaif_task_train(const rlaif_task *t, int64_t i, rlaif_arith *p);
void rlaif_task_heldout(const rlaif_task *t, int64_t i, rlaif_arith *p);
/* 1 when p is one of the training problems. */
int rlaif_task_seen(const rlaif_task *t, const rlaif_arith *p);

/* "What is 47 plus 38?" (NUL-terminated, truncated to n). */
void rlaif_task_prompt(const rlaif_arith *p, char *buf, size_t n);
/* The demonstration of training problem i ("85" by default; see top), and
 * its flaws (RLAIF_FLAW_* mask). */
int rlaif_task_demo(const rlaif_task *t, int64_t i, char *buf, size_t n);
/* The oracle: the flaws of response to p (RLAIF_FLAW_* mask), the builtin
 * judge's own reading (rlaif_builtin_flaws). */
int rlaif_task_flaws(const rlaif_arith *p, const char *response);
/* Is response right? Its last number is the answer. */
int rlaif_task_correct(const rlaif_arith *p, const char *response);

/* ---- the model's text format (see top) ---- */

/* Append the ids of the prompt (at most max_prompt_len of them) to out. */
int rlaif_format_prompt(rlaif_tokenizer *tok, const rlaif_chat *chat, const char *prompt,
                        long max_prompt_len, rlaif_tokens *out);
/* Append prompt, response and the stop token to out; *n_prompt = ids of the
 * prompt part (the loss of SFT covers out->n - *n_prompt tokens: response +
 * stop). */
int rlaif_format_example(rlaif_tokenizer *tok, const rlaif_chat *chat, const char *prompt,
                         const char *response, long max_prompt_len, long max_response_len,
                         rlaif_tokens *out, size_t *n_prompt);
/* The response text of generated ids: everything before the first stop
 * token, special tokens dropped (llama2, llama3: stripped, as they write it). */
int rlaif_format_response(const rlaif_tokenizer *tok, const rlaif_chat *chat, const int32_t *ids,
                          size_t n, rlaif_bytes *out);

/* ---- greedy evaluation on held-out problems ---- */

typedef struct {
    int64_t n, correct;             /* held-out problems asked, answered right */
    int64_t unseen, unseen_right;   /* of them: not in the training set */
    int64_t rude, ramble, offtopic; /* answers with each flaw (the oracle) */
} rlaif_task_score;

/* Collective over comm (each rank generates its share of the n problems,
 * greedily, in batches of 64): the counts, identical on every rank. Rank 0
 * prints its first nshow questions and answers with rlaif_info. Clobbers
 * the model's activations. */
int rlaif_task_eval(rlaif_model *m, rlaif_tokenizer *tok, const rlaif_chat *chat,
                    const rlaif_task *t, int64_t n, long max_prompt_len, int max_new, int nshow,
                    MPI_Comm comm, rlaif_task_score *out);

#endif
