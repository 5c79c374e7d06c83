/* stop.h - preemption: signals and walltime become a collective stop.
 *
 * SIGUSR1 (Slurm's --signal), SIGTERM (scancel, preemption) and SIGINT only
 * set a flag. At each step boundary every rank calls rlaif_should_stop(),
 * which reduces the flag (and the walltime deadline) across the communicator,
 * so all ranks stop at the same step, checkpoint collectively and exit 75. */
#ifndef RLAIF_STOP_H
#define RLAIF_STOP_H

#include <mpi.h>

/* Install the handlers. walltime_s = 0 means no deadline; otherwise stop
 * margin_s before start + walltime_s (PBS sends no pre-timeout signal). */
int rlaif_stop_init(double walltime_s, double margin_s);
/* Local flag only (async-signal-safe to read). */
int rlaif_stop_requested(void);
/* Which signal arrived first (0 = none / deadline). */
int rlaif_stop_signal(void);
/* Collective: 1 on every rank if any rank saw a signal or the deadline passed. */
int rlaif_should_stop(MPI_Comm comm);
/* For tests: raise the flag as a signal would. */
void rlaif_stop_request(int sig);
void rlaif_stop_reset(void);

#endif
