"""Tests of engine.detect: STA/LTA kernel vs references, triggers, coincidence, config."""
from __future__ import annotations

import numpy as np
import pytest

from engine.detect import (DetectorConfig, coincidence, detect, recursive_sta_lta,
                           recursive_sta_lta_reference, trigger_windows)
from engine.synth import _background, synthetic_event


def test_sta_lta_matches_obspy_without_warm_start():
    from obspy.signal.trigger import recursive_sta_lta as obspy_stalta

    rng = np.random.default_rng(1)
    x = rng.standard_normal(3000)
    x[1500:1700] *= 8
    ours = recursive_sta_lta(x, 50, 400, warm_start=False)
    ref = obspy_stalta(x, 50, 400)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("warm", [True, False])
def test_sta_lta_matches_loop_reference(warm):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1200) * np.linspace(1, 3, 1200)
    np.testing.assert_allclose(recursive_sta_lta(x, 20, 300, warm_start=warm),
                               recursive_sta_lta_reference(x, 20, 300, warm_start=warm),
                               rtol=1e-9, atol=1e-12)


def test_trigger_windows_reference():
    cft = np.array([0, 1, 4, 5, 3, 2, 1, 0.5, 4, 4, 1, 0, 5, 5, 5], dtype=float)
    # on > 3.5, off < 1.5
    assert trigger_windows(cft, 3.5, 1.5) == [(2, 6), (8, 10), (12, 14)]
    # max_len caps the reported end but does not re-trigger inside the same trigger
    long = np.concatenate([[0.0], np.full(20, 5.0), [0.0]])
    assert trigger_windows(long, 3.5, 1.5, max_len=5) == [(1, 6)]


def _noise_with_event(kind: str, onset: float, fs: float = 100.0, n_sec: float = 300.0,
                      snr: float = 20.0, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = _background(int(n_sec * fs), fs, rng)
    ev = synthetic_event(kind, fs, rng)
    i = int(onset * fs)
    x[i:i + len(ev)] += snr * ev
    return x


@pytest.mark.parametrize("kind", ["VT", "LP", "TC"])
def test_detect_finds_event_onset(kind):
    x = _noise_with_event(kind, 150.0)
    trig = detect(x, 100.0)
    onsets = [a / 100.0 for a, _ in trig]
    assert any(abs(o - 150.0) <= 3.0 for o in onsets), onsets


def test_detect_quiet_on_noise():
    rng = np.random.default_rng(4)
    x = _background(100 * 1800, 100.0, rng)  # 30 min of coloured noise
    assert len(detect(x, 100.0)) <= 1


def test_warm_start_finds_event_at_record_start():
    """An event 8 s into a record (inside the first LTA) is found; ObsPy's start blanks it."""
    from obspy.signal.trigger import recursive_sta_lta as obspy_stalta
    from engine.detect import bandpass

    x = _noise_with_event("VT", 8.0, n_sec=90.0)
    onsets = [a / 100 for a, _ in detect(x, 100.0)]
    assert any(abs(o - 8.0) <= 2.0 for o in onsets), onsets
    cft = obspy_stalta(bandpass(x, 100.0, 1.0, 20.0), 100, 2000)
    assert not np.any(cft[:2000] > 3.5)


def test_min_duration_and_band():
    cfg = DetectorConfig(min_duration=30.0, max_duration=60.0)
    x = _noise_with_event("VT", 100.0)  # VT triggers last well under 30 s
    assert detect(x, 100.0, cfg) == []


def test_coincidence_groups():
    trig = {"A": [(10.0, 15.0), (100.0, 110.0)], "B": [(11.0, 14.0), (300.0, 301.0)],
            "C": [(12.5, 20.0)]}
    groups = coincidence(trig, min_stations=2, window=5.0)
    assert len(groups) == 1
    assert set(groups[0]) == {"A", "B", "C"}
    assert coincidence(trig, min_stations=4, window=5.0) == []
    assert len(coincidence(trig, min_stations=1, window=5.0)) == 3


@pytest.mark.parametrize("kw,word", [
    ({"sta": 30.0, "lta": 20.0}, "sta"), ({"on": 1.0, "off": 2.0}, "off"),
    ({"freqmin": 10.0, "freqmax": 5.0}, "freqmin"), ({"min_stations": 0}, "min_stations"),
    ({"pre": -1.0}, "pre"), ({"max_window": 0}, "max_window"),
])
def test_config_validation(kw, word):
    with pytest.raises(ValueError, match=word):
        DetectorConfig(**kw).validate()


def test_config_roundtrip():
    cfg = DetectorConfig(sta=0.5, freqmax=None)
    assert DetectorConfig.from_dict({**cfg.to_dict(), "unrelated": 1}) == cfg
