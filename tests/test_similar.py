"""Similar-event search: exact answers against brute force, the kept index, the CLI, errors."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import similar
from engine.cluster import ClusterModel, FeatureConditioner
from engine.similar import INDEX_FILE, main, similar_events, similar_to_waveform
from engine.store import META_COLUMNS, FeatureStore

ROOT = Path(__file__).resolve().parents[1]


def _write_run(out: Path, X: np.ndarray, clusters=None, stations=None) -> dict:
    n = X.shape[0]
    meta = {c: [""] * n for c in META_COLUMNS}
    meta["event_id"] = [f"ev{i:03d}" for i in range(n)]
    meta["station"] = list(stations) if stations is not None else [f"ST{i % 3}" for i in range(n)]
    meta["start"] = [f"2021-03-01T00:{i // 60:02d}:{i % 60:02d}.000000Z" for i in range(n)]
    FeatureStore(out, {"test": 1}).consolidate(np.asarray(X, dtype=np.float32), meta)
    if clusters is not None:
        rows = ["event_id,station,start,cluster"] + [
            f"{meta['event_id'][i]},{meta['station'][i]},{meta['start'][i]},{clusters[i]}"
            for i in range(n)]
        (out / "assignments.csv").write_text("\n".join(rows) + "\n")
    return meta


@pytest.fixture()
def run(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    clusters = rng.integers(0, 3, size=80)
    meta = _write_run(tmp_path, X, clusters)
    return tmp_path, X.astype(np.float64), clusters, meta


def _brute(X, q, n, exclude=None):
    d = np.sqrt(((X - q) ** 2).sum(axis=1))
    if exclude is not None:
        d[exclude] = np.inf
    order = np.argsort(d, kind="stable")[:n]
    return order, d[order]


def test_similar_events_equal_brute_force(run):
    out, X, clusters, meta = run
    res = similar_events(out, "ev017", n=7)
    order, dist = _brute(X, X[17], 7, exclude=17)
    assert [r.event_id for r in res] == [meta["event_id"][i] for i in order]
    np.testing.assert_allclose([r.distance for r in res], dist, rtol=1e-5)
    assert [r.cluster for r in res] == [str(clusters[i]) for i in order]
    assert [r.station for r in res] == [meta["station"][i] for i in order]
    assert [r.start for r in res] == [meta["start"][i] for i in order]
    # a new feature vector: nothing left out
    q = X[5] + 0.01
    res = similar_events(out, features=q, n=3)
    order, _ = _brute(X, q, 3)
    assert [r.event_id for r in res] == [meta["event_id"][i] for i in order]
    assert res[0].event_id == "ev005"


def test_index_kept_and_rebuilt_when_features_change(run, monkeypatch):
    out, X, clusters, meta = run
    similar_events(out, "ev001", n=2)
    path = out / INDEX_FILE
    assert path.is_file()
    before = path.stat().st_mtime_ns

    def no_build(*a, **k):
        raise AssertionError("index rebuilt although nothing changed")

    monkeypatch.setattr(similar.SimilarIndex, "build", classmethod(no_build))
    similar_events(out, "ev002", n=2)
    assert path.stat().st_mtime_ns == before
    monkeypatch.undo()
    # new features: the index follows
    X2 = X.copy()
    X2[40] = X2[3] + 1e-3
    _write_run(out, X2, clusters)
    assert similar_events(out, "ev003", n=1)[0].event_id == "ev040"
    assert len(list(out.glob(f".{INDEX_FILE}.*"))) == 0        # no temporary left behind


def test_index_uses_model_conditioner(run):
    out, X, clusters, meta = run
    X = X.copy()
    X[:, 0] *= 1000.0                     # raw distances dominated by feature 0
    _write_run(out, X, clusters)
    cond = FeatureConditioner.from_spec("station+standardize").fit(X, groups=meta["station"])
    ClusterModel.from_labels(X, clusters, conditioner=cond, groups=meta["station"]).save(
        out / "model")
    Z = cond.transform(X, groups=meta["station"])
    order, _ = _brute(Z, Z[10], 5, exclude=10)
    res = similar_events(out, "ev010", n=5)
    assert [r.event_id for r in res] == [meta["event_id"][i] for i in order]
    raw_order, _ = _brute(X, X[10], 5, exclude=10)
    assert list(order) != list(raw_order)      # the test would notice a missing conditioner
    res = similar_events(out, features=X[10], groups=[meta["station"][10]], n=1)
    assert res[0].event_id == "ev010" and res[0].distance < 1e-3


def test_cli_prints_csv_nearest_first(run, capsys):
    out, X, clusters, meta = run
    assert main([str(out), "--event", "ev020", "--n", "4"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["event_id", "distance", "cluster", "station", "start"]
    order, dist = _brute(X, X[20], 4, exclude=20)
    assert [r[0] for r in rows[1:]] == [meta["event_id"][i] for i in order]
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(dist, rel=1e-5)
    # asking for more than there is returns every other event
    assert main([str(out), "--event", "ev020", "--n", "500"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 79


def test_cli_errors_one_line_exit_2(run, tmp_path, capsys):
    out, *_ = run
    cases = [([str(tmp_path / "nope"), "--event", "x"], "does not exist"),
             ([str(out), "--event", "ev999"], "event 'ev999' is not in this run"),
             ([str(out), "--waveform", str(tmp_path / "missing.mseed")], "no such file"),
             ([str(out), "--event", "ev001", "--n", "0"], "--n must be >= 1")]
    empty = tmp_path / "empty_run"
    empty.mkdir()
    cases.append(([str(empty), "--event", "x"], "has no features.h5"))
    junk = tmp_path / "junk.mseed"
    junk.write_bytes(b"this is not seismic data\n" * 20)
    cases.append(([str(out), "--waveform", str(junk)], f"--waveform {junk}"))
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], (argv, err)


def test_cli_module_entry_point(run):
    out, *_ = run
    proc = subprocess.run([sys.executable, "-m", "engine.similar", str(out), "--event", "ev000",
                           "--n", "2"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, MQE_NO_PROGRESS="1"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "event_id,distance,cluster,station,start"
    assert len(proc.stdout.splitlines()) == 3


def test_waveform_query_with_run_featurizer(tmp_path):
    """A new event from a file, featurized by the run's own featurizer, finds its twin."""
    from engine.events import Event
    from engine.features import ScalogramStats, save_run_featurizer

    rng = np.random.default_rng(5)
    t = np.arange(3000) / 100.0
    waves = []
    for i in range(12):
        f0 = 2.0 + i
        w = np.sin(2 * np.pi * f0 * t) * np.exp(-((t - 10) / (2 + i % 4)) ** 2)
        waves.append((w + rng.normal(scale=0.02, size=t.size)).astype(np.float32))
    events = [Event(id=f"ev{i:03d}", station="ST0", fs=100.0, data=w) for i, w in enumerate(waves)]
    feat = ScalogramStats(fs=100.0).fit()
    X = np.asarray(feat.transform(events))
    _write_run(tmp_path, X, clusters=np.arange(12) % 2, stations=["ST0"] * 12)
    save_run_featurizer(feat, tmp_path)
    query = tmp_path / "query.npy"
    np.save(query, waves[7][None, :])
    res = similar_to_waveform(tmp_path, query, n=3)
    assert res[0].event_id == "ev007" and res[0].distance < 1e-3 * np.linalg.norm(X[7])
    order, _ = _brute(X.astype(np.float64), X[7].astype(np.float64), 3)
    assert [r.event_id for r in res] == [f"ev{i:03d}" for i in order]
    two = tmp_path / "two.npy"
    np.save(two, np.stack(waves[:2]))
    with pytest.raises(ValueError, match="holds 2 events"):
        similar_to_waveform(tmp_path, two)


def test_waveform_query_with_stand_in_featurizer(run, monkeypatch, capsys):
    """The CLI path of --waveform, with a featurizer that returns known features."""
    import engine.features

    out, X, clusters, meta = run

    class Stub:
        def transform(self, events):
            assert len(events) == 1 and events[0].data.size == 500
            return X[33:34] + 1e-4

    monkeypatch.setattr(engine.features, "load_run_featurizer",
                        lambda run_dir, device="cpu": Stub())
    f = out / "one.npy"
    np.save(f, np.zeros((1, 500), dtype=np.float32))
    assert main([str(out), "--waveform", str(f), "--n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("ev033,")
