"""The raw-pixel baseline: the scalogram image itself, downsampled.

Every learned featurizer must beat this one. An event's seed-compatible image
(given, or made from its samples) is turned back into the scalar it encodes
(nearest ``jet(256)`` colour: 0 = weakest, 255 = strongest), averaged over
blocks to ``size x size`` and scaled to 0..1. Low frequencies come last (the
image is flipped, as published).
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import numpy as np

from engine.events import Event
from engine.features.base import IMAGE_RECIPE, Featurizer, images_of

#: bits per channel of the colour -> jet index look-up table
_LUT_BITS = 6


@lru_cache(maxsize=1)
def _jet_index_lut() -> np.ndarray:
    """uint8 table (2^b)^3: quantised RGB -> index of the nearest jet(256) colour."""
    from engine.images import jet

    lut_rgb = jet(256) * 255.0  # (256, 3)
    q = 1 << _LUT_BITS
    centres = (np.arange(q) + 0.5) * (256.0 / q)
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    out = np.empty(grid.shape[0], np.uint8)
    lut_sq = (lut_rgb ** 2).sum(1)
    for i in range(0, grid.shape[0], 16384):
        g = grid[i:i + 16384]
        d = (g ** 2).sum(1)[:, None] - 2.0 * g @ lut_rgb.T + lut_sq[None, :]
        out[i:i + 16384] = np.argmin(d, axis=1)
    return out


def jet_to_scalar(images: np.ndarray) -> np.ndarray:
    """Scalar 0..255 image of RGB jet images (nearest colour of the map).

    Parameters
    ----------
    images : ndarray (n, H, W, 3) uint8

    Returns
    -------
    ndarray (n, H, W) uint8
    """
    shift = 8 - _LUT_BITS
    q = images.astype(np.int32) >> shift
    flat = (q[..., 0] << (2 * _LUT_BITS)) | (q[..., 1] << _LUT_BITS) | q[..., 2]
    return _jet_index_lut()[flat]


def block_mean(images: np.ndarray, size: int) -> np.ndarray:
    """Average ``(n, H, W)`` images over a ``size x size`` grid of near-equal blocks."""
    n, h, w = images.shape
    rows = np.linspace(0, h, size + 1).astype(int)
    cols = np.linspace(0, w, size + 1).astype(int)
    x = images.astype(np.float32)
    # sums over row blocks, then column blocks (reduceat: one pass, no Python loop per pixel)
    x = np.add.reduceat(x, rows[:-1], axis=1)
    x = np.add.reduceat(x, cols[:-1], axis=2)
    area = np.diff(rows)[:, None] * np.diff(cols)[None, :]
    return x / area[None].astype(np.float32)


class ScalogramPixels(Featurizer):
    """Downsampled scalogram image values (the baseline).

    Parameters
    ----------
    size : int
        Side of the downsampled image (``size * size`` features).
    fs : float
        Sampling rate of the waveforms (Hz).
    device : {"cpu", "cuda"}
        Where the superlet images are computed.
    batch : int
        Events per image batch.
    """

    name = "pixels"
    description = "raw scalogram pixels, 32x32 (the baseline every learned featurizer must beat)"
    needs = "either"

    def __init__(self, size: int = 32, fs: float = 100.0, device: str = "cpu",
                 batch: int = 32) -> None:
        self.size = size
        self.fs = fs
        self.device = device
        self.batch = batch

    def check(self) -> "ScalogramPixels":
        """Validate ``size`` (4..227) and ``batch``."""
        if not isinstance(self.size, int) or not 4 <= self.size <= 227:
            raise ValueError(f"pixels: size must be an integer in 4..227; got {self.size!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive integer; got {self.batch!r}")
        return self

    def _fit(self, events: list[Event] | None) -> None:
        _jet_index_lut()

    def _transform(self, events: list[Event]) -> np.ndarray:
        out = []
        for i in range(0, len(events), self.batch):
            t0 = time.perf_counter()
            images = images_of(events[i:i + self.batch], self.fs, self.device)
            if not isinstance(images, np.ndarray):
                images = images.get()
            self._timed("images", t0)
            t0 = time.perf_counter()
            scalar = jet_to_scalar(images)
            out.append(block_mean(scalar, self.size).reshape(len(scalar), -1) / 255.0)
            self._timed("pixels", t0)
        return np.concatenate(out)

    def _fingerprint(self) -> dict[str, Any]:
        return {"size": int(self.size), "fs": float(self.fs), "images": IMAGE_RECIPE}
