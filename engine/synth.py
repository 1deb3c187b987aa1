"""Synthetic volcano-seismic archives and labelled event waveforms.

``python -m engine.synth --out DIR --days N`` writes a real SDS miniSEED archive
(``DIR/YEAR/NET/STA/CHAN.D/NET.STA.LOC.CHAN.D.YEAR.DOY``, network ``XX``,
stations ``SYN01``.., location empty, channel ``HHZ``, int32 Steim-2, one file
per station-channel-day) of coloured background noise with planted events, and
``DIR/catalog.csv`` (``time,type,station,duration``: one row per event per
station, ``time`` the onset at that station, ISO UTC).

Background noise (per station, independent): white noise (unit variance) plus a
microseism peak near 0.2 Hz (two-pole resonator, Q 4, 3x the white level in
RMS) plus a 1/f-like red component (one-pole low-pass at 0.05 Hz). Samples are
counts with a background RMS of ``noise_counts`` (default 500).

Planted events (``synthetic_event`` gives the waveform shapes):

- LP: emergent (0.5-1.5 s rise), narrow-band carrier at 0.6-4 Hz with a weaker
  second spectral peak, exponentially decaying coda; 10-30 s.
- VT: impulsive P and S phases, broadband 5-20 Hz, S-P 1-3 s, S 2-3x P; 8-20 s.
- TR: tremor, harmonic (fundamental 1-3 Hz plus 2 overtones, slowly gliding)
  or spasmodic (band-limited 1-5 Hz noise, amplitude modulated); 2-5 min in the
  archive (<= 60 s from :func:`synthetic_event`).
- TC: distant tectonic, emergent P and S, S-P 10-30 s, 0.5-5 Hz; 40-60 s.
- OV: two events (LP or VT) whose onsets are 2-6 s apart.

Defaults: 6 events per hour (144 per station-day; each event is written on
every station), class mix LP 35 %, VT 25 %, TC 15 %, TR 10 %, OV 15 %; peak
amplitude at the nearest station = SNR x background RMS with the SNR drawn
log-uniformly in [5, 50]; stations 1-8 km from the source, amplitude decaying
as 1/distance relative to the nearest, moveouts distance / 3 km/s (TC: all
stations within 1 s, it is distant). Events do not overlap (a planted time
closer than 30 s to the end of the previous one is dropped), so a station-day at
the default rate holds about 105-135 events (measured for seeds 0-3 with 3
stations: 134, 130, 124, 107; the exact count is in the catalogue). Deterministic for a seed: each day uses the random stream
``SeedSequence([seed, day])``.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

KINDS: tuple[str, ...] = ("LP", "VT", "TR", "TC", "OV")
DEFAULT_MIX: dict[str, float] = {"LP": 0.35, "VT": 0.25, "TC": 0.15, "TR": 0.10, "OV": 0.15}

_NET = "XX"
_CHA = "HHZ"


# --------------------------------------------------------------------------- shapes
def _bandnoise(n: int, fs: float, fmin: float, fmax: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    nyq = 0.5 * fs
    fmax = min(fmax, 0.9 * nyq)
    sos = butter(4, [fmin / nyq, fmax / nyq], btype="band", output="sos")
    pad = int(2 * fs)
    x = sosfilt(sos, rng.standard_normal(n + pad))[pad:]
    return x / (np.std(x) + 1e-12)


def _lp(fs: float, rng: np.random.Generator) -> np.ndarray:
    dur = rng.uniform(10, 30)
    t = np.arange(int(dur * fs)) / fs
    f0 = rng.uniform(0.6, 4.0)
    rise = rng.uniform(0.5, 1.5)
    tau = rng.uniform(0.15, 0.3) * dur
    env = (1 - np.exp(-t / rise * 3)) * np.exp(-t / tau)
    glide = 1 + rng.uniform(-0.05, 0.05) * t / dur
    ph = 2 * np.pi * f0 * np.cumsum(glide) / fs + rng.uniform(0, 2 * np.pi)
    x = np.sin(ph) + rng.uniform(0.2, 0.5) * np.sin(rng.uniform(1.6, 2.4) * ph + rng.uniform(0, 6))
    x += 0.15 * _bandnoise(len(t), fs, 0.5, 5.0, rng)
    return x * env


def _vt(fs: float, rng: np.random.Generator) -> np.ndarray:
    dur = rng.uniform(8, 20)
    n = int(dur * fs)
    t = np.arange(n) / fs
    sp = rng.uniform(1.0, 3.0)
    carrier_p = _bandnoise(n, fs, 5.0, 20.0, rng)
    carrier_s = _bandnoise(n, fs, 4.0, 15.0, rng)
    tau_p = rng.uniform(0.3, 0.8)
    tau_s = rng.uniform(1.5, 4.0)
    env_p = (1 - np.exp(-t / 0.03)) * np.exp(-t / tau_p)
    ts = np.clip(t - sp, 0, None)
    env_s = np.where(t >= sp, (1 - np.exp(-ts / 0.05)) * np.exp(-ts / tau_s), 0.0)
    return carrier_p * env_p + rng.uniform(2.0, 3.0) * carrier_s * env_s


def _tr(fs: float, rng: np.random.Generator, duration: Optional[float] = None) -> np.ndarray:
    dur = duration if duration is not None else rng.uniform(40, 60)
    n = int(dur * fs)
    t = np.arange(n) / fs
    if rng.random() < 0.6:  # harmonic
        f0 = rng.uniform(1.0, 3.0)
        glide = 1 + 0.05 * np.sin(2 * np.pi * t / rng.uniform(30, 120) + rng.uniform(0, 6))
        ph = 2 * np.pi * f0 * np.cumsum(glide) / fs
        x = np.sin(ph) + 0.5 * np.sin(2 * ph + 1.0) + 0.25 * np.sin(3 * ph + 2.0)
        x += 0.1 * _bandnoise(n, fs, 0.5, 8.0, rng)
    else:  # spasmodic
        x = _bandnoise(n, fs, 1.0, 5.0, rng)
    am = 1 + 0.4 * np.sin(2 * np.pi * t / rng.uniform(5, 20) + rng.uniform(0, 6))
    ramp = min(10.0, dur / 4)
    env = np.clip(t / ramp, 0, 1) * np.clip((dur - t) / ramp, 0, 1)
    return x * am * env


def _tc(fs: float, rng: np.random.Generator) -> np.ndarray:
    sp = rng.uniform(10, 30)
    dur = min(60.0, sp + rng.uniform(20, 30))
    n = int(dur * fs)
    t = np.arange(n) / fs
    cp = _bandnoise(n, fs, 1.0, 5.0, rng)
    cs = _bandnoise(n, fs, 0.5, 3.0, rng)
    env_p = (1 - np.exp(-t / 0.5)) * np.exp(-t / rng.uniform(4, 8))
    ts = np.clip(t - sp, 0, None)
    env_s = np.where(t >= sp, (1 - np.exp(-ts / 0.8)) * np.exp(-ts / rng.uniform(6, 12)), 0.0)
    x = 0.4 * cp * env_p + cs * env_s
    taper = np.clip((dur - t) / 3.0, 0, 1)
    return x * taper


def _ov(fs: float, rng: np.random.Generator) -> np.ndarray:
    a = _lp(fs, rng) if rng.random() < 0.5 else _vt(fs, rng)
    b = _lp(fs, rng) if rng.random() < 0.5 else _vt(fs, rng)
    a /= np.max(np.abs(a)) + 1e-12
    b /= np.max(np.abs(b)) + 1e-12
    shift = int(rng.uniform(2, 6) * fs)
    n = min(int(60 * fs), max(len(a), shift + len(b)))
    out = np.zeros(n)
    out[: min(n, len(a))] += a[:n]
    m = min(n - shift, len(b))
    out[shift: shift + m] += rng.uniform(0.5, 1.2) * b[:m]
    return out


def synthetic_event(kind: str, fs: float = 100.0, rng: Optional[np.random.Generator] = None,
                    duration: Optional[float] = None) -> np.ndarray:
    """One noise-free synthetic event waveform, onset at sample 0, peak |x| = 1.

    Parameters
    ----------
    kind : {"LP", "VT", "TR", "TC", "OV"}
        Event class (see the module docstring for the models).
    fs : float
        Sampling rate in Hz.
    rng : numpy.random.Generator, optional
        Random stream (a fresh default one when omitted).
    duration : float, optional
        Tremor length in seconds (TR only; default 40-60 s).

    Returns
    -------
    numpy.ndarray
        float64 samples, at most 60 s long except TR with a longer ``duration``.

    Raises
    ------
    ValueError
        For an unknown kind or a non-positive rate.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic event kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not fs > 0:
        raise ValueError(f"sampling rate must be positive, got {fs!r}")
    rng = rng if rng is not None else np.random.default_rng()
    if kind == "LP":
        x = _lp(fs, rng)
    elif kind == "VT":
        x = _vt(fs, rng)
    elif kind == "TR":
        x = _tr(fs, rng, duration)
    elif kind == "TC":
        x = _tc(fs, rng)
    else:
        x = _ov(fs, rng)
    return x / (np.max(np.abs(x)) + 1e-12)


def synthetic_events(n_per_class: int, fs: float = 100.0, seed: int = 0,
                     kinds: Sequence[str] = KINDS, snr: tuple[float, float] = (5.0, 50.0),
                     pre: tuple[float, float] = (2.0, 5.0), max_len: float = 60.0):
    """Labelled single-event traces (event plus background noise) for training and tests.

    Parameters
    ----------
    n_per_class : int
        Events per class.
    fs : float
        Sampling rate in Hz.
    seed : int
        Random seed (same seed, same events).
    kinds : sequence of str
        Classes to generate (subset of ``KINDS``).
    snr : (float, float)
        Range of peak amplitude / noise RMS (drawn log-uniformly).
    pre : (float, float)
        Range of the noise lead before the onset, in seconds.
    max_len : float
        Longest trace in seconds (6000 samples at 100 Hz by default).

    Returns
    -------
    list of engine.events.Event
        ``n_per_class * len(kinds)`` events, ids ``synth-<KIND>-<i>``,
        labels the class names, float32 data.
    """
    from engine.events import Event

    if int(n_per_class) < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class!r}")
    events = []
    nmax = int(max_len * fs)
    for ki, kind in enumerate(kinds):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1000 + ki]))
        for i in range(int(n_per_class)):
            x = synthetic_event(kind, fs, rng)
            lead = int(rng.uniform(*pre) * fs)
            n = min(nmax, lead + len(x) + int(rng.uniform(1, 5) * fs))
            amp = float(np.exp(rng.uniform(np.log(snr[0]), np.log(snr[1]))))
            trace = _background(n, fs, rng)
            m = min(len(x), n - lead)
            trace[lead: lead + m] += amp * x[:m]
            events.append(Event(id=f"synth-{kind}-{i:05d}", station=f"{_NET}.SYN", channel=_CHA,
                                start="", fs=float(fs), data=trace.astype(np.float32),
                                label=kind, source="engine.synth"))
    return events


# --------------------------------------------------------------------------- noise
def _background(n: int, fs: float, rng: np.random.Generator, warm: float = 60.0) -> np.ndarray:
    """Unit-RMS coloured noise: white + 0.2 Hz microseism peak + red (1/f-like)."""
    from scipy.signal import lfilter

    nw = int(warm * fs)
    w = rng.standard_normal(n + nw)
    # two-pole resonator at 0.2 Hz, Q = 4
    f0, q = 0.2, 4.0
    r = np.exp(-np.pi * f0 / q / fs)
    th = 2 * np.pi * f0 / fs
    micro = lfilter([1.0], [1.0, -2 * r * np.cos(th), r * r], rng.standard_normal(n + nw))
    # one-pole low-pass at 0.05 Hz (red)
    a = np.exp(-2 * np.pi * 0.05 / fs)
    red = lfilter([1.0], [1.0, -a], rng.standard_normal(n + nw))
    micro = micro[nw:]
    red = red[nw:]
    x = w[nw:] + 3.0 * micro / (micro.std() + 1e-12) + 1.0 * red / (red.std() + 1e-12)
    return x / x.std()


# --------------------------------------------------------------------------- archive
def _station_geometry(n_stations: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    return rng.uniform(-6.0, 6.0, size=(n_stations, 2))  # km around the vent


def _plan_day(day: int, day_len: float, seed: int, rate: float, mix: dict[str, float],
              snr: tuple[float, float], geometry: np.ndarray, fs: float) -> list[dict]:
    """Event list of one day: time (s of day), kind, waveform, per-station delay and gain."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(day)]))
    n = rng.poisson(rate * day_len / 3600.0)
    times = np.sort(rng.uniform(5.0, max(5.0, day_len - 330.0), size=n))
    kinds = list(mix)
    p = np.array([mix[k] for k in kinds], dtype=float)
    p /= p.sum()
    plan: list[dict] = []
    busy = -np.inf
    for t0 in times:
        kind = kinds[rng.choice(len(kinds), p=p)]
        dur_tr = rng.uniform(120, 300) if kind == "TR" else None
        wave = synthetic_event(kind, fs, rng, duration=dur_tr)
        snr_v = float(np.exp(rng.uniform(np.log(snr[0]), np.log(snr[1]))))
        src = rng.uniform(-1.5, 1.5, size=2)
        depth = rng.uniform(1.0, 4.0)
        dist = np.sqrt(((geometry - src) ** 2).sum(1) + depth ** 2)
        if kind == "TC":
            delays = rng.uniform(0.0, 1.0, size=len(dist))
            gains = rng.uniform(0.8, 1.0, size=len(dist))
        else:
            delays = (dist - dist.min()) / 3.0
            gains = dist.min() / dist
        end = t0 + delays.max() + len(wave) / fs
        if t0 < busy + 30.0:
            continue
        busy = end
        plan.append(dict(t0=float(t0), kind=kind, wave=wave, amp=snr_v, delays=delays, gains=gains))
    return plan


def write_archive(out: str | os.PathLike, days: float = 1.0, stations: int = 3, seed: int = 0,
                  rate: float = 6.0, start: str = "2020-01-01", fs: float = 100.0,
                  snr: tuple[float, float] = (5.0, 50.0), mix: Optional[dict[str, float]] = None,
                  noise_counts: float = 500.0, encoding: str = "STEIM2") -> Path:
    """Write a synthetic SDS archive with planted events and its catalogue.

    Parameters
    ----------
    out : path
        Output folder (created; existing files of the same names are replaced).
    days : float
        Length in days; a fractional value writes a shorter last (or only) day,
        which keeps tests small (e.g. ``days=0.05`` is 72 minutes).
    stations : int
        Number of stations (``XX.SYN01`` ...).
    seed : int
        Random seed: the same seed writes the same samples and catalogue.
    rate : float
        Mean number of planted events per hour (Poisson).
    start : str
        First day (UTC date or time, anything ObsPy's ``UTCDateTime`` reads);
        midnight is used.
    fs : float
        Sampling rate in Hz.
    snr : (float, float)
        Range of peak amplitude / background RMS at the nearest station.
    mix : dict, optional
        Class probabilities (default :data:`DEFAULT_MIX`).
    noise_counts : float
        Background RMS in counts.
    encoding : {"STEIM2", "INT32", "FLOAT32"}
        miniSEED encoding (int32 data for Steim-2 and INT32).

    Returns
    -------
    pathlib.Path
        The archive root; ``root / "catalog.csv"`` is the catalogue.

    Raises
    ------
    ValueError
        For non-positive ``days``, ``stations``, ``rate`` < 0 or ``fs``.
    """
    from obspy import Stream, Trace, UTCDateTime

    if not days > 0:
        raise ValueError(f"days must be positive, got {days!r}")
    if int(stations) < 1 or int(stations) > 99:
        raise ValueError(f"stations must be 1..99, got {stations!r}")
    if rate < 0:
        raise ValueError(f"rate must be >= 0 events per hour, got {rate!r}")
    if not fs > 0:
        raise ValueError(f"fs must be positive, got {fs!r}")
    encoding = encoding.upper()
    if encoding not in ("STEIM2", "INT32", "FLOAT32"):
        raise ValueError(f"encoding must be STEIM2, INT32 or FLOAT32, got {encoding!r}")
    mix = dict(mix or DEFAULT_MIX)
    bad = set(mix) - set(KINDS)
    if bad:
        raise ValueError(f"unknown event kinds in mix: {sorted(bad)}")
    try:
        t_start = UTCDateTime(start)
    except Exception as exc:
        raise ValueError(f"start {start!r} is not a date: {exc}") from None
    t_start = UTCDateTime(t_start.year, t_start.month, t_start.day)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    geometry = _station_geometry(int(stations), seed)
    names = [f"SYN{i + 1:02d}" for i in range(int(stations))]
    rows: list[tuple[str, str, str, str]] = []
    n_days = int(np.ceil(days))
    for day in range(n_days):
        day_len = 86400.0 * min(1.0, days - day)
        t_day = t_start + 86400 * day
        plan = _plan_day(day, day_len, seed, rate, mix, snr, geometry, fs)
        npts = int(round(day_len * fs))
        for si, sta in enumerate(names):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(day), 100 + si]))
            x = _background(npts, fs, rng)
            for ev in plan:
                onset = ev["t0"] + ev["delays"][si]
                i0 = int(round(onset * fs))
                w = ev["wave"] * (ev["amp"] * ev["gains"][si])
                m = min(len(w), npts - i0)
                if m <= 0:
                    continue
                x[i0: i0 + m] += w[:m]
                rows.append((str(t_day + i0 / fs), ev["kind"], f"{_NET}.{sta}",
                             f"{len(w) / fs:.2f}"))
            x *= noise_counts
            if encoding == "FLOAT32":
                data = x.astype(np.float32)
            else:
                data = np.clip(np.round(x), -2 ** 31 + 1, 2 ** 31 - 1).astype(np.int32)
            tr = Trace(data=data)
            tr.stats.network, tr.stats.station, tr.stats.location, tr.stats.channel = _NET, sta, "", _CHA
            tr.stats.sampling_rate = fs
            tr.stats.starttime = t_day
            d = root / str(t_day.year) / _NET / sta / f"{_CHA}.D"
            d.mkdir(parents=True, exist_ok=True)
            fname = d / f"{_NET}.{sta}..{_CHA}.D.{t_day.year}.{t_day.julday:03d}"
            tmp = fname.with_name(fname.name + ".tmp")
            Stream([tr]).write(str(tmp), format="MSEED", encoding=encoding, reclen=4096)
            os.replace(tmp, fname)
    rows.sort(key=lambda r: (r[0], r[2]))
    cat = root / "catalog.csv"
    tmp = cat.with_name("catalog.csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "type", "station", "duration"])
        w.writerows(rows)
    os.replace(tmp, cat)
    return root


IMAGE_STYLES = ("window", "cut", "mixed")


def cut_like_event_sets(x: np.ndarray, fs: float) -> np.ndarray:
    """A synthetic event trace made to look like a published event set (Llaima).

    Published event sets are band-passed 1-10 Hz and cut at the end of the event,
    then padded with a constant (docs/method.md, Stage 0). Here: a zero-phase
    4-pole Butterworth 1-10 Hz band-pass; the trace ends where the 0.5 s moving
    average of the absolute amplitude last exceeds 3 times its median over the
    first 1.5 s (kept at least 2 s); 20 constant samples mark the end.

    Parameters
    ----------
    x : ndarray
        One event trace with noise before the onset (``synthetic_events``).
    fs : float
        Sampling rate in Hz (above 20 Hz).

    Returns
    -------
    ndarray of float32
    """
    from scipy.signal import butter, sosfiltfilt

    y = sosfiltfilt(butter(4, [1.0, 10.0], btype="band", fs=fs, output="sos"),
                    np.asarray(x, dtype=np.float64))
    k = max(1, int(0.5 * fs))
    smooth = np.convolve(np.abs(y), np.ones(k) / k, mode="same")
    noise = np.median(smooth[: int(1.5 * fs)])
    above = np.flatnonzero(smooth > 3 * noise)
    end = int(above[-1]) + 1 if above.size else y.size
    y = y[: max(end, int(2 * fs))]
    return np.r_[y, np.full(20, y[-1])].astype(np.float32)


def write_event_images(out_dir: str | os.PathLike, per_class: int, fs: float = 100.0,
                       seed: int = 0, kinds: Sequence[str] = KINDS, batch: int = 64,
                       style: str = "mixed") -> int:
    """Write labelled 227x227 PNG images of synthetic events, one folder per class.

    Uses ``engine.images.event_images(traces, fs)`` and
    ``engine.images.write_images(images, names, labels, out_dir)``.

    Parameters
    ----------
    out_dir : path
        Output folder (``out_dir/<KIND>/<id>.png``).
    per_class : int
        Images per class.
    fs : float
        Sampling rate of the synthetic traces.
    seed : int
        Random seed.
    kinds : sequence of str
        Classes.
    batch : int
        Events converted per call.
    style : {"window", "cut", "mixed"}
        ``"window"``: the event with noise around it, as detection cuts it from
        an archive; ``"cut"``: band-passed and cut at the event end like the
        published event sets (:func:`cut_like_event_sets`); ``"mixed"``
        (default): even-numbered events of each class as windows, odd ones cut,
        so that a network trained on them serves both kinds of input.

    Returns
    -------
    int
        Number of images written.
    """
    from engine.images import event_images, write_images

    if style not in IMAGE_STYLES:
        raise ValueError(f"style must be one of {IMAGE_STYLES}, got {style!r}")
    events = synthetic_events(per_class, fs=fs, seed=seed, kinds=kinds)
    traces = []
    for i, e in enumerate(events):
        j = int(e.id.rsplit("-", 1)[1])  # index within its class
        cut = style == "cut" or (style == "mixed" and j % 2 == 1)
        traces.append(cut_like_event_sets(e.data, fs) if cut else e.data)
    n = 0
    for i in range(0, len(events), batch):
        part = events[i: i + batch]
        imgs = event_images(traces[i: i + batch], fs=fs, show_progress=False)
        write_images(imgs, [e.id for e in part], [e.label for e in part], out_dir)
        n += len(part)
    return n


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point (``python -m engine.synth`` / ``microquake-synth``)."""
    p = argparse.ArgumentParser(prog="microquake-synth", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=None, help="output folder of the SDS archive")
    p.add_argument("--days", type=float, default=1.0,
                   help="archive length in days (fractions allowed; 0 with --event-images: images only)")
    p.add_argument("--stations", type=int, default=3, help="number of stations")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--rate", type=float, default=6.0, help="planted events per hour")
    p.add_argument("--start", default="2020-01-01", help="first day (UTC)")
    p.add_argument("--fs", type=float, default=100.0, help="sampling rate in Hz")
    p.add_argument("--snr-min", type=float, default=5.0, help="smallest peak/noise-RMS ratio")
    p.add_argument("--snr-max", type=float, default=50.0, help="largest peak/noise-RMS ratio")
    p.add_argument("--event-images", metavar="DIR", default=None,
                   help="also write labelled PNG images of synthetic events to DIR/<class>/")
    p.add_argument("--per-class", type=int, default=100, help="images per class for --event-images")
    p.add_argument("--image-style", choices=IMAGE_STYLES, default="mixed",
                   help="--event-images: events as detection windows, cut like published "
                        "event sets (band-passed 1-10 Hz, cut at the event end), or both")
    args = p.parse_args(argv)
    if args.event_images and args.days == 0:
        args.out = None
    elif args.out is None:
        p.error("--out is required (or --days 0 with --event-images for images only)")
    try:
        if args.out is None:
            n = write_event_images(args.event_images, args.per_class, fs=args.fs, seed=args.seed,
                                   style=args.image_style)
            print(f"wrote {n} event images to {args.event_images}")
            return 0
        t = time.perf_counter()
        root = write_archive(args.out, days=args.days, stations=args.stations, seed=args.seed,
                             rate=args.rate, start=args.start, fs=args.fs,
                             snr=(args.snr_min, args.snr_max))
        with open(root / "catalog.csv") as fh:
            n_rows = sum(1 for _ in fh) - 1
        print(f"wrote {root} ({args.stations} stations x {args.days} days, {n_rows} catalogue rows) "
              f"in {time.perf_counter() - t:.1f} s")
        if args.event_images:
            n = write_event_images(args.event_images, args.per_class, fs=args.fs, seed=args.seed,
                                   style=args.image_style)
            print(f"wrote {n} event images to {args.event_images}")
    except ValueError as exc:
        print(f"microquake-synth: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
