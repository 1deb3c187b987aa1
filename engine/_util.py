"""Small shared helpers: optional imports and progress bars."""
from __future__ import annotations

import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from importlib import import_module
from types import ModuleType
from typing import BinaryIO, Callable, Iterable, Iterator, TypeVar, Union

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


_QUIET = threading.local()


def progress_enabled() -> bool:
    """Whether progress bars are shown (off with MQE_NO_PROGRESS=1 or inside quiet())."""
    if os.environ.get("MQE_NO_PROGRESS", "") not in ("", "0"):
        return False
    return not getattr(_QUIET, "depth", 0)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the progress bars of inner stages (the caller shows one bar)."""
    _QUIET.depth = getattr(_QUIET, "depth", 0) + 1
    try:
        yield
    finally:
        _QUIET.depth -= 1


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None,
             unit: str = "it", disable: bool | None = None) -> Iterator[T]:
    """Wrap an iterable in a tqdm progress bar written to stderr.

    Parameters
    ----------
    iterable : iterable
        What to iterate.
    desc : str
        Label of the bar.
    total : int, optional
        Number of items when ``len`` is not available.
    unit : str
        Unit shown in the bar.
    disable : bool, optional
        Force the bar off (``True``) or on (``False``); by default it follows
        :func:`progress_enabled`.
    """
    from tqdm.auto import tqdm

    if disable is None:
        disable = not progress_enabled()
    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable,
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
