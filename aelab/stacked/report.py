"""A stacked autoencoder's summary.json, its log report and its two plots.

summary.json: `stages` (each stage's units, reconstruction error and loss on val and test, wall
time), `frozen_features_softmax`, `fine_tuned` and `scratch` (accuracy and loss on val and test,
wall time), `network`, `wall_time_s` (the runs' own wall times, summed: the same on a rerun) and
`this_process_s`. plots/: `filters_stage1.png` (stage 1's first-layer
filters, for image data) and `finetune_accuracy.png` (test accuracy over fine-tuning steps,
pretrained against scratch).
"""

from __future__ import annotations

import pathlib
import shutil

import ml_collections

from aelab import plots
from aelab.files import write_json
from aelab.trainer.writers import read_jsonl

CLASSIFIERS = {'features': 'frozen_features_softmax', 'finetune': 'fine_tuned',
               'scratch': 'scratch'}


def _split_metrics(summary: dict, keys: tuple[str, ...]) -> dict:
  return {f'{split}_{k}': summary[split][k] for split in ('val', 'test')
          for k in keys if k in summary.get(split, {})}


def summary(config: ml_collections.ConfigDict, results: dict, inputs: int, wall_s: float) -> dict:
  layers = [int(n) for n in config.stack.layers]
  out = {'network': '-'.join(str(w) for w in (inputs, *layers, int(config.stack.classes))),
         'stages': [], 'wall_time_s': sum(r.get('wall_time_s') or 0.0 for r in results.values()),
         'this_process_s': wall_s}
  for k, n in enumerate(layers):
    r = results[f'stage{k + 1}']
    out['stages'].append({'stage': k + 1, 'units': n, 'workdir': f'stage{k + 1}',
                          **_split_metrics(r, ('mse', 'loss', 'r2')),
                          'wall_time_s': r.get('wall_time_s')})
  for run, key in CLASSIFIERS.items():
    if run in results:
      out[key] = {'workdir': run, **_split_metrics(results[run], ('accuracy', 'loss')),
                  'wall_time_s': results[run].get('wall_time_s')}
  return out


def lines(out: dict) -> list[str]:
  """The log report, one line per run."""
  text = [f'aelab: stacked network {out["network"]}, {out["wall_time_s"]:.0f} s:']
  for s in out['stages']:
    text.append(f'  stage {s["stage"]} ({s["units"]} units): test reconstruction mse '
                f'{s.get("test_mse", float("nan")):.5g}, loss {s.get("test_loss", float("nan")):.5g}')
  names = {'frozen_features_softmax': 'softmax on the frozen stacked features',
           'fine_tuned': 'fine-tuned stacked network', 'scratch': 'same network from scratch'}
  for key, name in names.items():
    if key in out:
      text.append(f'  {name}: test accuracy {out[key].get("test_accuracy", float("nan")):.4f}')
  return text


def _curves(workdir: pathlib.Path) -> None:
  series = {}
  for run, label in (('finetune', 'pretrained'), ('scratch', 'from scratch')):
    rows = read_jsonl(workdir / run / 'metrics.jsonl')
    pts = [(r['step'], r['test/accuracy']) for r in rows if 'test/accuracy' in r]
    if pts:
      series[label] = pts
  if series:
    plots.series(series, workdir / 'plots' / 'finetune_accuracy.png', 'fine-tuning step',
                 'test accuracy', 'test accuracy over fine-tuning: pretrained vs from scratch')


def write(config: ml_collections.ConfigDict, workdir: pathlib.Path, results: dict, inputs: int,
          wall_s: float) -> dict:
  out = summary(config, results, inputs, wall_s)
  write_json(workdir / 'summary.json', out)
  filters = workdir / 'stage1' / 'plots' / 'filters.png'
  if filters.exists():
    (workdir / 'plots').mkdir(exist_ok=True)
    shutil.copyfile(filters, workdir / 'plots' / 'filters_stage1.png')
  _curves(workdir)
  out['report'] = lines(out)
  return out
