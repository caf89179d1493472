"""Configs, jax-free: experiment files, their argument, command-line overrides, group defaults.

  checks.py     the one validation of values: fields, choices, integers, numbers, widths
  catalog.py    what aelab has (models, loss terms, evaluators, datasets) and their options,
                read from the modules that implement them
  args.py       parse_arg: the `file.py:word,key=value` argument of get_config
  files.py      load('file.py[:arg]'): get_config(arg), with one-line errors; load_sweep
  sweeps.py     sweep / product / zipit / chain: the points of an experiment's get_sweep(arg)
  overrides.py  apply / apply_args: `--config.a.b=v` or {'a.b': v}, field and type checked
  defaults.py   every group's defaults (train, optimizer, model, loss, input_noise, evals, ...)

Nothing here imports jax, flax, optax or tqdm: config files load in a fraction of a second.
"""

from aelab.config import catalog, checks, defaults
from aelab.config.args import parse_arg
from aelab.config.files import load
from aelab.config.overrides import apply

__all__ = ['apply', 'catalog', 'checks', 'defaults', 'load', 'parse_arg']
