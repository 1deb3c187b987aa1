"""Clustering, model selection, validity indices and assignment of new events.

Estimators (scikit-learn conventions: ``fit`` returns self, ``labels_``,
``cluster_centers_``, ``predict``, ``fit_predict``)
    KMeans, DiscriminantKMeans (LDA-k-means), KMedoids, Hierarchical,
    FuzzyCMeans, GaussianMixture, HDBSCAN, KNNGraph; :data:`METHODS` is the
    one method table (:func:`method_names`, :func:`needs_k`,
    :func:`has_gpu_backend`) and :func:`make_clusterer` builds an estimator
    from it.
Families
    :func:`largest_families` (records for the report), :func:`confirm_families`
    (waveform cross-correlation check, REDPy-style).
Feature conditioning
    :class:`FeatureConditioner` (per-station centring, standardise, PCA, L2).
Nearest neighbours
    :func:`knn` (exact, tiled matrix products on torch, CPU or CUDA).
Model selection
    :func:`scan_k` (silhouette and elbow over k).
Indices
    :func:`cluster_indices` (SIL, SSW, SSB, WB of the paper),
    :func:`label_scores` (contingency, purity, ARI, NMI, dominant shares).
Assignment
    :class:`ClusterModel` (save/load, ``assign`` with novelty flag).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "KMeans": "kmeans", "DiscriminantKMeans": "discriminant", "KMedoids": "kmedoids",
    "Hierarchical": "hierarchical",
    "FuzzyCMeans": "fuzzy", "GaussianMixture": "mixture", "HDBSCAN": "density",
    "make_clusterer": "factory", "METHODS": "factory", "MethodInfo": "factory",
    "method_names": "factory", "method_info": "factory", "needs_k": "factory",
    "has_gpu_backend": "factory", "gpu_backends": "factory", "describe_methods": "factory",
    "KNNGraph": "graph", "largest_families": "graph", "confirm_families": "graph",
    "FeatureConditioner": "conditioning", "knn": "_torch", "scan_k": "selection",
    "ScanResult": "selection", "cluster_indices": "indices", "label_scores": "scores",
    "ClusterModel": "assign", "SubsampleWarning": "_base",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        mod = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'engine.cluster' has no attribute {name!r}") from None
    value = getattr(import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value
