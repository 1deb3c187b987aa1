"""Tests of event-file sources: HDF5 (Llaima layout), NumPy, waveform folders, images."""
from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from engine.sources import (HDF5EventSource, ImageFolderSource, NumpyEventSource,
                            WaveformEventSource, open_source)
from engine.sources.eventfiles import sample_axis


def _traces(n, s=6000, seed=0):
    return np.random.default_rng(seed).standard_normal((n, s)).astype(np.float32)


@pytest.mark.parametrize("shape,hint,expect", [
    ((7, 6000, 1), None, (0, 1)),      # MATLAB 1x6000xN seen by h5py
    ((1, 6000, 7), None, (2, 1)),      # MATLAB order as written
    ((7, 6000), None, (0, 1)),
    ((6000, 7), 6000, (1, 0)),         # needs the hint
    ((6000,), None, (None, 0)),
    ((1, 6000, 1), None, (None, 1)),
])
def test_sample_axis(shape, hint, expect):
    assert sample_axis(shape, hint) == expect


def test_sample_axis_errors():
    with pytest.raises(ValueError, match="n_samples=500"):
        sample_axis((7, 6000, 1), 500)
    with pytest.raises(ValueError, match="more than two"):
        sample_axis((3, 4, 5))


def test_llaima_layout(tmp_path):
    lp, vt = _traces(5, seed=1), _traces(3, seed=2)
    with h5py.File(tmp_path / "LP.h5", "w") as h:
        h["LP"] = lp[:, :, None]                     # N x 6000 x 1 (as h5py shows MATLAB's)
    with h5py.File(tmp_path / "VT.h5", "w") as h:
        h["VT"] = vt.T[None, :, :]                   # 1 x 6000 x N
    src = open_source(events=tmp_path)
    assert isinstance(src, HDF5EventSource)
    events, summary = src.read_all()
    assert [e.label for e in events] == ["LP"] * 5 + ["VT"] * 3
    for i, e in enumerate(events[:5]):
        np.testing.assert_array_equal(e.data, lp[i])
        assert e.id == f"LP/LP/{i}" and e.fs == 100.0
    for i, e in enumerate(events[5:]):
        np.testing.assert_array_equal(e.data, vt[i])
    assert summary.events == 8 and summary.files_read == 2


def test_hdf5_several_datasets_blocks_and_resampling(tmp_path):
    a, b = _traces(5, 3000, 3), _traces(2, 3000, 4)
    with h5py.File(tmp_path / "set.h5", "w") as h:
        h["grp/A"] = a
        d = h.create_dataset("B", data=b.T)          # 3000 x 2: needs n_samples
        d.attrs["n_samples"] = 3000
        d.attrs["fs"] = 50.0
        h["meta"] = np.bytes_("text")                # non-numeric: ignored
    src = HDF5EventSource(tmp_path / "set.h5", fs=50.0, block=2).check()
    assert len(src.chunks()) == 3 + 1
    events, _ = pickle.loads(pickle.dumps(src)).read_all()
    assert [e.label for e in events] == ["B", "B", "A", "A", "A", "A", "A"]
    assert all(e.fs == 100.0 and len(e.data) == 6000 for e in events)
    # resampled 50 -> 100 Hz keeps the waveform: every second sample matches closely in band
    x = np.sin(2 * np.pi * 2.0 * np.arange(3000) / 50.0).astype(np.float32)
    with h5py.File(tmp_path / "sine.h5", "w") as h:
        h["S"] = x[None, :]
    e = open_source(events=tmp_path / "sine.h5", fs=50.0).read_all()[0][0]
    np.testing.assert_allclose(e.data[200:-200:2], x[100:-100], atol=0.02)


def test_hdf5_without_datasets(tmp_path, caplog):
    with h5py.File(tmp_path / "empty.h5", "w") as h:
        h.create_group("nothing")
    with pytest.raises(ValueError, match=r"empty.h5: no numeric dataset"):
        open_source(events=tmp_path / "empty.h5")
    with h5py.File(tmp_path / "LP.h5", "w") as h:
        h["LP"] = _traces(2)
    with pytest.raises(ValueError, match="no numeric dataset matching 'VT'"):
        open_source(events=tmp_path / "empty.h5", datasets="VT")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5 at all")
    with caplog.at_level("WARNING", logger="engine"):
        events, summary = open_source(events=tmp_path).read_all()
    rec = [r.getMessage() for r in caplog.records if r.name == "engine.sources"]
    assert sorted(m.split(":")[0].rsplit("/", 1)[1] for m in rec) == ["bad.h5", "empty.h5"]
    assert len(events) == 2 and len(summary.skipped) == 2   # bad.h5 and empty.h5


def test_numpy_sources(tmp_path):
    a = _traces(4, 2000)
    np.save(tmp_path / "plain.npy", a)
    events, _ = open_source(events=tmp_path / "plain.npy").read_all()
    assert len(events) == 4 and events[0].label is None
    np.testing.assert_array_equal(events[2].data, a[2])
    np.savez(tmp_path / "set.npz", LP=a[:2], VT=a[2:])
    ev2, _ = open_source(events=tmp_path / "set.npz").read_all()
    assert [e.label for e in ev2] == ["LP", "LP", "VT", "VT"]
    (tmp_path / "cls" / "TR").mkdir(parents=True)
    np.save(tmp_path / "cls" / "TR" / "x.npy", a[0])
    ev3, _ = open_source(events=tmp_path / "cls").read_all()
    assert len(ev3) == 1 and ev3[0].label == "TR"
    np.save(tmp_path / "bad3d.npy", np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="bad3d.npy.*n_events x n_samples"):
        open_source(events=tmp_path / "bad3d.npy")


def test_labelled_windows_mode(tmp_path):
    n = 4000
    w = np.zeros((2 + 3, n))
    w[0] = np.random.default_rng(0).standard_normal(n)
    w[2] = 1.0                                   # mask rows: BG, VT, LP
    w[3, 1000:1500] = 1
    w[4, 2500:3000] = 1
    w[2, 1000:1500] = 0
    w[2, 2500:3000] = 0
    np.save(tmp_path / "win.npy", w)
    src = NumpyEventSource(tmp_path / "win.npy", mask_labels="BG,VT,LP", pre=2.0, post=2.0)
    events, _ = src.read_all()
    assert [e.label for e in events] == ["VT", "LP"]   # station row 1 is all zeros: unused
    np.testing.assert_array_equal(events[0].data, w[0, 800:1700].astype(np.float32))
    np.testing.assert_array_equal(events[1].data, w[0, 2300:3200].astype(np.float32))


def _write_trace(path, fs, sta, cha="HHZ", fmt="MSEED", n=None, seed=0):
    from obspy import Trace, UTCDateTime

    n = n or int(10 * fs)
    tr = Trace(data=np.random.default_rng(seed).standard_normal(n).astype(np.float32))
    tr.stats.network, tr.stats.station, tr.stats.channel = "XX", sta, cha
    tr.stats.sampling_rate = fs
    tr.stats.starttime = UTCDateTime("2020-01-01T00:00:00")
    tr.write(str(path), format=fmt)


def test_waveform_folder_labels_and_rates(tmp_path, caplog):
    (tmp_path / "LP").mkdir()
    (tmp_path / "VT").mkdir()
    _write_trace(tmp_path / "LP" / "a.mseed", 50.0, "A")
    _write_trace(tmp_path / "LP" / "b.sac", 200.0, "B", fmt="SAC")
    _write_trace(tmp_path / "VT" / "c.mseed", 100.0, "C")
    _write_trace(tmp_path / "VT" / "c_n.mseed", 100.0, "C", cha="HHN")   # not vertical
    (tmp_path / "VT" / "junk.mseed").write_bytes(b"junk" * 50)
    src = open_source(events=tmp_path)
    assert isinstance(src, WaveformEventSource)
    assert src.chunks() == ["LP/a.mseed", "LP/b.sac", "VT/c.mseed"]   # HHN-only file left out
    with caplog.at_level("WARNING", logger="engine"):
        events, summary = src.read_all()
    assert sum("junk.mseed" in r.getMessage() for r in caplog.records) == 1
    assert [(e.station, e.label) for e in events] == [("XX.A", "LP"), ("XX.B", "LP"), ("XX.C", "VT")]
    assert all(e.fs == 100.0 and len(e.data) == 1000 for e in events)
    assert [p.endswith("junk.mseed") for p, _ in summary.skipped].count(True) == 1
    with pytest.raises(ValueError, match=r"no trace .* matches .*channel='BH\?'; found: XX.A..HHZ"):
        open_source(events=tmp_path, channel="BH?")


def test_seisan_montserrat_event_file(tmp_path):
    """ObsPy's bundled Montserrat (MVO) SEISAN event, read as an event-file folder."""
    import shutil

    import obspy

    from pathlib import Path

    f = Path(obspy.__file__).parent / "io" / "seisan" / "tests" / "data" / "9701-30-1048-54S.MVO_21_1"
    (tmp_path / "MVO").mkdir()
    shutil.copy(f, tmp_path / "MVO" / f.name)
    events, summary = open_source(events=tmp_path).read_all()
    st = obspy.read(str(f))
    zs = [tr for tr in st if tr.stats.channel.endswith("Z")]
    assert len(events) == len(zs) > 0 and not summary.skipped
    assert all(e.label == "MVO" and e.fs == 100.0 for e in events)
    for e, tr in zip(events, zs):
        assert abs(len(e.data) / 100.0 - tr.stats.npts / tr.stats.sampling_rate) < 0.02
        assert e.start == str(tr.stats.starttime)
    everything, _ = open_source(events=tmp_path, channel="*").read_all()
    assert len(everything) == len(st)


def _png(path, size=(227, 227), mode="RGB", value=100):
    from PIL import Image

    Image.new(mode, size, value if mode != "RGB" else (value, 20, 30)).save(path)


def test_image_folder(tmp_path):
    for cls in ("LP", "VT"):
        (tmp_path / cls).mkdir()
        for i in (1, 2, 10):
            _png(tmp_path / cls / f"{i}.png", value=i)
    src = open_source(images=tmp_path)
    assert isinstance(src, ImageFolderSource)
    events, _ = src.read_all()
    assert [e.id for e in events] == ["LP/1", "LP/2", "LP/10", "VT/1", "VT/2", "VT/10"]
    assert all(e.image.shape == (227, 227, 3) and e.image.dtype == np.uint8 and e.data is None
               for e in events)
    assert events[2].image[0, 0, 0] == 10 and events[3].label == "VT"


def test_image_resize_and_errors(tmp_path, caplog):
    (tmp_path / "TR").mkdir()
    _png(tmp_path / "TR" / "small.png", size=(100, 80), mode="L")
    (tmp_path / "TR" / "broken.png").write_bytes(b"\x89PNG nope")
    with pytest.warns(UserWarning) as rec, caplog.at_level("WARNING", logger="engine"):
        events, summary = open_source(images=tmp_path).read_all()
    msgs = " ".join(str(w.message) for w in rec) + " ".join(r.getMessage() for r in caplog.records)
    assert "broken.png" in msgs and "resized" in msgs
    assert len(events) == 1 and events[0].image.shape == (227, 227, 3)
    assert len(summary.skipped) == 1
    caplog.clear()
    with pytest.raises(ValueError, match="small.png: image is 100x80 L"), \
            caplog.at_level("WARNING", logger="engine"):
        open_source(images=tmp_path, resize_images=False).read_all()
    assert any("broken.png" in r.getMessage() for r in caplog.records)


def test_event_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_source(events=tmp_path / "missing.h5")
    (tmp_path / "e").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        open_source(events=tmp_path / "e")
    with pytest.raises(ValueError, match="no images"):
        open_source(images=tmp_path / "e")
    (tmp_path / "e" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no HDF5, NumPy or waveform"):
        open_source(events=tmp_path / "e")
    with pytest.raises(ValueError, match="catalog= applies to archive"):
        open_source(events=tmp_path / "e", catalog="x.csv")


def test_files_read_counts_files_not_blocks(tmp_path):
    with h5py.File(tmp_path / "set.h5", "w") as h:
        h["LP"] = _traces(25, 200)
        h["VT"] = _traces(10, 200, seed=1)
    src = HDF5EventSource(tmp_path / "set.h5", block=8)
    assert len(src.chunks()) == 4 + 2                      # blocks of two datasets
    events, summary = src.read_all()
    assert len(events) == 35 and summary.files_read == 1
    np.savez(tmp_path / "set.npz", LP=_traces(20, 100), VT=_traces(3, 100))
    np.save(tmp_path / "more.npy", _traces(9, 100))
    src = NumpyEventSource(tmp_path, block=4)
    events, summary = src.read_all()
    assert len(events) == 32 and summary.files_read == 2
