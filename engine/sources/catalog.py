"""User event catalogues (CSV) that replace detection on continuous archives.

Format: a CSV file with a header row. Columns (case-insensitive):

- ``time`` (required): event onset, anything ObsPy's ``UTCDateTime`` reads
  (``2017-08-10T04:02:15.2``, ``2017-08-10 04:02:15``, ...), UTC.
- ``duration`` (optional): seconds; empty means "unknown" (the window then has
  the maximum length).
- ``label`` or ``type`` or ``class`` (optional): the event class.
- ``station`` (optional): ``STA`` or ``NET.STA``; the row then applies to that
  station only, otherwise to every selected station.

The catalogue written by ``engine.synth`` (``time,type,station,duration``) is
read as is. A bad time or duration raises a ValueError naming the file and line.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

_LABEL_COLUMNS = ("label", "type", "class")


def parse_time(value, what: str) -> float:
    """POSIX seconds of a UTC time given as text (anything ObsPy's ``UTCDateTime`` reads).

    The engine's one time parser: flags, catalogues and archive selections use it.

    Parameters
    ----------
    value : str, float or UTCDateTime
        The time.
    what : str
        Where it came from, for the message (``"--starttime"``, ``"cat.csv:4"``).

    Raises
    ------
    ValueError
        Naming ``what`` and the value.
    """
    from obspy import UTCDateTime

    try:
        return UTCDateTime(value).timestamp
    except Exception:
        raise ValueError(f"{what}: bad time {value!r} (expected ISO 8601 UTC, e.g. "
                         "2017-08-10T04:02:15.2)") from None


@dataclass(frozen=True)
class CatalogEntry:
    """One catalogue row: onset (POSIX seconds), duration, label, station."""

    time: float
    duration: Optional[float] = None
    label: Optional[str] = None
    station: Optional[str] = None

    def applies_to(self, net_sta: str) -> bool:
        """Whether this row is for station ``NET.STA`` (rows without station: all)."""
        if not self.station:
            return True
        if "." in self.station:
            return self.station == net_sta
        return net_sta.split(".")[-1] == self.station


def read_catalog(path) -> list[CatalogEntry]:
    """Read a catalogue CSV.

    Parameters
    ----------
    path : path
        CSV file (see module docstring).

    Returns
    -------
    list of CatalogEntry
        Rows sorted by time.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the header has no ``time`` column, the file has no rows, or a time or
        duration cannot be parsed (message: ``file:line: ...``).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"catalogue {str(p)!r} does not exist")
    entries: list[CatalogEntry] = []
    with open(p, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"catalogue {p} is empty (expected a header with a 'time' column)") from None
        if "time" not in header:
            raise ValueError(f"catalogue {p}: header {header} has no 'time' column")
        it = header.index("time")
        idur = header.index("duration") if "duration" in header else None
        ilab = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
        ista = header.index("station") if "station" in header else None
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < len(header):
                row = row + [""] * (len(header) - len(row))
            t = parse_time(row[it].strip(), f"{p}:{line}")
            dur = None
            if idur is not None and row[idur].strip():
                try:
                    dur = float(row[idur])
                except ValueError:
                    raise ValueError(f"{p}:{line}: bad duration {row[idur]!r} (seconds expected)") from None
                if not dur >= 0:
                    raise ValueError(f"{p}:{line}: duration must be >= 0, got {row[idur]!r}")
            lab = row[ilab].strip() or None if ilab is not None else None
            sta = row[ista].strip() or None if ista is not None else None
            entries.append(CatalogEntry(t, dur, lab, sta))
    if not entries:
        raise ValueError(f"catalogue {p} has a header but no rows")
    entries.sort(key=lambda e: (e.time, e.station or ""))
    return entries
