"""Random input transforms applied inside the jitted step: corruption (denoising) and dynamic
binarization. Every transform is a pure function of (x, rng); nothing here holds state.

  x_bin = binarize(x, rng)                          # Bernoulli(x) sample of [0, 1] data
  x_in  = gaussian(x, rng, std=0.5, clip=(0, 1))    # x + std * N(0, 1), clipped to the data range
  x_in  = masking(x, rng, fraction=0.25)            # a random `fraction` of entries set to 0
  x_in  = salt_and_pepper(x, rng, fraction=0.1, low=0, high=1)  # half to `low`, half to `high`

`config.input_noise` (fields and defaults: `aelab.config.defaults.input_noise`) selects them;
`InputNoise.prepare` is what the trainer's forward pass calls: binarize the raw batch (that sample
is also the loss target), preprocess it, then corrupt the model's input only, so the loss compares
the reconstruction of the corrupted input with the clean one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab import preprocessing
from aelab.config import checks
from aelab.config.defaults import INPUT_NOISE
from aelab.errors import AelabError

KINDS = ('none', 'gaussian', 'masking', 'salt_and_pepper')

DEFAULTS = INPUT_NOISE  # the fields of config.input_noise (aelab/config/defaults.py)


# --- the transforms: pure functions of (x, rng) ------------------------------------------------

def binarize(x: jax.Array, rng: jax.Array) -> jax.Array:
  """A Bernoulli sample with success probability x (x in [0, 1]), in x's dtype."""
  return (jax.random.uniform(rng, x.shape) < x).astype(x.dtype)


def gaussian(x: jax.Array, rng: jax.Array, std: float,
             clip: tuple[float, float] | None = None) -> jax.Array:
  """x + std * N(0, 1), then clipped to `clip` = (low, high) when given."""
  y = x + std * jax.random.normal(rng, x.shape, x.dtype)
  return y if clip is None else jnp.clip(y, clip[0], clip[1])


def masking(x: jax.Array, rng: jax.Array, fraction: float) -> jax.Array:
  """Masking noise: each entry independently set to 0 with probability `fraction`."""
  return jnp.where(jax.random.uniform(rng, x.shape) < fraction, jnp.zeros_like(x), x)


def salt_and_pepper(x: jax.Array, rng: jax.Array, fraction: float, low: float = 0.0,
                    high: float = 1.0) -> jax.Array:
  """Each entry independently replaced with probability `fraction`, by `low` or `high` (1/2 each)."""
  k_which, k_value = jax.random.split(rng)
  hit = jax.random.uniform(k_which, x.shape) < fraction
  salt = jax.random.bernoulli(k_value, 0.5, x.shape)
  return jnp.where(hit, jnp.where(salt, high, low).astype(x.dtype), x)


# --- the configured transform the trainer uses ------------------------------------------------

@dataclasses.dataclass(frozen=True)
class InputNoise:
  """The resolved `config.input_noise`; `value_range` is the training data's range in model space."""
  binarize: bool = False
  corruption: str = 'none'
  level: float = 0.0
  clip: bool = True
  train: bool = True
  value_range: tuple[float, float] = (0.0, 1.0)

  @property
  def corrupts(self) -> bool:
    return self.corruption != 'none'

  def corrupt(self, z: jax.Array, rng: jax.Array) -> jax.Array:
    """The configured corruption of a (preprocessed) batch; identity for 'none'."""
    lo, hi = self.value_range
    if self.corruption == 'gaussian':
      return gaussian(z, rng, self.level, (lo, hi) if self.clip else None)
    if self.corruption == 'masking':
      return masking(z, rng, self.level)
    if self.corruption == 'salt_and_pepper':
      return salt_and_pepper(z, rng, self.level, lo, hi)
    return z

  def prepare(self, prep: preprocessing.Preprocessor, x: jax.Array, rng: jax.Array,
              corrupt: bool) -> tuple[jax.Array, jax.Array, dict]:
    """Raw batch -> (clean target z, model input, preprocessing ctx), all in model space.

    With `binarize`, the raw batch is replaced by a Bernoulli sample first (target and input
    alike); with `corrupt` and a corruption, only the model input is corrupted.
    """
    k_bin, k_corrupt = jax.random.split(rng)
    if self.binarize:
      x = binarize(jnp.asarray(x), k_bin)
    z, ctx = prep.apply(x)
    z_in = self.corrupt(z, k_corrupt) if corrupt and self.corrupts else z
    return z, z_in, ctx


def build(cfg: ml_collections.ConfigDict | Mapping[str, Any] | None,
          data_range: tuple[float, float] | None = None,
          model_range: tuple[float, float] | None = None) -> InputNoise:
  """Validates `config.input_noise` and resolves it.

  data_range: the raw data's value range (binarization needs [0, 1] data);
  model_range: the training data's range after preprocessing (clipping, salt and pepper).
  """
  if cfg is None:
    return InputNoise()
  fields = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
  checks.fields(fields, DEFAULTS, 'input_noise')
  fields = {**DEFAULTS, **fields}
  checks.choice(fields['corruption'], KINDS, 'input_noise.corruption')
  level = checks.number(fields['level'], 'input_noise.level', low=0.0)
  if fields['corruption'] in ('masking', 'salt_and_pepper') and not level <= 1:
    raise AelabError(f'input_noise.level is the fraction of entries {fields["corruption"]} '
                     f'replaces, in [0, 1]; got {level!r}')
  if fields['binarize'] and (data_range is None or data_range[0] < 0 or data_range[1] > 1):
    raise AelabError('input_noise.binarize samples Bernoulli(x) and needs data in [0, 1]; this '
                     f'dataset\'s range is {data_range}. Turn binarize off for this dataset.')
  return InputNoise(binarize=bool(fields['binarize']), corruption=fields['corruption'],
                    level=float(level), clip=bool(fields['clip']), train=bool(fields['train']),
                    value_range=tuple(float(v) for v in (model_range or (0.0, 1.0))))


def for_dataset(cfg: ml_collections.ConfigDict | Mapping[str, Any] | None, dataset,
                prep: preprocessing.Preprocessor) -> InputNoise:
  """`build` with the ranges measured on the dataset's training split (after `prep`)."""
  if cfg is None:
    return InputNoise()
  x = dataset.train.x
  data_range = dataset.value_range or (float(x.min()), float(x.max()))
  model_range = data_range
  if (cfg.get('corruption', 'none') != 'none') and prep.mode != 'none':
    z = np.asarray(prep.apply(x)[0])
    model_range = (float(z.min()), float(z.max()))
  return build(cfg, data_range=data_range, model_range=model_range)
