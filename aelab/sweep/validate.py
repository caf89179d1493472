"""Every point of a sweep built and checked as its run will check it, before any point runs or
anything is written: a value that a run would refuse (a width of 0, an unknown optimizer, a loss
weight of nan) stops the whole sweep with the run's own one-line error, naming the point.

Each point's config is the base config with the point's command-line arguments, parsed as the
run parses them; its dataset is loaded once per distinct dataset (and seed) and every check of
aelab.trainer.setup.build runs on it, nothing placed on the devices. Stacked configs are checked
by their own driver's validation.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence


from aelab.errors import AelabError
from aelab.sweep import groups
from aelab.sweep.points import Point


def points(config, pts: Sequence[Point], workdir: pathlib.Path) -> None:
  """One-line AelabError for the first point whose config a run would refuse; `config` is the
  base config, or each variant's (points.Variants)."""
  from aelab import data
  from aelab.trainer import setup
  datasets: dict[str, data.Dataset] = {}
  for point, cfg in zip(pts, groups.configs(config, pts)):
    try:
      if 'stack' in cfg:
        from aelab.stacked import driver
        driver.validate(cfg, workdir / point.name)
        continue
      key = json.dumps([json.loads(cfg.dataset.to_json()), cfg.seed], sort_keys=True)
      if key not in datasets:
        datasets[key] = data.load(cfg.dataset, seed=cfg.seed)
      setup.check(cfg, datasets[key])
    except AelabError as e:
      raise AelabError(f'point {point.index} ({point.name}): {e}') from None
