"""Clustering stage of the main job: stored features -> clusters -> outputs.

Runs on the features gathered from the store, scans k when a range is given
(silhouette picks k unless it is fixed), saves the clustering as a
:class:`engine.cluster.ClusterModel` (``OUT/model.npz/.json``) so new events can
be assigned later, and writes the assignments, metrics, figures and report.
Gallery images and waveforms are fetched again from the source for the few
events shown, so the store never has to hold images.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from engine._util import quiet
from engine.config import RunConfig
from engine.features.base import Featurizer, images_of


#: largest run for which the report looks for mutual-nearest-neighbour families
GRAPH_FAMILIES_MAX = 50_000


class EventFetcher:
    """Fetch single events again from their source chunk (small LRU of chunks).

    Parameters
    ----------
    source : EventSource
        The run's source.
    meta : dict
        Store metadata (``event_id`` and ``chunk`` columns).
    fs : float
        Sampling rate of the waveforms (for their images).
    max_chunks : int
        Chunks kept in memory.
    """

    def __init__(self, source, meta: dict[str, list[str]], fs: float,
                 max_chunks: int = 4) -> None:
        self.source = source
        self.meta = meta
        self.fs = fs
        self.max_chunks = max_chunks
        self._chunks: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def event(self, i: int):
        """The event of row ``i`` of the store."""
        key, eid = self.meta["chunk"][i], self.meta["event_id"][i]
        events = self._chunks.get(key)
        if events is None:
            events = {e.id: e for e in self.source.read_chunk(key).events}
            self._chunks[key] = events
            while len(self._chunks) > self.max_chunks:
                self._chunks.popitem(last=False)
        else:
            self._chunks.move_to_end(key)
        try:
            return events[eid]
        except KeyError:
            raise ValueError(f"event {eid} is no longer in chunk {key} of the source; "
                             "the data changed since the features were stored") from None

    def image(self, i: int) -> np.ndarray:
        """uint8 (227, 227, 3) image of row ``i``."""
        with quiet():
            return np.asarray(images_of([self.event(i)], self.fs, "cpu")[0])

    def waveform(self, i: int):
        """(samples, fs) of row ``i``, or None for image-only events."""
        ev = self.event(i)
        return None if ev.data is None else (ev.data, ev.fs)


def clustering_device(method: str, device: str) -> str:
    """Where a method clusters in a run on ``device``.

    In a CUDA run a method with a GPU backend (the method table's) gets
    ``"auto"``: cuML, FAISS-GPU or torch on the GPU, whichever is installed.
    The methods without a GPU backend run on the CPU.
    """
    from engine.cluster.factory import has_gpu_backend

    return "auto" if (device == "cuda" and has_gpu_backend(method)) else "cpu"


def check_model_features(path: str, featurizer: Featurizer):
    """The saved clustering of ``--assign-to``, if it was built on the same features.

    Compares the model's stored feature fingerprint with ``featurizer``'s; it is
    cheap and runs before any feature is computed.

    Raises
    ------
    ValueError
        The model was built on other features (the differing items are named) or
        by an engine that did not record its features' fingerprint.
    """
    from engine.cluster import ClusterModel

    model = ClusterModel.load(path)
    theirs = model.provenance.get("features")
    if not isinstance(theirs, dict):
        raise ValueError(f"--assign-to {path}: the model does not record which features it "
                         "was built on (made by an older engine version); re-run that "
                         "clustering with this version")
    ours = featurizer.fingerprint()
    if theirs != ours:
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        detail = "; ".join(f"{k}: model {theirs.get(k)!r}, this run {ours.get(k)!r}"
                           for k in diff)
        raise ValueError(f"--assign-to {path}: the model was built on other features "
                         f"({detail})")
    return model


def _num(text: str) -> Optional[float]:
    try:
        return float(text) if text not in ("", None) else None
    except ValueError:
        return None


def _event_meta(meta: dict[str, list[str]], i: int) -> dict[str, Any]:
    """The report's record of store row ``i`` (numbers parsed, blanks as None)."""
    return {"event_id": meta["event_id"][i], "station": meta["station"][i],
            "channel": meta["channel"][i], "start": meta["start"][i],
            "end": meta["end"][i], "duration": _num(meta["duration"][i]),
            "amplitude": _num(meta["amplitude"][i]), "snr": _num(meta["snr"][i]),
            "label": meta["label"][i] or None}


def _remove_stale_model(out: Path, keep: str) -> None:
    """Delete an earlier clustering of this folder: an assigning run makes none."""
    keep_path = Path(keep).resolve()
    for suffix in (".npz", ".json"):
        p = out / f"model{suffix}"
        if p.exists() and p.resolve() != keep_path.with_suffix(suffix):
            p.unlink()


def _cluster(cfg: RunConfig, Xc: np.ndarray, device: str):
    """Cluster conditioned features as the flags say: ``(estimator, labels, scan or None)``.

    Methods that need no k are fitted once; with a range of k the scan picks k
    by ``--k-criterion``; a single k is fitted directly.
    """
    from engine.cluster import make_clusterer, scan_k
    from engine.cluster.factory import needs_k

    n, seed = Xc.shape[0], cfg.seed
    if not needs_k(cfg.method):
        est = make_clusterer(cfg.method, None, random_state=seed, device=device).fit(Xc)
        return est, np.asarray(est.labels_), None
    ks = [k for k in cfg.k_values() if k < n]
    if not ks:
        raise ValueError(f"only {n} event(s) were found: too few for --k {cfg.k}")
    if len(ks) > 1:
        scan = scan_k(Xc, cfg.method, ks, random_state=seed, device=device,
                      criterion=cfg.k_criterion, resample_size=cfg.k_resample_size)
        return scan.estimators[scan.chosen_k], np.asarray(scan.labels[scan.chosen_k]), scan
    est = make_clusterer(cfg.method, ks[0], random_state=seed, device=device).fit(Xc)
    return est, np.asarray(est.labels_), None


def _assign_projection(est) -> Optional[np.ndarray]:
    """Directions a method assigns events in (``lda-kmeans``), for the saved model.

    With one cluster there are none, and the model assigns by plain distance.
    """
    from engine.cluster.discriminant import DiscriminantKMeans

    if not isinstance(est, DiscriminantKMeans) or est.components_.shape[1] == 0:
        return None
    return est.components_


def cluster_and_report(cfg: RunConfig, X: np.ndarray, meta: dict[str, list[str]], source,
                       featurizer: Featurizer, out: Path, device: str
                       ) -> tuple[Optional[int], int, int]:
    """Cluster the stored features and write every output of the run.

    Returns
    -------
    k_chosen : int or None
        k picked by ``--k-criterion`` (None when k was fixed or the method needs none).
    n_clusters : int
        Number of clusters found (noise label -1 excluded).
    n_novel : int
        Events in none of the clusters (-1: novel under ``--assign-to``, noise
        for HDBSCAN and graph families).
    """
    from engine.cluster import ClusterModel, cluster_indices, label_scores
    from engine.cluster.conditioning import FeatureConditioner
    from engine.report import write_outputs

    n = X.shape[0]
    seed = cfg.seed
    device = clustering_device(cfg.method, device)
    stations = list(meta["station"])
    scan = None
    k_chosen = None
    model = None
    distances = None
    cond = None
    est = None
    if cfg.assign_to:
        model = check_model_features(cfg.assign_to, featurizer)
        if model.n_features_in != X.shape[1]:
            raise ValueError(f"--assign-to {cfg.assign_to}: the model has "
                             f"{model.n_features_in} features per event, this run "
                             f"{X.shape[1]}")
        labels, distances, _ = model.assign(X, groups=stations)
        cond = model.conditioner
        _remove_stale_model(out, cfg.assign_to)
        Xc = cond.transform(X, groups=stations) if cond is not None else X
    else:
        if cfg.condition not in ("", "none"):
            cond = FeatureConditioner.from_spec(cfg.condition)
            Xc = cond.fit_transform(X, groups=stations)
        else:
            Xc = X
        est, labels, scan = _cluster(cfg, Xc, device)
        k_chosen = scan.chosen_k if scan is not None else None
    labels = labels.astype(np.int64)
    found = sorted(set(labels.tolist()) - {-1})

    indices = cluster_indices(Xc, labels, random_state=seed) if len(found) > 1 else None
    known = [lab for lab in meta["label"] if lab]
    scores = None
    if known:
        mask = np.array([bool(lab) for lab in meta["label"]])
        scores = label_scores(np.asarray(meta["label"], dtype=object)[mask], labels[mask])

    if model is None and found:
        centers = getattr(est, "cluster_centers_", None)
        model = ClusterModel.from_labels(
            X, labels, centers=centers, method=cfg.method, conditioner=cond, groups=stations,
            projection=_assign_projection(est),
            provenance={"features": featurizer.fingerprint(), "condition": cfg.condition,
                        "out": str(out)})
        model.save(out / "model")
        _, distances, _ = model.assign(X, groups=stations)

    events_meta = [_event_meta(meta, i) for i in range(n)]
    graph_families = None
    if cfg.report and 4 <= n <= GRAPH_FAMILIES_MAX:
        from engine.cluster.graph import KNNGraph, largest_families

        fam = labels if cfg.method == "knn-graph" and not cfg.assign_to else \
            KNNGraph(n_neighbors=min(10, n - 1), random_state=seed).fit(Xc).labels_
        graph_families = largest_families(fam, Xc, starts=meta["start"],
                                          event_ids=meta["event_id"], top=8) or None
    fetch = EventFetcher(source, meta, cfg.fs)
    write_outputs(out, Xc, labels, events_meta, scan=scan, indices=indices,
                  label_scores=scores, memberships=getattr(est, "membership_", None),
                  distances=distances, images=fetch.image,
                  waveforms=fetch.waveform,
                  config={**cfg.to_dict(), "featurizer": featurizer.provenance()},
                  centers=model.centers if cfg.assign_to else None,
                  method=f"assigned to {cfg.assign_to}" if cfg.assign_to else cfg.method,
                  random_state=seed, report=cfg.report, assign_to=cfg.assign_to,
                  bandpass=(cfg.freqmin or None, cfg.freqmax or None),
                  graph_families=graph_families)
    return k_chosen, len(found), int((labels == -1).sum())
