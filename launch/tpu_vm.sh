#!/usr/bin/env bash
# Train a config on a Cloud TPU VM or pod slice: create the TPU (or reuse it), copy this checkout
# to every worker, install aelab and jax[tpu] in a venv there, and start the same run on all
# workers. jax.distributed.initialize() finds the other workers itself (AELAB_DISTRIBUTED=1).
#
#   launch/tpu_vm.sh NAME ZONE TYPE experiments/x.py[:arg] WORKDIR [--config.a.b=v ...]
#   launch/tpu_vm.sh aelab-v4 us-central2-b v4-32 experiments/mnist_ae.py /mnt/runs/mnist_ae
#
# WORKDIR must be one directory that every worker sees at the same path (checkpoints are written
# by all of them, logs by worker 0): a Filestore/NFS share, or a bucket mounted with gcsfuse
# (gs:// paths are not supported directly). Mount it before the run, e.g. on every worker:
#   gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all \
#     --command='mkdir -p /mnt/runs && gcsfuse --implicit-dirs BUCKET /mnt/runs'
# The run's output goes to ~/aelab.log on each worker; follow worker 0's with
#   gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=0 --command='tail -f ~/aelab.log'
# Rerunning the same command resumes from the last checkpoint (after a preemption, too: a TPU
# that is gone or not READY, e.g. PREEMPTED, is deleted and created anew). Delete the TPU when done:
#   gcloud compute tpus tpu-vm delete NAME --zone=ZONE
#
# Environment: VERSION (TPU software version, default tpu-ubuntu2204-base), SPOT=1 (a spot TPU),
# DRY_RUN=1 (print the gcloud commands instead of running them).
set -euo pipefail

if [ "$#" -lt 5 ]; then
  echo "usage: $0 NAME ZONE TYPE experiments/x.py[:arg] WORKDIR [--config.a.b=v ...]" >&2
  exit 2
fi
name=$1 zone=$2 type=$3 config=$4 workdir=$5
shift 5
version=${VERSION:-tpu-ubuntu2204-base}
root="$(cd "$(dirname "$0")/.." && pwd)"

run() {  # a gcloud command, or its text with DRY_RUN=1
  if [ -n "${DRY_RUN:-}" ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

state=$( [ -n "${DRY_RUN:-}" ] || gcloud compute tpus tpu-vm describe "$name" --zone="$zone" \
  --format='value(state)' 2>/dev/null || true)
if [ -n "$state" ] && [ "$state" != READY ]; then  # e.g. PREEMPTED: it must be made anew
  run gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet
  state=
fi
if [ -z "$state" ]; then
  run gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$type" \
    --version="$version" ${SPOT:+--spot}
fi

tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT
tarball=$tmpdir/aelab.tar.gz
tar -czf "$tarball" -C "$root" --exclude=.git --exclude=workdirs --exclude='*.egg-info' --exclude=.venv --exclude=venv .
run gcloud compute tpus tpu-vm scp "$tarball" "$name":aelab.tar.gz --zone="$zone" --worker=all

args=$(printf '%q ' --config="$config" --workdir="$workdir" "$@")
run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="
set -e
mkdir -p ~/aelab && tar -xzf ~/aelab.tar.gz -C ~/aelab
[ -d ~/aelab-venv ] || python3 -m venv ~/aelab-venv
. ~/aelab-venv/bin/activate
pip install -q -U pip && pip install -q -e ~/aelab 'jax[tpu]'
cd ~/aelab
AELAB_DISTRIBUTED=1 nohup python -m aelab.run $args > ~/aelab.log 2>&1 < /dev/null &
echo \"worker \$(hostname): started, log in ~/aelab.log\""
