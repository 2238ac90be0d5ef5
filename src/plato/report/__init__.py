"""Heatmaps and the HTML report of a sweep."""

from plato.report.figures import figure
from plato.report.heatmaps import heatmap
from plato.report.html import write_report

__all__ = ["figure", "heatmap", "write_report"]
