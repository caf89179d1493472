#!/usr/bin/env bash
# The standard benchmark set (issue 6): dense AE 784-512-32-512-784 at batch 256 and 4096, the
# mnist_ae experiment, a conv AE on 28x28 images and a VAE; one JSON per config in OUT_DIR.
#
#   AELAB_DATA_DIR=../shared/data/mnist launch/bench_all.sh [OUT_DIR] [--config.x.y=v ...] [--repeats=N]
#
# Extra arguments go to every run, e.g. --config.train.compute_dtype=bfloat16 on a GPU (where the
# config has that field). On a shared machine, compare ratios (aelab / bare, pipeline %), which
# each run measures in turns, rather than absolute rates from different runs.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir="${1:-bench_results}"
[[ $# -gt 0 ]] && shift
mkdir -p "$out_dir"
for spec in bench_dense.py:batch=256 bench_dense.py:batch=4096 mnist_ae.py conv_ae_mnist.py vae_mnist.py; do
  name="${spec/.py/}"
  name="${name//[:=,]/_}"
  echo "=== $spec"
  python -m aelab.bench --config="experiments/$spec" --out="$out_dir/$name.json" "$@"
done
