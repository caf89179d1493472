"""Official IDX files, their md5 sums and public mirrors; atomic, checksummed downloads."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from aelab.errors import AelabError

# Tests replace this (monkeypatch) so that no network call is made.
urlopen = urllib.request.urlopen

TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Official:
  """An official file: md5 of the published .gz and md5 of its decompressed content.

  The content md5 also accepts re-compressed copies (e.g. Debian's Fashion-MNIST package).
  """
  filename: str
  md5: str
  content_md5: str


ROLES = ('train_images', 'train_labels', 'test_images', 'test_labels')

OFFICIAL: dict[str, dict[str, Official]] = {
    'mnist': {
        'train_images': Official('train-images-idx3-ubyte.gz', 'f68b3c2dcbeaaa9fbdd348bbdeb94873',
                                 '6bbc9ace898e44ae57da46a324031adb'),
        'train_labels': Official('train-labels-idx1-ubyte.gz', 'd53e105ee54ea40749a09fcbcd1e9432',
                                 'a25bea736e30d166cdddb491f175f624'),
        'test_images': Official('t10k-images-idx3-ubyte.gz', '9fb629c4189551a2d022fa330f9573f3',
                                '2646ac647ad5339dbf082846283269ea'),
        'test_labels': Official('t10k-labels-idx1-ubyte.gz', 'ec29112dd5afa0611ce80d1b7f02629c',
                                '27ae3e4e09519cfbb04c329615203637'),
    },
    'fashion_mnist': {
        'train_images': Official('train-images-idx3-ubyte.gz', '8d4fb7e6c68d591d4c3dfef9ec88bf0d',
                                 'f4a8712d7a061bf5bd6d2ca38dc4d50a'),
        'train_labels': Official('train-labels-idx1-ubyte.gz', '25c81989df183df01b3e8a0aad5dffbe',
                                 '9018921c3c673c538a1fc5bad174d6f9'),
        'test_images': Official('t10k-images-idx3-ubyte.gz', 'bef4ecab320f06d8554ea6380940ec79',
                                '8181f5470baa50b63fa0f6fddb340f0a'),
        'test_labels': Official('t10k-labels-idx1-ubyte.gz', 'bb300cfdad3c16e7a12a480ee83cd310',
                                '15d484375f8d13e6eb1aabb0c3f46965'),
    },
}

# Tried in order; each is a base URL that the official file name is appended to.
MIRRORS: dict[str, tuple[str, ...]] = {
    'mnist': (
        'https://ossci-datasets.s3.amazonaws.com/mnist/',
        'https://storage.googleapis.com/cvdf-datasets/mnist/',
    ),
    'fashion_mnist': (
        'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
        'https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/',
    ),
}


class DownloadError(AelabError):
  """Every mirror failed; `failures` holds (url, reason) pairs."""

  def __init__(self, failures: list[tuple[str, str]]):
    self.failures = failures
    super().__init__('download failed: ' + '; '.join(f'{u}: {r}' for u, r in failures))


def md5_of(data: bytes) -> str:
  return hashlib.md5(data).hexdigest()


def fetch(urls: Sequence[str], dest: Path, md5: str, timeout: float = TIMEOUT_S) -> Path:
  """Downloads the first of `urls` whose bytes have `md5` to `dest`, atomically.

  The bytes go to a temporary file beside `dest`, which is renamed only when the md5
  matches; on any failure nothing is left behind. Raises DownloadError if no URL works.
  """
  if os.environ.get('AELAB_OFFLINE', '') not in ('', '0'):
    raise DownloadError([(url, 'not tried: AELAB_OFFLINE is set') for url in urls])
  dest = Path(dest)
  dest.parent.mkdir(parents=True, exist_ok=True)
  failures = []
  for url in urls:
    fd, tmp = tempfile.mkstemp(prefix=f'.{dest.name}.', suffix='.part', dir=dest.parent)
    try:
      digest = hashlib.md5()
      with os.fdopen(fd, 'wb') as out, urlopen(url, timeout=timeout) as response:
        while chunk := response.read(_CHUNK):
          digest.update(chunk)
          out.write(chunk)
      if digest.hexdigest() != md5:
        failures.append((url, f'md5 {digest.hexdigest()} != expected {md5}'))
        continue
      os.replace(tmp, dest)
      _log.info('downloaded %s -> %s', url, dest)
      return dest
    except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts are OSErrors.
      failures.append((url, f'{type(e).__name__}: {e}'))
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
  raise DownloadError(failures)
