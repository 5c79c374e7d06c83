# slurm_env.sh - sourced by the Slurm tests: start a private single-node
# Slurm on loopback (no systemd), stop it on exit. Exits 77 with the reason
# when Slurm is not installed or cannot start here (slurmd needs root).
#   . tests/e2e/slurm_env.sh   (then: $S scratch folder, SLURM_CONF exported)
# SLURM_CPUS: the node's CPU count as Slurm sees it (default 2, the real
# count here; more lets a 4-task job run, slurmd told to trust the file).
# SLURM_EXTRA_CONF: more slurm.conf lines, after the node and partition
# (e.g. KillWait=, preemption settings, another partition).
# Two tests may run their Slurms at once (make -j2): each has its own ports,
# TmpFS (the PMIx plugin keeps a folder per job step there) and first job id,
# so no two steps share a name (seen: "task launch failed" when both were 1.0).
# cred_expire=5 (the smallest Slurm takes) makes a requeued job eligible
# again after ~6 s instead of ~2 minutes, so requeue tests stay short.
for p in slurmctld slurmd srun sbatch munged; do
  command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || { echo "SKIP: $p not installed"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: a private slurmd needs root"; exit 77; }
[ -f /etc/munge/munge.key ] || { echo "SKIP: no /etc/munge/munge.key (munge package not configured)"; exit 77; }
PATH=$PATH:/usr/sbin
S=$(mktemp -d /tmp/rlaif-slurm.XXXXXX)
chmod 755 "$S"
slurm_base=$((20000 + $$ % 20000))
export SLURM_CONF="$S/slurm.conf"
slurm_stop() {
  scontrol shutdown >/dev/null 2>&1
  sleep 0.5
  [ -f "$S/munge/munged.pid" ] && kill "$(cat "$S/munge/munged.pid")" 2>/dev/null
  for f in "$S/slurmctld.pid" "$S/slurmd.pid"; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  sleep 0.5
  rm -rf "$S" 2>/dev/null || { sleep 1; rm -rf "$S" 2>/dev/null; }
}
trap slurm_stop EXIT
mkdir -p "$S/munge" "$S/state/ctld" "$S/state/d" "$S/log" "$S/tmp"
chown munge "$S/munge" 2>/dev/null || true
chmod 755 "$S/munge"
cat >"$SLURM_CONF" <<CONF
ClusterName=rlaiftest
SlurmctldHost=localhost
SlurmctldPort=$slurm_base
SlurmdPort=$((slurm_base + 1))
AuthType=auth/munge
AuthInfo=socket=$S/munge/munge.sock,cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$S/state/ctld
TmpFS=$S/tmp
FirstJobId=$slurm_base
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
${SLURM_CPUS:+SlurmdParameters=config_overrides}
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${SLURM_CPUS:-2} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
${SLURM_EXTRA_CONF:-}
CONF
runuser -u munge -- munged --socket="$S/munge/munge.sock" --pid-file="$S/munge/munged.pid" \
  --log-file="$S/munge/munged.log" --seed-file="$S/munge/munged.seed" || { echo "SKIP: munged failed"; exit 77; }
slurmctld -f "$SLURM_CONF" || { echo "SKIP: slurmctld failed"; exit 77; }
slurmd -f "$SLURM_CONF" -N localhost || { echo "SKIP: slurmd failed"; exit 77; }
slurm_i=0
until [ "$(sinfo -h -N -p debug -o %T 2>/dev/null)" = idle ]; do
  slurm_i=$((slurm_i + 1))
  if [ $slurm_i -gt 100 ]; then echo "SKIP: Slurm node never became idle"; cat "$S"/log/*.log | tail -20; exit 77; fi
  sleep 0.2
done

# slurm_wait_gone JOBID [SECONDS]: wait until the job has left the queue
# (finished, failed or cancelled; a requeued job stays); 1 on timeout.
slurm_wait_gone() {
  _end=$(($(date +%s) + ${2:-120}))
  while squeue -h -j "$1" 2>/dev/null | grep -q .; do
    [ "$(date +%s)" -lt $_end ] || return 1
    sleep 0.2
  done
}
