"""Typed spec entries keep what a store knows a spec by: each network entry as written names
the network's cached checkpoint and the spec's identity, so a run folder made before specs
were typed resumes (its cells, networks and identity found, nothing recomputed). The values
below were computed by the untyped parser, before it was replaced."""

from pathlib import Path

from plato.sweep.entries import compression_of
from plato.sweep.keys import content_key
from plato.sweep.networks import cached_checkpoint
from plato.sweep.provenance import spec_identity
from plato.sweep.spec import parse_spec

NETWORKS = {
    "a": {"train": {"model": "cnn-2", "width": 4, "epochs": 2, "lr": 1, "seed": 3,
                    "label_smoothing": 0.1, "train_subset": 200}},
    "b": {"train": {"model": "resnet-1111", "width": 4, "residual": False, "epochs": 1,
                    "optimizer": "adam", "weight_decay": 0, "augment": "none"}},
    "p": {"prune": {"from": "a", "method": "channels", "amount": [0, 0.5],
                    "finetune": {"epochs": 1, "lr": 0.01}}},
    "q": {"prune": {"from": "b", "amount": 0.3}},
    "s": {"distill": {"teacher": "a", "model": "cnn-2", "width": 2, "epochs": 1,
                      "temperature": [2, 4.5], "alpha": 1, "features": [["block1", "block1"]],
                      "adapter": "bn-conv1x1-bn", "beta": 0.5, "lr": 0.05}},
    "v": {"train": {"model": "vgg11", "width": 4, "hidden": 16, "dropout": 0, "epochs": 1}},
}
SETTINGS = {"objective": "task", "recipe": {"epochs": 2, "lr": 0.01}, "stitch": "lowrank-4",
            "resize": "bilinear", "random_seed": 7, "points": {"granularity": "layer"},
            "interpret": {"saliency": {"images": 16}}}
PINNED = {  # content_key of each network's part of the identity, by the untyped parser
    "a": "abdae586098bc812d1dabb5f098abb164c75802b4a90dd4fb02ec2b63d8904b1",
    "b": "017b980d05652a28e32fae9b8435860d2f1845f3c53f7ef06261f7585280600d",
    "p-0": "52cfa04c610c02b9218fdfaac6daa80f381bd3e719bdbb8ccabce441ff2173ca",
    "p-0.5": "6c64276d8f3135e857636bcc76580455fb04498875587a0320148784295efe43",
    "q": "32537b3554cb20c3348f82b845fa675d25b77d83a6a25d6f856dbc23c46e306b",
    "s-2": "3e06365b3aae1926ca7645573381a656fd46065720376e3d323b7630a24cfe89",
    "s-4.5": "16dcde8e5ecbf07f147ffb99902e297775ba49e1520343848ecf77a4e1285d1e",
    "v": "d865b9cc22a48a6ad5adb56757f64b428c925b7e3275b41a49b9c3671da1adc1",
}


def test_identities_and_cached_names_are_those_of_the_untyped_parser(digits):
    plain, settings = parse_spec({"networks": NETWORKS}), parse_spec({"networks": NETWORKS,
                                                                       **SETTINGS})
    identity = spec_identity(plain, digits)
    assert {n: content_key(v) for n, v in identity["networks"].items()} == PINNED
    assert content_key(identity) == \
        "d91c2c6e5e2787766a638fc8fef04544bd30d7d7c904057ae0bd9d9ceffd4cad"
    assert content_key(spec_identity(settings, digits)) == \
        "b46fb18f507c70226bec5999cd02a3310b8ee6da72898c1280af61ae41ee57c4"
    cached = {n: cached_checkpoint(e, digits, Path("run")).name
              for n, e in plain.networks.items() if e.kind == "train"}
    assert cached == {"a": "a-4a2430411e14.ckpt", "b": "b-014341d1e5b3.ckpt",
                      "v": "v-f17a8077c9c0.ckpt"}


def test_entries_are_typed(digits):
    spec = parse_spec({"networks": NETWORKS})
    a, p, s = spec.networks["a"], spec.networks["p-0.5"], spec.networks["s-4.5"]
    assert (a.model, a.options, a.recipe.epochs, a.recipe.lr, a.train_subset) == \
        ("cnn-2", {"width": 4}, 2, 1, 200)
    assert (p.source, p.config.method, p.config.amount, p.finetune.epochs) == \
        ("a", "channels", 0.5, 1)
    assert (p.axis.family, p.axis.axis, p.axis.level) == ("p", "amount", 0.5)
    assert (s.source, s.student.model, s.student.options, s.config.temperature,
            s.config.features) == ("a", "cnn-2", {"width": 2}, 4.5, (("block1", "block1"),))
    assert compression_of(a) is None and compression_of(s)["family"] == "s"
