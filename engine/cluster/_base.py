"""Shared behaviour of the clusterers: predict, fit_predict and the N-limit policy."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted

from ._nearest import nearest_center, nearest_labelled, subsample_indices
from ._validation import check_device, check_features, check_n_clusters

__all__ = ["BaseClusterer", "SubsampleWarning"]


class SubsampleWarning(UserWarning):
    """Raised (as a warning) when a clusterer fits on a subsample of the events."""


class BaseClusterer(ClusterMixin, BaseEstimator):
    """Common plumbing; subclasses implement ``fit``.

    Subclasses set ``cluster_centers_`` (used by :meth:`predict` through the
    nearest centre) or, for neighbour-based assignment, ``_ref_X_`` and
    ``_ref_labels_`` with ``_assign_rule_ = "1nn"``.
    """

    _assign_rule_ = "center"

    def _begin_fit(self, X) -> np.ndarray:
        """Validate the parameters (once, in fit), the device and the features.

        Checks ``n_clusters`` against the number of events when the estimator has
        one. Returns the features as a clean float array.
        """
        self._validate_params()
        check_device(self.device, type(self).__name__)
        X = check_features(X)
        if hasattr(self, "n_clusters"):
            check_n_clusters(self.n_clusters, X.shape[0])
        return X

    def _subsample(self, X: np.ndarray, max_samples: int | None, what: str) -> np.ndarray:
        """Indices to fit on, warning when the N-limit policy applies."""
        n = X.shape[0]
        if max_samples is None or n <= max_samples:
            return np.arange(n)
        warnings.warn(
            f"{type(self).__name__}: {n} events exceed max_samples={max_samples} ({what}); "
            f"fitting on a seeded subsample of {max_samples} and assigning the other "
            f"{n - max_samples} to the nearest "
            f"{'fitted event' if self._assign_rule_ == '1nn' else 'cluster centre'}",
            SubsampleWarning, stacklevel=3)
        return subsample_indices(n, max_samples, getattr(self, "random_state", None))

    def _assign(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._assign_rule_ == "1nn":
            return nearest_labelled(X, self._ref_X_, self._ref_labels_)
        return nearest_center(X, self.cluster_centers_)

    def predict(self, X) -> np.ndarray:
        """Cluster of each new event.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray of int64, shape (n_samples,)

        Raises
        ------
        ValueError
            If ``X`` is malformed or has the wrong number of features.
        """
        check_is_fitted(self, "labels_")
        X = check_features(X, dtype=None)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} was "
                             f"fitted with {self.n_features_in_}")
        return self._assign(X)[0]

    def fit_predict(self, X, y=None, **kw) -> np.ndarray:
        """Fit and return ``labels_``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        ndarray of int64, shape (n_samples,)
        """
        return self.fit(X, y, **kw).labels_
