/* optim.h - AdamW over a flat parameter buffer.
 *
 * Decoupled weight decay (Loshchilov & Hutter) on 2-D weights only (matrices
 * and embeddings; biases, LayerNorm and scalars are not decayed), global
 * grad-norm clipping as torch.nn.utils.clip_grad_norm_, linear warmup then
 * cosine decay to min_lr_ratio * lr. A step whose loss or gradient norm is not
 * finite is skipped (parameters and moments untouched) and counted.
 *
 * The update is one loop over a [begin, end) range of the flat index space,
 * so a sharded optimizer (ZeRO-1) keeps m and v for its range only and calls
 * rlaif_adamw_update on it after a reduce-scatter; the grad norm is then the
 * all-reduced sum of rlaif_grad_sumsq over the shards. */
#ifndef RLAIF_OPTIM_H
#define RLAIF_OPTIM_H

#include "rlaif/core/tensors.h"

#include <stddef.h>

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_clip;    /* max global grad norm; 0 = no clipping */
    long warmup_steps;  /* linear warmup from lr/warmup to lr */
    long total_steps;   /* cosine decay ends here (0 = constant lr after warmup) */
    float min_lr_ratio; /* final lr = min_lr_ratio * lr */
} rlaif_adamw_config;

typedef struct {
    rlaif_adamw_config cfg;
    const rlaif_tensor_table *table; /* decay mask: tensors with ndim >= 2 */
    size_t begin, end;               /* the range this optimizer owns */
    float *m, *v;                    /* end - begin floats each, zero at start */
    long step;                       /* updates applied (bias correction uses step + 1) */
    long skipped;                    /* steps skipped for a non-finite loss or gradient */
} rlaif_adamw;

/* Defaults: lr 1e-4, betas (0.9, 0.999), eps 1e-8, no decay, clip 1.0, no warmup. */
rlaif_adamw_config rlaif_adamw_defaults(void);
/* Owns [begin, end) of table (pass 0, table->total for the whole model). */
void rlaif_adamw_init(rlaif_adamw *opt, const rlaif_adamw_config *cfg,
                      const rlaif_tensor_table *table, size_t begin, size_t end);
void rlaif_adamw_free(rlaif_adamw *opt);

/* Learning rate of update number step (0-based): warmup then cosine. */
float rlaif_lr_at(const rlaif_adamw_config *cfg, long step);
/* Sum of squares of g[begin, end), in double. */
double rlaif_grad_sumsq(const float *g, size_t begin, size_t end);

/* One AdamW update of params[begin, end) from grads[begin, end) (global
 * indices) with learning rate lr, gradients multiplied by grad_scale first
 * (the clip factor). Advances opt->step. */
void rlaif_adamw_update(rlaif_adamw *opt, float *params, const float *grads, float lr,
                        float grad_scale);

typedef struct {
    float lr, grad_norm; /* norm before clipping */
    int skipped;         /* 1: non-finite loss or norm, nothing changed */
} rlaif_step_info;

/* The whole step on one process: norm, skip test, clip, schedule, update. */
void rlaif_adamw_step(rlaif_adamw *opt, float *params, const float *grads, float loss,
                      rlaif_step_info *info);

#endif
