#!/bin/sh
# Site I/O (issue 15): checkpoints staged on node-local scratch
# (io.stage_dir) as a Slurm job would, 2 ranks. The job stopped with exit 75
# (--stop-after, as at walltime) leaves its last checkpoint copied back to
# out_dir, byte-identical to the staged one and named by LATEST, and no
# periodic one; a new job whose scratch is empty resumes from out_dir and
# copies its final checkpoint back the same way.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/run
sft() { # $1: the job's scratch folder; the rest: extra arguments
  stage=$1
  shift
  (cd "$tmp" && timeout 600 "$mpi" -n 2 --oversubscribe "$RLAIF" sft "$top_srcdir/jobs/demo.ini" \
    --set sft.steps=12 --set sft.eval_prompts=4 --set checkpoint.every=4 \
    --set run.out_dir="$out" --set io.stage_dir="$stage" --set io.mpi_hints=cb_nodes=2 "$@")
}
ckpts() { (cd "$1" && ls sft-*.h5 2>/dev/null | tr '\n' ' '); }

sft "$tmp/scratch1" --stop-after 5 </dev/null >"$tmp/first.out" 2>&1
rc=$?
[ $rc = 75 ] || { cat "$tmp/first.out"; fail "the stopped job exits $rc, not 75"; }
grep -q "io: MPI-IO hints cb_nodes=2;.*checkpoints staged in $tmp/scratch1" "$tmp/first.out" ||
  fail "no io line at the start"
[ "$(ckpts "$tmp/scratch1")" = "sft-00000004.h5 sft-00000005.h5 " ] ||
  fail "staged: $(ckpts "$tmp/scratch1")"
[ "$(ckpts "$out/ckpt")" = "sft-00000005.h5 " ] || fail "out_dir holds: $(ckpts "$out/ckpt")"
cmp "$tmp/scratch1/sft-00000005.h5" "$out/ckpt/sft-00000005.h5" || fail "the copy differs"
[ "$(cat "$out/ckpt/LATEST")" = sft-00000005.h5 ] || fail "LATEST: $(cat "$out/ckpt/LATEST")"
ls "$out/ckpt"/*.tmp 2>/dev/null && fail "a .tmp is left in out_dir"
echo "stopped job: step 5 copied back, identical"

# the next job runs on a fresh node: its scratch is empty
sft "$tmp/scratch2" </dev/null >"$tmp/second.out" 2>&1 || { cat "$tmp/second.out"; fail "resume"; }
grep -q "sft: resuming from $out/ckpt/sft-00000005.h5 at step 5" "$tmp/second.out" ||
  { cat "$tmp/second.out"; fail "did not resume from out_dir"; }
[ "$(ckpts "$tmp/scratch2")" = "sft-00000008.h5 sft-00000012.h5 " ] ||
  fail "staged: $(ckpts "$tmp/scratch2")"
[ "$(ckpts "$out/ckpt")" = "sft-00000005.h5 sft-00000012.h5 " ] ||
  fail "out_dir holds: $(ckpts "$out/ckpt")"
cmp "$tmp/scratch2/sft-00000012.h5" "$out/ckpt/sft-00000012.h5" || fail "the final copy differs"
[ "$(cat "$out/ckpt/LATEST")" = sft-00000012.h5 ] || fail "LATEST: $(cat "$out/ckpt/LATEST")"
grep -q "sft: done; .* is $out/ckpt/sft-00000012.h5" "$tmp/second.out" ||
  fail "the phase does not name the copy in out_dir"
echo "final job: step 12 copied back, identical"

# later phases and reruns read out_dir: the phase is complete
sft "$tmp/scratch3" </dev/null >"$tmp/third.out" 2>&1 || { cat "$tmp/third.out"; fail "rerun"; }
grep -q "already complete" "$tmp/third.out" || { cat "$tmp/third.out"; fail "not complete"; }
echo "PASS"
