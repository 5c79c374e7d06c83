#!/bin/sh
# A full disk during a checkpoint, for real: the checkpoint folder is a small
# tmpfs (mounting needs root: the test is skipped, exit 77, where it is not
# allowed) that holds one checkpoint of the tiny model but not two. On 1, 2
# and 4 ranks the second checkpoint must fail within the time bound (a hang
# is a failure) with exit 74 and one error naming the file and the free
# space; the first checkpoint stays byte for byte, LATEST still names it, no
# .tmp is left; and on a disk with room again the run resumes from it.
# Twice: as is (the space is reserved with fallocate before the parallel
# writes, so the reservation fails) and with RLAIF_TEST_NO_FALLOCATE=1 (as on a
# file system without fallocate: the parallel writes themselves fail, and
# the failure must be agreed before the collective close, which used to hang).
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
d=$(mktemp -d /tmp/rlaif-enospc-XXXXXX)
m="$d/disk"
mkdir -p "$m"
cleanup() { umount "$m" 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
export OMP_NUM_THREADS=1
if ! mount -t tmpfs -o size=700k tmpfs "$m" 2>/dev/null; then
  echo "SKIP: cannot mount a tmpfs here (needs root)"
  exit 77
fi
umount "$m"

cat >"$d/job.ini" <<'EOF'
[run]
seed = 5
log_every = 100
[model]
n_layer = 2
n_embd = 32
n_head = 2
max_seq_len = 32
[data]
n_prompts = 40
max_operand = 20
[sft]
steps = 12
batch_size = 8
micro_batch = 2
eval_prompts = 0
[checkpoint]
every = 5
keep = 10
EOF

# one checkpoint of this model is 474 KB: 700 KB holds one, not two
for mode in reserve nofallocate; do
for n in 1 2 4; do
  if [ $mode = nofallocate ]; then export RLAIF_TEST_NO_FALLOCATE=1; else unset RLAIF_TEST_NO_FALLOCATE; fi
  mount -t tmpfs -o size=700k tmpfs "$m" || fail "mount"
  out="$d/o$n$mode"
  launch="timeout 180"
  [ $n -gt 1 ] && launch="timeout 180 $mpi -n $n --oversubscribe"
  # a. the first checkpoint (step 5), then stop as on SIGTERM
  (cd "$d" && $launch "$RLAIF" sft job.ini --set run.out_dir=$out --set checkpoint.dir=$m \
    --set checkpoint.every=0 --stop-after 5) </dev/null >"$d/out" 2>&1
  rc=$?
  [ $rc -eq 75 ] || fail "$mode, $n ranks: first checkpoint: exit $rc: $(cat "$d/out")"
  sum=$(md5sum <"$m/sft-00000005.h5")
  # b. the second checkpoint does not fit
  start=$(date +%s)
  (cd "$d" && $launch "$RLAIF" sft job.ini --set run.out_dir=$out --set checkpoint.dir=$m) \
    </dev/null >"$d/out" 2>&1
  rc=$?
  echo "$mode, $n ranks: exit $rc after $(($(date +%s) - start)) s: $(grep ERROR "$d/out")"
  [ $rc -ne 124 ] || fail "$mode, $n ranks: hung on a full disk: $(cat "$d/out")"
  [ $rc -eq 74 ] || fail "$mode, $n ranks: expected exit 74, got $rc: $(cat "$d/out")"
  [ "$(grep -c '^ERROR' "$d/out")" -eq 1 ] || fail "$mode, $n ranks: expected one ERROR line: $(cat "$d/out")"
  grep -q "^ERROR: .*sft-00000010.h5.tmp.*MiB free of" "$d/out" ||
    fail "$mode, $n ranks: the error names neither the file nor the free space: $(cat "$d/out")"
  [ "$(md5sum <"$m/sft-00000005.h5")" = "$sum" ] || fail "$mode, $n ranks: the previous checkpoint changed"
  [ "$(cat "$m/LATEST")" = "sft-00000005.h5" ] || fail "$mode, $n ranks: LATEST is $(cat "$m/LATEST")"
  [ "$(ls "$m")" = "$(printf 'LATEST\nsft-00000005.h5')" ] || fail "$mode, $n ranks: left: $(ls "$m")"
  # c. room again (the same files on the real disk): resume from step 5 and finish
  [ $mode = nofallocate ] || grep -q "No space left on device" "$d/out" || fail "no reason given"
  mkdir -p "$d/room$n$mode" && cp "$m"/* "$d/room$n$mode/"
  umount "$m"
  (cd "$d" && $launch "$RLAIF" sft job.ini --set run.out_dir=$out --set checkpoint.dir=$d/room$n$mode) \
    </dev/null >"$d/out" 2>&1 || fail "$mode, $n ranks: resume with room: $(cat "$d/out")"
  grep -q "sft-00000005.h5" "$d/out" && [ -f "$d/room$n$mode/sft-00000012.h5" ] ||
    fail "$mode, $n ranks: did not resume from step 5: $(cat "$d/out")"
done
done
echo PASS
