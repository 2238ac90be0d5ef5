"""Representational similarity: CKA (linear, debiased, RBF, minibatch), Procrustes, the CCA
family, mutual k-NN alignment; each measure's metadata in MEASURES; all layer pairs of two
networks in one pass."""

from plato.similarity.base import LAYOUTS, MEASURES, TRANSFORMS, Measure, Score, get_measure
from plato.similarity.cca import cca, pwcca, svcca
from plato.similarity.cka import MinibatchCKA, linear_cka, minibatch_cka, rbf_cka
from plato.similarity.grid import (
    SimilarityConfig,
    SimilarityTable,
    similarity_grid,
    similarity_table,
)
from plato.similarity.knn import mutual_knn
from plato.similarity.procrustes import procrustes, procrustes_similarity

__all__ = [
    "LAYOUTS", "MEASURES", "TRANSFORMS", "Measure", "MinibatchCKA", "Score", "SimilarityConfig",
    "SimilarityTable", "cca", "get_measure", "linear_cka", "minibatch_cka", "mutual_knn",
    "procrustes", "procrustes_similarity", "pwcca", "rbf_cka", "similarity_grid",
    "similarity_table", "svcca",
]
