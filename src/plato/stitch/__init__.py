"""Stitching: stitch layers, the stitched model, objectives, metrics, block replacement."""

from plato.stitch.activations import Activations
from plato.stitch.fit import OBJECTIVES, StitchConfig, fit_stitch, fit_stitches
from plato.stitch.layers import STITCH_TYPES, NotStitchable, Stitch
from plato.stitch.metrics import StitchResult, measure_stitched, measure_stitches
from plato.stitch.run import replace_span, stitch_grid, stitch_networks
from plato.stitch.stitched import StitchedModel

__all__ = [
    "OBJECTIVES", "Activations", "NotStitchable", "Stitch", "StitchConfig", "StitchResult",
    "StitchedModel", "STITCH_TYPES", "fit_stitch", "fit_stitches", "measure_stitched",
    "measure_stitches", "replace_span", "stitch_grid", "stitch_networks",
]
