"""Content keys: a SHA-256 of a JSON-able description names a result. The store skips keys
already done, so a key that changed would silently re-run every finished cell of a store:
tests/sweep/test_keys.py pins known keys."""

from __future__ import annotations

import hashlib
import json

from plato.stitch import StitchConfig


def content_key(obj) -> str:
    """SHA-256 of a JSON-able description: the identity of a result."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def cell_key(sender: str, receiver: str, sender_point: str, receiver_point: str, stitch: str,
             resize: str, config: StitchConfig, seed: int, data: str,
             saliency: dict | None = None) -> str:
    """The key of one stitching cell: both networks' identities, the two cut points (by name),
    the stitch type and resize, how it is fitted, the seed, and the data's fingerprint; and
    the saliency settings where the cell is explained too (absent otherwise, so the keys of
    cells without saliency are those they always were)."""
    described = {
        "sender": sender, "receiver": receiver, "sender_point": sender_point,
        "receiver_point": receiver_point, "stitch": stitch, "resize": resize,
        "recipe": config.key_fields(),  # (the label stores have always held)
        "seed": seed, "data": data}
    if saliency is not None:
        described["saliency"] = saliency
    return content_key(described)


def similarity_key(sender: str, receiver: str, measure: str, sender_point: str,
                   receiver_point: str, settings: dict, data: str) -> str:
    """The key of one similarity cell: as a stitching cell's, with the measure and its
    settings (SimilarityConfig.key_fields()) in place of the stitch."""
    return content_key({
        "sender": sender, "receiver": receiver, "measure": measure,
        "sender_point": sender_point, "receiver_point": receiver_point, "settings": settings,
        "data": data})
