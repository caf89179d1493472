"""Inspection CLI: deep features, weights, reconstructions, anomaly scores and (sparse
autoencoders) per-latent statistics of a trained run.

    python -m aelab.inspect features    --workdir=DIR --layer=1 --input=rows.csv --out=h1.csv
    python -m aelab.inspect weights     --workdir=DIR --out=weights.npz   (or --out=DIR: CSV files)
    python -m aelab.inspect weights     --workdir=DIR --format=saelens --out=DIR   (an SAE for
        SAELens: cfg.json, sae_weights.safetensors)
    python -m aelab.inspect reconstruct --workdir=DIR --split=test --out=recon.csv \\
        [--space=normalized]
    python -m aelab.inspect anomaly     --workdir=DIR --input=rows.csv --out=scores.csv \\
        [--space=input] [--per-feature] [--threshold=0.99] [--positive=malignant]
    python -m aelab.inspect latents     --workdir=DIR --split=test --out=latents.csv \\
        [--latent=J ... | --top=N] [--examples=16]   (a sparse autoencoder: model 'sae')

Every verb uses the latest checkpoint in DIR (or --step) and the preprocessing saved with it;
rows come from a CSV / NPZ file (--input) or a split of the run's dataset (--split). Outputs are
written atomically and start with a header that says exactly what the numbers are.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from aelab import cli, files
from aelab.errors import AelabError

if TYPE_CHECKING:
  from aelab.analysis import inputs, runs

PROG = 'python -m aelab.inspect'


def _parser() -> argparse.ArgumentParser:
  parser = cli.Parser(prog=PROG, description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
  verbs = parser.add_subparsers(dest='verb', metavar='VERB', parser_class=cli.Parser)
  verbs.required = True

  def verb(name: str, help_: str, rows: bool = True) -> argparse.ArgumentParser:
    p = verbs.add_parser(name, help=help_, description=help_)
    p.add_argument('--workdir', required=True, help='the run directory python -m aelab.run wrote')
    p.add_argument('--step', type=int, default=None, help='checkpoint step (default: the latest)')
    if rows:
      src = p.add_mutually_exclusive_group(required=True)
      src.add_argument('--input', help='rows to use: a .csv or .npz file (raw, input units)')
      src.add_argument('--split', choices=('train', 'val', 'test'),
                       help="a split of the run's own dataset")
      p.add_argument('--label-column', default=None,
                     help="CSV label column (default: the run's; '' for none)")
      p.add_argument('--batch-size', type=int, default=1024)
    return p

  p = verb('features', 'activations of one encoder layer for every row (like H2O deepfeatures)')
  p.add_argument('--layer', required=True, help='1..depth of the encoder, or code')
  p.add_argument('--out', required=True, help='output .csv or .npz')
  p = verb('weights', 'every kernel [in, out] and bias, and the preprocessing statistics',
           rows=False)
  p.add_argument('--out', required=True, help='an .npz file, or a directory for one CSV per array '
                 '(--format=saelens: a directory)')
  p.add_argument('--format', choices=('aelab', 'saelens'), default='aelab',
                 help="aelab's arrays (default), or a sparse autoencoder as a SAELens directory "
                      '(cfg.json, sae_weights.safetensors; docs/sae.md)')
  p = verb('reconstruct', 'reconstructions of every row, in input units by default')
  p.add_argument('--space', choices=('input', 'normalized'), default='input',
                 help='input units (preprocessing inverted) or the normalized network output')
  p.add_argument('--out', required=True, help='output .csv or .npz')
  p = verb('anomaly', "per-row reconstruction error (H2O's Reconstruction.MSE by default)")
  p.add_argument('--space', choices=('normalized', 'input'), default='normalized',
                 help='where the error is measured: the preprocessed space (as H2O) or input units')
  p.add_argument('--per-feature', action='store_true', help='also each feature\'s squared error')
  p.add_argument('--threshold', type=float, default=None, metavar='QUANTILE',
                 help='flag rows above this quantile (e.g. 0.99) of the training split\'s errors')
  p.add_argument('--positive', default=None, metavar='LABEL',
                 help='report the AUROC of the errors for rows with this label vs the rest')
  p.add_argument('--out', required=True, help='output .csv or .npz')
  p = verb('latents', "a sparse autoencoder's per-latent statistics (one row per latent) and the "
           'rows that activate chosen latents most')
  which = p.add_mutually_exclusive_group()
  which.add_argument('--latent', type=int, action='append', metavar='J',
                     help='also the top-activating rows of latent J (from 0); repeatable')
  which.add_argument('--top', type=int, metavar='N',
                     help='also the top-activating rows of the N most frequently firing latents')
  p.add_argument('--examples', type=int, default=16, metavar='K',  # latents.DEFAULT_EXAMPLES
                 help='top-activating rows per latent (default 16)')
  p.add_argument('--out', required=True,
                 help='output .csv or .npz; the top rows go to <name>_top.csv (CSV) and, for '
                      'image data, <name>_top.png')
  return parser


class _Output(NamedTuple):
  """What a verb writes: header lines, CSV columns and their values, NPZ arrays, a summary."""
  header: list[str]
  columns: list[str]
  values: list[Any]
  arrays: dict[str, Any]
  summary: str


def _features(run: runs.Run, rows: inputs.Rows, args: argparse.Namespace,
              where: str) -> _Output:
  from aelab.analysis import runs
  layer = int(args.layer) if args.layer.strip().isdigit() else args.layer.strip()
  h = runs.features(run, rows.x, layer, args.batch_size)
  k, code = runs.layer_number(run, layer), runs.layer_number(run, 'code')
  header = [f'aelab features: layer {k} of {max(run.depth, code)} ({h.shape[1]} units'
            f'{", the code" if k == code else ""}) of {where}', *runs.formula(run, through=layer)]
  cols = [f'DF.L{k}.C{j + 1}' for j in range(h.shape[1])]
  if run.model.dictionary() is not None:
    header.append(f'the latents of a sparse autoencoder: column DF.L{k}.C<j+1> holds latent j '
                  '(numbered from 0, as aelab.inspect latents and the rows of W_dec number them)')
  return _Output(header, cols, [h], {'features': h, 'columns': np.asarray(cols)},
                 f'layer {k} features [{len(h)}, {h.shape[1]}]')


def _reconstruct(run: runs.Run, rows: inputs.Rows, args: argparse.Namespace, where: str,
                 names: list[str]) -> _Output:
  from aelab.analysis import runs
  r = runs.reconstruct(run, rows.x, args.space, args.batch_size)
  unit = ('input units (preprocessing inverted)' if args.space == 'input'
          else f'the normalized space the network works in (preprocessing {run.mode!r})')
  arrays = {'reconstruction': r, 'space': np.asarray(args.space), 'columns': np.asarray(names)}
  return _Output([f'aelab reconstructions in {unit} of {where}', *runs.formula(run)], names,
                 [r.reshape(len(r), -1)], arrays,
                 f'reconstructions [{len(r)}, {run.num_features}] in {args.space} space')


def _anomaly(run: runs.Run, rows: inputs.Rows, args: argparse.Namespace, where: str,
             names: list[str]) -> _Output:
  from aelab.analysis import anomaly, inputs, runs
  se = anomaly.errors(run, rows.x, args.space, per_feature=True, batch_size=args.batch_size)
  err, n = se.mean(axis=1), len(se)
  if args.space == 'normalized':
    space = (f'normalized space (preprocessing {run.mode!r}: '
             f'{runs.formula(run)[0].split("   [")[0]})'
             + (', as H2O computes it' if run.mode == 'h2o' else ''))
    target = 'z_hat - z'
  else:
    space, target = 'input units (preprocessing inverted)', 'x_hat - x'
  out = _Output([f'aelab anomaly scores of {where}',
                 f'Reconstruction.MSE = mean over the {se.shape[1]} features of ({target})^2, '
                 f'in {space}'],
                ['Reconstruction.MSE'], [err], {'error': err, 'space': np.asarray(args.space)},
                f'{n} anomaly scores in {args.space} space')
  if args.per_feature:
    out.header.append(f'reconstr_<feature>.SE = ({target})^2 of that feature')
    out.columns.extend(f'reconstr_{c}.SE' for c in names)
    out.values.append(se)
    out.arrays.update(per_feature=se, columns=np.asarray(names))
  summary = out.summary
  if args.threshold is not None:
    anomaly.check_quantile(args.threshold)
    train_x = inputs.from_split(run, 'train').x
    cut = anomaly.threshold(run, args.threshold, train_x, args.space, args.batch_size)
    flagged = err > cut
    out.header.append(f'threshold = {cut:.9g}, the {args.threshold} quantile of the errors of the '
                      f'run\'s {len(train_x)} training rows; is_anomaly = error > threshold '
                      f'({int(flagged.sum())} of {n} rows)')
    out.columns.append('is_anomaly')
    out.values.append(flagged.astype(np.int32))
    out.arrays.update(threshold=np.asarray(cut), is_anomaly=flagged)
    summary += f', {int(flagged.sum())} above the threshold {cut:.4g}'
  if args.positive is not None:
    positive = rows.positive(args.positive)
    auc = anomaly.auroc(err, positive)
    out.header.append(f'AUROC = {auc:.4f}: the errors of the {int(positive.sum())} rows labelled '
                      f'{args.positive!r} against the other {int((~positive).sum())} rows')
    out.arrays['auroc'] = np.asarray(auc)
    summary += f', AUROC {auc:.4f} for {args.positive!r}'
  return out._replace(summary=summary)


def _latents(run: runs.Run, rows: inputs.Rows, args: argparse.Namespace, where: str,
             fmt: str) -> str:
  """The latents verb: the statistics table, and the top rows of the chosen latents."""
  from aelab.analysis import latents, runs
  dictionary = runs.require_dictionary(run, 'the latents verb')
  chosen = latents.check_latents(run, args.latent or [])
  if args.examples < 1:
    raise AelabError(f'--examples={args.examples}: give a positive number of rows per latent')
  if args.top is not None and not 1 <= args.top <= dictionary.latents:
    raise AelabError(f'--top={args.top}: choose between 1 and the run\'s '
                     f'{dictionary.latents} latents')
  f = runs.features(run, rows.x, 'code', args.batch_size)
  if args.top is not None:
    chosen = latents.most_frequent(f, args.top)
  table = latents.statistics(run, f)
  n = f.shape[1]
  source = f'rows: {rows.source}, {len(f)} rows (numbered from 0)'
  since = ('steps_since_fired: training steps since the latent last fired in a training batch '
           f'(the checkpoint\'s stats at step {run.step}); dead = steps_since_fired >= '
           f'model.dead_steps = {dictionary.dead_steps}' if 'steps_since_fired' in table else
           'the checkpoint holds no stats: no steps_since_fired / dead columns')
  header = [f'aelab latents: per-latent statistics of the {n} latents of a sparse dictionary '
            f'(model {run.config.model.name!r}) of {where}', *runs.formula(run, through='code'),
            'one row per latent j (from 0: f[:, j], row j of W_dec); count = rows where f_j > 0; '
            'frequency = count / rows; mean_active = mean f_j over those rows (0 where count = 0); '
            'max = the largest f_j; decoder_norm = ||W_dec[j]||, the decoder the forward pass '
            'uses', since, source]
  top = latents.top_inputs(f, chosen, args.examples)
  out = pathlib.Path(args.out)
  grid = out.with_name(f'{out.stem}_top.png') if top and latents.is_image(run) else None
  how = f'the {args.top} most frequent' if args.top else 'chosen with --latent'
  top_header = [f'aelab latents: the rows that activate latents {", ".join(map(str, chosen))} '
                f'most ({how}) of {where}', *runs.formula(run, through='code'),
                f'per latent, up to {args.examples} rows with the largest f_j > 0 (fewer where it '
                'fires on fewer), in descending order: rank 1 is the largest; row = the 0-based '
                'index of the input row; activation = f_j of that row'
                + (f'; the images: {grid}' if grid else ''), source]
  written = _write_latents(out, fmt, header, table, top, top_header, rows.label_text(),
                           args.examples, chosen)
  if grid:
    latents.write_grid(run, rows.x, top, grid)
    written.append(str(grid))
  dead = f', {int(table["dead"].sum())} dead' if 'dead' in table else ''
  never = int((table['count'] == 0).sum())
  shown = f'; the top rows of {len(top)} latents' if top else ''
  return (f'wrote the statistics of {n} latents ({never} never fired on these {len(f)} rows'
          f'{dead}){shown} to {", ".join(written)}')


def _write_latents(out: pathlib.Path, fmt: str, header: list, table: dict, top: list,
                   top_header: list, labels, examples: int, chosen) -> list[str]:
  """The latents verb's files: the table (CSV, or NPZ with the top rows in it) and, as CSV, the
  top rows beside it (X_top.csv); returns the paths written."""
  from aelab.analysis import export
  top_csv = out.with_name(f'{out.stem}_top.csv')
  written = [str(out)]
  if fmt == 'csv':
    export.write_csv(out, header, list(table), list(table.values()))
    if top:
      cols = ['latent', 'rank', 'row', 'activation']
      vals = [np.concatenate([np.full(len(t.rows), t.latent) for t in top]),
              np.concatenate([np.arange(1, len(t.rows) + 1) for t in top]),
              np.concatenate([t.rows for t in top]), np.concatenate([t.values for t in top])]
      if labels is not None:
        cols.append('label')
        vals.append([labels[i] for t in top for i in t.rows])
      export.write_csv(top_csv, top_header, cols, vals)
      written.append(str(top_csv))
  else:
    arrays = dict(table)
    if top:
      rows_, values = np.full((len(top), examples), -1), np.zeros((len(top), examples))
      for i, t in enumerate(top):
        rows_[i, :len(t.rows)], values[i, :len(t.rows)] = t.rows, t.values
      if labels is not None:  # as the CSV's label column: each top row's label, '' where none
        arrays['top_labels'] = np.asarray([[labels[r] if r >= 0 else '' for r in rs]
                                           for rs in rows_])
      arrays.update(top_latents=np.asarray(chosen), top_rows=rows_,
                    top_values=values.astype(np.float32), top_header=np.asarray('\n'.join(
                        top_header + ['top_rows [latents, K]: -1 where a latent fired on fewer '
                                      'rows; top_values 0 there'])))
    export.write_npz(out, header, arrays)
  return written


def _saelens(args: argparse.Namespace) -> str:
  """weights --format=saelens: a sparse autoencoder as a SAELens directory."""
  from aelab.analysis import runs, saelens
  saelens.check_directory(args.out)
  saelens.require_safetensors()  # before loading the run: one line if it is absent
  run = runs.load(args.workdir, args.step)
  path = saelens.write(run, args.out)
  tensors, cfg = saelens.read(path)
  folded = f', preprocessing {run.mode!r} folded in' if run.mode != 'none' else ''
  return (f'wrote the {run.model.activation!r} sparse autoencoder as a SAELens '
          f'{cfg["architecture"]!r} SAE ({", ".join(tensors)}; d_in {cfg["d_in"]}, d_sae '
          f'{cfg["d_sae"]}{folded}) to {path}')


def main(args: argparse.Namespace) -> str:
  """Runs one verb; returns the one-line summary to print."""
  from aelab import preprocessing  # after parsing: keeps --help fast
  from aelab.analysis import export, inputs, runs
  from aelab.trainer import compile_cache
  compile_cache.enable()

  fmt = None if args.verb == 'weights' else export.format_of(args.out)
  if fmt is not None:
    files.check_writable(args.out)
  if args.verb == 'weights' and args.format == 'saelens':
    return _saelens(args)
  run = runs.load(args.workdir, args.step)
  if args.verb == 'weights':
    path = export.write_weights(run, args.out)
    keys = ', '.join(preprocessing.STAT_KEYS[run.mode]) or 'none'
    names = list(run.export().arrays)
    shown = ', '.join(names) if len(names) <= 8 else f'{len(names)} arrays'
    return (f'wrote the {run.config.model.name!r} model ({shown}) and the {run.mode!r} '
            f'preprocessing statistics ({keys}) to {path}')
  if args.verb == 'latents':
    runs.require_dictionary(run, 'the latents verb')

  rows = inputs.read(run, args.input, args.split, args.label_column)
  names = list(rows.columns or run.feature_names or ())
  if len(names) != run.num_features:
    names = [f'f{i}' for i in range(run.num_features)]
  where = f'run {run.workdir} at step {run.step}'
  if args.verb == 'latents':
    return _latents(run, rows, args, where, fmt)
  if args.verb == 'features':
    out = _features(run, rows, args, where)
  elif args.verb == 'reconstruct':
    out = _reconstruct(run, rows, args, where, names)
  else:
    out = _anomaly(run, rows, args, where, names)
  header = out.header + [f'rows: {rows.source}, {len(rows.x)} rows; output row i belongs to '
                         'input row i']
  labels = rows.label_text()
  if fmt == 'csv':
    extra = (['label'], [labels]) if labels is not None else ([], [])
    export.write_csv(args.out, header, out.columns + extra[0], out.values + extra[1])
  else:
    extra = {'y': rows.y, 'label': np.asarray(labels)} if labels is not None else {}
    export.write_npz(args.out, header, {**out.arrays, **extra})
  return f'wrote {out.summary} to {args.out}'


def run(argv: Sequence[str] | None = None) -> None:
  argv = list(sys.argv[1:] if argv is None else argv)
  with cli.guard():
    args = _parser().parse_args(argv)
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    print(f'aelab: {main(args)}', flush=True)


if __name__ == '__main__':
  run()
