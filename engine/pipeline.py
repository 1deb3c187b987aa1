"""Per-chunk work of the main job: events -> images -> features -> store part.

These functions are what a Dask worker runs too, so they take only picklable
arguments (a source object, a chunk key, a :class:`FeatureSpec`) and keep the
loaded network in a per-process cache.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from engine._util import quiet
from engine.events import Event
from engine.sources.base import ChunkResult, EventSource
from engine.store import META_COLUMNS, write_part


@dataclass(frozen=True)
class FeatureSpec:
    """What turns events into features (picklable; the network is built lazily).

    Attributes
    ----------
    weights : str or None
        MATLAB MAT-file or engine weights; None for the engine's default weights.
    feature_layer : str
        Layer whose activations are the features.
    fs : float
        Sampling rate of the waveforms (Hz).
    device : str
        ``"cpu"`` or ``"cuda"`` (already resolved, never ``"auto"``).
    batch : int
        Events per batch through the images and the CNN.
    precision : str
        CNN precision on CUDA.
    tensorrt : bool
        Compile the CNN with torch-tensorrt on CUDA.
    label_catalog : str or None
        CSV of known events used to label detected events (validation only).
    images_dir : str or None
        Where to write each event's image as PNG, if wanted.
    """

    weights: Optional[str] = None
    feature_layer: str = "conv10"
    fs: float = 100.0
    device: str = "cpu"
    batch: int = 32
    precision: str = "fp32"
    tensorrt: bool = False
    label_catalog: Optional[str] = None
    images_dir: Optional[str] = None


_EXTRACTORS: dict[tuple, Any] = {}
_CATALOGS: dict[str, Any] = {}


def load_extractor(spec: FeatureSpec):
    """The feature extractor for ``spec``, cached per process."""
    key = (spec.weights, spec.feature_layer, spec.device, spec.batch, spec.precision,
           spec.tensorrt)
    ext = _EXTRACTORS.get(key)
    if ext is None:
        from engine.features import SqueezeNetExtractor
        from engine.features.weights import load_default

        kw = dict(feature_layer=spec.feature_layer, device=spec.device,
                  batch_size=spec.batch, precision=spec.precision,
                  tensorrt=spec.tensorrt)
        if spec.weights is None:
            ext = load_default(**kw)
        elif str(spec.weights).lower().endswith(".mat"):
            ext = SqueezeNetExtractor.from_matlab(spec.weights, **kw)
        else:
            ext = SqueezeNetExtractor.load(spec.weights, **kw)
        _EXTRACTORS[key] = ext
    return ext


def events_to_images(events: list[Event], spec: FeatureSpec):
    """Images (n, 227, 227, 3) uint8 of ``events``: given images or superlet images.

    On ``device="cuda"`` waveform events give a GPU array (never copied back).
    """
    if all(e.image is not None for e in events):
        return np.stack([e.image for e in events])
    if any(e.data is None for e in events):
        bad = next(e for e in events if e.data is None and e.image is None)
        raise ValueError(f"event {bad.id} from {bad.source} has neither samples nor image")
    from engine.images import event_images

    return event_images([e.data for e in events], fs=spec.fs, device=spec.device)


def compute_chunks(results: Sequence[ChunkResult], spec: FeatureSpec,
                   parts_dir: str | Path, t_reads: Sequence[float] | None = None
                   ) -> list[dict]:
    """Features of a group of read chunks, written as one store part per chunk.

    The events of all chunks go through the images and the CNN together, so the
    batches stay full even when each chunk holds a handful of events (an hour of
    one station); the parts are written only once the whole group is computed,
    so an interrupted run loses at most the group in flight.

    Returns
    -------
    list of dict
        The stats of each chunk (also stored in its part).
    """
    t0 = time.perf_counter()
    t_reads = list(t_reads) if t_reads is not None else [0.0] * len(results)
    events = [e for res in results for e in res.events]
    if spec.label_catalog:
        from engine.labels import LabelCatalog, attach_labels

        cat = _CATALOGS.get(spec.label_catalog)
        if cat is None:
            cat = _CATALOGS[spec.label_catalog] = LabelCatalog.read(spec.label_catalog)
        attach_labels(events, cat)
    feats: list[np.ndarray] = []
    times = [0.0, 0.0]
    if events:
        ext = load_extractor(spec)
        with quiet():
            _batches(events, spec, ext, feats, times)
    F = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
    share = (time.perf_counter() - t0) / max(len(events), 1)
    out, start = [], 0
    for res, t_read in zip(results, t_reads):
        n = len(res.events)
        meta = {c: [] for c in META_COLUMNS}
        for e in res.events:
            meta["event_id"].append(e.id)
            meta["station"].append(e.station)
            meta["channel"].append(e.channel)
            meta["start"].append(e.start)
            meta["label"].append(e.label or "")
            meta["chunk"].append(res.key)
            meta["source"].append(e.source)
        s = res.summary
        frac = n / max(len(events), 1)
        stats = {"files_read": s.files_read, "events": n, "samples": s.samples,
                 "skipped": [list(x) for x in s.skipped], "t_images": times[0] * frac,
                 "t_cnn": times[1] * frac, "t_read": t_read, "t_total": share * n + t_read}
        write_part(parts_dir, res.key, F[start:start + n] if n else F[:0], meta, stats)
        start += n
        out.append(stats)
    return out


def _batches(events: list[Event], spec: FeatureSpec, ext, feats: list, times: list) -> None:
    for i in range(0, len(events), spec.batch):
        batch = events[i:i + spec.batch]
        ta = time.perf_counter()
        images = events_to_images(batch, spec)
        tb = time.perf_counter()
        feats.append(np.asarray(ext.transform(images), dtype=np.float32))
        times[0] += tb - ta
        times[1] += time.perf_counter() - tb
        if spec.images_dir:
            _save_images(images, batch, spec.images_dir)


def process_chunks(source: EventSource, keys: Sequence[str], spec: FeatureSpec,
                   parts_dir: str | Path) -> list[dict]:
    """Read chunks ``keys`` of ``source`` and store their features (a Dask task)."""
    results, reads = [], []
    for key in keys:
        t0 = time.perf_counter()
        results.append(source.read_chunk(key))
        reads.append(time.perf_counter() - t0)
    return compute_chunks(results, spec, parts_dir, reads)


def _save_images(images, events: list[Event], out_dir: str) -> None:
    from engine.images import write_images

    if not isinstance(images, np.ndarray):  # GPU array: the user asked for files
        images = images.get() if hasattr(images, "get") else images.cpu().numpy()
    write_images(images, [e.id for e in events], [e.label or "unlabelled" for e in events],
                 out_dir)
