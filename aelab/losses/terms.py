"""What every loss term sees (`Outputs`) and the terms themselves: small pure functions
`fn(out, **options) -> scalar`, unweighted, each marked @term (its keyword defaults are its
options: aelab.config.catalog reads them). `aelab.losses.compose` weights and sums them."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from aelab.config import checks
from aelab.errors import AelabError
from aelab.models import likelihoods


@flax.struct.dataclass
class Outputs:
  """What every loss term sees; all fields but `encode` are pytrees (jit-friendly)."""
  x: jax.Array  # The clean target, in model (preprocessed) space.
  recon: jax.Array  # The reconstruction, after the output activation.
  aux: dict  # The model's aux: 'logits', 'encoder', 'code', 'decoder', ...
  params: dict  # The model parameters.
  # What the model saw (the corrupted input of a denoiser); None means `x`.
  inputs: jax.Array | None = None
  # The training step (int scalar), for weight warm-up; None outside training (full weights).
  step: jax.Array | None = None
  # The batch's labels (int [B]) when the dataset has them, for supervised terms.
  labels: jax.Array | None = None
  # code = encode(inputs) with these params (for the contractive term); not a pytree leaf.
  encode: Callable[[jax.Array], jax.Array] | None = flax.struct.field(
      pytree_node=False, default=None)
  # weights(method): what a model method computes from these params alone (e.g. a dense model's
  # 'first_kernel'); None where no forward pass gave it.
  weights: Callable[[str], jax.Array] | None = flax.struct.field(pytree_node=False, default=None)
  # apply(method, *args, rng=None): a model method with these params, on model-space arrays (the
  # IWAE bound's log_weights, a decoder for a gradient penalty); None where no forward pass gave it.
  apply: Callable[..., Any] | None = flax.struct.field(pytree_node=False, default=None)
  # A key for terms that draw (the MMD term's prior samples); None outside the forward pass.
  rng: jax.Array | None = None


def term(fn: Callable | None = None, *, check: Callable[..., None] | None = None):
  """Marks a loss term (`@term`, or `@term(check=fn)` where fn(**options) raises AelabError for
  a bad option value, called by compose before anything is traced)."""
  def mark(f: Callable) -> Callable:
    f.check = check
    return f
  return mark if fn is None else mark(fn)


RECONSTRUCTION_KINDS = ('mse', 'bce', 'gaussian', 'logistic')
CONTRACTIVE_METHODS = ('exact', 'sigmoid_layer')
REDUCTIONS = ('mean', 'sum')
# Activations whose outputs lie in (0, 1), as KL sparsity needs.
UNIT_INTERVAL_ACTIVATIONS = ('sigmoid',)
_KL_EPS = 1e-6


def _per_example_sum(v: jax.Array) -> jax.Array:
  """Sums over every axis but the first (batch)."""
  return jnp.sum(v, axis=tuple(range(1, v.ndim)))


def normalize_layer(layer: Any) -> str:
  """'code' or a positive int (or its digit string) -> 'code' / '1' / '2' ..."""
  if isinstance(layer, str) and layer == 'code':
    return 'code'
  if isinstance(layer, numbers.Integral) and not isinstance(layer, bool):
    if layer >= 1:
      return str(int(layer))
  elif isinstance(layer, str) and layer.isdigit() and int(layer) >= 1:
    return str(int(layer))
  raise AelabError(
      f"unknown layer {layer!r}; valid layers: 'code' or an encoder layer "
      'number K >= 1 (1 is the first encoder layer), as an int or digits')


def layer_activations(aux: dict, layer: Any) -> jax.Array:
  """The activations of `layer`: 'code', or encoder layer K (1-based int/digits)."""
  key = normalize_layer(layer)
  if key == 'code':
    return aux['code']
  encoder = tuple(aux.get('encoder', ()))
  k = int(key)
  if not 1 <= k <= len(encoder):
    valid = ', '.join(["'code'"] + [str(i) for i in range(1, len(encoder) + 1)])
    raise AelabError(
        f'unknown layer {layer!r}: the encoder has {len(encoder)} layers; '
        f'valid layers: {valid}')
  return encoder[k - 1]


def bce_from_logits(logits: jax.Array, x: jax.Array) -> jax.Array:
  """Binary cross-entropy of targets x in [0, 1] against sigmoid(logits), element-wise:
  (1 - x) l + log(1 + exp(-l)) for l >= 0 and -x l + log(1 + exp(l)) below, one exp and one
  log1p per element, with no cancellation for saturated logits (optax's form with two
  log-sigmoids is as accurate and costs about 7x more here, forward and backward)."""
  linear = jnp.where(logits >= 0, (1 - x) * logits, -x * logits)
  return linear + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def _check_reconstruction(kind: str = 'mse', reduction: str = 'mean') -> None:
  checks.choice(kind, RECONSTRUCTION_KINDS, 'reconstruction kind')
  checks.choice(reduction, REDUCTIONS, 'reconstruction reduction')


@term(check=_check_reconstruction)
def reconstruction(out: Outputs, kind: str = 'mse',
                   reduction: str = 'mean') -> jax.Array:
  """Reconstruction error of `out.recon` against `out.x`.

  kind: 'mse' squared error; 'bce' binary cross-entropy from aux['logits']
    (targets in [0, 1]; the Bernoulli negative log-likelihood); 'gaussian' the
    Gaussian negative log-likelihood 0.5 ((x - recon) / s)^2 + log s +
    0.5 log(2 pi) with s = exp(aux['log_sigma']) (1 when the model has none);
    'logistic' the discretized logistic NLL of 8-bit targets in [0, 1] with mean aux['logits']
    and log scale aux['log_scale'] (a VAE with likelihood 'logistic').
  reduction: 'mean' over every element (per pixel); 'sum' over each example's
    features, then mean over the batch (per example, as VAE papers report).
  """
  # Element-wise maths on [B, features]: XLA:CPU runs it on [B, H, W, 1] several times slower.
  flat = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731
  recon, x = flat(out.recon), flat(out.x)
  if recon.shape != x.shape:
    raise AelabError(f'the reconstruction term compares the model output with its input, but '
                     f'this model outputs {recon.shape[1]} values for {x.shape[1]} features (a '
                     'classifier? use the softmax_cross_entropy term)')
  if kind == 'mse':
    err = jnp.square(recon - x)
  elif kind == 'bce':
    if 'logits' not in out.aux:
      raise AelabError(
          "reconstruction kind='bce' needs the model's pre-activation output "
          "aux['logits']; this model's aux has "
          f'{", ".join(sorted(out.aux)) or "nothing"}')
    err = bce_from_logits(flat(out.aux['logits']), x)
  elif kind == 'logistic':
    if 'log_scale' not in out.aux:
      raise AelabError("reconstruction kind='logistic' needs the model's aux['log_scale'] and "
                       "aux['logits'] (a VAE with likelihood 'logistic')")
    err = -likelihoods.discretized_logistic(flat(out.aux['logits']), out.aux['log_scale'], x)
  elif kind == 'gaussian':
    log_sigma = out.aux.get('log_sigma', 0.0)
    err = (0.5 * jnp.square((recon - x) * jnp.exp(-log_sigma)) + log_sigma
           + 0.5 * jnp.log(2 * jnp.pi))
  else:
    raise AelabError(f'unknown reconstruction kind {kind!r}; valid kinds: '
                     f'{", ".join(RECONSTRUCTION_KINDS)}')
  if reduction == 'mean':
    return jnp.mean(err)
  if reduction == 'sum':
    return jnp.mean(_per_example_sum(err))
  raise AelabError(f'unknown reconstruction reduction {reduction!r}; valid '
                   f'reductions: {", ".join(REDUCTIONS)}')


def _check_layer(layer: Any = 'code', **_) -> None:
  normalize_layer(layer)


@term(check=_check_layer)
def l1_activity(out: Outputs, layer: Any = 'code') -> jax.Array:
  """Mean over the batch of sum_j |h_j| (Keras' l1 activity_regularizer)."""
  h = layer_activations(out.aux, layer)
  return jnp.mean(_per_example_sum(jnp.abs(h)))


def _check_kl(rho: float = 0.05, layer: Any = 'code') -> None:
  checks.number(rho, 'kl_sparsity rho', above=0.0, below=1.0, hint=' (a target mean activation)')
  normalize_layer(layer)


@term(check=_check_kl)
def kl_sparsity(out: Outputs, rho: float = 0.05,
                layer: Any = 'code') -> jax.Array:
  """sum_j KL(rho || rho_hat_j), rho_hat_j = batch mean of unit j (UFLDL).

  rho_hat is clipped to [1e-6, 1 - 1e-6]; the layer should be sigmoid.
  """
  h = layer_activations(out.aux, layer)
  rho_hat = jnp.clip(jnp.mean(h, axis=0), _KL_EPS, 1.0 - _KL_EPS)
  kl = (rho * jnp.log(rho / rho_hat)
        + (1.0 - rho) * jnp.log((1.0 - rho) / (1.0 - rho_hat)))
  return jnp.sum(kl)


def leaf_name(path: tuple) -> str | None:
  if not path:
    return None
  last = path[-1]
  for attr in ('key', 'name'):
    if hasattr(last, attr):
      return str(getattr(last, attr))
  return None


@term
def weight_decay(out: Outputs) -> jax.Array:
  """0.5 * sum of W**2 over every `kernel` leaf; biases excluded (UFLDL)."""
  leaves = jax.tree_util.tree_flatten_with_path(out.params)[0]
  total = jnp.zeros((), dtype=jnp.result_type(float))
  for path, leaf in leaves:
    if leaf_name(path) == 'kernel':
      total = total + jnp.sum(jnp.square(leaf))
  return 0.5 * total


@term
def vae_kl(out: Outputs) -> jax.Array:
  """Mean over the batch of KL(N(mean, exp(logvar)) || N(0, I)), in nats.

  = 0.5 * sum_j (exp(logvar_j) + mean_j^2 - 1 - logvar_j), from aux['mean'] and
  aux['logvar'] (a VAE). Its weight is beta (beta-VAE); warm it up with the
  term's `warmup_steps`.
  """
  if 'mean' not in out.aux or 'logvar' not in out.aux:
    raise AelabError(
        "vae_kl needs the posterior aux['mean'] and aux['logvar'] of a VAE "
        "(model 'vae'); this model's aux has "
        f'{", ".join(sorted(out.aux)) or "nothing"}')
  if 'log_prior' in out.aux:
    raise AelabError('vae_kl is the closed-form KL to the prior N(0, I), and this model has '
                     'another prior (a VampPrior, a hierarchical VAE): use kl_sample')
  mean, logvar = out.aux['mean'], out.aux['logvar']
  kl = 0.5 * (jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar)
  return jnp.mean(_per_example_sum(kl))


def _check_contractive(method: str = 'exact') -> None:
  checks.choice(method, CONTRACTIVE_METHODS, 'contractive method')


@term(check=_check_contractive)
def contractive(out: Outputs, method: str = 'exact') -> jax.Array:
  """Mean over the batch of ||J_f(x)||_F^2, f the encoder (x -> code), J at the model input.

  method 'exact': the full Jacobian of `out.encode` per example (jax.jacrev or
    jax.jacfwd, whichever needs fewer passes, under vmap); any encoder. Costs
    min(code width, input size) passes per example.
  method 'sigmoid_layer': the closed form for a one-layer sigmoid encoder
    h = sigmoid(x W + b): sum_j (h_j (1 - h_j))^2 sum_i W_ij^2, from aux['code']
    and the model's first kernel W (a dense model's `first_kernel`); one pass.
  """
  x = out.x if out.inputs is None else out.inputs
  if method == 'sigmoid_layer':
    kernel = _first_kernel(out)
    if kernel is None or len(out.aux.get('encoder', ())) != 1:
      raise AelabError(
          "contractive method='sigmoid_layer' is the closed form for a dense model with one "
          "sigmoid encoder layer; use method='exact' for other encoders")
    h = out.aux['code']
    gain = jnp.square(h * (1.0 - h))                   # [B, m]
    return jnp.mean(gain @ jnp.sum(jnp.square(kernel), axis=0))
  if method != 'exact':
    raise AelabError(f'unknown contractive method {method!r}; valid methods: '
                     f'{", ".join(CONTRACTIVE_METHODS)}')
  if out.encode is None:
    raise AelabError(
        'the contractive term needs the encoder as a function (Outputs.encode); '
        "the trainer's forward pass provides it")

  def f(xi):
    return out.encode(xi[None])[0].reshape(-1)

  code_width = math.prod(out.aux['code'].shape[1:])
  jac = jax.jacrev(f) if code_width <= math.prod(x.shape[1:]) else jax.jacfwd(f)
  return jnp.mean(_per_example_sum(jnp.square(jax.vmap(jac)(x))))


def _first_kernel(out: Outputs) -> jax.Array | None:
  """The model's first kernel through Outputs.weights; None for a model without one."""
  if out.weights is None:
    return None
  try:
    return out.weights('first_kernel')
  except AttributeError:
    return None


@term
def softmax_cross_entropy(out: Outputs) -> jax.Array:
  """Mean over the batch of -log softmax(aux['logits'])[y], y the batch's integer labels
  (`out.labels`); the classifier model's loss. optax.softmax_cross_entropy_with_integer_labels."""
  if out.labels is None:
    raise AelabError('softmax_cross_entropy needs labels, but this batch has none (the dataset '
                     'has no labels: use one that has, e.g. mnist, or csv with a label_column)')
  logits = out.aux.get('logits')
  batch = out.labels.shape[0]
  if logits is None or logits.ndim != 2 or logits.shape[0] != batch or logits.shape[1] < 2:
    shape = 'none' if logits is None else f'shape {tuple(logits.shape)}'
    raise AelabError("softmax_cross_entropy needs class logits aux['logits'] of shape [batch, "
                     f'classes] (model classifier); this model\'s are {shape} for a batch of '
                     f'{batch} labels')
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, out.labels))
