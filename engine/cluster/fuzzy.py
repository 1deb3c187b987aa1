"""Fuzzy c-means estimator (Numba kernel in :mod:`engine.cluster.fuzzy_kernel`)."""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import BaseClusterer
from ._validation import check_features
from .fuzzy_kernel import fcm_kernel, fcm_memberships

__all__ = ["FuzzyCMeans"]


class FuzzyCMeans(BaseClusterer):
    """Fuzzy c-means; each event goes to the cluster of highest membership.

    Parameters
    ----------
    n_clusters : int, default 3
    m : float, default 2.0
        Fuzzifier (> 1); the paper uses 2.
    max_iter : int, default 300
    tol : float, default 1e-6
        Stop when no centre coordinate moves more than ``tol`` times the data's
        standard deviation.
    device : {"cpu", "auto"}, default "cpu"
    random_state : int, RandomState or None
        Seed of the k-means++ start.

    Attributes
    ----------
    cluster_centers_ : ndarray, shape (n_clusters, n_features)
    membership_ : ndarray, shape (n_samples, n_clusters)
        Memberships, rows sum to 1.
    labels_ : ndarray of int64
        ``argmax`` of ``membership_``.
    n_iter_ : int
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "m": [Interval(Real, 1, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
    }

    def __init__(self, n_clusters: int = 3, *, m: float = 2.0, max_iter: int = 300,
                 tol: float = 1e-6, device: str = "cpu", random_state=None):
        self.n_clusters = n_clusters
        self.m = m
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None) -> "FuzzyCMeans":
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
        from sklearn.cluster import kmeans_plusplus

        X = self._begin_fit(X)
        C0, _ = kmeans_plusplus(X, self.n_clusters, random_state=self.random_state)
        scale = float(X.std()) or 1.0
        C, U, n_iter = fcm_kernel(X, C0, self.m, self.max_iter, self.tol * scale)
        self.cluster_centers_ = C
        self.membership_ = U
        self.labels_ = np.argmax(U, axis=1).astype(np.int64)
        self.n_iter_ = int(n_iter)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_membership(self, X) -> np.ndarray:
        """Memberships of new events to the fitted centres.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples, n_clusters)
        """
        check_is_fitted(self, "membership_")
        X = check_features(X)
        return fcm_memberships(X, self.cluster_centers_, self.m)

    def predict(self, X) -> np.ndarray:
        """Cluster of highest membership of each new event.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray of int64
        """
        return np.argmax(self.predict_membership(X), axis=1).astype(np.int64)
