"""kNN-graph families: edges and components against plain references, repeaters, xcorr, records."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from engine.cluster import (KNNGraph, confirm_families, largest_families, make_clusterer,
                            method_names, needs_k, scan_k)
from engine.cluster.graph import graph_families, max_normalized_xcorr, mutual_knn_edges


def _ref_mutual_edges(idx):
    nbrs = [set(map(int, row)) for row in idx]
    return sorted((i, j) for i in range(len(idx)) for j in nbrs[i] if i < j and i in nbrs[j])


def _ref_components(n, edges, min_size):
    """Union-find, then families by decreasing size (ties: earliest member)."""
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in edges:
        parent[find(a)] = find(b)
    groups = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    fams = sorted((g for g in groups.values() if len(g) >= min_size), key=lambda g: (-len(g), g[0]))
    out = [-1] * n
    for f, g in enumerate(fams):
        for i in g:
            out[i] = f
    return out


def test_mutual_edges_and_components_match_references():
    rng = np.random.default_rng(0)
    idx = np.array([rng.choice([j for j in range(40) if j != i], 4, replace=False)
                    for i in range(40)])
    i, j, _ = mutual_knn_edges(idx)
    assert list(zip(i.tolist(), j.tolist())) == _ref_mutual_edges(idx)
    lab = graph_families(40, i, j, min_size=2)
    assert lab.tolist() == _ref_components(40, list(zip(i, j)), 2)
    # the non-mutual graph holds every listed pair once
    i2, j2, _ = mutual_knn_edges(idx, mutual=False)
    assert len(i2) == len({(min(a, int(b)), max(a, int(b))) for a in range(40) for b in idx[a]})


def test_max_distance_drops_long_edges():
    idx = np.array([[1], [0], [3], [2]])
    dist = np.array([[0.5], [0.5], [3.0], [3.0]])
    i, j, w = mutual_knn_edges(idx, dist, max_distance=1.0)
    assert (i.tolist(), j.tolist(), w.tolist()) == ([0], [1], [0.5])


def _repeaters(seed=0):
    """Five families of near-repeats (6 each) in 60 scattered background events."""
    rng = np.random.default_rng(seed)
    d = 24
    cores = rng.normal(scale=10.0, size=(5, d))
    fam = np.vstack([c + rng.normal(scale=0.05, size=(6, d)) for c in cores])
    bg = rng.normal(scale=10.0, size=(60, d))
    X = np.vstack([fam, bg])
    y = np.r_[np.repeat(np.arange(5), 6), np.full(60, -1)]
    perm = rng.permutation(len(X))
    return X[perm], y[perm]


def test_knn_graph_finds_repeaters_and_leaves_background_out():
    X, y = _repeaters()
    est = KNNGraph(n_neighbors=5, max_distance=2.0).fit(X)
    assert est.n_clusters_ == 5
    assert adjusted_rand_score(y, est.labels_) == 1.0
    assert (est.labels_[y == -1] == -1).all()
    assert np.bincount(est.labels_[est.labels_ >= 0]).tolist() == [6] * 5
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    assert est.cluster_centers_.shape == (5, X.shape[1])


def test_knn_graph_in_method_table_and_louvain():
    assert "knn-graph" in method_names() and not needs_k("knn-graph")
    X, y = make_blobs(300, n_features=8, centers=3, cluster_std=1.0, center_box=(-30, 30),
                      random_state=2)
    a = make_clusterer("knn-graph", None, random_state=0).fit(X)
    b = make_clusterer("knn-graph", None, random_state=0, graph="louvain").fit(X)
    # no family mixes blobs; the three largest are the blobs' cores
    for est in (a, b):
        for fam in range(est.n_clusters_):
            assert len(np.unique(y[est.labels_ == fam])) == 1
    assert sorted(np.unique(y[a.labels_ < 3][a.labels_[a.labels_ < 3] >= 0])) == [0, 1, 2]
    assert np.isin(a.labels_, [0, 1, 2]).mean() > 0.9
    with pytest.raises(ValueError, match="finds its own number of clusters"):
        scan_k(X, "knn-graph", [2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        KNNGraph().fit(X[:1])


def _ref_max_xcorr(a, b):
    a = np.asarray(a, float) - np.mean(a)
    b = np.asarray(b, float) - np.mean(b)
    best = -np.inf
    for lag in range(-(len(b) - 1), len(a)):
        s = sum(a[t] * b[t - lag] for t in range(len(a)) if 0 <= t - lag < len(b))
        best = max(best, s)
    return best / (np.linalg.norm(a) * np.linalg.norm(b))


def test_max_normalized_xcorr_matches_direct_sum():
    rng = np.random.default_rng(3)
    for na, nb in [(50, 50), (37, 20), (16, 41)]:
        a, b = rng.normal(size=na), rng.normal(size=nb)
        assert max_normalized_xcorr(a, b) == pytest.approx(_ref_max_xcorr(a, b), abs=1e-10)
    w = rng.normal(size=80)
    w -= w.mean()                        # zero padding then keeps the mean at 0
    assert max_normalized_xcorr(w, np.roll(np.r_[w, np.zeros(20)], 7)) == pytest.approx(1.0)
    assert max_normalized_xcorr(w, np.zeros(30)) == 0.0


def test_confirm_families_drops_uncorrelated_members():
    rng = np.random.default_rng(4)
    t = np.arange(400)
    wavelet = np.sin(2 * np.pi * t / 25) * np.exp(-((t - 150) / 40.0) ** 2)
    waves = [np.roll(wavelet, s) + rng.normal(scale=0.05, size=400) for s in (0, 5, -8, 12)]
    waves.append(rng.normal(size=400))                  # impostor in family 0
    waves += [rng.normal(size=400), rng.normal(size=400)]   # family 1: two unrelated events
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    out = confirm_families(labels, waves, min_cc=0.7)
    assert out.tolist() == [0, 0, 0, 0, -1, -1, -1]
    out2 = confirm_families(labels, lambda i: waves[i], min_cc=0.7, max_lag=3)
    assert out2[0] == 0 and out2[4] == -1
    with pytest.raises(ValueError, match="min_cc"):
        confirm_families(labels, waves, min_cc=0.0)


def test_largest_families_records():
    X = np.array([[0.0, 0], [3, 4], [0, 0.5], [10, 10], [10, 11], [50, 50], [0, 1]])
    labels = np.array([1, 1, 1, 0, 0, -1, 1])
    starts = ["2020-01-01T00:00:00Z", "2020-01-01T00:00:30Z", "2020-01-01T01:00:00.5Z",
              "2020-01-02T00:00:00Z", "", "2020-01-03T00:00:00Z", "bad"]
    ids = [f"e{i}" for i in range(7)]
    rec = largest_families(labels, X, starts=starts, event_ids=ids)
    assert [r["family"] for r in rec] == [1, 0] and [r["size"] for r in rec] == [4, 2]
    assert rec[0]["members"] == ["e0", "e1", "e2", "e6"]
    pts = X[[0, 1, 2, 6]]
    ref = np.mean([np.linalg.norm(pts[a] - pts[b]) for a in range(4) for b in range(a + 1, 4)])
    assert rec[0]["mean_distance"] == pytest.approx(ref)
    assert rec[0]["span_s"] == pytest.approx(3600.5)
    assert rec[0]["first"].startswith("2020-01-01T00:00:00")
    assert rec[1]["span_s"] == 0.0 and rec[1]["mean_distance"] == pytest.approx(1.0)
    assert largest_families(labels, top=1)[0]["members"] == [0, 1, 2, 6]
    with pytest.raises(ValueError, match="starts has 2 entries for 7 labels"):
        largest_families(labels, starts=starts[:2])
