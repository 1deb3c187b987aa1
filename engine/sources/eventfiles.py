"""Event sets stored as files: HDF5, NumPy and folders of waveform files.

HDF5 (``.h5``, ``.hdf5``, MATLAB v7.3 ``.mat``)
    Every numeric dataset of every file is an event set labelled by its name
    (the Llaima layout: one file per class with one dataset ``/LP``, ``/VT``...).
    Axis rule: the sample axis is the axis whose length equals ``n_samples``
    when that hint is given (or the dataset carries an ``n_samples``
    attribute), the event axis the other axis longer than 1. Without a hint:
    for a 3-D array with a singleton axis the sample axis is the middle one
    (MATLAB's ``1 x S x N``, which h5py shows reversed as ``N x S x 1``, or as
    written, ``1 x S x N``), and the event axis is the other non-singleton
    axis; a 2-D array is ``N x S`` (rows are events: MATLAB's ``S x N`` also
    appears so in h5py); a 1-D dataset (or one with a single non-singleton
    axis) is one event. Pass ``n_samples`` for anything else (e.g. a
    ``S x N`` array written by NumPy). ``fs`` is the dataset's ``fs``/``sampling_rate`` attribute when
    present, else the ``fs`` parameter (default 100 Hz).
NumPy (``.npy``, ``.npz``)
    ``n_events x n_samples`` arrays (1-D: one event); an ``.npz`` member's name
    is its label. With ``mask_labels`` the arrays are *labelled windows*
    (``channels x samples``; the last ``len(mask_labels)`` rows are per-sample
    0/1 masks, e.g. the OVDAS windows: 8 station rows then masks
    BG, VT, LP, TR, AV, IC): every contiguous run of a non-background mask
    becomes one event per non-zero station row, cut ``pre`` seconds before the
    run to ``post`` after it, capped at ``max_window``, labelled by the mask.
Waveform folders
    Files ObsPy reads (miniSEED, SAC, SEISAN, GSE2...): one event per trace
    that matches the channel selection; the label is the name of the first
    sub-folder below the root when the file is in one.

Every source takes ``target_fs`` and resamples (anti-aliased) to it. A file
that cannot be read is skipped with a warning and counted in the summary of
its chunk; a path that does not exist, a folder without any usable file, or a
selection that matches nothing raises an error naming what was looked for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from engine.events import Event
from engine.sources._common import (NON_WAVEFORM_SUFFIXES, check_path, label_from_folder,
                                    matches, read_obspy, resample, short_reason, walk_files)
from engine.sources.base import ChunkResult, EventSource, SourceSummary

H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".mat")
_KIND_NAMES = {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers",
               "M": "dates", "m": "time spans", "V": "records"}
NPY_SUFFIXES = (".npy", ".npz")


def _files(path: Path, suffixes: Sequence[str]) -> list[Path]:
    if path.is_file():
        return [path]
    return [f for f in walk_files(path) if f.suffix.lower() in suffixes]


def sample_axis(shape: tuple[int, ...], n_samples: Optional[int] = None) -> tuple[int, int]:
    """Event axis and sample axis of a stored event array (see module docstring).

    Parameters
    ----------
    shape : tuple of int
        Shape as stored (h5py / NumPy order).
    n_samples : int, optional
        Known trace length; the axis of that length is the sample axis.

    Returns
    -------
    (int or None, int)
        Event axis (None for a single event) and sample axis, as indices into
        ``shape``.

    Raises
    ------
    ValueError
        If the shape cannot hold events (no non-singleton axis, more than two
        non-singleton axes, or no axis of length ``n_samples``).
    """
    if len(shape) == 0:
        raise ValueError("scalar dataset is not an event set")
    big = [i for i, n in enumerate(shape) if n != 1]
    if len(big) > 2:
        raise ValueError(f"shape {shape} has more than two non-singleton axes "
                         "(expected events x samples, possibly with singleton axes)")
    if n_samples is not None:
        cand = [i for i, n in enumerate(shape) if n == int(n_samples)]
        if not cand:
            raise ValueError(f"no axis of length n_samples={n_samples} in shape {shape}")
        s_ax = cand[-1]
        others = [i for i in big if i != s_ax]
        return (others[0] if others else None), s_ax
    if not big:
        return None, len(shape) - 1
    if len(big) == 1:
        return None, big[0]
    if len(shape) == 3 and 1 in big:
        # MATLAB 1 x S x N, seen as N x S x 1 (reversed, h5py) or 1 x S x N
        return (big[0] if big[0] != 1 else big[1]), 1
    return big[0], big[1]


class _BlockSource(EventSource):
    """Common code of sources whose chunks are blocks of events in files."""

    block: int = 512

    def _first_chunk_of_file(self, keys: Sequence[str], key: str, fname: str) -> bool:
        """Whether ``key`` is the first chunk of file ``fname`` (which counts it as read)."""
        firsts = self.__dict__.get("_firsts")
        if firsts is None:
            firsts = {}
            for k in keys:
                loc = k.rsplit("|", 1)[0]
                f = loc.rsplit(":/", 1)[0] if ":/" in loc else loc.rsplit(":", 1)[0]
                firsts.setdefault(f, k)
            self.__dict__["_firsts"] = firsts
        return firsts.get(fname) == key

    def _event(self, ident: str, data: np.ndarray, fs: float, label, source: str,
               station: str = "", channel: str = "", start: str = "") -> Event:
        x = np.asarray(data, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            x = np.nan_to_num(x)
        y = resample(x, fs, float(self.target_fs))
        return Event(id=ident, station=station, channel=channel, start=start,
                     fs=float(self.target_fs), data=y, label=label, source=source)


class HDF5EventSource(_BlockSource):
    """Event sets in HDF5 files (Llaima layout and any file with numeric datasets).

    Parameters
    ----------
    path : path
        An HDF5 file or a folder of them (searched recursively).
    fs : float
        Sampling rate of the stored traces when the dataset has no ``fs``
        attribute (default 100 Hz).
    target_fs : float
        Rate of the emitted events (default 100 Hz).
    n_samples : int, optional
        Trace length hint that names the sample axis.
    datasets : str, optional
        Wildcard(s) on dataset names (default all).
    block : int
        Events per chunk (default 512).
    """

    kind = "h5"

    def __init__(self, path, *, fs: float = 100.0, target_fs: float = 100.0,
                 n_samples: Optional[int] = None, datasets: Optional[str] = None,
                 block: int = 512):
        self.path = path
        self.fs = fs
        self.target_fs = target_fs
        self.n_samples = n_samples
        self.datasets = datasets
        self.block = block
        self._plan: Optional[tuple[list[str], list[tuple[str, str]]]] = None

    def _scan(self):
        import h5py

        if self._plan is not None:
            return self._plan
        root = check_path(self.path, "event file or folder")
        files = _files(root, H5_SUFFIXES)
        if not files:
            raise ValueError(f"no HDF5 files ({', '.join(H5_SUFFIXES)}) in {root}")
        keys: list[str] = []
        skipped: list[tuple[str, str]] = []
        for f in files:
            try:
                with h5py.File(f, "r") as h:
                    found = []

                    def visit(name, obj):
                        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiu" \
                                and obj.ndim >= 1 and matches(name.split("/")[-1], self.datasets or "*"):
                            found.append((name, obj.shape, obj.attrs.get("n_samples")))

                    h.visititems(visit)
            except OSError as exc:
                if root.is_file():
                    raise ValueError(f"{f} is not a readable HDF5 file ({exc})") from None
                skipped.append((str(f), f"not a readable HDF5 file ({exc})"))
                continue
            if not found:
                msg = ("no numeric dataset" + (f" matching {self.datasets!r}" if self.datasets else "")
                       + " (expected e.g. /LP with shape N x 6000 x 1)")
                if root.is_file():
                    raise ValueError(f"{f}: {msg}")
                skipped.append((str(f), msg))
                continue
            for name, shape, hint in found:
                try:
                    ev_ax, s_ax = sample_axis(shape, self.n_samples or (int(hint) if hint is not None else None))
                except ValueError as exc:
                    skipped.append((f"{f}:/{name}", str(exc)))
                    continue
                n = 1 if ev_ax is None else shape[ev_ax]
                self._n_events = getattr(self, "_n_events", 0) + n
                for b in range(0, n, int(self.block)):
                    keys.append(f"{f}:/{name}|{b}")
        if not keys:
            raise ValueError(f"no usable event dataset in {root}: "
                             + "; ".join(f"{p}: {r}" for p, r in skipped))
        self._plan = (keys, skipped)
        return self._plan

    def chunks(self) -> list[str]:
        """Keys ``FILE:/DATASET|first_event_index``."""
        return list(self._scan()[0])

    def size_hint(self) -> Optional[int]:
        """Number of events in the usable datasets."""
        self._scan()
        return getattr(self, "_n_events", None)

    def read_chunk(self, key: str) -> ChunkResult:
        """Read one block of events of one dataset."""
        import h5py

        keys, skipped = self._scan()
        if key not in keys:
            raise ValueError(f"chunk key {key!r} is not a chunk of {self.path}")
        summary = SourceSummary()
        if key == keys[0]:
            for p, r in skipped:
                self._skip(summary, p, r)
        loc, b = key.rsplit("|", 1)
        fname, name = loc.rsplit(":/", 1)
        b = int(b)
        try:
            with h5py.File(fname, "r") as h:
                ds = h[name]
                hint = ds.attrs.get("n_samples")
                fs = float(ds.attrs.get("fs", ds.attrs.get("sampling_rate", self.fs)))
                ev_ax, s_ax = sample_axis(ds.shape, self.n_samples or (int(hint) if hint is not None else None))
                if ev_ax is None:
                    arr = np.asarray(ds[()]).reshape(1, -1)
                else:
                    sl = [slice(None)] * ds.ndim
                    sl[ev_ax] = slice(b, b + int(self.block))
                    part = np.moveaxis(ds[tuple(sl)], (ev_ax, s_ax), (0, 1))
                    arr = part.reshape(part.shape[0], part.shape[1])
        except (OSError, KeyError, ValueError) as exc:
            self._skip(summary, f"{fname}:/{name}", f"cannot read dataset /{name}: "
                       + short_reason(exc))
            return ChunkResult(key, [], summary)
        summary.files_read += int(self._first_chunk_of_file(keys, key, fname))
        label = name.split("/")[-1]
        stem = Path(fname).stem
        events = [self._event(f"{stem}/{name}/{b + i}", arr[i], fs, label, fname)
                  for i in range(arr.shape[0])]
        summary.events = len(events)
        summary.samples = int(arr.size)
        return ChunkResult(key, events, summary)


class NumpyEventSource(_BlockSource):
    """Events in ``.npy``/``.npz`` arrays, or labelled windows with mask rows.

    Parameters
    ----------
    path : path
        A file or a folder of them (recursive). In a folder, a file inside a
        sub-folder gets the sub-folder name as label (``.npz`` member names
        take precedence).
    fs : float
        Sampling rate of the stored traces (default 100 Hz).
    target_fs : float
        Rate of the emitted events (default 100 Hz).
    mask_labels : sequence of str, optional
        Labelled-window mode: names of the mask rows at the end of each
        ``channels x samples`` array (e.g. ``("BG", "VT", "LP", "TR", "AV", "IC")``).
    background : str
        Mask label that is not an event (default ``"BG"``).
    pre, post, max_window, min_duration : float
        Window around each mask run in labelled-window mode (seconds).
    block : int
        Events per chunk in plain mode.
    """

    kind = "npy"

    def __init__(self, path, *, fs: float = 100.0, target_fs: float = 100.0,
                 mask_labels: Optional[Sequence[str]] = None, background: str = "BG",
                 pre: float = 5.0, post: float = 5.0, max_window: float = 60.0,
                 min_duration: float = 0.5, block: int = 512):
        self.path = path
        self.fs = fs
        self.target_fs = target_fs
        self.mask_labels = mask_labels
        self.background = background
        self.pre = pre
        self.post = post
        self.max_window = max_window
        self.min_duration = min_duration
        self.block = block
        self._plan = None

    def _masks(self) -> Optional[list[str]]:
        if self.mask_labels is None:
            return None
        if isinstance(self.mask_labels, str):
            return [s.strip() for s in self.mask_labels.split(",") if s.strip()]
        return list(self.mask_labels)

    def _scan(self):
        if self._plan is not None:
            return self._plan
        root = check_path(self.path, "event file or folder")
        files = _files(root, NPY_SUFFIXES)
        if not files:
            raise ValueError(f"no NumPy files (.npy, .npz) in {root}")
        masks = self._masks()
        keys, skipped = [], []
        for f in files:
            try:
                if f.suffix.lower() == ".npz":
                    with np.load(f) as z:
                        members = [(k, z[k].shape, z[k].dtype) for k in z.files]
                else:
                    a = np.load(f, mmap_mode="r")
                    members = [("", a.shape, a.dtype)]
            except Exception as exc:
                msg = short_reason(exc, "not a readable NumPy file")
                if root.is_file():
                    raise ValueError(f"{f} is {msg}") from None
                skipped.append((str(f), msg))
                continue
            for m, shape, dtype in members:
                if dtype.kind not in "biuf":
                    where = str(f) + (f":{m}" if m else "")
                    msg = (f"holds {dtype} values ({_KIND_NAMES.get(dtype.kind, 'not numbers')}), "
                           "expected numeric samples (n_events x n_samples)")
                    if root.is_file():
                        raise ValueError(f"{where}: {msg}")
                    skipped.append((where, msg))
                    continue
                if masks is not None:
                    if len(shape) != 2 or shape[0] <= len(masks):
                        msg = (f"labelled window must be 2-D with more than {len(masks)} rows "
                               f"({len(masks)} mask rows), got shape {shape}")
                        if root.is_file():
                            raise ValueError(f"{f}: {msg}")
                        skipped.append((str(f), msg))
                        continue
                    keys.append(f"{f}:{m}|0")
                    continue
                if len(shape) == 0 or len(shape) > 2:
                    msg = f"expected n_events x n_samples, got shape {shape}"
                    if root.is_file():
                        raise ValueError(f"{f}: {msg}")
                    skipped.append((str(f) + (f":{m}" if m else ""), msg))
                    continue
                n = 1 if len(shape) == 1 else shape[0]
                self._n_events = getattr(self, "_n_events", 0) + n
                for b in range(0, n, int(self.block)):
                    keys.append(f"{f}:{m}|{b}")
        if not keys:
            raise ValueError(f"no usable event arrays in {root}: "
                             + "; ".join(f"{p}: {r}" for p, r in skipped))
        self._plan = (keys, skipped, root)
        return self._plan

    def chunks(self) -> list[str]:
        """Keys ``FILE:MEMBER|first_event_index`` (MEMBER empty for .npy)."""
        return list(self._scan()[0])

    def size_hint(self) -> Optional[int]:
        """Number of events (None for labelled windows: found while reading)."""
        self._scan()
        return None if self._masks() is not None else getattr(self, "_n_events", None)

    def _load(self, fname: str, member: str) -> np.ndarray:
        if member:
            with np.load(fname) as z:
                return z[member]
        return np.load(fname, mmap_mode="r")

    def read_chunk(self, key: str) -> ChunkResult:
        """Read one block of events (or all mask events of one window)."""
        keys, skipped, root = self._scan()
        if key not in keys:
            raise ValueError(f"chunk key {key!r} is not a chunk of {self.path}")
        summary = SourceSummary()
        if key == keys[0]:
            for p, r in skipped:
                self._skip(summary, p, r)
        loc, b = key.rsplit("|", 1)
        fname, member = loc.rsplit(":", 1)
        b = int(b)
        try:
            arr = self._load(fname, member)
        except Exception as exc:
            self._skip(summary, fname, short_reason(exc, "not a readable NumPy file"))
            return ChunkResult(key, [], summary)
        summary.files_read += int(self._first_chunk_of_file(keys, key, fname))
        stem = Path(fname).stem + (f":{member}" if member else "")
        masks = self._masks()
        if masks is not None:
            events = self._mask_events(np.asarray(arr), masks, stem, fname)
        else:
            a = np.asarray(arr[b: b + int(self.block)] if arr.ndim == 2 else arr[None, :])
            label = member or label_from_folder(Path(fname), root)
            events = [self._event(f"{stem}/{b + i}", a[i], float(self.fs), label, fname)
                      for i in range(a.shape[0])]
            summary.samples = int(a.size)
        summary.events = len(events)
        return ChunkResult(key, events, summary)

    def _mask_events(self, arr: np.ndarray, masks: list[str], stem: str, fname: str) -> list[Event]:
        nm = len(masks)
        data, mrows = arr[:-nm], arr[-nm:] > 0.5
        fs = float(self.fs)
        n = arr.shape[1]
        events = []
        for k, lab in enumerate(masks):
            if lab == self.background:
                continue
            m = mrows[k]
            edges = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
            for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                if (e - s) < self.min_duration * fs:
                    continue
                i0 = max(0, int(s - self.pre * fs))
                i1 = min(n, int(e + self.post * fs), i0 + int(self.max_window * fs))
                for row in range(data.shape[0]):
                    if not np.any(data[row]):
                        continue
                    events.append(self._event(f"{stem}/{lab}/{s}/ch{row}/{i0}", data[row, i0:i1],
                                              fs, lab, fname, station=f"ch{row}"))
        return events


class WaveformEventSource(EventSource):
    """One event per trace of the waveform files (miniSEED, SAC, SEISAN...) in a folder.

    Parameters
    ----------
    path : path
        A waveform file or a folder of them (recursive); the first sub-folder
        name below the root is the label.
    network, station, location, channel : str
        Wildcard selection of the traces (default all, vertical channels ``*Z``).
    target_fs : float
        Rate of the emitted events (default 100 Hz).
    max_window : float, optional
        Keep at most this many seconds from each trace start (default: all).
    """

    kind = "waveforms"

    def __init__(self, path, *, network: str = "*", station: str = "*", location: str = "*",
                 channel: str = "*Z", target_fs: float = 100.0, max_window: Optional[float] = None):
        self.path = path
        self.network = network
        self.station = station
        self.location = location
        self.channel = channel
        self.target_fs = target_fs
        self.max_window = max_window
        self._plan = None

    def _scan(self):
        if self._plan is not None:
            return self._plan
        root = check_path(self.path, "event file or folder")
        files = [root] if root.is_file() else [
            f for f in walk_files(root) if f.suffix.lower() not in NON_WAVEFORM_SUFFIXES]
        if not files:
            raise ValueError(f"no waveform files in {root}")
        base = root.parent if root.is_file() else root
        keys, skipped, seen = [], [], set()
        for f in files:
            try:
                st = read_obspy(f, headonly=True)
            except Exception as exc:  # ObsPy raises many types for bad files
                msg = short_reason(exc, "not readable by ObsPy")
                if root.is_file():
                    raise ValueError(f"{f} is {msg}") from None
                skipped.append((str(f), msg))
                continue
            ids = {tr.id for tr in st}
            seen |= ids
            if any(self._match(tr.stats) for tr in st):
                keys.append(str(f.relative_to(base)))
        if not keys:
            what = (f"network={self.network!r} station={self.station!r} "
                    f"location={self.location!r} channel={self.channel!r}")
            if not seen:
                raise ValueError(f"no readable waveform files in {root}: "
                                 + "; ".join(f"{p}: {r}" for p, r in skipped[:5]))
            raise ValueError(f"no trace in {root} matches {what}; found: "
                             + ", ".join(sorted(seen)[:20]) + (" ..." if len(seen) > 20 else ""))
        self._plan = (sorted(keys), base, skipped)
        return self._plan

    def _match(self, s) -> bool:
        return (matches(s.network, self.network) and matches(s.station, self.station)
                and matches(s.location, self.location) and matches(s.channel, self.channel))

    def chunks(self) -> list[str]:
        """One key per file holding a selected trace: its path relative to the root."""
        return list(self._scan()[0])

    def read_chunk(self, key: str) -> ChunkResult:
        """Read the selected traces of one file as events."""
        keys, base, skipped = self._scan()
        if key not in keys:
            raise ValueError(f"chunk key {key!r} is not a file of {self.path}")
        summary = SourceSummary()
        if key == keys[0]:
            for p, r in skipped:
                self._skip(summary, p, r)
        path = base / key
        try:
            st = read_obspy(path)
        except Exception as exc:  # garbled data records: one line, not one per frame
            self._skip(summary, path, short_reason(exc, "not readable by ObsPy"))
            return ChunkResult(key, [], summary)
        summary.files_read += 1
        label = label_from_folder(path, base) if Path(self.path).is_dir() else None
        events = []
        for i, tr in enumerate(st):
            s = tr.stats
            if not self._match(s):
                continue
            x = np.asarray(tr.data, dtype=np.float64)
            if self.max_window is not None:
                x = x[: int(self.max_window * s.sampling_rate)]
            summary.samples += len(x)
            y = resample(x, float(s.sampling_rate), float(self.target_fs))
            sta = f"{s.network}.{s.station}" if s.network else s.station
            events.append(Event(id=f"{key}|{tr.id}|{i}", station=sta, channel=s.channel,
                                start=str(s.starttime), fs=float(self.target_fs), data=y,
                                label=label, source=str(path)))
        summary.events = len(events)
        return ChunkResult(key, events, summary)
