"""Event detection in continuous traces: recursive STA/LTA, triggers, coincidence.

The detector is the classic one (Allen 1978; Withers et al. 1998; Trnkoczy
2012): the trace is band-passed (Butterworth, 4 poles, causal so that onsets are
not pulled earlier), squared, and two exponential moving averages of the energy
are formed, a short one (STA, ``sta`` seconds) and a long one (LTA, ``lta``
seconds). A trigger switches on when STA/LTA rises above ``on`` and off when it
falls below ``off``.

One departure from ObsPy's ``recursive_sta_lta``: ObsPy starts both averages at
zero and blanks the first ``lta`` seconds of the ratio, so an event in the first
``lta`` seconds of a record (or after a data gap) is never found. Here the
averages start from a robust estimate of the background energy of the first
``lta`` seconds (the median of the squared samples divided by 0.4549, the
median of a chi-square variable with one degree of freedom, so that it equals
the mean energy for Gaussian noise and is barely moved by an event in that
stretch). After ``lta`` seconds the two versions agree (tested against ObsPy).

Defaults are textbook values for local volcanic seismicity (STA 1 s, LTA 20 s,
on 3.5, off 1.5, 1-20 Hz band), not tuned to any data set.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence

import numpy as np

#: median of a chi-square variable with one degree of freedom
_CHI2_1_MEDIAN = 0.4549364231195724


@dataclass
class DetectorConfig:
    """Parameters of event detection and of the event windows cut around it.

    All times are in seconds. Validate once with :meth:`validate`, which every
    source calls before using it.

    Parameters
    ----------
    sta : float
        Short-term average window of the recursive STA/LTA (default 1 s).
    lta : float
        Long-term average window (default 20 s).
    on : float
        STA/LTA ratio that switches a trigger on (default 3.5).
    off : float
        Ratio below which the trigger switches off (default 1.5); must be < on.
    freqmin, freqmax : float or None
        Band-pass applied before detection (default 1-20 Hz). ``None`` for
        either end drops that side (high-pass or low-pass only; both ``None``:
        no filter). ``freqmax`` is lowered to 0.45 * sampling rate when the
        data cannot carry it. The emitted event data are not filtered.
    min_duration : float
        Triggers shorter than this (on to off) are discarded (default 1 s).
    max_duration : float
        Triggers are cut at this length (default 60 s); a trigger that stays on
        longer (tremor) gives one event and no new trigger until it switches off.
    pre, post : float
        Padding before the onset and after the trigger end (default 5 s each).
    max_window : float
        Cap on the event window length, padding included (default 60 s, that is
        6000 samples at 100 Hz, the longest trace the images use).
    min_stations : int
        Coincidence: with several stations, keep only triggers seen on at
        least this many distinct stations within ``coincidence_window``
        (default 1: every station on its own).
    coincidence_window : float
        Largest spread of the onsets of one coincident event (default 10 s).
    """

    sta: float = 1.0
    lta: float = 20.0
    on: float = 3.5
    off: float = 1.5
    freqmin: Optional[float] = 1.0
    freqmax: Optional[float] = 20.0
    min_duration: float = 1.0
    max_duration: float = 60.0
    pre: float = 5.0
    post: float = 5.0
    max_window: float = 60.0
    min_stations: int = 1
    coincidence_window: float = 10.0

    def validate(self) -> "DetectorConfig":
        """Check every parameter; return ``self``.

        Raises
        ------
        ValueError
            Naming the first parameter that is out of range.
        """
        def positive(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
                raise ValueError(f"detector parameter {name} must be a positive number, got {v!r}")

        def nonneg(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"detector parameter {name} must be >= 0, got {v!r}")

        for name in ("sta", "lta", "on", "off", "max_duration", "max_window", "coincidence_window"):
            positive(name)
        for name in ("min_duration", "pre", "post"):
            nonneg(name)
        if self.sta >= self.lta:
            raise ValueError(f"detector: sta ({self.sta} s) must be shorter than lta ({self.lta} s)")
        if self.off >= self.on:
            raise ValueError(f"detector: off threshold ({self.off}) must be below on ({self.on})")
        if self.min_duration > self.max_duration:
            raise ValueError(f"detector: min_duration ({self.min_duration} s) exceeds "
                             f"max_duration ({self.max_duration} s)")
        if self.pre >= self.max_window:
            raise ValueError(f"detector: pre padding ({self.pre} s) must be shorter than "
                             f"max_window ({self.max_window} s)")
        for name in ("freqmin", "freqmax"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0):
                raise ValueError(f"detector parameter {name} must be a positive frequency or None, got {v!r}")
        if self.freqmin is not None and self.freqmax is not None and self.freqmin >= self.freqmax:
            raise ValueError(f"detector: freqmin ({self.freqmin} Hz) must be below freqmax ({self.freqmax} Hz)")
        if not isinstance(self.min_stations, (int, np.integer)) or self.min_stations < 1:
            raise ValueError(f"detector parameter min_stations must be an integer >= 1, got {self.min_stations!r}")
        return self

    @property
    def overlap(self) -> float:
        """Seconds read after a chunk so that an event starting in it is complete."""
        return max(self.max_window, self.max_duration + self.post) + self.coincidence_window + 1.0

    def to_dict(self) -> dict:
        """Plain dict of the parameters (saved with every run)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorConfig":
        """Build from a dict, ignoring keys that are not parameters."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def bandpass(data: np.ndarray, fs: float, freqmin: Optional[float],
             freqmax: Optional[float], corners: int = 4) -> np.ndarray:
    """Causal Butterworth band-pass (or high/low-pass when one end is ``None``).

    Parameters
    ----------
    data : numpy.ndarray
        1-D samples.
    fs : float
        Sampling rate in Hz.
    freqmin, freqmax : float or None
        Corner frequencies; ``freqmax`` is lowered to 0.45 * fs if needed.
    corners : int
        Filter order.

    Returns
    -------
    numpy.ndarray
        Filtered float64 samples (the input itself, as float64, when no band).
    """
    from scipy.signal import butter, sosfilt

    x = np.asarray(data, dtype=np.float64)
    nyq = 0.5 * fs
    hi = None if freqmax is None else min(freqmax, 0.9 * nyq)
    lo = freqmin
    if lo is not None and lo >= 0.9 * nyq:
        lo = None
    if lo is not None and hi is not None and lo >= hi:
        hi = None
    if lo is None and hi is None:
        return x
    if lo is not None and hi is not None:
        sos = butter(corners, [lo / nyq, hi / nyq], btype="band", output="sos")
    elif lo is not None:
        sos = butter(corners, lo / nyq, btype="high", output="sos")
    else:
        sos = butter(corners, hi / nyq, btype="low", output="sos")
    # remove the offset and taper the first second so the filter does not ring
    # at the start of the record (which would trigger a false event there)
    y = x - x[: max(1, int(fs))].mean()
    n = min(len(y), max(1, int(fs)))
    y[:n] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    return sosfilt(sos, y)


def recursive_sta_lta(a: np.ndarray, nsta: int, nlta: int,
                      warm_start: bool = True) -> np.ndarray:
    """Recursive STA/LTA characteristic function (vectorised with ``lfilter``).

    Parameters
    ----------
    a : numpy.ndarray
        1-D (filtered) samples.
    nsta, nlta : int
        STA and LTA lengths in samples (``nsta < nlta``).
    warm_start : bool
        Start both averages from the robust background energy of the first
        ``nlta`` samples (see module docstring). With ``False`` the averages start
        at zero and the first ``nlta`` values are set to 0, exactly as ObsPy's
        ``recursive_sta_lta``.

    Returns
    -------
    numpy.ndarray
        float64 ratio, same length as ``a``.
    """
    from scipy.signal import lfilter

    x = np.asarray(a, dtype=np.float64)
    sq = x * x
    csta, clta = 1.0 / nsta, 1.0 / nlta
    if warm_start:
        e0 = float(np.median(sq[:nlta])) / _CHI2_1_MEDIAN if len(sq) else 0.0
        if not e0 > 0:
            e0 = float(np.mean(sq[:nlta])) if len(sq) else 0.0
        s0 = l0 = e0
    else:
        s0 = l0 = 0.0
        sq = sq.copy()
        if len(sq):
            sq[0] = 0.0  # ObsPy's recursion starts at sample 1
    sta = lfilter([csta], [1.0, -(1.0 - csta)], sq, zi=[(1.0 - csta) * s0])[0]
    lta = lfilter([clta], [1.0, -(1.0 - clta)], sq, zi=[(1.0 - clta) * l0])[0]
    tiny = np.finfo(np.float64).tiny
    with np.errstate(divide="ignore", invalid="ignore"):
        cft = np.where(lta > tiny, sta / np.maximum(lta, tiny), 0.0)
    if not warm_start:
        cft[:nlta] = 0.0
    return cft


def recursive_sta_lta_reference(a: np.ndarray, nsta: int, nlta: int,
                                warm_start: bool = True) -> np.ndarray:
    """Slow, obvious loop version of :func:`recursive_sta_lta` (for tests)."""
    x = np.asarray(a, dtype=np.float64)
    sq = x * x
    out = np.zeros(len(x))
    if warm_start:
        e = float(np.median(sq[:nlta])) / _CHI2_1_MEDIAN if len(x) else 0.0
        if not e > 0:
            e = float(np.mean(sq[:nlta])) if len(x) else 0.0
        sta = lta = e
        first = 0
    else:
        sta = lta = 0.0
        first = 1
    for i in range(first, len(x)):
        sta = sq[i] / nsta + (1 - 1 / nsta) * sta
        lta = sq[i] / nlta + (1 - 1 / nlta) * lta
        out[i] = sta / lta if lta > np.finfo(np.float64).tiny else 0.0
    if not warm_start:
        out[:nlta] = 0.0
    return out


def trigger_windows(cft: np.ndarray, on: float, off: float,
                    max_len: Optional[int] = None) -> list[tuple[int, int]]:
    """Trigger on/off sample pairs of a characteristic function.

    A trigger starts at the first sample where ``cft > on`` and ends at the
    first later sample where ``cft < off`` (or at the last sample). With
    ``max_len`` the reported end is capped at ``start + max_len`` and no new
    trigger starts before the ratio has really fallen below ``off``.

    Parameters
    ----------
    cft : numpy.ndarray
        Characteristic function.
    on, off : float
        Thresholds (``off < on``).
    max_len : int, optional
        Longest trigger in samples.

    Returns
    -------
    list of (int, int)
        ``(start, end)`` sample indices, ``end`` inclusive.
    """
    c = np.asarray(cft)
    if len(c) == 0:
        return []
    above = c > on
    ups = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    if above[0]:
        ups = np.concatenate([[0], ups])
    downs = np.flatnonzero(c < off)
    out: list[tuple[int, int]] = []
    busy_until = -1
    for u in ups:
        if u <= busy_until:
            continue
        k = np.searchsorted(downs, u)
        d = int(downs[k]) if k < len(downs) else len(c) - 1
        busy_until = d
        end = d if max_len is None else min(d, int(u) + int(max_len))
        out.append((int(u), end))
    return out


def detect(data: np.ndarray, fs: float, config: DetectorConfig | None = None
           ) -> list[tuple[int, int]]:
    """Detect events in one continuous, gap-free trace.

    Parameters
    ----------
    data : numpy.ndarray
        1-D samples.
    fs : float
        Sampling rate in Hz.
    config : DetectorConfig, optional
        Detection parameters (defaults when omitted).

    Returns
    -------
    list of (int, int)
        Trigger ``(onset, end)`` sample indices (end inclusive) of the triggers
        that last at least ``min_duration``; end capped at ``max_duration``.
    """
    cfg = (config or DetectorConfig()).validate()
    x = np.asarray(data, dtype=np.float64)
    nsta = max(1, int(round(cfg.sta * fs)))
    nlta = max(nsta + 1, int(round(cfg.lta * fs)))
    if len(x) < nsta + 1:
        return []
    y = bandpass(x, fs, cfg.freqmin, cfg.freqmax)
    cft = recursive_sta_lta(y, nsta, nlta)
    trig = trigger_windows(cft, cfg.on, cfg.off, max_len=int(round(cfg.max_duration * fs)))
    min_len = cfg.min_duration * fs
    return [(a, b) for a, b in trig if b - a >= min_len]


def coincidence(triggers: dict[str, Sequence[tuple[float, float]]], min_stations: int,
                window: float) -> list[dict[str, tuple[float, float]]]:
    """Group per-station triggers into network events.

    Triggers are taken in onset order; a group opens at the earliest onset not
    yet used and takes, from every other station, its first unused trigger with
    onset within ``window`` seconds of the group's first onset. Groups that
    span at least ``min_stations`` distinct stations are returned.

    Parameters
    ----------
    triggers : dict
        Station id -> list of ``(onset, end)`` times in seconds (any epoch).
    min_stations : int
        Distinct stations needed.
    window : float
        Largest onset spread in seconds.

    Returns
    -------
    list of dict
        One dict per network event: station id -> its ``(onset, end)``,
        ordered by the event's first onset.
    """
    flat = sorted((float(on), float(end), sta) for sta, lst in triggers.items()
                  for on, end in lst)
    used = [False] * len(flat)
    groups: list[dict[str, tuple[float, float]]] = []
    for i, (on_i, end_i, sta_i) in enumerate(flat):
        if used[i]:
            continue
        group = {sta_i: (on_i, end_i)}
        members = [i]
        for j in range(i + 1, len(flat)):
            on_j, end_j, sta_j = flat[j]
            if on_j - on_i > window:
                break
            if not used[j] and sta_j not in group:
                group[sta_j] = (on_j, end_j)
                members.append(j)
        if len(group) >= min_stations:
            for m in members:
                used[m] = True
            groups.append(group)
        else:
            used[i] = True
    return groups
