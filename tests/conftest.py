import os
from pathlib import Path

import pytest
import torch

import plato
from plato.checkpoint import save_checkpoint
from plato.train import Recipe, train

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PLATO_SHARED_DATA", REPO.parent / "shared" / "data"))
MNIST_PNG = SHARED_DATA / "mnist-png.tar.gz"
CIFAR10_JPEG = SHARED_DATA / "cifar10-jpeg-q75.tar.gz"


# Torch threads per test: 2 (this machine's cores) in one process; 1 per worker where
# pytest-xdist runs several (make test, make test-fast). PLATO_TEST_THREADS overrides: the suite
# holds at 1 and at 2.
THREADS = int(os.environ.get("PLATO_TEST_THREADS", 0)) or (
    1 if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1)) > 1 else 2)
# The `plato` subprocesses a test starts take as many (under xdist, two workers' subprocesses
# at 2 threads each on 2 cores spin against each other: the demo test took twice as long).
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


@pytest.fixture(autouse=True)
def _small_threads():
    torch.set_num_threads(THREADS)


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


@pytest.fixture(scope="session")
def digits_checkpoints(tmp_path_factory):
    """Two small trained networks of different architectures on digits."""
    folder = tmp_path_factory.mktemp("sweep-nets")
    ds = plato.load_dataset("digits")
    paths = {}
    for name, model, options, seed in (("resnet", "resnet-1111", {"width": 4}, 0),
                                       ("cnn", "cnn-2", {"width": 8}, 1)):
        torch.manual_seed(seed)
        net = plato.create_model(model, input_shape=ds.input_shape, **options)
        res = train(net, ds, Recipe(epochs=6, batch_size=64, seed=seed, device="cpu"),
                    progress=False)
        paths[name] = save_checkpoint(folder / f"{name}.ckpt", net, dataset="digits",
                                      test_accuracy=res.test_accuracy).path
    return paths


@pytest.fixture(scope="session")
def digits():
    return plato.load_dataset("digits")


@pytest.fixture(scope="session")
def digits_resnet(digits):
    from tests.stitch.conftest import trained

    return trained("resnet-1111", 0, digits, width=8)


VIT_DIGITS = {"patch_size": 2, "depth": 2, "dim": 32, "heads": 2}  # 4 x 4 patches + class


@pytest.fixture(scope="session")
def digits_vit(digits):
    """A small ViT trained on digits (~87% in a few seconds): AdamW, as ViTs are trained."""
    torch.manual_seed(0)
    model = plato.create_model("vit-tiny", num_classes=digits.num_classes,
                               input_shape=digits.input_shape, **VIT_DIGITS)
    train(model, digits, Recipe(epochs=20, batch_size=64, optimizer="adam", lr=3e-3,
                                weight_decay=0.05, seed=0, device="cpu"), progress=False)
    return model.eval()
