"""Choice of the number of clusters over a range of k.

:func:`scan_k` clusters every k, records the silhouette and elbow curves and,
for ``criterion`` other than ``"silhouette"``, the stability, gap and BIC curves
of :mod:`engine.cluster.kchoice`; it picks k by the criterion and says why
(:attr:`ScanResult.reason`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import logging
from typing import Any, Iterable

import numpy as np

from engine._util import progress

from ._validation import check_features
from .factory import make_clusterer, needs_k
from .indices import mean_silhouette, within_sums

__all__ = ["scan_k", "ScanResult"]

log = logging.getLogger(__name__)


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
        ``fixed_k`` if given, else ``criterion_k``.
    silhouette_sampled : bool
    criterion : str
        The rule that chose k (``"silhouette"``, ``"stability"``, ``"gap"``,
        ``"bic"`` or ``"auto"``).
    criterion_k : int
        The k the criterion picked (``chosen_k`` unless ``fixed_k`` was given).
    reason : str
        One sentence for the report: why ``chosen_k`` was used.
    curves : dict of str -> list of float
        Every criterion's curve over ``ks`` that was computed (``stability``,
        ``stability_mean``, ``gap``, ``gap_sd``, ``bic``).
    picks : dict of str -> int
        The k each computed criterion would pick.
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
    criterion: str = "silhouette"
    criterion_k: int | None = None
    reason: str = ""
    curves: dict = field(default_factory=dict)
    picks: dict = field(default_factory=dict)
    labels: dict = field(repr=False, default_factory=dict)
    estimators: dict = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary (no labels, no estimators)."""
        return {"method": self.method, "ks": list(self.ks), "silhouette": list(self.silhouette),
                "inertia": list(self.inertia), "within": list(self.within),
                "best_k": self.best_k, "chosen_k": self.chosen_k,
                "silhouette_sampled": self.silhouette_sampled, "criterion": self.criterion,
                "criterion_k": self.criterion_k, "reason": self.reason,
                "curves": {k: list(v) for k, v in self.curves.items()},
                "picks": dict(self.picks)}


def scan_k(X, method: str, ks: Iterable[int] = range(2, 9), random_state=0,
           sample_size: int | None = 10_000, fixed_k: int | None = None,
           device: str = "cpu", criterion: str = "silhouette", n_resamples: int = 10,
           n_refs: int = 5, max_points: int = 2000, stability_threshold: float = 0.75,
           resample_size: int = 200, **kw: Any) -> ScanResult:
    """Cluster ``X`` for every k in ``ks`` and record silhouette and elbow curves.

    Parameters
    ----------
    X : array_like, shape (n, d)
    method : str
        A method of :data:`~engine.cluster.METHODS` that takes k
        (``needs_k(method)``; not ``"hdbscan"`` or ``"knn-graph"``).
    ks : iterable of int
        Values of k, each in ``2..n-1``; the stability and gap criteria need
        consecutive values for their rules to mean what they say.
    random_state : int, RandomState or None
        Seed of the clusterers and of the silhouette sample.
    sample_size : int or None
        Silhouette on a seeded sample above this many events.
    fixed_k : int, optional
        Use this k instead of the best silhouette (it must be in ``ks``).
    device : str
        Passed to the clusterer.
    criterion : {"silhouette", "auto", "stability", "gap", "bic"}
        How k is chosen (:func:`engine.cluster.kchoice.choose_k`). ``"silhouette"``
        computes only the silhouette (the old rule, cheapest); any other value
        computes every curve (stability, gap, BIC) so the report can show them
        side by side. ``"auto"``: the smaller of the highest silhouette's
        k and the largest k whose every cluster is reproducible under
        resampling; that largest reproducible k alone when the silhouette's
        best is the smallest k scanned.
    n_resamples, n_refs, max_points : int
        Subsamples of the stability curve, reference sets of the gap statistic,
        largest subsample of the gap statistic (twice its size; see
        :func:`engine.cluster.kchoice.k_criteria`).
    stability_threshold : float
        Mean Jaccard under resampling the least stable cluster of a k must
        reach for k to count as reproducible (default 0.75).
    resample_size : int
        Largest stability subsample (default 200 events). Fixed rather than a
        share of the events so that the stability rule does not drift to
        larger k as archives grow (:func:`engine.cluster.kchoice.stability_curve`).
    **kw
        Further clusterer parameters.

    Returns
    -------
    ScanResult

    Raises
    ------
    ValueError
        Unknown method, a method that finds its own k, empty or out-of-range ``ks``, or a
        ``fixed_k`` not scanned, or an unknown ``criterion``.
    """
    from .kchoice import CRITERIA, choose_k, k_criteria

    if not needs_k(method):   # also raises for an unknown method
        raise ValueError(f"method {method!r} finds its own number of clusters; "
                         "scan_k does not apply")
    X = check_features(X, dtype=None)
    n = X.shape[0]
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks is empty; give at least one k, e.g. range(2, 9)")
    if ks[0] < 2 or ks[-1] >= n:
        raise ValueError(f"every k must be in 2..{n - 1} for {n} events, got {ks}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown k criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
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
    curves: dict = {}
    if criterion != "silhouette":
        curves = k_criteria(X, method, ks, labels, random_state=random_state, device=device,
                            n_resamples=n_resamples, n_refs=n_refs, max_points=max_points,
                            resample_size=resample_size, **kw)
    all_curves = dict(curves, silhouette=[float(v) for v in sil])
    picks = {c: choose_k(ks, all_curves, c, stability_threshold=stability_threshold)
             for c in CRITERIA if c == "silhouette" or curves}
    crit_k, reason = picks[criterion]
    if fixed_k is not None:
        chosen = int(fixed_k)
        reason = f"k={chosen}: fixed by the user (the {criterion} rule would pick {crit_k})"
    else:
        chosen = crit_k
        if len(ks) > 1 and chosen == ks[-1] and criterion != "silhouette":
            reason += (f" (k={chosen} is the largest k scanned: the data may hold more "
                       "families; scan a wider range, e.g. --k 2:16)")
            log.warning("k scan (%s): the %s rule chose k=%d, the largest k scanned; the data "
                        "may hold more families (scan a wider range, e.g. --k 2:16)", method,
                        criterion, chosen)
    others = ", ".join(f"{c} {k}" for c, (k, _) in picks.items() if c != criterion)
    if others:
        reason += f"; other criteria: {others}"
    log.info("k scan (%s): %s", method, reason)
    return ScanResult(method, ks, [float(v) for v in sil], inertia, within, int(best), chosen,
                      bool(sampled), criterion, int(crit_k), reason, curves,
                      {c: int(k) for c, (k, _) in picks.items()}, labels, ests)
