#!/bin/sh
# DPO learns the builtin judge's preferences without wrecking the policy
# (about 20 s on 2 cores): 2000 arithmetic pairs (tests/fixtures/rm_pairs.py: the
# right answer against a wrong number, a refusal or a rude reply) labelled
# by the builtin judge with the demo job's noise (10% flipped verdicts, 10%
# first-position bias, disagreeing orders as ties = soft labels 0.5); the
# demo job's SFT model (1000 steps, as tools/dev/demo trains it); 200 dpo steps
# of 32 pairs on 2 learners, beta 0.1, lr 3e-4. Checked:
#  - held-out preference accuracy (implicit reward margin > 0 on the label's
#    side, /dpo_eval, 138 decided pairs on prompts never trained on) >= 0.65.
#    Chance is 0.5 with a binomial sd of 0.043 here, so 0.65 is 3.5 sd above
#    it; measured 0.768. At step 0 it is 0 by construction: the policy is
#    the reference, every margin is exactly 0 and TRL's accuracy counts
#    only margins > 0.
#  - greedy task accuracy on 200 held-out problems (rlaif_task_eval) after
#    DPO >= 0.6 x before (no collapse; 200 problems give an sd of ~3
#    points); measured 24.0% -> 24.5%. With lr 1e-3 it fell to 18.5%
#    (beta 0.5: 15.0%), the known DPO drift the reference term only slows.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
check="$top_srcdir/tests/e2e/check_dpo.py"
e2e_tmpdir dpo-learn
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
job="$top_srcdir/jobs/demo.ini"
set_=" --set run.out_dir=run --set run.log_every=50 --set checkpoint.every=100"
# the demo job as it was when the figures above were measured: 2 x 64, bare
# right answers (the demo's flawed demonstrations and larger model train
# another policy, and take longer than this test's budget)
set_="$set_ --set model.n_embd=64 --set model.max_seq_len=48 --set data.flaw_wrong=0"
set_="$set_ --set data.flaw_rude=0 --set data.flaw_ramble=0 --set data.flaw_offtopic=0"
set_="$set_ --set data.demo_phrasing=bare --set data.max_response_len=32 --set sft.steps=1000"

"$py" "$top_srcdir/tests/fixtures/rm_pairs.py" "$d/pairs.jsonl" 2000 11 || fail "rm_pairs.py"
(cd "$d" && "$RLAIF" judge "$job" --input pairs.jsonl --output labels.jsonl --prefs "$d/prefs.h5" \
  --journal journal --quiet) </dev/null >"$d/out" 2>&1 || fail "judge: $(cat "$d/out")"
# shellcheck disable=SC2086
(cd "$d" && timeout 120 "$RLAIF" sft "$job" $set_ --set sft.eval_prompts=0) \
  </dev/null >"$d/out" 2>&1 || fail "sft: $(cat "$d/out")"
t0=$(date +%s.%N)
# shellcheck disable=SC2086
(cd "$d" && timeout 120 "$mpi" -n 2 --oversubscribe "$RLAIF" dpo "$job" $set_ \
  --set dpo.preferences=prefs.h5 --set dpo.steps=200 --set dpo.lr=3e-4 --set dpo.beta=0.1) \
  </dev/null >"$d/out" 2>&1 || fail "dpo: $(cat "$d/out")"
t1=$(date +%s.%N)
grep -E "dpo: (2000 pairs read|starting from|reference log-probs|[0-9]+ steps in|held-out greedy)" \
  "$d/out" | sed 's/^\[[^]]*\] //'
echo "dpo wall time $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s (startup, reference log-probs, validation, task evaluation and checkpoints included)"
before=$(sed -n 's/.*greedy task accuracy before DPO: \([0-9.]*\)%.*/\1/p' "$d/out")
[ -n "$before" ] || fail "no task accuracy before DPO: $(cat "$d/out")"
min_task=$(awk "BEGIN { print 0.6 * $before / 100 }")
"$py" "$check" learned "$d/run" 0.65 "$min_task" || fail "learning"
echo "PASS"
