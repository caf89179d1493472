"""Optimizers and learning-rate schedules by name, built with optax."""

from __future__ import annotations

import ml_collections
import optax

from aelab.config import check_choice, check_fields
from aelab.errors import AelabError

OPTIMIZERS = ('adam', 'adamw', 'sgd', 'rmsprop', 'adadelta')
SCHEDULES = ('constant', 'cosine', 'warmup_cosine', 'warmup_constant')

DEFAULTS = dict(
    name='adam',
    learning_rate=1e-3,
    schedule='constant',
    warmup_steps=0,
    momentum=0.9,        # sgd (0 = plain SGD) and rmsprop
    weight_decay=1e-4,   # adamw only; for L2 in the loss use the weight_decay loss term
    grad_clip=0.0,       # clip gradients to this global norm; 0 = no clipping
    adadelta_rho=0.9,    # adadelta only: decay of the running averages (H2O: 0.99)
    adadelta_eps=1e-6,   # adadelta only: smoothing term (H2O: 1e-8)
)


def defaults(**overrides) -> ml_collections.ConfigDict:
  check_fields(overrides, DEFAULTS, 'optimizer')
  return ml_collections.ConfigDict({**DEFAULTS, **overrides})


def schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  check_choice(cfg.schedule, SCHEDULES, 'optimizer.schedule')
  lr, warmup = cfg.learning_rate, int(cfg.warmup_steps)
  if lr <= 0:
    raise AelabError(f'optimizer.learning_rate = {lr}; it must be positive')
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
