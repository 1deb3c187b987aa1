"""Families of near-identical events: the mutual k-nearest-neighbour graph.

Repeating events (the same source firing again) and tight swarms are small
groups of events that are each other's nearest neighbours; k-means spreads
them over its k clusters. :class:`KNNGraph` links two events when each is among
the other's ``n_neighbors`` nearest (a *mutual* kNN graph, optionally within a
distance) and takes the connected components (or Louvain communities) as
families; events in no family get -1.

:func:`confirm_families` checks the members on their waveforms, as REDPy does
for repeaters: a member stays only if its normalised cross-correlation with
the family's core event reaches a threshold. :func:`largest_families` gives
the records the report lists.
"""
from __future__ import annotations

import logging
from numbers import Integral, Real
from typing import Callable, Sequence

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseClusterer
from ._nearest import cluster_means
from ._validation import check_features

__all__ = ["KNNGraph", "mutual_knn_edges", "graph_families", "confirm_families",
           "largest_families", "max_normalized_xcorr"]

log = logging.getLogger(__name__)


def mutual_knn_edges(indices: np.ndarray, distances: np.ndarray | None = None,
                     max_distance: float | None = None, mutual: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``i < j`` of the (mutual) kNN graph from a neighbour table.

    Parameters
    ----------
    indices : ndarray of int, shape (n, k)
        ``indices[i]``: the k nearest other events of event ``i``.
    distances : ndarray, shape (n, k), optional
        Their distances (needed for ``max_distance``; returned per edge).
    max_distance : float, optional
        Drop edges longer than this.
    mutual : bool
        Keep an edge only when each end lists the other (default); False
        keeps it when either does.

    Returns
    -------
    i, j : ndarray of int64
        Edge ends, ``i < j``, each edge once.
    w : ndarray of float64
        Edge lengths (NaN without ``distances``).
    """
    n, k = indices.shape
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = np.asarray(indices, dtype=np.int64).ravel()
    dist = (np.full(src.size, np.nan) if distances is None
            else np.asarray(distances, dtype=np.float64).ravel())
    ok = dst != src
    if max_distance is not None:
        ok &= dist <= max_distance
    src, dst, dist = src[ok], dst[ok], dist[ok]
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    key = lo * n + hi
    order = np.argsort(key, kind="stable")
    key, lo, hi, dist = key[order], lo[order], hi[order], dist[order]
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    counts = np.diff(np.append(np.flatnonzero(first), key.size))
    keep = counts >= 2 if mutual else np.ones(counts.size, dtype=bool)
    idx = np.flatnonzero(first)[keep]
    return lo[idx], hi[idx], dist[idx]


def graph_families(n: int, i: np.ndarray, j: np.ndarray, *, min_size: int = 2,
                   communities: bool = False, random_state=None,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Label the families of a graph: components (or communities) of at least ``min_size``.

    Parameters
    ----------
    n : int
        Number of nodes.
    i, j : ndarray of int
        Edges.
    min_size : int
        Smaller groups (and isolated events) get -1.
    communities : bool
        Split components into Louvain communities (networkx) instead of
        keeping whole components.
    random_state : int or None
        Seed of the Louvain method.
    weights : ndarray, optional
        Edge lengths; communities weight edges by ``1 / (1 + length / median)``.

    Returns
    -------
    ndarray of int64, shape (n,)
        Families numbered ``0, 1, ...`` by decreasing size (ties: earliest
        member first); -1 for events in no family.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if communities:
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(n))
        if weights is not None and np.isfinite(weights).all() and weights.size:
            med = float(np.median(weights)) or 1.0
            w = 1.0 / (1.0 + np.asarray(weights) / med)
        else:
            w = np.ones(len(i))
        g.add_weighted_edges_from(zip(i.tolist(), j.tolist(), w.tolist()))
        from sklearn.utils import check_random_state

        seed = (int(random_state) if isinstance(random_state, Integral)
                else int(check_random_state(random_state).randint(2**31 - 1)))
        groups = nx.community.louvain_communities(g, weight="weight", seed=seed)
        raw = np.empty(n, dtype=np.int64)
        for c, members in enumerate(groups):
            raw[list(members)] = c
    else:
        adj = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
        _, raw = connected_components(adj, directed=False)
    return _relabel_by_size(raw.astype(np.int64), min_size)


def _relabel_by_size(raw: np.ndarray, min_size: int) -> np.ndarray:
    ids, first, counts = np.unique(raw, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    new = np.full(ids.size, -1, dtype=np.int64)
    rank = 0
    for o in order:
        if counts[o] >= min_size:
            new[o] = rank
            rank += 1
    return new[np.searchsorted(ids, raw)]


class KNNGraph(BaseClusterer):
    """Families as components of the mutual k-nearest-neighbour graph (no k of clusters).

    Two events are linked when each is among the other's ``n_neighbors``
    nearest (Euclidean, exact, torch backend) and, with ``max_distance``, no
    farther apart than that. Connected components (or Louvain communities) of
    at least ``min_cluster_size`` events are the families; the rest is -1.

    Parameters
    ----------
    n_neighbors : int, default 15
        Neighbours per event (capped at ``n - 1``).
    min_cluster_size : int, default 2
        Smallest family; smaller groups and isolated events get -1.
    max_distance : float or None, default None
        Longest edge kept (in feature units).
    graph : {"components", "louvain"}, default "components"
        Whole connected components, or Louvain communities inside them (splits
        swarms joined by a few bridging events).
    device : {"cpu", "cuda", "auto"}, default "cpu"
        Where the nearest-neighbour search runs (``"auto"``: CUDA when torch
        sees a GPU).
    random_state : int, RandomState or None
        Seed of the Louvain method (components are deterministic).

    Attributes
    ----------
    labels_ : ndarray of int64
        Family ``0..n_clusters_-1`` by decreasing size, or -1.
    n_clusters_ : int
    cluster_centers_ : ndarray, shape (n_clusters_, n_features)
        Family means.
    kneighbors_ : tuple of ndarray
        ``(distances, indices)`` of the kNN table, shape (n, n_neighbors).
    edges_ : tuple of ndarray
        ``(i, j, length)`` of the graph's edges.
    device_ : str
    n_features_in_ : int

    Notes
    -----
    :meth:`predict` gives a new event the family of its nearest fitted event
    (which may be -1).

    Examples
    --------
    >>> fam = KNNGraph(n_neighbors=5).fit(X)     # doctest: +SKIP
    >>> largest_families(fam.labels_, X)[:3]     # doctest: +SKIP
    """

    _assign_rule_ = "1nn"
    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "min_cluster_size": [Interval(Integral, 2, None, closed="left")],
        "max_distance": [Interval(Real, 0, None, closed="left"), None],
        "graph": [StrOptions({"components", "louvain"})],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
    }

    def __init__(self, n_neighbors: int = 15, *, min_cluster_size: int = 2,
                 max_distance: float | None = None, graph: str = "components",
                 device: str = "cpu", random_state=None):
        self.n_neighbors = n_neighbors
        self.min_cluster_size = min_cluster_size
        self.max_distance = max_distance
        self.graph = graph
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None) -> "KNNGraph":
        """Find the families of ``X``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad parameters, NaN features, fewer than 2 events, or
            ``device="cuda"`` without a GPU.
        """
        from ._torch import cuda_available, knn

        self._validate_params()
        X = check_features(X, dtype=None, min_samples=2)
        device = self.device
        if device == "auto":
            device = "cuda" if cuda_available() else "cpu"
        n = X.shape[0]
        k = min(self.n_neighbors, n - 1)
        dist, idx = knn(X, k=k, exclude_self=True, device=device)
        i, j, w = mutual_knn_edges(idx, dist, self.max_distance)
        labels = graph_families(n, i, j, min_size=self.min_cluster_size,
                                communities=self.graph == "louvain",
                                random_state=self.random_state, weights=w)
        self.labels_ = labels
        self.n_clusters_ = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
        self.cluster_centers_ = (cluster_means(X, labels, self.n_clusters_) if self.n_clusters_
                                 else np.zeros((0, X.shape[1])))
        self.kneighbors_ = (dist, idx)
        self.edges_ = (i, j, w)
        self._ref_X_, self._ref_labels_ = X, labels
        self.device_ = device
        self.n_features_in_ = X.shape[1]
        log.info("knn-graph: %d families (%d of %d events), %d mutual edges",
                 self.n_clusters_, int((labels >= 0).sum()), n, i.size)
        return self


def max_normalized_xcorr(a: np.ndarray, b: np.ndarray, max_lag: int | None = None) -> float:
    """Largest normalised cross-correlation of two traces over lags (FFT).

    Parameters
    ----------
    a, b : ndarray, 1-D
        Traces (lengths may differ); each is demeaned.
    max_lag : int, optional
        Largest shift in samples either way (default: any overlap).

    Returns
    -------
    float
        In [-1, 1]: ``max_lag sum(a[t] b[t - lag]) / (|a| |b|)``; 0 when a trace is flat.
    """
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    n = a.size + b.size - 1
    nfft = 1 << (n - 1).bit_length()
    cc = np.fft.irfft(np.fft.rfft(a, nfft) * np.conj(np.fft.rfft(b, nfft)), nfft)
    # cc[lag] for lag >= 0 at the front, negative lags at the back
    lags = np.concatenate([np.arange(0, a.size), np.arange(-(b.size - 1), 0)])
    vals = np.concatenate([cc[:a.size], cc[nfft - (b.size - 1):]]) if b.size > 1 else cc[:a.size]
    if max_lag is not None:
        vals = vals[np.abs(lags) <= max_lag]
    return float(np.max(vals) / (na * nb))


def confirm_families(labels, waveforms: Sequence[np.ndarray] | Callable[[int], np.ndarray],
                     *, min_cc: float = 0.7, max_lag: int | None = None,
                     min_size: int = 2, max_core_candidates: int = 50) -> np.ndarray:
    """Keep only the family members whose waveform correlates with the family's core.

    REDPy-style confirmation: the core of a family is the member with the
    highest mean correlation to (up to ``max_core_candidates``) other members;
    a member stays when its largest normalised cross-correlation with the core
    is at least ``min_cc``. Families left smaller than ``min_size`` dissolve
    (-1). Numbers of surviving families are kept (no renumbering).

    Parameters
    ----------
    labels : array_like of int, shape (n,)
        Families (``-1`` = none), e.g. :attr:`KNNGraph.labels_`.
    waveforms : sequence of 1-D arrays, or callable ``i -> array``
        Waveform of event ``i`` (only family members are read).
    min_cc : float
        Threshold in (0, 1].
    max_lag : int, optional
        Largest shift in samples (default any).
    min_size : int
        Smallest confirmed family.
    max_core_candidates : int
        Members tried as core (the first ones, by index).

    Returns
    -------
    ndarray of int64
        Confirmed labels.

    Raises
    ------
    ValueError
        For a bad threshold or labels that are not integers.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {lab.shape} "
                         f"dtype {lab.dtype}")
    if not 0.0 < min_cc <= 1.0:
        raise ValueError(f"min_cc must be in (0, 1], got {min_cc}")
    get = waveforms if callable(waveforms) else (lambda i: waveforms[i])
    out = lab.astype(np.int64).copy()
    for fam in np.unique(lab[lab >= 0]):
        members = np.flatnonzero(lab == fam)
        traces = {int(i): np.asarray(get(int(i)), dtype=np.float64) for i in members}
        cands = members[:max_core_candidates]
        best, core = -np.inf, int(cands[0])
        for c in cands:
            others = [m for m in cands if m != c]
            score = np.mean([max_normalized_xcorr(traces[int(c)], traces[int(m)], max_lag)
                             for m in others]) if others else 1.0
            if score > best:
                best, core = score, int(c)
        keep = [m for m in members if m == core or
                max_normalized_xcorr(traces[core], traces[int(m)], max_lag) >= min_cc]
        drop = np.setdiff1d(members, keep)
        out[drop] = -1
        if len(keep) < min_size:
            out[members] = -1
        log.debug("family %d: %d of %d members confirmed (core %d)", fam, len(keep),
                  members.size, core)
    return out


def _parse_times(starts: Sequence[str]) -> np.ndarray:
    """ISO 8601 strings (``Z`` suffix allowed) -> datetime64[us]; NaT where unreadable."""
    out = np.full(len(starts), np.datetime64("NaT"), dtype="datetime64[us]")
    for t, s in enumerate(starts):
        text = str(s or "").strip().rstrip("Zz")
        if not text:
            continue
        try:
            out[t] = np.datetime64(text, "us")
        except ValueError:
            pass
    return out


def largest_families(labels, X=None, *, starts: Sequence[str] | None = None,
                     event_ids: Sequence[str] | None = None, top: int = 10,
                     max_pairs: int = 2000, random_state=0) -> list[dict]:
    """Records of the largest families, for the report.

    Parameters
    ----------
    labels : array_like of int, shape (n,)
        Families (``-1`` = none).
    X : array_like, shape (n, d), optional
        Features; gives each family's mean pairwise distance.
    starts : sequence of str, optional
        ISO start times; gives first/last event and the time span.
    event_ids : sequence of str, optional
        Names of the members (default: row indices).
    top : int
        Number of families returned.
    max_pairs : int
        Mean pairwise distance on a seeded sample of this many members above it.
    random_state : int
        Seed of that sample.

    Returns
    -------
    list of dict
        Largest first, each with ``family``, ``size``, ``members`` (ids),
        ``mean_distance`` (None without ``X``), and with ``starts`` also
        ``first``, ``last`` (ISO strings) and ``span_s`` (seconds; None when
        the times are unreadable).

    Raises
    ------
    ValueError
        If the inputs disagree in length.
    """
    lab = np.asarray(labels)
    n = lab.shape[0]
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {lab.shape} "
                         f"dtype {lab.dtype}")
    for name, seq in (("starts", starts), ("event_ids", event_ids)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} labels")
    if X is not None:
        X = check_features(X, dtype=None)
        if X.shape[0] != n:
            raise ValueError(f"X has {X.shape[0]} rows for {n} labels")
    times = _parse_times(starts) if starts is not None else None
    rng = np.random.default_rng(random_state)
    fams, counts = np.unique(lab[lab >= 0], return_counts=True)
    first = np.array([np.flatnonzero(lab == f)[0] for f in fams], dtype=np.int64)
    order = np.lexsort((first, -counts))[:top]
    out = []
    for o in order:
        f = int(fams[o])
        members = np.flatnonzero(lab == f)
        rec: dict = {"family": f, "size": int(members.size),
                     "members": [str(event_ids[i]) if event_ids is not None else int(i)
                                 for i in members],
                     "mean_distance": None}
        if X is not None and members.size > 1:
            sub = members if members.size <= max_pairs else np.sort(
                rng.choice(members, max_pairs, replace=False))
            from scipy.spatial.distance import pdist
            rec["mean_distance"] = float(np.mean(pdist(np.asarray(X[sub], dtype=np.float64))))
        if times is not None:
            t = times[members]
            ok = t[~np.isnat(t)]
            if ok.size:
                lo, hi = ok.min(), ok.max()
                rec.update(first=str(lo) + "Z", last=str(hi) + "Z",
                           span_s=float((hi - lo) / np.timedelta64(1, "us")) / 1e6)
            else:
                rec.update(first=None, last=None, span_s=None)
        out.append(rec)
    return out
