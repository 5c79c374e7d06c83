/* eval.h - `rlaif eval job.ini`: win rate of the policy against a baseline
 * on held-out prompts, judged in both orders (src/phases/README.md, Eval).
 *
 * Models. eval.policy = "" (default): the newest finished checkpoint
 * (/state done = 1) of ppo, else dpo, else sft in <out_dir>/<checkpoint.dir>;
 * a phase name (ppo, dpo, rm, sft): that phase's newest finished checkpoint;
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
 * Statistics. Pair i is (r0 = policy, r1 = baseline), label = P(r0 better).
 * Judged = pairs with a label; win = label > 0.5, loss < 0.5, tie = 0.5.
 * win rate = (wins + ties / 2) / judged with a 95% Wilson score interval on
 * that proportion (conservative when there are ties: a tie has half the
 * variance of a coin). Consistency = pairs whose two orders chose the same
 * response / pairs judged in two orders; first-position wins = verdicts that
 * chose position A / all verdicts. Arithmetic task only: each model's exact
 * accuracy (rlaif_task_correct), the oracle's win rate ((policy right and
 * baseline wrong) + half of equal) and the judge's agreement with the oracle
 * on pairs where exactly one is right and the judge decided. */
#ifndef RLAIF_EVAL_H
#define RLAIF_EVAL_H

#include "rlaif/core/job.h"

/* Wilson score interval at z for k successes (may be fractional) of n. */
void rlaif_wilson(double k, double n, double z, double *lo, double *hi);

int rlaif_cmd_eval(rlaif_ctx *ctx);

#endif
