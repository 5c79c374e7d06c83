/* optim.c - AdamW, clipping and the learning-rate schedule (see optim.h). */
#include "rlaif/optim.h"
#include "rlaif/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

rlaif_adamw_config rlaif_adamw_defaults(void) {
    return (rlaif_adamw_config){.lr = 1e-4f,
                                .beta1 = 0.9f,
                                .beta2 = 0.999f,
                                .eps = 1e-8f,
                                .weight_decay = 0.0f,
                                .grad_clip = 1.0f,
                                .warmup_steps = 0,
                                .total_steps = 0,
                                .min_lr_ratio = 0.1f};
}

void rlaif_adamw_init(rlaif_adamw *opt, const rlaif_adamw_config *cfg,
                      const rlaif_tensor_table *table, size_t begin, size_t end) {
    memset(opt, 0, sizeof *opt);
    opt->cfg = *cfg;
    opt->table = table;
    opt->begin = begin, opt->end = end;
    opt->m = xcalloc(end - begin + 1, sizeof(float));
    opt->v = xcalloc(end - begin + 1, sizeof(float));
}

void rlaif_adamw_free(rlaif_adamw *opt) {
    free(opt->m), free(opt->v);
    memset(opt, 0, sizeof *opt);
}

float rlaif_lr_at(const rlaif_adamw_config *c, long step) {
    if (step < c->warmup_steps) return c->lr * (float)(step + 1) / (float)c->warmup_steps;
    if (c->total_steps <= c->warmup_steps) return c->lr;
    double progress = (double)(step - c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
    if (progress > 1.0) progress = 1.0;
    double lo = c->min_lr_ratio * c->lr;
    return (float)(lo + 0.5 * (c->lr - lo) * (1.0 + cos(M_PI * progress)));
}

double rlaif_grad_sumsq(const float *g, size_t begin, size_t end) {
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (end - begin >= (1 << 15))
    for (size_t i = begin; i < end; i++) s += (double)g[i] * g[i];
    return s;
}

/* p -= lr * (wd * p + mhat / (sqrt(vhat) + eps)), in torch.optim.AdamW's order:
 * decay first, then the moment update with bias corrections folded into
 * the step size and the denominator. */
static void adamw_range(float *p, const float *g, float *m, float *v, size_t n, float lr,
                        float decay, float b1, float b2, float eps, float step_size, float bc2_sqrt,
                        float scale) {
#pragma omp parallel for simd schedule(static) if (n >= (1 << 15))
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * scale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi, v[i] = vi;
        float pi = p[i] * (1.0f - lr * decay);
        p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

void rlaif_adamw_update(rlaif_adamw *opt, float *params, const float *grads, float lr,
                        float grad_scale) {
    const rlaif_adamw_config *c = &opt->cfg;
    long t = opt->step + 1;
    float bc1 = 1.0f - powf(c->beta1, (float)t), bc2 = 1.0f - powf(c->beta2, (float)t);
    float step_size = lr / bc1, bc2_sqrt = sqrtf(bc2);
    /* Walk the tensors overlapping [begin, end): decay is per tensor. */
    for (int i = 0; i < opt->table->n; i++) {
        const rlaif_tensor_desc *d = &opt->table->t[i];
        size_t lo = d->offset > opt->begin ? d->offset : opt->begin;
        size_t hi = d->offset + d->numel < opt->end ? d->offset + d->numel : opt->end;
        if (lo >= hi) continue;
        float decay = d->ndim >= 2 ? c->weight_decay : 0.0f;
        adamw_range(params + lo, grads + lo, opt->m + (lo - opt->begin), opt->v + (lo - opt->begin),
                    hi - lo, lr, decay, c->beta1, c->beta2, c->eps, step_size, bc2_sqrt,
                    grad_scale);
    }
    opt->step++;
}

void rlaif_adamw_step(rlaif_adamw *opt, float *params, const float *grads, float loss,
                      rlaif_step_info *info) {
    double norm = sqrt(rlaif_grad_sumsq(grads, opt->begin, opt->end));
    rlaif_step_info in = {.lr = rlaif_lr_at(&opt->cfg, opt->step), .grad_norm = (float)norm};
    if (!isfinite(loss) || !isfinite(norm)) {
        in.skipped = 1;
        opt->skipped++;
    } else {
        /* torch: clip_coef = max_norm / (norm + 1e-6), applied when < 1 */
        float scale = 1.0f;
        if (opt->cfg.grad_clip > 0.0f) {
            double coef = opt->cfg.grad_clip / (norm + 1e-6);
            if (coef < 1.0) scale = (float)coef;
        }
        rlaif_adamw_update(opt, params, grads, in.lr, scale);
    }
    if (info) *info = in;
}
