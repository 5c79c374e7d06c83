#!/bin/sh
# A judge that does not answer well is not a success (issue 12 items 8, 9),
# against tools/dev/mock_judge on loopback and a port nobody listens on:
#  a. an unset API-key variable: collect, eval and `rlaif judge` exit 64 with
#     one ERROR line naming the variable, before any work (no output file);
#  b. a wrong key (every call 401): collect on 1 rank and on 2 rollout + 2
#     judge ranks stops with exit 1 naming HTTP 401, within the time bound
#     (no hang), the file is not marked complete; with the right key the
#     same command labels every pair (the failed ones are retried) and a
#     third run is skipped;
#  c. a closed port: collect exits 1 naming the exhausted retries;
#  d. some pairs fail (500 on 20% of calls, one try): collect finishes, warns,
#     keeps them out of the file and does not mark it complete; the rerun
#     against a healthy judge completes every pair; with
#     collect.retry_failed = false they are stored as failed and the collect
#     is complete;
#  e. eval with a wrong key: exit 1, no win rate printed, eval.h5 not complete;
#  f. `rlaif judge` progress reads "step N/TOTAL" (never /-1); collect with
#     one order per pair prints "consistency n/a", never nan.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
: "${top_builddir:?set by make check}"
mock="$top_builddir/tools/dev/mock_judge"
d=$(mktemp -d /tmp/rlaif-judge-down-XXXXXX)
mpids=""
cleanup() {
  for p in $mpids; do kill "$p" 2>/dev/null; done
  rm -rf "$d"
}
trap cleanup EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

cat >"$d/job.ini" <<'EOF'
[run]
seed = 5
log_every = 1000
[model]
n_layer = 2
n_embd = 32
n_head = 2
max_seq_len = 48
[data]
task = arithmetic
n_prompts = 40
max_operand = 9
[sft]
steps = 60
batch_size = 16
lr = 3e-3
warmup_steps = 2
eval_prompts = 0
[collect]
responses_per_prompt = 4
pairs_per_prompt = 2
max_new_tokens = 8
[eval]
n_prompts = 40
policy = sft
baseline = sft
[judge]
backend = openai
model = mock-judge
api_key_env = RLAIF_TEST_JUDGE_KEY
timeout = 10s
connect_timeout = 2s
max_attempts = 2
backoff_base = 0.01s
backoff_cap = 0.05s
[checkpoint]
every = 0
EOF
job="$d/job.ini"
# run OUT NP CMD [args...]: rlaif CMD on NP ranks in $d with the key $key,
# output in $d/out, exit code in $rc; 150 s is the "no hang" bound (a hang is
# minutes: the machine is shared)
key=sk-test-right
run() {
  o=$1 np=$2 cmd=$3
  shift 3
  (cd "$d" && RLAIF_TEST_JUDGE_KEY=$key timeout 150 "$mpi" -n "$np" --oversubscribe "$RLAIF" "$cmd" "$job" \
    --set run.out_dir="$o" "$@") </dev/null >"$d/out" 2>&1
  rc=$?
}
mock_start() { # mock_start NAME ARGS...: a mock judge; sets $port
  name=$1
  shift
  "$mock" --port-file "$d/$name.port" --idle-exit 300 "$@" >"$d/$name.mock.log" 2>&1 &
  mpids="$mpids $!"
  i=0
  while [ ! -s "$d/$name.port" ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i + 1)); done
  port=$(cat "$d/$name.port") || fail "mock judge $name did not start"
}
url() { echo "--set judge.base_url=http://127.0.0.1:$1/v1"; }
prefs() { # prefs FILE: "<pairs> <labelled> <complete 0|1>"
  "$py" - "$1" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    n = int(f.attrs["pairs_committed"])
    lab = int(np.sum(~np.isnan(f["pairs"][:n]["label"])))
    print(n, lab, int("collect_complete" in f.attrs))
EOF
}
expect() { # expect RC PATTERN WHAT: exit code and one line of the output
  [ "$rc" = "$1" ] || fail "$3: exit $rc, expected $1: $(cat "$d/out")"
  grep -q "$2" "$d/out" || fail "$3: no '$2' in: $(cat "$d/out")"
}

(cd "$d" && timeout 120 "$RLAIF" sft "$job" --set run.out_dir=pol) </dev/null >"$d/out" 2>&1 ||
  fail "sft: $(cat "$d/out")"
fresh() { rm -rf "$d/$1" && mkdir -p "$d/$1" && cp -r "$d/pol/ckpt" "$d/$1/"; }

echo "== a. an unset key variable: exit 64 before any work"
mock_start open --latency 0.01
good=$port
for cmd in collect eval; do
  fresh nokey_$cmd
  run nokey_$cmd 1 $cmd $(url "$good") --set judge.api_key_env=RLAIF_NO_SUCH_KEY_VAR
  expect 64 "RLAIF_NO_SUCH_KEY_VAR (judge.api_key_env) is not set" "$cmd, unset key"
  [ "$(grep -c '^ERROR' "$d/out")" = 1 ] || fail "$cmd: not one ERROR line: $(cat "$d/out")"
  grep -q "$cmd: policy\|eval: policy" "$d/out" && fail "$cmd started work: $(cat "$d/out")"
  ls "$d/nokey_$cmd"/*.h5 >/dev/null 2>&1 && fail "$cmd wrote output without a key"
done
printf '{"prompt": "1+1=", "a": "2", "b": "3"}\n' >"$d/one.jsonl"
run nokey_judge 1 judge $(url "$good") --set judge.api_key_env=RLAIF_NO_SUCH_KEY_VAR \
  --input one.jsonl --output nokey.jsonl
expect 64 "RLAIF_NO_SUCH_KEY_VAR (judge.api_key_env) is not set" "judge, unset key"
echo "unset key: collect, eval, judge exit 64 naming the variable"

echo "== b. a wrong key: every call 401"
export MOCK_KEY=sk-test-right
mock_start auth --latency 0.01 --key-env MOCK_KEY
auth=$port
key=sk-test-wrong
for np in 1 4; do
  fresh wrong$np
  t0=$(date +%s)
  split=""
  [ $np = 4 ] && split="--set ranks.rollout=2 --set ranks.judge=2"
  # shellcheck disable=SC2046,SC2086
  run wrong$np $np collect $(url "$auth") $split
  expect 1 "the judge is not answering: .*HTTP 401" "collect on $np ranks, 401"
  grep -q "collect: done" "$d/out" && fail "401 on $np ranks reported done: $(cat "$d/out")"
  set -- $(prefs "$d/wrong$np/preferences.h5")
  [ "$3" = 0 ] || fail "401 on $np ranks: the file is marked complete"
  echo "401 on $np ranks: exit 1 after $(($(date +%s) - t0)) s, $1 pairs stored"
done
key=sk-test-right
run wrong1 1 collect $(url "$auth")
expect 0 "collect: done" "right key after 401"
set -- $(prefs "$d/wrong1/preferences.h5")
[ "$1 $2 $3" = "80 80 1" ] || fail "right key after 401: pairs/labelled/complete $*, expected 80 80 1"
run wrong1 1 collect $(url "$auth")
expect 0 "collect: already complete" "third run"
echo "right key: the same command labels all 80 pairs; a third run is skipped"

echo "== c. a closed port"
closed=$("$py" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1]); s.close()")
fresh closed
run closed 1 collect $(url "$closed")
expect 1 "the judge is not answering: .*exhausted" "closed port"
echo "closed port: exit 1 ($(grep -o 'status [a-z]* (HTTP [0-9-]*)' "$d/out" | head -1))"

echo "== d. some pairs fail: kept out, retried by the rerun"
mock_start flaky --latency 0.01 --faults 500 --fault-rate 0.2 --seed 3
flaky=$port
fresh some
run some 1 collect $(url "$flaky") --set judge.max_attempts=1 --set judge.both_orders=0
expect 0 "pairs the judge never answered are not in" "some failures"
set -- $(prefs "$d/some/preferences.h5")
[ "$1" -lt 80 ] && [ "$1" = "$2" ] && [ "$3" = 0 ] ||
  fail "some failures: pairs/labelled/complete $*: expected < 80, all labelled, not complete"
stored=$1
run some 1 collect $(url "$good") --set judge.max_attempts=1 --set judge.both_orders=0
expect 0 "collect: done" "rerun after some failures"
set -- $(prefs "$d/some/preferences.h5")
[ "$1 $2 $3" = "80 80 1" ] || fail "rerun after some failures: $*, expected 80 80 1"
echo "20% of calls 500: $stored of 80 pairs stored, not complete; the rerun completes 80"
fresh keep
run keep 1 collect $(url "$flaky") --set judge.max_attempts=1 --set judge.both_orders=0 \
  --set collect.retry_failed=false
expect 0 "collect: done" "retry_failed = false"
set -- $(prefs "$d/keep/preferences.h5")
[ "$1" = 80 ] && [ "$2" -lt 80 ] && [ "$3" = 1 ] ||
  fail "retry_failed = false: $*: expected 80 pairs, some unlabelled, complete"
echo "collect.retry_failed = false: 80 pairs stored, $2 labelled, complete"

echo "== e. eval with a wrong key"
fresh evalw
(cd "$d" && timeout 120 "$RLAIF" sft "$job" --set run.out_dir=small --set sft.steps=5) </dev/null \
  >"$d/out" 2>&1 || fail "small sft: $(cat "$d/out")"
base=$(ls "$d"/small/ckpt/sft-*.h5 | tail -1)
key=sk-test-wrong
run evalw 1 eval $(url "$auth") --set eval.baseline="$base"
key=sk-test-right
expect 1 "the judge is not answering: .*HTTP 401" "eval, 401"
grep -q "win rate" "$d/out" && fail "eval printed a win rate with every call failed: $(cat "$d/out")"
if [ -e "$d/evalw/eval.h5" ]; then
  "$py" -c "import sys, h5py; sys.exit('eval_complete' in h5py.File(sys.argv[1], 'r').attrs)" \
    "$d/evalw/eval.h5" || fail "eval with every call failed is marked complete"
fi
echo "eval, 401: exit 1, no win rate"

echo "== f. progress and n/a"
mock_start slow --latency 0.25
"$py" -c "
import json
for i in range(30): print(json.dumps({'id': i, 'prompt': '%d+1=' % i, 'a': str(i + 1), 'b': str(i)}))
" >"$d/pairs.jsonl"
run prog 1 judge $(url "$port") --set judge.max_inflight=1 --set judge.both_orders=0 \
  --input pairs.jsonl --output prog.jsonl
expect 0 "judge step [0-9]*/30 " "judge progress"
grep -q "step [0-9]*/-1" "$d/out" && fail "judge progress without a total: $(cat "$d/out")"
echo "judge progress: $(grep -o 'judge step [0-9]*/30' "$d/out" | head -1)"
fresh na
run na 1 collect $(url "$good") --set judge.both_orders=0
expect 0 "consistency n/a" "collect with one order"
grep -q "consistency nan" "$d/out" && fail "nan printed: $(cat "$d/out")"
echo "one order per pair: consistency n/a"
echo "PASS"
