"""How far one spec parameter travels: a train entry's `weight_decay`, from `plato sweep SPEC`
through the sweep (to the checkpoint and the store), as the calls that carry it (issue 30's
measure of how legible the sweep is).

A call is a stop when one of its arguments carries the parameter: the value object the YAML
gave, or an object holding it, or holding an object that holds it (found in the locals of a
stop when it returns: the entry's mapping, a typed entry, a Recipe, a settings dict; not the
whole spec, which holds every parameter).
Reported: the stops in order (file:function), how many files they visit, and how many times
the trip returns to a file it had left.

    python bench/spec_trip.py            # prints the trip and its three numbers
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import plato

SPEC = """name: trip
dataset: {name: digits, train_subset: 300, test_subset: 100}
networks:
  a: {train: {model: cnn-2, width: 4, epochs: 1, batch_size: 64, weight_decay: 0.000512}}
pairs: self
points: [stem]
objective: lstsq
"""
SRC = str(Path(plato.__file__).parent)


DEPTH = 2  # the value, what holds it, what holds that: an entry, not the spec


def _depth(value, carriers: dict[int, int]) -> int | None:
    """How far `value` is from the parameter: 0 for the value, d + 1 for an object holding a
    carrier of depth d directly (None: it holds none)."""
    if id(value) in carriers:
        return carriers[id(value)]
    if isinstance(value, float | int | str | bool | type(None)):
        return None
    if isinstance(value, dict):
        parts = value.values()
    elif isinstance(value, list | tuple):
        parts = value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = [getattr(value, f.name, None) for f in dataclasses.fields(value)]
    else:
        return None
    depths = [carriers[id(v)] for v in parts if id(v) in carriers]
    return min(depths) + 1 if depths else None


def _holds(value, carriers: dict[int, int]) -> bool:
    depth = _depth(value, carriers)
    return depth is not None and depth <= DEPTH


def trip() -> list[str]:
    from plato.sweep import run as sweep_run
    from plato.sweep.spec import load_spec
    from plato.sweep.spec_yaml import read_spec_yaml

    carriers: dict[int, int] = {}  # id -> depth
    keep: list = []  # carriers stay alive, so their ids stay theirs
    stops: list[str] = []
    open_stops: set[int] = set()
    original = read_spec_yaml

    def reading(text, where):  # the value as the YAML gives it: the first carrier
        raw = original(text, where)
        value = raw["networks"]["a"]["train"]["weight_decay"]
        carriers[id(value)] = 0
        keep.append(value)
        return raw

    import plato.sweep.spec as spec_module

    spec_module.read_spec_yaml = reading

    def profile(frame, event, arg):
        path = frame.f_code.co_filename
        if not path.startswith(SRC):
            return
        if event == "call":
            if any(_holds(v, carriers) for v in frame.f_locals.values()):
                stops.append(f"{path[len(SRC) + 1:]}:{frame.f_code.co_name}")
                open_stops.add(id(frame))
        elif event == "return" and id(frame) in open_stops:
            open_stops.discard(id(frame))
            for value in [*frame.f_locals.values(), arg]:
                if _holds(value, carriers) and id(value) not in carriers:
                    carriers[id(value)] = _depth(value, carriers)
                    keep.append(value)

    with tempfile.TemporaryDirectory() as folder:
        spec_path = Path(folder) / "trip.yaml"
        spec_path.write_text(SPEC)
        sys.setprofile(profile)
        try:
            sweep_run.run_sweep(load_spec(spec_path), Path(folder) / "run", device="cpu",
                                progress=True)  # as `plato sweep` runs: with its estimate
        finally:
            sys.setprofile(None)
            spec_module.read_spec_yaml = original
    return stops


def summary(stops: list[str]) -> tuple[int, int, int]:
    """(stops, files, returns to a file already left)."""
    files = [s.split(":")[0] for s in stops]
    seen, returns, previous = set(), 0, None
    for f in files:
        if f != previous and f in seen:
            returns += 1
        seen.add(f)
        previous = f
    return len(stops), len(seen), returns


if __name__ == "__main__":
    stops = trip()
    for stop in stops:
        print(stop)
    n, files, returns = summary(stops)
    print(f"\n{n} stops in {files} files, {returns} returns to a file already left")
