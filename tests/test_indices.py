"""Cluster indices (SIL, SSW, SSB, WB), label scores and the k scan against plain references."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from engine.cluster import cluster_indices, label_scores, scan_k


def _ref_indices(X, labels):
    """Plain loops straight from method.md, Stage 4."""
    X = [list(map(float, r)) for r in X]
    ks = sorted(set(int(l) for l in labels))
    n, d = len(X), len(X[0])

    def dist(a, b):
        return math.sqrt(sum((a[t] - b[t]) ** 2 for t in range(d)))

    members = {k: [X[i] for i in range(n) if labels[i] == k] for k in ks}
    means = {k: [sum(p[t] for p in members[k]) / len(members[k]) for t in range(d)] for k in ks}
    gmean = [sum(p[t] for p in X) / n for t in range(d)]
    ssw = sum(dist(p, means[k]) for k in ks for p in members[k]) / n
    ssb = sum(dist(means[k], gmean) for k in ks) / len(ks)
    # silhouette: a = mean distance to own cluster (others), b = min mean distance to another
    s = []
    for i in range(n):
        own = [j for j in range(n) if labels[j] == labels[i] and j != i]
        if not own:
            s.append(0.0)
            continue
        a = sum(dist(X[i], X[j]) for j in own) / len(own)
        b = min(sum(dist(X[i], p) for p in members[k]) / len(members[k])
                for k in ks if k != labels[i])
        s.append((b - a) / max(a, b))
    return {"SIL": sum(s) / n, "SSW": ssw, "SSB": ssb, "WB": ssw * len(ks) / ssb}


@pytest.mark.parametrize("seed", [0, 1])
def test_indices_match_reference(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(37, 4))
    labels = rng.integers(0, 3, size=37)
    labels[:3] = [0, 1, 2]
    got = cluster_indices(X, labels)
    ref = _ref_indices(X, labels)
    for key in ("SIL", "SSW", "SSB", "WB"):
        assert got[key] == pytest.approx(ref[key], rel=1e-10), key
    assert got["K"] == 3 and got["N"] == 37 and not got["SIL_sampled"]


def test_indices_with_singleton_noise_and_gaps():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20, 3))
    labels = np.array([0] * 8 + [5] * 6 + [9] + [-1] * 5)   # gaps, a singleton, noise
    got = cluster_indices(X, labels)
    keep = labels >= 0
    ref = _ref_indices(X[keep], labels[keep])
    for key in ("SIL", "SSW", "SSB", "WB"):
        assert got[key] == pytest.approx(ref[key], rel=1e-10), key
    assert got["K"] == 3 and got["N"] == 15


def test_one_cluster_and_sampled_silhouette():
    X = np.random.default_rng(0).normal(size=(50, 3))
    one = cluster_indices(X, np.zeros(50, dtype=int))
    assert math.isnan(one["SIL"]) and math.isnan(one["WB"]) and one["SSB"] == 0.0
    Xb, yb = make_blobs(300, n_features=4, centers=3, random_state=0)
    full = cluster_indices(Xb, yb)
    samp = cluster_indices(Xb, yb, sample_size=100, random_state=1)
    assert samp["SIL_sampled"] and not full["SIL_sampled"]
    assert samp["SIL"] == pytest.approx(full["SIL"], abs=0.05)
    assert samp["SIL"] == cluster_indices(Xb, yb, sample_size=100, random_state=1)["SIL"]


def test_indices_bad_input():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="one entry per row"):
        cluster_indices(X, [0, 1])
    with pytest.raises(ValueError, match="integers"):
        cluster_indices(X, [0.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="all noise"):
        cluster_indices(X, [-1, -1, -1, -1])


def test_label_scores_hand_example():
    y_true = ["LP"] * 5 + ["VT"] * 3 + ["TC"] * 2
    y_pred = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    s = label_scores(y_true, y_pred)
    assert s["classes"] == ["LP", "TC", "VT"] and s["clusters"] == [0, 1, 2]
    assert s["contingency"] == [[4, 1, 0], [0, 0, 2], [0, 2, 1]]
    assert s["purity"] == pytest.approx((4 + 2 + 2) / 10)
    assert s["per_class"]["LP"] == {"n": 5, "dominant_cluster": 0, "share": 0.8,
                                    "cluster_size": 4, "cluster_fraction": 0.4}
    assert s["per_class"]["VT"]["dominant_cluster"] == 1
    assert s["per_class"]["VT"]["share"] == pytest.approx(2 / 3)
    assert s["per_class"]["TC"] == {"n": 2, "dominant_cluster": 2, "share": 1.0,
                                    "cluster_size": 3, "cluster_fraction": 0.3}
    # ARI by hand: sum C(n_ij,2) = 6+0+1+1 = 8; rows: C(5,2)+C(2,2)+C(3,2) = 14;
    # cols: C(4,2)+C(3,2)+C(3,2) = 12; C(10,2) = 45
    exp = 14 * 12 / 45
    assert s["ari"] == pytest.approx((8 - exp) / ((14 + 12) / 2 - exp))
    assert 0 < s["nmi"] < 1


def test_label_scores_perfect_and_errors():
    s = label_scores(["a", "a", "b"], [3, 3, 7])
    assert s["ari"] == 1.0 and s["nmi"] == pytest.approx(1.0) and s["purity"] == 1.0
    with pytest.raises(ValueError, match="same length"):
        label_scores(["a"], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        label_scores([], [])


@pytest.mark.parametrize("method", ["kmeans", "kmedoids", "ward", "fcm", "gmm"])
def test_scan_k_picks_right_k(method):
    X, _ = make_blobs(n_samples=200, n_features=6, centers=5, cluster_std=0.8,
                      center_box=(-15, 15), random_state=11)
    r = scan_k(X, method, ks=range(2, 9), random_state=0)
    assert r.best_k == 5 and r.chosen_k == 5
    assert r.ks == list(range(2, 9))
    # elbow at the true k: the step 4 -> 5 is far larger than the step 5 -> 6
    inertia = np.array(r.inertia)
    assert inertia[2] - inertia[3] > 5 * (inertia[3] - inertia[4])
    assert set(r.labels) == set(r.ks)
    d = r.to_dict()
    assert d["best_k"] == 5 and len(d["silhouette"]) == 7


def test_scan_k_options_and_errors():
    X, _ = make_blobs(n_samples=120, n_features=4, centers=3, random_state=0)
    r = scan_k(X, "kmeans", ks=[2, 3, 4], fixed_k=4, sample_size=50)
    assert r.best_k == 3 and r.chosen_k == 4 and r.silhouette_sampled
    with pytest.raises(ValueError, match="hdbscan"):
        scan_k(X, "hdbscan")
    with pytest.raises(ValueError, match="unknown clustering method"):
        scan_k(X, "spectral")
    with pytest.raises(ValueError, match="every k must be in 2..119"):
        scan_k(X, "kmeans", ks=[1, 2])
    with pytest.raises(ValueError, match="fixed_k=9"):
        scan_k(X, "kmeans", ks=[2, 3], fixed_k=9)
