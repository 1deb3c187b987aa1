"""LDA-k-means: Fisher directions against the textbook definition, the alternation,
prediction and saved models that assign as the method did."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from engine.cluster import ClusterModel, DiscriminantKMeans, KMeans, make_clusterer
from engine.cluster.discriminant import _lloyd, fisher_directions


def _reference_scatter(X, labels):
    """Within- and between-group covariances, written out group by group."""
    n, d = X.shape
    mean = X.mean(axis=0)
    S, B = np.zeros((d, d)), np.zeros((d, d))
    for g in np.unique(labels):
        members = X[labels == g]
        mg = members.mean(axis=0)
        for x in members:
            S += np.outer(x - mg, x - mg) / n
        B += len(members) / n * np.outer(mg - mean, mg - mean)
    return S, B


def _projector(W):
    Q, _ = np.linalg.qr(W)
    return Q @ Q.T


@pytest.fixture(scope="module")
def groups():
    rng = np.random.default_rng(4)
    X, y = make_blobs(n_samples=90, n_features=5, centers=3, cluster_std=1.5, random_state=2)
    return X @ rng.normal(size=(5, 5)), y


def test_fisher_directions_solve_the_generalised_eigenproblem(groups):
    X, y = groups
    W = fisher_directions(X, y, 2, shrinkage=0.0)
    S, B = _reference_scatter(X, y)
    # the textbook solution: leading eigenvectors of S^-1 B
    vals, vecs = np.linalg.eig(np.linalg.solve(S, B))
    ref = np.real(vecs[:, np.argsort(-np.real(vals))[:2]])
    # equal up to the 1e-9 ridge that keeps S invertible
    np.testing.assert_allclose(_projector(W), _projector(ref), atol=1e-6)
    # scaled so that w' S w = 1, and B w = l S w with decreasing l
    np.testing.assert_allclose(W.T @ S @ W, np.eye(2), atol=1e-6)
    lam = np.diag(W.T @ B @ W)
    np.testing.assert_allclose(B @ W, S @ W * lam, atol=1e-6)
    assert lam[0] >= lam[1] > 0


def test_full_shrinkage_gives_the_between_group_principal_axes(groups):
    X, y = groups
    W = fisher_directions(X, y, 2, shrinkage=1.0)
    _, B = _reference_scatter(X, y)
    vals, vecs = np.linalg.eigh(B)
    np.testing.assert_allclose(_projector(W), _projector(vecs[:, ::-1][:, :2]), atol=1e-8)


def test_lloyd_matches_scikit_learn_from_the_same_start():
    from sklearn.cluster import KMeans as SkKMeans

    X, _ = make_blobs(n_samples=300, n_features=3, centers=4, cluster_std=2.5, random_state=5)
    init = X[[0, 1, 2, 3]].copy()
    ref = SkKMeans(4, init=init, n_init=1, max_iter=300, tol=0).fit(X).labels_
    np.testing.assert_array_equal(_lloyd(X, init, max_iter=300), ref)


def test_lloyd_leaves_no_cluster_empty():
    """A centre that attracts no event takes the farthest event of a larger cluster."""
    Z = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [13.0]])
    labels = _lloyd(Z, np.array([[0.1], [10.0], [100.0]]))
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 2])


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_recovers_sheared_groups_that_kmeans_splits_wrongly(seed):
    """Groups with one shared, elongated covariance: the case LDA-k-means is built for."""
    X, y = make_blobs(n_samples=600, centers=3, random_state=170 + seed)
    X = X @ np.array([[0.6, -0.6], [-0.4, 0.8]])
    km = KMeans(3, random_state=0).fit(X)
    lda = DiscriminantKMeans(3, random_state=0).fit(X)
    assert adjusted_rand_score(y, km.labels_) < 0.7
    assert adjusted_rand_score(y, lda.labels_) > 0.97
    assert lda.n_iter_ >= 2


def test_no_alternation_is_the_kmeans_start(groups):
    X, _ = groups
    lda = DiscriminantKMeans(3, max_iter=0, random_state=1).fit(X)
    km = KMeans(3, random_state=1).fit(X)
    np.testing.assert_array_equal(lda.labels_, km.labels_)
    assert lda.n_iter_ == 0


def test_attributes_predict_and_determinism(groups):
    X, _ = groups
    a = DiscriminantKMeans(3, random_state=7).fit(X)
    b = clone(a).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.components_.shape == (5, 2) and a.projected_centers_.shape == (3, 2)
    for c in range(3):
        np.testing.assert_allclose(a.cluster_centers_[c], X[a.labels_ == c].mean(axis=0))
    np.testing.assert_array_equal(a.predict(X), a.labels_)
    assert make_clusterer("lda-kmeans", 3, random_state=7).fit(X).labels_.tolist() == \
        a.labels_.tolist()


def test_clusters_without_scatter_keep_the_kmeans_start():
    """Every cluster a single repeated point: no discriminant exists, nothing moves."""
    X = np.repeat(np.eye(3), 5, axis=0)
    with pytest.raises(ValueError, match="no within-group scatter"):
        fisher_directions(X, np.repeat([0, 1, 2], 5), 2)
    est = DiscriminantKMeans(3, random_state=0).fit(X)
    assert est.n_iter_ == 0 and est.components_.shape == (3, 0)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 5), est.labels_) == 1.0
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    np.testing.assert_array_equal(est.predict(np.eye(3) + 0.1), est.labels_[[0, 5, 10]])


def test_one_cluster_and_bad_parameters(groups):
    X, _ = groups
    one = DiscriminantKMeans(1, random_state=0).fit(X)
    assert (one.labels_ == 0).all() and one.components_.shape == (5, 0)
    assert (one.predict(X[:4]) == 0).all()
    with pytest.raises(ValueError, match="shrinkage"):
        DiscriminantKMeans(2, shrinkage=1.5).fit(X)
    with pytest.raises(ValueError, match="n_clusters=91 is larger"):
        DiscriminantKMeans(91).fit(X)
    with pytest.raises(ValueError, match="X has 4 features"):
        DiscriminantKMeans(2, random_state=0).fit(X).predict(np.zeros((2, 4)))


def test_many_features_run_in_the_leading_principal_subspace():
    from engine.cluster.discriminant import MAX_DIMENSIONS, _principal_basis

    X, y = make_blobs(n_samples=300, n_features=MAX_DIMENSIONS + 172, centers=4,
                      cluster_std=6.0, random_state=0)
    est = DiscriminantKMeans(4, random_state=0).fit(X)
    assert est.components_.shape == (X.shape[1], 3)
    assert adjusted_rand_score(y, est.labels_) > 0.99
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    # the directions lie in the span of the leading principal axes (orthonormal)
    V = _principal_basis(X, MAX_DIMENSIONS)
    np.testing.assert_allclose(V.T @ V, np.eye(MAX_DIMENSIONS), atol=1e-10)
    np.testing.assert_allclose(V @ (V.T @ est.components_), est.components_, atol=1e-10)


def test_saved_model_assigns_as_the_method_did(tmp_path):
    X, _ = make_blobs(n_samples=600, centers=3, random_state=172)
    X = X @ np.array([[0.6, -0.6], [-0.4, 0.8]])
    lda = DiscriminantKMeans(3, random_state=0).fit(X)
    plain = ClusterModel.from_labels(X, lda.labels_, quantile=1.0)
    model = ClusterModel.from_labels(X, lda.labels_, quantile=1.0, method="lda-kmeans",
                                     projection=lda.components_)
    lab, dist, novel = model.assign(X)
    assert not novel.any()
    np.testing.assert_array_equal(lab, lda.labels_)
    # by plain distance to the means, events near the sheared boundary change cluster
    assert (plain.assign(X)[0] != lda.labels_).sum() > 0
    np.testing.assert_allclose(dist, np.linalg.norm(X - lda.cluster_centers_[lab], axis=1))
    model.save(tmp_path / "m")
    again = ClusterModel.load(tmp_path / "m")
    np.testing.assert_array_equal(again.projection, lda.components_)
    np.testing.assert_array_equal(again.assign(X)[0], lab)
    # the projection is applied a block of rows at a time
    from engine.cluster.assign import _project

    np.testing.assert_allclose(_project(X.astype(np.float32), lda.components_, chunk=7),
                               X.astype(np.float32).astype(np.float64) @ lda.components_)
    with pytest.raises(ValueError, match=r"projection must be a finite \(2, m\) array"):
        ClusterModel.from_labels(X, lda.labels_, projection=np.ones((3, 1)))
