"""Seed-compatible scalogram images (docs/method.md Stages 0 and 2).

Pipeline of one event, as in the published ``generacionLlaimaSuperlets.m``:

Stage 0
    cut at the end of event (first run of 5 equal samples), remove the mean.
Stage 1
    superlet power, 121 frequencies 1:0.2:25 Hz, c1 = 3, orders 10..20,
    multiplicative (:func:`engine.superlet.superlet`).
Stage 2
    log10; 11 x 11 box *sums* (121 x N -> 110 x (N - 11)); min-max scaling to
    0..255 rounded up; MATLAB ``jet(256)`` colours; bicubic antialiased resize to
    227 x 227 (MATLAB ``imresize``); vertical flip (low frequencies at the
    bottom); conversion to uint8 as MATLAB ``im2uint8`` (clip, round).

Every Stage-2 step is one function written against an array module ``xp``
(NumPy or CuPy), so ``device="cuda"`` runs the same code on the GPU.

Zero power
    ``log10`` needs positive power.  Powers below ``1e-20`` times the
    scalogram's maximum (200 dB down, under float32 rounding noise; they only
    arise where the trace is exactly zero over a whole wavelet) are raised to
    that floor.  An all-zero scalogram (a constant trace, zero after mean
    removal) has no contrast: it becomes a uniform ``jet(0)`` (dark blue) image,
    which is what the published MATLAB code produces through ``uint8(NaN) = 0``.
"""
from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine._util import atomic_write, progress

__all__ = [
    "DEFAULT_FREQS",
    "IMAGE_SIZE",
    "box_sum",
    "end_of_event",
    "event_images",
    "jet",
    "matlab_colon",
    "prepare_trace",
    "resize_bicubic",
    "scale_to_uint8",
    "scalogram_to_image",
    "uniform_image",
    "write_images",
]

IMAGE_SIZE = 227
BOX = 10
POWER_FLOOR = 1e-20


def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """MATLAB's ``a:d:b`` for floating-point steps, bit for bit.

    MATLAB builds the range symmetrically: ``a + k d`` for the first half,
    ``b - k d`` for the second and ``(a + b) / 2`` in the middle when the number
    of intervals is even (C. Moler, "colonop").  The exact doubles matter here:
    they decide a few wavelet lengths.

    Parameters
    ----------
    a, d, b : float
        Start, step (> 0) and end.

    Returns
    -------
    numpy.ndarray
    """
    a, d, b = float(a), float(d), float(b)
    if d <= 0 or b < a:
        raise ValueError(f"matlab_colon needs d > 0 and b >= a, got {a}:{d}:{b}")
    tol = 2.0 * np.finfo(float).eps * max(abs(a), abs(b))
    n = int(round((b - a) / d))
    if a + n * d - b > tol:
        n -= 1
    c = a + n * d
    if c - b > -tol:
        c = b
    v = np.empty(n + 1)
    k = np.arange(0, n // 2 + 1)
    v[k] = a + k * d
    v[n - k] = c - k * d
    if n % 2 == 0:
        v[n // 2] = (a + c) / 2
    return v


#: Published frequencies, MATLAB ``1:0.2:25`` (121 values).
DEFAULT_FREQS = matlab_colon(1.0, 0.2, 25.0)
DEFAULT_FREQS.flags.writeable = False


# ----------------------------------------------------------------------------- Stage 0
def _check_trace(x: Any, name: str) -> np.ndarray:
    """One trace as a finite, non-empty 1-D NumPy array (the superlet's own check)."""
    from engine.superlet import _as_1d

    return _as_1d(x, name)


def end_of_event(x: np.ndarray) -> int:
    """Index (0-based) of the last sample of the event.

    The event ends at the first index ``j`` where 5 consecutive samples
    ``x[j] .. x[j + 4]`` are equal (the constant padding); without such a run
    the whole trace is kept (``len(x) - 1``).

    Parameters
    ----------
    x : ndarray (n,)

    Returns
    -------
    int
    """
    x = np.asarray(x)
    n = x.size
    if n < 5:
        return n - 1
    eq = x[1:] == x[:-1]
    run = eq[:-3] & eq[1:-2] & eq[2:-1] & eq[3:]
    hits = np.flatnonzero(run)
    return int(hits[0]) if hits.size else n - 1


def prepare_trace(x: Any, name: str = "trace") -> np.ndarray:
    """Stage 0: cut at the end of event, then remove the mean (float64).

    Parameters
    ----------
    x : array_like (n,)
        Raw trace.
    name : str
        How to call the trace in error messages.

    Returns
    -------
    ndarray (j + 1,) float64

    Raises
    ------
    ValueError
        Empty, not 1-D, not real, or with NaN/inf samples.
    """
    a = _check_trace(x, name).astype(np.float64)
    a = a[: end_of_event(a) + 1]
    return a - a.mean()


# ----------------------------------------------------------------------------- Stage 2
def jet(m: int = 256) -> np.ndarray:
    """MATLAB's ``jet(m)`` colour map, from its defining formula.

    With ``n = ceil(m / 4)`` and the ramp ``u = [1..n, n ones - 1, n..1] / n``,
    green occupies rows ``g = ceil(n / 2) - (m mod 4 == 1) + (1..len(u))``,
    red the rows ``g + n`` and blue ``g - n``, each clipped to ``1..m`` (red and
    green take the start of ``u``, blue its end).

    Parameters
    ----------
    m : int
        Number of colours.

    Returns
    -------
    ndarray (m, 3) float64 in [0, 1]
    """
    n = int(np.ceil(m / 4))
    u = np.concatenate([np.arange(1, n + 1) / n, np.ones(n - 1), np.arange(n, 0, -1) / n])
    g = int(np.ceil(n / 2)) - (1 if m % 4 == 1 else 0) + np.arange(1, len(u) + 1)
    r = g + n
    b = g - n
    g = g[g <= m]
    r = r[r <= m]
    b = b[b >= 1]
    out = np.zeros((m, 3))
    out[r - 1, 0] = u[: len(r)]
    out[g - 1, 1] = u[: len(g)]
    out[b - 1, 2] = u[len(u) - len(b):]
    return out


def _xp_of(a: Any):
    if hasattr(a, "__cuda_array_interface__"):
        import cupy

        return cupy
    return np


def log_power(power, xp=None):
    """Stage 2.1: ``log10`` of the power with the zero-power floor (float64)."""
    xp = xp or _xp_of(power)
    p = power.astype(xp.float64)
    pmax = float(p.max())
    floor = pmax * POWER_FLOOR if pmax > 0 else 1.0
    return xp.log10(xp.maximum(p, floor))


def box_sum(s, w: int = BOX, xp=None):
    """Stage 2.2: sums over ``(w + 1) x (w + 1)`` blocks, via cumulative sums.

    ``out[i, j] = s[i:i+w+1, j:j+w+1].sum()`` for ``i < rows - w - 1`` and
    ``j < cols - w - 1`` (the published ``smoothed_N``, including its size).

    Parameters
    ----------
    s : xp array (rows, cols)
    w : int
    xp : module, optional

    Returns
    -------
    xp array (rows - w - 1, cols - w - 1) float64
    """
    xp = xp or _xp_of(s)
    rows, cols = s.shape
    c = xp.zeros((rows + 1, cols + 1), dtype=xp.float64)
    c[1:, 1:] = xp.cumsum(xp.cumsum(s.astype(xp.float64), axis=0), axis=1)
    k = w + 1
    nr, nc = rows - w - 1, cols - w - 1
    return (c[k: k + nr, k: k + nc] - c[:nr, k: k + nc] - c[k: k + nr, :nc] + c[:nr, :nc])


def scale_to_uint8(s, xp=None):
    """Stage 2.3: ``ceil((s - min) / max(s - min) * 255)`` as uint8 (0 where flat)."""
    xp = xp or _xp_of(s)
    s = s - s.min()
    top = float(s.max())
    if not top > 0:
        return xp.zeros(s.shape, dtype=xp.uint8)
    return xp.clip(xp.ceil(s / top * 255.0), 0, 255).astype(xp.uint8)


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def _resize_weights(in_len: int, out_len: int):
    """MATLAB imresize 'bicubic' weights as a CSR matrix (out_len x in_len).

    Antialiasing when shrinking (kernel stretched by 1/scale), symmetric
    (mirror) boundary, weights normalised to sum 1 per output sample.
    """
    import scipy.sparse as sp

    scale = out_len / in_len
    width = 4.0
    if scale < 1:
        def h(t):
            return scale * _cubic(scale * t)
        width = width / scale
    else:
        h = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    p = int(np.ceil(width)) + 2
    ind = left[:, None] + np.arange(p)[None, :]
    wts = h(u[:, None] - ind)
    wts = wts / wts.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = aux[np.mod(ind.astype(np.int64) - 1, 2 * in_len)]
    rows = np.repeat(np.arange(out_len), p)
    keep = wts.ravel() != 0
    m = sp.coo_matrix((wts.ravel()[keep], (rows[keep], cols.ravel()[keep])),
                      shape=(out_len, in_len)).tocsr()
    m.sum_duplicates()
    return m


def _resize_operator(in_len: int, out_len: int, xp):
    m = _resize_weights(int(in_len), int(out_len))
    if xp is np:
        return m
    import cupyx.scipy.sparse as csp

    return csp.csr_matrix(m)


def _resize_chw(m, out_shape: tuple[int, int], xp):
    """Resize a channels-first stack ``(ch, rows, cols)`` -> ``(out_rows, out_cols, ch)``."""
    ch, rows, cols = m.shape
    orow, ocol = out_shape
    wc = _resize_operator(cols, ocol, xp)
    wr = _resize_operator(rows, orow, xp)
    h = wc @ m.reshape(ch * rows, cols).T  # (ocol, ch * rows)
    h = h.reshape(ocol, ch, rows).transpose(2, 0, 1).reshape(rows, ocol * ch)
    return (wr @ h).reshape(orow, ocol, ch)


def resize_bicubic(img, out_shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE), xp=None):
    """Stage 2.5: MATLAB ``imresize(img, out_shape)`` (bicubic, antialiased).

    Parameters
    ----------
    img : xp array (rows, cols, channels) float
    out_shape : (int, int)
    xp : module, optional

    Returns
    -------
    xp array (out_rows, out_cols, channels) float64 (not clipped)
    """
    xp = xp or _xp_of(img)
    return _resize_chw(img.astype(xp.float64).transpose(2, 0, 1), out_shape, xp)


@lru_cache(maxsize=2)
def _jet_lut_np() -> np.ndarray:
    lut = jet(256)
    lut.flags.writeable = False
    return lut


def uniform_image(xp=np):
    """The image of a scalogram without contrast: every pixel ``jet(0)`` (dark blue)."""
    px = np.floor(_jet_lut_np()[0] * 255.0 + 0.5).astype(np.uint8)
    return xp.asarray(np.broadcast_to(px, (IMAGE_SIZE, IMAGE_SIZE, 3)).copy())


def scalogram_to_image(power, xp=None):
    """Stage 2 for one scalogram: power (n_freqs, N) -> uint8 (227, 227, 3) RGB.

    Parameters
    ----------
    power : xp array (n_freqs, N)
        Superlet power, low frequencies first; needs ``n_freqs >= 12`` and
        ``N >= 12`` (the 11 x 11 box sum).
    xp : module, optional
        NumPy or CuPy (default: that of ``power``).

    Returns
    -------
    xp array (227, 227, 3) uint8, low frequencies at the bottom.

    Raises
    ------
    ValueError
        Scalogram too small for the box sum.
    """
    xp = xp or _xp_of(power)
    if power.ndim != 2 or power.shape[0] < BOX + 2 or power.shape[1] < BOX + 2:
        raise ValueError(f"scalogram must be 2-D with at least {BOX + 2} frequencies and "
                         f"{BOX + 2} samples for the {BOX + 1}x{BOX + 1} box sum, got shape "
                         f"{tuple(power.shape)}")
    idx = scale_to_uint8(box_sum(log_power(power, xp), BOX, xp), xp)
    lut_t = xp.asarray(np.ascontiguousarray(_jet_lut_np().T))  # (3, 256)
    rgb = _resize_chw(lut_t[:, idx.astype(xp.int64)], (IMAGE_SIZE, IMAGE_SIZE), xp)[::-1]
    return xp.floor(xp.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(xp.uint8)


def event_images(traces: Sequence[Any], fs: float = 100.0, freqs=None, device: str = "cpu",
                 batch_size: int = 16, c1: float = 3.0, orders: Sequence[int] = (10, 20),
                 dtype=np.float32, workers: int = -1, show_progress: bool | None = None):
    """Seed-compatible 227 x 227 RGB images of event traces (Stages 0-2).

    Traces are cut and demeaned (Stage 0), sorted by length and transformed in
    batches zero-padded to the longest trace of the batch (exact: the
    convolution sees zeros outside each trace either way).

    Parameters
    ----------
    traces : sequence of array_like, or 2-D array (n_events, n_samples)
        Raw event traces (before the end-of-event cut).
    fs : float
        Sampling rate in Hz (100 in the published run).
    freqs : array_like, optional
        Frequencies; default MATLAB ``1:0.2:25`` (:data:`DEFAULT_FREQS`).
    device : {"cpu", "cuda"}
        ``"cuda"`` keeps everything on the GPU and returns a CuPy array.
    batch_size : int
        Events per superlet batch.
    c1, orders, dtype, workers
        Superlet parameters (see :func:`engine.superlet.superlet`).
    show_progress : bool, optional
        Progress bar over batches (default: :func:`engine._util.progress_enabled`).

    Returns
    -------
    ndarray or cupy.ndarray (n_events, 227, 227, 3) uint8

    Raises
    ------
    ValueError
        Empty or non-finite traces, bad parameters.

    Warns
    -----
    RuntimeWarning
        Events with fewer than 12 samples after the end-of-event cut (a
        constant trace is cut to 1 sample): they get :func:`uniform_image`.
    """
    from engine.superlet import _superlet_padded, check_superlet_params

    freqs = DEFAULT_FREQS if freqs is None else freqs
    prm = check_superlet_params(fs, freqs, c1, orders, True, dtype, device)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(prm["freqs"]) < BOX + 2:
        raise ValueError(f"need at least {BOX + 2} frequencies for the box sum, "
                         f"got {len(prm['freqs'])}")
    if isinstance(traces, np.ndarray) and traces.ndim == 1:
        raise ValueError("traces must be a sequence of 1-D traces or a 2-D array; got one "
                         "1-D array (wrap it in a list for a single event)")
    prepared = [prepare_trace(t, f"trace {i}") for i, t in enumerate(traces)]
    if not prepared:
        raise ValueError("no traces given")
    lens = np.array([p.size for p in prepared], dtype=np.int64)
    short = np.flatnonzero(lens < BOX + 2)
    if short.size:
        warnings.warn(f"{short.size} trace(s) have fewer than {BOX + 2} samples after the "
                      f"end-of-event cut (first: trace {int(short[0])}, {int(lens[short[0]])} "
                      f"samples; a constant trace is cut to 1 sample): they get the uniform "
                      f"jet(0) image", RuntimeWarning, stacklevel=2)
    if device == "cuda":
        from engine._util import require

        xp = require("cupy", feature="event_images(device='cuda')")
    else:
        xp = np
    out = xp.empty((len(prepared), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=xp.uint8)
    if short.size:
        out[xp.asarray(short)] = uniform_image(xp)
    order = np.argsort(lens, kind="stable")
    order = order[lens[order] >= BOX + 2]
    starts = range(0, len(order), batch_size)
    for b0 in progress(starts, desc="images", total=len(starts), unit="batch",
                       disable=None if show_progress is None else not show_progress):
        idx = order[b0: b0 + batch_size]
        n_max = int(lens[idx].max())
        padded = np.zeros((len(idx), n_max), dtype=prm["dtype"])
        for j, i in enumerate(idx):
            padded[j, : lens[i]] = prepared[i]
        power = _superlet_padded(padded, lens[idx], prm, workers)
        for j, i in enumerate(idx):
            out[int(i)] = scalogram_to_image(power[j, :, : lens[i]], xp)
    return out


def _safe_component(v: Any, what: str) -> str:
    s = str(v)
    if not s or s in (".", "..") or any(c in s for c in "/\\\0"):
        raise ValueError(f"{what} {v!r} cannot be used as a file or folder name")
    return s


def write_images(images, names: Sequence[Any], labels: Sequence[Any],
                 out_dir: str | os.PathLike) -> list[Path]:
    """Write RGB PNGs ``out_dir/<label>/<name>.png`` (atomically, one per image).

    Parameters
    ----------
    images : array (n, H, W, 3) uint8 (NumPy or CuPy)
    names : sequence (n,)
        File stems (e.g. global event numbers).
    labels : sequence (n,)
        Class folder of each image.
    out_dir : path
        Root folder (created if missing).

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    ValueError
        Mismatched lengths, wrong image shape/dtype, unusable names or labels.
    """
    from PIL import Image

    if hasattr(images, "__cuda_array_interface__") and hasattr(images, "get"):
        images = images.get()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 of shape (n, H, W, 3), got {images.dtype} "
                         f"{images.shape}")
    if not (len(images) == len(names) == len(labels)):
        raise ValueError(f"images, names and labels differ in length: {len(images)}, "
                         f"{len(names)}, {len(labels)}")
    jobs = [(Path(out_dir) / _safe_component(lab, "label"),
             _safe_component(nm, "name") + ".png") for nm, lab in zip(names, labels)]
    written: list[Path] = []
    for img, (folder, fname) in zip(images, jobs):
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / fname,
                     lambda fh, img=img: Image.fromarray(img, mode="RGB").save(fh, format="PNG"))
        written.append(folder / fname)
    return written
