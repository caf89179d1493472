"""JAX's persistent compilation cache for aelab's command lines: a train block, an init or an
evaluation step compiled once is read back from disk by every later run of the same shapes (a
rerun that resumes, the points of a sweep, the tests), instead of compiled again (about 2 s for
mnist_ae's train block on a 2-core CPU, 0.1 s read back).

The cache lives in $AELAB_COMPILE_CACHE_DIR, else $AELAB_CACHE_DIR/jax (default
~/.cache/aelab/jax); AELAB_COMPILE_CACHE=0 turns it off. Entries are keyed by the program, jax's version and the device: a hit runs exactly the
code a fresh compilation would give.
"""

from __future__ import annotations

import os
import pathlib

MIN_COMPILE_S = 0.1  # smaller programs are not worth a file


def directory() -> pathlib.Path:
  if os.environ.get('AELAB_COMPILE_CACHE_DIR'):
    return pathlib.Path(os.environ['AELAB_COMPILE_CACHE_DIR'])
  base = os.environ.get('AELAB_CACHE_DIR') or pathlib.Path.home() / '.cache' / 'aelab'
  return pathlib.Path(base) / 'jax'


def enable() -> None:
  """Points jax at the cache (a no-op with AELAB_COMPILE_CACHE=0 or where jax has one set)."""
  import jax
  if os.environ.get('AELAB_COMPILE_CACHE', '1').lower() in ('0', 'false', 'no', 'off'):
    return
  if jax.config.jax_compilation_cache_dir:
    return  # the user's own (JAX_COMPILATION_CACHE_DIR)
  jax.config.update('jax_compilation_cache_dir', str(directory()))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_S)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
