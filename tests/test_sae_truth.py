"""Ground-truth scores of a sparse dictionary (aelab/evaluators/sae_truth.py), SynthSAEBench's
definitions: a perfect dictionary, a case worked by hand, duplicated and random decoders, latents
that always or never fire, and sums that add up over batches."""

from __future__ import annotations

import itertools
import math

import jax
import numpy as np
import pytest

from aelab.errors import AelabError
from aelab.evaluators import sae_truth

pytestmark = pytest.mark.quick


def _unit(a):
  a = np.asarray(a, np.float64)
  return a / np.linalg.norm(a, axis=1, keepdims=True)


def _scores(z, codes, targets, x=None, x_hat=None):
  sums = sae_truth.firing_counts(z, codes, targets, x, x_hat)
  return sae_truth.firing_scores(jax.device_get(sums))


def _codes(rng, rows, features, p=0.3):
  return ((rng.random((rows, features)) < p) * rng.uniform(0.5, 1.5, (rows, features))).astype(
      np.float32)


# 1. A perfect dictionary.

def test_a_perfect_dictionary_scores_one_everywhere():
  rng = np.random.default_rng(0)
  features, d, rows = 6, 8, 200
  truth = _unit(rng.normal(size=(features, d)))
  perm = rng.permutation(features)
  scale = rng.uniform(0.5, 3.0, features)
  decoder = truth[perm] * scale[:, None]        # latent i = feature perm[i], any length
  codes = _codes(rng, rows, features)
  assert (codes > 0).any(axis=0).all()          # every feature fires somewhere
  z = codes[:, perm] / scale                    # latent i carries feature perm[i]'s code
  x = (codes @ truth).astype(np.float32)
  x_hat = (z @ decoder).astype(np.float32)      # = x
  m = sae_truth.match(decoder, truth)
  np.testing.assert_array_equal(m.matched, perm)
  np.testing.assert_array_equal(m.best, perm)
  np.testing.assert_allclose(m.cosine, 1.0, atol=1e-6)
  assert sae_truth.decoder_scores(m) == pytest.approx({'mcc': 1.0, 'uniqueness': 1.0}, abs=1e-6)
  s = _scores(z, codes, m.best, x, x_hat)
  true_l0 = float((codes > 0).sum() / rows)
  assert s == pytest.approx({'precision': 1.0, 'recall': 1.0, 'f1': 1.0, 'accuracy': 1.0,
                             'l0': true_l0, 'true_l0': true_l0, 'dead_latents': 0.0,
                             'shrinkage': 1.0, 'explained_variance': 1.0}, abs=1e-5)


# 2. By hand: 3 latents, 4 features, 3 dims, 5 rows.

TRUTH = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]   # t0, t1, t2, t3 (t3's norm is sqrt 2)
DECODER = [[-2, 0, 0], [0, 2, 1], [0, 4, 3]]          # w0, w1, w2
# |cos|:     t0   t1             t2             t3
#   w0       1    0              0              2/(2 sqrt2) = .7071   (the sign is ignored)
#   w1       0    2/sqrt5=.8944  1/sqrt5=.4472  2/(sqrt5 sqrt2) = .6325
#   w2       0    4/5 = .8       3/5 = .6       4/(5 sqrt2) = .5657
# Best cosine: w0 -> t0, w1 -> t1, w2 -> t1. Uniqueness: {t0, t1} = 2 features / 3 latents.
# Hungarian (w0 -> t0 is 1; the best of the rest, w1 and w2 onto two of t1, t2, t3):
#   w1t1 + w2t2 = .8944 + .6    = 1.4944   <- the largest
#   w1t1 + w2t3 = .8944 + .5657 = 1.4601
#   w1t3 + w2t1 = .6325 + .8    = 1.4325
#   w1t3 + w2t2 = .6325 + .6    = 1.2325
#   w1t2 + w2t1 = .4472 + .8    = 1.2472
#   w1t2 + w2t3 = .4472 + .5657 = 1.0129
#   (w0 -> t3 instead loses .2929 for nothing: t0 is nobody else's)
# Matched: w0-t0, w1-t1, w2-t2; MCC = (1 + 2/sqrt5 + 3/5) / 3 = 2.494427 / 3 = .831476.
CODES = [[1.0, 0.0, 0.5, 0.0],    # fires: t0 rows {0, 2}, t1 {1, 2, 4}, t2 {0, 4}, t3 {2}
         [0.0, 2.0, 0.0, 0.0],
         [1.5, 1.0, 0.0, 1.0],
         [0.0, 0.0, 0.0, 0.0],
         [0.0, 0.5, 1.0, 0.0]]
LATENTS = [[0.9, 0.0, 0.3],       # fires: z0 rows {0, 3}, z1 {1, 2}, z2 {0, 2, 4}
           [0.0, 1.8, 0.0],
           [0.0, 0.7, 0.4],
           [0.2, 0.0, 0.0],
           [0.0, 0.0, 0.6]]
# Made-up inputs and outputs (the scores need only these, not their tie to the codes):
X = [[3, 4, 0], [0, 2, 0], [1, 2, 2], [0, 0, 0], [0, 0, 1]]         # norms 5, 2, 3, 0, 1
X_HAT = [[3, 0, 0], [0, 1, 0], [2, 1, 2], [1, 0, 0], [0, 0, 2]]     # norms 3, 1, 3, 1, 2


def test_matching_by_hand():
  m = sae_truth.match(DECODER, TRUTH)
  np.testing.assert_array_equal(m.matched, [0, 1, 2])
  np.testing.assert_allclose(m.cosine, [1.0, 2 / math.sqrt(5), 0.6], atol=1e-6)
  np.testing.assert_array_equal(m.best, [0, 1, 1])
  np.testing.assert_allclose(m.best_cosine, [1.0, 2 / math.sqrt(5), 0.8], atol=1e-6)
  assert sae_truth.mcc(m) == pytest.approx((1 + 2 / math.sqrt(5) + 0.6) / 3, abs=1e-6)
  assert sae_truth.mcc(m) == pytest.approx(0.831476, abs=1e-6)
  assert sae_truth.uniqueness(m) == pytest.approx(2 / 3)


def test_firing_scores_by_hand():
  # Against the best-cosine features [t0, t1, t1] (SynthSAEBench):
  #   z0 vs t0 {0,2}:    z0 {0,3}:   tp 1 (row 0), fp 1 (3), fn 1 (2), tn 2 (1, 4)
  #                      p 1/2, r 1/2, f1 1/2, accuracy 3/5
  #   z1 vs t1 {1,2,4}:  z1 {1,2}:   tp 2, fp 0, fn 1 (4), tn 2 (0, 3)
  #                      p 1, r 2/3, f1 2(2/3)/(5/3) = 4/5, accuracy 4/5
  #   z2 vs t1 {1,2,4}:  z2 {0,2,4}: tp 2 (2, 4), fp 1 (0), fn 1 (1), tn 1 (3)
  #                      p 2/3, r 2/3, f1 2/3, accuracy 3/5
  # Means: p (1/2 + 1 + 2/3)/3 = 13/18; r (1/2 + 2/3 + 2/3)/3 = 11/18;
  #        f1 (1/2 + 4/5 + 2/3)/3 = 59/90; accuracy (3/5 + 4/5 + 3/5)/3 = 2/3.
  # L0: latent fires 2 + 2 + 3 = 7 over 5 rows = 1.4; true L0: 2 + 1 + 3 + 0 + 2 = 8 / 5 = 1.6.
  # Shrinkage: row 3 has ||x|| = 0, left out; (3/5 + 1/2 + 3/3 + 2/1) / 4 = 4.1 / 4 = 1.025.
  # Explained variance: x - x_hat = (0,4,0), (0,1,0), (-1,1,0), (-1,0,0), (0,0,-1):
  #   sse 16 + 1 + 2 + 1 + 1 = 21, mse 21/5 = 4.2; sum x = (4, 8, 3), mean (.8, 1.6, .6),
  #   ||mean||^2 = .64 + 2.56 + .36 = 3.56; mean ||x||^2 = (25 + 4 + 9 + 0 + 1)/5 = 7.8;
  #   variance 7.8 - 3.56 = 4.24; 1 - 4.2/4.24 = .04/4.24 = 1/106.
  m = sae_truth.match(DECODER, TRUTH)
  s = _scores(np.float32(LATENTS), np.float32(CODES), m.best, np.float32(X), np.float32(X_HAT))
  assert s == pytest.approx({'precision': 13 / 18, 'recall': 11 / 18, 'f1': 59 / 90,
                             'accuracy': 2 / 3, 'l0': 1.4, 'true_l0': 1.6, 'dead_latents': 0.0,
                             'shrinkage': 1.025, 'explained_variance': 1 / 106}, abs=1e-6)
  # Against the Hungarian partners [t0, t1, t2] instead, only z2 changes:
  #   z2 vs t2 {0,4}: tp 2 (0, 4), fp 1 (2), fn 0, tn 2: p 2/3, r 1, f1 (4/3)/(5/3) = 4/5, acc 4/5
  #   p 13/18 again; r (1/2 + 2/3 + 1)/3 = 13/18; f1 (1/2 + 4/5 + 4/5)/3 = 7/10;
  #   accuracy (3/5 + 4/5 + 4/5)/3 = 11/15.
  s = _scores(np.float32(LATENTS), np.float32(CODES), m.matched)
  assert s == pytest.approx({'precision': 13 / 18, 'recall': 13 / 18, 'f1': 7 / 10,
                             'accuracy': 11 / 15, 'l0': 1.4, 'true_l0': 1.6,
                             'dead_latents': 0.0}, abs=1e-6)


# 3. Duplicated rows, random decoders, widths.

def _best_assignment(sim):
  """The largest mean of sim[i, p(i)] over one-to-one maps p of rows into columns (brute force)."""
  rows = np.arange(sim.shape[0])
  return max(sim[rows, list(p)].mean() for p in itertools.permutations(range(sim.shape[1]),
                                                                        sim.shape[0]))


def test_duplicated_decoder_rows_lower_uniqueness_by_the_copies():
  rng = np.random.default_rng(1)
  truth = _unit(rng.normal(size=(8, 16)))
  decoder = truth[[0, 1, 2, 3, 3, 3, 4, 4]]       # 8 latents, 5 distinct features
  m = sae_truth.match(decoder, truth)
  assert sae_truth.uniqueness(m) == 5 / 8
  np.testing.assert_array_equal(m.best, [0, 1, 2, 3, 3, 3, 4, 4])
  # Hungarian: one copy of each keeps its feature (|cos| 1), the 3 spare copies take 5, 6, 7.
  assert sorted(m.matched) == list(range(8))
  sim = sae_truth.similarities(decoder, truth)
  assert sae_truth.mcc(m) == pytest.approx(_best_assignment(sim), abs=1e-6)
  assert sae_truth.mcc(m) < 0.8     # 5 of 8 pairs at 1, 3 at random |cos| (about .2 in 16 dims)


def test_hungarian_matches_brute_force_on_rectangular_cases():
  rng = np.random.default_rng(2)
  for latents, features in ((4, 6), (6, 4)):
    decoder, truth = rng.normal(size=(latents, 3)), rng.normal(size=(features, 3))
    m = sae_truth.match(decoder, truth)
    sim = sae_truth.similarities(decoder, truth)
    best = _best_assignment(sim) if latents <= features else _best_assignment(sim.T)
    assert sae_truth.mcc(m) == pytest.approx(best, abs=1e-6)
    assert (m.matched >= 0).sum() == min(latents, features)    # 6 x 4: two latents unmatched
    assert np.isnan(m.cosine[m.matched < 0]).all()
    assert len(set(m.matched[m.matched >= 0])) == min(latents, features)


def test_a_random_decoder_scores_the_mcc_of_random_directions():
  # One latent against one feature: MCC = |cos| of two random directions in d dims, whose mean
  # is Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)) = .2026 for d = 16 (sd .146: 400 draws, se .0073).
  d = 16
  expected = math.gamma(d / 2) / (math.sqrt(math.pi) * math.gamma((d + 1) / 2))
  rng = np.random.default_rng(3)
  draws = [sae_truth.mcc(sae_truth.match(rng.normal(size=(1, d)), rng.normal(size=(1, d))))
           for _ in range(400)]
  assert abs(np.mean(draws) - expected) < 0.03
  # 64 latents against 64 features in 32 dims (E|cos| = .1422): the matching picks the larger
  # |cos|, so MCC lies above that, and below the mean of each latent's best |cos|.
  m = sae_truth.match(rng.normal(size=(64, 32)), rng.normal(size=(64, 32)))
  assert 0.1422 + 0.05 < sae_truth.mcc(m) < m.best_cosine.mean() < 0.6


# 4. Latents that fire always or never.

def test_latents_that_always_or_never_fire():
  codes = np.zeros((10, 2), np.float32)
  codes[0:4, 0] = 1.0        # feature 0 fires on 4 of 10 rows
  codes[5:7, 1] = 2.0        # feature 1 on 2
  z = np.zeros((10, 2), np.float32)
  z[:, 0] = 0.5              # latent 0 always fires: tp 4, fp 6 -> p .4, r 1, f1 .8/1.4, acc .4
                             # latent 1 never fires: tp 0, fn 2 -> p 0 (0/0), r 0, f1 0, acc .8
  s = _scores(z, codes, np.array([0, 1]))
  assert s == pytest.approx({'precision': (0.4 + 0) / 2, 'recall': (1 + 0) / 2,
                             'f1': (0.8 / 1.4 + 0) / 2, 'accuracy': (0.4 + 0.8) / 2, 'l0': 1.0,
                             'true_l0': 0.6, 'dead_latents': 1.0}, abs=1e-6)
  # A latent with no feature (-1) fires on rows its target never does: p 0, r 0 (0/0), f1 0.
  s = _scores(z, codes, np.array([-1, 1]))
  assert (s['precision'], s['recall'], s['f1']) == (0.0, 0.0, 0.0)
  assert s['accuracy'] == pytest.approx((0 + 0.8) / 2)


# 5. Sums add up over batches.

def test_sums_over_batches_give_the_one_batch_scores():
  rng = np.random.default_rng(4)
  rows, latents, features, d = 37, 5, 7, 4
  codes = _codes(rng, rows, features)
  z = np.maximum(rng.normal(size=(rows, latents)), 0).astype(np.float32)
  x = rng.normal(3.0, 1.0, size=(rows, d)).astype(np.float32)
  x_hat = (x + 0.3 * rng.normal(size=(rows, d))).astype(np.float32)
  x_hat[:2] = x[:2]
  x[5] = 0.0                                    # a row shrinkage leaves out
  targets = sae_truth.match(rng.normal(size=(latents, d)), rng.normal(size=(features, d))).best
  step = jax.jit(sae_truth.firing_counts)
  whole = jax.device_get(step(z, codes, targets, x, x_hat))
  parts = [step(z[i:i + 10], codes[i:i + 10], targets, x[i:i + 10], x_hat[i:i + 10])
           for i in range(0, rows, 10)]         # 10, 10, 10, 7 rows
  total = jax.device_get(jax.tree.map(lambda *a: sum(a[1:], a[0]), *parts))
  for k in ('rows', 'latent_fires', 'truth_fires', 'both', 'true_active', 'shrinkage_rows'):
    np.testing.assert_array_equal(total[k], whole[k])
  assert int(whole['rows']) == 37 and int(whole['shrinkage_rows']) == 36
  for k in ('shrinkage_sum', 'sse', 'sx', 'sxx'):
    np.testing.assert_allclose(total[k], whole[k], rtol=1e-5)
  a, b = sae_truth.firing_scores(total), sae_truth.firing_scores(whole)
  assert a.keys() == b.keys() and len(a) == 9
  assert a == pytest.approx(b, abs=1e-5)


# Bad inputs.

def test_bad_shapes_say_what_to_pass():
  with pytest.raises(AelabError, match='same space'):
    sae_truth.match(np.ones((3, 4)), np.ones((5, 3)))
  with pytest.raises(AelabError, match='same rows'):
    sae_truth.firing_counts(np.ones((4, 3)), np.ones((5, 2)), np.zeros(3, np.int32))
  with pytest.raises(AelabError, match='one true feature per latent'):
    sae_truth.firing_counts(np.ones((4, 3)), np.ones((4, 2)), np.zeros(2, np.int32))
  with pytest.raises(AelabError, match='together'):
    sae_truth.firing_counts(np.ones((4, 3)), np.ones((4, 2)), np.zeros(3, np.int32),
                            x=np.ones((4, 2)))
  with pytest.raises(AelabError, match='sums of firing_counts'):
    sae_truth.firing_scores({'rows': 3})
