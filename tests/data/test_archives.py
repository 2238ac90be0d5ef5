"""The canonical-format parsers, on tiny archives built here in each format."""

import gzip
import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest

from plato.data import archives, load_dataset
from plato.errors import DatasetError


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                     *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_mnist(folder, n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    data = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    for key, arr in data.items():
        write_idx(folder / archives.MNIST_FILES[key].filename, arr)
    return data


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def trust_local_files(monkeypatch, folder):
    """Make the tiny files the 'canonical' ones, so the loader's checksum check passes."""
    files = {k: archives.RemoteFile(f.filename, f.url, md5(folder / f.filename))
             for k, f in archives.MNIST_FILES.items()}
    monkeypatch.setattr(archives, "MNIST_FILES", files)


def test_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", arr)
    np.testing.assert_array_equal(archives.read_idx(tmp_path / "x.gz"), arr)


def test_idx_truncated_and_bad_magic(tmp_path):
    arr = np.zeros((5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "ok.gz", arr)
    raw = gzip.decompress((tmp_path / "ok.gz").read_bytes())
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetError, match="truncated"):
        archives.read_idx(tmp_path / "short.gz")
    (tmp_path / "magic.gz").write_bytes(gzip.compress(b"\x01\x02" + raw[2:]))
    with pytest.raises(DatasetError, match="magic"):
        archives.read_idx(tmp_path / "magic.gz")
    (tmp_path / "cut.gz").write_bytes((tmp_path / "ok.gz").read_bytes()[:40])
    with pytest.raises(DatasetError, match="not a readable .gz"):
        archives.read_idx(tmp_path / "cut.gz")


def test_mnist_loads_verified_files(tmp_path, monkeypatch):
    data = make_mnist(tmp_path)
    trust_local_files(monkeypatch, tmp_path)
    ds = load_dataset("mnist", root=tmp_path)
    assert ds.train.images.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(ds.train.images[:, 0].numpy(), data["train_images"])
    np.testing.assert_array_equal(ds.test.labels.numpy(), data["test_labels"])
    assert ds.mean == (0.1307,) and ds.std == (0.3081,)


def test_mnist_checksum_mismatch_is_refused(tmp_path):
    make_mnist(tmp_path)  # real MNIST checksums: these tiny files cannot match
    with pytest.raises(DatasetError, match="corrupt or not the canonical file"):
        load_dataset("mnist", root=tmp_path)


def test_missing_file_names_file_and_place(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", root=tmp_path)
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path) in msg and "download" in msg


def test_download_from_a_local_url(tmp_path, monkeypatch):
    """The download path, exercised without a network through file:// URLs."""
    src = tmp_path / "mirror"
    src.mkdir()
    make_mnist(src)
    files = {k: archives.RemoteFile(f.filename, (src / f.filename).as_uri(),
                                    md5(src / f.filename))
             for k, f in archives.MNIST_FILES.items()}
    monkeypatch.setattr(archives, "MNIST_FILES", files)
    dest = tmp_path / "dest"
    ds = load_dataset("mnist", root=dest, download=True)
    assert len(ds.train) == 20 and (dest / "train-images-idx3-ubyte.gz").exists()


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    files = dict(archives.MNIST_FILES)
    files["train_images"] = archives.RemoteFile(
        "train-images-idx3-ubyte.gz", (tmp_path / "nowhere.gz").as_uri(), "0" * 32)
    monkeypatch.setattr(archives, "MNIST_FILES", files)
    with pytest.raises(DatasetError, match="could not download") as err:
        load_dataset("mnist", root=tmp_path / "dest", download=True)
    assert "put the file at" in str(err.value)
    assert not list((tmp_path / "dest").glob("*.part"))


def _pickled(obj):
    return pickle.dumps(obj, protocol=2)


def make_cifar10(path, n=4):
    rng = np.random.default_rng(1)
    members = {}
    batches = []
    for i in range(1, 6):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = list(rng.integers(0, 10, n))
        batches.append((x, y))
        members[f"cifar-10-batches-py/data_batch_{i}"] = _pickled(
            {b"data": x, b"labels": [int(v) for v in y]})
    tx = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    members["cifar-10-batches-py/test_batch"] = _pickled({b"data": tx, b"labels": [1] * n})
    members["cifar-10-batches-py/batches.meta"] = _pickled(
        {b"label_names": [f"c{i}".encode() for i in range(10)]})
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return batches, tx


def test_cifar10_tarball(tmp_path):
    batches, tx = make_cifar10(tmp_path / "c.tar.gz")
    tr_x, tr_y, te_x, te_y, classes = archives.read_cifar10(tmp_path / "c.tar.gz")
    assert tr_x.shape == (20, 3, 32, 32) and te_x.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(tr_x[:4].reshape(4, -1), batches[0][0])
    assert classes == [f"c{i}" for i in range(10)] and list(te_y) == [1] * 4


def make_cifar100(path, n_train=6, n_test=2, seed=2):
    """A CIFAR-100 archive in the canonical format (python pickles in cifar-100-python/):
    random images, fine labels cycling over the 100 classes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n_train + n_test, 3072), dtype=np.uint8)
    fine = [i % 100 for i in range(n_train + n_test)]
    members = {
        "cifar-100-python/train": _pickled({b"data": x[:n_train], b"fine_labels": fine[:n_train],
                                            b"coarse_labels": [0] * n_train}),
        "cifar-100-python/test": _pickled({b"data": x[n_train:], b"fine_labels": fine[n_train:]}),
        "cifar-100-python/meta": _pickled({b"fine_label_names": [b"apple"] * 100}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return x, fine


def test_cifar100_tarball(tmp_path):
    x, fine = make_cifar100(tmp_path / "c100.tar.gz")
    tr_x, tr_y, te_x, te_y, classes = archives.read_cifar100(tmp_path / "c100.tar.gz")
    assert tr_x.shape == (6, 3, 32, 32) and list(te_y) == fine[6:] and len(classes) == 100
    np.testing.assert_array_equal(tr_x.reshape(6, -1), x[:6])


def test_cifar_corrupt_tarball(tmp_path):
    make_cifar10(tmp_path / "c.tar.gz")
    blob = (tmp_path / "c.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="corrupt|truncated|readable"):
        archives.read_cifar10(tmp_path / "cut.tar.gz")


def test_cifar_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    blob = pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2)
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
        for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                     "data_batch_5", "test_batch", "batches.meta"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(DatasetError, match="refusing to load"):
        archives.read_cifar10(tmp_path / "evil.tar.gz")
