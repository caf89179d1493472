"""Benchmark: a TopK sparse dictionary of the literature's size on activation vectors: d = 512,
16,384 latents, k = 32, normalized MSE + AuxK, Adam; toy activations (dataset toy_features; only
their shape matters for the speed).

    python -m aelab.bench --config=experiments/bench_sae.py --out=bench_sae.json
    python -m aelab.bench --config=experiments/bench_sae.py:approx --out=bench_sae_approx.json

`tokens/s` is the table's examples/s (one activation vector per token). Variants: `approx`
(jax.lax.approx_max_k instead of jax.lax.top_k, for the model's top k and AuxK's is exact),
`batch=N` (default 1024 on a CPU-sized run; the literature uses 4096 on accelerators), `tiny`
(d 64, 512 latents: seconds, the tests). Per train step the counted matmul FLOPs are about
6 * B * d * n (encoder and decoder, forward and backward) plus AuxK's decoder product.
"""

from sae_toy import get_config as sae_toy_config

from aelab.config import parse_arg
from aelab.errors import AelabError


def get_config(arg=None):
  v = parse_arg(arg, approx=False, batch=int, tiny=False)
  if v.batch is not None and v.batch <= 0:
    raise AelabError(f"unknown variant 'batch={v.batch}' of bench_sae.py; batch=N needs N > 0")
  config = sae_toy_config('topk')
  config.dataset.update(num_examples=16384, num_features=2048, dims=512, probability=0.004)
  config.model.update(latents=16384, k=32, dead_steps=1000, top_k='approx' if v.approx else 'exact')
  config.loss.auxk.k = 512
  config.train.update(batch_size=v.batch or 1024, num_epochs=10, steps_per_call=5, log_every=50,
                      checkpoint_every=0)
  config.evals.val.every = 0
  if v.tiny:
    config.dataset.update(num_examples=2048, num_features=128, dims=64)
    config.model.update(latents=512, k=8)
    config.loss.auxk.k = 32
    config.train.update(batch_size=v.batch or 128)
  return config
