"""Figures of a clustering run (matplotlib, Agg backend), returned as PNG bytes.

Each function takes plain arrays and returns the PNG encoding of one small
figure; writing files and embedding them is left to the caller.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np

__all__ = ["kscan_png", "scatter_png", "gallery_png", "contingency_png", "project",
           "cluster_colours"]

_DPI = 80


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


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
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, y, name in ((axes[0], silhouette, "mean silhouette"), (axes[1], elbow, elbow_name)):
        ax.plot(list(ks), np.asarray(y, dtype=float), "o-", color="C0")
        if chosen_k is not None:
            ax.axvline(chosen_k, color="C3", ls="--", lw=1, label=f"chosen k={chosen_k}")
            ax.legend(fontsize=8)
        ax.set_xlabel("k")
        ax.set_ylabel(name)
        ax.set_xticks(list(ks))
        ax.grid(alpha=0.3)
    axes[0].set_title("silhouette (higher is better)", fontsize=9)
    axes[1].set_title("elbow", fontsize=9)
    fig.tight_layout()
    return _png(fig)


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
        from sklearn.decomposition import PCA

        dims_ok = min(dims, X.shape[1], X.shape[0])
        Y = PCA(dims_ok, random_state=random_state).fit_transform(X)
        if dims_ok < dims:
            Y = np.hstack([Y, np.zeros((Y.shape[0], dims - dims_ok))])
        return Y
    if how == "tsne":
        from openTSNE import TSNE

        perplexity = float(max(2.0, min(30.0, (X.shape[0] - 1) / 3.0)))
        tsne = TSNE(n_components=dims, perplexity=perplexity, random_state=random_state,
                    n_jobs=1, n_iter=300, negative_gradient_method="bh" if dims == 3 else "fft",
                    verbose=False)
        return np.asarray(tsne.fit(np.asarray(X, dtype=np.float64)))
    raise ValueError(f"projection must be 'pca' or 'tsne', got {how!r}")


def _scatter(ax, Y, groups, names, colours, dims):
    for g, name in enumerate(names):
        m = groups == g
        if not m.any():
            continue
        pts = Y[m]
        kw = dict(s=6, color=colours[g], label=f"{name} ({int(m.sum())})", alpha=0.7,
                  linewidths=0)
        if dims == 3:
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], **kw)
        else:
            ax.scatter(pts[:, 0], pts[:, 1], **kw)
    ax.legend(fontsize=7, markerscale=2, loc="best")


def scatter_png(Y: np.ndarray, clusters: np.ndarray, labels: np.ndarray | None = None,
                title: str = "") -> bytes:
    """2-D or 3-D scatter of an embedding coloured by cluster (and by label).

    Parameters
    ----------
    Y : ndarray, shape (n, 2) or (n, 3)
    clusters : ndarray of int, shape (n,)
        -1 is drawn as "noise / novel".
    labels : ndarray, shape (n,), optional
        Known classes; adds a second panel.
    title : str

    Returns
    -------
    bytes
        PNG.
    """
    plt = _plt()
    dims = Y.shape[1]
    panels = [("cluster", clusters)] + ([("known label", labels)] if labels is not None else [])
    fig = plt.figure(figsize=(4.2 * len(panels), 3.8))
    for p, (what, values) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1, projection="3d" if dims == 3 else None)
        vals = np.asarray(values)
        uniq = np.unique(vals)
        groups = np.searchsorted(uniq, vals)
        names = [("noise/novel" if (what == "cluster" and str(u) == "-1") else str(u))
                 for u in uniq]
        _scatter(ax, Y, groups, names,
                 cluster_colours(len(uniq), "clusters" if what == "cluster" else "labels"), dims)
        ax.set_title(f"{title} by {what}", fontsize=9)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _png(fig)


def gallery_png(images: Sequence[np.ndarray | None], waveforms: Sequence | None,
                captions: Sequence[str], title: str = "") -> bytes:
    """One row of event images (and a row of waveforms under them).

    Parameters
    ----------
    images : sequence of uint8 arrays (h, w, 3) or None
    waveforms : sequence of 1-D arrays, ``(array, fs)`` tuples or None; or None
    captions : sequence of str
    title : str

    Returns
    -------
    bytes
        PNG.
    """
    plt = _plt()
    n = max(len(captions), 1)
    has_img = any(im is not None for im in images)
    has_wav = waveforms is not None and any(w is not None for w in waveforms)
    rows = int(has_img) + int(has_wav) or 1
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.6 * rows + 0.3), squeeze=False)
    r = 0
    if has_img or not has_wav:
        for j in range(n):
            ax = axes[r, j]
            ax.axis("off")
            im = images[j] if j < len(images) else None
            if im is not None:
                ax.imshow(np.asarray(im))
            ax.set_title(captions[j] if j < len(captions) else "", fontsize=7)
        r += 1
    if has_wav:
        for j in range(n):
            ax = axes[r, j]
            w = waveforms[j] if j < len(waveforms) else None
            ax.set_yticks([])
            ax.tick_params(labelsize=5)
            if w is None:
                ax.axis("off")
                continue
            data, fs = (w if isinstance(w, tuple) else (w, None))
            data = np.asarray(data, dtype=float)
            t = np.arange(data.size) / fs if fs else np.arange(data.size)
            ax.plot(t, data, lw=0.4, color="k")
            ax.set_xlabel("s" if fs else "sample", fontsize=5)
            if not has_img:
                ax.set_title(captions[j] if j < len(captions) else "", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def contingency_png(table: Sequence[Sequence[int]], classes: Sequence[str],
                    clusters: Sequence) -> bytes:
    """Heat map of the class x cluster contingency table, counts written in.

    Parameters
    ----------
    table : 2-D counts, one row per class
    classes : row names
    clusters : column names

    Returns
    -------
    bytes
        PNG.
    """
    plt = _plt()
    T = np.asarray(table, dtype=float)
    share = T / np.maximum(T.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * T.shape[1], 0.8 + 0.45 * T.shape[0]))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(T.shape[0]):
        for j in range(T.shape[1]):
            ax.text(j, i, f"{int(T[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(T.shape[1]), [str(c) for c in clusters], fontsize=7)
    ax.set_yticks(range(T.shape[0]), [str(c) for c in classes], fontsize=7)
    ax.set_xlabel("cluster", fontsize=8)
    ax.set_ylabel("known label", fontsize=8)
    ax.set_title("events per label and cluster (shade: share of the label)", fontsize=8)
    fig.tight_layout()
    return _png(fig)
