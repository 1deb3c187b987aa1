"""Real-data checks of the sources (read-only shared data; default detector settings)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from engine.detect import detect
from engine.sources import OVDAS_MASKS, open_source


def _picks(folder: Path) -> list[float]:
    """Absolute onset (POSIX s) of the hand-picked VT ('Equ') of every segment."""
    from obspy import read

    out = []
    for f in sorted(folder.glob("*.mseed")):
        start = read(str(f), headonly=True)[0].stats.starttime.timestamp
        text = f.with_suffix(".trs").read_text(encoding="latin-1")
        # <Sync time="t"/> followed by its label; times x 70 = seconds after trace start
        pairs = re.findall(r'<Sync time="([0-9.]+)"/>\s*(\w+)', text)
        equ = [float(t) * 70.0 for t, lab in pairs if lab == "Equ"]
        assert equ, f
        out.append(start + equ[0])
    return out


def test_bezymianny_detection_recall_default_settings(shared_data):
    from obspy import UTCDateTime

    folder = shared_data / "bezymianny_vt"
    picks = _picks(folder)
    assert len(picks) == 16
    src = open_source(archive=folder)               # plain folder, default detector
    events, summary = src.read_all()
    assert summary.files_read >= 16 and not summary.skipped
    onsets = np.array([UTCDateTime(e.id.split("|")[1]).timestamp for e in events])
    found = sum(np.min(np.abs(onsets - p)) <= 5.0 for p in picks)
    assert found >= 0.8 * len(picks), f"{found}/{len(picks)} picked VT events found"
    assert all(e.fs == 100.0 and len(e.data) <= 6000 for e in events)   # 50 Hz -> 100 Hz


def _ovdas(shared_data):
    files = sorted((shared_data / "ovdas_windows").glob("*.npy"))
    assert len(files) == 10
    return files


def test_ovdas_windows_labels_line_up(shared_data):
    """Events emitted where the masks say, with the window's class and its samples."""
    files = _ovdas(shared_data)
    src = open_source(events=shared_data / "ovdas_windows", mask_labels="ovdas")
    events, _ = src.read_all()
    assert events
    for f in files:
        arr = np.load(f)
        cls = f.stem.split("_")[1]
        mine = [e for e in events if e.id.startswith(f.stem + "/")]
        assert mine and {e.label for e in mine} == {cls}
        m = arr[8 + OVDAS_MASKS.index(cls)] > 0.5
        for e in mine:
            _, lab, s, ch, i0 = e.id.split("/")
            s, row, i0 = int(s), int(ch[2:]), int(i0)
            assert m[s] and (s == 0 or not m[s - 1])           # starts a mask run
            assert i0 <= s and i0 + len(e.data) > s
            np.testing.assert_allclose(e.data, arr[row, i0:i0 + len(e.data)].astype(np.float32))
            assert np.any(arr[row])


def test_ovdas_detection_overlaps_event_masks(shared_data):
    """Default STA/LTA on the real station rows triggers inside the non-background masks."""
    hits = total = trig_in = trig_all = 0
    for f in _ovdas(shared_data):
        arr = np.load(f)
        if f.stem.split("_")[1] == "TR":
            continue        # whole-window tremor has no onset for STA/LTA
        events = (arr[9:14] > 0.5).any(axis=0)
        row = next(r for r in range(8) if np.any(arr[r]))
        trig = detect(arr[row], 100.0)
        total += 1
        hits += any(events[a:b + 1].any() for a, b in trig)
        for r in range(8):
            if np.any(arr[r]):
                for a, b in detect(arr[r], 100.0):
                    trig_all += 1
                    trig_in += bool(events[a:b + 1].any())
    assert hits >= 0.8 * total, f"{hits}/{total}"
    assert trig_in >= 0.8 * trig_all, f"{trig_in}/{trig_all} triggers overlap event masks"
