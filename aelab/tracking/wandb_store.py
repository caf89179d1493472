"""Weights & Biases: one W&B run per aelab run, offline unless WANDB_MODE says otherwise, its
files under `workdir/wandb/` (`wandb sync workdir/wandb/offline-run-*` uploads them). A resumed
run continues the same run id in a new segment directory; what the earlier segments hold is read
back from their record files (offline_history), so no (metric, step) is written twice.
Project: $WANDB_PROJECT, else 'aelab'; group: the sweep; tags: the swept fields."""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import string
import struct
import zlib
from collections.abc import Iterator, Mapping

# The record file of a W&B run (run-<id>.wandb): a 7-byte header, then LevelDB's log format:
# 32 KiB blocks of records (crc32 of type byte + data, length, type: full/first/middle/last),
# each a wandb_internal_pb2.Record.
_HEADER, _RECORD, _BLOCK = struct.Struct('<4sHB'), struct.Struct('<IHB'), 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: pathlib.Path) -> Iterator[bytes]:
  """The records of a run-<id>.wandb file, up to the first torn or corrupt one (a killed run)."""
  data = path.read_bytes()
  if len(data) < _HEADER.size or data[:4] != b':W&B':
    return
  pos, parts = _HEADER.size, b''
  while pos + _RECORD.size <= len(data):
    left = _BLOCK - pos % _BLOCK
    if left < _RECORD.size:
      pos += left
      continue
    crc, length, kind = _RECORD.unpack_from(data, pos)
    chunk = data[pos + _RECORD.size:pos + _RECORD.size + length]
    if len(chunk) < length or kind == 0 or \
        zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xffffffff != crc:
      return
    pos += _RECORD.size + length
    if kind == _FULL:
      yield chunk
    elif kind == _FIRST:
      parts = chunk
    elif kind == _MIDDLE:
      parts += chunk
    elif kind == _LAST:
      yield parts + chunk


def segments(workdir: pathlib.Path, run_id: str) -> list[pathlib.Path]:
  """The record files of run `run_id` under workdir/wandb, oldest first."""
  return sorted((workdir / 'wandb').glob(f'*run-*-{run_id}/run-{run_id}.wandb'),
                key=lambda p: p.parent.name.split('-')[-2])


def offline_history(workdir: pathlib.Path, run_id: str) -> dict[tuple[str, int], object]:
  """{(metric, step): value} logged to run `run_id` in every segment under workdir/wandb (media
  values as their JSON objects; W&B's own '_' keys left out)."""
  from wandb.proto import wandb_internal_pb2
  out = {}
  for path in segments(workdir, run_id):
    for data in records(path):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(data)
      if record.WhichOneof('record_type') != 'history':
        continue
      step = int(record.history.step.num)
      for item in record.history.item:
        path = [item.key] if item.key else list(item.nested_key)
        if path[0].startswith('_'):
          continue
        if len(path) == 1:
          out[path[0], step] = json.loads(item.value_json)
        else:  # a media value, one item per field
          out.setdefault((path[0], step), {})['/'.join(path[1:])] = json.loads(item.value_json)
  return out


class WandbRun:
  def __init__(self, config, run):
    import wandb
    self.workdir, ids = run.workdir, run.ids()
    self.id = ids.get('wandb') or ''.join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    run.keep_id('wandb', self.id)
    settings = wandb.Settings(mode=os.environ.get('WANDB_MODE') or 'offline', console='off',
                              silent=True, x_disable_stats=True, disable_git=True,
                              save_code=False)
    self.run = wandb.init(
        project=os.environ.get('WANDB_PROJECT') or 'aelab', id=self.id, resume='allow',
        dir=str(run.workdir), name=run.name, group=run.group,
        tags=[f'{k}={v}'[:64] for k, v in run.swept.items()], config=config.to_dict(),
        settings=settings, reinit='create_new', allow_val_change=True)
    self._wandb = wandb

  def held(self) -> set[tuple[str, int]]:
    return set(offline_history(self.workdir, self.id))

  def write(self, step: int, time: float, scalars: Mapping[str, float]) -> None:
    del time  # W&B stamps its own
    self.run.log(dict(scalars), step=step)

  def finish(self, step: int, summary: Mapping[str, float], plots: list[pathlib.Path]) -> None:
    if plots:
      self.run.log({f'plots/{p.stem}': self._wandb.Image(str(p)) for p in plots}, step=step)
    self.run.summary.update(dict(summary))

  def close(self) -> None:
    self.run.finish()


def open_store(config, run) -> WandbRun:
  return WandbRun(config, run)
