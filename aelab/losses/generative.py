"""Loss terms of the generative autoencoders: the importance-weighted bound (IWAE, with the DReG
gradient), a sampled KL for priors without a closed form (VampPrior, hierarchical), the MMD of
the codes to a prior (WAE), and the regularisers of the RAE (codes, decoder weights, decoder
gradient). Each is `fn(out, **options) -> scalar`, unweighted, to be minimised."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from aelab.config import checks
from aelab.errors import AelabError
from aelab.losses.terms import Outputs, leaf_name, term

ESTIMATORS = ('iwae', 'dreg')
KERNELS = ('imq', 'rbf')
# The kernel widths of Tolstikhin et al.'s WAE code: C = 2 d scale^2 times each of these.
MMD_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _require(out: Outputs, term_name: str, *methods: str) -> None:
  """A one-line error when the forward pass gave no model functions or the model lacks one."""
  if out.apply is None or out.rng is None:
    raise AelabError(f"the {term_name} term needs the model as a function of its parameters "
                     "(Outputs.apply, Outputs.rng); the trainer's forward pass provides them")
  missing = [m for m in methods if not out.apply.has(m)]
  if missing:
    raise AelabError(f'the {term_name} term needs a model with a likelihood ({", ".join(missing)}'
                     f': a VAE, VampPrior or hierarchical VAE); {out.apply.model_name} has none '
                     '(a deterministic autoencoder has no importance weights)')


def _check_iwae(samples: int = 5, estimator: str = 'iwae') -> None:
  checks.integer(samples, 'iwae samples', low=1, high=checks.INT32_MAX, hint=' (k, e.g. 5 or 50)')
  checks.choice(estimator, ESTIMATORS, 'iwae estimator')


@term(check=_check_iwae)
def iwae(out: Outputs, samples: int = 5, estimator: str = 'iwae') -> jax.Array:
  """-L_k, the negative importance-weighted bound (Burda et al. 2016) averaged over the batch:
  L_k = log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x); at k = 1 the ELBO of one draw.

  estimator 'iwae': the gradient of L_k itself; 'dreg': the doubly reparameterised gradient
  (Tucker et al. 2019): the same value, the encoder's gradient sum_i w~_i^2 d log w_i / dz_i
  dz_i / dphi (w~ the normalised weights) in place of the score-function part, which does not
  vanish as k grows. Needs the model's posterior_sample, log_joint and log_posterior.
  """
  _require(out, 'iwae', *(('log_weights',) if estimator == 'iwae' else
                          ('posterior_sample', 'log_joint', 'log_posterior')))
  if estimator == 'iwae':
    log_w = out.apply('log_weights', out.x, samples, rng=out.rng).T          # [k, B]
    return -jnp.mean(jax.nn.logsumexp(log_w, axis=0) - math.log(samples))
  zs = out.apply('posterior_sample', out.x, samples, rng=out.rng)
  log_w = out.apply('log_joint', out.x, zs) - out.apply('log_posterior', out.x, zs)
  fixed = jax.lax.stop_gradient(zs)
  score = out.apply('log_posterior', out.x, fixed)   # d/dphi at fixed z: the score part
  joint = out.apply('log_joint', out.x, fixed)       # the decoder's (and the prior's) at fixed z
  w = jax.lax.stop_gradient(jax.nn.softmax(log_w, axis=0))
  surrogate = jnp.sum(jnp.square(w) * (log_w + score) + (w - jnp.square(w)) * joint, axis=0)
  value = jax.nn.logsumexp(log_w, axis=0) - math.log(samples)
  return -jnp.mean(jax.lax.stop_gradient(value - surrogate) + surrogate)


@term
def kl_sample(out: Outputs) -> jax.Array:
  """Mean over the batch of log q(z | x) - log p(z) at the model's one draw z: the KL of a
  prior without a closed form (VampPrior, a hierarchical VAE), estimated from one sample, in
  nats; with reconstruction (bce, reduction 'sum') the negative ELBO. Warm it up with
  `warmup_steps` (KL annealing)."""
  if 'log_posterior' not in out.aux or 'log_prior' not in out.aux:
    raise AelabError("kl_sample needs the model's aux['log_posterior'] and aux['log_prior'] at "
                     "its draw (a VampPrior or hierarchical VAE); this model's aux has "
                     f'{", ".join(sorted(out.aux)) or "nothing"} (a VAE with prior N(0, I): '
                     'use vae_kl)')
  return jnp.mean(out.aux['log_posterior'] - out.aux['log_prior'])


def _check_mmd(kernel: str = 'imq', scale: float = 1.0) -> None:
  checks.choice(kernel, KERNELS, 'mmd kernel')
  checks.number(scale, 'mmd scale', above=0.0, hint=' (the prior N(0, scale^2 I)\'s std)')


def mmd_estimate(a: jax.Array, b: jax.Array, kernel: str, scale: float) -> jax.Array:
  """The unbiased MMD^2 estimate between rows a [n, d] and b [n, d] with the kernel summed over
  widths C = 2 d scale^2 s, s in MMD_SCALES: imq C / (C + |x - y|^2), rbf exp(-|x - y|^2 / C)."""
  n, d = a.shape
  both = jnp.concatenate([a, b])
  sq = jnp.sum(jnp.square(both), axis=1)
  dist = jnp.maximum(sq[:, None] + sq[None, :] - 2 * both @ both.T, 0.0)
  k = 0.0
  for s in MMD_SCALES:
    c = 2.0 * d * scale ** 2 * s
    k = k + (c / (c + dist) if kernel == 'imq' else jnp.exp(-dist / c))
  off = 1.0 - jnp.eye(n, dtype=a.dtype)
  within = (jnp.sum(k[:n, :n] * off) + jnp.sum(k[n:, n:] * off)) / (n * (n - 1))
  return within - 2.0 * jnp.mean(k[:n, n:])


@term(check=_check_mmd)
def mmd(out: Outputs, kernel: str = 'imq', scale: float = 1.0) -> jax.Array:
  """MMD^2 between the batch's codes and as many draws of the prior N(0, scale^2 I) (WAE-MMD,
  Tolstikhin et al. 2018: the inverse multiquadratic kernel, summed over their widths), the
  unbiased estimate (it can dip below 0). Needs a batch of 2 or more."""
  code = out.aux['code'].reshape(out.aux['code'].shape[0], -1)
  if out.rng is None:
    raise AelabError("the mmd term draws from the prior: it needs Outputs.rng (the trainer's "
                     'forward pass provides it)')
  if code.shape[0] < 2:
    raise AelabError(f'the mmd term needs a batch of 2 or more codes; got {code.shape[0]}')
  prior = scale * jax.random.normal(out.rng, code.shape, code.dtype)
  return mmd_estimate(code, prior, kernel, scale)


@term
def code_l2(out: Outputs) -> jax.Array:
  """Mean over the batch of 0.5 |z|^2 of the code (the RAE's code regulariser, Ghosh et al.)."""
  code = out.aux['code']
  return jnp.mean(0.5 * jnp.sum(jnp.square(code.reshape(code.shape[0], -1)), axis=1))


@term
def decoder_weight_decay(out: Outputs) -> jax.Array:
  """0.5 * sum of W**2 over the decoder's kernels (the model's 'decoder' parameter group; RAE-L2's
  decoder regulariser)."""
  if out.weights is None:
    raise AelabError('decoder_weight_decay needs the model\'s parameter groups (Outputs.weights); '
                     "the trainer's forward pass provides them")
  decoder = out.weights('decoder_params')
  if not decoder:
    raise AelabError('decoder_weight_decay: this model has no decoder parameters')
  leaves = jax.tree_util.tree_flatten_with_path(decoder)[0]
  return 0.5 * sum(jnp.sum(jnp.square(leaf)) for path, leaf in leaves
                   if leaf_name(path) == 'kernel')


@term
def decoder_gradient(out: Outputs) -> jax.Array:
  """Mean over the batch of |grad_z sum_j D(z)_j|^2 at the code z (RAE-GP's gradient penalty, as
  Ghosh et al.'s code and pythae compute it: the gradient of the summed decoder output)."""
  if out.apply is None:
    raise AelabError("the decoder_gradient term needs the decoder as a function (Outputs.apply); "
                     "the trainer's forward pass provides it")
  grad = jax.grad(lambda z: jnp.sum(out.apply('decode', z)))(out.aux['code'])
  return jnp.mean(jnp.sum(jnp.square(grad.reshape(grad.shape[0], -1)), axis=1))
