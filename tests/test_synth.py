"""Tests of engine.synth: event shapes, archive layout, catalogue, determinism, CLI."""
from __future__ import annotations

import csv
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engine.synth import KINDS, main, synthetic_event, synthetic_events, write_archive


def _spectrum_share(x: np.ndarray, fs: float, lo: float, hi: float) -> float:
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / fs)
    return float(p[(f >= lo) & (f <= hi)].sum() / p.sum())


def test_event_shapes_physical():
    rng = np.random.default_rng(0)
    for kind in KINDS:
        for _ in range(3):
            x = synthetic_event(kind, 100.0, rng)
            assert 1 <= len(x) / 100.0 <= 60.0
            assert np.isclose(np.abs(x).max(), 1.0)
    lp = [synthetic_event("LP", 100.0, rng) for _ in range(5)]
    vt = [synthetic_event("VT", 100.0, rng) for _ in range(5)]
    # LP energy is narrow-band below 5 Hz, VT broadband 4-20 Hz
    assert min(_spectrum_share(x, 100, 0.4, 5.0) for x in lp) > 0.8
    assert min(_spectrum_share(x, 100, 4.0, 22.0) for x in vt) > 0.7
    # VT is impulsive (sharp P onset, envelope peak at the S phase 1-3 s later);
    # LP is emergent: its envelope takes several times longer to reach half of
    # its first-second maximum
    from scipy.signal import hilbert

    def rise(x):  # seconds to half of the first-second maximum of the envelope
        env = np.abs(hilbert(x))[:100]
        return np.argmax(env >= 0.5 * env.max()) / 100.0

    assert np.median([rise(x) for x in vt]) < 0.1 < np.median([rise(x) for x in lp])
    assert np.median([rise(x) for x in lp]) > 2 * np.median([rise(x) for x in vt])
    assert max(np.argmax(np.abs(hilbert(x))) for x in vt) / 100.0 < 5.0


def test_tc_has_late_s_phase():
    rng = np.random.default_rng(5)
    x = synthetic_event("TC", 100.0, rng)
    env = np.convolve(np.abs(x), np.ones(100) / 100, mode="same")
    assert np.argmax(env) / 100.0 >= 10.0  # S arrives 10-30 s after P and dominates


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown synthetic event kind"):
        synthetic_event("XX", 100.0)


def test_synthetic_events_labelled_and_deterministic():
    a = synthetic_events(2, seed=3)
    b = synthetic_events(2, seed=3)
    assert [e.label for e in a] == [k for k in KINDS for _ in range(2)]
    assert all(e.data.dtype == np.float32 and len(e.data) <= 6000 for e in a)
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a, b))
    assert not np.array_equal(a[0].data, synthetic_events(2, seed=4)[0].data)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_archive_layout_catalog_and_determinism(tmp_path):
    from obspy import UTCDateTime, read

    kw = dict(days=0.04, stations=2, rate=20.0, start="2021-03-04")
    a = write_archive(tmp_path / "a", seed=1, **kw)
    b = write_archive(tmp_path / "b", seed=1, **kw)
    c = write_archive(tmp_path / "c", seed=2, **kw)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    f = a / "2021" / "XX" / "SYN01" / "HHZ.D" / "XX.SYN01..HHZ.D.2021.063"
    assert f.is_file()
    tr = read(str(f))[0]
    assert tr.stats.sampling_rate == 100.0 and tr.stats.npts == int(0.04 * 86400 * 100)
    rows = list(csv.DictReader(open(a / "catalog.csv")))
    assert rows and set(rows[0]) == {"time", "type", "station", "duration"}
    assert {r["station"] for r in rows} == {"XX.SYN01", "XX.SYN02"}
    assert {r["type"] for r in rows} <= set(KINDS)
    per_sta = {s: sum(r["station"] == s for r in rows) for s in ("XX.SYN01", "XX.SYN02")}
    assert per_sta["XX.SYN01"] == per_sta["XX.SYN02"]  # every event on every station
    # each catalogued onset is where energy rises above the background at that station
    data = {s: read(str(a / "2021" / "XX" / s.split(".")[1] / "HHZ.D" /
                        f"{s}..HHZ.D.2021.063"))[0] for s in per_sta}
    rms = {s: np.sqrt(np.mean(data[s].data.astype(float) ** 2)) for s in data}
    louder = 0
    for r in rows:
        tr = data[r["station"]]
        i = int((UTCDateTime(r["time"]) - tr.stats.starttime) * 100)
        before = np.sqrt(np.mean(tr.data[max(0, i - 1000):i - 100].astype(float) ** 2))
        after = np.abs(tr.data[i:i + 1500].astype(float)).max()
        louder += after > 3 * before
        assert before < 3 * rms[r["station"]]
    assert louder >= 0.9 * len(rows)


def test_write_archive_bad_args(tmp_path):
    with pytest.raises(ValueError, match="days"):
        write_archive(tmp_path, days=0)
    with pytest.raises(ValueError, match="start"):
        write_archive(tmp_path, days=0.01, start="not a date")


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "arc"), "--days", "0.01", "--stations", "1",
                 "--seed", "7"]) == 0
    assert (tmp_path / "arc" / "catalog.csv").is_file()
    assert "wrote" in capsys.readouterr().out
    assert main(["--out", str(tmp_path / "x"), "--days", "-1"]) == 2


def test_cli_event_images(tmp_path):
    assert main(["--days", "0", "--event-images", str(tmp_path / "img"), "--per-class", "1"]) == 0
    assert not (tmp_path / "arc").exists()
    pngs = sorted(p.relative_to(tmp_path / "img").parts[0] for p in (tmp_path / "img").rglob("*.png"))
    assert pngs == sorted(KINDS)


def test_cut_like_event_sets_band_passes_and_cuts_at_the_event_end():
    from engine.images import end_of_event
    from engine.synth import cut_like_event_sets, synthetic_events

    ev = synthetic_events(1, seed=4, kinds=("VT",))[0]
    y = cut_like_event_sets(ev.data, ev.fs)
    assert y.dtype == np.float32 and 2 * ev.fs <= y.size < ev.data.size
    assert end_of_event(y) < y.size - 1  # the constant tail ends the event (Stage 0)
    spec = np.abs(np.fft.rfft(y[: end_of_event(y) + 1])) ** 2
    f = np.fft.rfftfreq(end_of_event(y) + 1, 1 / ev.fs)
    assert spec[(f > 15)].sum() < 0.01 * spec[(f >= 1) & (f <= 10)].sum()


def test_event_image_styles(tmp_path):
    from engine.synth import write_event_images

    with pytest.raises(ValueError, match="style"):
        write_event_images(tmp_path / "x", 1, style="pretty")
    n = write_event_images(tmp_path / "mixed", 2, kinds=("LP",), style="mixed")
    assert n == 2 and len(list((tmp_path / "mixed" / "LP").glob("*.png"))) == 2
