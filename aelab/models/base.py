"""What every model kind is and can do: `Model`, the base of each kind's flax module.

A kind is one module, aelab/models/<name>.py: OPTIONS (its config fields and defaults),
build(cfg, feature_shape) -> its Model, and that Model. Callers ask the model for a capability,
never for its name; a kind without one keeps the default below (None, {} or False).

Answered from the built module alone (its fields are the resolved config):
  RECONSTRUCTS           the output reconstructs the input (a classifier's does not)
  layer_activations()    encoder layer '1'..'K' and 'code' -> activation name (loss-term checks)
  classes()              the width of a softmax head, or None
  check_data(dataset)    one-line error when the dataset does not fit (labels beyond the head)
  data_init(rows)        parameters set from the (preprocessed) training rows, rows() (called
                         only by a kind that needs them)
  initial_stats()        what the train state keeps besides the parameters (TrainState.stats)
  dictionary()           a sparse dictionary's Dictionary(latents, dead_steps), or None (a
                         dictionary also has directions(params): its decoder rows)
  param_groups(names)    {group: top-level parameter names}, e.g. 'encoder' (optimizer.frozen);
                         decoder_params() applies it to the bound parameters
From parameters (host arrays):
  filters(params)        the first layer's weights as images [n, h, w, c], or None
  export(params, stats)  every array by name and the computation by hand (`Export`)
  fit_prior(params, codes, seed)  a density fitted to the training codes of a model without a
                         prior of its own (`prior_codes` None), sampled for its samples: a
                         Gaussian mixture by default (ex-post density estimation, Ghosh et al.
                         2020); a kind with discrete codes fits its own
Applied through the forward pass (aelab/trainer/forward.py): __call__(x, train) -> (recon, aux),
encode, decode, prior_codes(n) (n codes drawn from the model's prior with the 'noise' rng, or
None: decoded, they are its samples); where a kind has them: log_weights (a likelihood: the IWAE bound), from_layer
(the forward pass continued from one of its layers' activations), and methods of the parameters
alone (an SAE's `decoder`, a dense model's `first_kernel`).
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import flax.linen as nn
import numpy as np

from aelab.errors import AelabError
from aelab.models import density


class Dictionary(NamedTuple):
  latents: int
  dead_steps: int   # a latent silent this many train steps is dead


class Step(NamedTuple):
  """One line of the computation by hand; `layers`: the feature layers it computes ('1', 'code')."""
  line: str
  layers: tuple[str, ...] = ()


class Export(NamedTuple):
  """A model's arrays by name ('encoder_1/kernel', 'W_dec', ...), what each holds (one line,
  its shape and orientation), the computation from the preprocessed row z to the output, and
  named extras for the .npz (e.g. 'layers', 'activations')."""
  arrays: dict[str, np.ndarray]
  about: dict[str, tuple[str, ...]]
  steps: list[Step]
  extras: dict[str, np.ndarray]
  orientation: str   # how to read the arrays, one line


class Model(nn.Module):
  """The base of every kind's flax module; see the module docstring."""
  input_shape: tuple[int, ...]   # one example's shape, e.g. (28, 28, 1)
  RECONSTRUCTS: ClassVar[bool] = True

  @property
  def features(self) -> int:
    """The number of input values of one example."""
    return math.prod(self.input_shape)

  @nn.nowrap
  def layer_activations(self) -> dict[str, str]:
    return {}

  @nn.nowrap
  def classes(self) -> int | None:
    return None

  @nn.nowrap
  def check_data(self, dataset) -> None:
    del dataset

  @nn.nowrap
  def data_init(self, rows) -> dict:
    del rows  # most kinds take nothing from the data
    return {}

  @nn.nowrap
  def initial_stats(self) -> dict:
    return {}

  @nn.nowrap
  def dictionary(self) -> Dictionary | None:
    return None

  @nn.nowrap
  def param_groups(self, names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Named groups of top-level parameters: 'encoder', 'decoder', 'head' where they exist."""
    groups = {g: tuple(n for n in names if n.startswith(f'{g}_') or n == g)
              for g in ('encoder', 'decoder', 'head')}
    return {g: members for g, members in groups.items() if members}

  def decoder_params(self) -> dict:
    """The parameters of the 'decoder' group (param_groups), by top-level name ({} if none)."""
    params = self.variables.get('params', {})
    return {n: params[n] for n in self.param_groups(tuple(params)).get('decoder', ())}

  @nn.nowrap
  def filters(self, params) -> np.ndarray | None:
    del params
    return None

  def prior_codes(self, n: int):
    """n codes from the model's own prior (rng stream 'noise'); None: it has none."""
    del n
    return None

  @nn.nowrap
  def fit_prior(self, params, codes: np.ndarray, seed: int):
    """A density of `codes` [N, ...] (the training split's), with sample(rng, n) and
    log_density(codes): a Gaussian mixture of the flattened codes."""
    del params
    return density.GaussianMixture.fit(codes.reshape(len(codes), -1), seed=seed)

  @nn.nowrap
  def export(self, params, stats) -> Export:
    del params, stats
    raise AelabError(f'{type(self).__name__} does not export its arrays')


class Layer(NamedTuple):
  """One dense layer in forward order: out = activation(h @ kernel + bias), kernel [in, out]."""
  name: str
  kernel: np.ndarray
  bias: np.ndarray
  activation: str


def dense_export(layers: list[Layer], outputs: list[str], codes: dict[int, tuple[str, ...]],
                 roles: dict[int, str], start: str = 'z') -> Export:
  """The Export of a stack of dense layers: kernels and biases by layer, one line each,
  `outputs[i]` = layer i's output, `codes[i]` the feature layers it computes, `roles[i]` a
  note after its line ('(the code)'); `start` names the stack's input."""
  arrays, about, steps, prev = {}, {}, [], start
  for i, layer in enumerate(layers):
    n_in, n_out = layer.kernel.shape
    arrays[f'{layer.name}/kernel'], arrays[f'{layer.name}/bias'] = layer.kernel, layer.bias
    about[f'{layer.name}/kernel'] = (
        f'{layer.name} kernel, shape [{n_in}, {n_out}] = [in, out]: row i holds the weights from '
        f'input unit i, column j those into output unit j',
        f'{layer.name}: out = {layer.activation}(h @ kernel + bias)')
    about[f'{layer.name}/bias'] = (
        f'{layer.name} bias, shape [{n_out}]: one value per output unit, one per line',)
    steps.append(Step(f'{outputs[i]} = {layer.activation}({prev} @ {layer.name}/kernel + '
                      f'{layer.name}/bias)   [{n_in} -> {n_out}]{roles.get(i, "")}',
                      codes.get(i, ())))
    prev = outputs[i].split(' ')[0]
  extras = {'layers': np.asarray([layer.name for layer in layers]),
            'activations': np.asarray([layer.activation for layer in layers])}
  return Export(arrays, about, steps, extras,
                'every kernel is [in, out] and every layer computes out = activation(h @ kernel '
                '+ bias), h a row vector [.., in]; biases are vectors [out]')
