"""Benchmark: k-means fit and assignment of new events, FAISS (CPU) vs scikit-learn.

Sizes 10^4, 10^5 and 10^6 events x 392 features (the CNN feature length);
MQE_BENCH_SMOKE=1 uses 10^3 so the file runs in seconds. Each test times both
backends in the same run and records sizes and the ratio sklearn / FAISS in
``benchmark.extra_info`` (timings on a shared machine are noisy; ratios hold).
Above 200,000 events the scikit-learn backend is ``MiniBatchKMeans``.
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
