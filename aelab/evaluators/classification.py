"""Evaluator 'classification': accuracy, error rate, loss and the confusion matrix on one split.

Metrics (logged as <split>/<name>):
  accuracy       the fraction of examples whose predicted class (the argmax of the model's class
                 probabilities) is their label;
  error_rate     1 - accuracy;
  loss, <term>   the training objective and each term, averaged over the split's examples (as the
                 reconstruction evaluator averages them), with code_mean and code_near_zero of the
                 softmax head's input.

With a workdir, the confusion matrix of the latest evaluation (counts; rows: true class, columns:
predicted class) is written to `confusion_<split>.json` ({'split', 'step', 'classes',
'accuracy', 'matrix'}) and drawn as `plots/confusion_<split>.png` (in a training run, at its
last step only: a periodic evaluation writes the JSON, not the picture). The split must have
labels (an error when the evaluator is built) and the model a softmax head (`model.classes`).
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from aelab import plots as draw
from aelab.errors import AelabError
from aelab.evaluators.context import Context, run_batches, split_of
from aelab.files import write_json

OPTIONS = dict(split='val', every=0, batch_size=1000)


@functools.lru_cache(maxsize=None)
def _eval_step(forward, classes: int):
  """One jitted step per forward pass and class count: (loss and terms, confusion counts)."""

  @jax.jit
  def step(params, prep, batch, index=0):
    rng = jax.random.fold_in(jax.random.PRNGKey(0), index)
    total, (terms, probs, _, _) = forward(params, prep, batch, rng, False)
    predicted = jnp.argmax(probs, axis=-1)
    confusion = jnp.zeros((classes, classes), jnp.int32).at[batch['y'], predicted].add(1)
    return {'loss': total, **terms}, {'confusion': confusion}

  return step


class Evaluator:
  def __init__(self, ctx: Context, split: str, batch_size: int):
    self.split, self.batch_size, self.mesh = split, batch_size, ctx.mesh
    self.data = split_of(ctx.dataset, split)
    if self.data.y is None:
      raise AelabError(f'the classification evaluator needs labels, but the {split} split of '
                       f'dataset {ctx.dataset.name!r} has none; evaluate a labelled split or '
                       'dataset')
    classes = ctx.forward.model.classes()
    if not classes:
      raise AelabError(f'the classification evaluator needs a model with a softmax head '
                       f'(model classifier); model {ctx.config.model.name!r} has none')
    self.classes = int(classes)
    self.workdir, self.total_steps = ctx.workdir, ctx.total_steps
    source = ctx.dataset.source
    self.label_names = source.get('label_names') if isinstance(source, dict) else None
    self.title = f'{ctx.config.model.name} on {ctx.dataset.name}, {split} split'
    self.step = _eval_step(ctx.forward, self.classes)

  def __call__(self, state, prep) -> dict[str, float]:
    if not len(self.data):
      return {}
    means, totals = run_batches(self.step, state.params, prep, self.data, self.batch_size,
                                self.mesh)
    confusion = np.asarray(totals['confusion'], np.int64)
    correct, n = int(np.trace(confusion)), len(self.data)
    accuracy = correct / n
    if self.workdir is not None and jax.process_index() == 0:
      self._write(confusion, accuracy, int(jax.device_get(state.step)))
    return {**means, 'accuracy': accuracy, 'error_rate': (n - correct) / n}

  def _write(self, confusion: np.ndarray, accuracy: float, step: int) -> None:
    workdir = pathlib.Path(self.workdir)
    names = (list(self.label_names) if self.label_names is not None
             and len(self.label_names) == self.classes else list(range(self.classes)))
    write_json(workdir / f'confusion_{self.split}.json',
               {'split': self.split, 'step': step, 'classes': names, 'accuracy': accuracy,
                'rows': 'true class', 'columns': 'predicted class',
                'matrix': confusion.tolist()})
    if self.total_steps is not None and step < self.total_steps:
      return  # a periodic evaluation: the JSON; the picture (a label per cell) at the end
    draw.confusion(confusion, workdir / 'plots' / f'confusion_{self.split}.png',
                   [str(n) for n in names],
                   f'{self.title}: accuracy {accuracy:.4f} at step {step}')
