/* judge_demos.h - demonstrations that teach a small model to be the job's
 * judge (`rlaif judge --demos`, src/app/judge_demos.c). */
#ifndef RLAIF_JUDGE_DEMOS_H
#define RLAIF_JUDGE_DEMOS_H

#include "rlaif/core/config.h"
#include "rlaif/judge/judge.h"

/* What a local judge writes before its label in logprob mode. */
#define RLAIF_JUDGE_REPLY_PREFIX RLAIF_JUDGE_DECISION " "

/* One judge call as a demonstration: input, a (position A) and b rendered
 * with template t (and few-shot text, may be NULL), boundaries from rng;
 * *prompt = the conversation as plain text without its final newline (what
 * model.chat_template = none frames back into the judge's exact prompt),
 * *response = the builtin judge's answer (logprob mode: prefix + letter).
 * Both malloc'd. */
int rlaif_judge_demo(const rlaif_judge_template *t, const char *fewshot, rlaif_judge_mode mode,
                     const rlaif_builtin_opts *judge, const char *prefix, const char *input,
                     const char *a, const char *b, rlaif_rng *rng, char **prompt, char **response);

/* Every pair of the JSONL input in both orders, judged by the builtin judge
 * with the job's [judge] settings, as {"prompt","response","id","order"}
 * lines of output. *written = demonstrations written. */
int rlaif_judge_demos_write(const rlaif_config *cfg, const char *input, const char *output,
                            long *written);

#endif
