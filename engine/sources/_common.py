"""Helpers shared by the sources: resampling, selection, file discovery."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from fnmatch import fnmatchcase
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

logger = logging.getLogger("engine.sources")

#: longest reason kept for a skipped file (the run summary and summary.json hold it)
REASON_MAX = 200

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


def short_reason(exc: BaseException, what: str = "", limit: int = REASON_MAX) -> str:
    """One short line saying why a file could not be read.

    Libraries sometimes put thousands of lines in one exception (ObsPy's
    ``InternalMSEEDError`` lists every undecodable Steim frame); this keeps the
    exception type, the first two lines and how many more there were.

    Parameters
    ----------
    exc : BaseException
        The error raised while reading.
    what : str
        Prefix, e.g. ``"not readable by ObsPy"`` (the result is then
        ``"not readable by ObsPy (ErrorType: first line ...)"``).
    limit : int
        Maximum length of the part taken from the message.

    Returns
    -------
    str
        A single line.

    Examples
    --------
    >>> short_reason(ValueError("bad frame\\nbad frame\\nbad frame"), "unreadable")
    'unreadable (ValueError: bad frame; bad frame; +1 more line(s))'
    """
    lines = [ln.strip().rstrip(":") for ln in str(exc).splitlines() if ln.strip()]
    text = "; ".join(lines[:2]) if lines else "no message"
    if len(lines) > 2:
        text += f"; +{len(lines) - 2} more line(s)"
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    text = f"{type(exc).__name__}: {text}"
    return f"{what} ({text})" if what else text


def _from_obspy(w: warnings.WarningMessage) -> bool:
    mod = getattr(w.category, "__module__", "") or ""
    return mod.startswith("obspy") or "obspy" in str(w.filename)


def read_obspy(path, **kwargs):
    """``obspy.read(path, **kwargs)`` without ObsPy's console noise.

    libmseed reports every undecodable frame of a garbled miniSEED file through
    Python callbacks (``print`` and ``InternalMSEEDWarning``): thousands of lines
    for one file. Here its printed output is dropped and its warnings become a
    single DEBUG log line per call; warnings that other code raised meanwhile
    are re-issued unchanged. Errors propagate: callers skip the file with
    :func:`short_reason`.

    Parameters
    ----------
    path : path
        Waveform file.
    **kwargs
        Passed to :func:`obspy.read` (``headonly``, ``starttime``, ...).

    Returns
    -------
    obspy.Stream
    """
    from obspy import read

    with warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        try:
            return read(str(path), **kwargs)
        finally:
            mine = [w for w in caught if _from_obspy(w)]
            others = [w for w in caught if not _from_obspy(w)]
            if mine:
                logger.debug("%s: %d ObsPy warning(s) while reading, first: %s", path,
                             len(mine), str(mine[0].message).splitlines()[0][:REASON_MAX]
                             if str(mine[0].message) else mine[0].category.__name__)
            for w in others:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
