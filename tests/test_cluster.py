"""Clusterers: accuracy on separable blobs, determinism, N-limit policy, backends, bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from engine.cluster import (METHODS, FuzzyCMeans, GaussianMixture, HDBSCAN, Hierarchical, KMeans,
                            KMedoids, SubsampleWarning, make_clusterer, needs_k)
from engine.cluster.kmeans import resolve_kmeans_backend


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=240, n_features=16, centers=4, cluster_std=1.0,
                      center_box=(-20, 20), random_state=3)
    return X, y


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_recovers_blobs(blobs, method):
    X, y = blobs
    est = make_clusterer(method, 4, random_state=0)
    labels = est.fit_predict(X)
    assert labels.shape == (X.shape[0],)
    assert adjusted_rand_score(y, labels) > 0.95
    # predict on the training events gives the fitted labels
    assert adjusted_rand_score(labels, est.predict(X)) > 0.99
    if needs_k(method) or method == "knn-graph":
        assert est.cluster_centers_.shape == (4, X.shape[1])


@pytest.mark.parametrize("method", ["kmeans", "kmedoids", "fcm", "gmm"])
def test_deterministic_with_seed(method):
    X, _ = make_blobs(n_samples=200, n_features=8, centers=5, cluster_std=3.0, random_state=1)
    a = make_clusterer(method, 5, random_state=7).fit(X)
    b = make_clusterer(method, 5, random_state=7).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_)


def test_faiss_kmeans_deterministic(blobs):
    X, _ = blobs
    a = KMeans(4, backend="faiss", random_state=5).fit(X)
    b = KMeans(4, backend="faiss", random_state=5).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_backends_agree(blobs):
    """sklearn and FAISS (CPU): same partition, centres equal within 1e-3 of the data scale."""
    X, y = blobs
    sk = KMeans(4, backend="sklearn", random_state=0).fit(X)
    fa = KMeans(4, backend="faiss", random_state=0).fit(X)
    mb = KMeans(4, backend="sklearn", minibatch_above=100, random_state=0).fit(X)
    assert (sk.backend_, fa.backend_) == ("sklearn", "faiss")
    assert adjusted_rand_score(sk.labels_, fa.labels_) == 1.0
    assert adjusted_rand_score(sk.labels_, mb.labels_) == 1.0
    # match centres through the labels
    perm = [np.bincount(fa.labels_[sk.labels_ == j], minlength=4).argmax() for j in range(4)]
    scale = X.std()
    np.testing.assert_allclose(fa.cluster_centers_[perm], sk.cluster_centers_, atol=1e-3 * scale)
    assert abs(fa.inertia_ - sk.inertia_) <= 1e-4 * sk.inertia_
    # float32 input (labels from the FAISS index search) gives the same partition
    fa32 = KMeans(4, backend="faiss", random_state=0).fit(X.astype(np.float32))
    assert adjusted_rand_score(sk.labels_, fa32.labels_) == 1.0


def test_backend_resolution():
    assert resolve_kmeans_backend("auto", "cpu", 1000) == ("sklearn", "cpu")
    assert resolve_kmeans_backend("auto", "cpu", 10**6) == ("faiss", "cpu")
    assert resolve_kmeans_backend("auto", "auto", 1000)[1] in ("cpu", "cuda")
    with pytest.raises(ValueError, match="GPU only"):
        resolve_kmeans_backend("cuml", "cpu", 10)
    with pytest.raises(ValueError, match="no GPU path"):
        resolve_kmeans_backend("sklearn", "cuda", 10)


def test_cuda_without_gpu_is_clear(blobs, monkeypatch):
    import engine.cluster.kmeans as km

    monkeypatch.setattr(km, "_faiss_gpus", lambda: 0)
    monkeypatch.setattr(km, "_has_module", lambda name: name == "faiss")
    with pytest.raises(ValueError, match="device='cuda'"):
        KMeans(4, device="cuda").fit(blobs[0])
    # "auto" falls back to the CPU
    assert KMeans(4, device="auto", random_state=0).fit(blobs[0]).device_ == "cpu"


@pytest.mark.parametrize("cls,kw", [(KMedoids, {}), (Hierarchical, {"linkage": "ward"}),
                                    (Hierarchical, {"linkage": "single"}), (HDBSCAN, {})])
def test_n_limit_policy(blobs, cls, kw):
    X, y = blobs
    params = dict(kw, max_samples=120, random_state=0)
    est = cls(**params) if cls is HDBSCAN else cls(4, **params)
    with pytest.warns(SubsampleWarning, match="max_samples=120"):
        est.fit(X)
    assert est.labels_.shape == (X.shape[0],)
    assert adjusted_rand_score(y, est.labels_) > 0.95
    if cls is KMedoids:
        assert len(est.medoid_indices_) == 4
        np.testing.assert_array_equal(est.cluster_centers_, X[est.medoid_indices_])
    # below the limit: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", SubsampleWarning)
        (cls(**dict(params, max_samples=1000)) if cls is HDBSCAN
         else cls(4, **dict(params, max_samples=1000))).fit(X)


def test_kmedoids_medoids_are_members_and_labels_nearest(blobs):
    X, _ = blobs
    km = KMedoids(4, random_state=0).fit(X)
    d = np.linalg.norm(X[:, None, :] - km.cluster_centers_[None], axis=2)
    np.testing.assert_array_equal(km.labels_, d.argmin(1))
    np.testing.assert_allclose(km.inertia_, d.min(1).sum())


def test_fcm_memberships(blobs):
    X, _ = blobs
    f = FuzzyCMeans(4, random_state=0).fit(X)
    assert f.membership_.shape == (X.shape[0], 4)
    np.testing.assert_allclose(f.membership_.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(f.labels_, f.membership_.argmax(1))
    np.testing.assert_allclose(f.predict_membership(X), f.membership_, atol=1e-9)


def test_gmm_memberships(blobs):
    X, _ = blobs
    g = GaussianMixture(4, random_state=0).fit(X)
    np.testing.assert_allclose(g.membership_.sum(1), 1.0, atol=1e-9)
    assert np.isfinite(g.bic_)


def test_hdbscan_noise_and_count():
    X, y = make_blobs(n_samples=300, n_features=5, centers=3, cluster_std=0.5, random_state=2)
    far = np.full((1, 5), 500.0)
    h = HDBSCAN(min_cluster_size=10).fit(np.vstack([X, far]))
    assert h.n_clusters_ == 3
    assert h.labels_[-1] == -1


def test_single_linkage_chains_to_one_cluster():
    """Single linkage is what the paper used: an elongated chain stays one cluster."""
    t = np.linspace(0, 10, 200)
    chain = np.c_[t, np.zeros_like(t)]
    outlier = np.array([[5.0, 40.0]])
    lab = Hierarchical(2, linkage="single").fit(np.vstack([chain, outlier])).labels_
    assert np.all(lab[:200] == lab[0]) and lab[200] != lab[0]


def test_sklearn_clone_and_params():
    from sklearn.base import clone

    km = KMeans(5, backend="faiss", random_state=3)
    c = clone(km)
    assert c.get_params() == km.get_params()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_nan_features_rejected(method, blobs):
    X = blobs[0].copy()
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in 1 of 240 rows"):
        make_clusterer(method, 3).fit(X)


@pytest.mark.parametrize("method", ["kmeans", "kmedoids", "single", "ward", "fcm", "gmm"])
def test_k_larger_than_n(method):
    X = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="n_clusters=6 is larger than the number of samples"):
        make_clusterer(method, 6).fit(X)


def test_bad_inputs_and_params():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="unknown clustering method 'dbscan'"):
        make_clusterer("dbscan", 3)
    with pytest.raises(ValueError, match="no GPU backend"):
        make_clusterer("ward", 3, device="cuda")
    with pytest.raises(ValueError, match="needs n_clusters"):
        make_clusterer("kmeans", None)
    with pytest.raises(ValueError, match="2-D array"):
        KMeans(2).fit(X[:, 0])
    with pytest.raises(ValueError, match="numeric"):
        KMeans(2).fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="n_clusters"):
        KMeans(0).fit(X)
    with pytest.raises(ValueError, match="backend"):
        KMeans(2, backend="tensorflow").fit(X)
    km = KMeans(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 4 features"):
        km.predict(np.zeros((2, 4)))


def test_cuml_path_with_stand_in_module(blobs, monkeypatch):
    """The cuML plumbing (backend choice, arguments, output conversion) with a CPU stand-in."""
    import importlib.machinery
    import sys
    import types

    from sklearn.cluster import KMeans as SkKMeans

    seen = {}

    class FakeCumlKMeans:
        def __init__(self, *, n_clusters, init, n_init, max_iter, tol, random_state,
                     output_type):
            seen.update(init=init, output_type=output_type, random_state=random_state)
            self._est = SkKMeans(n_clusters, n_init=n_init, max_iter=max_iter, tol=tol,
                                 random_state=random_state)

        def fit(self, X):
            assert X.dtype == np.float32          # cuML is fed float32
            self._est.fit(X)
            self.cluster_centers_ = self._est.cluster_centers_
            self.labels_ = self._est.labels_.astype(np.int32)
            return self

    cuml = types.ModuleType("cuml")
    cuml.__spec__ = importlib.machinery.ModuleSpec("cuml", None)
    cuml.cluster = types.SimpleNamespace(KMeans=FakeCumlKMeans)
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    X, y = blobs
    km = KMeans(4, device="cuda", random_state=3).fit(X)
    assert (km.backend_, km.device_) == ("cuml", "cuda")
    assert seen == {"init": "k-means++", "output_type": "numpy", "random_state": 3}
    assert km.labels_.dtype == np.int64 and adjusted_rand_score(y, km.labels_) == 1.0
    assert KMeans(4, device="auto", random_state=3).fit(X).backend_ == "cuml"
