"""Outputs of a clustering run: assignments.csv, metrics.json, figures and report.html."""
from __future__ import annotations

from .outputs import atomic_write_bytes, default_versions, write_outputs

__all__ = ["write_outputs", "atomic_write_bytes", "default_versions"]
