import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from plato.data import datasets, load_dataset
from plato.errors import DatasetError
from tests.conftest import CIFAR10_JPEG, MNIST_PNG, need


def test_digits_fixed_stratified_split():
    ds = load_dataset("digits")
    assert (len(ds.train), len(ds.test)) == (1437, 360)
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape[1:] == (1, 8, 8)
    assert ds.train.labels.dtype == torch.int64 and ds.num_classes == 10
    counts = torch.bincount(ds.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    again = load_dataset("digits")
    assert torch.equal(ds.test.images, again.test.images)  # fixed, not random per call
    assert ds.train.images.max() == 255 and 0 < ds.mean[0] < 1


def test_unknown_dataset():
    with pytest.raises(DatasetError, match="unknown dataset 'nope'.*digits"):
        load_dataset("nope")


def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_folder(root, size=(6, 5), mode="RGB", per_class=3, classes=("cat", "dog")):
    rng = np.random.default_rng(0)
    expected = {}
    for split in ("train", "test"):
        for cls in classes:
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                shape = (size[0], size[1], 3) if mode == "RGB" else size
                arr = rng.integers(0, 256, shape, dtype=np.uint8)
                (d / f"{i}.png").write_bytes(_png(arr))
                expected[(split, cls, i)] = arr
    return expected


def test_imagefolder_directory_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLATO_CACHE", str(tmp_path / "cache"))
    expected = make_folder(tmp_path / "imgs")
    ds = load_dataset(f"imagefolder:{tmp_path / 'imgs'}")
    assert ds.classes == ["cat", "dog"] and ds.input_shape == (3, 6, 5)
    assert len(ds.train) == 6 and len(ds.test) == 6
    # Files are read in sorted order: train/cat/0.png is the first image.
    np.testing.assert_array_equal(ds.train.images[0].permute(1, 2, 0).numpy(),
                                  expected[("train", "cat", 0)])
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(list((tmp_path / "cache" / "imagefolder").glob("*.safetensors"))) == 1

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again despite a cache")

    monkeypatch.setattr(datasets, "_decode_imagefolder", no_decode)
    cached = load_dataset(f"imagefolder:{tmp_path / 'imgs'}")
    assert torch.equal(cached.train.images, ds.train.images) and cached.classes == ds.classes


def test_imagefolder_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("PLATO_CACHE", str(tmp_path / "cache"))
    make_folder(tmp_path / "imgs", mode="L")
    first = load_dataset(f"imagefolder:{tmp_path / 'imgs'}")
    (cache,) = (tmp_path / "cache" / "imagefolder").glob("*.safetensors")
    cache.write_bytes(cache.read_bytes()[:50])
    again = load_dataset(f"imagefolder:{tmp_path / 'imgs'}")
    assert torch.equal(first.test.images, again.test.images) and again.input_shape[0] == 1


def test_imagefolder_tarball(tmp_path):
    expected = make_folder(tmp_path / "imgs", mode="L")
    with tarfile.open(tmp_path / "imgs.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "imgs", arcname="imgs")
    ds = load_dataset(f"imagefolder:{tmp_path / 'imgs.tar.gz'}")
    assert ds.input_shape == (1, 6, 5) and ds.short_name == "imgs"
    np.testing.assert_array_equal(ds.test.images[5, 0].numpy(), expected[("test", "dog", 2)])


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    make_folder(tmp_path / "a")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "a/train/cat/odd.png")
    with pytest.raises(DatasetError, match="one size"):
        load_dataset(f"imagefolder:{tmp_path / 'a'}")
    make_folder(tmp_path / "b")
    (tmp_path / "b/train/cat/bad.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="cannot decode 'train/cat/bad.png'"):
        load_dataset(f"imagefolder:{tmp_path / 'b'}")
    (tmp_path / "c/train/x").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images under 'train"):
        load_dataset(f"imagefolder:{tmp_path / 'c'}")
    (tmp_path / "corrupt.tar.gz").write_bytes(b"\x1f\x8b" + b"0" * 100)
    with pytest.raises(DatasetError, match="corrupt"):
        load_dataset(f"imagefolder:{tmp_path / 'corrupt.tar.gz'}")


@pytest.mark.slow
def test_real_mnist_png():
    ds = load_dataset(f"imagefolder:{need(MNIST_PNG)}")
    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert ds.input_shape == (1, 28, 28) and ds.classes == [str(i) for i in range(10)]
    assert ds.mean[0] == pytest.approx(0.1307, abs=5e-4)  # the canonical MNIST statistics
    assert ds.std[0] == pytest.approx(0.3081, abs=5e-4)
    assert torch.bincount(ds.test.labels).tolist()[1] == 1135  # canonical test count of '1'


@pytest.mark.slow
def test_real_cifar10_jpeg():
    ds = load_dataset(f"imagefolder:{need(CIFAR10_JPEG)}")
    assert (len(ds.train), len(ds.test)) == (50000, 10000) and ds.input_shape == (3, 32, 32)
    assert ds.classes[:3] == ["airplane", "automobile", "bird"]
    assert torch.bincount(ds.train.labels).tolist() == [5000] * 10
    assert ds.std == pytest.approx((0.2452, 0.2428, 0.2606), abs=5e-4)
