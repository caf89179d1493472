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


def _tile(img: np.ndarray) -> np.ndarray:
  """One image [h, w, c] scaled to [0, 1] on its own range (grey [h, w] when c == 1)."""
  img = np.asarray(img, np.float64)
  lo, hi = img.min(), img.max()
  img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
  return img[..., 0] if img.shape[-1] == 1 else img


def _grid(images: np.ndarray, path: str | pathlib.Path, tile: float, title: str,
          show) -> pathlib.Path:
  """Images in a square grid of `tile`-inch tiles; show(ax, image) draws one."""
  n = len(images)
  cols = int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(cols * tile, rows * tile + 0.4), squeeze=False)
  for i, ax in enumerate(axes.flat):
    if i < n:
      show(ax, images[i])
    ax.axis('off')
  if title:
    fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def filters(images: np.ndarray, path: str | pathlib.Path, title: str = '',
            max_tiles: int = 100) -> pathlib.Path:
  """First-layer filters [n, h, w, c] as a grid of tiles, each scaled to its own range."""
  return _grid(np.asarray(images)[:max_tiles], path, 0.8, title,
               lambda ax, img: ax.imshow(_tile(img), cmap='gray', interpolation='nearest'))


def image_grid(images: np.ndarray, path: str | pathlib.Path,
               value_range: tuple[float, float] = (0.0, 1.0), title: str = '') -> pathlib.Path:
  """Images [n, H, W, C] in a square grid on a shared value range (e.g. VAE samples)."""
  return _grid(np.clip(np.asarray(images), *value_range), path, 0.9, title,
               lambda ax, img: ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap='gray',
                                         vmin=value_range[0], vmax=value_range[1]))


def pca_2d(code: np.ndarray) -> tuple[np.ndarray, str]:
  """The code itself when it is at most 2 wide, else its projection on the first two principal
  components; returns (points [n, 2], axis description)."""
  code = np.asarray(code, np.float64).reshape(len(code), -1)
  if code.shape[1] == 1:
    return np.concatenate([code, np.zeros_like(code)], axis=1), 'code (1-D)'
  if code.shape[1] == 2:
    return code, 'code'
  centred = code - code.mean(axis=0)
  _, s, vt = np.linalg.svd(centred, full_matrices=False)
  explained = s[:2] ** 2 / max(np.sum(s ** 2), 1e-30)
  return centred @ vt[:2].T, (f'PCA of the {code.shape[1]}-d code '
                              f'({100 * explained[0]:.0f}% + {100 * explained[1]:.0f}% of variance)')


def latent_scatter(code: np.ndarray, labels: np.ndarray, path: str | pathlib.Path,
                   label_names: Sequence[str] | None = None, title: str = '') -> pathlib.Path:
  """2-D scatter of the code (PCA when wider than 2) coloured by label."""
  points, axes_name = pca_2d(code)
  labels = np.asarray(labels)
  fig, ax = plt.subplots(figsize=(6.5, 5.5))
  classes = np.unique(labels)
  cmap = plt.get_cmap('tab10' if len(classes) <= 10 else 'tab20')
  for i, c in enumerate(classes):
    sel = labels == c
    name = label_names[int(c)] if label_names is not None and 0 <= int(c) < len(label_names) else str(c)
    ax.scatter(points[sel, 0], points[sel, 1], s=4, alpha=0.6, color=cmap(i % cmap.N), label=name)
  ax.legend(markerscale=3, fontsize=7, loc='best')
  ax.set_xlabel(f'{axes_name}: 1')
  ax.set_ylabel(f'{axes_name}: 2')
  if title:
    ax.set_title(title, fontsize=9)
  return _save(fig, path)


def confusion(matrix: np.ndarray, path: str | pathlib.Path,
              label_names: Sequence[str] | None = None, title: str = '') -> pathlib.Path:
  """A confusion matrix [true, predicted] of counts as a heat map, each cell labelled."""
  matrix = np.asarray(matrix)
  k = len(matrix)
  names = list(label_names) if label_names is not None and len(label_names) == k else \
      [str(i) for i in range(k)]
  size = max(4.0, 0.45 * k + 1.5)
  fig, ax = plt.subplots(figsize=(size + 1.0, size))
  image = ax.imshow(matrix, cmap='Blues', interpolation='nearest')
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  ax.set_xticks(range(k), names, rotation=90 if max(map(len, names)) > 2 else 0, fontsize=7)
  ax.set_yticks(range(k), names, fontsize=7)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  if k <= 30:
    high = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
      ax.text(j, i, str(int(count)), ha='center', va='center', fontsize=6 if k > 12 else 8,
              color='white' if count > high else 'black')
  if title:
    ax.set_title(title, fontsize=9)
  return _save(fig, path)


def sweep_metric(series: Sequence[dict], path: str | pathlib.Path, xlabel: str, ylabel: str,
                 categories: Sequence[str] | None = None, log_x: bool = False,
                 title: str = '') -> pathlib.Path:
  """A metric against one swept field: one line per series {'label', 'x', 'mean', 'low',
  'high'} (error bars from low to high where they differ from the mean). `categories`: x holds
  positions into these tick labels (a field whose values are not numbers)."""
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for s in series:
    mean = np.asarray(s['mean'], np.float64)
    spread = np.stack([mean - np.asarray(s['low']), np.asarray(s['high']) - mean])
    ax.errorbar(s['x'], mean, yerr=spread if spread.any() else None, marker='o', ms=4, lw=1.2,
                capsize=3, label=s.get('label') or None)
  if categories is not None:
    ax.set_xticks(range(len(categories)), categories)
  elif log_x:
    ax.set_xscale('log')
  if any(s.get('label') for s in series):
    ax.legend(fontsize=7, loc='best')
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title, fontsize=9)
  return _save(fig, path)


def series(lines: dict[str, list[tuple[float, float]]], path: str | pathlib.Path, xlabel: str,
           ylabel: str, title: str = '') -> pathlib.Path:
  """Named (x, y) series on one set of axes (e.g. accuracy over steps, two runs)."""
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for label, pts in lines.items():
    xs, ys = zip(*pts)
    ax.plot(xs, ys, marker='o', ms=3, lw=1.2, label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=9)
  return _save(fig, path)
