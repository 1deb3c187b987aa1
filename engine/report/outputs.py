"""Write the outputs of a clustering run: CSV, JSON, PNG figures and report.html."""
from __future__ import annotations

import csv
import io
import json
import math
import platform
import textwrap
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from engine._util import atomic_write, progress

from . import figures as F
from .html import esc, img_tag, page, pre_json, table

__all__ = ["write_outputs", "atomic_write_bytes", "default_versions"]

_PLOT_MAX = 20_000


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`engine._util.atomic_write`)."""
    return atomic_write(path, data)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "to_dict"):
        return _clean(obj.to_dict())
    return str(obj)


def default_versions() -> dict:
    """Versions of Python and of the main libraries in use."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("microquake-engine", "numpy", "scipy", "scikit-learn", "numba", "torch",
                "faiss-cpu", "kmedoids", "openTSNE", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _fetch(source, i: int):
    if source is None:
        return None
    try:
        return source(i) if callable(source) else source[i]
    except (KeyError, IndexError, FileNotFoundError, OSError, ValueError):
        return None


def _known_labels(meta: Sequence[Mapping]) -> np.ndarray | None:
    raw = [m.get("label") for m in meta]
    if all(v is None or str(v) == "" for v in raw):
        return None
    return np.array(["unknown" if v is None or str(v) == "" else str(v) for v in raw])


def _assignments_csv(meta, labels, y, memberships, distances) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["event_id", "station", "start", "cluster"]
    if y is not None:
        head.append("label")
    if distances is not None:
        head.append("distance")
    if memberships is not None:
        head += [f"membership_{j}" for j in range(memberships.shape[1])]
    w.writerow(head)
    for i, m in enumerate(meta):
        row = [m.get("event_id", i), m.get("station", ""), m.get("start", ""), int(labels[i])]
        if y is not None:
            row.append(m.get("label") if m.get("label") is not None else "")
        if distances is not None:
            row.append(f"{float(distances[i]):.6g}")
        if memberships is not None:
            row += [f"{float(v):.5f}" for v in memberships[i]]
        w.writerow(row)
    return buf.getvalue().encode()


def _subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, limit, replace=False))


def write_outputs(out_dir, X, labels, events_meta: Sequence[Mapping], *, scan=None,
                  indices: Mapping | None = None, label_scores: Mapping | None = None,
                  memberships=None, distances=None, images=None, waveforms=None,
                  config: Mapping | None = None, versions: Mapping | None = None,
                  centers=None, method: str | None = None, random_state: int = 0,
                  n_center: int = 4, n_random: int = 4, tsne_max: int = 2000,
                  max_galleries: int = 30, report: bool = True) -> dict:
    """Write ``assignments.csv``, ``metrics.json``, ``figures/*.png`` and ``report.html``.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed; files are written atomically.
    X : array_like, shape (n, d)
        Features of the events.
    labels : array_like of int, shape (n,)
        Cluster of each event (-1: noise / novel).
    events_meta : sequence of dict
        One per event with ``event_id``, ``station``, ``start`` and optionally
        ``label`` (known class).
    scan : ScanResult or dict, optional
        Output of :func:`engine.cluster.scan_k` (k-scan figure and table).
    indices : dict, optional
        :func:`engine.cluster.cluster_indices`; computed when omitted.
    label_scores : dict, optional
        :func:`engine.cluster.label_scores`; computed when labels are known.
    memberships : array_like, shape (n, k), optional
        Fuzzy memberships / posteriors, written as ``membership_j`` columns.
    distances : array_like, shape (n,), optional
        Distance of each event to its centre (``distance`` column; galleries).
    images : callable(i) -> uint8 (h, w, 3), or indexable, optional
    waveforms : callable(i) -> 1-D array or (array, fs), or indexable, optional
    config, versions : dict, optional
        Run configuration and software versions (defaults: detected versions).
    centers : array_like, shape (k, d), optional
        Cluster centres for the galleries (default: cluster means).
    method : str, optional
        Clustering method named in the report.
    random_state : int
        Seed of the subsamples and of t-SNE.
    n_center, n_random : int
        Gallery size: events closest to the centre, then random members.
    tsne_max : int
        t-SNE runs on at most this many events (seeded subsample).
    max_galleries : int
        Galleries are drawn for the largest clusters only, up to this many.
    report : bool
        Write figures and ``report.html`` (False: only CSV and JSON).

    Returns
    -------
    dict
        Paths written (``assignments``, ``metrics``, ``report``, ``figures``)
        and ``timings`` in seconds.

    Raises
    ------
    ValueError
        If the lengths of ``X``, ``labels`` and ``events_meta`` disagree.
    """
    from engine.cluster._nearest import cluster_means
    from engine.cluster._validation import check_features
    from engine.cluster.indices import cluster_indices
    from engine.cluster.scores import label_scores as _label_scores

    t_all = time.perf_counter()
    out = Path(out_dir)
    X = check_features(X, dtype=None)
    lab = np.asarray(labels)
    n = X.shape[0]
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers, one per row of X ({n}), got shape "
                         f"{lab.shape} dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if len(events_meta) != n:
        raise ValueError(f"events_meta has {len(events_meta)} entries but X has {n} rows")
    memb = None if memberships is None else np.asarray(memberships, dtype=float)
    if memb is not None and (memb.ndim != 2 or memb.shape[0] != n):
        raise ValueError(f"memberships must have shape ({n}, k), got {memb.shape}")
    dist = None if distances is None else np.asarray(distances, dtype=float)
    if dist is not None and dist.shape != (n,):
        raise ValueError(f"distances must have shape ({n},), got {dist.shape}")
    y = _known_labels(events_meta)
    scan_d = _clean(scan) if scan is not None else None
    if indices is None and (lab >= 0).any():
        indices = cluster_indices(X, lab, random_state=random_state)
    if label_scores is None and y is not None:
        label_scores = _label_scores(y, lab)
    versions = dict(versions) if versions is not None else default_versions()
    timings: dict[str, float] = {}
    written: dict[str, Any] = {}

    written["assignments"] = atomic_write_bytes(
        out / "assignments.csv", _assignments_csv(events_meta, lab, y, memb, dist))
    clusters, sizes = np.unique(lab, return_counts=True)
    metrics = {"n_events": n, "n_features": int(X.shape[1]), "method": method,
               "clusters": {int(c): int(s) for c, s in zip(clusters, sizes)},
               "indices": indices, "k_scan": scan_d, "label_scores": label_scores,
               "config": config, "versions": versions}
    written["metrics"] = atomic_write_bytes(
        out / "metrics.json", json.dumps(_clean(metrics), indent=2).encode())
    if not report:
        timings["total"] = time.perf_counter() - t_all
        written["timings"] = timings
        return written

    rng = np.random.default_rng(random_state)
    figs: dict[str, bytes] = {}
    t0 = time.perf_counter()
    if scan_d:
        figs["kscan"] = F.kscan_png(scan_d["ks"], scan_d["silhouette"], scan_d["inertia"],
                                    scan_d.get("chosen_k"), "sum of squared distances (inertia)")
    timings["kscan"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sub = _subsample(n, _PLOT_MAX, rng)
    Y3 = F.project(X[sub], "pca", 3, random_state)
    ysub = y[sub] if y is not None else None
    figs["pca2d"] = F.scatter_png(Y3[:, :2], lab[sub], ysub, "PCA 2-D")
    figs["pca3d"] = F.scatter_png(Y3, lab[sub], ysub, "PCA 3-D")
    timings["pca"] = time.perf_counter() - t0
    if n >= 10:
        t0 = time.perf_counter()
        tsub = _subsample(n, tsne_max, rng)
        yt = y[tsub] if y is not None else None
        for dims in (2, 3):
            T = F.project(X[tsub], "tsne", dims, random_state)
            figs[f"tsne{dims}d"] = F.scatter_png(T, lab[tsub], yt, f"t-SNE {dims}-D")
        timings["tsne"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    real = clusters[clusters >= 0]
    C = (np.asarray(centers, dtype=float) if centers is not None
         else cluster_means(X, np.where(lab >= 0, lab, -1), int(real.max()) + 1 if real.size else 0))
    order = sorted(real.tolist(), key=lambda c: -int(sizes[clusters == c][0]))[:max_galleries]
    gallery_info = []
    for c in progress(order, desc="report galleries", unit="cluster"):
        members = np.flatnonzero(lab == c)
        if dist is not None:
            d = dist[members]
        else:
            d = np.linalg.norm(X[members] - C[c], axis=1)
        near = members[np.argsort(d, kind="stable")[:n_center]]
        rest = np.setdiff1d(members, near)
        rnd = np.sort(rng.choice(rest, min(n_random, rest.size), replace=False)) if rest.size else rest
        pick = list(near) + list(rnd)
        caps = []
        for j, i in enumerate(pick):
            m = events_meta[i]
            tag = "centre" if j < len(near) else "random"
            lbl = f" {m.get('label')}" if m.get("label") not in (None, "") else ""
            eid = textwrap.fill(str(m.get("event_id", i)), 20)
            caps.append(f"{eid}{lbl}\n({tag})")
        imgs = [_fetch(images, int(i)) for i in pick]
        wavs = [_fetch(waveforms, int(i)) for i in pick] if waveforms is not None else None
        if any(v is not None for v in imgs) or (wavs and any(v is not None for v in wavs)):
            figs[f"gallery_{c}"] = F.gallery_png(imgs, wavs, caps,
                                                 f"cluster {c}: {members.size} events")
        gallery_info.append((c, members.size))
    timings["galleries"] = time.perf_counter() - t0
    if label_scores is not None:
        figs["contingency"] = F.contingency_png(label_scores["contingency"],
                                                label_scores["classes"], label_scores["clusters"])

    fig_paths = {}
    for name, png in figs.items():
        fig_paths[name] = atomic_write_bytes(out / "figures" / f"{name}.png", png)
    written["figures"] = fig_paths

    t0 = time.perf_counter()
    html_text = _report_html(n, lab, clusters, sizes, y, method, scan_d, indices,
                             label_scores, config, versions, figs, gallery_info)
    written["report"] = atomic_write_bytes(out / "report.html", html_text.encode("utf-8"))
    timings["html"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    written["timings"] = timings
    return written


def _report_html(n, lab, clusters, sizes, y, method, scan_d, indices, ls, config, versions,
                 figs, gallery_info) -> str:
    k = int((clusters >= 0).sum())
    cards = [("events", n), ("clusters", k), ("method", method or "?")]
    if scan_d:
        cards.append(("chosen k", scan_d.get("chosen_k")))
    if indices:
        cards.append(("silhouette", f"{indices['SIL']:.3f}" if indices.get("SIL") is not None
                      and indices["SIL"] == indices["SIL"] else "n/a"))
    if ls:
        cards.append(("ARI vs labels", f"{ls['ari']:.3f}"))
    card_html = '<div class="cards">' + "".join(
        f'<div class="card"><b>{esc(v)}</b><span>{esc(t)}</span></div>' for t, v in cards) + "</div>"
    rows = []
    for c, s in zip(clusters, sizes):
        dom = ""
        if y is not None:
            cls, cnt = np.unique(y[lab == c], return_counts=True)
            j = int(np.argmax(cnt))
            dom = f"{cls[j]} ({cnt[j] / s:.0%})"
        rows.append([("noise / novel" if c < 0 else int(c)), int(s), f"{s / n:.1%}"]
                    + ([dom] if y is not None else []))
    size_tab = table(["cluster", "events", "share"] + (["dominant label"] if y is not None else []),
                     rows)
    guide = ('<p class="note">Each event (one trace, its scalogram image and its CNN features) '
             "was put into one cluster. Below: how the number of clusters was chosen, example "
             "events of every cluster (closest to the cluster centre first), maps of the feature "
             "space, the cluster indices of the paper and, where events carry known labels, how "
             "well clusters match them. Per-event results are in assignments.csv, numbers in "
             "metrics.json.</p>")
    sections = [("Summary", card_html + guide + "<h3>Clusters</h3>" + size_tab)]

    if scan_d:
        srows = [[kk, s, i, w] for kk, s, i, w in zip(scan_d["ks"], scan_d["silhouette"],
                                                      scan_d["inertia"], scan_d["within"])]
        sil = [float("nan") if v is None else v for v in scan_d["silhouette"]]
        srows = [[r[0], sil[j], r[2], r[3]] for j, r in enumerate(srows)]
        note = (f'<p class="note">k = {scan_d["chosen_k"]} was used; the best mean silhouette '
                f'is at k = {scan_d["best_k"]}'
                + (" (silhouette on a seeded sample)" if scan_d.get("silhouette_sampled") else "")
                + ". The elbow curve is the summed squared distance of the events to their "
                  "cluster mean.</p>")
        sections.append(("Choice of k", note + img_tag(figs["kscan"], "k scan") + table(
            ["k", "mean silhouette", "inertia", "summed distances"], srows)))

    gal = ""
    for c, size in gallery_info:
        if f"gallery_{c}" in figs:
            gal += f"<h3>Cluster {c} ({size} events)</h3>" + img_tag(figs[f"gallery_{c}"],
                                                                      f"cluster {c}")
    if gal:
        sections.append(("Clusters: example events",
                         '<p class="note">Per cluster: the events closest to the cluster centre, '
                         "then random members (images, and waveforms where available).</p>" + gal))

    proj = ""
    for name, title in (("pca2d", "PCA 2-D"), ("pca3d", "PCA 3-D"), ("tsne2d", "t-SNE 2-D"),
                        ("tsne3d", "t-SNE 3-D")):
        if name in figs:
            proj += f"<h3>{title}</h3>" + img_tag(figs[name], title)
    sections.append(("Feature space", proj))

    if indices:
        sections.append(("Cluster indices", table(
            ["index", "value", "meaning"],
            [["SIL", indices["SIL"], "mean silhouette (higher is better)"],
             ["SSW", indices["SSW"], "mean distance of an event to its cluster mean"],
             ["SSB", indices["SSB"], "mean distance of a cluster mean to the global mean"],
             ["WB", indices["WB"], "SSW * K / SSB (lower is better)"],
             ["K", indices["K"], "clusters"], ["N", indices["N"], "events (noise excluded)"]],
            left=1)))

    if ls:
        per = [[c, v["n"], v["dominant_cluster"], f"{v['share']:.1%}"]
               for c, v in ls["per_class"].items()]
        body = (table(["adjusted Rand", "NMI", "purity"], [[ls["ari"], ls["nmi"], ls["purity"]]],
                      left=0)
                + "<h3>Share of each label in its dominant cluster</h3>"
                + table(["label", "events", "dominant cluster", "share"], per)
                + img_tag(figs["contingency"], "contingency table"))
        sections.append(("Agreement with known labels", body))

    sections.append(("Run configuration", pre_json(_clean(config or {}))))
    sections.append(("Software versions", table(["package", "version"],
                                                sorted((str(a), str(b)) for a, b in versions.items()))))
    return page("microquake-engine: families of events",
                f"{n} events, {k} clusters"
                + (f", method {method}" if method else "")
                + time.strftime(", report written %Y-%m-%d %H:%M UTC", time.gmtime()),
                sections)
