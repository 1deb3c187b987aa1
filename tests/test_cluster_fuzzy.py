"""Fuzzy c-means Numba kernel against its slow NumPy twin."""
from __future__ import annotations

import numpy as np
import pytest

from engine.cluster.fuzzy_kernel import fcm_kernel, fcm_memberships, fcm_reference


@pytest.mark.parametrize("m", [2.0, 1.5, 3.0])
def test_kernel_matches_reference(m):
    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(c, 1.0, size=(25, 6)) for c in (-3, 0, 4)])
    C0 = X[[0, 30, 60]] + 0.1
    Ck, Uk, nk = fcm_kernel(X, C0, m=m, max_iter=50, tol=1e-9)
    Cr, Ur, nr = fcm_reference(X, C0, m=m, max_iter=50, tol=1e-9)
    assert nk == nr
    np.testing.assert_allclose(Ck, Cr, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(Uk, Ur, rtol=1e-8, atol=1e-10)


def test_few_iterations_match_exactly():
    """Same result after each of the first iterations (no convergence shortcut)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    C0 = X[:4].copy() + 0.01
    for it in (1, 2, 3):
        Ck, Uk, _ = fcm_kernel(X, C0, 2.0, max_iter=it, tol=0.0)
        Cr, Ur, _ = fcm_reference(X, C0, 2.0, max_iter=it, tol=0.0)
        np.testing.assert_allclose(Ck, Cr, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(Uk, Ur, rtol=1e-9, atol=1e-12)


def test_point_on_a_centre_gets_full_membership():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    C = np.array([[0.0, 0.0], [5.0, 5.0]])
    U = fcm_memberships(X, C, 2.0)
    np.testing.assert_allclose(U[0], [1.0, 0.0])
    np.testing.assert_allclose(U[2], [0.0, 1.0])
    # m = 2: u_1j = 1/sum_l (d_j/d_l)^2 with d = (1, sqrt(41))
    d = np.array([1.0, np.sqrt(41.0)])
    np.testing.assert_allclose(U[1], 1.0 / ((d[:, None] / d[None, :]) ** 2).sum(1))


def test_parallel_and_serial_kernels_agree(monkeypatch):
    import engine.cluster.fuzzy_kernel as fk

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    C0 = X[:5].copy() + 0.01
    monkeypatch.setattr(fk, "PARALLEL_MIN_WORK", 1)
    Cp, Up, _ = fk.fcm_kernel(X, C0, 2.0, max_iter=20, tol=0.0)
    monkeypatch.setattr(fk, "PARALLEL_MIN_WORK", 10**12)
    Cs, Us, _ = fk.fcm_kernel(X, C0, 2.0, max_iter=20, tol=0.0)
    np.testing.assert_allclose(Cp, Cs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Up, Us, rtol=1e-12, atol=1e-14)
