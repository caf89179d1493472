"""Checksums that let a checkpoint prove its arrays and JSON meta read back bit-for-bit.

Orbax 0.12 / tensorstore verify only their own index structures (the OCDBT manifest and b-tree
nodes, and with zarr3 the shard index carry crc32c); array values are stored in zstd frames
without a content checksum, so a flipped byte or a block of garbage in a data file can load
silently. This module adds what is missing:

- `sums(tree)`: one jitted pass on the device(s) per tree, no host gather: every element is
  reinterpreted as uint32 word(s) (16- and 8-bit types zero-extended, 64-bit types as two
  words, low word first), multiplied by the odd weight (2*i + 1) * 2654435761 of its linear
  position i, and summed mod 2**32. Changing any one element always changes the sum (an odd
  weight times a nonzero delta is nonzero mod 2**32).
- `host_sums(tree)`: the same numbers for host numpy arrays (words taken by numpy, summed by
  the same jitted function on the CPU, so 64-bit arrays work without jax_enable_x64).
- `record(meta, tree)` / `check_meta(meta)`: a 'checksums' entry holding every leaf's dtype,
  shape and sum, and a crc32 of the whole JSON meta (the entry included).
Leaves are named by `path_name` ('state/opt_state/0/mu/dense/kernel'), the same for a
TrainState, the dataclass-free dicts/lists that orbax restores raw, and any other container.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

KEY = 'checksums'
_GOLDEN = np.uint32(2654435761)


def path_name(path) -> str:
  """'state/params/dense/kernel' for a jax key path, whatever the containers were."""
  parts = []
  for k in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return '/'.join(parts)


def named_leaves(tree) -> dict[str, Any]:
  return {path_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def layout(tree) -> dict[str, tuple[str, tuple[int, ...]]]:
  """{name: (dtype name, shape)} of a pytree of arrays, ShapeDtypeStructs or orbax metadata."""
  return {k: (np.dtype(v.dtype).name, tuple(int(d) for d in v.shape))
          for k, v in named_leaves(tree).items()}


def _words(x: jax.Array) -> jax.Array:
  """uint32 words of `x` (bit-exact), shape x.shape (+ (2,) for 64-bit types)."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  bits = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
  w = lax.bitcast_convert_type(x, bits)
  return w.astype(jnp.uint32)


def _weighted_sum(w: jax.Array) -> jax.Array:
  """sum_i w[i] * (2i+1) * 2654435761 mod 2**32 over the row-major linear index i of `w`."""
  idx = jnp.zeros(w.shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(w.ndim)):
    idx = idx + lax.broadcasted_iota(jnp.uint32, w.shape, axis) * jnp.uint32(stride % 2**32)
    stride *= w.shape[axis]
  weight = (idx * jnp.uint32(2) + jnp.uint32(1)) * jnp.uint32(_GOLDEN)
  return jnp.sum(w * weight, dtype=jnp.uint32)


_device_sums = jax.jit(lambda leaves: [_weighted_sum(_words(x)) for x in leaves])
_word_sums = jax.jit(lambda words: [_weighted_sum(w) for w in words])


def sums(tree) -> dict[str, int]:
  """{name: checksum} of a pytree of (possibly sharded) jax arrays, computed where they live."""
  named = named_leaves(tree)
  return dict(zip(named, (int(s) for s in jax.device_get(_device_sums(list(named.values()))))))


def _host_words(a: np.ndarray) -> np.ndarray:
  a = np.ascontiguousarray(a)
  if a.dtype == np.bool_:
    return a.astype(np.uint32)
  if a.dtype.itemsize == 8:
    return a.view(np.uint32).reshape(*a.shape, 2)   # little-endian: low word first, as XLA
  return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize]).astype(np.uint32)


def host_sums(tree) -> dict[str, int]:
  """`sums` of a pytree of host numpy arrays (same numbers), run by jax on the CPU."""
  named = named_leaves(tree)
  with jax.default_device(jax.devices('cpu')[0]):
    out = _word_sums([jnp.asarray(_host_words(np.asarray(a))) for a in named.values()])
  return dict(zip(named, (int(s) for s in jax.device_get(out))))


def _crc(meta: dict) -> int:
  body = {**meta, KEY: {k: v for k, v in meta[KEY].items() if k != 'meta_crc32'}}
  return zlib.crc32(json.dumps(body, sort_keys=True).encode())


def record(meta: dict, tree) -> dict:
  """A JSON-normal copy of `meta` with the 'checksums' entry for the arrays of `tree`."""
  meta = json.loads(json.dumps({k: v for k, v in meta.items() if k != KEY}))
  lay, sums_ = layout(tree), sums(tree)
  meta[KEY] = {'arrays': {k: [dt, list(shape), sums_[k]] for k, (dt, shape) in lay.items()}}
  meta[KEY]['meta_crc32'] = _crc(meta)
  return meta


def check_meta(meta: dict) -> str | None:
  """Why the 'checksums' entry of a restored meta is unusable, or None when it is sound."""
  entry = meta.get(KEY)
  if not isinstance(entry, dict) or not isinstance(entry.get('arrays'), dict):
    return 'meta checksums entry is damaged'
  if entry.get('meta_crc32') != _crc(meta):
    return 'meta checksum mismatch'
  return None


def recorded_layout(meta: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
  return {k: (v[0], tuple(v[1])) for k, v in meta[KEY]['arrays'].items()}


def mismatch(meta: dict, actual: dict[str, int]) -> str | None:
  """'checksum mismatch in state/opt_state/0/mu/w (and 2 more arrays)', or None when all match."""
  recorded = {k: v[2] for k, v in meta[KEY]['arrays'].items()}
  bad = sorted(k for k in recorded.keys() | actual.keys() if recorded.get(k) != actual.get(k))
  more = f' and {len(bad) - 1} more arrays' if len(bad) > 1 else ''
  return f'checksum mismatch in {bad[0]}{more}' if bad else None


def _fmt(spec) -> str:
  return 'absent' if spec is None else f'{spec[0]}[{",".join(map(str, spec[1]))}]'


def layout_difference(have: dict, want: dict) -> str | None:
  """'state/params/w is float32[64,32] there, float32[64,16] here', or None when they agree."""
  diffs = [f'{k} is {_fmt(have.get(k))} there, {_fmt(want.get(k))} here'
           for k in sorted(have.keys() | want.keys()) if have.get(k) != want.get(k)]
  more = f' and {len(diffs) - 1} more differences' if len(diffs) > 1 else ''
  return f'{diffs[0]}{more}' if diffs else None


def strip(meta: dict) -> dict:
  return {k: v for k, v in meta.items() if k != KEY}
