"""Factories of models from outside the zoo, for `python:tests.models.factories:NAME`."""

from torch import nn


def small_cnn(num_classes: int = 10, input_shape=(3, 32, 32), width: int = 8) -> nn.Module:
    """A user's plain CNN: named children, no cut_blocks (Plato finds its points itself)."""
    return _Small(input_shape[0], width, num_classes)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, stride=stride),
                         nn.BatchNorm2d(cout), nn.ReLU())


class _Small(nn.Module):
    def __init__(self, channels: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = _block(channels, width)
        self.conv2 = _block(width, 2 * width, stride=2)
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
        self.conv1 = _block(channels, width)
        self.conv2 = _block(width, width)
        self.conv3 = _block(width, 2 * width, stride=2)
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


def raises(**options) -> nn.Module:
    """A user's factory that fails (out of memory, a missing file, a bug)."""
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nsecond line")


def exits(**options) -> nn.Module:
    """A user's factory that calls sys.exit."""
    raise SystemExit(3)
