"""Build a clusterer from a method name."""
from __future__ import annotations

from typing import Any

__all__ = ["make_clusterer", "METHODS"]

#: method name -> short description
METHODS = {
    "kmeans": "k-means, k-means++ start (scikit-learn / FAISS / cuML)",
    "kmedoids": "k-medoids, FasterPAM",
    "single": "single-linkage hierarchical (Euclidean), as in the paper",
    "ward": "Ward hierarchical",
    "fcm": "fuzzy c-means (m=2), highest membership",
    "gmm": "Gaussian mixture (diagonal covariances)",
    "hdbscan": "HDBSCAN, finds its own number of clusters (noise = -1)",
}


def make_clusterer(method: str, n_clusters: int | None = 3, random_state=0,
                   device: str = "cpu", **kw: Any):
    """Return an unfitted clusterer.

    Parameters
    ----------
    method : {"kmeans", "kmedoids", "single", "ward", "fcm", "gmm", "hdbscan"}
    n_clusters : int or None
        Number of clusters; ignored (may be None) for ``"hdbscan"``.
    random_state : int, RandomState or None
    device : {"cpu", "cuda", "auto"}
        Only ``"kmeans"`` has a GPU backend; the others accept "cpu" and "auto".
    **kw
        Further parameters of the estimator (e.g. ``backend="faiss"``,
        ``max_samples=5000``, ``min_cluster_size=20``).

    Returns
    -------
    estimator
        Follows the scikit-learn conventions (``fit``, ``labels_``, ``predict``).

    Raises
    ------
    ValueError
        For an unknown method, a missing ``n_clusters`` or ``device="cuda"``
        with a method without GPU backend.
    """
    from .density import HDBSCAN
    from .fuzzy import FuzzyCMeans
    from .hierarchical import Hierarchical
    from .kmeans import KMeans
    from .kmedoids import KMedoids
    from .mixture import GaussianMixture

    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of "
                         f"{', '.join(sorted(METHODS))}")
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if device == "cuda" and method != "kmeans":
        raise ValueError(f"method {method!r} has no GPU backend; use device='cpu' or 'auto' "
                         "(only 'kmeans' runs on CUDA)")
    if method == "hdbscan":
        return HDBSCAN(random_state=random_state, device=device, **kw)
    if n_clusters is None:
        raise ValueError(f"method {method!r} needs n_clusters (an int >= 1)")
    common = dict(random_state=random_state, device=device)
    if method == "kmeans":
        return KMeans(n_clusters, **common, **kw)
    if method == "kmedoids":
        return KMedoids(n_clusters, **common, **kw)
    if method in ("single", "ward"):
        return Hierarchical(n_clusters, linkage=method, **common, **kw)
    if method == "fcm":
        return FuzzyCMeans(n_clusters, **common, **kw)
    return GaussianMixture(n_clusters, **common, **kw)
