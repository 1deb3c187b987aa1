"""Feature conditioning before clustering: per-station centring, standardising, PCA, L2.

The steps always run in this order (each optional):

1. ``station``: subtract the mean of the event's group (its station, or
   sensor); groups not seen in ``fit`` use the global mean;
2. ``standardize``: centre and divide by the standard deviation per feature;
3. ``pcaN``: project on the first N principal components (``whiten``: scale
   them to unit variance);
4. ``l2``: scale every event to unit Euclidean norm.

A conditioner is named by a spec string such as ``"station+standardize+pca50+l2"``
(:meth:`FeatureConditioner.from_spec`, :attr:`FeatureConditioner.spec`) and saved
inside the :class:`~engine.cluster.ClusterModel`, so ``--assign-to`` applies
the very same transform to new events.
"""
from __future__ import annotations

import logging
import re
from numbers import Integral
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._validation import check_features

__all__ = ["FeatureConditioner", "SPEC_TOKENS"]

log = logging.getLogger(__name__)

#: words of a spec string, in the order the steps run
SPEC_TOKENS = ("station", "standardize", "pcaN", "whiten", "l2")
_ALIASES = {"station": "station", "center": "station", "standardize": "standardize",
            "standardise": "standardize", "std": "standardize", "whiten": "whiten",
            "l2": "l2"}
_EPS = 1e-12


class FeatureConditioner(TransformerMixin, BaseEstimator):
    """Per-group centring, standardising, PCA (optionally whitened) and L2 normalisation.

    Parameters
    ----------
    station : bool, default False
        Subtract the mean of each group (``groups`` of :meth:`fit`); unseen
        groups at :meth:`transform` time use the global mean.
    standardize : bool, default False
        Centre and scale every feature to unit standard deviation (constant
        features are only centred).
    pca : int or None, default None
        Number of principal components kept (capped at ``min(n, d)``).
    whiten : bool, default False
        Scale the components to unit variance (needs ``pca``).
    l2 : bool, default False
        Scale every event to unit Euclidean norm (all-zero events stay zero).

    Attributes
    ----------
    n_features_in_ : int
    n_features_out_ : int
    group_means_ : dict of str -> ndarray
        Per-group means (with ``station``).
    global_mean_ : ndarray
        Mean of all events (used for unseen groups).
    mean_, scale_ : ndarray
        Standardisation (with ``standardize``).
    pca_mean_, components_, explained_variance_ : ndarray
        PCA (with ``pca``); ``components_`` has shape (n_components_, d).
    n_components_ : int

    Examples
    --------
    >>> cond = FeatureConditioner.from_spec("station+standardize+pca50+l2")  # doctest: +SKIP
    >>> Z = cond.fit_transform(X, groups=stations)                          # doctest: +SKIP
    >>> cond.spec                                                           # doctest: +SKIP
    'station+standardize+pca50+l2'
    """

    def __init__(self, station: bool = False, standardize: bool = False,
                 pca: int | None = None, whiten: bool = False, l2: bool = False):
        self.station = station
        self.standardize = standardize
        self.pca = pca
        self.whiten = whiten
        self.l2 = l2

    # -- spec strings ---------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str) -> "FeatureConditioner":
        """Build a conditioner from a string like ``"station+standardize+pca50+l2"``.

        Parameters
        ----------
        spec : str
            ``+``-separated words: ``station`` (alias ``center``),
            ``standardize`` (``standardise``, ``std``), ``pcaN`` (N >= 1),
            ``whiten`` (with ``pcaN``), ``l2``; ``""`` or ``"none"`` for no
            conditioning. Case and spaces are ignored; order is not (the steps
            always run in the order above).

        Returns
        -------
        FeatureConditioner

        Raises
        ------
        ValueError
            For an unknown or repeated word, ``pca0``, or ``whiten`` without ``pcaN``.
        """
        if not isinstance(spec, str):
            raise ValueError(f"conditioning spec must be a string, got {type(spec).__name__}")
        text = spec.strip().lower().replace(" ", "")
        kw: dict[str, Any] = {}
        if text in ("", "none"):
            return cls()
        for word in text.split("+"):
            m = re.fullmatch(r"pca(\d+)", word)
            if m:
                key, value = "pca", int(m.group(1))
                if value < 1:
                    raise ValueError(f"conditioning spec {spec!r}: {word!r} keeps no "
                                     "component; use pcaN with N >= 1")
            elif word in _ALIASES:
                key, value = _ALIASES[word], True
            else:
                raise ValueError(
                    f"conditioning spec {spec!r}: unknown step {word!r}; use '+'-joined words "
                    f"from station, standardize, pcaN (e.g. pca50), whiten, l2 (or 'none')")
            if key in kw:
                raise ValueError(f"conditioning spec {spec!r}: step {key!r} given twice")
            kw[key] = value
        if kw.get("whiten") and not kw.get("pca"):
            raise ValueError(f"conditioning spec {spec!r}: 'whiten' needs a PCA step (pcaN)")
        return cls(**kw)

    @property
    def spec(self) -> str:
        """Canonical spec string (``"none"`` when every step is off)."""
        words = []
        if self.station:
            words.append("station")
        if self.standardize:
            words.append("standardize")
        if self.pca:
            words.append(f"pca{int(self.pca)}")
        if self.whiten:
            words.append("whiten")
        if self.l2:
            words.append("l2")
        return "+".join(words) or "none"

    # -- fit / transform -------------------------------------------------------------
    def _check_params(self) -> None:
        if self.pca is not None and not (isinstance(self.pca, Integral) and self.pca >= 1):
            raise ValueError(f"pca must be None or an int >= 1, got {self.pca!r}")
        if self.whiten and not self.pca:
            raise ValueError("whiten=True needs pca (a number of components)")

    @staticmethod
    def _groups(groups, n: int, where: str) -> np.ndarray | None:
        if groups is None:
            return None
        g = np.asarray(groups).astype(str)
        if g.shape != (n,):
            raise ValueError(f"groups of {where} must have one entry per event ({n}), got "
                             f"shape {g.shape}")
        return g

    def fit(self, X, y=None, groups: Sequence | None = None) -> "FeatureConditioner":
        """Learn the conditioning from ``X``.

        ``X`` is read in blocks of rows (float32 input stays float32; sums are
        float64), so memory stays near the size of ``X`` for any number of
        events: the PCA is the thin SVD of the conditioned events when they are
        no more than the features, else the eigenvectors of a ``d x d``
        covariance summed block by block.

        Parameters
        ----------
        X : array_like, shape (n, d)
        y : ignored
        groups : sequence of str, optional
            Group (station) of each event; required with ``station=True``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For malformed ``X``/``groups``, bad parameters, or ``station``
            without ``groups``.
        """
        self._check_params()
        X = check_features(X, dtype=None)
        n, d = X.shape
        g = self._groups(groups, n, "fit")
        if self.station and g is None:
            raise ValueError("station centring needs groups (the station of each event) "
                             "in fit(X, groups=...)")
        self.n_features_in_ = d
        self.global_mean_ = _column_sum(X, lambda sl: X[sl].astype(np.float64)) / n
        self.group_means_ = {}
        offsets = None
        if self.station:
            names, inv = np.unique(g, return_inverse=True)
            sums = np.zeros((names.size, d))
            for sl in _blocks(n):
                np.add.at(sums, inv[sl], X[sl].astype(np.float64))
            counts = np.bincount(inv, minlength=names.size)[:, None]
            means = sums / counts
            self.group_means_ = {str(name): means[t] for t, name in enumerate(names)}
            offsets = (means, inv)

        def centred(sl: slice) -> np.ndarray:
            return _offset_rows(X, sl, offsets)

        prepared = centred
        if self.standardize:
            # without station centring the rows are X itself: its mean is global_mean_
            self.mean_ = (self.global_mean_.copy() if offsets is None
                          else _column_sum(X, centred) / n)
            var = _column_sum(X, lambda sl: (centred(sl) - self.mean_) ** 2) / n
            sd = np.sqrt(var)
            self.scale_ = np.where(sd > _EPS, sd, 1.0)

            def prepared(sl: slice) -> np.ndarray:
                return (centred(sl) - self.mean_) / self.scale_
        self.n_components_ = d
        if self.pca:
            k = min(int(self.pca), n, d)
            if k < self.pca:
                log.info("conditioning: pca%d capped at %d components (%d events, %d features)",
                         self.pca, k, n, d)
            self.pca_mean_ = _column_sum(X, prepared) / n
            comps, vals = _principal_axes(X, lambda sl: prepared(sl) - self.pca_mean_, k)
            # deterministic signs: largest |loading| positive (as scikit-learn's svd_flip)
            flip = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
            comps *= np.where(flip == 0, 1.0, flip)[:, None]
            self.components_ = comps
            self.explained_variance_ = np.clip(vals, 0.0, None)
            self.n_components_ = k
        self.n_features_out_ = self.n_components_
        return self

    def transform(self, X, groups: Sequence | None = None) -> np.ndarray:
        """Apply the learned conditioning, block by block of rows.

        Parameters
        ----------
        X : array_like, shape (n, d)
        groups : sequence of str, optional
            Group of each event; with ``station`` centring, events without a
            group or of a group unseen in fit use the global mean.

        Returns
        -------
        ndarray of float64, shape (n, n_features_out_)

        Raises
        ------
        ValueError
            For malformed input or the wrong number of features.
        """
        check_is_fitted(self, "n_features_in_")
        X = check_features(X, dtype=None)
        n = X.shape[0]
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the conditioner was fitted "
                             f"with {self.n_features_in_}")
        g = self._groups(groups, n, "transform")
        offsets = None
        if self.station:
            if g is None:
                offsets = (self.global_mean_[None, :], np.zeros(n, dtype=np.int64))
            else:
                names, inv = np.unique(g, return_inverse=True)
                means = np.stack([self.group_means_.get(str(name), self.global_mean_)
                                  for name in names])
                unseen = [str(name) for name in names if str(name) not in self.group_means_]
                if unseen:
                    log.info("conditioning: %d group(s) unseen in fit (%s) use the global mean",
                             len(unseen), ", ".join(unseen[:5]))
                offsets = (means, inv)
        out = np.empty((n, self.n_features_out_))
        for sl in _blocks(n):
            Z = _offset_rows(X, sl, offsets)
            if self.standardize:
                Z = (Z - self.mean_) / self.scale_
            if self.pca:
                Z = (Z - self.pca_mean_) @ self.components_.T
                if self.whiten:
                    Z = Z / np.sqrt(np.maximum(self.explained_variance_, _EPS))
            if self.l2:
                norms = np.linalg.norm(Z, axis=1, keepdims=True)
                Z = Z / np.where(norms > 0, norms, 1.0)
            out[sl] = Z
        return out

    def fit_transform(self, X, y=None, groups: Sequence | None = None) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same events."""
        return self.fit(X, groups=groups).transform(X, groups=groups)

    # -- persistence -----------------------------------------------------------------
    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-ready parameters and the learned arrays (for saving in a model file).

        Returns
        -------
        params : dict
            ``{"spec": ..., "groups": [...], "n_features_in": ..., ...}``.
        arrays : dict of str -> ndarray
        """
        check_is_fitted(self, "n_features_in_")
        names = sorted(self.group_means_)
        params = {"spec": self.spec, "groups": names, "n_features_in": int(self.n_features_in_),
                  "n_components": int(self.n_components_)}
        arrays = {"global_mean": self.global_mean_}
        if names:
            arrays["group_means"] = np.stack([self.group_means_[k] for k in names])
        if self.standardize:
            arrays.update(mean=self.mean_, scale=self.scale_)
        if self.pca:
            arrays.update(pca_mean=self.pca_mean_, components=self.components_,
                          explained_variance=self.explained_variance_)
        return params, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> "FeatureConditioner":
        """Rebuild a fitted conditioner from :meth:`to_state` output.

        Raises
        ------
        ValueError
            If the arrays are missing or do not match the parameters.
        """
        obj = cls.from_spec(params["spec"])
        d = int(params["n_features_in"])
        try:
            obj.global_mean_ = np.asarray(arrays["global_mean"], dtype=np.float64)
            names = list(params.get("groups") or [])
            gm = np.asarray(arrays["group_means"]) if names else np.zeros((0, d))
            obj.group_means_ = {str(k): gm[t] for t, k in enumerate(names)}
            if obj.standardize:
                obj.mean_, obj.scale_ = np.asarray(arrays["mean"]), np.asarray(arrays["scale"])
            if obj.pca:
                obj.pca_mean_ = np.asarray(arrays["pca_mean"])
                obj.components_ = np.asarray(arrays["components"])
                obj.explained_variance_ = np.asarray(arrays["explained_variance"])
        except KeyError as exc:
            raise ValueError(f"saved conditioner {params['spec']!r} lacks array {exc}") from None
        obj.n_features_in_ = d
        obj.n_components_ = int(params["n_components"])
        obj.n_features_out_ = obj.n_components_
        if obj.global_mean_.shape != (d,) or (obj.pca and obj.components_.shape
                                              != (obj.n_components_, d)):
            raise ValueError(f"saved conditioner {params['spec']!r}: arrays do not match "
                             f"{d} input features")
        return obj


#: rows per block when fitting and transforming (bounds the float64 temporaries)
_BLOCK_ROWS = 4096


def _blocks(n: int):
    """Slices of ``range(n)`` in blocks of :data:`_BLOCK_ROWS` rows."""
    for start in range(0, n, _BLOCK_ROWS):
        yield slice(start, min(n, start + _BLOCK_ROWS))


def _offset_rows(X: np.ndarray, sl: slice, offsets) -> np.ndarray:
    """Rows ``sl`` of ``X`` as float64, minus their group's mean when ``offsets``
    (``(means, group index of every row)``) is given."""
    block = X[sl].astype(np.float64)
    if offsets is not None:
        block -= offsets[0][offsets[1][sl]]
    return block


def _column_sum(X: np.ndarray, block_of) -> np.ndarray:
    """Sum over the rows of ``block_of(slice)`` for every block of ``X``: (d,) float64."""
    total = np.zeros(X.shape[1])
    for sl in _blocks(X.shape[0]):
        total += block_of(sl).sum(axis=0)
    return total


def _principal_axes(X: np.ndarray, centred_block, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``k`` principal axes ``(k, d)`` and variances ``(k,)`` of the centred rows.

    ``centred_block(slice)`` gives the conditioned, centred float64 rows of a
    block. With no more events than features, the thin SVD of all of them
    (``n x d``, at most ``d x d`` numbers); otherwise the ``d x d`` covariance
    summed block by block and its eigenvectors, so neither the cost nor the
    memory grows with ``n * d`` copies.
    """
    n, d = X.shape
    if n <= d:
        Xc = np.empty((n, d))
        for sl in _blocks(n):
            Xc[sl] = centred_block(sl)
        _, s, vt = np.linalg.svd(Xc, full_matrices=False)
        return vt[:k], (s[:k] ** 2) / max(n - 1, 1)
    cov = np.zeros((d, d))
    for sl in _blocks(n):
        block = centred_block(sl)
        cov += block.T @ block
    vals, vecs = np.linalg.eigh(cov / max(n - 1, 1))
    order = np.argsort(vals)[::-1][:k]
    return vecs[:, order].T, vals[order]
