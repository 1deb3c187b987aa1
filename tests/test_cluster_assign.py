"""ClusterModel: save/load round trip and novelty flag."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from engine.cluster import ClusterModel, KMeans, KMedoids


@pytest.fixture(scope="module")
def fitted():
    X, y = make_blobs(n_samples=300, n_features=10, centers=3, cluster_std=1.0, random_state=0)
    km = KMeans(3, random_state=0).fit(X)
    return X, km


def test_thresholds_are_member_quantiles(fitted):
    X, km = fitted
    m = ClusterModel.from_labels(X, km.labels_, centers=km.cluster_centers_, quantile=0.99)
    for j in range(3):
        d = np.linalg.norm(X[km.labels_ == j] - km.cluster_centers_[j], axis=1)
        assert m.thresholds[j] == pytest.approx(np.quantile(d, 0.99))
    lab, dist, novel = m.assign(X)
    # about 1% of the fitted events are beyond their cluster's 99th percentile
    assert novel.mean() <= 0.03
    np.testing.assert_array_equal(lab[~novel], km.labels_[~novel])
    assert (lab[novel] == -1).all()


def test_far_point_is_novel_and_near_points_are_not(fitted):
    X, km = fitted
    m = ClusterModel.from_labels(X, km.labels_, method="kmeans")
    new = np.vstack([km.cluster_centers_ + 0.01, np.full((1, 10), 1e3)])
    lab, dist, novel = m.assign(new)
    np.testing.assert_array_equal(novel, [False, False, False, True])
    np.testing.assert_array_equal(lab[:3], [0, 1, 2])
    assert lab[3] == -1 and dist[3] > 1e3


def test_save_load_roundtrip(tmp_path, fitted):
    X, _ = fitted
    kmd = KMedoids(3, random_state=0).fit(X)
    prov = {"extractor": "SqueezeNet", "layer": "conv10", "weights": "cotopaxi_squeezenet.mat"}
    m = ClusterModel.from_labels(X, kmd.labels_, centers=kmd.cluster_centers_,
                                 method="kmedoids", provenance=prov, names=["a", "b", "c"])
    npz, js = m.save(tmp_path / "model")
    assert npz.name == "model.npz" and js.name == "model.json"
    meta = json.loads(js.read_text())
    assert meta["method"] == "kmedoids" and meta["provenance"] == prov
    m2 = ClusterModel.load(tmp_path / "model.json")
    np.testing.assert_array_equal(m2.centers, m.centers)
    np.testing.assert_array_equal(m2.thresholds, m.thresholds)
    assert m2.names == ["a", "b", "c"] and m2.method == "kmedoids"
    for a, b in zip(m.assign(X), m2.assign(X)):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


def test_errors(tmp_path, fitted):
    X, km = fitted
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        ClusterModel.load(tmp_path / "nothere")
    m = ClusterModel.from_labels(X, km.labels_)
    with pytest.raises(ValueError, match="X has 4 features"):
        m.assign(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="quantile"):
        ClusterModel.from_labels(X, km.labels_, quantile=1.5)
    bad = km.labels_.copy()
    bad[bad == 1] = 2
    with pytest.raises(ValueError, match="cluster 1 has no members"):
        ClusterModel.from_labels(X, bad)
    (tmp_path / "x.json").write_text(json.dumps({"format": "other"}))
    np.savez(tmp_path / "x.npz", centers=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="is not a cluster model"):
        ClusterModel.load(tmp_path / "x")
