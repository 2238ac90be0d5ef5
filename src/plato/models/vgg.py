"""`vgg11`, `vgg13`, `vgg16`, `vgg19` (Simonyan & Zisserman 2015) for small images.

Five stages of 3x3 conv-BN-ReLU layers (`batchnorm=False`: conv-ReLU), each followed by a
2x2 max-pool while the map is at least 2 px across (32 px: all five, down to 1 x 1; digits'
8 px: the first three); then the classifier: global average pool, two hidden layers
(Linear-ReLU-Dropout, `hidden` units, by default the last stage's channels) and the logits
(`fc`), as in VGG with a 1 x 1 final map. Cut points: after each stage (`stage1`...), after
each pool (`pool1`...), and the classifier's hidden vectors (`fc1`, `fc2`: the pre-logit
vector). Channels per stage: width x (1, 2, 4, 8, 8) (width 64: VGG's 64...512).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from plato.errors import ModelError
from plato.models.registry import register_family

# Conv layers per stage (the `D` of VGG-D is vgg16).
LAYERS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
STAGE_WIDTH = (1, 2, 4, 8, 8)


def conv_layer(cin: int, cout: int, batchnorm: bool) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU()] if batchnorm else [conv, nn.ReLU()]


class VGG(nn.Module):
    def __init__(self, depth: int, num_classes: int, input_shape: tuple[int, int, int],
                 width: int, batchnorm: bool, hidden: int, dropout: float) -> None:
        super().__init__()
        cin, size = input_shape[0], min(input_shape[1:])
        blocks = []
        for k, (layers, factor) in enumerate(zip(LAYERS[depth], STAGE_WIDTH, strict=True), 1):
            cout = width * factor
            stage = [m for i in range(layers)
                     for m in conv_layer(cin if i == 0 else cout, cout, batchnorm)]
            setattr(self, f"stage{k}", nn.Sequential(*stage))
            blocks.append(f"stage{k}")
            if size >= 2:  # pool while there is something to pool
                setattr(self, f"pool{k}", nn.MaxPool2d(2))
                blocks.append(f"pool{k}")
                size //= 2
            cin = cout
        self.stages = tuple(blocks)
        self.fc1 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, hidden),
                                 nn.ReLU(), nn.Dropout(dropout))
        self.fc2 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.fc = nn.Linear(hidden, num_classes)  # the logits (fc, as every zoo model)
        self.cut_blocks = (*blocks, "fc1", "fc2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.fc(self.fc2(self.fc1(x)))


@register_family(r"vgg(11|13|16|19)", "vgg11|13|16|19 (batchnorm=False: no BN)",
                 ("vgg11", "vgg13", "vgg16", "vgg19"))
def vgg(match: re.Match, num_classes, input_shape, width: int = 64, batchnorm: bool = True,
        hidden: int | None = None, dropout: float = 0.5) -> VGG:
    hidden = 8 * width if hidden is None else hidden  # the last stage's channels (512)
    if width < 1 or hidden < 1:
        raise ModelError(f"vgg{match.group(1)}: width and hidden must be positive")
    if not 0 <= dropout < 1:
        raise ModelError(f"vgg{match.group(1)}: dropout must be in [0, 1), got {dropout}")
    return VGG(int(match.group(1)), num_classes, input_shape, width, batchnorm, hidden,
               dropout)
