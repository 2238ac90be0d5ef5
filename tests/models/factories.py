"""Factories of models from outside the zoo, for `python:tests.models.factories:NAME`."""

from torch import nn


def small_cnn(num_classes: int = 10, input_shape=(3, 32, 32), width: int = 8) -> nn.Module:
    """A user's plain CNN: named children, no cut_blocks (Plato finds its points itself)."""
    return _Small(input_shape[0], width, num_classes)


class _Small(nn.Module):
    def __init__(self, channels: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1),
                                   nn.BatchNorm2d(width), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
                                   nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.conv2(self.conv1(x))))


def not_a_model(num_classes: int = 10):
    return {"num_classes": num_classes}


def any_options(**options) -> nn.Module:
    """Takes whatever it is given (**kwargs): the model is the same whatever they are."""
    return _Small(options.get("channels", 3), 4, 10)


class _Untraceable(nn.Module):
    """Data-dependent control flow that torch.fx refuses (a Python `if` on a tensor's
    value), and a skip connection around `conv2` (so conv2 is no cut point)."""

    def __init__(self, channels: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1),
                                   nn.BatchNorm2d(width), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1),
                                   nn.BatchNorm2d(width), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
                                   nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = x + self.conv2(x)
        if x.abs().sum() >= 0:  # always true, but fx cannot know
            x = self.conv3(x)
        return self.fc(self.pool(x))


def untraceable(num_classes: int = 10, input_shape=(3, 32, 32), width: int = 8) -> nn.Module:
    return _Untraceable(input_shape[0], width, num_classes)
