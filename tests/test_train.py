import pytest
import torch

import plato
from plato.errors import PlatoError, TrainingError
from plato.train import Recipe, evaluate, train


@pytest.fixture(scope="module")
def digits():
    return plato.load_dataset("digits")


def test_recipe_validation():
    with pytest.raises(PlatoError, match="optimizer 'lbfgs'"):
        Recipe(optimizer="lbfgs")
    with pytest.raises(PlatoError, match="precision"):
        Recipe(precision="fp8")
    assert Recipe(batch_size=512).peak_lr == pytest.approx(0.2)
    assert Recipe(optimizer="adam").peak_lr == 1e-3


def test_learns_digits(digits):
    torch.manual_seed(0)
    model = plato.create_model("cnn-3", input_shape=digits.input_shape, width=16)
    before = evaluate(model, digits)["accuracy"]
    result = train(model, digits, Recipe(epochs=4, batch_size=64, device="cpu"), progress=False)
    assert before < 0.3 and result.test_accuracy > 0.93
    assert len(result.history) == 4 and result.images_per_second > 0
    assert evaluate(model, digits)["accuracy"] == result.test_accuracy


def test_same_seed_same_weights(digits):
    def run(seed):
        torch.manual_seed(seed)
        m = plato.create_model("mlp-32", input_shape=digits.input_shape)
        train(m, digits, Recipe(epochs=1, batch_size=32, seed=seed, device="cpu"),
              progress=False)
        return torch.cat([p.flatten() for p in m.parameters()])

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_non_finite_loss_names_the_step(digits):
    model = plato.create_model("mlp-32", input_shape=digits.input_shape)
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    with pytest.raises(TrainingError, match="non-finite at step 1 "):
        train(model, digits, Recipe(epochs=1, device="cpu"), progress=False)


def test_bf16_and_adam_run(digits):
    torch.manual_seed(0)
    model = plato.create_model("cnn-2", input_shape=digits.input_shape, width=8)
    r = train(model, digits, Recipe(epochs=5, batch_size=64, optimizer="adam", lr=3e-3,
                                    precision="bf16", schedule="onecycle", device="cpu"),
              progress=False)
    assert r.test_accuracy > 0.5


def test_evaluate_restores_mode(digits):
    model = plato.create_model("cnn-2", input_shape=digits.input_shape).train()
    evaluate(model, digits)
    assert model.training
