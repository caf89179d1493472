"""Tests of aelab.data: IDX files, lookup and download, CSV/NPZ tables, splits, registry."""

import gzip
import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from aelab import data
from aelab.config import catalog, defaults
from aelab.data import download, idx, locate
from aelab.data.dataset import Split, epoch_permutation, split_off
from aelab.errors import AelabError

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick

HERE = Path(__file__).parent
SHARED = Path(__file__).resolve().parents[2] / 'shared' / 'data'
MNIST_DIR = SHARED / 'mnist'
FASHION_DIR = Path('/usr/share/datasets/fashion-mnist')
BREAST = HERE / 'data' / 'breast_cancer_head60.csv'

needs_mnist = pytest.mark.skipif(not (MNIST_DIR / 't10k-images-idx3-ubyte.gz').exists(),
                                 reason='../shared/data/mnist not present')
needs_fashion = pytest.mark.skipif(not (FASHION_DIR / 't10k-labels-idx1-ubyte.gz').exists(),
                                   reason='dataset-fashion-mnist not installed')


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
  """No test sees the user's env, cache or system dirs, or reaches the network."""
  monkeypatch.delenv('AELAB_DATA_DIR', raising=False)
  monkeypatch.setenv('AELAB_CACHE_DIR', str(tmp_path / 'cache'))
  monkeypatch.setattr(locate, 'SYSTEM_DIRS', {})
  calls = []

  def offline(url, timeout=None):
    calls.append(url)
    if url.startswith('file:'):
      return _real_urlopen(url, timeout=timeout)
    raise urllib.error.URLError('network disabled in tests')

  monkeypatch.setattr(download, 'urlopen', offline)
  return calls


_real_urlopen = download.urlopen


def write_fake_mnist(directory: Path, n_train=20, n_test=8, names=None, seed=0):
  """Writes four small IDX files; returns the arrays."""
  rng = np.random.default_rng(seed)
  names = names or {'train_images': 'train-images-idx3-ubyte.gz',
                    'train_labels': 'train-labels-idx1-ubyte.gz',
                    'test_images': 't10k-images-idx3-ubyte.gz',
                    'test_labels': 't10k-labels-idx1-ubyte.gz'}
  arrays = {'train_images': rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            'train_labels': rng.integers(0, 10, n_train, dtype=np.uint8),
            'test_images': rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            'test_labels': rng.integers(0, 10, n_test, dtype=np.uint8)}
  directory.mkdir(parents=True, exist_ok=True)
  for role, name in names.items():
    idx.write_idx(directory / name, arrays[role])
  return arrays


UNOFFICIAL = {'train_images': 'train10k-images-idx3-ubyte.gz',
              'train_labels': 'train10k-labels-idx1-ubyte.gz',
              'test_images': 'mytest-images-idx3-ubyte',
              'test_labels': 'mytest-labels-idx1-ubyte'}


# --- IDX format ---------------------------------------------------------------------------------

@pytest.mark.parametrize('filename', ['a-idx3-ubyte', 'a-idx3-ubyte.gz'])
def test_idx_round_trip(tmp_path, filename):
  x = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
  idx.write_idx(tmp_path / filename, x)
  raw = (tmp_path / filename).read_bytes()
  header = gzip.decompress(raw)[:16] if filename.endswith('.gz') else raw[:16]
  assert int.from_bytes(header[:4], 'big') == 2051
  assert [int.from_bytes(header[i:i + 4], 'big') for i in (4, 8, 12)] == [5, 28, 28]
  np.testing.assert_array_equal(idx.read_idx(tmp_path / filename), x)
  labels = np.arange(7, dtype=np.uint8)
  idx.write_idx(tmp_path / 'l-idx1-ubyte', labels)
  assert int.from_bytes((tmp_path / 'l-idx1-ubyte').read_bytes()[:4], 'big') == 2049
  np.testing.assert_array_equal(idx.read_idx(tmp_path / 'l-idx1-ubyte'), labels)


def test_idx_other_dtypes_round_trip(tmp_path):
  x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
  idx.write_idx(tmp_path / 'f.idx', x)
  y = idx.read_idx(tmp_path / 'f.idx')
  assert y.dtype == np.float32
  np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize('corrupt, message', [
    (lambda b: b[:-3], 'truncated or corrupt'),                 # short data
    (lambda b: b'\x01\x02' + b[2:], 'not an IDX file'),          # bad magic
    (lambda b: b[:6], 'truncated'),                              # header cut
    (lambda b: gzip.compress(b)[:-10], 'not a valid gzip file'),  # truncated gzip
])
def test_corrupt_idx_raises(tmp_path, corrupt, message):
  good = tmp_path / 'good'
  idx.write_idx(good, np.zeros((2, 3, 3), np.uint8))
  bad = tmp_path / 'bad-idx3-ubyte'
  bad.write_bytes(corrupt(good.read_bytes()))
  with pytest.raises(AelabError, match=message) as e:
    idx.read_idx(bad)
  assert str(bad) in str(e.value)


def test_corrupt_header_in_dataset_dir_names_file(tmp_path):
  write_fake_mnist(tmp_path / 'd', names=UNOFFICIAL)
  f = tmp_path / 'd' / 'mytest-images-idx3-ubyte'
  f.write_bytes(f.read_bytes()[:-1])
  with pytest.raises(AelabError, match='mytest-images-idx3-ubyte.*truncated'):
    data.load(_cfg('mnist', path=str(tmp_path / 'd')), seed=0)


def test_images_and_labels_count_mismatch(tmp_path):
  write_fake_mnist(tmp_path / 'd', names=UNOFFICIAL)
  idx.write_idx(tmp_path / 'd' / 'mytest-labels-idx1-ubyte', np.zeros(3, np.uint8))
  with pytest.raises(AelabError, match='8 images but .* 3 labels'):
    data.load(_cfg('mnist', path=str(tmp_path / 'd')), seed=0)


def test_labels_file_with_images_magic(tmp_path):
  write_fake_mnist(tmp_path / 'd', names=UNOFFICIAL)
  idx.write_idx(tmp_path / 'd' / 'mytest-labels-idx1-ubyte', np.zeros((8, 2, 2), np.uint8))
  with pytest.raises(AelabError, match='magic 2049'):
    data.load(_cfg('mnist', path=str(tmp_path / 'd')), seed=0)


# --- mnist / fashion_mnist ---------------------------------------------------------------------

def _cfg(name, **fields):
  cfg = defaults.dataset(name)
  for k, v in fields.items():
    cfg[k] = v
  return cfg


@needs_mnist
def test_shared_mnist_test_set():
  ds = data.load(_cfg('mnist', path=str(MNIST_DIR), train_limit=500), seed=0)
  assert ds.test.x.shape == (10000, 28, 28, 1) and ds.test.x.dtype == np.float32
  assert ds.test.y.dtype == np.int32
  assert 0.0 <= ds.test.x.min() and ds.test.x.max() == 1.0
  counts = np.bincount(ds.test.y, minlength=10)
  assert counts.sum() == 10000 and len(counts) == 10
  assert counts[1] == 1135  # the well-known count of 1s in the MNIST test set
  files = ds.source['files']
  assert files['test_images']['md5'] == '9fb629c4189551a2d022fa330f9573f3'
  assert files['test_labels']['md5'] == 'ec29112dd5afa0611ce80d1b7f02629c'
  assert 'matches the published' in files['test_images']['check']
  assert 'no checksum' in files['train_images']['check']  # train10k is not a published file
  assert (len(ds.train), len(ds.val)) == (450, 50)
  assert ds.feature_shape == (28, 28, 1) and ds.is_image and ds.value_range == (0.0, 1.0)
  assert ds.num_classes == 10
  json.dumps(ds.source)


@needs_mnist
def test_shared_mnist_via_env_subdir(monkeypatch, tmp_path):
  (tmp_path / 'root').mkdir()
  (tmp_path / 'root' / 'mnist').symlink_to(MNIST_DIR)
  monkeypatch.setenv('AELAB_DATA_DIR', str(tmp_path / 'root'))
  ds = data.load(_cfg('mnist', train_limit=100, test_limit=50), seed=0)
  assert ds.source['found_via'] == '$AELAB_DATA_DIR'
  assert (len(ds.train), len(ds.val), len(ds.test)) == (90, 10, 50)


@needs_fashion
def test_fashion_mnist_debian_copy_verified(monkeypatch):
  monkeypatch.setattr(locate, 'SYSTEM_DIRS', {'fashion_mnist': (FASHION_DIR,)})
  ds = data.load(_cfg('fashion_mnist', train_limit=1000, test_limit=100), seed=1)
  assert ds.source['found_via'] == 'system'
  assert ds.source['train_rows_in_file'] == 60000
  assert ds.source['files']['train_images']['content_md5'] == 'f4a8712d7a061bf5bd6d2ca38dc4d50a'
  assert (len(ds.train), len(ds.val), len(ds.test)) == (900, 100, 100)
  assert ds.source['label_names'][9] == 'Ankle boot'


def test_official_name_with_wrong_md5_raises(tmp_path):
  write_fake_mnist(tmp_path / 'd')
  with pytest.raises(AelabError) as e:
    data.load(_cfg('mnist', path=str(tmp_path / 'd')), seed=0)
  msg = str(e.value)
  assert 'train-images-idx3-ubyte.gz' in msg and 'f68b3c2dcbeaaa9fbdd348bbdeb94873' in msg
  assert 'delete it' in msg


def test_unofficial_names_and_limits(tmp_path):
  arrays = write_fake_mnist(tmp_path / 'd', n_train=40, n_test=10, names=UNOFFICIAL)
  ds = data.load(_cfg('mnist', path=str(tmp_path / 'd'), train_limit=30, test_limit=4,
                      val_fraction=0.2), seed=3)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (24, 6, 4)
  np.testing.assert_allclose(ds.test.x[..., 0], arrays['test_images'][:4] / 255.0, atol=1e-7)
  np.testing.assert_array_equal(ds.test.y, arrays['test_labels'][:4])
  # train + val are exactly the first 30 training rows.
  got = np.concatenate([ds.train.y, ds.val.y])
  assert sorted(got.tolist()) == sorted(arrays['train_labels'][:30].tolist())


def test_ambiguous_files_raise(tmp_path):
  write_fake_mnist(tmp_path / 'd', names=UNOFFICIAL)
  idx.write_idx(tmp_path / 'd' / 'train5k-images-idx3-ubyte', np.zeros((2, 28, 28), np.uint8))
  with pytest.raises(AelabError, match='several candidate train images'):
    data.load(_cfg('mnist', path=str(tmp_path / 'd')), seed=0)


def test_explicit_path_missing_files(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(AelabError, match='lacks the mnist train images'):
    data.load(_cfg('mnist', path=str(tmp_path / 'empty')), seed=0)
  with pytest.raises(AelabError, match='is not a directory'):
    data.load(_cfg('mnist', path=str(tmp_path / 'nope')), seed=0)


def test_offline_error_lists_everything(isolated, monkeypatch, tmp_path):
  monkeypatch.setenv('AELAB_DATA_DIR', str(tmp_path / 'data'))
  with pytest.raises(AelabError) as e:
    data.load(defaults.dataset('mnist'), seed=0)
  msg = str(e.value)
  for needed in ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
                 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'):
    assert needed in msg
  assert '$AELAB_DATA_DIR/mnist/' in msg and 'dataset.path' in msg
  assert str(tmp_path / 'data' / 'mnist') in msg and str(tmp_path / 'cache' / 'mnist') in msg
  assert 'https://ossci-datasets.s3.amazonaws.com/mnist/' in msg
  assert 'network disabled in tests' in msg
  # Both mirrors were tried for the first file, then it stopped; nothing was left behind.
  assert len(isolated) == 2 and all(u.startswith('http') for u in isolated)
  assert not [p for p in (tmp_path / 'cache').rglob('*') if p.is_file()]


def test_fetch_file_url_lands_only_with_right_md5(tmp_path):
  mirror = tmp_path / 'mirror'
  mirror.mkdir()
  (mirror / 'f.gz').write_bytes(b'hello')
  url = (mirror / 'f.gz').as_uri()
  dest = tmp_path / 'cache' / 'x' / 'f.gz'
  with pytest.raises(download.DownloadError, match='md5'):
    download.fetch([url], dest, md5='0' * 32)
  assert not dest.exists() and not list(dest.parent.iterdir())
  good = download.md5_of(b'hello')
  missing = (mirror / 'absent.gz').as_uri()
  assert download.fetch([missing, url], dest, md5=good) == dest
  assert dest.read_bytes() == b'hello' and len(list(dest.parent.iterdir())) == 1


def test_download_into_cache_from_fake_mirror(monkeypatch, tmp_path):
  mirror = tmp_path / 'mirror'
  arrays = write_fake_mnist(mirror, n_train=20, n_test=8)
  table = {role: download.Official(o.filename, download.md5_of((mirror / o.filename).read_bytes()),
                                   'unused')
           for role, o in download.OFFICIAL['mnist'].items()}
  monkeypatch.setitem(download.OFFICIAL, 'mnist', table)
  monkeypatch.setitem(download.MIRRORS, 'mnist',
                      ('https://unreachable.invalid/', mirror.as_uri() + '/'))
  ds = data.load(defaults.dataset('mnist'), seed=0)
  cache = tmp_path / 'cache' / 'mnist'
  assert ds.source['found_via'] == 'download' and ds.source['directory'] == str(cache)
  assert sorted(p.name for p in cache.iterdir()) == sorted(o.filename for o in table.values())
  np.testing.assert_array_equal(ds.test.y, arrays['test_labels'])
  # The second load finds the cache and downloads nothing.
  monkeypatch.setitem(download.MIRRORS, 'mnist', ())
  assert data.load(defaults.dataset('mnist'), seed=0).source['found_via'] == 'cache'


@needs_mnist
def test_download_real_file_md5_checked(tmp_path):
  official = download.OFFICIAL['mnist']['test_labels']
  dest = tmp_path / 'cache' / official.filename
  url = (MNIST_DIR / official.filename).as_uri()
  assert download.fetch([url], dest, official.md5) == dest
  bad = tmp_path / 'bad' / official.filename
  with pytest.raises(download.DownloadError):
    download.fetch([url], bad, download.OFFICIAL['mnist']['test_images'].md5)
  assert not bad.exists()


def test_locate_name_rules(tmp_path):
  for name in ('train-images.idx3-ubyte', 'train10k-images-idx3-ubyte.gz',
               'TRAIN-LABELS-IDX1-UBYTE', 't10k-images-idx3-ubyte.gz', 'test-labels-idx1-ubyte',
               'notes.txt', 'train-images-idx3-ubyte.npy'):
    (tmp_path / name).write_bytes(b'')
  found = locate.find_files('mnist', tmp_path)
  assert {r: p.name for r, p in found.items()} == {
      'train_images': 'train-images.idx3-ubyte',  # published spelling wins over train10k
      'train_labels': 'TRAIN-LABELS-IDX1-UBYTE',
      'test_images': 't10k-images-idx3-ubyte.gz',
      'test_labels': 'test-labels-idx1-ubyte'}


# --- CSV / NPZ ----------------------------------------------------------------------------------

def _csv(tmp_path, text, **fields):
  path = tmp_path / 't.csv'
  path.write_text(text)
  return data.load(_cfg('csv', path=str(path), **fields), seed=0)


def test_breast_cancer_slice():
  ds = data.load(_cfg('csv', path=str(BREAST), label_column='diagnosis'), seed=0)
  assert ds.feature_shape == (30,) and not ds.is_image and ds.value_range is None
  assert ds.feature_names[0] == 'mean_radius' and len(ds.feature_names) == 30
  assert ds.source['label_names'] == ['benign', 'malignant'] and ds.num_classes == 2
  assert (len(ds.train), len(ds.val), len(ds.test)) == (43, 5, 12)
  y = np.concatenate([ds.train.y, ds.val.y, ds.test.y])
  assert np.bincount(y).tolist() == [13, 47]
  x = np.concatenate([ds.train.x, ds.val.x, ds.test.x])
  assert x.dtype == np.float32 and 17.99 in x[:, 0].round(2)  # first row's mean_radius
  json.dumps(ds.source)


def test_label_column_by_index_and_int_labels(tmp_path):
  ds = _csv(tmp_path, '1,2,0\n3,4,2\n5,6,1\n7,8,2\n9,10,0\n', label_column='-1',
            test_fraction=0.0, val_fraction=0.0)
  assert ds.source['header'] is False and ds.feature_names == ('f0', 'f1')
  np.testing.assert_array_equal(ds.train.y, [0, 2, 1, 2, 0])
  assert ds.num_classes == 3 and 'label_names' not in ds.source


def test_string_labels_without_header_auto(tmp_path):
  ds = _csv(tmp_path, '1,2,cat\n3,4,dog\n5,6,ant\n', label_column='2', test_fraction=0.0,
            val_fraction=0.0)
  assert ds.source['header'] is False  # 'cat' is in the label column, not a header
  assert ds.source['label_names'] == ['ant', 'cat', 'dog']
  np.testing.assert_array_equal(ds.train.y, [1, 2, 0])


@pytest.mark.parametrize('text, header, expected', [
    ('a,b\n1,2\n3,4\n', 'auto', True),
    ('1,2\n3,4\n5,6\n', 'auto', False),
    ('10,20\n3,4\n5,6\n', 'yes', True),
])
def test_header_detection(tmp_path, text, header, expected):
  ds = _csv(tmp_path, text, header=header, test_fraction=0.0, val_fraction=0.0)
  assert ds.source['header'] is expected
  assert len(ds.train) == (2 if expected else 3)
  assert ds.feature_names == (('a', 'b') if text[0] == 'a' else ('10', '20') if expected
                              else ('f0', 'f1'))


def test_columns_selection(tmp_path):
  ds = _csv(tmp_path, 'a,b,c,y\n1,2,3,0\n4,5,6,1\n', columns='c, 0', label_column='y',
            test_fraction=0.0, val_fraction=0.0)
  assert ds.feature_names == ('c', 'a')
  np.testing.assert_array_equal(ds.train.x, [[3, 1], [6, 4]])
  with pytest.raises(AelabError, match=r"'zz' is not a column .*valid: column names a, b, c, y"):
    _csv(tmp_path, 'a,b,c,y\n1,2,3,0\n', columns='a,zz')


@pytest.mark.parametrize('cell, what', [('nan', 'not a finite'), ('inf', 'not a finite'),
                                        ('', 'empty cell'), ('abc', "'abc' is not a number"),
                                        ('1e999', 'not a finite')])
def test_bad_cell_names_row_and_column(tmp_path, cell, what):
  text = 'a,b,y\n1,2,0\n3,4,1\n5,' + cell + ',0\n'
  with pytest.raises(AelabError) as e:
    _csv(tmp_path, text, label_column='y')
  msg = str(e.value)
  assert 't.csv, row 4' in msg and "column 'b'" in msg and what in msg


def test_short_row(tmp_path):
  with pytest.raises(AelabError, match=r'row 3: 2 cells, expected 3'):
    _csv(tmp_path, 'a,b,c\n1,2,3\n4,5\n')


def test_row_numbers_count_blank_lines(tmp_path):
  with pytest.raises(AelabError, match=r'row 5, column .b.'):
    _csv(tmp_path, 'a,b\n1,2\n\n3,4\n5,x\n')


def test_csv_config_errors(tmp_path):
  with pytest.raises(AelabError, match='needs dataset.path'):
    data.load(defaults.dataset('csv'), seed=0)
  with pytest.raises(AelabError, match='is not a file'):
    data.load(_cfg('csv', path=str(tmp_path / 'missing.csv')), seed=0)
  with pytest.raises(AelabError, match="unknown dataset.header 'maybe'; valid choices: auto, yes, no"):
    _csv(tmp_path, '1,2\n', header='maybe')
  with pytest.raises(AelabError, match='must be < 1'):
    _csv(tmp_path, '1,2\n', val_fraction=0.5, test_fraction=0.5)


def test_npz(tmp_path):
  x = np.random.default_rng(0).normal(size=(50, 3))
  np.savez(tmp_path / 'a.npz', x=x, y=np.arange(50) % 5)
  ds = data.load(_cfg('npz', path=str(tmp_path / 'a.npz')), seed=0)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (36, 4, 10)
  assert ds.num_classes == 5 and ds.train.x.dtype == np.float32 and ds.feature_shape == (3,)
  x[7, 2] = np.nan
  np.savez(tmp_path / 'b.npz', x=x)
  with pytest.raises(AelabError, match=r'x\[7, 2\] is nan'):
    data.load(_cfg('npz', path=str(tmp_path / 'b.npz')), seed=0)
  np.savez(tmp_path / 'c.npz', features=x)
  with pytest.raises(AelabError, match='no array named "x" .found: features'):
    data.load(_cfg('npz', path=str(tmp_path / 'c.npz')), seed=0)


# --- splits -------------------------------------------------------------------------------------

def test_split_off_deterministic_disjoint_sizes():
  x = np.arange(100, dtype=np.float32)[:, None]
  y = np.arange(100, dtype=np.int32)
  (xa, ya), (xb, yb) = split_off(x, y, 0.25, seed=7)
  assert (len(ya), len(yb)) == (75, 25)
  assert not set(ya) & set(yb) and set(ya) | set(yb) == set(range(100))
  np.testing.assert_array_equal(xa[:, 0], ya)
  (_, ya2), (_, yb2) = split_off(x, y, 0.25, seed=7)
  np.testing.assert_array_equal(yb, yb2)
  (_, _), (_, yb3) = split_off(x, y, 0.25, seed=8)
  assert set(yb3) != set(yb)
  (_, _), (xb0, yb0) = split_off(x, None, 0.0, seed=0)
  assert len(xb0) == 0 and yb0 is None
  with pytest.raises(AelabError, match=r'\[0, 1\)'):
    split_off(x, y, 1.0, seed=0)


def test_dataset_splits_deterministic_and_disjoint():
  cfg = _cfg('blobs', num_examples=300)
  a, b = data.load(cfg, seed=5), data.load(cfg, seed=5)
  np.testing.assert_array_equal(a.val.x, b.val.x)
  assert (len(a.train), len(a.val), len(a.test)) == (243, 27, 30)
  rows = [tuple(r) for s in (a.train, a.val, a.test) for r in s.x]
  assert len(set(rows)) == 300
  c = data.load(cfg, seed=6)
  assert not np.array_equal(a.test.x, c.test.x)


def test_epoch_permutation():
  p0 = epoch_permutation(1000, seed=3, epoch=0)
  np.testing.assert_array_equal(p0, epoch_permutation(1000, seed=3, epoch=0))
  np.testing.assert_array_equal(p0, np.random.default_rng([3, 0]).permutation(1000))
  assert sorted(p0.tolist()) == list(range(1000))
  assert not np.array_equal(p0, epoch_permutation(1000, seed=3, epoch=1))
  assert not np.array_equal(p0, epoch_permutation(1000, seed=4, epoch=0))


# --- synthetic ----------------------------------------------------------------------------------

def test_lowvar_statistics():
  ds = data.load(defaults.dataset('lowvar'), seed=0)
  x = np.concatenate([ds.train.x, ds.val.x, ds.test.x])
  assert x.shape == (10000, 84) and x.dtype == np.float32 and ds.train.y is None
  assert abs(x.mean() - 1.1090579) < 1e-5
  assert abs(x.std() / 0.0012380764 - 1) < 0.01
  assert (len(ds.train), len(ds.val), len(ds.test)) == (8100, 900, 1000)
  assert ds.num_classes is None and ds.value_range is None


def test_blobs_labels():
  ds = data.load(defaults.dataset('blobs'), seed=0)
  assert ds.feature_shape == (16,) and ds.num_classes == 4
  assert set(np.unique(ds.train.y)) == {0, 1, 2, 3}
  # Clusters are separable: nearest class mean classifies the test split well.
  means = np.stack([ds.train.x[ds.train.y == k].mean(0) for k in range(4)])
  pred = np.argmin(((ds.test.x[:, None] - means) ** 2).sum(-1), axis=1)
  assert (pred == ds.test.y).mean() > 0.95


# --- registry -----------------------------------------------------------------------------------

def test_registry_names_and_defaults():
  assert catalog.names('source') == ('activations', 'blobs', 'codes', 'csv', 'fashion_mnist',
                                     'lowvar', 'mnist', 'npy', 'npz', 'sprites', 'sprites32',
                                     'synth_sae', 'synth_sae_16k', 'toy_features')
  cfg = defaults.dataset('mnist')
  assert cfg.name == 'mnist' and cfg.path is None and cfg.val_fraction == 0.1
  cfg.path = '/somewhere'  # a None default is a str placeholder, so it can be overridden
  assert cfg.path == '/somewhere'
  with pytest.raises(AelabError, match="unknown dataset 'mnits'; valid choices: activations, blobs, codes, csv, fashion_mnist"):
    defaults.dataset('mnits')


def test_unknown_field_named_with_valid_ones():
  cfg = defaults.dataset('lowvar').to_dict()
  cfg['num_feature'] = 3
  with pytest.raises(AelabError) as e:
    data.load(cfg, seed=0)
  msg = str(e.value)
  assert 'num_feature' in msg and 'num_features' in msg and 'valid fields' in msg


def test_partial_config_uses_defaults():
  ds = data.load({'name': 'lowvar', 'num_examples': 100, 'num_features': 3}, seed=0)
  assert ds.feature_shape == (3,) and len(ds.train) + len(ds.val) + len(ds.test) == 100


def test_split_validation():
  with pytest.raises(AelabError, match='float32'):
    Split(x=np.zeros((2, 3)), y=None)
  with pytest.raises(AelabError, match='2 rows of x but 3 labels'):
    Split(x=np.zeros((2, 3), np.float32), y=np.zeros(3, np.int32))


_SHARED_MNIST = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'mnist'
_DEBIAN_FASHION = Path('/usr/share/datasets/fashion-mnist')


@pytest.mark.skipif(not (_SHARED_MNIST.is_dir() and _DEBIAN_FASHION.is_dir()),
                    reason='needs ../shared/data/mnist and dataset-fashion-mnist')
def test_fashion_search_passes_over_a_data_dir_of_mnist_files(monkeypatch):
  monkeypatch.setenv('AELAB_DATA_DIR', str(_SHARED_MNIST))  # MNIST files under published names
  monkeypatch.setattr(locate, 'SYSTEM_DIRS', {'fashion_mnist': (_DEBIAN_FASHION,)})
  cfg = defaults.dataset('fashion_mnist')
  cfg.update(train_limit=100, test_limit=100)
  ds = data.load(cfg, seed=0)
  assert all(str(_DEBIAN_FASHION) in f['path'] for f in ds.source['files'].values())
