"""Benchmark: dense AE 784-512-32-512-784 on MNIST, relu hidden layers, sigmoid output, bce, Adam.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.bench \
        --config=experiments/bench_dense.py:batch=256 --out=bench_dense_256.json
    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.bench \
        --config=experiments/bench_dense.py:batch=4096 --out=bench_dense_4096.json

Variants (comma-separated): `batch=N` (default 256), `tiny` (784-32-8-32-784, batch 50, 1000
digits: seconds on a CPU; used by the tests). It also trains with `python -m aelab.run`.
Per train step the counted matmul FLOPs are 6 * B * (784*512 + 512*32 + 32*512 + 512*784) less
2 * B * 784*512 (no input gradient for the first layer): 1.078e9 at B=256.
Expected on the shared 2-core CPU (AMD EPYC, f32, 2026-12-02): batch 256 about 240-270 steps/s,
0.98-1.01 of the bare jit(scan) loop's FLOP/s, input pipeline +1%; batch 4096 about 19 steps/s
(330 GFLOP/s), 1.00 of bare (2026-12-01). Against Keras 3 (JAX backend) timed as a user runs
it, one `fit` of whole epochs per repeat: 1.02-1.06 (2026-12-05, a slower CPU).
docs/performance.md has the table. `launch/bench_all.sh` runs the standard set.
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg
from aelab.errors import AelabError


def get_config(arg=None):
  v = parse_arg(arg, batch=int, tiny=False)  # batch: 256, or 50 with tiny
  if v.batch is not None and v.batch <= 0:
    raise AelabError(f"unknown variant 'batch={v.batch}' of bench_dense.py; batch=N needs N > 0")
  config = mnist_ae_config()
  config.model.hidden = (512, 32)
  config.train.update(batch_size=v.batch or 256, num_epochs=10, steps_per_call=10, log_every=100,
                      checkpoint_every=0)
  config.evals.val.every = 0
  if v.tiny:
    defaults.tiny_images(config, batch_size=v.batch or 50, steps_per_call=5)
    config.model.hidden = (32, 8)
  return config
