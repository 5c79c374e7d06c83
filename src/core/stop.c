/* stop.c - signal flag, walltime deadline, and the world-wide agreement on
 * stopping and on how each phase ended. */
#include "rlaif/core/stop.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include <signal.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop_flag = 0;
static volatile sig_atomic_t stop_sig = 0;
static double deadline = 0; /* rlaif_now() seconds, 0 = none */

/* The relay (rlaif_stop_attach): a private dup of the world on which a rank
 * that saw a stop tells the first rank of every group, once, with one int
 * (the signal): at most 3 messages a rank whatever the world size, and each
 * group's own agreement (the learners' rlaif_should_stop, collect's stop
 * protocol) carries it from its first rank to the rest. */
enum { RELAY_MAX = 8 };
static MPI_Comm relay = MPI_COMM_NULL;
static int relay_rank;
static int relay_to[RELAY_MAX], relay_nto; /* the group leaders, without this rank */
static int relay_leader;                   /* this rank is one of them */
static int relay_sent;                     /* this rank has told them */
static long relay_recvd;                   /* messages taken from the relay */
static MPI_Request relay_req[RELAY_MAX];

static void on_signal(int sig) {
    if (!stop_flag) stop_sig = sig;
    stop_flag = 1;
}

int rlaif_stop_init(double walltime_s, double margin_s) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    int sigs[] = {SIGUSR1, SIGTERM, SIGINT};
    for (int i = 0; i < 3; i++)
        RLAIF_CHECK_SYS(sigaction(sigs[i], &sa, NULL), RLAIF_EX_SOFTWARE, "installing handler");
    deadline = walltime_s > 0 ? rlaif_now() + walltime_s - margin_s : 0;
    return 0;
}

static int local_stop(void) {
    return stop_flag || (deadline > 0 && rlaif_now() >= deadline);
}

const char *rlaif_stop_name(int sig) {
    return sig == SIGUSR1   ? "SIGUSR1"
           : sig == SIGTERM ? "SIGTERM"
           : sig == SIGINT  ? "SIGINT"
           : sig            ? "a signal"
                            : "the walltime";
}

/* Take the stops other ranks relayed (non-blocking: Iprobe). */
static void relay_poll(void) {
    for (int flag = 1; relay != MPI_COMM_NULL && flag;) {
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, 0, relay, &flag, &st) != MPI_SUCCESS) return;
        int sig = 0;
        if (flag &&
            MPI_Recv(&sig, 1, MPI_INT, st.MPI_SOURCE, 0, relay, MPI_STATUS_IGNORE) == MPI_SUCCESS) {
            relay_recvd++;
            if (!local_stop()) /* news to this rank: in its log */
                rlaif_info("stop: %s on world rank %d, relayed here", rlaif_stop_name(sig),
                           st.MPI_SOURCE);
            on_signal(sig);
        }
    }
}

int rlaif_stop_requested(void) {
    if (!local_stop()) relay_poll();
    return local_stop();
}

int rlaif_stop_signal(void) {
    return stop_sig;
}

int rlaif_should_stop(MPI_Comm comm) {
    int mine = rlaif_stop_requested(), any = 0;
    if (MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS) return 1;
    return any;
}

void rlaif_stop_request(int sig) {
    on_signal(sig);
}

void rlaif_stop_reset(void) {
    stop_flag = 0;
    stop_sig = 0;
    deadline = 0;
}

int rlaif_stop_attach(MPI_Comm world, const int *leaders, int n) {
    RLAIF_CHECK_MPI(MPI_Comm_dup(world, &relay));
    MPI_Comm_rank(relay, &relay_rank);
    relay_nto = 0, relay_leader = 0, relay_sent = 0, relay_recvd = 0;
    for (int i = 0; i < n; i++) {
        int dup = 0;
        for (int k = 0; k < relay_nto; k++) dup |= relay_to[k] == leaders[i];
        if (leaders[i] == relay_rank)
            relay_leader = 1;
        else if (!dup && relay_nto < RELAY_MAX)
            relay_to[relay_nto++] = leaders[i];
    }
    return 0;
}

/* Tell the group leaders about a stop seen here (once per job). A rank with
 * no part in the running phase is waiting in rlaif_stop_agree_end; this is
 * how its SIGUSR1 or walltime reaches the ranks that are working, whose
 * stop checks (rlaif_stop_requested) take it from the relay. */
static void relay_send(void) {
    static int sig;
    if (relay == MPI_COMM_NULL || relay_sent || !local_stop()) return;
    sig = stop_sig;
    for (int i = 0; i < relay_nto; i++)
        MPI_Isend(&sig, 1, MPI_INT, relay_to[i], 0, relay, &relay_req[i]);
    relay_sent = 1;
    /* in the rank's log: when this rank passed a stop on (its own or relayed) */
    rlaif_info("stop: %s, passed on from world rank %d to %d group leader%s", rlaif_stop_name(sig),
               relay_rank, relay_nto, relay_nto == 1 ? "" : "s");
}

/* Every message of the relay is received before anyone goes on: each rank
 * that sent sent one to every leader but itself, so a leader expects
 * (senders - itself) in all, any other rank none. */
static int relay_drain(void) {
    int senders = 0;
    RLAIF_CHECK_MPI(MPI_Allreduce(&relay_sent, &senders, 1, MPI_INT, MPI_SUM, relay));
    while (relay_leader && relay_recvd < senders - relay_sent) {
        int sig = 0;
        RLAIF_CHECK_MPI(MPI_Recv(&sig, 1, MPI_INT, MPI_ANY_SOURCE, 0, relay, MPI_STATUS_IGNORE));
        relay_recvd++;
        on_signal(sig);
    }
    if (relay_sent) RLAIF_CHECK_MPI(MPI_Waitall(relay_nto, relay_req, MPI_STATUSES_IGNORE));
    return 0;
}

void rlaif_stop_pass_on(void) {
    relay_send();
    relay_poll();
}

int rlaif_stop_agree_end(int rc) {
    if (relay == MPI_COMM_NULL) return rc;
    MPI_Request req;
    RLAIF_CHECK_MPI(MPI_Ibarrier(relay, &req));
    for (int done = 0;;) {
        rlaif_stop_pass_on();
        RLAIF_CHECK_MPI(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
        if (done) break;
        struct timespec ts = {0, 5 * 1000 * 1000}; /* 5 ms: a sleeping wait, not a spin */
        nanosleep(&ts, NULL);
    }
    RLAIF_TRY(relay_drain());
    return rlaif_agree(relay, rc);
}

int rlaif_stop_agreed(void) {
    if (relay == MPI_COMM_NULL) return rlaif_stop_requested();
    return rlaif_should_stop(relay);
}

void rlaif_stop_detach(void) {
    if (relay != MPI_COMM_NULL) MPI_Comm_free(&relay);
}
