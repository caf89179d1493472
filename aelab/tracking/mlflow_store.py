"""MLflow: one MLflow run per aelab run, in the experiment named after the sweep (a lone run:
$MLFLOW_EXPERIMENT_NAME, else 'aelab'). The store: train.mlflow_uri, else $MLFLOW_TRACKING_URI,
else a SQLite file `mlflow.db` (artifacts in `mlartifacts/`) in the sweep's directory, or the
run's. A resumed run continues its run id (workdir/trackers.json); the store is asked which
(metric, step) pairs it holds. Params: the resolved config, flattened; tags: the swept fields."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pathlib
from collections.abc import Mapping

from aelab.tracking.writer import flat

_BATCH = 1000  # MLflow's limit of metrics per log_batch (100 for params)
# A server that does not answer costs a warning within seconds, not MLflow's default of 7
# retries with exponential backoff (minutes); the user's own settings win.
_HTTP = {'MLFLOW_HTTP_REQUEST_MAX_RETRIES': '2', 'MLFLOW_HTTP_REQUEST_TIMEOUT': '15'}


@contextlib.contextmanager
def _locked(path: pathlib.Path):
  """The points of a sweep open one SQLite store at once: its tables are created under a lock."""
  with open(path, 'a') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    yield


def _create(path: pathlib.Path) -> None:
  """A new SQLite store, made whole: MLflow creates its tables in many steps, and a store left
  half-made by a killed process cannot be opened again (`table ... already exists`). So it is
  made under a temporary name and renamed into place."""
  if path.exists():
    return
  from mlflow import MlflowClient
  for stale in path.parent.glob(f'.{path.name}.*.tmp*'):  # of killed processes (under the lock)
    stale.unlink(missing_ok=True)
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  MlflowClient(f'sqlite:///{tmp}').search_experiments()
  os.replace(tmp, path)


class MlflowRun:
  def __init__(self, config, run):
    for var, value in _HTTP.items():
      os.environ.setdefault(var, value)
    from mlflow import MlflowClient
    logging.getLogger('mlflow').setLevel(logging.WARNING)
    logging.getLogger('urllib3.connectionpool').setLevel(logging.ERROR)  # its retries: one warning
    given = config.train.mlflow_uri or os.environ.get('MLFLOW_TRACKING_URI')
    local = not given  # aelab's own SQLite store, made and locked here
    uri = given or f'sqlite:///{run.root / "mlflow.db"}'
    lock = _locked(run.root / '.mlflow.lock') if local else contextlib.nullcontext()
    name = run.group or os.environ.get('MLFLOW_EXPERIMENT_NAME') or 'aelab'
    with lock:
      if local:
        _create(run.root / 'mlflow.db')
      self.client = MlflowClient(uri)
      found = self.client.get_experiment_by_name(name)
      experiment = found.experiment_id if found else self.client.create_experiment(
          name, artifact_location=(run.root / 'mlartifacts').as_uri() if local else None)
    kept = run.ids().get('mlflow') or {}
    self.id = kept.get('run_id') if kept.get('uri') == uri else self._made_before(experiment, run)
    if self.id is None:
      tags = {'aelab.workdir': str(run.workdir), **{f'sweep.{k}': v for k, v in run.swept.items()}}
      self.id = self.client.create_run(experiment, run_name=run.name, tags=tags).info.run_id
    if kept.get('run_id') != self.id:
      run.keep_id('mlflow', {'uri': uri, 'run_id': self.id})
    else:
      self.client.update_run(self.id, status='RUNNING')
    self._params({k: str(v) for k, v in flat(config.to_dict(), '.').items()})

  def _made_before(self, experiment: str, run) -> str | None:
    """The run this workdir made in the store before a kill kept it from writing its id."""
    found = self.client.search_runs(
        [experiment], filter_string=f"tags.`aelab.workdir` = '{run.workdir}'", max_results=1)
    return found[0].info.run_id if found else None

  def _params(self, params: dict[str, str]) -> None:
    """The config's fields the run lacks (MLflow keeps a param's first value: a field changed
    on resume, e.g. train.num_epochs, keeps the value it started with)."""
    from mlflow.entities import Param
    have = self.client.get_run(self.id).data.params
    new = [Param(k, v[:6000]) for k, v in params.items() if k not in have]
    for i in range(0, len(new), 100):
      self.client.log_batch(self.id, params=new[i:i + 100])

  def held(self) -> set[tuple[str, int]]:
    keys = self.client.get_run(self.id).data.metrics
    return {(k, m.step) for k in keys for m in self.client.get_metric_history(self.id, k)}

  def write(self, step: int, time: float, scalars: Mapping[str, float]) -> None:
    from mlflow.entities import Metric
    metrics = [Metric(k, v, int(time * 1000), step) for k, v in scalars.items()]
    for i in range(0, len(metrics), _BATCH):
      self.client.log_batch(self.id, metrics=metrics[i:i + _BATCH])

  def finish(self, step: int, summary: Mapping[str, float], plots: list[pathlib.Path]) -> None:
    import time
    self.write(step, time.time(), summary)
    for p in plots:
      self.client.log_artifact(self.id, str(p), 'plots')
    self.client.set_terminated(self.id, 'FINISHED')

  def close(self) -> None:
    if self.client.get_run(self.id).info.status == 'RUNNING':
      self.client.set_terminated(self.id, 'KILLED')


def open_store(config, run) -> MlflowRun:
  return MlflowRun(config, run)
