"""Tests of continuous-archive sources (SDS, plain folders), the factory and bad input."""
from __future__ import annotations

import csv
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.sources import DetectorConfig, open_source, resample
from engine.sources.archive import merge_and_fill
from engine.synth import write_archive

START = "2020-01-01"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """2 h, 3 stations, about 24 planted events per station."""
    return write_archive(tmp_path_factory.mktemp("sds"), days=2 / 24, stations=3, seed=11,
                         rate=12.0, start=START)


def _catalog(root: Path) -> list[dict]:
    return list(csv.DictReader(open(root / "catalog.csv")))


def _onsets(events) -> dict[str, list[float]]:
    from obspy import UTCDateTime

    out: dict[str, list[float]] = {}
    for e in events:
        out.setdefault(e.station, []).append(UTCDateTime(e.id.split("|")[1]).timestamp)
    return out


def test_sds_events_recall_and_format(archive):
    from obspy import UTCDateTime

    src = open_source(archive=archive)
    keys = src.chunks()
    assert keys[0] == "XX.SYN01..HHZ|2020-01-01T00:00:00" and len(keys) == 6
    events, summary = src.read_all()
    assert summary.events == len(events) > 0 and not summary.skipped
    assert len({e.id for e in events}) == len(events)
    for e in events:
        assert e.fs == 100.0 and e.data.dtype == np.float32 and e.channel == "HHZ"
        assert len(e.data) <= 6000
        assert e.start.endswith("Z") and UTCDateTime(e.start) <= UTCDateTime(e.id.split("|")[1])
    ons = _onsets(events)
    cat = _catalog(archive)
    found = sum(any(abs(o - UTCDateTime(r["time"]).timestamp) <= 5.0 for o in ons.get(r["station"], []))
                for r in cat)
    assert found >= 0.85 * len(cat), (found, len(cat))


def test_chunk_boundaries_no_loss_no_duplicates(archive):
    """Short chunks give exactly the events of long chunks (same ids and samples)."""
    long, _ = open_source(archive=archive, station="SYN01", chunk_length=7200.0).read_all()
    src = open_source(archive=archive, station="SYN01", chunk_length=600.0)
    short, _ = src.read_all()
    assert len(src.chunks()) == 12
    assert [e.id for e in short] == [e.id for e in long]
    for a, b in zip(short, long):
        assert a.start == b.start
        np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-2 * np.abs(b.data).max())


def test_chunk_memory_bounded(archive):
    from obspy import UTCDateTime

    cfg = DetectorConfig()
    L = 600.0
    src = open_source(archive=archive, station="SYN02", chunk_length=L)
    bound = (L + 3 * cfg.lta + cfg.pre + 5.0 + cfg.overlap) * 100 + 10
    for k in src.chunks():
        res = src.read_chunk(k)
        assert 0 < res.summary.samples <= bound
        t0 = UTCDateTime(k.split("|")[1])
        for e in res.events:  # every event's onset lies in its chunk
            assert t0 <= UTCDateTime(e.id.split("|")[1]) < t0 + L


def test_pickled_source_reads_same(archive):
    src = open_source(archive=archive, station="SYN03")
    key = src.chunks()[1]
    a = src.read_chunk(key).events
    b = pickle.loads(pickle.dumps(src)).read_chunk(key).events
    assert [e.id for e in a] == [e.id for e in b] and a
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a, b))


def test_selection_and_time_range(archive):
    src = open_source(archive=archive, station="SYN0[12]", starttime="2020-01-01T00:30:00",
                      endtime="2020-01-01T01:00:00")
    events, _ = src.read_all()
    assert {k.split("|")[0] for k in src.chunks()} == {"XX.SYN01..HHZ", "XX.SYN02..HHZ"}
    assert events and all(e.station in ("XX.SYN01", "XX.SYN02") for e in events)
    assert all("2020-01-01T00:30:00" <= e.id.split("|")[1] < "2020-01-01T01:00:00" for e in events)
    with pytest.raises(ValueError, match="no stream .* matches .*found: XX.SYN01..HHZ"):
        open_source(archive=archive, channel="BH?")
    with pytest.raises(ValueError, match="no data"):
        open_source(archive=archive, starttime="2021-01-01", endtime="2021-01-02")


def test_catalog_mode_labels(archive):
    cat = _catalog(archive)
    src = open_source(archive=archive, catalog=archive / "catalog.csv", detect=False,
                      station="SYN01")
    events, _ = src.read_all()
    rows = [r for r in cat if r["station"] == "XX.SYN01"]
    assert len(events) == len(rows)
    assert [e.label for e in events] == [r["type"] for r in sorted(rows, key=lambda r: r["time"])]
    for e, r in zip(events, sorted(rows, key=lambda r: r["time"])):
        want = min(5.0 + float(r["duration"]) + 5.0, 60.0) * 100
        assert abs(len(e.data) - want) <= 1, (r, len(e.data))


def test_coincidence_mode(archive):
    src = open_source(archive=archive, min_stations=2)
    keys = src.chunks()
    assert keys == ["ALL|2020-01-01T00:00:00", "ALL|2020-01-01T01:00:00"]
    events, _ = src.read_all()
    from obspy import UTCDateTime

    on = sorted((UTCDateTime(e.id.split("|")[1]).timestamp, e.station) for e in events)
    # every event has a partner on another station within the coincidence window
    for t, sta in on:
        assert any(abs(t - u) <= 10.0 and s != sta for u, s in on)
    single, _ = open_source(archive=archive).read_all()
    assert len(events) <= len(single)


def test_plain_folder_equals_sds(archive, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in archive.rglob("XX.SYN01*"):
        shutil.copy(f, flat / (f.name + ".mseed"))
    (flat / "notes.txt").write_text("not a waveform")
    a, sa = open_source(archive=flat).read_all()
    b, _ = open_source(archive=archive, station="SYN01").read_all()
    assert [e.id for e in a] == [e.id for e in b]
    assert not sa.skipped


def test_files_read_counts_files_not_chunks(archive, tmp_path):
    """A day file cut into many chunks is one file read (SDS and plain folders)."""
    day_files = sorted(p for p in archive.rglob("XX.SYN0*") if p.is_file())
    assert len(day_files) == 3
    src = open_source(archive=archive, chunk_length=900.0)
    assert len(src.chunks()) == 3 * 8
    _, summary = src.read_all()
    assert summary.files_read == 3
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in day_files:
        shutil.copy(f, flat / (f.name + ".mseed"))
    _, summary = open_source(archive=flat, chunk_length=900.0).read_all()
    assert summary.files_read == 3
    # coincidence chunks (ALL|time) read every stream: still one count per file
    _, summary = open_source(archive=archive, chunk_length=900.0, min_stations=2).read_all()
    assert summary.files_read == 3


def test_corrupt_file_skipped_and_counted(archive, tmp_path, caplog):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in archive.rglob("XX.SYN02*"):
        shutil.copy(f, flat / (f.name + ".mseed"))
    (flat / "broken.mseed").write_bytes(b"\x00garbage" * 100)
    with caplog.at_level("WARNING", logger="engine"):
        src = open_source(archive=flat)
        events, summary = src.read_all()
    assert events
    assert [p for p, _ in summary.skipped] == [str(flat / "broken.mseed")]
    lines = [r for r in caplog.records if "broken.mseed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].name == "engine.sources"


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_source(archive=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no waveform data found"):
        open_source(archive=tmp_path / "empty")
    with pytest.raises(ValueError, match="exactly one"):
        open_source()
    with pytest.raises(ValueError, match="unknown parameter"):
        open_source(archive=tmp_path, stalta=3)
    with pytest.raises(ValueError, match="off threshold"):
        open_source(archive=tmp_path, on=1.0, off=2.0)


def test_catalog_bad_time(archive, tmp_path):
    bad = tmp_path / "cat.csv"
    bad.write_text("time,label\n2020-01-01T00:10:00,LP\nyesterday,VT\n")
    with pytest.raises(ValueError, match=r"cat.csv:3: bad time 'yesterday'"):
        open_source(archive=archive, catalog=bad)
    nohead = tmp_path / "cat2.csv"
    nohead.write_text("when,label\n2020-01-01T00:10:00,LP\n")
    with pytest.raises(ValueError, match="no 'time' column"):
        open_source(archive=archive, catalog=nohead)


# ---------------------------------------------------------------- gaps, resampling
def _trace(data, fs, start="2020-01-01T00:00:00", sta="GAP"):
    from obspy import Trace, UTCDateTime

    tr = Trace(data=np.asarray(data))
    tr.stats.network, tr.stats.station, tr.stats.channel = "XX", sta, "HHZ"
    tr.stats.sampling_rate = fs
    tr.stats.starttime = UTCDateTime(start)
    return tr


def test_merge_and_fill_gaps():
    from obspy import Stream

    fs = 100.0
    x = np.arange(3000, dtype=float)
    a = _trace(x[:1000], fs)
    b = _trace(x[1100:2000], fs, start="2020-01-01T00:00:11")        # 1 s gap: filled
    c = _trace(x[:500], fs, start="2020-01-01T00:01:20")             # 60 s gap: split
    d = _trace(x[1000:1200], fs, start="2020-01-01T00:00:10")        # overlap with b
    out = merge_and_fill(Stream([a, b, c, d]), max_gap=2.0)
    assert len(out) == 2
    np.testing.assert_allclose(out[0].data[:2000], x[:2000])         # linear fill is exact here
    assert out[1].stats.npts == 500


def test_archive_gap_splits(tmp_path):
    """Events after a long gap are still found (each segment detected on its own)."""
    from obspy import Stream

    from engine.synth import _background, synthetic_event

    rng = np.random.default_rng(0)
    x = _background(100 * 600, 100.0, rng) * 100
    ev = synthetic_event("VT", 100.0, rng) * 3000
    x[30000:30000 + len(ev)] += ev                     # at 300 s
    st = Stream([_trace(x[:20000].astype(np.int32), 100.0),
                 _trace(x[29000:].astype(np.int32), 100.0, start="2020-01-01T00:04:50")])
    st.write(str(tmp_path / "gap.mseed"), format="MSEED")
    events, _ = open_source(archive=tmp_path).read_all()
    from obspy import UTCDateTime

    onsets = [UTCDateTime(e.id.split("|")[1]) - UTCDateTime("2020-01-01") for e in events]
    assert any(abs(o - 300.0) <= 2.0 for o in onsets), onsets  # 10 s after the gap ended


@pytest.mark.parametrize("fs", [50.0, 200.0])
def test_resampled_archive(tmp_path, fs):
    from obspy import Stream

    from engine.synth import _background, synthetic_event

    rng = np.random.default_rng(1)
    x = _background(int(fs * 400), fs, rng) * 100
    ev = synthetic_event("LP", fs, rng) * 4000
    i = int(200 * fs)
    x[i:i + len(ev)] += ev
    Stream([_trace(x.astype(np.float32), fs, sta="RS")]).write(str(tmp_path / "r.mseed"),
                                                              format="MSEED")
    events, _ = open_source(archive=tmp_path, pre=5.0, post=5.0).read_all()
    assert events
    from obspy import UTCDateTime

    e = min(events, key=lambda e: abs(UTCDateTime(e.id.split("|")[1]) - UTCDateTime("2020-01-01") - 200))
    assert e.fs == 100.0
    onset = UTCDateTime(e.id.split("|")[1]) - UTCDateTime("2020-01-01")
    assert abs(onset - 200.0) <= 2.0
    # window = onset - 5 s .. at most 60 s; duration in samples matches 100 Hz
    assert abs((UTCDateTime(e.start) - UTCDateTime("2020-01-01")) - (onset - 5.0)) < 0.02
    assert 10.0 <= len(e.data) / 100.0 <= 60.0


@pytest.mark.parametrize("fs_in,n", [(50.0, 5000), (200.0, 20000), (75.0, 7500)])
def test_resample_duration(fs_in, n):
    y = resample(np.random.default_rng(0).standard_normal(n), fs_in, 100.0)
    assert y.dtype == np.float32
    assert len(y) == int(np.ceil(n * 100.0 / fs_in))


def test_resample_anti_alias():
    fs = 200.0
    t = np.arange(int(20 * fs)) / fs
    keep = resample(np.sin(2 * np.pi * 10 * t), fs, 100.0)        # 10 Hz: passes
    alias = resample(np.sin(2 * np.pi * 70 * t), fs, 100.0)       # 70 Hz: above new Nyquist
    mid = slice(200, -200)
    assert 0.95 < np.abs(keep[mid]).max() < 1.05
    assert np.abs(alias[mid]).max() < 0.01                        # not folded to 30 Hz
    naive = np.sin(2 * np.pi * 70 * t)[::2]                       # what decimation alone gives
    assert np.abs(naive).max() > 0.5


def test_sds_across_midnight(tmp_path):
    """Two day files: chunking by hour or in one piece gives the same events."""
    root = write_archive(tmp_path / "two", days=1.03, stations=1, seed=5, rate=4.0, fs=20.0,
                         start="2020-12-31")
    assert (root / "2021" / "XX" / "SYN01" / "HHZ.D" / "XX.SYN01..HHZ.D.2021.001").is_file()
    kw = dict(archive=root, target_fs=20.0, starttime="2020-12-31T22:00:00")
    hourly = open_source(chunk_length=3600.0, **kw)
    assert [k.split("|")[1] for k in hourly.chunks()] == [
        "2020-12-31T22:00:00", "2020-12-31T23:00:00", "2021-01-01T00:00:00"]
    a, _ = hourly.read_all()
    b, _ = open_source(chunk_length=86400.0 * 3, **kw).read_all()
    assert a and [e.id for e in a] == [e.id for e in b]
    assert all(e.fs == 20.0 for e in a)
