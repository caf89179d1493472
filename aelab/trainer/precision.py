"""Mixed precision: the model computes in `train.compute_dtype` (e.g. bfloat16) while parameters,
optimizer state, loss and metrics stay float32 (master weights)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from aelab.config import checks

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def dtype(name: str) -> Any:
  checks.choice(name, tuple(DTYPES), 'train.compute_dtype')
  return DTYPES[name]


def _cast(tree: Any, to: Any) -> Any:
  return jax.tree.map(lambda a: a.astype(to) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def for_compute(tree: Any, compute_dtype: Any) -> Any:
  """Floating leaves in the compute dtype (a no-op for float32)."""
  return tree if compute_dtype == jnp.float32 else _cast(tree, compute_dtype)


def to_float32(tree: Any) -> Any:
  return _cast(tree, jnp.float32)
