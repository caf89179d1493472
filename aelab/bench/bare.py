"""The references the benchmark adds to the trainer's loop: a bare jit(scan) loop of the same
forward pass and optimizer, and a chained matmul of the training dtype."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import optax


def make_bare_block(forward, tx, unroll: int | bool = 1):
  """The train step as a user would write it bare: jit(scan(step)) over batches already on the
  device, optax, the trainer's own forward pass (same model, preprocessing, noise and loss);
  params, optimizer state and the model's stats donated; no metrics, no TrainState, no sharding,
  nothing else. A model that keeps stats (an SAE's, a VQ-VAE's EMA codebook) updates them and the
  parameters it sets itself, as the trainer does (that is the model's work, not the loop's), and
  the scan unrolls as the config's train.scan_unroll says. An lbfgs update also gets the loss of
  the batch (value, grad, value_fn), as in the trainer."""
  tx = optax.with_extra_args_support(tx)

  def loss(params, prep, x, rng, step, stats):
    total, (_, _, _, aux) = forward(params, prep, {'x': x}, rng, True, step=step, stats=stats)
    return total, aux

  def block(params, opt_state, step, stats, prep, xs, key):
    def one(carry, x):
      params, opt_state, step, stats = carry
      rng = jax.random.fold_in(key, step)
      (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(params, prep, x, rng, step,
                                                                   stats)
      updates, opt_state = tx.update(grads, opt_state, params, value=value, grad=grads,
                                     value_fn=lambda p: loss(p, prep, x, rng, step, stats)[0])  # noqa: B023
      params = optax.apply_updates(params, updates)
      params = {**params, **aux['assign']} if 'assign' in aux else params
      return (params, opt_state, step + 1, aux.get('stats', stats)), value
    (params, opt_state, step, stats), values = jax.lax.scan(
        one, (params, opt_state, step, stats), xs, unroll=unroll)
    return params, opt_state, step, stats, values

  return jax.jit(block, donate_argnums=(0, 1, 2, 3))


def run_bare(block, carry, prep, xs, key, steps: int, k: int):
  """The bare loop: `steps // k` calls, no host work between them, one sync at the end."""
  t0 = time.perf_counter()
  params, opt_state, step, stats = carry
  for _ in range(steps // k):
    params, opt_state, step, stats, values = block(params, opt_state, step, stats, prep, xs, key)
  jax.block_until_ready((params, opt_state, values))
  return (params, opt_state, step, stats), time.perf_counter() - t0


class Matmul:
  """A chained n x n matmul in `dtype` (c <- c @ b, b ~ N(0, 1/n) keeps c's scale): FLOP/s."""

  def __init__(self, n: int, dtype: str):
    self.n, self.dtype = n, dtype
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    self.a = jax.random.normal(ka, (n, n), jnp.float32).astype(dtype)
    self.b = (jax.random.normal(kb, (n, n), jnp.float32) / math.sqrt(n)).astype(dtype)
    self.fn = jax.jit(lambda c, b: c @ b)
    jax.block_until_ready(self.fn(self.a, self.b))  # compile
    self.calls = 2

  def calibrate(self, target_s: float) -> None:
    """Sets `calls` so that `run()` takes about `target_s` seconds (at least 2 calls)."""
    self.calls = max(2, min(10000, round(target_s / max(self.run() / self.calls, 1e-6))))

  def run(self) -> float:
    """Seconds for `calls` chained matmuls (2 n^3 FLOPs each)."""
    c = self.a
    t0 = time.perf_counter()
    for _ in range(self.calls):
      c = self.fn(c, self.b)
    jax.block_until_ready(c)
    return time.perf_counter() - t0
