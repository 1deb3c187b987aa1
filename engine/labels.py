"""Label detected events from a catalogue of known events (for validation only).

The synthetic archive writes ``catalog.csv`` (``time,type,station,duration``)
for every planted event; observatories often hold a partial catalogue too.
Detected events are unsupervised; a label attached here is used only to score
the clustering (contingency table, purity, ARI), never to compute it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from engine.events import Event


@dataclass
class LabelCatalog:
    """Known events: start times (POSIX s), durations (s), types and stations."""

    times: np.ndarray
    durations: np.ndarray
    types: list[str]
    stations: list[str]

    @classmethod
    def read(cls, path: str | os.PathLike) -> "LabelCatalog":
        """Read a catalogue CSV (:func:`engine.sources.catalog.read_catalog`) with labels.

        Raises
        ------
        FileNotFoundError
            The file does not exist.
        ValueError
            Naming the file and line of a bad row, or when no row has a label
            (``label``, ``type`` or ``class`` column).
        """
        from engine.sources.catalog import read_catalog

        rows = [r for r in read_catalog(path) if r.label]
        if not rows:
            raise ValueError(f"label catalogue {path} has no labelled rows (a 'type', "
                             "'label' or 'class' column)")
        return cls(np.array([r.time for r in rows], float),
                   np.array([r.duration or 0.0 for r in rows], float),
                   [r.label for r in rows], [r.station or "" for r in rows])

    def label_for(self, start: float, end: float, station: str = "",
                  tolerance: float = 5.0) -> str | None:
        """Type of the known event that best overlaps ``[start, end]`` on ``station``.

        A known event matches when its window ``[t - tolerance, t + duration]``
        overlaps the detected window; with several matches the one starting
        closest to ``start`` wins. Stations match on the station code (the part
        after the network), or always when the catalogue gives none.
        """
        lo = np.searchsorted(self.times, start - 3600.0 * 6)
        hi = np.searchsorted(self.times, end + tolerance, side="right")
        best, best_dt = None, np.inf
        sta = station.split(".")[-1]
        for i in range(lo, hi):
            s = self.stations[i]
            if s and sta and s.split(".")[-1] != sta:
                continue
            t0, t1 = self.times[i] - tolerance, self.times[i] + max(self.durations[i], 0.0)
            if t1 < start or t0 > end:
                continue
            dt = abs(self.times[i] - start)
            if dt < best_dt:
                best, best_dt = self.types[i], dt
        return best


def attach_labels(events: list[Event], catalog: LabelCatalog,
                  tolerance: float = 5.0) -> list[Event]:
    """Set ``label`` on events that have none from the catalogue (in place)."""
    from obspy import UTCDateTime

    for ev in events:
        if ev.label or not ev.start or ev.data is None:
            continue
        t0 = UTCDateTime(ev.start).timestamp
        ev.label = catalog.label_for(t0, t0 + ev.duration, ev.station, tolerance)
    return events
