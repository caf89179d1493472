"""Every figure aelab draws (PNG for the workdir; PDF or SVG where a user names one), with
matplotlib's object API on the Agg canvas: no pyplot, no global figure state, each file written
atomically (aelab/files.py). Log axes label their ticks in plain text (1e-03), not with mathtext,
whose parser costs more than the rest of a small figure."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.figure import Figure

from aelab import files

FORMATS = ('png', 'pdf', 'svg')


def _subplots(nrows: int = 1, ncols: int = 1, **kwargs):
  """(figure, axes [nrows, ncols]) on the Agg canvas."""
  fig = Figure(figsize=kwargs.pop('figsize'))
  return fig, fig.subplots(nrows, ncols, squeeze=False, **kwargs)


def _save(fig, path: str | pathlib.Path, tight: bool = True) -> pathlib.Path:
  """Writes `fig` to `path` (its format from the suffix; PNG at 100 dpi)."""
  path = pathlib.Path(path)
  fmt = path.suffix.lower().lstrip('.') or 'png'
  with files.atomic(path) as tmp:
    fig.savefig(tmp, format=fmt, dpi=100, bbox_inches='tight' if tight else None)
  return path


def _one(figsize):
  fig, axes = _subplots(figsize=figsize)
  return fig, axes[0, 0]


def _log_y(ax, decades: float) -> None:
  """A log y axis labelled 1, 2, 5 x 10^k (1 x 10^k only over more than two decades)."""
  ax.set_yscale('log')
  subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0,)
  ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
  ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f'{v:g}'))
  ax.yaxis.set_minor_locator(ticker.NullLocator())


def _mosaic(images: np.ndarray, cols: int, fill: float) -> np.ndarray:
  """Images [n, h, w, c] tiled `cols` to a row with a 1-pixel gap of `fill`: one array, drawn
  by one imshow (an axes per tile costs tens of milliseconds each)."""
  n, h, w, c = images.shape
  rows = -(-n // cols)
  out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, c), fill, np.float64)
  for i, img in enumerate(images):
    r, q = divmod(i, cols)
    out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = img
  return out[..., 0] if c == 1 else out


def _show(ax, mosaic: np.ndarray, value_range: tuple[float, float]) -> None:
  ax.imshow(mosaic, cmap='gray', vmin=value_range[0], vmax=value_range[1],
            interpolation='nearest')
  ax.set_xticks([])
  ax.set_yticks([])


def image_rows(rows: Sequence[np.ndarray], labels: Sequence[str], path: str | pathlib.Path,
               value_range: tuple[float, float] = (0.0, 1.0)) -> pathlib.Path:
  """A grid: one row per array of images [n, H, W, C] (e.g. inputs over reconstructions)."""
  n, h = rows[0].shape[0], rows[0].shape[1]
  images = np.clip(np.concatenate([np.asarray(r, np.float64) for r in rows]), *value_range)
  fig, axes = _subplots(figsize=(n * 1.0 + 1.2, len(rows) * 1.1))
  _show(axes[0, 0], _mosaic(images, n, value_range[1]), value_range)
  axes[0, 0].set_yticks([r * (h + 1) + h / 2 for r in range(len(rows))], labels)
  return _save(fig, path)


def vector_rows(x: np.ndarray, recon: np.ndarray, path: str | pathlib.Path,
                title: str = '') -> pathlib.Path:
  """Line plots of a few feature vectors and their reconstructions (tabular data)."""
  n = x.shape[0]
  fig, axes = _subplots(n, 1, figsize=(8, 1.6 * n), sharex=True)
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
  """One panel per metric starting with `prefix`, from metrics.jsonl rows (a log scale where the
  values are positive and span more than a factor of 10)."""
  keys = sorted({k for r in rows for k in r if k.startswith(prefix)})
  if not keys:
    return None
  fig, axes = _subplots(len(keys), 1, figsize=(7, 1.9 * len(keys)), sharex=True)
  for ax, key in zip(axes[:, 0], keys):
    pts = [(r['step'], r[key]) for r in rows if isinstance(r.get(key), float)]
    if pts:
      steps, values = zip(*pts)
      ax.plot(steps, values, lw=1.0, ms=3, marker='o' if len(pts) < 20 else None)  # one point shows
      if min(values) > 0 and max(values) > 10 * min(values):  # a log scale where it shows more
        _log_y(ax, np.log10(max(values) / min(values)))
    ax.set_ylabel(key[len(prefix):], fontsize=8)
    ax.tick_params(labelsize=7)
  axes[-1, 0].set_xlabel('step')
  height = 1.9 * len(keys)  # fixed margins (inches): one draw, where a tight box takes two
  fig.subplots_adjust(left=0.14, right=0.98, bottom=0.45 / height, top=1 - 0.1 / height,
                      hspace=0.12)
  return _save(fig, path, tight=False)


def _tile(img: np.ndarray) -> np.ndarray:
  """One image [h, w, c] scaled to [0, 1] on its own range."""
  img = np.asarray(img, np.float64)
  lo, hi = img.min(), img.max()
  return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _grid(images: np.ndarray, path: str | pathlib.Path, tile: float, title: str,
          value_range: tuple[float, float]) -> pathlib.Path:
  """Images [n, h, w, c] in a square grid of `tile`-inch tiles."""
  cols = int(np.ceil(np.sqrt(len(images))))
  rows = int(np.ceil(len(images) / cols))
  fig, axes = _subplots(figsize=(cols * tile, rows * tile + 0.4))
  _show(axes[0, 0], _mosaic(images, cols, value_range[1]), value_range)
  axes[0, 0].axis('off')
  if title:
    fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def filters(images: np.ndarray, path: str | pathlib.Path, title: str = '',
            max_tiles: int = 100) -> pathlib.Path:
  """First-layer filters [n, h, w, c] as a grid of tiles, each scaled to its own range."""
  tiles = np.stack([_tile(img) for img in np.asarray(images)[:max_tiles]])
  return _grid(tiles, path, 0.8, title, (0.0, 1.0))


def image_grid(images: np.ndarray, path: str | pathlib.Path,
               value_range: tuple[float, float] = (0.0, 1.0), title: str = '') -> pathlib.Path:
  """Images [n, H, W, C] in a square grid on a shared value range (e.g. VAE samples)."""
  return _grid(np.clip(np.asarray(images, np.float64), *value_range), path, 0.9, title,
               value_range)


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
  fig, ax = _one(figsize=(6.5, 5.5))
  classes = np.unique(labels)
  cmap = colormaps['tab10' if len(classes) <= 10 else 'tab20']
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
  fig, ax = _one(figsize=(size + 1.0, size))
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


def latent_density(frequency: np.ndarray, path: str | pathlib.Path, floor: float, dense: float,
                   xlabel: str, title: str = '') -> pathlib.Path:
  """The histogram of log10 of each latent's firing frequency (those that never fired at
  log10(floor), the left edge), with the dense threshold marked."""
  fig, ax = _one(figsize=(6, 3.5))
  ax.hist(np.log10(np.maximum(frequency, floor)), bins=60, color='tab:blue')
  ax.axvline(np.log10(dense), color='tab:red', lw=1, ls='--', label=f'dense ({dense:.0%})')
  ax.set_xlabel(xlabel)
  ax.set_ylabel('latents')
  if title:
    ax.set_title(title, fontsize=10)
  ax.legend(fontsize=8)
  return _save(fig, path)


def sweep_metric(series: Sequence[dict], path: str | pathlib.Path, xlabel: str, ylabel: str,
                 categories: Sequence[str] | None = None, log_x: bool = False,
                 title: str = '') -> pathlib.Path:
  """A metric against one swept field: one line per series {'label', 'x', 'mean', 'low',
  'high'} (error bars from low to high where they differ from the mean) and, with 'points'
  [(x, value)], a dot per run where a point has several. `categories`: x holds positions into
  these tick labels (a field whose values are not numbers)."""
  fig, ax = _one(figsize=(6.5, 4.2))
  for s in series:
    mean = np.asarray(s['mean'], np.float64)
    spread = np.stack([mean - np.asarray(s['low']), np.asarray(s['high']) - mean])
    line = ax.errorbar(s['x'], mean, yerr=spread if spread.any() else None, marker='o', ms=4,
                       lw=1.2, capsize=3, label=s.get('label') or None)
    if spread.any() and s.get('points'):
      px, py = zip(*s['points'])
      ax.scatter(px, py, s=9, color=line[0].get_color(), alpha=0.6, zorder=3)
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
  fig, ax = _one(figsize=(6.5, 4))
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


def frontier(sweeps: Sequence, path: str | pathlib.Path, split: str) -> pathlib.Path:
  """L0 (log scale) against the variance explained, one line per sweep (aelab.analysis.frontier:
  `.label` and `.points` with `.l0`, `.variance_explained`, `.fraction_recovered`); where some
  sweep has fraction_recovered, a second panel draws it against L0 the same way."""
  panels = [('variance_explained', f'variance explained ({split})')]
  if any(p.fraction_recovered is not None for s in sweeps for p in s.points):
    panels.append(('fraction_recovered', f'downstream fraction recovered ({split})'))
  fig, axes = _subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2))
  for ax, (field, ylabel) in zip(axes[0], panels):
    for s in sweeps:
      pts = [p for p in s.points if getattr(p, field) is not None]
      if pts:
        ax.plot([p.l0 for p in pts], [getattr(p, field) for p in pts], marker='o', ms=4, lw=1.2,
                label=s.label)
    ax.set_xscale('log')
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f'{v:g}'))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(f'L0: active latents per example ({split}, log scale)')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8, loc='lower right')
    ax.set_title(f'L0 vs {field.replace("_", " ")}', fontsize=10)
  return _save(fig, path)


def traversals(images: np.ndarray, row_labels: Sequence[str], steps: Sequence[float],
               path: str | pathlib.Path, value_range: tuple[float, float] = (0.0, 1.0),
               title: str = '', xlabel: str = '') -> pathlib.Path:
  """Latent traversals: images [rows, cols, H, W, C], one row per code dimension (`row_labels`),
  one column per value of it (`steps`, the tick labels), on a shared value range."""
  rows, cols, h, w = images.shape[:4]
  tiles = np.clip(np.asarray(images, np.float64).reshape(rows * cols, *images.shape[2:]),
                  *value_range)
  fig, ax = _one(figsize=(cols * 0.8 + 1.4, rows * 0.8 + 1.0))
  _show(ax, _mosaic(tiles, cols, value_range[1]), value_range)
  ax.set_yticks([r * (h + 1) + h / 2 for r in range(rows)], row_labels, fontsize=8)
  ax.set_xticks([c * (w + 1) + w / 2 for c in range(cols)], [f'{s:+g}' for s in steps],
                fontsize=8)
  if xlabel:
    ax.set_xlabel(xlabel, fontsize=8)
  if title:
    ax.set_title(title, fontsize=9)
  return _save(fig, path)


def factor_response(codes: np.ndarray, factors: np.ndarray, names: Sequence[str],
                    counts: Sequence[int], path: str | pathlib.Path,
                    title: str = '') -> pathlib.Path:
  """The code's response to each factor: a grid with a row per code unit (codes [n, D]) and a
  column per factor (factors int [n, K], `names`, `counts` values each), each cell the unit's
  mean over the rows at each value of the factor (the other factors uniform), with its
  mean +- sd band; a row shares one y range. A disentangled unit moves in one column only."""
  codes, factors = np.asarray(codes, np.float64), np.asarray(factors)
  d, k = codes.shape[1], len(names)
  fig, axes = _subplots(d, k, figsize=(1.7 * k + 0.8, 0.9 * d + 1.0), sharey='row')
  for j in range(k):
    values = np.arange(counts[j])
    onehot = factors[:, j][:, None] == values[None, :]                     # [n, V]
    n = np.maximum(onehot.sum(0), 1)
    mean = codes.T @ onehot / n                                            # [D, V]
    sd = np.sqrt(np.maximum((codes.T ** 2) @ onehot / n - mean ** 2, 0.0))
    for i in range(d):
      ax = axes[i, j]
      ax.fill_between(values, mean[i] - sd[i], mean[i] + sd[i], alpha=0.25, lw=0)
      ax.plot(values, mean[i], lw=1.2)
      ax.tick_params(labelsize=6)
      if i == d - 1:
        ax.set_xlabel(names[j], fontsize=8)
      else:
        ax.set_xticklabels([])
      if j == 0:
        ax.set_ylabel(f'z{i}', fontsize=8, rotation=0, labelpad=12)
  if title:
    fig.suptitle(title, fontsize=9)
  return _save(fig, path)
