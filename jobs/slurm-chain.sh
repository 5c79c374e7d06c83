#!/bin/sh
# Submit the phases as separate jobs chained with dependencies, so each gets
# its own size and time limit (e.g. many ranks for collect, few for rm).
#   jobs/slurm-chain.sh [job.ini] [phases...]
# Default phases: the job file's run.phases. Every phase is checked against
# what this rlaif runs (`rlaif --help` marks unbuilt ones) before anything is
# submitted. Each job waits for the previous one to succeed (afterok) and
# is cancelled by Slurm when that one fails (--kill-on-invalid-dep=yes),
# instead of pending forever (DependencyNeverSatisfied). Extra sbatch
# options (e.g. --ntasks=2, --time=...) go in RLAIF_SBATCH_ARGS.
set -eu
JOB=${1:-jobs/demo.ini}
shift 2>/dev/null || true
RLAIF=${RLAIF:-rlaif}
dir=$(dirname "$0")
export RLAIF_JOBS=${RLAIF_JOBS:-$dir}
. "$dir/rlaif-step.sh"
PHASES=${*:-$("$RLAIF" config "$JOB" 2>/dev/null | sed -n 's/^phases = \([^;]*[^ ;]\) *;.*$/\1/p' | tr ',' ' ')}
[ -n "$PHASES" ] || {
  echo "slurm-chain: no phases (give them, or check $JOB with \`$RLAIF config $JOB\`)" >&2
  exit 64
}
bad=$(rlaif_unbuilt $PHASES | tr '\n' ' ')
if [ -n "$bad" ]; then
  echo "slurm-chain: not built in this rlaif: ${bad% } (\`$RLAIF --help\` lists the phases); nothing submitted" >&2
  exit 64
fi
dep=""
for phase in $PHASES; do
  # shellcheck disable=SC2086 # RLAIF_SBATCH_ARGS is a list of options
  id=$(sbatch --parsable --job-name="rlaif-$phase" --kill-on-invalid-dep=yes ${RLAIF_SBATCH_ARGS:-} $dep \
    "$dir/slurm-phase.sbatch" "$phase" "$JOB")
  echo "$phase: job $id"
  dep="--dependency=afterok:$id"
done
