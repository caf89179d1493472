"""Where IDX datasets are looked for, and which file in a directory plays which role.

Lookup order (first directory holding all four files wins):
  1. `dataset.path`, when set (then only there: no fallback, no download);
  2. `$AELAB_DATA_DIR/<name>/` (also `fashion-mnist/`), then `$AELAB_DATA_DIR` itself;
  3. the cache `$AELAB_CACHE_DIR/<name>/` (default `~/.cache/aelab/<name>/`);
  4. system copies, e.g. `/usr/share/datasets/fashion-mnist/` (Debian `dataset-fashion-mnist`);
  5. otherwise the missing official files are downloaded into the cache.

File names (case-insensitive; raw or gzip, ending in `ubyte` or `ubyte.gz`):
  train images `*train*images*idx3*`, train labels `*train*labels*idx1*`,
  test images `*t10k*images*idx3*` or `*test*images*idx3*`, test labels likewise with
  `labels*idx1`. Published names (`train-images-idx3-ubyte.gz`, `train-images-idx3-ubyte`,
  `train-images.idx3-ubyte`) win over other matches (e.g. `train10k-images-idx3-ubyte.gz`)
  and are md5-checked; two other matches for one role are an error.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from aelab.data import download
from aelab.errors import AelabError

SUBDIRS = {'mnist': ('mnist',), 'fashion_mnist': ('fashion_mnist', 'fashion-mnist')}
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    'fashion_mnist': (Path('/usr/share/datasets/fashion-mnist'),),
}
PATTERNS = {
    'train_images': ('*train*images*idx3*',),
    'train_labels': ('*train*labels*idx1*',),
    'test_images': ('*t10k*images*idx3*', '*test*images*idx3*'),
    'test_labels': ('*t10k*labels*idx1*', '*test*labels*idx1*'),
}


def cache_dir(name: str) -> Path:
  """`$AELAB_CACHE_DIR/<name>` or `~/.cache/aelab/<name>`."""
  root = os.environ.get('AELAB_CACHE_DIR') or Path.home() / '.cache' / 'aelab'
  return Path(root).expanduser() / name


def candidate_dirs(name: str) -> list[tuple[str, Path]]:
  """(how, directory) pairs searched when `dataset.path` is not set, in order."""
  out = []
  data_dir = os.environ.get('AELAB_DATA_DIR')
  if data_dir:
    root = Path(data_dir).expanduser()
    out += [('$AELAB_DATA_DIR', root / sub) for sub in SUBDIRS[name]]
    out.append(('$AELAB_DATA_DIR', root))
  out.append(('cache', cache_dir(name)))
  out += [('system', d) for d in SYSTEM_DIRS.get(name, ())]
  return out


def official_names(filename: str) -> tuple[str, ...]:
  """Spellings of a published file name: `x-idx3-ubyte.gz`, `x-idx3-ubyte`, `x.idx3-ubyte`."""
  raw = filename.removesuffix('.gz')
  dotted = raw.replace('-idx', '.idx')
  return (raw + '.gz', raw, dotted + '.gz', dotted)


def is_official(name: str, role: str, path: Path) -> bool:
  return path.name.lower() in official_names(download.OFFICIAL[name][role].filename)


def find_files(name: str, directory: Path) -> dict[str, Path]:
  """The files in `directory` for each role found (possibly not all four)."""
  try:
    entries = sorted(p for p in directory.iterdir() if p.is_file())
  except OSError:
    return {}
  found = {}
  for role, patterns in PATTERNS.items():
    matches = [p for p in entries if _matches(p.name, patterns)]
    official = [p for p in matches if is_official(name, role, p)]
    if official:
      order = official_names(download.OFFICIAL[name][role].filename)
      found[role] = min(official, key=lambda p: order.index(p.name.lower()))
    elif len(matches) == 1:
      found[role] = matches[0]
    elif len(matches) > 1:
      raise AelabError(
          f'{directory} holds several candidate {role.replace("_", " ")} files: '
          f'{", ".join(p.name for p in matches)}. Keep one of them there, or move the one '
          'you want into its own directory and set dataset.path to it.')
  return found


def _matches(filename: str, patterns: tuple[str, ...]) -> bool:
  low = filename.lower()
  if low.startswith('.') or not (low.endswith('ubyte') or low.endswith('ubyte.gz')):
    return False
  return any(fnmatch.fnmatchcase(low, pat) for pat in patterns)
