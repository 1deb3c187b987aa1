"""Physically meaningful scalogram statistics: a waveform featurizer without images.

From each event's superlet power ``P(f, t)`` (``method.md`` Stages 0-1, after
the end-of-event cut and mean removal), with ``f`` the analysis frequencies:

- ``spectrum`` (``n_bands``): time-averaged power, log10, relative to its peak,
  averaged in ``n_bands`` groups of neighbouring frequencies;
- ``envelope`` (``n_times``): frequency-summed power, log10, relative to its
  peak, averaged over ``n_times`` equal parts of the event;
- ``track`` (``n_times``): power-weighted mean of ``log2 f`` in each time part
  (how the dominant frequency glides);
- six scalars: log10 duration (s), centroid and spread of ``log2 f`` over the
  whole event, time of the envelope peak (fraction of the event), share of the
  energy in the strongest tenth of the samples (impulsive vs emergent), and
  log10 of the energy above / below the geometric centre of the band.

Amplitude drops out (everything is relative), so families are told apart by
spectral shape, duration and evolution, as an analyst does. Events must carry
samples (image sets cannot be used with this featurizer).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from engine.events import Event
from engine.features.base import Featurizer

_TINY = 1e-30


def _segment_means(a: np.ndarray, n: int) -> np.ndarray:
    """Means of ``a`` (..., T) over ``n`` near-equal parts of the last axis (T >= 1)."""
    t = a.shape[-1]
    if t < n:
        a = np.repeat(a, -(-n // t), axis=-1)
        t = a.shape[-1]
    edges = np.linspace(0, t, n + 1).astype(int)
    sums = np.add.reduceat(a, edges[:-1], axis=-1)
    return sums / np.diff(edges)


def scalogram_stats(power: np.ndarray, freqs: np.ndarray, fs: float, n_bands: int = 24,
                    n_times: int = 16) -> np.ndarray:
    """Statistics of one superlet scalogram (see the module docstring).

    Parameters
    ----------
    power : ndarray (n_freqs, n_samples)
        Superlet power, frequencies ascending.
    freqs : ndarray (n_freqs,)
        Frequencies in Hz.
    fs : float
        Sampling rate (Hz).
    n_bands, n_times : int
        Frequency groups and time parts.

    Returns
    -------
    ndarray (n_bands + 2 * n_times + 6,) float64
    """
    p = np.asarray(power, dtype=np.float64)
    lf = np.log2(np.asarray(freqs, dtype=np.float64))
    total = p.sum() + _TINY
    spec = p.mean(axis=1)
    # floors relative to the peak (10 decades down), so that amplitude drops out
    eps = spec.max() * 1e-10 + _TINY
    spec_db = np.log10(spec + eps) - np.log10(spec.max() + eps)
    bands = _segment_means(spec_db[None, :], n_bands)[0]
    env = p.sum(axis=0)
    eps = env.max() * 1e-10 + _TINY
    env_db = np.log10(env + eps) - np.log10(env.max() + eps)
    envelope = _segment_means(env_db[None, :], n_times)[0]
    pw = _segment_means(p, n_times)  # (n_freqs, n_times)
    track = (lf[:, None] * pw).sum(0) / (pw.sum(0) + _TINY)
    w = spec / (spec.sum() + _TINY)
    centroid = float((w * lf).sum())
    spread = float(np.sqrt(max((w * (lf - centroid) ** 2).sum(), 0.0)))
    peak_time = float(np.argmax(env)) / max(len(env) - 1, 1)
    top = np.sort(env)[::-1][: max(1, len(env) // 10)]
    impulsive = float(top.sum() / (env.sum() + _TINY))
    mid = 0.5 * (lf[0] + lf[-1])
    eps = total * 1e-10
    hi_lo = float(np.log10((p[lf >= mid].sum() + eps) / (p[lf < mid].sum() + eps)))
    duration = np.log10(p.shape[1] / fs)
    if total <= _TINY:  # all-zero trace: no shape to describe
        bands, envelope, track = np.zeros(n_bands), np.zeros(n_times), np.full(n_times, mid)
        centroid, spread, peak_time, impulsive, hi_lo = mid, 0.0, 0.0, 0.0, 0.0
    return np.concatenate([bands, envelope, track,
                           [duration, centroid, spread, peak_time, impulsive, hi_lo]])


class ScalogramStats(Featurizer):
    """Spectral shape, envelope and frequency-glide statistics of superlet scalograms.

    Parameters
    ----------
    fs : float
        Sampling rate of the waveforms (Hz).
    device : {"cpu", "cuda"}
        Where the superlets are computed.
    batch : int
        Events per superlet batch.
    n_bands : int
        Frequency groups of the spectrum part.
    n_times : int
        Time parts of the envelope and frequency-track parts.
    """

    name = "scalogram-stats"
    description = ("spectral shape, envelope, frequency glide, duration and impulsiveness of "
                   "each event's superlet scalogram (waveforms only, no images, 62 numbers)")
    needs = "waveforms"

    def __init__(self, fs: float = 100.0, device: str = "cpu", batch: int = 32,
                 n_bands: int = 24, n_times: int = 16) -> None:
        self.fs = fs
        self.device = device
        self.batch = batch
        self.n_bands = n_bands
        self.n_times = n_times

    def check(self) -> "ScalogramStats":
        """Validate the numbers of bands and time parts and ``batch``."""
        for name in ("n_bands", "n_times", "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"scalogram-stats: {name} must be a positive integer; "
                                 f"got {v!r}")
        from engine.images import DEFAULT_FREQS

        if self.n_bands > len(DEFAULT_FREQS):
            raise ValueError(f"scalogram-stats: n_bands ({self.n_bands}) exceeds the "
                             f"{len(DEFAULT_FREQS)} analysis frequencies")
        return self

    def _fit(self, events: list[Event] | None) -> None:
        from engine.images import DEFAULT_FREQS

        self.freqs_ = np.asarray(DEFAULT_FREQS, dtype=np.float64)

    def _transform(self, events: list[Event]) -> np.ndarray:
        from engine._util import quiet
        from engine.images import prepare_trace
        from engine.superlet import superlet

        out = []
        for i in range(0, len(events), self.batch):
            batch = events[i:i + self.batch]
            t0 = time.perf_counter()
            traces = [prepare_trace(e.data, f"event {e.id}") for e in batch]
            traces = [t if t.size >= 2 else np.zeros(2, np.float32) for t in traces]
            with quiet():
                powers = superlet(traces, self.fs, self.freqs_, device=self.device,
                                  allow_short=True)
            self._timed("superlet", t0)
            t0 = time.perf_counter()
            for p in powers:
                p = p.get() if hasattr(p, "get") else p
                out.append(scalogram_stats(p, self.freqs_, self.fs, self.n_bands,
                                           self.n_times))
            self._timed("stats", t0)
        return np.stack(out)

    def _fingerprint(self) -> dict[str, Any]:
        return {"fs": float(self.fs), "n_bands": int(self.n_bands),
                "n_times": int(self.n_times), "superlet": "c1=3,orders=10-20,1:0.2:25"}
