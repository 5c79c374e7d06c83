#!/bin/sh
# Issue 12.11: a run killed (kill -9) after a checkpoint, with metric rows
# already written for steps beyond it, then resumed: every sft step is in
# progress.jsonl and in metrics.h5 /sft exactly once, in order, no gaps.
# The process is frozen (SIGSTOP) before the kill so the test knows for sure
# that rows past the newest checkpoint exist (the case that repeated them).
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
py=/usr/bin/python3
"$py" -c 'import h5py' 2>/dev/null || { echo "SKIP: no h5py for /usr/bin/python3"; exit 77; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
out=$tmp/run
steps=80
# $1: "" or "timeout 600" (the killed run is rlaif itself, so that the
# signals reach it and not a wrapper)
sft() {
  # shellcheck disable=SC2086
  exec $1 "$RLAIF" sft "$top_srcdir/jobs/demo.ini" --set sft.steps=$steps \
    --set sft.eval_prompts=4 --set run.log_every=1 --set checkpoint.every=10 --set run.out_dir="$out"
}
newest_ckpt() { ls "$out/ckpt" 2>/dev/null | sed -n 's/^sft-0*\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -1; }
last_row() { grep '"phase":"sft"' "$out/progress.jsonl" 2>/dev/null | tail -1 | sed 's/.*"step":\([0-9]*\).*/\1/'; }

killed=0
for attempt in 1 2 3; do
  (cd "$tmp" && sft "") </dev/null >"$tmp/first.out" 2>&1 &
  pid=$!
  i=0
  while [ $i -lt 3000 ] && kill -0 $pid 2>/dev/null; do
    c=$(newest_ckpt)
    r=$(last_row)
    if [ -n "$c" ] && [ -n "$r" ] && [ "$r" -ge $((c + 2)) ] && [ "$r" -lt $((steps - 2)) ]; then
      kill -STOP $pid
      c=$(newest_ckpt)
      r=$(last_row)
      if [ "$r" -gt "$c" ]; then
        kill -9 $pid
        wait $pid 2>/dev/null
        pid=
        echo "killed at row $r, newest checkpoint at step $c"
        killed=1
        break
      fi
      kill -CONT $pid
    fi
    sleep 0.02
    i=$((i + 1))
  done
  [ $killed = 1 ] && break
  [ -n "$pid" ] && { kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; pid=; }
  rm -rf "$out"
done
[ $killed = 1 ] || { echo "FAIL: could not kill the run past a checkpoint"; cat "$tmp/first.out"; exit 1; }

(cd "$tmp" && sft "timeout 600") </dev/null >"$tmp/resume.out" 2>&1 ||
  { echo "FAIL: resume"; cat "$tmp/resume.out"; exit 1; }
grep -q "sft: resuming from" "$tmp/resume.out" || { echo "FAIL: did not resume"; exit 1; }

grep -q "WARNING" "$tmp/resume.out" && { echo "FAIL: warnings on resume"; cat "$tmp/resume.out"; exit 1; }
"$py" - "$out" $steps <<'PY'
import json, sys, h5py
out, steps = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(out + "/progress.jsonl")]
jl = [r["step"] for r in rows if r["phase"] == "sft"]
with h5py.File(out + "/metrics.h5", "r") as f:
    h5 = [int(s) for s in f["sft"]["step"]]
want = list(range(jl[0] if jl else 0, steps + 1))
bad = 0
for name, got in (("progress.jsonl", jl), ("metrics.h5 /sft", h5)):
    dup = sorted({s for s in got if got.count(s) > 1})
    if got != want:
        print(f"FAIL: {name}: {len(got)} rows, expected steps {want[0]}..{steps} once each; repeated: {dup}")
        bad = 1
    else:
        print(f"ok: {name}: steps {want[0]}..{steps}, each once")
sys.exit(bad)
PY
