"""The fused geometric-mean step of the superlet as a CuPy ``RawModule`` (CUDA C++).

One thread per (sample ``i``, frequency row ``r`` of a block, trace ``b``)
reads the inverse-FFT responses ``y[b, k, i]`` of the row's wavelets
``k = starts[r] .. ends[r] - 1`` and writes straight into the transform's
output::

    out[b, row0 + r, i] = scale2[b] * (prod_k 2 |y[b, k, i]|^2) ** (1 / o_r)

so powers, logarithms, the mean over the order and the rescaling happen in one
pass, and no per-block temporary is written.  ``complex64`` responses multiply
their powers in float64 and split off the exponent (``frexp``) every 3 factors:
one logarithm per output sample (a float32 component is >= 1.4e-45, so 3
powers cannot underflow float64, and a zero power gives 0).  ``complex128``
responses take one logarithm per power (the exact path).

The source is plain CUDA C++ without CUDA-only intrinsics, so the tests compile
the very same text with a C++ compiler (a small shim defines the thread
indices and loops over the grid) and check it against
:func:`kernels.superlet_gpu.geomean_rows_xp` on the CPU; when ``nvcc`` is
present they also compile it for ``sm_90``.

CuPy compiles the source with NVRTC on first use.  :func:`load_geomean` raises
:class:`KernelUnavailable` (a ``RuntimeError`` naming the cause) when that
fails, so callers can stop with a clear message at start-up or fall back to
the array-module path; a kernel never fails half way through a run.
"""
from __future__ import annotations

from typing import Any

__all__ = ["GEOMEAN_SOURCE", "KernelUnavailable", "geomean_grid", "launch_geomean",
           "load_geomean"]

GEOMEAN_SOURCE = r"""
template <typename C>
__device__ __forceinline__ double superlet_row(const C* __restrict__ yb, long long stride,
                                               int k0, int k1);

// complex64: float64 products, exponent split off every 3 factors, one log.
template <>
__device__ __forceinline__ double superlet_row<float2>(const float2* __restrict__ yb,
                                                       long long stride, int k0, int k1)
{
    double acc = 1.0;
    int ex = 0;
    int cnt = 0;
    for (int k = k0; k < k1; ++k) {
        const float2 v = yb[(long long)k * stride];
        const double re = (double)v.x;
        const double im = (double)v.y;
        acc *= 2.0 * (re * re + im * im);
        if (++cnt == 3) {
            int e;
            acc = frexp(acc, &e);
            ex += e;
            cnt = 0;
        }
    }
    if (!(acc > 0.0)) {
        return 0.0;
    }
    return exp((log(acc) + (double)ex * 0.69314718055994530942) / (double)(k1 - k0));
}

// complex128: one log per power (powers may be far below float64's range once multiplied).
template <>
__device__ __forceinline__ double superlet_row<double2>(const double2* __restrict__ yb,
                                                        long long stride, int k0, int k1)
{
    double s = 0.0;
    for (int k = k0; k < k1; ++k) {
        const double2 v = yb[(long long)k * stride];
        const double p = 2.0 * (v.x * v.x + v.y * v.y);
        if (!(p > 0.0)) {
            return 0.0;
        }
        s += log(p);
    }
    return exp(s / (double)(k1 - k0));
}

// y: (B, nw, n_fft) responses of one row block; out: (B, n_freqs, n_out).
// Grid: x over samples (blockDim.x threads), y over the block's rows, z over traces.
template <typename C, typename R>
__device__ __forceinline__ void superlet_geomean(
    const C* __restrict__ y, const int* __restrict__ starts, const int* __restrict__ ends,
    const double* __restrict__ scale2, R* __restrict__ out,
    int n, int n_fft, int nw, int row0, int n_freqs, int n_out)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int r = blockIdx.y;
    const int b = blockIdx.z;
    if (i >= n) {
        return;
    }
    const C* yb = y + (long long)b * nw * n_fft + i;
    const double v = superlet_row<C>(yb, (long long)n_fft, starts[r], ends[r]) * scale2[b];
    out[((long long)b * n_freqs + row0 + r) * n_out + i] = (R)v;
}

extern "C" __global__ void superlet_geomean_c64(
    const float2* y, const int* starts, const int* ends, const double* scale2, float* out,
    int n, int n_fft, int nw, int row0, int n_freqs, int n_out)
{
    superlet_geomean<float2, float>(y, starts, ends, scale2, out, n, n_fft, nw, row0,
                                    n_freqs, n_out);
}

extern "C" __global__ void superlet_geomean_c128(
    const double2* y, const int* starts, const int* ends, const double* scale2, double* out,
    int n, int n_fft, int nw, int row0, int n_freqs, int n_out)
{
    superlet_geomean<double2, double>(y, starts, ends, scale2, out, n, n_fft, nw, row0,
                                      n_freqs, n_out);
}
"""

KERNEL_NAMES = ("superlet_geomean_c64", "superlet_geomean_c128")


class KernelUnavailable(RuntimeError):
    """A GPU kernel could not be compiled or loaded (the message says why)."""


_LOADED: dict = {}


def load_geomean(cp: Any) -> dict:
    """Compile (once per process and device) and return the fused kernels.

    Parameters
    ----------
    cp : module
        ``cupy``.

    Returns
    -------
    dict
        ``{"complex64": RawKernel, "complex128": RawKernel}``.

    Raises
    ------
    KernelUnavailable
        NVRTC could not compile the source or the driver could not load it
        (the message carries CuPy's error).
    """
    try:
        dev = int(cp.cuda.Device().id)
    except Exception as exc:  # no device / broken driver: CUDA errors come in many types
        raise KernelUnavailable(f"no usable CUDA device for the superlet kernel: {exc}") from exc
    hit = _LOADED.get(dev)
    if hit is not None:
        return hit
    try:
        module = cp.RawModule(code=GEOMEAN_SOURCE, options=("-std=c++17",))
        kernels = {"complex64": module.get_function(KERNEL_NAMES[0]),
                   "complex128": module.get_function(KERNEL_NAMES[1])}
    except Exception as exc:  # CompileException, CUDADriverError, ...: all mean "unusable"
        raise KernelUnavailable(
            f"the fused superlet CUDA kernel did not compile or load on this machine "
            f"({type(exc).__name__}: {str(exc)[:500]})") from exc
    _LOADED[dev] = kernels
    return kernels


def geomean_grid(n: int, n_rows: int, n_traces: int, threads: int) -> tuple[int, int, int]:
    """CUDA grid of one launch: (sample blocks, rows, traces)."""
    return ((int(n) + threads - 1) // threads, int(n_rows), int(n_traces))


def launch_geomean(kernels: dict, y, starts, ends, scale2, out, n: int, row0: int,
                   threads: int = 128) -> None:
    """Launch the fused step of one row block.

    Parameters
    ----------
    kernels : dict
        From :func:`load_geomean`.
    y : cupy array (B, nw, n_fft), complex64 or complex128, C-contiguous
        Inverse-FFT responses of the block's wavelets.
    starts, ends : cupy int32 arrays (n_rows,)
        Wavelets ``starts[r]:ends[r]`` (block-relative) of each row.
    scale2 : cupy float64 array (B,)
        Factor of each trace's output.
    out : cupy array (B, n_freqs, n_out), float32 (complex64 ``y``) or float64
        Written at rows ``row0 .. row0 + n_rows - 1``, samples ``0 .. n - 1``.
    n : int
        Samples to compute (<= n_out, <= n_fft).
    row0 : int
        First output row of the block.
    threads : int
        Threads per CUDA block along the samples.
    """
    import numpy as np

    b, nw, n_fft = (int(s) for s in y.shape)
    kernel = kernels[np.dtype(y.dtype).name]
    grid = geomean_grid(n, int(starts.shape[0]), b, threads)
    kernel(grid, (threads, 1, 1),
           (y, starts, ends, scale2, out, np.int32(n), np.int32(n_fft), np.int32(nw),
            np.int32(row0), np.int32(out.shape[1]), np.int32(out.shape[2])))
