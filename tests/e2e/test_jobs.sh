#!/bin/sh
# The job scripts' requeue decision (jobs/pbs-pipeline.pbs, through
# jobs/rlaif-step.sh), run for real: the script itself, a real mpiexec with
# 4 ranks (2 learners, 1 rollout, 1 judge), real signals; only qsub and qstat
# are stand-ins that record their calls (PBS itself is not here).
#  a. SIGTERM to the whole job session at once (script, mpiexec and every
#     rank, as PBS's qdel or a preemption does): Open MPI's mpiexec exits 1
#     although the ranks checkpointed and agreed on 75; the script must
#     still resubmit (it reads <out_dir>/exit_status) and exit 0;
#  b. SIGTERM to the batch shell alone: it passes SIGUSR1 to mpiexec, which
#     forwards it to every rank: the run stops (75) and is resubmitted;
#  c. the resubmitted job runs to the end: exit 0, no resubmission.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
: "${srcdir:=.}"
e2e_tmpdir jobs
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# 5 ms a training step (src/phases/train.c test_pace): on a quiet machine the
# test job's phases would end before the signal goes in
export RLAIF_TEST_STEP_DELAY=${RLAIF_TEST_STEP_DELAY:-0.005}
export OMPI_MCA_rmaps_base_oversubscribe=1

mkdir "$d/bin"
cat >"$d/bin/qsub" <<EOT
#!/bin/sh
echo "qsub \$*" >>"$d/qsub.calls"
EOT
printf '#!/bin/sh\nexit 1\n' >"$d/bin/qstat" # no walltime known: the script's default
chmod +x "$d/bin/qsub" "$d/bin/qstat"
printf 'n1\nn1\nn1\nn1\n' >"$d/nodes"

cat >"$d/job.ini" <<'EOT'
[run]
seed = 3
out_dir = out
phases = sft, collect, rm
log_every = 100000
[model]
n_layer = 1
n_embd = 32
n_head = 2
max_seq_len = 48
[data]
task = arithmetic
n_prompts = 60
max_operand = 9
[sft]
steps = 800
batch_size = 8
eval_prompts = 0
[collect]
responses_per_prompt = 2
max_new_tokens = 6
[rm]
steps = 20
batch_size = 8
[checkpoint]
every = 0
keep = 1
EOT

jobs=$(cd "$srcdir/jobs" && pwd)
# run_script NAME: the PBS script in its own session, as PBS starts it
run_script() {
  (cd "$d" && PATH="$d/bin:$PATH" PBS_O_WORKDIR="$d" PBS_NODEFILE="$d/nodes" PBS_JOBID=7.test \
    RLAIF_JOB="$d/job.ini" RLAIF_JOBS="$jobs" RLAIF="$RLAIF" \
    exec setsid timeout -k 10 300 bash "$jobs/pbs-pipeline.pbs") >"$d/$1.log" 2>&1 &
  script=$!
}
sft_rows() {
  n=$(grep -c '"phase":"sft"' "$d/out/progress.jsonl" 2>/dev/null)
  echo "${n:-0}"
}
# wait until sft trained 3 more steps than $1
wait_sft() {
  i=0
  while [ "$(sft_rows)" -lt $(($1 + 3)) ]; do
    kill -0 $script 2>/dev/null || fail "the job ended before sft trained: $(tail -5 "$d/$2.log")"
    i=$((i + 1))
    [ $i -lt 3000 ] || fail "sft never started: $(tail -5 "$d/$2.log")"
    sleep 0.05
  done
}
# the job's processes: the session setsid made (its id is $script, the
# test's timeout, which is left out: it is not part of the job)
session_pids() { ps -e -o pid=,sid= | awk -v s="$1" '$2 == s && $1 != s { print $1 }'; }

echo "== a. SIGTERM to the whole session"
run_script a
wait_sft 0 a
pids=$(session_pids $script)
echo "a: SIGTERM to $(echo $pids | wc -w) processes: $(ps -o comm= -p "$(echo $pids | tr ' ' ,)" | sort | uniq -c | tr -s ' \n' ' ')"
kill -TERM $pids
wait $script
rc=$?
[ $rc = 0 ] || fail "a: the script exited $rc: $(tail -20 "$d/a.log")"
[ "$(cat "$d/out/exit_status")" = 75 ] || fail "a: exit_status $(cat "$d/out/exit_status")"
[ "$(wc -l <"$d/qsub.calls" 2>/dev/null)" = 1 ] || fail "a: not resubmitted: $(tail -20 "$d/a.log")"
grep -q "RLAIF_JOB=$d/job.ini" "$d/qsub.calls" || fail "a: qsub got $(cat "$d/qsub.calls")"
grep -q "resubmitting" "$d/a.log" || fail "a: no resubmission line"
echo "a: $(grep 'the launcher said' "$d/a.log" || echo 'mpiexec also said 75'); resubmitted"

echo "== b. SIGTERM to the batch shell alone"
base=$(sft_rows)
run_script b
wait_sft "$base" b
bash_pid=$(pgrep -P $script -x bash)
[ -n "$bash_pid" ] || fail "b: no batch shell"
kill -TERM "$bash_pid"
wait $script
rc=$?
[ $rc = 0 ] || fail "b: the script exited $rc: $(tail -20 "$d/b.log")"
[ "$(cat "$d/out/exit_status")" = 75 ] || fail "b: exit_status $(cat "$d/out/exit_status")"
[ "$(wc -l <"$d/qsub.calls")" = 2 ] || fail "b: not resubmitted: $(tail -20 "$d/b.log")"
grep -q "sft: stop requested at step" "$d/b.log" || fail "b: sft did not stop: $(tail -20 "$d/b.log")"
echo "b: stopped in sft and resubmitted"

echo "== c. the resubmitted job finishes"
run_script c
wait $script
rc=$?
[ $rc = 0 ] || fail "c: the script exited $rc: $(tail -20 "$d/c.log")"
[ "$(cat "$d/out/exit_status")" = 0 ] || fail "c: exit_status $(cat "$d/out/exit_status")"
[ "$(wc -l <"$d/qsub.calls")" = 2 ] || fail "c: a finished job was resubmitted"
grep -q "run: 3 phases done" "$d/c.log" || fail "c: $(tail -20 "$d/c.log")"
echo "== d. the logic with stand-ins: walltime, resubmission and its dependency"
mkdir "$d/fake"
cat >"$d/fake/mpiexec" <<EOT
#!/bin/sh
echo "\$*" >"$d/mpiexec.args"
mkdir -p "$d/fake-out"
echo "\$FAKE_RC" >"$d/fake-out/exit_status"
exit "\$FAKE_RC"
EOT
cat >"$d/fake/qstat" <<'EOT'
#!/bin/sh
[ -n "${FAKE_WALL:-}" ] || exit 1
printf 'Job Id: %s\n    Job_Name = rlaif\n    Resource_List.walltime = %s\n    Resource_List.ncpus = 4\n' "$2" "$FAKE_WALL"
EOT
cp "$d/bin/qsub" "$d/fake/qsub"
chmod +x "$d/fake/mpiexec" "$d/fake/qstat"
sed 's/^out_dir = out$/out_dir = fake-out/' "$d/job.ini" >"$d/fake.ini"
# run_fake RC [ENV=VALUE...]: the PBS script with the stand-ins; its exit code
run_fake() {
  _rc=$1
  shift
  rm -f "$d/qsub.calls" "$d/mpiexec.args"
  (cd "$d" && env PATH="$d/fake:$PATH" PBS_O_WORKDIR="$d" PBS_NODEFILE="$d/nodes" PBS_JOBID=42.pbs1 \
    RLAIF_JOB="$d/fake.ini" RLAIF_JOBS="$jobs" RLAIF="$RLAIF" FAKE_RC=$_rc "$@" \
    bash "$jobs/pbs-pipeline.pbs") >"$d/fake.log" 2>&1
}
run_fake 75 FAKE_WALL=00:30:00
rc=$?
[ $rc = 0 ] || fail "d: exit 75: the script exited $rc: $(cat "$d/fake.log")"
[ "$(cat "$d/mpiexec.args")" = "-n 4 $RLAIF run $d/fake.ini --set run.walltime=00:30:00" ] ||
  fail "d: mpiexec got: $(cat "$d/mpiexec.args")"
want="qsub -W depend=afterany:42.pbs1 -v RLAIF_JOB=$d/fake.ini,RLAIF=$RLAIF,RLAIF_JOBS=$jobs $jobs/pbs-pipeline.pbs"
[ "$(cat "$d/qsub.calls")" = "$want" ] || fail "d: qsub got: $(cat "$d/qsub.calls"), not: $want"
echo "d: 75 -> $(cat "$d/qsub.calls")"
run_fake 75 PBS_WALLTIME=5400
[ "$(cat "$d/mpiexec.args")" = "-n 4 $RLAIF run $d/fake.ini --set run.walltime=5400" ] ||
  fail "d: Torque's PBS_WALLTIME: mpiexec got $(cat "$d/mpiexec.args")"
run_fake 0 FAKE_WALL=01:00:00
rc=$?
[ $rc = 0 ] || fail "d: exit 0: the script exited $rc"
[ ! -e "$d/qsub.calls" ] || fail "d: a finished job was resubmitted: $(cat "$d/qsub.calls")"
run_fake 1 FAKE_WALL=01:00:00
rc=$?
[ $rc = 1 ] || fail "d: exit 1: the script exited $rc"
[ ! -e "$d/qsub.calls" ] || fail "d: a failed job was resubmitted: $(cat "$d/qsub.calls")"
echo "d: walltime from qstat and PBS_WALLTIME, resubmitted only on 75, after this job"
echo "test_jobs: ok"
