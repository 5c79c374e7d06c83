/* stop.c - signal flag, walltime deadline, collective agreement. */
#include "rlaif/core/stop.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_flag = 0;
static volatile sig_atomic_t stop_sig = 0;
static double deadline = 0; /* rlaif_now() seconds, 0 = none */

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

int rlaif_stop_requested(void) {
    return stop_flag || (deadline > 0 && rlaif_now() >= deadline);
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
