"""Superlet kernels (CPU, GPU code path on NumPy) against the direct-convolution
reference written from docs/method.md (kernels/superlet_reference.py); the
fused CUDA kernel's own source is tested in tests/test_kernels_cuda.py.

Relative error used throughout: for each frequency row, ``max|fast - ref| /
max|ref|`` over the row's samples (the error relative to the row's peak power),
maximised over rows and traces.  Bounds: < 1e-3 for float32 paths, < 1e-8 for
float64.
"""
from __future__ import annotations


import numpy as np
import pytest

from engine.superlet import cwt, superlet
from kernels import wavelets as wv
from kernels.superlet_cpu import superlet_cpu
from kernels.superlet_gpu import geomean_rows_xp, superlet_gpu
from kernels.superlet_reference import ref_morlet, ref_orders, ref_superlet

FS = 100.0
FREQS = np.array([5.0, 8.0, 12.5, 20.0, 31.0, 45.0])
TOL = {np.float32: 1e-3, np.float64: 1e-8}


def rel_err(fast: np.ndarray, ref: np.ndarray) -> float:
    """max over rows of max|fast - ref| / max|ref| (rows = last-but-one axis)."""
    fast = np.asarray(fast, dtype=np.float64)
    num = np.abs(fast - ref).max(axis=-1)
    den = np.abs(ref).max(axis=-1)
    return float((num / den).max())


@pytest.fixture(scope="module")
def traces() -> np.ndarray:
    rng = np.random.default_rng(42)
    t = np.arange(500) / FS
    x = rng.standard_normal((3, 500))
    x[1] += 5 * np.sin(2 * np.pi * 8 * t) * np.exp(-((t - 2.5) ** 2))
    x[2] *= 1e4  # amplitude scale must not matter
    return x


# ----------------------------------------------------------------- wavelet bank
def test_orders_are_matlab_fix_linspace():
    for n, o in [(121, (10, 20)), (7, (1, 5)), (5, (3, 3)), (1, (2, 9)), (10, (20, 10))]:
        assert wv.superlet_orders(n, o).tolist() == ref_orders(n, *o)


def test_morlet_matches_reference_taps():
    # includes ties where 6*sd*fs is an integer (1.2 Hz, 3 cycles -> 300)
    for f, c in [(1.2, 3), (1.0, 30), (25.0, 3), (7.3, 14), (13.0, 60)]:
        w, r = wv.morlet(f, c, FS), ref_morlet(f, c, FS)
        assert w.shape == r.shape and len(w) % 2 == 1
        np.testing.assert_allclose(w, r, rtol=0, atol=1e-15)
        assert abs(np.abs(w).sum() - 1.0) < 1e-12  # |w| sums to 1: sum of g normalised


def test_published_parameters_give_1760_wavelets_longest_3601():
    from engine.images import DEFAULT_FREQS

    ords, cycles, lengths = wv.bank_layout(FS, DEFAULT_FREQS, 3.0, (10, 20), True)
    assert len(DEFAULT_FREQS) == 121 and ords.sum() == 1760 == len(cycles)
    assert lengths.max() == 3601 and cycles.max() == 60


def test_additive_and_multiplicative_cycles():
    assert wv.superlet_cycles(3, 4, True).tolist() == [3, 6, 9, 12]
    assert wv.superlet_cycles(3, 4, False).tolist() == [3, 4, 5, 6]


def test_bank_is_cached_and_read_only():
    wv.bank_cache_clear()
    a = wv.wavelet_bank(FS, FREQS, 3, (1, 5), 500, True, np.float32)
    b = wv.wavelet_bank(FS, list(FREQS), 3.0, (1, 5), 500, True, "float32")
    assert a is b and wv.bank_cache_info().hits == 1
    c = wv.wavelet_bank(FS, FREQS, 3, (1, 5), 500, True, np.float64)
    assert c is not a and c.spectra[0].dtype == np.complex128
    assert a.spectra[0].dtype == np.complex64
    assert wv.wavelet_bank(FS, FREQS, 3, (1, 5), 500, False, np.float32) is not a
    with pytest.raises(ValueError):
        a.spectra[0][0, 0] = 0
    # every block's FFT is long enough for exact 'same' convolution
    for (r0, r1), n_fft in zip(a.blocks, a.block_nfft):
        lmax = a.lengths[a.starts[r0]: a.ends[r1 - 1]].max()
        assert n_fft >= 500 + (lmax - 1) // 2


def test_fft_lengths_come_from_a_short_ladder():
    seen = set()
    for n in range(200, 20000, 37):
        for lmax in (1, 73, 3601):
            need = n + (lmax - 1) // 2
            m = wv.fft_length(n, lmax)
            assert need <= m <= 1.125 * need
            r = m
            for p in (2, 3, 5):
                while r % p == 0:
                    r //= p
            assert r == 1  # 5-smooth: fast in pocketfft and cuFFT
            seen.add(m)
    assert len(seen) <= 8 * 7  # 8 sizes per octave over ~7 octaves


def test_banks_of_nearby_lengths_share_cached_spectra():
    wv.bank_cache_clear()
    a = wv.wavelet_bank(FS, FREQS, 3, (1, 5), 2000, True, np.float32)
    b = wv.wavelet_bank(FS, FREQS, 3, (1, 5), 2010, True, np.float32)  # both -> 2048
    assert a is not b and a.block_nfft == b.block_nfft
    assert all(x is y for x, y in zip(a.spectra, b.spectra))
    assert a.spectra_keys == b.spectra_keys
    info = wv.spectra_cache_info()
    assert info["misses"] == len(a.blocks) and info["hits"] == len(a.blocks)
    assert info["bytes"] == a.nbytes


# ----------------------------------------------------------- CPU kernel vs ref
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("multiplicative", [True, False])
def test_superlet_matches_direct_reference(traces, dtype, multiplicative):
    ref = np.array([ref_superlet(x, FS, FREQS, 3.0, (1, 5), multiplicative) for x in traces])
    out = superlet(traces, FS, FREQS, c1=3, orders=(1, 5), multiplicative=multiplicative,
                   dtype=dtype)
    assert out.shape == (3, len(FREQS), 500) and out.dtype == dtype
    assert rel_err(out, ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cwt_is_order_one_morlet_power(traces, dtype):
    x = traces[1]
    ref = ref_superlet(x, FS, FREQS, 5.0, (1, 1))
    # order 1 by hand: 2 |x * w|^2 with 5 cycles
    w = ref_morlet(8.0, 5.0, FS)
    r = np.convolve(x, w, mode="same")
    np.testing.assert_allclose(ref[1], 2 * np.abs(r) ** 2, rtol=1e-12)
    assert rel_err(cwt(x, FS, FREQS, c=5, dtype=dtype), ref) < TOL[dtype]


def test_short_trace_exact_with_allow_short():
    x = np.random.default_rng(1).standard_normal(40)  # longest wavelet: 5 Hz, 3 cycles, 73 taps
    ref = ref_superlet(x, FS, FREQS, 3.0, (1, 5))
    out = superlet(x, FS, FREQS, orders=(1, 5), dtype=np.float64, allow_short=True)
    assert rel_err(out, ref) < 1e-8


def test_batch_list_and_single_agree(traces):
    batch = superlet(traces, FS, FREQS, orders=(2, 4))
    singles = [superlet(t, FS, FREQS, orders=(2, 4)) for t in traces]
    ragged = superlet([traces[0][:450], traces[1], traces[2][:480]], FS, FREQS, orders=(2, 4))
    for i in range(3):
        assert rel_err(batch[i], singles[i].astype(np.float64)) < 1e-5
    assert [r.shape[1] for r in ragged] == [450, 500, 480]
    for r, t in zip(ragged, [traces[0][:450], traces[1], traces[2][:480]]):
        assert rel_err(r, ref_superlet(t, FS, FREQS, 3.0, (2, 4))) < 1e-3


def test_sine_peaks_at_its_frequency():
    t = np.arange(2000) / FS
    p = superlet(np.sin(2 * np.pi * 12.5 * t), FS, FREQS, orders=(2, 6))
    assert int(np.argmax(p[:, 1000])) == 2


def test_amplitude_scaling_is_exact_and_zero_trace_is_zero():
    x = np.random.default_rng(3).standard_normal(500)
    p1 = superlet(x, FS, FREQS, orders=(1, 5))
    for a in (1e15, 1e-15):
        pa = superlet(x * a, FS, FREQS, orders=(1, 5))
        assert np.all(np.isfinite(pa))
        assert rel_err(pa / a ** 2, p1.astype(np.float64)) < 1e-5
    with np.errstate(all="raise"):
        z = superlet(np.zeros(500), FS, FREQS, orders=(1, 5))
    assert np.all(z == 0)


def test_float32_geomean_exact_at_extreme_powers():
    from kernels.superlet_cpu import _geomean_rows_f32, _geomean_rows_f64

    rng = np.random.default_rng(7)
    mag = 10.0 ** rng.uniform(-25, 0, (20, 64))  # powers down to 1e-50
    mag[::4, ::3] = 1e-44  # float32 subnormal components, powers ~1e-88
    mag[5, 3] = 0.0
    y = (mag * np.exp(1j * rng.uniform(0, 6.3, mag.shape))).astype(np.complex64)
    st, en = np.array([0, 1, 8]), np.array([1, 8, 20])
    got = np.zeros((3, 64), np.float32)
    _geomean_rows_f32(y, 64, st, en, 4.0, got)
    p = 2 * np.abs(y.astype(np.complex128)) ** 2
    with np.errstate(divide="ignore"):
        want = np.array([np.exp(np.log(p[a:b]).mean(0)) * 4.0 for a, b in zip(st, en)])
    assert got[1, 3] == 0.0 and want[1, 3] == 0.0
    ok = want > np.finfo(np.float32).tiny  # outputs representable as normal float32
    assert ok.sum() > 100
    assert np.all(np.abs(got[ok] - want[ok]) <= 1e-5 * want[ok])
    ok = want > 0
    got64 = np.zeros((3, 64))
    _geomean_rows_f64(y.astype(np.complex128), 64, st, en, 4.0, got64)
    np.testing.assert_allclose(got64[ok], want[ok], rtol=1e-12)


# -------------------------------------------------- GPU code path on NumPy
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_code_path_on_numpy_matches_reference(traces, dtype):
    bank = wv.wavelet_bank(FS, FREQS, 3, (1, 5), 500, True, dtype)
    ref = np.array([ref_superlet(x, FS, FREQS, 3.0, (1, 5)) for x in traces])
    out = superlet_gpu(traces.astype(dtype), bank, xp=np, fused=False, max_block_bytes=1)
    assert out.dtype == dtype and rel_err(out, ref) < TOL[dtype]
    cpu = superlet_cpu(traces.astype(dtype), bank)
    assert rel_err(out, cpu.astype(np.float64)) < TOL[dtype]


def test_geomean_rows_xp_handles_zero_power():
    y = np.ones((1, 3, 4), dtype=np.complex64)
    y[0, 1, 2] = 0
    out = geomean_rows_xp(y, 4, [0, 1], [1, 3], np.array([1.0]), np)
    np.testing.assert_allclose(out[0, 0], 2.0)
    np.testing.assert_allclose(out[0, 1], [2.0, 2.0, 0.0, 2.0])


def _cupy_with_device():
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # cupy installed, no usable driver/device
        return None


def test_cuda_device_matches_cpu_or_says_what_to_install(traces):
    cp = _cupy_with_device()
    if cp is None:  # this machine: the message must name the extra
        try:
            import cupy  # noqa: F401
        except ImportError:
            with pytest.raises(ImportError, match=r"microquake-engine\[gpu\]"):
                superlet(traces, FS, FREQS, orders=(1, 5), device="cuda")
            return
        pytest.skip("cupy is installed but no CUDA device is usable")
    for dtype in (np.float32, np.float64):
        got = superlet(traces, FS, FREQS, orders=(1, 5), device="cuda", dtype=dtype)
        assert isinstance(got, cp.ndarray) and got.dtype == dtype
        ref = np.array([ref_superlet(x, FS, FREQS, 3.0, (1, 5)) for x in traces])
        assert rel_err(cp.asnumpy(got), ref) < TOL[dtype]


# ------------------------------------------------------------------ bad input
BAD = [
    (dict(x=np.zeros(0)), "empty"),
    (dict(x=[np.ones(500), np.zeros(0)]), "trace 1 is empty"),
    (dict(x=np.r_[np.ones(300), np.nan, np.ones(199)]), "non-finite.*index 300"),
    (dict(x=np.r_[np.ones(10), np.inf, np.ones(489)]), "non-finite"),
    (dict(x=np.ones(60)), r"60 samples, shorter than the longest wavelet \(73 taps"),
    (dict(x=np.ones((2, 2, 500))), "shape"),
    (dict(x=np.ones(500, dtype=complex)), "real numbers"),
    (dict(freqs=[5.0, 0.0]), r"freqs\[1\]"),
    (dict(freqs=[5.0, -3.0]), "Nyquist"),
    (dict(freqs=[5.0, 50.0]), "Nyquist"),
    (dict(freqs=[[5.0]]), "1-D"),
    (dict(freqs=[]), "non-empty"),
    (dict(orders=(0, 5)), "positive integer"),
    (dict(orders=(2.5, 4)), "positive integer"),
    (dict(orders=(2,)), "pair"),
    (dict(c1=0), "c1"),
    (dict(c1=-2.0), "c1"),
    (dict(c1=float("nan")), "c1"),
    (dict(fs=0.0), "fs"),
    (dict(dtype=np.int32), "dtype"),
    (dict(device="tpu"), "device"),
]


@pytest.mark.parametrize("kw, match", BAD)
def test_bad_input_raises_clear_value_error(kw, match):
    args = dict(x=np.random.default_rng(0).standard_normal(500), fs=FS, freqs=FREQS,
                orders=(1, 5))
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        superlet(**args)
