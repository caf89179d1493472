"""Sparse autoencoder (dictionary) on activation vectors, as in the current interpretability work:

    f = sparse(W_enc^T (x - b_dec) + b_enc)        x_hat = f W_dec + b_dec

W_enc [d, n], b_enc [n], W_dec [n, d] (row j: latent j's direction), b_dec [d]; `activation`:
- 'relu': ReLU, trained with an L1 term (`sae_l1`: each latent's |f_j| times its decoder row's
  norm, Anthropic's 2024 update; use normalize_decoder=False with it);
- 'topk': the k largest pre-activations of each example, ReLU'd (Gao et al. 2024);
- 'batchtopk': the k x B largest of the whole batch in training; at inference the threshold
  the training batches set (an exponential moving average in the state's stats; Bussmann et
  al. 2024); without stats (aelab.inspect), per-example top k;
- 'jumprelu': f = z * H(z - theta) with a trained per-latent threshold theta = exp(log_theta);
  the gradient reaches theta through a straight-through estimator with a rectangle kernel of
  width `bandwidth`; trained with the L0 term `sae_l0` (Rajamanoharan et al. 2024);
- 'gated': a gate decides which latents are on, a magnitude path (W_enc rescaled) how much:
  f = 1[pre + b_gate > 0] relu(pre exp(r_mag) + b_mag), pre = (x - b_dec) W_enc, no b_enc;
  trained with `gated_l1` and `gated_aux` (Rajamanoharan et al. 2024; aelab/models/sae_gated.py).
`k` is a float: topk needs a whole number; batchtopk's is a mean, so 2.5 is fine where
k x batch_size is whole (checked when the train step is traced); without stats, the per-example
fallback keeps the ceil(k) largest.
`matryoshka_widths` (cumulative prefix sizes, the last = latents, as SAELens's
matryoshka_widths; () off): each prefix of the latents alone reconstructs x, f[:, :m] W_dec[:m] +
b_dec, the nested dictionaries of Matryoshka SAEs (Bussmann et al. 2025, Nabeshima 2024), trained
with `matryoshka_mse` (aux['matryoshka']: those reconstructions, [levels, B, d]; x_hat is the
last).
With `normalize_decoder`, the decoder rows are W_dec / ||W_dec|| in the forward pass: always
unit norm, and the gradient reaching W_dec loses its component along each row (the Jacobian of
w / ||w|| projects it out), which is what Gao et al. do after each step. W_enc starts as the
decoder's transpose; b_dec at the training rows' mean or geometric median (`data_init`).

The state's stats (TrainState.stats) hold each latent's steps since it last fired and the
BatchTopK threshold; aux = {'code': f ('encoder': (f,), its one layer), 'pre': pre-activations
(gated: pi_mag), 'dictionary': the decoder used, 'gate' and 'gate_recon' (gated: relu(pi_gate) and
its reconstruction through the frozen decoder), 'matryoshka' (the prefixes' reconstructions),
'dead': latents silent for `dead_steps` steps, 'l0': per-example active count (the STE one for
JumpReLU), 'stats': their update when training}.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab.config import checks
from aelab.errors import AelabError
from aelab.models import base, sae_gated

OPTIONS = dict(                  # a sparse dictionary on activations
    latents=4096,                # dictionary width n
    activation='topk',           # relu (+ sae_l1), topk, batchtopk, jumprelu (+ sae_l0),
                                 # gated (+ gated_l1, gated_aux)
    k=32.0,                      # topk: active latents per example (whole); batchtopk: their mean
    matryoshka_widths=(),        # nested prefix sizes, the last = latents (+ matryoshka_mse)
    normalize_decoder=True,      # unit-norm decoder rows (gradient along them removed)
    b_dec_init='median',         # zeros, mean or median (geometric) of the training rows
    top_k='exact',               # exact (jax.lax.top_k) or approx (jax.lax.approx_max_k)
    jumprelu_threshold=0.001,    # jumprelu: the thresholds' initial value
    bandwidth=0.001,             # jumprelu: the straight-through estimator's kernel width
    dead_steps=1000,             # a latent silent this many train steps is dead (AuxK, stats)
    threshold_decay=0.99,        # batchtopk: moving average of the inference threshold
)
ACTIVATIONS = ('relu', 'topk', 'batchtopk', 'jumprelu', 'gated')
TOP_K = ('exact', 'approx')
B_DEC_INIT = ('zeros', 'mean', 'median')


def _rectangle(u):
  return (jnp.abs(u) < 0.5).astype(u.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(z, threshold, bandwidth):
  """z * H(z - threshold); d/dz = H(z - threshold), d/dthreshold = -(threshold / bandwidth)
  K((z - threshold) / bandwidth) (the straight-through estimator of the JumpReLU paper)."""
  return z * (z > threshold)


def _jumprelu_fwd(z, threshold, bandwidth):
  return jumprelu(z, threshold, bandwidth), (z, threshold)


def _jumprelu_bwd(bandwidth, res, g):
  z, threshold = res
  d_threshold = -(threshold / bandwidth) * _rectangle((z - threshold) / bandwidth) * g
  return g * (z > threshold), jnp.sum(d_threshold, axis=0)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def step_ste(z, threshold, bandwidth):
  """H(z - threshold) (an L0 count), its gradient reaching the threshold alone:
  d/dthreshold = -(1 / bandwidth) K((z - threshold) / bandwidth)."""
  return (z > threshold).astype(z.dtype)


def _step_fwd(z, threshold, bandwidth):
  return step_ste(z, threshold, bandwidth), (z, threshold)


def _step_bwd(bandwidth, res, g):
  z, threshold = res
  d_threshold = -(1.0 / bandwidth) * _rectangle((z - threshold) / bandwidth) * g
  return jnp.zeros_like(z), jnp.sum(d_threshold, axis=0)


step_ste.defvjp(_step_fwd, _step_bwd)


def _top_k(z: jax.Array, k: int, how: str) -> tuple[jax.Array, jax.Array]:
  if how == 'approx':
    return jax.lax.approx_max_k(z, k)
  return jax.lax.top_k(z, k)


def keep_top_k(z: jax.Array, k: int, how: str = 'exact') -> jax.Array:
  """z [B, n] with all but each row's k largest entries set to 0 (TopK, and AuxK's dead latents)."""
  values, index = _top_k(z, k, how)
  return jnp.zeros_like(z).at[jnp.arange(z.shape[0])[:, None], index].set(values)


class SparseAutoencoder(base.Model):
  latents: int
  activation: str
  k: float                       # an int where whole (topk's always is)
  matryoshka_widths: tuple[int, ...]
  normalize_decoder: bool
  top_k: str
  jumprelu_threshold: float
  bandwidth: float
  dead_steps: int
  threshold_decay: float
  b_dec_init: str

  def setup(self):
    n, d = self.latents, self.features

    def decoder_init(rng, shape):
      w = jax.random.normal(rng, shape)
      return w / jnp.linalg.norm(w, axis=1, keepdims=True)

    self.W_dec = self.param('W_dec', decoder_init, (n, d))
    self.W_enc = self.param('W_enc', lambda rng: jnp.asarray(self.W_dec).T)  # the transpose
    if self.activation == 'gated':
      self.b_gate, self.r_mag, self.b_mag = (
          self.param(name, nn.initializers.zeros, (n,)) for name in sae_gated.PARAMS)
    else:
      self.b_enc = self.param('b_enc', nn.initializers.zeros, (n,))
    self.b_dec = self.param('b_dec', nn.initializers.zeros, (d,))
    if self.activation == 'jumprelu':
      self.log_threshold = self.param(
          'log_threshold', nn.initializers.constant(math.log(self.jumprelu_threshold)), (n,))

  @nn.nowrap
  def initial_stats(self) -> dict:
    stats = {'since_fired': jnp.zeros((self.latents,), jnp.int32)}
    if self.activation == 'batchtopk':
      stats['threshold'] = jnp.zeros((), jnp.float32)
    return stats

  def decoder(self) -> jax.Array:
    w = self.W_dec
    return w / jnp.linalg.norm(w, axis=1, keepdims=True) if self.normalize_decoder else w

  def _pre(self, x: jax.Array) -> jax.Array:
    """(x - b_dec) @ W_enc + b_enc; gated: (x - b_dec) @ W_enc, what both its paths share."""
    pre = (x.reshape(x.shape[0], -1) - self.b_dec) @ self.W_enc
    return pre if self.activation == 'gated' else pre + self.b_enc

  @nn.nowrap
  def _batch_budget(self, rows: int) -> int:
    """k x rows, the latents BatchTopK keeps of a training batch: a one-line error unless whole."""
    count = self.k * rows
    if abs(count - round(count)) > 1e-9 * max(count, 1.0) or round(count) < 1:
      raise AelabError(f'model.k = {self.k} times the {rows} rows of a training batch is '
                       f'{count:g}, not a whole number of latents; BatchTopK keeps k x batch_size '
                       'of a batch: choose train.batch_size (or k) so that their product is an '
                       'integer')
    return int(round(count))

  def _sparse(self, pre: jax.Array, train: bool, stats) -> tuple[jax.Array, dict]:
    """(f, extra aux) for the configured activation."""
    if self.activation == 'relu':
      return nn.relu(pre), {}
    if self.activation == 'jumprelu':
      theta = jnp.exp(self.log_threshold)
      return jumprelu(pre, theta, self.bandwidth), {
          'l0': jnp.sum(step_ste(pre, theta, self.bandwidth), axis=-1)}
    if self.activation == 'gated':
      return sae_gated.encode(pre, self.b_gate, self.r_mag, self.b_mag)
    if self.activation == 'batchtopk' and (train or stats):
      positive = nn.relu(pre)
      if train:  # the k x B largest of the batch (ties at the threshold aside)
        chosen, _ = _top_k(positive.reshape(-1), self._batch_budget(pre.shape[0]), self.top_k)
        threshold = jnp.min(chosen)
        return jnp.where(positive >= threshold, positive, 0.0), {'threshold': threshold}
      return jnp.where(pre > stats['threshold'], positive, 0.0), {}
    return nn.relu(keep_top_k(pre, math.ceil(self.k), self.top_k)), {}

  def encode(self, x: jax.Array, stats=None) -> jax.Array:
    return self._sparse(self._pre(x), False, stats)[0]

  def decode(self, f: jax.Array, shape: Sequence[int] | None = None) -> jax.Array:
    return (f @ self.decoder() + self.b_dec).reshape((f.shape[0], *(shape or (self.features,))))

  def _prefixes(self, f: jax.Array, w_dec: jax.Array) -> jax.Array:
    """[levels, B, d]: f[:, :m] @ W_dec[:m] + b_dec for each m of matryoshka_widths (cumulative
    sums of the groups' parts); the last is the whole dictionary's reconstruction."""
    bounds = (0, *self.matryoshka_widths)
    parts = jnp.stack([f[:, a:b] @ w_dec[a:b] for a, b in zip(bounds, bounds[1:])])
    return jnp.cumsum(parts, axis=0) + self.b_dec

  def __call__(self, x: jax.Array, *, train: bool = False, stats=None):
    pre = self._pre(x)
    f, extra = self._sparse(pre, train, stats)
    w_dec = self.decoder()
    fired = f > 0
    aux = {'code': f, 'encoder': (f,), 'pre': extra.get('pre', pre), 'dictionary': w_dec,
           'l0': extra.get('l0', jnp.sum(fired, axis=-1).astype(jnp.float32))}
    if self.matryoshka_widths:
      aux['matryoshka'] = self._prefixes(f, w_dec)
      recon = aux['matryoshka'][-1].reshape(x.shape)
    else:
      recon = (f @ w_dec + self.b_dec).reshape(x.shape)
    if 'gate' in extra:
      aux['gate'] = extra['gate']
      aux['gate_recon'] = sae_gated.frozen_reconstruction(extra['gate'], w_dec, self.b_dec)
    if stats:
      aux['dead'] = stats['since_fired'] >= self.dead_steps
      if train:
        new = {'since_fired': jnp.where(jnp.any(fired, axis=0), 0, stats['since_fired'] + 1)}
        if 'threshold' in stats:
          t = jax.lax.stop_gradient(extra['threshold'])
          new['threshold'] = jnp.where(stats['threshold'] == 0, t, self.threshold_decay
                                       * stats['threshold'] + (1 - self.threshold_decay) * t)
        aux['stats'] = new
    return recon, aux

  def from_layer(self, f: jax.Array, layer: str):
    """(the reconstruction, {}) from the latents f (layer '1', the code)."""
    del layer  # an SAE has one layer, its latents
    return self.decode(f), {}

  # --- capabilities (see base.py) ----------------------------------------------------------------

  @nn.nowrap
  def layer_activations(self) -> dict[str, str]:
    return {'1': self.activation, 'code': self.activation}

  @nn.nowrap
  def dictionary(self) -> base.Dictionary:
    return base.Dictionary(self.latents, self.dead_steps)

  @nn.nowrap
  def directions(self, params) -> np.ndarray:
    """The latents' decoder directions [n, d], as the parameter holds them (not normalized)."""
    return np.asarray(params['W_dec'])

  @nn.nowrap
  def data_init(self, rows) -> dict:
    """b_dec at the (preprocessed) training rows' mean or geometric median (Weiszfeld's
    iterations), or nothing ('zeros'); rows() gives them."""
    if self.b_dec_init == 'zeros':
      return {}
    x = rows()
    rows = np.asarray(x, np.float64).reshape(len(x), -1)
    center = rows.mean(axis=0)
    if self.b_dec_init == 'median':
      for _ in range(100):
        w = 1.0 / np.maximum(np.linalg.norm(rows - center, axis=1), 1e-8)
        new = (w[:, None] * rows).sum(axis=0) / w.sum()
        done = np.linalg.norm(new - center) < 1e-6 * max(np.linalg.norm(center), 1e-12)
        center = new
        if done:
          break
    return {'b_dec': center.astype(np.float32)}

  @nn.nowrap
  def filters(self, params) -> np.ndarray | None:
    """The decoder rows as images (image data only)."""
    if len(self.input_shape) != 3:
      return None
    w = np.asarray(params['W_dec'])
    return w.reshape(w.shape[0], *self.input_shape)

  @nn.nowrap
  def export(self, params, stats) -> base.Export:
    """W_enc [d, n], b_enc [n] (gated: b_gate, r_mag, b_mag [n]), W_dec [n, d] as the forward pass
    uses it, b_dec [d]; JumpReLU's threshold = exp(log_threshold) [n]; BatchTopK's trained
    inference threshold (the stats); extras: activation, k, normalize_decoder, matryoshka_widths."""
    p, d, n = params, self.features, self.latents
    w_dec = self.apply({'params': p}, method=lambda m: m.decoder())  # as the forward pass uses it
    gated = self.activation == 'gated'
    arrays = {'W_enc': np.asarray(p['W_enc']),
              **(sae_gated.export_arrays(p) if gated else {'b_enc': np.asarray(p['b_enc'])}),
              'W_dec': np.asarray(w_dec, np.float32), 'b_dec': np.asarray(p['b_dec'])}
    if self.activation == 'jumprelu':
      arrays['threshold'] = np.exp(np.asarray(p['log_threshold'])).astype(np.float32)
    if self.activation == 'batchtopk' and 'threshold' in (stats or {}):
      arrays['batchtopk_threshold'] = np.asarray(stats['threshold'], np.float32)
    unit = ' (the parameter\'s rows divided by their norms)' if self.normalize_decoder else ''
    about = {
        'W_enc': f'W_enc, shape [{d}, {n}] = [input, latent]: column j holds latent j\'s encoder',
        'b_enc': f'b_enc, shape [{n}]: one value per latent, one per line', **sae_gated.about(n),
        'W_dec': f'W_dec, shape [{n}, {d}] = [latent, input]: row j is latent j\'s direction, '
                 f'as the forward pass uses it{unit}',
        'b_dec': f'b_dec, shape [{d}]: one value per input feature, one per line',
        'threshold': f'threshold = exp(log_threshold), shape [{n}]: JumpReLU keeps pre where '
                     'pre > threshold, one value per latent, one per line',
        'batchtopk_threshold': 'batchtopk_threshold, one value: BatchTopK keeps relu(pre) where '
                               'pre > it (the inference threshold set in training)'}
    extras = {'activation': np.asarray(self.activation), 'k': np.asarray(self.k),
              'normalize_decoder': np.asarray(bool(self.normalize_decoder))}
    if self.matryoshka_widths:
      extras['matryoshka_widths'] = np.asarray(self.matryoshka_widths, np.int64)
    encoder = (f'W_enc [{d}, {n}] = [input, latent], b_gate, r_mag, b_mag [{n}]' if gated else
               f'W_enc [{d}, {n}] = [input, latent], b_enc [{n}]')
    return base.Export(arrays, {k: (v,) for k, v in about.items() if k in arrays},
                       self._steps(arrays), extras,
                       f'{encoder}, W_dec [{n}, {d}] (row j: latent j\'s direction), b_dec [{d}]; '
                       'rows are row vectors')

  @nn.nowrap
  def _steps(self, arrays: dict) -> list[base.Step]:
    """pre, f (the code) and z_hat, one line each."""
    d, n = self.features, self.latents
    kept = f'k = {self.k}' if isinstance(self.k, int) else f'ceil(k) = {math.ceil(self.k)}'
    topk = (f'f = relu(pre) at the {kept} largest entries of each row of pre'
            f'{" (found by jax.lax.approx_max_k)" if self.top_k == "approx" else ""}, 0 elsewhere')
    act = {'relu': 'f = relu(pre)', 'topk': topk, 'gated': sae_gated.CODE,
           'jumprelu': 'f = pre * (pre > threshold), threshold = exp(log_threshold) per latent'}
    if self.activation == 'batchtopk':
      t = arrays.get('batchtopk_threshold')
      act['batchtopk'] = (
          topk + ' (BatchTopK without a trained threshold)' if t is None else
          f'f = relu(pre) where pre > batchtopk_threshold = {float(t):.9g} (the BatchTopK '
          'inference threshold set in training), 0 elsewhere')
    unit = (' (W_dec: the rows of the parameter W_dec divided by their norms, as the forward pass '
            'uses them)' if self.normalize_decoder else '')
    nested = (f'; each prefix m of matryoshka_widths = {tuple(self.matryoshka_widths)} alone '
              'reconstructs z as f[:, :m] @ W_dec[:m] + b_dec (the nested dictionaries training '
              'asked for)' if self.matryoshka_widths else '')
    pre = sae_gated.PRE if self.activation == 'gated' else 'pre = (z - b_dec) @ W_enc + b_enc'
    return [base.Step(f'{pre}   [{d} -> {n}]'),
            base.Step(f'{act[self.activation]}   [{n} latents, the code; latent j (from 0) is '
                      'f[:, j]]', ('1', 'code')),
            base.Step(f'z_hat = f @ W_dec + b_dec   [{n} -> {d}]{unit}{nested}')]


def _shown(v) -> str:
  """100000 rather than 100000.0."""
  return str(int(v)) if isinstance(v, float) and v.is_integer() else repr(v)


def _k(cfg: ml_collections.ConfigDict) -> int | float:
  """model.k as the module holds it: an int where whole (topk needs one), else a float (a mean,
  batchtopk's alone)."""
  k = cfg.k
  if isinstance(k, bool) or not isinstance(k, numbers.Real) or not math.isfinite(k) or k <= 0:
    raise AelabError(f'model.k = {_shown(k)}; it must be a number > 0 (active latents per example)')
  if cfg.activation in ('topk', 'batchtopk') and k > cfg.latents:
    raise AelabError(f'model.k = {_shown(k)} exceeds model.latents = {cfg.latents}')
  whole = float(k).is_integer()
  if cfg.activation == 'topk' and not whole:
    raise AelabError(f'model.k = {k!r}; topk keeps the k largest of each example, so k must be a '
                     'whole number (batchtopk takes a mean k such as 2.5)')
  return int(k) if whole else float(k)


def _widths(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  """model.matryoshka_widths: strictly increasing prefix sizes ending at model.latents, or ()."""
  w, n = checks.widths(cfg.matryoshka_widths, 'model.matryoshka_widths', 'prefix size'), cfg.latents
  if any(a >= b for a, b in zip(w, w[1:])):
    raise AelabError(f'model.matryoshka_widths = {w}; the prefix sizes must be strictly '
                     'increasing (cumulative: each prefix holds the ones before it), e.g. '
                     f'{(n // 4, n // 2, n)}')
  if w and w[-1] != n:
    raise AelabError(f'model.matryoshka_widths = {w}; the last prefix is the whole dictionary: it '
                     f'must be model.latents = {n}, e.g. {(*(m for m in w if m < n), n)}')
  return w


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> SparseAutoencoder:
  checks.choice(cfg.activation, ACTIVATIONS, 'model.activation of an sae')
  checks.choice(cfg.top_k, TOP_K, 'model.top_k')
  checks.choice(cfg.b_dec_init, B_DEC_INIT, 'model.b_dec_init')
  for key in ('latents', 'dead_steps'):
    checks.integer(cfg[key], f'model.{key}', low=1, high=checks.INT32_MAX)
  k, widths = _k(cfg), _widths(cfg)
  for key in ('jumprelu_threshold', 'bandwidth'):
    checks.number(cfg[key], f'model.{key}', above=0)
  checks.number(cfg.threshold_decay, 'model.threshold_decay', low=0, below=1)
  return SparseAutoencoder(
      input_shape=tuple(int(d) for d in feature_shape), latents=cfg.latents,
      activation=cfg.activation, k=k, matryoshka_widths=widths,
      normalize_decoder=cfg.normalize_decoder, top_k=cfg.top_k,
      jumprelu_threshold=cfg.jumprelu_threshold, bandwidth=cfg.bandwidth,
      dead_steps=cfg.dead_steps, threshold_decay=cfg.threshold_decay, b_dec_init=cfg.b_dec_init)
