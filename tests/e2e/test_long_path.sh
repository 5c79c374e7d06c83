#!/bin/sh
# Issue 12.10: an out_dir longer than ~200 characters used to abort Open
# MPI's "lockedfile" shared-file-pointer component ("buffer overflow
# detected", SIGABRT) at the first checkpoint, when parallel HDF5 opened the
# file through MPI-IO. sft on 2 ranks must checkpoint and finish in a 250-
# and a 1400-character out_dir, and a rerun must find the phase complete.
set -u
: "${RLAIF:?set by make check}" "${MPIEXEC:?set by make check}" "${top_srcdir:?set by make check}"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
unset OMPI_MCA_sharedfp
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# a folder under $tmp, built from 100-character components, at least $1 long
long_dir() {
  d=$tmp
  part=$(printf 'd%.0s' $(seq 1 99))
  while [ ${#d} -lt "$1" ]; do d="$d/$part"; done
  echo "$d"
}
for want in 250 1400; do
  out=$(long_dir $want)/run
  mkdir -p "$out"
  for attempt in first rerun; do
    (cd "$tmp" && timeout 300 "$MPIEXEC" -n 2 "$RLAIF" sft "$top_srcdir/jobs/demo.ini" \
      --set sft.steps=4 --set sft.eval_prompts=4 --set checkpoint.every=2 \
      --set run.out_dir="$out") </dev/null >"$tmp/out" 2>&1
    rc=$?
    if [ $rc = 0 ] && [ -f "$out/ckpt/sft-00000004.h5" ] &&
      { [ $attempt = first ] || grep -q "sft: already complete" "$tmp/out"; }; then
      echo "ok: ${#out}-character out_dir, $attempt run: exit 0, checkpoint written"
    else
      echo "FAIL: ${#out}-character out_dir, $attempt run (exit $rc):"
      grep -v '^\[.*\]   ' "$tmp/out" | tail -15
      fail=1
    fi
  done
done
exit $fail
