"""Distillation: alpha 0 is plain training step for step; the soft loss is the tempered KL;
hints pull the student's activations toward the teacher's; the teacher is left as it was."""

import pytest
import torch
import torch.nn.functional as F

import plato
from plato.compress import DistillConfig, distill, soft_loss
from plato.errors import SettingError
from plato.train import Recipe, train

RECIPE = Recipe(epochs=1, batch_size=64, seed=3, device="cpu")


def student(digits):
    torch.manual_seed(3)
    return plato.create_model("cnn-2", input_shape=digits.input_shape, width=8)


def test_only_the_hard_loss_is_plain_training(digits, digits_resnet):
    plain = student(digits)
    plain_result = train(plain, digits, RECIPE, progress=False)
    distilled = distill(student(digits), digits_resnet, digits, DistillConfig(alpha=0.0),
                        RECIPE)
    taught = distilled.model.state_dict()
    assert all(torch.equal(v, taught[k]) for k, v in plain.state_dict().items())
    assert distilled.result.test_accuracy == plain_result.test_accuracy
    # with the teacher's soft targets the student learns something else
    soft = distill(student(digits), digits_resnet, digits, DistillConfig(alpha=0.9), RECIPE)
    assert not torch.equal(soft.model.state_dict()["fc.weight"], taught["fc.weight"])


def test_soft_loss_is_the_tempered_kl():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    by_hand = (F.softmax(t / 3, 1) * (F.log_softmax(t / 3, 1) - F.log_softmax(s / 3, 1))
               ).sum(1).mean() * 9
    assert soft_loss(s, t, 3.0) == pytest.approx(float(by_hand), rel=1e-5)
    assert float(soft_loss(t, t, 3.0)) == pytest.approx(0.0, abs=1e-6)


def test_hints_close_the_gap_and_the_teacher_is_untouched(digits, digits_resnet):
    before = {k: v.clone() for k, v in digits_resnet.state_dict().items()}
    digits_resnet.train()  # a teacher in train mode is given back in train mode
    try:
        config = DistillConfig(alpha=0.5, features=[["block1", "layer2.0"]], beta=2.0)
        done = distill(student(digits), digits_resnet, digits, config, RECIPE)
        assert digits_resnet.training
    finally:
        digits_resnet.eval()
    gap_before, gap_after = done.hint_gaps["block1->layer2.0"]
    assert gap_after < 0.8 * gap_before
    assert all(torch.equal(v, before[k]) for k, v in digits_resnet.state_dict().items())
    assert done.to_dict()["features"] == [["block1", "layer2.0"]]


def test_bad_settings_name_their_field(digits, digits_resnet):
    for field, value in (("temperature", 0), ("alpha", 1.5), ("beta", -1), ("adapter", "x"),
                         ("features", [["block1"]])):
        with pytest.raises(SettingError) as err:
            DistillConfig(**{field: value})
        assert err.value.setting == field
    with pytest.raises(SettingError, match="no cut point named 'nowhere'") as err:
        distill(student(digits), digits_resnet, digits,
                DistillConfig(features=[["nowhere", "layer2.0"]]), RECIPE)
    assert err.value.setting == "features"
