"""The CIFAR-100 example runs through a sweep: the canonical archive format (a tiny archive
built here, as for CIFAR-10: the real one cannot be fetched on these machines), its ResNet
and ViT trained by the spec, stitched both ways, CKA beside."""

from pathlib import Path

import pytest
import yaml

from plato.data import archives
from plato.sweep.run import run_sweep
from plato.sweep.spec import parse_spec
from plato.sweep.store import Store
from tests.data.test_archives import make_cifar100, md5

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cnn_vit_cifar100_cpu.yaml"


@pytest.mark.slow
def test_cifar100_example_sweeps_a_resnet_against_a_vit(tmp_path, monkeypatch):
    archive = tmp_path / "data" / archives.CIFAR100_FILE.filename
    make_cifar100(archive, n_train=300, n_test=100)
    monkeypatch.setattr(archives, "CIFAR100_FILE", archives.RemoteFile(
        archives.CIFAR100_FILE.filename, archives.CIFAR100_FILE.url, md5(archive)))
    raw = yaml.safe_load(EXAMPLE.read_text())
    # the example as written, on the tiny archive, with short budgets and two points a side
    raw["dataset"] = {"name": "cifar100", "root": str(archive.parent)}
    for entry in raw["networks"].values():
        entry["train"].update(epochs=1, batch_size=64)
    raw["points"] = {"resnet-1111": ["layer2.0", "pool"], "vit-tiny": ["blocks.5", "pool"]}
    raw["recipe"] = {"max_steps": 20, "min_steps": 10, "check_every": 10, "holdout": 50,
                     "lstsq_examples": 256}
    spec = parse_spec(raw, base_dir=tmp_path, default_name="example")
    assert spec.networks["vit-tiny"].model == "vit-tiny"
    run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    cells = Store(tmp_path / "run" / "results.sqlite").cells()
    assert set(zip(cells.sender, cells.receiver, strict=True)) == {
        ("resnet-1111", "vit-tiny"), ("vit-tiny", "resnet-1111")}
    # 2 x 2 per direction; pool (a vector) into a conv or token point is not stitchable
    assert len(cells) == 8 and list(cells.status).count("unstitchable") == 2
    stitched = cells[cells.status == "done"]
    assert len(stitched) == 6 and stitched.stitched_accuracy.between(0, 1).all()
