#!/bin/sh
# `rlaif eval` on tiny SFT models trained here (1200, 300 and 5 steps, ~4 s):
#  a. policy = baseline (the same checkpoint): every pair is two identical
#     answers, a tie without a judge call: win rate exactly 0.5, 0 calls;
#  b. the 1200-step model against the 5-step one (barely trained) and against
#     the 300-step one: win rate well above 0.5, the policy more accurate than
#     the baseline by the arithmetic truth, and the judge agreeing with that
#     oracle on the pairs where exactly one answer is right (noiseless judge);
#     the Wilson interval recomputed from the counts;
#  c. 1 rank vs 4 ranks (2 rollout + 2 judge), sampled at temperature 0.8:
#     the same pairs, texts, labels (eval.h5) and the same metrics row; a
#     rerun is skipped without touching eval.h5; against tools/dev/mock-judge, a
#     rerun after eval.h5 is removed asks the server nothing (journal); JSONL
#     prompts: the last eval.n_prompts records; a real SIGTERM while judging
#     exits 75 and the rerun finishes with 0 paid repeats;
#  e. every eval: the /eval group (lengths, log length ratio, outcomes, KL,
#     oracle flaw bits) agrees with the stored pairs, and the length-controlled
#     win rate and its interval with a scipy refit (check_eval.py); policy =
#     baseline has a KL of exactly 0; 1 rank and 2+2 ranks store the same /eval;
#  d. bad inputs: no policy checkpoint, a missing baseline file, a baseline
#     phase with no finished checkpoint, a missing prompts file -> one ERROR
#     line naming it, exit 66.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
: "${top_builddir:?set by make check}"
check="$top_srcdir/tests/e2e/check_collect.py"
check_eval="$top_srcdir/tests/e2e/check_eval.py"
mock="$top_builddir/tools/dev/mock_judge"
d=$(mktemp -d /tmp/rlaif-eval-XXXXXX)
mpids=""
cleanup() {
  for p in $mpids; do kill "$p" 2>/dev/null; done
  rm -rf "$d"
}
trap cleanup EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RLAIF_TEST_JUDGE_KEY=sk-test-eval

cat >"$d/job.ini" <<'EOF'
[run]
seed = 5
log_every = 10000
[model]
n_layer = 2
n_embd = 32
n_head = 2
max_seq_len = 48
[data]
task = arithmetic
n_prompts = 300
max_operand = 9
[sft]
steps = 1200
batch_size = 16
lr = 3e-3
warmup_steps = 2
eval_prompts = 0
[eval]
n_prompts = 200
max_new_tokens = 8
[checkpoint]
every = 0
EOF
job="$d/job.ini"
run() { # run OUT_DIR NP [args...]: eval in $d/OUT_DIR on NP ranks, output in $d/out
  o=$1 np=$2
  shift 2
  (cd "$d" && timeout 120 "$mpi" -n "$np" --oversubscribe "$RLAIF" eval "$job" \
    --set run.out_dir="$o" "$@") </dev/null >"$d/out" 2>&1
}
sft() { # sft OUT_DIR STEPS: a model in $d/OUT_DIR/ckpt
  (cd "$d" && timeout 60 "$RLAIF" sft "$job" --set run.out_dir="$1" --set sft.steps="$2") \
    </dev/null >"$d/out" 2>&1 || fail "sft: $(cat "$d/out")"
}
row() { # row OUT_DIR: the last eval metrics row as KEY=VALUE lines (time, wall_s left out)
  "$py" -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if "\"phase\":\"eval\"" in l]
r = rows[-1]
for k in sorted(r):
    if k not in ("time", "wall_s"):
        print(f"{k}={r[k]}")' "$d/$1/progress.jsonl"
}
val() { row "$1" | sed -n "s/^$2=//p"; }
mock_start() { # mock_start NAME ARGS...: a mock judge; sets $port
  name=$1
  shift
  "$mock" --port-file "$d/$name.port" --idle-exit 120 "$@" >"$d/$name.mock.log" 2>&1 &
  mpids="$mpids $!"
  i=0
  while [ ! -s "$d/$name.port" ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i + 1)); done
  port=$(cat "$d/$name.port")
}
openai() { echo "--set judge.backend=openai --set judge.model=mock-judge --set judge.base_url=http://127.0.0.1:$1/v1 --set judge.api_key_env=RLAIF_TEST_JUDGE_KEY --set judge.timeout=10"; }

sft one 1200
sft small 5
sft mid 300
pol=one/ckpt/sft-00001200.h5 small=small/ckpt/sft-00000005.h5 mid=mid/ckpt/sft-00000300.h5

echo "== a. policy = baseline: win rate 0.5 exactly"
run one 1 || fail "same model: $(cat "$d/out")"
grep "^eval: win rate" "$d/out"
grep -q "^eval: win rate 0.5000 .* of $pol vs $pol: 200 pairs judged of 200: 0 wins, 0 losses, 200 ties (200 identical answers), 0 failed" "$d/out" ||
  fail "same model: $(cat "$d/out")"
grep -q "judge calls 0 " "$d/out" || fail "same model: judge called: $(cat "$d/out")"
[ "$(val one win_rate)" = 0.5 ] || fail "metrics row: $(row one)"
"$py" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r'); assert int(f.attrs['pairs_committed'])==200; assert (f['pairs']['label'][:]==0.5).all()" \
  "$d/one/eval.h5" || fail "eval.h5 of the same model"
"$py" "$check_eval" "$d/one/eval.h5" --kl-zero || fail "/eval of the same model"
[ "$(val one lc_win_rate)" = 0.5 ] && [ "$(val one kl)" = 0 ] || fail "lc/kl: $(row one)"
grep -q "^eval: length-controlled win rate 0.5000 " "$d/out" || fail "no lc line: $(cat "$d/out")"
grep -q "^eval: oracle rates of the policy's answers: accuracy" "$d/out" || fail "no oracle rates"

echo "== b. trained vs barely trained, and vs less trained"
judged() { # judged BASELINE MIN_WIN [LEARN]: win rate, accuracies and oracle agreement
  # LEARN=0: only the bookkeeping (counts, Wilson bounds), not who wins
  run one 1 --set eval.baseline="$1" || fail "vs $1: $(cat "$d/out")"
  grep "^eval:" "$d/out"
  row one | "$py" -c '
import sys
r = dict(l.strip().split("=", 1) for l in sys.stdin)
f = {k: float(v) for k, v in r.items() if k not in ("phase",) and v != "None"}
ok = (f["win_rate_lo"] > 0.5 and f["win_rate"] >= float(sys.argv[1])
      and f["policy_accuracy"] > f["baseline_accuracy"] and f["oracle_win_rate"] > 0.5
      and f["oracle_decided"] >= 10 and f["judge_oracle_agreement"] >= 0.9) or sys.argv[2] == "0"
# the Wilson score interval, recomputed (z = 1.959964)
n, p, z = f["judged"], (f["wins"] + 0.5 * f["ties"]) / f["judged"], 1.959964
c, h = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
# the greedy answers of the policy are likelier under it than under another model
ok = ok and f["kl"] > 0 and abs(f["win_rate"] - p) < 1e-9 and abs(f["win_rate_lo"] - max(0, c - h)) < 1e-6 and abs(f["win_rate_hi"] - min(1, c + h)) < 1e-6
sys.exit(0 if ok else 1)' "$2" "${3:-1}" || fail "vs $1: $(row one | tr '\n' ' ')"
  "$py" "$check_eval" "$d/one/eval.h5" || fail "/eval vs $1"
}
judged "$small" 0.9
# 1200 vs 300 steps is a close race that rounding decides: the sanitizer
# build (-O1, other instruction selection) trains other trajectories, and on
# the Intel machine of 2026-12-01 its 1200-step model tied the 300-step one
# (13% each). The plain build asserts who wins; the sanitizer build checks
# the bookkeeping of the same run under ASan/UBSan.
learn=1
grep -q fsanitize "$top_builddir/config.h" 2>/dev/null && learn=0
judged "$mid" 0.6 $learn

echo "== c. 1 rank vs 2 rollout + 2 judge ranks, sampled; skip; journal"
t="--set eval.temperature=0.8 --set eval.policy=$pol --set eval.baseline=$mid"
# shellcheck disable=SC2086
run r1 1 $t || fail "1 rank: $(cat "$d/out")"
# shellcheck disable=SC2086
run r4 4 $t --set ranks.layout=split --set ranks.learner=0 --set ranks.rollout=2 \
  --set ranks.judge=2 || fail "2+2: $(cat "$d/out")"
"$py" "$check" same "$d/r1/eval.h5" "$d/r4/eval.h5" || fail "2+2 pairs differ from 1 rank"
"$py" "$check_eval" "$d/r4/eval.h5" || fail "/eval of 2+2 ranks"
"$py" -c "
import sys, h5py, numpy as np
a, b = (h5py.File(p, 'r')['eval'] for p in sys.argv[1:])
for c in a:
    if not np.array_equal(a[c][:], b[c][:], equal_nan=True): sys.exit('column ' + c)
for k in a.attrs:
    x, y = a.attrs[k], b.attrs[k]
    same = x == y if isinstance(x, (bytes, str)) else np.array_equal(x, y, equal_nan=True)
    if not same: sys.exit('attribute ' + k)
" "$d/r1/eval.h5" "$d/r4/eval.h5" || fail "/eval of 2+2 ranks differs from 1 rank"
"$py" "$top_srcdir/tools/user/rlaif-analyze" eval "$d/r4/eval.h5" --out "$d/plots" >"$d/an" 2>&1 &&
  grep -q "length-controlled win rate" "$d/an" && [ -s "$d/plots/eval_length.png" ] ||
  fail "rlaif-analyze eval: $(cat "$d/an")"
head -4 "$d/an"
[ "$(row r1)" = "$(row r4)" ] || fail "metrics differ: $(row r1 | tr '\n' ' ') vs $(row r4 | tr '\n' ' ')"
echo "1 rank = 2+2 ranks: win rate $(val r1 win_rate), consistency $(val r1 consistency)"
# names, sizes and mtimes, not ls's "total" line: that counts allocated
# blocks, which the file system settles after a write (delayed allocation);
# on 2026-12-01 it went from 368 to 372 during the skipped rerun, every file
# unchanged (the sanitizer-build "KNOWN ISSUE" of before, explained)
listing() { ls -l --time-style=full-iso "$1" | grep -v '^total '; }
before=$(listing "$d/r1")
# shellcheck disable=SC2086
run r1 2 $t || fail "rerun: $(cat "$d/out")"
grep -q "eval: already complete (r1/eval.h5, same settings); skipping" "$d/out" ||
  fail "finished eval not skipped: $(cat "$d/out")"
grep -q "^eval: win rate $(val r1 win_rate | cut -c1-4)" "$d/out" || fail "skip: no results: $(cat "$d/out")"
after=$(listing "$d/r1")
[ "$before" = "$after" ] || fail "a skipped eval wrote files: $before // $after"
mock_start http --latency 0.005
# shellcheck disable=SC2046,SC2086
run http 2 $t $(openai "$port") || fail "mock judge: $(cat "$d/out")"
asked=$(mock_stat "$port" requests)
[ "$asked" -gt 0 ] || fail "mock judge got no request"
mv "$d/http/eval.h5" "$d/http-first.h5"
# shellcheck disable=SC2046,SC2086
run http 2 $t $(openai "$port") || fail "mock judge rerun: $(cat "$d/out")"
[ "$(mock_stat "$port" requests)" = "$asked" ] || fail "the rerun asked the server again: $(cat "$d/out")"
grep -q "judge calls \([0-9]*\) (\1 answered from the journal)" "$d/out" ||
  fail "rerun not from the journal: $(cat "$d/out")"
"$py" "$check" same "$d/http-first.h5" "$d/http/eval.h5" || fail "the rerun's labels differ"
echo "mock judge: $asked requests, rerun: 0 requests ($(grep -o 'judge calls [^;]*' "$d/out" | tail -1))"

# a real SIGTERM while judging (mock latency 0.1 s): exit 75, the rerun
# finishes from the journal and pays for nothing twice
mock_start slow --latency 0.1
slow="--set judge.max_inflight=4 --set eval.n_prompts=40"
# shellcheck disable=SC2046,SC2086
(cd "$d" && exec timeout 60 "$RLAIF" eval "$job" --set run.out_dir=term $t $(openai "$port") \
  $slow) </dev/null >"$d/term.out" 2>&1 &
pid=$!
# the signal once the judge has answered something (a fixed sleep raced the
# start-up of a loaded machine: the stop then came before any paid call)
req0=$(mock_stat "$port" requests now) i=0
while [ "$(mock_stat "$port" requests now)" -le "$req0" ] && [ $i -lt 600 ] && kill -0 $pid 2>/dev/null; do
  sleep 0.1
  i=$((i + 1))
done
sleep 0.3
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 75 ] || fail "SIGTERM: exit $rc, expected 75: $(cat "$d/term.out")"
grep -q "eval: stopped (signal 15) while judging" "$d/term.out" || fail "SIGTERM: $(cat "$d/term.out")"
before=$(mock_stat "$port" requests)
# shellcheck disable=SC2046,SC2086
run term 1 $t $(openai "$port") $slow || fail "rerun after SIGTERM: $(cat "$d/out")"
grep -q "40 pairs judged of 40" "$d/out" || fail "rerun after SIGTERM: $(cat "$d/out")"
[ "$(mock_stat "$port" paid_repeats)" = 0 ] || fail "the rerun paid $(mock_stat "$port" paid_repeats) calls again"
grep -q "(0 answered from the journal)" "$d/out" && fail "nothing replayed: $(cat "$d/out")"
echo "SIGTERM after $before requests: exit 75; rerun: $(grep -o 'judge calls [^;]*' "$d/out"), 0 paid repeats"

# JSONL prompts: the last eval.n_prompts records
printf '%s\n' '{"prompt": "What is 2 plus 3?"}' '{"prompt": "What is 7 times 8?"}' \
  '{"prompt": "What is 9 minus 4?"}' >"$d/prompts.jsonl"
run jl 1 --set data.task=jsonl --set eval.prompts=prompts.jsonl --set eval.n_prompts=2 \
  --set eval.policy="$pol" --set eval.baseline="$small" || fail "jsonl: $(cat "$d/out")"
grep -q "2 pairs judged of 2" "$d/out" || fail "jsonl: $(cat "$d/out")"
"$py" -c "
import h5py, sys
P = h5py.File(sys.argv[1], 'r')['prompts']
b = P['bytes'][:].tobytes()
got = sorted(b[o:o + l].decode() for o, l in zip(P['offset'][:], P['length'][:]))
sys.exit(0 if got == ['What is 7 times 8?', 'What is 9 minus 4?'] else 1)" "$d/jl/eval.h5" ||
  fail "jsonl: not the last two prompts"

echo "== d. bad inputs"
bad() { # bad CODE PATTERN OUT_DIR ARGS...: one ERROR line matching PATTERN, exit CODE
  code=$1 pat=$2 o=$3
  shift 3
  run "$o" 1 "$@"
  rc=$?
  [ $rc = "$code" ] || fail "$*: exit $rc, expected $code: $(cat "$d/out")"
  [ "$(grep -c '^ERROR' "$d/out")" = 1 ] || fail "$*: not one ERROR line: $(cat "$d/out")"
  grep -q "$pat" "$d/out" || fail "$*: no '$pat' in: $(cat "$d/out")"
}
bad 66 "eval.policy = '': no finished ppo, dpo or sft checkpoint in empty/ckpt" empty
bad 66 "eval.baseline: cannot read checkpoint 'nope.h5'" one --set eval.baseline=nope.h5
bad 66 "eval.baseline = 'dpo': no finished dpo checkpoint in one/ckpt" one --set eval.baseline=dpo
bad 66 "eval.policy: cannot read checkpoint 'gone.h5'" one --set eval.policy=gone.h5
bad 66 "eval.prompts: .*nope.jsonl" one --set data.task=jsonl --set eval.prompts=nope.jsonl
echo "PASS"
