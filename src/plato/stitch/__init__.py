"""Stitching: stitch layers, the stitched model, fitting, metrics, block replacement.

Read in the order data flows: registry and types (the stitch types, one module each), layers
(a stitch: adapter, map, token policy), stitched (sender prefix -> stitch -> receiver suffix),
activations (shared frozen passes), config (StitchConfig), fit (the objectives: statistics and
closed_form, sgd, and plato.stopping), metrics (the test pass), run (stitch_networks, stitch_grid,
replace_span).
"""

import plato.stitch.types  # noqa: F401  (registers the built-in stitch types)
from plato.stitch.activations import Activations
from plato.stitch.config import OBJECTIVES, StitchConfig
from plato.stitch.fit import FitInfo, fit_stitch, fit_stitches
from plato.stitch.layers import NotStitchable, Stitch
from plato.stitch.metrics import StitchResult, measure_stitched, measure_stitches
from plato.stitch.registry import list_stitch_types, register_stitch, resolve_stitch
from plato.stitch.run import replace_span, stitch_grid, stitch_networks
from plato.stitch.stitched import StitchedModel

__all__ = [
    "OBJECTIVES", "Activations", "FitInfo", "NotStitchable", "Stitch", "StitchConfig",
    "StitchResult", "StitchedModel", "fit_stitch", "fit_stitches",
    "list_stitch_types", "measure_stitched", "measure_stitches", "register_stitch",
    "replace_span", "resolve_stitch", "stitch_grid", "stitch_networks",
]
