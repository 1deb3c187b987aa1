"""The featurizer seam: table, fingerprints, the three featurizers, the main job with each."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.events import Event
from engine.features import (FEATURIZERS, describe_featurizers, load_run_featurizer,
                             make_featurizer)
from engine.features.base import Featurizer, file_digest
from engine.features.pixels import block_mean, jet_to_scalar
from engine.features.scalostats import scalogram_stats
from engine.run import main


@pytest.fixture(scope="module")
def events() -> list[Event]:
    """A few planted LP and VT events of the synthetic generator."""
    from engine.sources import open_source
    from engine.synth import write_archive
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    try:
        archive = write_archive(tmp / "a", days=0.03, stations=1, seed=5, rate=40)
        source = open_source(archive=str(archive))
        evs = [e for key in source.chunks() for e in source.read_chunk(key).events]
    finally:
        shutil.rmtree(tmp)
    assert len(evs) >= 6
    return evs[:8]


def test_table_lists_three_featurizers_with_descriptions(capsys):
    assert len(FEATURIZERS) >= 3
    assert list(FEATURIZERS)[0] == "superlet-cnn"  # the default
    with pytest.raises(SystemExit) as exc:
        main(["--list-features"])
    assert exc.value.code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(FEATURIZERS)
    for line, (name, text) in zip(lines, describe_featurizers()):
        assert line.split()[0] == name and text in line and len(text) > 20


def test_unknown_featurizer_is_named():
    with pytest.raises(ValueError, match="unknown featurizer 'nope'.*pixels"):
        make_featurizer("nope")
    with pytest.raises(SystemExit):  # argparse refuses the choice
        main(["--features", "nope"])


def test_make_featurizer_drops_parameters_it_does_not_take():
    f = make_featurizer("pixels", size=16, weights="x.mat", feature_layer="conv10")
    assert f.get_params()["size"] == 16 and "weights" not in f.get_params()


@pytest.mark.parametrize("name", list(FEATURIZERS))
def test_each_featurizer_gives_finite_fixed_width_features(name, events):
    f = make_featurizer(name).fit()
    X = f.transform(events)
    assert X.dtype == np.float32 and X.shape[0] == len(events) and X.shape[1] >= 32
    assert np.isfinite(X).all()
    assert X.std(axis=0).max() > 0  # not constant
    # batches do not change features beyond float rounding
    X2 = np.concatenate([f.transform(events[:3]), f.transform(events[3:])])
    np.testing.assert_allclose(X2, X, rtol=1e-3, atol=1e-4 * np.abs(X).max())
    fp = f.fingerprint()
    assert fp["featurizer"] == name and json.loads(json.dumps(fp)) == fp


def test_image_only_events_are_refused_by_waveform_featurizers(events):
    img = Event(id="img1", image=np.zeros((227, 227, 3), np.uint8), source="x/LP/1.png")
    with pytest.raises(ValueError, match="scalogram-stats.*needs samples.*img1.*only an image"):
        make_featurizer("scalogram-stats").fit().transform([img])
    X = make_featurizer("pixels").fit().transform([img])  # images are fine for pixels
    assert X.shape == (1, 32 * 32)


def test_jet_inversion_recovers_the_encoded_scalar():
    from engine.images import jet

    lut = np.floor(jet(256) * 255 + 0.5).astype(np.uint8)
    values = np.arange(256)
    rgb = lut[values][None, None, :, :]  # (1, 1, 256, 3)
    back = jet_to_scalar(rgb)[0, 0].astype(int)
    # 6-bit quantisation of the colours: within a few levels everywhere
    assert np.abs(back - values).max() <= 4


def test_block_mean_equals_plain_loops():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 23, 17)).astype(np.uint8)
    got = block_mean(a, 5)
    rows, cols = np.linspace(0, 23, 6).astype(int), np.linspace(0, 17, 6).astype(int)
    want = np.empty((2, 5, 5))
    for n in range(2):
        for i in range(5):
            for j in range(5):
                want[n, i, j] = a[n, rows[i]:rows[i + 1], cols[j]:cols[j + 1]].mean()
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_scalogram_stats_describe_what_they_say():
    freqs = np.linspace(1, 25, 121)
    t = np.arange(2000)
    # a 2 Hz event growing then decaying vs a 15 Hz impulsive one
    low = np.zeros((121, 2000))
    low[np.argmin(np.abs(freqs - 2))] = np.exp(-((t - 1000) / 300.0) ** 2)
    high = np.zeros((121, 2000))
    high[np.argmin(np.abs(freqs - 15))] = np.exp(-t / 50.0)
    a, b = scalogram_stats(low, freqs, 100.0), scalogram_stats(high, freqs, 100.0)
    assert a.shape == (24 + 16 + 16 + 6,)
    nb, nt = 24, 16
    centroid = nb + 2 * nt + 1
    assert 2 ** a[centroid] == pytest.approx(2.0, rel=0.05)
    assert 2 ** b[centroid] == pytest.approx(15.0, rel=0.05)
    peak_time, impulsive = nb + 2 * nt + 3, nb + 2 * nt + 4
    assert a[peak_time] == pytest.approx(0.5, abs=0.01) and b[peak_time] < 0.01
    assert b[impulsive] > a[impulsive]
    assert a[nb + 2 * nt] == pytest.approx(np.log10(20.0))  # 2000 samples at 100 Hz
    # amplitude drops out
    np.testing.assert_allclose(scalogram_stats(low * 1e6, freqs, 100.0), a, atol=1e-9)
    assert np.isfinite(scalogram_stats(np.zeros((121, 50)), freqs, 100.0)).all()


def test_weights_identity_is_the_content_not_the_path(tmp_path):
    from engine.features.weights import default_weights_path

    src = default_weights_path()
    copy = tmp_path / "w.safetensors"
    shutil.copy(src, copy)
    shutil.copy(src.with_suffix(".json"), copy.with_suffix(".json"))
    rel = os.path.relpath(copy)
    fps = [make_featurizer("superlet-cnn", weights=w).fingerprint()
           for w in (None, str(src), str(copy), rel)]
    assert all(fp == fps[0] for fp in fps)
    assert file_digest(copy) == file_digest(rel)
    other = tmp_path / "o.safetensors"
    other.write_bytes(src.read_bytes()[:-1] + b"\0")
    assert make_featurizer("superlet-cnn", weights=str(other)).fingerprint() != fps[0]
    fp = make_featurizer("superlet-cnn", feature_layer="fire9_gap").fingerprint()
    assert fp["layer"] == "fire9_gap" and fp != fps[0]


def test_bad_weights_are_refused_before_any_work(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert main(["--weights", str(notes), "--out", str(tmp_path / "o")]) == 2
    assert "--weights" in capsys.readouterr().err and not (tmp_path / "o").exists()


class _Mean(Featurizer):
    """A two-file featurizer as a user would write it (here: a test double)."""

    name = "mean"
    description = "mean and std of the samples"
    needs = "waveforms"

    def __init__(self, fs: float = 100.0) -> None:
        self.fs = fs

    def _fit(self, events):
        pass

    def _transform(self, events):
        return np.array([[e.data.mean(), e.data.std()] for e in events])

    def _fingerprint(self):
        return {"fs": self.fs}


def test_a_new_featurizer_needs_only_its_class_and_a_table_line(monkeypatch, tmp_path):
    monkeypatch.setitem(FEATURIZERS, "mean", _Mean)
    out = tmp_path / "o"
    assert main(["--features", "mean", "--out", str(out), "--synthetic-days", "0.03",
                 "--synthetic-rate", "30", "--k", "2", "--no-report"]) == 0
    import h5py

    with h5py.File(out / "features.h5") as h5:
        assert h5["features"].shape[1] == 2
    assert json.loads((out / "featurizer.json").read_text())["name"] == "mean"


@pytest.mark.parametrize("name", ["pixels", "scalogram-stats"])
def test_main_job_runs_end_to_end_with_each_featurizer(name, tmp_path):
    out = tmp_path / name
    assert main(["--features", name, "--out", str(out), "--synthetic-days", "0.04",
                 "--synthetic-rate", "30", "--chunk-length", "900", "--k", "2:3"]) == 0
    assert (out / "report.html").is_file() and (out / "assignments.csv").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["featurizer"]["fingerprint"]["featurizer"] == name
    f = load_run_featurizer(out)
    assert f.name == name and f.fingerprint() == metrics["config"]["featurizer"]["fingerprint"]
    # the saved clustering refuses features of another featurizer before computing any
    other = "pixels" if name != "pixels" else "scalogram-stats"
    calls = []
    import engine.pipeline as pipeline_mod

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(pipeline_mod, "compute_chunks", lambda *a, **k: calls.append(1))
    try:
        code = main(["--features", other, "--out", str(tmp_path / "x"), "--synthetic-days",
                     "0.04", "--synthetic-rate", "30", "--chunk-length", "900",
                     "--assign-to", str(out / "model.npz")])
    finally:
        monkeypatch.undo()
    assert code == 1 and calls == []


def test_models_without_a_feature_fingerprint_are_refused(tmp_path):
    from engine.cluster import ClusterModel
    from engine.clustering_stage import check_model_features

    X = np.random.default_rng(0).normal(size=(20, 4))
    labels = np.repeat([0, 1], 10)
    ClusterModel.from_labels(X, labels, provenance={"weights": "default"}).save(tmp_path / "m")
    with pytest.raises(ValueError, match="does not record which features"):
        check_model_features(str(tmp_path / "m.npz"), make_featurizer("pixels"))
