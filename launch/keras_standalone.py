"""Keras 3 alone (JAX backend): the dense benchmark model trained by `model.fit` over whole epochs,
as a user runs it, to check the keras figure of `python -m aelab.bench` from outside aelab.

    pip install 'keras>=3'      # or: pip install -e '.[bench]'; no TensorFlow needed
    AELAB_DATA_DIR=../shared/data/mnist python launch/keras_standalone.py \
        [--loss=bce|mse] [--repeats=5] [--seconds=5] [--epochs=0] [--compare=bench.json]

The model: Dense 784-512-32-512-784, relu hidden layers, sigmoid output, float32; loss bce or mse
(keras's mean over every element, as aelab's reduction 'mean'); Adam, learning rate 1e-3, epsilon
1e-8 (optax's); `compile(jit_compile=True, steps_per_execution=10)`; batch 256. The data: the
MNIST training images found in $AELAB_DATA_DIR (or its mnist/ folder), uint8 / 255, shuffled once
with numpy default_rng(--seed), the first --train_examples rows (9000: the bench's training split
of the shared 10k digits) cut to full batches (35 of 256). Nothing of aelab is imported.

One `fit` of one epoch compiles, a second times an epoch; then each repeat is ONE call
`model.fit(x, x, batch_size=256, epochs=E, shuffle=False, verbose=0)`, E whole epochs of about
--seconds (or --epochs), timed by the wall clock around the call until the new weights are ready,
its set-up included. It prints each repeat's steps/s (E x full batches / those seconds) and
`keras steps/s (one fit per repeat): median, min, max`, the same measurement as the bench's row of
that name. With --compare=BENCH.json (the bench's --out), E defaults to the bench's epochs per
fit, and it also prints the bench's aelab steps/s median over the median here (aelab / keras on
this script's keras) beside the bench's own aelab / keras.
"""

import argparse
import glob
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np

os.environ.setdefault('KERAS_BACKEND', 'jax')  # before keras is imported


def load_images(data_dir: str) -> np.ndarray:
  """The MNIST training images in `data_dir` (IDX, gzip or not) as float32 [N, 784] in [0, 1]."""
  found = sorted(glob.glob(os.path.join(data_dir, '*train*images*idx3*'))
                 + glob.glob(os.path.join(data_dir, 'mnist', '*train*images*idx3*')),
                 key=lambda p: 'train-images' not in os.path.basename(p))  # published name first
  if not found:
    sys.exit(f'keras_standalone: no *train*images*idx3* file in {data_dir!r} or its mnist/; '
             'set AELAB_DATA_DIR')
  with (gzip.open if found[0].endswith('.gz') else open)(found[0], 'rb') as f:
    raw = f.read()
  magic, n, rows, cols = np.frombuffer(raw[:16], '>i4')
  if magic != 2051:
    sys.exit(f'keras_standalone: {found[0]} is not an IDX image file (magic {magic})')
  images = np.frombuffer(raw[16:16 + n * rows * cols], np.uint8).reshape(n, rows * cols)
  return images.astype(np.float32) / np.float32(255)


def build(loss: str, width: int, steps_per_execution: int, seed: int):
  import keras
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.Input((width,), dtype='float32'),
      keras.layers.Dense(512, activation='relu'), keras.layers.Dense(32, activation='relu'),
      keras.layers.Dense(512, activation='relu'), keras.layers.Dense(width, activation='sigmoid'),
  ])
  model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-8),
                loss={'bce': keras.losses.BinaryCrossentropy(),
                      'mse': keras.losses.MeanSquaredError()}[loss],
                jit_compile=True, steps_per_execution=steps_per_execution)
  return model


def fit_seconds(model, x: np.ndarray, batch: int, epochs: int) -> float:
  """Wall-clock seconds of one `fit` of `epochs` whole epochs, until the weights are ready."""
  import jax
  t0 = time.perf_counter()
  model.fit(x, x, batch_size=batch, epochs=epochs, shuffle=False, verbose=0)
  jax.block_until_ready([v.value for v in model.variables])
  return time.perf_counter() - t0


def time_fits(model, x: np.ndarray, batch: int, epochs: int, repeats: int) -> list[float]:
  """Steps/s of `repeats` fits of `epochs` epochs each, printed as they come."""
  rates, steps = [], epochs * (len(x) // batch)
  for r in range(repeats):
    seconds = fit_seconds(model, x, batch, epochs)
    rates.append(steps / seconds)
    print(f'repeat {r + 1}/{repeats}: {rates[-1]:.2f} steps/s ({steps} steps in {seconds:.3f} s)',
          flush=True)
  return rates


def bench_figures(path: str, args) -> dict:
  """The bench's --out JSON, checked to describe the same model, loss and batch."""
  with open(path) as f:
    r = json.load(f)
  cfg, st = r['resolved_config'], r['settings']
  same = (cfg['loss']['reconstruction']['kind'], st['batch_size'], st['steps_per_call'],
          tuple(cfg['model']['hidden']))
  if same != (args.loss, args.batch, args.steps_per_execution, (512, 32)):
    sys.exit(f'keras_standalone: {path} measured (loss, batch, steps/call, hidden) = {same}, '
             f'not ({args.loss}, {args.batch}, {args.steps_per_execution}, (512, 32))')
  if 'steps_per_s' not in r['keras']:
    sys.exit(f'keras_standalone: {path} has no keras figures ({r["keras"].get("note")})')
  return r


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--loss', choices=('bce', 'mse'), default='bce')
  p.add_argument('--batch', type=int, default=256)
  p.add_argument('--steps_per_execution', type=int, default=10)
  p.add_argument('--train_examples', type=int, default=9000)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--seconds', type=float, default=5.0, help='about this long a fit')
  p.add_argument('--epochs', type=int, default=0, help='epochs per fit; 0: from --seconds')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--compare', help="the bench's --out JSON, to print aelab / keras")
  args = p.parse_args()
  bench = bench_figures(args.compare, args) if args.compare else None
  x = load_images(os.environ.get('AELAB_DATA_DIR', '.'))
  x = x[np.random.default_rng(args.seed).permutation(len(x))][:args.train_examples]
  batches = len(x) // args.batch
  if batches == 0 or (bench and bench['keras']['steps_per_epoch'] != batches):
    sys.exit(f'keras_standalone: {len(x)} rows make {batches} full batches of {args.batch}'
             + (f'; the bench had {bench["keras"]["steps_per_epoch"]}' if bench else ''))
  x = np.ascontiguousarray(x[:batches * args.batch])  # full batches only
  model = build(args.loss, x.shape[1], args.steps_per_execution, args.seed)
  fit_seconds(model, x, args.batch, 1)  # compiles
  epoch_s = fit_seconds(model, x, args.batch, 1)
  epochs = args.epochs or (bench['keras']['epochs_per_fit'] if bench else
                           max(1, round(args.seconds / epoch_s)))
  import keras
  print(f'keras {keras.__version__} standalone: dense 784-512-32-512-784, {args.loss}, batch '
        f'{args.batch}, {batches} full batches/epoch, {epochs} epochs per fit', flush=True)
  rates = time_fits(model, x, args.batch, epochs, args.repeats)
  med = statistics.median(rates)
  print(f'keras steps/s (one fit per repeat): median {med:.2f} min {min(rates):.2f} '
        f'max {max(rates):.2f}')
  if bench:
    aelab = bench['train']['steps_per_s']['median']
    print(f'aelab / keras steps/s: {aelab / med:.3f} (bench aelab median {aelab:.2f} / keras '
          f'median here); the bench\'s own: {bench["train"]["ratio_to_keras"]["median"]:.3f} '
          f'(keras median there {bench["keras"]["steps_per_s"]["median"]:.2f})')


if __name__ == '__main__':
  main()
