"""Per-chunk work of the main job: events of read chunks -> features -> store parts.

These functions are what a Dask worker runs too, so they take only picklable
arguments (a source object, chunk keys, an unfitted featurizer) and keep the
fitted featurizer in a per-process cache. They know nothing of how features
are made: that is the featurizer's business (:mod:`engine.features`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from engine.events import Event
from engine.features.base import Featurizer
from engine.sources.base import ChunkResult, EventSource
from engine.store import META_COLUMNS, write_part

_FITTED: dict[str, Featurizer] = {}
_CATALOGS: dict[str, Any] = {}


def fitted(featurizer: Featurizer) -> Featurizer:
    """``featurizer`` fitted once per process (a fitted one is used as it is)."""
    if getattr(featurizer, "fitted_", False):
        return featurizer
    key = featurizer.cache_key()
    f = _FITTED.get(key)
    if f is None:
        f = _FITTED[key] = featurizer.fit()
    return f


def event_stats(ev: Event) -> dict[str, str]:
    """End time, duration (s), peak amplitude and SNR of one event, as store strings.

    SNR is the RMS of the 2 s around the peak over the RMS of the first 2 s of the
    window (the noise before a detected event's onset); empty for image-only
    events and for windows shorter than 4 s.
    """
    if ev.data is None or not ev.fs:
        return {"end": "", "duration": "", "amplitude": "", "snr": ""}
    x = np.asarray(ev.data, dtype=np.float64)
    x = x - x.mean() if x.size else x
    dur = x.size / ev.fs
    end = ""
    if ev.start:
        from obspy import UTCDateTime

        end = str(UTCDateTime(ev.start) + dur)
    peak = float(np.abs(x).max()) if x.size else 0.0
    snr = ""
    w = int(2 * ev.fs)
    if x.size >= 2 * w:
        i = int(np.argmax(np.abs(x)))
        sig = x[max(0, i - w // 2): i + w // 2]
        noise = np.sqrt(np.mean(x[:w] ** 2))
        if noise > 0:
            snr = f"{np.sqrt(np.mean(sig ** 2)) / noise:.3f}"
    return {"end": end, "duration": f"{dur:.3f}", "amplitude": f"{peak:.6g}", "snr": snr}


def chunk_meta(res: ChunkResult) -> dict[str, list[str]]:
    """Store metadata columns (:data:`engine.store.META_COLUMNS`) of a chunk's events."""
    meta: dict[str, list[str]] = {c: [] for c in META_COLUMNS}
    for e in res.events:
        row = {"event_id": e.id, "station": e.station, "channel": e.channel,
               "start": e.start, "label": e.label or "", "chunk": res.key,
               "source": e.source, **event_stats(e)}
        for c in META_COLUMNS:
            meta[c].append(row[c])
    return meta


def compute_chunks(results: Sequence[ChunkResult], featurizer: Featurizer,
                   parts_dir: str | Path, t_reads: Sequence[float] | None = None,
                   label_catalog: Optional[str] = None) -> list[dict]:
    """Features of a group of read chunks, written as one store part per chunk.

    The events of all chunks go through the featurizer together, so its batches
    stay full even when each chunk holds a handful of events (an hour of one
    station); the parts are written only once the whole group is computed, so
    an interrupted run loses at most the group in flight.

    Parameters
    ----------
    results : sequence of ChunkResult
        Read chunks.
    featurizer : Featurizer
        Fitted or not (fitted once per process).
    parts_dir : path
        The store's parts folder.
    t_reads : sequence of float, optional
        Seconds spent reading each chunk (kept in its stats).
    label_catalog : str, optional
        CSV of known events used to label the detected ones (validation only).

    Returns
    -------
    list of dict
        The stats of each chunk (also stored in its part).
    """
    t0 = time.perf_counter()
    t_reads = list(t_reads) if t_reads is not None else [0.0] * len(results)
    events = [e for res in results for e in res.events]
    if label_catalog:
        from engine.labels import LabelCatalog, attach_labels

        cat = _CATALOGS.get(label_catalog)
        if cat is None:
            cat = _CATALOGS[label_catalog] = LabelCatalog.read(label_catalog)
        attach_labels(events, cat)
    stages: dict[str, float] = {}
    if events:
        f = fitted(featurizer)
        before = dict(f.timings_)
        F = f.transform(events)
        stages = {k: v - before.get(k, 0.0) for k, v in f.timings_.items()}
    else:
        F = np.zeros((0, 0), np.float32)
    share = (time.perf_counter() - t0) / max(len(events), 1)
    out, start = [], 0
    for res, t_read in zip(results, t_reads):
        n = len(res.events)
        s = res.summary
        frac = n / max(len(events), 1)
        stats = {"files_read": s.files_read, "events": n, "samples": s.samples,
                 "skipped": [list(x) for x in s.skipped], "t_read": t_read,
                 "t_total": share * n + t_read,
                 **{f"t_{k}": v * frac for k, v in stages.items()}}
        write_part(parts_dir, res.key, F[start:start + n] if n else F[:0], chunk_meta(res),
                   stats)
        start += n
        out.append(stats)
    return out


def compute_in_batches(results: Iterable[tuple[ChunkResult, float]], featurizer: Featurizer,
                       parts_dir: str | Path, batch_target: int,
                       label_catalog: Optional[str] = None, max_chunks: int = 64,
                       on_chunks: Optional[Callable[[int], None]] = None) -> None:
    """Gather read chunks until they hold ``batch_target`` events, then compute them.

    The cross-chunk batching of the main job (in this process, or as the GPU
    consumer of reader processes): ``(chunk, seconds to read it)`` pairs are
    grouped until the group holds ``batch_target`` events or ``max_chunks``
    chunks, then :func:`compute_chunks` writes one part per chunk.
    ``on_chunks(n)`` is called after each group with its number of chunks.
    """
    group: list[ChunkResult] = []
    reads: list[float] = []
    n_events = 0
    for res, t_read in results:
        group.append(res)
        reads.append(t_read)
        n_events += len(res.events)
        if n_events >= batch_target or len(group) >= max_chunks:
            compute_chunks(group, featurizer, parts_dir, reads, label_catalog)
            if on_chunks is not None:
                on_chunks(len(group))
            group, reads, n_events = [], [], 0
    if group:
        compute_chunks(group, featurizer, parts_dir, reads, label_catalog)
        if on_chunks is not None:
            on_chunks(len(group))


def process_chunks(source: EventSource, keys: Sequence[str], featurizer: Featurizer,
                   parts_dir: str | Path, label_catalog: Optional[str] = None) -> list[dict]:
    """Read chunks ``keys`` of ``source`` and store their features (a Dask task)."""
    results, reads = [], []
    for key in keys:
        t0 = time.perf_counter()
        results.append(source.read_chunk(key))
        reads.append(time.perf_counter() - t0)
    return compute_chunks(results, featurizer, parts_dir, reads, label_catalog)
