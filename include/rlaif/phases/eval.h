/* eval.h - `rlaif eval job.ini`: win rate of the policy against a baseline
 * on held-out prompts, judged in both orders (src/phases/README.md, Eval).
 *
 * Models. eval.policy = "" (default): of the policy phases of the registry
 * (ppo, reinforce, a2c, dpo, online-dpo, sft), the finished checkpoint
 * (/state done = 1) in <out_dir>/<checkpoint.dir> written last, by its
 * /state saved_at (a copy of the folder keeps it; mtimes it does not); a
 * tie goes to the higher policy_rank. The log names the pick and the
 * candidates. A phase name (ppo, dpo, rm, sft): that phase's newest finished checkpoint;
 * anything else: a checkpoint path. eval.baseline the same ("sft" by
 * default; a path need not be finished, so an early sft checkpoint can be
 * the baseline). Each brings its own /tokenizer.
 *
 * Prompts. data.task = arithmetic: held-out problems [0, eval.n_prompts) of
 * rlaif_task_heldout (never training problems). data.task = jsonl: the last
 * eval.n_prompts {"prompt"} records of eval.prompts (default data.prompts);
 * nothing else (a plain "last N" rule: keep them out of training yourself).
 *
 * Design (the simpler one the issue allows, and why). Eval runs once, not
 * forever: every prompt gives exactly one pair (policy answer, baseline
 * answer) and both models answer every prompt, so collect's pull protocol
 * (credit, sampling ahead, pairing, stores during the run) would buy
 * nothing and cost a second copy of its state machine. Instead:
 *   1. rollout ranks (every rank when colocated) each answer a contiguous
 *      share of the prompts with the policy, then with the baseline (greedy
 *      by default, eval.temperature > 0 samples from rlaif_rng(run.seed,
 *      RLAIF_STREAM_EVAL, 0, prompt)), and the texts reach every rank
 *      (MPI_Allgatherv in prompt order);
 *   2. judge ranks each label a contiguous share of the pairs with the judge
 *      client (journaled exactly as collect: a rerun pays nothing twice),
 *      judge.both_orders forced to 1 and judge.disagreement = drop turned
 *      into tie, so a position-biased pair counts half, not nothing; a pair
 *      of identical texts is a tie without a judge call (no judge can prefer
 *      one of two equal strings; the builtin one would flip a coin);
 *   3. the per-pair outcomes reach every rank (MPI_Allgatherv), every rank
 *      computes the same statistics, rank 0 prints them, the judge group
 *      stores the pairs with rlaif_judge_store in <out_dir>/eval.h5 (the
 *      preferences.h5 format: rlaif-analyze audits it) and marks it with
 *      root attributes eval_complete (the settings) and eval_results (the
 *      numbers as JSON).
 * Generation is seconds and deterministic, so a killed eval simply runs
 * again: the judge answers come from the journal. eval.h5 holds exactly one
 * eval: a file that is not complete with the same settings is replaced; one
 * that is, is skipped (its results are printed again); the settings
 * include each model file's size and mtime. SIGTERM/SIGUSR1/walltime while
 * judging: the judge ranks stop at once and everyone exits 75 without
 * storing; the rerun gets the answers from the journal. Ranks with nothing
 * to judge wait in a sleeping non-blocking barrier, not a spinning one.
 *
 * A judge that does not answer (pump.h): an unset key variable is refused
 * before any work (64); when most pairs fail for one reason the judge ranks
 * stop with it (exit 1); when no pair was decided there is no win rate
 * (exit 1, never an interval resting on identical answers alone); pairs
 * the judge never answered leave eval.h5 incomplete, so a rerun asks again
 * (the journal answers the rest). Consistency and first-position wins read
 * "n/a" when nothing was measured.
 *
 * Statistics. Pair i is (r0 = policy, r1 = baseline), label = P(r0 better).
 * Judged = pairs with a label; win = label > 0.5, loss < 0.5, tie = 0.5.
 * win rate = (wins + ties / 2) / judged with a 95% Wilson score interval on
 * that proportion (conservative when there are ties: a tie has half the
 * variance of a coin). Consistency = pairs whose two orders chose the same
 * response / pairs judged in two orders; first-position wins = verdicts that
 * chose position A / all verdicts. Arithmetic task only: each model's exact
 * accuracy (rlaif_task_correct), the oracle's win rate ((policy right and
 * baseline wrong) + half of equal) and the judge's agreement with the oracle
 * on pairs where exactly one is right and the judge decided.
 *
 * Beside the win rate:
 *   - length-controlled win rate: the logistic regression below of each
 *     judged pair's outcome (win 1, tie 0.5, loss 0) on
 *     x = log((1 + policy bytes) / (1 + baseline bytes)), read at x = 0, with
 *     the interval of its intercept (Fisher information);
 *   - mean answer length of each model, in bytes;
 *   - mean KL(policy || baseline) on the policy's answers: per answer the sum
 *     over its tokens (EOS included when it stopped) of log p_policy - log
 *     p_baseline (rlaif_lp_forward on the rollout ranks, each model loaded
 *     once), averaged over the prompts; an estimate of the KL when the
 *     answers are sampled at temperature 1, a log-likelihood ratio of the
 *     greedy answers otherwise; NaN when the two models' vocabularies differ;
 *   - arithmetic task: the oracle's rates (rlaif_task_flaws: the builtin
 *     judge's own reading) of accuracy, rudeness, rambling and off-topic
 *     text in each model's answers.
 * They are printed, logged as metrics (metrics.h5 /eval, progress.jsonl),
 * and stored in eval.h5 /eval: per pair policy_len, baseline_len,
 * log_len_ratio, outcome, kl, policy_flaws and baseline_flaws (RLAIF_FLAW_*
 * bits; NaN on JSONL prompts), the figures as attributes. */
#ifndef RLAIF_EVAL_H
#define RLAIF_EVAL_H

#include <stdint.h>

#include "rlaif/core/job.h"
#include "rlaif/phases/layout.h"

/* Wilson score interval at z for k successes (may be fractional) of n. */
void rlaif_wilson(double k, double n, double z, double *lo, double *hi);

/* Logistic regression P(y = 1 | x) = sigmoid(b[0] + b[1] x) of outcomes
 * y[i] in [0, 1] (fractional: a tie is 0.5, the binomial likelihood with
 * y successes of 1), maximising the log-likelihood - ridge b[1]^2 / 2 by
 * Newton's method (IRLS, step halving) in double, and the standard errors
 * from the inverse of the (penalised) Fisher information at the estimate.
 * When every x is the same, only the intercept is fitted (b[1] = 0,
 * se[1] = NaN). Returns 0, or -1 with NaNs when there is no finite
 * estimate (no data; all wins or all losses). (eval_lc.c) */
int rlaif_logit_fit(const double *x, const double *y, int64_t n, double ridge, double b[2],
                    double se[2]);

/* The ridge of the length-controlled fit: a N(0, 1/0.1) prior on the slope
 * per unit of log length ratio, weak beside 200 pairs, there so that a
 * slope that length separation would send to infinity stays finite. */
#define RLAIF_LC_RIDGE 0.1

/* Length-controlled win rate: the fit above (ridge RLAIF_LC_RIDGE) on x =
 * log length ratio of the policy's answer to the baseline's, read at x = 0:
 * sigmoid(b[0]), and its interval sigmoid(b[0] -+ z se[0]). */
typedef struct {
    double win_rate, lo, hi;
    double b[2], se[2]; /* intercept, slope; their standard errors */
} rlaif_lc;
int rlaif_lc_win_rate(const double *x, const double *y, int64_t n, double z, rlaif_lc *out);

int rlaif_cmd_eval(rlaif_ctx *ctx);
/* Its registry done() (serial, read-only): eval.h5 is complete with the
 * models and settings this job would evaluate now (DONE: the test the
 * command skips by); eval.h5 of others, or no model to evaluate (PARTIAL);
 * no eval.h5 (NOT_STARTED). Loads no model, reads no prompts. */
int rlaif_eval_done(const rlaif_config *cfg, const char *name, rlaif_phase_status *st);

/* Before any phase of `rlaif run` starts: a usage error when eval.n_prompts
 * cannot fit in this node's memory (every rank holds each prompt, both
 * responses and the outcomes: at least ~100 bytes + 2 x
 * eval.max_new_tokens bytes a prompt), so it is not found after training. */
int rlaif_eval_check(const rlaif_config *cfg);

#endif
