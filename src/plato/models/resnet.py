"""ResNets: `resnet-ABCD` (any per-stage basic-block counts), resnet18/34/50, the CIFAR
ResNets (resnet20 ... resnet110) and resnet9 (the DAWNBench net).

`residual=False` builds the same network without skip connections. Block-level cut points are
the stem's output, every block's output, and the pooled pre-logit vector.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from plato.errors import ModelError
from plato.models.layers import ConvBNReLU, GlobalAvgPool, GlobalMaxPool, Scale
from plato.models.registry import register_family, register_model


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        if residual:
            self.shortcut = _shortcut(cin, width, stride)
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + self.shortcut(x)
        return self.act2(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, residual: bool) -> None:
        super().__init__()
        cout = width * self.expansion
        self.residual = residual
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        if residual:
            self.shortcut = _shortcut(cin, cout, stride)
        self.act3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + self.shortcut(x)
        return self.act3(out)


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        stage_blocks: tuple[int, ...],
        stage_widths: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        stem: str = "cifar",  # "cifar": 3x3 conv; "imagenet": 7x7/2 conv and a 3x3/2 max-pool
        residual: bool = True,
    ) -> None:
        super().__init__()
        if stem == "cifar":
            self.stem = ConvBNReLU(in_channels, stage_widths[0], 3)
        elif stem == "imagenet":
            self.stem = nn.Sequential(
                *ConvBNReLU(in_channels, stage_widths[0], 7, stride=2),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            raise ModelError(f"stem must be 'cifar' or 'imagenet', got '{stem}'")
        blocks = ["stem"]
        cin = stage_widths[0]
        for s, (n, width) in enumerate(zip(stage_blocks, stage_widths, strict=True), start=1):
            stage = []
            for i in range(n):
                stage.append(block(cin, width, 2 if (s > 1 and i == 0) else 1, residual))
                cin = width * block.expansion
                blocks.append(f"layer{s}.{i}")
            setattr(self, f"layer{s}", nn.Sequential(*stage))
        self.num_stages = len(stage_blocks)
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(cin, num_classes)
        self.cut_blocks = tuple(blocks) + ("pool",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for s in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(self.pool(x))


def _widths(base: int, stages: int) -> tuple[int, ...]:
    return tuple(base * 2**i for i in range(stages))


def _check_width(width: int) -> int:
    if width < 1:
        raise ModelError(f"width must be a positive number of channels, got {width}")
    return width


@register_family(r"resnet-(\d{4})", "resnet-ABCD (blocks per stage, e.g. resnet-1212)",
                 tuple(f"resnet-{a}{b}{c}{d}" for a in "12" for b in "12" for c in "12"
                       for d in "12"))
def resnet_abcd(match: re.Match, num_classes, input_shape, width: int = 64,
                residual: bool = True, stem: str = "cifar") -> ResNet:
    counts = tuple(int(ch) for ch in match.group(1))
    if min(counts) < 1:
        raise ModelError(f"resnet-{match.group(1)}: every stage needs at least one block")
    return ResNet(BasicBlock, counts, _widths(_check_width(width), 4), num_classes,
                  input_shape[0], stem, residual)


def _standard_resnet(name: str, block, counts: tuple[int, int, int, int]):
    def build(num_classes, input_shape, width: int = 64, residual: bool = True,
              stem: str = "cifar") -> ResNet:
        return ResNet(block, counts, _widths(_check_width(width), 4), num_classes,
                      input_shape[0], stem, residual)

    build.__name__ = name
    register_model(name)(build)


_standard_resnet("resnet18", BasicBlock, (2, 2, 2, 2))
_standard_resnet("resnet34", BasicBlock, (3, 4, 6, 3))
_standard_resnet("resnet50", Bottleneck, (3, 4, 6, 3))


def _cifar_resnet(depth: int):
    def build(num_classes, input_shape, width: int = 16, residual: bool = True) -> ResNet:
        n = (depth - 2) // 6
        return ResNet(BasicBlock, (n, n, n), _widths(_check_width(width), 3), num_classes,
                      input_shape[0], "cifar", residual)

    build.__name__ = f"resnet{depth}"
    return build


for _depth in (20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}")(_cifar_resnet(_depth))


class Residual(nn.Module):
    """x + body(x) (or body(x) alone without skip connections), as in resnet9."""

    def __init__(self, body: nn.Module, residual: bool) -> None:
        super().__init__()
        self.body = body
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class ResNet9(nn.Module):
    """The DAWNBench / FFCV ResNet-9: prep, three pooled conv layers, two residual blocks."""

    def __init__(self, num_classes: int, in_channels: int, width: int, residual: bool) -> None:
        super().__init__()
        w = width
        self.stem = ConvBNReLU(in_channels, w)
        self.layer1 = nn.Sequential(*ConvBNReLU(w, 2 * w), nn.MaxPool2d(2))
        self.res1 = Residual(nn.Sequential(ConvBNReLU(2 * w, 2 * w), ConvBNReLU(2 * w, 2 * w)),
                             residual)
        self.layer2 = nn.Sequential(*ConvBNReLU(2 * w, 4 * w), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(*ConvBNReLU(4 * w, 8 * w), nn.MaxPool2d(2))
        self.res3 = Residual(nn.Sequential(ConvBNReLU(8 * w, 8 * w), ConvBNReLU(8 * w, 8 * w)),
                             residual)
        self.pool = GlobalMaxPool()
        self.fc = nn.Sequential(nn.Linear(8 * w, num_classes, bias=False), Scale(0.125))
        self.cut_blocks = ("stem", "layer1", "res1", "layer2", "layer3", "res3", "pool")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res1(self.layer1(self.stem(x)))
        x = self.res3(self.layer3(self.layer2(x)))
        return self.fc(self.pool(x))


@register_model("resnet9")
def resnet9(num_classes, input_shape, width: int = 64, residual: bool = True) -> ResNet9:
    return ResNet9(num_classes, input_shape[0], _check_width(width), residual)
