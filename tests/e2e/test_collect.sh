#!/bin/sh
# `rlaif collect` on a tiny SFT policy trained here (60 steps, < 1 s):
#  a. 1 rank (colocated), 2 rollout + 2 judge, 1 rollout + 3 judge and 2
#     colocated ranks store the same pair ids with identical texts and labels
#     (builtin judge, noiseless: right answers always win); a rerun is skipped;
#     prompts from a JSONL file;
#  b. stop and crash: --stop-after (as SIGTERM) exits 75 and the rerun
#     finishes with every pair once and the same pairs as an uninterrupted
#     run; with the openai backend against tools/dev/mock-judge on loopback, a
#     kill -9 (--crash-after) mid-run after some stores, then a rerun: every
#     pair once, the same pairs as an uninterrupted run, and the server counts
#     0 paid repeats (the journal answers what was paid for);
#  c. a slow judge (mock latency 0.2 s, 2 requests in flight) and credit 3 on
#     a split 1 rollout + 1 judge layout: no rollout ever has more than 3
#     pairs handed out, and while it waits its CPU time stays small (no
#     busy-wait); a real SIGTERM while waiting on it: exit 75, rerun finishes;
#  d. bad inputs: no SFT checkpoint (or only an unfinished one), a missing
#     init_from, a missing or malformed prompts file -> one ERROR line naming
#     it, exit 66 or 64.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
: "${top_builddir:?set by make check}"
check="$top_srcdir/tests/e2e/check_collect.py"
mock="$top_builddir/tools/dev/mock_judge"
d=$(mktemp -d /tmp/rlaif-collect-XXXXXX)
mpids=""
cleanup() {
  for p in $mpids; do kill "$p" 2>/dev/null; done
  rm -rf "$d"
}
trap cleanup EXIT
export OMP_NUM_THREADS=1 RLAIF_TEST_JUDGE_KEY=sk-test-collect

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
credit = 8
[checkpoint]
every = 0
EOF
job="$d/job.ini"
run() { # run OUT_DIR NP [args...]: collect in $d/OUT_DIR on NP ranks, output in $d/out
  o=$1 np=$2
  shift 2
  (cd "$d" && timeout 120 "$mpi" -n "$np" --oversubscribe "$RLAIF" collect "$job" \
    --set run.out_dir="$o" "$@") </dev/null >"$d/out" 2>&1
}
sft() { # a policy in $d/$1/ckpt (the same bits each time: same seed, 1 learner)
  (cd "$d" && timeout 60 "$RLAIF" sft "$job" --set run.out_dir="$1") </dev/null >"$d/out" 2>&1 ||
    fail "sft: $(cat "$d/out")"
}
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

echo "== a. the same pairs on 1, 2+2, 1+3 and 2 colocated ranks"
for o in one split22 split13 colo2 stop crash ref_http; do sft "$o"; done
run one 1 || fail "1 rank: $(cat "$d/out")"
grep -q "80 pairs judged: 80 labelled, 0 failed" "$d/out" || fail "1 rank: $(cat "$d/out")"
"$py" "$check" count "$d/one/preferences.h5" 80 || fail "1 rank: pairs"
"$py" "$check" oracle "$d/one/preferences.h5" || fail "1 rank: labels"
grep -q '"phase":"collect","step":80,.*"pairs":80,"labelled":80,' "$d/one/progress.jsonl" ||
  fail "no metrics row: $(cat "$d/one/progress.jsonl")"
split="--set ranks.layout=split --set ranks.learner=0"
# shellcheck disable=SC2086
run split22 4 $split --set ranks.rollout=2 --set ranks.judge=2 || fail "2+2: $(cat "$d/out")"
grep -q "2 rollout and 2 judge ranks (split layout)" "$d/out" || fail "2+2 layout: $(cat "$d/out")"
"$py" "$check" same "$d/one/preferences.h5" "$d/split22/preferences.h5" || fail "2+2 differs"
# shellcheck disable=SC2086
run split13 4 $split --set ranks.rollout=1 --set ranks.judge=3 || fail "1+3: $(cat "$d/out")"
"$py" "$check" same "$d/one/preferences.h5" "$d/split13/preferences.h5" || fail "1+3 differs"
run colo2 2 || fail "2 colocated: $(cat "$d/out")"
"$py" "$check" same "$d/one/preferences.h5" "$d/colo2/preferences.h5" || fail "2 colocated differs"
before=$(ls -l --time-style=full-iso "$d/one")
run one 2 || fail "rerun: $(cat "$d/out")"
grep -q "collect: already complete (one/preferences.h5: 80 pairs, same settings); skipping" \
  "$d/out" || fail "finished collect not skipped: $(cat "$d/out")"
[ "$before" = "$(ls -l --time-style=full-iso "$d/one")" ] || fail "a skipped collect wrote files"
# prompts from JSONL (the same questions as problems 0..39 would do; here 3 own ones)
printf '%s\n' '{"prompt": "What is 2 plus 3?"}' '{"prompt": "What is 7 times 8?"}' \
  '{"prompt": "What is 9 minus 4?"}' >"$d/prompts.jsonl"
mkdir -p "$d/jl" && cp -r "$d/one/ckpt" "$d/jl/"
run jl 2 --set data.task=jsonl --set data.prompts=prompts.jsonl || fail "jsonl: $(cat "$d/out")"
grep -q "3 prompts x 4 responses" "$d/out" || fail "jsonl prompts: $(cat "$d/out")"
"$py" "$check" count "$d/jl/preferences.h5" 6 || fail "jsonl: pairs"

echo "== b. stop and rerun; kill -9 and rerun against the mock judge"
run stop 2 --stop-after 15 --store-every 4
rc=$?
[ $rc = 75 ] || fail "--stop-after: exit $rc, expected 75: $(cat "$d/out")"
grep -q "collect: stopped (signal 15)" "$d/out" || fail "no stop line: $(cat "$d/out")"
run stop 2 || fail "rerun after the stop: $(cat "$d/out")"
grep -q "collect: resuming: stop/preferences.h5 holds" "$d/out" || fail "no resume: $(cat "$d/out")"
"$py" "$check" count "$d/stop/preferences.h5" 80 || fail "stop + rerun: pairs"
"$py" "$check" same "$d/one/preferences.h5" "$d/stop/preferences.h5" || fail "stop + rerun differs"

mock_start ref --latency 0.01
# shellcheck disable=SC2046
run ref_http 2 $(openai "$port") || fail "mock judge: $(cat "$d/out")"
mock_start crash --latency 0.01
# shellcheck disable=SC2046
run crash 2 $(openai "$port") --store-every 4 --crash-after 25
grep -q "crash-after 25 reached" "$d/out" || fail "no crash: $(cat "$d/out")"
n=$("$py" -c "import h5py,sys; print(int(h5py.File(sys.argv[1],'r').attrs.get('pairs_committed', 0)))" \
  "$d/crash/preferences.h5") || fail "the file after kill -9 does not open"
[ "$n" -gt 0 ] && [ "$n" -lt 80 ] || fail "after the kill: $n pairs stored, expected some"
paid=$(mock_stat "$port" delivered)
# shellcheck disable=SC2046
run crash 2 $(openai "$port") || fail "rerun after kill -9: $(cat "$d/out")"
echo "kill -9 after 25 pairs: $n stored, $paid answers delivered; rerun: $(grep -o 'judge calls [^,]*' "$d/out")"
"$py" "$check" count "$d/crash/preferences.h5" 80 || fail "kill + rerun: pairs"
"$py" "$check" same "$d/ref_http/preferences.h5" "$d/crash/preferences.h5" || fail "kill + rerun differs"
[ "$(mock_stat "$port" paid_repeats)" = 0 ] || fail "the rerun paid $(mock_stat "$port" paid_repeats) calls again"
grep -q "answered from the journal" "$d/out" && ! grep -q "(0 answered from the journal)" "$d/out" ||
  fail "the rerun replayed nothing from the journal: $(cat "$d/out")"

echo "== c. credit 3 and a slow judge on 1 rollout + 1 judge"
mock_start slow --latency 0.2
mkdir -p "$d/slow" && cp -r "$d/one/ckpt" "$d/slow/"
# shellcheck disable=SC2046,SC2086
run slow 2 $split --set ranks.rollout=1 --set ranks.judge=1 $(openai "$port") \
  --set judge.max_inflight=2 --set judge.both_orders=0 --set data.n_prompts=12 \
  --set collect.credit=3 || fail "slow judge: $(cat "$d/out")"
line=$(grep "max outstanding pairs per rollout rank" "$d/out") || fail "no credit line: $(cat "$d/out")"
echo "$line" | sed 's/^\[[^]]*\] //'
"$py" - "$line" <<'EOF' || fail "credit or CPU"
import re, sys
m = re.search(r"credit (\d+): max outstanding pairs per rollout rank (\d+); after sampling, "
              r"rollout ranks waited ([\d.]+) s using ([\d.]+) s CPU", sys.argv[1])
credit, most, wall, cpu = int(m[1]), int(m[2]), float(m[3]), float(m[4])
ok = 1 <= most <= credit and wall > 1.0 and cpu < 0.1 * wall
print(f"credit {credit}, max outstanding {most}; waited {wall} s, {cpu} s CPU ({100 * cpu / wall:.1f}%)")
sys.exit(0 if ok else 1)
EOF
"$py" "$check" count "$d/slow/preferences.h5" 24 || fail "slow judge: pairs"
# a real SIGTERM to a single-process run waiting on the slow judge: the
# labelled pairs are stored, exit 75; the rerun finishes them
mkdir -p "$d/term" && cp -r "$d/one/ckpt" "$d/term/"
# shellcheck disable=SC2046
(cd "$d" && exec timeout 60 "$RLAIF" collect "$job" --set run.out_dir=term $(openai "$port") \
  --set judge.max_inflight=2 --set judge.both_orders=0 --set data.n_prompts=12) </dev/null \
  >"$d/term.out" 2>&1 &
pid=$!
sleep 1
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 75 ] || fail "SIGTERM: exit $rc, expected 75: $(cat "$d/term.out")"
grep -q "collect: stopped (signal 15)" "$d/term.out" || fail "SIGTERM: $(cat "$d/term.out")"
# shellcheck disable=SC2046
run term 1 $(openai "$port") --set judge.max_inflight=2 --set judge.both_orders=0 \
  --set data.n_prompts=12 || fail "rerun after SIGTERM: $(cat "$d/out")"
"$py" "$check" count "$d/term/preferences.h5" 24 || fail "SIGTERM + rerun: pairs"

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
bad 66 "no sft checkpoint empty/ckpt/sft-\*.h5" empty
bad 66 "model.init_from: cannot read 'nope.h5'" empty --set model.init_from=nope.h5
# an sft stopped at step 3 (exit 75, not rerun) is not a policy
(cd "$d" && timeout 60 "$RLAIF" sft "$job" --set run.out_dir=half --stop-after 3) </dev/null \
  >"$d/out" 2>&1
[ $? = 75 ] || fail "sft --stop-after 3: $(cat "$d/out")"
bad 66 "no finished sft checkpoint half/ckpt/sft-\*.h5" half
printf '%s\n' '{"prompt": "What is 1 plus 1?"}' '{"prompt": 7}' >"$d/bad.jsonl"
bad 64 "bad.jsonl:2" one --set data.task=jsonl --set data.prompts=bad.jsonl
bad 66 "missing.jsonl" one --set data.task=jsonl --set data.prompts=missing.jsonl
echo "PASS"
