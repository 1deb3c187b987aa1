"""Cluster validity indices of the paper: SIL, SSW, SSB and WB."""
from __future__ import annotations

import numpy as np

from ._nearest import cluster_means
from ._validation import check_features

__all__ = ["cluster_indices", "mean_silhouette", "within_sums"]


def _check_labels(labels, n: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"labels must be 1-D with one entry per row of X ({n}), "
                         f"got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers (cluster numbers), got dtype {lab.dtype}")
    return lab.astype(np.int64)


def mean_silhouette(X: np.ndarray, labels: np.ndarray, sample_size: int | None = 10_000,
                    random_state=0) -> tuple[float, bool]:
    """Mean Euclidean silhouette, on a seeded sample above ``sample_size`` events.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    labels : ndarray of int, shape (n,)
        At least two distinct values, otherwise the result is NaN.
    sample_size : int or None
        Largest number of events used; None uses all.
    random_state : int, RandomState or None
        Seed of the sample.

    Returns
    -------
    silhouette : float
    sampled : bool
        Whether a sample was used.
    """
    from sklearn.metrics import silhouette_score
    from sklearn.utils import check_random_state

    n = X.shape[0]
    sampled = sample_size is not None and n > sample_size
    if sampled:
        idx = np.sort(check_random_state(random_state).choice(n, sample_size, replace=False))
        X, labels = X[idx], labels[idx]
    k = np.unique(labels).size
    if k < 2 or k >= X.shape[0]:
        return float("nan"), sampled
    return float(silhouette_score(X, labels, metric="euclidean")), sampled


def within_sums(X: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Summed within-cluster distances to the cluster means.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    labels : ndarray of int, shape (n,), values ``>= 0``

    Returns
    -------
    sum_dist : float
        Sum of Euclidean distances of the events to their cluster mean.
    sum_sq : float
        Sum of squared distances (the k-means inertia).
    """
    mu = cluster_means(X, labels)
    d = np.empty(X.shape[0])
    chunk = 65536
    for s in range(0, X.shape[0], chunk):
        diff = np.asarray(X[s:s + chunk], dtype=np.float64) - mu[labels[s:s + chunk]]
        d[s:s + chunk] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return float(d.sum()), float(np.sum(d ** 2))


def cluster_indices(X, labels, *, sample_size: int | None = 10_000, random_state=0) -> dict:
    """The indices of the paper (method.md, Stage 4) for one clustering.

    Events labelled -1 (noise, novelty) are left out.

    - SIL: mean silhouette (Euclidean; seeded sample above ``sample_size``).
    - SSW: sum over clusters of the Euclidean (not squared) distances of each
      member to its cluster mean, divided by N.
    - SSB: mean over clusters of the Euclidean distance of the cluster mean to
      the mean of all of X.
    - WB: SSW * K / SSB (lower is better).

    Parameters
    ----------
    X : array_like, shape (n, d)
    labels : array_like of int, shape (n,)
    sample_size : int or None
        Silhouette sample size limit.
    random_state : int, RandomState or None
        Seed of the silhouette sample.

    Returns
    -------
    dict
        ``SIL, SSW, SSB, WB`` (floats; SIL and WB are NaN with one cluster),
        ``K``, ``N`` and ``SIL_sampled``.

    Raises
    ------
    ValueError
        If ``X`` or ``labels`` are malformed, or no event has a label >= 0.
    """
    X = check_features(X, dtype=None)
    lab = _check_labels(labels, X.shape[0])
    keep = lab >= 0
    if not keep.any():
        raise ValueError("no event has a cluster label >= 0 (all noise)")
    if not keep.all():
        X, lab = X[keep], lab[keep]
    # renumber 0..K-1 so that gaps (empty clusters) do not count as clusters
    _, lab = np.unique(lab, return_inverse=True)
    lab = lab.astype(np.int64)
    n, k = X.shape[0], int(lab.max()) + 1
    sil, sampled = mean_silhouette(X, lab, sample_size, random_state)
    sum_dist, _ = within_sums(X, lab)
    ssw = sum_dist / n
    mu = cluster_means(X, lab)
    ssb = float(np.mean(np.linalg.norm(mu - X.mean(axis=0, dtype=np.float64), axis=1)))
    wb = ssw * k / ssb if ssb > 0 else float("nan")
    return {"SIL": sil, "SSW": float(ssw), "SSB": ssb, "WB": float(wb), "K": k, "N": n,
            "SIL_sampled": bool(sampled)}
