/* dpo.h - `rlaif dpo job.ini`: direct preference optimisation on the
 * preference labels (Rafailov et al. 2023, "Direct Preference Optimization:
 * Your Language Model is Secretly a Reward Model"); src/phases/README.md, DPO.
 *
 * Data: the pairs of dpo.preferences (default <out_dir>/preferences.h5)
 * and data.human_preferences, read, split (dpo.eval_fraction, by prompt
 * hash) and tokenized exactly as rm reads them (pairs.h), soft labels by
 * dpo.soft_labels.
 *
 * Models: the policy starts from model.init_from, else the newest finished
 * sft checkpoint (as rm). The reference is the same start model, frozen: its
 * log-probs of every response of every pair are computed once, before step
 * 1, by the policy itself while it still equals the start model (each
 * learner its share of the pairs, gathered), and stored in
 * <out_dir>/<checkpoint.dir>/dpo_ref_logps.h5, so no second model is held
 * during training and a resumed run reads the same numbers bit for bit.
 *
 * Log-probs: log pi(y | x) = sum over the response tokens and the EOS of
 * log p(token | everything before it); the prompt's tokens are excluded.
 *
 * Loss of one pair with label p = P(A better), beta = dpo.beta,
 *     h = (log pi(A) - log ref(A)) - (log pi(B) - log ref(B)),  z = beta h:
 *   sigmoid  l(h) = -log s(z)                                (DPO)
 *   cdpo     l(h) = -(1 - e) log s(z) - e log s(-z)         (e = dpo.label_smoothing)
 *   ipo      l(h) = (h - 1/(2 beta))^2                       (IPO, eq. 17 of Azar et al.)
 * for A preferred; a pair's loss is the expected loss over its label,
 *     loss(h, p) = p l(h) + (1 - p) l(-h),
 * so p = 1 and p = 0 are the hard losses with A or B the winner, a tie
 * (p = 0.5) pulls h towards 0, and for sigmoid a soft label is the soft
 * cross-entropy -p log s(z) - (1 - p) log s(-z). The step's loss is the
 * mean over the GLOBAL batch (dpo.batch_size pairs over every learner).
 *
 * Output: checkpoints <out_dir>/<checkpoint.dir>/dpo-<step>.h5 (a plain
 * GPT-2 policy, like sft's); the final one has /state done = 1 and the
 * last validation (eval_loss, eval_accuracy, eval_margin) and greedy task
 * accuracy. Metrics /dpo per step (loss, TRL's rewards/chosen,
 * rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen,
 * logps/rejected, epoch) and /dpo_eval at step 0 and every checkpoint. */
#ifndef RLAIF_DPO_H
#define RLAIF_DPO_H

#include "rlaif/core/job.h"
#include "rlaif/engine/logprob.h"
#include "rlaif/engine/model.h"
#include "rlaif/phases/pairs.h"

#include <stdint.h>

int rlaif_cmd_dpo(rlaif_ctx *ctx);

typedef enum { RLAIF_DPO_SIGMOID = 0, RLAIF_DPO_IPO = 1, RLAIF_DPO_CDPO = 2 } rlaif_dpo_kind;

typedef struct {
    rlaif_dpo_kind kind;
    double beta, eps; /* eps: cdpo's label smoothing (0 otherwise) */
} rlaif_dpo_loss;

/* loss(h, p) above, in double; *dh = d loss / d h. */
double rlaif_dpo_pair_loss(const rlaif_dpo_loss *lf, double h, double p, double *dh);

/* What a forward over some pairs adds up (sums, for the caller to reduce).
 * Rewards are TRL's implicit rewards beta (log pi - log ref); chosen is the
 * side the label prefers, over the decided pairs (p != 0.5). */
typedef struct {
    double loss;             /* sum(loss(h, p)) / N */
    double decided, correct; /* decided pairs, of them reward(chosen) > reward(rejected) */
    double chosen, rejected; /* sums of the rewards */
    double logp_chosen, logp_rejected; /* sums of log pi */
    double tokens;                     /* tokens through the model */
} rlaif_dpo_sums;

/* Scratch buffers for micro-batches of up to max_pairs pairs of up to T tokens. */
typedef struct {
    rlaif_lp_batch pass; /* the per-token pass (engine/logprob.h) over 2 max_pairs rows */
    int64_t *rows;       /* [2 max_pairs] sequence index of each row */
    float *dlogp;        /* [2 max_pairs * T] d loss / d logp per token */
    double *lp;          /* [2 max_pairs] sequence log-probs of the last forward */
    int max_pairs, T;
} rlaif_dpo_buf;
void rlaif_dpo_buf_init(rlaif_dpo_buf *b, int max_pairs, int T);
void rlaif_dpo_buf_free(rlaif_dpo_buf *b);

/* Forward of pairs idx[0..B) of d (2B right-padded rows): buf->lp[2b],
 * buf->lp[2b+1] = log pi of responses A and B of pair idx[b]; *ntok += tokens run. */
int rlaif_dpo_seq_logps(rlaif_model *m, const rlaif_pairs *d, const int64_t *idx, int B,
                        rlaif_dpo_buf *buf, double *ntok);

/* One micro-batch: the losses of pairs idx[0..B) against ref ([2 d->n],
 * log ref of A and B of every pair), normalised by N, the pair count of the
 * whole (global) batch; backward = 1 also accumulates the gradients into
 * m->grads through d loss / d logp per response token. Adds to *s. */
int rlaif_dpo_micro(rlaif_model *m, const rlaif_pairs *d, const double *ref, const int64_t *idx,
                    int B, double N, const rlaif_dpo_loss *lf, int backward, rlaif_dpo_buf *buf,
                    rlaif_dpo_sums *s);

#endif
