"""The fused CUDA kernel of the superlet without a GPU.

* The kernel's CUDA C++ source (kernels/cuda_geomean.py) is compiled *as is*
  by the host C++ compiler, with a shim that defines the thread indices and
  loops over the launch grid, and checked against the array-module step
  (:func:`kernels.superlet_gpu.geomean_rows_xp`) and, through the whole GPU
  code path, against the direct-convolution reference.
* With ``nvcc`` installed, the source is also compiled for the H100/H200
  (``sm_90``) to PTX, as NVRTC does on the GPU.
* The GPU path must survive a broken ``numba-cuda`` (issue 12: it died with
  ``AttributeError: np.row_stack`` under NumPy 2.5) and a kernel that cannot
  compile (logged fallback, or a clear error when the kernel is required).
"""
from __future__ import annotations

import ctypes
import logging
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from kernels import cuda_geomean as cg
from kernels import superlet_gpu as sg
from kernels.superlet_reference import ref_superlet
from kernels.wavelets import wavelet_bank

SHIM = r"""
#include <cmath>
using std::exp; using std::frexp; using std::log;
struct float2 { float x, y; };
struct double2 { double x, y; };
struct uint3 { unsigned x, y, z; };
static uint3 blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
"""

RUNNER = r"""
#define RUN(NAME, C, R)                                                               \
extern "C" void run_##NAME(unsigned gx, unsigned gy, unsigned gz, unsigned bx,         \
    const C* y, const int* st, const int* en, const double* s2, R* out,                \
    int n, int n_fft, int nw, int row0, int n_freqs, int n_out)                        \
{                                                                                      \
    blockDim = {bx, 1, 1};                                                             \
    for (unsigned z = 0; z < gz; ++z) for (unsigned yy = 0; yy < gy; ++yy)             \
    for (unsigned x = 0; x < gx; ++x) for (unsigned t = 0; t < bx; ++t) {              \
        blockIdx = {x, yy, z}; threadIdx = {t, 0, 0};                                  \
        superlet_geomean_##NAME(y, st, en, s2, out, n, n_fft, nw, row0, n_freqs, n_out); \
    }                                                                                  \
}
RUN(c64, float2, float)
RUN(c128, double2, double)
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory) -> dict:
    """The CUDA source compiled for the CPU; kernels callable like CuPy RawKernels."""
    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    assert cxx, "a C++ compiler is needed to run the CUDA kernel's source on the CPU"
    d = tmp_path_factory.mktemp("cuda_emu")
    src = d / "kernel.cpp"
    src.write_text(SHIM + cg.GEOMEAN_SOURCE + RUNNER)
    lib = d / "kernel.so"
    proc = subprocess.run([cxx, "-std=c++17", "-O1", "-ffp-contract=off", "-shared", "-fPIC",
                           str(src), "-o", str(lib)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    so = ctypes.CDLL(str(lib))
    ptr = ctypes.c_void_p

    def kernel(name):
        fn = getattr(so, f"run_{name}")
        fn.restype = None

        def call(grid, block, args):
            y, st, en, s2, out = args[:5]
            for a in (y, st, en, s2, out):
                assert isinstance(a, np.ndarray) and a.flags.c_contiguous
            assert st.dtype == en.dtype == np.int32 and s2.dtype == np.float64
            ints = [ctypes.c_int(int(v)) for v in args[5:]]
            fn(*(ctypes.c_uint(int(g)) for g in grid), ctypes.c_uint(int(block[0])),
               *(ptr(a.ctypes.data) for a in (y, st, en, s2, out)), *ints)
        return call

    return {"complex64": kernel("c64"), "complex128": kernel("c128")}


def _responses(rng, shape, dtype):
    y = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return y


@pytest.mark.parametrize("cdtype, rdtype, tol", [(np.complex64, np.float32, 1e-6),
                                                 (np.complex128, np.float64, 1e-13)])
def test_kernel_source_matches_array_module_step(emulated, cdtype, rdtype, tol):
    rng = np.random.default_rng(0)
    y = _responses(rng, (2, 9, 50), cdtype)
    y[1, 3, 7] = 0  # a zero power zeroes its row's output
    y[0, 8, :5] *= 1e-30  # tiny powers: the exponent split must keep them exact
    st = np.array([0, 2, 3], np.int32)
    en = np.array([2, 3, 9], np.int32)
    s2 = np.array([1.0, 0.25])
    n_freqs, n_out, row0, n = 7, 45, 2, 41
    out = np.full((2, n_freqs, n_out), -1.0, rdtype)
    cg.launch_geomean(emulated, y, st, en, s2, out, n, row0, threads=16)
    ref = sg.geomean_rows_xp(y, n, st, en, s2, np)
    got = out[:, row0:row0 + 3, :n]
    assert np.all(np.abs(got - ref) <= tol * np.abs(ref).max(axis=-1, keepdims=True))
    assert got[1, 2, 7] == 0.0 and ref[1, 2, 7] == 0.0
    # nothing outside the block's rows and the n samples is touched
    assert np.all(out[:, :row0] == -1) and np.all(out[:, row0 + 3:] == -1)
    assert np.all(out[:, :, n:] == -1)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-3), (np.float64, 1e-8)])
def test_gpu_path_with_kernel_source_matches_reference(emulated, monkeypatch, dtype, tol):
    monkeypatch.setattr(sg, "load_geomean", lambda xp: emulated)
    rng = np.random.default_rng(1)
    freqs = np.array([6.0, 15.0, 30.0, 41.0])
    x = rng.standard_normal((3, 120))
    x[2] *= 1e5
    bank = wavelet_bank(100.0, freqs, 3, (1, 4), 120, True, dtype)
    got = sg.superlet_gpu(x.astype(dtype), bank, xp=np, fused=True, max_block_bytes=1)
    want = np.array([ref_superlet(t, 100.0, freqs, 3.0, (1, 4)) for t in x])
    assert got.dtype == dtype
    assert float((np.abs(got - want).max(-1) / want.max(-1)).max()) < tol


def test_kernel_source_compiles_for_hopper(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed: the sm_90 compile check runs where CUDA is")
    src = tmp_path / "k.cu"
    src.write_text(cg.GEOMEAN_SOURCE)
    proc = subprocess.run([nvcc, "-std=c++17", "-arch=sm_90", "--ptx", str(src), "-o",
                           str(tmp_path / "k.ptx")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ptx = (tmp_path / "k.ptx").read_text()
    for name in cg.KERNEL_NAMES:
        assert f".entry {name}(" in ptx


# ------------------------------------------------ broken JIT stacks must not crash a run
class _FakeRawModule:
    def __init__(self, code, options=()):
        self.code = code

    def get_function(self, name):
        raise RuntimeError("nvrtc: error: simulated compile failure")


def _numpy_cupy(monkeypatch, raw_module=_FakeRawModule):
    """A stand-in ``cupy`` that forwards to NumPy, with a RawModule that fails."""
    shim = types.ModuleType("cupy")
    shim.__dict__["__getattr__"] = lambda name: getattr(np, name)
    shim.RawModule = raw_module
    shim.cuda = types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0))
    monkeypatch.setitem(sys.modules, "cupy", shim)
    import scipy.fft
    import scipy.sparse

    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.fft, cupyx.scipy.sparse = scipy.fft, scipy.sparse
    for name, mod in [("cupyx", cupyx), ("cupyx.scipy", cupyx.scipy),
                      ("cupyx.scipy.fft", scipy.fft), ("cupyx.scipy.sparse", scipy.sparse)]:
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(cg, "_LOADED", {})
    monkeypatch.setattr(sg, "_WARNED", set())
    monkeypatch.setattr(sg, "_DEVICE_SPECTRA", type(sg._DEVICE_SPECTRA)())
    return shim


def _break_numba_cuda(monkeypatch):
    """numba.cuda fails on import as it did under NumPy 2.5 (np.row_stack removed)."""
    import importlib.abc

    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "numba.cuda" or name.startswith("numba.cuda."):
                raise AttributeError("module 'numpy' has no attribute 'row_stack'")
            return None

    for name in [m for m in sys.modules if m == "numba.cuda" or m.startswith("numba.cuda.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Broken()] + sys.meta_path)
    with pytest.raises(AttributeError, match="row_stack"):
        __import__("numba.cuda")


def test_gpu_path_survives_broken_numba_cuda_and_failing_kernel(monkeypatch, caplog):
    from engine.images import event_images
    from engine.superlet import superlet

    _break_numba_cuda(monkeypatch)
    cp = _numpy_cupy(monkeypatch)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 400))
    freqs = np.array([5.0, 9.0, 14.0, 20.0])
    with caplog.at_level(logging.WARNING, logger="kernels.superlet_gpu"):
        got = superlet(x, 100.0, freqs, orders=(1, 4), device="cuda")
        again = superlet(x, 100.0, freqs, orders=(1, 4), device="cuda")
    warnings = [r for r in caplog.records if "simulated compile failure" in r.getMessage()]
    assert len(warnings) == 1 and "array-module step" in warnings[0].getMessage()
    want = superlet(x, 100.0, freqs, orders=(1, 4))
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
    assert np.array_equal(got, again)
    assert sg.fused_status(cp)[0] is False
    # the whole image path on "cuda" too, equal to the CPU's within colour rounding
    tr = [rng.standard_normal(700), rng.standard_normal(650)]
    f = np.linspace(2.0, 30.0, 16)
    img_gpu = np.asarray(event_images(tr, fs=100.0, freqs=f, orders=(1, 3), device="cuda"))
    img_cpu = event_images(tr, fs=100.0, freqs=f, orders=(1, 3))
    diff = np.abs(img_gpu.astype(int) - img_cpu.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert "numba.cuda" not in sys.modules


def test_required_kernel_that_cannot_compile_raises_clearly(monkeypatch):
    cp = _numpy_cupy(monkeypatch)
    bank = wavelet_bank(100.0, np.array([10.0, 20.0]), 3, (1, 2), 200, True, np.float32)
    with pytest.raises(cg.KernelUnavailable, match="did not compile.*simulated compile"):
        sg.superlet_gpu(np.ones((1, 200), np.float32), bank, xp=cp, fused=True)
    ok, why = sg.fused_status(cp)
    assert not ok and "simulated compile failure" in why


def test_check_device_reports_the_path_at_start_up(monkeypatch, caplog):
    from engine.superlet import check_device

    assert check_device("cpu").startswith("cpu")
    with pytest.raises(ValueError, match="device"):
        check_device("tpu")
    _numpy_cupy(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="engine.superlet"):
        path = check_device("cuda")
    assert "array-module step" in path and "simulated compile failure" in path
    assert any("simulated compile failure" in r.getMessage() for r in caplog.records)


def test_kernels_import_nothing_from_engine():
    import ast
    from pathlib import Path

    import kernels

    for path in Path(kernels.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            assert not any(n == "engine" or n.startswith("engine.") for n in names), path.name


def _real_cupy():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # not installed, or no driver/device: CUDA errors come in many types
        return None
    return None


def test_fused_kernel_on_a_real_gpu():
    cp = _real_cupy()
    if cp is None:
        pytest.skip("no CUDA device: the kernel's source is checked on the CPU above")
    ok, why = sg.fused_status(cp)
    assert ok, why
    rng = np.random.default_rng(5)
    freqs = np.array([3.0, 7.0, 15.0, 33.0])
    x = rng.standard_normal((5, 700))
    for dtype, tol in ((np.float32, 1e-3), (np.float64, 1e-8)):
        bank = wavelet_bank(100.0, freqs, 3, (2, 6), 700, True, dtype)
        xd = cp.asarray(x.astype(dtype))
        fused = cp.asnumpy(sg.superlet_gpu(xd, bank, xp=cp, fused=True, max_block_bytes=1))
        plain = cp.asnumpy(sg.superlet_gpu(xd, bank, xp=cp, fused=False))
        want = np.array([ref_superlet(t, 100.0, freqs, 3.0, (2, 6)) for t in x])
        assert fused.dtype == dtype
        assert float((np.abs(fused - want).max(-1) / want.max(-1)).max()) < tol
        assert float((np.abs(fused - plain).max(-1) / plain.max(-1)).max()) < tol / 10
