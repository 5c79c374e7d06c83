#!/bin/sh
# `rlaif rm` as separate jobs on a tiny model (about 15 s):
#  setup: arithmetic pairs (tests/fixtures/rm_pairs.py) labelled by the builtin judge
#     with noise, first-position bias and disagreements as ties (soft labels
#     0.5 in the data); a 10-step SFT model to start from;
#  b. 1 learner and 2 learners (mpiexec -n 2) compute the same run: per-step
#     losses, accuracies and margins, the validation rows and the final
#     parameters agree within tolerances that only allow for a different
#     floating-point summation order;
#  d. --stop-after 7 (the stop flag, as SIGTERM sets it) checkpoints and
#     exits 75; the rerun finishes with the uninterrupted run's bits
#     (params, moments, counters); metrics hold each step once; a rerun of
#     the finished phase is skipped and writes nothing; a run stopped on 2
#     learners resumes on 1; the final checkpoint carries the score head,
#     validation results and reward statistics;
#  e. bad inputs: missing or label-less preferences, no model to start from,
#     a start model without the score head rm.head = keep needs, too-long
#     pairs, a missing human-preference file -> one ERROR line, the right
#     exit code; and the sft-checkpoint search, human JSONL pairs mixed in,
#     rm.soft_labels = drop.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
check="$top_srcdir/tests/e2e/check_rm.py"
params="$top_srcdir/tests/e2e/check_sft.py"
e2e_tmpdir rm
export OMP_NUM_THREADS=1

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
[rm]
; 12 steps x 16 pairs over ~180 training pairs: crosses an epoch boundary
steps = 12
batch_size = 16
micro_batch = 4
lr = 1e-3
warmup_steps = 2
eval_fraction = 0.2
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
final=ckpt/rm-00000012.h5
rm1() { (cd "$d" && timeout 120 "$RLAIF" rm "$job" --set rm.preferences=prefs.h5 \
  --set model.init_from=base/ckpt/sft-00000010.h5 "$@") </dev/null >"$d/out" 2>&1; }
rm2() { (cd "$d" && timeout 120 "$mpi" -n 2 --oversubscribe "$RLAIF" rm "$job" \
  --set rm.preferences=prefs.h5 --set model.init_from=base/ckpt/sft-00000010.h5 "$@") \
  </dev/null >"$d/out" 2>&1; }

echo "== setup: judged pairs and an SFT model"
"$py" "$top_srcdir/tests/fixtures/rm_pairs.py" "$d/pairs.jsonl" 240 3 || fail "rm_pairs.py"
(cd "$d" && "$RLAIF" judge "$job" --input pairs.jsonl --output labels.jsonl --prefs "$d/prefs.h5" \
  --journal journal --quiet) </dev/null >"$d/out" 2>&1 || fail "judge: $(cat "$d/out")"
(cd "$d" && "$RLAIF" sft "$job" --set run.out_dir=base) </dev/null >"$d/out" 2>&1 ||
  fail "sft: $(cat "$d/out")"

echo "== b. 1 learner vs 2 learners"
rm1 --set run.out_dir=one || fail "1 learner: $(cat "$d/out")"
grep -q "ties), 0 without a label" "$d/out" || fail "$(cat "$d/out")"
grep "rm: 240 pairs read" "$d/out" | sed 's/^\[[^]]*\] //'
grep -q "(0 with soft labels, 0 ties)" "$d/out" && fail "the judge made no ties: no soft labels tested"
rm2 --set run.out_dir=two || fail "2 learners: $(cat "$d/out")"
grep -q "on 2 learner(s)" "$d/out" || fail "expected 2 learners: $(cat "$d/out")"
# Tolerances as in tests/e2e/test_sft.sh: the same pairs summed in another
# grouping (micro-batches split between learners, MPI_Reduce_scatter) differ
# at float32 rounding, carried through 12 AdamW steps.
"$py" "$check" losses "$d/one" "$d/two" 1e-5 || fail "losses differ"
"$py" "$params" params "$d/one/$final" "$d/two/$final" 1e-5 || fail "params differ"
"$py" "$check" final "$d/one/$final" || fail "final checkpoint"
# rlaif_rm_load, as PPO will load it: the reward statistics; a model without
# a scalar head is refused by name
ref="${top_builddir:?set by make check}/tests/reference/rm_ref"
"$ref" load "$d/one/$final" | grep "reward mean" || fail "rm_ref load of the reward model"
"$ref" load "$d/base/ckpt/sft-00000010.h5" >"$d/out" 2>&1
[ $? = 1 ] && grep -q "sft-00000010.h5' has no scalar head: it is not a reward model" "$d/out" ||
  fail "an SFT model loaded as a reward model: $(cat "$d/out")"

echo "== d. stop at step 7, resume, compare with the uninterrupted run"
rm2 --set run.out_dir=stop --stop-after 7
rc=$?
[ $rc = 75 ] || fail "expected exit 75 after --stop-after, got $rc: $(cat "$d/out")"
grep -q "stop requested at step 7/12" "$d/out" || fail "no stop line: $(cat "$d/out")"
[ -f "$d/stop/ckpt/rm-00000007.h5" ] || fail "no checkpoint at step 7: $(ls "$d/stop/ckpt")"
rm2 --set run.out_dir=stop || fail "resume: $(cat "$d/out")"
grep -q "resuming from stop/ckpt/rm-00000007.h5 at step 7/12" "$d/out" || fail "$(cat "$d/out")"
"$py" "$params" params "$d/two/$final" "$d/stop/$final" exact || fail "resumed run differs"
"$py" "$check" rows "$d/stop" 12 || fail "metrics rows"
before=$(ls -l "$d/stop/ckpt")
rm2 --set run.out_dir=stop || fail "rerun of a finished phase: $(cat "$d/out")"
grep -q "rm: already complete (stop/ckpt/rm-00000012.h5, step 12, done); skipping" "$d/out" ||
  fail "finished phase not skipped: $(cat "$d/out")"
[ "$before" = "$(ls -l "$d/stop/ckpt")" ] || fail "a skipped phase wrote checkpoints"
rm2 --set run.out_dir=moved --stop-after 6
[ $? = 75 ] || fail "stop on 2 learners: $(cat "$d/out")"
rm1 --set run.out_dir=moved || fail "resume on 1 learner: $(cat "$d/out")"
"$py" "$params" params "$d/one/$final" "$d/moved/$final" 1e-5 || fail "2 -> 1 learners differs"

echo "== e. model search, human pairs, label modes, bad inputs"
# no init_from: the newest finished sft checkpoint of the job's own folder
cp -r "$d/base" "$d/search"
(cd "$d" && "$RLAIF" rm "$job" --set rm.preferences=prefs.h5 --set run.out_dir=search \
  --set rm.steps=2) </dev/null >"$d/out" 2>&1 || fail "sft search: $(cat "$d/out")"
grep -q "rm: starting from search/ckpt/sft-00000010.h5" "$d/out" || fail "$(cat "$d/out")"
# an SFT run stopped before its end is not a model to start from
(cd "$d" && "$RLAIF" sft "$job" --set run.out_dir=partial --stop-after 3) </dev/null >"$d/out" 2>&1
[ $? = 75 ] || fail "sft --stop-after 3: $(cat "$d/out")"
(cd "$d" && "$RLAIF" rm "$job" --set rm.preferences=prefs.h5 --set run.out_dir=partial) \
  </dev/null >"$d/out" 2>&1
[ $? = 66 ] || fail "rm on an unfinished sft run: $(cat "$d/out")"
grep -q "partial/ckpt/sft-00000003.h5 is not a finished sft run" "$d/out" || fail "$(cat "$d/out")"
grep -q "^ERROR: rm: no model to start from: .* holds no finished sft checkpoint" "$d/out" || fail "$(cat "$d/out")"
printf '%s\n' '{"prompt": "What is 2 plus 2?", "chosen": "4", "rejected": "5"}' \
  '{"prompt": "What is 3 times 3?", "chosen": "9", "rejected": "No idea."}' >"$d/human.jsonl"
rm1 --set run.out_dir=human --set data.human_preferences=human.jsonl --set rm.steps=2 ||
  fail "human pairs: $(cat "$d/out")"
grep -q "; 2 human pairs" "$d/out" || fail "$(cat "$d/out")"
rm1 --set run.out_dir=drop --set rm.soft_labels=drop --set rm.steps=2 ||
  fail "soft_labels = drop: $(cat "$d/out")"
grep -q "(0 with soft labels, 0 ties)" "$d/out" || fail "drop kept soft labels: $(cat "$d/out")"
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
  if [ "$np" = 1 ]; then rm1 --set run.out_dir=bad $args; else rm2 --set run.out_dir=bad $args; fi
  got=$?
  [ "$got" = "$code" ] || fail "$args: exit $got, expected $code: $(cat "$d/out")"
  grep -qF -- "$expect" "$d/out" || fail "$args: no '$expect' in: $(cat "$d/out")"
  [ "$(grep -c '^ERROR' "$d/out")" = 1 ] || fail "$args: not exactly one ERROR line: $(cat "$d/out")"
  echo "ok: $args -> $code: $(grep '^ERROR' "$d/out")"
done <<'EOF2'
1|66|ERROR: rm: cannot read the preferences 'nothere.h5': No such file|--set rm.preferences=nothere.h5
2|1|rm: no usable pairs in 'failed.h5' (240 pairs: 240 without a label, 0 soft labels dropped)|--set rm.preferences=failed.h5
1|66|rm: no model to start from: model.init_from is empty and bad/ckpt holds no sft checkpoint|--set model.init_from=
2|64|model.init_from 'base/ckpt/sft-00000010.h5' has no scalar head|--set rm.head=keep
1|64|long.jsonl: record 1: prompt + response + EOS is 54 tokens, more than model.max_seq_len = 48|--set data.human_preferences=long.jsonl --set data.max_response_len=64
1|66|data.human_preferences: nohuman.jsonl: fopen: No such file|--set data.human_preferences=nohuman.jsonl
1|64|--stop-after needs a positive step count|--stop-after 0
EOF2
echo "PASS"
