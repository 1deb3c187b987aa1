"""Helpers shared by the sources: resampling, selection, file discovery."""
from __future__ import annotations

import os
from fnmatch import fnmatchcase
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

#: files that are never waveforms; a waveform-folder scan ignores them silently
NON_WAVEFORM_SUFFIXES = frozenset({
    ".csv", ".txt", ".md", ".rst", ".json", ".yaml", ".yml", ".toml", ".xml", ".trs",
    ".py", ".ipynb", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".pdf",
    ".h5", ".hdf5", ".npy", ".npz", ".mat", ".zip", ".gz", ".tar", ".log", ".html", ".tmp",
    ".lock", ".pkl", ".pt", ".safetensors",
})


def resample(data: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Resample to ``target_fs`` with an anti-alias filter (polyphase).

    Uses :func:`scipy.signal.resample_poly` with the ratio ``target_fs / fs``
    approximated by a fraction with denominator <= 1000 (exact for the usual
    rates); its default Kaiser-windowed FIR low-pass removes energy above the
    new Nyquist frequency before decimation. The output has
    ``ceil(len(data) * up / down)`` samples, so the duration is kept.

    Parameters
    ----------
    data : numpy.ndarray
        1-D samples.
    fs : float
        Sampling rate of ``data`` in Hz.
    target_fs : float
        Wanted rate in Hz.

    Returns
    -------
    numpy.ndarray
        float32 samples at ``target_fs`` (the input as float32 if rates match).

    Raises
    ------
    ValueError
        If a rate is not positive.
    """
    if not (fs > 0 and target_fs > 0):
        raise ValueError(f"sampling rates must be positive, got fs={fs!r}, target_fs={target_fs!r}")
    x = np.asarray(data)
    if abs(fs - target_fs) <= 1e-9 * target_fs:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    frac = Fraction(float(target_fs) / float(fs)).limit_denominator(1000)
    up, down = frac.numerator, frac.denominator
    x = x.astype(np.float64)
    mean = x.mean() if len(x) else 0.0
    y = resample_poly(x - mean, up, down) + mean
    return y.astype(np.float32)


def matches(value: str, pattern: str | Iterable[str] | None) -> bool:
    """Case-sensitive wildcard match (``*``, ``?``); a list means any of them; None matches all."""
    if pattern is None:
        return True
    if isinstance(pattern, str):
        pats = [p.strip() for p in pattern.split(",")]
    else:
        pats = list(pattern)
    return any(fnmatchcase(value, p if p != "--" else "") for p in pats)


def walk_files(root: Path) -> list[Path]:
    """All regular files under ``root`` (recursive, hidden entries skipped), sorted."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                out.append(Path(dirpath) / f)
    return out


def check_path(path, what: str) -> Path:
    """``Path(path)`` that exists, else FileNotFoundError naming ``what``."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist")
    return p


def label_from_folder(path: Path, root: Path) -> Optional[str]:
    """Name of the first sub-folder of ``root`` holding ``path`` (None at top level)."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    return rel.parts[0] if len(rel.parts) > 1 else None
