/* logprob.c - the per-token log-prob / entropy / value pass over a batch of
 * (prompt, response) sequences and its backward (logprob.h). It owns the
 * packing of ragged sequences into right-padded rows and the response mask;
 * the arithmetic is the model's (model.c: forward, lm and scalar heads,
 * backward). dpo and rm compute their sequence numbers through it. */
#include "rlaif/engine/logprob.h"
#include "rlaif/core/error.h"

#include <stdlib.h>
#include <string.h>

void rlaif_lp_init(rlaif_lp_batch *lp, int max_rows, int max_T) {
    memset(lp, 0, sizeof *lp);
    size_t n = (size_t)max_rows * (size_t)max_T;
    lp->tokens = xmalloc(sizeof(int) * n);
    lp->targets = xmalloc(sizeof(int) * n);
    lp->valid = xmalloc(n);
    lp->mask = xmalloc(sizeof(float) * n);
    lp->dl = xmalloc(sizeof(float) * n);
    lp->de = xmalloc(sizeof(float) * n);
    lp->dv = xmalloc(sizeof(float) * n);
    lp->last = xmalloc(sizeof(int) * (size_t)max_rows);
    lp->max_rows = max_rows, lp->max_T = max_T;
}

void rlaif_lp_free(rlaif_lp_batch *lp) {
    free(lp->tokens), free(lp->targets), free(lp->valid), free(lp->mask);
    free(lp->dl), free(lp->de), free(lp->dv), free(lp->last);
    memset(lp, 0, sizeof *lp);
}

/* Input tokens of sequence i: all of them when the value head runs, else all
 * but the last (it predicts nothing). */
static int n_inputs(const rlaif_seqs *s, int64_t i, int heads) {
    int len = (int)(s->off[i + 1] - s->off[i]);
    int n = heads & RLAIF_LP_VALUE ? len : len - 1;
    return n > 0 ? n : 0;
}

/* rows[0..R) -> tokens, targets, valid, mask, last in (R,T). Returns T. */
static int pack(rlaif_lp_batch *lp, const rlaif_seqs *s, const int64_t *rows, int R, int heads) {
    int T = 1;
    for (int r = 0; r < R; r++) {
        int n = n_inputs(s, rows[r], heads);
        if (n > T) T = n;
    }
    for (int r = 0; r < R; r++) {
        const int32_t *x = s->tok + s->off[rows[r]];
        int len = (int)(s->off[rows[r] + 1] - s->off[rows[r]]);
        int n = n_inputs(s, rows[r], heads), np = s->plen ? s->plen[rows[r]] : 1;
        for (int t = 0; t < T; t++) {
            int i = r * T + t, real = t < n;
            /* position t predicts x_{t+1}: a response token when t + 1 >= np */
            int target = real && t + 1 < len && t + 1 >= np ? x[t + 1] : -1;
            lp->tokens[i] = real ? x[t] : 0;
            lp->valid[i] = (uint8_t)real;
            lp->targets[i] = target;
            lp->mask[i] = target >= 0 ? 1.0f : 0.0f;
        }
        lp->last[r] = n - 1;
    }
    return T;
}

static int check_fit(const rlaif_lp_batch *lp, const rlaif_seqs *s, const int64_t *rows, int R,
                     int heads) {
    if (R < 1 || R > lp->max_rows)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "logprob: %d rows, buffers hold 1..%d", R,
                           lp->max_rows);
    for (int r = 0; r < R; r++)
        if (n_inputs(s, rows[r], heads) > lp->max_T)
            return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL,
                               "logprob: sequence %lld has %d inputs, buffers hold %d",
                               (long long)rows[r], n_inputs(s, rows[r], heads), lp->max_T);
    return 0;
}

int rlaif_lp_forward(rlaif_model *m, rlaif_lp_batch *lp, const rlaif_seqs *s, const int64_t *rows,
                     int R, int heads, double *ntok) {
    if ((heads & RLAIF_LP_VALUE) && !m->cfg.score_head)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, "build the model with score_head = 1",
                           "logprob: values asked of a model without a scalar head");
    RLAIF_TRY(check_fit(lp, s, rows, R, heads));
    int T = pack(lp, s, rows, R, heads);
    lp->R = R, lp->T = T, lp->heads = heads;
    lp->logp = lp->entropy = lp->value = NULL;
    /* tokens (R,T) -> hidden (R,T,C); right padding: no attention mask needed */
    RLAIF_TRY(rlaif_model_forward(m, lp->tokens, NULL, lp->mask_pad_keys ? lp->valid : NULL, R, T));
    if (heads & RLAIF_LP_LOGP) { /* -> logits (R,T,V) -> logp, entropy (R,T) */
        RLAIF_TRY(rlaif_model_lm_forward(m, lp->targets));
        lp->logp = m->logp, lp->entropy = m->entropy;
    }
    if (heads & RLAIF_LP_VALUE) { /* -> value (R,T) */
        RLAIF_TRY(rlaif_model_score_forward(m));
        lp->value = m->score;
    }
    if (ntok)
        for (int r = 0; r < R; r++) *ntok += lp->last[r] + 1;
    return 0;
}

/* out[i] = g[i] where keep[i], else 0; NULL when g is NULL. */
static const float *masked(float *out, const float *g, const float *mask, const uint8_t *valid,
                           int n) {
    if (!g) return NULL;
    for (int i = 0; i < n; i++) out[i] = (mask ? mask[i] != 0.0f : valid[i] != 0) ? g[i] : 0.0f;
    return out;
}

int rlaif_lp_backward(rlaif_model *m, rlaif_lp_batch *lp, const float *dlogp, const float *dentropy,
                      const float *dvalue) {
    if (((dlogp || dentropy) && !(lp->heads & RLAIF_LP_LOGP)) ||
        (dvalue && !(lp->heads & RLAIF_LP_VALUE)))
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL,
                           "logprob: backward through a head the forward did not run");
    int n = lp->R * lp->T;
    const float *dl = masked(lp->dl, dlogp, lp->mask, NULL, n);
    const float *de = masked(lp->de, dentropy, lp->mask, NULL, n);
    const float *dv = masked(lp->dv, dvalue, NULL, lp->valid, n);
    return rlaif_model_backward(m, dl, de, dv);
}

double rlaif_lp_seq_logp(const rlaif_lp_batch *lp, int r) {
    double sum = 0;
    for (int t = 0; t < lp->T; t++) sum += lp->logp[r * lp->T + t];
    return sum;
}
