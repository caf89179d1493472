"""Benchmark: dense AE 784-512-32-512-784 on MNIST, relu hidden layers, sigmoid output, bce, Adam.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.bench \
        --config=experiments/bench_dense.py:batch=256 --out=bench_dense_256.json
    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.bench \
        --config=experiments/bench_dense.py:batch=4096 --out=bench_dense_4096.json

Variants (comma-separated): `batch=N` (default 256), `tiny` (784-32-8-32-784, batch 50, 1000
digits: seconds on a CPU; used by the tests). It also trains with `python -m aelab.run`.
Per train step the counted matmul FLOPs are 6 * B * (784*512 + 512*32 + 32*512 + 512*784) less
2 * B * 784*512 (no input gradient for the first layer): 1.078e9 at B=256.
Expected on the shared 2-core CPU (AMD EPYC, f32, while other jobs held about one core): batch 256
about 80-85 steps/s, 0.92-0.93 of the bare jit(scan) loop's FLOP/s, input pipeline +3.5%; batch
4096 about 5.5 steps/s (95 GFLOP/s), 0.95-0.98 of bare. `launch/bench_all.sh` runs the standard set.
"""

from aelab import data, losses, models
from aelab.trainer import optim, train
from aelab.errors import AelabError


def _parse(arg: str | None) -> dict:
  opts = {'batch': None, 'tiny': False}
  for item in filter(None, (s.strip() for s in (arg or '').split(','))):
    key, eq, value = item.partition('=')
    if key == 'tiny' and not eq:
      opts['tiny'] = True
    elif key == 'batch' and eq and value.isdigit() and int(value) > 0:
      opts['batch'] = int(value)
    else:
      raise AelabError(f'unknown variant {item!r} of bench_dense.py; valid: batch=N (N > 0), tiny')
  return opts


def get_config(arg=None):
  import ml_collections
  opts = _parse(arg)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = data.defaults('mnist')
  config.preprocessing = 'none'
  config.model = models.defaults('dense', hidden=(512, 32), activation='relu',
                                 output_activation='sigmoid')
  config.loss = losses.defaults(reconstruction=dict(weight=1.0, kind='bce'))
  config.optimizer = optim.defaults(name='adam', learning_rate=1e-3)
  batch = opts['batch'] or (50 if opts['tiny'] else 256)
  config.train = train.defaults(batch_size=batch, num_epochs=10, steps_per_call=10,
                                log_every=100, eval_every=0, checkpoint_every=0)
  if opts['tiny']:
    config.dataset.train_limit = 1000
    config.dataset.test_limit = 500
    config.model.hidden = (32, 8)
    config.train.update(num_epochs=0, num_steps=60, steps_per_call=5, log_every=20)
  return config
