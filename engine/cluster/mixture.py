"""Gaussian mixture clustering (scikit-learn), with memberships."""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseClusterer

__all__ = ["GaussianMixture"]


class GaussianMixture(BaseClusterer):
    """Gaussian mixture model fitted by EM; events go to the most probable component.

    Parameters
    ----------
    n_clusters : int, default 3
        Number of components.
    covariance_type : {"diag", "spherical", "tied", "full"}, default "diag"
        ``"full"`` costs ``d**2`` per component (392 features: 150k numbers).
    n_init : int, default 1
    max_iter : int, default 200
    reg_covar : float, default 1e-6
    device : {"cpu", "auto"}, default "cpu"
    random_state : int, RandomState or None

    Attributes
    ----------
    cluster_centers_ : ndarray, shape (n_clusters, n_features)
        Component means.
    membership_ : ndarray, shape (n_samples, n_clusters)
        Posterior probabilities.
    labels_ : ndarray of int64
    bic_ : float
        Bayesian information criterion of the fit (lower is better).
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"diag", "spherical", "tied", "full"})],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
    }

    def __init__(self, n_clusters: int = 3, *, covariance_type: str = "diag", n_init: int = 1,
                 max_iter: int = 200, reg_covar: float = 1e-6, device: str = "cpu",
                 random_state=None):
        self.n_clusters = n_clusters
        self.covariance_type = covariance_type
        self.n_init = n_init
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None) -> "GaussianMixture":
        """Fit the mixture to ``X``.

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
        from sklearn.mixture import GaussianMixture as SkGMM

        X = self._begin_fit(X)
        gm = SkGMM(self.n_clusters, covariance_type=self.covariance_type, n_init=self.n_init,
                   max_iter=self.max_iter, reg_covar=self.reg_covar,
                   random_state=self.random_state).fit(X)
        self.model_ = gm
        self.membership_ = gm.predict_proba(X)
        self.labels_ = np.argmax(self.membership_, axis=1).astype(np.int64)
        self.cluster_centers_ = gm.means_.copy()
        self.bic_ = float(gm.bic(X))
        self.n_features_in_ = X.shape[1]
        return self

    def _assign(self, X: np.ndarray):
        proba = self.model_.predict_proba(X)
        lab = np.argmax(proba, axis=1).astype(np.int64)
        diff = X - self.cluster_centers_[lab]
        return lab, np.sqrt(np.einsum("ij,ij->i", diff, diff))
