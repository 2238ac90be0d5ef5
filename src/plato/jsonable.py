"""Values as JSON takes them: NaN and infinities as null (JSON has no NaN), numpy and torch
scalars and arrays as numbers and lists, tables as lists of rows, paths as text."""

from __future__ import annotations

import math
from pathlib import Path


def jsonable(value):
    """`value` with every part JSON can hold as it is, the rest converted (see the module)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_numpy") and hasattr(value, "columns"):  # a pandas table
        return jsonable(value.to_numpy().tolist())
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        return jsonable(value.tolist())
    return value
