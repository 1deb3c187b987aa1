"""Complex Morlet wavelets, superlet orders and the cached wavelet-spectrum bank.

Everything here follows ``docs/method.md`` (Stage 1) and the published
``aslt.m``:

* order at frequency index ``i`` of ``n``: ``fix(linspace(o1, o2, n))``;
* cycles of the ``k``-th wavelet (``k = 1..o``): ``c1 * k`` (multiplicative) or
  ``c1 + k - 1`` (additive);
* one wavelet: ``sd = (c / 2) * (1 / f) / 2.5`` (this operation order, as in
  aslt.m: it decides ``L`` where ``6 sd fs`` is an integer),
  ``L = 2 * floor(fix(6 sd fs) / 2) + 1``, ``t_m = (m - (L - 1) / 2) / fs``,
  ``w = exp(2 pi i f t) g(t) / sum_m g(t_m)`` with ``g`` the N(0, sd) density.

The FFT kernels convolve circularly with the wavelet *centred at index 0*
(tap ``m`` stored at ``(m - (L - 1) / 2) mod n_fft``).  The first ``N`` outputs
of that circular convolution equal the "same"-size linear convolution (zeros
outside the trace) as soon as ``n_fft >= N + (L - 1) / 2`` (see
:func:`fft_length`), which is shorter than the usual ``N + L - 1``: a tap at
offset ``d`` in ``[-h, h]`` (``h = (L - 1) / 2``) reads input index ``n - d``;
indices below 0 wrap to ``n_fft + n - d >= n_fft - h >= N`` and indices in
``[N, N - 1 + h]`` stay below ``n_fft``, so both land on zero padding.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft as sfft

__all__ = [
    "WaveletBank",
    "bank_flops",
    "bank_cache_clear",
    "bank_cache_info",
    "cached_layout",
    "spectra_cache_info",
    "FFT_LADDER",
    "fft_length",
    "morlet",
    "morlet_length",
    "superlet_cycles",
    "row_blocks",
    "superlet_orders",
    "wavelet_bank",
]


def superlet_orders(n_freqs: int, orders: tuple[int, int]) -> np.ndarray:
    """Superlet order at each frequency, MATLAB ``fix(linspace(o1, o2, n))``.

    Parameters
    ----------
    n_freqs : int
        Number of frequencies.
    orders : (int, int)
        Order interval ``(o1, o2)``.

    Returns
    -------
    numpy.ndarray
        ``int64`` array of length ``n_freqs``.
    """
    o1, o2 = float(orders[0]), float(orders[1])
    if n_freqs == 1:  # MATLAB linspace(a, b, 1) returns b
        return np.array([int(o2)], dtype=np.int64)
    # MATLAB linspace: d1 + (0:n1) .* (d2 - d1) ./ n1 (multiply first: exact at
    # the integers), last element exactly d2
    lin = o1 + np.arange(n_freqs) * (o2 - o1) / (n_freqs - 1)
    lin[-1] = o2
    return np.trunc(lin).astype(np.int64)


def superlet_cycles(c1: float, order: int, multiplicative: bool = True) -> np.ndarray:
    """Cycles of the ``order`` wavelets of one superlet.

    Parameters
    ----------
    c1 : float
        Base number of cycles.
    order : int
        Superlet order (number of wavelets).
    multiplicative : bool
        ``c1 * k`` if true, else ``c1 + k - 1`` (additive), ``k = 1..order``.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of length ``order``.
    """
    k = np.arange(1, order + 1, dtype=np.float64)
    return c1 * k if multiplicative else c1 + k - 1.0


def morlet_length(f: float, c: float, fs: float) -> int:
    """Number of taps ``L = 2 * floor(fix(6 * sd * fs) / 2) + 1`` (always odd)."""
    sd = (c / 2.0) * (1.0 / f) / 2.5  # aslt.m's operation order (decides L at ties)
    return 2 * int(math.floor(math.trunc(6.0 * sd * fs) / 2)) + 1


def morlet(f: float, c: float, fs: float) -> np.ndarray:
    """Complex Morlet wavelet of ``docs/method.md`` (normalised by the sum of g).

    Parameters
    ----------
    f : float
        Centre frequency in Hz.
    c : float
        Number of cycles.
    fs : float
        Sampling rate in Hz.

    Returns
    -------
    numpy.ndarray
        ``complex128`` taps, odd length, centre tap at ``(L - 1) / 2``.
    """
    sd = (c / 2.0) * (1.0 / f) / 2.5  # aslt.m's operation order (decides L at ties)
    n = morlet_length(f, c, fs)
    t = (np.arange(n, dtype=np.float64) - (n - 1) / 2) / fs
    g = np.exp(-(t * t) / (2.0 * sd * sd)) / (sd * math.sqrt(2.0 * math.pi))
    return np.exp(2j * math.pi * f * t) * g / g.sum()


#: Mantissas (over 32) of the FFT-length ladder: every length is ``m * 2**k``
#: with ``m`` in this tuple, so all are 5-smooth (fast in pocketfft and cuFFT),
#: 8 per octave, at most 12.5 % apart.
FFT_LADDER = (32, 36, 40, 45, 48, 50, 54, 60)


def fft_length(n_samples: int, max_wavelet_length: int) -> int:
    """FFT length of the ladder that makes the centred circular convolution exact.

    Lengths are bucketed to a ladder of 8 sizes per octave (:data:`FFT_LADDER`)
    so that traces of many lengths share a few FFT sizes, hence a few cached
    wavelet spectra and FFT plans (zero padding is exact; the cost is at most
    12.5 % more FFT work, about 5 % on average).

    Parameters
    ----------
    n_samples : int
        Trace length ``N`` (the longest trace of a batch).
    max_wavelet_length : int
        Longest wavelet ``L_max`` (odd).

    Returns
    -------
    int
        The smallest ladder length ``>= N + (L_max - 1) // 2`` (below 32: the
        smallest 5-smooth length).
    """
    need = int(n_samples) + (int(max_wavelet_length) - 1) // 2
    if need <= 32:
        return int(sfft.next_fast_len(need, real=True))
    k = max(0, (need - 1).bit_length() - 6)
    while True:
        for m in FFT_LADDER:
            if m << k >= need:
                return m << k
        k += 1


@dataclass(frozen=True, eq=False)
class WaveletBank:
    """All wavelets of one superlet transform and their FFTs, in row blocks.

    The frequency rows are split into consecutive blocks holding whole rows and
    at most ``block_wavelets`` wavelets (one inverse-FFT batch each).  Each
    block has its own FFT length, the smallest fast length that is exact for its
    longest wavelet (short high-frequency wavelets get shorter FFTs).

    Attributes
    ----------
    fs, c1, multiplicative, n_samples : as passed to :func:`wavelet_bank`.
    freqs : ndarray (n_freqs,)
        Frequencies in Hz.
    orders : ndarray (n_freqs,)
        Number of wavelets per frequency.
    starts, ends : ndarray (n_freqs,)
        Wavelets ``starts[i]:ends[i]`` of the flat list belong to frequency ``i``.
    cycles, lengths : ndarray (n_wavelets,)
        Cycles and number of taps of each wavelet.
    blocks : tuple of (int, int)
        Row ranges ``(r0, r1)`` of the blocks.
    block_nfft : tuple of int
        FFT length of each block.
    spectra : tuple of ndarray
        Per block, ``(n_wavelets_in_block, block_nfft)`` FFTs of the wavelets
        centred at index 0 (see module docstring), complex64 or complex128,
        read-only.
    spectra_keys : tuple
        Per block, the key of its spectra in the spectra cache (the same for
        every bank whose block has the same parameters and FFT length: device
        copies are cached on it).
    """

    fs: float
    freqs: np.ndarray
    c1: float
    multiplicative: bool
    n_samples: int
    orders: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    cycles: np.ndarray
    lengths: np.ndarray
    blocks: tuple
    block_nfft: tuple
    spectra: tuple
    spectra_keys: tuple = ()

    @property
    def n_wavelets(self) -> int:
        """Total number of wavelets."""
        return int(self.cycles.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held by the spectra."""
        return int(sum(s.nbytes for s in self.spectra))


def row_blocks(orders: np.ndarray, max_wavelets: int) -> list[tuple[int, int]]:
    """Split frequency rows into consecutive blocks of at most ``max_wavelets`` wavelets.

    A block always holds whole rows (at least one row).
    """
    ends = np.cumsum(orders)
    starts = ends - orders
    blocks: list[tuple[int, int]] = []
    r0, n = 0, len(orders)
    while r0 < n:
        r1 = r0 + 1
        while r1 < n and ends[r1] - starts[r0] <= max_wavelets:
            r1 += 1
        blocks.append((r0, r1))
        r0 = r1
    return blocks


def bank_layout(fs: float, freqs: np.ndarray, c1: float, orders: tuple[int, int],
                multiplicative: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frequency orders, flat cycles and flat lengths (no FFTs).

    Returns
    -------
    orders, cycles, lengths : numpy.ndarray
    """
    ords = superlet_orders(len(freqs), orders)
    cyc = [superlet_cycles(c1, int(o), multiplicative) for o in ords]
    lengths = np.array([morlet_length(float(f), float(c), fs)
                        for f, cs in zip(freqs, cyc) for c in cs], dtype=np.int64)
    return ords, np.concatenate(cyc), lengths


def _centred_spectra(fs: float, freqs: np.ndarray, cycles: np.ndarray, n_fft: int,
                     cdtype) -> np.ndarray:
    """FFTs (length n_fft) of the wavelets (freqs[j], cycles[j]) centred at index 0."""
    buf = np.zeros((len(cycles), n_fft), dtype=np.complex128)
    for j, (f, c) in enumerate(zip(freqs, cycles)):
        w = morlet(float(f), float(c), fs)
        half = (len(w) - 1) // 2
        buf[j, : half + 1] = w[half:]
        if half:
            buf[j, n_fft - half:] = w[:half]
    out = sfft.fft(buf, axis=-1, workers=-1, overwrite_x=True).astype(cdtype)
    out.flags.writeable = False
    return out


BLOCK_WAVELETS = 128

#: Host memory the cached wavelet spectra may hold (least recently used first out).
SPECTRA_CACHE_BYTES = 512 << 20


class _SpectraCache:
    """Byte-bounded LRU cache of block spectra, shared by all banks (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key, build):
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit
        value = build()  # outside the lock: at worst built twice by two threads
        with self._lock:
            self.misses += 1
            self._items[key] = value
            self._items.move_to_end(key)
            total = sum(v.nbytes for v in self._items.values())
            while total > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                total -= old.nbytes
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


_SPECTRA = _SpectraCache(SPECTRA_CACHE_BYTES)


@lru_cache(maxsize=16)
def _layout(fs: float, freqs: tuple[float, ...], c1: float, orders: tuple[int, int],
            multiplicative: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`bank_layout` cached per parameter set (shared, read-only arrays)."""
    out = bank_layout(fs, np.asarray(freqs, dtype=np.float64), c1, orders, multiplicative)
    for a in out:
        a.flags.writeable = False
    return out


def cached_layout(fs: float, freqs, c1: float, orders: tuple[int, int],
                  multiplicative: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`bank_layout`, cached per parameter set (read-only arrays): no
    per-wavelet Python work when the same transform runs batch after batch."""
    key = tuple(float(f) for f in np.asarray(freqs, dtype=np.float64).ravel())
    return _layout(float(fs), key, float(c1), (int(orders[0]), int(orders[1])),
                   bool(multiplicative))


@lru_cache(maxsize=64)
def _bank(fs: float, freqs: tuple[float, ...], c1: float, orders: tuple[int, int],
          n_samples: int, multiplicative: bool, dtype: str) -> WaveletBank:
    fr = np.asarray(freqs, dtype=np.float64)
    ords, cycles, lengths = _layout(fs, freqs, c1, orders, multiplicative)
    ends = np.cumsum(ords)
    starts = ends - ords
    row_of = np.repeat(np.arange(len(fr)), ords)
    cdtype = np.complex64 if np.dtype(dtype) == np.float32 else np.complex128
    blocks = row_blocks(ords, BLOCK_WAVELETS)
    nffts, spectra, keys = [], [], []
    for r0, r1 in blocks:
        w0, w1 = int(starts[r0]), int(ends[r1 - 1])
        n_fft = fft_length(n_samples, int(lengths[w0:w1].max()))
        key = (fs, freqs, c1, orders, multiplicative, dtype, r0, r1, n_fft)
        spec = _SPECTRA.get(key, lambda w0=w0, w1=w1, n_fft=n_fft: _centred_spectra(
            fs, fr[row_of[w0:w1]], cycles[w0:w1], n_fft, cdtype))
        nffts.append(n_fft)
        spectra.append(spec)
        keys.append(key)
    for a in (fr, ords, starts, ends, cycles, lengths):
        a.flags.writeable = False
    return WaveletBank(fs=fs, freqs=fr, c1=c1, multiplicative=multiplicative,
                       n_samples=n_samples, orders=ords, starts=starts, ends=ends,
                       cycles=cycles, lengths=lengths, blocks=tuple(blocks),
                       block_nfft=tuple(nffts), spectra=tuple(spectra),
                       spectra_keys=tuple(keys))


def wavelet_bank(fs: float, freqs, c1: float, orders: tuple[int, int], n_samples: int,
                 multiplicative: bool = True, dtype=np.float32) -> WaveletBank:
    """The (cached) bank of wavelet spectra of one superlet transform.

    Banks are cached on ``(fs, freqs, c1, orders, n_samples, multiplicative,
    dtype)`` (the 64 most recent); their spectra are cached per block and FFT
    length (:func:`fft_length` buckets lengths, so banks of nearby
    ``n_samples`` share them) in a byte-bounded cache
    (:data:`SPECTRA_CACHE_BYTES`).  The arrays of a cached bank are read-only.
    Inputs are trusted: validation happens in :func:`engine.superlet.superlet`.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.
    freqs : array_like
        Frequencies in Hz.
    c1 : float
        Base cycles.
    orders : (int, int)
        Order interval.
    n_samples : int
        Length of the (padded) traces the bank will transform.
    multiplicative : bool
        Multiplicative (``c1 * k``) or additive (``c1 + k - 1``) superresolution.
    dtype : numpy dtype
        ``float32`` (complex64 spectra) or ``float64`` (complex128 spectra).

    Returns
    -------
    WaveletBank
    """
    key_freqs = tuple(float(f) for f in np.asarray(freqs, dtype=np.float64).ravel())
    return _bank(float(fs), key_freqs, float(c1), (int(orders[0]), int(orders[1])),
                 int(n_samples), bool(multiplicative), np.dtype(dtype).name)


def bank_flops(bank: WaveletBank) -> float:
    """Arithmetic estimate for one event: ``5 n log2 n`` per inverse FFT of length
    ``n``, 6 flops per complex spectral product and 8 per output sample of the
    power/log step (the forward FFTs are negligible).
    """
    total = 0.0
    for (r0, r1), n_fft in zip(bank.blocks, bank.block_nfft):
        nw = int(bank.ends[r1 - 1] - bank.starts[r0])
        total += nw * (5.0 * n_fft * math.log2(n_fft) + 6.0 * n_fft + 8.0 * bank.n_samples)
    return total


def bank_cache_info():
    """``functools.lru_cache`` statistics of the bank cache."""
    return _bank.cache_info()


def spectra_cache_info() -> dict:
    """Hits, misses, entries and bytes of the shared block-spectra cache."""
    with _SPECTRA._lock:
        return {"hits": _SPECTRA.hits, "misses": _SPECTRA.misses,
                "entries": len(_SPECTRA._items),
                "bytes": int(sum(v.nbytes for v in _SPECTRA._items.values()))}


def bank_cache_clear() -> None:
    """Empty the bank cache and the spectra cache."""
    _bank.cache_clear()
    _layout.cache_clear()
    _SPECTRA.clear()
