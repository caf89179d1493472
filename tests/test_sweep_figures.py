"""A sweep's figures (aelab/sweep/figures.py) from a table of finished points: a variant axis
read as its variant's fields, and each run a dot beside the mean and its min-max bar."""

import pytest

from aelab.sweep import figures


def _rows():
  rows = []
  for model, strengths in (('vae', (None,)), ('beta_vae', (4, 16)), ('beta_tcvae', (4, 10))):
    for s in strengths:
      for seed in (0, 1):
        arg = f'model={model}' + (f',strength={s}' if s else '') + ',tiny'
        rows.append({'status': 'done', 'overrides': {'arg': arg, 'seed': seed},
                     'metrics': {'test/mig': 0.1 * seed + (s or 0) / 100, 'test/sap': 0.5}})
  return rows


@pytest.mark.quick
def test_a_variant_axis_plots_each_variant_field_with_a_line_per_model():
  rows, fields = figures._variant_fields(_rows(), ['arg', 'seed'])
  assert fields == ['model', 'tiny', 'strength', 'seed']   # in order of first appearance
  assert rows[2]['overrides'] == {'model': 'beta_vae', 'strength': 4, 'tiny': True, 'seed': 0}
  series, categories, seeds = figures._series(rows, fields, 'strength', ['test/mig'],
                                              {f: f for f in fields})
  assert categories is None and seeds == 2
  by_label = {s['label']: s for s in series}
  assert set(by_label) == {'model=beta_vae', 'model=beta_tcvae'}   # the VAE has no strength
  b = by_label['model=beta_vae']
  assert b['x'] == [4, 16] and b['mean'] == pytest.approx([0.09, 0.21])
  assert b['points'] == [(4, 0.04), (4, pytest.approx(0.14)), (16, 0.16),
                         (16, pytest.approx(0.26))]


def test_the_figures_are_written_per_metric_and_together(tmp_path):
  paths = figures.plot_all(_rows(), ['arg', 'seed'], ['test/mig', 'test/sap'], tmp_path)
  names = {p.name for p in paths}
  assert {'test_mig+test_sap_vs_strength.png', 'test_mig_vs_strength.png',
          'test_sap_vs_model.png'} <= names
  assert all(p.stat().st_size > 1000 for p in paths)


def test_many_metrics_share_a_figure_under_a_short_name(tmp_path):
  """Eleven metrics' joined names (over 255 bytes) would be refused as a file name."""
  metrics = [f'test/a_long_metric_name_{i}' for i in range(11)]
  rows = [{'status': 'done', 'overrides': {'arg': f'model={m}', 'seed': seed},
           'metrics': {k: float(i + seed) for i, k in enumerate(metrics)}}
          for m in ('vae', 'beta_vae') for seed in (0, 1)]
  paths = figures.plot_all(rows, ['arg', 'seed'], metrics, tmp_path)
  names = {p.name for p in paths}
  assert '11_metrics_vs_model.png' in names
  assert 'test_a_long_metric_name_10_vs_model.png' in names and len(names) == 12
