"""The dataset registry: `load_dataset(name)` gives uint8 images and int64 labels per split.

Names: `digits` (bundled with scikit-learn, the offline default), `mnist`, `cifar10`,
`cifar100` (canonical archives, checksum-verified) and `imagefolder:<path>` (a folder or
`.tar.gz` holding `train/<class>/*` and `test/<class>/*` images, decoded once and cached).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from plato.data import archives
from plato.errors import DatasetError, fault_message, printable
from plato.files import write_safetensors

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
# What one image of an image folder may cost, checked before it is read or decoded: a few
# hundred compressed bytes can declare gigabytes (a member of zeros, a PNG header of
# 30000x30000). Far above any dataset a stitching study decodes into memory.
MAX_MEMBER_BYTES = 64 * 2**20
MAX_IMAGE_PIXELS = 4096 * 4096
# All of an image folder's images, decoded (held in memory, cached on disk): 5.8 times
# CIFAR-10's 60,000 32x32 colour images. More with `plato --max-decoded-gb N`.
DEFAULT_MAX_DECODED_GB = 1.0


@dataclass
class Split:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DatasetError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                               f"{tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise DatasetError(f"{len(self.images)} images but labels of shape "
                               f"{tuple(self.labels.shape)}")
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int, seed: int = 0) -> Split:
        """A class-balanced-in-expectation random subset of n examples (deterministic)."""
        if n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n].sort().values
        return Split(self.images[idx], self.labels[idx])


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    classes: list[str]
    mean: tuple[float, ...]  # per channel, of pixel values scaled to [0, 1]
    std: tuple[float, ...]
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # (C, H, W)

    @property
    def short_name(self) -> str:
        """A name fit for a file name: `imagefolder:/x/cifar10-jpeg.tar.gz` -> `cifar10-jpeg`."""
        if not self.name.startswith("imagefolder:"):
            return self.name
        base = Path(self.name.split(":", 1)[1]).name
        for suffix in (".tar.gz", ".tgz", ".tar"):
            base = base.removesuffix(suffix)
        return base

    def fingerprint(self) -> str:
        """SHA-256 of the content (images, labels, classes): identifies the data in job keys."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for split in (self.train, self.test):
                h.update(split.images.numpy().tobytes())
                h.update(split.labels.numpy().tobytes())
            h.update(json.dumps(self.classes).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> Dataset:
        """The same dataset with random subsets of the splits (for quick runs and benchmarks)."""
        return Dataset(
            f"{self.name}[train={train},test={test},seed={seed}]" if (train or test) else self.name,
            self.train.subset(train, seed) if train else self.train,
            self.test.subset(test, seed) if test else self.test,
            self.classes,
            self.mean,
            self.std,
        )


def hold_out(dataset: Dataset, n: int, seed: int = 0) -> tuple[Dataset, Split]:
    """The training split cut in two at random (seeded): the dataset with the rest as its
    training split, and the `n` examples held out (for decisions such as when to stop; the
    test split takes part in none)."""
    if not 0 < n < len(dataset.train):
        raise DatasetError(f"cannot hold out {n} of the {len(dataset.train)} training "
                           "examples: hold out fewer")
    order = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(seed))
    held, kept = order[:n].sort().values, order[n:].sort().values
    train = dataset.train
    rest = Dataset(f"{dataset.name}[held out {n}, seed {seed}]",
                   Split(train.images[kept], train.labels[kept]), dataset.test,
                   dataset.classes, dataset.mean, dataset.std)
    return rest, Split(train.images[held], train.labels[held])


def cache_dir() -> Path:
    """Where decoded datasets and canonical files are kept: $PLATO_CACHE, else ~/.cache/plato."""
    return Path(os.environ.get("PLATO_CACHE", Path.home() / ".cache" / "plato")).expanduser()


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of [0, 1] pixels, from a 256-bin histogram (no copies)."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].flatten(), minlength=256).to(torch.float64)
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / (n - 1)
        means.append(mean.item())
        stds.append(var.sqrt().item())
    return tuple(means), tuple(stds)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[[Path | None, bool], Dataset]] = {}


def _register(name: str):
    def wrap(fn):
        _LOADERS[name] = fn
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(_LOADERS) + ["imagefolder:<path>"]


def load_dataset(name: str, root: str | Path | None = None, download: bool = False) -> Dataset:
    """Load a dataset by name. `root` is the folder holding its files (default: the cache)."""
    if name.startswith("imagefolder:"):
        path = name.split(":", 1)[1]
        if not path:
            raise DatasetError("imagefolder needs a path: imagefolder:/path/to/folder-or.tar.gz")
        return load_imagefolder(Path(path).expanduser() if root is None else Path(root) / path)
    if name not in _LOADERS:
        raise DatasetError(
            f"unknown dataset '{name}': choose one of {', '.join(list_datasets())}"
        )
    folder = Path(root).expanduser() if root is not None else cache_dir() / name
    return _LOADERS[name](folder, download)


@_register("digits")
def load_digits(root: Path | None = None, download: bool = False) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    tr_x, te_x, tr_y, te_y = train_test_split(
        images, labels, test_size=0.2, random_state=0, stratify=labels
    )
    train = Split(torch.from_numpy(tr_x), torch.from_numpy(tr_y))
    mean, std = _channel_stats(train.images)
    return Dataset(
        "digits", train, Split(torch.from_numpy(te_x), torch.from_numpy(te_y)),
        [str(i) for i in range(10)], mean, std,
    )


@_register("mnist")
def load_mnist(root: Path, download: bool = False) -> Dataset:
    paths = {k: archives.fetch(f, root, download) for k, f in archives.MNIST_FILES.items()}
    parts = {k: archives.read_idx(p) for k, p in paths.items()}
    for split in ("train", "test"):
        if parts[f"{split}_images"].ndim != 3 or len(parts[f"{split}_images"]) != len(
            parts[f"{split}_labels"]
        ):
            raise DatasetError(f"MNIST {split} images and labels in {root} do not match")
    return Dataset(
        "mnist",
        Split(torch.from_numpy(parts["train_images"][:, None].copy()),
              torch.from_numpy(parts["train_labels"].astype(np.int64))),
        Split(torch.from_numpy(parts["test_images"][:, None].copy()),
              torch.from_numpy(parts["test_labels"].astype(np.int64))),
        [str(i) for i in range(10)],
        (0.1307,),
        (0.3081,),
    )


def _cifar(name: str, remote, reader, mean, std, root: Path, download: bool) -> Dataset:
    tr_x, tr_y, te_x, te_y, classes = reader(archives.fetch(remote, root, download))
    return Dataset(
        name,
        Split(torch.from_numpy(tr_x.copy()), torch.from_numpy(tr_y)),
        Split(torch.from_numpy(te_x.copy()), torch.from_numpy(te_y)),
        classes, mean, std,
    )


@_register("cifar10")
def load_cifar10(root: Path, download: bool = False) -> Dataset:
    return _cifar("cifar10", archives.CIFAR10_FILE, archives.read_cifar10,
                  (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), root, download)


@_register("cifar100")
def load_cifar100(root: Path, download: bool = False) -> Dataset:
    return _cifar("cifar100", archives.CIFAR100_FILE, archives.read_cifar100,
                  (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), root, download)


# --------------------------------------------------------------------------------------------
# Image folders: decoded once, cached as safetensors keyed by the source's checksum
# --------------------------------------------------------------------------------------------

def _walk_folder(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    for file in sorted(path.rglob("*")):
        if file.is_file():
            yield _member_name(path, file.relative_to(path).as_posix(),
                               file.stat().st_size), file.read_bytes


def _walk_tar(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    name = _member_name(path, member.name, member.size)
                    data = tar.extractfile(member).read()
                    yield name, lambda d=data: d
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DatasetError(f"{path} is truncated or corrupt ({e}): replace the archive") from None


def _member_name(archive: Path, name: str, size: int) -> str:
    """The member's path inside the archive (or folder), refused when it points outside it
    (absolute, or through '..') or declares more than MAX_MEMBER_BYTES."""
    parts = name.split("/")
    if name.startswith("/") or ".." in parts:
        raise DatasetError(f"{archive}: member '{name}' points outside the archive; an image "
                           "folder's members are train/<class>/FILE and test/<class>/FILE")
    if size > MAX_MEMBER_BYTES:
        raise DatasetError(f"{archive}: member '{name}' declares {size:,} bytes, more than "
                           f"an image may ({MAX_MEMBER_BYTES:,}); remove it from the dataset")
    return name.removeprefix("./")


def _source_key(path: Path) -> str:
    """A checksum of the source: the archive's bytes, or a folder's names, sizes and times."""
    if path.is_file():
        return archives.file_digest(path)
    h = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if file.is_file():
            st = file.stat()
            h.update(f"{file.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _split_and_class(relpath: str) -> tuple[str, str] | None:
    """('train', 'cat') for '[top/]train/cat/0001.png'; None for files outside the layout."""
    parts = relpath.split("/")
    if Path(relpath).suffix.lower() not in IMAGE_SUFFIXES or len(parts) < 3:
        return None
    split, cls = parts[-3], parts[-2]
    return (split, cls) if split in ("train", "test") else None


@dataclass(frozen=True)
class _Member:
    """An image of an image folder, read but not decoded: what its header declares."""

    relpath: str
    split: str
    cls: str
    data: bytes
    height: int
    width: int
    channels: int  # 1 for greyscale, 3 for anything else (converted to RGB)


def max_decoded_bytes() -> int:
    """The most bytes an image folder may decode to (and so its cache file may hold):
    $PLATO_MAX_DECODED_GB GiB (`plato --max-decoded-gb`), else DEFAULT_MAX_DECODED_GB."""
    text = os.environ.get("PLATO_MAX_DECODED_GB", str(DEFAULT_MAX_DECODED_GB))
    try:
        gb = float(text)
    except ValueError:
        gb = float("nan")
    if not 0 < gb < float("inf"):
        raise DatasetError(f"the most an image folder may decode to (`plato --max-decoded-gb`"
                           f", PLATO_MAX_DECODED_GB) must be a positive number of GiB, got "
                           f"'{text[:40]}'")
    return int(gb * 2**30)


def _header(relpath: str, data: bytes, source: Path) -> tuple[int, int, int]:
    """(height, width, channels) an image's header declares, read without decoding it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            width, height, mode = img.width, img.height, img.mode
    except Image.DecompressionBombError:  # Pillow's own limit, above ours: the header too
        raise DatasetError(f"{source}: '{relpath}' declares more pixels than an image may "
                           f"({MAX_IMAGE_PIXELS:,}); remove it or resize the dataset") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DatasetError(f"{source}: cannot decode '{relpath}' ({e}): fix or remove it") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise DatasetError(f"{source}: '{relpath}' declares {width}x{height} pixels, more "
                           f"than an image may ({MAX_IMAGE_PIXELS:,}); remove it or resize the "
                           "dataset")
    return height, width, 1 if mode == "L" else 3


def _decode(member: _Member, source: Path) -> np.ndarray:
    """The image's pixels, (H, W, C) uint8, as its header declared them."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(member.data)) as img:
            arr = np.asarray(img if img.mode in ("L", "RGB") else img.convert("RGB"),
                             dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as e:  # a body damaged behind a sound header
        raise DatasetError(f"{source}: cannot decode '{member.relpath}' ({e}): fix or remove "
                           "it") from None
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if arr.shape != (member.height, member.width, member.channels):
        raise DatasetError(f"{source}: '{member.relpath}' decodes to {arr.shape} pixels, not "
                           "what its header declares: fix or remove it")
    return arr


def _read_members(path: Path) -> list[_Member]:
    """Every image of the folder or archive, read and its header checked, none decoded: all
    of one size, and all together within max_decoded_bytes() once decoded (a few KB of PNGs
    of a blank 4096x4096 each declare gigabytes: refused before any is decoded)."""
    from tqdm import tqdm

    limit = max_decoded_bytes()
    walk = _walk_tar(path) if path.is_file() else _walk_folder(path)
    members: list[_Member] = []
    held, most_channels = 0, 1
    reading = tqdm(walk, desc=printable(f"reading {path.name}"), unit="file", leave=False)
    for relpath, read in reading:
        where = _split_and_class(relpath)
        if where is None:
            continue
        data = read()
        height, width, channels = _header(relpath, data, path)
        if members and (height, width) != (members[0].height, members[0].width):
            raise DatasetError(
                f"{path}: '{relpath}' is {width}x{height} but earlier images are "
                f"{members[0].width}x{members[0].height}: all images must have one size")
        # decoded: (N, C, H, W), grey images repeated where any image has colour
        held, most_channels = held + len(data), max(most_channels, channels)
        decoded = (len(members) + 1) * most_channels * height * width
        if max(decoded, held) > limit:
            raise DatasetError(
                f"{path}: its images decode to more than {limit / 2**30:.3g} GiB "
                f"({limit:,} bytes; reached at "
                f"image {len(members) + 1:,}, '{relpath}', of {width}x{height}); the decoded "
                "images are held in memory and cached on disk: raise the limit with `plato "
                "--max-decoded-gb N` (or PLATO_MAX_DECODED_GB), or use fewer or smaller "
                "images")
        members.append(_Member(relpath, *where, data, height, width, channels))
    return members


def _decode_imagefolder(path: Path) -> tuple[dict[str, Split], list[str]]:
    from tqdm import tqdm

    members = _read_members(path)
    found = {split: [m for m in members if m.split == split] for split in ("train", "test")}
    for split in ("train", "test"):
        if not found[split]:
            raise DatasetError(
                f"{path} has no images under '{split}/<class>/': an image folder needs "
                "train/<class>/*.png|jpg and test/<class>/*.png|jpg"
            )
    classes = sorted({m.cls for m in found["train"]})
    unknown = sorted({m.cls for m in found["test"]} - set(classes))
    if unknown:
        raise DatasetError(f"{path}: test classes {unknown} have no training images")
    channels = max(m.channels for m in members)
    height, width = members[0].height, members[0].width
    index = {c: i for i, c in enumerate(classes)}
    bar = tqdm(total=len(members), desc=printable(f"decoding {path.name}"), unit="img", leave=False)
    splits = {}
    for split, items in found.items():
        images = np.empty((len(items), channels, height, width), np.uint8)  # (N, C, H, W)
        for i, member in enumerate(items):
            # (H, W, C) -> (C, H, W); grey images join colour ones by repeating the channel
            images[i] = _decode(member, path).transpose(2, 0, 1)
            bar.update()
        labels = np.array([index[m.cls] for m in items], dtype=np.int64)
        splits[split] = Split(torch.from_numpy(images), torch.from_numpy(labels))
    bar.close()
    return splits, classes


def load_imagefolder(path: Path) -> Dataset:
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        raise DatasetError(
            f"image folder {path} does not exist: give a folder or .tar.gz holding "
            "train/<class>/* and test/<class>/* images"
        )
    key = _source_key(path)
    cached = cache_dir() / "imagefolder" / f"{key[:32]}.safetensors"
    tensors = None
    if cached.exists():
        try:
            with safe_open(cached, framework="pt") as f:
                classes = json.loads(f.metadata()["classes"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, KeyError, TypeError):
            tensors = None  # a damaged cache is rebuilt, never trusted
    if tensors is None:
        splits, classes = _decode_imagefolder(path)
        tensors = {
            "train_images": splits["train"].images, "train_labels": splits["train"].labels,
            "test_images": splits["test"].images, "test_labels": splits["test"].labels,
        }
        try:  # whole or not at all: readers never see half a cache
            write_safetensors(cached, tensors, {"classes": json.dumps(classes),
                                                "source": str(path)})
        except (SafetensorError, OSError) as e:  # the data is decoded: go on without a cache
            print(printable(f"plato: warning: cannot cache the decoded images in "
                            f"{cached.parent}: {fault_message(e)}; they will be decoded again "
                            "next time"), file=sys.stderr)
    train = Split(tensors["train_images"], tensors["train_labels"])
    mean, std = _channel_stats(train.images)
    return Dataset(f"imagefolder:{path}", train, Split(tensors["test_images"],
                   tensors["test_labels"]), classes, mean, std)
