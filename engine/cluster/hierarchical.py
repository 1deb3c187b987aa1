"""Agglomerative clustering (single linkage as in the paper, or Ward) with an N-limit policy."""
from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseClusterer
from ._nearest import cluster_means

__all__ = ["Hierarchical"]


class Hierarchical(BaseClusterer):
    """Hierarchical clustering on Euclidean distances (SciPy), cut into ``n_clusters``.

    The linkage needs all pair distances, so above ``max_samples`` events it is
    built on a seeded subsample (with a :class:`~engine.cluster.SubsampleWarning`);
    the other events, and :meth:`predict`, follow the rule of the linkage:
    single linkage gives an event the cluster of its nearest fitted event,
    Ward the cluster with the nearest mean.

    Parameters
    ----------
    n_clusters : int, default 3
    linkage : {"single", "ward", "average", "complete"}, default "single"
    max_samples : int, default 10_000
    device : {"cpu", "auto"}, default "cpu"
    random_state : int, RandomState or None
        Seed of the subsample (the linkage itself is deterministic).

    Attributes
    ----------
    labels_ : ndarray of int64
        Clusters numbered ``0..K-1`` by decreasing size.
    cluster_centers_ : ndarray, shape (K, n_features)
        Cluster means.
    linkage_matrix_ : ndarray
        SciPy linkage of the fitted events.
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "linkage": [StrOptions({"single", "ward", "average", "complete"})],
        "max_samples": [Interval(Integral, 2, None, closed="left")],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
    }

    def __init__(self, n_clusters: int = 3, *, linkage: str = "single",
                 max_samples: int = 10_000, device: str = "cpu", random_state=None):
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.max_samples = max_samples
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None) -> "Hierarchical":
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
        from scipy.cluster.hierarchy import fcluster, linkage

        X = self._begin_fit(X)
        self._assign_rule_ = "1nn" if self.linkage == "single" else "center"
        idx = self._subsample(X, self.max_samples, "the linkage needs all pair distances")
        Xs = X[idx]
        if Xs.shape[0] == 1:
            Z = np.zeros((0, 4))
            raw = np.zeros(1, dtype=np.int64)
        else:
            Z = linkage(Xs, method=self.linkage, metric="euclidean")
            raw = fcluster(Z, t=self.n_clusters, criterion="maxclust").astype(np.int64) - 1
        # number clusters by decreasing size (ties by first appearance): stable output
        counts = np.bincount(raw)
        order = np.argsort(-counts, kind="stable")
        remap = np.empty_like(order)
        remap[order] = np.arange(order.size)
        sub_labels = remap[raw]
        self.linkage_matrix_ = Z
        self.cluster_centers_ = cluster_means(Xs, sub_labels)
        self._ref_X_, self._ref_labels_ = Xs, sub_labels
        if idx.size == X.shape[0]:
            self.labels_ = sub_labels
        else:
            self.labels_ = self._assign(X)[0]
        self.n_features_in_ = X.shape[1]
        return self
