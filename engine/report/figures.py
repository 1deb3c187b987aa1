"""Figures of a clustering run (matplotlib, Agg backend), returned as PNG bytes.

Each function takes plain arrays and returns the PNG encoding of one figure;
writing files and embedding them is left to the caller. Figures are drawn
:data:`PAGE_WIDTH` inches wide at :data:`DPI` dots per inch (1500 px: the
report's full page width at print resolution), with text of at least 8 pt.
A cluster has the same colour in every figure (:func:`cluster_colour_map`):
noise / novel events (-1) are grey.
"""
from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np

__all__ = ["kscan_png", "scatter_png", "gallery_png", "contingency_png", "project",
           "pca_project", "cluster_colours", "cluster_colour_map", "occurrence_png",
           "families_png", "hex_colour", "DPI", "PAGE_WIDTH", "NOVEL_COLOUR"]

#: resolution of every figure (dots per inch)
DPI = 150
#: width of full-width figures in inches (1500 px at DPI)
PAGE_WIDTH = 10.0
#: colour of noise / novel events (label -1)
NOVEL_COLOUR = (0.55, 0.55, 0.55, 1.0)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig, tight: bool = True, palette: bool = False) -> bytes:
    """PNG of ``fig`` at :data:`DPI`; ``palette``: 256 colours (image-heavy figures, ~3x
    smaller files for the same look)."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight" if tight else None,
                pad_inches=0.08)
    plt.close(fig)
    if not palette:
        return buf.getvalue()
    from PIL import Image

    with Image.open(io.BytesIO(buf.getvalue())) as im:
        q = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        out = io.BytesIO()
        q.save(out, format="PNG", optimize=False, dpi=(DPI, DPI))
    return out.getvalue()


def cluster_colours(n: int, palette: str = "clusters") -> np.ndarray:
    """``n`` distinct RGBA colours.

    Parameters
    ----------
    n : int
        Number of colours.
    palette : {"clusters", "labels"}
        ``"clusters"``: tab10, then tab20, then a hue wheel; ``"labels"``: Dark2
        (so that known labels and clusters do not look alike).

    Returns
    -------
    ndarray, shape (n, 4)
        RGBA colours.
    """
    plt = _plt()
    if palette == "labels" and n <= 8:
        return plt.get_cmap("Dark2")(np.arange(n))
    if n <= 10:
        return plt.get_cmap("tab10")(np.arange(n))
    if n <= 20:
        return plt.get_cmap("tab20")(np.arange(n))
    return plt.get_cmap("hsv")(np.linspace(0, 1, n, endpoint=False))


def cluster_colour_map(clusters: Sequence[int]) -> dict[int, tuple]:
    """The colour of every cluster id, the same in all figures of a run.

    Parameters
    ----------
    clusters : sequence of int
        Cluster ids present (-1: noise / novel).

    Returns
    -------
    dict
        ``{cluster: (r, g, b, a)}``; cluster ``c >= 0`` gets colour ``c`` of a
        palette sized to the largest id, -1 is grey.

    Examples
    --------
    >>> cmap = cluster_colour_map([-1, 0, 2])
    >>> cmap[-1] == NOVEL_COLOUR and len(cmap) == 3
    True
    """
    ids = sorted({int(c) for c in clusters})
    top = max([c for c in ids if c >= 0], default=-1) + 1
    pal = cluster_colours(max(top, 1))
    return {c: (NOVEL_COLOUR if c < 0 else tuple(float(v) for v in pal[c])) for c in ids}


def hex_colour(rgba: Sequence[float]) -> str:
    """``#rrggbb`` of an RGB(A) tuple with components in 0..1."""
    r, g, b = (int(round(255 * float(v))) for v in list(rgba)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _cluster_name(c: int, novel: str = "noise / novel") -> str:
    return novel if c < 0 else f"cluster {c}"


def kscan_png(ks: Sequence[int], silhouette: Sequence[float], elbow: Sequence[float],
              chosen_k: int | None = None, elbow_name: str = "inertia") -> bytes:
    """Silhouette and elbow curves against k.

    Parameters
    ----------
    ks, silhouette, elbow : sequences of the same length
    chosen_k : int, optional
        Marked with a vertical line.
    elbow_name : str
        Label of the elbow axis.

    Returns
    -------
    bytes
        PNG.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.6))
    for ax, y, name in ((axes[0], silhouette, "mean silhouette"), (axes[1], elbow, elbow_name)):
        vals = np.array([np.nan if v is None else v for v in y], dtype=float)
        ax.plot(list(ks), vals, "o-", color="C0")
        if chosen_k is not None:
            ax.axvline(chosen_k, color="C3", ls="--", lw=1, label=f"chosen k = {chosen_k}")
            ax.legend(fontsize=9)
        ax.set_xlabel("k (number of clusters)", fontsize=10)
        ax.set_ylabel(name, fontsize=10)
        ax.set_xticks(list(ks))
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_title("silhouette (higher is better)", fontsize=11)
    axes[1].set_title("elbow", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def pca_project(X: np.ndarray, dims: int, random_state: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """PCA embedding of ``X`` and the share of variance of each component.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    dims : int
        Number of components (padded with zeros when ``X`` has fewer).
    random_state : int

    Returns
    -------
    Y : ndarray, shape (n, dims)
    explained : ndarray, shape (dims,)
        Explained variance ratio of each component (0 for padding).
    """
    from sklearn.decomposition import PCA

    dims_ok = min(dims, X.shape[1], X.shape[0])
    pca = PCA(dims_ok, random_state=random_state)
    Y = pca.fit_transform(X)
    ratio = np.asarray(pca.explained_variance_ratio_, dtype=float)
    if dims_ok < dims:
        Y = np.hstack([Y, np.zeros((Y.shape[0], dims - dims_ok))])
        ratio = np.concatenate([ratio, np.zeros(dims - dims_ok)])
    return Y, np.nan_to_num(ratio)


def project(X: np.ndarray, how: str, dims: int, random_state: int = 0) -> np.ndarray:
    """PCA or t-SNE embedding of ``X``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    how : {"pca", "tsne"}
    dims : {2, 3}
    random_state : int

    Returns
    -------
    ndarray, shape (n, dims)
    """
    if how == "pca":
        return pca_project(X, dims, random_state)[0]
    if how == "tsne":
        from openTSNE import TSNE

        perplexity = float(max(2.0, min(30.0, (X.shape[0] - 1) / 3.0)))
        tsne = TSNE(n_components=dims, perplexity=perplexity, random_state=random_state,
                    n_jobs=1, n_iter=300, negative_gradient_method="bh" if dims == 3 else "fft",
                    verbose=False)
        return np.asarray(tsne.fit(np.asarray(X, dtype=np.float64)))
    raise ValueError(f"projection must be 'pca' or 'tsne', got {how!r}")


def _scatter(ax, Y, values, names, colours, dims):
    for v, name in names:
        m = values == v
        if not m.any():
            continue
        pts = Y[m]
        kw = dict(s=10, color=colours[v], label=f"{name} ({int(m.sum())})", alpha=0.75,
                  linewidths=0)
        if dims == 3:
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], **kw)
        else:
            ax.scatter(pts[:, 0], pts[:, 1], **kw)
    ax.legend(fontsize=8, markerscale=1.6, loc="best", framealpha=0.8)


def scatter_png(Y: np.ndarray, clusters: np.ndarray, labels: np.ndarray | None = None,
                title: str = "", axis_labels: Sequence[str] | None = None,
                colours: Mapping[int, tuple] | None = None, novel_name: str = "noise / novel"
                ) -> bytes:
    """2-D or 3-D scatter of an embedding coloured by cluster (and by label).

    Parameters
    ----------
    Y : ndarray, shape (n, 2) or (n, 3)
    clusters : ndarray of int, shape (n,)
        -1 is drawn grey as ``novel_name``.
    labels : ndarray, shape (n,), optional
        Known classes (catalogue labels); adds a second panel.
    title : str
    axis_labels : sequence of str, optional
        One per axis (e.g. ``"PC1 (31% of variance)"``).
    colours : dict, optional
        Cluster colours (:func:`cluster_colour_map`; computed when omitted).
    novel_name : str
        Legend name of cluster -1.

    Returns
    -------
    bytes
        PNG.
    """
    plt = _plt()
    dims = Y.shape[1]
    clusters = np.asarray(clusters)
    cmap = dict(colours) if colours is not None else cluster_colour_map(np.unique(clusters))
    panels = [("cluster", clusters)] + ([("catalogue label", labels)] if labels is not None else [])
    fig = plt.figure(figsize=(PAGE_WIDTH, 4.8 if dims == 2 else 5.2))
    for p, (what, values) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1, projection="3d" if dims == 3 else None)
        vals = np.asarray(values)
        uniq = list(np.unique(vals))
        if what == "cluster":
            uniq = sorted(uniq, key=lambda c: (c < 0, c))
            names = [(u, _cluster_name(int(u), novel_name)) for u in uniq]
            col = cmap
        else:
            names = [(u, str(u)) for u in uniq]
            pal = cluster_colours(len(uniq), "labels")
            col = {u: pal[j] for j, u in enumerate(uniq)}
        _scatter(ax, Y, vals, names, col, dims)
        ax.set_title(f"{title} by {what}", fontsize=11)
        ax.tick_params(labelsize=8)
        if axis_labels is not None:
            ax.set_xlabel(axis_labels[0], fontsize=9)
            ax.set_ylabel(axis_labels[1], fontsize=9)
            if dims == 3:
                ax.set_zlabel(axis_labels[2], fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _bandpassed(data: np.ndarray, fs: float | None, bandpass) -> np.ndarray:
    if bandpass is None or not fs:
        return data - data.mean() if data.size else data
    from engine.detect import bandpass as bp

    return bp(data, fs, bandpass[0], bandpass[1])


def gallery_png(images: Sequence[np.ndarray | None], waveforms: Sequence | None,
                captions: Sequence[str], title: str = "", colour: Sequence[float] | None = None,
                bandpass: tuple[float, float] | None = None,
                freq_range: tuple[float, float] | None = (1.0, 25.0), ncols: int = 4) -> bytes:
    """Example events of one cluster: scalograms with axes, waveforms with amplitudes.

    Parameters
    ----------
    images : sequence of uint8 arrays (h, w, 3) or None
        Scalogram images (low frequencies at the bottom).
    waveforms : sequence of 1-D arrays, ``(array, fs)`` tuples or None; or None
    captions : sequence of str
        One per event (at most two short lines).
    title : str
    colour : RGBA, optional
        Cluster colour, drawn as a band behind the title.
    bandpass : (float, float), optional
        Corner frequencies in Hz; waveforms are filtered as detection does
        (:func:`engine.detect.bandpass`) and the axis says so.
    freq_range : (float, float), optional
        Frequency span of the image rows in Hz (the scalogram's 1-25 Hz);
        None: the frequency axis is not labelled in Hz.
    ncols : int
        Events per row.

    Returns
    -------
    bytes
        PNG.
    """
    plt = _plt()
    from matplotlib import gridspec

    n = max(len(captions), 1)
    has_img = any(im is not None for im in images)
    has_wav = waveforms is not None and any(w is not None for w in waveforms)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    per = ([3.0] if has_img else []) + ([1.25] if has_wav else [])
    if not per:
        per = [1.0]
    fig = plt.figure(figsize=(PAGE_WIDTH, nrows * (sum(per) + 0.9) + 0.9))
    ratios = []
    for row in range(nrows):
        ratios += per + ([0.28] if row < nrows - 1 else [])
    gs = gridspec.GridSpec(len(ratios), ncols, figure=fig, height_ratios=ratios, hspace=0.35,
                           wspace=0.42)
    im_artist = None
    for j in range(n):
        r0 = (j // ncols) * (len(per) + 1)
        col = j % ncols
        cap = captions[j] if j < len(captions) else ""
        w = waveforms[j] if (has_wav and j < len(waveforms)) else None
        data, fs = (w if isinstance(w, tuple) else (w, None)) if w is not None else (None, None)
        dur = (len(data) / fs) if (data is not None and fs) else None
        r = r0
        if has_img:
            ax = fig.add_subplot(gs[r, col])
            im = images[j] if j < len(images) else None
            if im is not None:
                extent = [0, dur if dur else 1.0,
                          *(freq_range if freq_range else (0.0, 1.0))]
                ax.imshow(np.asarray(im), extent=extent, aspect="auto", origin="upper")
                im_artist = True
                ax.set_ylabel("frequency (Hz)" if freq_range else "frequency", fontsize=8)
                ax.set_xlabel("time (s)" if dur else "time (window)", fontsize=8)
                if not dur:
                    ax.set_xticks([])
                if not freq_range:
                    ax.set_yticks([])
                ax.tick_params(labelsize=7)
            else:
                ax.axis("off")
                ax.text(0.5, 0.5, "no image", ha="center", va="center", fontsize=8)
            ax.set_title(cap, fontsize=8, loc="left")
            r += 1
        if has_wav:
            ax = fig.add_subplot(gs[r, col])
            if data is None:
                ax.axis("off")
            else:
                x = _bandpassed(np.asarray(data, dtype=float), fs, bandpass)
                t = np.arange(x.size) / fs if fs else np.arange(x.size)
                ax.plot(t, x, lw=0.5, color="k")
                ax.set_xlim(t[0] if t.size else 0, t[-1] if t.size else 1)
                ax.set_xlabel("time (s)" if fs else "sample", fontsize=8)
                ax.set_ylabel("counts", fontsize=8)
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
                ax.yaxis.get_offset_text().set_fontsize(7)
                ax.tick_params(labelsize=7)
                ax.grid(alpha=0.25)
                if not has_img:
                    ax.set_title(cap, fontsize=8, loc="left")
    note = []
    if has_wav:
        note.append(f"waveforms band-passed {bandpass[0]:g}-{bandpass[1]:g} Hz as for detection"
                    if bandpass else "waveforms: raw samples, mean removed")
    if title:
        fig.suptitle(title + ("   (" + "; ".join(note) + ")" if note else ""), fontsize=11,
                     x=0.01, ha="left", va="top", y=1.0 - 0.12 / fig.get_figheight(),
                     bbox=dict(facecolor=colour if colour is not None else "white",
                               alpha=0.35, edgecolor="none", pad=4))
    if im_artist is not None:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        cax = fig.add_axes([0.93, 0.35, 0.012, 0.3])
        cb = fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), cax=cax)
        cb.set_ticks([0, 1], labels=["min", "max"])
        cb.set_label("log10 power (scaled per event)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.07, right=0.9, top=1.0 - 0.75 / fig.get_figheight(),
                        bottom=0.45 / fig.get_figheight())
    return _png(fig, tight=False, palette=True)


def occurrence_png(times: np.ndarray, clusters: np.ndarray,
                   colours: Mapping[int, tuple] | None = None,
                   novel_name: str = "noise / novel", max_rows: int = 30) -> bytes:
    """Event rate of each family over time: one row per cluster, shared time axis.

    Parameters
    ----------
    times : ndarray of float, shape (n,)
        Event times in seconds since 1970-01-01 UTC (NaN: unknown, left out).
    clusters : ndarray of int, shape (n,)
    colours : dict, optional
        Cluster colours (:func:`cluster_colour_map`).
    novel_name : str
        Row name of cluster -1.
    max_rows : int
        Clusters beyond this many (smallest first) share one row "other".

    Returns
    -------
    bytes
        PNG.

    Raises
    ------
    ValueError
        If no event has a known time.
    """
    plt = _plt()
    import matplotlib.dates as mdates

    t = np.asarray(times, dtype=float)
    lab = np.asarray(clusters)
    ok = np.isfinite(t)
    if not ok.any():
        raise ValueError("no event has a known time")
    t, lab = t[ok], lab[ok]
    cmap = dict(colours) if colours is not None else cluster_colour_map(np.unique(lab))
    ids, counts = np.unique(lab, return_counts=True)
    order = sorted(ids.tolist(), key=lambda c: (c < 0, c))
    if len(order) > max_rows:
        keep = set(sorted(ids.tolist(), key=lambda c: -counts[ids == c][0])[: max_rows - 1])
        rows = [c for c in order if c in keep] + ["other"]
    else:
        rows = order
    lo, hi = float(t.min()), float(t.max())
    span = max(hi - lo, 1.0)
    steps = [60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400,
             30 * 86400, 365 * 86400]
    step = next((s for s in steps if span / s <= 60), steps[-1])
    start = np.floor(lo / step) * step
    edges = np.arange(start, hi + step, step)
    if edges.size < 2:
        edges = np.array([start, start + step])
    unit = {60: "min", 300: "5 min", 600: "10 min", 1800: "30 min", 3600: "hour",
            3 * 3600: "3 h", 6 * 3600: "6 h", 12 * 3600: "12 h", 86400: "day",
            7 * 86400: "week", 30 * 86400: "30 days", 365 * 86400: "year"}[step]
    to_num = edges / 86400.0  # matplotlib date numbers: days since 1970-01-01
    fig, axes = plt.subplots(len(rows), 1, figsize=(PAGE_WIDTH, 0.95 * len(rows) + 1.1),
                             sharex=True, squeeze=False)
    for ax, c in zip(axes[:, 0], rows):
        m = ~np.isin(lab, [r for r in rows if r != "other"]) if c == "other" else lab == c
        h, _ = np.histogram(t[m], bins=edges)
        colour = NOVEL_COLOUR if c == "other" else cmap.get(c, NOVEL_COLOUR)
        ax.bar(to_num[:-1], h, width=np.diff(to_num), align="edge", color=colour,
               edgecolor="none")
        name = "other clusters" if c == "other" else _cluster_name(int(c), novel_name)
        ax.text(0.005, 0.92, f"{name} ({int(m.sum())})", transform=ax.transAxes, fontsize=9,
                va="top", ha="left", bbox=dict(facecolor="white", alpha=0.7, edgecolor="none",
                                               pad=1))
        ax.set_ylim(0, max(1, h.max()) * 1.25)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25, axis="x")
        ax.yaxis.set_major_locator(plt.MaxNLocator(3, integer=True))
    axes[len(rows) // 2, 0].set_ylabel(f"events per {unit}", fontsize=10)
    ax = axes[-1, 0]
    ax.set_xlim(to_num[0], to_num[-1])
    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    ax.set_xlabel("time (UTC)", fontsize=10)
    fig.suptitle(f"Occurrence of each family (events per {unit})", fontsize=11)
    fig.tight_layout(h_pad=0.2)
    return _png(fig)


def families_png(values: Mapping[str, Sequence[np.ndarray]], cluster_ids: Sequence[int],
                 colours: Mapping[int, tuple], log: Sequence[str] = (),
                 novel_name: str = "noise / novel") -> bytes:
    """Box plots of per-event quantities (duration, frequency, amplitude) by cluster.

    Parameters
    ----------
    values : dict
        ``{quantity name: [array of values for each cluster in cluster_ids]}``;
        NaN values are left out, an empty array leaves a gap.
    cluster_ids : sequence of int
    colours : dict
        Cluster colours.
    log : sequence of str
        Quantities drawn on a logarithmic axis.
    novel_name : str
        Name of cluster -1.

    Returns
    -------
    bytes
        PNG.
    """
    plt = _plt()
    names = list(values)
    fig, axes = plt.subplots(1, len(names), figsize=(PAGE_WIDTH, 3.4), squeeze=False)
    ticks = [("novel" if c < 0 and novel_name.startswith("novel") else
              "noise" if c < 0 else str(c)) for c in cluster_ids]
    for ax, q in zip(axes[0], names):
        data = [np.asarray(v, dtype=float)[np.isfinite(np.asarray(v, dtype=float))]
                for v in values[q]]
        if q in log:
            data = [d[d > 0] for d in data]
        pos = [i for i, d in enumerate(data) if d.size]
        if pos:
            bp = ax.boxplot([data[i] for i in pos], positions=pos, widths=0.6,
                            patch_artist=True, showfliers=True,
                            flierprops=dict(markersize=2))
            for patch, i in zip(bp["boxes"], pos):
                patch.set_facecolor(colours.get(cluster_ids[i], NOVEL_COLOUR))
                patch.set_alpha(0.8)
            for med in bp["medians"]:
                med.set_color("k")
        else:
            ax.text(0.5, 0.5, "not available", transform=ax.transAxes, ha="center",
                    fontsize=9)
        ax.set_xticks(range(len(cluster_ids)), ticks)
        ax.set_xlim(-0.7, len(cluster_ids) - 0.3)
        if q in log and pos:
            ax.set_yscale("log")
        ax.set_title(q, fontsize=10)
        ax.set_xlabel("cluster", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25, axis="y")
    fig.tight_layout()
    return _png(fig)


def contingency_png(table: Sequence[Sequence[int]], classes: Sequence[str],
                    clusters: Sequence) -> bytes:
    """Heat map of the class x cluster contingency table, counts written in.

    Parameters
    ----------
    table : 2-D counts, one row per class
    classes : row names (catalogue labels)
    clusters : column names

    Returns
    -------
    bytes
        PNG.
    """
    plt = _plt()
    T = np.asarray(table, dtype=float)
    share = T / np.maximum(T.sum(axis=1, keepdims=True), 1)
    w = min(PAGE_WIDTH, 2.0 + 0.7 * T.shape[1])
    fig, ax = plt.subplots(figsize=(w, 1.2 + 0.5 * T.shape[0]))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(T.shape[0]):
        for j in range(T.shape[1]):
            ax.text(j, i, f"{int(T[i, j])}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(T.shape[1]), [str(c) for c in clusters], fontsize=9)
    ax.set_yticks(range(T.shape[0]), [str(c) for c in classes], fontsize=9)
    ax.set_xlabel("cluster", fontsize=10)
    ax.set_ylabel("catalogue label", fontsize=10)
    ax.set_title("events per catalogue label and cluster (shade: share of the label)",
                 fontsize=10)
    fig.tight_layout()
    return _png(fig)
