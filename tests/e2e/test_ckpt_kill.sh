#!/bin/sh
# Checkpoints under failure, as separate MPI jobs:
#  1. written by 3 ranks, resumed on 2: every parameter and moment bit for bit;
#  2. a writer killed with kill -9 in the middle of a checkpoint write leaves
#     the previous checkpoint loadable (and verified bit for bit, on 3 ranks).
set -u
helper="${top_builddir:-.}/tests/e2e/storage_helper"
mpi="${MPIEXEC:-mpiexec}"
dir=$(mktemp -d /tmp/rlaif-ckpt-kill-XXXXXX)
trap 'rm -rf "$dir"' EXIT
N=6000000 # floats per buffer: 72 MB per checkpoint
fail() { echo "FAIL: $*"; exit 1; }

"$mpi" -n 3 --oversubscribe "$helper" ckpt-once "$dir/a" $N 5 || fail "write on 3 ranks"
out=$("$mpi" -n 2 --oversubscribe "$helper" ckpt-verify "$dir/a" $N) || fail "verify on 2 ranks: $out"
echo "$out"
echo "$out" | grep -q "resumed step 5 .* on 2 ranks: 0 mismatches" || fail "3 -> 2: $out"

# The kill must land while a .tmp is being written; retry when it landed
# between two writes.
for attempt in 1 2 3 4 5 6 7 8; do
  d="$dir/b$attempt"
  mkdir -p "$d"
  "$mpi" -n 2 --oversubscribe "$helper" ckpt-loop "$d" $N >"$d.log" 2>&1 &
  job=$!
  i=0
  while [ $i -lt 1200 ]; do
    # wait for two complete checkpoints and the next one in progress
    if [ "$(ls "$d"/loop-*.h5 2>/dev/null | wc -l)" -ge 2 ] && ls "$d"/*.tmp >/dev/null 2>&1; then break; fi
    sleep 0.02
    i=$((i + 1))
  done
  [ -f "$d/pid.0" ] && [ -f "$d/pid.1" ] || fail "the writer did not start: $(cat "$d.log")"
  kill -9 $(cat "$d/pid.0" "$d/pid.1") 2>/dev/null
  wait $job 2>/dev/null
  if ls "$d"/*.tmp >/dev/null 2>&1; then
    echo "killed during a write (attempt $attempt): $(ls "$d" | tr '\n' ' ')"
    newest=$(ls "$d"/loop-*.h5 | sort | tail -1)
    step=$(basename "$newest" .h5 | sed 's/loop-0*//')
    out=$("$mpi" -n 3 --oversubscribe "$helper" ckpt-verify "$d" $N 2>&1) || fail "resume after kill: $out"
    echo "$out"
    echo "$out" | grep -q "resumed step $step .* 0 mismatches" || fail "expected step $step: $out"
    # The next checkpoint removes the killed writer's .tmp and keeps the newest 2.
    "$mpi" -n 2 --oversubscribe "$helper" ckpt-once "$d" $N 999 || fail "write after kill"
    ! ls "$d"/*.tmp >/dev/null 2>&1 || fail "stale .tmp left: $(ls "$d")"
    [ "$(ls "$d"/loop-*.h5 | wc -l)" -eq 2 ] && [ "$(cat "$d/LATEST")" = "loop-00000999.h5" ] ||
      fail "after kill + new write: $(ls "$d")"
    echo "PASS"
    exit 0
  fi
  echo "attempt $attempt: the kill landed between writes; again"
done
fail "never killed a write in progress"
