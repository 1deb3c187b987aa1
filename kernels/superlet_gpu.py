"""Superlet transform for CUDA: CuPy cuFFT batches plus a fused Numba CUDA kernel.

The code is written against an array module ``xp`` (``cupy`` on the GPU), so
the very same path runs on NumPy in the tests.  The only CUDA-specific piece is
the fused kernel :func:`geomean_kernel` (powers, logs, geometric mean and
rescaling in one pass over the inverse-FFT output); it is compiled lazily, so
importing this module never imports ``numba.cuda``, and it runs under the
Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) on plain NumPy arrays.

The maths are those of :mod:`kernels.superlet_cpu`: per-trace power-of-two
normalisation, one FFT per trace and FFT length, spectral products with the
centred wavelet spectra of a :class:`~kernels.wavelets.WaveletBank`, batched
inverse FFTs, ``exp(mean(log(2 |r|^2)))`` per frequency row.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .wavelets import WaveletBank

__all__ = ["superlet_gpu", "geomean_kernel", "geomean_rows_xp", "launch_geomean"]

_KERNEL: Any = None
_DEVICE_SPECTRA: dict = {}


def _geomean(y, n, starts, ends, scale2, out):  # pragma: no cover - device code
    """Body of the fused kernel (see :func:`geomean_kernel`)."""
    i, rb = cuda.grid(2)  # noqa: F821 - ``cuda`` is bound by geomean_kernel()
    nrows = starts.shape[0]
    if i >= n or rb >= y.shape[0] * nrows:
        return
    b = rb // nrows
    r = rb - b * nrows
    k0 = starts[r]
    k1 = ends[r]
    s = 0.0
    zero = False
    for k in range(k0, k1):
        v = y[b, k, i]
        re = float(v.real)
        im = float(v.imag)
        p = 2.0 * (re * re + im * im)
        if p > 0.0:
            s += math.log(p)
        else:
            zero = True
    if zero:
        out[b, r, i] = 0.0
    else:
        out[b, r, i] = math.exp(s / (k1 - k0)) * scale2[b]


def geomean_kernel():
    """The fused Numba CUDA kernel (compiled on first use).

    Kernel signature ``(y, n, starts, ends, scale2, out)``: ``y`` is
    ``(B, n_wavelets_in_block, n_fft)`` complex, ``out`` is
    ``(B, n_rows_in_block, >= n)`` float; thread ``(i, b * n_rows + r)`` writes
    ``out[b, r, i] = scale2[b] * exp(sum_k log(2 |y[b, k, i]|^2) / o_r)`` for
    ``k`` in ``starts[r]:ends[r]`` (0 when a power is 0).  The sums run in
    float64.
    """
    global _KERNEL, cuda
    if _KERNEL is None:
        from numba import cuda  # the kernel body reads this module global

        _KERNEL = cuda.jit(_geomean)
    return _KERNEL


def launch_geomean(y, n: int, starts, ends, scale2, out, threads: int = 128) -> None:
    """Launch :func:`geomean_kernel` over ``n`` samples x ``B * n_rows`` rows.

    Parameters
    ----------
    y, starts, ends, scale2, out
        Device arrays (CuPy, or NumPy under the simulator); see
        :func:`geomean_kernel`.
    n : int
        Samples to compute.
    threads : int
        Threads per block along the samples.
    """
    kernel = geomean_kernel()
    rows = int(y.shape[0]) * int(starts.shape[0])
    grid = ((n + threads - 1) // threads, rows)
    kernel[grid, (threads, 1)](y, np.int64(n), starts, ends, scale2, out)


def geomean_rows_xp(y, n: int, starts, ends, scale2, xp):
    """Array-module version of the fused step (the kernel's reference).

    Parameters
    ----------
    y : xp array (B, n_wavelets_in_block, >= n), complex
    n : int
    starts, ends : sequences of int (n_rows_in_block,)
    scale2 : xp array (B,)
    xp : module

    Returns
    -------
    xp array (B, n_rows_in_block, n), float of ``y``'s precision
    """
    y = y[..., :n]
    power = 2.0 * (y.real * y.real + y.imag * y.imag)
    rows = []
    with np.errstate(divide="ignore"):
        for s, e in zip(starts, ends):
            lg = xp.log(power[:, int(s):int(e)]).sum(axis=1)
            rows.append(xp.exp(lg / (int(e) - int(s))))
    out = xp.stack(rows, axis=1)
    return out * scale2[:, None, None].astype(out.dtype)


def _device_spectra(bank: WaveletBank, xp) -> tuple:
    """The bank's spectra as ``xp`` arrays (cached per bank and module)."""
    if xp is np:
        return bank.spectra
    key = (id(bank), xp.__name__)
    hit = _DEVICE_SPECTRA.get(key)
    if hit is None or hit[0] is not bank:
        if len(_DEVICE_SPECTRA) >= 4:
            _DEVICE_SPECTRA.pop(next(iter(_DEVICE_SPECTRA)))
        hit = (bank, tuple(xp.asarray(s) for s in bank.spectra))
        _DEVICE_SPECTRA[key] = hit
    return hit[1]


def superlet_gpu(x, bank: WaveletBank, xp=None, fused: bool | None = None,
                 max_block_bytes: int = 256 * 2**20):
    """Superlet power of a batch of equal-length (zero-padded) traces on ``xp``.

    Inputs are trusted (see :func:`engine.superlet.superlet` for validation).

    Parameters
    ----------
    x : xp array (n_traces, n_samples), float32 or float64
        Traces, already on the device; dtype must match the bank's.
    bank : WaveletBank
        Built for ``n_samples`` (or more).
    xp : module, optional
        Array module; default ``cupy``.
    fused : bool, optional
        Use the fused Numba CUDA kernel for the power/log/mean step (default:
        true for CuPy, false otherwise; true with NumPy needs the simulator).
    max_block_bytes : int
        Upper bound on the complex product buffer of one inverse-FFT batch
        (traces are processed in chunks to respect it).

    Returns
    -------
    xp array (n_traces, n_freqs, n_samples), same float dtype as ``x``
    """
    if xp is None:
        from engine._util import require

        xp = require("cupy", feature="superlet on device='cuda'")
    if fused is None:
        fused = xp.__name__ == "cupy"
    n_tr, n_samp = x.shape
    if n_samp > bank.n_samples:
        raise ValueError(f"bank built for {bank.n_samples} samples, traces have {n_samp}")
    dtype = x.dtype
    out = xp.zeros((n_tr, len(bank.freqs), n_samp), dtype=dtype)
    peak = xp.abs(x).max(axis=1).astype(xp.float64) if n_samp else xp.zeros(n_tr)
    safe = xp.where(peak > 0, peak, 1.0)
    scales = xp.exp2(xp.floor(xp.log2(safe)))
    scale2 = scales * scales
    xs = x / scales[:, None].astype(dtype)
    spectra = _device_spectra(bank, xp)
    itemsize = spectra[0].dtype.itemsize
    widest = max(s.size for s in spectra)
    chunk = max(1, int(max_block_bytes // (widest * itemsize)))
    for c0 in range(0, n_tr, chunk):
        c1 = min(n_tr, c0 + chunk)
        x_hats: dict = {}
        for (r0, r1), n_fft, spec in zip(bank.blocks, bank.block_nfft, spectra):
            if n_fft not in x_hats:
                x_hats[n_fft] = xp.fft.fft(xs[c0:c1], n=n_fft, axis=-1).astype(spec.dtype)
            y = xp.fft.ifft(x_hats[n_fft][:, None, :] * spec[None], axis=-1)
            w0 = int(bank.starts[r0])
            st = bank.starts[r0:r1] - w0
            en = bank.ends[r0:r1] - w0
            if fused:
                blk = xp.empty((c1 - c0, r1 - r0, n_samp), dtype=dtype)
                launch_geomean(y, n_samp, xp.asarray(st), xp.asarray(en),
                               scale2[c0:c1], blk)
            else:
                blk = geomean_rows_xp(y, n_samp, st, en, scale2[c0:c1], xp)
            out[c0:c1, r0:r1] = blk.astype(dtype)
    return out

