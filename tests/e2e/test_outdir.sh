#!/bin/sh
# What a job finds in its out_dir, as separate `rlaif sft` jobs on a tiny model:
#  a. damaged checkpoints: one bit flipped inside a parameter tensor of the
#     newest checkpoint (found by h5py) with no older one: exit 74 naming the
#     file, no step trained, nothing written or removed; with an older good
#     one: a warning naming both files, then training resumes from the older;
#     a damaged model.init_from is refused (exit 74) before it is used;
#  b. an incompatible rerun (another model.n_layer) in the same out_dir:
#     exit 64 naming the key, every checkpoint byte for byte kept; the
#     original job then resumes;
#  c. two jobs on one out_dir: the second exits 74 naming the first's host
#     and pid while the first keeps running; after a kill -9 of the first
#     (no clean-up) the next job takes the lock at once.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
d=$(mktemp -d /tmp/rlaif-outdir-XXXXXX)
first=
trap '[ -n "$first" ] && kill -9 $first 2>/dev/null; rm -rf "$d"' EXIT
export OMP_NUM_THREADS=1

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
every = 2
keep = 10
EOF
sft() { (cd "$d" && timeout 120 "$RLAIF" sft job.ini "$@") </dev/null >"$d/out" 2>&1; }
sums() { (cd "$d/$1/ckpt" && md5sum *); }
# flip bit 3 of byte 100 of the data of params/<tensor> in a checkpoint
flip() {
  "$py" - "$1" <<'EOF' || fail "flip"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    off = f["params/h.0.mlp.c_fc.weight"].id.get_offset() + 100
with open(sys.argv[1], "r+b") as g:
    g.seek(off); b = g.read(1)[0]; g.seek(off); g.write(bytes([b ^ 8]))
EOF
}

echo "== a. a damaged newest checkpoint"
sft --set run.out_dir=a1 --set checkpoint.every=0 --stop-after 5
[ $? -eq 75 ] || fail "stop at 5: $(cat "$d/out")"
flip "$d/a1/ckpt/sft-00000005.h5"
before=$(sums a1)
sft --set run.out_dir=a1
rc=$?
echo "no older one: exit $rc: $(grep ERROR "$d/out")"
[ $rc -eq 74 ] || fail "expected 74, got $rc: $(cat "$d/out")"
grep -q "^ERROR: .*sft-00000005.h5, is damaged .*checksum mismatch in params/h.0.mlp.c_fc.weight" \
  "$d/out" || fail "the error does not name the file and the tensor: $(cat "$d/out")"
! grep -q "sft step" "$d/out" || fail "trained on damaged values: $(cat "$d/out")"
[ "$(sums a1)" = "$before" ] || fail "checkpoints changed: $(ls "$d/a1/ckpt")"

sft --set run.out_dir=a2 --stop-after 5 # checkpoints 2, 4 and 5
[ $? -eq 75 ] || fail "stop at 5: $(cat "$d/out")"
flip "$d/a2/ckpt/sft-00000005.h5"
sft --set run.out_dir=a2 || fail "with an older good one: $(cat "$d/out")"
grep -q "WARN.*resuming from the older checkpoint .*sft-00000004.h5 instead of the damaged newest .*sft-00000005.h5" \
  "$d/out" || fail "no warning naming both files: $(cat "$d/out")"
grep -q "resuming from .*sft-00000004.h5 at step 4/12" "$d/out" || fail "not from 4: $(cat "$d/out")"
[ -f "$d/a2/ckpt/sft-00000012.h5" ] || fail "did not finish"
# a model to start from (model.init_from, the engine's loader) is verified too
cp "$d/a2/ckpt/sft-00000012.h5" "$d/damaged.h5" && flip "$d/damaged.h5"
sft --set run.out_dir=a3 --set model.init_from=damaged.h5
rc=$?
[ $rc -eq 74 ] && grep -q "^ERROR: .*damaged.h5: checksum mismatch in /params/h.0.mlp.c_fc.weight" \
  "$d/out" || fail "init_from a damaged file: exit $rc: $(cat "$d/out")"

echo "== b. an incompatible rerun"
sft --set run.out_dir=b --stop-after 5
[ $? -eq 75 ] || fail "stop at 5: $(cat "$d/out")"
before=$(sums b)
sft --set run.out_dir=b --set model.n_layer=3
rc=$?
echo "n_layer 3: exit $rc: $(grep ERROR "$d/out")"
[ $rc -eq 64 ] || fail "expected 64, got $rc: $(cat "$d/out")"
grep -q "^ERROR: the job does not match the outputs in its out_dir .*model.n_layer = 3 (was 2)" \
  "$d/out" || fail "the error does not name the key: $(cat "$d/out")"
[ "$(sums b)" = "$before" ] || fail "checkpoints changed"
sft --set run.out_dir=b || fail "the original job: $(cat "$d/out")"
grep -q "resuming from .*sft-00000005.h5 at step 5/12" "$d/out" || fail "not resumed: $(cat "$d/out")"

echo "== c. two jobs on one out_dir"
(cd "$d" && exec "$RLAIF" sft job.ini --set run.out_dir=c --set sft.steps=100000 \
  --set checkpoint.every=0) </dev/null >"$d/first" 2>&1 &
first=$!
i=0
until grep -q "pid $first" "$d/c/.rlaif.lock" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 600 ] || fail "the first job never took the lock: $(cat "$d/first")"
  sleep 0.1
done
(cd "$d" && timeout 120 "$mpi" -n 2 --oversubscribe "$RLAIF" sft job.ini --set run.out_dir=c) \
  </dev/null >"$d/out" 2>&1
rc=$?
echo "second job: exit $rc: $(grep ERROR "$d/out")"
[ $rc -eq 74 ] || fail "expected 74, got $rc: $(cat "$d/out")"
grep -q "^ERROR: .*c/.rlaif.lock is locked by another rlaif job (host $(hostname), pid $first, job" \
  "$d/out" || fail "the holder is not named: $(cat "$d/out")"
kill -0 $first 2>/dev/null || fail "the first job died: $(cat "$d/first")"
kill -9 $first
wait $first 2>/dev/null
first=
sft --set run.out_dir=c --set sft.steps=3 || fail "after kill -9 of the holder: $(cat "$d/out")"
echo PASS
