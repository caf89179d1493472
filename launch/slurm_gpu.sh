#!/bin/bash
# A multi-node GPU run under SLURM: one process per GPU, all in one run (jax.distributed finds
# the others from SLURM's variables; each process takes the GPU of its SLURM_LOCALID).
#
#   sbatch --nodes=2 --gpus-per-node=8 --ntasks-per-node=8 \
#     launch/slurm_gpu.sh experiments/mnist_ae.py WORKDIR [--config.a.b=v ...]
#
# WORKDIR must be on a file system every node sees (checkpoints are written by all processes,
# logs, plots and summary.json by process 0). The global batch (train.batch_size) is split over
# all GPUs: it must divide by their number.
#
# Preemption and time limits: `--signal=TERM@120` sends SIGTERM to every process two minutes
# before the limit; they agree on a step, save a checkpoint there and exit 75, and this script
# requeues the job, which resumes from that checkpoint. If a process dies, the others stop
# within --peer_timeout seconds (default 30), with exit code 75 or, when jax or gloo end them
# first, a signal's code (>= 128, as srun reports a killed task too): the job is requeued then
# as well, up to MAX_REQUEUES times (default 5) so that a task killed at every start (e.g. out
# of memory) does not loop. An aelab error (exit 2) is not requeued. Resubmitting the same
# command also resumes. PYTHON (default: python) is the interpreter.
#
#SBATCH --job-name=aelab
#SBATCH --output=slurm-%j.out
#SBATCH --signal=TERM@120
#SBATCH --requeue

set -uo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: sbatch --nodes=N --gpus-per-node=G --ntasks-per-node=G $0 experiments/x.py[:arg] WORKDIR [--config.a.b=v ...]" >&2
  exit 2
fi
if [ -z "${SLURM_JOB_ID:-}" ]; then
  echo "aelab: error: not inside a SLURM job: submit this script with sbatch" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2

srun --kill-on-bad-exit=0 "${PYTHON:-python}" -m aelab.run --config="$config" --workdir="$workdir" "$@"
code=$?
if [ "$code" -eq 75 ]; then
  echo "aelab: stopped with a checkpoint; requeueing job $SLURM_JOB_ID to resume" >&2
  scontrol requeue "$SLURM_JOB_ID"
elif [ "$code" -ge 128 ] && [ "${SLURM_RESTART_COUNT:-0}" -lt "${MAX_REQUEUES:-5}" ]; then
  echo "aelab: a task ended by signal $((code - 128)); requeueing job $SLURM_JOB_ID to resume" \
    "from the last checkpoint (restart ${SLURM_RESTART_COUNT:-0} of ${MAX_REQUEUES:-5})" >&2
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$code"
