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
from typing import ClassVar

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from aelab.config import checks
from aelab.errors import AelabError
from aelab.models import activations, base, dense

OPTIONS = dict(
    hidden=(256, 64),            # encoder widths (the dense model's encoder_1..K); () is
                                 # softmax regression on the input
    activation='relu',           # one name, or one per encoder layer: 'tanh,sigmoid'
    classes=10,                  # width of the softmax head
)


class Classifier(base.Model):
  """Dense encoder layers act(h @ kernel + bias), then head: logits = h_K @ kernel + bias."""
  hidden: tuple[int, ...]
  activation: tuple[str, ...]
  num_classes: int
  RECONSTRUCTS: ClassVar[bool] = False  # no decoder: reconstruction evaluators and plots skip it

  def setup(self):
    self.encoder_layers = [nn.Dense(h, name=f'encoder_{i + 1}') for i, h in enumerate(self.hidden)]
    self.head = nn.Dense(self.num_classes, name='head')

  def _encode_from(self, h: jax.Array, start: int) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    hs = []
    for layer, act in list(zip(self.encoder_layers, self.activation))[start:]:
      h = activations.get(act)(layer(h))
      hs.append(h)
    return h, tuple(hs)

  def encode(self, x: jax.Array) -> jax.Array:
    """h_K, the input of the softmax head (the flattened input when there is no hidden layer)."""
    return self._encode_from(x.reshape(x.shape[0], -1), 0)[0]

  def decode(self, code: jax.Array, shape: Sequence[int] | None = None) -> jax.Array:
    del code, shape
    raise AelabError('model classifier has no decoder: it maps inputs to class probabilities '
                     '(use a dense autoencoder to reconstruct inputs)')

  def __call__(self, x: jax.Array, *, train: bool = False):
    del train  # no dropout / batch norm in this model
    code, enc = self._encode_from(x.reshape(x.shape[0], -1), 0)
    logits = self.head(code)
    return nn.softmax(logits, axis=-1), {'logits': logits, 'encoder': enc, 'code': code}

  def from_layer(self, h: jax.Array, layer: str):
    """(class probabilities, {'logits'}) from feature layer `layer`'s activations h."""
    code, _ = self._encode_from(h, dense.layer_index(layer, len(self.hidden)))
    logits = self.head(code)
    return nn.softmax(logits, axis=-1), {'logits': logits}

  # --- capabilities (see base.py) ----------------------------------------------------------------

  @nn.nowrap
  def classes(self) -> int:
    return self.num_classes

  @nn.nowrap
  def layer_activations(self) -> dict[str, str]:
    """Encoder layer '1'..'K' and 'code' -> activation (softmax regression's code is the input
    itself: 'linear')."""
    names = self.activation
    return {**{str(i + 1): a for i, a in enumerate(names)},
            'code': names[-1] if names else 'linear'}

  @nn.nowrap
  def check_data(self, dataset) -> None:
    """Every label of every split must be a class of the head: 0 <= y < classes."""
    for name in ('train', 'val', 'test'):
      y = getattr(dataset, name).y
      if y is not None and len(y) and (y.min() < 0 or y.max() >= self.num_classes):
        raise AelabError(f'the {name} split has labels {int(y.min())}..{int(y.max())} but '
                         f'model.classes = {self.num_classes}; labels must lie in '
                         f'0..{self.num_classes - 1}')

  @nn.nowrap
  def filters(self, params) -> np.ndarray | None:
    """The first layer's weights as images (the head's for softmax regression)."""
    first = params['encoder_1'] if self.hidden else params['head']
    return dense.kernel_images(first['kernel'], self.input_shape)

  @nn.nowrap
  def layers(self, params) -> list[base.Layer]:
    """encoder_1..K, then `head` (softmax: the class probabilities)."""
    out = [base.Layer(f'encoder_{i + 1}', np.asarray(params[f'encoder_{i + 1}']['kernel']),
                      np.asarray(params[f'encoder_{i + 1}']['bias']), act)
           for i, act in enumerate(self.activation)]
    head = params['head']
    return out + [base.Layer('head', np.asarray(head['kernel']), np.asarray(head['bias']),
                             'softmax')]

  @nn.nowrap
  def export(self, params, stats) -> base.Export:
    del stats
    k = len(self.hidden)
    outs = [f'h{i + 1}' for i in range(k)] + ['p (class probabilities)']
    codes = {i: (str(i + 1),) for i in range(k)}
    if k:
      codes[k - 1] += ('code',)
    out = base.dense_export(self.layers(params), outs, codes,
                            roles={k - 1: ' (the code)'} if k else {})
    out.steps.append(base.Step('predicted class = argmax p'))
    return out

  @nn.nowrap
  def stackable_encoder(self, params) -> list:
    return [params[f'encoder_{i + 1}'] for i in range(len(self.hidden))]

  @nn.nowrap
  def head_params(self, params):
    return params['head']

  @nn.nowrap
  def assemble(self, encoder: list, head) -> dict:
    """Parameters of this classifier from its encoder layers' and its head's (stacking)."""
    if len(encoder) != len(self.hidden):
      raise AelabError(f'{len(encoder)} encoder layers given for a classifier with '
                       f'{len(self.hidden)}')
    return {**{f'encoder_{i + 1}': p for i, p in enumerate(encoder)}, 'head': head}


def _activations(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  if not tuple(cfg.hidden):  # softmax regression: no layer to activate; the names must exist
    for name in cfg.activation.split(','):
      activations.get(name.strip())
    return ()
  return activations.per_layer(cfg.activation, len(cfg.hidden))


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> Classifier:
  hidden = checks.widths(cfg.hidden, 'model.hidden', 'hidden width')
  classes = checks.integer(cfg.classes, 'model.classes', low=2, high=checks.INT32_MAX,
                           hint=' (the number of labels)')
  return Classifier(input_shape=tuple(int(d) for d in feature_shape), hidden=hidden,
                    activation=_activations(cfg), num_classes=classes)
