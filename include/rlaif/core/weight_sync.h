/* weight_sync.h - the policy's weights from learner 0 to the rollout ranks:
 * the model's flat parameter block broadcast in fixed-size buckets, one
 * MPI_Ibcast each, over the learner-0 + rollouts communicator (rlaif_ranks
 * .weights, learner 0 at rank 0), with a policy version that every sampled
 * batch records.
 *
 * What moves: the whole block, or nothing. With fp32 AdamW every parameter
 * that ever had a gradient changes at every step (the update is m / (sqrt(v)
 * + eps) with a decaying but non-zero m), so a per-tensor or per-bucket diff
 * would cost a full comparison pass and save only the embedding rows of
 * tokens never seen. What is skipped is a broadcast of an unchanged policy:
 * a start with the version already sent moves only the 16-byte header, and
 * the receivers keep their parameters.
 *
 * One broadcast:
 *   rlaif_wsync_start(w, v)   learner 0: post the header {v, changed} and,
 *                             if changed, the first buckets; a rollout: post
 *                             the header receive. Collective over w->comm.
 *   rlaif_wsync_test(w, &done) progress without blocking; a rollout posts
 *                             the bucket receives once the header says so;
 *                             at most RLAIF_WSYNC_WINDOW buckets are in
 *                             flight, the next posted as the oldest completes.
 *   rlaif_wsync_wait(w)       block until this rank's part is complete.
 * Between start and completion the sender must not change its parameters and
 * a receiver's parameters are partly old, partly new: sample only after
 * completion (w->version then names what the parameters hold). Open MPI
 * progresses non-blocking collectives inside MPI calls, so a sender that
 * overlaps other work calls test now and then.
 *
 * A rank outside the communicator (MPI_COMM_NULL: other learners, judges)
 * takes no part: every call returns 0 and touches nothing.
 *
 * It lives in core, next to the communicators (ranks.c), and sees only a
 * flat float block: the engine stays free of MPI. */
#ifndef RLAIF_WEIGHT_SYNC_H
#define RLAIF_WEIGHT_SYNC_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#define RLAIF_WSYNC_WINDOW 32 /* buckets in flight at once per rank */

typedef struct {
    MPI_Comm comm;                           /* learner 0 + rollouts; MPI_COMM_NULL: not a member */
    int rank;                                /* 0: learner 0, the sender */
    float *params;                           /* the block (the model's parameters) */
    size_t n;                                /* floats in the block */
    size_t bucket;                           /* floats per bucket (the last may be shorter) */
    int nbuckets;                            /* ceil(n / bucket) */
    MPI_Request req[1 + RLAIF_WSYNC_WINDOW]; /* the header, then buckets in flight */
    int posted, completed;                   /* buckets posted / completed of this broadcast */
    uint64_t hdr[2];                         /* version, changed (1: the buckets follow) */
    uint64_t version;                        /* policy version the parameters hold (complete) */
    uint64_t sent;                           /* sender: last version broadcast */
    int state;                               /* 0 idle, 1 header in flight, 2 buckets in flight */
    long long buckets;                       /* buckets moved since init (statistics, tests) */
    long long skipped;                       /* broadcasts skipped as unchanged */
} rlaif_wsync;

/* Collective over comm (MPI_COMM_NULL: an inactive object, no MPI call):
 * binds the block params[0..n) (the model's m.params, m.table.total),
 * splits it into buckets of bucket_bytes (rounded down to whole floats, at
 * least one), and checks that every member's block has the same size
 * (RLAIF_EX_USAGE on every member otherwise). version: what the local
 * parameters hold now (0 before the first broadcast). */
int rlaif_wsync_init(rlaif_wsync *w, MPI_Comm comm, float *params, size_t n, size_t bucket_bytes,
                     uint64_t version);
void rlaif_wsync_free(rlaif_wsync *w);

/* Start broadcasting version (sender) / receiving (others). Collective;
 * the previous broadcast must be complete. */
int rlaif_wsync_start(rlaif_wsync *w, uint64_t version);
/* *done = 1 once this rank's part of the broadcast is complete. */
int rlaif_wsync_test(rlaif_wsync *w, int *done);
int rlaif_wsync_wait(rlaif_wsync *w);

#endif
