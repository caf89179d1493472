"""Config files and their command-line overrides: load `get_config(arg)`, check field names."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from collections.abc import Mapping, Sequence

import ml_collections
from absl import app

from aelab.errors import AelabError


def load(spec: str) -> ml_collections.ConfigDict:
  """Loads `path/to/file.py[:arg]` the way `--config=` does (arg passed to get_config)."""
  path, _, arg = spec.partition(':')
  file = pathlib.Path(path)
  if not file.is_file():
    raise AelabError(f'config file {path!r} does not exist')
  module_spec = importlib.util.spec_from_file_location(f'_aelab_config_{file.stem}', file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise AelabError(f'config file {path!r} defines no get_config(arg=None)')
  return module.get_config(arg or None)


def check_fields(cfg: Mapping, valid: Sequence[str], where: str) -> None:
  """Raises AelabError naming every key of `cfg` that is not in `valid`."""
  unknown = sorted(set(cfg.keys()) - set(valid))
  if unknown:
    raise AelabError(
        f'unknown field{"s" if len(unknown) > 1 else ""} {", ".join(unknown)} in {where}; '
        f'valid fields: {", ".join(sorted(valid))}')


def check_choice(value: str, choices: Sequence[str], what: str) -> None:
  """Raises AelabError when `value` is not one of `choices`, listing them."""
  if value not in choices:
    raise AelabError(f'unknown {what} {value!r}; valid choices: {", ".join(choices)}')


def check_override_paths(config: ml_collections.ConfigDict, argv: Sequence[str],
                         flag: str = 'config') -> None:
  """Checks every `--config.a.b=v` in argv names an existing field, before absl parses it.

  absl/ml_collections report an unknown override with a traceback from deep inside
  ConfigDict; this turns it into one line naming the field and the valid ones.
  """
  prefix = f'--{flag}.'
  for arg in argv:
    if not arg.startswith(prefix):
      continue
    path = arg[len(prefix):].split('=', 1)[0]
    node, walked = config, []
    for key in path.split('.'):
      if not isinstance(node, (ml_collections.ConfigDict, Mapping)) or key not in node:
        where = '.'.join(walked) or flag
        valid = sorted(node.keys()) if isinstance(node, (ml_collections.ConfigDict, Mapping)) else []
        hint = f'; valid fields of {where}: {", ".join(valid)}' if valid else f' ({where} is not a group)'
        raise AelabError(f"unknown config field '{flag}.{path}'{hint}")
      node = node[key]
      walked.append(key)


def variants(arg: str | None, valid: Sequence[str]) -> set[str]:
  """The variant words of `file.py:a,b` (get_config's arg) as a set; an unknown word is an error
  that lists the valid ones."""
  words = {w.strip() for w in (arg or '').split(',') if w.strip()}
  unknown = sorted(words - set(valid))
  if unknown:
    raise AelabError(f'unknown config variant{"s" if len(unknown) > 1 else ""} '
                     f'{", ".join(map(repr, unknown))}; valid variants (comma-separated): '
                     f'{", ".join(valid)}')
  return words


def tiny_images(config: ml_collections.ConfigDict, **train_overrides) -> None:
  """The `:tiny` variant of an image config: 1000 training / 500 test images and 60 steps, which
  trains in seconds on a CPU (the tests use it)."""
  config.dataset.update(train_limit=1000, test_limit=500)
  config.train.update({**dict(batch_size=50, num_epochs=0, num_steps=60, steps_per_call=10,
                              log_every=20, eval_every=0, checkpoint_every=0), **train_overrides})


def run_app(main, argv: list[str]) -> None:
  """absl `app.run(main)` for a `--config` CLI: a missing config file or an unknown override field
  is reported before absl parses, and every AelabError is one line on stderr with exit code 2."""
  try:
    spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
    if spec is not None:
      check_override_paths(load(spec), argv)
    app.run(main, argv=argv)
  except AelabError as e:
    print(f'aelab: error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)
