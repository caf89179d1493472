"""The sprites source (aelab/data/sprites.py): dSprites' factor grid rendered by aelab's own
signed-distance rasteriser: the grid's counts, the same images for the same key on every
machine, the sprites' geometry, rows drawn with factors held fixed, and the Dataset load()
returns."""

from __future__ import annotations

import hashlib

import jax
import numpy as np
import pytest

from aelab import data
from aelab.data import sprites
from aelab.errors import AelabError

render = jax.jit(sprites.render, static_argnums=1)
levels = jax.jit(sprites.levels, static_argnums=1)
sample = jax.jit(sprites.sample_with_factors, static_argnums=2)


def grid(**fixed) -> np.ndarray:
  """int32 [N, 5]: every combination of the given factors' index lists (FACTORS order)."""
  axes = [np.atleast_1d(fixed[name]) for name in sprites.FACTORS]
  return np.stack([a.ravel() for a in np.meshgrid(*axes, indexing='ij')], 1).astype(np.int32)


@pytest.mark.quick
def test_the_factor_grid_and_its_counts_are_exact():
  """3 shapes x 6 scales x 40 orientations x 32 x 32 positions = 737,280, with dSprites' values
  (orientations 9 degrees apart, all distinct), and uniform draws reach every value of every
  factor and nothing else (20,000 rows: each value's count within 5 sd of uniform)."""
  counts, total = sprites.grid_counts()
  assert counts == (3, 6, 40, 32, 32) and total == 737_280 == 3 * 6 * 40 * 32 * 32
  values = sprites.factor_values()
  assert tuple(values) == sprites.FACTORS == ('shape', 'scale', 'orientation', 'x', 'y')
  np.testing.assert_allclose(values['scale'], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
  np.testing.assert_allclose(values['orientation'], np.deg2rad(np.arange(0, 360, 9)))
  for axis in ('x', 'y'):
    np.testing.assert_allclose(values[axis], np.arange(32) / 31)
  f = np.asarray(jax.jit(sprites.random_factors, static_argnums=1)(jax.random.PRNGKey(5), 20000))
  assert f.dtype == np.int32 and f.shape == (20000, 5)
  for column, count in enumerate(counts):
    hits = np.bincount(f[:, column])
    expected = 20000 / count
    assert len(hits) == count and np.abs(hits - expected).max() < 5 * np.sqrt(expected)


@pytest.mark.quick
@pytest.mark.parametrize('size, want', [
    (64, '5fc5b12f0b97a8a72384f91dce4d2f364f5e35a32a5dfe7d9c2ae70344c7d6b0'),
    (32, 'ce9ceae19fe6ad102659aa85497ddee66b1531e3a619573fff5df9b033b97a42'),
], ids=('64x64', '32x32'))
def test_the_same_key_gives_the_same_images_and_factors(size, want):
  """sha256 of 16 rows from PRNGKey(0) (images as uint8, factors as little-endian int32), drawn
  on the CPU (also where jax has an accelerator). The images are binary and no pixel centre of
  these rows lies within 1e-5 of an edge (in the sprite's frame: ~1e-4 pixel, ~10x float32's
  rounding of the frame coordinates), so another machine's rounding cannot flip a pixel."""
  with jax.default_device(jax.devices('cpu')[0]):
    x, f = sample(sprites.tables(size), jax.random.PRNGKey(0), 16)
    margin = np.abs(np.asarray(levels(f, size))).min()
  x, f = np.asarray(x), np.asarray(f)
  assert x.shape == (16, size, size, 1) and x.dtype == np.float32 and set(np.unique(x)) == {0, 1}
  digest = hashlib.sha256(x.astype(np.uint8).tobytes() + f.astype('<i4').tobytes()).hexdigest()
  assert digest == want
  assert margin > 1e-5, margin
  again, _ = sample(sprites.tables(size), jax.random.PRNGKey(0), 16)
  other, _ = sample(sprites.tables(size), jax.random.PRNGKey(1), 64)
  assert np.array_equal(np.asarray(again), x) and not np.array_equal(np.asarray(other), x)


def test_sprite_geometry():
  """At 64 x 64: a sprite's pixel count grows with its scale as scale^2 (each sprite within 12%,
  an axis-aligned square's side being a whole number of pixels; the mean of 24 orientations and
  positions within 2%), and the mean counts at scale 1 are the shapes' areas 2, pi/2 and 2.25 x
  (0.2 x 64)^2 within 1%; its centroid moves linearly with x (columns) and y (rows) (within
  half a pixel: rasterised), 64 x 0.56 / 31 = 1.156 pixels a step, from 64 x 0.22 (square and
  ellipse: at the centre), the other coordinate fixed; a square turned by 90, 180 or 270 degrees
  (orientation 10, 20, 30) is the same image bit for bit, an ellipse or a heart is not; and at
  the grid's extreme positions, every shape and orientation at scale 1 keeps off the outermost
  ring of pixels, at both sizes."""
  counts = np.asarray(render(grid(shape=[0, 1, 2], scale=np.arange(6), orientation=[0, 3, 7, 12],
                                  x=[15, 16, 17], y=[16, 19]), 64)).sum((1, 2, 3))
  counts = counts.reshape(3, 6, 24)                # shape, scale, 4 orientations x 6 positions
  square = sprites.factor_values()['scale'][None, :, None] ** 2
  assert (np.diff(counts, axis=1) > 0).all()
  np.testing.assert_allclose(counts / counts[:, -1:], np.broadcast_to(square, counts.shape),
                             rtol=0.12)            # one sprite: a row or column more or less
  mean = counts.mean(-1)
  np.testing.assert_allclose(mean / mean[:, -1:], square[..., 0].repeat(3, 0), rtol=0.02)
  np.testing.assert_allclose(mean[:, -1] / (0.2 * 64) ** 2, [2, np.pi / 2, 2.25], rtol=0.01)

  step = 64 * (1 - 2 * sprites.MARGIN) / 31
  rows, cols = np.mgrid[0:64, 0:64] + 0.5
  for axis, moving, still in (('x', cols, rows), ('y', rows, cols)):
    positions = {'x': 12, 'y': 20, axis: np.arange(32)}
    x = np.asarray(render(grid(shape=[0, 1, 2], scale=4, orientation=5, **positions), 64))
    x = x[..., 0].reshape(3, 32, 64, 64)
    mass = x.sum((2, 3))
    centre = (x * moving).sum((2, 3)) / mass
    other = (x * still).sum((2, 3)) / mass
    for shape in range(3):
      slope, offset = np.polyfit(np.arange(32), centre[shape], 1)
      assert slope == pytest.approx(step, rel=0.01)
      assert np.abs(centre[shape] - (slope * np.arange(32) + offset)).max() < 0.55
      assert np.ptp(other[shape]) < 0.6                 # a 45-degree square's tip pixel
      if shape < 2:                                      # symmetric: the centroid is the centre
        assert offset == pytest.approx(64 * sprites.MARGIN, abs=0.3)
        assert other[shape].mean() == pytest.approx(
            64 * sprites.tables(64)['centre'][positions['y' if axis == 'x' else 'x']], abs=0.3)

  some = grid(shape=[0, 1, 2], scale=[0, 5], orientation=[0, 10, 20, 30], x=[0, 17], y=[9, 31])
  x = np.asarray(render(some, 64)).reshape(3, 2, 4, 4, 64, 64)
  for turn in (1, 2, 3):
    assert np.array_equal(x[0, :, turn], x[0, :, 0])
  assert not np.array_equal(x[1, :, 1], x[1, :, 0]) and not np.array_equal(x[2, :, 2], x[2, :, 0])
  assert all(not np.array_equal(x[2, s, t, p], x[2, s, 0, p])
             for s in range(2) for t in (1, 2, 3) for p in range(4))

  for size in (64, 32):
    corners = grid(shape=[0, 1, 2], scale=5, orientation=np.arange(40), x=[0, 31], y=[0, 31])
    x = np.asarray(render(corners, size))[..., 0]
    ring = x.sum((1, 2)) - x[:, 1:-1, 1:-1].sum((1, 2))
    assert ring.max() == 0 and x.sum((1, 2)).min() > 0.5 * (0.2 * size) ** 2


@pytest.mark.quick
def test_by_factor_holds_the_fixed_factors():
  """Rows drawn with shape 2 (heart) and orientation 10 held: those columns are fixed, the
  others vary exactly as without them (the same draws), and the images are those factors'."""
  key = jax.random.PRNGKey(3)
  x, f = sprites.by_factor({0: 2, 'orientation': 10}, 300, key, size=32)
  assert x.shape == (300, 32, 32, 1) and f.dtype == np.int32
  assert (f[:, 0] == 2).all() and (f[:, 2] == 10).all()
  _, free = sprites.by_factor({}, 300, key, size=32)
  np.testing.assert_array_equal(f[:, [1, 3, 4]], free[:, [1, 3, 4]])
  assert all(len(np.unique(f[:, c])) == n for c, n in ((1, 6), (3, 32), (4, 32)))
  np.testing.assert_array_equal(x, np.asarray(render(f, 32)))
  with pytest.raises(AelabError, match='unknown sprites factor 5'):
    sprites.by_factor({5: 0}, 4, key)
  with pytest.raises(AelabError, match='scale = 6; it must be an integer index in 0..5'):
    sprites.by_factor({'scale': 6}, 4, key)


def test_load_returns_the_stream_and_its_splits():
  """data.load: sprites32's preview / val / test rows with their factor indices as truth_codes
  (the images re-render from them), from keys distinct from each other and from the train
  steps'; the stream's sample; the source record; sprites is the 64 x 64 grid."""
  cfg = {'name': 'sprites32', 'train_preview': 300, 'val_rows': 200, 'test_rows': 100}
  ds = data.load(cfg, 0)
  assert ds.feature_shape == (32, 32, 1) and ds.value_range == (0.0, 1.0) and ds.truth is None
  for split, rows in ((ds.train, 300), (ds.val, 200), (ds.test, 100)):
    assert split.x.shape == (rows, 32, 32, 1) and split.truth_codes.shape == (rows, 5)
    assert split.truth_codes.dtype == np.float32 and split.y is None
    np.testing.assert_array_equal(split.x, np.asarray(render(split.truth_codes.astype(np.int32),
                                                             32)))
  step = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), 0x57ea), 0)
  streamed = np.asarray(jax.jit(ds.stream.sample, static_argnums=2)(ds.stream.arrays, step, 16))
  assert streamed.shape == (16, 32, 32, 1) and streamed.dtype == np.float32
  firsts = [ds.train.x[0], ds.val.x[0], ds.test.x[0], streamed[0]]
  assert len({row.tobytes() for row in firsts}) == 4
  assert ds.source['factor_counts'] == (3, 6, 40, 32, 32) and ds.source['combinations'] == 737280
  assert "not DeepMind's" in ds.source['generator'] and ds.source['seed'] == 0
  big = data.load({'name': 'sprites', 'train_preview': 4, 'val_rows': 4, 'test_rows': 4}, 1)
  assert big.feature_shape == (64, 64, 1) and big.test.x.shape == (4, 64, 64, 1)
