"""Nearest-centre and nearest-neighbour assignment in chunks (no N x N matrix)."""
from __future__ import annotations

import numpy as np

__all__ = ["nearest_center", "distances_to_assigned", "nearest_labelled", "subsample_indices", "cluster_means"]


def nearest_center(X: np.ndarray, centers: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Index of and Euclidean distance to the nearest centre for every row of ``X``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Points (already validated).
    centers : ndarray, shape (k, d)
        Centres.
    chunk : int
        Rows handled at once; memory is ``chunk * k`` floats.

    Returns
    -------
    labels : ndarray of int64, shape (n,)
    distances : ndarray of float64, shape (n,)
    """
    C = np.asarray(centers, dtype=np.float64)
    c2 = np.einsum("ij,ij->i", C, C)
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    for s in range(0, n, chunk):
        xb = np.asarray(X[s:s + chunk], dtype=np.float64)
        # |x|^2 is the same for every centre: argmin over |c|^2 - 2 x.c
        j = np.argmin(c2[None, :] - 2.0 * (xb @ C.T), axis=1)
        labels[s:s + chunk] = j
        dist[s:s + chunk] = _row_norms(xb - C[j])
    return labels, dist


def _row_norms(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", a, a))


def distances_to_assigned(X: np.ndarray, centers: np.ndarray, labels: np.ndarray,
                          chunk: int = 65536) -> np.ndarray:
    """Euclidean distance of every row of ``X`` to ``centers[labels]``, in chunks.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    centers : ndarray, shape (k, d)
    labels : ndarray of int, shape (n,)
    chunk : int

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    C = np.asarray(centers, dtype=np.float64)
    out = np.empty(X.shape[0])
    for s in range(0, X.shape[0], chunk):
        out[s:s + chunk] = _row_norms(np.asarray(X[s:s + chunk], dtype=np.float64)
                                      - C[labels[s:s + chunk]])
    return out


def nearest_labelled(X: np.ndarray, ref: np.ndarray, ref_labels: np.ndarray,
                     chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Label of and distance to the nearest reference point (1-NN).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    ref : ndarray, shape (m, d)
        Reference points with known labels.
    ref_labels : ndarray, shape (m,)
    chunk : int
        Rows of ``X`` handled at once (memory ``chunk * m`` floats).

    Returns
    -------
    labels : ndarray of int64, shape (n,)
    distances : ndarray of float64, shape (n,)
    """
    idx, dist = nearest_center(X, ref, chunk=chunk)
    return np.asarray(ref_labels, dtype=np.int64)[idx], dist


def subsample_indices(n: int, max_samples: int, random_state) -> np.ndarray:
    """Sorted seeded subsample of ``range(n)`` of size ``min(n, max_samples)``.

    Parameters
    ----------
    n : int
    max_samples : int
    random_state : int, RandomState or None

    Returns
    -------
    ndarray of int64
    """
    from sklearn.utils import check_random_state

    if n <= max_samples:
        return np.arange(n)
    rng = check_random_state(random_state)
    return np.sort(rng.choice(n, size=max_samples, replace=False))


def cluster_means(X: np.ndarray, labels: np.ndarray, n_clusters: int | None = None) -> np.ndarray:
    """Mean of the members of each cluster ``0..K-1`` (label -1 ignored).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    labels : ndarray of int, shape (n,)
    n_clusters : int, optional
        Number of clusters; default ``labels.max() + 1``. Empty clusters get NaN.

    Returns
    -------
    ndarray, shape (K, d)
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if n_clusters is None else int(n_clusters)
    out = np.full((k, X.shape[1]), np.nan, dtype=np.float64)
    for j in range(k):
        members = X[labels == j]
        if members.shape[0]:
            out[j] = members.mean(axis=0, dtype=np.float64)
    return out
