/* model_io.h - serial HDF5 checkpoints of a model (and its optimizer).
 *
 * Layout (src/storage/README.md; schema version in the root attribute
 * rlaif_schema = RLAIF_SCHEMA_VERSION):
 *   /config             attributes: arch and rope_type (strings), n_layer, n_embd,
 *                       n_head, vocab_size, max_seq_len, score_head, n_kv_head,
 *                       n_inner, word_embed_dim, norm_before, tie_embeddings,
 *                       attn_bias, rope_original_max_pos, sliding_window (int64),
 *                       layer_norm_epsilon, rope_theta, rope_factor,
 *                       rope_low_freq_factor, rope_high_freq_factor (double); a
 *                       gpt2 file written before OPT/Llama lacks all but the
 *                       first eight and reads with the gpt2 defaults
 *   /params/<hf name>   float32, the tensor's shape (rlaif_model_table order)
 *   /optim/m/<name>, /optim/v/<name>   AdamW moments, same shapes;
 *                       /optim attributes step, skipped (int64)
 *   /state              attributes: step (int64) and whatever other modules add
 *   /tokenizer          written by the tokenizer module (ignored here)
 * Reading checks everything and fails with an error naming the file and the
 * dataset (missing tensor, wrong shape, wrong type, wrong schema version).
 * The parallel, sharded writer (storage module) writes the same layout from
 * the same tensor table with the rlaif_h5_* helpers below. */
#ifndef RLAIF_MODEL_IO_H
#define RLAIF_MODEL_IO_H

#include "rlaif/engine/model.h"
#include "rlaif/engine/optim.h"

#include <hdf5.h>

#define RLAIF_SCHEMA_VERSION 1

/* Writes path (truncating it): config, params, optimizer moments when opt is
 * not NULL (opt must own the whole range), /state step. */
int rlaif_ckpt_save(const char *path, const rlaif_model *m, const rlaif_adamw *opt, long step);
/* Reads only /config (and checks the schema version). */
int rlaif_ckpt_read_config(const char *path, rlaif_model_config *cfg);
/* Creates m from the file's config and loads its parameters. */
int rlaif_model_load(const char *path, rlaif_model *m);
/* Loads into an existing m (same config) and, when opt is not NULL, the
 * moments and counters; *step (may be NULL) from /state. */
int rlaif_ckpt_load(const char *path, rlaif_model *m, rlaif_adamw *opt, long *step);

/* Building blocks for other writers (all return 0 or an error status). */
int rlaif_h5_write_config(hid_t file, const rlaif_model_config *cfg);
/* Only the /config attributes, into an open group g (the storage writer). */
int rlaif_h5_write_config_attrs(hid_t g, const rlaif_model_config *cfg);
int rlaif_h5_read_config(hid_t file, const char *path, rlaif_model_config *cfg);
/* One dataset per tensor of table under group (created with parents). */
int rlaif_h5_write_tensors(hid_t file, const char *group, const rlaif_tensor_table *table,
                           const float *buf);
int rlaif_h5_read_tensors(hid_t file, const char *path, const char *group,
                          const rlaif_tensor_table *table, float *buf);
int rlaif_h5_write_attr_i64(hid_t loc, const char *name, long long value);
/* Missing attribute: RLAIF_EX_IOERR naming path and what. */
int rlaif_h5_read_attr_i64(hid_t loc, const char *path, const char *what, const char *name,
                           long long *value);

#endif
