/* tensors.h - named tensors carved out of one flat float buffer.
 *
 * Parameters, gradients and AdamW moments are each one contiguous block; a
 * tensor table names the pieces (Hugging Face GPT-2 names, row-major shapes)
 * in canonical order. The engine builds the table; checkpoints, all-reduce and
 * optimizer sharding only ever see (table, flat buffer), so a shard is a plain
 * [begin, end) range of the flat index space. */
#ifndef RLAIF_TENSORS_H
#define RLAIF_TENSORS_H

#include <stddef.h>
#include <stdint.h>

#define RLAIF_TENSOR_NAME_MAX 96
#define RLAIF_TENSOR_MAX_DIM  4

typedef struct {
    char name[RLAIF_TENSOR_NAME_MAX]; /* e.g. "h.0.attn.c_attn.weight" */
    int ndim;
    int64_t shape[RLAIF_TENSOR_MAX_DIM];
    size_t offset; /* in floats, into the flat buffer */
    size_t numel;
} rlaif_tensor_desc;

typedef struct {
    int n;
    rlaif_tensor_desc *t;
    size_t total; /* floats in the flat buffer = sum of numel */
} rlaif_tensor_table;

/* Append a tensor at the current end; returns its offset. */
size_t rlaif_tensors_add(rlaif_tensor_table *tt, const char *name, int ndim, const int64_t *shape);
const rlaif_tensor_desc *rlaif_tensors_find(const rlaif_tensor_table *tt, const char *name);
void rlaif_tensors_free(rlaif_tensor_table *tt);

/* Even split of [0, total) over nshards: shard i is [*begin, *end). */
void rlaif_shard_range(size_t total, int nshards, int i, size_t *begin, size_t *end);

#endif
