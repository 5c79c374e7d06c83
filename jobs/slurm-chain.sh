#!/bin/sh
# Submit the phases as separate jobs chained with dependencies, so each gets
# its own size and time limit (e.g. many ranks for collect, few for rm).
#   jobs/slurm-chain.sh [job.ini] [phases...]
set -eu
JOB=${1:-jobs/demo.ini}
shift 2>/dev/null || true
PHASES=${*:-sft collect rm ppo eval}
dir=$(dirname "$0")
dep=""
for phase in $PHASES; do
  id=$(sbatch --parsable --job-name="rlaif-$phase" $dep "$dir/slurm-phase.sbatch" "$phase" "$JOB")
  echo "$phase: job $id"
  dep="--dependency=afterok:$id"
done
