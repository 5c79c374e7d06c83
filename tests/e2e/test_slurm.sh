#!/bin/sh
# A real single-node Slurm on loopback (no systemd needed): rlaif under
# `srun --mpi=pmix` sees one MPI world; `srun --mpi=none` (no PMI) starts
# singletons, which rlaif must refuse with a clear error; a batch script run
# through sbatch works; srun'd ranks (no binding, no Open MPI local-size
# variable) split the node's CPUs instead of each taking all of them. Skipped (77) when Slurm is not installed or cannot
# start here (not root: slurmd needs it).
set -u
: "${RLAIF:?set by make check}"
for p in slurmctld slurmd srun sbatch munged; do
  command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || { echo "SKIP: $p not installed"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: a private slurmd needs root"; exit 77; }
PATH=$PATH:/usr/sbin
S=$(mktemp -d /tmp/rlaif-slurm.XXXXXX)
chmod 755 "$S"
base=$((20000 + $$ % 20000))
export SLURM_CONF="$S/slurm.conf"
cleanup() {
  scontrol shutdown >/dev/null 2>&1
  sleep 0.5
  [ -f "$S/munge/munged.pid" ] && kill "$(cat "$S/munge/munged.pid")" 2>/dev/null
  for f in "$S/slurmctld.pid" "$S/slurmd.pid"; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  sleep 0.5
  rm -rf "$S" 2>/dev/null || { sleep 1; rm -rf "$S" 2>/dev/null; }
}
trap cleanup EXIT
mkdir -p "$S/munge" "$S/state/ctld" "$S/state/d" "$S/log"
chown munge "$S/munge" 2>/dev/null || true
chmod 755 "$S/munge"
cat >"$SLURM_CONF" <<CONF
ClusterName=rlaiftest
SlurmctldHost=localhost
SlurmctldPort=$base
SlurmdPort=$((base + 1))
AuthType=auth/munge
AuthInfo=socket=$S/munge/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$S/state/ctld
SlurmdSpoolDir=$S/state/d
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SwitchType=switch/none
MpiDefault=pmix
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
EnforcePartLimits=ALL
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
if [ ! -f /etc/munge/munge.key ]; then
  echo "SKIP: no /etc/munge/munge.key (munge package not configured)"
  exit 77
fi
runuser -u munge -- munged --socket="$S/munge/munge.sock" --pid-file="$S/munge/munged.pid" \
  --log-file="$S/munge/munged.log" --seed-file="$S/munge/munged.seed" || { echo "SKIP: munged failed"; exit 77; }
slurmctld -f "$SLURM_CONF" || { echo "SKIP: slurmctld failed"; exit 77; }
slurmd -f "$SLURM_CONF" -N localhost || { echo "SKIP: slurmd failed"; exit 77; }
i=0
until [ "$(sinfo -h -N -o %T 2>/dev/null)" = idle ]; do
  i=$((i + 1))
  if [ $i -gt 100 ]; then echo "SKIP: Slurm node never became idle"; cat "$S"/log/*.log | tail -20; exit 77; fi
  sleep 0.2
done
fail=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

out=$(timeout 120 srun --mpi=pmix -n 2 "$RLAIF" ranks 2>&1)
rc=$?
echo "$out"
if [ $rc = 0 ] && echo "$out" | grep -q "world: 2 ranks"; then echo "ok: srun --mpi=pmix gives one 2-rank world"
else echo "FAIL: srun --mpi=pmix (exit $rc)"; fail=1; fi

# Issue 15: srun sets no OMPI_COMM_WORLD_LOCAL_SIZE and binds nothing here
# (task/none): 2 ranks on this 2-CPU node must each choose 1 thread, and say
# so in their own logs.
rm -rf "$S/logs"
out=$(env -u OMP_NUM_THREADS timeout 120 srun --mpi=pmix -n 2 "$RLAIF" ranks --log-dir "$S/logs" 2>&1)
rc=$?
echo "$out"
if [ $rc = 0 ] && grep -q "threads: 1 on rank 0 (.* shared by 2 of 2 ranks" "$S/logs/rank-00000.log" 2>/dev/null &&
  grep -q "threads: 1 on rank 1 (.* shared by 2 of 2 ranks" "$S/logs/rank-00001.log" 2>/dev/null; then
  echo "ok: srun'd ranks split the node's CPUs (1 thread each)"
else
  echo "FAIL: srun'd ranks should log 1 thread each (exit $rc)"; cat "$S"/logs/*.log 2>/dev/null; fail=1
fi

out=$(timeout 120 srun --mpi=none -n 2 "$RLAIF" ranks 2>&1)
rc=$?
echo "$out"
if [ $rc = 64 ] && echo "$out" | grep -q "Slurm started 2 tasks but none can find the others" && [ "$(echo "$out" | grep -c ^ERROR)" = 1 ]; then
  echo "ok: singletons without PMI are refused"
else echo "FAIL: srun --mpi=none should exit 64 with the launcher error (exit $rc)"; fail=1; fi

cat >"$S/job.sh" <<JOB
#!/bin/sh
srun --mpi=pmix "$RLAIF" ranks
JOB
id=$(sbatch --parsable -n 2 -o "$S/job.out" "$S/job.sh")
i=0
while squeue -h -j "$id" 2>/dev/null | grep -q .; do
  i=$((i + 1)); [ $i -gt 600 ] && break; sleep 0.2
done
if grep -q "world: 2 ranks" "$S/job.out" 2>/dev/null; then echo "ok: sbatch + srun"
else echo "FAIL: sbatch job output:"; cat "$S/job.out" 2>/dev/null; fail=1; fi
exit $fail
