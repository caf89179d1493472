"""The train state, and the jitted, scanned train step that advances it a block of batches at a time."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from aelab.trainer import sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array       # int32 scalar; also the data position (epoch = step // steps_per_epoch)
  params: Any
  opt_state: Any
  rng: jax.Array        # base key; step t uses fold_in(rng, t)
  # What a model keeps besides its parameters, updated by each train step from its outputs (an
  # SAE's steps since each latent fired); {} for most models.
  stats: Any = flax.struct.field(default_factory=dict)

  def saved(self) -> dict:
    """The state as a checkpoint holds it: its fields, `stats` only where a model has some (so
    the checkpoints of models without stats read as they always did)."""
    fields = {'step': self.step, 'params': self.params, 'opt_state': self.opt_state,
              'rng': self.rng}
    return {**fields, 'stats': self.stats} if self.stats else fields

  @classmethod
  def from_saved(cls, saved: dict) -> 'TrainState':
    return cls(**saved)


def all_finite(tree) -> jax.Array:
  """True when every floating leaf of `tree` is finite (one fused reduction per leaf)."""
  leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)
            if jnp.issubdtype(a.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_block(forward, tx: optax.GradientTransformation, mesh, unroll: int | bool = 1,
                     replicas: str | None = None, state_sharding=None):
  """jit(lax.scan(step)) over a block of k batches: the state placed by `state_sharding`
  (default: replicated) and donated, the preprocessor replicated, batches sharded on `data`.

  block(state, prep, source, rows, check) -> (state, out): `out` holds each loss term and 'loss'
  per step [k]. With `check` (a bool the loop sets for blocks that end where it logs or saves),
  also 'grad_norm' of the block's last step, 'param_norm' after it and 'finite', whether the
  parameters and optimizer state are all finite: each is a pass over every parameter, so they
  are taken only where they are logged and checked before a save (else 0, 0 and True).

  With `replicas`, over a leading axis of state, preprocessor, source and rows (runs trained
  together, aelab/trainer/replicas.py): batched ('vmap') or one after the other ('map')."""

  def block(state, prep, source, rows, check=True):
    """source: the training set on the devices and rows its row order (aelab/trainer/batches.py
    Rows, read at state.step), or a streamed set's generator and its Keys; or the batches
    [k, B, ...] themselves with rows None (fed from the host)."""

    def train_step(state, batch):
      """(new state, this step's terms and loss, its gradients)."""
      batch = batch if rows is None else rows.batch(source, batch, batch_spec)
      rng = jax.random.fold_in(state.rng, state.step)
      loss_of = lambda p: forward(p, prep, batch, rng, True, step=state.step,  # noqa: E731
                                  stats=state.stats)
      (total, (terms, _, _, aux)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
      # The loss of this batch as a function of the parameters, for optimizers that evaluate it
      # themselves (lbfgs's line search); every other optimizer ignores these arguments.
      updates, opt_state = tx.update(grads, state.opt_state, state.params, value=total,
                                     grad=grads, value_fn=lambda p: loss_of(p)[0])
      params = optax.apply_updates(state.params, updates)
      # Parameters a model sets itself (a VQ-VAE's EMA codebook: aux['assign'], {top-level
      # name: value}) replace the optimizer's (they get no gradient).
      params = {**params, **aux['assign']} if 'assign' in aux else params
      new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                                stats=aux.get('stats', state.stats))
      return new_state, {**terms, 'loss': total}, grads

    # Steps 1..k-1 in the scan, step k after it: its gradient norm is taken once per block,
    # where the loop asks for it (no branch inside the scan).
    xs = source if rows is None else rows.at(state.step)  # [k, ...]: each step's rows or key
    k = jax.tree.leaves(xs)[0].shape[0]
    take = lambda j: jax.tree.map(lambda a: a[j], xs)  # noqa: E731  # batch j, not a copy of k-1
    state, out = jax.lax.scan(lambda s, j: train_step(s, take(j))[:2], state, jnp.arange(k - 1),
                              unroll=unroll)
    state, out_last, grads = train_step(state, take(k - 1))
    out = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), out, out_last)
    grad_norm = jax.lax.cond(check, optax.tree.norm, lambda _: jnp.zeros((), jnp.float32), grads)
    param_norm, finite = jax.lax.cond(
        check, lambda s: (optax.tree.norm(s.params), all_finite((s.params, s.opt_state))),
        lambda s: (jnp.zeros((), jnp.float32), jnp.array(True)), state)
    out.update(grad_norm=grad_norm, param_norm=param_norm, finite=finite)
    return state, out

  tx = optax.with_extra_args_support(tx)  # the others' update ignores value, grad, value_fn
  rep, batch_spec = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  fn = {None: block,
        'vmap': jax.vmap(block, in_axes=(0, 0, 0, 0, None)),
        'map': lambda state, prep, source, rows, check: _one_after_another(
            lambda a: block(*a, check), (state, prep, source, rows))}[replicas]
  return jax.jit(fn, out_shardings=(state_sharding or rep, rep), donate_argnums=(0,))


def _one_after_another(fn, xs):
  """fn over the leading axis of xs, its results stacked: lax.map unrolled. In a rolled loop
  XLA:CPU runs convolutions about 20x slower (a conv VAE's two seeds: 0.9 steps/s mapped, 17
  alone); unrolled, each run's ops are those of its lone run."""
  return stack([fn(take(xs, r)) for r in range(jax.tree.leaves(xs)[0].shape[0])])


def stack(trees):
  """Trees of equal structure stacked leaf by leaf on a new leading axis."""
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def take(tree, r: int):
  """Entry r of a stacked tree's leading axis."""
  return jax.tree.map(lambda a: a[r], tree)
