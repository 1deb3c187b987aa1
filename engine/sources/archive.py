"""Continuous archives (SDS trees and plain folders of miniSEED/SAC) -> event windows.

Layouts
-------
- ``sds``: SeisComP Data Structure, ``ROOT/YEAR/NET/STA/CHAN.D/NET.STA.LOC.CHAN.D.YEAR.DOY``.
  Files are found by name; only the first and last record of each day file
  are read to plan the run (partial days give no empty chunks).
- ``folder``: any folder (searched recursively) of files ObsPy reads (miniSEED,
  SAC, GSE2, SEISAN, ...). Every file's header is read once
  (``obspy.read(headonly=True)``) to index its channels and time span; files
  that ObsPy cannot read are skipped with a warning and counted in the summary
  of the first chunk. A file whose headers read but whose data do not (garbled
  Steim frames) fails in every chunk that reads it: each records it under the
  file's path with a one-line reason (merge per file with
  :func:`engine.sources.base.unique_skipped`), and one warning is logged per
  file; ObsPy's per-frame messages are not shown. ``files_read`` counts each
  file once, in the first chunk that opens it (not once per chunk). Files
  with obviously non-waveform suffixes (``.csv``, ``.xml``, ``.trs``,
  ``.png``, ...) are ignored without a warning.
- ``auto`` (default): ``sds`` when ROOT holds four-digit year folders with SDS
  file names, else ``folder``.

Chunks
------
Time is cut into chunks of ``chunk_length`` seconds aligned on multiples of it
since 1970-01-01 (so keys do not depend on the selection), one chunk per
stream and period with data: key ``"NET.STA.LOC.CHA|2017-01-01T00:00:00"``. With
coincidence (``min_stations > 1``) one chunk holds every selected stream of the
period: key ``"ALL|2017-01-01T00:00:00"``. A chunk reads its period plus a
lead-in (``3 * lta + pre + 5`` s, so that the filter and the LTA are in the same
state as in one continuous pass) and an overlap after it (the longest event
window), so memory is bounded by ``chunk_length`` whatever the archive length.
An event belongs to the chunk in which its onset lies (ownership interval
``[start, start + chunk_length)`` clipped to ``starttime``/``endtime``): events at a
chunk boundary are neither lost nor duplicated.

Gaps and overlaps
-----------------
Traces of one stream are merged with ObsPy's ``Stream.merge(method=1)``
(overlapping samples: the later trace wins where they differ, identical
overlaps collapse). Gaps of at most ``max_gap`` seconds (default 2 s) are
filled by linear interpolation between the samples on both sides; longer
gaps split the stream into separate segments, each detected on its own (the
warm-started STA/LTA of :mod:`engine.detect` finds events right after a gap).

Samples
-------
Each segment is resampled to ``target_fs`` (polyphase, anti-aliased; see
:func:`engine.sources._common.resample`) before detection; events carry the raw
(unfiltered) resampled samples as float32. Event ids are
``"NET.STA.LOC.CHA|<onset ISO time>"``: deterministic.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import numpy as np

from engine.detect import DetectorConfig, coincidence, detect
from engine.events import Event
from engine.sources._common import (NON_WAVEFORM_SUFFIXES, check_path, matches, read_obspy,
                                    resample, short_reason, walk_files)
from engine.sources.base import ChunkResult, EventSource, SourceSummary
from engine.sources.catalog import CatalogEntry, read_catalog

_SDS_FILE = re.compile(r"^([^.]+)\.([^.]+)\.([^.]*)\.([^.]+)\.(D)\.(\d{4})\.(\d{3})$")
_DAY = 86400.0


def _iso(ts: float) -> str:
    from obspy import UTCDateTime

    return UTCDateTime(ts).isoformat()


def _iso_z(ts: float) -> str:
    from obspy import UTCDateTime

    return str(UTCDateTime(ts))


def _to_ts(value, name: str) -> Optional[float]:
    if value is None:
        return None
    from obspy import UTCDateTime

    try:
        return UTCDateTime(value).timestamp
    except Exception:
        raise ValueError(f"{name} {value!r} is not a time (expected ISO 8601 UTC)") from None


def merge_and_fill(st, max_gap: float) -> list:
    """Merge traces of one stream, fill short gaps linearly, split at long ones.

    Parameters
    ----------
    st : obspy.Stream
        Traces of a single NET.STA.LOC.CHA (same sampling rate).
    max_gap : float
        Longest gap in seconds filled by linear interpolation.

    Returns
    -------
    list of obspy.Trace
        Contiguous, unmasked float64 traces in time order.
    """
    for tr in st:
        tr.data = np.asarray(tr.data, dtype=np.float64)
    st.merge(method=1, fill_value=None)
    out = []
    for tr in st:
        data = tr.data
        if not np.ma.isMaskedArray(data) or not np.ma.getmaskarray(data).any():
            tr.data = np.asarray(data, dtype=np.float64)
            out.append(tr)
            continue
        mask = np.ma.getmaskarray(data).copy()
        vals = np.ma.getdata(data).astype(np.float64)
        edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)  # exclusive
        limit = max_gap * tr.stats.sampling_rate
        for s, e in zip(starts, ends):
            if e - s <= limit and s > 0 and e < len(vals):
                left, right = vals[s - 1], vals[e]
                vals[s:e] = left + (right - left) * (np.arange(1, e - s + 1) / (e - s + 1))
                mask[s:e] = False
        tr.data = np.ma.masked_array(vals, mask=mask)
        for piece in tr.split():
            piece.data = np.asarray(piece.data, dtype=np.float64)
            out.append(piece)
    out.sort(key=lambda t: t.stats.starttime)
    return out


class ArchiveSource(EventSource):
    """Events detected in (or catalogued for) a continuous archive.

    Parameters
    ----------
    path : path
        Archive root (SDS tree or plain folder) or a single waveform file.
    layout : {"auto", "sds", "folder"}
        How the archive is organised (see module docstring).
    network, station, location, channel : str
        Selection, wildcards ``*`` and ``?``, comma-separated alternatives;
        location ``""`` or ``"--"`` for an empty location code. Defaults: all
        networks, stations and locations, vertical channels (``*Z``).
    starttime, endtime : str or None
        Only events with onset in ``[starttime, endtime)`` (ISO UTC).
    target_fs : float
        Sampling rate of the emitted events (default 100 Hz).
    chunk_length : float
        Seconds of archive per chunk (default 3600).
    detector : DetectorConfig, optional
        Detection and window parameters (defaults when omitted).
    catalog : path, optional
        CSV catalogue (:mod:`engine.sources.catalog`); when given, windows are
        cut at the catalogued times (``time - pre`` to ``time + duration +
        post``, capped at ``max_window``) and nothing is detected.
    max_gap : float
        Longest gap in seconds filled by linear interpolation (default 2 s).
    """

    kind = "archive"

    def __init__(self, path, *, layout: str = "auto", network: str = "*", station: str = "*",
                 location: str = "*", channel: str = "*Z", starttime=None, endtime=None,
                 target_fs: float = 100.0, chunk_length: float = 3600.0,
                 detector: Optional[DetectorConfig] = None, catalog=None,
                 max_gap: float = 2.0):
        self.path = path
        self.layout = layout
        self.network = network
        self.station = station
        self.location = location
        self.channel = channel
        self.starttime = starttime
        self.endtime = endtime
        self.target_fs = target_fs
        self.chunk_length = chunk_length
        self.detector = detector
        self.catalog = catalog
        self.max_gap = max_gap
        self._state: Optional[dict] = None

    # ------------------------------------------------------------------ planning
    def _validate(self) -> dict:
        root = check_path(self.path, "archive")
        if self.layout not in ("auto", "sds", "folder"):
            raise ValueError(f"layout must be 'auto', 'sds' or 'folder', got {self.layout!r}")
        for name in ("target_fs", "chunk_length"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if not isinstance(self.max_gap, (int, float)) or self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 seconds, got {self.max_gap!r}")
        cfg = (self.detector or DetectorConfig()).validate()
        t0 = _to_ts(self.starttime, "starttime")
        t1 = _to_ts(self.endtime, "endtime")
        if t0 is not None and t1 is not None and t1 <= t0:
            raise ValueError(f"endtime {self.endtime} is not after starttime {self.starttime}")
        cat = read_catalog(self.catalog) if self.catalog is not None else None
        layout = self.layout
        if layout == "auto":
            layout = "sds" if root.is_dir() and self._looks_sds(root) else "folder"
        return dict(root=root, cfg=cfg, t0=t0, t1=t1, catalog=cat, layout=layout)

    @staticmethod
    def _looks_sds(root: Path) -> bool:
        years = [d for d in root.iterdir() if d.is_dir() and re.fullmatch(r"\d{4}", d.name)]
        for y in years:
            for f in y.glob("*/*/*.?/*"):
                if _SDS_FILE.match(f.name):
                    return True
        return False

    def _select(self, nslc: str) -> bool:
        net, sta, loc, cha = nslc.split(".")
        return (matches(net, self.network) and matches(sta, self.station)
                and matches(loc, self.location) and matches(cha, self.channel))

    def _scan_sds(self, root: Path, t0, t1) -> tuple[dict, list]:
        """Coverage per stream from SDS file names: {nslc: [(start, end), ...]}."""
        cover: dict[str, list[tuple[float, float]]] = {}
        seen: list[str] = []
        from obspy import UTCDateTime

        for f in walk_files(root):
            m = _SDS_FILE.match(f.name)
            if not m:
                continue
            net, sta, loc, cha, _typ, year, doy = m.groups()
            nslc = f"{net}.{sta}.{loc}.{cha}"
            seen.append(nslc)
            if not self._select(nslc):
                continue
            day0 = UTCDateTime(year=int(year), julday=int(doy)).timestamp
            s, e = day0, day0 + _DAY
            try:  # first and last record only: cheap, and trims partial days
                from obspy.io.mseed.util import get_start_and_end_time

                a, b = get_start_and_end_time(str(f))
                s, e = max(s - 60.0, a.timestamp), min(e + 60.0, b.timestamp + 1e-6)
            except Exception:  # not miniSEED or unreadable: the name decides, read_chunk reports
                pass
            if (t1 is not None and s >= t1) or (t0 is not None and e <= t0):
                continue
            cover.setdefault(nslc, []).append((s, e))
        return cover, sorted(set(seen))

    def _scan_folder(self, root: Path, summary: SourceSummary) -> tuple[list, list]:
        """Header index of a plain folder: [(path, nslc, start, end, fs)]."""
        files = [root] if root.is_file() else walk_files(root)
        index = []
        for f in files:
            if f.suffix.lower() in NON_WAVEFORM_SUFFIXES:
                continue
            try:
                st = read_obspy(f, headonly=True)
            except Exception as exc:  # ObsPy raises many types for bad files
                self._skip(summary, f, short_reason(exc, "not readable by ObsPy"))
                continue
            summary.files_read += 1
            for tr in st:
                s = tr.stats
                index.append((str(f), tr.id, s.starttime.timestamp,
                              s.endtime.timestamp + s.delta, float(s.sampling_rate)))
        return index, sorted({e[1] for e in index})

    def _prepare(self) -> dict:
        if self._state is not None:
            return self._state
        st = self._validate()
        root, t0, t1 = st["root"], st["t0"], st["t1"]
        index_summary = SourceSummary()
        if st["layout"] == "sds":
            if not root.is_dir():
                raise ValueError(f"SDS archive {root} is not a folder")
            cover, seen = self._scan_sds(root, t0, t1)
            index = None
        else:
            index, seen = self._scan_folder(root, index_summary)
            cover = {}
            for _path, nslc, s, e, _fs in index:
                if not self._select(nslc):
                    continue
                if (t1 is not None and s >= t1) or (t0 is not None and e <= t0):
                    continue
                cover.setdefault(nslc, []).append((s, e))
        what = (f"network={self.network!r} station={self.station!r} location={self.location!r} "
                f"channel={self.channel!r}")
        if not seen:
            raise ValueError(f"no waveform data found in {root} (layout {st['layout']}"
                             + (f"; {len(index_summary.skipped)} unreadable files" if index_summary.skipped else "")
                             + ")")
        if not cover:
            sel = [s for s in seen if self._select(s)]
            if not sel:
                raise ValueError(f"no stream in {root} matches {what}; found: {', '.join(seen[:20])}"
                                 + (" ..." if len(seen) > 20 else ""))
            raise ValueError(f"no data in {root} for {what} between starttime={self.starttime} "
                             f"and endtime={self.endtime}")
        L = float(self.chunk_length)
        per: dict[str, set] = {}
        for nslc, spans in cover.items():
            starts: set = set()
            for s, e in spans:
                s = max(s, t0) if t0 is not None else s
                e = min(e, t1) if t1 is not None else e
                k = math.floor(s / L)
                while k * L < e:
                    starts.add(k * L)
                    k += 1
            per[nslc] = starts
        cfg = st["cfg"]
        if st["catalog"] is None and cfg.min_stations > 1:
            if len(per) < cfg.min_stations:
                raise ValueError(f"coincidence needs {cfg.min_stations} stations but only "
                                 f"{len(per)} match {what}: {', '.join(sorted(per))}")
            allt = sorted(set().union(*per.values()))
            keys = [f"ALL|{_iso(t)}" for t in allt]
        else:
            keys = [f"{nslc}|{_iso(t)}" for nslc in sorted(per) for t in sorted(per[nslc])]
        st.update(keys=keys, key_pos={k: i for i, k in enumerate(keys)}, streams=sorted(per),
                  index=index, index_summary=index_summary)
        self._state = st
        return st

    def chunks(self) -> list[str]:
        """Chunk keys ``NET.STA.LOC.CHA|ISO`` (or ``ALL|ISO`` with coincidence)."""
        return list(self._prepare()["keys"])

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _files_for(st: dict, nslc: str, a: float, b: float) -> list[str]:
        """Files of stream ``nslc`` that a read of ``[a, b)`` opens."""
        from obspy import UTCDateTime

        if st["layout"] != "sds":
            return sorted({p for p, i, s, e, _ in st["index"] if i == nslc and s < b and e > a})
        files: list[str] = []
        net, sta, loc, cha = nslc.split(".")
        day = math.floor(a / _DAY)
        first = day - 1 if a - day * _DAY < 120 else day
        for d in range(first, math.floor(b / _DAY) + 1):
            t = UTCDateTime(d * _DAY)
            p = (st["root"] / str(t.year) / net / sta / f"{cha}.D"
                 / f"{nslc}.D.{t.year}.{t.julday:03d}")
            if p.is_file():
                files.append(str(p))
        return files

    def _read_stream(self, st: dict, nslc: str, a: float, b: float, summary: SourceSummary,
                     prev_window: Optional[tuple[float, float]] = None):
        from obspy import Stream, UTCDateTime

        files = self._files_for(st, nslc, a, b)
        # a file is counted as read by the first chunk that opens it (the previous chunk
        # of the stream opens it too when it spans both: windows move forward in time)
        before = set(self._files_for(st, nslc, *prev_window)) if prev_window else set()
        stream = Stream()
        for f in files:
            try:
                part = read_obspy(f, starttime=UTCDateTime(a), endtime=UTCDateTime(b),
                                  nearest_sample=False)
            except Exception as exc:  # garbled data: one warning per file, short reason
                self._skip(summary, f, short_reason(exc, "not readable by ObsPy"))
                continue
            if f not in before:
                summary.files_read += 1
            stream += part.select(id=nslc)
        if not len(stream):
            return []
        rates = {tr.stats.sampling_rate for tr in stream}
        if len(rates) > 1:
            keep = max(rates, key=lambda r: sum(tr.stats.npts for tr in stream if tr.stats.sampling_rate == r))
            self._skip(summary, nslc, f"mixed sampling rates {sorted(rates)} in "
                                      f"{_iso(a)}..{_iso(b)}; kept {keep} Hz")
            stream = Stream([tr for tr in stream if tr.stats.sampling_rate == keep])
        segs = []
        for tr in merge_and_fill(stream, float(self.max_gap)):
            summary.samples += tr.stats.npts
            fs = float(tr.stats.sampling_rate)
            data = resample(tr.data, fs, float(self.target_fs))
            segs.append((tr.stats.starttime.timestamp, data))
        return segs

    def _cut(self, nslc: str, segs, onset: float, end: float, cfg: DetectorConfig,
             label: Optional[str], key: str) -> Optional[Event]:
        fs = float(self.target_fs)
        ws = onset - cfg.pre
        we = min(end + cfg.post, ws + cfg.max_window)
        for s0, data in segs:
            s1 = s0 + len(data) / fs
            if not (s0 <= onset < s1):
                continue
            i0 = max(0, int(round((ws - s0) * fs)))
            i1 = min(len(data), int(round((we - s0) * fs)))
            if i1 - i0 < max(2, int(cfg.min_duration * fs)):
                return None
            net, sta, _loc, cha = nslc.split(".")
            return Event(id=f"{nslc}|{_iso_z(round(onset * fs) / fs)}", station=f"{net}.{sta}",
                         channel=cha, start=_iso_z(s0 + i0 / fs), fs=fs,
                         data=np.ascontiguousarray(data[i0:i1], dtype=np.float32),
                         label=label, source=key)
        return None

    def read_chunk(self, key: str) -> ChunkResult:
        """Read one chunk: its events (detected or catalogued) and summary.

        Raises
        ------
        ValueError
            For a key that is not one of :meth:`chunks`.
        """
        st = self._prepare()
        try:
            ident, tstr = key.split("|")
            t_chunk = _to_ts(tstr, "chunk time")
        except ValueError:
            raise ValueError(f"bad chunk key {key!r} (expected 'NET.STA.LOC.CHA|ISO time')") from None
        if key not in st["keys"]:
            raise ValueError(f"chunk key {key!r} is not a chunk of archive {st['root']}")
        cfg: DetectorConfig = st["cfg"]
        summary = SourceSummary()
        if key == st["keys"][0]:
            summary.merge(SourceSummary(skipped=list(st["index_summary"].skipped),
                                        files_read=0))
        own_lo = t_chunk if st["t0"] is None else max(t_chunk, st["t0"])
        own_hi = t_chunk + float(self.chunk_length)
        if st["t1"] is not None:
            own_hi = min(own_hi, st["t1"])
        catalog: Optional[list[CatalogEntry]] = st["catalog"]
        if catalog is not None:
            lead, tail = cfg.pre + 1.0, cfg.max_window + 1.0
        else:
            lead = 3 * cfg.lta + cfg.pre + 5.0
            tail = cfg.overlap
        streams = st["streams"] if ident == "ALL" else [ident]
        fs = float(self.target_fs)
        prev_window = None
        pos = st["key_pos"][key]
        if pos > 0 and st["keys"][pos - 1].split("|")[0] == ident:
            t_prev = _to_ts(st["keys"][pos - 1].split("|")[1], "chunk time")
            p_lo = t_prev if st["t0"] is None else max(t_prev, st["t0"])
            p_hi = t_prev + float(self.chunk_length)
            if st["t1"] is not None:
                p_hi = min(p_hi, st["t1"])
            prev_window = (p_lo - lead, p_hi + tail)
        data = {n: self._read_stream(st, n, own_lo - lead, own_hi + tail, summary, prev_window)
                for n in streams}
        events: list[Event] = []
        if catalog is not None:
            for nslc in streams:
                net_sta = ".".join(nslc.split(".")[:2])
                for e in catalog:
                    if not (own_lo <= e.time < own_hi) or not e.applies_to(net_sta):
                        continue
                    dur = e.duration if e.duration is not None else cfg.max_window
                    ev = self._cut(nslc, data[nslc], e.time, e.time + dur, cfg, e.label, key)
                    if ev is None:
                        summary.skip(f"{nslc} {_iso(e.time)}", "catalogued event outside the data",
                                     warn=False)
                    else:
                        events.append(ev)
        else:
            trig: dict[str, list[tuple[float, float]]] = {}
            for nslc, segs in data.items():
                lst = []
                for s0, x in segs:
                    for a, b in detect(x, fs, cfg):
                        lst.append((s0 + a / fs, s0 + b / fs))
                trig[nslc] = lst
            if ident == "ALL":
                for group in coincidence(trig, cfg.min_stations, cfg.coincidence_window):
                    first = min(on for on, _ in group.values())
                    if not (own_lo <= first < own_hi):
                        continue
                    for nslc, (on, end) in sorted(group.items()):
                        ev = self._cut(nslc, data[nslc], on, end, cfg, None, key)
                        if ev is not None:
                            events.append(ev)
            else:
                for on, end in trig[ident]:
                    if own_lo <= on < own_hi:
                        ev = self._cut(ident, data[ident], on, end, cfg, None, key)
                        if ev is not None:
                            events.append(ev)
        summary.events = len(events)
        return ChunkResult(key, events, summary)

