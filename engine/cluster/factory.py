"""The one table of clustering methods, and :func:`make_clusterer` that builds from it.

Everything that needs to know about methods (the CLI choices, the k scan, the
device policy of a run) reads :data:`METHODS` through the helpers below instead
of comparing method names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

__all__ = ["make_clusterer", "METHODS", "MethodInfo", "method_names", "method_info",
           "needs_k", "has_gpu_backend", "gpu_backends", "describe_methods"]


@dataclass(frozen=True)
class MethodInfo:
    """One row of the method table.

    Attributes
    ----------
    name : str
        Method name used on the command line (``--method``).
    target : str
        ``"module:Class"`` inside :mod:`engine.cluster` (imported lazily).
    needs_k : bool
        Whether the method takes ``n_clusters`` (and so a k scan applies).
    gpu_backends : tuple of str
        Backends that run on CUDA (empty: CPU only).
    description : str
        One line for ``--help`` and listings.
    fixed : dict
        Constructor arguments that define the method (e.g. ``linkage="ward"``).
    """

    name: str
    target: str
    needs_k: bool
    gpu_backends: tuple[str, ...]
    description: str
    fixed: dict = field(default_factory=dict)

    @property
    def cls(self) -> type:
        """The estimator class (imported on first use)."""
        module, _, name = self.target.partition(":")
        return getattr(import_module(f"engine.cluster.{module}"), name)


#: method name -> :class:`MethodInfo`; the only table of clustering methods
METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("kmeans", "kmeans:KMeans", True, ("cuml", "faiss", "torch"),
               "k-means, greedy k-means++ start (scikit-learn / FAISS / cuML / torch)"),
    MethodInfo("lda-kmeans", "discriminant:DiscriminantKMeans", True, ("cuml", "faiss", "torch"),
               "k-means alternated with Fisher's discriminant of its clusters (LDA-k-means)"),
    MethodInfo("kmedoids", "kmedoids:KMedoids", True, (), "k-medoids, FasterPAM"),
    MethodInfo("single", "hierarchical:Hierarchical", True, (),
               "single-linkage hierarchical (Euclidean), as in the paper",
               {"linkage": "single"}),
    MethodInfo("ward", "hierarchical:Hierarchical", True, (), "Ward hierarchical",
               {"linkage": "ward"}),
    MethodInfo("fcm", "fuzzy:FuzzyCMeans", True, (), "fuzzy c-means (m=2), highest membership"),
    MethodInfo("gmm", "mixture:GaussianMixture", True, (),
               "Gaussian mixture (diagonal covariances)"),
    MethodInfo("hdbscan", "density:HDBSCAN", False, (),
               "HDBSCAN, finds its own number of clusters (noise = -1)"),
    MethodInfo("knn-graph", "graph:KNNGraph", False, ("torch",),
               "families of the mutual k-nearest-neighbour graph (repeaters, swarms; "
               "singletons = -1)"),
)}


def method_names() -> list[str]:
    """Names of every clustering method, sorted.

    Returns
    -------
    list of str
    """
    return sorted(METHODS)


def method_info(name: str) -> MethodInfo:
    """The table row of ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    MethodInfo

    Raises
    ------
    ValueError
        For an unknown method (the message lists the known ones).
    """
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown clustering method {name!r}; choose one of "
                         f"{', '.join(method_names())}") from None


def needs_k(name: str) -> bool:
    """Whether method ``name`` takes a number of clusters (and a k scan applies).

    Raises
    ------
    ValueError
        For an unknown method.
    """
    return method_info(name).needs_k


def gpu_backends(name: str) -> tuple[str, ...]:
    """Backends of method ``name`` that run on CUDA (empty tuple: CPU only).

    Raises
    ------
    ValueError
        For an unknown method.
    """
    return method_info(name).gpu_backends


def has_gpu_backend(name: str) -> bool:
    """Whether method ``name`` can run on CUDA.

    Raises
    ------
    ValueError
        For an unknown method.
    """
    return bool(method_info(name).gpu_backends)


def describe_methods() -> list[str]:
    """One line per method: name, then its description (for ``--help``/listings)."""
    width = max(map(len, METHODS))
    return [f"{name:<{width}}  {METHODS[name].description}" for name in method_names()]


def make_clusterer(method: str, n_clusters: int | None = 3, random_state=0,
                   device: str = "cpu", **kw: Any):
    """Return an unfitted clusterer.

    Parameters
    ----------
    method : str
        A name of :data:`METHODS` (see :func:`method_names`).
    n_clusters : int or None
        Number of clusters; ignored (may be None) for methods that find their
        own (``needs_k(method)`` is False).
    random_state : int, RandomState or None
    device : {"cpu", "cuda", "auto"}
        ``"cuda"`` only for methods with a GPU backend (:func:`has_gpu_backend`).
    **kw
        Further parameters of the estimator (e.g. ``backend="faiss"``,
        ``max_samples=5000``, ``min_cluster_size=20``, ``n_neighbors=10``).

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
    info = method_info(method)
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if device == "cuda" and not info.gpu_backends:
        gpu = [m for m in method_names() if METHODS[m].gpu_backends]
        raise ValueError(f"method {method!r} has no GPU backend; use device='cpu' or 'auto' "
                         f"(methods that run on CUDA: {', '.join(gpu)})")
    params = dict(info.fixed, random_state=random_state, device=device, **kw)
    if not info.needs_k:
        return info.cls(**params)
    if n_clusters is None:
        raise ValueError(f"method {method!r} needs n_clusters (an int >= 1)")
    return info.cls(n_clusters, **params)
