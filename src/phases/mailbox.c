/* mailbox.c - rank-to-rank messages, the final drain and the sleeping waits
 * (include/rlaif/phases/mailbox.h). */
#include "rlaif/phases/mailbox.h"
#include "rlaif/core/error.h"
#include "rlaif/core/stop.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

int rlaif_mailbox_open(rlaif_mailbox *mb, MPI_Comm comm) {
    memset(mb, 0, sizeof *mb);
    mb->comm = MPI_COMM_NULL;
    RLAIF_CHECK_MPI(MPI_Comm_dup(comm, &mb->comm));
    RLAIF_CHECK_MPI(MPI_Comm_rank(mb->comm, &mb->rank));
    RLAIF_CHECK_MPI(MPI_Comm_size(mb->comm, &mb->size));
    mb->sent = xcalloc((size_t)mb->size, sizeof(long));
    mb->recvd = xcalloc((size_t)mb->size, sizeof(long));
    return 0;
}

void rlaif_mailbox_close(rlaif_mailbox *mb) {
    for (int i = 0; i < mb->nout; i++) free(mb->out[i].buf); /* only after a failure */
    free(mb->out), free(mb->sent), free(mb->recvd);
    if (mb->comm != MPI_COMM_NULL) MPI_Comm_free(&mb->comm);
    memset(mb, 0, sizeof *mb);
    mb->comm = MPI_COMM_NULL;
}

int rlaif_mailbox_post(rlaif_mailbox *mb, int dest, int tag, void *buf, int len) {
    if (mb->nout == mb->capout) {
        mb->capout = mb->capout ? 2 * mb->capout : 64;
        mb->out = xrealloc(mb->out, sizeof *mb->out * (size_t)mb->capout);
    }
    rlaif_outmsg *m = &mb->out[mb->nout++];
    m->buf = buf;
    RLAIF_CHECK_MPI(MPI_Isend(buf, len, MPI_BYTE, dest, tag, mb->comm, &m->req));
    mb->sent[dest]++;
    return 0;
}

int rlaif_mailbox_post_int(rlaif_mailbox *mb, int dest, int tag, int32_t v) {
    int32_t *b = xmalloc(sizeof v);
    *b = v;
    return rlaif_mailbox_post(mb, dest, tag, b, (int)sizeof v);
}

/* Free the buffers of sends that completed. */
static int reap(rlaif_mailbox *mb) {
    for (int i = 0; i < mb->nout;) {
        int done = 0;
        RLAIF_CHECK_MPI(MPI_Test(&mb->out[i].req, &done, MPI_STATUS_IGNORE));
        if (!done) {
            i++;
            continue;
        }
        free(mb->out[i].buf);
        mb->out[i] = mb->out[--mb->nout];
    }
    return 0;
}

/* 1 and a message (malloc'd, NUL after it) when one is waiting, else 0. */
static int recv_any(rlaif_mailbox *mb, int *src, int *tag, char **buf, int *len) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, mb->comm, &flag, &st) != MPI_SUCCESS || !flag)
        return 0;
    MPI_Get_count(&st, MPI_BYTE, len);
    *buf = xmalloc((size_t)*len + 1);
    if (MPI_Recv(*buf, *len, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, mb->comm, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS)
        RLAIF_DIE(RLAIF_EX_SOFTWARE, NULL, "mailbox: MPI_Recv of a protocol message failed");
    (*buf)[*len] = 0;
    *src = st.MPI_SOURCE, *tag = st.MPI_TAG;
    mb->recvd[*src]++;
    return 1;
}

int rlaif_mailbox_service(rlaif_mailbox *mb, rlaif_mailbox_fn fn, void *user, int *did) {
    int src, tag, len;
    char *buf;
    while (recv_any(mb, &src, &tag, &buf, &len)) {
        RLAIF_TRY(fn(user, src, tag, buf, len));
        *did = 1;
    }
    return reap(mb);
}

int rlaif_mailbox_drain(rlaif_mailbox *mb, rlaif_mailbox_fn fn, void *user, void (*idle)(void *),
                        void *idle_user) {
    long *theirs = xcalloc((size_t)mb->size, sizeof(long));
    MPI_Request req;
    RLAIF_CHECK_MPI(MPI_Ialltoall(mb->sent, 1, MPI_LONG, theirs, 1, MPI_LONG, mb->comm, &req));
    int known = 0, rc = 0;
    while (!rc) {
        int did = 0;
        rc = rlaif_mailbox_service(mb, fn, user, &did);
        int mrc = !rc && !known ? MPI_Test(&req, &known, MPI_STATUS_IGNORE) : MPI_SUCCESS;
        if (mrc != MPI_SUCCESS) rc = rlaif_error_mpi(mrc, "MPI_Test (drain)", __FILE__, __LINE__);
        int left = mb->nout > 0;
        for (int r = 0; known && r < mb->size; r++) left |= mb->recvd[r] < theirs[r];
        if (rc || (known && !left)) break;
        if (idle) idle(idle_user);
        rlaif_stop_pass_on(); /* the learners wait out all of collect here */
        if (!did) rlaif_nap();
    }
    free(theirs);
    return rc;
}

void rlaif_nap(void) {
    struct timespec ts = {0, 2 * 1000 * 1000}; /* 2 ms */
    nanosleep(&ts, NULL);
}

int rlaif_wait_sleeping(MPI_Request *req) {
    int done = 0;
    for (;;) {
        RLAIF_CHECK_MPI(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done) return 0;
        rlaif_nap();
    }
}

int rlaif_barrier_sleeping(MPI_Comm comm) {
    MPI_Request req;
    RLAIF_CHECK_MPI(MPI_Ibarrier(comm, &req));
    return rlaif_wait_sleeping(&req);
}

int rlaif_gather_sleeping(const int *send, int n, int *recv, int root, MPI_Comm comm) {
    MPI_Request req;
    RLAIF_CHECK_MPI(MPI_Igather(send, n, MPI_INT, recv, n, MPI_INT, root, comm, &req));
    return rlaif_wait_sleeping(&req);
}

double rlaif_cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
           (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}
