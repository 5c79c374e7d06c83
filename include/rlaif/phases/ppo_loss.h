/* ppo_loss.h - the arithmetic of the policy-gradient phases (PPO, A2C,
 * REINFORCE), per token, with no model and no MPI: KL penalty, rewards,
 * masked whitening, GAE, the clipped policy and value losses with their
 * gradients, the adaptive KL controller and the leave-one-out baseline.
 *
 * The formulas are TRL's PPOTrainer (and OpenRLHF's) so that a user can
 * compare runs metric by metric; tests/reference/test_ppo_loss.py checks
 * every function against PyTorch autograd of those formulas in float64.
 *
 * Layout: a batch of B responses padded to T tokens, row-major [B, T];
 * mask[b, t] = 1 for the response's real tokens (including its EOS), 0 for
 * padding, and the real tokens of a row are a prefix t < len[b].
 *
 * Sums over the batch ("masked means") are split so that learners holding
 * parts of the global batch give the same numbers as one rank: a function
 * that needs a global statistic takes it as an argument (a count, a
 * rlaif_moments), which the caller all-reduces first. */
#ifndef RLAIF_PPO_LOSS_H
#define RLAIF_PPO_LOSS_H

/* ---- KL penalty and rewards ------------------------------------------- */

enum { RLAIF_KL_K1, RLAIF_KL_K3 };

/* kl[i] = per-token estimate of KL(policy || reference) at a sampled token,
 * from the log-probs of that token under both (0 where mask is 0):
 *   k1: logp - ref_logp                       (unbiased, can be negative)
 *   k3: exp(ref_logp - logp) - 1 - (ref_logp - logp)   (>= 0, lower variance) */
void rlaif_kl_per_token(float *kl, const float *logp, const float *ref_logp, const float *mask,
                        int n, int estimator);

/* The per-token reward of RLHF: -kl_coef * kl at every real token, plus the
 * sequence score at the row's last real token. rewards, kl, mask: [B, T];
 * score: [B]. */
void rlaif_ppo_rewards(float *rewards, const float *kl, const float *score, const float *mask,
                       int B, int T, float kl_coef);

/* ---- masked whitening over the global batch --------------------------- */

typedef struct {
    double sum, sumsq, count; /* all-reduce all three (MPI_SUM) across ranks */
} rlaif_moments;

rlaif_moments rlaif_masked_moments(const float *x, const float *mask, int n);

/* x <- (x - mean) / sqrt(var + 1e-8), var unbiased (count - 1), at masked
 * positions; unmasked positions become 0. shift_mean = 0 adds the mean back
 * (TRL whitens rewards that way, keeping their sign). count < 2: unchanged
 * apart from zeroing the padding. */
void rlaif_masked_whiten(float *x, const float *mask, int n, rlaif_moments m, int shift_mean);

/* ---- advantages --------------------------------------------------------- */

/* Generalised advantage estimation, per row from its last real token back:
 *   delta_t = r_t + gamma * V_{t+1} - V_t   (V after the last token = 0)
 *   A_t     = delta_t + gamma * lam * A_{t+1}
 *   ret_t   = A_t + V_t
 * adv, ret, rewards, values, mask: [B, T]; 0 at padding. */
void rlaif_gae(float *adv, float *ret, const float *rewards, const float *values, const float *mask,
               int B, int T, float gamma, float lam);

/* REINFORCE leave-one-out baseline (RLOO): k samples of each prompt are
 * consecutive in score[n_prompts * k]; adv[i] = score[i] - mean of the other
 * k - 1 scores of its prompt. k must be >= 2. */
void rlaif_rloo_advantages(float *adv, const float *score, int n_prompts, int k);

/* ---- losses ------------------------------------------------------------- */

typedef struct {
    double loss;     /* this rank's share of the masked mean */
    double clipfrac; /* share of tokens where the clipped term was taken */
    double approxkl; /* share of 0.5 * (logp - old_logp)^2 */
    double ratio;    /* share of exp(logp - old_logp) */
} rlaif_ppo_terms;

/* Clipped surrogate (PPO), as a masked mean over `count` tokens (the global
 * minibatch's count, so that summing the ranks' losses and gradients gives
 * the single-rank result):
 *   r = exp(logp - old_logp)
 *   L = sum_t mask * max(-A r, -A clip(r, 1 - eps, 1 + eps)) / count
 * dlogp[i] = dL/dlogp[i] (0 where the clipped term is taken and r is
 * outside the clip range, or mask is 0). eps = cliprange. */
rlaif_ppo_terms rlaif_ppo_policy_loss(float *dlogp, const float *logp, const float *old_logp,
                                      const float *adv, const float *mask, int n, double count,
                                      float cliprange);

/* Clipped value loss:
 *   vc = clip(v, old_v - c, old_v + c)
 *   L  = 0.5 * sum_t mask * max((v - ret)^2, (vc - ret)^2) / count
 * dv[i] = vf_coef * dL/dv[i]; the returned loss is L (without vf_coef);
 * clipfrac counts the tokens where the clipped term was larger. */
rlaif_ppo_terms rlaif_ppo_value_loss(float *dv, const float *v, const float *old_v,
                                     const float *ret, const float *mask, int n, double count,
                                     float cliprange_value, float vf_coef);

/* ---- the adaptive KL controller (Ziegler et al. 2019) ------------------- */

typedef struct {
    double value;   /* the current kl_coef */
    double target;  /* ppo.target_kl */
    double horizon; /* ppo.kl_horizon */
} rlaif_kl_ctl;

/* value *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon, where
 * kl is the batch's mean sequence KL and n_steps the samples it covered. */
void rlaif_kl_ctl_update(rlaif_kl_ctl *c, double kl, double n_steps);

#endif
