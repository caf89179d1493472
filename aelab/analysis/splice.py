"""Splicing a reconstruction into a trained run: how much of the run's own downstream metric
survives when one layer's activations are replaced (the 'CE loss recovered' of sparse
autoencoders trained on activations).

    out = splice.fraction_recovered(run, 'code', sae_reconstruct, x, y)
    out['fraction_recovered']    # 1: as good as the original layer; 0: as bad as zeroing it
    probs = splice.outputs(run, x, 1, replace=lambda h: 0 * h)   # the network output, spliced

The layer's activations h [B, width] (numpy float32, numbered as `runs.features` numbers them:
1..K and 'code') are replaced and the model continues its forward pass from that layer (its
`from_layer`: a VAE's without sampling), after the run's own preprocessing, at full float32
precision. The metric is the run's own: for a model with a softmax head the mean cross-entropy
against the labels, with the accuracies alongside; for one that reconstructs its input the
reconstruction MSE in the preprocessed space (mean per element, against the preprocessed input).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aelab import losses
from aelab.analysis import runs
from aelab.config import checks
from aelab.errors import AelabError

Replace = Callable[[np.ndarray], Any]


def fraction_recovered(run: runs.Run, layer: int | str, reconstruct: Replace, x: Any,
                       y: Any = None, batch_size: int = runs.DEFAULT_BATCH) -> dict[str, Any]:
  """The run's metric on rows x with layer `layer` as it is, zero-ablated and replaced by
  reconstruct(h): {'metric', 'original', 'zero_ablated', 'spliced', 'fraction_recovered'} (plus
  'accuracy_original', 'accuracy_zero_ablated', 'accuracy_spliced' for a classifier, which needs
  the labels y). fraction_recovered = (zero_ablated - spliced) / (zero_ablated - original); NaN
  when zeroing the layer does not change the metric."""
  classifier = _check_model(run)
  x = runs.check_rows(run, x)
  labels = _labels(run, y, len(x)) if classifier else None
  variants = {'original': None, 'zero_ablated': np.zeros_like, 'spliced': reconstruct}
  sums = {name: np.zeros(2) for name in variants}  # (loss, correct) summed over rows
  start = 0
  for z, h, tail in _batches(run, x, layer, batch_size):
    y_batch = None if labels is None else labels[start:start + len(h)]
    start += len(h)
    for name, replace in variants.items():
      out = tail(h if replace is None else _replaced(replace, h, name))
      sums[name] += _scores(out, z, y_batch)
  n = start * (1 if classifier else int(np.prod(run.feature_shape)))
  value = {name: float(s[0] / n) for name, s in sums.items()}
  v0, vz, vs = value['original'], value['zero_ablated'], value['spliced']
  result = {'metric': 'cross_entropy' if classifier else 'mse', **value,
            'fraction_recovered': (vz - vs) / (vz - v0) if vz != v0 else float('nan')}
  if classifier:
    result.update({f'accuracy_{name}': float(s[1] / start) for name, s in sums.items()})
  return result


def outputs(run: runs.Run, x: Any, layer: int | str, replace: Replace | None = None,
            batch_size: int = runs.DEFAULT_BATCH) -> np.ndarray:
  """The network's output on rows x with `layer`'s activations h replaced by replace(h) (None:
  kept): the reconstruction in the preprocessed space for a dense autoencoder (what
  runs.reconstruct(space='normalized') gives unspliced), the class probabilities for a
  classifier."""
  classifier = _check_model(run)
  parts = []
  for _, h, tail in _batches(run, x, layer, batch_size):
    out = tail(h if replace is None else _replaced(replace, h, 'spliced'))
    parts.append(np.asarray(jax.nn.softmax(out, axis=-1) if classifier else out))
  return np.concatenate(parts, axis=0)


def _check_model(run: runs.Run) -> bool:
  """True for a model with a softmax head (its metric: cross-entropy), False for one that
  reconstructs; a model that cannot continue from a layer is an error."""
  if not hasattr(run.model, 'from_layer'):
    raise AelabError(f'splicing a layer needs a model that continues its forward pass from a '
                     f'layer; {run.workdir} holds a {run.config.model.name!r} model')
  return run.model.classes() is not None


def _labels(run: runs.Run, y: Any, n: int) -> np.ndarray:
  """The classifier's labels as int [n], each a class of the run's head."""
  if y is None:
    raise AelabError(f'{run.workdir} holds a classifier: its metric (cross-entropy) needs the '
                     'labels y of the rows')
  labels = np.asarray(y)
  classes = int(run.model.classes())
  if (labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer)
      or (n and (labels.min() < 0 or labels.max() >= classes))):
    raise AelabError(f'y must be {n} integer labels in 0..{classes - 1}, one per row; got '
                     f'{labels.dtype} of shape {labels.shape}')
  return labels.astype(np.int32)


def _batches(run: runs.Run, x: Any, layer: int | str, batch_size: int
             ) -> Iterator[tuple[jax.Array, np.ndarray, Callable[[Any], jax.Array]]]:
  """(preprocessed rows z [B, d], the layer's activations h [B, width] as numpy, tail) per
  batch; tail(h') continues the model from the layer: its logits for a softmax head, else its
  output."""
  key = losses.normalize_layer(layer)
  x = runs.check_rows(run, x)
  if not len(x):
    raise AelabError('x holds no rows; splicing needs at least one row to score')
  checks.integer(batch_size, 'the batch size', low=1)
  logits = run.model.classes() is not None
  tail = functools.partial(_continue, run.forward, run.params, key, logits)
  for i in range(0, len(x), batch_size):
    rows = x[i:i + batch_size]
    yield _prepare(run.prep, rows), runs.features(run, rows, layer, batch_size), tail


@jax.jit
def _prepare(prep, x: jax.Array) -> jax.Array:
  """Raw rows -> the flattened preprocessed rows [B, d] the first layer reads."""
  return prep.apply(x)[0].reshape(x.shape[0], -1)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _continue(forward, params, layer: str, logits: bool, h) -> jax.Array:
  """The model from `layer` on, at full float32 precision: logits, or the flattened output."""
  with jax.default_matmul_precision('highest'):
    out, aux = forward.from_layer(params, jnp.asarray(h, jnp.float32), layer)
  return aux['logits'] if logits else out.reshape(out.shape[0], -1)


def _replaced(replace: Replace, h: np.ndarray, what: str) -> np.ndarray:
  """replace(h), checked: the same shape as h and finite."""
  out = np.asarray(replace(h.copy()), np.float32)
  if out.shape != h.shape:
    raise AelabError(f'the {what} activations have shape {out.shape}; the layer\'s are '
                     f'{h.shape} (the replacement must map [B, width] to [B, width])')
  if not np.isfinite(out).all():
    raise AelabError(f'the {what} activations hold non-finite values; the replacement must '
                     'return finite numbers')
  return out


def _scores(out: jax.Array, z: jax.Array, y: np.ndarray | None) -> np.ndarray:
  """(summed loss, number correct) of one batch, in float64: the squared error summed over the
  elements, or the cross-entropy of the logits summed over the rows and the correct
  predictions."""
  out = np.asarray(out, np.float64)
  if y is None:
    return np.array([np.sum(np.square(out - np.asarray(z, np.float64))), 0.0])
  shifted = out - out.max(axis=1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  ce = -log_p[np.arange(len(y)), y]
  return np.array([ce.sum(), float(np.sum(np.argmax(out, axis=1) == y))])
