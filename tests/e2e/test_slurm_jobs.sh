#!/bin/sh
# The shipped Slurm job scripts (jobs/), unmodified, under a real
# single-node Slurm (tests/e2e/slurm_env.sh), on a tiny job:
#  ref. slurm-pipeline.sbatch on 2 tasks with `sbatch --wait`: exit 0;
#  a. the same, `scancel --batch --signal=USR1` mid-sft: the batch shell
#     traps it and forwards it, the run checkpoints, exits 75, the job
#     requeues itself, resumes and finishes with results bit-identical to
#     ref (sft, rm checkpoints; the same preference pairs);
#  b. a plain `scancel` mid-sft, the checkpoint slowed to 3 s
#     (RLAIF_TEST_CKPT_DELAY): the ranks still finish it (Slurm's KillWait
#     grace), and the job stays cancelled (not requeued);
#  c. slurm-mpmd.sbatch on 4 tasks (--multi-prog, one line per role; sft
#     and collect) with
#     a job file whose path has spaces; SIGTERM to the batch shell alone
#     mid-sft with a 2 s checkpoint: forwarded as USR1 (srun would kill its
#     tasks at once on SIGTERM), checkpoint, requeue, finish;
#  d. slurm-chain.sh with a phase this rlaif does not run: refused, nothing
#     submitted;
#  e. slurm-chain.sh rm dpo without the sft and collect outputs: rm fails,
#     Slurm cancels dpo (--kill-on-invalid-dep) instead of leaving it pending;
#  f. slurm-chain.sh sft collect: two dependent jobs, each phase's outputs.
# A requeued job waits cred_expire+1 = 6 s (slurm_env.sh) before it runs.
# Skipped (77) only where Slurm cannot start (slurm_env.sh says why).
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
: "${srcdir:=.}"
# The scripts' logic (signals, requeue, chains) does not depend on how rlaif
# was compiled, and this test is the slowest of the suite (~3 min on a
# loaded 2-core machine): the sanitizer configuration of CI skips it.
if grep -q fsanitize "${top_builddir:-.}/config.h" 2>/dev/null; then
  echo "SKIP: the job scripts are tested in the plain build (this one has sanitizers)"
  exit 77
fi
SLURM_CPUS=4 # c needs 4 tasks; each rank still sizes its threads from the 2 real CPUs
. "$srcdir/tests/e2e/slurm_env.sh"
jobs=$(cd "$srcdir/jobs" && pwd)
compare=$(cd "$srcdir/tests/faults" && pwd)/compare.py
d="$S/work"
mkdir -p "$d"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export RLAIF RLAIF_JOBS="$jobs"
# 10 ms a training step: the signals must land while sft still runs (at
# least 1 s of it on a quiet machine)
export RLAIF_TEST_STEP_DELAY=0.01
# SLURM_JOBS_CASES: run only these cases (e.g. "b c"; a needs ref)
cases=" ${SLURM_JOBS_CASES:-ref a b c d e f} "
want() { case "$cases" in *" $1 "*) return 0 ;; esac; return 1; }

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
steps = 100
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

# fresh NAME: a folder with the job file, for one case
fresh() {
  mkdir -p "$d/$1"
  cp "$d/job.ini" "$d/$1/job.ini"
}
sft_rows() {
  n=$(grep -c '"phase":"sft"' "$1/progress.jsonl" 2>/dev/null)
  echo "${n:-0}"
}
# wait_sft OUT_DIR JOBID LOG: until sft has trained 3 steps
wait_sft() {
  i=0
  while [ "$(sft_rows "$1")" -lt 3 ]; do
    squeue -h -j "$2" 2>/dev/null | grep -q . || fail "job $2 ended before sft trained: $(tail -5 "$3")"
    i=$((i + 1))
    [ $i -lt 1500 ] || fail "sft never started: $(tail -5 "$3")"
    sleep 0.1
  done
}
field() { scontrol show job "$1" 2>/dev/null | sed -n "s/.* $2=\([^ ]*\).*/\1/p" | head -n 1; }

t0=$(date +%s)
if want ref; then
  echo "== ref. slurm-pipeline.sbatch, uninterrupted (2 tasks)"
  fresh ref
  (cd "$d/ref" && timeout 300 sbatch --wait -n 2 -o "$d/ref.log" "$jobs/slurm-pipeline.sbatch" job.ini) >/dev/null
  rc=$?
  [ $rc = 0 ] || fail "ref: sbatch --wait exit $rc: $(tail -20 "$d/ref.log")"
  grep -q "run: 3 phases done" "$d/ref.log" || fail "ref: $(tail -20 "$d/ref.log")"
  echo "ref: done in $(($(date +%s) - t0)) s"
fi

if want a; then
  echo "== a. scancel --batch --signal=USR1 mid-sft: requeue, resume, same results"
  t=$(date +%s)
  fresh a
  id=$(cd "$d/a" && sbatch --parsable -n 2 -o "$d/a.log" "$jobs/slurm-pipeline.sbatch" job.ini)
  wait_sft "$d/a/out" "$id" "$d/a.log"
  scancel --batch --signal=USR1 "$id"
  slurm_wait_gone "$id" 180 || fail "a: job $id still queued: $(tail -20 "$d/a.log")"
  grep -q "sft: stop requested at step" "$d/a.log" || fail "a: sft did not stop: $(tail -20 "$d/a.log")"
  grep -q "requeueing job $id" "$d/a.log" || fail "a: not requeued: $(tail -20 "$d/a.log")"
  [ "$(field "$id" JobState)" = COMPLETED ] || fail "a: job state $(field "$id" JobState): $(tail -20 "$d/a.log")"
  [ "$(field "$id" Restarts)" = 1 ] || fail "a: $(field "$id" Restarts) restarts"
  [ "$(cat "$d/a/out/exit_status")" = 0 ] || fail "a: exit_status $(cat "$d/a/out/exit_status")"
  /usr/bin/python3 "$compare" "$d/ref/out" "$d/a/out" sft collect rm || fail "a: results differ from ref"
  echo "a: stopped in sft, requeued once, finished, results equal ref ($(($(date +%s) - t)) s)"
fi

if want b; then
  echo "== b. plain scancel mid-sft, 3 s checkpoint: checkpoint written, job stays cancelled"
  t=$(date +%s)
  fresh b
  id=$(cd "$d/b" && RLAIF_TEST_CKPT_DELAY=3 sbatch --parsable -n 2 -o "$d/b.log" "$jobs/slurm-pipeline.sbatch" job.ini)
  wait_sft "$d/b/out" "$id" "$d/b.log"
  scancel "$id"
  slurm_wait_gone "$id" 120 || fail "b: job $id still queued (requeued after a user's cancel?): $(tail -20 "$d/b.log")"
  sleep 1
  [ "$(field "$id" JobState)" = CANCELLED ] || fail "b: job state $(field "$id" JobState)"
  [ "$(field "$id" Restarts)" = 0 ] || fail "b: requeued after scancel"
  grep -q "requeueing" "$d/b.log" && fail "b: the script requeued a cancelled job: $(tail -20 "$d/b.log")"
  grep -q "was cancelled (.*): not requeued" "$d/b.log" || fail "b: no 'not requeued' line: $(tail -20 "$d/b.log")"
  [ "$(cat "$d/b/out/exit_status" 2>/dev/null)" = 75 ] || fail "b: exit_status $(cat "$d/b/out/exit_status" 2>/dev/null)"
  step=$(sed -n 's/.*sft: stop requested at step \([0-9]*\)\/.*/\1/p' "$d/b.log" | head -n 1)
  [ -n "$step" ] || fail "b: sft did not stop: $(tail -20 "$d/b.log")"
  ck=$(printf '%s/b/out/ckpt/sft-%08d.h5' "$d" "$step")
  [ -f "$ck" ] || fail "b: no checkpoint at the stop step $step: $(ls "$d/b/out/ckpt")"
  ls "$d/b/out/ckpt/"*.tmp >/dev/null 2>&1 && fail "b: a checkpoint was cut off: $(ls "$d/b/out/ckpt")"
  echo "b: sft checkpointed at step $step (3 s write), job CANCELLED, not requeued ($(($(date +%s) - t)) s)"
fi

if want c; then
  echo "== c. slurm-mpmd.sbatch, 4 tasks, job file path with spaces, SIGTERM to the batch shell"
  t=$(date +%s)
  c="$d/c dir"
  mkdir -p "$c"
  # sft and collect only: 4 ranks on 2 cores are slow, and rm adds nothing here
  sed 's/^phases = .*/phases = sft, collect/' "$d/job.ini" >"$c/my job.ini"
  id=$(cd "$c" && RLAIF_TEST_CKPT_DELAY=2 sbatch --parsable -o "$d/c.log" "$jobs/slurm-mpmd.sbatch" "my job.ini")
  wait_sft "$c/out" "$id" "$d/c.log"
  scancel --batch --signal=TERM "$id"
  slurm_wait_gone "$id" 180 || fail "c: job $id still queued: $(tail -20 "$d/c.log")"
  grep -q "sft: stop requested at step" "$d/c.log" || fail "c: sft did not stop: $(tail -20 "$d/c.log")"
  grep -q "requeueing job $id" "$d/c.log" || fail "c: not requeued: $(tail -20 "$d/c.log")"
  [ "$(field "$id" JobState)" = COMPLETED ] || fail "c: job state $(field "$id" JobState): $(tail -20 "$d/c.log")"
  grep -q "run: 2 phases done" "$d/c.log" || fail "c: $(tail -20 "$d/c.log")"
  echo "c: stopped in sft, requeued, finished on 4 tasks ($(($(date +%s) - t)) s)"
fi

if want d; then
  echo "== d. slurm-chain.sh with a phase not built: refused before any sbatch"
  unbuilt=$("$RLAIF" --help | sed -n 's/^  \([a-z-]*\) .*(not built yet).*/\1/p' | head -n 1)
  fresh d
  out=$(cd "$d/d" && "$jobs/slurm-chain.sh" job.ini sft ${unbuilt:-} nosuch 2>&1)
  rc=$?
  [ $rc = 64 ] || fail "d: slurm-chain.sh exit $rc: $out"
  echo "$out" | grep -q "not built in this rlaif: ${unbuilt:+$unbuilt }nosuch" || fail "d: $out"
  [ -z "$(squeue -h -o %i)" ] || fail "d: something was submitted: $(squeue)"
  echo "d: $out"
fi

if want e; then
  echo "== e. slurm-chain.sh rm dpo without inputs: rm fails, dpo is cancelled"
  t=$(date +%s)
  fresh e
  out=$(cd "$d/e" && RLAIF_SBATCH_ARGS="-n 2" "$jobs/slurm-chain.sh" job.ini rm dpo 2>&1) || fail "e: $out"
  rm_id=$(echo "$out" | sed -n 's/^rm: job //p')
  dpo_id=$(echo "$out" | sed -n 's/^dpo: job //p')
  [ -n "$rm_id" ] && [ -n "$dpo_id" ] || fail "e: $out"
  slurm_wait_gone "$dpo_id" 120 || fail "e: dpo job still queued: $(squeue -j "$dpo_id")"
  slurm_wait_gone "$rm_id" 30 || fail "e: rm job still queued"
  [ "$(field "$rm_id" JobState)" = FAILED ] || fail "e: rm job $(field "$rm_id" JobState)"
  [ "$(field "$dpo_id" JobState)" = CANCELLED ] || fail "e: dpo job $(field "$dpo_id" JobState)"
  grep -q "rlaif rm failed (exit [0-9]*): the phases chained after it are cancelled" "$d/e/rlaif-rlaif-rm-$rm_id.out" ||
    fail "e: $(tail -5 "$d/e/rlaif-rlaif-rm-$rm_id.out")"
  echo "e: rm FAILED, dpo CANCELLED ($(field "$dpo_id" Reason)) ($(($(date +%s) - t)) s)"
fi

if want f; then
  echo "== f. slurm-chain.sh sft collect: dependent jobs, each phase's outputs"
  t=$(date +%s)
  fresh f
  out=$(cd "$d/f" && RLAIF_SBATCH_ARGS="-n 2" "$jobs/slurm-chain.sh" job.ini sft collect 2>&1) || fail "f: $out"
  sft_id=$(echo "$out" | sed -n 's/^sft: job //p')
  col_id=$(echo "$out" | sed -n 's/^collect: job //p')
  [ "$(field "$col_id" Dependency)" = "afterok:${sft_id}(unfulfilled)" ] ||
    [ "$(field "$col_id" JobState)" != PENDING ] || fail "f: collect depends on $(field "$col_id" Dependency)"
  slurm_wait_gone "$col_id" 120 || fail "f: collect job still queued"
  for j in "$sft_id" "$col_id"; do
    [ "$(field "$j" JobState)" = COMPLETED ] || fail "f: job $j $(field "$j" JobState): $(tail "$d"/f/*.out)"
  done
  ls "$d/f/out/ckpt/"sft-*.h5 >/dev/null 2>&1 || fail "f: no sft checkpoint"
  [ -f "$d/f/out/preferences.h5" ] || fail "f: no preferences.h5: $(ls "$d/f/out")"
  echo "f: sft then collect, both COMPLETED, outputs present ($(($(date +%s) - t)) s)"
fi
echo "test_slurm_jobs: ok ($(($(date +%s) - t0)) s)"
