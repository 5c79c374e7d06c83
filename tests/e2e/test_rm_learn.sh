#!/bin/sh
# The reward model learns the builtin judge's preferences (about 15 s on
# 2 cores): 2000 arithmetic pairs (tests/fixtures/rm_pairs.py: the right answer
# against a wrong number, a refusal or a rude reply) labelled by the builtin
# judge with the demo job's noise (10% flipped verdicts, 10% first-position
# bias, disagreeing orders as ties); the demo job's model after 300 SFT
# steps; 200 rm steps of 32 pairs on 2 learners. Checked:
#  - held-out accuracy against the judge's labels (/rm_eval, 138 decided
#    pairs on prompts never trained on) >= 0.65 and above its step-0 value.
#    Chance is 0.5 with a binomial sd of 0.043 here, so 0.65 is 3.5 sd above
#    chance; measured 0.797 (from 0.348 at step 0: the fresh head on the SFT
#    trunk happens to prefer the wrong side). The labels themselves are
#    noisy, so 1.0 is out of reach.
#  - PyTorch recomputes the final checkpoint's rewards (tests/e2e/check_rm.py
#    truth): its accuracy equals the checkpoint's eval_accuracy exactly, and
#    against the truth the RM ranks the right answer above a refusal or a
#    rude reply >= 0.9 of the time (measured 1.0); right vs wrong numbers is
#    reported (measured 0.64: it needs arithmetic) but not thresholded.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
check="$top_srcdir/tests/e2e/check_rm.py"
e2e_tmpdir rm-learn
export OMP_NUM_THREADS=1
job="$top_srcdir/jobs/demo.ini"
set_=" --set run.out_dir=run --set run.log_every=50 --set checkpoint.every=100"
# the demo job as it was when the figures above were measured: 2 x 64, bare
# right answers (the demo's flawed demonstrations and larger model train
# another policy, and take longer than this test's budget)
set_="$set_ --set model.n_embd=64 --set model.max_seq_len=48 --set data.flaw_wrong=0"
set_="$set_ --set data.flaw_rude=0 --set data.flaw_ramble=0 --set data.flaw_offtopic=0"
set_="$set_ --set data.demo_phrasing=bare --set data.max_response_len=32"

"$py" "$top_srcdir/tests/fixtures/rm_pairs.py" "$d/pairs.jsonl" 2000 11 || fail "rm_pairs.py"
(cd "$d" && "$RLAIF" judge "$job" --input pairs.jsonl --output labels.jsonl --prefs "$d/prefs.h5" \
  --journal journal --quiet) </dev/null >"$d/out" 2>&1 || fail "judge: $(cat "$d/out")"
# shellcheck disable=SC2086
(cd "$d" && timeout 120 "$RLAIF" sft "$job" $set_ --set sft.steps=300 --set sft.eval_prompts=0) \
  </dev/null >"$d/out" 2>&1 || fail "sft: $(cat "$d/out")"
t0=$(date +%s.%N)
# shellcheck disable=SC2086
(cd "$d" && timeout 120 "$mpi" -n 2 --oversubscribe "$RLAIF" rm "$job" $set_ \
  --set rm.preferences=prefs.h5 --set rm.steps=200 --set rm.lr=2e-3) </dev/null >"$d/out" 2>&1 ||
  fail "rm: $(cat "$d/out")"
t1=$(date +%s.%N)
grep -E "rm: (2000 pairs read|starting from|[0-9]+ steps in|rewards of)" "$d/out" | sed 's/^\[[^]]*\] //'
echo "rm wall time $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s (startup, validation and checkpoints included)"
"$py" "$check" learned "$d/run" 0.65 || fail "held-out accuracy"
"$py" "$check" truth "$d/run/ckpt/rm-00000200.h5" "$d/pairs.jsonl" "$d/labels.jsonl" 0.1 0.9 ||
  fail "PyTorch rewards"
echo "PASS"
