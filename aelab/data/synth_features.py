"""`synth_sae`, `synth_sae_16k`: synthetic "residual stream" activations with known features, in
the manner of SynthSAEBench (Chanin & Garriga-Alonso 2026, arXiv:2602.14687), generated on the
devices inside the train step (a streamed source, data.Stream).

Each row is x = sum_i c_i f_i + b: n unit feature directions f_i in R^d (`truth`), sparse
non-negative codes c (`truth_codes`), a fixed bias b. The generator follows SynthSAEBench's
published description (docs/synth_sae_bench.md of SAELens) and the code of SAELens's
`sae_lens.synthetic` (SyntheticModel, read as a reference, not used):

  firing       feature i (0-based, rank r = i + 1) has the Zipf target probability
               p_i = p_min + (p_max - p_min) (r^-a - n^-a) / (1 - n^-a): p_0 = p_max, p_{n-1} =
               p_min (SAELens `zipfian_firing_probabilities`).
  hierarchy    a forest laid out breadth-first over the most frequent features (SAELens
               `generate_hierarchy`): roots are features 0 .. R-1, then the R*B children of the
               roots (B consecutive features per parent, parents in order), then theirs, down to
               `hierarchy_depth` levels below the roots: R (B^(D+1) - 1) / (B - 1) features; the
               rest have no parent. A child fires only where its parent does, and every parent's
               children are mutually exclusive (SAELens `mutually_exclusive_portion=1.0`): where
               several fire, one chosen uniformly at random is kept (SAELens: the argmax of a
               random score per active sibling; here the k-th active one, k uniform, one draw
               per group: the same law). With
               `scale_children_by_parent`, a child's magnitude is multiplied by its parent's
               (final) magnitude over the parent's mean magnitude.
  compensation with `compensate_probabilities`, a child is drawn with the raised probability
               min(1, p_c / p_P (1 + sum_{siblings j} p_j / p_P)), p_P its parent's target: the
               correction of SAELens's current code (sae_lens/synthetic/hierarchy/hierarchy.py;
               an older version solved for the exclusion's win probabilities exactly). It
               under-compensates (the siblings compete with their raised probabilities): children
               fire at ~0.35 of their p_i (0.32 .. 1.07), features without a parent at exactly
               p_i; expected_frequencies() gives each feature's rate.
  correlation  a Gaussian copula with a low-rank correlation matrix F F^T + diag(1 - |F_i|^2),
               F [n, rank] ~ N(0, scale^2) (rows scaled down together if some |F_i|^2 reaches 1):
               z = F g + sqrt(diag) e, g ~ N(0, I_rank), e ~ N(0, I_n); feature i is drawn where
               z_i > Phi^-1(1 - q_i), q_i its (compensated) probability, so its marginal is q_i.
  magnitudes   c_i = relu(mu_i + s_i eps), eps ~ N(0, 1), where drawn; mu_i linear from
               `magnitude_mean_frequent` (feature 0) to `magnitude_mean_rare` (feature n-1); the
               per-feature spread s_i ~ |N(magnitude_std_center, magnitude_std_spread^2)| (a folded
               normal). A magnitude cut to 0 by the relu leaves the feature silent.
  directions   random unit vectors, then `orthogonalize_steps` steps of Adam (lr
               `orthogonalize_lr`, betas 0.9/0.999, eps 1e-8) on
               sum_{i != j} (f_i.f_j)^2 + n sum_i (|f_i|^2 - 1)^2, renormalised.
  bias         a random direction of norm `bias_norm`.

SynthSAEBench-16k (`synth_sae_16k`): 16,384 features in 768 dims, Zipf 0.5 from 0.4 to 5e-4,
128 roots x branching 4 x depth 3 (10,880 features in the forest), correlation rank 25 scale 0.1,
magnitude means 5.0 -> 4.0 with spreads |N(0.5, 0.5^2)|, 100 orthogonalisation steps at lr 3e-4,
bias norm 0.5: expected mean L0 34.5 (the paper's "~34"; the older exact compensation would
give 35.0, none 13.5). `synth_sae` is its CPU-sized version:
4096 features in 256 dims with 32 roots (the same tree shape over the same two thirds of the
features, 2720 of 4096), expected mean L0 ~16. It keeps rank 25 and scale 0.1: the copula's
per-feature shared variance (rank * scale^2 = 0.25) and the spread of the pairwise latent
correlations (sqrt(rank) * scale^2 = 0.05) do not depend on n, so keeping them keeps each
feature's correlation statistics those of the 16k model (and 25 factors cost nothing).

Where aelab differs from SAELens: the generator is aelab's own JAX code (one jitted, vectorised
`sample`: dense [B, n] codes, no sparse tensors); random streams are numpy
`default_rng([seed, k])` for the structure (k = 1 directions, 2 bias, 3 magnitude spreads,
4 correlation factor) and jax.random for the rows, so the arrays and rows differ from SAELens's
for the same seed; the orthogonalisation runs in float64 numpy with the exact gradient (computed
as V (V^T V), never the [n, n] Gram matrix) instead of torch autograd in chunks; branching is a
fixed integer (no (min, max) ranges), every parent's children are exclusive (no portion or depth
range), the Zipf law is the only firing law and the magnitude laws are fixed to linear means and
folded-normal spreads. No SAELens data are downloaded: the 16k arrays are regenerated from the
seed, not the published HuggingFace model's.

Cost on a 2-core CPU: make() ~2.8 s for synth_sae (the orthogonalisation: 4 n d^2 flops a step
in float64), ~70 s for synth_sae_16k (~105 s on one core); jit(sample) at B = 1024 ~9,000 rows/s
for synth_sae and ~1,900 rows/s for synth_sae_16k (dense [B, n] random draws and the
[B, n] x [n, d] product; at 16k an accelerator's job).

Rows: the train split holds `train_preview` rows of the stream (for fitting the preprocessing
and initialising from data; no truth_codes, to save memory), val and test `val_rows` /
`test_rows` rows with their truth_codes. They are drawn in jitted chunks of `CHUNK` rows, chunk
i of a split with fold_in(fold_in(PRNGKey(seed), SPLIT_KEYS[split]), i): SPLIT_KEYS are
2**31 - 1, 2**31 - 2, 2**31 - 3 for train (preview), val, test, none equal to the train step
stream's fold_in(PRNGKey(seed), 0x57ea) (aelab/trainer/batches.py), whose steps fold in below it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aelab.data import options
from aelab.data.dataset import Dataset, Split, Stream
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {
    'synth_sae': {
        'num_features': 4096, 'dims': 256,
        'zipf_exponent': 0.5, 'max_probability': 0.4, 'min_probability': 0.0005,
        'hierarchy_roots': 32, 'hierarchy_branching': 4, 'hierarchy_depth': 3,
        'compensate_probabilities': True, 'scale_children_by_parent': True,
        'correlation_rank': 25, 'correlation_scale': 0.1,
        'magnitude_mean_frequent': 5.0, 'magnitude_mean_rare': 4.0,
        'magnitude_std_center': 0.5, 'magnitude_std_spread': 0.5,
        'orthogonalize_steps': 100, 'orthogonalize_lr': 0.0003, 'bias_norm': 0.5,
        'train_preview': 16384, 'val_rows': 4096, 'test_rows': 4096,
    },
    'synth_sae_16k': {
        'num_features': 16384, 'dims': 768,
        'zipf_exponent': 0.5, 'max_probability': 0.4, 'min_probability': 0.0005,
        'hierarchy_roots': 128, 'hierarchy_branching': 4, 'hierarchy_depth': 3,
        'compensate_probabilities': True, 'scale_children_by_parent': True,
        'correlation_rank': 25, 'correlation_scale': 0.1,
        'magnitude_mean_frequent': 5.0, 'magnitude_mean_rare': 4.0,
        'magnitude_std_center': 0.5, 'magnitude_std_spread': 0.5,
        'orthogonalize_steps': 100, 'orthogonalize_lr': 0.0003, 'bias_norm': 0.5,
        'train_preview': 8192, 'val_rows': 2048, 'test_rows': 2048,
    },
}

CHUNK = 1024                       # rows per jitted draw of the stored splits
SPLIT_KEYS = {'train': 2**31 - 1, 'val': 2**31 - 2, 'test': 2**31 - 3}
GENERATOR = ('SynthSAEBench-like (aelab.data.synth_features): structure from numpy '
             'default_rng([seed, 1..4]), rows from jax.random (split keys 2**31-1..3)')


# ----------------------------------------------------------------------------------------------
# The generator's arrays (numpy, deterministic in the seed)
# ----------------------------------------------------------------------------------------------

def make(fields: Mapping[str, Any], seed: int) -> dict[str, np.ndarray]:
  """The generator's arrays for validated `fields` (a SOURCES entry, see `check`):

    directions [n, d] f32     unit feature directions (the truth)
    bias [d] f32
    probability [n] f32       the Zipf target probabilities p_i
    draw_probability [n] f32  the probabilities features are drawn with (compensated)
    threshold [n] f32         Phi^-1(1 - draw_probability) (-inf where it is 1)
    correlation_factor [n, rank] f32, correlation_diag [n] f32
    magnitude_mean [n] f32, magnitude_std [n] f32
    parent [n] i32            each feature's parent, -1 for none
    children_L [G_L, B] i32   level L >= 1 of the forest: the children of its G_L parents
    parents_L [G_L] i32       those parents
    scale_children [] f32     1.0 with scale_children_by_parent, else 0.0
  """
  n, d = int(fields['num_features']), int(fields['dims'])
  probability = zipf_probabilities(n, fields['zipf_exponent'], fields['max_probability'],
                                   fields['min_probability'])
  levels = forest(int(fields['hierarchy_roots']), int(fields['hierarchy_branching']),
                  int(fields['hierarchy_depth']))
  draw = compensated(probability, levels) if fields['compensate_probabilities'] else probability
  factor, diag = correlation(n, int(fields['correlation_rank']),
                             float(fields['correlation_scale']), seed)
  std = np.abs(fields['magnitude_std_center'] + fields['magnitude_std_spread']
               * np.random.default_rng([int(seed), 3]).normal(size=n))
  mean = np.linspace(fields['magnitude_mean_frequent'], fields['magnitude_mean_rare'], n) \
      if n > 1 else np.full(1, float(fields['magnitude_mean_frequent']))
  bias = np.random.default_rng([int(seed), 2]).normal(size=d)
  bias = bias / max(np.linalg.norm(bias), 1e-12) * fields['bias_norm']
  directions = orthogonalize(random_directions(n, d, seed), int(fields['orthogonalize_steps']),
                             float(fields['orthogonalize_lr']))
  parent = np.full(n, -1, np.int32)
  arrays = {'directions': directions, 'bias': bias, 'probability': probability,
            'draw_probability': draw, 'threshold': thresholds(draw),
            'correlation_factor': factor, 'correlation_diag': diag,
            'magnitude_mean': mean, 'magnitude_std': std,
            'scale_children': np.float32(1.0 if fields['scale_children_by_parent'] else 0.0)}
  for level, (children, parents) in enumerate(levels, 1):
    parent[children] = parents[:, None]
    arrays[f'children_{level}'] = children.astype(np.int32)
    arrays[f'parents_{level}'] = parents.astype(np.int32)
  arrays['parent'] = parent
  return {k: np.asarray(v, np.int32 if np.asarray(v).dtype.kind == 'i' else np.float32)
          for k, v in arrays.items()}


def zipf_probabilities(n: int, exponent: float, high: float, low: float) -> np.ndarray:
  """p_r = low + (high - low) (r^-a - n^-a) / (1 - n^-a), r = 1 .. n (float64)."""
  if n == 1:
    return np.full(1, float(high))
  power = np.arange(1, n + 1, dtype=np.float64) ** -float(exponent)
  return low + (high - low) * (power - power[-1]) / (power[0] - power[-1])


def forest(roots: int, branching: int, depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """The breadth-first forest: per level L = 1 .. depth, (children [G, B], parents [G]) with
  G = roots * B^(L-1); roots are features 0 .. roots-1 and each level follows the one above."""
  if roots == 0 or depth == 0:
    return []
  levels, start, size = [], 0, roots
  for _ in range(depth):
    parents = start + np.arange(size)
    children = start + size + np.arange(size * branching).reshape(size, branching)
    levels.append((children, parents))
    start, size = start + size, size * branching
  return levels


def forest_size(roots: int, branching: int, depth: int) -> int:
  """The number of features in the forest: roots (1 + B + ... + B^depth)."""
  return roots * sum(branching ** level for level in range(depth + 1))


def compensated(probability: np.ndarray, levels) -> np.ndarray:
  """SAELens's hierarchy compensation: a child is drawn with min(1, p_c / p_P (1 + sum of its
  siblings' p / p_P)), p_P its parent's target, so that it fires about p_c of the time."""
  draw = probability.copy()
  for children, parents in levels:
    p_parent = probability[parents][:, None]
    p = probability[children]
    others = np.maximum(p.sum(1, keepdims=True) - p, 0.0)
    draw[children] = np.minimum(p / p_parent * (1.0 + others / p_parent), 1.0)
  return draw


def correlation(n: int, rank: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(F [n, rank], diag [n]) of the copula's correlation F F^T + diag(diag), unit diagonal; F
  is scaled down (all rows alike) so that max |F_i|^2 <= 0.99 where it would reach 1."""
  factor = np.random.default_rng([int(seed), 4]).normal(size=(n, rank)) * scale
  squares = (factor ** 2).sum(1)
  if rank and squares.max() >= 1.0:
    factor = factor * math.sqrt(0.99 / squares.max())
    squares = (factor ** 2).sum(1)
  return factor, 1.0 - squares


def thresholds(probability: np.ndarray) -> np.ndarray:
  """Phi^-1(1 - q) for each q (pure Python: the same bits on every machine); -inf for q >= 1."""
  inv = NormalDist().inv_cdf
  return np.array([-math.inf if q >= 1.0 else -inv(float(q)) for q in probability])


def random_directions(n: int, d: int, seed: int) -> np.ndarray:
  """n random unit vectors in R^d (float64), from default_rng([seed, 1])."""
  v = np.random.default_rng([int(seed), 1]).normal(size=(n, d))
  return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def orthogonalize(v: np.ndarray, steps: int, lr: float) -> np.ndarray:
  """`steps` Adam steps on sum_{i != j} (v_i.v_j)^2 + n sum_i (|v_i|^2 - 1)^2, then unit rows.

  The gradient 4 (V (V^T V) - diag(g) V + n diag(g - 1) V), g_i = |v_i|^2, costs 4 n d^2 flops
  and O(n d) memory. float64 throughout, so the same seed gives the same directions (to ~1e-12)
  whatever the BLAS.
  """
  v = np.array(v, np.float64)
  n = v.shape[0]
  m, s, grad, buf, copy = (np.zeros_like(v) for _ in range(5))  # buffers: no [n, d] allocations
  beta1, beta2, eps = 0.9, 0.999, 1e-8
  for t in range(1, steps + 1):
    g = np.einsum('ij,ij->i', v, v)[:, None]
    np.copyto(copy, v)                            # numpy's syrk for v.T @ v is 3-4x slower here
    np.matmul(v, 4.0 * (v.T @ copy), out=grad)
    np.multiply(v, 4.0 * (n * (g - 1.0) - g), out=buf)
    grad += buf
    m *= beta1
    np.multiply(grad, 1 - beta1, out=buf)
    m += buf
    s *= beta2
    np.multiply(grad, grad, out=buf)
    buf *= 1 - beta2
    s += buf
    np.sqrt(s, out=buf)                           # Adam: v -= lr m^ / (sqrt(s^) + eps)
    buf *= 1 / math.sqrt(1 - beta2 ** t)
    buf += eps
    np.divide(m, buf, out=buf)
    buf *= lr / (1 - beta1 ** t)
    v -= buf
  return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def expected_frequencies(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
  """Each feature's firing probability (float64 [n]) implied by the arrays, exact for
  correlation_scale = 0 (independent draws; a small correlation moves it slightly):
  e_i = q_i s_i for a feature without a parent (q_i its draw probability, s_i = P(mu_i + s_i eps
  > 0) the chance the relu keeps it) and e_c = e_P q_c s_c W_c for a child, W_c = E[1 / (1 + K)]
  with K the number of its siblings drawn (each j with q_j s_j, independently): the chance it
  wins the exclusion. The mean L0 is their sum."""
  q = np.asarray(arrays['draw_probability'], np.float64) * _kept(arrays)
  e = q.copy()
  level = 1
  while f'children_{level}' in arrays:
    children, parents = arrays[f'children_{level}'], arrays[f'parents_{level}']
    e[children] = e[parents][:, None] * q[children] * _win(q[children])
    level += 1
  return e


def _kept(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
  """P(mu + s eps > 0) per feature: Phi(mu / s), 1 where s = 0."""
  mean = np.asarray(arrays['magnitude_mean'], np.float64)
  std = np.asarray(arrays['magnitude_std'], np.float64)
  cdf = NormalDist().cdf
  return np.array([1.0 if s == 0 else cdf(m / s) for m, s in zip(mean, std)])


def _win(q: np.ndarray) -> np.ndarray:
  """[G, B] -> E[1 / (1 + K_i)], K_i ~ the number of the other B-1 siblings drawn (q each)."""
  groups, b = q.shape
  out = np.empty_like(q)
  for i in range(b):
    others = np.delete(q, i, axis=1)
    counts = np.zeros((groups, b))          # P(K = k), k = 0 .. b-1
    counts[:, 0] = 1.0
    for j in range(b - 1):
      shifted = np.zeros_like(counts)
      shifted[:, 1:] = counts[:, :-1] * others[:, j:j + 1]
      counts = counts * (1 - others[:, j:j + 1]) + shifted
    out[:, i] = (counts / np.arange(1, b + 1)).sum(1)
  return out


# ----------------------------------------------------------------------------------------------
# Rows (jax: pure, jittable with batch_size static)
# ----------------------------------------------------------------------------------------------

def sample(arrays: Mapping[str, jax.Array], key: jax.Array,
           batch_size: int) -> tuple[jax.Array, jax.Array]:
  """(x float32 [B, d], codes float32 [B, n]): B rows of the generator `arrays` (make's, as
  numpy or on the devices) from `key`. Pure and vectorised over the batch: the copula and the
  magnitudes for all n features at once, then the forest level by level (a static loop over
  its levels), so exclusivity is exact. make()'s breadth-first layout is read from the shapes
  of children_L (level L: the next G_L * B features, G_L groups of B consecutive children whose
  parents are level L-1's features in order), so each level is a slice, not a gather."""
  threshold = jnp.asarray(arrays['threshold'])
  factor = jnp.asarray(arrays['correlation_factor'])
  n, rank = factor.shape
  key_shared, key_own, key_magnitude, key_exclusion = jax.random.split(key, 4)
  z = jnp.sqrt(jnp.asarray(arrays['correlation_diag'])) * \
      jax.random.normal(key_own, (batch_size, n), jnp.float32)
  if rank:
    z = z + jax.random.normal(key_shared, (batch_size, rank), jnp.float32) @ factor.T
  mean = jnp.asarray(arrays['magnitude_mean'])
  magnitude = jax.nn.relu(mean + jnp.asarray(arrays['magnitude_std'])
                          * jax.random.normal(key_magnitude, (batch_size, n), jnp.float32))
  codes = jnp.where(z > threshold, magnitude, 0.0)
  if 'children_1' in arrays:
    codes = _forest(codes, arrays, mean, jnp.asarray(arrays['scale_children']), key_exclusion)
  x = codes @ jnp.asarray(arrays['directions']) + jnp.asarray(arrays['bias'])
  return x, codes


def _forest(codes: jax.Array, arrays: Mapping[str, jax.Array], mean: jax.Array,
            scale: jax.Array, key: jax.Array) -> jax.Array:
  """The codes with the forest's rules applied, level after level (roots first)."""
  rows = codes.shape[0]
  start = arrays['children_1'].shape[0]                  # the roots: features 0 .. R-1
  parent, parent_start, level = codes[:, :start], 0, 1
  while f'children_{level}' in arrays:
    groups, b = arrays[f'children_{level}'].shape
    child = codes[:, start:start + groups * b].reshape(rows, groups, b)
    child = _descend(child, parent, mean[parent_start:parent_start + groups], scale,
                     jax.random.fold_in(key, level)).reshape(rows, groups * b)
    codes = jax.lax.dynamic_update_slice_in_dim(codes, child, start, axis=1)
    parent, parent_start, start, level = child, start, start + groups * b, level + 1
  return codes


def _descend(child: jax.Array, parent: jax.Array, parent_mean: jax.Array, scale: jax.Array,
             key: jax.Array) -> jax.Array:
  """One level, child [B, G, b] under parent [B, G]: in each sibling group keep one active
  child, the k-th active one with k uniform in 0 .. count-1 (one uniform per group), then gate
  it by its parent (x the parent's magnitude over its mean magnitude where `scale`, else x 1
  where the parent fires)."""
  active = child > 0
  count = active.sum(-1, dtype=jnp.int32)                      # [B, G]
  pick = jnp.minimum(jnp.floor(jax.random.uniform(key, count.shape) * count).astype(jnp.int32),
                     jnp.maximum(count - 1, 0))                # which active child wins
  keep = active & (jnp.cumsum(active, axis=-1, dtype=jnp.int32) == pick[..., None] + 1)
  gate = jnp.where(scale > 0, parent / parent_mean, (parent > 0).astype(child.dtype))
  return jnp.where(keep, child * gate[..., None], 0.0)


def stream_sample(arrays: Mapping[str, jax.Array], key: jax.Array, batch_size: int) -> jax.Array:
  """The streamed training rows (data.Stream.sample): x of `sample`."""
  return sample(arrays, key, batch_size)[0]


@functools.partial(jax.jit, static_argnums=2)
def _chunk(arrays, key, rows: int):
  x, codes = sample(arrays, key, rows)
  return x, codes, (codes > 0).sum(dtype=jnp.int32)


def draw(arrays: Mapping[str, Any], key: jax.Array, rows: int,
         keep_codes: bool = True) -> tuple[np.ndarray, np.ndarray | None, float]:
  """(x [rows, d], codes [rows, n] or None, mean L0): `rows` rows in jitted chunks of CHUNK,
  chunk i from fold_in(key, i) (the last one cut short)."""
  xs, codes, active = [], [], 0
  for i in range(-(-rows // CHUNK)):
    x, c, count = _chunk(arrays, jax.random.fold_in(key, i), CHUNK)
    take = min(CHUNK, rows - i * CHUNK)
    xs.append(np.asarray(x[:take]))
    if keep_codes:
      codes.append(np.asarray(c[:take]))
    active += int(count) if take == CHUNK else int((np.asarray(c[:take]) > 0).sum())
  return (np.concatenate(xs), np.concatenate(codes) if keep_codes else None, active / rows)


# ----------------------------------------------------------------------------------------------
# The source
# ----------------------------------------------------------------------------------------------

def check(fields: Mapping[str, Any]) -> dict[str, Any]:
  """The fields, validated (one-line AelabErrors saying what to change) and typed."""
  out = dict(fields)
  for key in ('num_features', 'dims', 'train_preview', 'val_rows', 'test_rows'):
    out[key] = options.count(fields, key, minimum=1)
  for key in ('hierarchy_roots', 'hierarchy_depth', 'correlation_rank', 'orthogonalize_steps'):
    out[key] = options.count(fields, key)
  out['hierarchy_branching'] = options.count(fields, 'hierarchy_branching', minimum=2)
  for key in ('zipf_exponent', 'max_probability', 'min_probability', 'magnitude_mean_frequent',
              'magnitude_mean_rare', 'orthogonalize_lr'):
    out[key] = options.number(fields, key, positive=True)
  for key in ('correlation_scale', 'magnitude_std_center', 'magnitude_std_spread', 'bias_norm'):
    out[key] = options.number(fields, key)
    if out[key] < 0:
      raise AelabError(f'dataset.{key} = {out[key]}; it must be >= 0.')
  for key in ('compensate_probabilities', 'scale_children_by_parent'):
    if not isinstance(fields[key], bool):
      raise AelabError(f'dataset.{key} = {fields[key]!r}; set it to True or False.')
  if not out['min_probability'] < out['max_probability'] <= 1.0:
    raise AelabError(f'dataset.min_probability ({out["min_probability"]}) must be below '
                     f'dataset.max_probability ({out["max_probability"]}), which must be <= 1.')
  size = forest_size(out['hierarchy_roots'], out['hierarchy_branching'], out['hierarchy_depth'])
  if size > out['num_features']:
    raise AelabError(
        f'the hierarchy ({out["hierarchy_roots"]} roots, branching {out["hierarchy_branching"]}, '
        f'depth {out["hierarchy_depth"]}) has {size} features but dataset.num_features is '
        f'{out["num_features"]}; lower hierarchy_roots or hierarchy_depth, or raise num_features.')
  return out


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  """The source: the generator's arrays from `seed`, the stream, and the stored splits."""
  name, fields = options.resolve(cfg, SOURCES, 'synth_features.load')
  fields = check(fields)
  arrays = make(fields, seed)
  base = jax.random.PRNGKey(int(seed))
  keys = {split: jax.random.fold_in(base, value) for split, value in SPLIT_KEYS.items()}
  train_x, _, l0 = draw(arrays, keys['train'], fields['train_preview'], keep_codes=False)
  val_x, val_codes, _ = draw(arrays, keys['val'], fields['val_rows'])
  test_x, test_codes, _ = draw(arrays, keys['test'], fields['test_rows'])
  return Dataset(
      name=name, train=Split(train_x, None), val=Split(val_x, None, truth_codes=val_codes),
      test=Split(test_x, None, truth_codes=test_codes), feature_shape=(fields['dims'],),
      value_range=None, feature_names=None, num_classes=None, truth=arrays['directions'],
      stream=Stream(arrays, stream_sample),
      source={'name': name, 'seed': int(seed), 'generator': GENERATOR,
              'mean_l0_preview': float(l0),
              'expected_mean_l0': float(expected_frequencies(arrays).sum()), **fields})
