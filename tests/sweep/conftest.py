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
