"""write_outputs: files, contents, atomicity, and report.html rendering in headless Chromium."""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import make_blobs

from engine.cluster import FuzzyCMeans, scan_k
from engine.report import write_outputs

CHROMIUM = "/usr/bin/chromium"


def _run_data(n=160, k=3, seed=0):
    X, y = make_blobs(n_samples=n, n_features=12, centers=k, random_state=seed)
    names = np.array(["LP", "VT", "TC", "TR"])[y]
    meta = [{"event_id": f"ev{i:04d}", "station": "LAV", "start": f"2020-01-01T00:{i % 60:02d}:00",
             "label": str(names[i])} for i in range(n)]

    def image(i):
        rng = np.random.default_rng(i)
        im = np.zeros((227, 227, 3), np.uint8)
        im[..., y[i] % 3] = 120 + rng.integers(0, 100, (227, 227), dtype=np.uint8)
        return im

    def waveform(i):
        t = np.arange(500) / 100.0
        return np.sin(2 * np.pi * (1 + y[i]) * t) * np.exp(-t), 100.0

    return X, y, meta, image, waveform


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    X, y, meta, image, waveform = _run_data()
    scan = scan_k(X, "kmeans", ks=range(2, 6), random_state=0)
    labels = scan.labels[scan.chosen_k]
    fcm = FuzzyCMeans(scan.chosen_k, random_state=0).fit(X)
    out = tmp_path_factory.mktemp("run")
    written = write_outputs(out, X, labels, meta, scan=scan, memberships=fcm.membership_,
                            images=image, waveforms=waveform,
                            config={"method": "kmeans", "k": "2:5", "seed": 0},
                            versions={"numpy": np.__version__}, method="kmeans")
    return out, written, X, labels, meta


def test_files_and_contents(report_dir):
    out, written, X, labels, meta = report_dir
    for name in ("assignments.csv", "metrics.json", "report.html"):
        assert (out / name).is_file()
    with open(out / "assignments.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(meta)
    assert list(rows[0])[:5] == ["event_id", "station", "start", "cluster", "label"]
    assert [int(r["cluster"]) for r in rows] == labels.tolist()
    assert rows[3]["event_id"] == "ev0003" and rows[3]["label"] == meta[3]["label"]
    assert abs(sum(float(rows[0][f"membership_{j}"]) for j in range(3)) - 1) < 1e-4
    m = json.loads((out / "metrics.json").read_text())
    assert m["k_scan"]["chosen_k"] == 3 and m["k_scan"]["ks"] == [2, 3, 4, 5]
    assert set(m["indices"]) >= {"SIL", "SSW", "SSB", "WB"}
    assert m["label_scores"]["ari"] == pytest.approx(1.0)
    assert m["n_events"] == len(meta)
    figs = {p.stem for p in (out / "figures").glob("*.png")}
    assert figs >= {"kscan", "pca2d", "pca3d", "tsne2d", "tsne3d", "contingency",
                    "gallery_0", "gallery_1", "gallery_2"}
    for p in (out / "figures").glob("*.png"):
        im = np.asarray(Image.open(p).convert("L"))
        assert im.std() > 5, p.name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figs)
    assert "src=\"http" not in html and "href=\"http" not in html   # self-contained
    for text in ("Choice of k", "Cluster indices", "Agreement with known labels",
                 "Run configuration", "Software versions", "ev0"):
        assert text in html
    assert not list(out.rglob("*.tmp"))
    assert written["timings"]["total"] < 60


def test_report_renders_in_chromium(report_dir, tmp_path):
    out = report_dir[0]
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed")
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1200,2000",
           (out / "report.html").resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=90)
    assert shot.is_file()
    im = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert im.shape[:2] == (2000, 1200)
    # not blank: many distinct colours, dark header and white page both present
    assert len(np.unique(im.reshape(-1, 3), axis=0)) > 200
    assert im.std() > 20


def test_without_labels_or_report(tmp_path):
    X, _, meta, _, _ = _run_data(n=60)
    for m in meta:
        m.pop("label")
    lab = np.zeros(60, dtype=np.int64)
    lab[30:] = 1
    w = write_outputs(tmp_path, X, lab, meta, report=False, distances=np.ones(60))
    assert "report" not in w and not (tmp_path / "report.html").exists()
    head = (tmp_path / "assignments.csv").read_text().splitlines()[0]
    assert head == "event_id,station,start,cluster,distance"
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["label_scores"] is None and m["indices"]["K"] == 2


def test_bad_arguments(tmp_path):
    X = np.zeros((5, 3))
    meta = [{"event_id": i} for i in range(4)]
    with pytest.raises(ValueError, match="events_meta has 4 entries but X has 5 rows"):
        write_outputs(tmp_path, X, np.zeros(5, dtype=int), meta)
    with pytest.raises(ValueError, match="labels must be integers"):
        write_outputs(tmp_path, X, np.zeros(3, dtype=int), meta + [{}])
    assert not list(tmp_path.iterdir())
