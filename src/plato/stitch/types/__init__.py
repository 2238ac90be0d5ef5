"""The stitch types: one module each, registered on import (plato.stitch.registry). They are
listed in the order of these imports, the default type first."""

# isort: off
from plato.stitch.types import bn_affine, affine, conv, lowrank, mlp, resampling  # noqa: F401
from plato.stitch.types import orthogonal, permutation, sparse  # noqa: F401
# isort: on
