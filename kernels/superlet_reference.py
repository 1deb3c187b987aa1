"""Slow, obvious twins of the kernels, written from docs/method.md.

The readable references that the fast kernels are tested against (as ObsPy
keeps ``recursive_sta_lta_py`` beside its C twin): nothing here is fast or
clever on purpose: loops and ``np.convolve`` in float64, mirroring the
published ``aslt.m`` / ``smoothed_N.m`` line by line.  Used by the tests and
as the "published cost" baseline of the benchmarks.

Functions
---------
ref_orders, ref_morlet
    Orders and wavelet taps, one at a time.
ref_superlet
    Direct-convolution superlet of one trace (twin of
    :func:`kernels.superlet_cpu.superlet_cpu` and
    :func:`kernels.superlet_gpu.superlet_gpu`).
ref_superlet_fast_direct
    Direct convolution with precomputed wavelets (benchmark baseline).
ref_box_sum
    ``smoothed_N.m``: the 11 x 11 box sums of the scalogram images.
"""
from __future__ import annotations

import math

import numpy as np

from .wavelets import morlet, superlet_cycles, superlet_orders

__all__ = ["ref_box_sum", "ref_morlet", "ref_orders", "ref_superlet",
           "ref_superlet_fast_direct"]


def ref_orders(n: int, o1: int, o2: int) -> list[int]:
    """fix(linspace(o1, o2, n)) written out."""
    if n == 1:
        return [int(o2)]
    return [int(math.trunc(o1 + (o2 - o1) * i / (n - 1))) for i in range(n)]


def ref_morlet(f: float, c: float, fs: float) -> np.ndarray:
    """cxmorlet of aslt.m, one tap at a time."""
    sd = (c / 2) * (1 / f) / 2.5
    wl = 2 * math.floor(math.trunc(6 * sd * fs) / 2) + 1
    off = wl // 2
    w = np.zeros(wl, dtype=np.complex128)
    gi = 0.0
    for i in range(wl):
        t = (i - off) / fs
        g = 1 / (sd * math.sqrt(2 * math.pi)) * math.exp(-(t ** 2) / (2 * sd ** 2))
        w[i] = np.exp(2j * math.pi * f * t) * g
        gi += g
    return w / gi


def ref_superlet(x, fs, freqs, c1=3.0, orders=(10, 20), multiplicative=True) -> np.ndarray:
    """Direct-convolution superlet of one trace: (n_freqs, N) float64."""
    x = np.asarray(x, dtype=np.float64)
    ords = ref_orders(len(freqs), orders[0], orders[1])
    out = np.zeros((len(freqs), len(x)))
    for i, f in enumerate(freqs):
        temp = np.ones(len(x))
        for k in range(1, ords[i] + 1):
            c = c1 * k if multiplicative else c1 + (k - 1)
            r = np.convolve(x, ref_morlet(f, c, fs), mode="full")
            half = (len(r) - len(x)) // 2
            r = r[half: half + len(x)]  # 'same': centre of the kernel at the sample
            temp = temp * (2 * np.abs(r) ** 2)
        out[i] = temp ** (1 / ords[i])
    return out


def ref_superlet_fast_direct(x, fs, freqs, c1=3.0, orders=(10, 20)) -> np.ndarray:
    """Direct convolution with ``np.convolve`` per wavelet (precomputed wavelets).

    The "published cost" baseline for the benchmark: the same work as aslt.m
    (about 3e9 complex-by-real multiply-adds for a 6000-sample event).
    """
    x = np.asarray(x, dtype=np.float64)
    ords = superlet_orders(len(freqs), orders)
    out = np.empty((len(freqs), len(x)))
    for i, f in enumerate(freqs):
        lg = np.zeros(len(x))
        for c in superlet_cycles(c1, int(ords[i])):
            r = np.convolve(x, morlet(float(f), float(c), fs), mode="same")
            lg += np.log(2 * (r.real ** 2 + r.imag ** 2))
        out[i] = np.exp(lg / ords[i])
    return out


def ref_box_sum(s: np.ndarray, w: int = 10) -> np.ndarray:
    """smoothed_N.m: sums of (w+1) x (w+1) blocks, (rows-w-1) x (cols-w-1)."""
    a, b = s.shape
    out = np.zeros((a - w - 1, b - w - 1))
    for i in range(a - w - 1):
        for j in range(b - w - 1):
            out[i, j] = s[i: i + w + 1, j: j + w + 1].sum()
    return out
