/* logprob.h - the per-token pass every sequence-level loss is built on: a
 * batch of (prompt, response) token sequences through the model, giving for
 * each response token y_t of a row
 *   logp    log pi(y_t | x, y_<t)          (the policy's log-prob of the taken token)
 *   entropy H(pi(. | x, y_<t))             (of the whole next-token distribution)
 *   value   V(x, y_<t)                     (the scalar head at the state before y_t)
 * and backward from per-token upstream gradients d(loss)/d(logp),
 * d(loss)/d(entropy), d(loss)/d(value) (PPO's policy, entropy and value
 * losses; DPO's sequence log-prob is sum(logp); a reward model's reward is
 * the value at the last token, lp->last[r]).
 *
 * Layout: row r holds sequence rows[r] right-padded to T (the longest row of
 * the batch). Position t holds input token x_t and predicts x_{t+1}, so
 * response token j (counting from 0) of a row with a prompt of np tokens is
 * read at position np - 1 + j: logp, entropy, value and mask there are about
 * that token. The response includes its EOS. Right padding needs no
 * attention mask: causal attention never lets a real token see the padding
 * after it, so a row's numbers do not depend on what else is in the batch.
 * Masking the padding keys anyway (mask_pad_keys = 1) gives the same numbers
 * up to float rounding (the masked softmax sums in another order); rm sets
 * it so its rewards stay bit-identical to those it computed before this pass.
 *
 * The last token of a sequence predicts nothing, so it is an input only when
 * the value head runs (a reward model reads its reward there): a log-prob
 * only pass runs len - 1 positions per sequence. */
#ifndef RLAIF_LOGPROB_H
#define RLAIF_LOGPROB_H

#include "rlaif/engine/model.h"

#include <stdint.h>

/* Ragged token sequences: sequence i is tok[off[i] .. off[i+1]), its first
 * plen[i] tokens the prompt (plen NULL: prompt of 1 token, every later token
 * is scored). The layout of rlaif_pairs (pairs.h) and of rollout buffers. */
typedef struct {
    const int32_t *tok;
    const int64_t *off;
    const int32_t *plen;
} rlaif_seqs;

enum { RLAIF_LP_LOGP = 1, RLAIF_LP_VALUE = 2 }; /* heads a pass runs (entropy comes with logp) */

typedef struct {
    int max_rows, max_T; /* capacity */
    int R, T, heads;     /* shape and heads of the last forward */
    int mask_pad_keys;   /* 1: pass valid to the attention (0 after init) */
    int *tokens;         /* [R*T] inputs, 0 after the end */
    int *targets;        /* [R*T] x_{t+1} where it is a response token, else -1 */
    uint8_t *valid;      /* [R*T] 1 on a real input token */
    float *mask;         /* [R*T] response mask: 1 where targets >= 0 */
    int *last;           /* [R] position of the last input token of each row */
    float *dl, *de, *dv; /* [R*T] masked upstream gradients (backward scratch) */
    /* Outputs of the last forward, [R*T], pointing into the model (valid until
     * its next forward or backward): logp and entropy with RLAIF_LP_LOGP
     * (logp 0 outside the mask), value with RLAIF_LP_VALUE, else NULL. */
    const float *logp, *entropy, *value;
} rlaif_lp_batch;

/* Buffers for up to max_rows rows of up to max_T tokens. */
void rlaif_lp_init(rlaif_lp_batch *lp, int max_rows, int max_T);
void rlaif_lp_free(rlaif_lp_batch *lp);

/* Forward of sequences rows[0..R) of s through m with the given heads
 * (RLAIF_LP_LOGP and/or RLAIF_LP_VALUE). *ntok (if not NULL) += the input
 * tokens run. Errors: more rows or tokens than the buffers hold, a model
 * without a scalar head asked for values, and the model's own input checks
 * (token ids, positions). */
int rlaif_lp_forward(rlaif_model *m, rlaif_lp_batch *lp, const rlaif_seqs *s, const int64_t *rows,
                     int R, int heads, double *ntok);

/* Backward of the last forward: per-token upstream gradients [R*T] (any may be
 * NULL), accumulated into m->grads. dlogp and dentropy count on response
 * tokens only (mask), dvalue on every real token (a reward sits at the last
 * one, which is no response target); elsewhere they are ignored. */
int rlaif_lp_backward(rlaif_model *m, rlaif_lp_batch *lp, const float *dlogp, const float *dentropy,
                      const float *dvalue);

/* Sum of logp over the response of row r of the last forward (in double):
 * log pi(y | x) of the whole response, DPO's sequence log-prob. */
double rlaif_lp_seq_logp(const rlaif_lp_batch *lp, int r);

#endif
