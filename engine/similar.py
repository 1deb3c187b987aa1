"""Similar-event search: which events of a run look most like this one?

``python -m engine.similar RUN_DIR --event EVENT_ID --n 10`` prints, as CSV
``event_id,distance,cluster,station,start``, the N events of the run nearest
to one of its events (nearest first, the event itself left out);
``--waveform FILE`` asks the same for a new event read from a waveform file,
featurized by the run's own featurizer.

The search is exact (Euclidean distances in the run's clustering space: the
stored features, conditioned by the saved model's conditioner when it has
one). The first query builds an index in the run folder
(``RUN_DIR/similar_index.npz``: the conditioned features as float32 plus
ids, stations, starts and clusters), written atomically; later queries load
it, and it is rebuilt when ``features.h5``, ``assignments.csv`` or the model
changed.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from engine._util import atomic_write

__all__ = ["Neighbour", "SimilarIndex", "open_index", "similar_events", "similar_to_waveform",
           "to_csv", "INDEX_FILE", "main"]

log = logging.getLogger("engine.similar")  # also when run as __main__

#: index file kept in the run folder
INDEX_FILE = "similar_index.npz"
_FORMAT = "microquake-engine/similar-index/1"
#: run files the index depends on (any change triggers a rebuild)
_INPUTS = ("features.h5", "assignments.csv", "model.npz", "model.json")
CSV_COLUMNS = ("event_id", "distance", "cluster", "station", "start")


@dataclass(frozen=True)
class Neighbour:
    """One result of a similar-event search.

    Attributes
    ----------
    event_id : str
    distance : float
        Euclidean distance to the query in the run's clustering space.
    cluster : str
        Cluster of the event in ``assignments.csv`` ("" when unknown).
    station, start : str
    """

    event_id: str
    distance: float
    cluster: str
    station: str
    start: str


def _stamp(run_dir: Path) -> dict:
    out = {}
    for name in _INPUTS:
        p = run_dir / name
        if p.is_file():
            st = p.stat()
            out[name] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return out


def _check_run_dir(run_dir) -> Path:
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    if not (run / "features.h5").is_file():
        raise FileNotFoundError(f"run folder {run} has no features.h5 (not a finished run of "
                                "python -m engine.run?)")
    return run


def _read_features(run: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    import h5py

    path = run / "features.h5"
    try:
        with h5py.File(path, "r") as h5:
            X = np.asarray(h5["features"][...], dtype=np.float32)
            meta = {}
            for col in ("event_id", "station", "start"):
                meta[col] = (np.asarray(h5[col].asstr()[...], dtype=str) if col in h5
                             else np.full(X.shape[0], "", dtype=str))
    except (OSError, KeyError) as exc:
        raise ValueError(f"{path} is not a feature file of a run ({exc})") from None
    if X.ndim != 2 or any(v.shape != (X.shape[0],) for v in meta.values()):
        raise ValueError(f"{path}: features of shape {X.shape} do not match the event columns")
    return X, meta


def _read_clusters(run: Path, event_ids: np.ndarray) -> np.ndarray:
    path = run / "assignments.csv"
    out = np.full(event_ids.shape[0], "", dtype=object)
    if not path.is_file():
        log.info("%s has no assignments.csv: the cluster column stays empty", run)
        return out.astype(str)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"event_id", "cluster"} <= set(reader.fieldnames):
            raise ValueError(f"{path} lacks the columns event_id and cluster")
        found = {row["event_id"]: row["cluster"] for row in reader}
    for t, eid in enumerate(event_ids):
        out[t] = found.get(str(eid), "")
    return out.astype(str)


def _load_model(run: Path):
    if not ((run / "model.npz").is_file() and (run / "model.json").is_file()):
        return None
    from engine.cluster import ClusterModel

    return ClusterModel.load(run / "model")


@dataclass
class SimilarIndex:
    """The searchable form of a run's events (see :func:`open_index`).

    Attributes
    ----------
    features : ndarray of float32, shape (n, d)
        Events in the run's clustering space, minus ``offset``.
    event_id, station, start, cluster : ndarray of str, shape (n,)
    conditioning : str
        Spec of the conditioner applied (``"none"`` without one).
    stamp : dict
        Sizes and modification times of the run files it was built from.
    offset : ndarray of float64, shape (d,)
        Mean of the events, subtracted from them and from every query
        (distances do not change; float32 products near the origin stay exact).
    """

    features: np.ndarray
    event_id: np.ndarray
    station: np.ndarray
    start: np.ndarray
    cluster: np.ndarray
    conditioning: str
    stamp: dict
    offset: np.ndarray

    @classmethod
    def build(cls, run_dir) -> "SimilarIndex":
        """Build the index from the run's files (without saving it).

        Raises
        ------
        FileNotFoundError
            No such run folder, or no ``features.h5`` in it.
        ValueError
            Malformed run files.
        """
        run = _check_run_dir(run_dir)
        stamp = _stamp(run)
        X, meta = _read_features(run)
        model = _load_model(run)
        spec = "none"
        if model is not None and model.conditioner is not None:
            X = model.conditioner.transform(X, groups=meta["station"]).astype(np.float32)
            spec = model.conditioner.spec
        offset = X.mean(axis=0, dtype=np.float64)
        X = np.ascontiguousarray(X - offset.astype(X.dtype), dtype=np.float32)
        return cls(X, meta["event_id"], meta["station"], meta["start"],
                   _read_clusters(run, meta["event_id"]), spec, stamp, offset)

    def save(self, path) -> Path:
        """Write the index atomically to ``path`` (an uncompressed ``.npz``)."""
        head = json.dumps({"format": _FORMAT, "conditioning": self.conditioning,
                           "stamp": self.stamp})
        return atomic_write(path, lambda fh: np.savez(
            fh, features=self.features, event_id=self.event_id, station=self.station,
            start=self.start, cluster=self.cluster, offset=self.offset, head=np.array(head)))

    @classmethod
    def load(cls, path) -> "SimilarIndex":
        """Read an index written by :meth:`save`.

        Raises
        ------
        ValueError
            If the file is not an index of this format.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                head = json.loads(str(z["head"]))
                if head.get("format") != _FORMAT:
                    raise ValueError(f"format {head.get('format')!r}")
                return cls(z["features"], z["event_id"], z["station"], z["start"], z["cluster"],
                           head["conditioning"], head["stamp"], z["offset"])
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not a similar-event index ({exc})") from None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def position(self, event_id: str) -> int:
        """Row of ``event_id``.

        Raises
        ------
        KeyError
            If the run has no such event (the message gives examples).
        """
        hits = np.flatnonzero(self.event_id == str(event_id))
        if hits.size == 0:
            examples = ", ".join(self.event_id[:3].tolist())
            raise KeyError(f"event {event_id!r} is not in this run ({len(self)} events, "
                           f"e.g. {examples})")
        return int(hits[0])

    def query(self, vectors: np.ndarray, n: int, exclude: int | None = None,
              device: str = "cpu") -> list[list[Neighbour]]:
        """The ``n`` nearest events of each row of ``vectors`` (index space).

        Parameters
        ----------
        vectors : ndarray, shape (q, d)
            Queries in the run's clustering space (``offset`` not yet removed).
        n : int
            Neighbours per query (capped at the number of candidates).
        exclude : int, optional
            Row of the index left out of the answer (the query event itself).
        device : {"cpu", "cuda"}

        Returns
        -------
        list (one per query) of list of Neighbour, nearest first
        """
        from engine.cluster._torch import knn

        avail = len(self) - (exclude is not None)
        if avail < 1:
            raise ValueError("the run has no other event to compare with")
        if n > avail:
            log.info("only %d other events in the run; returning all of them", avail)
        n_eff = min(n, avail)
        k = min(len(self), n_eff + (exclude is not None))
        q = np.asarray(vectors, dtype=np.float64) - self.offset
        dist, idx = knn(q.astype(np.float32), self.features, k=k, device=device,
                        check_finite=False)
        out = []
        for drow, irow in zip(dist, idx):
            keep = [(d, i) for d, i in zip(drow, irow) if i != exclude][:n_eff]
            out.append([Neighbour(str(self.event_id[i]), float(d), str(self.cluster[i]),
                                  str(self.station[i]), str(self.start[i])) for d, i in keep])
        return out


def open_index(run_dir, *, rebuild: bool = False) -> SimilarIndex:
    """The run's similar-event index: loaded, or (re)built and saved when stale.

    Parameters
    ----------
    run_dir : path
        An ``--out`` folder of ``python -m engine.run``.
    rebuild : bool
        Rebuild even when the saved index is up to date.

    Returns
    -------
    SimilarIndex

    Raises
    ------
    FileNotFoundError
        No such run folder, or no ``features.h5`` in it.
    ValueError
        Malformed run files.
    """
    run = _check_run_dir(run_dir)
    path = run / INDEX_FILE
    if path.is_file() and not rebuild:
        try:
            idx = SimilarIndex.load(path)
        except ValueError as exc:
            log.warning("rebuilding %s: %s", path, exc)
        else:
            if idx.stamp == _stamp(run):
                return idx
            log.info("run files changed since %s was built; rebuilding it", path)
    idx = SimilarIndex.build(run)
    try:
        idx.save(path)
    except OSError as exc:   # read-only run folder: search without keeping the index
        log.warning("could not save %s (%s); the index is rebuilt at every query", path, exc)
    return idx


def similar_events(run_dir, event_id: str | None = None, *, features=None,
                   groups: Sequence[str] | None = None, n: int = 10,
                   device: str = "cpu") -> list[Neighbour]:
    """The ``n`` events of a run nearest to one of its events or to a new feature vector.

    Parameters
    ----------
    run_dir : path
        An ``--out`` folder of ``python -m engine.run``.
    event_id : str, optional
        An event of the run (it is left out of the answer).
    features : array_like, shape (d,) or (1, d), optional
        Raw features of a new event (as stored in ``features.h5``); the run
        model's conditioner, if any, is applied.
    groups : sequence of str, optional
        Station of the new event, for per-station conditioning.
    n : int
        Number of neighbours (default 10).
    device : {"cpu", "cuda"}
        Where the exact search runs.

    Returns
    -------
    list of Neighbour
        Nearest first.

    Raises
    ------
    FileNotFoundError
        No such run folder, or no ``features.h5`` in it.
    KeyError
        Unknown ``event_id``.
    ValueError
        Neither or both of ``event_id``/``features``, a bad ``n``, or
        features of the wrong length.

    Examples
    --------
    >>> res = similar_events("runs/etna", "ETNA.ECPN.2019-01-01T00:12:03", n=5)  # doctest: +SKIP
    >>> [(nb.event_id, nb.distance, nb.cluster) for nb in res]               # doctest: +SKIP
    """
    if (event_id is None) == (features is None):
        raise ValueError("give exactly one of event_id or features")
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    index = open_index(run_dir)
    if event_id is not None:
        row = index.position(event_id)
        vec = index.features[row:row + 1].astype(np.float64) + index.offset
        return index.query(vec, n, exclude=row, device=device)[0]
    vec = np.asarray(features, dtype=np.float64)
    if vec.ndim == 1:
        vec = vec[None, :]
    if vec.ndim != 2 or vec.shape[0] != 1:
        raise ValueError(f"features must be one event (shape (d,) or (1, d)), got {vec.shape}")
    if index.conditioning != "none":
        model = _load_model(Path(run_dir))
        d_in = model.n_features_in
        if vec.shape[1] != d_in:
            raise ValueError(f"features have {vec.shape[1]} values, the run's have {d_in}")
        vec = model.conditioner.transform(vec, groups=groups)
    elif vec.shape[1] != index.features.shape[1]:
        raise ValueError(f"features have {vec.shape[1]} values, the run's have "
                         f"{index.features.shape[1]}")
    return index.query(vec, n, device=device)[0]


def _run_config(run: Path) -> dict:
    import tomllib

    path = run / "config.toml"
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as fh:
            return {k.replace("-", "_"): v for k, v in tomllib.load(fh).items()}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.warning("could not read %s (%s); using default read settings", path, exc)
        return {}


def similar_to_waveform(run_dir, path, *, n: int = 10, device: str = "cpu") -> list[Neighbour]:
    """The ``n`` events of a run nearest to the event in a waveform file.

    The file is read by :func:`engine.sources.open_source` (``events=``, with the
    run's sampling rate and channel selection) and featurized by the run's own
    featurizer (:func:`engine.features.load_run_featurizer`).

    Parameters
    ----------
    run_dir : path
    path : path
        A waveform file ObsPy reads (miniSEED, SAC, ...) or an event array file
        (``.npy``/``.h5``) holding exactly one event.
    n : int
    device : {"cpu", "cuda"}

    Returns
    -------
    list of Neighbour
        Nearest first.

    Raises
    ------
    FileNotFoundError
        No such run folder or file.
    ValueError
        The file is unreadable or holds no or several events.
    """
    from engine.features import load_run_featurizer
    from engine.sources import open_source

    run = _check_run_dir(run_dir)
    cfg = _run_config(run)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--waveform {p}: no such file")
    try:
        source = open_source(events=p, target_fs=float(cfg.get("fs", 100.0)),
                             fs=float(cfg.get("events_fs", 100.0)),
                             channel=str(cfg.get("channel", "*Z")))
        events, skipped = [], []
        for key in source.chunks():
            res = source.read_chunk(key)
            events += res.events
            skipped += list(res.summary.skipped)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"--waveform {p}: cannot read it as events ({exc})") from None
    if not events and skipped:
        raise ValueError(f"--waveform {p}: cannot read it ({skipped[0][1]})")
    if len(events) != 1:
        raise ValueError(f"--waveform {p} holds {len(events)} events (traces after the "
                         f"channel selection {cfg.get('channel', '*Z')!r}); give a file "
                         "with exactly one")
    featurizer = load_run_featurizer(run, device=device)
    X = np.asarray(featurizer.transform(events))
    return similar_events(run, features=X[:1], groups=[events[0].station], n=n, device=device)


def to_csv(neighbours: Sequence[Neighbour]) -> str:
    """The CSV text ``event_id,distance,cluster,station,start`` of a result."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for nb in neighbours:
        w.writerow([nb.event_id, f"{nb.distance:.6g}", nb.cluster, nb.station, nb.start])
    return buf.getvalue()


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m engine.similar``."""
    ap = argparse.ArgumentParser(
        prog="python -m engine.similar",
        description="Print, as CSV event_id,distance,cluster,station,start, the N events of a "
                    "run nearest (exact Euclidean search in the run's clustering space) to one "
                    "of its events or to a new event in a waveform file.")
    ap.add_argument("run_dir", metavar="RUN_DIR", help="--out folder of python -m engine.run")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--event", metavar="EVENT_ID", help="an event id of the run")
    what.add_argument("--waveform", metavar="FILE",
                      help="a file with one new event (miniSEED, SAC, .npy, ...)")
    ap.add_argument("--n", type=int, default=10, metavar="N",
                    help="number of neighbours (default 10)")
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                    help="where the search runs (default cpu; auto: cuda when torch sees a GPU)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the index first")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    prog = "engine.similar"
    if args.n < 1:
        print(f"{prog}: error: --n must be >= 1, got {args.n}", file=sys.stderr)
        return 2
    device = args.device
    if device == "auto":
        from engine.cluster._torch import cuda_available
        device = "cuda" if cuda_available() else "cpu"
    try:
        if args.rebuild:
            open_index(args.run_dir, rebuild=True)
        if args.event is not None:
            result = similar_events(args.run_dir, args.event, n=args.n, device=device)
        else:
            result = similar_to_waveform(args.run_dir, args.waveform, n=args.n, device=device)
    except KeyError as exc:
        print(f"{prog}: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, ImportError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(to_csv(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
