"""Label detected events from a catalogue of known events (for validation only).

The synthetic archive writes ``catalog.csv`` (``time,type,station,duration``)
for every planted event; observatories often hold a partial catalogue too.
Detected events are unsupervised; a label attached here is used only to score
the clustering (contingency table, purity, ARI), never to compute it.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

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
        """Read a CSV with columns ``time,type`` and optional ``station,duration``.

        Raises
        ------
        ValueError
            Naming the file and line of a bad row, or a missing column.
        """
        from obspy import UTCDateTime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"label catalogue {path} does not exist")
        times, durs, types, stations = [], [], [], []
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            missing = {"time", "type"} - cols
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                                 f"(found {', '.join(sorted(cols)) or 'none'})")
            for lineno, row in enumerate(reader, start=2):
                try:
                    t = UTCDateTime(row["time"]).timestamp
                    d = float(row.get("duration") or 0.0)
                except Exception:
                    raise ValueError(f"{path}, line {lineno}: bad time or duration "
                                     f"{row.get('time')!r}/{row.get('duration')!r}") from None
                times.append(t)
                durs.append(d)
                types.append(str(row["type"]).strip())
                stations.append(str(row.get("station") or "").strip())
        order = np.argsort(times, kind="stable")
        return cls(np.asarray(times, float)[order], np.asarray(durs, float)[order],
                   [types[i] for i in order], [stations[i] for i in order])

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
