"""Throughput of the CNN feature extractor (images/s).

CPU: plain PyTorch fp32 (``SqueezeNetExtractor`` with channels_last and all
cores) against a naive reference (the same network, contiguous NCHW, one
image per call). GPU variants (strict fp32, tf32, fp16 and bf16 autocast,
TensorRT fp16) run when CUDA is present and are skipped with the reason
otherwise; each reports its error against the CPU.

``MQE_BENCH_SMOKE=1`` uses a handful of images so the file runs in seconds.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from engine.features import SqueezeNetExtractor

SMOKE = os.environ.get("MQE_BENCH_SMOKE", "") not in ("", "0")
N = 4 if SMOKE else 128
BATCH = 4 if SMOKE else 64
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (N, 227, 227, 3), dtype=np.uint8)


def _naive_rate(ext: SqueezeNetExtractor, images: np.ndarray) -> float:
    model = ext.model_.to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        model.forward_layers(torch.zeros(1, 3, 227, 227), ["conv10"])  # warm-up
        t = time.perf_counter()
        for im in images:
            x = torch.from_numpy(im).permute(2, 0, 1)[None].float().contiguous()
            model.forward_layers(x, ["conv10"])
        rate = len(images) / (time.perf_counter() - t)
    ext.model_.to(memory_format=torch.channels_last)
    return rate


def test_cpu_fp32(benchmark, images):
    ext = SqueezeNetExtractor(weights="random", batch_size=BATCH, device="cpu").fit()
    ext.transform(images[:BATCH])  # warm-up
    feats = benchmark.pedantic(ext.transform, args=(images,), rounds=1 if SMOKE else 3,
                               iterations=1)
    assert feats.shape == (N, 392)
    rate = N / benchmark.stats.stats.min if benchmark.stats else float("nan")
    if not benchmark.enabled:  # --benchmark-disable: time it ourselves
        t = time.perf_counter()
        ext.transform(images)
        rate = N / (time.perf_counter() - t)
    naive = _naive_rate(ext, images[:min(N, 16)])
    benchmark.extra_info.update({"images_per_s": rate, "naive_images_per_s": naive,
                                 "ratio_vs_naive": rate / naive, "threads": torch.get_num_threads(),
                                 "batch": BATCH, "n": N})
    print(f"\nCPU fp32: {rate:.1f} images/s (batch {BATCH}); naive one-by-one NCHW "
          f"{naive:.1f} images/s; ratio {rate / naive:.2f}")


@pytest.mark.skipif(NO_CUDA, reason="no CUDA GPU: GPU fp32/fp16/TensorRT benchmarks skipped")
@pytest.mark.parametrize("precision, tensorrt", [("fp32", False), ("tf32", False),
                                                 ("fp16", False), ("bf16", False),
                                                 ("fp16", True)])
def test_gpu(benchmark, images, precision, tensorrt):
    if tensorrt:
        pytest.importorskip("torch_tensorrt", reason="torch_tensorrt not installed")
    ext = SqueezeNetExtractor(weights="random", batch_size=BATCH, device="cuda",
                              precision=precision, tensorrt=tensorrt).fit()
    gpu_images = torch.from_numpy(images).cuda()
    ext.transform(gpu_images)  # warm-up / compile

    def run():
        out = ext.transform(gpu_images)
        torch.cuda.synchronize()
        return out

    feats = benchmark.pedantic(run, rounds=1 if SMOKE else 5, iterations=1)
    assert feats.shape == (N, 392)
    t = time.perf_counter()
    run()
    rate = N / (time.perf_counter() - t)
    cpu = SqueezeNetExtractor(weights="random", batch_size=BATCH).fit().transform(images)
    err = float(np.abs(feats - cpu).max() / np.abs(cpu).max())
    benchmark.extra_info.update({"images_per_s": rate, "rel_err_vs_cpu": err})
    print(f"\nGPU {precision}{' TensorRT' if tensorrt else ''}: {rate:.1f} images/s, "
          f"max rel. error vs CPU fp32 {err:.2e}")
