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
(NumPy or CuPy); :func:`scalogram_to_image` chains them for one event (the
readable reference).  :func:`event_images` runs Stage 2 on whole batches, with
no per-event loop: on the GPU as array operations over the batch
(:func:`_images_batch`: per-event floors, minima and maxima by masked
reductions, the resize as two block-diagonal sparse products built from the
cached per-length weights), on the CPU as one fused Numba pass
(:mod:`kernels.scalogram_cpu`) per sub-batch and thread.  Both give the bytes
of the per-event reference (tests/test_images.py); ``colormap=False`` returns
the scaled scalar images (colour indices before ``jet``), resized to ``size``.

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
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine._util import available_cores, atomic_write, progress

__all__ = [
    "DEFAULT_FREQS",
    "IMAGE_SIZE",
    "box_sum",
    "end_of_event",
    "event_images",
    "jet",
    "matlab_colon",
    "prepare_trace",
    "prepare_traces",
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


def prepare_traces(traces: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage 0 for a whole batch: the end-of-event cut and mean removal as array
    operations over all traces at once.

    The same numbers as :func:`prepare_trace` per trace (the readable
    reference): the cut finds the first run of 5 equal samples that lies inside
    each trace, and the mean is NumPy's (pairwise) sum over each trace's kept
    samples divided by their count.

    Parameters
    ----------
    traces : sequence of array_like, or 2-D array (n_events, n_samples)
        Raw traces.

    Returns
    -------
    x : ndarray (n_events, max kept length) float64
        Cut, demeaned traces, zero past each one's length.
    lens : ndarray (n_events,) int64
        Kept samples of each trace.

    Raises
    ------
    ValueError
        No traces; a trace empty, not 1-D, not real, or with NaN/inf samples
        (named by its index).
    """
    if isinstance(traces, np.ndarray) and traces.ndim == 2 and traces.dtype.kind in "biuf":
        if traces.shape[0] == 0:
            raise ValueError("no traces given")
        if traces.shape[1] == 0:
            raise ValueError("trace 0 is empty (0 samples)")
        bad = ~np.isfinite(traces)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"trace {i} has a non-finite sample (NaN or inf) at index {j}: "
                             f"{traces[i, j]!r}")
        x = traces.astype(np.float64)
        n = np.full(len(x), x.shape[1], dtype=np.int64)
    else:
        checked = [_check_trace(t, f"trace {i}") for i, t in enumerate(traces)]
        if not checked:
            raise ValueError("no traces given")
        n = np.array([t.size for t in checked], dtype=np.int64)
        x = np.zeros((len(checked), int(n.max())), dtype=np.float64)
        for row, t in zip(x, checked):  # gathering ragged input: copies only
            row[: t.size] = t
    width = x.shape[1]
    if width >= 5:
        eq = x[:, 1:] == x[:, :-1]
        run = eq[:, :-3] & eq[:, 1:-2] & eq[:, 2:-1] & eq[:, 3:]  # x[j] == ... == x[j + 4]
        run &= np.arange(width - 4)[None, :] <= (n - 5)[:, None]  # inside the trace
        lens = np.where(run.any(axis=1), run.argmax(axis=1), n - 1) + 1
    else:
        lens = n.copy()
    keep = np.arange(width)[None, :] < lens[:, None]
    mean = np.sum(x, axis=1, where=keep) / lens
    x = np.where(keep, x - mean[:, None], 0.0)
    return np.ascontiguousarray(x[:, : int(lens.max())]), lens.astype(np.int64)


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


def uniform_image(xp=np, size=IMAGE_SIZE):
    """The image of a scalogram without contrast: every pixel ``jet(0)`` (dark blue)."""
    px = np.floor(_jet_lut_np()[0] * 255.0 + 0.5).astype(np.uint8)
    return xp.asarray(np.broadcast_to(px, (*_image_size(size), 3)).copy())


def _image_size(size) -> tuple[int, int]:
    """``size`` (int or (rows, cols)) as a checked pair of positive ints."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        rows, cols = (int(v) for v in size)
        ok = all(float(v).is_integer() for v in size) and rows > 0 and cols > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"size must be a positive int or a pair (rows, cols) of positive ints, "
                         f"got {size!r}")
    return rows, cols


def _to_uint8(x, xp):
    """MATLAB ``im2uint8``-style rounding of values in 0..255 (clip, round half up)."""
    return xp.floor(xp.clip(x, 0.0, 255.0) + 0.5).astype(xp.uint8)


def scalogram_to_image(power, xp=None, size=IMAGE_SIZE, colormap: bool = True):
    """Stage 2 for one scalogram: power (n_freqs, N) -> uint8 (227, 227, 3) RGB.

    The readable per-event reference of the batched path used by
    :func:`event_images` (which must give the same bytes).

    Parameters
    ----------
    power : xp array (n_freqs, N)
        Superlet power, low frequencies first; needs ``n_freqs >= 12`` and
        ``N >= 12`` (the 11 x 11 box sum).
    xp : module, optional
        NumPy or CuPy (default: that of ``power``).
    size : int or (int, int)
        Output rows and columns (227: the network input).
    colormap : bool
        True: ``jet(256)`` RGB image ``(rows, cols, 3)``; False: the scaled
        scalar image (colour index 0..255) resized to ``(rows, cols)``.

    Returns
    -------
    xp array (rows, cols, 3) or (rows, cols) uint8, low frequencies at the bottom.

    Raises
    ------
    ValueError
        Scalogram too small for the box sum, bad ``size``.
    """
    xp = xp or _xp_of(power)
    out_shape = _image_size(size)
    if power.ndim != 2 or power.shape[0] < BOX + 2 or power.shape[1] < BOX + 2:
        raise ValueError(f"scalogram must be 2-D with at least {BOX + 2} frequencies and "
                         f"{BOX + 2} samples for the {BOX + 1}x{BOX + 1} box sum, got shape "
                         f"{tuple(power.shape)}")
    idx = scale_to_uint8(box_sum(log_power(power, xp), BOX, xp), xp)
    if not colormap:
        grey = _resize_chw(idx[None].astype(xp.float64), out_shape, xp)[::-1, :, 0]
        return _to_uint8(grey, xp)
    lut_t = xp.asarray(np.ascontiguousarray(_jet_lut_np().T))  # (3, 256)
    rgb = _resize_chw(lut_t[:, idx.astype(xp.int64)], out_shape, xp)[::-1]
    return xp.floor(xp.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(xp.uint8)


# ----------------------------------------------------------------- batched Stage 2
def _block_diag_csr(mats, n_cols_each: int):
    """Block-diagonal CSR of CSR blocks, each widened to ``n_cols_each`` columns.

    Entries keep their order within each row, so products sum in the same
    order as with the single blocks (bit-identical results).
    """
    import scipy.sparse as sp

    indptr = [np.zeros(1, dtype=np.int64)]
    indices, data, nnz = [], [], 0
    for i, m in enumerate(mats):
        indptr.append(m.indptr[1:].astype(np.int64) + nnz)
        indices.append(m.indices.astype(np.int64) + i * n_cols_each)
        data.append(m.data)
        nnz += int(m.nnz)
    n_rows = sum(m.shape[0] for m in mats)
    return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)),
                         shape=(n_rows, len(mats) * n_cols_each))


def _block_resize_operator(in_lens, out_len: int, n_cols_each: int, xp):
    """Block-diagonal column-resize operator of a batch, built with ``xp`` operations.

    Block ``b`` is :func:`_resize_weights` ``(in_lens[b], out_len)`` widened to
    ``n_cols_each`` columns; all weights of the batch are computed at once (on
    the GPU: no per-length host work per batch).  Equal to the per-length
    operators up to rounding in the normalisation (the sums include zero
    padding taps), well below a colour level.

    Returns
    -------
    scipy.sparse or cupyx.scipy.sparse csr_matrix (B * out_len, B * n_cols_each)
    """
    import scipy.sparse as sp

    sparse = sp if xp is np else _sparse_module(xp)
    n_in = np.asarray(in_lens, dtype=np.int64)
    n_ev = len(n_in)
    scale_h = out_len / n_in.astype(np.float64)
    shrink_h = scale_h < 1
    width_h = np.where(shrink_h, 4.0 / scale_h, 4.0)
    taps_h = np.ceil(width_h).astype(np.int64) + 2
    n_taps = int(taps_h.max())
    scale = xp.asarray(scale_h)[:, None, None]
    kscale = xp.asarray(np.where(shrink_h, scale_h, 1.0))[:, None, None]
    width = xp.asarray(width_h)[:, None, None]
    x = xp.arange(1, out_len + 1, dtype=xp.float64)[None, :, None]
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = xp.floor(u - width / 2)
    tap = xp.arange(n_taps)[None, None, :]
    ind = left + tap  # (B, out_len, n_taps)
    t = kscale * (u - ind)
    ax = xp.abs(t)
    ax2, ax3 = ax * ax, ax * ax * ax
    cub = ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
           + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))
    wts = kscale * cub * (tap < xp.asarray(taps_h)[:, None, None])
    wts = wts / wts.sum(axis=2, keepdims=True)
    period = xp.asarray(2 * n_in)[:, None, None]
    m = xp.mod(ind.astype(xp.int64) - 1, period)
    cols = xp.where(m < period // 2, m, period - 1 - m)  # symmetric (mirror) boundary
    cols = cols + xp.asarray(np.arange(n_ev, dtype=np.int64) * n_cols_each)[:, None, None]
    rows = xp.broadcast_to(xp.arange(n_ev * out_len).reshape(n_ev, out_len, 1), wts.shape)
    keep = wts.ravel() != 0
    op = sparse.coo_matrix((wts.ravel()[keep], (rows.ravel()[keep], cols.ravel()[keep])),
                           shape=(n_ev * out_len, n_ev * n_cols_each)).tocsr()
    op.sum_duplicates()
    return op


_DEVICE_ROW_OPS: dict = {}


def _row_operator(n_events: int, in_len: int, out_len: int, xp):
    """``kron(I_B, row weights)`` on ``xp``'s device (cached)."""
    m = _row_operator_np(n_events, in_len, out_len)
    if xp is np:
        return m
    key = (n_events, in_len, out_len, getattr(xp, "__name__", ""))
    hit = _DEVICE_ROW_OPS.get(key)
    if hit is None:
        if len(_DEVICE_ROW_OPS) >= 8:
            _DEVICE_ROW_OPS.pop(next(iter(_DEVICE_ROW_OPS)))
        hit = _DEVICE_ROW_OPS[key] = _on_device(m, xp)
    return hit


@lru_cache(maxsize=8)
def _row_operator_np(n_events: int, in_len: int, out_len: int):
    import scipy.sparse as sp

    return sp.kron(sp.identity(n_events, format="csr"), _resize_weights(in_len, out_len),
                   format="csr")


def _sparse_module(xp):
    if xp is np:
        return None
    import cupyx.scipy.sparse as csp

    return csp


def _on_device(m, xp):
    csp = _sparse_module(xp)
    return m if csp is None else csp.csr_matrix(m)


def _masked_reduce(a, valid, fill, xp, how):
    """Per-event min/max over the valid columns: ``a`` (B, rows, cols), ``valid`` (B, cols)."""
    part = a.max(axis=1) if how == "max" else a.min(axis=1)  # (B, cols)
    part = xp.where(valid, part, fill)
    return part.max(axis=1) if how == "max" else part.min(axis=1)


def _images_batch(power, lens: np.ndarray, xp, size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE),
                  colormap: bool = True, batch_weights: bool | None = None):
    """Stage 2 for a batch: power (B, n_freqs, N_max) -> uint8 (B, rows, cols[, 3]).

    Event ``b`` uses its first ``lens[b]`` (>= 12) samples; whole-batch array
    operations throughout (no per-event loop): the arithmetic of
    :func:`scalogram_to_image` element for element, so the bytes are the same.
    The two resize products use block-diagonal operators: built from the
    cached per-length weights (NumPy: exact), or computed for the whole batch
    with ``xp`` operations (``batch_weights``, the default on the GPU: no
    per-length host work; equal within rounding).
    """
    if batch_weights is None:
        batch_weights = xp is not np
    n_ev, n_freqs, n_max = (int(v) for v in power.shape)
    lens = np.asarray(lens, dtype=np.int64)
    orow, ocol = size
    k = BOX + 1
    nr, nc = n_freqs - k, n_max - k
    # 2.1 log power with each event's own floor
    p = power.astype(xp.float64)
    col = xp.arange(n_max)[None, :]
    valid = col < xp.asarray(lens)[:, None]
    pmax = _masked_reduce(p, valid, 0.0, xp, "max")
    floor = xp.where(pmax > 0, pmax * POWER_FLOOR, 1.0)
    c = xp.zeros((n_ev, n_freqs + 1, n_max + 1), dtype=xp.float64)
    inner = c[:, 1:, 1:]
    xp.maximum(p, floor[:, None, None], out=inner)
    del p
    xp.log10(inner, out=inner)
    # 2.2 box sums by inclusion-exclusion on the 2-D cumulative sums
    inner[...] = xp.cumsum(inner, axis=1)
    inner[...] = xp.cumsum(inner, axis=2)
    s = c[:, k:k + nr, k:k + nc] - c[:, :nr, k:k + nc]
    s -= c[:, k:k + nr, :nc]
    s += c[:, :nr, :nc]
    del c, inner
    # 2.3 scaling to 0..255 per event (over its valid columns)
    valid = col[:, :nc] < xp.asarray(lens - k)[:, None]
    smin = _masked_reduce(s, valid, xp.inf, xp, "min")
    s -= smin[:, None, None]
    top = _masked_reduce(s, valid, -xp.inf, xp, "max")
    flat = ~(top > 0)
    s /= xp.where(flat, 1.0, top)[:, None, None]
    s *= 255.0
    xp.ceil(s, out=s)
    xp.clip(s, 0, 255, out=s)
    s[xp.asarray(flat)] = 0
    idx = s.astype(xp.uint8)  # (B, nr, nc)
    del s
    # 2.4 colours, laid out (B, cols, rows * channels) for the column product
    idx_t = idx.transpose(0, 2, 1)
    if colormap:
        lut = xp.asarray(_jet_lut_np())  # (256, 3)
        x = lut[idx_t.astype(xp.intp)]  # (B, nc, nr, 3)
        ch = 3
    else:
        x = xp.ascontiguousarray(idx_t).astype(xp.float64)[..., None]
        ch = 1
    x = x.reshape(n_ev * nc, nr * ch)
    # 2.5 bicubic resize: columns (per-event lengths), then rows
    if batch_weights:
        wc = _block_resize_operator(lens - k, ocol, nc, xp)
    else:
        wc = _on_device(_block_diag_csr([_resize_weights(int(n) - k, ocol) for n in lens], nc),
                        xp)
    h = wc @ x  # (B * ocol, nr * ch)
    h = h.reshape(n_ev, ocol, nr, ch).transpose(0, 2, 1, 3).reshape(n_ev * nr, ocol * ch)
    g = _row_operator(n_ev, nr, orow, xp) @ h  # (B * orow, ocol * ch)
    g = g.reshape(n_ev, orow, ocol, ch)[:, ::-1]
    if colormap:
        return xp.floor(xp.clip(g, 0.0, 1.0) * 255.0 + 0.5).astype(xp.uint8)
    return _to_uint8(g[..., 0], xp)


_TLS = threading.local()


def _images_batch_cpu(power: np.ndarray, lens: np.ndarray,
                      size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE),
                      colormap: bool = True) -> np.ndarray:
    """:func:`_images_batch` on the CPU: NumPy log10, then the fused Numba pass
    (:func:`kernels.scalogram_cpu.stage2_images`); the same bytes, far less
    memory traffic.  The log-power buffer is reused per thread."""
    from kernels.scalogram_cpu import floored_power, stage2_images

    n_ev, n_freqs, n_max = power.shape
    lens = np.asarray(lens, dtype=np.int64)
    valid = np.arange(n_max)[None, :] < lens[:, None]
    pmax = _masked_reduce(power, valid, 0, np, "max").astype(np.float64)
    floor = np.where(pmax > 0, pmax * POWER_FLOOR, 1.0)
    need = n_ev * n_freqs * n_max
    buf = getattr(_TLS, "lg", None)
    if buf is None or buf.size < need:
        buf = _TLS.lg = np.empty(need, dtype=np.float64)
    lg = buf[:need].reshape(n_ev, n_freqs, n_max)
    floored_power(power, floor, lg)  # = np.maximum(power, floor): float64, one pass
    np.log10(lg, out=lg)
    orow, ocol = size
    lut = _jet_lut_np() if colormap else np.arange(256, dtype=np.float64)[:, None]
    out = np.empty((n_ev, orow, ocol, lut.shape[1]), dtype=np.uint8)
    cols = [_resize_weights(int(n) - BOX - 1, ocol) for n in lens]
    stage2_images(lg, lens, BOX, lut, cols, _resize_weights(n_freqs - BOX - 1, orow), out,
                  grey=not colormap)
    return out if colormap else out[..., 0]


def event_images(traces: Sequence[Any], fs: float = 100.0, freqs=None, device: str = "cpu",
                 batch_size: int | None = None, c1: float = 3.0,
                 orders: Sequence[int] = (10, 20), dtype=np.float32, workers: int = -1,
                 show_progress: bool | None = None, size=IMAGE_SIZE, colormap: bool = True):
    """Seed-compatible 227 x 227 RGB images of event traces (Stages 0-2).

    Traces are cut and demeaned (Stage 0), sorted by length and transformed in
    batches zero-padded to the longest trace of the batch (exact: the
    convolution sees zeros outside each trace either way).  Stage 2 runs on
    whole batches (:func:`_images_batch`, the same bytes as
    :func:`scalogram_to_image` per event); on the CPU a batch is split over
    ``workers`` threads and overlaps the superlet of the next batch.

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
    batch_size : int, optional
        Events per superlet batch (default 16 on the CPU, 128 on CUDA).
    c1, orders, dtype, workers
        Superlet parameters (see :func:`engine.superlet.superlet`); ``workers``
        also bounds the threads of the CPU image steps.
    show_progress : bool, optional
        Progress bar over batches (default: :func:`engine._util.progress_enabled`).
    size : int or (int, int)
        Image rows and columns (default 227, the network input).
    colormap : bool
        True (default): ``jet(256)`` RGB images; False: the scaled scalar
        images (colour index 0..255 before the colour map, resized), for
        featurizers that want one channel.

    Returns
    -------
    ndarray or cupy.ndarray
        ``(n_events, rows, cols, 3)`` uint8, or ``(n_events, rows, cols)`` uint8
        with ``colormap=False``.

    Raises
    ------
    ValueError
        Empty or non-finite traces, bad parameters.

    Warns
    -----
    RuntimeWarning
        Events with fewer than 12 samples after the end-of-event cut (a
        constant trace is cut to 1 sample): they get :func:`uniform_image`
        (all zeros with ``colormap=False``).
    """
    from engine.superlet import _superlet_padded, check_superlet_params

    freqs = DEFAULT_FREQS if freqs is None else freqs
    prm = check_superlet_params(fs, freqs, c1, orders, True, dtype, device)
    if batch_size is None:
        batch_size = 128 if device == "cuda" else 16
    if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
            or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    out_shape = _image_size(size)
    if len(prm["freqs"]) < BOX + 2:
        raise ValueError(f"need at least {BOX + 2} frequencies for the box sum, "
                         f"got {len(prm['freqs'])}")
    if isinstance(traces, np.ndarray) and traces.ndim == 1:
        raise ValueError("traces must be a sequence of 1-D traces or a 2-D array; got one "
                         "1-D array (wrap it in a list for a single event)")
    prepared, lens = prepare_traces(traces)
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
    shape = (len(prepared), *out_shape) + ((3,) if colormap else ())
    out = xp.empty(shape, dtype=xp.uint8)
    if short.size:
        out[xp.asarray(short)] = (uniform_image(xp, out_shape) if colormap
                                  else xp.zeros(out_shape, dtype=xp.uint8))
    order = np.argsort(lens, kind="stable")
    order = order[lens[order] >= BOX + 2]
    n_threads = 1 if xp is not np else (
        available_cores() if workers is None or workers < 1 else int(workers))
    starts = range(0, len(order), batch_size)
    pool = ThreadPoolExecutor(max_workers=n_threads) if n_threads > 1 else None
    pending: list = []  # CPU: image steps of a batch overlap the next batch's superlet

    def settle(keep: int) -> None:
        while len(pending) > keep:
            where, futures = pending.pop(0)
            out[where] = np.concatenate([f.result() for f in futures])

    try:
        for b0 in progress(starts, desc="images", total=len(starts), unit="batch",
                           disable=None if show_progress is None else not show_progress):
            idx = order[b0: b0 + batch_size]
            padded = prepared[idx, : int(lens[idx].max())].astype(prm["dtype"])
            power = _superlet_padded(padded, lens[idx], prm, workers)
            if xp is not np:
                out[xp.asarray(idx)] = _images_batch(power, lens[idx], xp, out_shape, colormap)
            elif pool is None:
                out[idx] = _images_batch_cpu(power, lens[idx], out_shape, colormap)
            else:  # whole sub-batches per thread (NumPy and Numba release the GIL)
                cuts = np.linspace(0, len(idx), min(n_threads, len(idx)) + 1).astype(int)
                futures = [pool.submit(_images_batch_cpu,
                                       power[a:b, :, : int(lens[idx[a:b]].max())],
                                       lens[idx[a:b]], out_shape, colormap)
                           for a, b in zip(cuts[:-1], cuts[1:])]
                pending.append((idx, futures))
                settle(keep=1)
        settle(keep=0)
    finally:
        if pool is not None:
            pool.shutdown()
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
