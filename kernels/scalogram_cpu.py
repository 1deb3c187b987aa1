"""Stage 2 of the scalogram images on the CPU, fused in one Numba pass per event.

From the log-power of a batch of scalograms to uint8 images: 11 x 11 box sums
(inclusion-exclusion on the 2-D cumulative sums), min-max scaling to colour
indices 0..255 (rounded up), the colour look-up and the bicubic resize as two
sparse products (columns, then rows), flip and rounding.  It repeats the
arithmetic of the array-module steps in :mod:`engine.images` operation for
operation (same sums in the same order, IEEE operations only, no fast-math),
so the bytes are the same; what it saves is memory traffic: no float64 colour
image and no full-size temporaries, each event's work staying in cache-sized
buffers reused across the batch.

The readable twins are :func:`engine.images.scalogram_to_image` (per event)
and ``kernels.superlet_reference.ref_box_sum``; ``tests/test_images.py``
checks byte equality.
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["floored_power", "stage2_images"]


@njit(nogil=True, cache=True)
def floored_power(power, floor, out):  # pragma: no cover - compiled
    """``out[b] = max(float64(power[b]), floor[b])`` (the zero-power floor before log10)."""
    for b in range(power.shape[0]):
        f = floor[b]
        for i in range(power.shape[1]):
            for j in range(power.shape[2]):
                v = np.float64(power[b, i, j])
                out[b, i, j] = v if v > f else f
    return out


@njit(nogil=True, cache=True)
def _stage2(lg, lens, box, lut, lut_div, grey, cptr, cidx, cdat, coff, poff, rptr, ridx, rdat,
            out):  # pragma: no cover - compiled
    n_ev, n_freqs, n_max = lg.shape
    k = box + 1
    nr = n_freqs - k
    orow = out.shape[1]
    ocol = out.shape[2]
    ch = lut.shape[1]
    q = nr * ch
    c = np.zeros((n_freqs + 1, n_max + 1))
    mc = max(n_max - k, 1)
    sb = np.empty((nr, mc))
    idx = np.empty((nr, mc), dtype=np.uint8)
    cmin = np.empty(mc)
    cmax = np.empty(mc)
    x = np.empty((mc, q), dtype=np.uint8)
    h = np.zeros((nr, ocol * ch))
    for b in range(n_ev):
        n = lens[b]
        nc = n - k
        # 2-D cumulative sums: along frequency, then along time (as cumsum(cumsum(., 0), 1));
        # the time pass runs over all rows at once (independent chains, no stall)
        for j in range(n):
            c[1, j + 1] = lg[b, 0, j]
        for i in range(1, n_freqs):
            for j in range(n):
                c[i + 1, j + 1] = c[i, j + 1] + lg[b, i, j]
        for j in range(1, n):
            for i in range(1, n_freqs + 1):
                c[i, j + 1] = c[i, j] + c[i, j + 1]
        # box sums, with running minima and maxima per column (independent lanes)
        for j in range(nc):
            cmin[j] = np.inf
            cmax[j] = -np.inf
        for i in range(nr):
            for j in range(nc):
                v = c[i + k, j + k] - c[i, j + k] - c[i + k, j] + c[i, j]
                sb[i, j] = v
                cmin[j] = v if v < cmin[j] else cmin[j]
                cmax[j] = v if v > cmax[j] else cmax[j]
        smin = np.inf
        smax = -np.inf
        for j in range(nc):
            smin = min(smin, cmin[j])
            smax = max(smax, cmax[j])
        # max(s - smin) == fl(max(s) - smin): rounding is monotonic
        top = smax - smin
        # colour index: ceil((s - smin) / top * 255), clipped; 0 without contrast
        if top > 0:
            for i in range(nr):
                for j in range(nc):
                    v = np.ceil((sb[i, j] - smin) / top * 255.0)
                    idx[i, j] = np.uint8(min(max(v, 0.0), 255.0))
        else:
            idx[:, :nc] = 0
        # colour look-up as integers (colour * lut_div), laid out (nc, nr * ch): 8x less
        # memory than float64 colours, same sums (see stage2_images)
        if ch == 3:
            for j in range(nc):
                for i in range(nr):
                    v = idx[i, j]
                    x[j, 3 * i] = lut[v, 0]
                    x[j, 3 * i + 1] = lut[v, 1]
                    x[j, 3 * i + 2] = lut[v, 2]
        else:
            for j in range(nc):
                for i in range(nr):
                    v = idx[i, j]
                    for cc in range(ch):
                        x[j, i * ch + cc] = lut[v, cc]
        # column resize: h[i, jo * ch + cc] = sum_t w[jo, t] * x[t, i * ch + cc]
        p0 = poff[b]
        d0 = coff[b]
        acc = np.empty(q)
        for jo in range(ocol):
            acc[:] = 0.0
            for jj in range(d0 + cptr[p0 + jo], d0 + cptr[p0 + jo + 1]):
                a = cdat[jj]
                col = cidx[jj]
                for e in range(q):
                    acc[e] += a * x[col, e]
            for i in range(nr):
                for cc in range(ch):
                    h[i, jo * ch + cc] = acc[i * ch + cc] / lut_div
        # row resize, flip, rounding
        m = ocol * ch
        row = np.empty(m)
        for io in range(orow):
            row[:] = 0.0
            for jj in range(rptr[io], rptr[io + 1]):
                a = rdat[jj]
                r = ridx[jj]
                for e in range(m):
                    row[e] += a * h[r, e]
            dst = orow - 1 - io
            for jo in range(ocol):
                for cc in range(ch):
                    v = row[jo * ch + cc]
                    if grey:
                        v = np.floor(min(max(v, 0.0), 255.0) + 0.5)
                    else:
                        v = np.floor(min(max(v, 0.0), 1.0) * 255.0 + 0.5)
                    out[b, dst, jo, cc] = np.uint8(v)


def stage2_images(lg: np.ndarray, lens: np.ndarray, box: int, lut: np.ndarray, col_ops,
                  row_op, out: np.ndarray, grey: bool) -> np.ndarray:
    """Box sums, scaling, colours, resize and rounding of a batch of log-power scalograms.

    Inputs are trusted (:func:`engine.images.event_images` checks them).

    Parameters
    ----------
    lg : ndarray (B, n_freqs, N_max) float64
        ``log10`` of the floored power; event ``b`` uses its first ``lens[b]``
        samples.
    lens : ndarray (B,) int
        Samples of each event (>= box + 2).
    box : int
        Box half-size ``w`` (sums over ``(w + 1) x (w + 1)``).
    lut : ndarray (256, ch) float64
        Colour of each index (``jet(256)``; for grey images ``arange(256)[:, None]``).
        Its entries times a power of two ``d <= 256`` must be integers in
        0..255 (``jet(256)``: multiples of 1/64): the colours are stored as
        those integers and the column sums divided by ``d`` at the end, which
        is exact (scaling by a power of two commutes with rounding), so the
        sums equal those over float64 colours bit for bit.
    col_ops : sequence of scipy.sparse.csr_matrix
        Per event, the column resize ``(out_cols, lens[b] - box - 1)``.
    row_op : scipy.sparse.csr_matrix
        Row resize ``(out_rows, n_freqs - box - 1)``.
    out : ndarray (B, out_rows, out_cols, ch) uint8
        Written in place (rows flipped: low frequencies at the bottom).
    grey : bool
        Round as 0..255 values (grey) instead of 0..1 colours.

    Returns
    -------
    ndarray
        ``out``.
    """
    lut = np.asarray(lut, dtype=np.float64)
    for d in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        scaled = lut * d
        if np.all(scaled == np.round(scaled)) and scaled.min() >= 0 and scaled.max() <= 255:
            break
    else:
        raise ValueError("lut entries times a power of two <= 256 must be integers in 0..255")
    lut_int = np.ascontiguousarray(np.round(scaled).astype(np.uint8))
    cptr = np.concatenate([m.indptr for m in col_ops]).astype(np.int64)
    cidx = np.concatenate([m.indices for m in col_ops]).astype(np.int64)
    cdat = np.concatenate([m.data for m in col_ops]).astype(np.float64)
    coff = np.concatenate([[0], np.cumsum([m.nnz for m in col_ops])]).astype(np.int64)
    poff = np.arange(len(col_ops), dtype=np.int64) * (out.shape[2] + 1)
    _stage2(lg, np.asarray(lens, dtype=np.int64), int(box), lut_int, float(d), bool(grey),
            cptr, cidx, cdat, coff, poff, row_op.indptr.astype(np.int64),
            row_op.indices.astype(np.int64), row_op.data.astype(np.float64), out)
    return out
