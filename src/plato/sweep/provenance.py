"""What a sweep's values depend on, recorded per spec name in its store.

A store's tables average the cells of one spec name over seeds. A spec changed (a network
trained for another number of epochs, another stitch setting, other data) and run again
under the same name into the same store would add cells that the tables then average with
the old ones as if they were seeds. So the store records the spec's identity (everything that
determines a cell's value, not which cells it asks for) and a changed one is refused, naming
what changed: the user renames the spec or chooses another run folder. Refused rather than
stored under a new run identity, because tables keyed by an identity the user never named
would be harder to read than an error that says what to do. Adding pairs, points, controls
or seeds changes no value already stored: that is allowed, and resumes.
"""

from __future__ import annotations

import json

from plato.checkpoint import read_metadata
from plato.data.datasets import Dataset
from plato.errors import PlatoError, SpecError
from plato.sweep.entries import ImportedNetwork
from plato.sweep.spec import SweepSpec


def spec_identity(spec: SweepSpec, dataset: Dataset) -> dict:
    """What determines the values of a spec's stitching cells: its data, its networks'
    definitions (a train entry, or a checkpoint's weights), its stitch settings, and its
    saliency settings where it asks for saliency (a cell's numbers include them). Not the
    similarity settings: a similarity table shows the latest value of each cell, never a
    mean over settings (plato.sweep.tables.load_similarities)."""
    networks = {}
    for name, entry in spec.networks.items():
        if isinstance(entry, ImportedNetwork):
            try:
                weights = read_metadata(entry.checkpoint)["weights_sha256"]
            except PlatoError as e:
                raise SpecError(f"spec field 'networks.{name}': {e}") from None
            networks[name] = {"weights": weights}
        else:  # as written (a compressed one's source is in the same mapping, by name)
            networks[name] = {entry.kind: entry.written}
    identity = {
        "dataset": dataset.fingerprint(),  # its examples and their order, wherever it lies
        "networks": networks, "random_seed": spec.random_seed, "stitch": spec.stitch,
        "resize": spec.resize, "granularity": spec.granularity,
        "recipe": spec.stitch_config.key_fields(),
    }
    if spec.interpret.saliency is not None:  # part of each cell's result (and key)
        identity["saliency"] = spec.interpret.saliency.to_dict()
    return json.loads(json.dumps(identity, sort_keys=True))  # plain JSON, as stored


def check_same_spec(name: str, stored: dict | None, identity: dict) -> None:
    """Refuse a spec whose identity differs from the one its name was stored with."""
    if stored is None or stored == identity:
        return
    changes = _differences(stored, identity)
    shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5
                                      else "")
    raise SpecError(f"this store already holds spec '{name}' run with other settings "
                    f"({shown}): its cells would be averaged with these as if they were "
                    "seeds; run it into another store (--out), or give it another name")


def _differences(old, new, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for key in sorted(set(old) | set(new), key=str)
                for change in _differences(old.get(key), new.get(key),
                                           f"{where}.{key}" if where else str(key))]
    if old == new:
        return []
    return [f"{where}: {_short(old)} -> {_short(new)}"]


def _short(value) -> str:
    text = "absent" if value is None else json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."
