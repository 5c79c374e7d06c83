#!/bin/sh
# `rlaif sft` as separate jobs on a tiny model (about 20 s):
#  a. 1 learner and 2 learners (mpiexec -n 2) compute the same run: per-step
#     losses and final parameters agree within tolerances that only allow for
#     a different floating-point summation order; 2 learners of a split
#     4-rank layout (plus an idle rollout and judge rank) give the same bits
#     as 2 colocated ones;
#  b. --stop-after 7 (the stop flag, as SIGTERM sets it, on learner 0 only)
#     checkpoints and exits 75; the rerun finishes, and its final parameters,
#     moments and counters equal the uninterrupted run's bit for bit (same
#     learner count); metrics hold each step once; a rerun of a finished phase
#     is skipped; a run stopped on 2 learners resumes on 1; a real SIGTERM
#     mid-run does the same as --stop-after;
#  c. JSONL demonstrations, and bad inputs: missing/malformed data.sft,
#     missing init_from, too-long examples -> one ERROR line, the right code.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
check="$top_srcdir/tests/e2e/check_sft.py"
e2e_tmpdir sft
export OMP_NUM_THREADS=1

cat >"$d/job.ini" <<'EOF'
[run]
seed = 5
log_every = 4
[model]
n_layer = 2
n_embd = 32
n_head = 2
max_seq_len = 32
[data]
task = arithmetic
; 12 steps x 8 = 96 sequences: 2.4 epochs, so batches cross epoch boundaries
n_prompts = 40
max_operand = 20
[sft]
steps = 12
batch_size = 8
micro_batch = 2
lr = 3e-3
warmup_steps = 2
eval_prompts = 0
[checkpoint]
every = 5
keep = 10
EOF
job="$d/job.ini"
final=ckpt/sft-00000012.h5
sft1() { (cd "$d" && timeout 120 "$RLAIF" sft "$job" "$@") </dev/null >"$d/out" 2>&1; }
sft2() { (cd "$d" && timeout 120 "$mpi" -n 2 --oversubscribe "$RLAIF" sft "$job" "$@") </dev/null >"$d/out" 2>&1; }

echo "== a. 1 learner vs 2 learners"
sft1 --set run.out_dir=one || fail "1 learner: $(cat "$d/out")"
sft2 --set run.out_dir=two || fail "2 learners: $(cat "$d/out")"
grep -q "on 2 learner(s)" "$d/out" || fail "expected 2 learners: $(cat "$d/out")"
# Tolerances: the same sequences are summed in another grouping (micro-batches
# of another shape, gradients summed by MPI_Reduce_scatter), so float32
# rounding differs at ~1e-7 relative per sum, and twelve AdamW steps carry it
# along. Measured: losses 2.3e-8 relative, parameters 9.4e-7 relative to each
# tensor's largest entry (the attention key bias, whose true gradient is zero,
# is only bounded: see tests/e2e/check_sft.py). Tolerances 1e-5 leave 10-400x
# headroom; a loss normalised by the local instead of the global token count
# is off by ~2x, a lost or doubled shard by far more than 1e-5.
"$py" "$check" losses "$d/one" "$d/two" 1e-5 || fail "losses differ"
"$py" "$check" params "$d/one/$final" "$d/two/$final" 1e-5 || fail "params differ"

# split layout on 4 ranks: 2 learners train, the rollout and judge ranks wait
# (no deadlock); the same 2 learners compute the same bits as the colocated run
(cd "$d" && timeout 120 "$mpi" -n 4 --oversubscribe "$RLAIF" sft "$job" --set run.out_dir=split \
  --set ranks.layout=split --set ranks.learner=2 --set ranks.rollout=1 --set ranks.judge=1) \
  </dev/null >"$d/out" 2>&1 || fail "split layout: $(cat "$d/out")"
grep -q "on 2 learner(s)" "$d/out" || fail "expected 2 learners: $(cat "$d/out")"
"$py" "$check" params "$d/two/$final" "$d/split/$final" exact || fail "split layout differs"

echo "== b. stop at step 7, resume, compare with the uninterrupted run"
sft2 --set run.out_dir=stop --stop-after 7
rc=$?
[ $rc = 75 ] || fail "expected exit 75 after --stop-after, got $rc: $(cat "$d/out")"
grep -q "stop requested at step 7/12" "$d/out" || fail "no stop line: $(cat "$d/out")"
[ -f "$d/stop/ckpt/sft-00000007.h5" ] || fail "no checkpoint at step 7: $(ls "$d/stop/ckpt")"
sft2 --set run.out_dir=stop || fail "resume: $(cat "$d/out")"
grep -q "resuming from stop/ckpt/sft-00000007.h5 at step 7/12" "$d/out" || fail "$(cat "$d/out")"
"$py" "$check" params "$d/two/$final" "$d/stop/$final" exact || fail "resumed run differs"
"$py" "$check" rows "$d/stop" 12 || fail "metrics rows"
before=$(ls -l "$d/stop/ckpt")
sft2 --set run.out_dir=stop || fail "rerun of a finished phase: $(cat "$d/out")"
grep -q "sft: already complete (stop/ckpt/sft-00000012.h5, step 12, done); skipping" "$d/out" ||
  fail "finished phase not skipped: $(cat "$d/out")"
[ "$before" = "$(ls -l "$d/stop/ckpt")" ] || fail "a skipped phase wrote checkpoints"
# another learner count: stop on 2, resume on 1 (moments re-sharded)
sft2 --set run.out_dir=moved --stop-after 6
[ $? = 75 ] || fail "stop on 2 learners: $(cat "$d/out")"
sft1 --set run.out_dir=moved || fail "resume on 1 learner: $(cat "$d/out")"
"$py" "$check" params "$d/one/$final" "$d/moved/$final" 1e-5 || fail "2 -> 1 learners differs"

# a real SIGTERM, sent to a 1-learner run mid-training (e.g. scancel): the
# step in progress finishes, then checkpoint and exit 75; the rerun's result
# equals an uninterrupted run's bit for bit
many="--set sft.steps=1500 --set checkpoint.every=0"
# shellcheck disable=SC2086
sft1 --set run.out_dir=full $many || fail "uninterrupted 1500 steps: $(cat "$d/out")"
(cd "$d" && exec "$RLAIF" sft "$job" --set run.out_dir=term $many) </dev/null >"$d/term.out" 2>&1 &
pid=$!
i=0
while [ "$(cat "$d/term/progress.jsonl" 2>/dev/null | grep -c '"phase":"sft"')" -lt 20 ] &&
  [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 75 ] || fail "SIGTERM: exit $rc, expected 75: $(cat "$d/term.out")"
grep -q "stop requested at step" "$d/term.out" || fail "no stop line: $(cat "$d/term.out")"
grep -q "checkpointed and stopping (SIGTERM)" "$d/term.out" || fail "$(cat "$d/term.out")"
echo "SIGTERM: $(grep 'stop requested' "$d/term.out" | sed 's/^\[[^]]*\] //')"
# shellcheck disable=SC2086
sft1 --set run.out_dir=term $many || fail "resume after SIGTERM: $(cat "$d/out")"
"$py" "$check" params "$d/full/ckpt/sft-00001500.h5" "$d/term/ckpt/sft-00001500.h5" exact ||
  fail "run resumed after SIGTERM differs"

echo "== c. JSONL demonstrations and bad inputs"
printf '%s\n' '{"prompt": "Say hi", "response": "hi"}' '' \
  '{"prompt": "Say ok", "response": "ok", "id": 3}' >"$d/demos.jsonl"
sft1 --set run.out_dir=jsonl --set data.sft=demos.jsonl --set sft.steps=3 ||
  fail "JSONL demonstrations: $(cat "$d/out")"
grep -q "sft: 2 demonstrations" "$d/out" || fail "$(cat "$d/out")"
printf '%s\n' '{"prompt": "a", "response": "b"}' '{"prompt": "a"}' >"$d/missing_field.jsonl"
printf '%s\n' '{"prompt": "a", "response": "b"}' '' '{"prompt": "a", "response": ' >"$d/bad_json.jsonl"
printf '%s\n' '{"prompt": "a", "response": 7}' >"$d/not_string.jsonl"
long=$(printf 'x%.0s' $(seq 1 40))
printf '{"prompt": "%s", "response": "b"}\n' "$long" >"$d/long.jsonl"
# ranks|exit code|expected text|arguments
while IFS='|' read -r np code expect args; do
  # shellcheck disable=SC2086
  if [ "$np" = 1 ]; then sft1 --set run.out_dir=bad $args; else sft2 --set run.out_dir=bad $args; fi
  got=$?
  [ "$got" = "$code" ] || fail "$args: exit $got, expected $code: $(cat "$d/out")"
  grep -qF -- "$expect" "$d/out" || fail "$args: no '$expect' in: $(cat "$d/out")"
  [ "$(grep -c '^ERROR' "$d/out")" = 1 ] || fail "$args: not exactly one ERROR line: $(cat "$d/out")"
  echo "ok: $args -> $code: $(grep '^ERROR' "$d/out")"
done <<'EOF'
1|66|ERROR: data.sft: nothere.jsonl: fopen: No such file|--set data.sft=nothere.jsonl
1|64|missing_field.jsonl:2: missing field "response"|--set data.sft=missing_field.jsonl
2|64|bad_json.jsonl:3: invalid JSON|--set data.sft=bad_json.jsonl
1|64|not_string.jsonl:1: field "response" is not a string|--set data.sft=not_string.jsonl
2|64|long.jsonl: record 1: prompt + response + EOS is 43 tokens, more than model.max_seq_len = 32|--set data.sft=long.jsonl --set data.max_prompt_len=100
1|66|model.init_from: cannot read 'nope.h5'|--set model.init_from=nope.h5
1|64|data.sft is empty and data.task is 'jsonl'|--set data.task=jsonl
1|64|--stop-after needs a positive step count|--stop-after 0
EOF
# a finished SFT model starts another run (init_from) and its tokenizer comes along
sft1 --set run.out_dir=again --set model.init_from=one/$final --set sft.steps=2 ||
  fail "init_from a finished SFT checkpoint: $(cat "$d/out")"
echo "PASS"
