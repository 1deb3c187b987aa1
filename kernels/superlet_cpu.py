"""FFT-based superlet transform on the CPU.

For each trace: one FFT per FFT length, then for each block of whole frequency
rows a product with the precomputed wavelet spectra, one batched inverse FFT
(pocketfft) and a fused Numba step that turns the responses into the geometric
mean of the powers ``2 |r|^2`` (accumulated as a sum of logarithms).

Parallelism is coarse: the (trace, row block) tasks run in a thread pool, each
task serial (pocketfft and the ``nogil`` Numba functions release the GIL).  This
avoids fine-grained barriers, which collapse on a shared, oversubscribed CPU.

Numerical notes
---------------
* Each trace is divided by a power of two close to its peak amplitude before
  the transform and the powers are multiplied back by its square afterwards:
  both steps are exact in binary floating point, and they keep float32 powers
  far from overflow and from subnormals.
* The geometric mean is ``exp(sum(log P_k) / o)``.  The float32 path saves
  logarithms by multiplying powers in float64 with exact exponent extraction
  (see :func:`_geomean_rows_f32`); the float64 path takes one log per power.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sfft
from numba import njit

from .wavelets import WaveletBank

__all__ = ["superlet_cpu", "pow2_scale"]


def pow2_scale(x: np.ndarray) -> np.ndarray:
    """Per-trace power-of-two scale ``2**floor(log2(max|x|))`` (1 for all-zero traces).

    Parameters
    ----------
    x : ndarray (n_traces, n_samples)

    Returns
    -------
    ndarray (n_traces,) float64
    """
    peak = np.max(np.abs(x), axis=-1).astype(np.float64) if x.shape[-1] else np.zeros(len(x))
    out = np.ones_like(peak)
    nz = peak > 0
    out[nz] = np.exp2(np.floor(np.log2(peak[nz])))
    return out


@njit(nogil=True, cache=True)
def _spectral_product(spectra, x_hat, out):  # pragma: no cover - compiled
    for k in range(spectra.shape[0]):
        for j in range(spectra.shape[1]):
            out[k, j] = spectra[k, j] * x_hat[j]


@njit(nogil=True, cache=True)
def _geomean_rows_f32(y, n, starts, ends, scale2, out):  # pragma: no cover - compiled
    """out[r, :n] = scale2 * (prod_k 2|y[k, :n]|^2) ** (1 / o_r), k in starts[r]:ends[r].

    For complex64 responses.  Powers are computed and multiplied in float64;
    every 3 factors the running product is split into exponent (summed as an
    integer) and mantissa (kept in [1, 2)) by bit manipulation, so one
    logarithm per output sample suffices and the loops vectorise.  A float32
    component is >= 1.4e-45, so a power is 0 or >= 2e-90 and 3 of them cannot
    underflow float64; normalised traces give powers <= 2 (no overflow).  A
    zero power makes the output 0.
    """
    acc = np.empty(n, dtype=np.float64)
    accb = acc.view(np.int64)
    ex = np.empty(n, dtype=np.int64)
    zero = np.empty(n, dtype=np.bool_)
    ln2 = np.log(2.0)
    for r in range(starts.shape[0]):
        k0 = starts[r]
        k1 = ends[r]
        inv_o = 1.0 / (k1 - k0)
        acc[:] = 1.0
        ex[:] = 0
        zero[:] = False
        cnt = 0
        for k in range(k0, k1):
            for i in range(n):
                v = y[k, i]
                re = np.float64(v.real)
                im = np.float64(v.imag)
                acc[i] *= 2.0 * (re * re + im * im)
            cnt += 1
            if cnt == 3 or k == k1 - 1:
                cnt = 0
                for i in range(n):
                    bits = accb[i]
                    e = (bits >> 52) & 0x7FF
                    zero[i] |= e == 0
                    ex[i] += e - 1023
                    accb[i] = (bits & 0x800FFFFFFFFFFFFF) | 0x3FF0000000000000
        for i in range(n):
            if zero[i]:
                out[r, i] = 0.0
            else:
                out[r, i] = np.exp((np.log(acc[i]) + ex[i] * ln2) * inv_o) * scale2


@njit(nogil=True, cache=True)
def _geomean_rows_f64(y, n, starts, ends, scale2, out):  # pragma: no cover - compiled
    """As :func:`_geomean_rows_f32` for complex128: one log per power (exact path)."""
    lg = np.empty(n, dtype=np.float64)
    for r in range(starts.shape[0]):
        k0 = starts[r]
        k1 = ends[r]
        inv_o = 1.0 / (k1 - k0)
        lg[:] = 0.0
        for k in range(k0, k1):
            for i in range(n):
                v = y[k, i]
                lg[i] += np.log(2.0 * (v.real * v.real + v.imag * v.imag))
        for i in range(n):
            out[r, i] = np.exp(lg[i] * inv_o) * scale2


def _cores() -> int:
    """Cores this process may run on (its affinity: a pinned worker uses only its own)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def superlet_cpu(x: np.ndarray, bank: WaveletBank, n_valid: np.ndarray | None = None,
                 workers: int = -1) -> np.ndarray:
    """Superlet power of a batch of equal-length (zero-padded) traces.

    Inputs are trusted (see :func:`engine.superlet.superlet` for validation).

    Parameters
    ----------
    x : ndarray (n_traces, n_samples), float32 or float64
        Traces; the dtype selects the precision and must match the bank's.
    bank : WaveletBank
        From :func:`kernels.wavelets.wavelet_bank` built for ``n_samples``
        (or more).
    n_valid : ndarray (n_traces,), optional
        Samples of each trace that are wanted (the rest of the row is left 0);
        default: all.
    workers : int
        Threads (-1: all cores).

    Returns
    -------
    ndarray (n_traces, n_freqs, n_samples), same float dtype as ``x``
    """
    x = np.ascontiguousarray(x)
    n_tr, n_samp = x.shape
    if n_samp > bank.n_samples:
        raise ValueError(f"bank built for {bank.n_samples} samples, traces have {n_samp}")
    cdtype = bank.spectra[0].dtype
    geomean = _geomean_rows_f32 if cdtype == np.complex64 else _geomean_rows_f64
    out = np.zeros((n_tr, len(bank.freqs), n_samp), dtype=x.dtype)
    if n_valid is None:
        n_valid = np.full(n_tr, n_samp, dtype=np.int64)
    n_threads = _cores() if workers is None or workers < 1 else int(workers)
    scales = pow2_scale(x)
    widest = max(s.size for s in bank.spectra)
    local = threading.local()
    x_hats: dict[tuple[int, int], np.ndarray] = {}

    def spectrum(b: int, n_fft: int) -> np.ndarray:
        key = (b, n_fft)
        if key not in x_hats:  # benign race: at worst computed twice
            xb = x[b] / x.dtype.type(scales[b])
            x_hats[key] = sfft.fft(xb, n=n_fft).astype(cdtype, copy=False)
        return x_hats[key]

    def task(job: tuple[int, int]) -> None:
        b, k = job
        (r0, r1), n_fft, spec = bank.blocks[k], bank.block_nfft[k], bank.spectra[k]
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty(widest, dtype=cdtype)
        prod = buf[: spec.size].reshape(spec.shape)
        _spectral_product(spec, spectrum(b, n_fft), prod)
        y = sfft.ifft(prod, axis=-1, workers=1, overwrite_x=True)
        w0 = int(bank.starts[r0])
        geomean(y, int(n_valid[b]), bank.starts[r0:r1] - w0, bank.ends[r0:r1] - w0,
                      float(scales[b]) ** 2, out[b, r0:r1])

    jobs = [(b, k) for b in range(n_tr) if n_valid[b] > 0 for k in range(len(bank.blocks))]
    # longest blocks (low frequencies, longest FFTs) first for a balanced finish
    jobs.sort(key=lambda j: -bank.spectra[j[1]].size)
    if n_threads == 1 or len(jobs) == 1:
        for j in jobs:
            task(j)
    else:
        with ThreadPoolExecutor(max_workers=min(n_threads, len(jobs))) as pool:
            for _ in pool.map(task, jobs):
                pass
    return out
