/* ppo_loss.c - the per-token arithmetic of PPO, A2C and REINFORCE (see
 * include/rlaif/phases/ppo_loss.h for the formulas and the layout).
 *
 * Everything accumulates in double: a masked mean over a global batch of
 * ~10^5 tokens in float would lose the digits that make 1 and N learners
 * agree. */
#include "rlaif/phases/ppo_loss.h"

#include <math.h>

void rlaif_kl_per_token(float *kl, const float *logp, const float *ref_logp, const float *mask,
                        int n, int estimator) {
    for (int i = 0; i < n; i++) {
        if (mask[i] == 0.0f) {
            kl[i] = 0.0f;
            continue;
        }
        double d = (double)logp[i] - ref_logp[i];
        /* k3 = r - 1 - log r with r = p_ref / p = exp(-d) */
        kl[i] = (float)(estimator == RLAIF_KL_K3 ? expm1(-d) + d : d);
    }
}

/* Index of the row's last real token, -1 for an empty row. */
static int last_token(const float *mask_row, int T) {
    int last = -1;
    for (int t = 0; t < T; t++)
        if (mask_row[t] != 0.0f) last = t;
    return last;
}

void rlaif_ppo_rewards(float *rewards, const float *kl, const float *score, const float *mask,
                       int B, int T, float kl_coef) {
    for (int b = 0; b < B; b++) {
        const float *m = mask + (long)b * T;
        float *r = rewards + (long)b * T;
        for (int t = 0; t < T; t++) r[t] = m[t] != 0.0f ? -kl_coef * kl[(long)b * T + t] : 0.0f;
        int last = last_token(m, T);
        if (last >= 0) r[last] += score[b];
    }
}

rlaif_moments rlaif_masked_moments(const float *x, const float *mask, int n) {
    rlaif_moments m = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        if (mask[i] == 0.0f) continue;
        m.sum += x[i];
        m.sumsq += (double)x[i] * x[i];
        m.count += 1;
    }
    return m;
}

void rlaif_masked_whiten(float *x, const float *mask, int n, rlaif_moments m, int shift_mean) {
    if (m.count < 2) {
        for (int i = 0; i < n; i++)
            if (mask[i] == 0.0f) x[i] = 0.0f;
        return;
    }
    double mean = m.sum / m.count;
    double var = (m.sumsq / m.count - mean * mean) * m.count / (m.count - 1);
    if (var < 0) var = 0; /* rounding of the one-pass formula */
    double inv = 1.0 / sqrt(var + 1e-8);
    for (int i = 0; i < n; i++) {
        if (mask[i] == 0.0f) {
            x[i] = 0.0f;
            continue;
        }
        double w = (x[i] - mean) * inv;
        x[i] = (float)(shift_mean ? w : w + mean);
    }
}

void rlaif_gae(float *adv, float *ret, const float *rewards, const float *values, const float *mask,
               int B, int T, float gamma, float lam) {
    for (int b = 0; b < B; b++) {
        long o = (long)b * T;
        int last = last_token(mask + o, T);
        for (int t = last + 1; t < T; t++) adv[o + t] = ret[o + t] = 0.0f;
        double next_value = 0.0, a = 0.0;
        for (int t = last; t >= 0; t--) {
            double delta = rewards[o + t] + gamma * next_value - values[o + t];
            a = delta + (double)gamma * lam * a;
            adv[o + t] = (float)a;
            ret[o + t] = (float)(a + values[o + t]);
            next_value = values[o + t];
        }
    }
}

void rlaif_rloo_advantages(float *adv, const float *score, int n_prompts, int k) {
    for (int p = 0; p < n_prompts; p++) {
        const float *s = score + (long)p * k;
        double sum = 0.0;
        for (int j = 0; j < k; j++) sum += s[j];
        for (int j = 0; j < k; j++) adv[(long)p * k + j] = (float)(s[j] - (sum - s[j]) / (k - 1));
    }
}

rlaif_ppo_terms rlaif_ppo_policy_loss(float *dlogp, const float *logp, const float *old_logp,
                                      const float *adv, const float *mask, int n, double count,
                                      float cliprange) {
    rlaif_ppo_terms s = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        dlogp[i] = 0.0f;
        if (mask[i] == 0.0f) continue;
        double d = (double)logp[i] - old_logp[i], r = exp(d), A = adv[i];
        double rc = fmin(fmax(r, 1.0 - cliprange), 1.0 + cliprange);
        double l1 = -A * r, l2 = -A * rc;
        /* max(l1, l2): the unclipped term carries the gradient -A r; the
         * clipped one only while r is inside the range (then rc = r). */
        int clipped = l2 > l1;
        double g = clipped ? (rc == r ? -A * r : 0.0) : -A * r;
        dlogp[i] = (float)(g / count);
        s.loss += (clipped ? l2 : l1) / count;
        s.clipfrac += clipped / count;
        s.approxkl += 0.5 * d * d / count;
        s.ratio += r / count;
    }
    return s;
}

rlaif_ppo_terms rlaif_ppo_value_loss(float *dv, const float *v, const float *old_v,
                                     const float *ret, const float *mask, int n, double count,
                                     float cliprange_value, float vf_coef) {
    rlaif_ppo_terms s = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        dv[i] = 0.0f;
        if (mask[i] == 0.0f) continue;
        double x = v[i], lo = (double)old_v[i] - cliprange_value,
               hi = (double)old_v[i] + cliprange_value;
        double xc = fmin(fmax(x, lo), hi);
        double e1 = x - ret[i], e2 = xc - ret[i];
        int clipped = e2 * e2 > e1 * e1;
        /* d/dv of 0.5 * e^2 is e; through the clip only inside the range */
        double g = clipped ? (xc == x ? e2 : 0.0) : e1;
        dv[i] = (float)(vf_coef * g / count);
        s.loss += 0.5 * (clipped ? e2 * e2 : e1 * e1) / count;
        s.clipfrac += clipped / count;
    }
    return s;
}

void rlaif_kl_ctl_update(rlaif_kl_ctl *c, double kl, double n_steps) {
    double err = kl / c->target - 1.0;
    err = fmin(fmax(err, -0.2), 0.2);
    c->value *= 1.0 + err * n_steps / c->horizon;
}
