"""k-medoids (FasterPAM from the ``kmedoids`` package) with an N-limit policy."""
from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseClusterer
from ._nearest import nearest_center

__all__ = ["KMedoids"]


class KMedoids(BaseClusterer):
    """k-medoids clustering with FasterPAM on Euclidean distances.

    FasterPAM needs the full matrix of pair distances (``n**2`` float32), so
    above ``max_samples`` events it fits on a seeded subsample (with a
    :class:`~engine.cluster.SubsampleWarning`) and assigns every event to its
    nearest medoid.

    Parameters
    ----------
    n_clusters : int, default 3
    max_samples : int, default 10_000
        Largest number of events fitted exactly (10,000 -> 400 MB of distances).
    init : {"build", "random"}, default "build"
        Start of FasterPAM.
    max_iter : int, default 100
    device : {"cpu", "auto"}, default "cpu"
        No GPU backend.
    random_state : int, RandomState or None

    Attributes
    ----------
    cluster_centers_ : ndarray, shape (n_clusters, n_features)
        The medoids.
    medoid_indices_ : ndarray of int64
        Rows of ``X`` that are the medoids.
    labels_ : ndarray of int64
    inertia_ : float
        Sum of Euclidean (not squared) distances of the events to their medoid.
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [Interval(Integral, 2, None, closed="left")],
        "init": [StrOptions({"build", "random"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
    }

    def __init__(self, n_clusters: int = 3, *, max_samples: int = 10_000, init: str = "build",
                 max_iter: int = 100, device: str = "cpu", random_state=None):
        self.n_clusters = n_clusters
        self.max_samples = max_samples
        self.init = init
        self.max_iter = max_iter
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None) -> "KMedoids":
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
        import kmedoids
        from sklearn.metrics import pairwise_distances

        X = self._begin_fit(X)
        idx = self._subsample(X, self.max_samples, "FasterPAM needs all pair distances")
        Xs = X[idx]
        diss = pairwise_distances(Xs, metric="euclidean").astype(np.float32)
        res = kmedoids.fasterpam(diss, self.n_clusters, max_iter=self.max_iter, init=self.init,
                                 random_state=self.random_state, n_cpu=1)
        medoids = idx[np.asarray(res.medoids, dtype=np.int64)]
        self.medoid_indices_ = medoids
        self.cluster_centers_ = X[medoids].copy()
        labels, dist = nearest_center(X, self.cluster_centers_)
        self.labels_ = labels
        self.inertia_ = float(dist.sum())
        self.n_features_in_ = X.shape[1]
        return self
