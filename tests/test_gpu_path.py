"""The GPU code path of the pipeline, run on NumPy in place of CuPy (no GPU in CI).

The CUDA path of the images is written against an array module: here a stand-in
module that forwards to NumPy is installed as ``cupy`` so that exactly the code
that runs on a GPU (batched device FFTs, geometric mean, whole-batch box sums,
scaling, colour map, resize, flip) runs on the CPU, and its features are
compared with the CPU kernels' on a small synthetic archive. The fused CUDA
kernel's source is tested on the CPU in tests/test_kernels_cuda.py; a lent GPU
runs tests/test_superlet.py, tests/test_images.py and tests/test_features.py for
real (bench/gpu_check.sh).
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("precision, allowed", [("fp32", False), ("tf32", True)])
def test_fp32_means_fp32_on_cuda(precision, allowed):
    """fp32 switches TF32 off for the forward pass (features within 1e-4 of the
    CPU), tf32 switches it on; both restore torch's switches afterwards."""
    from engine.features.extractor import SqueezeNetExtractor

    ext = SqueezeNetExtractor(weights="random").fit()
    ext.set_params(precision=precision)
    ext._fitted_params["precision"] = precision  # as if fitted on CUDA: no refit
    ext.device_ = torch.device("cuda")  # the switches only, no CUDA work is done
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    try:
        for start in (True, False):
            cudnn.allow_tf32 = matmul.allow_tf32 = start
            with ext._inference():
                assert cudnn.allow_tf32 is allowed and matmul.allow_tf32 is allowed
            assert cudnn.allow_tf32 is start and matmul.allow_tf32 is start
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def test_tf32_is_a_cuda_precision():
    from engine.features.extractor import SqueezeNetExtractor

    with pytest.raises(ValueError, match="needs CUDA"):
        SqueezeNetExtractor(weights="random", device="cpu", precision="tf32").fit()
    with pytest.raises(ValueError, match="precision"):
        SqueezeNetExtractor(weights="random", precision="tf16").fit()
