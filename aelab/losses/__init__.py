"""Loss terms as small pure functions, composed from the config.

Each term is `fn(out: Outputs, **options) -> scalar`, unweighted. The config
names the terms and their weights (and, optionally, `warmup_steps`: the weight
ramps linearly from 0 at step 0 to its value at that step, e.g. KL warm-up):

  config.loss = aelab.config.defaults.loss(
      reconstruction=dict(weight=1.0, kind='bce'),
      kl_sparsity=dict(weight=3.0, rho=0.05),
      weight_decay=dict(weight=1e-4))
  loss_fn = losses.compose(config.loss)
  total, terms = loss_fn(Outputs(x=x, recon=recon, aux=aux, params=params))

`compose` validates names and options up front (outside jit); the function it
returns is pure and jit-able and reports every active term plus the total.
Each term's options and their defaults are the table LOSS_TERMS of
aelab/config/defaults.py (the term functions' keyword defaults equal it; a test
checks). To add a term: its function in aelab/losses/terms.py, a line in TERMS
below, its options in LOSS_TERMS.
"""


from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from aelab.config.defaults import LOSS_COMMON, LOSS_TERMS
from aelab.errors import AelabError
from aelab.losses import sae_terms
from aelab.losses.terms import (CONTRACTIVE_METHODS, RECONSTRUCTION_KINDS, REDUCTIONS,
                                UNIT_INTERVAL_ACTIVATIONS, Outputs, _normalize_layer,
                                bce_from_logits, contractive, kl_sparsity, l1_activity,
                                layer_activations, reconstruction, softmax_cross_entropy,
                                vae_kl, weight_decay)

__all__ = ['CONTRACTIVE_METHODS', 'RECONSTRUCTION_KINDS', 'REDUCTIONS', 'TERMS', 'Outputs',
           'bce_from_logits', 'compose', 'layer_activations']

TERMS: dict[str, Callable[..., jax.Array]] = {
    'reconstruction': reconstruction,
    'l1_activity': l1_activity,
    'kl_sparsity': kl_sparsity,
    'weight_decay': weight_decay,
    'vae_kl': vae_kl,
    'contractive': contractive,
    'softmax_cross_entropy': softmax_cross_entropy,
    'normalized_mse': sae_terms.normalized_mse,
    'sae_l1': sae_terms.sae_l1,
    'sae_l0': sae_terms.sae_l0,
    'auxk': sae_terms.auxk,
}

# Options every term takes besides its own: the weight, and a linear warm-up of it.
_COMMON_OPTIONS = LOSS_COMMON


def _options(name: str) -> dict[str, Any]:
  """A term's own options and their defaults (aelab/config/defaults.py)."""
  return dict(LOSS_TERMS[name])


def _term(name: str) -> Callable[..., jax.Array]:
  if name not in TERMS:
    raise AelabError(
        f'unknown loss term {name!r}; valid terms: {", ".join(TERMS)}')
  return TERMS[name]


def _as_dict(name: str, cfg: Any) -> dict[str, Any]:
  if isinstance(cfg, ml_collections.ConfigDict):
    return cfg.to_dict()
  if isinstance(cfg, Mapping):
    return dict(cfg)
  raise AelabError(
      f'loss term {name!r} must be configured as a dict of weight and options, '
      f'e.g. {name}=dict(weight=1.0); got {cfg!r}')


def _check_options(name: str, opts: dict[str, Any], need_weight: bool) -> None:
  """Raises AelabError for an unknown option / bad value / missing weight."""
  valid = _options(name)
  unknown = sorted(set(opts) - set(valid) - set(_COMMON_OPTIONS))
  if unknown:
    choices = ', '.join(list(_COMMON_OPTIONS) + list(valid))
    raise AelabError(
        f'unknown option {", ".join(map(repr, unknown))} of loss term '
        f'{name!r}; valid options: {choices}')
  if 'weight' not in opts:
    if need_weight:
      raise AelabError(f'loss term {name!r} has no weight; give it one, e.g. '
                       f'--config.loss.{name}.weight=1.0 (0 turns it off)')
  else:
    w = opts['weight']
    if isinstance(w, bool) or not isinstance(w, numbers.Real):
      raise AelabError(
          f'the weight of loss term {name!r} must be a number; got {w!r}')
  if name == 'reconstruction':
    if opts.get('kind', 'mse') not in RECONSTRUCTION_KINDS:
      raise AelabError(
          f"unknown reconstruction kind {opts['kind']!r}; valid kinds: "
          f'{", ".join(RECONSTRUCTION_KINDS)}')
    if opts.get('reduction', 'mean') not in REDUCTIONS:
      raise AelabError(
          f"unknown reconstruction reduction {opts['reduction']!r}; valid "
          f'reductions: {", ".join(REDUCTIONS)}')
  if 'warmup_steps' in opts:
    steps = opts['warmup_steps']
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
      raise AelabError(f'warmup_steps of loss term {name!r} must be an integer >= 0 (0: no '
                       f'warm-up); got {steps!r}')
  if name == 'contractive' and opts.get('method', 'exact') not in CONTRACTIVE_METHODS:
    raise AelabError(f"unknown contractive method {opts['method']!r}; valid methods: "
                     f'{", ".join(CONTRACTIVE_METHODS)}')
  if 'layer' in opts:
    _normalize_layer(opts['layer'])
  if name == 'auxk' and 'k' in opts:
    k = opts['k']
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
      raise AelabError(f'auxk k is the number of dead latents that reconstruct the residual, a '
                       f'positive integer; got {k!r}')
  if name == 'kl_sparsity' and 'rho' in opts:
    rho = opts['rho']
    if (isinstance(rho, bool) or not isinstance(rho, numbers.Real)
        or not 0.0 < rho < 1.0):
      raise AelabError(
          f'kl_sparsity rho is a target mean activation in (0, 1); got {rho!r}')


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
  if name == 'kl_sparsity':
    layer = _normalize_layer(full['layer'])
    act = acts.get(layer)
    numbered = [int(k) for k in acts if k.isdigit()]
    if act is None and layer == 'code' and numbered:
      act = acts[str(max(numbered))]  # The code is the last encoder layer.
    if act is not None and act.lower() not in UNIT_INTERVAL_ACTIVATIONS:
      raise AelabError(
          f'kl_sparsity needs activations in (0, 1) (rho_hat is a mean '
          f'firing rate), but layer {layer!r} uses activation {act!r}; use '
          f"sigmoid on that layer, or l1_activity instead")
  if name == 'reconstruction' and full['kind'] == 'bce' and targets_in_unit_interval is False:
    raise AelabError(
        "reconstruction kind='bce' needs targets in [0, 1], but these "
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
    fn = _term(name)
    opts = _as_dict(name, term_cfg)
    _check_options(name, opts, need_weight=True)
    weight = float(opts.pop('weight'))
    warmup = int(opts.pop('warmup_steps', 0))
    if weight == 0.0:
      continue
    _check_applies(name, {**_options(name), **opts}, acts, targets_in_unit_interval, has_labels)
    active.append((name, fn, weight, warmup, opts))
  if not active:
    raise AelabError(
        'no active loss term: every term in config.loss has weight 0 (or '
        f'there are none); valid terms: {", ".join(TERMS)}')

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

