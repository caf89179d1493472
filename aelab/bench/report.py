"""The benchmark's statistics over repeats and its fixed-width table."""

from __future__ import annotations

import math
import statistics
from typing import Any


def summarize(values: list[float]) -> dict[str, Any]:
  """{median, min, max, values} of one measurement over the repeats."""
  return {'median': statistics.median(values), 'min': min(values), 'max': max(values),
          'values': list(values)}


def _fmt(v: float) -> str:
  if v == 0 or not math.isfinite(v):
    return f'{v:.3g}'
  return f'{v:,.0f}' if abs(v) >= 1000 else f'{v:.3g}'


def _rows(result: dict) -> list[tuple[str, dict]]:
  st = result['settings']
  g = lambda d: {k: v / 1e9 for k, v in d.items() if k != 'values'}  # noqa: E731
  rows = [
      ('compile train block, s (lower+compile)', result['compile_s']),
      (f'aelab steps/s ({st["data_path"].replace("_", " ")})', result['train']['steps_per_s']),
      ('aelab examples/s', result['train']['examples_per_s']),
      ('aelab GFLOP/s', g(result['train']['flops_per_s'])),
      ('bare jit(scan) steps/s', result['bare']['steps_per_s']),
      ('bare GFLOP/s', g(result['bare']['flops_per_s'])),
      ('aelab / bare FLOP/s', result['train']['ratio_to_bare']),
  ]
  if result.get('keras', {}).get('steps_per_s'):
    rows += [('keras steps/s (one fit per repeat)', result['keras']['steps_per_s']),
             ('aelab / keras steps/s (same repeat)', result['train']['ratio_to_keras'])]
  return rows + [
      (f'reference matmul {result["reference_matmul"]["size"]}^2 {st["dtype"]} GFLOP/s',
       g(result['reference_matmul']['flops_per_s'])),
      ('aelab / reference matmul', result['train']['ratio_to_reference']),
      ('bare / reference matmul', result['bare']['ratio_to_reference']),
      ('on-device blocks steps/s (no pipeline)', result['paths']['on_device']['steps_per_s']),
      ('device-data steps/s', result['paths']['device_data']['steps_per_s']),
      ('host-fed steps/s', result['paths']['host_fed']['steps_per_s']),
      ('pipeline added, device data, %', result['pipeline_added_pct']['device_data']),
      ('pipeline added, host-fed, %', result['pipeline_added_pct']['host_fed']),
  ]


def table(result: dict, title: str = '') -> str:
  """The results as a fixed-width table (median, min, max)."""
  st, dev, rows = result['settings'], result['device'], _rows(result)
  width = max(len(name) for name, _ in rows)
  lines = [title] if title else []
  lines += [f'{dev["platform"]} ({dev["device_kind"]}, {dev["device_count"]} device(s), '
            f'{dev["host_cpus"]} host CPUs), {st["dtype"]}, batch {st["batch_size"]}, '
            f'{st["steps_per_call"]} steps/call, {st["repeats"]} repeats; per repeat, aelab, bare '
            f'and matmul {st["steps_per_run"]} steps each in turns of {st["steps_per_turn"]}',
            f'{"":{width}}  {"median":>10} {"min":>10} {"max":>10}']
  for name, d in rows:
    lines.append(f'{name:{width}}  {_fmt(d["median"]):>10} {_fmt(d["min"]):>10} {_fmt(d["max"]):>10}')
  fl = result['flops_per_step']
  lines.append(f'FLOPs/step (counted, fwd+bwd): {fl["aelab"]:.4g}; peak host memory '
               f'{result["peak_host_memory_mib"]:.0f} MiB; wall {result["wall_s"]:.0f} s')
  return '\n'.join(lines + _keras_lines(result.get('keras', {})))


def _keras_lines(keras: dict) -> list[str]:
  """How the keras figures were measured, or why there are none."""
  if keras.get('note'):
    return [f'keras reference: {keras["note"]}']
  if not keras.get('steps_per_s'):
    return []
  epochs = keras['epochs_per_fit']
  return [f'keras: per repeat one fit of {epochs} epoch{"s" * (epochs != 1)} x '
          f'{keras["steps_per_epoch"]} full batches ({keras["steps_per_fit"]} steps), steps/s by '
          f'the wall clock around the call, its set-up included (call to first batch '
          f'{1e3 * keras["fit_setup_s"]:.1f} ms, probed once); aelab / keras divides each '
          'repeat\'s aelab turns by its fit']
