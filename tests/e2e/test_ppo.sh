#!/bin/sh
# `rlaif ppo`, `rlaif reinforce` and `rlaif a2c` on a tiny model (~1 min):
#  setup: judged arithmetic pairs (tests/fixtures/rm_pairs.py), a 10-step
#     SFT model and a 10-step reward model on those pairs;
#  a. the same 5 PPO iterations (2 epochs x 2 minibatches) on 1 learner
#     colocated, 2 learners colocated, 3 learners + 1 rollout + 1 judge and
#     1 learner + 2 rollouts + 1 judge: per-step losses within 1e-5 of the
#     step's scale (float summation order only); 1 and 2 rollout ranks
#     sample the same tokens (the reward model's scores and the response
#     lengths of every iteration equal bit for bit), with the learners
#     sampling a share (ppo.learners_sample, the default) or not;
#  b. --stop-after (as SIGTERM) mid-iteration: the stop waits for the
#     iteration's end, checkpoints, exits 75; the rerun ends with the
#     uninterrupted run's bits; kill -9 of a rank during an iteration, then
#     the same command: the same bits again; metrics rows once each; a
#     finished phase is skipped;
#  c. reinforce (loo, group, moving baselines) and a2c run to the end with
#     finite metrics;
#  d. d-RLAIF (ppo.reward = judge, judge.mode = score) against
#     tools/dev/mock-judge on loopback: the judge ranks and a colocated
#     learner score alike; kill -9 mid-iteration, rerun: the uninterrupted
#     bits, and no journaled answer paid twice (the mock's count: at most
#     the 1 answer being journaled at the kill, as in tests/faults);
#  d2. online-dpo against the mock: 1+2+1 ranks and 1 rank agree; kill -9
#     after iteration 2, rerun: the same labels in online_preferences.h5,
#     the same bits, at most 1 call paid twice;
#  e. bad inputs: no reward model, a reward model of another tokenizer, no
#     prompts, prompts that leave no room for a response, a baseline that
#     needs 2 samples with 1, minibatches that do not divide the batch ->
#     one ERROR line and the right exit code, before any sampling.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
: "${top_builddir:?set by make check}"
check="$top_srcdir/tests/e2e/check_ppo.py"
params="$top_srcdir/tests/e2e/check_sft.py"
d=$(mktemp -d /tmp/rlaif-ppo-XXXXXX)
trap 'pkill -9 -f "$d/" 2>/dev/null; rm -rf "$d"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

cat >"$d/job.ini" <<'EOF'
[run]
seed = 7
log_every = 10
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
steps = 10
batch_size = 16
lr = 1e-3
[ppo]
steps = 5
batch_size = 8
samples_per_prompt = 2
epochs = 2
minibatches = 2
micro_batch = 4
max_new_tokens = 8
lr = 1e-3
warmup_steps = 2
[judge]
backend = builtin
flip_prob = 0.1
[checkpoint]
every = 1
keep = 20
EOF
job="$d/job.ini"
final=ckpt/ppo-00000020.h5
base="--set model.init_from=base/ckpt/sft-00000010.h5 --set ppo.reward_model=base/ckpt/rm-00000010.h5"
# run NP PHASE OUT_DIR [--set ...]: a phase on NP ranks in $d, output in $d/out
run() {
  np=$1 phase=$2 out=$3
  shift 3
  # shellcheck disable=SC2086
  (cd "$d" && timeout 180 "$mpi" -n "$np" --oversubscribe "$RLAIF" "$phase" "$job" \
    --set run.out_dir="$out" $base "$@") </dev/null >"$d/out" 2>&1
}

# kill_in DELAY CKPT FINAL NP PHASE OUT [--set ...]: the run paced by DELAY s
# per step, its ranks killed -9 once $d/OUT/ckpt/CKPT exists (the next
# iteration is then under way); it must not have reached FINAL
kill_in() {
  delay=$1 ck=$2 fin=$3
  shift 3
  (RLAIF_TEST_STEP_DELAY=$delay run "$@") &
  bg=$!
  i=0
  until [ -f "$d/$3/ckpt/$ck" ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i + 1)); done
  sleep 0.3
  pkill -9 -f "run.out_dir=$3 " || fail "nothing to kill: $(cat "$d/out")"
  wait $bg
  [ -f "$d/$3/ckpt/$fin" ] && fail "$3: the run finished before the kill"
  return 0
}

echo "== setup: judged pairs, an SFT model, a reward model"
"$py" "$top_srcdir/tests/fixtures/rm_pairs.py" "$d/pairs.jsonl" 120 3 || fail "rm_pairs.py"
(cd "$d" && "$RLAIF" judge "$job" --input pairs.jsonl --output labels.jsonl --prefs "$d/prefs.h5" \
  --journal journal --quiet) </dev/null >"$d/out" 2>&1 || fail "judge: $(cat "$d/out")"
(cd "$d" && "$RLAIF" sft "$job" --set run.out_dir=base && "$RLAIF" rm "$job" \
  --set run.out_dir=base --set rm.preferences=prefs.h5) </dev/null >"$d/out" 2>&1 ||
  fail "sft, rm: $(cat "$d/out")"

echo "== a. the same iterations on 1, 2, 3 learners and 1, 2 rollout ranks"
run 1 ppo c1 || fail "1 rank: $(cat "$d/out")"
grep -q "5 iterations of 8 prompts x 2 samples (8 tokens at most each), 2 epoch(s) x 2 minibatch(es) per iteration on 1 learner(s) (colocated sampling)" "$d/out" ||
  fail "no start line: $(cat "$d/out")"
run 2 ppo c2 || fail "2 ranks: $(cat "$d/out")"
run 5 ppo s311 --set ranks.learner=3 --set ranks.rollout=1 --set ranks.judge=1 ||
  fail "3+1+1: $(cat "$d/out")"
grep -q "on 3 learner(s) (rollout ranks sampling)" "$d/out" || fail "expected 3 learners: $(cat "$d/out")"
run 3 ppo s111 --set ranks.learner=1 --set ranks.rollout=1 --set ranks.judge=1 ||
  fail "1+1+1: $(cat "$d/out")"
run 4 ppo s121 --set ranks.learner=1 --set ranks.rollout=2 --set ranks.judge=1 \
  --log-dir "$d/logs121" || fail "1+2+1: $(cat "$d/out")"
# the four parts of an iteration that tools/bench/bench-pipeline reads
grep -Eq "ppo: iteration 4: broadcast [0-9.]+ s, generation [0-9.]+ s, scoring [0-9.]+ s, training [0-9.]+ s" "$d/logs121/rank-00000.log" ||
  fail "no per-iteration times: $(cat "$d/logs121/rank-00000.log")"
grep -Eq "ppo: time in sampling [0-9.]+ s, scoring [0-9.]+ s, training [0-9.]+ s \(this process; weight broadcast [0-9.]+ s" "$d/out" ||
  fail "no time split: $(cat "$d/out")"
for r in c2 s311 s111 s121; do "$py" "$check" same "$d/c1" "$d/$r" ppo 1e-5 || fail "c1 vs $r"; done
"$py" "$check" exact "$d/s111" "$d/s121" ppo "objective/scores,response_length,eos_rate" ||
  fail "1 and 2 rollout ranks sampled differently"
# the learners sample a share by default; only the rollout ranks: the same tokens
run 4 ppo s121r --set ranks.learner=1 --set ranks.rollout=2 --set ranks.judge=1 \
  --set ppo.learners_sample=false || fail "1+2+1 rollouts only: $(cat "$d/out")"
"$py" "$check" exact "$d/s111" "$d/s121r" ppo "objective/scores,response_length,eos_rate" ||
  fail "sampling on the rollout ranks only differs"
"$py" "$check" rows "$d/c1" ppo 20 || fail "rows"
"$py" "$check" finite "$d/c1" ppo || fail "finite"
"$py" "$top_srcdir/tools/user/rlaif-analyze" rl "$d/c1/metrics.h5" --out "$d/plots" >"$d/out" 2>&1 ||
  fail "rlaif-analyze rl: $(cat "$d/out")"
grep -q "^ppo oracle/accuracy: .* (first 1 iterations) -> " "$d/out" && [ -s "$d/plots/ppo_rl.png" ] ||
  fail "rlaif-analyze rl: $(cat "$d/out")"

echo "== b. stop mid-iteration, kill -9 mid-iteration, resume: the uninterrupted bits"
run 3 ppo stop --set ranks.learner=1 --set ranks.rollout=1 --set ranks.judge=1 --stop-after 5
rc=$?
[ $rc = 75 ] || fail "expected 75 after --stop-after 5, got $rc: $(cat "$d/out")"
grep -q "stop requested at step 8/20" "$d/out" || fail "the stop did not wait for the iteration: $(cat "$d/out")"
run 3 ppo stop --set ranks.learner=1 --set ranks.rollout=1 --set ranks.judge=1 || fail "resume: $(cat "$d/out")"
grep -q "resuming from stop/ckpt/ppo-00000008.h5 at step 8/20" "$d/out" || fail "$(cat "$d/out")"
"$py" "$params" params "$d/s111/$final" "$d/stop/$final" exact || fail "stopped + resumed differs"
"$py" "$check" rows "$d/stop" ppo 20 || fail "rows after resume"
before=$(ls -l --time-style=full-iso "$d/stop/ckpt")
run 3 ppo stop --set ranks.learner=1 --set ranks.rollout=1 --set ranks.judge=1 || fail "rerun: $(cat "$d/out")"
grep -q "ppo: already complete (stop/ckpt/ppo-00000020.h5, step 20, done); skipping" "$d/out" ||
  fail "finished phase not skipped: $(cat "$d/out")"
[ "$before" = "$(ls -l --time-style=full-iso "$d/stop/ckpt")" ] || fail "a skipped phase wrote files"
# kill -9: paced so that the kill lands inside iteration 3 (steps 9..12)
kill_in 0.3 ppo-00000008.h5 ppo-00000020.h5 3 ppo kill --set ranks.learner=1 --set ranks.rollout=1 \
  --set ranks.judge=1
run 3 ppo kill --set ranks.learner=1 --set ranks.rollout=1 --set ranks.judge=1 ||
  fail "rerun after kill -9: $(cat "$d/out")"
grep -q "resuming from kill/ckpt/ppo-00000008.h5 at step 8/20" "$d/out" || fail "$(cat "$d/out")"
"$py" "$params" params "$d/s111/$final" "$d/kill/$final" exact || fail "killed + resumed differs"
"$py" "$check" rows "$d/kill" ppo 20 || fail "rows after kill"

echo "== c. reinforce (loo, group, moving) and a2c"
for b in loo group moving; do
  run 2 reinforce "r-$b" --set ppo.baseline=$b || fail "reinforce $b: $(cat "$d/out")"
  "$py" "$check" finite "$d/r-$b" reinforce || fail "reinforce $b"
  "$py" "$check" rows "$d/r-$b" reinforce 5 || fail "reinforce $b rows"
done
run 3 a2c a2c --set ranks.learner=1 --set ranks.rollout=1 --set ranks.judge=1 || fail "a2c: $(cat "$d/out")"
"$py" "$check" finite "$d/a2c" a2c || fail "a2c"
"$py" "$check" rows "$d/a2c" a2c 5 || fail "a2c rows"

echo "== d. d-RLAIF (ppo.reward = judge) against the mock judge: kill -9, rerun, nothing paid twice"
mock="$top_builddir/tools/dev/mock_judge"
mpids=""
trap 'kill $mpids 2>/dev/null; pkill -9 -f "$d/" 2>/dev/null; rm -rf "$d"' EXIT
mock_start() { # mock_start NAME: a mock judge on loopback; sets $port
  "$mock" --port-file "$d/$1.port" --idle-exit 120 --latency 0.005 >"$d/$1.mock.log" 2>&1 &
  mpids="$mpids $!"
  i=0
  while [ ! -s "$d/$1.port" ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i + 1)); done
  port=$(cat "$d/$1.port")
}
export RLAIF_TEST_JUDGE_KEY=test-key
dj() { # dj PORT: a d-RLAIF run's settings against the mock on PORT
  echo "--set ppo.reward=judge --set judge.mode=score --set judge.backend=openai --set judge.model=mock-judge --set judge.base_url=http://127.0.0.1:$1/v1 --set judge.api_key_env=RLAIF_TEST_JUDGE_KEY --set judge.timeout=10 --set judge.max_inflight=2 --set ranks.learner=1 --set ranks.rollout=1 --set ranks.judge=1"
}
odj() { # odj PORT: online DPO's settings against the mock (the job's verdict mode)
  dj "$1" | sed 's/--set ppo.reward=judge --set judge.mode=score//'
}
# A rank killed with kill -9 loses at most the answer whose last byte it had
# just read and not yet journaled (tests/faults/README.md): one for the one
# judge rank here (before 2026-12-06, up to its requests in flight,
# judge.max_inflight = 2). Every journaled answer must be reused: more
# repeats than that fail.
repaid_ok() { # repaid_ok PORT WHAT
  rep=$(mock_stat "$1" paid_repeats)
  [ "$rep" -le 1 ] || fail "$2: the rerun paid $rep calls again (at most 1: the answer being journaled at the kill)"
  echo "$2: $rep calls paid twice (at most 1)"
}
mock_start dref
# shellcheck disable=SC2046
run 3 ppo dref $(dj "$port") || fail "d-RLAIF: $(cat "$d/out")"
grep -q "the reward is the judge's score of each response (d-RLAIF)" "$d/out" || fail "$(cat "$d/out")"
# shellcheck disable=SC2046
run 1 ppo dcolo $(dj "$port") --set ranks.learner=0 --set ranks.rollout=0 --set ranks.judge=0 ||
  fail "d-RLAIF colocated: $(cat "$d/out")"
"$py" "$check" exact "$d/dref" "$d/dcolo" ppo "objective/scores,response_length" ||
  fail "d-RLAIF: the judge ranks and a colocated learner scored differently"
mock_start dkill
# shellcheck disable=SC2046
kill_in 0.3 ppo-00000008.h5 ppo-00000020.h5 3 ppo dkill $(dj "$port")
paid=$(mock_stat "$port" delivered)
# shellcheck disable=SC2046
run 3 ppo dkill $(dj "$port") || fail "d-RLAIF rerun after kill -9: $(cat "$d/out")"
"$py" "$params" params "$d/dref/$final" "$d/dkill/$final" exact || fail "d-RLAIF killed + resumed differs"
repaid_ok "$port" "d-RLAIF after kill -9"
echo "ok: kill -9 in iteration 3 after $paid judge answers; the rerun ended with the uninterrupted bits"

echo "== d2. online DPO against the mock judge: layouts agree, kill -9 + rerun pays nothing twice"
mock_start oref
# shellcheck disable=SC2046
run 4 online-dpo oref $(odj "$port") \
  --set ranks.rollout=2 || fail "online-dpo: $(cat "$d/out")"
# shellcheck disable=SC2046
run 1 online-dpo ocolo $(odj "$port") \
  --set ranks.learner=0 --set ranks.rollout=0 --set ranks.judge=0 || fail "online-dpo 1 rank: $(cat "$d/out")"
"$py" "$check" exact "$d/oref" "$d/ocolo" online-dpo "loss,labelled,rewards/margins" ||
  fail "online-dpo: 1+2+1 and 1 rank differ"
npairs=$("$py" -c "import h5py,sys; print(len(h5py.File(sys.argv[1],'r')['pairs']))" "$d/oref/online_preferences.h5")
[ "$npairs" -gt 0 ] || fail "online-dpo stored no labels"
mock_start okill
# shellcheck disable=SC2046
kill_in 1 online-dpo-00000002.h5 online-dpo-00000005.h5 4 online-dpo okill $(odj "$port") \
  --set ranks.rollout=2
# shellcheck disable=SC2046
run 4 online-dpo okill $(odj "$port") \
  --set ranks.rollout=2 || fail "online-dpo rerun after kill -9: $(cat "$d/out")"
"$py" "$params" params "$d/oref/ckpt/online-dpo-00000005.h5" "$d/okill/ckpt/online-dpo-00000005.h5" exact ||
  fail "online-dpo killed + resumed differs"
repaid_ok "$port" "online DPO after kill -9"
n2=$("$py" -c "import h5py,sys; print(len(h5py.File(sys.argv[1],'r')['pairs']))" "$d/okill/online_preferences.h5")
[ "$n2" = "$npairs" ] || fail "online-dpo after kill -9 + rerun: $n2 stored pairs, uninterrupted $npairs"
echo "ok: online DPO stored $npairs labels; kill -9 + rerun: the same labels, the same bits"

echo "== e. bad inputs"
# expect CODE MESSAGE PHASE ARGS...: one ERROR line, the code, no sampling
expect() {
  code=$1 msg=$2
  shift 2
  run 1 "$@"
  rc=$?
  [ $rc = "$code" ] || fail "$*: expected $code, got $rc: $(cat "$d/out")"
  grep -q "^ERROR: .*$msg" "$d/out" || fail "$*: no '$msg': $(cat "$d/out")"
  [ "$(grep -c '^ERROR' "$d/out")" = 1 ] || fail "$*: not one ERROR line: $(cat "$d/out")"
  grep -q "ppo step\|reinforce step" "$d/out" && fail "$*: it trained: $(cat "$d/out")"
  echo "ok: $* -> $code ($msg)"
}
mkdir -p "$d/norm/ckpt" && cp "$d/base/ckpt/sft-00000010.h5" "$d/norm/ckpt/"
expect 66 "no finished reward model in norm/ckpt" ppo norm --set ppo.reward_model= --set model.init_from=
(cd "$d" && "$RLAIF" sft "$job" --set run.out_dir=other --set tokenizer.specials="<|endoftext|>,<|pad|>" &&
  "$RLAIF" rm "$job" --set run.out_dir=other --set rm.preferences=prefs.h5 \
    --set tokenizer.specials="<|endoftext|>,<|pad|>") </dev/null >"$d/out" 2>&1 ||
  fail "other tokenizer: $(cat "$d/out")"
expect 64 "does not share the policy's tokenizer" ppo x1 --set ppo.reward_model=other/ckpt/rm-00000010.h5
: >"$d/empty.jsonl"
expect 64 "empty.jsonl: no records" ppo x2 --set data.task=jsonl --set data.prompts=empty.jsonl
printf '{"prompt": "%s"}\n' "$(printf 'What is 1 plus 2? %.0s' 1 2 3 4)" >"$d/long.jsonl"
expect 64 "leaves no room for a response" ppo x3 --set data.task=jsonl --set data.prompts=long.jsonl \
  --set data.max_prompt_len=100
expect 64 "needs 2 or more\|samples of a prompt" reinforce x4 --set ppo.samples_per_prompt=1
expect 64 "do not split into ppo.minibatches" ppo x5 --set ppo.minibatches=3
expect 64 "judge.mode = verdict" ppo x6 --set ppo.reward=judge
expect 64 "judge.mode = score rates responses one by one" online-dpo x8 --set judge.mode=score
expect 64 "scores the samples of a prompt in pairs" ppo x7 --set ppo.reward=judge \
  --set judge.mode=score --set ppo.samples_per_prompt=3
echo "PASS"
