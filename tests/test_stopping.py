"""The converging rule (plato.stopping): a fit converges when it stops on a plateau after it
moved; every fit says why it stopped, and a fit that stopped without moving says so."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from plato.stitch import StitchConfig, stitch_networks
from plato.stopping import MOVED, Fitting, StoppingRule

RULE = SimpleNamespace(tolerance=0.01, patience=2, decays=0, min_steps=0)


def run(losses, moves: float = 1.0, rule=RULE) -> Fitting:
    """Feed the rule one fit's looks; between looks its parameters move by `moves` (a
    fraction of their size). The last look is the caller's last."""
    fit = Fitting(nn.Linear(4, 4))
    stopping = StoppingRule(rule, decay=lambda _: None)
    live = [fit]
    for i, loss in enumerate(losses):
        if i:
            with torch.no_grad():
                for p in fit.fitted.parameters():
                    p.add_(moves * p.abs().mean())
        live = stopping.look(live, [loss], step=50 * i, last=i == len(losses) - 1)
        if not live:
            break
    return fit


def test_a_fit_that_improved_moved_and_plateaued_converged():
    fit = run([2.0, 1.0, 0.6, 0.5, 0.5, 0.5, 0.5])
    assert fit.converged and fit.stop_reason == "plateau" and len(fit.curve) == 6


def test_a_fit_that_never_moved_stalled():
    """Negative controls: a loss that fell without the parameters moving (a BatchNorm's
    running statistics did it), and a loss that never fell."""
    fell = run([2.0, 1.5, 1.5, 1.5, 1.5], moves=MOVED / 100)
    assert fell.converged is False and fell.stop_reason == "stalled"
    flat = run([2.0, 2.0, 2.0, 2.0, 2.0])
    assert flat.converged is False and flat.stop_reason == "stalled"


def test_a_fit_cut_off_while_improving_hit_the_step_cap():
    fit = run([2.0, 1.5, 1.0, 0.5])
    assert fit.converged is False and fit.stop_reason == "step cap"


def test_a_fit_whose_loss_rose_diverged():
    for losses in ([1.0, 1.5, 3.0, 9.0, 9.0], [1.0, 2.0, float("nan"), float("nan")]):
        fit = run(losses)
        assert fit.converged is False and fit.stop_reason == "diverged", losses
    with torch.no_grad():  # its best state (the start) is the one it keeps
        assert fit.fitted.weight.isfinite().all()


def test_the_default_converges_on_digits_and_a_tiny_learning_rate_does_not(
        digits, digits_resnet):
    """`plato stitch --lr 1e-7` once said converged at 7% accuracy (chance 10%): the rule
    only asked that the held-out loss stop improving."""
    default, _ = stitch_networks(digits_resnet, digits_resnet, "layer1.0", "layer2.0", digits,
                                 config=StitchConfig.converging(device="cpu"))
    assert default.converged and default.stop_reason == "plateau"
    assert default.stitched_accuracy > 0.9
    for objective in ("task", "lstsq+task"):
        tiny, _ = stitch_networks(digits_resnet, digits_resnet, "layer1.0", "layer2.0",
                                  digits, config=StitchConfig.converging(
                                      device="cpu", objective=objective, lr=1e-7))
        assert tiny.converged is False and tiny.stop_reason == "stalled", objective
    fixed, _ = stitch_networks(digits_resnet, digits_resnet, "layer1.0", "layer2.0", digits,
                               config=StitchConfig(objective="lstsq", device="cpu"))
    assert fixed.converged is None and fixed.stop_reason == "closed form"


@pytest.mark.parametrize("decays", [0, 1])
def test_a_decay_is_part_of_the_rule(decays):
    """At a plateau the rate drops (`decays` times) and the fit goes on; it converges at the
    plateau after that."""
    rule = SimpleNamespace(tolerance=0.01, patience=2, decays=decays, min_steps=0)
    fit = run([2.0, 1.0, 1.0, 1.0, 0.8, 0.8, 0.8, 0.8], rule=rule)
    assert fit.converged and len(fit.curve) == (4 if decays == 0 else 7)
