"""k-means alternated with Fisher's linear discriminant (LDA-k-means).

k-means measures every direction of the feature space alike, so directions
of large nuisance variance (the event's amplitude, where it sits in the
window) can outweigh the few that set families apart. LDA-k-means (Ding and
Li 2007, "Adaptive dimension reduction using discriminant analysis and
K-means clustering", ICML) alternates two steps from a k-means start:

1. Fisher's linear discriminant of the current clusters: the ``k - 1``
   directions that maximise the between-cluster scatter against the
   within-cluster scatter (the latter shrunk towards a multiple of the
   identity, Ledoit-Wolf, so that it stays invertible with few events);
2. k-means in that subspace, started from the current clusters' means.

It stops when the clusters no longer change (or after ``max_iter``
alternations). Each step can only sharpen the clusters it starts from: it
does not create families, it moves the events that k-means left on the wrong
side of a direction that matters.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseClusterer
from ._nearest import cluster_means, distances_to_assigned, nearest_center
from ._validation import check_features, check_n_clusters
from .kmeans import KMeans

__all__ = ["DiscriminantKMeans", "fisher_directions"]


def _ledoit_wolf_shrinkage(R: np.ndarray) -> float:
    """Ledoit-Wolf shrinkage intensity of the covariance of centred rows ``R``."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    return float(ledoit_wolf_shrinkage(R, assume_centered=True))


def _lloyd(Z: np.ndarray, centers: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Lloyd iterations of k-means on ``Z`` from ``centers``; the labels.

    The subspace has ``k - 1`` dimensions, so plain NumPy is faster here than
    a library call's set-up. A centre that loses all its events takes the
    event farthest from its own centre (in a cluster of more than one), as
    scikit-learn does, so that no cluster ends empty.
    """
    C = centers.copy()
    k = C.shape[0]
    labels = None
    for _ in range(max_iter):
        d2 = (Z * Z).sum(axis=1)[:, None] - 2.0 * Z @ C.T + (C * C).sum(axis=1)[None, :]
        new = np.argmin(d2, axis=1)
        for c in np.flatnonzero(np.bincount(new, minlength=k) == 0):
            counts = np.bincount(new, minlength=k)
            movable = counts[new] > 1
            if not movable.any():
                break
            far = np.where(movable, d2[np.arange(len(new)), new], -np.inf)
            i = int(np.argmax(far))
            new[i] = c
            C[c] = Z[i]
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        C = _means_or(Z, labels, C)
    return labels.astype(np.int64)


def _means_or(X: np.ndarray, labels: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Mean of each cluster ``0..k-1`` (k = ``len(fallback)``); an empty cluster keeps
    its row of ``fallback``."""
    means = cluster_means(X, labels, len(fallback))
    empty = np.isnan(means[:, 0])
    means[empty] = fallback[empty]
    return means


def fisher_directions(X: np.ndarray, labels: np.ndarray, n_components: int,
                      shrinkage: float | str = "auto") -> np.ndarray:
    """Directions of Fisher's linear discriminant of ``labels``.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
    labels : ndarray of int, shape (n_samples,)
        At least two distinct values.
    n_components : int
        Number of directions (at most ``n_features``; only ``groups - 1`` of
        them carry between-group scatter).
    shrinkage : float in [0, 1] or "auto"
        The within-group covariance ``S`` is replaced by
        ``(1 - a) S + a tr(S) / d I``; ``"auto"`` takes the Ledoit-Wolf ``a``.

    Returns
    -------
    ndarray, shape (n_features, n_components)
        Columns ``w`` solving ``B w = l S w`` for the largest ``l`` (``B`` the
        between-group covariance), scaled so that ``w' S w = 1``.

    Raises
    ------
    ValueError
        If there is no within-group scatter at all (every group a single point).
    """
    from scipy.linalg import eigh

    groups, inv = np.unique(labels, return_inverse=True)
    n, d = X.shape
    means = cluster_means(X, inv, len(groups))
    counts = np.bincount(inv, minlength=len(groups)).astype(float)
    R = X - means[inv]
    S = R.T @ R / n
    mean_var = np.trace(S) / d
    if not mean_var > 0:
        raise ValueError("the groups have no within-group scatter (every group is one "
                         "point): Fisher's discriminant is undefined")
    a = _ledoit_wolf_shrinkage(R) if shrinkage == "auto" else float(shrinkage)
    # a ridge of 1e-9 of the mean variance keeps S positive definite without shrinkage
    S = (1.0 - a) * S + (a + 1e-9) * mean_var * np.eye(d)
    M = (means - X.mean(axis=0)) * np.sqrt(counts / n)[:, None]
    B = M.T @ M
    vals, vecs = eigh(B, S)
    return vecs[:, ::-1][:, :n_components]


#: above this many features the alternations run in the leading principal subspace
MAX_DIMENSIONS = 128


def _principal_basis(X: np.ndarray, m: int) -> np.ndarray:
    """Orthonormal basis (d, m) of the ``m`` leading principal axes of ``X``."""
    from sklearn.utils.extmath import randomized_svd

    _, _, Vt = randomized_svd(X - X.mean(axis=0), m, random_state=0)
    return Vt.T


def _alternate(X: np.ndarray, labels: np.ndarray, k: int, max_iter: int,
               shrinkage: float | str) -> tuple[np.ndarray, np.ndarray, int]:
    """The LDA-k-means alternations from ``labels``: (labels, directions, alternations).

    The directions have no columns when no alternation ran (one cluster, or
    clusters without any within-cluster scatter): the labels are the start's.

    Above :data:`MAX_DIMENSIONS` features they run in the leading principal
    subspace of that many dimensions (PCA, then LDA); the directions returned
    are in the input space. BLAS runs on one thread: the matrices are small
    (``d`` x ``d`` and ``n`` x ``k - 1``), and a multi-threaded BLAS pool
    spinning between the many short calls slows the OpenMP k-means of
    scikit-learn that follows several fold.
    """
    from threadpoolctl import threadpool_limits

    d = X.shape[1]
    W = np.zeros((d, 0))   # no directions until one alternation has run
    n_iter = 0
    basis = None
    if d > MAX_DIMENSIONS and k > 1:
        # Fisher's discriminant of d x d scatter matrices costs d**3 per alternation:
        # work in the leading principal subspace instead (PCA, then LDA)
        basis = _principal_basis(X, MAX_DIMENSIONS)
        X = X @ basis
    with threadpool_limits(limits=1, user_api="blas"):
        for it in range(max_iter if k > 1 else 0):
            if len(np.unique(labels)) < 2:
                break
            try:
                W = fisher_directions(X, labels, k - 1, shrinkage)
            except ValueError:   # every cluster is a single point: nothing to move
                break
            Z = X @ W
            new = _lloyd(Z, _means_or(Z, labels, Z[np.arange(k) % len(Z)]))
            n_iter = it + 1
            if np.array_equal(new, labels):
                break
            labels = new
    if basis is not None and W.shape[1]:
        W = basis @ W
    elif basis is not None:
        W = np.zeros((basis.shape[0], 0))
    return np.asarray(labels, dtype=np.int64), W, n_iter


class DiscriminantKMeans(BaseClusterer):
    """LDA-k-means: k-means alternated with Fisher's discriminant of its clusters.

    Parameters
    ----------
    n_clusters : int, default 3
    n_init : int, default 4
        Restarts of the k-means start (see :class:`engine.cluster.KMeans`).
    max_iter : int, default 10
        Largest number of discriminant / k-means alternations.
    shrinkage : float in [0, 1] or "auto", default "auto"
        Shrinkage of the within-cluster covariance (:func:`fisher_directions`).
    backend : {"auto", "sklearn", "faiss", "cuml", "torch"}, default "auto"
        Backend of the k-means start; the alternations run in ``k - 1``
        dimensions with NumPy on the CPU.
    device : {"cpu", "cuda", "auto"}, default "cpu"
        Device of the k-means start.
    random_state : int, RandomState or None, default None

    Attributes
    ----------
    labels_ : ndarray of int64, shape (n_samples,)
    cluster_centers_ : ndarray, shape (n_clusters, n_features)
        Means of the clusters in the input space.
    components_ : ndarray, shape (n_features, n_clusters - 1)
        Discriminant directions of the final clusters; no columns when no
        alternation ran (one cluster, or clusters that are single points),
        and :meth:`predict` then takes the nearest centre in the input space.
    projected_centers_ : ndarray, shape (n_clusters, n_clusters - 1)
        Cluster centres in the discriminant subspace; :meth:`predict` assigns
        new events to the nearest of them there.
    n_iter_ : int
        Alternations done (0: the k-means start was kept as it was).
    n_features_in_ : int

    Notes
    -----
    With ``n_clusters=1``, or when every cluster of the start is a single
    repeated point, there is no discriminant; the fit is the k-means start.
    Above :data:`MAX_DIMENSIONS` (128) features, the alternations run in the
    leading principal subspace of that size (the engine's default
    conditioning gives 50).

    Examples
    --------
    >>> est = DiscriminantKMeans(n_clusters=4, random_state=0).fit(X)  # doctest: +SKIP
    >>> est.labels_, est.n_iter_                                        # doctest: +SKIP
    """

    # the parameters of the k-means start are checked as KMeans checks them
    _parameter_constraints: dict = {
        **{p: KMeans._parameter_constraints[p]
           for p in ("n_clusters", "n_init", "backend", "device", "random_state")},
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "shrinkage": [Interval(Real, 0, 1, closed="both"), StrOptions({"auto"})],
    }

    def __init__(self, n_clusters: int = 3, *, n_init: int = 4, max_iter: int = 10,
                 shrinkage: float | str = "auto", backend: str = "auto", device: str = "cpu",
                 random_state=None):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.shrinkage = shrinkage
        self.backend = backend
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None) -> "DiscriminantKMeans":
        """Cluster ``X``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad parameters, NaN features or ``n_clusters > n_samples``.
        """
        from ._torch import is_tensor

        self._validate_params()
        if is_tensor(X):
            X = X.detach().cpu().numpy()
        X = check_features(X)
        check_n_clusters(self.n_clusters, X.shape[0])
        start = KMeans(self.n_clusters, n_init=self.n_init, backend=self.backend,
                       device=self.device, random_state=self.random_state).fit(X)
        labels, W, self.n_iter_ = _alternate(X, start.labels_, self.n_clusters,
                                             self.max_iter, self.shrinkage)
        self.labels_ = labels
        self.components_ = W
        self.cluster_centers_ = _means_or(X, labels, start.cluster_centers_)
        self.projected_centers_ = self.cluster_centers_ @ W
        self.n_features_in_ = X.shape[1]
        return self

    def _assign(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.components_.shape[1] == 0:
            return nearest_center(X, self.cluster_centers_)
        lab, _ = nearest_center(X @ self.components_, self.projected_centers_)
        return lab, distances_to_assigned(X, self.cluster_centers_, lab)
