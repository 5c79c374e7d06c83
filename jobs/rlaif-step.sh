# rlaif-step.sh - sourced by the job scripts in this folder: run one rlaif
# step under the launcher and decide from the run's own exit_status marker.
#
#   . jobs/rlaif-step.sh
#   rlaif_step JOB.ini LAUNCHER... rlaif run JOB.ini [--set ...]
#   [ "$RLAIF_STATUS" = 75 ] && requeue
#
# Why the marker: every rank of rlaif agrees on the exit code, and world
# rank 0 of `rlaif run` writes it to <run.out_dir>/exit_status (atomically; removed at the
# start of the run). Launchers do not pass 75 on reliably: Open MPI 4's
# mpiexec exits 1 after a SIGTERM although every rank exited 75, and srun
# --kill-on-bad-exit may report a signal. No marker (the run was killed,
# out_dir could not be written, or a single phase command, which leaves
# none) means the launcher's code is all there is.
#
# Signals: the batch shell's SIGTERM or SIGUSR1 (scancel, preemption, PBS's
# qdel, `--signal=B:USR1@N`) is passed to the launcher as SIGUSR1. mpiexec and srun forward
# SIGUSR1 to every rank and go on waiting, and rlaif stops on SIGUSR1
# exactly as on SIGTERM; given SIGTERM, Open MPI's mpiexec kills its ranks
# about a second later, often before their checkpoint is written.

# <run.out_dir> of the job as rlaif resolves it (job file, RLAIF_RUN_OUT_DIR,
# --set); "" when rlaif cannot say.
rlaif_out_dir() {
  "${RLAIF:-rlaif}" config "$@" 2>/dev/null |
    sed -n 's/^out_dir = \(.*[^ ]\) *; .*$/\1/p' | head -n 1
}

# rlaif_step JOB.ini COMMAND...: run COMMAND in the background, forward the
# shell's SIGTERM/SIGUSR1 as SIGUSR1, wait for it, and set RLAIF_STATUS to
# the marker's code (else the launcher's). The trap is set before the
# launcher starts: a USR1 that arrives first (a batch-shell warning,
# `#SBATCH --signal=B:USR1@N`, `scancel --batch --signal=USR1`) would
# otherwise end the shell (USR1's default action) and with it the job.
rlaif_step() {
  _job=$1
  shift
  _out=$(rlaif_out_dir "$_job")
  rm -f "${_out:-.}/exit_status"
  _step=""
  _pending=""
  trap '_rlaif_forward' TERM USR1
  "$@" &
  _step=$!
  [ -z "$_pending" ] || kill -USR1 $_step 2>/dev/null
  wait $_step
  RLAIF_STATUS=$?
  # a trapped signal ends `wait` early: wait again until the step is gone
  while kill -0 $_step 2>/dev/null; do
    wait $_step
    RLAIF_STATUS=$?
  done
  trap - TERM USR1
  _marker=$(cat "${_out:-.}/exit_status" 2>/dev/null)
  case "$_marker" in
  [0-9] | [0-9][0-9] | [0-9][0-9][0-9])
    [ "$_marker" = "$RLAIF_STATUS" ] ||
      echo "rlaif exited $_marker (${_out:-.}/exit_status); the launcher said $RLAIF_STATUS"
    RLAIF_STATUS=$_marker
    ;;
  esac
}

# The trap of rlaif_step: SIGUSR1 to the launcher, never SIGTERM (srun
# answers a SIGTERM while the job runs by killing its tasks at once;
# mpiexec kills them about a second later), or remember it for a launcher
# not started yet.
_rlaif_forward() {
  if [ -n "$_step" ]; then kill -USR1 $_step 2>/dev/null; else _pending=1; fi
}

# rlaif_slurm_requeue: after exit 75 under Slurm, requeue the job unless the
# user cancelled it. Requeue when the job still runs (a --signal warning
# before the time limit, a preemption within its GraceTime, a user's
# `scancel --signal=USR1`), or when it ends for its time limit or a
# preemption; a plain `scancel` ends it COMPLETING/CANCELLED with no such
# reason, and the job stays cancelled (the checkpoint is there: resubmit
# to resume).
rlaif_slurm_requeue() {
  _info=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null)
  _state=$(echo "$_info" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1)
  _reason=$(echo "$_info" | sed -n 's/.*Reason=\([^ ]*\).*/\1/p' | head -n 1)
  case "$_state/$_reason" in
  RUNNING/* | PREEMPTED/* | TIMEOUT/* | */TimeLimit | */*reempt*)
    echo "rlaif checkpointed (exit 75): requeueing job $SLURM_JOB_ID ($_state, reason $_reason)"
    scontrol requeue "$SLURM_JOB_ID"
    ;;
  *)
    echo "rlaif checkpointed (exit 75); job $SLURM_JOB_ID was cancelled ($_state, reason $_reason): not requeued (resubmit the job to resume)"
    ;;
  esac
}

# rlaif_unbuilt PHASE...: print the phases this rlaif does not run (not a
# command, or marked "not built yet" by `rlaif --help`); read at run time,
# so a phase built later passes without a change here.
rlaif_unbuilt() {
  _help=$("${RLAIF:-rlaif}" --help 2>/dev/null)
  for _p in "$@"; do
    echo "$_help" | grep -E "^  $_p " | grep -qv "not built yet" || echo "$_p"
  done
}
