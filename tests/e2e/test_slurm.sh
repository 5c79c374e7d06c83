#!/bin/sh
# A real single-node Slurm on loopback (no systemd needed): rlaif under
# `srun --mpi=pmix` sees one MPI world; `srun --mpi=none` (no PMI) starts
# singletons, which rlaif must refuse with a clear error; a batch script run
# through sbatch works; srun'd ranks (no binding, no Open MPI local-size
# variable) split the node's CPUs instead of each taking all of them. Skipped (77) when Slurm is not installed or cannot
# start here (not root: slurmd needs it).
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
: "${srcdir:=.}"
. "$srcdir/tests/e2e/slurm_env.sh"
fail=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

out=$(timeout 120 srun --mpi=pmix -n 2 "$RLAIF" ranks 2>&1)
rc=$?
echo "$out"
if [ $rc = 0 ] && echo "$out" | grep -q "world: 2 ranks"; then echo "ok: srun --mpi=pmix gives one 2-rank world"
else echo "FAIL: srun --mpi=pmix (exit $rc)"; fail=1; fi

# Issue 15: srun sets no OMPI_COMM_WORLD_LOCAL_SIZE and binds nothing here
# (task/none): 2 ranks on this 2-CPU node must each choose 1 thread, and say
# so in their own logs.
rm -rf "$S/logs"
out=$(env -u OMP_NUM_THREADS timeout 120 srun --mpi=pmix -n 2 "$RLAIF" ranks --log-dir "$S/logs" 2>&1)
rc=$?
echo "$out"
if [ $rc = 0 ] && grep -q "threads: 1 on rank 0 (.* shared by 2 of 2 ranks" "$S/logs/rank-00000.log" 2>/dev/null &&
  grep -q "threads: 1 on rank 1 (.* shared by 2 of 2 ranks" "$S/logs/rank-00001.log" 2>/dev/null; then
  echo "ok: srun'd ranks split the node's CPUs (1 thread each)"
else
  echo "FAIL: srun'd ranks should log 1 thread each (exit $rc)"; cat "$S"/logs/*.log 2>/dev/null; fail=1
fi

out=$(timeout 120 srun --mpi=none -n 2 "$RLAIF" ranks 2>&1)
rc=$?
echo "$out"
if [ $rc = 64 ] && echo "$out" | grep -q "Slurm started 2 tasks but none can find the others" && [ "$(echo "$out" | grep -c ^ERROR)" = 1 ]; then
  echo "ok: singletons without PMI are refused"
else echo "FAIL: srun --mpi=none should exit 64 with the launcher error (exit $rc)"; fail=1; fi

cat >"$S/job.sh" <<JOB
#!/bin/sh
srun --mpi=pmix "$RLAIF" ranks
JOB
id=$(sbatch --parsable -n 2 -o "$S/job.out" "$S/job.sh")
i=0
while squeue -h -j "$id" 2>/dev/null | grep -q .; do
  i=$((i + 1)); [ $i -gt 600 ] && break; sleep 0.2
done
if grep -q "world: 2 ranks" "$S/job.out" 2>/dev/null; then echo "ok: sbatch + srun"
else echo "FAIL: sbatch job output:"; cat "$S/job.out" 2>/dev/null; fail=1; fi
exit $fail
