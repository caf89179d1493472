"""PNG plots for the workdir (matplotlib, Agg backend)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str | pathlib.Path) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)
  return path


def image_rows(rows: Sequence[np.ndarray], labels: Sequence[str], path: str | pathlib.Path,
               value_range: tuple[float, float] = (0.0, 1.0)) -> pathlib.Path:
  """A grid: one row per array of images [n, H, W, C] (e.g. inputs over reconstructions)."""
  n = rows[0].shape[0]
  fig, axes = plt.subplots(len(rows), n, figsize=(n * 1.0, len(rows) * 1.1), squeeze=False)
  for r, (images, label) in enumerate(zip(rows, labels)):
    for c in range(n):
      ax = axes[r, c]
      img = np.asarray(images[c])
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else np.clip(img, *value_range),
                cmap='gray', vmin=value_range[0], vmax=value_range[1])
      ax.set_xticks([])
      ax.set_yticks([])
    axes[r, 0].set_ylabel(label, rotation=0, ha='right', va='center')
  return _save(fig, path)


def vector_rows(x: np.ndarray, recon: np.ndarray, path: str | pathlib.Path,
                title: str = '') -> pathlib.Path:
  """Line plots of a few feature vectors and their reconstructions (tabular data)."""
  n = x.shape[0]
  fig, axes = plt.subplots(n, 1, figsize=(8, 1.6 * n), squeeze=False, sharex=True)
  for i in range(n):
    ax = axes[i, 0]
    ax.plot(x[i], label='input', lw=1.2)
    ax.plot(recon[i], label='reconstruction', lw=1.0, ls='--')
    ax.set_ylabel(f'row {i}')
  axes[0, 0].legend(loc='upper right', fontsize=7)
  axes[-1, 0].set_xlabel('feature')
  if title:
    axes[0, 0].set_title(title)
  return _save(fig, path)


def curves(rows: list[dict], path: str | pathlib.Path, prefix: str = 'train/') -> pathlib.Path | None:
  """One panel per metric starting with `prefix`, from metrics.jsonl rows (log scale if positive)."""
  keys = sorted({k for r in rows for k in r if k.startswith(prefix)})
  if not keys:
    return None
  fig, axes = plt.subplots(len(keys), 1, figsize=(7, 1.9 * len(keys)), squeeze=False, sharex=True)
  for ax, key in zip(axes[:, 0], keys):
    pts = [(r['step'], r[key]) for r in rows if isinstance(r.get(key), float)]
    if pts:
      steps, values = zip(*pts)
      ax.plot(steps, values, lw=1.0)
      if min(values) > 0:
        ax.set_yscale('log')
    ax.set_ylabel(key[len(prefix):], fontsize=8)
  axes[-1, 0].set_xlabel('step')
  return _save(fig, path)
