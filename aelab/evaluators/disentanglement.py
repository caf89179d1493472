"""Evaluator 'disentanglement': disentanglement_lib's metrics (BetaVAE, FactorVAE, MIG, DCI, SAP,
modularity and explicitness, the unsupervised scores) of the model's codes against the known
factors of the dataset (Dataset.factors: sprites, sprites32), the math in
aelab/evaluators/disentanglement_metrics.py (definitions, and what differs from
disentanglement_lib, in its docstrings and docs/disentanglement.md).

    config.evals.dis = dict(type='disentanglement', metrics=('mig', 'dci'), every=0)

Each metric draws its own factor rows uniformly with numpy (seed `seed`, one stream per metric,
so a metric's figures do not depend on which others run), renders them with
`Factors.observe`, and encodes them in batches of `batch_size` rows through the run's forward
pass (`Forward.encode`: preprocessing, then the model's encode; for a VAE the posterior MEAN,
the representation disentanglement_lib scores); codes of any shape are flattened. The rows are
not those of any split: `split` only names where the figures are logged (<split>/<name>).

Metrics (logged as <split>/<name>; `metrics` chooses the groups):
  beta_vae      beta_vae_train_accuracy, beta_vae_eval_accuracy
  factor_vae    factor_vae_train_accuracy, factor_vae_eval_accuracy, factor_vae_active_dims
  mig           mig
  dci           dci_disentanglement, dci_completeness, dci_informativeness_train, _test
  sap           sap
  modularity    modularity, explicitness_train, explicitness_test
  unsupervised  gaussian_total_correlation, gaussian_wasserstein_correlation, its _norm,
                mutual_info_score
A model whose codes are not finite (diverged) gets NaN for that metric's figures.

With a workdir, plots/factor_response.png shows the code's response to each factor (each code
unit's mean and sd at each value of each factor, over RESPONSE_POINTS uniform rows; the latent
traversals are the plots evaluator's traversals.png).

The sample counts default to disentanglement_lib's published ones (about 3M observations for
all seven metrics, two thirds of them BetaVAE's: an end-of-run evaluation, `every=0`). With a
workdir, disentanglement_<split>.json holds the figures, the step, the seed and the counts.
"""

from __future__ import annotations

import math
import pathlib

import jax
import numpy as np

from aelab.config import checks
from aelab.errors import AelabError
from aelab.evaluators import disentanglement_metrics as dm
from aelab.evaluators import sampling
from aelab.evaluators.context import Context
from aelab.files import write_json
from aelab.trainer import distributed

OPTIONS = dict(
    split='test', every=0,       # split: only where the figures are logged (rows are drawn anew)
    metrics=('beta_vae', 'factor_vae', 'mig', 'dci', 'sap', 'modularity', 'unsupervised'),
    seed=0,                      # the factor draws (one numpy stream per metric)
    batch_size=1000,             # rows rendered and encoded per jitted call
    num_bins=20,                 # histogram bins per code dim (MIG, modularity, unsupervised)
    beta_vae_batch_size=64, beta_vae_num_train=10000, beta_vae_num_eval=5000,
    factor_vae_batch_size=64, factor_vae_num_train=10000, factor_vae_num_eval=5000,
    factor_vae_num_variance_estimate=10000,
    factor_vae_threshold=0.05,   # dims with a global std below this are inactive
    mig_num_train=10000,
    dci_num_train=10000, dci_num_test=5000,
    sap_num_train=10000, sap_num_test=5000,
    modularity_num_train=10000, modularity_num_test=5000,
    unsupervised_num_train=10000,
)
RESPONSE_POINTS = 4000  # uniform factor rows of plots/factor_response.png
AT_LEAST_2 = ('factor_vae_batch_size', 'factor_vae_num_variance_estimate')  # sample variances
# Each metric's options, as keyword arguments of its disentanglement_metrics.compute_<metric>.
ARGUMENTS = {metric: tuple(k[len(metric) + 1:] for k in OPTIONS if k.startswith(metric + '_'))
             for metric in dm.METRICS}


def chosen(metrics) -> tuple[str, ...]:
  """The metric names of the `metrics` option, checked (a one-line error for an unknown one)."""
  names = (metrics,) if isinstance(metrics, str) else metrics
  if not isinstance(names, (tuple, list)) or not names:
    raise AelabError(f'the disentanglement evaluator\'s metrics must be a non-empty tuple of '
                     f'names; got {metrics!r}; valid: {", ".join(dm.METRICS)}')
  for name in names:
    if name not in dm.METRICS:
      raise AelabError(f'unknown disentanglement metric {name!r}; valid: '
                       f'{", ".join(dm.METRICS)}')
  return tuple(dict.fromkeys(names))


class Evaluator:
  def __init__(self, ctx: Context, split: str, metrics, seed: int, batch_size: int,
               num_bins: int, **counts):
    self.factors = ctx.dataset.factors
    if self.factors is None:
      raise AelabError(f'the disentanglement evaluator needs a dataset with known factors of '
                       f'variation (sprites, sprites32); dataset {ctx.dataset.name!r} has none')
    self.metrics = chosen(metrics)
    where = 'the disentanglement evaluator\'s'
    self.seed = checks.integer(seed, f'{where} seed', low=0, high=checks.UINT32_MAX)
    self.batch_size = checks.integer(batch_size, f'{where} batch_size', low=1,
                                     high=checks.INT32_MAX)
    self.num_bins = checks.integer(num_bins, f'{where} num_bins', low=1, high=checks.INT32_MAX)
    self.arguments = {}
    for metric in self.metrics:
      args = {}
      for name in ARGUMENTS[metric]:
        field, value = f'{metric}_{name}', counts[f'{metric}_{name}']
        args[name] = checks.number(value, f'{where} {field}', low=0.0) if name == 'threshold' \
            else checks.integer(value, f'{where} {field}', low=2 if field in AT_LEAST_2 else 1,
                                high=checks.INT32_MAX)
      if metric in ('mig', 'modularity', 'unsupervised'):
        args['num_bins'] = self.num_bins
      self.arguments[metric] = args
    self.ctx, self.split = ctx, split

  def representation(self, params, prep):
    """represent(factors int32 [n, K]) -> codes float32 [n, D]: observations rendered and
    encoded in batches of batch_size rows (the last padded, so one shape is compiled)."""
    def represent(factors: np.ndarray) -> np.ndarray:
      parts = []
      for start in range(0, len(factors), self.batch_size):
        rows = factors[start:start + self.batch_size]
        pad = np.repeat(rows[-1:], self.batch_size - len(rows), axis=0)
        x = self.factors.observe(np.concatenate([rows, pad]) if len(pad) else rows)
        z = sampling.encode(self.ctx, params, prep, np.asarray(x, np.float32))
        parts.append(z.reshape(len(z), -1)[:len(rows)])
      return np.concatenate(parts)
    return represent

  def __call__(self, state, prep) -> dict[str, float]:
    """See the module docstring."""
    params, prep = distributed.local((state.params, prep))
    represent = self.representation(params, prep)
    out = {}
    for metric in self.metrics:
      rng = np.random.default_rng([self.seed, dm.METRICS.index(metric)])
      try:
        out.update(dm.COMPUTE[metric](represent, self.factors.counts, rng,
                                      **self.arguments[metric]))
      except dm.NonFiniteCodes:   # a diverged model: the figures say so
        out.update({key: math.nan for key in dm.KEYS[metric]})
    if self.ctx.workdir is not None and distributed.is_main():
      self._plot_response(represent)
      write_json(pathlib.Path(self.ctx.workdir) / f'disentanglement_{self.split}.json', {
          'split': self.split, 'step': int(jax.device_get(state.step)), **out,
          'seed': self.seed, 'factors': dict(zip(self.factors.names, self.factors.counts)),
          'arguments': self.arguments,
          'note': 'disentanglement_lib definitions with linear classifiers in place of its '
                  'sklearn ones (docs/disentanglement.md)'})
    return out

  def _plot_response(self, represent) -> None:
    from aelab import plots  # matplotlib: only where a figure is drawn
    rng = np.random.default_rng([self.seed, len(dm.METRICS)])   # its own stream
    try:
      codes, factors = dm.factor_codes(represent, self.factors.counts, rng, RESPONSE_POINTS)
    except dm.NonFiniteCodes:   # a diverged model: nothing to draw
      return
    plots.factor_response(codes, factors, self.factors.names, self.factors.counts,
                          pathlib.Path(self.ctx.workdir) / 'plots' / 'factor_response.png',
                          f'the code\'s response to each factor ({len(codes)} uniform rows: '
                          'mean, +- sd)')
