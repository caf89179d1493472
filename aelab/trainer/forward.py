"""The one forward pass: raw batch -> [binarize] -> preprocess -> [corrupt] -> model -> loss terms.

Training, evaluation, the IWAE bound, inspection, plots and the benchmark all apply the model
through a `Forward`; nothing else calls `model.apply`.

    fwd = Forward(model, loss_fn, noise, compute_dtype)
    total, (terms, recon, ctx, aux) = fwd(params, prep, batch, rng, train, step=None, corrupt=None)
    p = fwd.outputs(params, prep, batch, rng, train=False)   # z, inputs, ctx, recon, aux
    code = fwd.encode(params, prep, x)                       # the code of raw rows
    x_hat = fwd.decode(params, prep, code)                   # decoder means, in input units
    w_dec = fwd.weights(params, 'decoder')                   # a method of the parameters alone

`batch` is {'x': raw rows [B, *feature_shape]} plus 'y' (int labels [B]) when the dataset has
them. `rng` is split between the input noise (aelab/corruption.py) and the model's 'noise'
stream (VAE sampling). The model sees the corrupted input when `corrupt` (default: `train` and
input_noise.train); the loss target stays the clean (binarized, if so configured) batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from aelab import corruption, losses
from aelab.errors import AelabError
from aelab.preprocessing import Preprocessor
from aelab.trainer import precision

TERMS_STREAM = 0x7e5  # fold_in(rng, TERMS_STREAM): the loss terms' key (Outputs.rng)
NEAR_ZERO = 1e-2  # |h| below this counts as an inactive code unit (code_near_zero)


class Pass(NamedTuple):
  """One application of the model to a raw batch, in model (preprocessed) space."""
  z: jax.Array        # the clean target: the preprocessed (binarized) batch
  inputs: jax.Array   # what the model saw (z, or its corruption)
  ctx: dict           # per-example preprocessing statistics (per_sample), for `invert`
  recon: jax.Array    # the reconstruction, after the output activation
  aux: dict           # the model's aux: 'code', 'encoder', 'logits', ...


def code_statistics(code: jax.Array) -> dict[str, jax.Array]:
  """Mean activation of the code and the fraction of its activations with |h| < NEAR_ZERO."""
  return {'code_mean': jnp.mean(code),
          'code_near_zero': jnp.mean((jnp.abs(code) < NEAR_ZERO).astype(jnp.float32))}


class Apply:
  """apply(method, *args, rng=None): a model method with bound parameters (Outputs.apply);
  has(method) says whether the model has it."""

  def __init__(self, forward: 'Forward', params):
    self.forward, self.params = forward, params
    self.model_name = type(forward.model).__name__

  def has(self, method: str) -> bool:
    return callable(getattr(self.forward.model, method, None))

  def __call__(self, method: str, *args, rng=None):
    if not self.has(method):
      raise AelabError(f'{self.model_name} has no method {method!r}, which a loss term needs')
    return self.forward._apply(self.params, *args,  # pylint: disable=protected-access
                               method=getattr(self.forward.model, method), rng=rng)


@dataclasses.dataclass(frozen=True)
class Forward:
  model: nn.Module
  loss_fn: Callable
  noise: corruption.InputNoise = corruption.InputNoise()
  compute_dtype: Any = jnp.float32

  def _apply(self, params, inputs, *args, rng=None, **kwargs):
    """model.apply in the compute dtype (float32 master weights), outputs back in float32."""
    variables = {'params': precision.for_compute(params, self.compute_dtype)}
    rngs = None if rng is None else {'noise': rng}
    return precision.to_float32(self.model.apply(
        variables, precision.for_compute(inputs, self.compute_dtype), *args, rngs=rngs, **kwargs))

  def outputs(self, params, prep: Preprocessor, batch: dict, rng: jax.Array, *, train: bool,
              corrupt: bool | None = None, stats=None) -> Pass:
    """`stats`: the train state's stats, for models that keep some (TrainState.stats); such a
    model returns their update as aux['stats'] when training."""
    k_input, k_model = jax.random.split(rng)
    corrupt = (train and self.noise.train) if corrupt is None else corrupt
    z, z_in, ctx = self.noise.prepare(prep, batch['x'], k_input, corrupt)
    kwargs = {'stats': stats} if stats else {}
    recon, aux = self._apply(params, z_in, train=train, rng=k_model, **kwargs)
    return Pass(z=z, inputs=z_in, ctx=ctx, recon=recon, aux=aux)

  def __call__(self, params, prep: Preprocessor, batch: dict, rng: jax.Array, train: bool,
               step=None, corrupt: bool | None = None, stats=None):
    """(total, (terms, recon, ctx, aux)); `terms` holds every loss term, unweighted, and the
    code statistics (code_mean, code_near_zero); `aux` is the model's. `step` is the train step,
    for weight warm-up; `stats` the state's (see `outputs`)."""
    if train and step is None and getattr(self.loss_fn, 'needs_step', False):
      raise AelabError('a loss weight warms up (warmup_steps > 0), so the train step must pass '
                       'the step: forward(params, prep, batch, rng, True, step=state.step)')
    p = self.outputs(params, prep, batch, rng, train=train, corrupt=corrupt, stats=stats)
    encode = lambda v: self._apply(params, v, method=self.model.encode)  # noqa: E731
    apply = Apply(self, params)
    # The terms' key is folded from `rng`, so the model's and the input noise's draws are those
    # of a run without such terms.
    total, terms = self.loss_fn(losses.Outputs(
        x=p.z, recon=p.recon, aux=p.aux, params=params, inputs=p.inputs, step=step,
        labels=batch.get('y'), encode=encode, weights=lambda m: self.weights(params, m),
        apply=apply, rng=jax.random.fold_in(rng, TERMS_STREAM)))
    # What a model reports of itself (aux['metrics'], e.g. a FactorVAE's discriminator accuracy)
    # is logged with the terms.
    return total, ({**terms, **code_statistics(p.aux['code']), **p.aux.get('metrics', {})},
                   p.recon, p.ctx, p.aux)

  def encode(self, params, prep: Preprocessor, x: jax.Array) -> jax.Array:
    """The code of raw rows x (for a VAE: the posterior mean)."""
    return self._apply(params, prep.apply(x)[0], method=self.model.encode)

  def decode(self, params, prep: Preprocessor, code: jax.Array) -> jax.Array:
    """Decoder outputs of codes, in input units (not for per_sample, which needs each row's ctx)."""
    return prep.invert(self._apply(params, code, method=self.model.decode), {})

  def weights(self, params, method: str) -> jax.Array:
    """What a model method computes from the parameters alone, in float32 (an SAE's `decoder`:
    the matrix it decodes with)."""
    return self.model.apply({'params': params}, method=lambda m: getattr(m, method)())

  def from_layer(self, params, h: jax.Array, layer: str):
    """(output, aux) of the model continued from feature layer `layer`'s activations h (a model
    with from_layer; see aelab/analysis/splice.py)."""
    return self._apply(params, h, layer, method=self.model.from_layer)

  def prior_codes(self, params, rng: jax.Array, n: int) -> jax.Array | None:
    """n codes drawn from the model's own prior (decode them for samples), or None for a model
    without one (a deterministic autoencoder: see aelab/evaluators/sampling.py)."""
    variables = {'params': precision.for_compute(params, self.compute_dtype)}
    return precision.to_float32(self.model.apply(variables, n, method=self.model.prior_codes,
                                                 rngs={'noise': rng}))

  def log_weights(self, params, z: jax.Array, rng: jax.Array, k: int) -> jax.Array:
    """[B, k] importance log-weights of preprocessed rows z (a VAE; see aelab/evaluators/iwae.py)."""
    return self._apply(params, z, k, method=self.model.log_weights, rng=rng)
