"""Outputs of a clustering run: assignments.csv, representatives.csv, metrics.json,
figures and a self-contained report.html."""
from __future__ import annotations

from .outputs import default_versions, remove_stale_report, write_outputs

__all__ = ["write_outputs", "remove_stale_report", "default_versions"]
