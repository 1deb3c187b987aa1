"""Small shared helpers: optional imports, logging, progress bars, atomic writes."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from importlib import import_module
from types import ModuleType
from typing import Any, BinaryIO, Callable, Iterable, Iterator, TypeVar, Union

T = TypeVar("T")


def require(module: str, extra: str = "gpu", feature: str | None = None) -> ModuleType:
    """Import an optional dependency or raise a clear ImportError.

    Parameters
    ----------
    module : str
        Module name to import (e.g. ``"cupy"``).
    extra : str
        The ``pip install microquake-engine[extra]`` extra that provides it.
    feature : str, optional
        What the user asked for, used in the message.

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    ImportError
        If the module cannot be imported; the message names the extra.
    """
    try:
        return import_module(module)
    except ImportError as exc:
        what = feature or module
        raise ImportError(
            f"{what} needs the optional package '{module}', which is not installed "
            f"({exc}). Install it with: pip install 'microquake-engine[{extra}]'"
        ) from exc


#: the one format of every message of the package (and of captured warnings)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%dT%H:%M:%SZ"

logger = logging.getLogger("engine")
_log = logging.getLogger("engine.progress")
_HANDLER_FLAG = "_mqe_handler"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` replacement: one log line, no source line."""
    name = getattr(category, "__name__", "Warning")
    module = Path(str(filename)).stem if filename else "?"
    lines = str(message).strip().splitlines() or [""]
    more = f" (+{len(lines) - 1} more line(s))" if len(lines) > 1 else ""
    logging.getLogger("py.warnings").warning("%s: %s%s (from %s)", name, lines[0][:500],
                                             more, module)


def configure_logging(level: int | str = logging.INFO, stream=None,
                      capture_warnings: bool = True) -> logging.Handler:
    """Send the package's log records (``engine.*``) and Python warnings to ``stream``.

    CLIs call this once at start-up. Every message gets the same format
    (:data:`LOG_FORMAT`, times in UTC). With ``capture_warnings`` the
    :mod:`warnings` of the package and of the libraries it uses (including
    those raised in Dask worker threads of this process) are routed through
    :func:`logging.captureWarnings` to the ``py.warnings`` logger and shown as
    one line each, without the source line. Calling it again replaces the
    handler it installed (no duplicated lines). Records still propagate to the
    root logger, so an application that configures the root itself should not
    call this.

    Parameters
    ----------
    level : int or str
        Level of the ``engine`` logger (default INFO).
    stream : file-like, optional
        Where to write (default ``sys.stderr`` at the time of the call).
    capture_warnings : bool
        Route :mod:`warnings` through logging.

    Returns
    -------
    logging.Handler
        The handler installed on the ``engine`` and ``py.warnings`` loggers.

    Examples
    --------
    >>> import io, logging
    >>> buf = io.StringIO()
    >>> _ = configure_logging(stream=buf)
    >>> logging.getLogger("engine.demo").info("hello")
    >>> buf.getvalue().split(" ", 1)[1].strip()
    'INFO engine.demo: hello'
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    fmt = logging.Formatter(LOG_FORMAT, LOG_DATEFMT)
    fmt.converter = time.gmtime
    handler.setFormatter(fmt)
    setattr(handler, _HANDLER_FLAG, True)
    for name in ("engine", "py.warnings"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if getattr(h, _HANDLER_FLAG, False):
                lg.removeHandler(h)
        lg.addHandler(handler)
        lg.setLevel(level)
    if capture_warnings:
        logging.captureWarnings(True)
        warnings.showwarning = _show_warning
    return handler


_QUIET = threading.local()


def progress_enabled() -> bool:
    """Whether progress bars are drawn.

    Bars are drawn only when standard error is a terminal, or when asked for
    with ``MQE_PROGRESS=1``; ``MQE_NO_PROGRESS=1`` turns them off in any case,
    and so does :func:`quiet`. Without bars, :func:`progress` logs one line per
    stage instead (no carriage returns in log files).
    """
    if os.environ.get("MQE_NO_PROGRESS", "") not in ("", "0"):
        return False
    if getattr(_QUIET, "depth", 0):
        return False
    if os.environ.get("MQE_PROGRESS", "") not in ("", "0"):
        return True
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def _quiet_now() -> bool:
    return bool(getattr(_QUIET, "depth", 0))


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the progress bars and stage lines of inner stages (the caller shows one)."""
    _QUIET.depth = getattr(_QUIET, "depth", 0) + 1
    try:
        yield
    finally:
        _QUIET.depth -= 1


def _logged(iterable: Iterable[T], desc: str, total: int | None, unit: str) -> Iterator[T]:
    """Iterate, then log one line: what the stage did and how long it took."""
    t0 = time.perf_counter()
    n = 0
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    _log.debug("%s: started (%s %s)", desc or "stage", "?" if total is None else total, unit)
    for item in iterable:
        n += 1
        yield item
    _log.info("%s: %d %s in %.1f s", desc or "stage", n, unit, time.perf_counter() - t0)


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None,
             unit: str = "it", disable: bool | None = None) -> Iterator[T]:
    """Iterate with a progress bar on a terminal, else with one log line per stage.

    Parameters
    ----------
    iterable : iterable
        What to iterate.
    desc : str
        Name of the stage (bar label, log line).
    total : int, optional
        Number of items when ``len`` is not available.
    unit : str
        Unit shown in the bar.
    disable : bool, optional
        Force the bar off (``True``) or on (``False``); by default it follows
        :func:`progress_enabled`. Without a bar, a line
        ``"<desc>: <n> <unit> in <t> s"`` is logged (INFO, logger
        ``engine.progress``) when the iteration ends, unless inside :func:`quiet`.

    Returns
    -------
    iterator
        The items of ``iterable``.
    """
    if disable is None:
        disable = not progress_enabled()
    if disable:
        if _quiet_now():
            return iter(iterable)
        return _logged(iterable, desc, total, unit)
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, disable=False,
                     file=sys.stderr, dynamic_ncols=True, leave=False))


@contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    Nothing is left half-written: on any error the temporary file is removed and
    ``path`` keeps its old content (or stays absent). The file gets mode 0644.

    Parameters
    ----------
    path : path
        The final file; its folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: Union[str, os.PathLike],
                 data: Union[bytes, str, Callable[[BinaryIO], object]],
                 fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    Parameters
    ----------
    path : path
        The final file.
    data : bytes, str or callable
        Bytes, text (UTF-8) or a function that writes to a binary file handle.
    fsync : bool
        Flush the data to disk before the rename (for stores that must survive a
        crash of the machine, not only of the process).

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return Path(path)


def jsonable(obj: Any) -> Any:
    """JSON-safe copy: mappings, sequences, numpy scalars/arrays and paths to plain
    Python; NaN/inf to None; objects with ``to_dict`` through it; others as ``str``."""
    import math
    from collections.abc import Mapping

    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    return str(obj)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1.

    A worker pinned to some cores sizes its thread pools to them, so that
    workers side by side never oversubscribe the machine.
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
