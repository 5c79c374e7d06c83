/* pairs.h - preference pairs as token sequences, shared by `rlaif rm` and
 * `rlaif dpo` (moved out of rm.c so both read, label, split and tokenize the
 * same way).
 *
 * Data: the pairs of <phase>.preferences (default <out_dir>/preferences.h5)
 * whose status is ok and whose label P(A better) is a number in [0, 1], plus
 * data.human_preferences (JSONL {"prompt","chosen","rejected"}, label 1 for
 * the chosen response) when set. Labels strictly between 0 and 1 follow
 * <phase>.soft_labels: soft (kept), hard (rounded; ties dropped) or drop.
 * Every response becomes the model's text of (prompt, response) exactly as
 * the policy sees it (task.h: prompt "\n" response EOS, with the same
 * truncation), tokenized with the model's tokenizer. A prompt is held out
 * for validation when a hash of its text falls below <phase>.eval_fraction
 * (FNV-1a 64 + splitmix64 finaliser; tests/e2e/check_rm.py has a copy), so
 * validation pairs never share a prompt with training pairs. */
#ifndef RLAIF_PAIRS_H
#define RLAIF_PAIRS_H

#include <math.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/config.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/phases/train.h"
#include "rlaif/tokenizer/tokenizer.h"

/* Pair i is sequences 2i (response A) and 2i+1 (response B), sequence s
 * being tok[off[s], off[s+1]) of which the first plen[s] are the prompt. */
typedef struct {
    int64_t n;
    int32_t *tok;
    int64_t *off;     /* [2n + 1] */
    int32_t *plen;    /* [2n] prompt tokens of each sequence (may be NULL when unused) */
    float *label;     /* [n] P(A better) */
    uint8_t *heldout; /* [n] 1 = validation pair */
} rlaif_pairs;

typedef struct {
    int64_t total, unusable, dropped; /* pairs read, without a label, dropped soft labels */
    int64_t human;                    /* pairs of data.human_preferences */
} rlaif_pairs_counts;

/* Rank 0 of a phase (section "rm" or "dpo"): every usable pair of the
 * phase's preferences and data.human_preferences, tokenized; errors name
 * the phase ("rm: cannot read the preferences ..."). */
int rlaif_pairs_load(rlaif_pairs *d, rlaif_tokenizer *tok, const rlaif_chat *chat,
                     const rlaif_config *cfg, const char *section, int max_seq_len,
                     rlaif_pairs_counts *c);
/* Collective over comm: rank 0's pairs to every rank. */
int rlaif_pairs_bcast(rlaif_pairs *d, MPI_Comm comm, int rank, const char *section);
void rlaif_pairs_free(rlaif_pairs *d);
/* rlaif_info line "<section>: N pairs read: ..." of rank 0's counts. */
void rlaif_pairs_report(const char *section, const rlaif_pairs_counts *c, const rlaif_pairs *d);
/* 1 when prompt is held out at fraction frac (the hash above). */
int rlaif_pairs_held_out(const char *prompt, double frac);

/* The newest finished sft checkpoint of the job's checkpoint folder
 * (<out_dir>/<checkpoint.dir>/sft-*.h5 with /state done = 1) into path;
 * those passed over are named in info lines prefixed by `phase`. *found =
 * 0 when there is none; then dir holds the folder and *nsft the number of
 * sft checkpoints in it (for the caller's error). */
int rlaif_find_sft_model(const rlaif_config *cfg, const char *phase, char *path, size_t n,
                         char *dir, size_t dn, int *found, int *nsft);
/* The error (RLAIF_EX_NOINPUT, with hint) of a phase that has no model to
 * start from: dir, of rlaif_find_sft_model, holds nsft sft checkpoints and
 * no finished one. */
int rlaif_no_sft_model(const char *phase, const char *hint, const char *dir, int nsft);

/* ---- the pair losses' sigmoids (rm's Bradley-Terry, dpo) ---- */

/* log s(x), stable for large |x| */
static inline double rlaif_log_sigmoid(double x) {
    return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}
static inline double rlaif_sigmoid(double x) {
    return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
}

/* Collective over the learners: rank 0 loads the phase's pairs
 * (rlaif_pairs_load), reports them, and broadcasts them to every learner. */
int rlaif_pairs_load_all(rlaif_pairs *d, rlaif_learner *L, const char *section);

/* ---- the training stream of a pair phase (rm, dpo) ---- */

/* The pairs split into training and held-out indices, and the training
 * pairs as one stream of epochs, each a fresh permutation from the counter
 * RNG keyed by (run.seed, RLAIF_STREAM_SHUFFLE, epoch): pair p of the stream
 * is the same whatever the learner count, and a resumed run continues at the
 * checkpoint's data_pos. */
typedef struct {
    int64_t *train, *eval; /* pair indices of each split */
    int64_t ntrain, neval;
    uint64_t seed;
    int64_t pos;        /* training pairs consumed since the start of the phase */
    int64_t perm_epoch; /* epoch of perm, -1 before the first */
    uint32_t *perm;     /* [ntrain] order of the current epoch */
} rlaif_pair_stream;

/* Split d by d->heldout. No training pair left is an error naming
 * <section>.eval_fraction. */
int rlaif_pair_stream_init(rlaif_pair_stream *s, const rlaif_pairs *d, uint64_t seed,
                           const char *section);
/* The pair index at global stream position p. */
int64_t rlaif_pair_stream_at(rlaif_pair_stream *s, int64_t p);
/* /state keys data_pos, epoch, n_train_pairs, eval_pairs; load reads data_pos. */
void rlaif_pair_stream_save(const rlaif_pair_stream *s, rlaif_kvset *state);
int rlaif_pair_stream_load(rlaif_pair_stream *s, const rlaif_kvset *state);
/* /state of a pair phase: the stream's keys, then after a validation
 * (have_eval) eval_loss and eval_accuracy. */
void rlaif_pair_phase_save(const rlaif_pair_stream *s, int have_eval, double eval_loss,
                           double eval_acc, rlaif_kvset *state);
void rlaif_pair_stream_free(rlaif_pair_stream *s);

/* ---- the learner's passes over pairs (rm, dpo) ---- */

/* A phase's forward (and with train, backward) of pairs ex[0..B), each
 * loss normalised by N, added into its sums: a struct of nsums doubles,
 * the loss first and the tokens last (so the learners can sum it as one
 * array, and the loop read what it logs). */
typedef struct {
    int (*micro)(void *ud, const int64_t *ex, int B, double N, int train, double *sums);
    void *ud;
    int nsums;
} rlaif_pair_pass;

/* This learner's share of the next L->batch_size pairs of the stream in
 * micro-batches with train = 1 and N = the batch size, into sums (zeroed
 * first); loss and tokens into bs; *nd = the batch's pairs with a label
 * other than 0.5 (at least 1, a divisor), counted over the whole batch
 * (every learner knows it, so it needs no message). Advances st->pos. */
int rlaif_pair_batch(rlaif_learner *L, rlaif_pair_stream *st, const float *label,
                     const rlaif_pair_pass *p, double *sums, rlaif_batch_stats *bs, double *nd);
/* Collective: the forward of pairs idx[0..n) (each learner its share, N =
 * n), the sums added over the learners into out. */
int rlaif_pair_forward_all(rlaif_learner *L, const int64_t *idx, int64_t n,
                           const rlaif_pair_pass *p, double *out);

/* The learner-phase driver (rlaif_learner_phase_run) on a pair phase: its
 * validation rows (n_eval columns eval_names) in the metrics table
 * "<ph->name>_eval", result for the closing line, prepare and before_save
 * its hooks. */
int rlaif_pair_phase_run(rlaif_learner *L, const rlaif_phase *ph, int n_eval,
                         const char *const *eval_names, const char *result,
                         int (*prepare)(rlaif_learner *L, void *ud, int found),
                         int (*before_save)(rlaif_learner *L, void *ud, int done), long stop_after);

#endif
