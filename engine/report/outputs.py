"""Write the outputs of a clustering run: CSV, JSON, PNG figures and report.html."""
from __future__ import annotations

import base64
import csv
import io
import json
import logging
import math
import platform
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from engine._util import atomic_write, progress

from . import figures as F
from engine._util import jsonable as _clean

from .html import esc, explorer, img_tag, page, pre_json, swatch, table

__all__ = ["write_outputs", "default_versions", "remove_stale_report",
           "REPORT_FILES"]

logger = logging.getLogger("engine.report")

_PLOT_MAX = 20_000
#: what a report consists of (removed by :func:`remove_stale_report`)
REPORT_FILES = ("report.html", "figures")


def remove_stale_report(out_dir) -> list[Path]:
    """Remove a report left by an earlier run: ``report.html`` and ``figures/*.png``.

    Call it when a run writes results without a report (``--no-report``), so
    that an old page and old figures do not sit beside new results.
    :func:`write_outputs` calls it itself with ``report=False``.

    Parameters
    ----------
    out_dir : str or Path
        The run's output folder (need not exist).

    Returns
    -------
    list of Path
        The files removed (the ``figures`` folder too when it ends up empty).
    """
    out = Path(out_dir)
    removed: list[Path] = []
    html_path = out / "report.html"
    if html_path.is_file():
        html_path.unlink()
        removed.append(html_path)
    figs = out / "figures"
    if figs.is_dir():
        for p in sorted(figs.glob("*.png")):
            p.unlink()
            removed.append(p)
        try:
            figs.rmdir()
            removed.append(figs)
        except OSError:  # other files the user put there: leave them
            pass
    if removed:
        logger.info("removed the report of an earlier run from %s (%d file(s))", out,
                    len(removed))
    return removed


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
    except (KeyError, IndexError, FileNotFoundError, OSError, ValueError) as exc:
        logger.debug("no data for event %d in the report: %s", i, exc)
        return None


def _known_labels(meta: Sequence[Mapping]) -> np.ndarray | None:
    raw = [m.get("label") for m in meta]
    if all(v is None or str(v) == "" for v in raw):
        return None
    return np.array(["unknown" if v is None or str(v) == "" else str(v) for v in raw])


# ----------------------------------------------------------------- event table
def _num(v: Any) -> float:
    if v is None or v == "":
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _epoch(s: Any) -> float:
    """Seconds since 1970 of an ISO UTC time (NaN when empty or not a time)."""
    if not s:
        return float("nan")
    txt = str(s).strip().replace(" ", "T")
    for suffix in ("Z", "+00:00"):
        if txt.endswith(suffix):
            txt = txt[: -len(suffix)]
    try:
        return np.datetime64(txt, "us").astype(np.int64) / 1e6
    except (ValueError, TypeError):
        return float("nan")


def _iso(t: float) -> str:
    if not math.isfinite(t):
        return ""
    return str(np.datetime64(int(round(t * 1e6)), "us")) + "Z"


def _short_time(t: float) -> str:
    return _iso(t)[:19].replace("T", " ") if math.isfinite(t) else "?"


def _event_table(meta: Sequence[Mapping]) -> dict[str, np.ndarray]:
    start = np.array([_epoch(m.get("start")) for m in meta], dtype=float)
    end = np.array([_epoch(m.get("end")) for m in meta], dtype=float)
    dur = np.array([_num(m.get("duration")) for m in meta], dtype=float)
    have = np.isfinite(start) & np.isfinite(end)
    dur = np.where(np.isfinite(dur), dur, np.where(have, end - start, np.nan))
    end = np.where(np.isfinite(end), end, start + dur)
    return {"start": start, "end": end, "duration": dur,
            "amplitude": np.array([_num(m.get("amplitude")) for m in meta], dtype=float),
            "snr": np.array([_num(m.get("snr")) for m in meta], dtype=float),
            "dominant_freq": np.array([_num(m.get("dominant_freq")) for m in meta], dtype=float)}


def _fmt_num(v: float, digits: int = 4) -> str:
    return "" if not math.isfinite(v) else f"{v:.{digits}g}"


def _assignments_csv(meta, labels, y, memberships, distances, table_) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["event_id", "station", "channel", "start", "end", "duration_s", "peak_amplitude",
            "snr", "cluster"]
    if y is not None:
        head.append("label")
    if distances is not None:
        head.append("distance")
    if memberships is not None:
        head += [f"membership_{j}" for j in range(memberships.shape[1])]
    w.writerow(head)
    for i, m in enumerate(meta):
        end = m.get("end") or _iso(table_["end"][i])
        row = [m.get("event_id", i), m.get("station") or "", m.get("channel") or "",
               m.get("start") or "", end, _fmt_num(table_["duration"][i], 6),
               _fmt_num(table_["amplitude"][i], 6), _fmt_num(table_["snr"][i], 4),
               int(labels[i])]
        if y is not None:
            row.append(m.get("label") if m.get("label") is not None else "")
        if distances is not None:
            row.append(_fmt_num(float(distances[i]), 6))
        if memberships is not None:
            row += [f"{float(v):.5f}" for v in memberships[i]]
        w.writerow(row)
    return buf.getvalue().encode()


def _own_centre_distance(X: np.ndarray, lab: np.ndarray, C: np.ndarray) -> np.ndarray:
    d = np.full(X.shape[0], np.nan)
    for c in np.unique(lab[lab >= 0]):
        if c < C.shape[0] and np.all(np.isfinite(C[c])):
            m = lab == c
            d[m] = np.linalg.norm(X[m] - C[c], axis=1)
    return d


def _representatives(meta, lab: np.ndarray, d_own: np.ndarray, n_rep: int) -> tuple[bytes, dict]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["cluster", "rank", "event_id", "distance"])
    reps: dict[int, list[int]] = {}
    for c in sorted(int(v) for v in np.unique(lab) if v >= 0):
        members = np.flatnonzero((lab == c) & np.isfinite(d_own))
        best = members[np.argsort(d_own[members], kind="stable")[:n_rep]]
        reps[c] = [int(i) for i in best]
        for r, i in enumerate(best, 1):
            w.writerow([c, r, meta[i].get("event_id", i), f"{d_own[i]:.6g}"])
    return buf.getvalue().encode(), reps


def _subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, limit, replace=False))


def _dominant_frequency(w, band: tuple[float, float] | None) -> float:
    """Frequency of the largest spectral amplitude of a waveform (Hann window)."""
    if w is None or not isinstance(w, tuple):
        return float("nan")
    data, fs = w
    x = np.asarray(data, dtype=float)
    if x.size < 16 or not fs:
        return float("nan")
    x = (x - x.mean()) * np.hanning(x.size)
    spec = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(x.size, 1.0 / fs)
    lo, hi = band if band else (0.5, 0.45 * fs)
    m = (f >= lo) & (f <= hi)
    if not m.any() or not np.any(spec[m] > 0):
        return float("nan")
    return float(f[m][np.argmax(spec[m])])


def _thumb(im) -> str | None:
    if im is None:
        return None
    from PIL import Image

    arr = np.asarray(im)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        return None
    pic = Image.fromarray(arr).convert("RGB").resize((128, 128), Image.BILINEAR)
    buf = io.BytesIO()
    pic.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _caption(m: Mapping, i: int, t: float, tag: str) -> str:
    sta = m.get("station") or ""
    cha = m.get("channel") or ""
    where = ".".join(p for p in (sta, cha) if p) or str(m.get("event_id", i))[:28]
    lbl = m.get("label")
    line2 = tag + (f" | catalogue: {lbl}" if lbl not in (None, "") else "")
    when = _short_time(t) if math.isfinite(t) else str(m.get("event_id", i))[:28]
    return f"{when} {where}"[:44] + "\n" + line2


def write_outputs(out_dir, X, labels, events_meta: Sequence[Mapping], *, scan=None,
                  indices: Mapping | None = None, label_scores: Mapping | None = None,
                  memberships=None, distances=None,
                  images: Callable | Sequence | None = None,
                  waveforms: Callable | Sequence | None = None,
                  config: Mapping | None = None, versions: Mapping | None = None,
                  centers=None, method: str | None = None, random_state: int = 0,
                  n_center: int = 4, n_random: int = 4, tsne_max: int = 2000,
                  max_galleries: int = 30, report: bool = True,
                  bandpass: tuple[float, float] | None = None,
                  assign_to: str | None = None, distance_note: str | None = None,
                  n_representatives: int = 5, explore_max: int = 200,
                  graph_families: Sequence[Mapping] | None = None) -> dict:
    """Write the run's outputs.

    ``assignments.csv`` (one row per event), ``representatives.csv`` (per
    cluster, the events closest to its centre), ``metrics.json`` and, with
    ``report``, ``figures/*.png`` and a self-contained ``report.html``.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed; files are written atomically.
    X : array_like, shape (n, d)
        Features of the events.
    labels : array_like of int, shape (n,)
        Cluster of each event (-1: noise, or novel in an ``assign_to`` run).
    events_meta : sequence of dict
        One per event: ``event_id``, ``station``, ``channel``, ``start`` (ISO
        UTC), ``end`` (ISO UTC or ""), ``duration`` (s), ``amplitude`` (peak
        absolute amplitude of the event window, counts), ``snr``, ``label``
        (catalogue class or None) and optionally ``dominant_freq`` (Hz). Any
        key but ``event_id`` may be missing or None (image-only inputs).
    scan : ScanResult or dict, optional
        Output of :func:`engine.cluster.scan_k` (k-scan figure and table).
    indices : dict, optional
        :func:`engine.cluster.cluster_indices`; computed when omitted.
    label_scores : dict, optional
        :func:`engine.cluster.label_scores`; computed when labels are known.
    memberships : array_like, shape (n, k), optional
        Fuzzy memberships / posteriors, written as ``membership_j`` columns.
    distances : array_like, shape (n,), optional
        Written as the ``distance`` column (meaning: ``distance_note``).
    images : callable(i) -> uint8 (h, w, 3), or indexable, optional
        Scalogram image of event ``i`` (galleries, explorer thumbnails).
    waveforms : callable(i) -> 1-D array or (array, fs), or indexable, optional
        Samples of event ``i`` (galleries, dominant frequency).
    config, versions : dict, optional
        Run configuration and software versions (defaults: detected versions).
    centers : array_like, shape (k, d), optional
        Cluster centres (default: cluster means).
    method : str, optional
        Clustering method named in the report.
    random_state : int
        Seed of the subsamples and of t-SNE.
    n_center, n_random : int
        Gallery size: events closest to the centre, then random members.
    tsne_max : int
        t-SNE runs on at most this many events (seeded subsample).
    max_galleries : int
        Galleries are drawn for the largest clusters only, up to this many
        (shown in cluster order).
    report : bool
        Write figures and ``report.html``; False writes only CSV and JSON and
        removes the report of an earlier run (:func:`remove_stale_report`).
    graph_families : sequence of dict, optional
        The largest mutual-nearest-neighbour families
        (:func:`engine.cluster.graph.largest_families` records), shown in a
        section of their own: repeaters and swarms that k-means may spread over
        several clusters.
    bandpass : (float, float), optional
        Corner frequencies (Hz) of the detection filter: gallery waveforms are
        filtered the same way, dominant frequencies are sought in this band.
    assign_to : str, optional
        The saved clustering the events were assigned to (``--assign-to``):
        -1 events are *novel* (none of the known families) and get their own
        gallery; no k scan is mentioned.
    distance_note : str, optional
        What the ``distance`` column is (default: Euclidean distance in
        feature space to the nearest cluster centre).
    n_representatives : int
        Rows per cluster in ``representatives.csv``.
    explore_max : int
        Events with a thumbnail in the interactive feature-space view.

    Returns
    -------
    dict
        Paths written (``assignments``, ``representatives``, ``metrics``,
        ``report``, ``figures``), ``removed`` (stale report files, with
        ``report=False``) and ``timings`` in seconds.

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
    if bandpass is not None:
        bandpass = (float(bandpass[0]), float(bandpass[1]))
        if not 0 <= bandpass[0] < bandpass[1]:
            raise ValueError(f"bandpass must be (fmin, fmax) with 0 <= fmin < fmax, "
                             f"got {bandpass}")
    novel_name = "novel" if assign_to else "noise"
    if distance_note is None:
        distance_note = ("Euclidean distance in feature space from the event to the nearest "
                         "centre of the saved clustering" + (" (" + str(assign_to) + ")"
                                                             if assign_to else "")
                         + "; an event farther than its cluster's threshold is novel (-1)"
                         if assign_to else
                         "Euclidean distance in feature space from the event to the nearest "
                         "cluster centre")
    y = _known_labels(events_meta)
    tab = _event_table(events_meta)
    scan_d = _clean(scan) if scan is not None and not assign_to else None
    if indices is None and len(set(lab[lab >= 0].tolist())) > 1:
        indices = cluster_indices(X, lab, random_state=random_state)
    if label_scores is None and y is not None:
        label_scores = _label_scores(y, lab)
    versions = dict(versions) if versions is not None else default_versions()
    timings: dict[str, float] = {}
    written: dict[str, Any] = {}

    clusters, sizes = np.unique(lab, return_counts=True)
    real = clusters[clusters >= 0]
    C = (np.asarray(centers, dtype=float) if centers is not None
         else cluster_means(X, lab, int(real.max()) + 1 if real.size else 0))
    d_own = _own_centre_distance(X, lab, C) if C.size else np.full(n, np.nan)

    written["assignments"] = atomic_write(
        out / "assignments.csv", _assignments_csv(events_meta, lab, y, memb, dist, tab))
    rep_csv, reps = _representatives(events_meta, lab, d_own, int(n_representatives))
    written["representatives"] = atomic_write(out / "representatives.csv", rep_csv)

    rng = np.random.default_rng(random_state)
    # gallery picks: closest to the centre first, then random members
    gallery_clusters = sorted(sorted(clusters.tolist(),
                                     key=lambda c: -int(sizes[clusters == c][0]))[:max_galleries],
                              key=lambda c: (c < 0, c))
    picks: dict[int, tuple[list[int], int]] = {}
    for c in gallery_clusters:
        members = np.flatnonzero(lab == c)
        if c >= 0:
            near = members[np.argsort(np.nan_to_num(d_own[members], nan=np.inf),
                                      kind="stable")[:n_center]]
        else:   # novel / noise: the farthest from every family first
            d = dist[members] if dist is not None else np.zeros(members.size)
            near = members[np.argsort(-d, kind="stable")[:n_center]]
        rest = np.setdiff1d(members, near)
        rnd = (np.sort(rng.choice(rest, min(n_random, rest.size), replace=False))
               if rest.size else rest)
        picks[int(c)] = ([int(i) for i in near] + [int(i) for i in rnd], len(near))

    families = _family_stats(events_meta, lab, clusters, sizes, tab, y)
    stations = sorted({str(m.get("station") or "") for m in events_meta} - {""})
    channels = sorted({str(m.get("channel") or "") for m in events_meta} - {""})
    t_ok = tab["start"][np.isfinite(tab["start"])]
    data_info = {"stations": stations, "channels": channels,
                 "first_event": _iso(float(t_ok.min())) if t_ok.size else None,
                 "last_event": _iso(float(t_ok.max())) if t_ok.size else None,
                 "events_with_time": int(t_ok.size)}
    metrics = {"n_events": n, "n_features": int(X.shape[1]), "method": method,
               "assign_to": assign_to,
               "clusters": {int(c): int(s) for c, s in zip(clusters, sizes)},
               "n_novel" if assign_to else "n_noise": int((lab < 0).sum()),
               "data": data_info, "families": families, "distance": distance_note,
               "bandpass": bandpass, "indices": indices, "k_scan": scan_d,
               "label_scores": label_scores, "config": config, "versions": versions}

    if not report:
        written["metrics"] = atomic_write(
            out / "metrics.json", json.dumps(_clean(metrics), indent=2).encode())
        written["removed"] = remove_stale_report(out)
        timings["total"] = time.perf_counter() - t_all
        written["timings"] = timings
        return written

    colours = F.cluster_colour_map(list(clusters) + list(range(C.shape[0])))
    hexes = {c: F.hex_colour(v) for c, v in colours.items()}
    names = {c: (f"cluster {c}" if c >= 0 else novel_name) for c in colours}
    figs: dict[str, bytes] = {}

    t0 = time.perf_counter()
    if np.isfinite(tab["start"]).any():
        figs["occurrence"] = F.occurrence_png(tab["start"], lab, colours, novel_name)
    timings["occurrence"] = time.perf_counter() - t0

    if scan_d:
        figs["kscan"] = F.kscan_png(scan_d["ks"], scan_d["silhouette"], scan_d["inertia"],
                                    scan_d.get("chosen_k"), "sum of squared distances (inertia)")

    t0 = time.perf_counter()
    sub = _subsample(n, _PLOT_MAX, rng)
    Y3, var = F.pca_project(X[sub], 3, random_state)
    pca_axes = [f"PC{j + 1} ({100 * var[j]:.1f}% of variance)" for j in range(3)]
    ysub = y[sub] if y is not None else None
    figs["pca2d"] = F.scatter_png(Y3[:, :2], lab[sub], ysub, "PCA 2-D", pca_axes, colours,
                                  novel_name)
    figs["pca3d"] = F.scatter_png(Y3, lab[sub], ysub, "PCA 3-D", pca_axes, colours, novel_name)
    timings["pca"] = time.perf_counter() - t0
    tsub_pos = None
    T2 = None
    if n >= 10:
        t0 = time.perf_counter()
        tsub_pos = _subsample(sub.size, tsne_max, rng)  # positions in sub
        tsub = sub[tsub_pos]
        yt = y[tsub] if y is not None else None
        for dims in (2, 3):
            T = F.project(X[tsub], "tsne", dims, random_state)
            if dims == 2:
                T2 = T
            figs[f"tsne{dims}d"] = F.scatter_png(
                T, lab[tsub], yt, f"t-SNE {dims}-D",
                [f"t-SNE {j + 1} (no unit)" for j in range(dims)], colours, novel_name)
        timings["tsne"] = time.perf_counter() - t0

    # events shown in the explorer: a seeded sample of the plotted ones, gallery picks first
    t0 = time.perf_counter()
    pool = sub[tsub_pos] if tsub_pos is not None else sub
    pos_in_pool = {int(i): j for j, i in enumerate(pool)}
    chosen = [i for c in gallery_clusters for i in picks[int(c)][0] if i in pos_in_pool]
    rest = np.setdiff1d(pool, chosen)
    extra = max(0, int(explore_max) - len(chosen))
    if rest.size and extra:
        chosen += [int(i) for i in rng.choice(rest, min(extra, rest.size), replace=False)]
    chosen = sorted(set(chosen))              # store order: the source reads chunks in turn
    img_cache: dict[int, Any] = {}
    wav_cache: dict[int, Any] = {}
    with_images = images is not None
    for i in progress(chosen, desc="report: event images", unit="event"):
        img_cache[i] = _fetch(images, i) if with_images else None
        wav_cache[i] = _fetch(waveforms, i) if waveforms is not None else None
    for c in gallery_clusters:
        for i in picks[int(c)][0]:
            if i not in img_cache:
                img_cache[i] = _fetch(images, i) if with_images else None
                wav_cache[i] = _fetch(waveforms, i) if waveforms is not None else None
    timings["event_data"] = time.perf_counter() - t0

    # dominant frequency: given per event, else measured on the fetched waveforms
    domf = tab["dominant_freq"].copy()
    for i, w in wav_cache.items():
        if not math.isfinite(domf[i]):
            domf[i] = _dominant_frequency(w, bandpass)
    for c, fam in families.items():
        v = domf[lab == int(c)]
        v = v[np.isfinite(v)]
        fam["dominant_freq_hz_median"] = float(np.median(v)) if v.size else None
        fam["dominant_freq_n"] = int(v.size)

    t0 = time.perf_counter()
    qty = {"duration (s)": tab["duration"], "dominant frequency (Hz)": domf,
           "peak amplitude (counts)": tab["amplitude"], "SNR": tab["snr"]}
    qty = {k: v for k, v in qty.items() if np.isfinite(v).any()}
    fam_ids = sorted(clusters.tolist(), key=lambda c: (c < 0, c))
    if qty:
        figs["families"] = F.families_png({k: [v[lab == c] for c in fam_ids]
                                           for k, v in qty.items()}, fam_ids, colours,
                                          log=("peak amplitude (counts)", "SNR"),
                                          novel_name=novel_name)
    for c in progress(gallery_clusters, desc="report galleries", unit="cluster"):
        pick, n_near = picks[int(c)]
        caps = []
        for j, i in enumerate(pick):
            if c >= 0:
                tag = (f"centre #{j + 1}" if j < n_near else "random member")
            else:
                tag = (f"farthest #{j + 1}" if (j < n_near and dist is not None)
                       else f"{novel_name} event")
            caps.append(_caption(events_meta[i], i, tab["start"][i], tag))
        imgs = [img_cache.get(i) for i in pick]
        wavs = [wav_cache.get(i) for i in pick] if waveforms is not None else None
        if any(v is not None for v in imgs) or (wavs and any(v is not None for v in wavs)):
            size = int(sizes[clusters == c][0])
            figs[f"gallery_{c}" if c >= 0 else f"gallery_{novel_name}"] = F.gallery_png(
                imgs, wavs, caps, f"{names[int(c)]}: {size} events", colours[int(c)],
                bandpass=bandpass, freq_range=_image_freq_range())
    timings["galleries"] = time.perf_counter() - t0
    if label_scores is not None:
        figs["contingency"] = F.contingency_png(label_scores["contingency"],
                                                label_scores["classes"], label_scores["clusters"])

    # explorer data
    thumbs: list[str] = []
    points = []
    for i in chosen:
        th = _thumb(img_cache.get(i))
        if th is not None:
            thumbs.append(th)
        points.append({"id": str(events_meta[i].get("event_id", i)), "t": _iso(tab["start"][i]),
                       "c": int(lab[i]), "l": str(events_meta[i].get("label") or ""),
                       "th": len(thumbs) - 1 if th is not None else -1})
    pos_sub = {int(i): j for j, i in enumerate(sub)}
    projections = [("PCA", Y3[[pos_sub[i] for i in chosen], :2], pca_axes[:2])]
    if T2 is not None:
        projections.append(("t-SNE", T2[[pos_in_pool[i] for i in chosen]],
                            ["t-SNE 1 (no unit)", "t-SNE 2 (no unit)"]))
    explore_html = explorer(projections, points, hexes, names, thumbs) if chosen else ""

    fig_dir = out / "figures"
    fig_paths = {}
    for name, png in figs.items():
        fig_paths[name] = atomic_write(fig_dir / f"{name}.png", png)
    for old in fig_dir.glob("*.png"):           # figures of an earlier run (other clusters)
        if old.stem not in figs:
            old.unlink()
    written["figures"] = fig_paths

    metrics["explorer_events"] = len(chosen)
    written["metrics"] = atomic_write(
        out / "metrics.json", json.dumps(_clean(metrics), indent=2).encode())

    t0 = time.perf_counter()
    html_text = _report_html(n, lab, clusters, sizes, y, method, scan_d, indices,
                             label_scores, config, versions, figs, gallery_clusters, families,
                             data_info, hexes, names, novel_name, assign_to, distance_note,
                             explore_html, len(thumbs), bandpass, memb is not None,
                             dist is not None, n_representatives, graph_families)
    written["report"] = atomic_write(out / "report.html", html_text.encode("utf-8"))
    timings["html"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    written["timings"] = timings
    return written


def _image_freq_range() -> tuple[float, float]:
    from engine.images import DEFAULT_FREQS

    return float(DEFAULT_FREQS[0]), float(DEFAULT_FREQS[-1])


def _median(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def _family_stats(meta, lab, clusters, sizes, tab, y) -> dict:
    out: dict[int, dict] = {}
    for c, s in zip(clusters, sizes):
        m = lab == c
        t = tab["start"][m]
        t = t[np.isfinite(t)]
        st, cnt = np.unique([str(meta[i].get("station") or "") for i in np.flatnonzero(m)],
                            return_counts=True)
        d: dict[str, Any] = {
            "events": int(s),
            "first": _iso(float(t.min())) if t.size else None,
            "last": _iso(float(t.max())) if t.size else None,
            "stations": {str(a): int(b) for a, b in zip(st, cnt) if a},
            "duration_s_median": _median(tab["duration"][m]),
            "duration_s_p10_p90": ([float(v) for v in np.nanpercentile(tab["duration"][m],
                                                                       [10, 90])]
                                   if np.isfinite(tab["duration"][m]).any() else None),
            "amplitude_median": _median(tab["amplitude"][m]),
            "snr_median": _median(tab["snr"][m]),
        }
        if y is not None:
            cls, k = np.unique(y[m], return_counts=True)
            j = int(np.argmax(k))
            d["dominant_label"] = str(cls[j])
            d["dominant_label_share"] = float(k[j] / s)
        out[int(c)] = d
    return out


def _v(x, digits=3, unit="") -> str:
    return "n/a" if x is None else f"{x:.{digits}g}{unit}"


def _method_sentence(method: str | None) -> str:
    """One sentence naming a clustering method of the method table and what it does."""
    from engine.cluster.factory import METHODS

    info = METHODS.get(method or "")
    return f" Clustering: <code>{esc(method)}</code>, {esc(info.description)}." if info else ""


def _report_html(n, lab, clusters, sizes, y, method, scan_d, indices, ls, config, versions,
                 figs, gallery_clusters, families, data_info, hexes, names, novel_name,
                 assign_to, distance_note, explore_html, n_thumbs, bandpass, has_memb,
                 has_dist, n_rep, graph_families=None) -> str:
    k = int((clusters >= 0).sum())
    n_neg = int((lab < 0).sum())
    cards = [("events", n), ("clusters" if not assign_to else "known families", k)]
    if assign_to or n_neg:
        cards.append((f"{novel_name} events", n_neg))
    cards.append(("method", method or "?"))
    if scan_d:
        cards.append(("chosen k", scan_d.get("chosen_k")))
    if indices:
        cards.append(("silhouette", f"{indices['SIL']:.3f}" if indices.get("SIL") is not None
                      and indices["SIL"] == indices["SIL"] else "n/a"))
    if ls:
        cards.append(("ARI vs catalogue", f"{ls['ari']:.3f}"))
    card_html = '<div class="cards">' + "".join(
        f'<div class="card"><b>{esc(v)}</b><span>{esc(t)}</span></div>' for t, v in cards) + "</div>"

    if assign_to:
        how = (f"Each event was assigned to the nearest family of the saved clustering "
               f"<code>{esc(assign_to)}</code>; events farther from every family than its "
               f"threshold are <b>novel</b> ({n_neg} here) and have their own gallery.")
    elif scan_d:
        how = ("The number of clusters was chosen by scanning k (section <i>Choice of k</i>); "
               "each event was put into one cluster." + _method_sentence(method))
    else:   # the method named once: with its description when the table knows it
        how = ("Each event was put into one cluster."
               + (_method_sentence(method) or f" Method: {esc(method or '?')}."))
    guide = ('<p class="note">Each event is one trace, its scalogram image and its CNN '
             f"features. {how} Below: when each family occurs, what its events look like "
             "(closest to the cluster centre first), an interactive map of the feature space, "
             "the cluster indices and, where events carry catalogue labels, how well clusters "
             "match them. All times are UTC. Per-event results are in assignments.csv, the "
             "most typical events of each cluster in representatives.csv, numbers in "
             "metrics.json.</p>")
    st = data_info["stations"]
    data_rows = [["stations", f"{len(st)}: " + ", ".join(st[:40]) + (" ..." if len(st) > 40 else "")
                  if st else "unknown (image input)"],
                 ["channels", ", ".join(data_info["channels"]) or "unknown"],
                 ["first event (UTC)", data_info["first_event"] or "unknown"],
                 ["last event (UTC)", data_info["last_event"] or "unknown"],
                 ["events with a known time", f"{data_info['events_with_time']} of {n}"]]
    if bandpass:
        data_rows.append(["detection band", f"{bandpass[0]:g}-{bandpass[1]:g} Hz"])
    sections = [("Summary", card_html + guide + "<h3>Data analysed</h3>"
                 + table(["what", "value"], data_rows))]

    if "occurrence" in figs:
        sections.append(("When each family occurs",
                         '<p class="note">Events per time bin for each cluster (one row per '
                         "family, same colours as everywhere in this report; times UTC).</p>"
                         + img_tag(figs["occurrence"], "occurrence of each family over time")))

    rows = []
    for c in sorted(families, key=lambda c: (c < 0, c)):
        f = families[c]
        name = swatch(hexes[c]) + esc(names[c])
        p = f.get("duration_s_p10_p90")
        rows.append([name, f["events"], f"{f['events'] / n:.1%}",
                     (f["first"] or "")[:19].replace("T", " "),
                     (f["last"] or "")[:19].replace("T", " "),
                     ", ".join(f"{a} ({b})" for a, b in list(f["stations"].items())[:6]),
                     _v(f["duration_s_median"]) + (f" ({p[0]:.3g}-{p[1]:.3g})" if p else ""),
                     _v(f.get("dominant_freq_hz_median")) + (
                         f" (n={f['dominant_freq_n']})" if f.get("dominant_freq_n") else ""),
                     _v(f["amplitude_median"]), _v(f["snr_median"])]
                    + ([f"{f['dominant_label']} ({f['dominant_label_share']:.0%})"]
                       if y is not None else []))
    head = ["cluster", "events", "share", "first (UTC)", "last (UTC)", "stations (events)",
            "duration s: median (p10-p90)", "dominant freq. Hz: median", "peak amplitude: median",
            "SNR: median"] + (["main catalogue label"] if y is not None else [])
    fam_note = ('<p class="note">Durations, peak amplitudes (counts) and SNR are those of the '
                "detected event windows; the dominant frequency is the peak of the amplitude "
                "spectrum" + (f" within {bandpass[0]:g}-{bandpass[1]:g} Hz" if bandpass else "")
                + ", measured on the events fetched for this report (n per family). "
                "n/a: not available for this input.</p>")
    fam_html = _raw_table(head, rows) + fam_note
    if "families" in figs:
        fam_html += img_tag(figs["families"], "per-family durations, frequencies, amplitudes")
    sections.append(("Families", fam_html))
    if graph_families:
        rows = [[f["family"], f["size"], f.get("first") or "", f.get("last") or "",
                 "" if f.get("span_s") is None else f"{f['span_s'] / 3600:.2f} h",
                 "" if f.get("mean_distance") is None else f"{f['mean_distance']:.3g}",
                 ", ".join(map(str, f["members"][:6])) + (" ..." if f["size"] > 6 else "")]
                for f in graph_families]
        sections.append(("Repeating families (mutual nearest neighbours)", (
            '<p class="note">Events linked to each other as mutual nearest neighbours in '
            "feature space, taken as families of near-identical events (repeaters, swarms), "
            "whatever cluster they fell in above. Largest first; mean distance is between "
            "members, in the clustering space.</p>")
            + table(["family", "events", "first (UTC)", "last (UTC)", "span",
                     "mean distance", "members"], rows)))

    if scan_d:
        sil = [float("nan") if v is None else v for v in scan_d["silhouette"]]
        curves = {name: vals for name, vals in (scan_d.get("curves") or {}).items()
                  if name in ("stability", "gap", "bic") and vals}
        srows = [[kk, sil[j], i, w] + [curves[c][j] for c in curves]
                 for j, (kk, i, w) in enumerate(
                     zip(scan_d["ks"], scan_d["inertia"], scan_d["within"]))]
        why = scan_d.get("reason") or (f'the best mean silhouette is at k = '
                                        f'{scan_d["best_k"]}')
        note = (f'<p class="note"><b>k = {scan_d["chosen_k"]}</b> was used '
                f'(rule: {esc(scan_d.get("criterion") or "silhouette")}): {esc(why)}'
                + (" (silhouette on a seeded sample)" if scan_d.get("silhouette_sampled") else "")
                + ". The elbow curve is the summed squared distance of the events to their "
                  "cluster mean"
                + ("; stability is the mean Jaccard agreement of the least stable cluster when "
                   "subsamples are clustered again, gap the gap statistic, BIC that of a "
                   "Gaussian mixture (lower is better)" if curves else "") + ".</p>")
        sections.append(("Choice of k", note + img_tag(figs["kscan"], "k scan") + table(
            ["k", "mean silhouette", "inertia", "summed distances"] + list(curves), srows)))

    gal = ""
    for c in gallery_clusters:
        key = f"gallery_{c}" if c >= 0 else f"gallery_{novel_name}"
        if key in figs:
            size = int(sizes[clusters == c][0])
            gal += (f'<h3 id="gallery-{esc(c)}">{swatch(hexes[c])}{esc(names[c])} '
                    f"({size} events)</h3>" + img_tag(figs[key], f"examples of {names[c]}"))
    if gal:
        filt = (f"band-passed {bandpass[0]:g}-{bandpass[1]:g} Hz as for detection"
                if bandpass else "raw samples, mean removed")
        sections.append((
            "Example events",
            '<p class="note">Per cluster, in cluster order: the events closest to the cluster '
            "centre (<i>centre #1</i> is the closest), then random members"
            + (f"; the {novel_name} events last" if n_neg else "")
            + ". Each event: its scalogram (time in s from the window start, frequency in Hz, "
            "colour: log10 power scaled from the event's minimum to its maximum) and its "
            f"waveform (counts, {filt}). A label in a caption (<i>catalogue: LP</i>) is the "
            "catalogue's label of that event, not a result of the clustering.</p>" + gal))

    if explore_html:
        sections.append((
            "Explore the feature space",
            f'<p class="note">{n_thumbs} events of this run, placed by their features (PCA, '
            "or t-SNE when computed). Hover over or click a point to see the event's scalogram, "
            "id, time (UTC) and cluster. Open this page at <code>#event=ID</code> to show one "
            "event. The static maps of all events are in the next section.</p>"
            + explore_html))

    proj = ""
    for name, title in (("pca2d", "PCA 2-D"), ("pca3d", "PCA 3-D"), ("tsne2d", "t-SNE 2-D"),
                        ("tsne3d", "t-SNE 3-D")):
        if name in figs:
            proj += f"<h3>{title}</h3>" + img_tag(figs[name], title)
    sections.append(("Feature space",
                     '<p class="note">PCA axes give the share of the feature variance each '
                     "component holds; t-SNE axes have no unit (only neighbourhoods "
                     "matter). Right-hand panels: catalogue labels.</p>" + proj))

    if indices:
        sections.append(("Cluster indices", table(
            ["index", "value", "meaning"],
            [["SIL", indices["SIL"], "mean silhouette (higher is better)"],
             ["SSW", indices["SSW"], "mean distance of an event to its cluster mean"],
             ["SSB", indices["SSB"], "mean distance of a cluster mean to the global mean"],
             ["WB", indices["WB"], "SSW * K / SSB (lower is better)"],
             ["K", indices["K"], "clusters"],
             ["N", indices["N"], f"events ({novel_name} excluded)"]],
            left=1)))

    if ls:
        per = [[c, v["n"], v["dominant_cluster"], f"{v['share']:.1%}",
                "" if v.get("cluster_size") is None else
                f"{v['cluster_size']} ({v['cluster_fraction']:.0%} of all events)"]
               for c, v in ls["per_class"].items()]
        body = (table(["adjusted Rand", "NMI", "purity"], [[ls["ari"], ls["nmi"], ls["purity"]]],
                      left=0)
                + "<h3>Share of each catalogue label in its dominant cluster</h3>"
                + '<p class="note">A share says little when its cluster holds most of '
                  "the events: read it with the cluster's size.</p>"
                + table(["catalogue label", "events", "dominant cluster", "share",
                         "size of that cluster"], per)
                + img_tag(figs["contingency"], "contingency table"))
        sections.append(("Agreement with catalogue labels", body))

    cols = [["event_id, station, channel", "the event and where it was recorded"],
            ["start, end", "window start and end, ISO 8601 UTC"],
            ["duration_s", "window length in seconds"],
            ["peak_amplitude", "largest absolute sample of the event window (counts)"],
            ["snr", "signal-to-noise ratio of the detection"],
            ["cluster", f"cluster id; -1: {novel_name}"]]
    if y is not None:
        cols.append(["label", "the catalogue's label of the event (empty: none)"])
    if has_dist:
        cols.append(["distance", distance_note])
    if has_memb:
        cols.append(["membership_j", "membership / posterior probability of cluster j"])
    outputs = ("<h3>assignments.csv</h3>" + table(["column", "meaning"], cols)
               + f"<h3>representatives.csv</h3><p class=\"note\">Per cluster, the {n_rep} events "
               "closest to the cluster centre: <code>cluster,rank,event_id,distance</code>, "
               "distance being the Euclidean distance in feature space to the centre of that "
               "cluster (rank 1 is the most typical event).</p>")
    sections.append(("Output files", outputs))
    sections.append(("Run configuration", pre_json(_clean(config or {}))))
    sections.append(("Software versions", table(["package", "version"],
                                                sorted((str(a), str(b)) for a, b in versions.items()))))
    sub = (f"{n} events, {k} " + ("known families" if assign_to else "clusters")
           + (f", {n_neg} {novel_name}" if (assign_to or n_neg) else "")
           + (f", method {method}" if method else "")
           + time.strftime(", report written %Y-%m-%d %H:%M UTC", time.gmtime()))
    return page("microquake-engine: families of events", sub, sections)


def _raw_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Table whose first column is trusted HTML (colour swatch + name)."""
    th = "".join(f'<th class="l">{esc(h)}</th>' for h in header)
    body = "".join("<tr>" + f'<td class="l">{r[0]}</td>' + "".join(
        f'<td class="{"l" if isinstance(c, str) and not c[:1].isdigit() else ""}">{esc(c)}</td>'
        for c in r[1:]) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
