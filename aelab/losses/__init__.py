"""Loss terms as small pure functions, composed from the config.

Each term is `fn(out: Outputs, **options) -> scalar`, unweighted, marked @term in a module of
this package: its keyword defaults are its options (aelab.config.catalog reads them; nothing else
lists the terms). The config names the terms and their weights (and, optionally,
`warmup_steps`: the weight ramps linearly from 0 at step 0 to its value at that step):

  config.loss = aelab.config.defaults.loss(
      reconstruction=dict(weight=1.0, kind='bce'),
      kl_sparsity=dict(weight=3.0, rho=0.05),
      weight_decay=dict(weight=1e-4))
  loss_fn = losses.compose(config.loss)
  total, terms = loss_fn(Outputs(x=x, recon=recon, aux=aux, params=params))

`compose` validates names and options up front (outside jit); the function it returns is pure
and jit-able and reports every active term plus the total.
"""


from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from aelab.config import catalog, defaults
from aelab.errors import AelabError
from aelab.losses.terms import (UNIT_INTERVAL_ACTIVATIONS, Outputs, normalize_layer,
                                bce_from_logits, layer_activations)

__all__ = ['Outputs', 'bce_from_logits', 'compose', 'layer_activations', 'normalize_layer',
           'term_function']


def term_function(name: str) -> Callable[..., jax.Array]:
  """The function of loss term `name` (a one-line error listing the terms for a bad name)."""
  entry = catalog.entry('term', name)
  return getattr(importlib.import_module(entry.module), entry.name)


def _as_dict(name: str, cfg: Any) -> dict[str, Any]:
  if isinstance(cfg, ml_collections.ConfigDict):
    return cfg.to_dict()
  if isinstance(cfg, Mapping):
    return dict(cfg)
  raise AelabError(
      f'loss term {name!r} must be configured as a dict of weight and options, '
      f'e.g. {name}=dict(weight=1.0); got {cfg!r}')


def _check_applies(name: str, full: dict[str, Any], acts: dict[str, str],
                   targets_in_unit_interval: bool | None, has_labels: bool | None) -> None:
  """Raises AelabError when term `name` with options `full` cannot apply to this model (its
  layers' activations `acts`) or data."""
  if name == 'softmax_cross_entropy' and has_labels is False:
    raise AelabError('loss term softmax_cross_entropy needs labels, but this dataset has none; '
                     'use a labelled dataset (e.g. mnist, or csv with a label_column)')
  if name == 'contractive' and full['method'] == 'sigmoid_layer' and acts:
    numbered = sorted(k for k in acts if k.isdigit())
    if numbered != ['1'] or acts['1'].lower() != 'sigmoid':
      raise AelabError(
          "contractive method='sigmoid_layer' is the closed form for one sigmoid encoder "
          f'layer; this encoder has layers {", ".join(f"{k}: {acts[k]}" for k in numbered)}. '
          "Use method='exact'")
  numbered = any(k.isdigit() for k in acts)
  known = {*acts, 'code'} if numbered else set(acts)  # the code is the last numbered layer
  if 'layer' in full and acts and normalize_layer(full['layer']) not in known:
    valid = ', '.join(sorted(acts, key=lambda k: (k != 'code', k.zfill(4))))
    raise AelabError(f"{name}'s layer {full['layer']!r} is not a layer of this model; its "
                     f'layers: {valid}')
  if name == 'kl_sparsity':
    layer = normalize_layer(full['layer'])
    act = acts.get(layer)
    numbered = [int(k) for k in acts if k.isdigit()]
    if act is None and layer == 'code' and numbered:
      act = acts[str(max(numbered))]  # The code is the last encoder layer.
    if act is not None and act.lower() not in UNIT_INTERVAL_ACTIVATIONS:
      raise AelabError(
          f'kl_sparsity needs activations in (0, 1) (rho_hat is a mean '
          f'firing rate), but layer {layer!r} uses activation {act!r}; use '
          f"sigmoid on that layer, or l1_activity instead")
  if name == 'reconstruction' and full['kind'] in ('bce', 'logistic') and \
      targets_in_unit_interval is False:
    raise AelabError(
        f"reconstruction kind={full['kind']!r} needs targets in [0, 1], but these "
        "targets are not; use preprocessing 'none' on [0, 1] data, or "
        "kind='mse'")


def compose(
    loss_cfg: ml_collections.ConfigDict | Mapping[str, Any],
    layer_activations: Mapping[Any, str] | None = None,  # pylint: disable=redefined-outer-name
    targets_in_unit_interval: bool | None = None,
    has_labels: bool | None = None,
) -> Callable[[Outputs], tuple[jax.Array, dict[str, jax.Array]]]:
  """Builds loss_fn(out) -> (total, {term: unweighted value}).

  Args:
    loss_cfg: term name -> {weight, **options}. Weight-0 terms are skipped.
    layer_activations: optional layer ('code', '1', '2', ...) -> activation
      name; kl_sparsity on a layer that is not sigmoid is then an error
      (layers missing from it are not checked; 'code' falls back to the
      highest numbered layer).
    targets_in_unit_interval: pass False when the targets may leave [0, 1];
      reconstruction kind='bce' is then an error.
    has_labels: pass False when the training data have no labels;
      softmax_cross_entropy is then an error.

  Raises:
    AelabError: unknown term / option / value, missing weight, no active term,
      or a term that cannot apply to this model or data.
  """
  acts = {str(k): str(v) for k, v in (layer_activations or {}).items()}
  active = []
  for name, term_cfg in loss_cfg.items():
    opts = _as_dict(name, term_cfg)
    defaults.check_term(name, opts, need_weight=True)
    fn = term_function(name)
    weight = float(opts.pop('weight'))
    warmup = int(opts.pop('warmup_steps', 0))
    if fn.check is not None:
      fn.check(**opts)
    if weight == 0.0:
      continue
    _check_applies(name, {**catalog.options('term', name), **opts}, acts,
                   targets_in_unit_interval, has_labels)
    active.append((name, fn, weight, warmup, opts))
  if not active:
    raise AelabError(
        'no active loss term: every term in config.loss has weight 0 (or '
        f'there are none); valid terms: {", ".join(catalog.names("term"))}')

  def loss_fn(out: Outputs) -> tuple[jax.Array, dict[str, jax.Array]]:
    terms = {}
    total = 0.0
    for name, fn, weight, warmup, opts in active:
      value = fn(out, **opts)
      terms[name] = value
      if warmup and out.step is not None:
        ramp = jnp.minimum(1.0, jnp.asarray(out.step, jnp.float32) / warmup)
        total = total + weight * ramp * value
      else:
        total = total + weight * value
    return total, terms

  # The trainer must fill Outputs.step when a weight warms up.
  loss_fn.needs_step = any(warmup for _, _, _, warmup, _ in active)
  return loss_fn

