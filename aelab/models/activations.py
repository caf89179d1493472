"""Activation functions by name, the one place a config's activation string is resolved."""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from aelab.config import checks
from aelab.errors import AelabError

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'linear': lambda x: x,
    'tanh': jnp.tanh,
    'sigmoid': nn.sigmoid,
    'relu': nn.relu,
    'gelu': nn.gelu,
    'elu': nn.elu,
    'softplus': nn.softplus,
    'leaky_relu': nn.leaky_relu,
}


def get(name: str) -> Callable[[jax.Array], jax.Array]:
  checks.choice(name, tuple(ACTIVATIONS), 'activation')
  return ACTIVATIONS[name]


def per_layer(spec: str, depth: int, field: str = 'activation',
              layers: str = 'the encoder has') -> tuple[str, ...]:
  """'tanh' -> ('tanh',) * depth; 'tanh,sigmoid' -> one name per layer (must match depth).
  `field` and `layers` word the error: "{field} 'a,b' names 2 layers but {layers} 3"."""
  names = tuple(s.strip() for s in spec.split(','))
  if len(names) == 1:
    names = names * depth
  if len(names) != depth:
    raise AelabError(f'{field} {spec!r} names {len(names)} layers but {layers} {depth}; '
                     'give one name for all layers or one per hidden layer')
  for name in names:
    get(name)
  return names


def through(layers, activation: str, h):
  """h through each layer, each followed by `activation`: (the last output, every output)."""
  act, hs = get(activation), []
  for layer in layers:
    h = act(layer(h))
    hs.append(h)
  return h, tuple(hs)
