"""Verified checkpoints: a fault in the newest checkpoint falls back to the previous one, exactly.

Orbax writes each step as `<step>/arrays` (an OCDBT database: manifest.ocdbt and b-tree nodes in
arrays/d/, the zstd-compressed array values in arrays/ocdbt.process_0/d/, plus the JSON files
_METADATA, _sharding, array_metadatas/process_0) and `<step>/meta/metadata` (the JSON meta).
"""

import gc
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aelab.errors import AelabError
from aelab.trainer import checkpoint, checksums
from conftest import ROOT

# orbax's abandoned reads must not leak tracebacks (pytest turns them into this warning)
pytestmark = pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')


def _tree(seed: int) -> dict:
  r = np.random.default_rng(seed)
  f32 = lambda *shape: jnp.asarray(r.normal(size=shape), jnp.float32)  # noqa: E731
  return {'state': {'params': {'w': f32(64, 32), 'b': f32(32)},
                    'opt': {'mu': f32(64, 32) * 1e-3, 'nu': f32(64, 32) ** 2 * 1e-6,
                            'count': jnp.asarray(seed, jnp.int32)},
                    'step': jnp.asarray(seed, jnp.int32)},
          'preprocessing': {}}


TREES = {s: _tree(s) for s in (1, 2, 3)}


def _save_three(workdir, keep: int = 3) -> None:
  with checkpoint.Checkpoints(workdir, keep=keep, writer=True) as ckpts:
    for s in (1, 2, 3):
      ckpts.save(s, TREES[s], {'step': s})


def _assert_exact(arrays, tree) -> None:
  """Same leaf names ('state/params/w'), dtypes and bits."""
  want = checksums.named_leaves(tree)
  got = checksums.named_leaves(arrays)
  assert sorted(got) == sorted(want)
  for k in want:
    assert np.asarray(got[k]).dtype == np.asarray(want[k]).dtype, k
    np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)


def _stderr_lines(capfd) -> list[str]:
  gc.collect()
  return [line for line in capfd.readouterr().err.splitlines() if line.strip()]


def _data_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  """The files holding array values, largest first."""
  files = [p for p in (step_dir / 'arrays' / 'ocdbt.process_0' / 'd').iterdir()]
  return sorted(files, key=lambda p: -p.stat().st_size)


def _truncate(step_dir):
  f = _data_files(step_dir)[0]
  f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])


def _delete_file(step_dir):
  _data_files(step_dir)[0].unlink()


def _garbage(step_dir):
  """4 KiB of garbage in the middle of the largest data file (a quarter of it where orbax split
  the arrays over several smaller files: its file sizes vary from run to run), so that it lands
  inside array values, not in a header."""
  f = _data_files(step_dir)[0]
  b = bytearray(f.read_bytes())
  size = min(4096, len(b) // 4)
  assert size >= 1024, len(b)
  start = len(b) // 2 - size // 2
  b[start:start + size] = np.random.default_rng(7).bytes(size)
  f.write_bytes(bytes(b))


def _flip(step_dir):
  f = _data_files(step_dir)[0]
  b = bytearray(f.read_bytes())
  b[len(b) // 2] ^= 0x10
  f.write_bytes(bytes(b))


def _garble_meta(step_dir):
  f = step_dir / 'meta' / 'metadata'
  f.write_bytes(f.read_bytes()[:-7] + b'\x00garbage')


def _edit_meta(step_dir):  # still valid JSON, one value changed
  f = step_dir / 'meta' / 'metadata'
  text = f.read_text()
  assert '"step": 3' in text
  f.write_text(text.replace('"step": 3', '"step": 4'))


def _delete_arrays(step_dir):
  shutil.rmtree(step_dir / 'arrays')


FAULTS = {'truncate': _truncate, 'delete_file': _delete_file, 'garbage_4k': _garbage,
          'flip_byte': _flip, 'garble_meta': _garble_meta, 'edit_meta': _edit_meta,
          'delete_arrays': _delete_arrays}
REASONS = {'truncate': 'array data unreadable: ', 'delete_file': 'array data unreadable: ',
           'garbage_4k': '(array data unreadable|checksum mismatch in state/)',
           'flip_byte': 'checksum mismatch in state/',   # only aelab's checksum sees this one
           'garble_meta': 'meta/metadata unreadable: ', 'edit_meta': 'meta checksum mismatch',
           'delete_arrays': 'array (meta)?data unreadable: '}
WARNING = re.compile(r'^aelab: warning: checkpoint 3 in (\S+)/checkpoints is corrupt \((.+)\); '
                     r'moved to (\S+)/checkpoints\.corrupt/3; using step 2$')


@pytest.mark.parametrize('fault', FAULTS)
@pytest.mark.parametrize('raw', [False, True], ids=['restore', 'restore_raw'])
def test_a_fault_in_the_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capfd, caplog,
                                                                          fault, raw):
  _save_three(tmp_path)
  FAULTS[fault](tmp_path / 'checkpoints' / '3')
  capfd.readouterr()
  with checkpoint.Checkpoints(tmp_path, writer=True) as ckpts:
    abstract = checkpoint.abstract(TREES[3])
    step, arrays, meta = ckpts.restore_raw() if raw else ckpts.restore(abstract)
    lines = _stderr_lines(capfd)
    assert (step, meta) == (2, {'step': 2})
    _assert_exact(arrays, TREES[2])
    assert len(lines) == 1 and WARNING.match(lines[0]), lines
    assert WARNING.match(lines[0]).group(1) == str(tmp_path)
    assert re.match(REASONS[fault], WARNING.match(lines[0]).group(2)), lines[0]
    assert not (tmp_path / 'checkpoints' / '3').exists()
    assert (tmp_path / 'checkpoints.corrupt' / '3' / 'meta').is_dir()
    assert ckpts.all_steps() == [1, 2]
    ckpts.save(3, TREES[1], {'step': 3, 'again': True})   # the step number is free again
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    step, arrays, meta = ckpts.restore(checkpoint.abstract(TREES[3]))
    assert (step, meta) == (3, {'step': 3, 'again': True})
    _assert_exact(arrays, TREES[1])
  assert _stderr_lines(capfd) == []
  assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_every_flipped_byte_is_detected_or_harmless(tmp_path, capfd):
  """Flip one byte at 3 places (first, middle, last) of every file of the arrays: each case either
  restores step 3 bit-identical (a byte nothing reads) or falls back to step 2 with one warning."""
  _save_three(tmp_path / 'pristine')
  pristine = tmp_path / 'pristine' / 'checkpoints' / '3'
  files = sorted(p.relative_to(pristine) for p in (pristine / 'arrays').rglob('*') if p.is_file())
  assert len(_data_files(pristine)) >= 2 and len(files) >= 8
  reasons = []
  for rel in files:
    size = (pristine / rel).stat().st_size
    for pos in sorted(set(np.linspace(0, size - 1, 3).astype(int))):
      work = tmp_path / 'w'
      shutil.rmtree(work, ignore_errors=True)
      shutil.copytree(tmp_path / 'pristine', work)
      f = work / 'checkpoints' / '3' / rel
      b = bytearray(f.read_bytes())
      b[pos] ^= 0xFF
      f.write_bytes(bytes(b))
      capfd.readouterr()
      with checkpoint.Checkpoints(work, writer=True) as ckpts:
        step, arrays, _ = ckpts.restore(checkpoint.abstract(TREES[3]))
      lines = _stderr_lines(capfd)
      _assert_exact(arrays, TREES[step])
      if step == 3:
        assert lines == [], (rel, pos)
      else:
        assert step == 2 and len(lines) == 1 and WARNING.match(lines[0]), (rel, pos, lines)
        reasons.append(WARNING.match(lines[0]).group(2))
  # Flips in the array values pass orbax and tensorstore unnoticed: only the checksum sees them.
  assert any(r.startswith('checksum mismatch in state/') for r in reasons), reasons


def test_orbax_alone_loads_a_flipped_byte_in_array_data_silently(tmp_path):
  """Why aelab records its own checksums (if this starts failing, orbax verifies data itself)."""
  _save_three(tmp_path)
  _flip(tmp_path / 'checkpoints' / '3')
  manager = ocp.CheckpointManager(tmp_path / 'checkpoints', item_handlers={
      'arrays': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()})
  arrays = manager.restore(3, args=ocp.args.Composite(
      arrays=ocp.args.StandardRestore(checkpoint.abstract(TREES[3]))))['arrays']
  manager.close()
  changed = [k for k, v in checksums.named_leaves(arrays).items()
             if not np.array_equal(v, checksums.named_leaves(TREES[3])[k])]
  assert len(changed) == 1


def test_all_checkpoints_corrupt_is_one_error_naming_each(tmp_path, capfd):
  _save_three(tmp_path)
  for s in (1, 2, 3):
    _flip(tmp_path / 'checkpoints' / str(s))
  capfd.readouterr()
  with checkpoint.Checkpoints(tmp_path, writer=True) as ckpts:
    with pytest.raises(AelabError) as e:
      ckpts.restore(checkpoint.abstract(TREES[3]))
    assert ckpts.all_steps() == []
  message = str(e.value)
  assert '\n' not in message and 'no usable checkpoint' in message
  assert all(f'{s} (checksum mismatch in state/' in message for s in (1, 2, 3))
  assert sorted(p.name for p in (tmp_path / 'checkpoints.corrupt').iterdir()) == ['1', '2', '3']
  # The one error names every corrupt step: no warning line beside it (a fallback that restores
  # warns of each step it passed over).
  assert _stderr_lines(capfd) == []


def test_a_different_model_is_an_error_and_moves_nothing(tmp_path, capfd):
  _save_three(tmp_path)
  other = _tree(3)
  other['state']['params']['w'] = jnp.zeros((64, 16), jnp.float32)
  capfd.readouterr()
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    with pytest.raises(AelabError, match=r'checkpoint 3 in .* holds a different model '
                       r'\(state/params/w is float32\[64,32\] there, float32\[64,16\] here\)'):
      ckpts.restore(checkpoint.abstract(other))
    assert ckpts.all_steps() == [1, 2, 3]
  assert not (tmp_path / 'checkpoints.corrupt').exists()
  assert _stderr_lines(capfd) == []


def test_restore_at_or_before_a_step_and_explicit_raw_steps(tmp_path, capfd):
  _save_three(tmp_path)
  _flip(tmp_path / 'checkpoints' / '3')
  capfd.readouterr()
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    step, arrays, _ = ckpts.restore(checkpoint.abstract(TREES[1]), step=2)
    assert step == 2
    _assert_exact(arrays, TREES[2])
    step, arrays, _ = ckpts.restore_raw(1)
    assert step == 1
    _assert_exact(arrays, TREES[1])
    with pytest.raises(AelabError, match=r'checkpoint 3 in .* is corrupt \(checksum mismatch in '
                       r'state/.*\); pick another step \(1, 2\)'):
      ckpts.restore_raw(3)
    with pytest.raises(AelabError, match='no checkpoint at step 7 .* available steps: 1, 2, 3'):
      ckpts.restore_raw(7)
    assert ckpts.all_steps() == [1, 2, 3]   # an explicit step is reported, never moved
  assert _stderr_lines(capfd) == []


def test_orbax_bookkeeping_damage_alone_is_harmless_and_silent(tmp_path, capfd, caplog):
  """_CHECKPOINT_METADATA and commit_success.txt hold no arrays: garbling them loses nothing, and
  orbax's ERROR log about them is held back."""
  _save_three(tmp_path)
  for name in ('_CHECKPOINT_METADATA', 'commit_success.txt', 'arrays/commit_success.txt'):
    (tmp_path / 'checkpoints' / '3' / name).write_bytes(b'\xff\x00 garbage')
  capfd.readouterr()
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    step, arrays, _ = ckpts.restore(checkpoint.abstract(TREES[3]))
    assert step == 3 and ckpts.restore_raw()[0] == 3
  _assert_exact(arrays, TREES[3])
  assert _stderr_lines(capfd) == []
  assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_nothing_to_restore_is_an_error(tmp_path):
  with checkpoint.Checkpoints(tmp_path, writer=True) as ckpts:
    with pytest.raises(AelabError, match=r'^no checkpoint in .*checkpoints; train'):
      ckpts.restore(checkpoint.abstract(TREES[1]))
    ckpts.save(5, TREES[1], {})
    with pytest.raises(AelabError, match=r'^no checkpoint at or before step 4 in '):
      ckpts.restore(checkpoint.abstract(TREES[1]), step=4)


@pytest.mark.parametrize('keep', [0, -1])
def test_keep_must_be_at_least_one(tmp_path, keep):
  with pytest.raises(AelabError, match=rf'^train.keep_checkpoints = {keep}; it must be an integer '
                     r'>= 1: resuming needs'):
    checkpoint.Checkpoints(tmp_path, keep=keep)


def test_keep_still_prunes_after_a_fallback(tmp_path, capfd):
  _save_three(tmp_path, keep=2)
  _flip(tmp_path / 'checkpoints' / '3')
  with checkpoint.Checkpoints(tmp_path, keep=2, writer=True) as ckpts:
    assert ckpts.all_steps() == [2, 3]
    assert ckpts.restore(checkpoint.abstract(TREES[3]))[0] == 2
    for s in (3, 4, 5):
      ckpts.save(s, TREES[s % 3 + 1], {'step': s})
    ckpts.wait()
    assert ckpts.all_steps() == [4, 5]
  assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()) == ['4', '5']
  assert len(_stderr_lines(capfd)) == 1


def test_an_error_after_a_save_still_finishes_it(tmp_path, capfd):
  with pytest.raises(RuntimeError, match='boom'):
    with checkpoint.Checkpoints(tmp_path, writer=True) as ckpts:
      ckpts.save(5, TREES[1], {'step': 5})
      raise RuntimeError('boom')
  assert [p for p in tmp_path.rglob('*') if 'tmp' in p.name] == []
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    step, arrays, meta = ckpts.restore(checkpoint.abstract(TREES[1]))
    ckpts.close()   # twice is fine
  assert (step, meta) == (5, {'step': 5})
  _assert_exact(arrays, TREES[1])
  assert _stderr_lines(capfd) == []


def test_save_records_checksums_without_touching_the_callers_meta(tmp_path):
  meta = {'step': 1, 'shape': (28, 28), 'loss': float('nan')}
  with checkpoint.Checkpoints(tmp_path, writer=True) as ckpts:
    ckpts.save(1, TREES[1], meta)
    ckpts.wait()
    assert meta == {'step': 1, 'shape': (28, 28), 'loss': meta['loss']}
    saved = json.loads((tmp_path / 'checkpoints' / '1' / 'meta' / 'metadata').read_text())
    assert saved['checksums']['arrays']['state/params/w'][:2] == ['float32', [64, 32]]
    assert saved['checksums']['arrays']['state/params/w'][2] == \
        checksums.sums(TREES[1])['state/params/w']
    _, _, restored = ckpts.restore(checkpoint.abstract(TREES[1]))
  assert restored['shape'] == [28, 28] and np.isnan(restored['loss'])
  assert 'checksums' not in restored


def _save_old_format(workdir, trees):
  """A checkpoint as the previous aelab wrote it: the same items, no checksums in the meta."""
  manager = ocp.CheckpointManager(
      pathlib.Path(workdir).absolute() / 'checkpoints',
      options=ocp.CheckpointManagerOptions(max_to_keep=3, create=True),
      item_handlers={'arrays': ocp.StandardCheckpointHandler(),
                     'meta': ocp.JsonCheckpointHandler()})
  for s, tree in trees.items():
    manager.save(s, args=ocp.args.Composite(arrays=ocp.args.StandardSave(tree),
                                            meta=ocp.args.JsonSave({'step': s})), force=True)
  manager.close()


def test_an_old_checkpoint_without_checksums_restores_unverified(tmp_path, capfd):
  _save_old_format(tmp_path, {1: TREES[1], 2: TREES[2]})
  capfd.readouterr()
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    step, arrays, meta = ckpts.restore(checkpoint.abstract(TREES[3]))
    assert (step, meta) == (2, {'step': 2})
    _assert_exact(arrays, TREES[2])
    step, arrays, meta = ckpts.restore_raw()
    assert (step, meta) == (2, {'step': 2})
    _assert_exact(arrays, TREES[2])
    other = {**TREES[3], 'preprocessing': {'mean': jnp.zeros(4)}}
    with pytest.raises(AelabError, match=r'different model \(preprocessing/mean is absent there, '
                       r'float32\[4\] here\)'):
      ckpts.restore(checkpoint.abstract(other))
    # without checksums a truncated file is still caught by the reader, and falls back
    _truncate(tmp_path / 'checkpoints' / '2')
    assert ckpts.restore(checkpoint.abstract(TREES[3]))[0] == 1
  lines = _stderr_lines(capfd)
  assert len(lines) == 1 and 'checkpoint 2 in' in lines[0] and 'using step 1' in lines[0]


def test_checksum_sees_any_single_element_change():
  x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
  base = checksums.host_sums({'x': x})['x']
  seen = {base}
  for i in range(x.size):
    y = x.copy().reshape(-1)
    y[i] = np.nextafter(y[i], np.inf)   # the smallest possible change
    s = checksums.host_sums({'x': y.reshape(x.shape)})['x']
    assert s != base
    seen.add(s)
  assert len(seen) == x.size + 1
  swapped = x.copy()
  swapped[[0, 1]] = swapped[[1, 0]]     # positions are weighted: a swap is seen too
  assert checksums.host_sums({'x': swapped})['x'] != base


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16', 'float16', 'int32', 'uint32', 'int8',
                                   'uint8', 'bool'])
def test_device_and_host_checksums_agree(dtype):
  r = np.random.default_rng(1)
  x = jnp.asarray(r.normal(size=(5, 7)) * 100).astype(dtype)
  tree = {'a': x, 'b': [x[0], jnp.asarray(3, jnp.int32)]}
  host = jax.tree.map(np.asarray, tree)
  assert checksums.sums(tree) == checksums.host_sums(host)
  assert set(checksums.sums(tree)) == {'a', 'b/0', 'b/1'}


def test_device_and_host_checksums_agree_for_64_bit_types(x64):
  tree = {'f': jnp.asarray(np.random.default_rng(2).normal(size=(3, 4))),
          'i': jnp.arange(-5, 7, dtype=jnp.int64) * (2 ** 40)}
  assert tree['f'].dtype == jnp.float64
  host = jax.tree.map(np.asarray, tree)
  assert checksums.sums(tree) == checksums.host_sums(host)
  y = host['f'].copy()
  y[1, 2] = np.nextafter(y[1, 2], np.inf)   # a change in the low word only
  assert checksums.host_sums({'f': y})['f'] != checksums.host_sums(host)['f']


def test_a_sharded_checkpoint_from_4_devices_verifies_and_reads_on_one(tmp_path):
  code = textwrap.dedent(f'''
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      from aelab.trainer import checkpoint, checksums
      mesh = Mesh(np.asarray(jax.devices()), ('data',))
      assert len(jax.devices()) == 4
      x = np.arange(8 * 12, dtype=np.float32).reshape(8, 12) / 7
      tree = {{'rows': jax.device_put(x, NamedSharding(mesh, P('data'))),
              'cols': jax.device_put(x * 2, NamedSharding(mesh, P(None, 'data'))),
              'rep': jax.device_put(x[0], NamedSharding(mesh, P()))}}
      assert checksums.sums(tree) == checksums.host_sums(jax.tree.map(np.asarray, tree))
      with checkpoint.Checkpoints({str(tmp_path)!r}, writer=True) as c:
        c.save(1, tree, {{'devices': 4}})
        c.wait()
        step, back, _ = c.restore(checkpoint.abstract(tree))
        assert step == 1 and back['cols'].sharding == tree['cols'].sharding
      ''')
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=4')
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  x = np.arange(8 * 12, dtype=np.float32).reshape(8, 12) / 7
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    step, arrays, meta = ckpts.restore_raw()
  assert (step, meta) == (1, {'devices': 4})
  _assert_exact(arrays, {'rows': x, 'cols': x * 2, 'rep': x[0]})


def test_no_orbax_tracebacks_even_at_exit(tmp_path):
  """Faults that leave orbax reads half-done (their callbacks then hit a closed event loop) print
  nothing but the one warning each, up to interpreter exit."""
  code = textwrap.dedent(f'''
      import pathlib, sys
      sys.path.insert(0, 'tests')
      from test_checkpoint import FAULTS, TREES, _save_three
      from aelab.trainer import checkpoint
      for raw in (False, True):
        for name, fault in FAULTS.items():
          work = pathlib.Path({str(tmp_path)!r}) / f'{{name}}-{{raw}}'
          _save_three(work)
          fault(work / 'checkpoints' / '3')
          with checkpoint.Checkpoints(work, writer=True) as c:
            assert (c.restore_raw() if raw else c.restore(checkpoint.abstract(TREES[3])))[0] == 2
      ''')
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 0 and len(lines) == 2 * len(FAULTS), proc.stderr[-3000:]
  assert all(WARNING.match(line) for line in lines), lines
