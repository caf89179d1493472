"""Sparse dictionaries on SynthSAEBench-like activations (dataset `synth_sae`,
aelab/data/synth_features.py): true features with Zipfian firing, a hierarchy of mutually
exclusive children, low-rank correlated firing and orthogonalised directions, generated on the
devices inside each train step (nothing stored; a resumed run draws the same rows). The `sae`
evaluator scores each dictionary against the true features on the source's test rows: MCC,
uniqueness, precision / recall / F1 of each latent against its best-matching feature,
shrinkage, beside L0, variance explained and the dead latents (aelab/evaluators/sae_truth.py).

    python -m aelab.run --config=experiments/sae_synth.py:batchtopk --workdir=workdirs/synth_btk

Variants (one dictionary kind each, as experiments/sae_toy.py: `:topk` (default), `:batchtopk`,
`:matryoshka`, `:jumprelu`, `:gated`, `:l1`), on
- the CPU-sized model (default): 4096 features in 256 dimensions, mean L0 about 16; a
  dictionary of 1024 latents, k = 16;
- `:standard`: SynthSAEBench-16k (16,384 features in 768 dimensions); 4096 latents, k = 25,
  200M samples (an accelerator's job);
`samples=N` sets the training samples (default 20M on the CPU model; batches of 1024);
`:tiny` in seconds (the tests: a 512-feature source, 64 latents, 40 steps);
`dumped=DIR`: train on the rows `python -m aelab.dump` wrote to DIR (its shards, held-out rows and
truth: the `npy` source) instead of generating them, so several runs pay for the generator once.

The reference sweep, `get_sweep`: the six kinds on the same samples (the same seed: the same
rows), the table of docs/sae.md:

    python -m aelab.sweep --config=experiments/sae_synth.py --workdir=sweeps/sae_synth \
        --metric=test/mcc,test/variance_explained,test/uniqueness,test/f1,test/l0,\
test/never_fired,test/shrinkage

The 20M-sample table was trained on one dump of the stream (the generator is ~80% of a
streamed step on a CPU):

    python -m aelab.dump --config=experiments/sae_synth.py --out=DIR --rows=20000000
    python -m aelab.sweep --config=experiments/sae_synth.py:dumped=DIR --workdir=sweeps/sae_synth20m
"""

from sae_toy import KINDS, kind_of, sae_config

from aelab.config import defaults, parse_arg
from aelab.config.sweeps import sweep

VARIANTS = dict(**{k: False for k in KINDS}, standard=False, samples=0, tiny=False, dumped='')
# Each kind's sparsity on the CPU model, for an L0 near the source's 16 (k, or its penalty's
# weight) after 20M samples (at 4M, 0.002 / 0.015 / 0.008 gave that; the penalties keep
# sparsifying); the standard model's TopK kinds take k = 25, as SynthSAEBench's SAEs.
SPARSITY = {'topk': 16, 'batchtopk': 16, 'matryoshka': 16, 'jumprelu': 0.0017, 'gated': 0.007,
            'l1': 0.005}
BATCH = 1024


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  kind = kind_of(v)
  dataset = defaults.dataset('synth_sae_16k' if v.standard else 'synth_sae')
  latents, samples = (4096, 200_000_000) if v.standard else (1024, 20_000_000)
  sparsity = 25 if v.standard and kind in ('topk', 'batchtopk', 'matryoshka') else SPARSITY[kind]
  if v.tiny:
    dataset.update(num_features=512, dims=32, hierarchy_roots=4, correlation_rank=4,
                   orthogonalize_steps=10, train_preview=1024, val_rows=256, test_rows=512)
    latents, samples, sparsity = 64, 40 * 128, 8 if isinstance(sparsity, int) else sparsity
  config = sae_config(dataset, kind, sparsity, latents=latents, dead_steps=2000, auxk_k=256,
                      threshold=1.0, epochs=0, eval_every=0, tiny=False)
  batch = 128 if v.tiny else BATCH
  steps = (v.samples or samples) // batch
  if v.dumped:
    config.dataset = _dumped(v.dumped)
  config.train.update(batch_size=batch, num_epochs=0, num_steps=steps,
                      log_every=10 if v.tiny else 500, checkpoint_every=20 if v.tiny else 5000,
                      steps_per_call=10 if v.tiny else 50, progress=not v.tiny)
  if v.tiny:
    config.model.update(dead_steps=20)
    if 'auxk' in config.loss:
      config.loss.auxk.k = 16
  return config


def _dumped(directory: str):
  """The `npy` source over a dump's files (python -m aelab.dump's layout)."""
  out = defaults.dataset('npy')
  out.update(path=f'{directory}/train', val_path=f'{directory}/val.npy',
             test_path=f'{directory}/test.npy', truth_path=f'{directory}/truth.npz')
  return out


def get_sweep(arg=None):
  """Every kind, with the rest of `arg` (e.g. 'standard,samples=5000000') kept."""
  rest = [w for w in (arg or '').split(',') if w.strip() and w.strip() not in KINDS]
  return sweep('arg', [','.join([kind, *rest]) for kind in KINDS])
