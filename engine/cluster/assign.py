"""A saved clustering that assigns new events, flagging "none of the known families"."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from engine._util import atomic_write

from ._nearest import cluster_means, distances_to_assigned, nearest_center
from ._validation import check_features

if TYPE_CHECKING:
    from .conditioning import FeatureConditioner

__all__ = ["ClusterModel"]

_FORMAT = "microquake-engine/cluster-model/1"


def _stem(path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".npz", ".json") else p


def _check_projection(projection, n_features: int) -> np.ndarray | None:
    """``projection`` as a finite float64 (n_features, m) array, or None."""
    if projection is None:
        return None
    P = np.asarray(projection, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != n_features or P.shape[1] < 1 or not np.isfinite(P).all():
        raise ValueError(f"projection must be a finite ({n_features}, m) array with m >= 1, "
                         f"got shape {P.shape}")
    return P


def _project(X: np.ndarray, P: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """``X @ P`` in float64, a block of rows at a time (no float64 copy of ``X``)."""
    out = np.empty((X.shape[0], P.shape[1]))
    for s in range(0, X.shape[0], chunk):
        out[s:s + chunk] = np.asarray(X[s:s + chunk], dtype=np.float64) @ P
    return out


def _nearest_center_cuda(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_center` on the GPU (torch backend); distances in float64."""
    from ._torch import as_tensor, nearest_center_torch

    Xt = as_tensor(X, "cuda")
    Ct = as_tensor(centers, "cuda").double()
    lab, _ = nearest_center_torch(Xt, Ct.to(Xt.dtype))
    dist = np.empty(Xt.shape[0])
    step = 1 << 16
    for s in range(0, Xt.shape[0], step):   # exact distances, float64, on the device
        diff = Xt[s:s + step].double() - Ct[lab[s:s + step]]
        dist[s:s + step] = diff.pow_(2).sum(dim=1).sqrt_().cpu().numpy()
    return lab.cpu().numpy(), dist


@dataclass
class ClusterModel:
    """Centres (or medoids) of a clustering plus per-cluster novelty thresholds.

    Parameters
    ----------
    centers : ndarray, shape (k, d)
    thresholds : ndarray, shape (k,)
        An event farther than ``thresholds[j]`` from its nearest centre ``j`` is
        novel (label -1).
    method : str
    quantile : float
        Quantile of the member distances used for the thresholds.
    provenance : dict
        Where the features came from (extractor, weights, layer, ...).
    names : list of str, optional
        Human names of the clusters (e.g. the dominant known class).
    conditioner : FeatureConditioner, optional
        Fitted feature conditioning; :meth:`assign` applies it to the raw
        features first (``centers`` live in the conditioned space). It is
        saved and loaded with the model.
    projection : ndarray, shape (d, m), optional
        Directions in which the nearest centre is chosen (the discriminant of
        ``lda-kmeans``): an event goes to the centre nearest after both are
        projected, as the method assigned it. Distances and thresholds stay
        in the conditioned space.

    Examples
    --------
    >>> model = ClusterModel.from_labels(X, labels, method="kmeans")   # doctest: +SKIP
    >>> model.save("run/model"); model = ClusterModel.load("run/model")  # doctest: +SKIP
    >>> labels, distances, is_novel = model.assign(X_new)              # doctest: +SKIP
    """

    centers: np.ndarray
    thresholds: np.ndarray
    method: str = "kmeans"
    quantile: float = 0.99
    provenance: dict = field(default_factory=dict)
    names: list | None = None
    conditioner: "FeatureConditioner | None" = None
    projection: np.ndarray | None = None

    @classmethod
    def from_labels(cls, X, labels, *, centers=None, method: str = "kmeans",
                    quantile: float = 0.99, provenance: dict | None = None,
                    names: list | None = None, conditioner: "FeatureConditioner | None" = None,
                    groups: Sequence | None = None,
                    projection: np.ndarray | None = None) -> "ClusterModel":
        """Build a model from clustered events.

        Parameters
        ----------
        X : array_like, shape (n, d)
            Raw features (with ``conditioner``, they are conditioned here;
            without, they are the clustering space).
        labels : array_like of int, shape (n,)
            Clusters ``0..k-1`` (-1 ignored).
        centers : array_like, shape (k, d), optional
            Centres or medoids; default the cluster means.
        method : str
        quantile : float
            In (0, 1]; default 0.99 (the 99th percentile of member distances).
        provenance : dict, optional
        names : list of str, optional
        conditioner : FeatureConditioner, optional
            Fitted; ``centers`` are then in its output space.
        groups : sequence of str, optional
            Station of each event, for the conditioner.
        projection : array_like, shape (d, m), optional
            Directions in which :meth:`assign` picks the nearest centre
            (``components_`` of :class:`~engine.cluster.DiscriminantKMeans`).

        Returns
        -------
        ClusterModel

        Raises
        ------
        ValueError
            On malformed inputs, an empty cluster or a bad quantile.
        """
        X = check_features(X)
        if conditioner is not None:
            X = conditioner.transform(X, groups=groups)
        lab = np.asarray(labels)
        if lab.shape != (X.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"labels must be integers, one per row of X ({X.shape[0]}), "
                             f"got shape {lab.shape} dtype {lab.dtype}")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        if not (lab >= 0).any():
            raise ValueError("no event has a cluster label >= 0")
        k = int(lab.max()) + 1
        C = cluster_means(X, lab, k) if centers is None else check_features(centers, name="centers")
        if C.shape != (k, X.shape[1]):
            raise ValueError(f"centers must have shape ({k}, {X.shape[1]}), got {C.shape}")
        P = _check_projection(projection, X.shape[1])
        thr = np.empty(k)
        for j in range(k):
            members = X[lab == j]
            if members.shape[0] == 0:
                raise ValueError(f"cluster {j} has no members; renumber the labels 0..k-1")
            d = np.linalg.norm(members - C[j], axis=1)
            thr[j] = np.quantile(d, quantile)
        return cls(C, thr, method, float(quantile), dict(provenance or {}), names, conditioner, P)

    @property
    def n_clusters(self) -> int:
        """Number of known clusters."""
        return int(self.centers.shape[0])

    @property
    def n_features_in(self) -> int:
        """Number of raw features an event must have (before conditioning)."""
        if self.conditioner is not None:
            return int(self.conditioner.n_features_in_)
        return int(self.centers.shape[1])

    def assign(self, X, groups: Sequence | None = None, device: str = "cpu"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest known cluster of each event, or -1 when it is none of them.

        Parameters
        ----------
        X : array_like, shape (n, d)
            Raw features; the model's conditioner (if any) is applied first.
        groups : sequence of str, optional
            Station of each event (per-station centring of the conditioner;
            unseen or missing stations use the global centre).
        device : {"cpu", "cuda"}
            ``"cuda"``: nearest centres from the torch backend on the GPU.

        Returns
        -------
        labels : ndarray of int64
            Nearest cluster, or -1 where ``is_novel``.
        distances : ndarray of float64
            Euclidean distance to the nearest centre.
        is_novel : ndarray of bool
            Distance above that cluster's threshold.

        Raises
        ------
        ValueError
            If ``X`` is malformed or has the wrong number of features.
        """
        X = check_features(X, dtype=None)
        if X.shape[1] != self.n_features_in:
            raise ValueError(f"X has {X.shape[1]} features, the model was built on "
                             f"{self.n_features_in}")
        if self.conditioner is not None:
            X = self.conditioner.transform(X, groups=groups)
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if self.projection is not None:
            # nearest in the projected space (tiny: m columns); distances in the full one
            lab, _ = nearest_center(_project(X, self.projection),
                                    self.centers @ self.projection)
            dist = distances_to_assigned(X, self.centers, lab)
        elif device == "cuda":
            lab, dist = _nearest_center_cuda(X, self.centers)
        else:
            lab, dist = nearest_center(X, self.centers)
        novel = dist > self.thresholds[lab]
        lab = lab.copy()
        lab[novel] = -1
        return lab, dist, novel

    def save(self, path) -> tuple[Path, Path]:
        """Write ``<path>.npz`` (arrays) and ``<path>.json`` (metadata), atomically.

        Parameters
        ----------
        path : str or Path
            Stem; a ``.npz``/``.json`` suffix is dropped.

        Returns
        -------
        (npz_path, json_path)
        """
        stem = _stem(path)
        npz, js = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")
        arrays = {"centers": self.centers, "thresholds": self.thresholds}
        if self.projection is not None:
            arrays["projection"] = self.projection
        cond = None
        if self.conditioner is not None:
            cond, cond_arrays = self.conditioner.to_state()
            arrays.update({"conditioner_" + k: v for k, v in cond_arrays.items()})
        atomic_write(npz, lambda fh: np.savez(fh, **arrays))
        meta: dict[str, Any] = {"format": _FORMAT, "method": self.method,
                                "quantile": self.quantile, "n_clusters": self.n_clusters,
                                "n_features": int(self.centers.shape[1]),
                                "provenance": self.provenance, "names": self.names,
                                "conditioner": cond}
        atomic_write(js, lambda fh: fh.write(json.dumps(meta, indent=2, default=str).encode()))
        return npz, js

    @classmethod
    def load(cls, path) -> "ClusterModel":
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
            Stem (``.npz``/``.json`` suffix allowed).

        Returns
        -------
        ClusterModel

        Raises
        ------
        FileNotFoundError
            If either file is missing.
        ValueError
            If the files are not a cluster model or disagree.
        """
        stem = _stem(path)
        npz, js = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")
        for p in (npz, js):
            if not p.is_file():
                raise FileNotFoundError(f"cluster model file {p} not found")
        meta = json.loads(js.read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{js} is not a cluster model (format {meta.get('format')!r})")
        with np.load(npz) as z:
            C, thr = z["centers"], z["thresholds"]
            P = z["projection"] if "projection" in z.files else None
            cond_arrays = {k[len("conditioner_"):]: z[k] for k in z.files
                           if k.startswith("conditioner_")}
        if C.shape != (meta["n_clusters"], meta["n_features"]) or thr.shape != (C.shape[0],):
            raise ValueError(f"{npz} holds arrays of shapes {C.shape}, {thr.shape} that do not "
                             f"match {js}")
        conditioner = None
        if meta.get("conditioner"):
            from .conditioning import FeatureConditioner

            try:
                conditioner = FeatureConditioner.from_state(meta["conditioner"], cond_arrays)
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{stem}: bad feature conditioner in the model ({exc})") from None
            if conditioner.n_features_out_ != C.shape[1]:
                raise ValueError(f"{stem}: the conditioner gives {conditioner.n_features_out_} "
                                 f"features, the centres have {C.shape[1]}")
        try:
            P = _check_projection(P, C.shape[1])
        except ValueError as exc:
            raise ValueError(f"{npz}: {exc}") from None
        return cls(C, thr, meta["method"], float(meta["quantile"]), meta.get("provenance") or {},
                   meta.get("names"), conditioner, P)
