"""Evaluation harness: how well do the engine's families match analysts' classes?

``python -m engine.evaluate (--images DIR | --events PATH | --archive DIR --catalog CSV)
--out DIR`` reads a labelled input, computes features with every featurizer
asked for (cached per featurizer in ``OUT/features/`` so re-runs are fast),
conditions them (:class:`~engine.cluster.FeatureConditioner` specs), clusters
them with every method over a range of k and scores each clustering against the
known classes: ARI, NMI, purity and the share of the focus class (LP) in its
dominant cluster *together with that cluster's size* (a 93 % LP share in a
cluster holding 75 % of all events says little).

Each combination is scored at every k of the scan and at the k the engine
chooses itself (one row per k criterion: ``auto``, ``silhouette``,
``stability``, ``gap``, ``bic``; see :mod:`engine.cluster.kchoice`).
``--split halves`` scores two disjoint, seeded, class-stratified halves
separately, so that nobody tunes to one set; ``--repeats N`` draws N such splits
(seeds ``seed .. seed + N - 1``, sets ``A0, B0, A1, ...``) and the summary gives
the mean, spread and worst ARI over all 2N halves, since one split of a few
hundred events moves ARI by about 0.05. ``--split draws --class-counts
LP=88,TC=100,TR=34,VT=20 --repeats N`` scores N seeded subsets in a given class
mix (sets ``D0, D1, ...``), because a balanced sample says little about an
archive whose classes are not balanced.

Outputs (written atomically into ``--out``): ``results.csv`` (every row),
``results.json`` (rows, k-scan curves and reasons, settings) and
``results.md`` (the summary over sets; set by set, the change of ARI of each
method, featurizer and conditioning against the first one given
(:meth:`EvalResult.paired`); a table at the engine's own k, then every row);
the markdown tables at the engine's own k are also printed.

Library: :func:`evaluate` (events in, :class:`EvalResult` out),
:func:`parse_featurizer_spec`, :func:`split_halves`, :func:`draw_class_counts`.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from engine.events import Event

__all__ = ["EvalResult", "evaluate", "parse_featurizer_spec", "split_halves",
           "draw_class_counts", "featurize_cached", "build_parser", "main",
           "DEFAULT_CONDITIONINGS", "DEFAULT_METHODS", "COLUMNS"]

log = logging.getLogger("engine.evaluate")  # also when run as __main__

#: default conditioning specs compared by the harness
DEFAULT_CONDITIONINGS = ("standardize", "standardize+pca50+l2")
#: default clustering methods compared by the harness
DEFAULT_METHODS = ("lda-kmeans", "kmeans", "ward")
#: columns of results.csv, in order
COLUMNS = ("set", "n", "featurizer", "conditioning", "method", "k", "chosen_by", "ari", "nmi",
           "purity", "focus_class", "focus_share", "focus_cluster_n", "focus_cluster_frac",
           "cluster_sizes")


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`.

    Attributes
    ----------
    rows : list of dict
        One row per set x featurizer x conditioning x method x k, with the keys
        of :data:`COLUMNS`; ``chosen_by`` lists the k criteria that picked this k
        ("" for a k only scanned).
    scans : list of dict
        Per set x featurizer x conditioning x method: the k-scan summary
        (:meth:`engine.cluster.ScanResult.to_dict`: curves, picks, reason).
    skipped : list of str
        Featurizers that could not run on this input, and why.
    settings : dict
        What was compared (for the JSON file).
    """

    rows: list = field(default_factory=list)
    scans: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def own_k_rows(self, criterion: str = "auto") -> list[dict]:
        """Rows at the k a criterion chose (``criterion`` in their ``chosen_by``)."""
        return [r for r in self.rows if criterion in r["chosen_by"].split(",")]

    def best(self, criterion: str = "auto", key: str = "ari") -> dict | None:
        """The own-k row of highest ``key`` averaged over the sets (halves), or None.

        Returns
        -------
        dict or None
            ``{"featurizer", "conditioning", "method", "mean", "per_set"}``.
        """
        groups: dict[tuple, dict] = {}
        for r in self.own_k_rows(criterion):
            g = groups.setdefault((r["featurizer"], r["conditioning"], r["method"]), {})
            g[r["set"]] = r[key]
        if not groups:
            return None
        (f, c, m), per = max(groups.items(), key=lambda kv: float(np.mean(list(kv[1].values()))))
        return {"featurizer": f, "conditioning": c, "method": m,
                "mean": float(np.mean(list(per.values()))), "per_set": per}

    def summary(self, criterion: str = "auto") -> list[dict]:
        """Own-k scores of each featurizer x conditioning x method over all sets.

        Returns
        -------
        list of dict
            Keys ``featurizer, conditioning, method, sets`` (how many), ``ari_mean,
            ari_sd, ari_min, nmi_mean, k_median``, and ``focus_share_mean``,
            ``focus_cluster_frac_mean`` (NaN without a focus class), in the order
            the combinations were scored.
        """
        groups: dict[tuple, list] = {}
        for r in self.own_k_rows(criterion):
            groups.setdefault((r["featurizer"], r["conditioning"], r["method"]), []).append(r)
        out = []
        for (f, c, m), rows in groups.items():
            ari = np.array([r["ari"] for r in rows], float)
            out.append({"featurizer": f, "conditioning": c, "method": m, "sets": len(rows),
                        "ari_mean": float(ari.mean()), "ari_sd": float(ari.std()),
                        "ari_min": float(ari.min()),
                        "nmi_mean": float(np.mean([r["nmi"] for r in rows])),
                        "k_median": float(np.median([r["k"] for r in rows])),
                        "focus_share_mean": float(np.mean([r["focus_share"] for r in rows])),
                        "focus_cluster_frac_mean": float(np.mean(
                            [r["focus_cluster_frac"] for r in rows]))})
        return out

    def paired(self, against: str = "method", criterion: str = "auto",
               tol: float = 1e-4) -> list[dict]:
        """Set-by-set changes of ARI against the first value of one dimension.

        Each combination is compared with the one that differs from it only in
        ``against``, which takes its first value (the first method, featurizer
        or conditioning given), on the sets both were scored on, at the k
        ``criterion`` chose.

        Parameters
        ----------
        against : {"method", "featurizer", "conditioning"}
        criterion : str
        tol : float
            Changes within ``tol`` count as the same.

        Returns
        -------
        list of dict
            Keys ``featurizer, conditioning, method`` (the combination),
            ``reference`` (the first value of ``against``), ``sets``, ``mean``,
            ``sd``, ``better``, ``same``, ``worse``, ``worst`` (the most
            negative change); empty when ``against`` has one value.
        """
        dims = ("featurizer", "conditioning", "method")
        if against not in dims:
            raise ValueError(f"against must be one of {', '.join(dims)}, got {against!r}")
        ari: dict[tuple, dict] = {}
        for r in self.own_k_rows(criterion):
            ari.setdefault(tuple(r[d] for d in dims), {})[r["set"]] = float(r["ari"])
        i = dims.index(against)
        values = list(dict.fromkeys(key[i] for key in ari))
        out = []
        for key, per in ari.items():
            if key[i] == values[0]:
                continue
            ref = ari.get(key[:i] + (values[0],) + key[i + 1:], {})
            sets = [s for s in per if s in ref]
            if not sets:
                continue
            d = np.array([per[s] - ref[s] for s in sets])
            out.append({**dict(zip(dims, key)), "reference": values[0], "sets": len(sets),
                        "mean": float(d.mean()), "sd": float(d.std()),
                        "better": int((d > tol).sum()), "same": int((abs(d) <= tol).sum()),
                        "worse": int((d < -tol).sum()), "worst": float(d.min())})
        return out

    def to_csv(self) -> str:
        """Every row as CSV text (header :data:`COLUMNS`)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({c: _fmt(r[c]) for c in COLUMNS})
        return buf.getvalue()

    def to_markdown(self, criterion: str = "auto", all_rows: bool = True) -> str:
        """Markdown: the table at the engine's own k, then (optionally) every row."""
        out = []
        summary = self.summary(criterion)
        if summary and max(s["sets"] for s in summary) > 1:
            out += [f"## Over all sets, at the engine's own k ({criterion})", "",
                    _md_summary(summary), ""]
            for dim in ("method", "featurizer", "conditioning"):
                pairs = self.paired(dim, criterion)
                if pairs:
                    out += [f"## Set by set against the first {dim} ({pairs[0]['reference']}), "
                            f"ARI at the engine's own k", "", _md_paired(pairs, dim), ""]
        out += [f"## At the engine's own k ({criterion})", "", _md_table(self.own_k_rows(criterion))]
        reasons = [s for s in self.scans if s.get("reason")]
        if reasons:
            out += ["", "Why k was chosen:", ""]
            out += [f"- {s['set']} / {s['featurizer']} / {s['conditioning']} / {s['method']}: "
                    f"{s['reason']}" for s in reasons]
        if self.skipped:
            out += ["", "Skipped: " + "; ".join(self.skipped)]
        if all_rows:
            out += ["", "## Every k", "", _md_table(self.rows)]
        return "\n".join(out) + "\n"

    def to_json(self) -> str:
        """Rows, scans, skipped featurizers and settings as JSON text."""
        return json.dumps({"settings": self.settings, "summary": self.summary(),
                           "paired": {d: self.paired(d) for d in
                                      ("method", "featurizer", "conditioning")},
                           "rows": self.rows, "scans": self.scans,
                           "skipped": self.skipped}, indent=1, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.4f}"
    return str(v)


def _md_table(rows: Sequence[dict]) -> str:
    head = ("set", "featurizer", "conditioning", "method", "k", "chosen by", "ARI", "NMI",
            "purity", "focus share", "its cluster (n, % of all)", "cluster sizes")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["focus_class"]:
            share = f"{r['focus_class']} {100 * r['focus_share']:.0f}%"
            clus = f"{r['focus_cluster_n']} ({100 * r['focus_cluster_frac']:.0f}%)"
        else:
            share, clus = "-", "-"
        lines.append("| " + " | ".join([
            r["set"], r["featurizer"], r["conditioning"], r["method"], str(r["k"]),
            r["chosen_by"] or "-", f"{r['ari']:.3f}", f"{r['nmi']:.3f}", f"{r['purity']:.3f}",
            share, clus, r["cluster_sizes"]]) + " |")
    return "\n".join(lines)


def _md_paired(pairs: Sequence[dict], against: str) -> str:
    head = ("featurizer", "conditioning", "method", f"against {against}", "sets",
            "mean change ± sd", "better / same / worse", "worst change")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in pairs:
        lines.append("| " + " | ".join([
            p["featurizer"], p["conditioning"], p["method"], p["reference"], str(p["sets"]),
            f"{p['mean']:+.3f} ± {p['sd']:.3f}", f"{p['better']} / {p['same']} / {p['worse']}",
            f"{p['worst']:+.3f}"]) + " |")
    return "\n".join(lines)


def _md_summary(summary: Sequence[dict]) -> str:
    head = ("featurizer", "conditioning", "method", "sets", "ARI mean ± sd", "worst ARI",
            "median k", "NMI mean", "focus share (mean)", "its cluster (mean % of all)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        has_focus = np.isfinite(s["focus_share_mean"])
        lines.append("| " + " | ".join([
            s["featurizer"], s["conditioning"], s["method"], str(s["sets"]),
            f"{s['ari_mean']:.3f} ± {s['ari_sd']:.3f}", f"{s['ari_min']:.3f}",
            f"{s['k_median']:g}", f"{s['nmi_mean']:.3f}",
            f"{100 * s['focus_share_mean']:.0f}%" if has_focus else "-",
            f"{100 * s['focus_cluster_frac_mean']:.0f}%" if has_focus else "-"]) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- pieces
def parse_featurizer_spec(spec: str) -> tuple[str, dict]:
    """``"NAME[:key=value[,key=value...]]"`` -> ``(name, params)``.

    Values that read as int or float become numbers; ``none`` becomes None.

    Examples
    --------
    >>> parse_featurizer_spec("superlet-cnn:feature_layer=fire9_gap")
    ('superlet-cnn', {'feature_layer': 'fire9_gap'})

    Raises
    ------
    ValueError
        An empty name, an unknown featurizer or a parameter without ``=``.
    """
    from engine.features import FEATURIZERS

    name, _, rest = str(spec).strip().partition(":")
    name = name.strip()
    if name not in FEATURIZERS:
        raise ValueError(f"--features {spec!r}: unknown featurizer {name!r}; choose one of "
                         f"{', '.join(FEATURIZERS)}")
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--features {spec!r}: parameter {item!r} is not key=value")
        params[key.strip()] = _value(value.strip())
    allowed = set(FEATURIZERS[name]._get_param_names())
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"--features {spec!r}: featurizer {name!r} has no parameter "
                         f"{unknown[0]!r}; it takes {', '.join(sorted(allowed))}")
    return name, params


def _value(text: str) -> Any:
    if text.lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _label(name: str, params: dict) -> str:
    if not params:
        return name
    shown = []
    for k, v in sorted(params.items()):
        if k == "weights" and v:
            v = Path(str(v)).stem
        shown.append(f"{k}={v}")
    return f"{name}:{','.join(shown)}"


def split_halves(y: Sequence, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the events, stratified by class, seeded.

    Every class is shuffled and dealt alternately (its first event to a random
    half), so each half holds half of every class (one more in one half for odd
    counts).

    Parameters
    ----------
    y : sequence
        Class of every event.
    seed : int

    Returns
    -------
    a, b : ndarray of int
        Sorted indices of the two halves.
    """
    y = np.asarray(y).astype(str)
    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        first = int(rng.integers(0, 2))
        for j, i in enumerate(idx):
            (a if (j + first) % 2 == 0 else b).append(int(i))
    return np.sort(np.asarray(a, dtype=np.int64)), np.sort(np.asarray(b, dtype=np.int64))


def draw_class_counts(y: Sequence, counts: Mapping[str, int], seed: int = 0) -> np.ndarray:
    """A seeded subset with exactly ``counts[c]`` events of every class ``c``.

    Scores on a balanced sample say little about an archive whose classes are
    not balanced (the published Llaima set is LP 36 %, TC 41 %, TR 14 %, VT
    8 %); this draws subsets in any mix to measure that.

    Parameters
    ----------
    y : sequence
        Class of every event.
    counts : mapping of str -> int
        Events to draw from each class; classes not named are left out.
    seed : int

    Returns
    -------
    ndarray of int
        Sorted indices of the subset.

    Raises
    ------
    ValueError
        For fewer than two classes, an unknown class, a count below 1, or a
        count above the events of that class.
    """
    y = np.asarray(y).astype(str)
    if len(counts) < 2:
        raise ValueError(f"class counts need at least two classes, got {dict(counts)}")
    present = sorted(set(y.tolist()))
    rng = np.random.default_rng(seed)
    out = []
    for c, n in counts.items():
        have = np.flatnonzero(y == str(c))
        if have.size == 0:
            raise ValueError(f"class {c!r} of the class counts is not in the input "
                             f"(classes: {', '.join(present)})")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"the count of class {c!r} must be an integer >= 1, got {n!r}")
        if n > have.size:
            raise ValueError(f"class {c!r} has {have.size} events, fewer than the {n} asked for")
        out.append(rng.choice(have, int(n), replace=False))
    return np.sort(np.concatenate(out).astype(np.int64))


def _events_digest(events: Sequence[Event]) -> str:
    h = hashlib.sha256()
    for e in events:
        h.update(f"{e.id}\x00{e.source}\x00{e.label}\n".encode())
    return h.hexdigest()[:12]


def featurize_cached(featurizer, events: Sequence[Event], cache_dir: str | Path | None = None
                     ) -> tuple[np.ndarray, bool]:
    """Features of ``events``, read from / written to ``cache_dir`` when given.

    The cache file is named by the featurizer's name, its fingerprint digest and
    a digest of the event ids, so changed weights or other events never reuse
    stale features.

    Parameters
    ----------
    featurizer : Featurizer
    events : sequence of Event
    cache_dir : path, optional

    Returns
    -------
    X : ndarray (n, d) float32
    cached : bool
        Whether the features came from the cache.
    """
    from engine._util import atomic_path

    path = None
    if cache_dir is not None:
        featurizer.check()
        path = (Path(cache_dir) / f"{featurizer.name}-{featurizer.fingerprint_id()}-"
                f"{_events_digest(events)}.npy")
        if path.is_file():
            try:
                X = np.load(path)
                if X.shape[0] == len(events):
                    return X, True
                log.warning("feature cache %s has %d rows for %d events; recomputing", path,
                            X.shape[0], len(events))
            except (OSError, ValueError) as exc:
                log.warning("feature cache %s unreadable (%s); recomputing", path, exc)
    X = featurizer.fit(events).transform(events)
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, X)
    return X, False


def _focus(classes: Iterable[str], focus: str | None) -> str | None:
    classes = list(classes)
    if focus is None:
        return next((c for c in classes if c.upper() == "LP"), None)
    match = next((c for c in classes if c.upper() == focus.upper()), None)
    if match is None:
        raise ValueError(f"--focus-class {focus!r} is not a class of the input "
                         f"({', '.join(classes)})")
    return match


def _score_row(y: np.ndarray, labels: np.ndarray, focus: str | None) -> dict:
    from engine.cluster.scores import label_scores

    s = label_scores(y, labels)
    sizes = np.sort(np.bincount(np.unique(labels, return_inverse=True)[1]))[::-1]
    row = {"ari": s["ari"], "nmi": s["nmi"], "purity": s["purity"], "focus_class": focus or "",
           "focus_share": float("nan"), "focus_cluster_n": 0, "focus_cluster_frac": float("nan"),
           "cluster_sizes": "/".join(str(int(v)) for v in sizes)}
    if focus is not None and focus in s["per_class"]:
        pc = s["per_class"][focus]
        n_c = int(np.sum(labels == pc["dominant_cluster"]))
        row.update(focus_share=pc["share"], focus_cluster_n=n_c,
                   focus_cluster_frac=n_c / len(labels))
    return row


# ---------------------------------------------------------------------------- library
def evaluate(events: Sequence[Event], featurizers: Sequence = ("pixels", "superlet-cnn"),
             conditionings: Sequence[str] = DEFAULT_CONDITIONINGS,
             methods: Sequence[str] = DEFAULT_METHODS, ks: Iterable[int] = range(2, 9), *,
             split: str = "none", seed: int = 0, repeats: int = 1,
             cache_dir: str | Path | None = None,
             focus_class: str | None = None, device: str = "cpu",
             scan_options: dict | None = None,
             class_counts: Mapping[str, int] | None = None) -> EvalResult:
    """Score featurizer x conditioning x method x k against the events' known classes.

    Parameters
    ----------
    events : sequence of Event
        Labelled events (``Event.label``); unlabelled ones are dropped with a
        log line.
    featurizers : sequence
        Each a spec string (``"superlet-cnn:feature_layer=fire9_gap"``), a
        ``(name, params)`` pair or a :class:`~engine.features.Featurizer`.
        Featurizers that cannot run on the input (e.g. waveform-only ones on
        images) are skipped and listed in :attr:`EvalResult.skipped`.
    conditionings : sequence of str
        :class:`~engine.cluster.FeatureConditioner` specs; ``station`` uses the
        events' stations as groups.
    methods : sequence of str
        Clustering methods (:data:`engine.cluster.METHODS`); methods that find
        their own k give one row.
    ks : iterable of int
        k values scanned (those ``>=`` the set size are dropped).
    split : {"none", "halves", "draws"}
        ``"halves"``: two disjoint seeded class-stratified halves, each scored
        on its own (sets ``A`` and ``B``); ``"draws"``: ``repeats`` seeded
        subsets with ``class_counts`` events of each class (sets ``D0, D1,
        ...``; :func:`draw_class_counts`); ``"none"``: one set ``all``.
    seed : int
        Seed of the split, the clusterers and the k criteria.
    repeats : int
        With ``split="halves"``: this many splits, seeded ``seed .. seed +
        repeats - 1`` (each also seeds its clusterers), sets ``A0, B0, A1, B1,
        ...``; 1 (default) gives sets ``A`` and ``B``. With ``split="draws"``:
        this many subsets, seeded the same way.
    cache_dir : path, optional
        Feature cache folder (see :func:`featurize_cached`).
    focus_class : str, optional
        Class whose dominant-cluster share is reported (default: ``LP`` when present).
    device : str
        Device of the clusterers and of featurizers built from specs.
    scan_options : dict, optional
        More arguments of :func:`engine.cluster.scan_k` (e.g. ``n_resamples``).
    class_counts : mapping of str -> int, optional
        Events of each class in every subset of ``split="draws"`` (needed
        there, refused otherwise).

    Returns
    -------
    EvalResult

    Raises
    ------
    ValueError
        No labelled events, one class only, bad specs, an unknown method or split,
        a featurizer whose parameters or files are wrong, or no featurizer able
        to run on the input.
    """
    from engine.cluster import FeatureConditioner, make_clusterer, needs_k, scan_k
    from engine.features import Featurizer, make_featurizer

    if split not in ("none", "halves", "draws"):
        raise ValueError(f"split must be 'none', 'halves' or 'draws', got {split!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if repeats > 1 and split == "none":
        raise ValueError(f"repeats={repeats} needs split='halves' or 'draws' (it repeats "
                         "the split)")
    if (split == "draws") != bool(class_counts):
        raise ValueError("class counts (--class-counts) go with split='draws', and "
                         "split='draws' needs them")
    events = list(events)
    labelled = [e for e in events if e.label not in (None, "")]
    if len(labelled) < len(events):
        log.info("evaluate: %d of %d events have no label and are left out",
                 len(events) - len(labelled), len(events))
    if not labelled:
        raise ValueError("no event carries a class label: the harness needs labelled input "
                         "(class sub-folders, HDF5 class datasets, --mask-labels, or a catalogue "
                         "with a type column)")
    y_all = np.asarray([str(e.label) for e in labelled])
    classes = sorted({str(c) for c in y_all})
    if len(classes) < 2:
        raise ValueError(f"all {len(labelled)} labelled events are of class {classes[0]!r}; "
                         "scores against one class mean nothing")
    focus = _focus(classes, focus_class)
    for m in methods:
        needs_k(m)  # raises for an unknown method
    conds = [FeatureConditioner.from_spec(c) for c in conditionings]   # raise early on bad specs
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 2:
        raise ValueError(f"ks must be integers >= 2, got {ks}")
    specs = []
    for f in featurizers:
        if isinstance(f, Featurizer):
            specs.append((f.name, f.get_params(), f))
        elif isinstance(f, str):
            name, params = parse_featurizer_spec(f)
            specs.append((name, params, None))
        else:
            name, params = f
            specs.append((name, dict(params), None))
    if split == "halves":
        sets = []
        for r in range(int(repeats)):
            a, b = split_halves(y_all, seed + r)
            tag = "" if repeats == 1 else str(r)
            sets += [("A" + tag, a, seed + r), ("B" + tag, b, seed + r)]
    elif split == "draws":
        sets = [(f"D{r}", draw_class_counts(y_all, class_counts, seed + r), seed + r)
                for r in range(int(repeats))]
    else:
        sets = [("all", np.arange(len(labelled)), seed)]
    stations = np.asarray([e.station or "" for e in labelled])
    result = EvalResult(settings={
        "n_events": len(labelled), "classes": {c: int(np.sum(y_all == c)) for c in classes},
        "featurizers": [_label(n, {k: v for k, v in p.items() if k != "device"})
                        for n, p, _ in specs],
        "conditionings": [c.spec for c in conds], "methods": list(methods), "ks": ks,
        "split": split, "seed": seed, "repeats": int(repeats), "focus_class": focus,
        "class_counts": dict(class_counts) if class_counts else None})
    opts = dict(scan_options or {})
    opts.setdefault("criterion", "auto")
    result.settings["scan_options"] = dict(opts)
    for name, params, inst in specs:
        label = _label(name, {k: v for k, v in params.items() if k != "device"})
        feat = inst if inst is not None else make_featurizer(name, **{"device": device,
                                                                       **params})
        try:
            feat.check()
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(f"featurizer {label}: {exc}") from None
        t0 = time.perf_counter()
        try:
            X_all, cached = featurize_cached(feat, labelled, cache_dir)
        except ValueError as exc:    # e.g. a waveform featurizer on image-only events
            result.skipped.append(f"{label}: {exc}")
            log.warning("evaluate: featurizer %s skipped: %s", label, exc)
            continue
        log.info("evaluate: %s features %s in %.1f s%s", label, X_all.shape,
                 time.perf_counter() - t0, " (cache)" if cached else "")
        for set_name, idx, set_seed in sets:
            y = y_all[idx]
            for cond in conds:
                c = FeatureConditioner.from_spec(cond.spec)
                Xc = c.fit_transform(X_all[idx], groups=stations[idx] if c.station else None)
                for m in methods:
                    base = {"set": set_name, "n": int(idx.size), "featurizer": label,
                            "conditioning": c.spec, "method": m}
                    if not needs_k(m):
                        lab = np.asarray(make_clusterer(m, random_state=set_seed, device=device)
                                         .fit(Xc).labels_)
                        k_found = int(np.unique(lab[lab >= 0]).size)
                        result.rows.append({**base, "k": k_found, "chosen_by": "own",
                                            **_score_row(y, lab, focus)})
                        continue
                    kk = [k for k in ks if k < idx.size]
                    if not kk:
                        raise ValueError(f"set {set_name} has {idx.size} events: too few for "
                                         f"k in {ks}")
                    scan = scan_k(Xc, m, kk, random_state=set_seed, device=device, **opts)
                    result.scans.append({**{k: base[k] for k in ("set", "featurizer",
                                                                  "conditioning", "method")},
                                         **scan.to_dict()})
                    for k in kk:
                        chosen_by = ",".join(cr for cr, pk in scan.picks.items() if pk == k)
                        result.rows.append({**base, "k": k, "chosen_by": chosen_by,
                                            **_score_row(y, scan.labels[k], focus)})
    if not result.rows:
        raise ValueError("no featurizer could run on this input: " + "; ".join(result.skipped))
    return result


def write_outputs(result: EvalResult, out: str | Path, criterion: str = "auto") -> dict[str, Path]:
    """Write ``results.csv``, ``results.md`` and ``results.json`` atomically into ``out``."""
    from engine._util import atomic_write

    out = Path(out)
    return {"csv": atomic_write(out / "results.csv", result.to_csv()),
            "md": atomic_write(out / "results.md", result.to_markdown(criterion)),
            "json": atomic_write(out / "results.json", result.to_json())}


# ---------------------------------------------------------------------------- CLI
def _class_counts(text: str) -> dict[str, int]:
    """``LP=88,TC=100`` -> ``{"LP": 88, "TC": 100}`` (argparse type of --class-counts)."""
    out: dict[str, int] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, eq, num = item.partition("=")
        try:
            n = int(num)
        except ValueError:
            n = 0
        if not eq or not name.strip() or n < 1:
            raise argparse.ArgumentTypeError(
                f"expected CLASS=N pairs with N >= 1, e.g. LP=88,TC=100; got {item!r}")
        out[name.strip()] = n
    if len(out) < 2:
        raise argparse.ArgumentTypeError(f"give at least two classes, got {text!r}")
    return out


def _int_range(text: str) -> list[int]:
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-", 1))
            vals = list(range(lo, hi + 1))
        else:
            vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a k range like 2-8 or 3,4,5") from None
    if not vals or min(vals) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: every k must be >= 2")
    return vals


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``python -m engine.evaluate``."""
    p = argparse.ArgumentParser(
        prog="python -m engine.evaluate",
        description="Compare featurizers, feature conditioning, clustering methods and k "
                    "against known classes: ARI, NMI, purity and the focus class's share "
                    "with its cluster's size, at every k and at the engine's own choice of k.")
    src = p.add_argument_group("labelled input (exactly one)")
    src.add_argument("--images", metavar="DIR", help="image folder DIR/<class>/*.png")
    src.add_argument("--events", metavar="PATH",
                     help="event files: HDF5 (one dataset per class), .npy/.npz labelled "
                          "windows (with --mask-labels), or a folder of waveform files with "
                          "class sub-folders")
    src.add_argument("--archive", metavar="DIR",
                     help="continuous archive; needs --catalog with a type column "
                          "(e.g. the synthetic archive of python -m engine.synth)")
    p.add_argument("--catalog", metavar="CSV",
                   help="with --archive: catalogue time,type[,station][,duration]")
    p.add_argument("--mask-labels", metavar="NAMES",
                   help="labelled windows: names of the trailing mask rows, or 'ovdas'")
    p.add_argument("--fs", type=float, default=100.0,
                   help="sampling rate of event arrays that do not state it (default 100)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: results.csv/.md/.json and features/ (the cache)")
    p.add_argument("--features", action="append", metavar="NAME[:k=v,...]",
                   help="featurizer to compare (repeatable), e.g. pixels, "
                        "superlet-cnn:feature_layer=fire9_gap, "
                        "superlet-cnn:weights=W.mat,feature_layer=conv10 "
                        "(default: pixels and superlet-cnn)")
    p.add_argument("--conditioning", action="append", metavar="SPEC",
                   help="conditioning spec (repeatable), e.g. standardize, "
                        "station+standardize+pca50+l2, none (default: "
                        + " and ".join(DEFAULT_CONDITIONINGS) + ")")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated clustering methods (default %(default)s)")
    p.add_argument("--k-range", type=_int_range, default=list(range(2, 9)), metavar="LO-HI",
                   help="k values scanned, e.g. 2-8 (default) or 3,4,5")
    p.add_argument("--criterion", default="auto",
                   choices=["auto", "silhouette", "stability", "gap", "bic"],
                   help="k criterion of the summary table (every criterion's pick is in the "
                        "full table; default auto)")
    p.add_argument("--k-resample-size", type=int, default=200, metavar="N",
                   help="events in each resample of the stability rule (default 200; "
                        "see python -m engine.run --help)")
    p.add_argument("--split", default="none", choices=["none", "halves", "draws"],
                   help="halves: score two disjoint seeded class-stratified halves "
                        "separately; draws: seeded subsets in the mix of --class-counts")
    p.add_argument("--class-counts", type=_class_counts, metavar="C=N,...",
                   help="with --split draws: events of each class in every subset, e.g. "
                        "LP=88,TC=100,TR=34,VT=20 (the published Llaima set's mix)")
    p.add_argument("--repeats", type=int, default=1, metavar="N",
                   help="with --split halves or draws: N seeded splits or subsets (seeds "
                        "SEED..SEED+N-1), summarised by mean, spread and worst ARI over all "
                        "sets (default 1)")
    p.add_argument("--focus-class", metavar="CLASS",
                   help="class whose share in one cluster is reported (default LP if present)")
    p.add_argument("--seed", type=int, default=0, help="seed of split, clusterers and criteria")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where features and clusterers compute (default cpu)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write features/")
    return p


def _open_input(args: argparse.Namespace):
    given = [f for f in ("images", "events", "archive") if getattr(args, f)]
    if len(given) != 1:
        raise ValueError("give exactly one of --images, --events, --archive "
                         f"(got {', '.join('--' + g for g in given) or 'none'})")
    path = Path(getattr(args, given[0]))
    if not path.exists():
        raise FileNotFoundError(f"--{given[0]}: {path} does not exist")
    if args.catalog and not args.archive:
        raise ValueError("--catalog only applies with --archive")
    if args.mask_labels and not args.events:
        raise ValueError("--mask-labels only applies with --events")
    from engine.sources import open_source

    if args.archive:
        if not args.catalog:
            raise ValueError("--archive needs --catalog (a catalogue with a type column gives "
                             "the classes)")
        if not Path(args.catalog).is_file():
            raise FileNotFoundError(f"--catalog: {args.catalog} does not exist")
        return open_source(archive=str(path), catalog=args.catalog, detect=False,
                           target_fs=args.fs)
    if args.events:
        return open_source(events=str(path), fs=args.fs, mask_labels=args.mask_labels)
    return open_source(images=str(path))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m engine.evaluate``."""
    from engine._util import configure_logging

    args = build_parser().parse_args(argv)
    try:
        configure_logging()
        from engine.cluster.kchoice import MIN_RESAMPLE_SIZE

        if args.k_resample_size < MIN_RESAMPLE_SIZE:
            raise ValueError(f"--k-resample-size must be >= {MIN_RESAMPLE_SIZE}; got "
                             f"{args.k_resample_size}")
        if (args.split == "draws") != bool(args.class_counts):
            raise ValueError("--class-counts goes with --split draws, and --split draws "
                             "needs --class-counts")
        source = _open_input(args)
        events, _ = source.read_all()
        if not events:
            raise ValueError("the input holds no events")
        feats = args.features or ["pixels", "superlet-cnn"]
        out = Path(args.out)
        res = evaluate(events, feats, args.conditioning or DEFAULT_CONDITIONINGS,
                       [m.strip() for m in args.methods.split(",") if m.strip()], args.k_range,
                       split=args.split, seed=args.seed, repeats=args.repeats,
                       cache_dir=None if args.no_cache else out / "features",
                       focus_class=args.focus_class, device=args.device,
                       scan_options={"resample_size": args.k_resample_size},
                       class_counts=args.class_counts)
        write_outputs(res, out, args.criterion)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(res.to_markdown(args.criterion, all_rows=False))
    best = res.best(args.criterion)
    if best:
        per = ", ".join(f"{s} {v:.3f}" for s, v in best["per_set"].items())
        sys.stdout.write(f"\nbest at own k ({args.criterion}): {best['featurizer']} / "
                         f"{best['conditioning']} / {best['method']}: ARI {per}\n")
    sys.stdout.write(f"written: {out / 'results.csv'}, results.md, results.json\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
