import pytest
import torch

import plato
from plato.checkpoint import save_checkpoint
from plato.train import Recipe, train


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


def write_spec(path, checkpoints, **overrides):
    import yaml

    spec = {
        "name": "tiny",
        "dataset": "digits",
        "networks": {k: {"checkpoint": str(v)} for k, v in checkpoints.items()},
        "pairs": "all",
        "controls": ["trained->trained", "random->trained"],
        "objective": "lstsq",
        "recipe": {"batch_size": 256},
    }
    spec.update(overrides)
    path.write_text(yaml.safe_dump(spec))
    return path
