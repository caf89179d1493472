"""Who a run is to a tracker: its name, its group (the sweep it is a point of), the swept fields,
where a local store goes, and the tracker run ids kept in `workdir/trackers.json`, so that a
resumed run continues the same tracker run."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from aelab import files
from aelab.sweep import layout

IDS_FILE = 'trackers.json'


@dataclasses.dataclass(frozen=True)
class Run:
  workdir: pathlib.Path
  name: str
  group: str | None          # the sweep's directory name, for a sweep point
  swept: dict[str, str]      # a sweep point's fields and values ('arg' for a variant)
  root: pathlib.Path         # a local store's directory: the sweep's, else the run's

  def ids(self) -> dict[str, Any]:
    got = layout.read_json(self.workdir / IDS_FILE)
    return got if got is not None else {}

  def keep_id(self, tracker: str, value: Any) -> None:
    files.write_json(self.workdir / IDS_FILE, {**self.ids(), tracker: value})


def of(workdir: pathlib.Path) -> Run:
  workdir = pathlib.Path(workdir).resolve()
  point = layout.read_json(workdir / layout.POINT_FILE)
  if point is None:
    return Run(workdir, workdir.name, None, {}, workdir)
  swept = {k: str(v) for k, v in (point.get('overrides') or {}).items()}
  return Run(workdir, workdir.name, workdir.parent.name, swept, workdir.parent)
