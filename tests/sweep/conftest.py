def write_spec(path, checkpoints, **overrides):
    import yaml

    spec = {
        "name": "tiny",
        "dataset": "digits",
        "networks": {k: {"checkpoint": str(v)} for k, v in checkpoints.items()},
        "pairs": "all",
        "controls": ["trained->trained", "random->trained"],
        "objective": "lstsq",
        "recipe": {"batch_size": 256},
    }
    spec.update(overrides)
    path.write_text(yaml.safe_dump(spec))
    return path


def poison_sender_point(monkeypatch, point: str) -> None:
    """Make a stitch grid's sender activations at `point` genuinely non-finite (its cells fail
    with a non-finite loss), until the test sets plato.stitch.run.Activations back."""
    import plato.stitch.run
    from plato.stitch.activations import Activations

    class Poisoned(Activations):
        def __call__(self, x, indices=None):
            return {k: v * float("nan") if k == point else v
                    for k, v in super().__call__(x).items()}

    class SenderPoisoned:  # a grid builds its sender's source first, then its receiver's
        built = 0

        @classmethod
        def of(cls, graph, points):
            cls.built += 1
            return (Poisoned if cls.built % 2 else Activations).of(graph, points)

    monkeypatch.setattr(plato.stitch.run, "Activations", SenderPoisoned)
