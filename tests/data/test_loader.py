import pytest
import torch

from plato.data import Augment, DeviceLoader, Split, load_dataset
from plato.data.loader import make_loader


def ramp_split(n=10, c=1, h=4, w=4):
    images = torch.arange(n * c * h * w, dtype=torch.int64).remainder(256).to(torch.uint8)
    return Split(images.view(n, c, h, w), torch.arange(n))


def test_normalisation_matches_formula():
    split = ramp_split()
    loader = DeviceLoader(split, 4, mean=(0.5,), std=(0.25,))
    x, y = next(iter(loader))
    expected = (split.images[:4].float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(x, expected)
    assert x.dtype == torch.float32 and y.tolist() == [0, 1, 2, 3]


def test_epoch_visits_every_example_once_and_is_seeded():
    split = ramp_split(n=23)
    a = DeviceLoader(split, 5, mean=(0,), std=(1,), shuffle=True, seed=3)
    b = DeviceLoader(split, 5, mean=(0,), std=(1,), shuffle=True, seed=3)
    c = DeviceLoader(split, 5, mean=(0,), std=(1,), shuffle=True, seed=4)
    ya = torch.cat([y for _, y in a])
    assert sorted(ya.tolist()) == list(range(23)) and len(a) == 5
    assert torch.equal(ya, torch.cat([y for _, y in b]))
    assert not torch.equal(ya, torch.cat([y for _, y in c]))
    assert not torch.equal(ya, torch.cat([y for _, y in a]))  # a new order each epoch


def test_drop_last():
    loader = DeviceLoader(ramp_split(n=23), 5, mean=(0,), std=(1,), drop_last=True)
    assert len(loader) == 4 and sum(len(y) for _, y in loader) == 20


def test_random_crop_is_a_shifted_window():
    split = ramp_split(n=8, c=2, h=6, w=6)
    pad = 2
    loader = DeviceLoader(split, 8, mean=(0, 0), std=(1 / 255, 1 / 255),
                          augment=Augment(crop_padding=pad), seed=0)
    x, y = next(iter(loader))  # values equal the raw pixels (std 1/255)
    shifts = set()
    for img, label in zip(x, y, strict=True):
        padded = torch.nn.functional.pad(split.images[label].float(), (pad,) * 4)
        match = [(r, c) for r in range(2 * pad + 1) for c in range(2 * pad + 1)
                 if torch.equal(padded[:, r:r + 6, c:c + 6], img)]
        assert match, "a crop is not a window of the padded image"
        shifts.add(match[0])
    assert len(shifts) > 1  # offsets differ between images


def test_flip_flips_about_half():
    split = ramp_split(n=200, h=3, w=5)
    loader = DeviceLoader(split, 200, mean=(0,), std=(1 / 255,), augment=Augment(hflip=True))
    x, y = next(iter(loader))
    flipped = [torch.equal(img, split.images[i].float().flip(2)) for img, i in zip(x, y,
                                                                                  strict=True)]
    same = [torch.equal(img, split.images[i].float()) for img, i in zip(x, y, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 60 < sum(flipped) < 140


def test_auto_augment_by_dataset():
    digits = load_dataset("digits")
    assert not Augment.preset("auto", digits).enabled
    train = make_loader(digits, "train", 64, train=True)
    test = make_loader(digits, "test", 64)
    assert train.shuffle and not test.shuffle and not test.augment.enabled
    with pytest.raises(Exception, match="unknown augmentation"):
        Augment.preset("sideways")
