"""Torch backend: exact kNN and nearest centre against brute force, k-means against scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from engine.cluster import KMeans, knn
from engine.cluster import _torch
from engine.cluster._nearest import nearest_center
from engine.cluster.kmeans import resolve_kmeans_backend


def _brute_knn(Q, R, k, exclude_self=False):
    """Plain reference: every distance, stable sort (ties by index)."""
    D = np.sqrt(((np.asarray(Q, float)[:, None, :] - np.asarray(R, float)[None]) ** 2).sum(-1))
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, idx, 1), idx


@pytest.mark.parametrize("tiles", [(None, None), (7, 13), (64, 5)])
def test_knn_equals_brute_force(tiles):
    rng = np.random.default_rng(0)
    R = rng.normal(size=(230, 11))
    Q = rng.normal(size=(41, 11))
    d, i = knn(Q, R, k=6, query_chunk=tiles[0], ref_chunk=tiles[1])
    dr, ir = _brute_knn(Q, R, 6)
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_allclose(d, dr, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tiles", [(None, None), (9, 17)])
def test_knn_self_query_excludes_self_by_index(tiles):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 5))
    X[10] = X[3]                     # an exact duplicate stays a neighbour at distance 0
    d, i = knn(X, k=4, exclude_self=True, query_chunk=tiles[0], ref_chunk=tiles[1])
    dr, ir = _brute_knn(X, X, 4, exclude_self=True)
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_allclose(d, dr, atol=1e-12)
    assert (i != np.arange(120)[:, None]).all()
    assert i[3, 0] == 10 and d[3, 0] == 0.0


def test_knn_float32_rerank_survives_cancellation():
    """Far from the origin, |x|^2 + |y|^2 - 2 x.y in float32 loses the small distances."""
    rng = np.random.default_rng(2)
    X = (1000.0 + rng.normal(scale=0.05, size=(300, 32))).astype(np.float32)
    _, ir = _brute_knn(X.astype(np.float64), X.astype(np.float64), 5, exclude_self=True)
    d, i = knn(X, k=5, exclude_self=True)
    assert np.mean(i == ir) > 0.99
    _, i_plain = knn(X, k=5, exclude_self=True, rerank=False)
    assert np.mean(i == ir) >= np.mean(i_plain == ir)


def test_knn_accepts_tensors_and_checks_input():
    import torch

    X = np.random.default_rng(3).normal(size=(50, 4))
    d1, i1 = knn(torch.from_numpy(X), k=3, exclude_self=True)
    d2, i2 = knn(X, k=3, exclude_self=True)
    np.testing.assert_array_equal(i1, i2)
    with pytest.raises(ValueError, match="k must be an int in 1..49"):
        knn(X, k=50, exclude_self=True)
    with pytest.raises(ValueError, match="Q has 4 features, R has 3"):
        knn(X, X[:, :3], k=2)
    bad = X.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in 1 of 50 rows"):
        knn(bad, k=2)
    with pytest.raises(ValueError, match="exclude_self applies when R is omitted"):
        knn(X, X, k=2, exclude_self=True)
    with pytest.raises(ValueError, match="precision must be 'highest' or 'high'"):
        knn(X, k=2, precision="low")
    # "high" (TF32 on CUDA) keeps the answer exact through the re-ranking, and restores
    # the global matmul precision
    before = torch.get_float32_matmul_precision()
    np.testing.assert_array_equal(knn(X, k=3, exclude_self=True, precision="high")[1], i2)
    assert torch.get_float32_matmul_precision() == before


def test_nearest_center_matches_numpy():
    import torch

    rng = np.random.default_rng(4)
    X, C = rng.normal(size=(500, 9)), rng.normal(size=(6, 9))
    lab_t, sq_t = _torch.nearest_center_torch(torch.from_numpy(X), torch.from_numpy(C), chunk=77)
    lab, dist = nearest_center(X, C)
    np.testing.assert_array_equal(lab_t.numpy(), lab)
    np.testing.assert_allclose(np.sqrt(sq_t.numpy()), dist, rtol=1e-9, atol=1e-9)


def test_kmeans_plusplus_picks_spread_rows_deterministically():
    import torch

    X, y = make_blobs(400, n_features=6, centers=5, cluster_std=0.3, center_box=(-30, 30),
                      random_state=0)
    Xt = torch.from_numpy(X)
    C1, idx1 = _torch.kmeans_plusplus_torch(Xt, 5, np.random.RandomState(7))
    C2, idx2 = _torch.kmeans_plusplus_torch(Xt, 5, np.random.RandomState(7))
    np.testing.assert_array_equal(idx1, idx2)
    np.testing.assert_array_equal(C1.numpy(), X[idx1])
    assert len(set(y[idx1])) == 5          # one seed per well-separated blob


def test_torch_kmeans_agrees_with_sklearn():
    # overlapping blobs: inertia within 1% of scikit-learn's
    X, _ = make_blobs(3000, n_features=20, centers=8, cluster_std=4.0, random_state=1)
    sk = SkKMeans(8, n_init=4, random_state=0).fit(X)
    tk = KMeans(8, backend="torch", n_init=4, random_state=0).fit(X)
    assert tk.backend_ == "torch" and tk.device_ == "cpu"
    assert abs(tk.inertia_ - sk.inertia_) / sk.inertia_ < 0.01
    # the reported inertia is the true one of the returned labels and centres
    ref = ((X - tk.cluster_centers_[tk.labels_]) ** 2).sum()
    assert tk.inertia_ == pytest.approx(ref, rel=1e-9)
    # separable blobs: same partition
    Xs, ys = make_blobs(1000, n_features=16, centers=5, cluster_std=1.0, center_box=(-20, 20),
                        random_state=2)
    sk = SkKMeans(5, n_init=4, random_state=0).fit(Xs)
    tk = KMeans(5, backend="torch", random_state=0).fit(Xs.astype(np.float32))
    assert adjusted_rand_score(sk.labels_, tk.labels_) == 1.0
    assert adjusted_rand_score(ys, tk.labels_) == 1.0
    np.testing.assert_array_equal(tk.predict(Xs), tk.labels_)


def test_torch_kmeans_on_tensor_and_deterministic():
    import torch

    X, _ = make_blobs(600, n_features=8, centers=4, cluster_std=2.0, random_state=5)
    a = KMeans(4, random_state=3).fit(torch.from_numpy(X.astype(np.float32)))
    b = KMeans(4, backend="torch", random_state=3).fit(X.astype(np.float32))
    assert a.backend_ == "torch"
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_)
    # a tensor given to another backend is copied to NumPy
    c = KMeans(4, backend="sklearn", random_state=3).fit(torch.from_numpy(X))
    assert c.backend_ == "sklearn" and adjusted_rand_score(a.labels_, c.labels_) > 0.95


def test_lloyd_relocates_empty_clusters():
    import torch

    X, _ = make_blobs(300, n_features=4, centers=3, cluster_std=0.5, random_state=0)
    Xt = torch.from_numpy(X)
    C0 = torch.from_numpy(np.vstack([X[:2], [[1e6] * 4]]))   # third centre attracts nobody
    C, labels, inertia, _ = _torch._lloyd(Xt, (Xt * Xt).sum(1), C0, 100, 0.0)
    assert np.bincount(labels.numpy(), minlength=3).min() > 0
    assert np.abs(C.numpy()).max() < 1e3


def test_auto_backend_picks_torch_on_a_gpu_without_faiss_or_cuml(monkeypatch):
    from engine.cluster import kmeans as km_mod

    monkeypatch.setattr(_torch, "cuda_available", lambda: True)
    monkeypatch.setattr(km_mod, "_faiss_gpus", lambda: 0)
    real = km_mod._has_module
    monkeypatch.setattr(km_mod, "_has_module", lambda m: False if m == "cuml" else real(m))
    assert resolve_kmeans_backend("auto", "cuda", 10) == ("torch", "cuda")
    assert resolve_kmeans_backend("auto", "auto", 10) == ("torch", "cuda")
    # FAISS-GPU stays preferred when installed
    monkeypatch.setattr(km_mod, "_faiss_gpus", lambda: 1)
    assert resolve_kmeans_backend("auto", "cuda", 10) == ("faiss", "cuda")
    assert resolve_kmeans_backend("torch", "cuda", 10) == ("torch", "cuda")
    # the CPU keeps today's choice
    assert resolve_kmeans_backend("auto", "cpu", 10)[0] == "sklearn"


def test_no_gpu_refuses_cuda_and_auto_stays_on_cpu(monkeypatch):
    from engine.cluster import kmeans as km_mod

    monkeypatch.setattr(_torch, "cuda_available", lambda: False)
    monkeypatch.setattr(km_mod, "_faiss_gpus", lambda: 0)
    with pytest.raises(ValueError, match="needs a visible GPU"):
        resolve_kmeans_backend("torch", "cuda", 10)
    assert resolve_kmeans_backend("torch", "auto", 10) == ("torch", "cpu")
    assert resolve_kmeans_backend("auto", "auto", 10)[1] == "cpu"


def test_cuda_path_with_cpu_standing_in(monkeypatch):
    """The device plumbing of device='cuda' (tensor moves, result conversion) on CPU torch."""
    import torch

    from engine.cluster import kmeans as km_mod

    monkeypatch.setattr(_torch, "cuda_available", lambda: True)
    monkeypatch.setattr(_torch, "torch_device", lambda device: torch.device("cpu"))
    monkeypatch.setattr(km_mod, "_faiss_gpus", lambda: 0)
    real = km_mod._has_module
    monkeypatch.setattr(km_mod, "_has_module", lambda m: False if m == "cuml" else real(m))
    X, y = make_blobs(400, n_features=8, centers=3, cluster_std=1.0, random_state=4)
    gpu = KMeans(3, device="cuda", random_state=0).fit(X)
    cpu = KMeans(3, backend="torch", device="cpu", random_state=0).fit(X)
    assert (gpu.backend_, gpu.device_) == ("torch", "cuda")
    assert isinstance(gpu.labels_, np.ndarray) and gpu.labels_.dtype == np.int64
    np.testing.assert_array_equal(gpu.labels_, cpu.labels_)
    d, i = knn(X, k=3, exclude_self=True, device="cuda")
    np.testing.assert_array_equal(i, _brute_knn(X, X, 3, exclude_self=True)[1])
