"""Resumable on-disk feature store.

Layout inside the run folder ``OUT``::

    OUT/store/manifest.json      fingerprint of what the features depend on
    OUT/store/parts/<hash>.npz   one part per source chunk (features + metadata)
    OUT/features.h5              all parts gathered, chunked HDF5 (after a run)

Each part is written to a temporary name and renamed into place, so a killed
run leaves only complete parts: a re-run skips the chunks whose part exists
and loses at most the chunk in flight. Parts are independent files, so Dask
workers on several machines can write to the same store (a shared folder).
A store made with another configuration (other weights, sampling rate,
detection settings...) is refused rather than silently mixed.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from engine._util import atomic_path, atomic_write

#: per-event metadata columns kept beside the features
META_COLUMNS = ("event_id", "station", "channel", "start", "label", "chunk", "source",
                "end", "duration", "amplitude", "snr")
#: version of the part layout; part of every store fingerprint
STORE_FORMAT = 2


def part_name(key: str) -> str:
    """File name of the part that holds chunk ``key``."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20] + ".npz"


def write_part(parts_dir: str | os.PathLike, key: str, features: np.ndarray,
               meta: dict[str, Sequence[str]], stats: dict[str, Any] | None = None) -> Path:
    """Write one chunk's features and metadata atomically.

    Parameters
    ----------
    parts_dir : path
        ``OUT/store/parts``.
    key : str
        The source chunk key.
    features : ndarray, shape (n, d)
        Features of the chunk's events (n may be 0).
    meta : dict
        One sequence of n strings per column of :data:`META_COLUMNS`.
    stats : dict, optional
        JSON-serialisable counts of the chunk (files read, skipped, samples).

    Returns
    -------
    Path
        The part file.
    """
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features of chunk {key!r} must be 2-D; got {features.shape}")
    n = features.shape[0]
    arrays: dict[str, np.ndarray] = {"features": features,
                                     "key": np.array(key),
                                     "stats": np.array(json.dumps(stats or {}))}
    for col in META_COLUMNS:
        values = list(meta.get(col, [""] * n))
        if len(values) != n:
            raise ValueError(f"metadata column {col!r} of chunk {key!r} has {len(values)} "
                             f"values for {n} events")
        arrays["meta_" + col] = np.array([("" if v is None else str(v)) for v in values],
                                         dtype=str)
    return atomic_write(parts_dir / part_name(key), lambda fh: np.savez(fh, **arrays),
                        fsync=True)


def read_part(path: str | os.PathLike) -> dict[str, Any]:
    """Read one part: dict with key, features, meta (dict of lists) and stats."""
    with np.load(path, allow_pickle=False) as z:
        n = z["features"].shape[0]
        meta = {col: ([str(v) for v in z["meta_" + col]] if "meta_" + col in z.files
                      else [""] * n) for col in META_COLUMNS}
        return {"key": str(z["key"]), "features": z["features"], "meta": meta,
                "stats": json.loads(str(z["stats"]))}


class FeatureStore:
    """The feature store of one run folder.

    Parameters
    ----------
    out : path
        The run folder.
    fingerprint : dict
        JSON-serialisable description of everything the features depend on.
    fresh : bool
        Delete an existing store instead of resuming it.

    Raises
    ------
    ValueError
        If the folder holds a store with a different fingerprint.
    """

    def __init__(self, out: str | os.PathLike, fingerprint: dict[str, Any],
                 fresh: bool = False) -> None:
        self.out = Path(out)
        self.root = self.out / "store"
        self.parts_dir = self.root / "parts"
        fingerprint = {**fingerprint, "store_format": STORE_FORMAT}
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        manifest = self.root / "manifest.json"
        if fresh and self.root.exists():
            for p in self.parts_dir.glob("*"):
                p.unlink()
            if manifest.exists():
                manifest.unlink()
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{manifest} is unreadable ({exc}); use --fresh") from None
            if old.get("fingerprint") != self.fingerprint:
                a, b = old.get("fingerprint", {}), self.fingerprint
                diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                raise ValueError(
                    f"{self.out} holds features made with another configuration "
                    f"(differs in: {', '.join(diff)}); use --fresh to discard them or "
                    "another --out")
        else:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(manifest, json.dumps({"fingerprint": self.fingerprint}, indent=1))
        # stale temporary files of a killed run
        for p in [*self.parts_dir.glob("*.tmp"), *self.parts_dir.glob(".*.tmp")]:
            p.unlink(missing_ok=True)

    def has(self, key: str) -> bool:
        """Whether chunk ``key`` is already in the store."""
        return (self.parts_dir / part_name(key)).exists()

    def todo(self, keys: Iterable[str]) -> list[str]:
        """The keys (in order) that still need computing."""
        return [k for k in keys if not self.has(k)]

    def write(self, key: str, features: np.ndarray, meta: dict[str, Sequence[str]],
              stats: dict[str, Any] | None = None) -> Path:
        """Write one chunk's part (see :func:`write_part`)."""
        return write_part(self.parts_dir, key, features, meta, stats)

    def gather(self, keys: Sequence[str]) -> tuple[np.ndarray, dict[str, list[str]],
                                                   list[dict[str, Any]]]:
        """Features, metadata and per-chunk stats of ``keys``, in that order.

        Raises
        ------
        ValueError
            If a part is missing or unreadable.
        """
        feats, stats = [], []
        meta: dict[str, list[str]] = {c: [] for c in META_COLUMNS}
        dim = None
        for key in keys:
            path = self.parts_dir / part_name(key)
            if not path.exists():
                raise ValueError(f"feature store {self.root} lacks chunk {key!r}")
            try:
                part = read_part(path)
            except Exception as exc:  # corrupt file: name it
                raise ValueError(f"feature store part {path} (chunk {key!r}) is "
                                 f"unreadable: {exc}; delete it to recompute") from None
            f = part["features"]
            if f.shape[0]:
                if dim is not None and f.shape[1] != dim:
                    raise ValueError(f"part {path} has {f.shape[1]} features, others {dim}")
                dim = f.shape[1]
                feats.append(f)
            for c in META_COLUMNS:
                meta[c].extend(part["meta"][c])
            stats.append(part["stats"])
        X = np.concatenate(feats) if feats else np.zeros((0, dim or 0), np.float32)
        return X, meta, stats

    def consolidate(self, X: np.ndarray, meta: dict[str, list[str]]) -> Path:
        """Write ``OUT/features.h5`` (chunked, compressed) atomically and return it."""
        import h5py

        final = self.out / "features.h5"
        with atomic_path(final) as tmp, h5py.File(tmp, "w") as h5:
            n = X.shape[0]
            h5.create_dataset("features", data=X, chunks=(max(1, min(n, 4096)),
                                                          max(1, X.shape[1])) if n else None,
                              compression="gzip" if n else None)
            str_dt = h5py.string_dtype("utf-8")
            for c in META_COLUMNS:
                h5.create_dataset(c, data=np.array(meta[c], dtype=object), dtype=str_dt)
            h5.attrs["fingerprint"] = json.dumps(self.fingerprint, sort_keys=True)
        return final
