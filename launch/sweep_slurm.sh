#!/bin/bash
# One point of an aelab sweep per task of a SLURM job array; every task writes into one DIR.
#
#   N=$(python -m aelab.sweep --config=experiments/x.py:arg --workdir=DIR [extra args] --count)
#   sbatch --array=0-$((N-1)) launch/sweep_slurm.sh experiments/x.py:arg DIR [extra args]
#   # at any time (the points done so far), and once the array has finished:
#   python -m aelab.sweep --config=experiments/x.py:arg --workdir=DIR [extra args] --summarize
#
# [extra args] are the sweep's own: --sweep=FIELD=V1,V2 ..., --config.a.b=v ..., --file_sweep=false;
# give the same ones to all three commands (they define the points and so their indices).
# Task I runs `python -m aelab.sweep ... --index=I`: point I alone, as `python -m aelab.run` in
# DIR/<name>/ (`--list` prints the indices and names). Resubmitting the same array (or one task,
# --array=I) skips the points already done and resumes the others from their checkpoints.
# Exit code of a task: 0 the point is done, 1 it failed (DIR/<name>/error.txt), 2 a bad command,
# 75 stopped by SIGTERM with a checkpoint saved (resubmit to resume).
#
# Signals: `--signal=B:TERM@120` below sends SIGTERM to this script's process alone (the sweep:
# the script execs it) two minutes before the time limit; the sweep forwards it once to the run,
# which saves a checkpoint and exits 75. Cancel the same way, `scancel --batch --signal=TERM
# JOBID`: a plain `scancel` signals every process of the task, so the run gets SIGTERM twice and
# exits at once, keeping only its last periodic checkpoint.
#
# Without SLURM the script runs one point as a plain bash script:
#   SLURM_ARRAY_TASK_ID=3 bash launch/sweep_slurm.sh experiments/x.py:arg DIR [extra args]
# PYTHON (default: python) is the interpreter, e.g. PYTHON=.venv/bin/python.
#
#SBATCH --job-name=aelab-sweep
#SBATCH --output=slurm-%A_%a.out
#SBATCH --signal=B:TERM@120

set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: sbatch --array=0-\$((N-1)) $0 experiments/x.py[:arg] DIR [extra args]" >&2
  exit 2
fi
if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  echo "aelab: error: SLURM_ARRAY_TASK_ID is not set: submit with" \
    "sbatch --array=0-\$((N-1)), or set it to run one point" >&2
  exit 2
fi

config=$1
workdir=$2
shift 2
exec "${PYTHON:-python}" -m aelab.sweep --config="$config" --workdir="$workdir" \
  --index="$SLURM_ARRAY_TASK_ID" "$@"
