"""Benchmark: k-means fit, assignment of new events and exact kNN: scikit-learn, FAISS, torch;
the k scan with LDA-k-means (the default) against plain k-means.

Sizes 10^4, 10^5 and 10^6 events x 392 features (the CNN feature length);
MQE_BENCH_SMOKE=1 uses 10^3 so the file runs in seconds. Each test times the
backends in the same run and records sizes and ratios in
``benchmark.extra_info`` (timings on a shared machine are noisy; ratios hold).
Above 200,000 events the scikit-learn backend is ``MiniBatchKMeans``.

The torch backend (issue 14): k-means on 10^6 x 392 (k=8) and exact kNN of
10^5 queries against 10^6 events, on the CPU beside scikit-learn and FAISS,
and on CUDA when torch sees a GPU (targets on one H200: k-means <= 1 s, kNN of
10^6 queries <= 10 s; the 10^5-query figure scales linearly). Smoke sizes:
k-means 2,000 events, kNN 200 queries against 2,000.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from engine.cluster import ClusterModel, KMeans

SMOKE = os.environ.get("MQE_BENCH_SMOKE", "") not in ("", "0")
SIZES = [1_000] if SMOKE else [10_000, 100_000, 1_000_000]
TORCH_KMEANS_N = 2_000 if SMOKE else 1_000_000
KNN_SIZES = (200, 2_000) if SMOKE else (100_000, 1_000_000)    # (queries, references)
KNN_K = 10
D, K = 392, 8


def _data(n: int, seed: int = 0):
    centers = np.random.default_rng(12345).normal(0.0, 3.0, size=(K, D)).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, size=n)
    X = rng.standard_normal((n, D), dtype=np.float32)
    X += centers[y]
    return X, y


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@pytest.mark.parametrize("n", SIZES)
def test_kmeans_fit(benchmark, n):
    X, y = _data(n)
    params = dict(n_init=1, max_iter=50, random_state=0)
    sk, t_sk = _timed(lambda: KMeans(K, backend="sklearn", **params).fit(X))
    times = {}

    def run_faiss():
        est, times["faiss"] = _timed(lambda: KMeans(K, backend="faiss", **params).fit(X))
        return est

    fa = benchmark.pedantic(run_faiss, rounds=1, iterations=1)
    ari_sk, ari_fa = adjusted_rand_score(y, sk.labels_), adjusted_rand_score(y, fa.labels_)
    benchmark.extra_info.update({
        "n_events": n, "n_features": D, "k": K, "sklearn_s": t_sk, "faiss_s": times["faiss"],
        "ratio_sklearn_over_faiss": t_sk / times["faiss"], "sklearn_algorithm":
        "MiniBatchKMeans" if n > 200_000 else "KMeans", "ari_sklearn": ari_sk,
        "ari_faiss": ari_fa})
    print(f"\nfit n={n}: sklearn {t_sk:.2f} s, faiss {times['faiss']:.2f} s, "
          f"ratio {t_sk / times['faiss']:.1f}x, ARI {ari_sk:.3f}/{ari_fa:.3f}")
    assert ari_fa > 0.99 and ari_sk > 0.99


@pytest.mark.parametrize("n", SIZES)
def test_assign(benchmark, n):
    """Assign n new events to a saved 8-cluster model (numpy BLAS) vs a FAISS flat index."""
    import faiss

    Xfit, _ = _data(min(n, 20_000), seed=1)
    km = KMeans(K, backend="faiss", n_init=1, random_state=0).fit(Xfit)
    model = ClusterModel.from_labels(Xfit, km.labels_, centers=km.cluster_centers_)
    X, _ = _data(n, seed=2)
    index = faiss.IndexFlatL2(D)
    index.add(model.centers.astype(np.float32))
    (_, idx), t_faiss = _timed(lambda: index.search(X, 1))
    res = benchmark.pedantic(lambda: _timed(lambda: model.assign(X)), rounds=1, iterations=1)
    (lab, dist, novel), t_np = res
    agree = float(np.mean(lab[~novel] == idx[~novel, 0]))
    benchmark.extra_info.update({"n_events": n, "n_features": D, "k": K, "assign_numpy_s": t_np,
                                 "faiss_search_s": t_faiss, "ratio_numpy_over_faiss":
                                 t_np / t_faiss, "events_per_s": n / t_np})
    print(f"\nassign n={n}: ClusterModel.assign {t_np:.3f} s ({n / t_np:,.0f} events/s), "
          f"faiss search {t_faiss:.3f} s, ratio {t_np / t_faiss:.2f}")
    assert agree > 0.999 and novel.mean() < 0.05


#: the k scan of the clustering stage, on conditioned features (PCA-50)
SCAN_SIZES = [500] if SMOKE else [2_000, 20_000]
SCAN_D = 50


@pytest.mark.parametrize("n", SCAN_SIZES)
def test_k_scan_lda_kmeans_vs_kmeans(benchmark, n):
    """The default k scan (k = 2..10, every curve) with LDA-k-means against plain k-means.

    Sheared families (one shared, elongated covariance) in 50 dimensions, the
    case LDA-k-means is built for; the ratio is its cost at the same k.
    """
    from engine.cluster import scan_k

    rng = np.random.default_rng(7)
    centers = rng.normal(0.0, 1.0, size=(5, SCAN_D))
    y = rng.integers(0, 5, size=n)
    shear = np.eye(SCAN_D) + rng.normal(0.0, 0.4, size=(SCAN_D, SCAN_D))
    X = (rng.standard_normal((n, SCAN_D)) + 0.6 * centers[y]) @ shear
    km, t_km = _timed(lambda: scan_k(X, "kmeans", range(2, 11), criterion="auto",
                                     random_state=0))
    res = benchmark.pedantic(lambda: _timed(lambda: scan_k(
        X, "lda-kmeans", range(2, 11), criterion="auto", random_state=0)), rounds=1,
        iterations=1)
    lda, t_lda = res
    a_km, a_lda = (adjusted_rand_score(y, r.labels[r.chosen_k]) for r in (km, lda))
    a5_km, a5_lda = (adjusted_rand_score(y, r.labels[5]) for r in (km, lda))
    benchmark.extra_info.update({
        "n_events": n, "n_features": SCAN_D, "kmeans_scan_s": t_km, "lda_kmeans_scan_s": t_lda,
        "ratio_lda_over_kmeans": t_lda / t_km, "chosen_k_kmeans": km.chosen_k,
        "chosen_k_lda_kmeans": lda.chosen_k, "ari_own_k_kmeans": a_km,
        "ari_own_k_lda_kmeans": a_lda, "ari_k5_kmeans": a5_km, "ari_k5_lda_kmeans": a5_lda})
    print(f"\nk scan n={n}: k-means {t_km:.2f} s (k={km.chosen_k}, ARI {a_km:.3f}), "
          f"LDA-k-means {t_lda:.2f} s (k={lda.chosen_k}, ARI {a_lda:.3f}), "
          f"ratio {t_lda / t_km:.2f}; ARI at k=5 {a5_km:.3f} / {a5_lda:.3f}")
    assert a5_lda >= a5_km - 0.02


def _cuda() -> bool:
    from engine.cluster._torch import cuda_available
    return cuda_available()


def _sync() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def test_torch_kmeans(benchmark):
    """k-means k=8 on TORCH_KMEANS_N x 392: torch (CPU, and CUDA when present) vs sklearn/FAISS."""
    n = TORCH_KMEANS_N
    X, y = _data(n)
    params = dict(n_init=3, max_iter=50, random_state=0)
    sk, t_sk = _timed(lambda: KMeans(K, backend="sklearn", **params).fit(X))
    fa, t_fa = _timed(lambda: KMeans(K, backend="faiss", **params).fit(X))
    times = {}

    def run_torch():
        est, times["torch"] = _timed(lambda: KMeans(K, backend="torch", **params).fit(X))
        return est

    tc = benchmark.pedantic(run_torch, rounds=1, iterations=1)
    info = {"n_events": n, "n_features": D, "k": K, "sklearn_s": t_sk, "faiss_s": t_fa,
            "torch_cpu_s": times["torch"], "ratio_sklearn_over_torch_cpu": t_sk / times["torch"],
            "ratio_faiss_over_torch_cpu": t_fa / times["torch"],
            "inertia_torch_over_sklearn": tc.inertia_ / sk.inertia_,
            "ari_torch": adjusted_rand_score(y, tc.labels_)}
    if _cuda():
        import torch

        Xg = torch.from_numpy(X).cuda()
        KMeans(K, **params).fit(Xg[:1000])                  # warm-up (CUDA context, kernels)
        _sync()
        gk, t_gpu = _timed(lambda: (KMeans(K, **params).fit(Xg), _sync())[0])
        info.update(torch_cuda_s=t_gpu, ratio_torch_cpu_over_cuda=times["torch"] / t_gpu,
                    ari_torch_cuda=adjusted_rand_score(y, gk.labels_))
    benchmark.extra_info.update(info)
    print(f"\ntorch k-means n={n}: sklearn {t_sk:.2f} s, faiss {t_fa:.2f} s, torch(cpu) "
          f"{times['torch']:.2f} s" + (f", torch(cuda) {info['torch_cuda_s']:.3f} s"
                                       if "torch_cuda_s" in info else ""))
    assert info["ari_torch"] > 0.99
    assert info["inertia_torch_over_sklearn"] < 1.01


def test_knn_exact(benchmark):
    """Exact 10-NN of KNN_SIZES[0] queries among KNN_SIZES[1] events: torch vs FAISS IndexFlatL2."""
    import faiss

    from engine.cluster import knn

    nq, nr = KNN_SIZES
    R, _ = _data(nr, seed=3)
    Q, _ = _data(nq, seed=4)
    index = faiss.IndexFlatL2(D)
    index.add(R)
    (_, i_fa), t_fa = _timed(lambda: index.search(Q, KNN_K))
    times = {}

    def run_torch():
        out, times["torch"] = _timed(lambda: knn(Q, R, k=KNN_K))
        return out

    _, i_t = benchmark.pedantic(run_torch, rounds=1, iterations=1)
    agree = float(np.mean(np.sort(i_t, axis=1) == np.sort(i_fa, axis=1)))
    info = {"n_queries": nq, "n_refs": nr, "n_features": D, "k": KNN_K, "faiss_s": t_fa,
            "torch_cpu_s": times["torch"], "ratio_faiss_over_torch_cpu": t_fa / times["torch"],
            "queries_per_s_cpu": nq / times["torch"], "agree_with_faiss": agree}
    if _cuda():
        knn(Q[:100], R[:1000], k=KNN_K, device="cuda")   # warm-up
        (_, i_g), t_gpu = _timed(lambda: knn(Q, R, k=KNN_K, device="cuda"))
        (_, i_h), t_tf32 = _timed(lambda: knn(Q, R, k=KNN_K, device="cuda", precision="high"))
        info.update(torch_cuda_s=t_gpu, queries_per_s_cuda=nq / t_gpu,
                    agree_cuda_cpu=float(np.mean(i_g == i_t)), torch_cuda_tf32_s=t_tf32,
                    agree_tf32_cpu=float(np.mean(i_h == i_t)),
                    est_1e6_queries_s=min(t_gpu, t_tf32) * 1e6 / nq)
    benchmark.extra_info.update(info)
    print(f"\nkNN {nq} x {nr}: faiss {t_fa:.2f} s, torch(cpu) {times['torch']:.2f} s"
          + (f", torch(cuda) {info['torch_cuda_s']:.3f} s" if "torch_cuda_s" in info else ""))
    assert agree > 0.99
