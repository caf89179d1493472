"""What each store holds of a run, as {(metric, step): value}, to compare with metrics.jsonl: the
MLflow store read back with MlflowClient, W&B's offline record files with aelab's reader."""

from __future__ import annotations

import json
import math
import pathlib


def jsonl(workdir: pathlib.Path) -> dict[tuple[str, int], float]:
  out = {}
  for line in (workdir / 'metrics.jsonl').read_text().splitlines():
    row = json.loads(line)
    out.update({(k, row['step']): float(v) for k, v in row.items() if k not in ('step', 'time')})
  return out


def _ids(workdir: pathlib.Path) -> dict:
  return json.loads((workdir / 'trackers.json').read_text())


def mlflow(workdir: pathlib.Path) -> tuple[dict[tuple[str, int], float], int, dict]:
  """(metrics, the number of points, params) of the run's MLflow run."""
  from mlflow import MlflowClient
  ids = _ids(workdir)['mlflow']
  client = MlflowClient(ids['uri'])
  run = client.get_run(ids['run_id'])
  points = [(k, m.step, m.value) for k in run.data.metrics
            for m in client.get_metric_history(ids['run_id'], k)]
  return {(k, s): v for k, s, v in points}, len(points), run.data.params


def wandb(workdir: pathlib.Path) -> dict[tuple[str, int], float]:
  """The scalars (media left out) of the run's W&B offline segments."""
  from aelab.tracking import wandb_store
  got = wandb_store.offline_history(workdir, _ids(workdir)['wandb'])
  return {k: float(v) if v is not None else math.nan for k, v in got.items()
          if not isinstance(v, dict)}


def same(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(
      a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)
