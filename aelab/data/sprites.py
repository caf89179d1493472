"""`sprites`, `sprites32`: binary images of a sprite with known factors of variation, on the
factor grid of dSprites (Matthey et al. 2017), rendered by aelab's own code from the factor
indices, on the devices (inside the jitted train step for the streamed training rows). The
images follow dSprites' factor grid but are not DeepMind's file: nothing is downloaded, the
shapes are aelab's signed-distance definitions below, and no image is stored.

The grid (737,280 = 3 x 6 x 40 x 32 x 32 combinations; `factor_values`, `grid_counts`):

  0 shape        3   square, ellipse, heart
  1 scale        6   linspace(0.5, 1, 6)
  2 orientation  40  2 pi k / 40, k = 0 .. 39 (9 degrees apart; index 10 is 90 degrees).
                     dSprites' values are linspace(0, 2 pi, 40), whose first and last are the
                     same angle; here all 40 are distinct, so the grid has no duplicate images.
  3 x            32  linspace(0, 1, 32), left to right
  4 y            32  linspace(0, 1, 32), top to bottom (the row direction)

A row's factors are these INDICES (int32 [B, 5] in jax, in that order). In the stored splits
they are `Split.truth_codes`, as float32 [N, 5] (for sprites, truth_codes are the factor
indices, not feature activations; `Dataset.truth` is None).

Rendering (`levels`, `render`): `size` x `size` pixels, the image [0, 1]^2 with pixel (i, j)'s
centre at ((j + 1/2) / size, (i + 1/2) / size) (x right, y down). A sprite of scale s at
orientation t centred at c: each pixel centre u is taken into the sprite's frame,
p = R(-t) (u - c) / (s * RADIUS) with the frame's y axis pointing up (so t turns the sprite
counterclockwise as displayed), and the pixel is 1 where the shape's level function of p is
<= 0, else 0. In the frame every shape lies in the unit disc (its circumradius is 1), so at
scale s it lies within s * RADIUS of its centre, whatever the orientation:

  square   the box of half-side 1/sqrt(2) (its exact SDF): side 0.283 of the image at scale 1.
  ellipse  semi-axes 1 (along the frame's x: horizontal at orientation 0) and 0.5:
           (|(x, y / 0.5)| - 1) * 0.5, a level function with the ellipse's exact sign (not its
           exact distance): 0.4 x 0.2 of the image at scale 1.
  heart    Inigo Quilez's heart SDF (sdHeart: the wedge |x| < y, |x| + y <= 1 joined to the two
           discs of radius sqrt(2)/4 at (+-0.25, 0.75), tip at the origin, 0.6306 tall from the
           tip to its furthest point), shifted and scaled so that its circumcircle is the unit
           disc: q = Y (x, y + 1) with Y = 1/2 / (3/2 - 1/sqrt(2)) = 0.6306 (the tip at
           frame (0, -1), pointing down at orientation 0), level = sdHeart(q) / Y:
           0.38 wide and 0.35 tall at scale 1.

RADIUS = 0.2: at scale 1 a sprite spans 0.28 - 0.4 of the image (18 - 26 pixels at 64: roughly
dSprites' sizes, not measured against its file), with areas 2.0 (square), 1.57 (ellipse) and
2.25 (heart) x (s RADIUS size)^2 pixels. A position value v in [0, 1] puts the centre at
MARGIN + (1 - 2 MARGIN) v, MARGIN = 0.22, so every sprite at every orientation stays 0.02 of the
image (1.3 pixels at 64, 0.6 at 32) inside the border and the outermost ring of pixels is
always 0.

Cost (2-core CPU, jit(sample), B = 1024, 5 runs): 64 x 64 3-6 ms a batch
(170-400k images/s), 32 x 32 0.5-1.1 ms (0.9-2M images/s); cheap beside a train step.

The factor values are computed in float64 with numpy and placed as float32 tables (the
stream's `arrays`); cos and sin are snapped to 0 where they vanish, so orientation 10 maps the
frame exactly onto the 90-degree-turned one: a square turned by 90 degrees gives bit for bit the
same image.

Ties. Pixels are binary, so the same factors give the same image on every machine except where a
pixel centre lies within float32 rounding of an edge. Over the whole grid (all 737,280 images,
measured on this module's CPU rendering): at 64 x 64, 26 of the 3.0e9 pixels have a level of
exactly 0 and 672 images (0.09%) have a pixel within 1e-6 (frame units, ~1e-5 pixel) of an edge;
at 32 x 32, none exactly and 112 images. Nudging the pixel centres by a small irrational
offset was tried and does not help: the exact zeros are near-ties that float32 rounds to 0 (the
ellipse's sqrt(q) - 1 is 0 for |q - 1| < ~1e-7), and an offset only moves them (4 and 14 exact
zeros at 64 with one and two offsets, 0 and 7 at 32), so the centres stay at (i + 1/2) / size.
Such a pixel may differ between machines whose float32 rounding differs (an accelerator's fused
multiply-adds); the hashed batches of the tests have no pixel within 1e-5 of an edge.

Rows: uniform factor indices from a key (jax.random.bits(key, (B, 5)) mod the counts: the
modulo's bias is below 1e-8), rendered. The stream's `sample` draws the training rows inside the
train step (a streamed source, data.Stream: batch t from fold_in(run key, t), see
aelab/trainer/batches.py); the train split holds `train_preview` rows of the same law (for
fitting the preprocessing and initialising from data), val and test `val_rows` / `test_rows`,
each with its factors. As in aelab/data/synth_features.py, they are drawn in jitted chunks of
CHUNK rows, chunk i of a split from fold_in(fold_in(PRNGKey(seed), SPLIT_KEYS[split]), i), keys
distinct from the train steps'. `by_factor` draws rows with some factors held fixed; `draw`
any number of rows from a key; `observe` renders given factor indices, the dataset's
`Factors.observe` (the disentanglement metrics' sampling, aelab/evaluators/disentanglement.py).

Memory: nothing but the tables (~1 KB) is kept for the stream; the stored splits are float32
(64 x 64: 16 KB a row, 50 MB for the default 1024 + 1024 + 1024 rows; 32 x 32: 34 MB for 4096 +
2048 + 2048; the issue's budget is tens of MB: the metrics draw more rows with `by_factor`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aelab.data import options
from aelab.data.dataset import Dataset, Factors, Split, Stream
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {
    'sprites': {'size': 64, 'train_preview': 1024, 'val_rows': 1024, 'test_rows': 1024},
    'sprites32': {'size': 32, 'train_preview': 4096, 'val_rows': 2048, 'test_rows': 2048},
}

FACTORS = ('shape', 'scale', 'orientation', 'x', 'y')
SHAPES = ('square', 'ellipse', 'heart')
RADIUS = 0.2        # a sprite's circumradius at scale 1, in image widths
MARGIN = 0.22       # sprite centres lie in [MARGIN, 1 - MARGIN] (RADIUS + 0.02)
ELLIPSE_MINOR = 0.5  # the ellipse's semi-axes in the frame: 1 and ELLIPSE_MINOR
HEART_Y = 0.5 / (1.5 - 1 / math.sqrt(2))  # sdHeart's circumradius about (0, HEART_Y): 0.6306
CHUNK = 1024        # rows per jitted draw of the stored splits
SPLIT_KEYS = {'train': 2**31 - 1, 'val': 2**31 - 2, 'test': 2**31 - 3}
NOTE = ("aelab's own rendering (aelab.data.sprites) on dSprites' factor grid (Matthey et al. "
        "2017), orientations 2 pi k / 40; not DeepMind's dSprites file")


# ----------------------------------------------------------------------------------------------
# The factor grid
# ----------------------------------------------------------------------------------------------

def factor_values() -> dict[str, np.ndarray]:
  """Each factor's values (float64), in FACTORS order: shape 0, 1, 2 (SHAPES), scale
  linspace(0.5, 1, 6), orientation 2 pi k / 40, x and y linspace(0, 1, 32)."""
  return {'shape': np.arange(len(SHAPES), dtype=np.float64),
          'scale': np.linspace(0.5, 1.0, 6),
          'orientation': 2 * np.pi * np.arange(40) / 40,
          'x': np.linspace(0.0, 1.0, 32),
          'y': np.linspace(0.0, 1.0, 32)}


def grid_counts() -> tuple[tuple[int, ...], int]:
  """((3, 6, 40, 32, 32), 737280): the number of values of each factor, and of combinations."""
  counts = tuple(len(v) for v in factor_values().values())
  return counts, math.prod(counts)


COUNTS = grid_counts()[0]


def tables(size: int) -> dict[str, np.ndarray]:
  """The renderer's float32 tables for `size` x `size` images (the stream's arrays):
  pixel [size] the pixel centres' coordinate (x of the columns, y of the rows), radius [6]
  s * RADIUS, cos and sin [40] of the orientations (exact 0 where they vanish), centre [32] the
  centres of the 32 positions."""
  values = factor_values()
  t = values['orientation']
  snap = lambda v: np.where(np.abs(v) < 1e-12, 0.0, v)  # noqa: E731
  return {k: np.asarray(v, np.float32) for k, v in {
      'pixel': (np.arange(size) + 0.5) / size,
      'radius': values['scale'] * RADIUS,
      'cos': snap(np.cos(t)), 'sin': snap(np.sin(t)),
      'centre': MARGIN + (1 - 2 * MARGIN) * values['x']}.items()}


# ----------------------------------------------------------------------------------------------
# Rendering (jax: pure, jittable)
# ----------------------------------------------------------------------------------------------

def box(x: jax.Array, y: jax.Array) -> jax.Array:
  """The square's SDF: the box of half-side 1/sqrt(2) (corners on the unit circle)."""
  dx, dy = jnp.abs(x) - 1 / math.sqrt(2), jnp.abs(y) - 1 / math.sqrt(2)
  outside = jnp.sqrt(jnp.maximum(dx, 0.0) ** 2 + jnp.maximum(dy, 0.0) ** 2)
  return outside + jnp.minimum(jnp.maximum(dx, dy), 0.0)


def ellipse(x: jax.Array, y: jax.Array) -> jax.Array:
  """The ellipse of semi-axes 1 (x) and ELLIPSE_MINOR (y): (|(x, y / b)| - 1) b, its exact sign."""
  return (jnp.sqrt(x * x + (y / ELLIPSE_MINOR) ** 2) - 1.0) * ELLIPSE_MINOR


def heart(x: jax.Array, y: jax.Array) -> jax.Array:
  """Inigo Quilez's sdHeart on q = HEART_Y (|x|, y + 1), over HEART_Y: a heart in the unit disc,
  its tip at (0, -1)."""
  qx, qy = HEART_Y * jnp.abs(x), HEART_Y * (y + 1.0)
  lobe = jnp.sqrt((qx - 0.25) ** 2 + (qy - 0.75) ** 2) - math.sqrt(2) / 4
  m = 0.5 * jnp.maximum(qx + qy, 0.0)
  wedge = jnp.sqrt(jnp.minimum(qx ** 2 + (qy - 1.0) ** 2, (qx - m) ** 2 + (qy - m) ** 2)) \
      * jnp.sign(qx - qy)
  return jnp.where(qx + qy > 1.0, lobe, wedge) / HEART_Y


def frame_levels(arrays: Mapping[str, jax.Array], factors: jax.Array) -> jax.Array:
  """float32 [B, size, size]: each pixel's shape level in its sprite's frame (<= 0 inside) for
  factor indices `factors` int32 [B, 5], with the tables `arrays` (see `tables`)."""
  f = jnp.asarray(factors, jnp.int32)
  take = lambda name, col: jnp.asarray(arrays[name])[f[:, col]][:, None, None]  # noqa: E731
  pixel = jnp.asarray(arrays['pixel'])
  radius, c, s = take('radius', 1), take('cos', 2), take('sin', 2)
  dx = pixel[None, None, :] - take('centre', 3)     # [B, 1, size]: x right
  dy = take('centre', 4) - pixel[None, :, None]     # [B, size, 1]: y up (rows run down)
  x = (c * dx + s * dy) / radius                    # R(-t) (u - c) / (s RADIUS)
  y = (c * dy - s * dx) / radius
  shape = f[:, 0][:, None, None]
  return jnp.where(shape == 0, box(x, y), jnp.where(shape == 1, ellipse(x, y), heart(x, y)))


def images(arrays: Mapping[str, jax.Array], factors: jax.Array) -> jax.Array:
  """float32 [B, size, size, 1] in {0, 1}: the sprites of `factors` with the tables `arrays`."""
  return (frame_levels(arrays, factors) <= 0.0).astype(jnp.float32)[..., None]


def levels(factors: jax.Array, size: int) -> jax.Array:
  """`frame_levels` at `size` (a Python int)."""
  return frame_levels(tables(size), factors)


def render(factors: jax.Array, size: int) -> jax.Array:
  """float32 [B, size, size, 1] in {0, 1}: the sprites of factor indices `factors` int32 [B, 5]
  (FACTORS order). Jittable with `size` static."""
  return images(tables(size), factors)


def random_factors(key: jax.Array, batch_size: int) -> jax.Array:
  """int32 [B, 5]: uniform factor indices (32 random bits per factor, mod its count)."""
  bits = jax.random.bits(key, (batch_size, len(COUNTS)), jnp.uint32)
  return (bits % jnp.asarray(COUNTS, jnp.uint32)).astype(jnp.int32)


def sample_with_factors(arrays: Mapping[str, jax.Array], key: jax.Array,
                        batch_size: int) -> tuple[jax.Array, jax.Array]:
  """(x float32 [B, size, size, 1], factors int32 [B, 5]): B uniform rows of the grid."""
  factors = random_factors(key, batch_size)
  return images(arrays, factors), factors


def sample(arrays: Mapping[str, jax.Array], key: jax.Array, batch_size: int) -> jax.Array:
  """The streamed training rows (data.Stream.sample): x of `sample_with_factors`."""
  return sample_with_factors(arrays, key, batch_size)[0]


@functools.partial(jax.jit, static_argnums=2)
def _chunk(arrays, key, rows: int, fixed: jax.Array, values: jax.Array):
  factors = jnp.where(fixed, values, random_factors(key, rows))
  return images(arrays, factors), factors


def draw(size: int, key: jax.Array, rows: int,
         fixed: Mapping[int | str, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(x float32 [rows, size, size, 1], factors int32 [rows, 5]) as numpy: `rows` uniform rows
  with the factors in `fixed` (factor index or name -> value index) held there, in jitted
  chunks of CHUNK, chunk i from fold_in(key, i) (the last one cut short). The other factors'
  draws do not depend on `fixed`."""
  mask, values = _fixed(fixed or {})
  arrays = tables(size)
  xs, fs = [], []
  for i in range(-(-rows // CHUNK)):
    take = min(CHUNK, rows - i * CHUNK)
    x, f = _chunk(arrays, jax.random.fold_in(key, i), CHUNK, mask, values)
    xs.append(np.asarray(x[:take]))
    fs.append(np.asarray(f[:take]))
  if not xs:
    return np.zeros((0, size, size, 1), np.float32), np.zeros((0, len(COUNTS)), np.int32)
  return np.concatenate(xs), np.concatenate(fs)


_images = jax.jit(images)


def observe(factors: np.ndarray, size: int) -> np.ndarray:
  """float32 [n, size, size, 1] as numpy: the sprites of factor indices `factors` int [n, 5]
  (FACTORS order; checked, one-line AelabError), rendered in jitted chunks of CHUNK rows (the
  last one padded, so one compiled shape serves every n)."""
  f = np.asarray(factors)
  if f.ndim != 2 or f.shape[1] != len(COUNTS) or not np.issubdtype(f.dtype, np.integer):
    raise AelabError(f'sprites factors must be integer indices [n, {len(COUNTS)}] '
                     f'({", ".join(FACTORS)}); got {f.dtype} {f.shape}')
  if len(f) and ((f < 0).any() or (f >= np.asarray(COUNTS)).any()):
    raise AelabError(f'sprites factor indices out of range: each column must lie in 0 .. '
                     f'count - 1, counts {COUNTS}')
  arrays, out = tables(size), np.empty((len(f), size, size, 1), np.float32)
  for start in range(0, len(f), CHUNK):
    rows = f[start:start + CHUNK].astype(np.int32)
    padded = np.concatenate([rows, np.repeat(rows[-1:], CHUNK - len(rows), axis=0)])
    out[start:start + len(rows)] = np.asarray(_images(arrays, padded))[:len(rows)]
  return out


def by_factor(fixed: Mapping[int | str, int], n: int, key: jax.Array,
              size: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """(x [n, size, size, 1], factors int32 [n, 5]): n rows drawn uniformly with the factors of
  `fixed` ({factor: value index}, a factor by index 0..4 or name, e.g. {0: 2, 'scale': 5})
  held fixed; the others uniform."""
  return draw(size, key, int(n), fixed)


def _fixed(fixed: Mapping[int | str, int]) -> tuple[np.ndarray, np.ndarray]:
  """(mask bool [5], values int32 [5]) of `fixed`, checked (one-line AelabErrors)."""
  mask, values = np.zeros(len(COUNTS), bool), np.zeros(len(COUNTS), np.int32)
  for factor, value in fixed.items():
    column = FACTORS.index(factor) if factor in FACTORS else factor
    if isinstance(column, bool) or not isinstance(column, (int, np.integer)) or \
        not 0 <= column < len(COUNTS):
      raise AelabError(f'unknown sprites factor {factor!r}; give an index 0..4 or one of '
                       f'{", ".join(FACTORS)}')
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
        not 0 <= value < COUNTS[column]:
      raise AelabError(f'sprites factor {FACTORS[column]} = {value!r}; it must be an integer '
                       f'index in 0..{COUNTS[column] - 1}')
    mask[column], values[column] = True, value
  return mask, values


# ----------------------------------------------------------------------------------------------
# The source
# ----------------------------------------------------------------------------------------------

def check(fields: Mapping[str, Any]) -> dict[str, Any]:
  """The fields, validated (one-line AelabErrors saying what to change) and typed."""
  out = dict(fields)
  out['size'] = options.count(fields, 'size', minimum=8)
  for key in ('train_preview', 'val_rows', 'test_rows'):
    out[key] = options.count(fields, key, minimum=1)
  return out


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  """The source: the stream and the stored splits (their factor indices as truth_codes)."""
  name, fields = options.resolve(cfg, SOURCES, 'sprites.load')
  fields = check(fields)
  size = fields['size']
  base = jax.random.PRNGKey(int(seed))
  splits = {}
  for split, rows in (('train', fields['train_preview']), ('val', fields['val_rows']),
                      ('test', fields['test_rows'])):
    x, factors = draw(size, jax.random.fold_in(base, SPLIT_KEYS[split]), rows)
    splits[split] = Split(x, None, truth_codes=factors.astype(np.float32))
  counts, total = grid_counts()
  return Dataset(
      name=name, **splits, feature_shape=(size, size, 1), value_range=(0.0, 1.0),
      feature_names=None, num_classes=None, stream=Stream(tables(size), sample),
      factors=Factors(FACTORS, COUNTS, functools.partial(observe, size=size)),
      source={'name': name, 'seed': int(seed), 'generator': NOTE, 'factors': FACTORS,
              'shapes': SHAPES, 'factor_counts': counts, 'combinations': total,
              'truth_codes': 'factor indices (shape, scale, orientation, x, y), float32',
              **fields})
