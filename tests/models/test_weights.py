"""A user's weights from the files people keep them in (plato.models.weights): each format
made here, in the test, as its library writes it; read into a model bit for bit, or refused in
one line that says what to give."""

import pytest
import torch
from safetensors.torch import save_file

import plato
from plato.checkpoint import load_checkpoint
from plato.errors import ModelError
from plato.models.weights import load_weights
from tests.helpers import one_line_error, run_plato

SMALL = "python:tests.models.factories:small_cnn"


def source_and_target():
    torch.manual_seed(0)
    source = plato.create_model(SMALL, width=4)
    with torch.no_grad():  # non-trivial BatchNorm statistics too
        for buffer in source.buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)
    return source, plato.create_model(SMALL, width=4)


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))


def lightning(state: dict, name: str = "model.") -> dict:
    """What PyTorch Lightning saves: the LightningModule's state dict, its network under the
    attribute's name, beside the trainer's state."""
    return {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
            "state_dict": {**{name + k: v for k, v in state.items()},
                           "criterion.weight": torch.ones(10)},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
            "lr_schedulers": [], "hyper_parameters": {"lr": 0.1, "width": 4}}


@pytest.mark.parametrize("fmt", ["torchvision .pth", "model.safetensors", "pytorch_model.bin",
                                 "under 'model'", "under --key ema.module",
                                 "Lightning .ckpt", "DataParallel"])
def test_each_format_loads_bit_for_bit(tmp_path, fmt):
    source, target = source_and_target()
    state = source.state_dict()
    options = {}
    if fmt == "torchvision .pth":
        torch.save(state, path := tmp_path / "resnet.pth")
    elif fmt == "model.safetensors":
        save_file(state, path := tmp_path / "model.safetensors")
    elif fmt == "pytorch_model.bin":
        torch.save(state, path := tmp_path / "pytorch_model.bin")
    elif fmt == "under 'model'":
        torch.save({"model": state, "epoch": 90, "args": {"lr": 0.1}}, path := tmp_path / "c.pt")
    elif fmt == "under --key ema.module":
        torch.save({"model": {"x": torch.zeros(1)}, "ema": {"module": state, "decay": 0.999}},
                   path := tmp_path / "ema.pt")
        options = {"key": "ema.module"}
    elif fmt == "Lightning .ckpt":
        torch.save(lightning(state), path := tmp_path / "epoch=3.ckpt")
        options = {"prefix": "model."}
    else:  # nn.DataParallel's state dict: every name under `module.`
        torch.save({f"module.{k}": v for k, v in state.items()}, path := tmp_path / "dp.pth")
        options = {"prefix": "module."}
    load_weights(target, path, **options)
    assert same(source, target)


def test_a_checkpoint_saved_on_a_gpu_machine_loads_onto_the_cpu(tmp_path):
    """A state dict whose tensors were on cuda:0 when saved (their storages say so): read
    onto the CPU on a machine without CUDA."""
    source, target = source_and_target()
    tagged = (0, lambda storage: "cuda:0", lambda storage, location: None)
    torch.serialization.register_package(*tagged)  # tags every storage as cuda:0 when saved
    try:
        torch.save(source.state_dict(), tmp_path / "gpu.pth")
    finally:
        torch.serialization._package_registry[:] = [
            p for p in torch.serialization._package_registry if p[1] is not tagged[1]]
    with open(tmp_path / "gpu.pth", "rb") as f:
        assert b"cuda:0" in f.read()  # the negative control: the file says where it was
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pth", weights_only=True)
    load_weights(target, tmp_path / "gpu.pth")
    assert same(source, target)


def test_a_file_that_needs_a_prefix_or_key_says_which(tmp_path):
    source, target = source_and_target()
    torch.save(lightning(source.state_dict()), tmp_path / "l.ckpt")
    with pytest.raises(ModelError, match=r"has 'model\.conv1\.0\.weight'; give --prefix "
                                         r"model\.$"):
        load_weights(target, tmp_path / "l.ckpt")
    with pytest.raises(ModelError, match=r"has no tensor named teacher\.\.\."):
        load_weights(target, tmp_path / "l.ckpt", prefix="teacher.")
    torch.save({"weights": source.state_dict(), "epoch": 3}, tmp_path / "k.pt")
    with pytest.raises(ModelError, match=r"holds \['epoch', 'weights'\]\): name the key"):
        load_weights(target, tmp_path / "k.pt")
    with pytest.raises(ModelError, match=r"has no 'ema' \(of --key ema\.module\)"):
        load_weights(target, tmp_path / "k.pt", key="ema.module")
    load_weights(target, tmp_path / "k.pt", key="weights")
    assert same(source, target)


def test_weights_of_another_model_name_the_first_mismatch(tmp_path):
    wide = plato.create_model(SMALL, width=8)
    save_file(wide.state_dict(), tmp_path / "wide.safetensors")
    with pytest.raises(ModelError, match=r"'conv1\.0\.weight' has shape \(8, 3, 3, 3\), the "
                                         r"model's has \(4, 3, 3, 3\)"):
        load_weights(plato.create_model(SMALL, width=4), tmp_path / "wide.safetensors")
    other = plato.create_model("cnn-2", width=4)
    save_file(other.state_dict(), tmp_path / "cnn.safetensors")
    with pytest.raises(ModelError, match="has no tensor 'conv1.0.weight'.*another model"):
        load_weights(plato.create_model(SMALL, width=4), tmp_path / "cnn.safetensors")


def test_a_vits_weights_for_another_size_say_which_option_to_give(tmp_path):
    """A ViT's position embedding is sized for its input: weights trained at 32 pixels into
    one built for 16 name the tensor and point to --input-size (not 'another model')."""
    at_32 = plato.create_model("vit-tiny", depth=1, input_shape=(3, 32, 32))
    save_file(at_32.state_dict(), tmp_path / "vit.safetensors")
    with pytest.raises(ModelError, match=r"'pos_embed' has shape .*another input size\? "
                                         r"\(give --input-size"):
        load_weights(plato.create_model("vit-tiny", depth=1, input_shape=(3, 16, 16)),
                     tmp_path / "vit.safetensors")
    load_weights(plato.create_model("vit-tiny", depth=1, input_shape=(3, 32, 32)),
                 tmp_path / "vit.safetensors")  # the size it was trained at: loads


def test_a_pickled_module_is_never_unpickled(tmp_path):
    source, target = source_and_target()
    torch.save(source, tmp_path / "pickled.pt")
    with pytest.raises(ModelError, match="cannot read weights"):
        load_weights(target, tmp_path / "pickled.pt")


@pytest.mark.slow
def test_plato_import_reads_a_lightning_checkpoint(tmp_path):
    """The command as a user runs it: `--prefix model.` reads the network out of a Lightning
    checkpoint, which then evaluates as the network did; without it, one line says what to
    give."""
    torch.manual_seed(0)
    net = plato.create_model(SMALL, width=4, input_shape=(1, 8, 8))
    torch.save(lightning(net.state_dict()), tmp_path / "last.ckpt")
    args = ["import", SMALL, "--weights", tmp_path / "last.ckpt", "--option", "width=4",
            "--dataset", "digits", "--out", tmp_path / "n.ckpt"]
    assert "give --prefix model." in one_line_error(run_plato(*args, ok=False))
    run_plato(*args, "--prefix", "model.", ok=True)
    imported = load_checkpoint(tmp_path / "n.ckpt").model
    assert same(net, imported)
