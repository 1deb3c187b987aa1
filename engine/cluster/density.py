"""HDBSCAN (scikit-learn): clusters without choosing k; noise is label -1."""
from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseClusterer
from ._nearest import cluster_means

__all__ = ["HDBSCAN"]


class HDBSCAN(BaseClusterer):
    """Density-based clustering with HDBSCAN; the number of clusters is found, not given.

    Above ``max_samples`` events it fits on a seeded subsample (with a
    :class:`~engine.cluster.SubsampleWarning`) and gives every other event,
    and :meth:`predict`, the label of its nearest fitted event (noise stays -1).

    Parameters
    ----------
    min_cluster_size : int, default 15
    min_samples : int or None, default None
    max_samples : int, default 20_000
    device : {"cpu", "auto"}, default "cpu"
    random_state : int, RandomState or None
        Seed of the subsample only.

    Attributes
    ----------
    labels_ : ndarray of int64
        ``0..K-1``, or -1 for noise.
    n_clusters_ : int
    cluster_centers_ : ndarray, shape (n_clusters_, n_features)
        Cluster means (noise excluded).
    n_features_in_ : int
    """

    _assign_rule_ = "1nn"
    _parameter_constraints: dict = {
        "min_cluster_size": [Interval(Integral, 2, None, closed="left")],
        "min_samples": [Interval(Integral, 1, None, closed="left"), None],
        "max_samples": [Interval(Integral, 2, None, closed="left")],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
    }

    def __init__(self, min_cluster_size: int = 15, *, min_samples: int | None = None,
                 max_samples: int = 20_000, device: str = "cpu", random_state=None):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None) -> "HDBSCAN":
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
            On bad parameters, NaN features or fewer events than ``min_cluster_size``.
        """
        from sklearn.cluster import HDBSCAN as SkHDBSCAN

        X = self._begin_fit(X)
        if X.shape[0] < self.min_cluster_size:
            raise ValueError(f"HDBSCAN needs at least min_cluster_size={self.min_cluster_size} "
                             f"events, got {X.shape[0]}")
        idx = self._subsample(X, self.max_samples, "HDBSCAN is quadratic in high dimension")
        Xs = X[idx]
        sub = SkHDBSCAN(min_cluster_size=self.min_cluster_size,
                        min_samples=self.min_samples, copy=True).fit(Xs).labels_.astype(np.int64)
        self._ref_X_, self._ref_labels_ = Xs, sub
        self.labels_ = sub if idx.size == X.shape[0] else self._assign(X)[0]
        self.n_clusters_ = int(sub.max()) + 1 if sub.size and sub.max() >= 0 else 0
        self.cluster_centers_ = (cluster_means(Xs, sub, self.n_clusters_) if self.n_clusters_
                                 else np.zeros((0, X.shape[1])))
        self.n_features_in_ = X.shape[1]
        return self
