"""Optimizers and learning-rate schedules by name, built with optax; frozen parameters.

`lbfgs` is optax.lbfgs: with `lbfgs_linesearch='zoom'` (the default) a zoom line search (strong
Wolfe conditions, as minFunc's) chooses each step, starting from the full quasi-Newton step, so
`learning_rate` is not used (nor a schedule: it must be 'constant'); with 'none' the step is
`learning_rate` (and its schedule) times the L-BFGS direction. Its update needs the loss: the
train step passes value, grad and value_fn (the loss of the same batch as a function of the
parameters) to every optimizer, which all others ignore. With `train.batch_size` = the training
set's size each step is one full-batch L-BFGS iteration (UFLDL's minFunc recipe).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aelab.config import checks
from aelab.config.defaults import OPTIMIZER
from aelab.errors import AelabError

OPTIMIZERS = ('adam', 'adamw', 'sgd', 'rmsprop', 'adadelta', 'lbfgs')
LBFGS_LINESEARCHES = ('zoom', 'none')
SCHEDULES = ('constant', 'cosine', 'warmup_cosine', 'warmup_constant')

DEFAULTS = OPTIMIZER  # the fields of config.optimizer (aelab/config/defaults.py)


def schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  checks.choice(cfg.schedule, SCHEDULES, 'optimizer.schedule')
  lr = checks.number(cfg.learning_rate, 'optimizer.learning_rate', above=0.0)
  warmup = checks.integer(cfg.warmup_steps, 'optimizer.warmup_steps', low=0, high=checks.INT32_MAX)
  for key in ('momentum', 'weight_decay', 'grad_clip', 'adadelta_rho', 'adadelta_eps'):
    checks.number(cfg[key], f'optimizer.{key}', low=0.0)
  if cfg.schedule == 'constant':
    return optax.constant_schedule(lr)
  if cfg.schedule == 'cosine':
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))
  if cfg.schedule == 'warmup_constant':
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)], [warmup])
  return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1))


def logged_rate(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule | None:
  """The learning rate logged as train/learning_rate: the schedule, or None where it is not used
  (lbfgs with its zoom line search)."""
  if cfg.name == 'lbfgs' and cfg.lbfgs_linesearch == 'zoom':
    return None
  return schedule(cfg, total_steps)


def make(cfg: ml_collections.ConfigDict, total_steps: int,
         param_names: Sequence[str] | None = None,
         groups: Mapping[str, Sequence[str]] | None = None) -> optax.GradientTransformation:
  """The optimizer of `cfg`; `param_names`: the model's top-level parameters, against which
  `optimizer.frozen` and `optimizer.groups` are checked (unchecked when None), `groups` the
  model's named groups of them (base.Model.param_groups: 'encoder', 'decoder', 'head', a
  FactorVAE's 'discriminator').

  With `optimizer.groups` ({group: {field: value}}), each named group's parameters train with
  their own optimizer (the fields of `cfg` with the group's overriding them) and their own
  optimizer state, in the same update (optax.multi_transform); the rest with `cfg`'s."""
  checks.fields(cfg, DEFAULTS, 'optimizer')
  own = _own_groups(cfg)
  main = _single(cfg, total_steps, param_names, groups)
  if not own:
    return main
  if param_names is None or groups is None:
    raise AelabError('optimizer.groups needs the model\'s parameter names and groups')
  members = {}
  for g in own:
    if g not in groups:
      raise AelabError(f'optimizer.groups names {g!r}, not a parameter group of this model; its '
                       f'groups: {", ".join(groups) or "none"}')
    members.update({n: g for n in groups[g]})
  if cfg.name == 'lbfgs' or any(o.name == 'lbfgs' for o in own.values()):
    raise AelabError('optimizer.groups does not combine with lbfgs (its line search moves every '
                     'parameter along one direction); use a first-order optimizer')
  if len(members) == len(param_names):
    raise AelabError(f'optimizer.groups ({", ".join(own)}) take every parameter of this model; '
                     'leave at least one to the main optimizer')
  transforms = {'main': main, **{g: _single(o, total_steps) for g, o in own.items()}}
  labels = lambda params: {n: jax.tree.map(lambda _: members.get(n, 'main'), sub)  # noqa: E731
                           for n, sub in params.items()}
  return optax.multi_transform(transforms, labels)


def _own_groups(cfg: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """{group: its optimizer's fields} of optimizer.groups, each checked."""
  given = cfg.get('groups') or {}
  given = given.to_dict() if hasattr(given, 'to_dict') else dict(given)
  base = {k: v for k, v in cfg.items() if k not in ('groups', 'frozen')}
  base = {k: v.to_dict() if hasattr(v, 'to_dict') else v for k, v in base.items()}
  out = {}
  for g, fields in given.items():
    if not isinstance(fields, Mapping):
      raise AelabError(f'optimizer.groups.{g} must be a dict of optimizer fields, e.g. '
                       f'dict(learning_rate=1e-4); got {fields!r}')
    checks.fields(fields, [k for k in DEFAULTS if k not in ('groups', 'frozen')],
                  f'optimizer.groups.{g}')
    out[g] = ml_collections.ConfigDict({**base, **fields, 'frozen': '', 'groups': {}})
  return out


def _single(cfg: ml_collections.ConfigDict, total_steps: int,
            param_names: Sequence[str] | None = None,
            groups: Mapping[str, Sequence[str]] | None = None) -> optax.GradientTransformation:
  checks.choice(cfg.name, OPTIMIZERS, 'optimizer')
  lr = schedule(cfg, total_steps)
  b1 = checks.number(cfg.get('b1', 0.9), 'optimizer.b1', low=0.0, below=1.0)
  b2 = checks.number(cfg.get('b2', 0.999), 'optimizer.b2', low=0.0, below=1.0)
  tx = {
      'adam': lambda: optax.adam(lr, b1=b1, b2=b2),
      'adamw': lambda: optax.adamw(lr, b1=b1, b2=b2, weight_decay=cfg.weight_decay),
      'sgd': lambda: optax.sgd(lr, momentum=cfg.momentum or None),
      'rmsprop': lambda: optax.rmsprop(lr, momentum=cfg.momentum),
      'adadelta': lambda: optax.adadelta(lr, rho=cfg.adadelta_rho, eps=cfg.adadelta_eps),
      'lbfgs': lambda: _lbfgs(cfg, lr),
  }[cfg.name]()
  if cfg.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
  frozen = frozen_names(cfg.frozen, param_names, groups)
  return freeze(tx, frozen) if frozen else tx


def _lbfgs(cfg: ml_collections.ConfigDict, lr: optax.Schedule) -> optax.GradientTransformation:
  memory = checks.integer(cfg.lbfgs_memory, 'optimizer.lbfgs_memory', low=1, high=10000)
  checks.choice(cfg.lbfgs_linesearch, LBFGS_LINESEARCHES, 'optimizer.lbfgs_linesearch')
  if cfg.grad_clip > 0:
    raise AelabError('optimizer.grad_clip does not apply to lbfgs (it needs the true gradient; '
                     'its line search bounds the step); set it to 0')
  if cfg.lbfgs_linesearch == 'none':
    return optax.lbfgs(lr, memory_size=memory, linesearch=None)
  if cfg.schedule != 'constant':
    raise AelabError(f"optimizer.schedule = {cfg.schedule!r}, but lbfgs's zoom line search "
                     "chooses every step; use schedule 'constant' or lbfgs_linesearch 'none'")
  return optax.lbfgs(memory_size=memory)


def frozen_names(spec: str, param_names: Sequence[str] | None,
                 groups: Mapping[str, Sequence[str]] | None = None) -> tuple[str, ...]:
  """The top-level parameters `spec` names: a comma-separated list of parameter names or groups
  ('encoder': every encoder layer), checked against `param_names`."""
  if not isinstance(spec, str):
    raise AelabError(f"optimizer.frozen = {spec!r}; give a comma-separated list of parameter "
                     "names or groups, e.g. 'encoder' ('' freezes nothing)")
  groups = dict(groups or {})
  names = tuple(dict.fromkeys(p for n in spec.split(',') if n.strip()
                              for p in groups.get(n.strip(), (n.strip(),))))
  if names and param_names is not None:
    unknown = [n for n in names if n not in param_names]
    if unknown:
      raise AelabError(f'optimizer.frozen names {", ".join(map(repr, unknown))}, not a parameter '
                       f'or group of this model; its parameters: {", ".join(param_names)}; its '
                       f'groups: {", ".join(groups) or "none"}')
    if set(names) >= set(param_names):
      raise AelabError(f'optimizer.frozen = {spec!r} freezes every parameter of this model; '
                       'nothing would train')
  return names


def freeze(tx: optax.GradientTransformation,
           names: Sequence[str]) -> optax.GradientTransformationExtraArgs:
  """`tx` with the top-level parameters `names` kept exactly as they are: their gradients enter
  `tx` as zeros and their updates leave it as zeros (params + 0). Like optax.multi_transform with
  set_to_zero for them, but `tx` still sees the whole parameter tree, which lbfgs's line search
  needs (it evaluates the loss at params + step * update); the optimizer state keeps its shape."""
  inner, names = optax.with_extra_args_support(tx), frozenset(names)

  def zero(tree: Mapping) -> dict:
    return {k: jax.tree.map(jnp.zeros_like, v) if k in names else v for k, v in tree.items()}

  def update(updates, state, params=None, **extra_args):
    if 'grad' in extra_args:
      extra_args['grad'] = zero(extra_args['grad'])
    updates, state = inner.update(zero(updates), state, params, **extra_args)
    return zero(updates), state

  return optax.GradientTransformationExtraArgs(inner.init, update)
