"""Matmul and convolution FLOPs of a function, counted exactly from its jaxpr.

    n = flops.count(train_step, state, batch)          # int, FLOPs of one call
    by = flops.count_by_primitive(train_step, state, batch)

Only `dot_general` and `conv_general_dilated` are counted (2 FLOPs per multiply-add); elementwise
work, reductions and optimizer updates are not, so the figure is what the matrix units do. The
walk recurses into every sub-jaxpr an equation carries (jit/pjit, custom_jvp/custom_vjp, remat,
shard_map, ...); a `scan` body counts `length` times, a `cond` counts its costliest branch, and a
`while` body counts once (its trip count is unknown until run time; `Counts.while_loops` says how
many were met). Because the jaxpr is traced from the real function, a gradient counts exactly the
matmuls autodiff emits (e.g. no input gradient for the first layer) and remat counts its recompute.
A convolution counts every multiply of its (possibly dilated) window, as XLA's cost model does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax

COUNTED = ('dot_general', 'conv_general_dilated')


@dataclasses.dataclass
class Counts:
  """FLOPs per counted primitive, and how many `while` loops were counted once."""
  by_primitive: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
  while_loops: int = 0

  @property
  def total(self) -> int:
    return sum(self.by_primitive.values())

  def add(self, other: 'Counts', times: int = 1) -> None:
    for k, v in other.by_primitive.items():
      self.by_primitive[k] = self.by_primitive.get(k, 0) + times * v
    self.while_loops += other.while_loops


def dot_general_flops(lhs_shape, rhs_shape, dimension_numbers) -> int:
  """2 * batch * lhs_free * rhs_free * contracted: the multiply-adds of one dot_general."""
  (_, rhs_contract), (_, rhs_batch) = dimension_numbers
  rhs_free = math.prod(d for i, d in enumerate(rhs_shape) if i not in (*rhs_contract, *rhs_batch))
  return 2 * math.prod(lhs_shape) * rhs_free


def conv_flops(out_shape, rhs_shape, dimension_numbers) -> int:
  """2 * outputs * (kernel window * input features per group): rhs is [O, I/groups, *window]."""
  out_feature_dim = dimension_numbers.rhs_spec[0]
  return 2 * math.prod(out_shape) * math.prod(rhs_shape) // rhs_shape[out_feature_dim]


def _sub_jaxprs(value: Any):
  """The jaxprs inside one equation parameter (a Jaxpr, a ClosedJaxpr, or tuples of them)."""
  if hasattr(value, 'eqns'):
    yield value
  elif hasattr(value, 'jaxpr') and hasattr(value.jaxpr, 'eqns'):
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def jaxpr_counts(jaxpr) -> Counts:
  """Counts a Jaxpr or ClosedJaxpr."""
  if not hasattr(jaxpr, 'eqns'):
    jaxpr = jaxpr.jaxpr
  counts = Counts()
  for eqn in jaxpr.eqns:
    name, params = eqn.primitive.name, eqn.params
    if name == 'dot_general':
      n = dot_general_flops(eqn.invars[0].aval.shape, eqn.invars[1].aval.shape,
                            params['dimension_numbers'])
      counts.by_primitive[name] += n
    elif name == 'conv_general_dilated':
      n = conv_flops(eqn.outvars[0].aval.shape, eqn.invars[1].aval.shape,
                     params['dimension_numbers'])
      counts.by_primitive[name] += n
    elif name == 'cond':
      branches = [jaxpr_counts(b) for b in params['branches']]
      counts.add(max(branches, key=lambda c: c.total))
    elif name == 'scan':
      counts.add(jaxpr_counts(params['jaxpr']), times=int(params['length']))
    elif name == 'while':
      counts.add(jaxpr_counts(params['cond_jaxpr']))
      counts.add(jaxpr_counts(params['body_jaxpr']))
      counts.while_loops += 1
    else:  # jit/pjit, custom_jvp_call, custom_vjp_call, remat, shard_map, closed_call, ...
      for value in params.values():
        for sub in _sub_jaxprs(value):
          counts.add(jaxpr_counts(sub))
  return counts


def count_by_primitive(fn: Callable, *args, **kwargs) -> Counts:
  """Traces `fn(*args, **kwargs)` (arrays or jax.ShapeDtypeStruct) and counts its FLOPs."""
  return jaxpr_counts(jax.make_jaxpr(fn)(*args, **kwargs))


def count(fn: Callable, *args, **kwargs) -> int:
  """Matmul + convolution FLOPs of one call of `fn(*args, **kwargs)`."""
  return count_by_primitive(fn, *args, **kwargs).total
