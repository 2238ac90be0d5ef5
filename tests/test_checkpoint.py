import json

import pytest
import torch

import plato
from plato.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from plato.errors import CheckpointError, PlatoError


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = plato.create_model("resnet-1111", width=4, input_shape=(1, 8, 8)).eval()
    with torch.no_grad():
        model.stem[1].running_mean.uniform_()
    ckpt = save_checkpoint(tmp_path / "m.ckpt", model, dataset="digits", seed=3,
                           test_accuracy=0.5)
    return model, ckpt


def test_round_trip_is_exact(saved):
    model, ckpt = saved
    loaded = load_checkpoint(ckpt.path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.model.state_dict().items(),
                               strict=True):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model(x), loaded.model(x))
    meta = loaded.meta
    assert meta["model"] == "resnet-1111" and meta["config"]["width"] == 4
    assert meta["dataset"] == "digits" and meta["seed"] == 3 and meta["test_accuracy"] == 0.5
    assert {"plato_version", "torch_version", "weights_sha256"} <= set(meta)
    assert loaded.content_hash == ckpt.content_hash


def test_file_is_safetensors_without_pickle(saved):
    _, ckpt = saved
    raw = ckpt.path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert "plato" in header["__metadata__"]


def test_truncated_file(saved):
    _, ckpt = saved
    ckpt.path.write_bytes(ckpt.path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt|corrupt"):
        load_checkpoint(ckpt.path)


def test_altered_weights(saved):
    _, ckpt = saved
    raw = bytearray(ckpt.path.read_bytes())
    raw[-5] ^= 0xFF
    ckpt.path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="altered or damaged"):
        load_checkpoint(ckpt.path)


def test_metadata_that_does_not_fit(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    _, ckpt = saved
    meta = read_metadata(ckpt.path)
    meta["config"]["width"] = 8  # a lie: the weights are width 4
    save_file(load_file(ckpt.path), tmp_path / "lie.ckpt", metadata={"plato": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="does not match the weights"):
        load_checkpoint(tmp_path / "lie.ckpt")


def test_not_a_checkpoint(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="not a Plato checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")
    (tmp_path / "junk.ckpt").write_bytes(b"hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.ckpt")


def test_nan_model_is_never_saved(tmp_path):
    model = plato.create_model("mlp-8", input_shape=(1, 4, 4))
    with torch.no_grad():
        model.fc.bias[0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN"):
        save_checkpoint(tmp_path / "nan.ckpt", model)
    assert not list(tmp_path.iterdir())
    with pytest.raises(PlatoError, match="create_model"):
        save_checkpoint(tmp_path / "x.ckpt", torch.nn.Linear(2, 2))
