#!/bin/sh
# Issue 15: each rank's thread count comes from its affinity mask and the
# ranks sharing the node, not from a launcher's variables. 4 ranks on this
# machine's cores, oversubscribed, with Open MPI's local-size variable removed
# (as under srun) and no binding: every rank must choose cores/4 (at least 1)
# and log it in its --log-dir file; the same under a taskset mask of one CPU;
# OMP_NUM_THREADS stays respected; 1 rank alone takes every CPU.
set -u
: "${RLAIF:?set by make check}" "${MPIEXEC:?set by make check}"
command -v taskset >/dev/null 2>&1 || { echo "SKIP: no taskset"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cpus=$(taskset -c -p $$ | sed 's/.*: //' | tr ',' '\n' |
  awk -F- '{ n += ($2 == "" ? 1 : $2 - $1 + 1) } END { print n }')
fail=0
# run NAME NP EXPECT PREFIX...: every rank's log must say "threads: EXPECT on rank r"
run() {
  name=$1 np=$2 expect=$3
  shift 3
  rm -rf "$tmp/logs"
  # shellcheck disable=SC2068
  timeout 300 "$MPIEXEC" -n "$np" --oversubscribe --bind-to none \
    env -u OMPI_COMM_WORLD_LOCAL_SIZE -u MPI_LOCALNRANKS -u OMP_NUM_THREADS \
    -u OPENBLAS_NUM_THREADS -u SLURM_CPUS_PER_TASK $@ \
    "$RLAIF" ranks --log-dir "$tmp/logs" >"$tmp/out" 2>&1
  rc=$?
  ok=1
  [ $rc = 0 ] || ok=0
  r=0
  while [ $r -lt "$np" ]; do
    log="$tmp/logs/rank-$(printf %05d $r).log"
    grep -q "threads: $expect on rank $r (" "$log" 2>/dev/null || ok=0
    r=$((r + 1))
  done
  grep -q "threads: $expect on rank 0 (" "$tmp/out" || ok=0
  if [ $ok = 1 ]; then
    echo "ok: $name: $expect thread(s) on each of $np ranks"
  else
    echo "FAIL: $name: expected $expect thread(s) on each of $np ranks (exit $rc)"
    cat "$tmp/out"
    grep -h "threads:" "$tmp"/logs/*.log 2>/dev/null
    fail=1
  fi
}
share=$((cpus / 4))
[ $share -ge 1 ] || share=1
run "4 ranks, no local-size variable, whole mask" 4 "$share"
grep -q "$cpus CPUs* in the affinity mask, shared by 4 of 4 ranks" "$tmp/out" ||
  { echo "FAIL: the reason names the mask and the sharing ranks"; cat "$tmp/out"; fail=1; }
run "4 ranks, taskset -c 0" 4 1 taskset -c 0
grep -q "1 CPU in the affinity mask, shared by 4 of 4 ranks" "$tmp/out" ||
  { echo "FAIL: taskset mask not seen"; cat "$tmp/out"; fail=1; }
run "1 rank alone" 1 "$cpus"
run "OMP_NUM_THREADS=3 respected" 4 3 OMP_NUM_THREADS=3
exit $fail
