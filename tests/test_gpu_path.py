"""The GPU code path of the pipeline, run on NumPy in place of CuPy (no GPU in CI).

The CUDA path of the images is written against an array module: here a stand-in
module that forwards to NumPy is installed as ``cupy`` so that exactly the code
that runs on a GPU (batched device FFTs, geometric mean, box sums, colour map,
resize, flip) runs on the CPU, and its features are compared with the CPU
kernel's on a small synthetic archive. The fused Numba CUDA kernel itself is
tested under the CUDA simulator in tests/test_superlet.py; a lent GPU runs
tests/test_superlet.py and tests/test_images.py for real.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from engine.features.base import images_of


@pytest.fixture
def numpy_as_cupy(monkeypatch):
    shim = types.ModuleType("cupy_on_numpy")  # not named "cupy": no fused CUDA kernel
    shim.__dict__["__getattr__"] = lambda name: getattr(np, name)
    monkeypatch.setitem(sys.modules, "cupy", shim)
    import scipy.sparse

    cupyx, cupyx_scipy = types.ModuleType("cupyx"), types.ModuleType("cupyx.scipy")
    cupyx.scipy, cupyx_scipy.sparse = cupyx_scipy, scipy.sparse
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setitem(sys.modules, "cupyx.scipy", cupyx_scipy)
    monkeypatch.setitem(sys.modules, "cupyx.scipy.sparse", scipy.sparse)
    return shim


def test_gpu_code_path_gives_the_cpu_images_and_features(numpy_as_cupy, tmp_path):
    from engine.features.weights import load_default
    from engine.sources import open_source
    from engine.synth import write_archive

    archive = write_archive(tmp_path / "a", days=0.03, stations=1, seed=3, rate=40)
    source = open_source(archive=str(archive))
    events = [e for key in source.chunks() for e in source.read_chunk(key).events]
    assert len(events) >= 8
    cpu = images_of(events, 100.0, "cpu")
    gpu = np.asarray(images_of(events, 100.0, "cuda"))
    assert gpu.shape == cpu.shape and gpu.dtype == np.uint8
    diff = np.abs(gpu.astype(np.int16) - cpu.astype(np.int16))
    # stated tolerance: colour levels differ by at most 1, in under 0.1% of pixels
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    ext = load_default()
    f_cpu, f_gpu = ext.transform(cpu), ext.transform(gpu)
    rel = np.abs(f_gpu - f_cpu).max() / np.abs(f_cpu).max()
    assert rel < 1e-3
