/* sft.h - `rlaif sft job.ini`: supervised fine-tuning on demonstrations.
 *
 * Demonstrations come from data.sft (JSONL of {"prompt","response"}) or,
 * when data.task = arithmetic and data.sft is empty, from the demo task
 * (task.h: data.n_prompts problems, each answered by its demonstration).
 * Each becomes the model's text (task.h: prompt "\n" response EOS); the loss
 * is the cross-entropy of the response tokens and EOS only, averaged over
 * every such token of the global batch. Examples are shuffled per epoch by
 * the counter RNG (RLAIF_STREAM_SHUFFLE, step = epoch), so the order does
 * not depend on the learner count. The training loop is train.h's.
 *
 * Output: checkpoints <out_dir>/<checkpoint.dir>/sft-<step>.h5; the final
 * model is sft-<sft.steps>.h5 (its /state has done = 1), which later phases
 * start from. Metrics rows in <out_dir>/metrics.h5 (/sft) and progress.jsonl.
 * With data.task = arithmetic, sft.eval_prompts held-out problems are
 * answered greedily before and after training. */
#ifndef RLAIF_SFT_H
#define RLAIF_SFT_H

#include "rlaif/core/job.h"

int rlaif_cmd_sft(rlaif_ctx *ctx);

#endif
