"""The featurizer seam: one small interface between events and features.

A featurizer turns a batch of :class:`engine.events.Event` into a feature
matrix ``(n, d)``. The main job, the evaluation harness, the similar-event
search and ``--assign-to`` only talk to this interface, so a new way of making
features is one module plus one line in the name table of
:mod:`engine.features` (see ``docs/method.md``, "Adding a featurizer").

The contract, scikit-learn style:

- parameters are stored untouched in ``__init__`` (they must be picklable: the
  unfitted featurizer is what a Dask worker receives);
- :meth:`Featurizer.check` validates them cheaply (files exist, choices), and
  is called before any event is read;
- :meth:`Featurizer.fit` prepares the featurizer (loads a network, learns
  nothing unless the featurizer says so) and returns ``self``;
- :meth:`Featurizer.transform` gives float32 ``(n, d)`` features;
- :meth:`Featurizer.fingerprint` is a JSON-able dict of everything that makes
  features incompatible (weights digest, layer, transform parameters); two
  featurizers with equal fingerprints give interchangeable features. The
  resumable store and saved clusterings compare fingerprints;
- :meth:`Featurizer.provenance` is the fingerprint plus what a reader of
  ``metrics.json`` wants to know (paths, classes, dimension).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from sklearn.base import BaseEstimator

from engine._util import jsonable
from engine.events import Event

#: Version of the scalogram image recipe (Stages 0-2); part of image-based fingerprints.
IMAGE_RECIPE = "seed-superlet-v1"


class Featurizer(BaseEstimator, ABC):
    """Base class of the engine's featurizers (events -> ``(n, d)`` float32).

    Subclasses set :attr:`name`, :attr:`description` and :attr:`needs`, store
    their parameters in ``__init__`` and implement :meth:`_fit`,
    :meth:`_transform` and :meth:`_fingerprint`.

    Attributes
    ----------
    name : str
        Name in the table of :mod:`engine.features` (``--features NAME``).
    description : str
        One line for ``--list-features``.
    needs : {"waveforms", "images", "either"}
        What each event must carry: samples, an image, or either.
    timings_ : dict
        Seconds spent per internal stage (e.g. ``images``, ``cnn``), summed
        over calls of :meth:`transform`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[str] = "either"

    # ------------------------------------------------------------------ public API
    def check(self) -> "Featurizer":
        """Validate the parameters cheaply, before any work; returns ``self``.

        Raises
        ------
        ValueError, FileNotFoundError
            A parameter is out of range or a file it names is missing.
        """
        return self

    def fit(self, events: Sequence[Event] | None = None, y: Any = None) -> "Featurizer":
        """Prepare the featurizer (load networks, fit what it learns from ``events``).

        Parameters
        ----------
        events : sequence of Event, optional
            Events of the run (only featurizers that learn use them).
        y : ignored

        Returns
        -------
        self
        """
        self.check()
        self.timings_: dict[str, float] = {}
        self._fit(list(events) if events is not None else None)
        self.fitted_ = True
        return self

    def transform(self, events: Sequence[Event]) -> np.ndarray:
        """Features of ``events``.

        Parameters
        ----------
        events : sequence of Event
            Events carrying what :attr:`needs` says.

        Returns
        -------
        ndarray (n_events, n_features) float32

        Raises
        ------
        ValueError
            An event lacks the samples or image this featurizer needs.
        """
        if not getattr(self, "fitted_", False):
            self.fit()
        events = list(events)
        if not events:
            return np.zeros((0, 0), np.float32)
        self._check_events(events)
        return np.asarray(self._transform(events), dtype=np.float32)

    def fit_transform(self, events: Sequence[Event], y: Any = None) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same events."""
        return self.fit(events).transform(events)

    def fingerprint(self) -> dict[str, Any]:
        """What makes features incompatible, as a JSON-able dict (``featurizer`` first)."""
        return {"featurizer": self.name, **self._fingerprint()}

    def fingerprint_id(self) -> str:
        """A short stable digest of :meth:`fingerprint` (16 hex digits)."""
        text = json.dumps(self.fingerprint(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def provenance(self) -> dict[str, Any]:
        """JSON-able description for ``metrics.json`` and saved models."""
        return {"fingerprint": self.fingerprint(), "params": jsonable(self.get_params()),
                "description": self.description}

    def cache_key(self) -> str:
        """Key of this configuration in per-process caches of fitted featurizers."""
        return self.name + json.dumps(jsonable(self.get_params()), sort_keys=True)

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def _fit(self, events: list[Event] | None) -> None:
        """Prepare state (called by :meth:`fit` after :meth:`check`)."""

    @abstractmethod
    def _transform(self, events: list[Event]) -> np.ndarray:
        """Features of a non-empty, checked list of events."""

    @abstractmethod
    def _fingerprint(self) -> dict[str, Any]:
        """Featurizer-specific part of :meth:`fingerprint`."""

    # ------------------------------------------------------------------ helpers
    def _check_events(self, events: list[Event]) -> None:
        for e in events:
            has_data, has_image = e.data is not None, e.image is not None
            ok = {"waveforms": has_data, "images": has_image or has_data,
                  "either": has_data or has_image}[self.needs]
            if not ok:
                what = "samples" if self.needs == "waveforms" else "samples or an image"
                raise ValueError(
                    f"featurizer {self.name!r} needs {what}; event {e.id} from "
                    f"{e.source or 'its source'} has "
                    + ("only an image" if has_image else "neither samples nor an image"))

    def _timed(self, stage: str, t0: float) -> None:
        self.timings_[stage] = self.timings_.get(stage, 0.0) + time.perf_counter() - t0


def images_of(events: Sequence[Event], fs: float, device: str = "cpu"):
    """Scalogram images ``(n, 227, 227, 3)`` uint8 of events: given images or superlets.

    Events that carry an image (published image sets) keep it; waveform events
    get the seed-compatible superlet image (:func:`engine.images.event_images`).
    On ``device="cuda"`` the result is a GPU array when any event was computed.

    Raises
    ------
    ValueError
        An event has neither samples nor an image, or mixes are not possible.
    """
    events = list(events)
    if all(e.image is not None for e in events):
        return np.stack([e.image for e in events])
    bad = next((e for e in events if e.data is None), None)
    if bad is not None:
        raise ValueError(f"event {bad.id} from {bad.source} has no samples: cannot make "
                         "its scalogram image")
    from engine.images import event_images

    return event_images([e.data for e in events], fs=fs, device=device)


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """``sha256:<16 hex>`` of a file's content (cached per path, size and mtime).

    The identity of a weights file is its content, not how its path is spelled.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    key = (str(p), st.st_size, st.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = _DIGESTS[key] = "sha256:" + h.hexdigest()[:16]
    return digest
