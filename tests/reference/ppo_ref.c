/* ppo_ref.c - the C side of tests/reference/test_ppo_loss.py: random
 * inputs of the shapes PPO meets (ragged rows, an empty row, ratios on
 * both sides of the clip range), every function of ppo_loss.h applied to
 * them, inputs and outputs printed as JSON for the PyTorch reference.
 *
 *   ppo_ref B T SEED
 *
 * The policy and value losses are also computed on two halves of the batch
 * with the global token count; their sums must equal the whole (what the
 * learners' all-reduce relies on). */
#include "rlaif/phases/ppo_loss.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng_state;

static double uniform(void) { /* xorshift64*: inputs only, printed in full */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static double normal(void) {
    double u = uniform() + 1e-12, v = uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void print_array(const char *name, const float *x, int n) {
    printf("\"%s\": [", name);
    for (int i = 0; i < n; i++) printf("%s%.9g", i ? ", " : "", x[i]);
    printf("],\n");
}

static void print_terms(const char *name, rlaif_ppo_terms t) {
    printf("\"%s\": [%.17g, %.17g, %.17g, %.17g],\n", name, t.loss, t.clipfrac, t.approxkl,
           t.ratio);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: ppo_ref B T SEED\n");
        return 64;
    }
    int B = atoi(argv[1]), T = atoi(argv[2]), n = B * T;
    rng_state = strtoull(argv[3], NULL, 10) * 0x9E3779B97F4A7C15ull + 1;
    float *buf = calloc((size_t)n * 20 + B * 3, sizeof(float));
    float *mask = buf, *logp = buf + n, *old = buf + 2 * n, *ref = buf + 3 * n,
          *adv_in = buf + 4 * n, *v = buf + 5 * n, *old_v = buf + 6 * n, *ret_in = buf + 7 * n,
          *kl1 = buf + 8 * n, *kl3 = buf + 9 * n, *rew = buf + 10 * n, *w1 = buf + 11 * n,
          *w0 = buf + 12 * n, *adv = buf + 13 * n, *ret = buf + 14 * n, *dlogp = buf + 15 * n,
          *dv = buf + 16 * n, *dlogp_h = buf + 17 * n, *dv_h = buf + 18 * n, *score = buf + 20 * n,
          *rloo = score + B;
    for (int b = 0; b < B; b++) {
        int len = b == 1 ? 0 : 1 + (int)(uniform() * T); /* row 1 is empty */
        if (len > T) len = T;
        for (int t = 0; t < len; t++) mask[b * T + t] = 1.0f;
        score[b] = (float)(2.0 * normal());
    }
    for (int i = 0; i < n; i++) {
        logp[i] = (float)(-3.0 * uniform());
        old[i] = (float)(logp[i] + 0.3 * normal()); /* ratios across 1 +- 0.2 */
        ref[i] = (float)(logp[i] + 0.5 * normal());
        adv_in[i] = (float)normal();
        v[i] = (float)normal();
        old_v[i] = (float)(v[i] + 0.3 * normal()); /* beyond cliprange_value often */
        ret_in[i] = (float)normal();
    }
    const float kl_coef = 0.05f, gamma = 0.99f, lam = 0.95f, eps = 0.2f, eps_v = 0.2f,
                vf_coef = 0.1f;
    rlaif_kl_per_token(kl1, logp, ref, mask, n, RLAIF_KL_K1);
    rlaif_kl_per_token(kl3, logp, ref, mask, n, RLAIF_KL_K3);
    rlaif_ppo_rewards(rew, kl1, score, mask, B, T, kl_coef);
    for (int i = 0; i < n; i++) w1[i] = w0[i] = rew[i];
    rlaif_moments m = rlaif_masked_moments(rew, mask, n);
    rlaif_masked_whiten(w1, mask, n, m, 1);
    rlaif_masked_whiten(w0, mask, n, m, 0);
    rlaif_gae(adv, ret, rew, v, mask, B, T, gamma, lam);
    int k = 4, np = B / k;
    rlaif_rloo_advantages(rloo, score, np, k);
    double count = m.count;
    rlaif_ppo_terms pol = rlaif_ppo_policy_loss(dlogp, logp, old, adv_in, mask, n, count, eps);
    rlaif_ppo_terms val =
        rlaif_ppo_value_loss(dv, v, old_v, ret_in, mask, n, count, eps_v, vf_coef);
    /* the same on two halves of the rows with the global count */
    int h = (B / 2) * T;
    rlaif_ppo_terms p1 = rlaif_ppo_policy_loss(dlogp_h, logp, old, adv_in, mask, h, count, eps);
    rlaif_ppo_terms p2 = rlaif_ppo_policy_loss(dlogp_h + h, logp + h, old + h, adv_in + h, mask + h,
                                               n - h, count, eps);
    rlaif_ppo_terms v1 =
        rlaif_ppo_value_loss(dv_h, v, old_v, ret_in, mask, h, count, eps_v, vf_coef);
    rlaif_ppo_terms v2 = rlaif_ppo_value_loss(dv_h + h, v + h, old_v + h, ret_in + h, mask + h,
                                              n - h, count, eps_v, vf_coef);
    rlaif_kl_ctl ctl = {0.05, 6.0, 10000.0};
    double kls[4] = {0.5, 6.0, 12.0, 100.0}, ctl_values[4];
    for (int i = 0; i < 4; i++) {
        rlaif_kl_ctl_update(&ctl, kls[i], 256);
        ctl_values[i] = ctl.value;
    }

    printf("{\"B\": %d, \"T\": %d, \"kl_coef\": %g, \"gamma\": %g, \"lam\": %g, \"eps\": %g, "
           "\"eps_v\": %g, \"vf_coef\": %g, \"k\": %d,\n",
           B, T, kl_coef, gamma, lam, eps, eps_v, vf_coef, k);
    print_array("mask", mask, n);
    print_array("logp", logp, n);
    print_array("old_logp", old, n);
    print_array("ref_logp", ref, n);
    print_array("adv_in", adv_in, n);
    print_array("v", v, n);
    print_array("old_v", old_v, n);
    print_array("ret_in", ret_in, n);
    print_array("score", score, B);
    print_array("kl1", kl1, n);
    print_array("kl3", kl3, n);
    print_array("rewards", rew, n);
    print_array("whiten_shift", w1, n);
    print_array("whiten_keep", w0, n);
    print_array("adv", adv, n);
    print_array("ret", ret, n);
    print_array("rloo", rloo, np * k);
    print_array("dlogp", dlogp, n);
    print_array("dv", dv, n);
    print_array("dlogp_halves", dlogp_h, n);
    print_array("dv_halves", dv_h, n);
    print_terms("policy", pol);
    print_terms("value", val);
    rlaif_ppo_terms ps = {p1.loss + p2.loss, p1.clipfrac + p2.clipfrac, p1.approxkl + p2.approxkl,
                          p1.ratio + p2.ratio};
    rlaif_ppo_terms vs = {v1.loss + v2.loss, v1.clipfrac + v2.clipfrac, 0, 0};
    print_terms("policy_halves", ps);
    print_terms("value_halves", vs);
    printf("\"kl_ctl\": [%.17g, %.17g, %.17g, %.17g]}\n", ctl_values[0], ctl_values[1],
           ctl_values[2], ctl_values[3]);
    free(buf);
    return 0;
}
