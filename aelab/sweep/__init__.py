"""Sweeps: many ordinary runs of one experiment, `python -m aelab.sweep` (docs/sweeps.md).

  axes.py      --sweep='a.b=v1,v2' command-line axes, parsed as --config.a.b=v is
  points.py    Point (index, name, overrides, args); build: combined and validated points
  naming.py    readable, file-system-safe directory names from the swept values
  layout.py    the files of DIR and DIR/<name>/, a point's status, its lock
  runner.py    subprocesses N at a time, progress bar, failures, signals forwarded
  groups.py    --seeds_together: points equal but for the seed in one process
  summary.py   results.csv and results.md from the run directories
  figures.py   a metric against each swept field (mean and min-max over seeds)
  __main__.py  the CLI

The declarations an experiment's get_sweep uses (sweep, product, zipit, chain) are jax-free, in
aelab/config/sweeps.py. Nothing here imports jax: the runs do, in their own processes.
"""
