import pytest
import torch

import plato


@pytest.fixture(scope="module")
def two_nets(digits):
    """Two untrained networks of different families on digits: a ResNet and a plain CNN."""
    torch.manual_seed(0)
    a = plato.create_model("resnet-1111", width=8, input_shape=digits.input_shape).eval()
    torch.manual_seed(1)
    b = plato.create_model("cnn-3", width=8, input_shape=digits.input_shape).eval()
    return a, b
