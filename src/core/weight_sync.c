/* weight_sync.c - bucketed, non-blocking broadcast of the policy's flat
 * parameter block from learner 0 to the rollout ranks, with a policy
 * version (weight_sync.h). It owns the header/bucket protocol; the
 * communicator comes from rlaif_ranks (src/core/ranks.c). */
#include "rlaif/core/weight_sync.h"
#include "rlaif/core/error.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

int rlaif_wsync_init(rlaif_wsync *w, MPI_Comm comm, float *params, size_t n, size_t bucket_bytes,
                     uint64_t version) {
    memset(w, 0, sizeof *w);
    w->comm = comm, w->version = version, w->sent = version;
    if (comm == MPI_COMM_NULL) return 0;
    MPI_Comm_rank(comm, &w->rank);
    w->params = params, w->n = n;
    w->bucket = bucket_bytes / sizeof(float) > 0 ? bucket_bytes / sizeof(float) : 1;
    if (w->bucket > INT_MAX) w->bucket = INT_MAX; /* MPI counts are int */
    size_t nb = (w->n + w->bucket - 1) / w->bucket;
    /* every member must hold a block of the same size, or the buckets would
     * overrun a receiver: agreed here, before any bucket moves */
    unsigned long long mine = w->n, lo, hi;
    RLAIF_CHECK_MPI(MPI_Allreduce(&mine, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm));
    RLAIF_CHECK_MPI(MPI_Allreduce(&mine, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm));
    if (lo != hi)
        return RLAIF_ERROR(
            RLAIF_EX_USAGE, "learners and rollout ranks must load the same model configuration",
            "weight broadcast: parameter blocks differ in size (%llu..%llu floats)", lo, hi);
    if (nb >= INT_MAX)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "raise ranks.weight_bucket_bytes",
                           "weight broadcast: %zu buckets of %zu floats", nb, w->bucket);
    w->nbuckets = (int)nb;
    for (int i = 0; i <= RLAIF_WSYNC_WINDOW; i++) w->req[i] = MPI_REQUEST_NULL;
    return 0;
}

void rlaif_wsync_free(rlaif_wsync *w) {
    memset(w, 0, sizeof *w);
    w->comm = MPI_COMM_NULL;
}

/* One MPI_Ibcast per bucket, in block order on every rank (collectives
 * match by order), at most RLAIF_WSYNC_WINDOW in flight: Open MPI's
 * non-blocking collectives cost progress time per outstanding request (tens
 * of thousands of one-float buckets do not finish in minutes), so a bucket
 * is posted as an earlier one completes. Bucket b uses slot 1 + b % window. */
static int post_more(rlaif_wsync *w) {
    while (w->posted < w->nbuckets && w->posted - w->completed < RLAIF_WSYNC_WINDOW) {
        int b = w->posted++;
        size_t off = (size_t)b * w->bucket;
        int count = (int)(w->n - off < w->bucket ? w->n - off : w->bucket);
        RLAIF_CHECK_MPI(MPI_Ibcast(w->params + off, count, MPI_FLOAT, 0, w->comm,
                                   &w->req[1 + b % RLAIF_WSYNC_WINDOW]));
    }
    return 0;
}

static int post_buckets(rlaif_wsync *w) {
    w->posted = w->completed = 0;
    w->state = 2;
    return post_more(w);
}

/* Retire completed buckets oldest first, posting the next ones; blocking
 * waits for each when block is set. */
static int drain(rlaif_wsync *w, int block) {
    while (w->completed < w->nbuckets) {
        MPI_Request *r = &w->req[1 + w->completed % RLAIF_WSYNC_WINDOW];
        int flag = 1;
        if (block)
            RLAIF_CHECK_MPI(MPI_Wait(r, MPI_STATUS_IGNORE));
        else
            RLAIF_CHECK_MPI(MPI_Test(r, &flag, MPI_STATUS_IGNORE));
        if (!flag) return 0;
        w->completed++;
        RLAIF_TRY(post_more(w));
    }
    return 0;
}

int rlaif_wsync_start(rlaif_wsync *w, uint64_t version) {
    if (w->comm == MPI_COMM_NULL) return 0;
    if (w->state != 0)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL,
                           "weight broadcast started while the previous one is in flight");
    if (w->rank == 0) w->hdr[0] = version, w->hdr[1] = version != w->sent;
    RLAIF_CHECK_MPI(MPI_Ibcast(w->hdr, 2, MPI_UINT64_T, 0, w->comm, &w->req[0]));
    w->state = 1;
    /* the sender knows the header: its buckets go out at once */
    if (w->rank == 0 && w->hdr[1]) RLAIF_TRY(post_buckets(w));
    return 0;
}

/* The broadcast is complete on this rank: record the version. */
static void finish(rlaif_wsync *w) {
    w->state = 0;
    if (w->hdr[1])
        w->buckets += w->nbuckets;
    else
        w->skipped++;
    w->version = w->hdr[0];
    if (w->rank == 0) w->sent = w->hdr[0];
}

/* A receiver with its header: post the buckets, or finish on "unchanged". */
static int after_header(rlaif_wsync *w) {
    if (w->hdr[1] && w->rank != 0) return post_buckets(w);
    if (!w->hdr[1]) finish(w);
    return 0;
}

int rlaif_wsync_test(rlaif_wsync *w, int *done) {
    *done = 1;
    if (w->comm == MPI_COMM_NULL || w->state == 0) return 0;
    int flag = 0;
    if (w->state == 1 || (w->rank == 0 && w->req[0] != MPI_REQUEST_NULL)) {
        RLAIF_CHECK_MPI(MPI_Test(&w->req[0], &flag, MPI_STATUS_IGNORE));
        if (!flag) return *done = 0, 0;
        if (w->state == 1) RLAIF_TRY(after_header(w));
    }
    if (w->state == 2) {
        RLAIF_TRY(drain(w, 0));
        if (w->completed == w->nbuckets) finish(w);
    }
    *done = w->state == 0;
    return 0;
}

int rlaif_wsync_wait(rlaif_wsync *w) {
    if (w->comm == MPI_COMM_NULL || w->state == 0) return 0;
    RLAIF_CHECK_MPI(MPI_Wait(&w->req[0], MPI_STATUS_IGNORE));
    if (w->state == 1) RLAIF_TRY(after_header(w));
    if (w->state == 2) {
        RLAIF_TRY(drain(w, 1));
        finish(w);
    }
    return 0;
}
