"""The config of every run of a stacked autoencoder, derived from the stacked config.

A stacked config has `seed`, `dataset`, `preprocessing` and `stack` (aelab.config.defaults.stack):
stage k's autoencoder is `stack.pretrain`'s groups with the hidden width `stack.layers[k]`,
trained on the raw data (stage 1, with the config's preprocessing) or on the codes of stage k - 1
(preprocessing 'none'); the softmax and the two fine-tuned networks are `classifier` models with
a cross-entropy loss and `classification` evaluators on val and test every `stack.eval_every`
steps (the accuracy curves).
"""

from __future__ import annotations

import copy
import pathlib

import ml_collections

from aelab.config import checks, defaults

GROUPS = ('seed', 'dataset', 'preprocessing', 'stack')


def check(config: ml_collections.ConfigDict) -> None:
  checks.fields(config, GROUPS, 'the stacked config')
  checks.widths(config.stack.layers, 'stack.layers', 'layer width',
                empty='give one or more positive widths, e.g. (200, 200)')


def _run(config, dataset, preprocessing: str) -> ml_collections.ConfigDict:
  out = ml_collections.ConfigDict()
  out.seed = config.seed
  out.dataset = copy.deepcopy(dataset)
  out.preprocessing = preprocessing
  return out


def stage(config: ml_collections.ConfigDict, k: int,
          codes: pathlib.Path | None) -> ml_collections.ConfigDict:
  """Stage k (0-based): trained on the raw data (k = 0) or on the codes file of stage k - 1."""
  data = config.dataset if k == 0 else ml_collections.ConfigDict(dict(name='codes', path=str(codes)))
  out = _run(config, data, config.preprocessing if k == 0 else 'none')
  for group, value in config.stack.pretrain.items():
    out[group] = copy.deepcopy(value)
  out.model.hidden = (int(config.stack.layers[k]),)
  out.evals = defaults.evals(every=0)
  return out


def classifier(config: ml_collections.ConfigDict, run: str,
               codes: pathlib.Path | None = None) -> ml_collections.ConfigDict:
  """'features': a softmax on the last stage's codes; 'finetune' and 'scratch': the stacked
  network (every encoder layer + the softmax) on the raw data."""
  st = config.stack
  if run == 'features':
    out = _run(config, ml_collections.ConfigDict(dict(name='codes', path=str(codes))), 'none')
    hidden, groups = (), st.features
  else:
    out = _run(config, config.dataset, config.preprocessing)
    hidden, groups = tuple(st.layers), st.finetune
  out.model = defaults.model('classifier', hidden=hidden, classes=int(st.classes),
                             activation=st.pretrain.model.activation)
  out.loss = copy.deepcopy(groups.loss) if 'loss' in groups else defaults.loss(
      softmax_cross_entropy=dict(weight=1.0))
  out.optimizer = copy.deepcopy(groups.optimizer)
  out.train = copy.deepcopy(groups.train)
  if run == 'finetune' and st.freeze_encoder:
    out.optimizer.frozen = 'encoder'  # the group of every encoder layer
  out.evals = ml_collections.ConfigDict({
      split: defaults.evaluator('classification', split=split, every=int(st.eval_every))
      for split in ('val', 'test')})
  return out
