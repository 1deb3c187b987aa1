"""Small shared helpers: optional imports and progress bars."""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from importlib import import_module
from types import ModuleType
from typing import Iterable, Iterator, TypeVar

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
