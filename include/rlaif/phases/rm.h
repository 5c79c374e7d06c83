/* rm.h - `rlaif rm job.ini`: the reward model (Bradley-Terry on preference
 * labels); src/phases/README.md, RM.
 *
 * Data: the pairs of rm.preferences (default <out_dir>/preferences.h5)
 * whose status is ok and whose label P(A better) is a number in [0, 1], plus
 * data.human_preferences (JSONL {"prompt","chosen","rejected"}, label 1 for
 * the chosen response) when set. Labels strictly between 0 and 1 (ties 0.5
 * from judge.disagreement = tie, logprob soft labels) follow rm.soft_labels:
 * soft (the cross-entropy below), hard (rounded; ties dropped) or drop.
 * Every response becomes the model's text of (prompt, response) exactly as
 * the policy sees it (task.h: prompt "\n" response EOS, with the same
 * truncation), tokenized with the model's tokenizer. A prompt is held out
 * for validation when a hash of its text falls below rm.eval_fraction, so
 * validation pairs never share a prompt with training pairs.
 *
 * Model: model.init_from when set, else the newest finished sft checkpoint
 * in the checkpoint folder, else (only with rm.from_scratch = true) [model].
 * rm.head = new puts a fresh scalar head on it (train.h: N(0, 1/sqrt(C+1))).
 * The reward r(x, y) is the score at the last real token of the sequence
 * (its EOS, or the last kept token of a truncated response).
 *
 * Loss of one pair with label p = P(A better), d = r_A - r_B, margin m:
 *     bt(d, p) = -[p log s(d - m) + (1 - p) log s(-d - m)]      (s = sigmoid)
 * For p = 1 this is -log s(r_w - r_l - m) with w = A; for p = 0 the same
 * with w = B; a soft label mixes the two hard losses, each with its margin
 * (for a tie the minimum is at d = 0 for any m). The step's loss is
 *     mean over the global batch of bt  +  rm.reward_l2 * mean(r^2)
 * where the second mean runs over both rewards of every pair (the article's
 * 0.001 (mean(r_w^2) + mean(r_l^2)) is the same term with coefficient 0.002).
 * rm.batch_size and rm.micro_batch count pairs (two sequences each).
 *
 * Output: checkpoints <out_dir>/<checkpoint.dir>/rm-<step>.h5 (score head
 * included); the final one has /state done = 1, and validation results
 * (eval_loss, eval_accuracy, eval_pairs) and the mean and std of the
 * rewards over the training responses (reward_mean, reward_std, for PPO's
 * reward normalisation). Metrics: /rm per step (loss, accuracy, margin,
 * rewards/chosen, rewards/rejected, ...) and /rm_eval at step 0 and at every
 * checkpoint. */
#ifndef RLAIF_RM_H
#define RLAIF_RM_H

#include "rlaif/core/job.h"
#include "rlaif/engine/logprob.h"
#include "rlaif/engine/model.h"
#include "rlaif/phases/pairs.h"

#include <stdint.h>

int rlaif_cmd_rm(rlaif_ctx *ctx);

/* A trained reward model for scoring (PPO, eval): the model of path, which
 * must carry a scalar head (RLAIF_EX_USAGE naming the file otherwise), and
 * the reward statistics of its /state (NaN when it has none, e.g. a
 * checkpoint of an unfinished run). Serial: call it on each rank that scores. */
int rlaif_rm_load(const char *path, rlaif_model *m, double *reward_mean, double *reward_std);

/* bt(d, p) above, in double; *dd = d bt / d d. */
double rlaif_rm_pair_loss(double d, double p, double margin, double *dd);

/* Pairs as token sequences (pairs.h, shared with dpo): pair i is sequences
 * 2i (response A) and 2i+1 (response B). */
typedef rlaif_pairs rlaif_rm_pairs;

/* What a forward over some pairs adds up (sums, for the caller to reduce). */
typedef struct {
    double loss;                  /* of the pairs: sum(bt)/N + l2 * sum(r^2)/(2N) */
    double decided, correct;      /* pairs with p != 0.5, of them ranked the label's way */
    double chosen, rejected;      /* sums of r_w and r_l over decided pairs */
    double sum_r, sum_r2, tokens; /* over every reward and sequence */
} rlaif_rm_sums;

/* Scratch buffers for micro-batches of up to max_pairs pairs of up to T tokens. */
typedef struct {
    rlaif_lp_batch pass; /* the per-token pass (engine/logprob.h): pass.last = reward positions */
    int64_t *rows;       /* [2 max_pairs] sequence index of each row */
    float *dscore;       /* [2 max_pairs * T] d loss / d score per token */
    int max_pairs, T;
} rlaif_rm_buf;
void rlaif_rm_buf_init(rlaif_rm_buf *b, int max_pairs, int T);
void rlaif_rm_buf_free(rlaif_rm_buf *b);

/* Pairs idx[0..B) of d through m (one forward of 2B right-padded rows);
 * the loss is normalised by N, the pair count of the whole (global) batch.
 * backward = 1 also accumulates the gradients into m->grads. Adds to *s. */
int rlaif_rm_micro(rlaif_model *m, const rlaif_rm_pairs *d, const int64_t *idx, int B, double N,
                   double margin, double l2, int backward, rlaif_rm_buf *buf, rlaif_rm_sums *s);

#endif
