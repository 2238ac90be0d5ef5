"""Representational similarity measures."""

from plato.similarity.cka import linear_cka

__all__ = ["linear_cka"]
