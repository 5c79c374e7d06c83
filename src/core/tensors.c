/* tensors.c - tensor tables over flat buffers. */
#include "rlaif/core/tensors.h"
#include "rlaif/core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t rlaif_tensors_add(rlaif_tensor_table *tt, const char *name, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > RLAIF_TENSOR_MAX_DIM)
        RLAIF_DIE(RLAIF_EX_SOFTWARE, NULL, "internal: tensor %s has %d dims", name, ndim);
    tt->t = xrealloc(tt->t, sizeof(*tt->t) * (size_t)(tt->n + 1));
    rlaif_tensor_desc *d = &tt->t[tt->n++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->ndim = ndim;
    d->numel = 1;
    for (int i = 0; i < ndim; i++) d->shape[i] = shape[i], d->numel *= (size_t)shape[i];
    d->offset = tt->total;
    tt->total += d->numel;
    return d->offset;
}

const rlaif_tensor_desc *rlaif_tensors_find(const rlaif_tensor_table *tt, const char *name) {
    for (int i = 0; i < tt->n; i++)
        if (!strcmp(tt->t[i].name, name)) return &tt->t[i];
    return NULL;
}

void rlaif_tensors_free(rlaif_tensor_table *tt) {
    free(tt->t);
    memset(tt, 0, sizeof *tt);
}

void rlaif_shard_range(size_t total, int nshards, int i, size_t *begin, size_t *end) {
    size_t base = total / (size_t)nshards, extra = total % (size_t)nshards, ui = (size_t)i;
    *begin = ui * base + (ui < extra ? ui : extra);
    *end = *begin + base + (ui < extra ? 1 : 0);
}
