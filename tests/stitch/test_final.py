"""Final-feature matching (Mai et al.): the `final` objective matches the stitched network's
pre-logit features (the input of the receiver's classifier) to the receiver's own on the same
input; `final+task` then trains on the task loss from there, each stage to its own
convergence, and says whether both converged."""

import pytest
import torch
from torch import nn

from plato.errors import PlatoError
from plato.models import cut_graph
from plato.stitch import StitchConfig, stitch_networks
from plato.stitch.stitched import head_input, pre_logits


def test_pre_logit_features_are_what_the_classifier_reads(digits, digits_resnet):
    """From a receiver point, the features `final` matches are the network's pooled features
    (its `pool` cut point, the input of its fc layer), exactly; a suffix without a Linear
    classifier is refused in one line."""
    graph = cut_graph(digits_resnet)
    x = (digits.test.images[:16].float() / 255 - digits.mean[0]) / digits.std[0]
    prefix, suffix = graph.split("layer2.0")
    pool_prefix, _ = graph.split("pool")
    with torch.no_grad():
        torch.testing.assert_close(head_input(suffix, prefix(x)), pool_prefix(x))
        assert torch.equal(suffix(prefix(x)), digits_resnet(x))  # the suffix is untouched
    assert pre_logits(suffix) is pre_logits(suffix)  # made once
    with pytest.raises(PlatoError, match="objective final needs the receiver's classifier"):
        pre_logits(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()))


@pytest.mark.slow
def test_final_then_task_converges_in_two_stages(digits, digits_resnet):
    """final+task takes the final stage's steps and then the task stage's, and records whether
    both converged; its accuracy at a shallow self-stitch is at least final's alone."""
    config = StitchConfig.fast(device="cpu")
    final, _ = stitch_networks(digits_resnet, digits_resnet, "stem", "stem", digits,
                               config=StitchConfig.from_user({**config.to_dict(),
                                                              "objective": "final"}))
    both, _ = stitch_networks(digits_resnet, digits_resnet, "stem", "stem", digits,
                              config=StitchConfig.from_user({**config.to_dict(),
                                                             "objective": "final+task"}))
    assert final.converged is not None and both.converged is not None
    assert both.steps > final.steps  # the task stage's steps on top of the same first stage
    assert both.stitched_accuracy >= final.stitched_accuracy - 0.01
    assert final.stitched_accuracy > 0.8 * final.receiver_accuracy
