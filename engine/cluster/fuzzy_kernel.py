"""Fuzzy c-means iterations: a Numba kernel and its slow, obvious NumPy twin.

Both start from the same centres and apply the same updates (Bezdek):

    u_ij = 1 / sum_l (d_ij / d_il) ** (2 / (m - 1))      (d: Euclidean distance)
    c_j  = sum_i u_ij**m x_i / sum_i u_ij**m

until the largest change of a centre coordinate is below ``tol``. An event
that sits exactly on a centre gets membership 1 there (the first such centre).
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["fcm_kernel", "fcm_reference", "fcm_memberships"]


@numba.njit(cache=True)
def _row_memberships(i, x2i, XC, c2, expo, U):
    """Memberships of event ``i`` from its squared distances to the centres."""
    k = U.shape[1]
    d2 = np.empty(k)
    zero = -1
    for j in range(k):
        v = x2i - 2.0 * XC[i, j] + c2[j]
        if v <= 1e-12 * (x2i + c2[j]) or v <= 0.0:
            v = 0.0
            if zero < 0:
                zero = j
        d2[j] = v
    if zero >= 0:
        for j in range(k):
            U[i, j] = 0.0
        U[i, zero] = 1.0
        return
    for j in range(k):
        s = 0.0
        for l in range(k):
            s += (d2[j] / d2[l]) ** expo      # (d_ij / d_il)^(2/(m-1)) on squared distances
        U[i, j] = 1.0 / s


@numba.njit(parallel=True, cache=True)
def _memberships_par(X, C, m, U):
    x2 = (X * X).sum(axis=1)
    c2 = (C * C).sum(axis=1)
    XC = np.dot(X, np.ascontiguousarray(C.T))
    expo = 1.0 / (m - 1.0)
    for i in numba.prange(X.shape[0]):
        _row_memberships(i, x2[i], XC, c2, expo, U)


@numba.njit(cache=True)
def _memberships_ser(X, C, m, U):
    x2 = (X * X).sum(axis=1)
    c2 = (C * C).sum(axis=1)
    XC = np.dot(X, np.ascontiguousarray(C.T))
    expo = 1.0 / (m - 1.0)
    for i in range(X.shape[0]):
        _row_memberships(i, x2[i], XC, c2, expo, U)


# threads pay off only on large inputs (each parallel region costs a barrier,
# milliseconds on a busy machine)
PARALLEL_MIN_WORK = 1_000_000   # n * k * k above which the parallel kernel is used


def _use_parallel(n: int, k: int) -> bool:
    return n * k * k >= PARALLEL_MIN_WORK


@numba.njit(cache=True)
def _memberships(X, C, m, U, parallel):
    if parallel:
        _memberships_par(X, C, m, U)
    else:
        _memberships_ser(X, C, m, U)


@numba.njit(cache=True)
def _iterate(X, C0, m, max_iter, tol, parallel):
    n = X.shape[0]
    k = C0.shape[0]
    C = C0.copy()
    U = np.empty((n, k))
    n_iter = 0
    for it in range(max_iter):
        _memberships(X, C, m, U, parallel)
        W = U ** m
        num = np.dot(np.ascontiguousarray(W.T), X)
        den = W.sum(axis=0)
        Cn = np.empty_like(C)
        for j in range(k):
            if den[j] > 0.0:
                for t in range(C.shape[1]):
                    Cn[j, t] = num[j, t] / den[j]
            else:
                for t in range(C.shape[1]):
                    Cn[j, t] = C[j, t]
        shift = np.max(np.abs(Cn - C))
        C = Cn
        n_iter = it + 1
        if shift < tol:
            break
    _memberships(X, C, m, U, parallel)
    return C, U, n_iter


def fcm_memberships(X: np.ndarray, centers: np.ndarray, m: float = 2.0) -> np.ndarray:
    """Fuzzy memberships of events to fixed centres (Numba kernel).

    Parameters
    ----------
    X : ndarray of float64, shape (n, d)
    centers : ndarray of float64, shape (k, d)
    m : float
        Fuzzifier (> 1).

    Returns
    -------
    ndarray, shape (n, k)
        Rows sum to 1.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    C = np.ascontiguousarray(centers, dtype=np.float64)
    U = np.empty((X.shape[0], C.shape[0]))
    _memberships(X, C, float(m), U, _use_parallel(X.shape[0], C.shape[0]))
    return U


def fcm_kernel(X: np.ndarray, centers0: np.ndarray, m: float = 2.0, max_iter: int = 300,
               tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, int]:
    """Run fuzzy c-means from given centres (Numba, parallel over events).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    centers0 : ndarray, shape (k, d)
        Starting centres.
    m : float
        Fuzzifier (> 1).
    max_iter : int
    tol : float
        Stop when no centre coordinate moves more than this.

    Returns
    -------
    centers : ndarray, shape (k, d)
    memberships : ndarray, shape (n, k)
    n_iter : int
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    C0 = np.ascontiguousarray(centers0, dtype=np.float64)
    return _iterate(X, C0, float(m), int(max_iter), float(tol),
                    _use_parallel(X.shape[0], C0.shape[0]))


def fcm_reference(X: np.ndarray, centers0: np.ndarray, m: float = 2.0, max_iter: int = 300,
                  tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, int]:
    """Slow obvious twin of :func:`fcm_kernel` (loops, straight from the formulas).

    Parameters and returns as :func:`fcm_kernel`.
    """
    X = np.asarray(X, dtype=np.float64)
    C = np.array(centers0, dtype=np.float64)
    n, k = X.shape[0], C.shape[0]

    def memberships(C):
        U = np.zeros((n, k))
        for i in range(n):
            d = np.array([np.linalg.norm(X[i] - C[j]) for j in range(k)])
            if np.any(d == 0.0):
                U[i, int(np.flatnonzero(d == 0.0)[0])] = 1.0
                continue
            for j in range(k):
                U[i, j] = 1.0 / sum((d[j] / d[l]) ** (2.0 / (m - 1.0)) for l in range(k))
        return U

    n_iter = 0
    for it in range(max_iter):
        U = memberships(C)
        Cn = C.copy()
        for j in range(k):
            w = U[:, j] ** m
            if w.sum() > 0:
                Cn[j] = (w[:, None] * X).sum(axis=0) / w.sum()
        shift = np.max(np.abs(Cn - C))
        C = Cn
        n_iter = it + 1
        if shift < tol:
            break
    return C, memberships(C), n_iter
