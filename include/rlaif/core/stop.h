/* stop.h - preemption: signals and walltime become a collective stop.
 *
 * SIGUSR1 (Slurm's --signal), SIGTERM (scancel, preemption) and SIGINT only
 * set a flag. At each step boundary every rank calls rlaif_should_stop(),
 * which reduces the flag (and the walltime deadline) across the communicator,
 * so all ranks stop at the same step, checkpoint collectively and exit 75.
 *
 * A phase's communicator is not the world: in a split layout the rollout and
 * judge ranks have no part in sft, rm or dpo, the learners none in collect.
 * Two things make every decision world-wide:
 *  - the relay (rlaif_stop_attach): a rank that sees a stop while it waits
 *    for a phase it has no part in (rlaif_stop_pass_on) sends it, once, to the first rank of
 *    each group, and rlaif_stop_requested() there takes it (MPI_Iprobe);
 *    the group's own agreement carries it on (the learners' step check
 *    reduces it), so a signal or deadline that reaches only a judge rank
 *    still stops sft at the next step;
 *  - rlaif_stop_agree_end(rc): every rank ends every phase there, waiting in
 *    a sleeping non-blocking barrier, and leaves with the same exit code (the
 *    worst of all ranks', with the first failing rank's error message), so
 *    no rank goes on to the next phase while another stopped or failed. */
#ifndef RLAIF_STOP_H
#define RLAIF_STOP_H

#include <mpi.h>

/* Install the handlers. walltime_s = 0 means no deadline; otherwise stop
 * margin_s before start + walltime_s (PBS sends no pre-timeout signal). */
int rlaif_stop_init(double walltime_s, double margin_s);
/* This rank saw a signal or passed the deadline, or another rank relayed
 * its stop here (not for signal handlers: it may call MPI_Iprobe). */
int rlaif_stop_requested(void);
/* Which signal arrived first (0 = none / deadline). */
int rlaif_stop_signal(void);
/* sig for the logs: "SIGUSR1", ..., "the walltime" for 0. */
const char *rlaif_stop_name(int sig);
/* Collective: 1 on every rank if any rank saw a signal or the deadline passed. */
int rlaif_should_stop(MPI_Comm comm);
/* Collective over world (once, after the rank groups exist): the relay to
 * leaders[0..n) (world ranks: the first rank of each group). */
int rlaif_stop_attach(MPI_Comm world, const int *leaders, int n);
void rlaif_stop_detach(void);
/* Collective over the attached world, by every rank at the end of every
 * phase: sleeps (5 ms polls, relaying a stop seen meanwhile) until all ranks
 * arrive, takes every relayed message, and returns the agreed exit code
 * (max over ranks, error message from the first failing rank). Without the
 * relay (a command without rank groups) rc itself. */
int rlaif_stop_agree_end(int rc);
/* A rank waiting outside its phase's work (rlaif_stop_agree_end, collect's
 * drain, where the learners wait out a whole collect) sends a stop seen
 * here to the group leaders, once, and takes the stops relayed to it. */
void rlaif_stop_pass_on(void);
/* Collective over the attached world: 1 on every rank if any rank stopped. */
int rlaif_stop_agreed(void);
/* For tests: raise the flag as a signal would. */
void rlaif_stop_request(int sig);
void rlaif_stop_reset(void);

#endif
