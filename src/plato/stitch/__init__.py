"""Stitching: stitch layers, the stitched model, objectives, metrics, block replacement."""

from plato.stitch.fit import OBJECTIVES, StitchConfig, fit_stitch
from plato.stitch.layers import STITCH_TYPES, NotStitchable, Stitch
from plato.stitch.metrics import StitchResult, measure_stitched
from plato.stitch.run import replace_span, stitch_networks
from plato.stitch.stitched import StitchedModel

__all__ = [
    "OBJECTIVES", "NotStitchable", "Stitch", "StitchConfig", "StitchResult", "StitchedModel",
    "STITCH_TYPES", "fit_stitch", "measure_stitched", "replace_span",
    "stitch_networks",
]
