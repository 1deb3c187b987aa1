"""Clustering, model selection, validity indices and assignment of new events.

Estimators (scikit-learn conventions: ``fit`` returns self, ``labels_``,
``cluster_centers_``, ``predict``, ``fit_predict``)
    KMeans, KMedoids, Hierarchical, FuzzyCMeans, GaussianMixture, HDBSCAN;
    :func:`make_clusterer` builds one from a method name.
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
    "KMeans": "kmeans", "KMedoids": "kmedoids", "Hierarchical": "hierarchical",
    "FuzzyCMeans": "fuzzy", "GaussianMixture": "mixture", "HDBSCAN": "density",
    "make_clusterer": "factory", "METHODS": "factory", "scan_k": "selection",
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
