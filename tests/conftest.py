import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PLATO_SHARED_DATA", REPO.parent / "shared" / "data"))
MNIST_PNG = SHARED_DATA / "mnist-png.tar.gz"
CIFAR10_JPEG = SHARED_DATA / "cifar10-jpeg-q75.tar.gz"


@pytest.fixture(autouse=True)
def _small_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One decode cache for the whole session (real archives decode once)."""
    return tmp_path_factory.mktemp("plato-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(shared_cache, monkeypatch):
    monkeypatch.setenv("PLATO_CACHE", str(shared_cache))


def need(path: Path):
    """Skip, with the reason, when a real-data archive from ../shared/data is absent."""
    if not path.exists():
        pytest.skip(f"real data {path.name} not found at {path} (set PLATO_SHARED_DATA)")
    return path
