"""The main job end to end: synthetic default, resume, interruption, Dask, real data."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import pipeline
from engine.config import parse_args
from engine.run import main, run

DAYS = "0.04"  # ~58 minutes of a 2-station synthetic archive: a few dozen events


def _assignments(out: Path) -> list[dict]:
    with open(out / "assignments.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _same_assignments(a: list[dict], b: list[dict]) -> None:
    """Same events and clusters; distances equal to float32 feature noise.

    Features depend on the batch an event was computed in only through
    rounding (FFT length of the padded batch, CNN kernels chosen by batch size),
    so a resumed or distributed run matches a plain one to ~1e-5 relative.
    """
    assert [r["event_id"] for r in a] == [r["event_id"] for r in b]
    assert [r["cluster"] for r in a] == [r["cluster"] for r in b]
    da = np.array([float(r["distance"]) for r in a])
    db = np.array([float(r["distance"]) for r in b])
    np.testing.assert_allclose(da, db, rtol=1e-3)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    code = main(["--out", str(out), "--synthetic-days", DAYS, "--synthetic-rate", "30", "--k", "2:4",
                 "--chunk-length", "900"])
    assert code == 0
    return out


def test_default_run_writes_every_output(synthetic_run):
    out = synthetic_run
    for name in ("assignments.csv", "metrics.json", "report.html", "config.toml",
                 "summary.json", "features.h5", "model.npz", "model.json"):
        assert (out / name).is_file(), name
    rows = _assignments(out)
    summary = json.loads((out / "summary.json").read_text())
    assert len(rows) == summary["events"] > 10
    assert summary["chunks"] >= 8 and summary["skipped"] == []
    # planted events carry their catalogue type, so the report can score clusters
    labels = {r["label"] for r in rows}
    assert labels & {"LP", "VT", "TR", "TC", "OV"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert 2 <= metrics["k_scan"]["chosen_k"] <= 4
    assert {"SIL", "SSW", "SSB", "WB"} <= set(metrics["indices"])
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Choice of k" in html


def test_resume_recomputes_only_missing_chunks(synthetic_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(synthetic_run, out)
    before = _assignments(out)
    parts = sorted((out / "store" / "parts").glob("*.npz"))
    parts[0].unlink()
    cfg = parse_args(["--out", str(out), "--synthetic-days", DAYS, "--synthetic-rate", "30", "--k", "2:4",
                      "--chunk-length", "900"])
    summary = run(cfg)
    assert summary.chunks_resumed == summary.chunks - 1
    _same_assignments(_assignments(out), before)


def test_interrupted_run_loses_only_the_chunk_in_flight(tmp_path, monkeypatch,
                                                       synthetic_run):
    out = tmp_path / "out"
    out.mkdir()
    # reuse the generated archive (same seed and size, so the same fingerprint)
    shutil.copytree(synthetic_run / "synthetic_archive", out / "synthetic_archive")
    argv = ["--out", str(out), "--synthetic-days", DAYS, "--synthetic-rate", "30", "--k", "2:4",
            "--chunk-length", "900"]
    real = pipeline.compute_chunks
    calls = {"n": 0, "done": 0}

    def dying(results, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed in the middle of the third group of chunks
        calls["done"] += len(results)
        return real(results, *args, **kwargs)

    monkeypatch.setattr("engine.pipeline.compute_chunks", dying)
    assert main(argv + ["--batch", "4"]) == 130
    parts = list((out / "store" / "parts").glob("*"))
    assert len(parts) == calls["done"] >= 2 and all(p.suffix == ".npz" for p in parts)
    monkeypatch.setattr("engine.pipeline.compute_chunks", real)
    assert main(argv) == 0
    _same_assignments(_assignments(out), _assignments(synthetic_run))


def test_dask_local_cluster_gives_the_same_assignments(synthetic_run, tmp_path):
    out = tmp_path / "dask"
    out.mkdir()
    shutil.copytree(synthetic_run / "synthetic_archive", out / "synthetic_archive")
    code = main(["--out", str(out), "--synthetic-days", DAYS, "--synthetic-rate", "30", "--k", "2:4",
                 "--chunk-length", "900", "--dask-local", "2", "--no-report"])
    assert code == 0
    with np.load(next((out / "store" / "parts").glob("*.npz"))) as z:
        assert z["features"].dtype == np.float32
    _same_assignments(_assignments(out), _assignments(synthetic_run))


def test_changed_configuration_is_refused(synthetic_run, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(synthetic_run, out)
    code = main(["--out", str(out), "--synthetic-days", DAYS, "--synthetic-rate", "30", "--chunk-length", "900",
                 "--sta", "2"])
    assert code == 1
    assert "differs in: sta" in capsys.readouterr().err


def test_bad_input_gives_clear_errors(tmp_path, capsys):
    assert main(["--archive", str(tmp_path / "missing")]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--archive", str(empty), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "empty" in err


def test_cuda_without_a_gpu_names_the_extra(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    assert main(["--device", "cuda", "--out", str(tmp_path / "o")]) == 1
    assert "microquake-engine[gpu]" in capsys.readouterr().err


def test_real_bezymianny_miniseed_end_to_end(shared_data, tmp_path):
    out = tmp_path / "bzm"
    code = main(["--archive", str(shared_data / "bezymianny_vt"), "--out", str(out),
                 "--k", "2", "--no-report", "--channel", "*"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files_read"] >= 16 and summary["events"] >= 10
    rows = _assignments(out)
    assert {r["station"].split(".")[-1] for r in rows} >= {"BZ01", "BZ06"}


@pytest.mark.slow
def test_paper_mode_llaima_images_with_matlab_network(shared_data, tmp_path):
    out = tmp_path / "llaima"
    code = main(["--images", str(shared_data / "llaima_sample"), "--out", str(out),
                 "--weights", str(shared_data / "cotopaxi_squeezenet.mat"),
                 "--feature-layer", "conv10", "--method", "ward", "--k", "3", "--no-report"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    scores = metrics["label_scores"]
    # method.md: Ward puts 85% of LP in one cluster on all 3592 images; on the
    # balanced 400-image sample the helper measured 94% at k=3.
    assert scores["per_class"]["LP"]["share"] >= 0.85
    assert 0.3 <= scores["ari"] <= 0.7
    with __import__("h5py").File(out / "features.h5") as h5:
        assert h5["features"].shape == (400, 392)


def test_hdf5_event_sets_in_the_llaima_layout(tmp_path):
    """--events: one HDF5 file per class, MATLAB shape 1 x 6000 x N (h5py: N x 6000 x 1)."""
    import h5py

    from engine.synth import synthetic_events

    events = synthetic_events(6, seed=5, kinds=("LP", "VT"))
    folder = tmp_path / "llaima"
    folder.mkdir()
    for kind in ("LP", "VT"):
        traces = [e.data for e in events if e.label == kind]
        arr = np.zeros((len(traces), 6000, 1), np.float64)
        for i, tr in enumerate(traces):  # padded at the end with a constant, as published
            arr[i, : tr.size, 0] = tr
            arr[i, tr.size:, 0] = tr[-1]
        with h5py.File(folder / f"{kind}.h5", "w") as h5:
            h5.create_dataset(kind, data=arr)
    out = tmp_path / "out"
    assert main(["--events", str(folder), "--out", str(out), "--k", "2", "--no-report"]) == 0
    rows = _assignments(out)
    assert len(rows) == 12 and {r["label"] for r in rows} == {"LP", "VT"}
    scores = json.loads((out / "metrics.json").read_text())["label_scores"]
    assert scores["ari"] > 0.5  # LP and VT images are far apart for any sane features


def test_assign_new_events_to_a_saved_clustering(synthetic_run, tmp_path, capsys):
    out = tmp_path / "again"
    shutil.copytree(synthetic_run, out)
    for name in ("assignments.csv", "metrics.json", "model.npz", "model.json"):
        (out / name).unlink()
    model = synthetic_run / "model.npz"
    argv = ["--out", str(out), "--synthetic-days", DAYS, "--synthetic-rate", "30",
            "--chunk-length", "900", "--no-report"]
    assert main(argv + ["--assign-to", str(model)]) == 0
    new, old = _assignments(out), _assignments(synthetic_run)
    assert len(new) == len(old)
    known = [(a["cluster"], b["cluster"]) for a, b in zip(new, old) if a["cluster"] != "-1"]
    # the default lda-kmeans labels are the nearest centres in its discriminant
    # subspace, which the saved model keeps; only the far tail of each cluster
    # (beyond its 99th-percentile distance) is flagged as none of the families
    meta = json.loads((synthetic_run / "model.json").read_text())
    assert meta["method"] == "lda-kmeans"
    with np.load(model) as z:
        assert z["projection"].shape == (meta["n_features"], meta["n_clusters"] - 1)
    assert all(a == b for a, b in known) and len(known) >= 0.85 * len(new)
    assert not (out / "model.npz").exists()  # assigning does not make a new model
    # a model built on other features is refused, naming the difference
    meta = json.loads((synthetic_run / "model.json").read_text())
    meta["provenance"]["features"]["weights"] = "sha256:0123456789abcdef"
    shutil.copy(model, tmp_path / "other.npz")
    (tmp_path / "other.json").write_text(json.dumps(meta))
    assert main(argv + ["--assign-to", str(tmp_path / "other.npz")]) == 1
    assert "weights: model 'sha256:0123456789abcdef'" in capsys.readouterr().err


def test_methods_without_gpu_backend_cluster_on_the_cpu_in_a_cuda_run():
    from engine.cluster import make_clusterer
    from engine.clustering_stage import clustering_device

    assert clustering_device("kmeans", "cuda") == "auto"  # GPU backend if installed
    assert clustering_device("kmeans", "cpu") == "cpu"
    for method in ("kmedoids", "single", "ward", "fcm", "gmm", "hdbscan"):
        dev = clustering_device(method, "cuda")
        assert dev == "cpu"
        make_clusterer(method, 3, device=dev)  # accepted (device="cuda" is refused)
        with pytest.raises(ValueError, match="no GPU backend"):
            make_clusterer(method, 3, device="cuda")


def test_out_pointing_to_a_file_is_one_line_before_any_work(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    assert main(["--out", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "is a file" in err[0]
    assert target.read_text() == "x"


def test_summary_names_the_report_and_novel_events(synthetic_run, tmp_path, capsys):
    out = tmp_path / "assign"
    shutil.copytree(synthetic_run, out)
    stale = out / "model.npz"
    assert stale.exists()  # an earlier clustering of this folder ...
    argv = ["--out", str(out), "--synthetic-days", DAYS, "--synthetic-rate", "30",
            "--chunk-length", "900", "--assign-to", str(synthetic_run / "model.npz")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"report           {out / 'report.html'}" in text
    novel = sum(r["cluster"] == "-1" for r in _assignments(out))
    assert f"novel events     {novel} " in text
    assert not stale.exists() and not (out / "model.json").exists()  # ... is not left behind


def test_conditioning_is_stored_and_k_choice_explained(synthetic_run):
    from engine.cluster import ClusterModel

    model = ClusterModel.load(synthetic_run / "model.npz")
    assert model.conditioner is not None and model.conditioner.spec == "standardize+pca50+l2"
    metrics = json.loads((synthetic_run / "metrics.json").read_text())
    scan = metrics["k_scan"]
    assert scan["criterion"] == "auto" and scan["reason"].startswith(f"k={scan['chosen_k']}")
    html = (synthetic_run / "report.html").read_text()
    assert "rule: auto" in html and "Repeating families (mutual nearest neighbours)" in html


def test_bad_condition_spec_is_refused_before_any_work(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--condition", "pca0x"]) == 2
    assert "--condition 'pca0x'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_k_larger_than_a_known_input_is_refused_before_features(tmp_path, capsys,
                                                               monkeypatch):
    arr = np.random.default_rng(0).normal(size=(5, 3000)).astype(np.float32)
    np.save(tmp_path / "ev.npy", arr)
    called = []
    monkeypatch.setattr("engine.pipeline.compute_chunks", lambda *a, **k: called.append(1))
    assert main(["--events", str(tmp_path / "ev.npy"), "--k", "6",
                 "--out", str(tmp_path / "o")]) == 1
    assert "--k 6 needs more events than the 5" in capsys.readouterr().err
    assert called == []


@pytest.mark.slow
def test_adapt_trains_once_then_reuses_the_adapted_weights(tmp_path, caplog):
    import logging

    out = tmp_path / "adapt"
    argv = ["--out", str(out), "--synthetic-days", "0.03", "--synthetic-rate", "30",
            "--adapt", "--adapt-budget", "5", "--adapt-events", "40", "--k", "2",
            "--no-report"]
    assert main(argv) == 0
    weights = out / "adapted_squeezenet.safetensors"
    assert weights.is_file() and (out / "adapted_squeezenet.json").is_file()
    fp = json.loads((out / "featurizer.json").read_text())
    from engine.features.base import file_digest

    assert fp["fingerprint"]["weights"] == file_digest(weights)  # features from them
    assert fp["params"]["weights"] == str(weights.resolve())
    stamp = weights.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="engine"):
        assert main(argv) == 0
    assert weights.stat().st_mtime_ns == stamp and "reusing" in caplog.text
    assert main(argv + ["--features", "pixels"]) == 2  # nothing to adapt: refused
