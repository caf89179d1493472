"""Classifier: the dense model's encoder stack and a softmax head (softmax regression when the
stack is empty).

    x [B, *shape] -> flattened -> encoder_1..encoder_K -> head -> softmax

The encoder layers are named and shaped as the dense autoencoder's (`encoder_k`, nn.Dense,
kernel [in, out]), so a pretrained encoder loads into a classifier by name (stacked
autoencoders: pretrain, then fine-tune with labels). `__call__` returns (probs, aux) with aux =
{'logits': [B, classes] before the softmax, 'encoder': (h_1, ..., h_K), 'code': h_K (the
flattened input when K = 0)}; the loss term is `softmax_cross_entropy`, the evaluator
`classification`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import ml_collections

from aelab.config.defaults import MODELS
from aelab.errors import AelabError
from aelab.models import activations, dense

DEFAULTS = MODELS['classifier']  # the fields of config.model (aelab/config/defaults.py)
RECONSTRUCTS = False  # no decoder: evaluators and plots of reconstructions do not apply


class Classifier(nn.Module):
  """Dense encoder layers act(h @ kernel + bias), then head: logits = h_K @ kernel + bias."""
  hidden: Sequence[int]
  activation: Sequence[str]
  classes: int

  def setup(self):
    self.encoder_layers = [nn.Dense(h, name=f'encoder_{i + 1}') for i, h in enumerate(self.hidden)]
    self.head = nn.Dense(self.classes, name='head')

  def _encode_all(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    h = x.reshape(x.shape[0], -1)
    hs = []
    for layer, act in zip(self.encoder_layers, self.activation):
      h = activations.get(act)(layer(h))
      hs.append(h)
    return h, tuple(hs)

  def encode(self, x: jax.Array) -> jax.Array:
    """h_K, the input of the softmax head (the flattened input when there is no hidden layer)."""
    return self._encode_all(x)[0]

  def decode(self, code: jax.Array, shape: Sequence[int] | None = None) -> jax.Array:
    del code, shape
    raise AelabError('model classifier has no decoder: it maps inputs to class probabilities '
                     '(use a dense autoencoder to reconstruct inputs)')

  def __call__(self, x: jax.Array, *, train: bool = False):
    del train  # no dropout / batch norm in this model
    code, enc = self._encode_all(x)
    logits = self.head(code)
    return nn.softmax(logits, axis=-1), {'logits': logits, 'encoder': enc, 'code': code}


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> Classifier:
  hidden = tuple(cfg.hidden)
  for i, h in enumerate(hidden):
    if not isinstance(h, int) or isinstance(h, bool) or h <= 0:
      raise AelabError(f'model.hidden[{i}] = {h!r}; every hidden width must be a positive integer '
                       f'(model.hidden = {hidden}; () is softmax regression on the input)')
  classes = cfg.classes
  if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
    raise AelabError(f'model.classes = {classes!r}; a classifier needs an integer >= 2 (the '
                     'number of labels)')
  del feature_shape  # the head's input width follows from the data at init
  return Classifier(hidden=hidden, activation=_activations(cfg), classes=classes)


def _activations(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  if not tuple(cfg.hidden):  # softmax regression: no layer to activate; the names must exist
    for name in cfg.activation.split(','):
      activations.get(name.strip())
    return ()
  return activations.per_layer(cfg.activation, len(cfg.hidden))


def layer_activations(cfg: ml_collections.ConfigDict) -> dict[str, str]:
  """Encoder layer name ('1'..'K' and 'code') -> activation name, for loss-term checks (the code
  of softmax regression is the input itself: 'linear')."""
  names = _activations(cfg)
  out = {str(i + 1): a for i, a in enumerate(names)}
  out['code'] = names[-1] if names else 'linear'
  return out


def check_labels(cfg: ml_collections.ConfigDict, dataset) -> None:
  """Every label of every split must be a class of the head: 0 <= y < model.classes."""
  for name in ('train', 'val', 'test'):
    y = getattr(dataset, name).y
    if y is not None and len(y) and (y.min() < 0 or y.max() >= cfg.classes):
      raise AelabError(f'the {name} split has labels {int(y.min())}..{int(y.max())} but '
                       f'model.classes = {cfg.classes}; labels must lie in 0..{cfg.classes - 1}')


def filters(params, feature_shape: Sequence[int]):
  """The first layer's weights as images [n, *feature_shape] (the head's for softmax regression;
  None for non-image data)."""
  first = 'encoder_1' if 'encoder_1' in params else 'head'
  return dense.filters({'encoder_1': params[first]}, feature_shape)
