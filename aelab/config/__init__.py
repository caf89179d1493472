"""Configs, jax-free: experiment files, their argument, command-line overrides, group defaults.

  fields.py     check_fields / check_choice: one-line errors naming the valid names
  args.py       parse_arg: the `file.py:word,key=value` argument of get_config
  files.py      load('file.py[:arg]'): get_config(arg), with one-line errors; load_sweep
  sweeps.py     sweep / product / zipit / chain: the points of an experiment's get_sweep(arg)
  overrides.py  apply / apply_args: `--config.a.b=v` or {'a.b': v}, field and type checked
  defaults.py   every group's defaults (train, optimizer, model, loss, input_noise, evals, ...)

Nothing here imports jax, flax, optax or tqdm: config files load in a fraction of a second.
"""

from aelab.config import defaults
from aelab.config.args import parse_arg
from aelab.config.fields import check_choice, check_fields
from aelab.config.files import load
from aelab.config.overrides import apply

__all__ = ['apply', 'check_choice', 'check_fields', 'defaults', 'load', 'parse_arg']
