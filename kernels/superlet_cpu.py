"""FFT-based superlet transform on the CPU.

For each trace: one FFT, then for each block of whole frequency rows a product
with the precomputed wavelet spectra, one batched inverse FFT (pocketfft,
``workers`` threads) and a fused Numba step that turns the responses into the
geometric mean of the powers ``2 |r|^2`` (accumulated as a sum of logarithms).

Numerical notes
---------------
* Each trace is divided by a power of two close to its peak amplitude before
  the transform and the powers are multiplied back by its square afterwards:
  both steps are exact in binary floating point, and they keep float32 powers
  far from overflow and from subnormals.
* The geometric mean is ``exp(sum(log P_k) / o)``.  To save logarithms the
  powers are first multiplied in float64 in groups (6 for float32 powers, which
  cannot underflow a float64 product of 6; 1 for float64 powers), then the log
  of each group product is added.
"""
from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numba import njit, prange

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


@njit(parallel=True, cache=True)
def _spectral_product(spectra, x_hat, out):  # pragma: no cover - compiled
    for k in prange(spectra.shape[0]):
        for j in range(spectra.shape[1]):
            out[k, j] = spectra[k, j] * x_hat[j]


@njit(parallel=True, cache=True)
def _geomean_rows(y, n, starts, ends, group, scale2, out):  # pragma: no cover - compiled
    """out[r, :n] = scale2 * (prod_k 2|y[k, :n]|^2) ** (1 / o_r), k in starts[r]:ends[r]."""
    for r in prange(starts.shape[0]):
        k0 = starts[r]
        k1 = ends[r]
        inv_o = 1.0 / (k1 - k0)
        acc = np.ones(n, dtype=np.float64)
        lg = np.zeros(n, dtype=np.float64)
        cnt = 0
        for k in range(k0, k1):
            for i in range(n):
                v = y[k, i]
                re = np.float64(v.real)
                im = np.float64(v.imag)
                acc[i] *= 2.0 * (re * re + im * im)
            cnt += 1
            if cnt == group or k == k1 - 1:
                for i in range(n):
                    lg[i] += np.log(acc[i])
                    acc[i] = 1.0
                cnt = 0
        for i in range(n):
            out[r, i] = np.exp(lg[i] * inv_o) * scale2


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
        Threads of the inverse FFTs (``scipy.fft`` convention, -1 = all cores).

    Returns
    -------
    ndarray (n_traces, n_freqs, n_samples), same float dtype as ``x``
    """
    x = np.ascontiguousarray(x)
    n_tr, n_samp = x.shape
    if n_samp > bank.n_samples:
        raise ValueError(f"bank built for {bank.n_samples} samples, traces have {n_samp}")
    cdtype = bank.spectra[0].dtype
    group = 6 if x.dtype == np.float32 else 1
    out = np.zeros((n_tr, len(bank.freqs), n_samp), dtype=x.dtype)
    if n_valid is None:
        n_valid = np.full(n_tr, n_samp, dtype=np.int64)
    widest = max(s.size for s in bank.spectra)
    buf = np.empty(widest, dtype=cdtype)
    scales = pow2_scale(x)
    for b in range(n_tr):
        n = int(n_valid[b])
        if n == 0:
            continue
        xb = x[b] / x.dtype.type(scales[b])
        x_hats: dict[int, np.ndarray] = {}
        scale2 = float(scales[b]) ** 2
        for (r0, r1), n_fft, spec in zip(bank.blocks, bank.block_nfft, bank.spectra):
            if n_fft not in x_hats:
                x_hats[n_fft] = sfft.fft(xb, n=n_fft).astype(cdtype, copy=False)
            w0 = int(bank.starts[r0])
            prod = buf[: spec.size].reshape(spec.shape)
            _spectral_product(spec, x_hats[n_fft], prod)
            y = sfft.ifft(prod, axis=-1, workers=workers, overwrite_x=True)
            _geomean_rows(y, n, bank.starts[r0:r1] - w0, bank.ends[r0:r1] - w0, group,
                          scale2, out[b, r0:r1])
    return out
