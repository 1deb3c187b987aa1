"""The interface every event source implements.

A source is a *partitionable* stream of events: ``chunks()`` lists stable,
picklable chunk keys (strings) in a deterministic order and ``read_chunk(key)``
reads one of them. The pipeline uses the keys to resume an interrupted run
(chunks already in the feature store are skipped) and to ship chunks to Dask
workers, so a source object must be picklable (hold paths and parameters, not
open files) and ``read_chunk`` must return the same events for the same key.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional, Iterable, Iterator

from engine.events import Event

logger = logging.getLogger("engine.sources")


def unique_skipped(items: Iterable) -> list[tuple[str, str]]:
    """Skipped ``(path, reason)`` pairs with one entry per path (the first reason kept).

    A file that spans several chunks fails in each of them; the run summary
    counts files, not chunks, so per-chunk lists are merged through this.

    Parameters
    ----------
    items : iterable of (str, str)
        Pairs as recorded by :meth:`SourceSummary.skip` (lists are accepted).

    Returns
    -------
    list of (str, str)
        In first-seen order.

    Examples
    --------
    >>> unique_skipped([("a.mseed", "bad"), ["a.mseed", "bad"], ("b.mseed", "bad")])
    [('a.mseed', 'bad'), ('b.mseed', 'bad')]
    """
    seen: dict[str, tuple[str, str]] = {}
    for path, reason in items:
        seen.setdefault(str(path), (str(path), str(reason)))
    return list(seen.values())


@dataclass
class SourceSummary:
    """Counts of what a source read and skipped (merged into the run summary)."""

    files_read: int = 0
    events: int = 0
    samples: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, path: str, reason: str, warn: bool = True) -> bool:
        """Record a skipped file (or item) once, with a one-line reason; log a warning.

        Parameters
        ----------
        path : str
            The file (or ``file:/dataset``, ``stream time``) that was skipped.
        reason : str
            Why; only its first line is kept, cut to 300 characters.
        warn : bool
            Log one WARNING line (logger ``engine.sources``) the first time
            ``path`` is recorded in this summary.

        Returns
        -------
        bool
            True when ``path`` was new to this summary.
        """
        path = str(path)
        reason = (str(reason).strip().splitlines() or [""])[0]
        if len(reason) > 300:
            reason = reason[:297] + "..."
        if any(p == path for p, _ in self.skipped):
            return False
        self.skipped.append((path, reason))
        if warn:
            logger.warning("skipped %s: %s", path, reason)
        return True

    def merge(self, other: "SourceSummary") -> "SourceSummary":
        """Add ``other``'s counts into this summary (skipped files once each); return it."""
        self.files_read += other.files_read
        self.events += other.events
        self.samples += other.samples
        self.skipped[:] = unique_skipped(list(self.skipped) + list(other.skipped))
        return self


@dataclass
class ChunkResult:
    """The events of one chunk and what reading it cost or skipped."""

    key: str
    events: list[Event]
    summary: SourceSummary


class EventSource(ABC):
    """Base class of event sources (archives, event files, image folders)."""

    #: short name shown in messages and the report ("sds", "h5", "images", ...)
    kind: str = "source"

    @abstractmethod
    def chunks(self) -> list[str]:
        """Stable, ordered list of chunk keys covering the whole source."""

    @abstractmethod
    def read_chunk(self, key: str) -> ChunkResult:
        """Read one chunk; bad files inside it are skipped and recorded."""

    def _skip(self, summary: SourceSummary, path, reason: str) -> None:
        """Record ``path`` as skipped in ``summary``; warn only once per file and source.

        A file read by several chunks (a day file cut into hours) fails in each
        of them: every chunk records it (the run merges them per file with
        :func:`unique_skipped`), but the user sees one warning line.
        """
        warned = self.__dict__.setdefault("_warned_paths", set())
        summary.skip(str(path), reason, warn=str(path) not in warned)
        warned.add(str(path))

    def size_hint(self) -> Optional[int]:
        """Number of events, when known before reading (event sets, image folders).

        ``None`` for sources whose events are found while reading (detection on
        archives, labelled windows). Lets the main job check ``--k`` before any
        feature is computed.
        """
        return None

    def check(self) -> "EventSource":
        """Validate parameters and list the chunks now, so errors come early; return self."""
        self.chunks()
        return self

    def __iter__(self) -> Iterator[Event]:
        for key in self.chunks():
            yield from self.read_chunk(key).events

    def read_all(self) -> tuple[list[Event], SourceSummary]:
        """Read every chunk (small sources only) and the merged summary."""
        events: list[Event] = []
        summary = SourceSummary()
        for key in self.chunks():
            res = self.read_chunk(key)
            events.extend(res.events)
            summary.merge(res.summary)
        return events, summary
