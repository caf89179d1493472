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


def all_finite(tree) -> jax.Array:
  """True when every floating leaf of `tree` is finite (one fused reduction per leaf)."""
  leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)
            if jnp.issubdtype(a.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_block(forward, tx: optax.GradientTransformation, mesh, unroll: int | bool = 1):
  """jit(lax.scan(step)) over a block of k batches: state and preprocessor replicated (the state
  donated), batches sharded on `data`.

  block(state, prep, source, idx) -> (state, out): `out` holds each loss term and 'loss' per
  step [k]; 'grad_norm' of the block's last step and 'param_norm' after it (norms cost a pass
  over every parameter, so they are taken once a block, where they are logged); and 'finite',
  whether the parameters and optimizer state after the block are all finite.
  """

  def step(carry, xs):
    state, prep, grad_norm = carry
    batch, last = xs
    rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(lambda p: forward(p, prep, batch, rng, True, step=state.step),
                                 has_aux=True)
    (total, (terms, _, _)), grads = grad_fn(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = jax.lax.cond(last, optax.tree.norm, lambda _: grad_norm, grads)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return (new_state, prep, grad_norm), {**terms, 'loss': total}

  def block(state, prep, source, idx):
    """source: the training set on the devices and idx [k, B] rows of it, or the batches
    [k, B, ...] themselves with idx None (fed from the host)."""
    batches = source if idx is None else jax.tree.map(
        lambda a: jax.lax.with_sharding_constraint(a[idx], batches_spec), source)
    k = idx.shape[0] if idx is not None else jax.tree.leaves(source)[0].shape[0]
    last = jnp.arange(k) == k - 1
    carry = (state, prep, jnp.zeros((), jnp.float32))
    (state, _, grad_norm), out = jax.lax.scan(step, carry, (batches, last), unroll=unroll)
    out.update(grad_norm=grad_norm, param_norm=optax.tree.norm(state.params),
               finite=all_finite((state.params, state.opt_state)))
    return state, out

  rep, batches_spec = sharding.replicated(mesh), sharding.batch_sharding(mesh, 1)
  return jax.jit(block, out_shardings=(rep, rep), donate_argnums=(0,))
