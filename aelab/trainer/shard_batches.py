"""Batches of a training set held as .npy shards on disk (data.Shards, from dataset `npy` with a
directory): read in order, a window at a time, and shuffled within the window, so reading is
sequential and memory stays bounded, while batch t is still a pure function of the step.

The order of epoch e (seed s, N rows, B a batch, W = shuffle_buffer):
  1. the shards in the order default_rng([s, e, 1]).permutation(shards), each shard's rows in
     file order: the epoch's concatenation, N positions;
  2. cut into m = max(1, N // W) windows of equal size (within a row): window w holds positions
     [w * N // m, (w + 1) * N // m), at least W rows (or all N) and under 2W;
  3. each window's rows permuted by default_rng([s, e, 2, w]).permutation(its rows);
  4. batch i of the epoch is positions [i * B, (i + 1) * B) of the windows one after the other;
     the last N % B rows of the epoch are not used. Step t is batch i of epoch e,
     (e, i) = divmod(t, N // B), as in aelab/trainer/batches.py, so a resumed run sees exactly
     the rows an unbroken one would.
A block of k steps with k * B <= W touches at most two windows (the one it ends in is kept for
the next block): each is read once, as contiguous ranges of its shards, and the block's batches
are gathered from memory. The window after the block's last is read ahead by a thread of its own
(the reads and the finite check release the GIL), so the disk works while the block is gathered
and trained on; memory holds at most three windows (under 6W rows).
"""

from __future__ import annotations

import concurrent.futures
import os
import sys

import jax
import numpy as np

from aelab.data.dataset import Shards
from aelab.data.npy import check_finite
from aelab.errors import AelabError
from aelab.trainer import sharding

SHARD_DRAW, WINDOW_DRAW = 1, 2  # the third word of the epoch's draws: shard order, window order
# Bytes per read call. One call for a whole window (800 MB) read at 0.76-1.19 GB/s on this
# project's VM where 64 MiB calls into the same memory read at 2.2-2.4 (8 MiB: 1.9-2.0): the
# kernel reads ahead of a run of calls, not within one.
READ_BYTES = 64 << 20


def aligned_view(raw: np.ndarray, shape: tuple[int, ...], alignment: int = 64) -> np.ndarray:
  """A float32 array of `shape` in the bytes `raw` (uint8, `alignment` bytes longer than it
  needs), starting on an `alignment`-byte boundary. XLA:CPU takes such an array as a device buffer
  as it is (make_array_from_callback aliases it, holding a reference to `raw` while the device
  array lives); one that is not aligned (numpy's large arrays start 16 bytes into a page) is
  copied into a new buffer, a second pass over every block and fresh memory for it."""
  nbytes = int(np.prod(shape)) * 4
  start = -raw.ctypes.data % alignment
  return raw[start:start + nbytes].view(np.float32).reshape(shape)


class BlockBuffers:
  """Memory for the blocks' batches, each buffer reused once nothing refers to it (the device
  array that aliased it is gone, and with it the last block that used it). Fresh memory every
  block would be touched for the first time every block, a page fault per 4 KiB page, which on
  this project's VMs is at times slower than the disk (an epoch of aelab.bench.shards: 10.5 s of
  system time with fresh memory, 3-4 s reused). At most `keep` buffers are kept; past that a
  block gets memory of its own."""
  ALIGNMENT = 64

  def __init__(self, keep: int = 4):
    self.keep, self._raws = keep, []

  def get(self, shape: tuple[int, ...]) -> np.ndarray:
    nbytes = int(np.prod(shape)) * 4 + self.ALIGNMENT
    for raw in self._raws:
      if raw.nbytes >= nbytes and sys.getrefcount(raw) == 3:   # the list, `raw`, the argument
        return aligned_view(raw, shape, self.ALIGNMENT)
    raw = np.empty(nbytes, np.uint8)
    if len(self._raws) < self.keep:
      self._raws.append(raw)
    return aligned_view(raw, shape, self.ALIGNMENT)


def window_bounds(n: int, buffer: int) -> np.ndarray:
  """[m + 1] bounds of the m = max(1, n // buffer) windows of n positions, equal within a row."""
  m = max(1, n // buffer)
  return (np.arange(m + 1, dtype=np.int64) * n) // m


class ShardOrder:
  """The row order of every epoch (the module docstring's definition): pure functions of the
  shards' row counts, the seed, the epoch and shuffle_buffer."""

  def __init__(self, rows: tuple[int, ...], seed: int, buffer: int):
    self.rows = np.asarray(rows, np.int64)
    self.n, self.seed = int(self.rows.sum()), seed
    self.bounds = window_bounds(self.n, buffer)
    self.offsets = np.concatenate([[0], np.cumsum(self.rows)])  # each shard's first global row
    self._layout: dict[int, tuple] = {}   # epoch -> (shard order, their starts, their ends)

  def layout(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shards in the epoch's order, their start and end positions in its concatenation)."""
    if epoch not in self._layout:
      order = np.random.default_rng([self.seed, epoch, SHARD_DRAW]).permutation(len(self.rows))
      ends = np.cumsum(self.rows[order])
      kept = {e: v for e, v in self._layout.items() if e == epoch - 1}  # a block spans two
      self._layout = {**kept, epoch: (order, ends - self.rows[order], ends)}
    return self._layout[epoch]

  def window_perm(self, epoch: int, w: int) -> np.ndarray:
    """The order of window w's rows in the epoch (indices into the window as read)."""
    size = int(self.bounds[w + 1] - self.bounds[w])
    return np.random.default_rng([self.seed, epoch, WINDOW_DRAW, w]).permutation(size)

  def pieces(self, epoch: int, w: int) -> list[tuple[int, int, int]]:
    """(shard, start, stop) row ranges that, read one after the other, give window w."""
    order, starts, ends = self.layout(epoch)
    a, b = int(self.bounds[w]), int(self.bounds[w + 1])
    out, i = [], int(np.searchsorted(ends, a, side='right'))
    while i < len(order) and starts[i] < b:
      out.append((int(order[i]), max(a, starts[i]) - starts[i], min(b, ends[i]) - starts[i]))
      i += 1
    return out

  def global_ids(self, epoch: int, positions: np.ndarray) -> np.ndarray:
    """The rows (indices into the shards' concatenation in name order) at `positions` of the
    epoch's concatenation (before the windows are shuffled)."""
    order, starts, ends = self.layout(epoch)
    i = np.searchsorted(ends, positions, side='right')
    return self.offsets[order[i]] + positions - starts[i]

  def epoch(self, epoch: int) -> np.ndarray:
    """[N]: every row of the epoch, in its order (for checks; O(N) memory)."""
    return np.concatenate([
        self.global_ids(epoch, self.bounds[w] + self.window_perm(epoch, w))
        for w in range(len(self.bounds) - 1)])


class ShardBatches:
  """Batches of a sharded training set, with the interface of aelab/trainer/batches.Batches:
  `block(start, k)` -> ({'x': [k, B, ...] placed with the batch sharding, and 'y' [k, B] where
  the shards have labels}, None), fed from the host, each process gathering only the rows its own
  devices take."""
  on_device = False

  def __init__(self, shards: Shards, batch_size: int, seed: int, mesh):
    self.paths, self.labels = shards.paths, shards.labels
    self.order = ShardOrder(shards.rows, seed, shards.shuffle_buffer)
    self.n, self.batch_size = self.order.n, batch_size
    self.steps_per_epoch = self.n // batch_size
    self._spec = sharding.batch_sharding(mesh, 1)
    self._maps: dict[int, np.ndarray] = {}
    self._windows: dict[tuple[int, int], np.ndarray] = {}   # (epoch, w) -> its rows, as read
    self._perms: dict[tuple[int, int], np.ndarray] = {}
    self._free: list[np.ndarray] = []   # buffers of windows no longer in use, to read into again
    self._ahead: dict[tuple[int, int], concurrent.futures.Future] = {}   # the window read ahead
    self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='aelab-shards')
    self._outputs = BlockBuffers()

  def _map(self, shard: int) -> np.ndarray:
    """The shard's memory map (kept: its header is read once)."""
    if shard not in self._maps:
      self._maps[shard] = np.load(self.paths[shard], mmap_mode='r')
    return self._maps[shard]

  def _read(self, shard: int, start: int, stop: int, out: np.ndarray) -> None:
    """Rows start..stop of a shard into `out`, read from the file front to back, READ_BYTES at a
    time (not through the memory map: no page faults, no extra copy), checked finite."""
    rows = self._map(shard)
    if rows.flags.c_contiguous:
      view, at = memoryview(out).cast('B'), rows.offset + start * (out.nbytes // len(out))
      with open(self.paths[shard], 'rb', buffering=0) as f:
        while view:  # a read may return fewer bytes than asked
          got = os.preadv(f.fileno(), [view[:READ_BYTES]], at)
          if not got:
            raise AelabError(f'{self.paths[shard]} ended before row {stop}; was it changed while '
                             'training? Rerun to read it again')
          view, at = view[got:], at + got
    else:  # a Fortran-ordered file: through its memory map
      out[...] = rows[start:stop]
    check_finite(out, self.paths[shard], start)

  def _window(self, epoch: int, w: int) -> np.ndarray:
    """Window w of the epoch, its rows as read (not yet shuffled), read once while in use (by
    the thread that read it ahead, or now)."""
    if (epoch, w) not in self._windows:
      ahead = self._ahead.pop((epoch, w), None)
      self._windows[epoch, w] = ahead.result() if ahead is not None else \
          self._fill(self.order.pieces(epoch, w), self._buffer())
    return self._windows[epoch, w]

  def _fill(self, pieces: list[tuple[int, int, int]], buffer: np.ndarray) -> np.ndarray:
    """The window of `pieces` read into the start of `buffer`."""
    window = buffer[:sum(b - a for _, a, b in pieces)]
    at = 0
    for shard, a, b in pieces:
      self._read(shard, a, b, window[at:at + b - a])
      at += b - a
    return window

  def _read_ahead(self, epoch: int, w: int) -> None:
    """Starts reading the window after (epoch, w) on the reader thread, unless it is in
    memory or on its way. Its pieces are worked out here (the order's caches are this
    thread's); a read's error is raised when the window is needed."""
    key = (epoch, w + 1) if w + 1 < len(self.order.bounds) - 1 else (epoch + 1, 0)
    if key in self._windows or key in self._ahead:
      return
    for old in [k for k in self._ahead if k != key]:  # a jump (a resumed run): not needed now
      read = self._ahead.pop(old)
      if read.exception() is None:
        self._free.append(read.result().base)
    self._ahead[key] = self._reader.submit(self._fill, self.order.pieces(*key), self._buffer())

  def _buffer(self) -> np.ndarray:
    """Room for the largest window: a freed one (its pages already mapped) or a new one."""
    if self._free:
      return self._free.pop()
    return np.empty((int(np.diff(self.order.bounds).max()),) + self._row_shape(), np.float32)

  def _perm(self, epoch: int, w: int) -> np.ndarray:
    if (epoch, w) not in self._perms:
      self._perms[epoch, w] = self.order.window_perm(epoch, w)
    return self._perms[epoch, w]

  def positions(self, start: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epoch [k, B], window [k, B], row in the window as read [k, B]) of steps
    start .. start + k - 1."""
    steps = np.arange(start, start + k, dtype=np.int64)
    epoch, i = np.divmod(steps, self.steps_per_epoch)
    q = i[:, None] * self.batch_size + np.arange(self.batch_size)       # positions in the epoch
    epoch = np.broadcast_to(epoch[:, None], q.shape)
    w = np.searchsorted(self.order.bounds, q, side='right') - 1
    j = np.empty_like(q)
    for e, v in self._pairs(epoch, w):
      m = (epoch == e) & (w == v)
      j[m] = self._perm(e, v)[q[m] - self.order.bounds[v]]
    return epoch, w, j

  def _pairs(self, epoch: np.ndarray, w: np.ndarray) -> set[tuple[int, int]]:
    """The (epoch, window) pairs that appear in `epoch` and `w` (same shape)."""
    m = len(self.order.bounds) - 1
    return {(int(key // m), int(key % m)) for key in np.unique(epoch * m + w)}

  def row_ids(self, start: int, k: int) -> np.ndarray:
    """[k, B]: the rows (of the shards' concatenation in name order) of steps start..start+k-1."""
    return self._ids(*self.positions(start, k))

  def _ids(self, epoch: np.ndarray, w: np.ndarray, j: np.ndarray) -> np.ndarray:
    out = np.empty_like(j)
    for e in np.unique(epoch):
      m = epoch == e
      out[m] = self.order.global_ids(int(e), self.order.bounds[w[m]] + j[m])
    return out

  def _gather(self, epoch: np.ndarray, w: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The rows at (epoch, window, row) from the windows in memory, read when first needed."""
    pairs = self._pairs(epoch, w)
    out = self._outputs.get(j.shape + self._row_shape())  # free: no device array aliases it
    if len(pairs) == 1:  # mode='clip': the rows of a permutation, never out of range, and
      # 'raise' would gather into a temporary and copy it to `out`
      return np.take(self._window(*pairs.pop()), j, axis=0, out=out, mode='clip')
    for e, v in pairs:
      m = (epoch == e) & (w == v)
      out[m] = self._window(e, v)[j[m]]
    return out

  def block(self, start: int, k: int) -> tuple[dict, None]:
    """({'x': the batches of steps start .. start + k - 1, [k, B, ...], and their 'y'}, None)."""
    epoch, w, j = self.positions(start, k)
    used = self._pairs(epoch, w)
    done = [key for key in self._windows if key not in used]
    self._free += [self._windows.pop(key).base for key in done]
    self._free = self._free[:max(0, 3 - len(self._windows) - len(self._ahead))]  # 3 at most
    self._perms = {key: v for key, v in self._perms.items() if key in used}
    for key in sorted(used):
      self._window(*key)
    self._read_ahead(*max(used))
    shape = (k, self.batch_size) + self._row_shape()
    x = jax.make_array_from_callback(
        shape, self._spec,
        lambda index: self._gather(epoch[index[:2]], w[index[:2]], j[index[:2]])[
            (slice(None),) * 2 + tuple(index[2:])])
    if self.labels is None:
      return {'x': x}, None
    y = self.labels[self._ids(epoch, w, j)]
    return {'x': x, 'y': jax.make_array_from_callback(y.shape, self._spec, lambda i: y[i])}, None

  def _row_shape(self) -> tuple[int, ...]:
    return tuple(self._map(0).shape[1:])
