/* checkpoint.h - sharded, atomic, self-contained checkpoints (src/storage/README.md).
 *
 * A checkpoint `<dir>/<name>-<step, 8 digits>.h5` holds
 *   /params/<tensor>, /optim/m/<tensor>, /optim/v/<tensor>
 *       float32 datasets with the tensor's shape, in the table's canonical order.
 *       Each learner writes the part of every tensor that falls into its shard
 *       rlaif_shard_range(table->total, nlearners, rank) of the flat index
 *       space, so a checkpoint written by L learners loads on any other count.
 *       Each dataset carries attribute "checksum" (2 x uint64: sum of the
 *       float bit patterns and the position-weighted sum), computed shard by
 *       shard and combined with MPI_Allreduce, so it is checked on load.
 *   /config   attributes: "arch", architecture sizes (ints), "job_config" text
 *   /optim    attributes: optimizer counters (AdamW step, skipped)
 *   /state    attributes: step, saved_at (UTC seconds since the epoch, with
 *             microseconds: when the file was written, kept by a copy that
 *             changes mtimes), RNG counters, data cursor, KL controller,
 *             reward-normalisation stats (small key -> int64 | double set)
 *   /tokenizer written by a callback (the tokenizer module's writer)
 *   root attributes rlaif_schema, rlaif_kind="checkpoint", software_version,
 *             creation_time, step, nlearners, total_params, complete=1
 *
 * Atomicity: the file is written as `<file>.tmp`, every rank agrees that it
 * succeeded, every rank fsyncs, rank 0 renames it into place, fsyncs the
 * folder, and replaces `<dir>/LATEST` (one line: the file name) by rename.
 * Only the newest `keep` checkpoints of a name are kept. A process killed at
 * any point leaves at worst a stale .tmp; the previous checkpoint is intact.
 *
 * Full disk: once every dataset is allocated, rank 0 reserves the file's
 * size with fallocate, so a full disk (or quota) fails before any tensor is
 * written, as one agreed error naming the file and the free space (exit 74).
 * Without fallocate the failed writes are agreed before the collective
 * close, rank 0 empties the .tmp so the close's metadata flush finds room
 * (it deadlocked the ranks, or crashed one, before), and the .tmp is removed.
 *
 * On restart rlaif_checkpoint_resume loads the newest checkpoint that loads
 * and verifies. A damaged newest one is passed over loudly (a warning naming
 * it and the older one resumed); when none verifies it refuses (exit 74
 * naming the newest and why) rather than start afresh over them. */
#ifndef RLAIF_CHECKPOINT_H
#define RLAIF_CHECKPOINT_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rlaif/core/h5util.h"
#include "rlaif/core/tensors.h"

/* ---- small key -> value sets (/config and /state attributes) ---- */
#define RLAIF_KV_KEY_MAX 64
typedef struct {
    char key[RLAIF_KV_KEY_MAX];
    int is_int;
    int64_t i;
    double d;
} rlaif_kv;
typedef struct {
    int n;
    rlaif_kv *kv;
} rlaif_kvset;

void rlaif_kv_set_int(rlaif_kvset *s, const char *key, int64_t v);
void rlaif_kv_set_double(rlaif_kvset *s, const char *key, double v);
/* Missing key: an error naming it (the checkpoint lacks what the phase needs). */
int rlaif_kv_get_int(const rlaif_kvset *s, const char *key, int64_t *v);
int rlaif_kv_get_double(const rlaif_kvset *s, const char *key, double *v);
const rlaif_kv *rlaif_kv_find(const rlaif_kvset *s, const char *key);
void rlaif_kv_free(rlaif_kvset *s);

/* Tokenizer (or any extra) group writer/reader: called on rank 0 (write) or
 * every rank (read) with a serial handle to the /tokenizer group. */
typedef int (*rlaif_ckpt_group_fn)(hid_t group, void *ud);

/* What a checkpoint holds, as the caller sees it. Buffers are float32 flat
 * buffers over `table`. A buffer is either full (table->total floats) or
 * sharded: it holds only this rank's [begin, end) = rlaif_shard_range(total,
 * comm size, rank). m and v may be NULL (no optimizer state: e.g. a frozen
 * reference model or an SFT export). */
typedef struct {
    const rlaif_tensor_table *table;
    float *params;
    float *m, *v;
    int params_sharded;  /* params holds only this rank's shard */
    int moments_sharded; /* m and v hold only this rank's shard */
    const char *arch;    /* /config attribute "arch" (e.g. "gpt2"), or NULL */
    rlaif_kvset config;  /* /config attributes (architecture sizes, layer_norm_epsilon) */
    rlaif_ckpt_group_fn config_write; /* more /config attributes (the model's), may be NULL */
    void *config_ud;                  /* passed to config_write */
    rlaif_kvset optim;                /* /optim attributes (AdamW step, skipped) */
    const char *job_config;           /* resolved job file text for /config, or NULL */
    rlaif_kvset state;                /* /state attributes; "step" is always written */
    rlaif_ckpt_group_fn tokenizer_write, tokenizer_read; /* may be NULL */
    void *tokenizer_ud;                                  /* passed to tokenizer_write */
    void *tokenizer_read_ud;                             /* passed to tokenizer_read */
    /* A checkpoint whose /hf_files group (the Hugging Face files
     * tools/user/hf-to-rlaif keeps: tokenizer and chat template, config.json)
     * is copied into the new file, or NULL. So a model trained from an
     * imported one keeps what model.chat_template = auto and
     * tools/user/rlaif-to-hf read, phase after phase. */
    const char *hf_files_from;
} rlaif_ckpt;

typedef struct {
    const char *dir;  /* folder, created if missing */
    const char *name; /* phase name: files are <name>-<step>.h5 */
    int keep;         /* newest N kept per name (values < 1 count as 1) */
    rlaif_h5_opts io;
    /* io.stage_dir: when set, rlaif_checkpoint_save writes here (same
     * protocol: .tmp, rename, LATEST, keep) and rlaif_checkpoint_copy_back
     * brings a checkpoint to dir, which is where resume and readers look */
    char stage[4096];
} rlaif_ckpt_opts;

/* From the job: keep = checkpoint.keep, HDF5 tuning from [io] (by default
 * independent raw-data transfers: each rank's shard of a tensor is one
 * contiguous range, so two-phase collective buffering only adds copies; see
 * tools/bench/bench-io --collective), stage = io.stage_dir. dir and name are
 * kept by pointer. */
void rlaif_checkpoint_opts_from_cfg(rlaif_ckpt_opts *o, const rlaif_config *cfg, const char *dir,
                                    const char *name);

/* "<dir>/<name>-<step 8 digits>.h5" */
void rlaif_checkpoint_path(const rlaif_ckpt_opts *o, int64_t step, char *buf, size_t n);

/* Collective over comm (the learners). Writes c at step atomically; path (may
 * be NULL) receives the file written. */
int rlaif_checkpoint_save(MPI_Comm comm, const rlaif_ckpt_opts *o, int64_t step, rlaif_ckpt *c,
                          char *path, size_t pathn);

/* Collective, after a save with o->stage set (a no-op copying path to
 * pathout otherwise): rank 0 copies the staged checkpoint path to
 * <dir>/<its name>.tmp, fsyncs it, checks that it is byte-identical to the
 * staged file and that every tensor matches its checksum, renames it into
 * place, replaces <dir>/LATEST and keeps the newest `keep` in dir. pathout
 * receives the file in dir. A failure leaves dir as it was (exit 74). */
int rlaif_checkpoint_copy_back(MPI_Comm comm, const rlaif_ckpt_opts *o, const char *path,
                               char *pathout, size_t pathn);

/* Collective. Load path into c (buffers allocated by the caller with the
 * layout c declares; c->config and c->state are filled). Verifies that every
 * tensor of c->table exists with its shape and that checksums match. */
int rlaif_checkpoint_load(MPI_Comm comm, const char *path, const rlaif_h5_opts *io, rlaif_ckpt *c);

/* Serial: x[0..n) (the whole tensor just read from dataset ds) against the
 * dataset's "checksum" attribute, for readers of single tensors (the
 * engine's model loader); a dataset without one (serial writer) passes. */
int rlaif_checkpoint_verify_tensor(hid_t ds, const float *x, size_t n, const char *path,
                                   const char *name);

/* Collective. Newest checkpoint of o->name that loads and verifies, loaded
 * into c; *found = 0 when there is no checkpoint of that name (not an
 * error). Damaged ones are skipped with a warning naming them and the one
 * used; when every one is damaged: RLAIF_EX_IOERR naming the newest (c's
 * buffers then hold unverified values and must not be used). */
int rlaif_checkpoint_resume(MPI_Comm comm, const rlaif_ckpt_opts *o, rlaif_ckpt *c, int *found,
                            char *path, size_t pathn);

/* Steps of the complete (renamed, non-.tmp) checkpoints of name, newest
 * first; *n entries in a malloc'd array. Does not open them. */
int rlaif_checkpoint_list(const char *dir, const char *name, int64_t **steps, int *n);

/* What a checkpoint says of itself, read without its tensors. */
typedef struct {
    int64_t step;    /* /state step */
    int done;        /* /state done: the phase ran to its end */
    double saved_at; /* /state saved_at; older files: the root creation_time (1 s) */
} rlaif_ckpt_info;

/* Serial, read-only. 0 and *info, or -1 when the file or its /state cannot
 * be read (no error is recorded: the caller passes over it). */
int rlaif_checkpoint_info(const char *path, rlaif_ckpt_info *info);

/* Serial, read-only: the file is a complete checkpoint and every tensor it
 * holds matches its checksum (the checks of rlaif_checkpoint_load that need
 * no model: it does not know the expected shapes). Reads the whole file, one
 * tensor at a time. Error (RLAIF_EX_IOERR) naming the file and the tensor. */
int rlaif_checkpoint_verify(const char *path);

/* Serial. The newest checkpoint of name in dir whose /state done is set (a
 * phase that ran to its end, not one stopped with exit 75) into path;
 * *found = 0 when there is none (not an error), *count = checkpoints of
 * that name in dir (for the caller's message). Each one passed over is named
 * in a warning prefixed by who ("rm: ..."), as unfinished or unreadable. */
int rlaif_checkpoint_newest_done(const char *dir, const char *name, const char *who, char *path,
                                 size_t n, int *found, int *count);

#endif
