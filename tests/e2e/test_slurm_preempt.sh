#!/bin/sh
# Preemption of a whole pipeline (sft, collect, rm, ppo) under a real
# single-node Slurm 22.05 (tests/e2e/slurm_env.sh), the shipped
# jobs/slurm-pipeline.sbatch unmodified, the judge behind tools/dev/mock-judge
# (so paid requests are counted), a tiny job:
#  ref. uninterrupted on 4 tasks: the reference (checkpoints, preferences);
#  c. `scancel --signal=USR1` to the steps (the ranks, not the batch shell)
#     mid-collect on 4 tasks, once answers are journaled;
#  r. `scancel --batch --signal=USR1` (the batch shell alone, which forwards
#     it) mid-rm on 2 tasks;
#  p. `scancel --full --signal=USR1` (batch shell and ranks: each rank gets
#     it twice) mid-ppo on 4 tasks;
#  t. a time limit: `--time=1 --signal=USR1@5` (no B:, so the ranks) mid-rm
#     on 2 tasks, beside c, r and p;
#  each: the phase stops, the job checkpoints, exits 75, requeues itself,
#  resumes and finishes; every checkpoint (parameters and AdamW moments)
#  equals ref's bit for bit, the same preference pairs (count and content),
#  and the mock judge counted 0 requests paid twice (a USR1 stop is
#  graceful: every answer read is stored as a pair or journaled; a pair
#  judged in one order at the stop is finished from the journal).
# A requeued job started again 18-42 s after its requeue here (the next
# scheduling pass that takes it; not the 6 s of cred_expire alone). The test
# takes ~4.5 min on the loaded 2-core machine (t's 2-3 runs beside c, r, p).
# c, r, p and t start from ref's outputs of the phases before theirs (as a
# requeued job would find them): rlaif run skips those, so each costs about
# one phase and a requeue. 2 colocated tasks and 4 split ones (2 learners + 1 rollout + 1
# judge) both train on 2 learner ranks: the same bits (r checks it).
# Slurm's --signal is coarse: slurmctld checks time limits every 30 s
# (at moments of its own) and sends the warning at a check that finds at
# most N + 30 s left (sbatch(1): "up to 60 seconds earlier"), the kill at
# the first that finds none:
# measured here with --time=1, @5, @20 and @45 all signalled 27 s after the
# start and the time limit killed at 86 s. So @5 lands 25-55 s after the
# start; t's rm is paced to 60 s (1.5 s a step) so the warning lands inside
# it whatever the check's moment. The requeued run gets a new limit and may
# be warned again (one more requeue, the same outcome): Restarts >= 1.
# A heterogeneous job (`#SBATCH hetjob`) is not tested: it never starts on
# one node. Tried on this Slurm 22.05.8 with 4 CPUs, `#SBATCH -n 2`,
# `#SBATCH hetjob`, `#SBATCH -n 2`: both components stay PENDING
# (Resources). Only the backfill scheduler starts hetjobs, and it books a
# whole node per component in its plan, so it plans the second component
# after the first one's end ("HETJOB: Hetjob 1 should be able to start in
# 31536000 seconds" in slurmctld's log with DebugFlags=Hetjob); the same on
# a partition with OverSubscribe=YES and --oversubscribe --time=2 (each
# component planned at the other's end). A hetjob needs a node per
# component (jobs/slurm-mpmd.sbatch says so).
# Skipped (77) where Slurm cannot start, and in the sanitizer build (the job
# scripts' logic does not depend on how rlaif was compiled).
set -u
: "${RLAIF:?set by make check}" "${top_builddir:?set by make check}"
: "${srcdir:=.}"
if grep -q fsanitize "$top_builddir/config.h" 2>/dev/null; then
  echo "SKIP: the job scripts are tested in the plain build (this one has sanitizers)"
  exit 77
fi
# 6 CPUs: t's 2 tasks (asleep most of the time) run beside c, r or p; each
# rank still sizes its threads from the 2 real CPUs
SLURM_CPUS=6
. "$srcdir/tests/e2e/slurm_env.sh"
jobs=$(cd "$srcdir/jobs" && pwd)
compare=$(cd "$srcdir/tests/faults" && pwd)/compare.py
mock="$top_builddir/tools/dev/mock_judge"
top_srcdir=${top_srcdir:-$srcdir}
. "$top_srcdir/tests/e2e/lib.sh" # py, fail, mock_stat
d="$S/work"
mkdir -p "$d"
mpids=""
trap 'kill $mpids 2>/dev/null; slurm_stop' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export RLAIF RLAIF_JOBS="$jobs" RLAIF_TEST_JUDGE_KEY=test-key
# 50 ms a training step: each learner phase runs seconds, so a signal sent
# once its first step is logged lands inside it
export RLAIF_TEST_STEP_DELAY=0.05
# SLURM_PREEMPT_CASES: run only these cases (c, r and p need ref)
cases=" ${SLURM_PREEMPT_CASES:-ref c r p t} "
want() { case "$cases" in *" $1 "*) return 0 ;; esac; return 1; }

# job NAME [LATENCY]: a folder with the job file, the judge a fresh mock
# answering in LATENCY s (0.05; its counters are this run's); sets $port
job() {
  mkdir -p "$d/$1"
  "$mock" --port-file "$d/$1.port" --idle-exit 900 --latency "${2:-0.05}" >"$d/$1.mock.log" 2>&1 &
  mpids="$mpids $!"
  i=0
  while [ ! -s "$d/$1.port" ]; do
    i=$((i + 1))
    [ $i -lt 1000 ] || fail "mock judge did not start: $(cat "$d/$1.mock.log")"
    sleep 0.05
  done
  port=$(cat "$d/$1.port")
  cat >"$d/$1/job.ini" <<EOT
[run]
seed = 3
out_dir = out
phases = sft, collect, rm, ppo
log_every = 100000
[model]
n_layer = 1
n_embd = 32
n_head = 2
max_seq_len = 48
[data]
task = arithmetic
n_prompts = 48
max_operand = 9
[sft]
steps = 40
batch_size = 8
eval_prompts = 0
[collect]
responses_per_prompt = 2
pairs_per_prompt = 1
max_new_tokens = 6
[rm]
steps = 40
batch_size = 8
[ppo]
steps = 8
batch_size = 8
samples_per_prompt = 2
epochs = 2
minibatches = 2
micro_batch = 4
max_new_tokens = 6
[judge]
backend = openai
model = mock-judge
base_url = http://127.0.0.1:$port/v1
api_key_env = RLAIF_TEST_JUDGE_KEY
max_inflight = 2
timeout = 20
[checkpoint]
every = 0
keep = 1
EOT
}
npairs() { "$py" -c "import h5py,sys; print(len(h5py.File(sys.argv[1],'r')['pairs']))" "$1/preferences.h5"; }
rows() { # rows OUT_DIR PHASE: progress rows the phase has logged
  n=$(grep -c "\"phase\":\"$2\"" "$1/progress.jsonl" 2>/dev/null)
  echo "${n:-0}"
}
field() { scontrol show job "$1" 2>/dev/null | sed -n "s/.* $2=\([^ ]*\).*/\1/p" | head -n 1; }
# wait_for WHAT JOBID LOG CONDITION...: poll CONDITION (a command) until it
# holds; fail when the job leaves the queue first or after 300 s
wait_for() {
  what=$1 id=$2 log=$3
  shift 3
  end=$(($(date +%s) + 300))
  until "$@"; do
    squeue -h -j "$id" 2>/dev/null | grep -q . || fail "job $id ended before $what: $(tail -5 "$log")"
    [ "$(date +%s)" -lt $end ] || fail "$what never came: $(tail -5 "$log")"
    sleep 0.1
  done
}
journaled() { [ -n "$(find "$1" -name 'judge-rank-*.jnl' -size +0 2>/dev/null)" ]; }
logged() { [ "$(rows "$1" "$2")" -ge "${3:-1}" ]; }
# seed NAME PHASE...: NAME's out_dir starts with ref's outputs of PHASE...
seed() {
  n=$1
  shift
  mkdir -p "$d/$n/out/ckpt"
  for ph in "$@"; do
    case $ph in
    collect) cp "$d/ref/out/preferences.h5" "$d/$n/out/" ;;
    *) cp "$d/ref/out/ckpt/$ph"-*.h5 "$d/$n/out/ckpt/" ;;
    esac
  done
}
# finished NAME ID STOPLINE: the job stopped with STOPLINE, requeued itself,
# resumed and finished; ref's results; nothing paid twice
finished() {
  n=$1 id=$2 stop=$3 log="$d/$1.log"
  slurm_wait_gone "$id" 300 || fail "$n: job $id still queued: $(tail -20 "$log")"
  grep -q "$stop" "$log" || fail "$n: no '$stop': $(tail -30 "$log")"
  grep -q "requeueing job $id" "$log" || fail "$n: not requeued: $(tail -20 "$log")"
  [ "$(field "$id" JobState)" = COMPLETED ] || fail "$n: job state $(field "$id" JobState): $(tail -20 "$log")"
  restarts=$(field "$id" Restarts)
  [ "$restarts" -ge 1 ] || fail "$n: $restarts restarts"
  [ "$(cat "$d/$n/out/exit_status")" = 0 ] || fail "$n: exit_status $(cat "$d/$n/out/exit_status")"
  phs=$(sed -n 's/^phases = //p' "$d/$n/job.ini" | tr ',' ' ')
  # shellcheck disable=SC2086
  grep -q "run: $(echo $phs | wc -w) phases done" "$log" || fail "$n: $(tail -20 "$log")"
  # shellcheck disable=SC2086
  "$py" "$compare" "$d/ref/out" "$d/$n/out" $phs || fail "$n: results differ from ref"
  [ "$(npairs "$d/$n/out")" = "$pairs" ] || fail "$n: $(npairs "$d/$n/out") preference pairs, ref $pairs"
  rep=$(mock_stat "$port" paid_repeats)
  [ "$rep" = 0 ] || fail "$n: $rep judge requests paid twice"
  echo "$n: $(grep -o "${stop}[^:]*" "$log" | head -n 1); requeued $restarts time(s), finished; ref's bits, $pairs pairs, $(mock_stat "$port" delivered) judge answers paid, 0 twice"
}
# submit NAME ARGS...: sbatch the pipeline job from NAME's folder
submit() {
  n=$1
  shift
  (cd "$d/$n" && sbatch --parsable -o "$d/$n.log" "$@" "$jobs/slurm-pipeline.sbatch" job.ini)
}

t0=$(date +%s)
if want ref; then
  echo "== ref. uninterrupted, 4 tasks"
  job ref
  (cd "$d/ref" && timeout 600 sbatch --wait -n 4 -o "$d/ref.log" "$jobs/slurm-pipeline.sbatch" job.ini) >/dev/null
  rc=$?
  [ $rc = 0 ] || fail "ref: sbatch --wait exit $rc: $(tail -20 "$d/ref.log")"
  grep -q "run: 4 phases done" "$d/ref.log" || fail "ref: $(tail -20 "$d/ref.log")"
  pairs=$(npairs "$d/ref/out")
  [ "$pairs" -gt 0 ] || fail "ref: no preference pairs"
  [ "$(mock_stat "$port" paid_repeats)" = 0 ] || fail "ref: the uninterrupted run paid twice"
  echo "ref: $pairs pairs, $(mock_stat "$port" delivered) judge answers, done in $(($(date +%s) - t0)) s"
fi

# t runs beside c, r and p (its rm is paced to 60 s, 1.5 s a step, asleep
# most of the time): started now, checked at the end
if want t; then
  echo "== t. --time=1 --signal=USR1@5 (the ranks): the time-limit warning lands mid-rm, 2 tasks"
  tt=$(date +%s)
  job t
  tport=$port
  seed t sft collect
  sed -i 's/^phases = .*/phases = sft, collect, rm/' "$d/t/job.ini"
  tid=$(cd "$d/t" && RLAIF_TEST_STEP_DELAY=1.5 sbatch --parsable -o "$d/t.log" -n 2 --time=1 --signal=USR1@5 "$jobs/slurm-pipeline.sbatch" job.ini)
fi

if want c; then
  echo "== c. scancel --signal=USR1 (the ranks) mid-collect, 4 tasks"
  t=$(date +%s)
  # 0.1 s an answer (the same answers): collect lasts >= 4.7 s (94 calls,
  # 2 in flight), room for scancel to land after the first journaled one
  job c 0.1
  seed c sft
  id=$(submit c -n 4)
  wait_for "a journaled answer" "$id" "$d/c.log" journaled "$d/c/out"
  scancel --signal=USR1 "$id"
  finished c "$id" "collect: stopped (signal 10)"
  grep -q "collect: resuming: " "$d/c.log" || fail "c: collect did not resume: $(tail -20 "$d/c.log")"
  # an answer journaled for a pair not yet stored at the stop is reused
  echo "c: the resumed collect: $(sed -n 's/.*judge calls [0-9]* (\(.*\)), consistency.*/\1/p' "$d/c.log" | tail -n 1)"
  echo "c: $(($(date +%s) - t)) s"
fi

# mid_phase NAME TASKS PHASE [SCANCEL-OPTION]: NAME's job on TASKS tasks,
# `scancel [OPTION] --signal=USR1` once PHASE has logged its first step
mid_phase() {
  t=$(date +%s)
  id=$(submit "$1" -n "$2")
  wait_for "$3's first step" "$id" "$d/$1.log" logged "$d/$1/out" "$3"
  # shellcheck disable=SC2086
  scancel ${4:-} --signal=USR1 "$id"
  finished "$1" "$id" "$3: stop requested at step"
  echo "$1: $(($(date +%s) - t)) s"
}

if want r; then
  echo "== r. scancel --batch --signal=USR1 (the batch shell) mid-rm, 2 tasks"
  job r
  seed r sft collect
  mid_phase r 2 rm --batch
fi

if want p; then
  echo "== p. scancel --full --signal=USR1 (batch shell and ranks) mid-ppo, 4 tasks"
  job p
  seed p sft collect rm
  mid_phase p 4 ppo --full
fi

if want t; then
  port=$tport
  finished t "$tid" "rm: stop requested at step"
  # when the warning came: the job's first line to the stop line
  at() { date -d "$(sed -n "/$1/{s/^\[\([^]]*\)\].*/\1/p;q}" "$d/t.log")" +%s; }
  echo "t: the first warning's stop came $(($(at 'stop requested') - $(at '^\['))) s after the job's first line; $(($(date +%s) - tt)) s"
fi
echo "test_slurm_preempt: ok ($(($(date +%s) - t0)) s)"
