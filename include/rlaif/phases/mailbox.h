/* mailbox.h - rank-to-rank messages for the phases whose ranks work at
 * their own pace (collect today; PPO's rollouts and online DPO next):
 * non-blocking sends of malloc'd buffers on a private duplicate of a
 * communicator, receives of whatever is waiting, pull credit, the final
 * drain that leaves no message unmatched, and the sleeping waits every
 * rank with nothing to do uses instead of a spinning MPI call.
 *
 *     rlaif_mailbox mb;  rlaif_mailbox_open(&mb, world);
 *     rlaif_mailbox_post_int(&mb, dest, TAG, v);          // never blocks
 *     rlaif_mailbox_service(&mb, handle, user, &did);     // handle every arrival
 *     ...
 *     rlaif_mailbox_drain(&mb, handle, user, idle, user); // collective, at the end
 *     rlaif_mailbox_close(&mb);
 *
 * Nobody busy-waits: rlaif_nap() sleeps 2 ms, rlaif_wait_sleeping() tests a
 * request between naps (Open MPI's blocking collectives spin a core, which
 * a rank that only waits must not take from the ranks that compute). */
#ifndef RLAIF_MAILBOX_H
#define RLAIF_MAILBOX_H

#include <mpi.h>
#include <stdint.h>

typedef struct {
    MPI_Request req;
    void *buf;
} rlaif_outmsg;

typedef struct {
    MPI_Comm comm; /* a duplicate: our tags cannot meet anyone else's */
    int rank, size;
    rlaif_outmsg *out; /* sends not yet complete */
    int nout, capout;
    long *sent, *recvd; /* messages per peer, for the final drain */
} rlaif_mailbox;

int rlaif_mailbox_open(rlaif_mailbox *mb, MPI_Comm comm);
void rlaif_mailbox_close(rlaif_mailbox *mb);

/* Send len bytes of buf (malloc'd; freed once sent) without blocking. */
int rlaif_mailbox_post(rlaif_mailbox *mb, int dest, int tag, void *buf, int len);
int rlaif_mailbox_post_int(rlaif_mailbox *mb, int dest, int tag, int32_t v);

/* Handles one arrival; owns buf (malloc'd, NUL after its len bytes). */
typedef int (*rlaif_mailbox_fn)(void *user, int src, int tag, char *buf, int len);
/* Every message waiting now through fn, then the finished sends freed.
 * *did is set when anything arrived. */
int rlaif_mailbox_service(rlaif_mailbox *mb, rlaif_mailbox_fn fn, void *user, int *did);

/* Collective, once this rank sends no more: every rank learns how many
 * messages each peer sent it (MPI_Ialltoall) and receives, through fn, what
 * is still on its way, so nothing is left unmatched (also after a stop).
 * idle(idle_user), when not NULL, runs between naps (status lines). */
int rlaif_mailbox_drain(rlaif_mailbox *mb, rlaif_mailbox_fn fn, void *user, void (*idle)(void *),
                        void *idle_user);

/* Pull credit: a sender hands out at most limit items not yet answered. */
typedef struct {
    int limit, outstanding, max_outstanding;
} rlaif_credit;
static inline int rlaif_credit_room(const rlaif_credit *c) {
    return c->limit - c->outstanding;
}
static inline void rlaif_credit_take(rlaif_credit *c, int n) {
    c->outstanding += n;
    if (c->outstanding > c->max_outstanding) c->max_outstanding = c->outstanding;
}
static inline void rlaif_credit_give(rlaif_credit *c, int n) {
    c->outstanding -= n;
}

/* Sleep 2 ms: nothing a waiting rank does is more urgent than that. */
void rlaif_nap(void);
/* Complete req, testing it between naps. */
int rlaif_wait_sleeping(MPI_Request *req);
/* A barrier over comm that sleeps while it waits. */
int rlaif_barrier_sleeping(MPI_Comm comm);
/* MPI_Gather of n ints per rank to root, waited for sleeping: what a rank
 * that waits long (learner 0 while the rollouts sample) must use. Every
 * rank of comm calls it (a blocking and a non-blocking collective never
 * match each other). */
int rlaif_gather_sleeping(const int *send, int n, int *recv, int root, MPI_Comm comm);
/* User + system CPU seconds of this process: what a wait really cost. */
double rlaif_cpu_seconds(void);

#endif
