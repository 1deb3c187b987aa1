"""write_outputs: files, contents, atomicity, and report.html rendering in headless Chromium."""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import make_blobs

from engine.cluster import FuzzyCMeans, scan_k
from engine.report import remove_stale_report, write_outputs
from engine.report.figures import cluster_colour_map, hex_colour, occurrence_png

FREQ = (1.0, 2.0, 3.0, 4.0)   # Hz of the synthetic waveform of each class


def _run_data(n=160, k=3, seed=0):
    X, y = make_blobs(n_samples=n, n_features=12, centers=k, random_state=seed)
    names = np.array(["LP", "VT", "TC", "TR"])[y]
    meta = []
    for i in range(n):
        # class c occurs only in hour c of the day: the occurrence figure must show it
        start = f"2020-01-01T{y[i]:02d}:{i % 60:02d}:00.000000Z"
        m = {"event_id": f"ev{i:04d}", "station": "XX.LAV", "channel": "HHZ", "start": start,
             "end": f"2020-01-01T{y[i]:02d}:{i % 60:02d}:05.000000Z", "duration": 5.0,
             "amplitude": float(10 ** (y[i] + 1)), "snr": 3.0 + y[i], "label": str(names[i])}
        if i % 7 == 0:           # some inputs lack the new keys: must not break anything
            for key in ("end", "duration", "amplitude", "snr", "channel"):
                m.pop(key)
        meta.append(m)

    def image(i):
        rng = np.random.default_rng(i)
        im = np.zeros((227, 227, 3), np.uint8)
        im[..., y[i] % 3] = 120 + rng.integers(0, 100, (227, 227), dtype=np.uint8)
        return im

    def waveform(i):
        t = np.arange(500) / 100.0
        return np.sin(2 * np.pi * FREQ[y[i]] * t) * np.exp(-t), 100.0

    return X, y, meta, image, waveform


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    X, y, meta, image, waveform = _run_data()
    scan = scan_k(X, "kmeans", ks=range(2, 6), random_state=0)
    labels = scan.labels[scan.chosen_k]
    fcm = FuzzyCMeans(scan.chosen_k, random_state=0).fit(X)
    out = tmp_path_factory.mktemp("run")
    written = write_outputs(out, X, labels, meta, scan=scan, memberships=fcm.membership_,
                            images=image, waveforms=waveform, bandpass=(0.5, 10.0),
                            config={"method": "kmeans", "k": "2:5", "seed": 0},
                            versions={"numpy": np.__version__}, method="kmeans",
                            explore_max=60)
    return out, written, X, labels, meta, y


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_files_and_contents(report_dir):
    out, written, X, labels, meta, y = report_dir
    for name in ("assignments.csv", "representatives.csv", "metrics.json", "report.html"):
        assert (out / name).is_file()
    rows = _rows(out / "assignments.csv")
    assert len(rows) == len(meta)
    assert list(rows[0])[:10] == ["event_id", "station", "channel", "start", "end", "duration_s",
                                  "peak_amplitude", "snr", "cluster", "label"]
    assert [int(r["cluster"]) for r in rows] == labels.tolist()
    assert rows[3]["event_id"] == "ev0003" and rows[3]["label"] == meta[3]["label"]
    assert rows[3]["channel"] == "HHZ" and float(rows[3]["duration_s"]) == 5.0
    assert float(rows[3]["peak_amplitude"]) == meta[3]["amplitude"]
    assert float(rows[3]["snr"]) == meta[3]["snr"]
    assert rows[7]["end"] == rows[7]["duration_s"] == rows[7]["snr"] == rows[7]["channel"] == ""
    assert abs(sum(float(rows[0][f"membership_{j}"]) for j in range(3)) - 1) < 1e-4
    m = json.loads((out / "metrics.json").read_text())
    assert m["k_scan"]["chosen_k"] == 3 and m["k_scan"]["ks"] == [2, 3, 4, 5]
    assert set(m["indices"]) >= {"SIL", "SSW", "SSB", "WB"}
    assert m["label_scores"]["ari"] == pytest.approx(1.0)
    assert m["n_events"] == len(meta) and m["n_noise"] == 0
    assert m["data"]["stations"] == ["XX.LAV"] and m["data"]["channels"] == ["HHZ"]
    assert m["data"]["first_event"].startswith("2020-01-01T00:0")
    assert m["data"]["last_event"].startswith("2020-01-01T02:5")
    # per-family summaries: the clusters are the classes, so the numbers are the classes'
    for c, fam in m["families"].items():
        cls = int(np.bincount(y[labels == int(c)]).argmax())
        assert fam["duration_s_median"] == 5.0
        assert fam["amplitude_median"] == pytest.approx(10.0 ** (cls + 1))
        assert fam["snr_median"] == pytest.approx(3.0 + cls)
        assert fam["dominant_freq_hz_median"] == pytest.approx(FREQ[cls], abs=0.2)
        assert fam["first"].startswith(f"2020-01-01T{cls:02d}:")
    figs = {p.stem for p in (out / "figures").glob("*.png")}
    assert figs >= {"kscan", "pca2d", "pca3d", "tsne2d", "tsne3d", "contingency", "occurrence",
                    "families", "gallery_0", "gallery_1", "gallery_2"}
    for p in (out / "figures").glob("*.png"):
        with Image.open(p) as im:
            assert im.info["dpi"][0] == pytest.approx(150, abs=1), p.name
            if p.stem in ("occurrence", "families", "kscan", "pca2d", "tsne2d") \
                    or p.stem.startswith("gallery"):
                assert im.size[0] >= 1400, (p.name, im.size)   # full page width at 150 dpi
            assert np.asarray(im.convert("L")).std() > 5, p.name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figs)
    assert "src=\"http" not in html and "href=\"http" not in html   # self-contained
    for text in ("Choice of k", "Cluster indices", "Agreement with catalogue labels",
                 "When each family occurs", "Explore the feature space", "Output files",
                 "Run configuration", "Software versions", "ev0", "catalogue's label",
                 "band-passed 0.5-10 Hz", "All times are UTC", "PC1 (",
                 "Clustering: <code>kmeans</code>, k-means, greedy k-means++ start"):
        assert text in html, text
    # galleries in cluster order
    heads = re.findall(r'<h3 id="gallery-(-?\d+|novel|noise)"', html)
    assert heads == ["0", "1", "2"]
    assert not list(out.rglob("*.tmp"))
    assert written["timings"]["total"] < 120


def test_representatives_are_closest_to_the_centre(report_dir):
    out, _, X, labels, meta, _ = report_dir
    rows = _rows(out / "representatives.csv")
    assert list(rows[0]) == ["cluster", "rank", "event_id", "distance"]
    for c in np.unique(labels):
        mine = [r for r in rows if int(r["cluster"]) == c]
        assert [int(r["rank"]) for r in mine] == [1, 2, 3, 4, 5]
        # slow obvious reference: mean of the members, every member's distance, sort
        members = [i for i in range(len(labels)) if labels[i] == c]
        centre = sum(X[i] for i in members) / len(members)
        ref = sorted((float(np.sqrt(((X[i] - centre) ** 2).sum())), meta[i]["event_id"])
                     for i in members)[:5]
        assert [r["event_id"] for r in mine] == [e for _, e in ref]
        np.testing.assert_allclose([float(r["distance"]) for r in mine], [d for d, _ in ref],
                                   rtol=1e-5)


def test_one_colour_per_cluster_across_panels(report_dir):
    out, _, _, labels, _, _ = report_dir
    colours = cluster_colour_map(np.unique(labels))
    occ = np.asarray(Image.open(out / "figures" / "occurrence.png").convert("RGB")).reshape(-1, 3)
    present = {tuple(v) for v in np.unique(occ, axis=0)}
    html = (out / "report.html").read_text()
    for c, rgba in colours.items():
        rgb = tuple(int(round(255 * v)) for v in rgba[:3])
        assert rgb in present, (c, rgb)                       # the bars of cluster c
        h = hex_colour(rgba)
        assert f'<span class="sw" style="background:{h}"></span>cluster {c}' in html
        fills = set(re.findall(r'fill="(#[0-9a-f]{6})" data-i="\d+" data-id="ev(\d+)"', html))
        assert fills and all(f == hex_colour(colours[int(labels[int(e)])]) for f, e in fills)


def test_explorer_thumbnails_belong_to_their_events(report_dir):
    out, _, _, _, _, y = report_dir
    html = (out / "report.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="xp-data">(.*?)</script>',
                                html, re.S).group(1))
    assert 60 <= len(data["points"]) <= 60 + 3 * 8 and len(data["thumbs"]) == len(data["points"])
    for p in data["points"]:
        i = int(p["id"][2:])
        raw = base64.b64decode(data["thumbs"][p["th"]].split(",", 1)[1])
        im = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=float)
        assert im.shape == (128, 128, 3)
        assert int(im.mean(axis=(0, 1)).argmax()) == y[i] % 3     # the event's own image
        assert p["t"].startswith(f"2020-01-01T{y[i]:02d}:")


def test_assign_run_novel_gallery_and_no_k_scan(tmp_path):
    X, y, meta, image, waveform = _run_data(n=90)
    labels = y.astype(np.int64)
    labels[::9] = -1                                   # 10 novel events
    scan = scan_k(X, "kmeans", ks=range(2, 4), random_state=0)  # must not be mentioned
    w = write_outputs(tmp_path, X, labels, meta, scan=scan, images=image, waveforms=waveform,
                      distances=np.linspace(0, 1, 90), assign_to="old/model.npz",
                      method="assigned to old/model.npz", versions={}, explore_max=20)
    assert (tmp_path / "figures" / "gallery_novel.png").is_file()
    html = (tmp_path / "report.html").read_text()
    assert "Choice of k" not in html and "k scan" not in html and "chosen k" not in html
    assert "<b>10</b><span>novel events</span>" in html
    heads = re.findall(r'<h3 id="gallery-(-?\d+)"', html)
    assert heads == ["0", "1", "2", "-1"]              # novel events last, own gallery
    assert "nearest centre of the saved clustering (old/model.npz)" in html
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n_novel"] == 10 and m["k_scan"] is None and m["assign_to"] == "old/model.npz"
    assert "figures" in w


def test_image_only_events(tmp_path):
    X, _, _, image, _ = _run_data(n=40)
    meta = [{"event_id": f"LP/{i}", "station": None, "start": None, "label": None}
            for i in range(40)]
    lab = (np.arange(40) >= 20).astype(np.int64)
    write_outputs(tmp_path, X, lab, meta, images=image, versions={}, explore_max=10,
                  method="ward")
    html = (tmp_path / "report.html").read_text()
    # no k scan: the method is named once, with its description from the method table
    assert ("Each event was put into one cluster. Clustering: <code>ward</code>, "
            "Ward hierarchical.") in html
    assert "When each family occurs" not in html            # no times, no occurrence figure
    assert "unknown (image input)" in html
    rows = _rows(tmp_path / "assignments.csv")
    assert rows[0]["start"] == rows[0]["station"] == rows[0]["end"] == ""
    assert not (tmp_path / "figures" / "occurrence.png").exists()
    with pytest.raises(ValueError, match="no event has a known time"):
        occurrence_png(np.full(3, np.nan), np.zeros(3, int))


def test_without_labels_or_report_removes_stale_report(tmp_path):
    X, _, meta, image, _ = _run_data(n=60)
    for m in meta:
        m.pop("label")
    lab = np.zeros(60, dtype=np.int64)
    lab[30:] = 1
    lab3 = lab.copy()
    lab3[50:] = 2
    write_outputs(tmp_path, X, lab3, meta, images=image, versions={}, explore_max=5)
    assert (tmp_path / "figures" / "gallery_2.png").is_file()
    # a report run with fewer clusters removes the old cluster's gallery
    write_outputs(tmp_path, X, lab, meta, images=image, versions={}, explore_max=5)
    assert not (tmp_path / "figures" / "gallery_2.png").exists()
    assert (tmp_path / "figures" / "gallery_1.png").is_file()
    w = write_outputs(tmp_path, X, lab, meta, report=False, distances=np.ones(60))
    assert "report" not in w and not (tmp_path / "report.html").exists()
    assert not (tmp_path / "figures").exists()
    assert any(p.name == "report.html" for p in w["removed"])
    head = (tmp_path / "assignments.csv").read_text().splitlines()[0]
    assert head == ("event_id,station,channel,start,end,duration_s,peak_amplitude,snr,cluster,"
                    "distance")
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["label_scores"] is None and m["indices"]["K"] == 2
    assert (tmp_path / "representatives.csv").is_file()
    # the helper alone: keeps files a user put into figures/
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "old.png").write_bytes(b"x")
    (tmp_path / "figures" / "notes.txt").write_text("mine")
    (tmp_path / "report.html").write_text("old")
    removed = remove_stale_report(tmp_path)
    assert {p.name for p in removed} == {"old.png", "report.html"}
    assert (tmp_path / "figures" / "notes.txt").is_file()
    assert remove_stale_report(tmp_path / "does-not-exist") == []


def test_bad_arguments(tmp_path):
    X = np.zeros((5, 3))
    meta = [{"event_id": i} for i in range(4)]
    with pytest.raises(ValueError, match="events_meta has 4 entries but X has 5 rows"):
        write_outputs(tmp_path, X, np.zeros(5, dtype=int), meta)
    with pytest.raises(ValueError, match="labels must be integers"):
        write_outputs(tmp_path, X, np.zeros(3, dtype=int), meta + [{}])
    with pytest.raises(ValueError, match="bandpass must be"):
        write_outputs(tmp_path, X, np.zeros(5, dtype=int), meta + [{}], bandpass=(5, 1))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ headless Chromium
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    msg = "no headless Chromium on PATH (chromium, chromium-browser or google-chrome)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + "; CI must install it (.ci/run installs Debian's chromium)")
    pytest.skip(msg + " (install Debian's `chromium` to run this check)")


def _chrome_cmd(tmp_path: Path, *args: str) -> list[str]:
    return [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", *args]


def test_report_renders_in_chromium(report_dir, tmp_path):
    out = report_dir[0]
    shot = tmp_path / "shot.png"
    cmd = _chrome_cmd(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000",
                      (out / "report.html").resolve().as_uri())
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.is_file()
    im = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert im.shape[:2] == (2000, 1200)
    # not blank: many distinct colours, dark header and white page both present
    assert len(np.unique(im.reshape(-1, 3), axis=0)) > 200
    assert im.std() > 20


def test_report_dom_in_chromium_occurrence_and_point_to_image(report_dir, tmp_path):
    """Chromium runs the page's script: a click on a point (dispatched through the
    #event= link) shows that event's thumbnail, id and time; the occurrence
    figure is in the rendered DOM as a decodable full-width PNG."""
    out, _, _, labels, meta, y = report_dir
    html = (out / "report.html").read_text()
    data = json.loads(re.search(r'id="xp-data">(.*?)</script>', html, re.S).group(1))
    p = data["points"][len(data["points"]) // 2]
    url = (out / "report.html").resolve().as_uri() + "#event=" + p["id"]
    res = subprocess.run(_chrome_cmd(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url),
                         capture_output=True, timeout=120, text=True)
    dom = res.stdout
    assert "<html" in dom, res.stderr[-2000:]
    root = re.search(r'<div id="xp"[^>]*>', dom).group(0)
    assert 'data-ready="1"' in root and f'data-shown="{p["id"]}"' in root
    shown = re.search(r'<img id="xp-img"[^>]*>', dom).group(0)
    src = re.search(r'src="([^"]+)"', shown).group(1)
    assert src == data["thumbs"][p["th"]] and src.startswith("data:image/jpeg;base64,")
    assert re.search(r'<div id="xp-id">' + re.escape(p["id"]) + "</div>", dom)
    assert re.search(r'<div id="xp-time">' + re.escape(p["t"]) + r" \(UTC\)</div>", dom)
    i = int(p["id"][2:])
    assert re.search(r'<div id="xp-cluster">cluster ' + str(int(labels[i])), dom)
    # the selected point is highlighted
    assert re.search(r'<circle[^>]*class="sel"[^>]*>|<circle[^>]*data-id="' + p["id"]
                     + r'"[^>]*class="sel"', dom)
    occ = re.search(r'<img alt="occurrence of each family over time" '
                    r'src="data:image/png;base64,([^"]+)"', dom)
    assert occ
    with Image.open(io.BytesIO(base64.b64decode(occ.group(1)))) as im:
        assert im.size[0] >= 1400 and im.info["dpi"][0] == pytest.approx(150, abs=1)
