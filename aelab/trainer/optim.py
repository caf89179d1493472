"""Optimizers and learning-rate schedules by name, built with optax."""

from __future__ import annotations

import math

import ml_collections
import optax

from aelab.config import check_choice, check_fields
from aelab.config.defaults import OPTIMIZER
from aelab.errors import AelabError

OPTIMIZERS = ('adam', 'adamw', 'sgd', 'rmsprop', 'adadelta')
SCHEDULES = ('constant', 'cosine', 'warmup_cosine', 'warmup_constant')

DEFAULTS = OPTIMIZER  # the fields of config.optimizer (aelab/config/defaults.py)


def schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  check_choice(cfg.schedule, SCHEDULES, 'optimizer.schedule')
  lr, warmup = cfg.learning_rate, cfg.warmup_steps
  if not math.isfinite(lr) or lr <= 0:
    raise AelabError(f'optimizer.learning_rate = {lr}; it must be a positive, finite number')
  if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
    raise AelabError(f'optimizer.warmup_steps = {warmup!r}; it must be an integer >= 0')
  for key in ('momentum', 'weight_decay', 'grad_clip', 'adadelta_rho', 'adadelta_eps'):
    if not math.isfinite(cfg[key]) or cfg[key] < 0:
      raise AelabError(f'optimizer.{key} = {cfg[key]}; it must be a finite number >= 0')
  if cfg.schedule == 'constant':
    return optax.constant_schedule(lr)
  if cfg.schedule == 'cosine':
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))
  if cfg.schedule == 'warmup_constant':
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)], [warmup])
  return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1))


def make(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  check_fields(cfg, DEFAULTS, 'optimizer')
  check_choice(cfg.name, OPTIMIZERS, 'optimizer')
  lr = schedule(cfg, total_steps)
  tx = {
      'adam': lambda: optax.adam(lr),
      'adamw': lambda: optax.adamw(lr, weight_decay=cfg.weight_decay),
      'sgd': lambda: optax.sgd(lr, momentum=cfg.momentum or None),
      'rmsprop': lambda: optax.rmsprop(lr, momentum=cfg.momentum),
      'adadelta': lambda: optax.adadelta(lr, rho=cfg.adadelta_rho, eps=cfg.adadelta_eps),
  }[cfg.name]()
  if cfg.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
  return tx
