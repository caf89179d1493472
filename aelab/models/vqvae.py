"""Vector-quantised autoencoder (VQ-VAE; van den Oord, Vinyals & Kavukcuoglu 2017): an encoder
gives `P` vectors z_e of width D per example, each is replaced by its nearest row of a codebook
[K, D] (squared distance) -> z_q, and the decoder maps z_q back to the input.

  body='conv':  the ConvEncoder of aelab/models/conv.py, then a 1x1 convolution to D channels:
                one vector per position of the last feature map (P = h * w, row-major); the
                ConvDecoder maps the flattened z_q back (its first layer is dense).
  body='dense': hidden_1 .. hidden_K (activation), then a linear layer to P * D = `positions`
                vectors; the decoder mirrors the encoder.

The gradient passes the quantisation by the straight-through estimator: the decoder sees
sg(z_q) + (z_e - sg(z_e)), whose value is z_q exactly and whose gradient reaches z_e unchanged
(the paper's z_e + sg(z_q - z_e)). The output is sigmoid(logits) for likelihood 'bernoulli'
(data in [0, 1]; reconstruction kind 'bce') and the linear output for 'gaussian' (kind 'mse' or
'gaussian' with unit std). The loss is `reconstruction` + `vq_commitment` (weight beta, 0.25 in
the paper) [+ `vq_codebook` when ema=False] (aelab/losses/vq_terms.py).

The codebook is always the parameter params['codebook'] [K, D], so encode / decode / export need
the parameters alone. With ema=True it gets no gradient: each train step sets it (aux['assign'],
which the train step puts in place of the optimizer's value) from exponential moving averages
kept in the state's stats (the paper's appendix; Sonnet's VectorQuantizerEMA, no debiasing):

    N <- decay N + (1 - decay) n          m <- decay m + (1 - decay) s
    N_s = (N + epsilon) / (sum N + K epsilon) * sum N      codebook = m / N_s[:, None]

n [K]: the batch's assignments to each code, s [K, D]: the sum of the z_e assigned to it. A code
never assigned yet (N = 0) keeps its initial row. With restart_steps > 0 (EMA only), a code
assigned no vector for that many train steps is restarted at a random z_e of the batch:
codebook row = m = that z_e, N = 1, its counter 0 (randomness: the 'noise' rng).
stats = {'since_used' [K] int32, 'cluster_size' N [K], 'sums' m [K, D] (EMA only)}.

aux: 'code' (z_q flattened [B, P*D]; `encode` returns it, `decode` maps it back), 'encoder'
(hidden activations), 'decoder', 'z_e' and 'z_q' [B, P, D], 'indices' [B, P], 'logits',
'perplexity' (exp of the entropy of the batch's code usage), 'usage' (fraction of codes the batch
uses) and, when training, 'stats' and (EMA) 'assign'. `fit_prior` fits an independent
categorical distribution per position over the code indices (not the paper's PixelCNN prior).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab.config import checks
from aelab.errors import AelabError
from aelab.models import activations, base, conv, dense

OPTIONS = dict(
    body='conv',             # 'conv' (a grid of vectors) or 'dense' (`positions` vectors)
    hidden=(256,),           # dense body: encoder widths; the decoder mirrors them
    channels=(32, 64),       # conv body: encoder conv widths (stride 2 each)
    kernel_size=3,           # conv body
    activation='relu',
    positions=16,            # dense body: vectors per example (conv: the last map's h * w)
    embedding_dim=16,        # D, the width of each vector and codebook row
    codes=512,               # K, the codebook's rows
    likelihood='bernoulli',  # 'bernoulli' (sigmoid output; data in [0, 1]) or 'gaussian' (linear)
    ema=True,                # codebook by moving averages (else by the vq_codebook loss term)
    decay=0.99,              # ema: the moving averages' decay
    epsilon=1e-5,            # ema: Laplace smoothing of the cluster sizes
    restart_steps=100,       # ema: restart a code unused this many train steps; 0 = never
)
BODIES = ('dense', 'conv')
LIKELIHOODS = ('bernoulli', 'gaussian')


class VQVAE(base.Model):
  body: str
  hidden: tuple[int, ...]
  channels: tuple[int, ...]
  kernel_size: int
  activation: str
  positions: int
  embedding_dim: int
  codes: int
  likelihood: str
  ema: bool
  decay: float
  epsilon: float
  restart_steps: int

  def setup(self):
    d = self.embedding_dim
    if self.body == 'dense':
      self.encoder_layers = [nn.Dense(h, name=f'encoder_{i + 1}')
                             for i, h in enumerate(self.hidden)]
      self.encoder_out = nn.Dense(self.positions * d, name='encoder_out')
      self.decoder_layers = [nn.Dense(h, name=f'decoder_{i + 1}')
                             for i, h in enumerate(reversed(self.hidden))]
      self.output_layer = nn.Dense(self.features, name='decoder_out')
    else:
      self.conv_encoder = conv.ConvEncoder(self.channels, self.kernel_size, self.activation)
      self.encoder_out = nn.Conv(d, (1, 1), name='encoder_out')
      self.conv_decoder = conv.ConvDecoder(self.channels, self.kernel_size, self.activation,
                                           shape=self.input_shape)
    init = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform', in_axis=-1, out_axis=-2)
    self.codebook = self.param('codebook', init, (self.codes, d))

  @nn.nowrap
  def grid(self) -> int:
    """P, the number of vectors (positions) per example."""
    if self.body == 'dense':
      return self.positions
    depth = len(self.channels)
    h, w = (conv.spatial_sizes(s, depth)[-1] for s in self.input_shape[:2])
    return h * w

  # --- building blocks --------------------------------------------------------------------------

  def _encode_e(self, x: jax.Array):
    """x [B, *shape] -> (hidden activations, z_e [B, P, D])."""
    if self.body == 'dense':
      h, hs = activations.through(self.encoder_layers, self.activation, x.reshape(x.shape[0], -1))
    else:
      hs, _ = self.conv_encoder(x.reshape(x.shape[0], *self.input_shape))
      h = hs[-1]
    return hs, self.encoder_out(h).reshape(x.shape[0], self.grid(), self.embedding_dim)

  def _book(self) -> jax.Array:
    return jax.lax.stop_gradient(self.codebook) if self.ema else self.codebook

  def _quantize(self, z_e: jax.Array):
    """z_e [..., D] -> (indices [...] of the nearest codebook rows, z_q [..., D])."""
    book = self._book()
    score = jnp.sum(jnp.square(book), axis=-1) - 2.0 * z_e @ book.T   # ||z - c||^2 - ||z||^2
    index = jnp.argmin(score, axis=-1)
    return index, book[index]

  def _decode_logits(self, code: jax.Array):
    """code [N, P*D] -> (hidden activations, logits [N, *shape])."""
    if self.body == 'dense':
      h, hs = activations.through(self.decoder_layers, self.activation, code)
      logits = self.output_layer(h)
    else:
      hs, logits = self.conv_decoder(code)
    return hs, logits.reshape(code.shape[0], *self.input_shape)

  def _mean_output(self, logits: jax.Array) -> jax.Array:
    flat = logits.reshape(logits.shape[0], -1)  # element-wise ops on flat rows (see dense.py)
    out = jax.nn.sigmoid(flat) if self.likelihood == 'bernoulli' else flat
    return out.reshape(logits.shape)

  # --- the model contract -----------------------------------------------------------------------

  def encode(self, x: jax.Array) -> jax.Array:
    """The quantised code z_q, flattened [B, P*D]."""
    _, z_q = self._quantize(self._encode_e(x)[1])
    return z_q.reshape(x.shape[0], -1)

  def code_indices(self, x: jax.Array) -> jax.Array:
    """The codebook row of each position [B, P]."""
    return self._quantize(self._encode_e(x)[1])[0]

  def decode(self, code: jax.Array) -> jax.Array:
    """The decoder's mean of codes [N, P*D], shaped [N, *shape]."""
    return self._mean_output(self._decode_logits(code)[1])

  def __call__(self, x: jax.Array, *, train: bool = False, stats=None):
    hs, z_e = self._encode_e(x)
    index, z_q = self._quantize(z_e)
    sg = jax.lax.stop_gradient
    z_st = sg(z_q) + (z_e - sg(z_e))   # = z_q; d/dz_e = identity (straight-through)
    dec, logits = self._decode_logits(z_st.reshape(x.shape[0], -1))
    onehot = jax.nn.one_hot(index.reshape(-1), self.codes, dtype=jnp.float32)
    counts = jnp.sum(onehot, axis=0)
    entropy = jnp.sum(jax.scipy.special.entr(counts / jnp.sum(counts)))   # -sum p log p
    aux = {'code': z_q.reshape(x.shape[0], -1), 'encoder': hs, 'decoder': dec, 'z_e': z_e,
           'z_q': z_q, 'indices': index, 'logits': logits.reshape(x.shape),
           'perplexity': jnp.exp(entropy), 'usage': jnp.mean(counts > 0)}
    if train and stats:
      z = sg(z_e).reshape(-1, self.embedding_dim).astype(jnp.float32)
      aux['stats'], book = self._update(stats, z, onehot, counts)
      if self.ema:
        aux['assign'] = {'codebook': book}
    return self._mean_output(logits).reshape(x.shape), aux

  def _update(self, stats, z: jax.Array, onehot: jax.Array, counts: jax.Array):
    """(new stats, new codebook or None without EMA) after a train batch: z [B*P, D] its
    vectors, onehot [B*P, K] their codes, counts [K]."""
    since = jnp.where(counts > 0, 0, stats['since_used'] + 1)
    if not self.ema:
      return {'since_used': since}, None
    book = jax.lax.stop_gradient(self.codebook).astype(jnp.float32)
    decay, k = self.decay, self.codes
    size = decay * stats['cluster_size'] + (1 - decay) * counts
    sums = decay * stats['sums'] + (1 - decay) * jnp.dot(onehot.T, z,
                                                         precision=jax.lax.Precision.HIGHEST)
    total = jnp.sum(size)
    smoothed = (size + self.epsilon) / (total + k * self.epsilon) * total
    book = jnp.where(size[:, None] > 0, sums / smoothed[:, None], book)
    if self.restart_steps:
      dead = since >= self.restart_steps
      pick = z[jax.random.randint(self.make_rng('noise'), (k,), 0, z.shape[0])]
      book, sums = (jnp.where(dead[:, None], pick, a) for a in (book, sums))
      size, since = jnp.where(dead, 1.0, size), jnp.where(dead, 0, since)
    return {'since_used': since, 'cluster_size': size, 'sums': sums}, book

  def from_layer(self, h: jax.Array, layer: str):
    """(the decoder's mean, {'logits'}) from the code h (layer 'code': z_q flattened)."""
    if layer != 'code':
      raise AelabError(f"a VQ-VAE continues its forward pass from its code only (layer 'code'); "
                       f'got layer {layer!r}')
    _, logits = self._decode_logits(h)
    return self._mean_output(logits), {'logits': logits}

  # --- capabilities (see base.py) ----------------------------------------------------------------

  @nn.nowrap
  def codebook_size(self) -> int:
    """K, the number of codes (the codebook evaluator asks for it)."""
    return self.codes

  @nn.nowrap
  def initial_stats(self) -> dict:
    stats = {'since_used': jnp.zeros((self.codes,), jnp.int32)}
    if self.ema:
      stats.update(cluster_size=jnp.zeros((self.codes,), jnp.float32),
                   sums=jnp.zeros((self.codes, self.embedding_dim), jnp.float32))
    return stats

  @nn.nowrap
  def layer_activations(self) -> dict[str, str]:
    depth = len(self.hidden) if self.body == 'dense' else len(self.channels)
    return {**{str(i + 1): self.activation for i in range(depth)}, 'code': 'linear'}

  @nn.nowrap
  def filters(self, params) -> np.ndarray | None:
    """The first encoder layer's weights as images [n, h, w, c]."""
    if self.body == 'dense':
      return dense.kernel_images(params['encoder_1']['kernel'], self.input_shape)
    return conv.conv_filters(params['conv_encoder']['conv_1']['kernel'])

  @nn.nowrap
  def fit_prior(self, params, codes: np.ndarray, seed: int) -> 'CategoricalPrior':
    """An independent categorical distribution per position over the code indices of `codes`
    (the training split's), Laplace-smoothed; not the paper's autoregressive PixelCNN."""
    del seed  # counting draws nothing
    return CategoricalPrior.fit(np.asarray(params['codebook']), codes, self.grid())

  @nn.nowrap
  def export(self, params, stats) -> base.Export:
    del stats  # the codebook the forward pass uses is the parameter
    p = jax.tree.map(np.asarray, params)
    out = self._conv_export(p) if self.body == 'conv' else self._dense_export(p)
    k, d = p['codebook'].shape
    out.about['codebook'] = (f'codebook, shape [{k}, {d}] = [code, dim]: row j is code j\'s '
                             f'vector',)
    return out

  @nn.nowrap
  def _quantize_steps(self, z_e: str) -> list[str]:
    k, d, pp = self.codes, self.embedding_dim, self.grid()
    return [f'index[p] = argmin_j ||{z_e}[p] - codebook[j]||^2 for each of the {pp} vectors '
            f'{z_e}[p] ({d} wide; the first index j on a tie), j = 0..{k - 1}',
            f'z_q = flatten(codebook[index])   [{pp} x {d} = {pp * d} values: the code]']

  @nn.nowrap
  def _output_words(self) -> str:
    return 'sigmoid(logits)' if self.likelihood == 'bernoulli' else 'logits (linear)'

  @nn.nowrap
  def _conv_export(self, p) -> base.Export:
    depth = len(self.channels)
    z_e = (f'z_e = conv2d(m{depth}, encoder_out/kernel, 1x1) + encoder_out/bias, its '
           f'[h, w, {self.embedding_dim}] map read as {self.grid()} vectors in row-major (h, w) '
           'order')
    index, code = self._quantize_steps('z_e')
    out = conv.conv_export(p, self.channels, self.activation, 'conv_encoder', 'conv_decoder',
                           [z_e, index, code], [f'x_hat = {self._output_words()} of the last '
                                                'transposed convolution, from z_q'])
    # conv_export marks each middle line as computing the code; here the last one does.
    steps = [s._replace(layers=()) if s.line in (z_e, index) else s for s in out.steps]
    return out._replace(steps=steps)

  @nn.nowrap
  def _dense_export(self, p) -> base.Export:
    k = len(self.hidden)

    def layer(name, act):
      return base.Layer(name, p[name]['kernel'], p[name]['bias'], act)

    enc = base.dense_export(
        [layer(f'encoder_{i + 1}', self.activation) for i in range(k)]
        + [layer('encoder_out', 'linear')], [f'h{i + 1}' for i in range(k)] + ['z_e'],
        codes={i: (str(i + 1),) for i in range(k)},
        roles={k: f' (reshaped to {self.grid()} vectors of {self.embedding_dim})'})
    out_act = 'sigmoid' if self.likelihood == 'bernoulli' else 'linear'
    dec = base.dense_export(
        [layer(f'decoder_{i + 1}', self.activation) for i in range(k)]
        + [layer('decoder_out', out_act)], [f'd{i + 1}' for i in range(k)] + ['z_hat'], {}, {},
        start='z_q')
    index, code = self._quantize_steps('z_e')
    steps = enc.steps + [base.Step(index), base.Step(code, ('code',))] + dec.steps
    extras = {key: np.concatenate([enc.extras[key], dec.extras[key]]) for key in enc.extras}
    return base.Export({**enc.arrays, **dec.arrays, 'codebook': p['codebook']},
                       {**enc.about, **dec.about}, steps, extras, enc.orientation)


def nearest(codebook: np.ndarray, codes: np.ndarray) -> np.ndarray:
  """The nearest codebook row [K, D] of each D-wide chunk of codes [N, P*D] -> indices [N, P]."""
  book = np.asarray(codebook, np.float64)
  z = np.asarray(codes, np.float64).reshape(len(codes), -1, book.shape[1])
  return np.argmin(np.sum(np.square(book), axis=-1) - 2.0 * z @ book.T, axis=-1)


class CategoricalPrior:
  """p(index) = prod_p Categorical(index[p]; probs[p]): one distribution per position, fitted by
  counting with add-one (Laplace) smoothing; a code is the concatenation of its codebook rows."""

  def __init__(self, codebook: np.ndarray, probs: np.ndarray):
    self.codebook = np.asarray(codebook, np.float32)   # [K, D]
    self.probs = probs                                  # [P, K], each row sums to 1

  @classmethod
  def fit(cls, codebook: np.ndarray, codes: np.ndarray, positions: int) -> 'CategoricalPrior':
    k = len(codebook)
    index = nearest(codebook, codes).reshape(len(codes), positions)
    counts = np.stack([np.bincount(index[:, j], minlength=k) for j in range(positions)])
    return cls(codebook, (counts + 1.0) / (len(index) + k))

  def sample(self, rng, n: int) -> np.ndarray:
    """n codes [n, P*D] float32 (codebook rows); rng a numpy Generator or an int seed."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    cdf = np.cumsum(self.probs, axis=-1)
    u = rng.random((n, len(self.probs), 1))
    index = np.minimum(np.sum(u >= cdf, axis=-1), self.probs.shape[1] - 1)  # inverse CDF
    return self.codebook[index].reshape(n, -1)

  def log_density(self, codes: np.ndarray) -> np.ndarray:
    """log p of each code's indices [N] (a probability mass: the codes are discrete)."""
    index = nearest(self.codebook, codes)
    return np.sum(np.log(self.probs)[np.arange(self.probs.shape[0]), index], axis=-1)


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> VQVAE:
  checks.choice(cfg.body, BODIES, 'model.body')
  checks.choice(cfg.likelihood, LIKELIHOODS, 'model.likelihood')
  activations.get(cfg.activation)
  for key in ('positions', 'embedding_dim', 'codes'):
    checks.integer(cfg[key], f'model.{key}', low=1, high=checks.INT32_MAX)
  checks.integer(cfg.restart_steps, 'model.restart_steps', low=0, high=checks.INT32_MAX,
                 hint=' (0: never restart)')
  checks.number(cfg.decay, 'model.decay', low=0, below=1)
  checks.number(cfg.epsilon, 'model.epsilon', above=0)
  if not isinstance(cfg.ema, bool):
    raise AelabError(f'model.ema = {cfg.ema!r}; it must be True (a moving-average codebook) or '
                     'False (a codebook trained by the vq_codebook loss term)')
  if not cfg.ema and cfg.restart_steps:
    raise AelabError(f'model.restart_steps = {cfg.restart_steps} restarts codes of the moving-'
                     'average codebook only; with model.ema = False set restart_steps = 0')
  shape = tuple(int(s) for s in feature_shape)
  hidden, channels = conv.check_body(cfg, feature_shape, 'vqvae', '(256,)')
  return VQVAE(input_shape=shape, body=cfg.body, hidden=hidden, channels=channels,
               kernel_size=int(cfg.kernel_size), activation=cfg.activation,
               positions=int(cfg.positions), embedding_dim=int(cfg.embedding_dim),
               codes=int(cfg.codes), likelihood=cfg.likelihood, ema=cfg.ema,
               decay=float(cfg.decay), epsilon=float(cfg.epsilon),
               restart_steps=int(cfg.restart_steps))
