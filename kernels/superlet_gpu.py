"""Superlet transform for CUDA: CuPy cuFFT batches plus one fused CUDA kernel.

The code is written against an array module ``xp`` (``cupy`` on the GPU), so
the very same path runs on NumPy in the tests.  The only CUDA-specific piece is
the fused geometric-mean step (:mod:`kernels.cuda_geomean`, CUDA C++ compiled
by CuPy's NVRTC): powers, logarithms, the mean over the order and the
rescaling in one pass over the inverse-FFT output, written straight into the
result.  Nothing here imports Numba: a broken ``numba-cuda`` cannot stop the
GPU path.  When the kernel cannot be compiled, :func:`superlet_gpu` logs a
warning once and uses the array-module step :func:`geomean_rows_xp` (slower,
same numbers), unless ``fused=True`` asks for the kernel explicitly;
:func:`fused_status` lets a caller check this at start-up.

The maths are those of :mod:`kernels.superlet_cpu`: per-trace power-of-two
normalisation, one FFT per trace and FFT length, spectral products with the
centred wavelet spectra of a :class:`~kernels.wavelets.WaveletBank`, batched
inverse FFTs, ``exp(mean(log(2 |r|^2)))`` per frequency row.

Device memory and passes
------------------------
* The bank's spectra are copied to the device once per block and FFT length
  (cached on :attr:`WaveletBank.spectra_keys`, byte-bounded LRU,
  :data:`DEVICE_SPECTRA_BYTES`); FFT lengths come from a short ladder
  (:func:`kernels.wavelets.fft_length`), so a run meets a few sizes, a few
  cached spectra and a few cuFFT plans (CuPy's plan cache).
* complex64 throughout for float32 (complex128 for float64).  One product
  buffer is allocated per call and reused by every block; the inverse FFT runs
  in place and unnormalised (``norm="forward"``), its ``1 / n_fft`` being
  folded into the output factor of the fused step, which saves a pass.
* Traces go through in chunks of a fixed size, so a block meets at most two
  inverse-FFT shapes (full and last chunk): the plan cache is sized to keep
  them all (one plan per shape, built once per process).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from .cuda_geomean import KernelUnavailable, launch_geomean, load_geomean
from .wavelets import WaveletBank

__all__ = ["DEVICE_SPECTRA_BYTES", "KernelUnavailable", "fused_status", "geomean_rows_xp",
           "superlet_gpu"]

log = logging.getLogger(__name__)

#: Device memory the cached wavelet spectra may hold.
DEVICE_SPECTRA_BYTES = 8 << 30

_DEVICE_SPECTRA: OrderedDict = OrderedDict()
_LOCK = threading.Lock()
_WARNED: set = set()


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(f"superlet on device='cuda' needs the optional package 'cupy' ({exc}); "
                          f"install it with: pip install 'microquake-engine[gpu]'") from exc
    return cupy


def _is_cupy(xp: Any) -> bool:
    return getattr(xp, "__name__", "") == "cupy"


def fused_status(xp: Any = None) -> tuple[bool, str]:
    """Whether the fused CUDA kernel is usable with ``xp``, and why not.

    Compiles the kernel (once per process and device) so that a caller can
    report at start-up which path a CUDA run will take.

    Parameters
    ----------
    xp : module, optional
        Array module (default ``cupy``).

    Returns
    -------
    (bool, str)
        ``(True, "fused CUDA kernel")`` or ``(False, reason)``.
    """
    xp = _import_cupy() if xp is None else xp
    if not _is_cupy(xp):
        return False, f"array module {getattr(xp, '__name__', xp)!r} is not cupy"
    try:
        load_geomean(xp)
    except KernelUnavailable as exc:
        return False, str(exc)
    return True, "fused CUDA kernel"


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
    # the factor in float64: folded-in 1/n_fft**2 can make it tiny for float32
    return (out * scale2[:, None, None].astype(xp.float64)).astype(out.dtype)


def _device_spectra(bank: WaveletBank, xp) -> tuple:
    """The bank's spectra as ``xp`` arrays, cached per block and FFT length."""
    if xp is np or not bank.spectra_keys:
        return bank.spectra
    dev = ""
    if _is_cupy(xp):
        dev = int(xp.cuda.Device().id)
    out = []
    with _LOCK:
        for key, spec in zip(bank.spectra_keys, bank.spectra):
            k = (key, getattr(xp, "__name__", ""), dev)
            hit = _DEVICE_SPECTRA.get(k)
            if hit is None:
                hit = _DEVICE_SPECTRA[k] = xp.asarray(spec)
            _DEVICE_SPECTRA.move_to_end(k)
            out.append(hit)
        total = sum(int(v.nbytes) for v in _DEVICE_SPECTRA.values())
        while total > DEVICE_SPECTRA_BYTES and len(_DEVICE_SPECTRA) > len(out):
            _, old = _DEVICE_SPECTRA.popitem(last=False)
            total -= int(old.nbytes)
    return tuple(out)


def _fft_module(xp, n_plans: int = 0) -> Any:
    """cupyx.scipy.fft for CuPy (in-place, plan-cached), scipy.fft for NumPy arrays.

    With CuPy, the plan cache is enlarged to hold ``n_plans`` plans (one per
    block shape and chunk size of a transform), so that no plan is rebuilt
    from one batch to the next.
    """
    if _is_cupy(xp):
        import cupyx.scipy.fft as fft

        try:
            cache = xp.fft.config.get_plan_cache()
            if 0 <= cache.get_size() < n_plans:
                cache.set_size(n_plans)
        except AttributeError:  # older CuPy: default cache
            pass
        return fft
    import scipy.fft as fft

    return fft


def _kernels_or_fallback(xp, fused: bool | None) -> dict | None:
    if fused is False or (fused is None and not _is_cupy(xp)):
        return None
    try:
        return load_geomean(xp)
    except KernelUnavailable as exc:
        if fused:
            raise
        if "geomean" not in _WARNED:
            _WARNED.add("geomean")
            log.warning("%s; the superlet uses the array-module step instead (same results, "
                        "slower)", exc)
        return None


def superlet_gpu(x, bank: WaveletBank, xp=None, fused: bool | None = None,
                 max_block_bytes: int = 512 * 2**20):
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
        ``None`` (default): the fused CUDA kernel with CuPy, falling back to
        the array-module step with a logged warning if it cannot be compiled;
        ``True``: the kernel or :class:`KernelUnavailable`; ``False``: the
        array-module step.
    max_block_bytes : int
        Upper bound on the complex product buffer of one inverse-FFT batch
        (traces are processed in chunks to respect it).

    Returns
    -------
    xp array (n_traces, n_freqs, n_samples), same float dtype as ``x``

    Raises
    ------
    KernelUnavailable
        ``fused=True`` and the kernel cannot be compiled.
    """
    if xp is None:
        xp = _import_cupy()
    kernels = _kernels_or_fallback(xp, fused)
    n_tr, n_samp = (int(s) for s in x.shape)
    if n_samp > bank.n_samples:
        raise ValueError(f"bank built for {bank.n_samples} samples, traces have {n_samp}")
    dtype = np.dtype(x.dtype)
    cdtype = np.complex64 if dtype == np.float32 else np.complex128
    n_freqs = len(bank.freqs)
    out = xp.empty((n_tr, n_freqs, n_samp), dtype=dtype)
    if n_tr == 0 or n_samp == 0:
        return xp.zeros((n_tr, n_freqs, n_samp), dtype=dtype)
    peak = xp.abs(x).max(axis=1).astype(xp.float64)
    safe = xp.where(peak > 0, peak, 1.0)
    scales = xp.exp2(xp.floor(xp.log2(safe)))
    scale2 = scales * scales
    xs = x / scales[:, None].astype(dtype)
    spectra = _device_spectra(bank, xp)
    fft = _fft_module(xp, n_plans=2 * len(bank.blocks) + 8)
    itemsize = np.dtype(cdtype).itemsize
    widest = max(int(s.size) for s in spectra)
    chunk = max(1, min(n_tr, int(max_block_bytes // (widest * itemsize))))
    buf = xp.empty(chunk * widest, dtype=cdtype)
    rows = []
    for r0, r1 in bank.blocks:
        w0 = int(bank.starts[r0])
        st = np.asarray(bank.starts[r0:r1] - w0, dtype=np.int32)
        en = np.asarray(bank.ends[r0:r1] - w0, dtype=np.int32)
        rows.append((st, en, (xp.asarray(st), xp.asarray(en)) if kernels else None))
    for c0 in range(0, n_tr, chunk):
        c1 = min(n_tr, c0 + chunk)
        m = c1 - c0
        x_hats: dict = {}
        for (r0, r1), n_fft, spec, (st, en, dev_rows) in zip(bank.blocks, bank.block_nfft,
                                                            spectra, rows):
            if n_fft not in x_hats:
                x_hats[n_fft] = fft.fft(xs[c0:c1], n=n_fft, axis=-1).astype(cdtype, copy=False)
            nw = int(spec.shape[0])
            prod = buf[: m * nw * n_fft].reshape(m, nw, n_fft)
            xp.multiply(x_hats[n_fft][:, None, :], spec[None], out=prod)
            # unnormalised inverse (in place where the backend can): 1/n_fft goes into scale2
            y = fft.ifft(prod, axis=-1, norm="forward", overwrite_x=True)
            s2 = scale2[c0:c1] / (float(n_fft) * float(n_fft))
            if kernels is not None:
                y = xp.ascontiguousarray(y)
                launch_geomean(kernels, y, dev_rows[0], dev_rows[1], s2, out[c0:c1], n_samp,
                               r0)
            else:
                out[c0:c1, r0:r1] = geomean_rows_xp(y, n_samp, st, en, s2, xp).astype(dtype)
    return out
