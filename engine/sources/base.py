"""The interface every event source implements.

A source is a *partitionable* stream of events: ``chunks()`` lists stable,
picklable chunk keys (strings) in a deterministic order and ``read_chunk(key)``
reads one of them. The pipeline uses the keys to resume an interrupted run
(chunks already in the feature store are skipped) and to ship chunks to Dask
workers, so a source object must be picklable (hold paths and parameters, not
open files) and ``read_chunk`` must return the same events for the same key.
"""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator

from engine.events import Event


@dataclass
class SourceSummary:
    """Counts of what a source read and skipped (merged into the run summary)."""

    files_read: int = 0
    events: int = 0
    samples: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, path: str, reason: str, warn: bool = True) -> None:
        """Record a skipped file (or chunk) with the reason, warning the user."""
        self.skipped.append((str(path), reason))
        if warn:
            warnings.warn(f"skipped {path}: {reason}", stacklevel=3)

    def merge(self, other: "SourceSummary") -> "SourceSummary":
        """Add ``other``'s counts into this summary and return it."""
        self.files_read += other.files_read
        self.events += other.events
        self.samples += other.samples
        self.skipped.extend(other.skipped)
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
