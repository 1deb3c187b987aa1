"""The evaluation harness: library, outputs, cache, halves, CLI and its errors."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from engine.evaluate import (COLUMNS, EvalResult, draw_class_counts, evaluate, main,
                             parse_featurizer_spec, split_halves)
from engine.events import Event
from engine.images import jet

CLASSES = ("LP", "VT", "TR")


def _image(cls: str, rng: np.random.Generator) -> np.ndarray:
    """A jet-coloured 227 x 227 'scalogram' whose energy sits where its class puts it."""
    rows = np.arange(227)[:, None]
    cols = np.arange(227)[None, :]
    centre = {"LP": (170, 60), "VT": (60, 40), "TR": (120, 150)}[cls]
    r0 = centre[0] + rng.normal(0, 3)
    c0 = centre[1] + rng.normal(0, 3)
    field = np.exp(-((rows - r0) ** 2) / 800.0 - ((cols - c0) ** 2) / 1500.0)
    field = field + 0.15 * rng.random((227, 227))
    idx = np.clip(field / field.max() * 255, 0, 255).astype(int)
    return (jet(256)[idx] * 255).round().astype(np.uint8)


def _events(n_per: int = 20, seed: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    return [Event(id=f"{c}/{i}", image=_image(c, rng), label=c, source="test")
            for c in CLASSES for i in range(n_per)]


def test_split_halves_disjoint_stratified_seeded():
    y = np.array(["LP"] * 11 + ["VT"] * 6 + ["TR"] * 3)
    a, b = split_halves(y, seed=1)
    assert np.intersect1d(a, b).size == 0 and np.union1d(a, b).size == y.size
    for c, n in (("LP", 11), ("VT", 6), ("TR", 3)):
        na, nb = np.sum(y[a] == c), np.sum(y[b] == c)
        assert na + nb == n and abs(na - nb) <= 1
    a2, b2 = split_halves(y, seed=1)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert any(not np.array_equal(a, split_halves(y, seed=s)[0]) for s in range(2, 6))


def test_draw_class_counts_exact_mix_seeded():
    y = np.array(["LP"] * 11 + ["VT"] * 6 + ["TR"] * 3)
    idx = draw_class_counts(y, {"LP": 8, "TR": 2}, seed=3)
    assert np.all(np.diff(idx) > 0)                       # sorted, no repeats
    assert np.sum(y[idx] == "LP") == 8 and np.sum(y[idx] == "TR") == 2
    assert not np.any(y[idx] == "VT")                      # classes not named are left out
    assert np.array_equal(idx, draw_class_counts(y, {"LP": 8, "TR": 2}, seed=3))
    assert any(not np.array_equal(idx, draw_class_counts(y, {"LP": 8, "TR": 2}, seed=s))
               for s in range(4, 8))
    for counts, msg in (({"LP": 3}, "at least two classes"),
                        ({"LP": 3, "XX": 1}, "class 'XX' .* not in the input"),
                        ({"LP": 12, "VT": 1}, "class 'LP' has 11 events, fewer than the 12"),
                        ({"LP": 0, "VT": 1}, "count of class 'LP' must be an integer >= 1")):
        with pytest.raises(ValueError, match=msg):
            draw_class_counts(y, counts)


def test_evaluate_draws_in_a_class_mix(tmp_path):
    events = _events(n_per=16)
    res = evaluate(events, ["pixels"], ["standardize"], ["kmeans"], [2, 3], split="draws",
                   class_counts={"LP": 12, "VT": 4, "TR": 2}, seed=2, repeats=3,
                   cache_dir=tmp_path)
    assert {r["set"] for r in res.rows} == {"D0", "D1", "D2"}
    assert all(r["n"] == 18 for r in res.rows)
    assert res.settings["class_counts"] == {"LP": 12, "VT": 4, "TR": 2}
    # subset r is the draw of seed + r
    y = np.array([e.label for e in events])
    sub = [events[i] for i in draw_class_counts(y, {"LP": 12, "VT": 4, "TR": 2}, 3)]
    one = evaluate(sub, ["pixels"], ["standardize"], ["kmeans"], [2, 3], seed=3)
    assert [r["ari"] for r in res.rows if r["set"] == "D1"] == [r["ari"] for r in one.rows]
    (summ,) = res.summary("auto")
    assert summ["sets"] == 3
    with pytest.raises(ValueError, match="split='draws' needs them"):
        evaluate(events, ["pixels"], ["standardize"], ["kmeans"], [2, 3], split="draws")
    with pytest.raises(ValueError, match="go with split='draws'"):
        evaluate(events, ["pixels"], ["standardize"], ["kmeans"], [2, 3], split="halves",
                 class_counts={"LP": 2, "VT": 2})


def test_parse_featurizer_spec():
    assert parse_featurizer_spec("pixels") == ("pixels", {})
    assert parse_featurizer_spec("superlet-cnn:feature_layer=fire9_gap,batch=8") == (
        "superlet-cnn", {"feature_layer": "fire9_gap", "batch": 8})
    assert parse_featurizer_spec("superlet-cnn:weights=none")[1] == {"weights": None}
    with pytest.raises(ValueError, match="unknown featurizer 'resnet'"):
        parse_featurizer_spec("resnet")
    with pytest.raises(ValueError, match="not key=value"):
        parse_featurizer_spec("pixels:size")
    with pytest.raises(ValueError, match="has no parameter 'weights'"):
        parse_featurizer_spec("pixels:weights=x.mat")


def test_evaluate_scores_every_combination_and_the_own_k(tmp_path):
    events = _events()
    res = evaluate(events, ["pixels"], ["standardize", "standardize+pca10+l2"],
                   ["kmeans", "ward"], range(2, 6), cache_dir=tmp_path)
    assert isinstance(res, EvalResult) and not res.skipped
    # 2 conditionings x 2 methods x 4 k
    assert len(res.rows) == 16 and len(res.scans) == 4
    assert all(set(COLUMNS) <= set(r) for r in res.rows)
    own = res.own_k_rows("auto")
    assert len(own) == 4
    # three well-separated classes: the engine's own k finds them on standardised pixels
    # (after PCA-10 + L2 on 60 events a reproducible cut of one class may add a 4th
    # cluster: stability measures reproducibility, not separation)
    std = [r for r in own if r["conditioning"] == "standardize"]
    assert len(std) == 2 and all(r["k"] == 3 and r["ari"] > 0.9 for r in std), std
    r = own[0]
    assert r["focus_class"] == "LP" and r["focus_share"] > 0.9
    # the LP cluster's size is reported with its share: 20 of 60 events
    assert 18 <= r["focus_cluster_n"] <= 22 and r["focus_cluster_frac"] == pytest.approx(
        r["focus_cluster_n"] / 60)
    assert sum(int(v) for v in r["cluster_sizes"].split("/")) == 60
    best = res.best("auto")
    assert best["featurizer"] == "pixels" and best["mean"] > 0.9
    # every scan says why k was chosen
    assert all(s["reason"].startswith("k=") for s in res.scans)


def test_evaluate_halves_and_cache(tmp_path, caplog):
    events = _events(n_per=16)
    res = evaluate(events, ["pixels"], ["standardize"], ["kmeans"], [2, 3, 4], split="halves",
                   cache_dir=tmp_path)
    assert {r["set"] for r in res.rows} == {"A", "B"}
    assert all(r["n"] == 24 for r in res.rows)
    cached = list(tmp_path.glob("pixels-*.npy"))
    assert len(cached) == 1
    # a second run reads the cache: same features, same scores
    mtime = cached[0].stat().st_mtime_ns
    with caplog.at_level("INFO", logger="engine.evaluate"):
        res2 = evaluate(events, ["pixels"], ["standardize"], ["kmeans"], [2, 3, 4],
                        split="halves", cache_dir=tmp_path)
    assert "(cache)" in caplog.text and cached[0].stat().st_mtime_ns == mtime
    assert [r["ari"] for r in res2.rows] == [r["ari"] for r in res.rows]
    # other events -> another cache file, never stale features
    evaluate(events[:-3], ["pixels"], ["standardize"], ["kmeans"], [2, 3], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("pixels-*.npy"))) == 2


def test_evaluate_repeats_splits_and_summarises(tmp_path):
    from engine.evaluate import split_halves

    events = _events(n_per=16)
    res = evaluate(events, ["pixels"], ["standardize"], ["kmeans"], [2, 3, 4], split="halves",
                   seed=5, repeats=3, cache_dir=tmp_path)
    assert {r["set"] for r in res.rows} == {"A0", "B0", "A1", "B1", "A2", "B2"}
    assert res.settings["repeats"] == 3
    # each repeat is the split of its own seed; repeat 0 is the plain split of `seed`
    y = np.array([e.label for e in events])
    one = evaluate(events, ["pixels"], ["standardize"], ["kmeans"], [2, 3, 4], split="halves",
                   seed=6, cache_dir=tmp_path)
    assert split_halves(y, 6)[0].size == 24
    assert ([r["ari"] for r in res.rows if r["set"] == "A1"]
            == [r["ari"] for r in one.rows if r["set"] == "A"])
    # the summary is the mean / sd / min of the own-k rows over the six halves
    (s,) = res.summary("auto")
    own = [r["ari"] for r in res.own_k_rows("auto")]
    assert s["sets"] == 6 == len(own)
    assert s["ari_mean"] == pytest.approx(np.mean(own)) and s["ari_min"] == min(own)
    assert s["ari_sd"] == pytest.approx(np.std(own))
    assert 0 < s["focus_cluster_frac_mean"] <= 1
    md = res.to_markdown()
    assert "## Over all sets" in md and f"{s['ari_mean']:.3f} ± {s['ari_sd']:.3f}" in md
    with pytest.raises(ValueError, match="needs split='halves'"):
        evaluate(events, ["pixels"], ["standardize"], ["kmeans"], [2, 3], repeats=2)
    with pytest.raises(ValueError, match="repeats must be an integer"):
        evaluate(events, ["pixels"], ["standardize"], ["kmeans"], [2, 3], split="halves",
                 repeats=0)


def test_evaluate_skips_featurizers_that_cannot_run_and_errors():
    events = _events(n_per=8)
    res = evaluate(events, ["pixels", "scalogram-stats"], ["standardize"], ["kmeans"], [2, 3])
    assert len(res.skipped) == 1 and "scalogram-stats" in res.skipped[0]
    assert "needs samples" in res.skipped[0]
    with pytest.raises(ValueError, match="no featurizer could run"):
        evaluate(events, ["scalogram-stats"], ["standardize"], ["kmeans"], [2, 3])
    unlabelled = [Event(id=e.id, image=e.image) for e in events]
    with pytest.raises(ValueError, match="no event carries a class label"):
        evaluate(unlabelled, ["pixels"])
    with pytest.raises(ValueError, match="of class 'LP'"):
        evaluate([e for e in events if e.label == "LP"], ["pixels"])
    with pytest.raises(ValueError, match="unknown clustering method"):
        evaluate(events, ["pixels"], methods=["spectral"])
    with pytest.raises(ValueError, match="unknown step"):
        evaluate(events, ["pixels"], conditionings=["pca"])
    with pytest.raises(ValueError, match="featurizer superlet-cnn:weights=nope.*nope.mat"):
        evaluate(events, ["pixels", "superlet-cnn:weights=/no/where/nope.mat"])
    with pytest.raises(ValueError, match="split"):
        evaluate(events, ["pixels"], split="thirds")
    with pytest.raises(ValueError, match="--focus-class 'XX'"):
        evaluate(events, ["pixels"], focus_class="XX")


def test_evaluate_methods_that_find_their_own_k():
    res = evaluate(_events(n_per=10), ["pixels"], ["standardize+pca5"], ["hdbscan"], [2, 3])
    assert len(res.rows) == 1 and res.rows[0]["chosen_by"] == "own"


def _write_images(root, n_per=12):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(n_per):
            Image.fromarray(_image(c, rng)).save(root / c / f"{i}.png")


def test_cli_writes_tables_atomically_and_prints_the_own_k(tmp_path, capsys):
    _write_images(tmp_path / "img")
    out = tmp_path / "out"
    rc = main(["--images", str(tmp_path / "img"), "--out", str(out), "--features", "pixels",
               "--conditioning", "standardize", "--methods", "kmeans", "--k-range", "2-4",
               "--split", "halves"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "At the engine's own k (auto)" in printed and "best at own k" in printed
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 6 and list(rows[0]) == list(COLUMNS)
    assert {r["set"] for r in rows} == {"A", "B"}
    doc = json.loads((out / "results.json").read_text())
    assert doc["settings"]["split"] == "halves" and len(doc["scans"]) == 2
    assert doc["settings"]["scan_options"] == {"resample_size": 200, "criterion": "auto"}
    assert "curves" in doc["scans"][0] and doc["scans"][0]["reason"]
    md = (out / "results.md").read_text()
    assert "| set | featurizer |" in md and "Why k was chosen" in md
    assert list((out / "features").glob("pixels-*.npy"))
    assert not list(out.rglob("*.tmp*"))


@pytest.mark.parametrize("argv, message", [
    ([], "exactly one of --images, --events, --archive"),
    (["--images", "/nonexistent/x"], "--images: /nonexistent/x does not exist"),
    (["--archive", "."], "--archive needs --catalog"),
    (["--images", ".", "--catalog", "c.csv"], "--catalog only applies with --archive"),
    (["--images", ".", "--mask-labels", "ovdas"], "--mask-labels only applies with --events"),
    (["--images", ".", "--k-resample-size", "3"], "--k-resample-size must be >= 10; got 3"),
    (["--images", ".", "--split", "draws"], "--split draws needs --class-counts"),
    (["--images", ".", "--class-counts", "LP=2,VT=2"], "--class-counts goes with --split draws"),
])
def test_cli_errors_name_the_flag(tmp_path, capsys, argv, message):
    rc = main(argv + ["--out", str(tmp_path / "o")])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.csv").exists()


def test_cli_bad_values_leave_nothing(tmp_path, capsys):
    _write_images(tmp_path / "img", n_per=4)
    rc = main(["--images", str(tmp_path / "img"), "--out", str(tmp_path / "o"), "--features",
               "pixels", "--methods", "kmeans,spectral"])
    assert rc == 2 and "unknown clustering method 'spectral'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.csv").exists()
    with pytest.raises(SystemExit):
        main(["--images", ".", "--out", str(tmp_path), "--k-range", "1-3"])
    for bad in ("LP=3", "LP=3,VT", "LP=3,VT=0", "LP=x,VT=2"):
        with pytest.raises(SystemExit):
            main(["--images", ".", "--out", str(tmp_path), "--split", "draws",
                  "--class-counts", bad])
    assert "--class-counts" in capsys.readouterr().err


def test_cli_on_real_labelled_windows(shared_data, tmp_path):
    """OVDAS windows with their masks (--events --mask-labels ovdas): 5 analyst classes."""
    out = tmp_path / "ovdas"
    rc = main(["--events", str(shared_data / "ovdas_windows"), "--mask-labels", "ovdas",
               "--out", str(out), "--features", "scalogram-stats", "--conditioning",
               "standardize", "--methods", "kmeans", "--k-range", "2-5"])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["settings"]["classes"]) == {"LP", "VT", "TR", "IC", "AV"}
    assert sum(doc["settings"]["classes"].values()) == doc["settings"]["n_events"] >= 20
    own = [r for r in doc["rows"] if "auto" in r["chosen_by"].split(",")]
    assert len(own) == 1 and -0.2 < own[0]["ari"] <= 1.0


def _row(s: str, f: str, m: str, ari: float) -> dict:
    return {"set": s, "n": 10, "featurizer": f, "conditioning": "standardize", "method": m,
            "k": 3, "chosen_by": "auto", "ari": ari, "nmi": ari, "purity": 1.0,
            "focus_class": "", "focus_share": float("nan"), "focus_cluster_n": 0,
            "focus_cluster_frac": float("nan"), "cluster_sizes": "4/3/3"}


def test_paired_changes_set_by_set():
    ari = {("pixels", "kmeans"): [0.20, 0.30, 0.40], ("pixels", "ward"): [0.25, 0.30, 0.30],
           ("cnn", "kmeans"): [0.50, 0.60, 0.70], ("cnn", "ward"): [0.50, 0.70, 0.80]}
    rows = [_row(s, f, m, a[i]) for (f, m), a in ari.items() for i, s in enumerate("ABC")]
    rows.append(_row("A", "cnn", "ward", 0.99) | {"chosen_by": ""})   # a k only scanned
    res = EvalResult(rows=rows)
    by_method = {p["featurizer"]: p for p in res.paired("method")}
    assert set(by_method) == {"pixels", "cnn"} and by_method["pixels"]["reference"] == "kmeans"
    p = by_method["pixels"]   # ward - kmeans: +0.05, 0, -0.10
    assert p["method"] == "ward" and p["sets"] == 3
    assert p["mean"] == pytest.approx(-0.05 / 3) and p["worst"] == pytest.approx(-0.10)
    assert (p["better"], p["same"], p["worse"]) == (1, 1, 1)
    assert p["sd"] == pytest.approx(np.std([0.05, 0.0, -0.10]))
    q = {p["method"]: p for p in res.paired("featurizer")}["ward"]   # cnn - pixels, ward
    assert q["reference"] == "pixels" and q["mean"] == pytest.approx((0.25 + 0.40 + 0.50) / 3)
    assert res.paired("conditioning") == []   # one conditioning: nothing to pair
    md = res.to_markdown(all_rows=False)
    assert "## Set by set against the first method (kmeans)" in md
    assert "| pixels | standardize | ward | kmeans | 3 | -0.017 ± 0.062 | 1 / 1 / 1 | -0.100 |" in md
    assert json.loads(res.to_json())["paired"]["featurizer"][0]["reference"] == "pixels"
    with pytest.raises(ValueError, match="against must be one of"):
        res.paired("k")
