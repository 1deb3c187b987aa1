"""The event record shared by every source and stage of the engine."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class Event:
    """One seismic event: a single-component waveform window (or an image).

    Attributes
    ----------
    id : str
        Identifier, unique and deterministic within a run (re-reading the same
        data gives the same ids; the resumable feature store relies on it).
    station : str
        ``NET.STA`` (or just ``STA`` when the network is unknown, "" if unknown).
    channel : str
        SEED channel code (e.g. ``HHZ``), "" if unknown.
    start : str
        Start time, ISO 8601 UTC (``2017-01-01T00:00:00.000000Z``); "" if unknown.
    fs : float
        Sampling rate in Hz of ``data``.
    data : numpy.ndarray or None
        1-D float32 samples, or ``None`` for image-only events.
    label : str or None
        Known class (LP, VT, ...) when the source provides it.
    image : numpy.ndarray or None
        uint8 (227, 227, 3) image for image-only sources (published images).
    source : str
        File or chunk the event came from (for messages and the report).
    """

    id: str
    station: str = ""
    channel: str = ""
    start: str = ""
    fs: float = 100.0
    data: Optional[np.ndarray] = None
    label: Optional[str] = None
    image: Optional[np.ndarray] = field(default=None, repr=False)
    source: str = ""

    @property
    def duration(self) -> float:
        """Length of the waveform in seconds (0 for image-only events)."""
        if self.data is None or self.fs <= 0:
            return 0.0
        return len(self.data) / self.fs
