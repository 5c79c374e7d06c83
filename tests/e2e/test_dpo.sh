#!/bin/sh
# `rlaif dpo` as separate jobs on a tiny model (about 15 s):
#  setup: arithmetic pairs (tests/fixtures/rm_pairs.py) labelled by the builtin judge
#     with noise, first-position bias and disagreements as ties (soft labels
#     0.5 in the data); a 10-step SFT model to start from;
#  b. 1 learner and 2 learners (mpiexec -n 2) compute the same run: per-step
#     losses, margins, accuracies, rewards and log-probs, the validation rows
#     and the final parameters agree within tolerances that only allow for a
#     different floating-point summation order; the reference log-probs file
#     holds every pair, and those of 24 pairs equal PyTorch's under the SFT
#     model (prompt "\n" response EOS, prompt excluded);
#  d. --stop-after 7 (the stop flag, as SIGTERM sets it) checkpoints and
#     exits 75; the rerun reads the stored reference log-probs and finishes
#     with the uninterrupted run's bits (params, moments, counters); metrics
#     hold each step once; a rerun of the finished phase is skipped and
#     writes nothing; a run stopped on 2 learners resumes on 1; a resume
#     without the reference file, or with pairs that changed, is refused;
#  e. bad inputs (missing or label-less preferences, no model to start from,
#     beta 0, label smoothing without cdpo, online_batches, too-long pairs,
#     --stop-after 0, a stray argument) -> one ERROR line, the right exit
#     code; the sft-checkpoint search; every loss variant runs.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
check="$top_srcdir/tests/e2e/check_dpo.py"
params="$top_srcdir/tests/e2e/check_sft.py"
e2e_tmpdir dpo
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

cat >"$d/job.ini" <<'EOF2'
[run]
seed = 5
log_every = 4
[model]
n_layer = 2
n_embd = 32
n_head = 2
max_seq_len = 48
[data]
task = arithmetic
n_prompts = 40
max_operand = 19
[sft]
steps = 10
batch_size = 8
eval_prompts = 0
[dpo]
; 12 steps x 16 pairs over ~190 training pairs: crosses an epoch boundary
steps = 12
batch_size = 16
micro_batch = 4
lr = 1e-3
warmup_steps = 2
eval_fraction = 0.2
eval_prompts = 0
[judge]
backend = builtin
flip_prob = 0.1
first_bias = 0.2
both_orders = 1.0
disagreement = tie
[checkpoint]
every = 5
keep = 10
EOF2
job="$d/job.ini"
final=ckpt/dpo-00000012.h5
dpo1() { (cd "$d" && timeout 120 "$RLAIF" dpo "$job" --set dpo.preferences=prefs.h5 \
  --set model.init_from=base/ckpt/sft-00000010.h5 "$@") </dev/null >"$d/out" 2>&1; }
dpo2() { (cd "$d" && timeout 120 "$mpi" -n 2 --oversubscribe "$RLAIF" dpo "$job" \
  --set dpo.preferences=prefs.h5 --set model.init_from=base/ckpt/sft-00000010.h5 "$@") \
  </dev/null >"$d/out" 2>&1; }

echo "== setup: judged pairs and an SFT model"
"$py" "$top_srcdir/tests/fixtures/rm_pairs.py" "$d/pairs.jsonl" 240 3 || fail "rm_pairs.py"
(cd "$d" && "$RLAIF" judge "$job" --input pairs.jsonl --output labels.jsonl --prefs "$d/prefs.h5" \
  --journal journal --quiet) </dev/null >"$d/out" 2>&1 || fail "judge: $(cat "$d/out")"
(cd "$d" && "$RLAIF" sft "$job" --set run.out_dir=base) </dev/null >"$d/out" 2>&1 ||
  fail "sft: $(cat "$d/out")"

echo "== b. 1 learner vs 2 learners"
dpo1 --set run.out_dir=one || fail "1 learner: $(cat "$d/out")"
grep "dpo: 240 pairs read" "$d/out" | sed 's/^\[[^]]*\] //'
grep -q "(0 with soft labels, 0 ties)" "$d/out" && fail "the judge made no ties: no soft labels tested"
grep -q "dpo: reference log-probs of 240 pairs (480 responses) computed" "$d/out" ||
  fail "no reference log-probs line: $(cat "$d/out")"
dpo2 --set run.out_dir=two || fail "2 learners: $(cat "$d/out")"
grep -q "on 2 learner(s)" "$d/out" || fail "expected 2 learners: $(cat "$d/out")"
# Tolerances as in tests/e2e/test_rm.sh: the same pairs summed in another
# grouping (micro-batches split between learners, MPI_Reduce_scatter) differ
# at float32 rounding, carried through 12 AdamW steps.
"$py" "$check" losses "$d/one" "$d/two" 1e-5 || fail "losses differ"
"$py" "$params" params "$d/one/$final" "$d/two/$final" 1e-5 || fail "params differ"
"$py" "$check" final "$d/one/$final" "$d/one/ckpt/dpo_ref_logps.h5" 240 || fail "final checkpoint"
"$py" "$check" refcheck "$d/one/ckpt/dpo_ref_logps.h5" "$d/prefs.h5" "$d/base/ckpt/sft-00000010.h5" 24 ||
  fail "reference log-probs"

echo "== d. stop at step 7, resume, compare with the uninterrupted run"
dpo2 --set run.out_dir=stop --stop-after 7
rc=$?
[ $rc = 75 ] || fail "expected exit 75 after --stop-after, got $rc: $(cat "$d/out")"
grep -q "stop requested at step 7/12" "$d/out" || fail "no stop line: $(cat "$d/out")"
[ -f "$d/stop/ckpt/dpo-00000007.h5" ] || fail "no checkpoint at step 7: $(ls "$d/stop/ckpt")"
cp -r "$d/stop" "$d/noref" && rm "$d/noref/ckpt/dpo_ref_logps.h5"
cp -r "$d/stop" "$d/otherdata"
dpo2 --set run.out_dir=stop || fail "resume: $(cat "$d/out")"
grep -q "resuming from stop/ckpt/dpo-00000007.h5 at step 7/12" "$d/out" || fail "$(cat "$d/out")"
grep -q "reference log-probs of 240 pairs read from stop/ckpt/dpo_ref_logps.h5" "$d/out" ||
  fail "resume did not read the stored reference: $(cat "$d/out")"
"$py" "$params" params "$d/two/$final" "$d/stop/$final" exact || fail "resumed run differs"
"$py" "$check" rows "$d/stop" 12 || fail "metrics rows"
before=$(ls -l --time-style=full-iso "$d/stop/ckpt")
dpo2 --set run.out_dir=stop || fail "rerun of a finished phase: $(cat "$d/out")"
grep -q "dpo: already complete (stop/ckpt/dpo-00000012.h5, step 12, done); skipping" "$d/out" ||
  fail "finished phase not skipped: $(cat "$d/out")"
[ "$before" = "$(ls -l --time-style=full-iso "$d/stop/ckpt")" ] || fail "a skipped phase wrote files"
dpo2 --set run.out_dir=moved --stop-after 6
[ $? = 75 ] || fail "stop on 2 learners: $(cat "$d/out")"
dpo1 --set run.out_dir=moved || fail "resume on 1 learner: $(cat "$d/out")"
"$py" "$params" params "$d/one/$final" "$d/moved/$final" 1e-5 || fail "2 -> 1 learners differs"
dpo1 --set run.out_dir=noref
[ $? = 66 ] && grep -q "^ERROR: dpo: resuming needs the reference log-probs 'noref/ckpt/dpo_ref_logps.h5', which is missing" "$d/out" ||
  fail "resume without the reference file: $(cat "$d/out")"
dpo1 --set run.out_dir=otherdata --set dpo.eval_fraction=0.3
[ $? = 64 ] && grep -q "^ERROR: dpo: the reference log-probs 'otherdata/ckpt/dpo_ref_logps.h5' belong to other pairs" "$d/out" ||
  fail "resume with other pairs: $(cat "$d/out")"
echo "ok: a resume without the reference file -> 66, with changed pairs -> 64"

echo "== e. model search, loss variants, bad inputs"
cp -r "$d/base" "$d/search"
(cd "$d" && "$RLAIF" dpo "$job" --set dpo.preferences=prefs.h5 --set run.out_dir=search \
  --set dpo.steps=2) </dev/null >"$d/out" 2>&1 || fail "sft search: $(cat "$d/out")"
grep -q "dpo: starting from search/ckpt/sft-00000010.h5 (policy and reference)" "$d/out" ||
  fail "$(cat "$d/out")"
for v in "ipo" "cdpo --set dpo.label_smoothing=0.1"; do
  # shellcheck disable=SC2086
  dpo1 --set run.out_dir="v-${v%% *}" --set dpo.steps=3 --set dpo.loss=$v ||
    fail "dpo.loss = $v: $(cat "$d/out")"
  grep -q "loss ${v%% *}, beta 0.1" "$d/out" || fail "$(cat "$d/out")"
done
# preferences whose every pair failed (judge endpoint refusing connections)
(cd "$d" && OPENAI_API_KEY=x "$RLAIF" judge "$job" --input pairs.jsonl --output failed.jsonl \
  --prefs "$d/failed.h5" --journal journal-failed --quiet --set judge.backend=openai \
  --set judge.base_url=http://127.0.0.1:9/v1 --set judge.model=m --set judge.max_attempts=1) \
  </dev/null >"$d/out" 2>&1
[ -f "$d/failed.h5" ] || fail "no failed.h5: $(cat "$d/out")"
printf '{"prompt": "Hi", "chosen": "%s", "rejected": "no"}\n' "$(printf 'x%.0s' $(seq 1 50))" \
  >"$d/long.jsonl"
# ranks|exit code|expected text|arguments
while IFS='|' read -r np code expect args; do
  # shellcheck disable=SC2086
  if [ "$np" = 1 ]; then dpo1 --set run.out_dir=bad $args; else dpo2 --set run.out_dir=bad $args; fi
  got=$?
  [ "$got" = "$code" ] || fail "$args: exit $got, expected $code: $(cat "$d/out")"
  grep -qF -- "$expect" "$d/out" || fail "$args: no '$expect' in: $(cat "$d/out")"
  [ "$(grep -c '^ERROR' "$d/out")" = 1 ] || fail "$args: not exactly one ERROR line: $(cat "$d/out")"
  echo "ok: $args -> $code: $(grep '^ERROR' "$d/out")"
done <<'EOF2'
1|66|ERROR: dpo: cannot read the preferences 'nothere.h5': No such file|--set dpo.preferences=nothere.h5
2|1|dpo: no usable pairs in 'failed.h5' (240 pairs: 240 without a label, 0 soft labels dropped)|--set dpo.preferences=failed.h5
1|66|dpo: no model to start from: model.init_from is empty and bad/ckpt holds no sft checkpoint|--set model.init_from=
2|64|dpo: dpo.beta must be > 0 (got 0)|--set dpo.beta=0
1|64|dpo: dpo.label_smoothing = 0.1 has no effect with dpo.loss = sigmoid|--set dpo.label_smoothing=0.1
1|64|dpo: dpo.online_batches > 0 asks for online DPO|--set dpo.online_batches=4
1|64|long.jsonl: record 1: prompt + response + EOS is 54 tokens, more than model.max_seq_len = 48|--set data.human_preferences=long.jsonl --set data.max_response_len=64
1|64|dpo: --stop-after needs a positive step count|--stop-after 0
1|64|dpo: unexpected argument 'extra'|extra
EOF2
echo "PASS"
