"""Public superlet transform: one validated entry point over the CPU and CUDA kernels.

``superlet`` computes the adaptive superlet scalogram of ``docs/method.md``
(Stage 1); ``cwt`` is its order-1 special case (plain complex Morlet CWT power).
All parameters are checked here, once; the kernels in :mod:`kernels` trust them.
"""
from __future__ import annotations

import logging
import math
from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np

from kernels.wavelets import cached_layout, wavelet_bank

__all__ = ["superlet", "cwt", "check_superlet_params", "check_device", "longest_wavelet"]

log = logging.getLogger(__name__)

_DEVICES = ("cpu", "cuda")


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, Integral):
        return True
    return isinstance(v, Real) and math.isfinite(float(v)) and float(v).is_integer()


def check_superlet_params(fs, freqs, c1, orders, multiplicative=True, dtype=np.float32,
                          device="cpu") -> dict:
    """Validate the transform parameters and return them normalised.

    Parameters
    ----------
    fs, freqs, c1, orders, multiplicative, dtype, device
        See :func:`superlet`.

    Returns
    -------
    dict
        Keys ``fs`` (float), ``freqs`` (float64 array), ``c1`` (float),
        ``orders`` ((int, int)), ``multiplicative`` (bool), ``dtype``
        (numpy dtype), ``device`` (str).

    Raises
    ------
    ValueError
        Naming the parameter, the value received and what is expected.
    """
    try:
        fs_f = float(fs)
    except (TypeError, ValueError):
        raise ValueError(f"fs must be a positive number of Hz, got {fs!r}") from None
    if not math.isfinite(fs_f) or fs_f <= 0:
        raise ValueError(f"fs must be a positive finite number of Hz, got {fs!r}")
    try:
        fr = np.asarray(freqs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"freqs must be a 1-D sequence of numbers, got {freqs!r}") from None
    if fr.ndim != 1 or fr.size == 0:
        raise ValueError(f"freqs must be a non-empty 1-D sequence, got shape {fr.shape}")
    nyq = fs_f / 2.0
    bad = ~np.isfinite(fr) | (fr <= 0) | (fr >= nyq)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"freqs must lie strictly between 0 and the Nyquist frequency "
                         f"{nyq:g} Hz (fs={fs_f:g}); freqs[{i}] = {fr[i]!r}")
    try:
        c1_f = float(c1)
    except (TypeError, ValueError):
        raise ValueError(f"c1 (base cycles) must be a positive number, got {c1!r}") from None
    if not math.isfinite(c1_f) or c1_f <= 0:
        raise ValueError(f"c1 (base cycles) must be a positive finite number, got {c1!r}")
    if isinstance(orders, (str, bytes)) or not hasattr(orders, "__len__") or len(orders) != 2:
        raise ValueError(f"orders must be a pair (o_min, o_max) of positive integers, "
                         f"got {orders!r}")
    for o in orders:
        if not _is_int(o) or int(o) < 1:
            raise ValueError(f"orders must be positive integers, got {orders!r} "
                             f"({o!r} is not a positive integer)")
    if not isinstance(multiplicative, (bool, np.bool_)):
        raise ValueError(f"multiplicative must be True or False, got {multiplicative!r}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
    return {"fs": fs_f, "freqs": fr, "c1": c1_f, "orders": (int(orders[0]), int(orders[1])),
            "multiplicative": bool(multiplicative), "dtype": dt, "device": device}


def check_device(device: str = "cpu") -> str:
    """Check at start-up that ``device`` can run the superlet, and say how.

    For ``"cuda"`` this imports CuPy and compiles the fused CUDA kernel once;
    when the kernel cannot be compiled the run will use the (slower)
    array-module step, which is logged here as a warning rather than
    discovered mid-run.

    Parameters
    ----------
    device : {"cpu", "cuda"}

    Returns
    -------
    str
        The path the transform will take, for logs and provenance.

    Raises
    ------
    ValueError
        Unknown device.
    ImportError
        ``"cuda"`` without CuPy (the message names the extra to install).
    """
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
    if device == "cpu":
        return "cpu: pocketfft + Numba"
    from engine._util import require
    from kernels.superlet_gpu import fused_status

    cp = require("cupy", feature="superlet(device='cuda')")
    ok, why = fused_status(cp)
    if not ok:
        log.warning("superlet on CUDA: %s; using the array-module step (same results, slower)",
                    why)
        return f"cuda: cuFFT + array-module step ({why})"
    return "cuda: cuFFT + fused CUDA kernel"


def longest_wavelet(fs: float, freqs, c1: float, orders, multiplicative: bool = True
                    ) -> tuple[int, float, float]:
    """Taps, frequency and cycles of the longest wavelet of a (valid) parameter set."""
    fr = np.asarray(freqs, dtype=np.float64)
    ords, cycles, lengths = cached_layout(fs, fr, c1, orders, multiplicative)
    j = int(np.argmax(lengths))
    row = int(np.searchsorted(np.cumsum(ords), j, side="right"))
    return int(lengths[j]), float(fr[row]), float(cycles[j])


def _as_traces(x: Any) -> tuple[list[np.ndarray], str]:
    """Split the input into 1-D float64 traces; ``kind`` is 1d, 2d or list."""
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise ValueError("x is an empty list: expected at least one trace")
        traces = [_as_1d(t, f"trace {i}") for i, t in enumerate(x)]
        return traces, "list"
    arr = _to_numpy(x)
    if arr.ndim == 1:
        return [_as_1d(arr, "x")], "1d"
    if arr.ndim == 2:
        if arr.shape[0] == 0:
            raise ValueError("x has no traces (shape %s)" % (arr.shape,))
        return [_as_1d(arr[i], f"trace {i}") for i in range(arr.shape[0])], "2d"
    raise ValueError(f"x must be one trace (1-D), a 2-D array (n_traces, n_samples) or a "
                     f"list of 1-D traces; got an array of shape {arr.shape}")


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "__cuda_array_interface__") and hasattr(x, "get"):
        return x.get()
    return np.asarray(x)


def _as_1d(t: Any, name: str) -> np.ndarray:
    a = _to_numpy(t)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    finite = np.isfinite(a)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} has a non-finite sample (NaN or inf) at index {i}: {a[i]!r}")
    return a


def superlet(x, fs: float, freqs, c1: float = 3.0, orders: Sequence[int] = (10, 20),
             multiplicative: bool = True, device: str = "cpu", dtype=np.float32,
             allow_short: bool = False, workers: int = -1):
    """Adaptive superlet scalogram (power) of one trace or a batch of traces.

    Parameters
    ----------
    x : array_like or list of array_like
        One trace (1-D), a batch ``(n_traces, n_samples)``, or a list of 1-D
        traces of different lengths (CuPy arrays are accepted too).
    fs : float
        Sampling rate in Hz.
    freqs : array_like
        Frequencies of interest in Hz, each in ``(0, fs / 2)``.
    c1 : float
        Cycles of the base wavelet (> 0).
    orders : (int, int)
        Superlet order interval; order at frequency ``i`` of ``n`` is
        ``fix(linspace(o1, o2, n))[i]``.  ``(1, 1)`` is the plain CWT.
    multiplicative : bool
        Multiplicative (cycles ``c1 * k``) or additive (``c1 + k - 1``)
        superresolution, ``k = 1..order``.
    device : {"cpu", "cuda"}
        Where to compute; ``"cuda"`` needs CuPy and returns CuPy arrays.
    dtype : {numpy.float32, numpy.float64}
        Working precision (float32: complex64 FFTs, the fast default).
    allow_short : bool
        Traces shorter than the longest wavelet raise a ValueError unless this
        is true (the transform is still exact then: zeros outside the trace).
    workers : int
        CPU threads of the FFTs (-1: all).

    Returns
    -------
    ndarray or list of ndarray
        Power ``(n_freqs, n_samples)`` for one trace, ``(n_traces, n_freqs,
        n_samples)`` for a 2-D batch, a list of ``(n_freqs, n_i)`` for a list.

    Raises
    ------
    ValueError
        Bad parameters, empty traces, NaN/inf samples, traces shorter than the
        longest wavelet (unless ``allow_short``).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(2000) / 100.0
    >>> p = superlet(np.sin(2 * np.pi * 5 * t), 100.0, [2.0, 5.0, 10.0], orders=(1, 3))
    >>> p.shape, int(np.argmax(p[:, 1000]))
    ((3, 2000), 1)
    """
    prm = check_superlet_params(fs, freqs, c1, orders, multiplicative, dtype, device)
    traces, kind = _as_traces(x)
    lmax, f_long, c_long = longest_wavelet(prm["fs"], prm["freqs"], prm["c1"], prm["orders"],
                                           prm["multiplicative"])
    if not allow_short:
        for i, t in enumerate(traces):
            if t.size < lmax:
                who = "x" if kind == "1d" else f"trace {i}"
                raise ValueError(
                    f"{who} has {t.size} samples, shorter than the longest wavelet "
                    f"({lmax} taps: {f_long:g} Hz, {c_long:g} cycles at fs={prm['fs']:g}); "
                    f"use longer traces, higher frequencies, fewer cycles/orders, or "
                    f"allow_short=True")
    lens = np.array([t.size for t in traces], dtype=np.int64)
    n_max = int(lens.max())
    padded = np.zeros((len(traces), n_max), dtype=prm["dtype"])
    for i, t in enumerate(traces):
        padded[i, : t.size] = t
    power = _superlet_padded(padded, lens, prm, workers)
    if kind == "1d":
        return power[0]
    if kind == "2d":
        return power
    return [power[i, :, : lens[i]] for i in range(len(traces))]


#: Padded lengths are rounded up to a multiple of this, so that traces of nearby
#: lengths share one cached wavelet bank (zero padding is exact).
LENGTH_QUANTUM = 256


def _superlet_padded(padded: np.ndarray, lens: np.ndarray, prm: dict, workers: int = -1):
    """Kernel dispatch for validated, zero-padded traces (rows past ``lens`` are 0).

    Returns the power for ``padded.shape[1]`` samples (NumPy or CuPy).
    """
    n = padded.shape[1]
    n_bank = -(-n // LENGTH_QUANTUM) * LENGTH_QUANTUM
    bank = wavelet_bank(prm["fs"], prm["freqs"], prm["c1"], prm["orders"], n_bank,
                        prm["multiplicative"], prm["dtype"])
    if prm["device"] == "cuda":
        from engine._util import require
        from kernels.superlet_gpu import superlet_gpu

        cp = require("cupy", feature="superlet(device='cuda')")
        return superlet_gpu(cp.asarray(padded), bank, xp=cp)
    from kernels.superlet_cpu import superlet_cpu

    return superlet_cpu(padded, bank, n_valid=lens, workers=workers)


def cwt(x, fs: float, freqs, c: float = 3.0, device: str = "cpu", dtype=np.float32,
        allow_short: bool = False, workers: int = -1):
    """Complex Morlet CWT power ``2 |x * w|^2`` (the order-1 superlet).

    Parameters
    ----------
    x, fs, freqs, device, dtype, allow_short, workers
        As in :func:`superlet`.
    c : float
        Cycles of the wavelet at every frequency.

    Returns
    -------
    ndarray or list of ndarray
        As in :func:`superlet`.

    Raises
    ------
    ValueError
        As in :func:`superlet`.
    """
    return superlet(x, fs, freqs, c1=c, orders=(1, 1), multiplicative=True, device=device,
                    dtype=dtype, allow_short=allow_short, workers=workers)
