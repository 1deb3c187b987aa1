"""Folders of event images (e.g. the published 227 x 227 superlet images).

``ROOT/<CLASS>/<name>.png`` (or ``.jpg``/``.jpeg``): the class sub-folder is
the label (images directly in ROOT have no label). Every image becomes an
``Event(image=uint8 (227, 227, 3), data=None)`` with id ``CLASS/name``.

Images that are not 227 x 227 RGB are converted (grayscale/RGBA/palette to
RGB, dropping alpha) and resized to 227 x 227 with bicubic interpolation, with
one warning per chunk saying how many were resized (``resize=True``, the
default), or rejected with a clear error naming the file (``resize=False``).
Unreadable image files are skipped with a warning and counted.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from engine.events import Event
from engine.sources._common import check_path, label_from_folder, walk_files
from engine.sources.base import ChunkResult, EventSource, SourceSummary

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SIZE = 227


class ImageFolderSource(EventSource):
    """Image-only events from a folder of class sub-folders.

    Parameters
    ----------
    path : path
        Root folder (or a single image file).
    resize : bool
        Resize images that are not 227 x 227 (with a warning) instead of
        raising (default True).
    block : int
        Images per chunk (default 256).
    """

    kind = "images"

    def __init__(self, path, *, resize: bool = True, block: int = 256):
        self.path = path
        self.resize = resize
        self.block = block
        self._plan = None

    def _scan(self):
        if self._plan is not None:
            return self._plan
        root = check_path(self.path, "image folder")
        files = [root] if root.is_file() else [
            f for f in walk_files(root) if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
        base = root.parent if root.is_file() else root
        rel = [str(f.relative_to(base)) for f in files]
        # one chunk list per class folder, in blocks
        groups: dict[str, list[str]] = {}
        for r in rel:
            groups.setdefault(str(Path(r).parent), []).append(r)
        keys, members = [], {}
        for g in sorted(groups):
            lst = sorted(groups[g], key=_natural)
            for b in range(0, len(lst), int(self.block)):
                k = f"{g}|{b}"
                keys.append(k)
                members[k] = lst[b: b + int(self.block)]
        self._plan = (keys, members, base, root.is_dir())
        return self._plan

    def chunks(self) -> list[str]:
        """Keys ``CLASS_FOLDER|first_index``."""
        return list(self._scan()[0])

    def size_hint(self) -> int:
        """Number of images."""
        return sum(len(m) for m in self._scan()[1].values())

    def read_chunk(self, key: str) -> ChunkResult:
        """Read one block of images.

        Raises
        ------
        ValueError
            With ``resize=False``, for an image that is not 227 x 227 RGB.
        """
        from PIL import Image

        keys, members, base, is_dir = self._scan()
        if key not in members:
            raise ValueError(f"chunk key {key!r} is not a chunk of {self.path}")
        summary = SourceSummary()
        events = []
        resized = 0
        for r in members[key]:
            p = base / r
            try:
                with Image.open(p) as im:
                    im.load()
                    ok = im.size == (IMAGE_SIZE, IMAGE_SIZE) and im.mode == "RGB"
                    if not ok and not self.resize:
                        raise ValueError(f"{p}: image is {im.size[0]}x{im.size[1]} {im.mode}, "
                                         f"expected {IMAGE_SIZE}x{IMAGE_SIZE} RGB (use resize=True)")
                    rgb = im.convert("RGB")
                    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
                        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
                    if not ok:
                        resized += 1
                    arr = np.asarray(rgb, dtype=np.uint8).copy()
            except ValueError:
                raise
            except Exception as exc:  # PIL raises several types for bad files
                summary.skip(str(p), f"not a readable image ({type(exc).__name__}: {exc})")
                continue
            summary.files_read += 1
            label = label_from_folder(p, base) if is_dir else None
            ident = str(Path(r).with_suffix("")).replace("\\", "/")
            events.append(Event(id=ident, data=None, label=label, image=arr,
                                source=str(p)))
        if resized:
            warnings.warn(f"{resized} image(s) in {base / key.split('|')[0]} were not "
                          f"{IMAGE_SIZE}x{IMAGE_SIZE} RGB and were converted/resized (bicubic)",
                          stacklevel=2)
        summary.events = len(events)
        return ChunkResult(key, events, summary)


def _natural(name: str):
    """Sort key putting ``2.png`` before ``10.png``."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
