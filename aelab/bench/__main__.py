"""Benchmark CLI: how fast aelab trains a config, against this machine's limits.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.bench \
        --config=experiments/bench_dense.py:batch=256 [--config.a.b=v ...] \
        [--repeats=5] [--steps=0] [--keras_s=5] [--out=bench.json]

Times the trainer's own loop (aelab/trainer/loop.py) on device-resident and host-fed data,
against the same loop on a pre-built block (the input pipeline's cost), a bare jit(lax.scan)
loop of the same forward pass and optimizer, and a reference matmul, which take turns within
each repeat so a burst of load hits them alike; and, when Keras 3 is installed (`pip install -e
'.[bench]'`; dense models), Keras on the JAX backend timed as a user runs it: one `model.fit` of
whole epochs per repeat, by the wall clock around the call (see aelab/bench/harness.py). The
table goes to stdout, everything to `--out` as JSON.
"""

from __future__ import annotations

import json
import sys

from aelab import cli, files

FLAGS = (
    cli.Flag('repeats', int, 5, 'Timed repeats; results are medians with min, max.'),
    cli.Flag('steps', int, 0, 'Train steps per timed run (rounded up to a multiple of '
             'train.steps_per_call); 0: sized to about --target_s seconds.'),
    cli.Flag('target_s', float, 2.0, 'Seconds per path per repeat when --steps=0.'),
    cli.Flag('chunk_s', float, 0.25, 'The paths take turns in runs of about this many seconds '
             '(whole blocks), so bursts of load hit them alike; 0: one run per path per repeat.'),
    cli.Flag('keras_s', float, 5.0, 'Seconds of the one keras `fit` per repeat (whole epochs; '
             'with --steps: the fewest whole epochs of at least --steps steps).'),
    cli.Flag('matmul_size', int, 0, 'Reference matmul size n (n x n @ n x n); '
             '0: 2048 on CPU, 8192 on GPU/TPU.'),
    cli.Flag('out', str, None, 'Write the results as JSON to this file.'),
)


def main(config, flags, spec: str, overrides: list[str]) -> None:
  if flags.out:  # before the benchmark runs: its minutes are not lost to a bad path
    files.check_writable(flags.out)
  import jax
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  jax.config.update('jax_enable_compilation_cache', False)  # compile time means compiling
  from aelab.bench import harness, report
  from aelab.trainer import distributed
  distributed.initialize()  # on a detected cluster (TPU pod, SLURM, Open MPI) only
  log = lambda msg: print(f'aelab.bench: {msg}', file=sys.stderr, flush=True)  # noqa: E731
  result = harness.benchmark(config, repeats=flags.repeats, steps=flags.steps,
                             target_s=flags.target_s, chunk_s=flags.chunk_s,
                             keras_s=flags.keras_s, matmul_size=flags.matmul_size, log=log)
  result = {'config': spec, 'overrides': overrides, **result,
            'resolved_config': json.loads(config.to_json())}
  print(report.table(result, title=f'aelab.bench {spec} {" ".join(overrides)}'.strip()), flush=True)
  if flags.out:
    files.write_json(flags.out, result)


def run(argv: list[str] | None = None) -> None:
  cli.main(argv, prog='python -m aelab.bench', doc=__doc__, flags=FLAGS, run=main)


if __name__ == '__main__':
  run()
