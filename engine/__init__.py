"""microquake-engine: families of volcanic microearthquakes from seismic archives.

The public entry points are imported lazily so that ``import engine`` stays
cheap (no torch, ObsPy or Numba compilation until they are needed).

Main pieces
-----------
superlet
    Adaptive superlet transform of one trace or a batch (CPU or CUDA).
event_images
    Seed-compatible 227 x 227 RGB scalogram images of event traces.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "superlet": ("engine.superlet", "superlet"),
    "event_images": ("engine.images", "event_images"),
    "Event": ("engine.events", "Event"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'engine' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value
