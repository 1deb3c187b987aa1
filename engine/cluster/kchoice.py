"""Criteria for the number of clusters beyond the silhouette: stability, gap, BIC.

The mean silhouette favours the coarsest split: on every CNN feature set of
real volcanic events it chose k = 2, the least informative answer (issue 11).
This module computes three more curves over k and turns any of them into a
choice with a sentence saying why:

``stability``
    Each k is clustered again on ``n_resamples`` random subsamples (80 % of the
    events, at most ``max_points``, 200 by default; new seeds); every cluster of
    the full clustering gets its mean best Jaccard similarity with a subsample
    cluster (Hennig 2007) and the curve is the value of the *least* stable cluster. The
    choice is the *largest* k whose every cluster is stable
    (``>= stability_threshold``, 0.75 as Hennig suggests; the idea of taking
    the largest such k is that of prediction strength, Tibshirani and Walther
    2005), so a structure that is reproducible at k = 4 is not hidden by an
    even more reproducible k = 2. A global agreement index (ARI) would not do:
    splitting one of six groups at random still agrees at ARI ~0.8.
``gap``
    Gap statistic (Tibshirani, Walther and Hastie 2001): ``E*[log W_k] - log W_k``
    against ``n_refs`` reference sets uniform in the box of the data's principal
    axes, with the same method, on a subsample of at most ``max_points``. The
    choice is the smallest k with ``gap(k) >= gap(k+1) - s(k+1)``.
``bic``
    Bayesian information criterion of a hard-assignment spherical Gaussian
    mixture fitted to each clustering (X-means, Pelleg and Moore 2000); lower is
    better.
``auto``
    The engine's default: the smaller of the silhouette's k and the stability
    rule's k, unless the silhouette's best lies at the smallest k scanned; then
    the stability rule alone (see :func:`choose_k`). Each rule runs high where
    the other does not. The stability rule finds more reproducible clusters as
    events grow in number (on a synthetic archive of 1,767 events of 5 classes,
    with subsamples of up to 2,000, it chose 7, ARI 0.50, against the
    silhouette's 4, ARI 0.74; with subsamples of 200, 5, ARI 0.70), while the
    silhouette estimates a property of the population and does not drift. The
    silhouette runs high on flat structure (k = 6 on subsets of the Llaima
    sample in the published set's class mix, where the stability rule took 5
    and k = 4 scores best), and where families nest its best is the coarsest
    split (k = 2 on every CNN feature set of issue 11): there stability sees
    further.

:func:`k_criteria` computes the curves, :func:`choose_k` applies a rule;
:func:`engine.cluster.scan_k` calls both and stores the curves and the reason
in its :class:`~engine.cluster.ScanResult`.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from .factory import make_clusterer

__all__ = ["CRITERIA", "k_criteria", "stability_curve", "gap_curve", "bic_curve", "choose_k"]

log = logging.getLogger(__name__)

#: criteria accepted by :func:`choose_k` and ``scan_k(criterion=...)``
CRITERIA = ("auto", "silhouette", "stability", "gap", "bic")
#: smallest stability subsample the command-line flags accept (``--k-resample-size``)
MIN_RESAMPLE_SIZE = 10


def _rng(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _labels_for_ks(X: np.ndarray, method: str, ks: Sequence[int], seed: int, device: str,
                   kw: Mapping[str, Any]) -> dict[int, np.ndarray]:
    """Labels of every k; a fitted tree (``linkage_matrix_`` over all of ``X``) is cut
    at every k instead of being rebuilt (hierarchical methods: one linkage, not one per k)."""
    out: dict[int, np.ndarray] = {}
    Z = None
    for k in ks:
        if Z is not None:
            from scipy.cluster.hierarchy import fcluster

            out[k] = fcluster(Z, t=k, criterion="maxclust").astype(np.int64)
            continue
        est = make_clusterer(method, k, random_state=seed, device=device, **kw).fit(X)
        out[k] = np.asarray(est.labels_, dtype=np.int64)
        z = getattr(est, "linkage_matrix_", None)
        if z is not None and np.shape(z) == (X.shape[0] - 1, 4):
            Z = z
    return out


def _log_within(X: np.ndarray, labels: np.ndarray) -> float:
    """log of the pooled within-cluster sum of squares (``W_k`` of the gap statistic)."""
    _, inv = np.unique(labels, return_inverse=True)
    counts = np.bincount(inv).astype(float)
    sums = np.zeros((counts.size, X.shape[1]))
    np.add.at(sums, inv, X)
    w = float(np.sum(X * X) - np.sum((sums * sums) / counts[:, None]))
    return float(np.log(max(w, 1e-300)))


def _min_cluster_jaccard(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For every cluster of ``ref``: the best Jaccard similarity with a cluster of ``other``."""
    _, ri = np.unique(ref, return_inverse=True)
    _, oi = np.unique(other, return_inverse=True)
    cont = np.zeros((ri.max() + 1, oi.max() + 1))
    np.add.at(cont, (ri, oi), 1.0)
    union = cont.sum(1)[:, None] + cont.sum(0)[None, :] - cont
    return (cont / np.maximum(union, 1.0)).max(axis=1)


def stability_curve(X, method: str, ks: Sequence[int], labels: Mapping[int, np.ndarray], *,
                    n_resamples: int = 10, fraction: float = 0.8, max_points: int = 200,
                    random_state=0, device: str = "cpu", **kw: Any) -> tuple[list, list]:
    """Cluster-wise stability under subsampling (Hennig 2007), per k.

    Every subsample (``fraction`` of the events, at most ``max_points``, a new
    seed) is clustered again; each cluster of the full clustering, restricted
    to the subsample, gets its best Jaccard similarity with a subsample
    cluster. A cluster's stability is its mean Jaccard over the subsamples and
    the curve is the *least* stable cluster's value: a k that splits one real
    group at random (or merges two) scores low even when most events agree,
    which a global index such as the ARI hides.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    method : str
        Clustering method taking k.
    ks : sequence of int
    labels : mapping k -> ndarray (n,)
        Full-data labels of every k (from the scan).
    n_resamples : int
        Subsamples per k.
    fraction : float
        Share of the events in each subsample (0 < fraction <= 1).
    max_points : int
        Largest subsample. It is fixed, not a share of the events, so that the
        curve means the same at every archive size: with subsamples that grow
        with the data, every k-means optimum becomes reproducible and the
        rule drifts to large k (Ben-David, von Luxburg and Pal 2006; measured
        here: 7-8 clusters of 1,767-3,315 synthetic events of 4-5 classes with
        subsamples of 2,000, 5 with subsamples of 200). Clusters with fewer
        than a few events in a subsample of this size count as unstable, so
        raise it to resolve rare families in large archives.
    random_state : int or None
    device : str
    **kw
        Clusterer parameters.

    Returns
    -------
    worst, mean : list of float
        Per k: stability of the least stable cluster, and the mean over clusters.

    Raises
    ------
    ValueError
        For ``fraction`` outside (0, 1], ``n_resamples < 1`` or ``max_points < 2``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    n = X.shape[0]
    m = int(min(max_points, max(round(fraction * n), 2)))
    rng = _rng(random_state)
    subsets = [np.sort(rng.choice(n, m, replace=False)) for _ in range(n_resamples)]
    seeds = [_seed(rng) for _ in range(n_resamples)]
    valid = [k for k in ks if k < m]
    subs = [_labels_for_ks(X[idx], method, valid, sd, device, kw)
            for idx, sd in zip(subsets, seeds)]
    worst, mean = [], []
    for k in ks:
        if k >= m:
            worst.append(float("nan"))
            mean.append(float("nan"))
            continue
        full = np.asarray(labels[k])
        ids = np.unique(full)
        jac = np.zeros((n_resamples, ids.size))
        for b, idx in enumerate(subsets):
            ref = full[idx]
            per = _min_cluster_jaccard(ref, subs[b][k])     # clusters present in the subsample
            jac[b, np.searchsorted(ids, np.unique(ref))] = per
        stab = jac.mean(axis=0)
        worst.append(float(stab.min()))
        mean.append(float(stab.mean()))
    return worst, mean


def gap_curve(X, method: str, ks: Sequence[int], *, n_refs: int = 5, max_points: int = 1000,
              random_state=0, device: str = "cpu", **kw: Any) -> tuple[list, list]:
    """Gap statistic per k, with reference sets uniform in the principal-axes box.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    method : str
    ks : sequence of int
    n_refs : int
        Reference sets (Tibshirani et al. use 10-20; 5 keeps the scan fast).
    max_points : int
        The data and each reference set are subsampled to at most this many events.
    random_state : int or None
    device : str
    **kw
        Clusterer parameters.

    Returns
    -------
    gap, s : list of float
        ``gap(k) = mean(log W*_k) - log W_k`` and ``s(k) = sd(log W*_k) sqrt(1 + 1/n_refs)``.

    Raises
    ------
    ValueError
        For ``n_refs < 1``.
    """
    if n_refs < 1:
        raise ValueError(f"n_refs must be >= 1, got {n_refs}")
    rng = _rng(random_state)
    n = X.shape[0]
    Xs = X[np.sort(rng.choice(n, max_points, replace=False))] if n > max_points else X
    Xs = np.asarray(Xs, dtype=np.float64)
    m = Xs.shape[0]
    # reference box along the principal axes (Tibshirani's option b)
    Xc = Xs - Xs.mean(axis=0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    Z = Xc @ vt.T
    lo, hi = Z.min(axis=0), Z.max(axis=0)
    refs = [rng.uniform(lo, hi, size=(m, Z.shape[1])) @ vt for _ in range(n_refs)]
    seed = _seed(rng)
    valid = [k for k in ks if k < m]
    lab = _labels_for_ks(Xs, method, valid, seed, device, kw)
    lab_refs = [_labels_for_ks(R, method, valid, seed, device, kw) for R in refs]
    gap, s = [], []
    for k in ks:
        if k >= m:
            gap.append(float("nan"))
            s.append(float("nan"))
            continue
        lw = _log_within(Xs, lab[k])
        lw_ref = np.array([_log_within(R, lr[k]) for R, lr in zip(refs, lab_refs)])
        gap.append(float(lw_ref.mean() - lw))
        s.append(float(lw_ref.std() * np.sqrt(1.0 + 1.0 / n_refs)))
    return gap, s


def bic_curve(X, labels: Mapping[int, np.ndarray], ks: Sequence[int]) -> list:
    """BIC of a spherical Gaussian mixture with hard assignments (X-means), per k.

    ``BIC = -2 log L + p log n`` with one shared variance, ``p = (k - 1) + k d + 1``;
    lower is better.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    labels : mapping k -> ndarray (n,)
    ks : sequence of int

    Returns
    -------
    list of float
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    out = []
    for k in ks:
        lab = labels[k]
        _, inv = np.unique(lab, return_inverse=True)
        kk = int(inv.max()) + 1
        if n <= kk:
            out.append(float("nan"))
            continue
        counts = np.bincount(inv).astype(float)
        sums = np.zeros((kk, d))
        np.add.at(sums, inv, X)
        sse = float(np.sum(X * X) - np.sum((sums * sums) / counts[:, None]))
        var = max(sse / (d * (n - kk)), 1e-300)
        loglik = (float(np.sum(counts * np.log(counts / n)))
                  - 0.5 * n * d * np.log(2.0 * np.pi * var) - 0.5 * d * (n - kk))
        p = (kk - 1) + kk * d + 1
        out.append(float(-2.0 * loglik + p * np.log(n)))
    return out


def k_criteria(X, method: str, ks: Sequence[int], labels: Mapping[int, np.ndarray], *,
               which: Sequence[str] = ("stability", "gap", "bic"), random_state=0,
               device: str = "cpu", n_resamples: int = 10, n_refs: int = 5,
               max_points: int = 2000, resample_size: int = 200, **kw: Any) -> dict:
    """Curves of the k criteria other than the silhouette.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    method : str
    ks : sequence of int
    labels : mapping k -> ndarray
        Full-data labels of every k.
    which : sequence of {"stability", "gap", "bic"}
    random_state : int or None
    device : str
    n_resamples, n_refs : int
        See :func:`stability_curve` and :func:`gap_curve`.
    max_points : int
        The gap statistic uses at most ``max_points // 2`` events.
    resample_size : int
        Largest stability subsample (``max_points`` of :func:`stability_curve`).
    **kw
        Clusterer parameters.

    Returns
    -------
    dict
        ``stability`` (least stable cluster), ``stability_mean`` (mean over clusters),
        ``gap``, ``gap_sd``, ``bic`` (lists over ``ks``),
        as asked for.

    Raises
    ------
    ValueError
        For an unknown criterion name.
    """
    bad = [w for w in which if w not in ("stability", "gap", "bic")]
    if bad:
        raise ValueError(f"unknown k criterion {bad[0]!r}; choose from stability, gap, bic")
    rng = _rng(random_state)
    out: dict[str, list] = {}
    if "stability" in which:
        out["stability"], out["stability_mean"] = stability_curve(
            X, method, ks, labels, n_resamples=n_resamples, max_points=resample_size,
            random_state=_seed(rng), device=device, **kw)
    if "gap" in which:
        out["gap"], out["gap_sd"] = gap_curve(X, method, ks, n_refs=n_refs,
                                              max_points=max(max_points // 2, 50),
                                              random_state=_seed(rng), device=device, **kw)
    if "bic" in which:
        out["bic"] = bic_curve(X, labels, ks)
    return out


def _argbest(ks: Sequence[int], values: Sequence[float], lower: bool = False) -> int | None:
    v = np.asarray(values, dtype=float)
    if not np.isfinite(v).any():
        return None
    v = np.where(np.isfinite(v), v, np.inf if lower else -np.inf)
    return int(ks[int(np.argmin(v) if lower else np.argmax(v))])


def choose_k(ks: Sequence[int], curves: Mapping[str, Sequence[float]], criterion: str = "auto",
             *, stability_threshold: float = 0.75) -> tuple[int, str]:
    """The k a criterion picks from its curves, with one sentence saying why.

    Parameters
    ----------
    ks : sequence of int
        Scanned values, ascending.
    curves : mapping
        ``silhouette`` and whatever :func:`k_criteria` gave (the criterion's
        curves must be there).
    criterion : {"auto", "silhouette", "stability", "gap", "bic"}
        ``auto`` takes the smaller of the silhouette's and the stability
        rule's k, or the stability rule's alone when the silhouette's best is
        the smallest k scanned; it needs the ``stability`` and ``silhouette``
        curves.
    stability_threshold : float
        Mean Jaccard the least stable cluster of a k must reach under
        resampling for k to count as reproducible.

    Returns
    -------
    k : int
    reason : str

    Raises
    ------
    ValueError
        For an unknown criterion or a missing curve.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown k criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    ks = [int(k) for k in ks]
    need = {"auto": ("stability", "silhouette"), "silhouette": ("silhouette",),
            "stability": ("stability",), "gap": ("gap", "gap_sd"), "bic": ("bic",)}[criterion]
    missing = [c for c in need if c not in curves]
    if missing:
        raise ValueError(f"criterion {criterion!r} needs the {missing[0]!r} curve")
    sil = np.asarray(curves.get("silhouette", [np.nan] * len(ks)), dtype=float)
    if criterion == "silhouette":
        k = _argbest(ks, sil)
        if k is None:
            return ks[0], f"k={ks[0]}: no silhouette could be computed, the smallest k was used"
        return k, f"k={k}: highest mean silhouette ({sil[ks.index(k)]:.3f})"
    if criterion == "bic":
        bic = curves["bic"]
        k = _argbest(ks, bic, lower=True)
        if k is None:
            return ks[0], f"k={ks[0]}: no BIC could be computed, the smallest k was used"
        return k, f"k={k}: lowest BIC of a spherical Gaussian mixture ({bic[ks.index(k)]:.4g})"
    if criterion == "gap":
        gap, s = np.asarray(curves["gap"], float), np.asarray(curves["gap_sd"], float)
        for i in range(len(ks) - 1):
            if np.isfinite(gap[i]) and np.isfinite(gap[i + 1]) and gap[i] >= gap[i + 1] - s[i + 1]:
                return ks[i], (f"k={ks[i]}: smallest k whose gap ({gap[i]:.3f}) is within one "
                               f"standard error of the next k's ({gap[i + 1]:.3f} - "
                               f"{s[i + 1]:.3f})")
        k = _argbest(ks, gap)
        if k is None:
            return ks[0], f"k={ks[0]}: no gap could be computed, the smallest k was used"
        return k, (f"k={k}: the gap grows over the whole scan; its largest value "
                   f"({gap[ks.index(k)]:.3f})")
    stab = np.asarray(curves["stability"], dtype=float)
    k_st, why_st = _stability_pick(ks, stab, stability_threshold)
    if criterion == "stability":
        if k_st is None:
            return ks[0], f"k={ks[0]}: no stability could be computed, the smallest k was used"
        return k_st, why_st
    # auto: the smaller of the two picks, unless the silhouette stops at the smallest k
    k_sil = _argbest(ks, sil)
    if k_st is None:
        k = k_sil or ks[0]
        return k, f"k={k}: no stability could be computed; highest silhouette"
    if k_sil is None:
        return k_st, why_st + "; no silhouette could be computed"
    if k_sil == ks[0]:
        return k_st, (why_st + "; the highest silhouette is at the smallest k scanned, the "
                      "coarsest split, which it favours when families nest")
    i = ks.index(k_sil)
    if k_sil <= k_st:
        return k_sil, (f"k={k_sil}: highest mean silhouette ({sil[i]:.3f}), above the smallest "
                       f"k scanned; the stability rule allows up to k={k_st}")
    return k_st, (why_st + f"; below the highest silhouette's k={k_sil} (the smaller of the "
                  "two is taken: each rule runs high where the other does not)")


def _stability_pick(ks: list, stab: np.ndarray, threshold: float) -> tuple[int | None, str]:
    """The stability rule: the largest k whose least stable cluster reaches ``threshold``,
    else the most stable k; ``(None, "")`` when no stability could be computed."""
    ok = [i for i in range(len(ks)) if np.isfinite(stab[i]) and stab[i] >= threshold]
    if ok:
        i = ok[-1]
        return ks[i], (f"k={ks[i]}: the largest k whose every cluster is found again when "
                       f"random subsamples are clustered (least stable cluster: mean Jaccard "
                       f"{stab[i]:.2f} >= {threshold:.2f})")
    k = _argbest(ks, stab)
    if k is None:
        return None, ""
    return k, (f"k={k}: no k keeps all its clusters under resampling (Jaccard >= "
               f"{threshold:.2f}); the most stable one "
               f"(least stable cluster {stab[ks.index(k)]:.2f})")
