"""Choice of the number of clusters: silhouette and elbow over a range of k."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from engine._util import progress

from ._validation import check_features
from .factory import METHODS, make_clusterer
from .indices import mean_silhouette, within_sums

__all__ = ["scan_k", "ScanResult"]


@dataclass
class ScanResult:
    """Outcome of :func:`scan_k`.

    Attributes
    ----------
    method : str
    ks : list of int
    silhouette : list of float
        Mean silhouette per k (NaN where undefined).
    inertia : list of float
        Sum of squared distances to the cluster means (elbow curve).
    within : list of float
        Sum of (not squared) distances to the cluster means (the paper's
        summed within-cluster distances).
    best_k : int
        k of the highest silhouette.
    chosen_k : int
        ``fixed_k`` if given, else ``best_k``.
    silhouette_sampled : bool
    labels : dict of int -> ndarray
        Labels of every scanned k.
    estimators : dict of int -> fitted estimator
    """

    method: str
    ks: list
    silhouette: list
    inertia: list
    within: list
    best_k: int
    chosen_k: int
    silhouette_sampled: bool
    labels: dict = field(repr=False, default_factory=dict)
    estimators: dict = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary (no labels, no estimators)."""
        return {"method": self.method, "ks": list(self.ks), "silhouette": list(self.silhouette),
                "inertia": list(self.inertia), "within": list(self.within),
                "best_k": self.best_k, "chosen_k": self.chosen_k,
                "silhouette_sampled": self.silhouette_sampled}


def scan_k(X, method: str, ks: Iterable[int] = range(2, 9), random_state=0,
           sample_size: int | None = 10_000, fixed_k: int | None = None,
           device: str = "cpu", **kw: Any) -> ScanResult:
    """Cluster ``X`` for every k in ``ks`` and record silhouette and elbow curves.

    Parameters
    ----------
    X : array_like, shape (n, d)
    method : str
        A method of :func:`~engine.cluster.make_clusterer` with a given k
        (not ``"hdbscan"``).
    ks : iterable of int
        Values of k, each in ``2..n-1``.
    random_state : int, RandomState or None
        Seed of the clusterers and of the silhouette sample.
    sample_size : int or None
        Silhouette on a seeded sample above this many events.
    fixed_k : int, optional
        Use this k instead of the best silhouette (it must be in ``ks``).
    device : str
        Passed to the clusterer.
    **kw
        Further clusterer parameters.

    Returns
    -------
    ScanResult

    Raises
    ------
    ValueError
        Unknown method, ``"hdbscan"``, empty or out-of-range ``ks``, or a
        ``fixed_k`` not scanned.
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of "
                         f"{', '.join(sorted(METHODS))}")
    if method == "hdbscan":
        raise ValueError("method 'hdbscan' finds its own number of clusters; scan_k does not apply")
    X = check_features(X, dtype=None)
    n = X.shape[0]
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks is empty; give at least one k, e.g. range(2, 9)")
    if ks[0] < 2 or ks[-1] >= n:
        raise ValueError(f"every k must be in 2..{n - 1} for {n} events, got {ks}")
    if fixed_k is not None and int(fixed_k) not in ks:
        raise ValueError(f"fixed_k={fixed_k} is not among the scanned ks {ks}")
    sil, inertia, within, labels, ests = [], [], [], {}, {}
    sampled = False
    for k in progress(ks, desc=f"scan k ({method})", unit="k"):
        est = make_clusterer(method, k, random_state=random_state, device=device, **kw).fit(X)
        lab = np.asarray(est.labels_, dtype=np.int64)
        s, sampled = mean_silhouette(X, lab, sample_size, random_state)
        _, compact = np.unique(lab, return_inverse=True)
        wd, sq = within_sums(X, compact.astype(np.int64))
        sil.append(s)
        inertia.append(sq)
        within.append(wd)
        labels[k] = lab
        ests[k] = est
    sil_arr = np.asarray(sil, dtype=float)
    best = ks[int(np.nanargmax(sil_arr))] if np.isfinite(sil_arr).any() else ks[0]
    chosen = int(fixed_k) if fixed_k is not None else best
    return ScanResult(method, ks, [float(v) for v in sil], inertia, within, int(best), chosen,
                      bool(sampled), labels, ests)
