"""Canonical dataset files: where they come from, their checksums, and their parsers.

Parsers read the canonical formats exactly (MNIST's IDX `.gz` files, CIFAR's python tarballs)
and turn every kind of damage into a `DatasetError` that names the file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import shutil
import struct
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plato.errors import DatasetError


@dataclass(frozen=True)
class RemoteFile:
    """One canonical file: its name on disk, where to fetch it, and its MD5 (as published)."""

    filename: str
    url: str
    md5: str


MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train_images": RemoteFile(
        "train-images-idx3-ubyte.gz",
        MNIST_MIRROR + "train-images-idx3-ubyte.gz",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    "train_labels": RemoteFile(
        "train-labels-idx1-ubyte.gz",
        MNIST_MIRROR + "train-labels-idx1-ubyte.gz",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    "test_images": RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        MNIST_MIRROR + "t10k-images-idx3-ubyte.gz",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    "test_labels": RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        MNIST_MIRROR + "t10k-labels-idx1-ubyte.gz",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
}
CIFAR10_FILE = RemoteFile(
    "cifar-10-python.tar.gz",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
)
CIFAR100_FILE = RemoteFile(
    "cifar-100-python.tar.gz",
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "eb9058c3a382ffc7106e4002c42a8d85",
)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(remote: RemoteFile, folder: Path, download: bool) -> Path:
    """The verified local copy of `remote` in `folder`, downloading it first if allowed."""
    path = folder / remote.filename
    if not path.exists():
        if not download:
            raise DatasetError(
                f"missing dataset file {path}: put the canonical '{remote.filename}' "
                f"({remote.url}) there, or pass download=True (`--download`) on a machine "
                "with internet access"
            )
        _download(remote, path)
    digest = file_digest(path, "md5")
    if digest != remote.md5:
        raise DatasetError(
            f"{path} is corrupt or not the canonical file (md5 {digest}, expected "
            f"{remote.md5}): delete it and download '{remote.filename}' again"
        )
    return path


def _download(remote: RemoteFile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(remote.url, timeout=30) as response, open(partial, "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as e:  # URLError and socket errors are OSErrors
        partial.unlink(missing_ok=True)
        raise DatasetError(
            f"could not download {remote.url} ({e}): without a network, put the file at {path}"
        ) from None
    partial.replace(path)


# --------------------------------------------------------------------------------------------
# MNIST: IDX files, big-endian header (magic, then one uint32 per dimension), then uint8 data
# --------------------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Parse a gzip-compressed IDX file (ubyte data only, as MNIST uses)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path} is not a readable .gz file ({e}): download it again") from None
    if len(raw) < 4:
        raise DatasetError(f"{path} is too short to be an IDX file: download it again")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes: wrong magic number")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(
            f"{path} holds {len(raw)} bytes but its header announces {expected}: "
            "the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


# --------------------------------------------------------------------------------------------
# CIFAR: a tarball of python pickles. Unpickling runs code, so only the few classes a genuine
# CIFAR batch contains (dicts, lists, numpy arrays) are allowed to load.
# --------------------------------------------------------------------------------------------

_ALLOWED_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_batch(tar: tarfile.TarFile, member: str, path: Path) -> dict[str, object]:
    try:
        f = tar.extractfile(member)
    except KeyError:
        raise DatasetError(
            f"{path} has no member '{member}': it is not a canonical CIFAR python tarball"
        ) from None
    if f is None:
        raise DatasetError(f"{path}: '{member}' is not a regular file")
    try:
        batch = _CifarUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except Exception as e:  # any damage inside a pickle surfaces as one of many exceptions
        raise DatasetError(f"{path}: '{member}' is corrupt ({e}): download it again") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: '{member}' is not a CIFAR batch dictionary")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _batch_arrays(batch: dict, label_key: str, member: str, path: Path):
    try:
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # (N, C, H, W)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (KeyError, ValueError) as e:
        raise DatasetError(f"{path}: '{member}' lacks valid data or labels ({e})") from None
    if len(labels) != len(data):
        raise DatasetError(f"{path}: '{member}' has {len(data)} images but {len(labels)} labels")
    return data, labels


def _names(meta: dict, key: str) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DatasetError(f"{path} is not a readable .tar.gz ({e}): download it again") from None


def read_cifar10(path: Path):
    """(train_x, train_y, test_x, test_y, class_names) from cifar-10-python.tar.gz."""
    root = "cifar-10-batches-py/"
    with _open_tar(path) as tar:
        def arrays(member: str):
            return _batch_arrays(_load_batch(tar, root + member, path), "labels", member, path)

        try:
            train = [arrays(f"data_batch_{i}") for i in range(1, 6)]
            test = arrays("test_batch")
            classes = _names(_load_batch(tar, root + "batches.meta", path), "label_names")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DatasetError(f"{path} is truncated or corrupt ({e}): download it again") from None
    return (
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        test[0],
        test[1],
        classes,
    )


def read_cifar100(path: Path):
    """(train_x, train_y, test_x, test_y, class_names) from cifar-100-python.tar.gz.

    Labels are the 100 fine labels.
    """
    root = "cifar-100-python/"
    with _open_tar(path) as tar:
        def arrays(member: str):
            return _batch_arrays(_load_batch(tar, root + member, path), "fine_labels", member,
                                 path)

        try:
            train = arrays("train")
            test = arrays("test")
            classes = _names(_load_batch(tar, root + "meta", path), "fine_label_names")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DatasetError(f"{path} is truncated or corrupt ({e}): download it again") from None
    return train[0], train[1], test[0], test[1], classes
