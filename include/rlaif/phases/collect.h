/* collect.h - `rlaif collect job.ini`: sample response pairs from the SFT
 * policy and label them with the feedback LLM (src/phases/README.md, Collect).
 *
 * Policy: model.init_from when set, else the newest sft checkpoint in
 * <out_dir>/<checkpoint.dir> (with its /tokenizer). Prompts: data.task =
 * arithmetic -> training problems [0, data.n_prompts); data.task = jsonl ->
 * the {"prompt"} records of data.prompts.
 *
 * Rollout ranks take a contiguous share of the prompts and sample
 * K = collect.responses_per_prompt responses per prompt, in batches. Sequence
 * k of prompt i draws from rlaif_rng(run.seed, RLAIF_STREAM_SAMPLE, 0,
 * i * K + k), so every text is the same whatever the rank count or batch
 * slot. Pairs: the K(K-1)/2 index pairs (a < b) in the order of a
 * permutation keyed by (run.seed, RLAIF_STREAM_PAIRS, i); the first
 * collect.pairs_per_prompt = P whose texts differ (and differ from pairs
 * already taken) are kept. Pair t of prompt i has id i * P + t.
 *
 * Pull protocol with bounded credit (src/phases/README.md, Collect), on a mailbox over
 * MPI_COMM_WORLD, all sends non-blocking (a colocated rank talks to itself):
 *
 *   TAG_REQ      judge -> rollout  int32 want: "send me up to want pairs".
 *                A judge keeps at most one request open per rollout rank and
 *                asks only for what its judge client can take now
 *                (rlaif_judge_credit minus pairs queued or asked for).
 *   TAG_WORK     rollout -> judge  the answer: int32 count, int32 done, then
 *                per pair uint64 id, uint32 length of prompt, a, b, and the
 *                three texts (no terminators). A rollout answers a request
 *                only when it can send at least one pair, or with count 0 and
 *                done 1 when it has nothing left at all (the judge then never
 *                asks it again). It never has more than collect.credit pairs
 *                handed out and not yet answered.
 *   TAG_RESULT   judge -> rollout  int32 n: n of your pairs have been judged
 *                (frees credit).
 *   TAG_STOP     any -> all        int32 signal: a signal, the walltime or
 *                --stop-after was seen; everyone stops at once (-1: a judge
 *                rank found the judge out).
 *   TAG_PROGRESS any -> rank 0     double[10] cumulative counts and judge usage
 *                for status lines and the status file.
 *   TAG_REPORT   judge 0 -> rank 0 the judge report text, after the drain.
 *
 * Nobody busy-waits: a rank with nothing to do sleeps 2 ms between
 * MPI_Iprobe/MPI_Test rounds (or in the judge's curl_multi_poll). Judge
 * ranks agree on when to store through a repeated MPI_Iallreduce (MAX of
 * buffered pairs, time since the last store, stop, not finished): when one
 * judge rank holds --store-every labelled pairs (default 256), or every
 * 10 s when any has some, they append what they have labelled to <out_dir>/preferences.h5 with
 * rlaif_judge_store, collectively over the judge group, and the file is
 * synced, so a kill loses at most the unstored tail, which the judge's
 * journal answers for free on the rerun. At the end every rank posts an
 * MPI_Ialltoall of the messages it sent to each rank and receives what is
 * still on its way, so no message is left unmatched (also after a stop).
 *
 * Resume: pair ids already in preferences.h5 are not generated or judged
 * again (a prompt whose pairs are all stored is not even sampled). A
 * finished collect writes root attribute collect_complete (its settings);
 * a rerun with the same settings is skipped. SIGTERM/SIGUSR1/walltime:
 * what is labelled is stored, exit 75.
 *
 * A judge that does not answer (pump.h): an HTTP judge whose key variable
 * is unset stops before any work (exit 64, naming it); when 12 of the last
 * 16 pairs of a judge rank (or three quarters of a short run) fail for one
 * reason, that rank sends TAG_STOP -1, everyone stops, what was labelled is
 * stored and the job exits 1 with the reason. Pairs the judge never
 * answered (HTTP error, quota, retries exhausted) stay out of the file
 * (collect.retry_failed = true, the default) and the collect is not marked
 * complete, so the same command judges them again; answered calls come
 * from the journal.
 *
 * The parts (each reusable by the RL phases): mailbox.h carries the
 * messages, credit and the drain; rollout.h samples and pairs; pump.h
 * drives the judge client. */
#ifndef RLAIF_COLLECT_H
#define RLAIF_COLLECT_H

#include "rlaif/core/job.h"
#include "rlaif/phases/layout.h"

int rlaif_cmd_collect(rlaif_ctx *ctx);
/* Its registry done() (serial, read-only): preferences.h5 carries
 * collect_complete with the settings, policy and prompt count this job
 * would collect with (DONE); the file without it, or the job's policy or
 * prompts gone (PARTIAL); no file (NOT_STARTED). Loads no model. */
int rlaif_collect_done(const rlaif_config *cfg, const char *name, rlaif_phase_status *st);

#endif
